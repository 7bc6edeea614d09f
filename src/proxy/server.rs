//! The accept loop and graceful shutdown.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::OwnedSemaphorePermit;

use super::headers::PARSER_SLACK;
use super::{Proxy, service};

/// How long shutdown waits for in-flight requests and tunnels before closing them.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Pause after an accept error (e.g. out of file descriptors) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `listener` until `shutdown` completes, then stops accepting, lets in-flight
/// work finish for at most [`SHUTDOWN_GRACE`], and returns.
pub async fn run(
    proxy: Arc<Proxy>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
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
            accepted = listener.accept() => match accepted {
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
    drop(listener);
    tracing::info!("shutting down: no new connections; waiting for in-flight requests");
    proxy.shutdown.cancel();
    proxy.tasks.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, proxy.tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            "{} connections still open after {}s; closing them",
            proxy.tasks.len(),
            SHUTDOWN_GRACE.as_secs()
        );
    }
    Ok(())
}

/// Serves one client connection (HTTP/1.1, the proxy protocol) until it closes or
/// shutdown asks it to finish its current request.
async fn serve(
    proxy: Arc<Proxy>,
    stream: TcpStream,
    peer: SocketAddr,
    slot: Arc<OwnedSemaphorePermit>,
) {
    let _ = stream.set_nodelay(true);
    let limits = proxy.current().config.limits;
    let handler = proxy.clone();
    let svc = service_fn(move |req| service::handle(handler.clone(), peer, slot.clone(), req));
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
