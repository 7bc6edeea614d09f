//! The listener: the accept loop and graceful shutdown. Each connection is served by
//! [`service`], which checks [`auth`] and dispatches each request.

pub mod auth;
pub mod service;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
#[cfg(unix)]
use tokio::net::UnixListener;
use tokio::sync::OwnedSemaphorePermit;

use super::headers::PARSER_SLACK;
use super::{Proxy, SHUTDOWN_GRACE};

/// Pause after an accept error (e.g. out of file descriptors) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The peer address recorded for clients of a Unix socket (a session's): they have none;
/// the session names them instead ([`super::SessionTag`]).
pub const UNIX_PEER: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0);

/// Serves `listener` until `shutdown` completes, then stops accepting, lets in-flight
/// work finish for at most [`SHUTDOWN_GRACE`], and returns.
pub async fn run(
    proxy: Arc<Proxy>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    // Owned by the accept closure: dropping it at shutdown closes the listener.
    let listener = Arc::new(listener);
    accept_loop(proxy, shutdown, move || {
        let listener = listener.clone();
        async move {
            let (stream, peer) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            Ok((stream, peer))
        }
    })
    .await
}

#[cfg(unix)]
/// As [`run`], for a session's Unix socket (`keygate run`'s jail reaches it through
/// its relay). Clients are named by the proxy's session, not by an address.
pub async fn run_unix(
    proxy: Arc<Proxy>,
    listener: UnixListener,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let listener = Arc::new(listener);
    accept_loop(proxy, shutdown, move || {
        let listener = listener.clone();
        async move {
            let (stream, _) = listener.accept().await?;
            Ok((stream, UNIX_PEER))
        }
    })
    .await
}

async fn accept_loop<S, F, Fut>(
    proxy: Arc<Proxy>,
    shutdown: impl Future<Output = ()>,
    mut accept: F,
) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: FnMut() -> Fut,
    Fut: Future<Output = io::Result<(S, SocketAddr)>>,
{
    tokio::pin!(shutdown);
    loop {
        // At `limits.max_connections`, new clients wait in the listen backlog.
        let slot = tokio::select! {
            () = &mut shutdown => break,
            slot = proxy.connections.clone().acquire_owned() => match slot {
                Ok(slot) => Arc::new(slot),
                Err(_) => break,
            },
        };
        tokio::select! {
            () = &mut shutdown => break,
            accepted = accept() => match accepted {
                Ok((stream, peer)) => {
                    proxy.tasks.spawn(serve(proxy.clone(), stream, peer, slot));
                }
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
        }
    }
    drop(accept);
    tracing::info!("shutting down: no new connections; waiting for in-flight requests");
    proxy.shutdown.cancel();
    proxy.tasks.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, proxy.tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            "{} still open after {}s; closing them",
            crate::text::count_of(proxy.tasks.len(), "connection", "connections"),
            SHUTDOWN_GRACE.as_secs()
        );
    }
    Ok(())
}

/// Serves one client connection (HTTP/1.1, the proxy protocol) until it closes or
/// shutdown asks it to finish its current request.
async fn serve<S>(proxy: Arc<Proxy>, stream: S, peer: SocketAddr, slot: Arc<OwnedSemaphorePermit>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let limits = proxy.current().config.limits;
    let handler = proxy.clone();
    // Counted as a plain connection from its first plain-HTTP request until it closes.
    let plain = Arc::new(std::sync::OnceLock::new());
    let svc = service_fn(move |req| {
        service::handle(handler.clone(), peer, slot.clone(), plain.clone(), req)
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_head_bytes * PARSER_SLACK)
        .max_header_size(limits.max_head_bytes * PARSER_SLACK)
        .max_headers(limits.max_headers * PARSER_SLACK)
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), svc)
        .with_upgrades();
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = proxy.shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        // Malformed requests, oversized heads, timeouts: hyper has already answered
        // (400/431/408) or closed; the client's next connection is served as usual.
        tracing::info!(client = %peer, "connection closed: {e}");
    }
}
