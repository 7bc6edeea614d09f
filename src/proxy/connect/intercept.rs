//! Intercepted connections: TLS terminated with a leaf for the CONNECT host (after
//! checking the ClientHello's SNI), then HTTP/1.1 or h2 (ALPN) served by hyper, each
//! request handled by [`crate::proxy::exchange`].

use std::sync::Arc;
use std::time::Instant;

use hyper::service::service_fn;
use hyper::upgrade::Upgraded;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio_rustls::LazyConfigAcceptor;

use super::hello::{Hello, check_hello};
use crate::audit::{Event, Kind, Verdict};
use crate::config::limits::Span;
use crate::policy::Host;
use crate::proxy::exchange::{self, Intercepted};
use crate::proxy::headers::{HYPER_INLINE_HEADERS, PARSER_SLACK};
use crate::proxy::io::read_ahead::ReadAhead;
use crate::proxy::stats::{ConnKind, Open, TlsSide};
use crate::proxy::{ClientInfo, Generation, Proxy};

/// Terminates TLS on an upgraded CONNECT and serves its requests until it closes.
pub async fn run(
    proxy: Arc<Proxy>,
    generation: Arc<Generation>,
    client: ClientInfo,
    upgraded: Upgraded,
    host: Host,
    port: u16,
) {
    let started = Instant::now();
    let open = proxy.stats.open(ConnKind::Intercepted);
    let deny = |code: &str, why: String| {
        tracing::warn!(client = %client, "intercepted connection to {host}:{port} closed: {code}: {why}");
        let mut event = Event::new(client.to_string(), Kind::Connect, Verdict::Deny);
        event.host = Some(host.to_string());
        event.port = Some(port);
        event.method = Some("CONNECT".into());
        event.reason = Some(format!("{code}: {why}"));
        event.ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        proxy.audit.record(event);
    };
    let acceptor = LazyConfigAcceptor::new(
        rustls::server::Acceptor::default(),
        ReadAhead::new(TokioIo::new(upgraded)),
    );
    let limits = generation.config.limits;
    let start = match tokio::time::timeout(limits.handshake_timeout, acceptor).await {
        Ok(Ok(start)) => start,
        Ok(Err(e)) => {
            proxy.stats.handshake(TlsSide::Client, false);
            return deny("bad-tls", format!("not a TLS ClientHello: {e}"));
        }
        Err(_) => {
            proxy.stats.handshake(TlsSide::Client, false);
            let why = format!(
                "no ClientHello within {} (limits.handshake_timeout)",
                Span(limits.handshake_timeout)
            );
            return deny("bad-tls", why);
        }
    };
    let sni = start.client_hello().server_name().map(str::to_string);
    if let Some((code, why)) = check_hello(&Hello::Tls { sni }, &host) {
        return deny(code, why);
    }
    let minted = match &proxy.server_configs {
        Some(configs) => configs.for_host(&host).map_err(|e| e.to_string()),
        None => Err("this proxy has no CA".to_string()),
    };
    let config = match minted {
        Ok(config) => config,
        Err(e) => return deny("internal", format!("cannot mint a certificate: {e}")),
    };
    let tls = match tokio::time::timeout(limits.handshake_timeout, start.into_stream(config)).await
    {
        Ok(Ok(tls)) => {
            proxy.stats.handshake(TlsSide::Client, true);
            tls
        }
        Ok(Err(e)) => {
            proxy.stats.handshake(TlsSide::Client, false);
            let why = format!(
                "the client's TLS handshake failed ({e}); if it does not trust keygate's CA, point NODE_EXTRA_CA_CERTS / SSL_CERT_FILE at `keygate ca path` (or use `keygate env`)"
            );
            return deny("client-tls", why);
        }
        Err(_) => {
            proxy.stats.handshake(TlsSide::Client, false);
            let why = format!(
                "the TLS handshake did not finish within {} (limits.handshake_timeout)",
                Span(limits.handshake_timeout)
            );
            return deny("client-tls", why);
        }
    };
    // The connection is served by a task of its own, so that the handshake's state
    // (rustls acceptor, the CONNECT upgrade) is freed rather than kept for as long as
    // the connection lives: ~2 KB less per idle intercepted connection.
    proxy.tasks.spawn(serve(
        proxy.clone(),
        generation,
        client.clone(),
        tls,
        host.clone(),
        port,
        open,
    ));
}

async fn serve(
    proxy: Arc<Proxy>,
    generation: Arc<Generation>,
    client: ClientInfo,
    tls: tokio_rustls::server::TlsStream<ReadAhead<TokioIo<Upgraded>>>,
    host: Host,
    port: u16,
    _open: Option<Open>,
) {
    let limits = generation.config.limits;
    let conn = Arc::new(Intercepted {
        proxy: proxy.clone(),
        generation,
        client,
        host,
        port,
        upstream: Default::default(),
    });
    let svc = service_fn(move |req| exchange::handle(conn.clone(), req));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_head_bytes * PARSER_SLACK)
        .keep_alive(true);
    // hyper parses up to 100 headers in place; a larger cap moves its parse arrays to
    // the heap, which costs ~6 KB of RSS per idle intercepted connection (measured with
    // benches/e2e.sh --memory). So only a limit raised past 100 raises the cap.
    if limits.max_headers > HYPER_INLINE_HEADERS {
        builder
            .http1()
            .max_headers(limits.max_headers * PARSER_SLACK);
    }
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.h2_max_concurrent_streams)
        .max_header_list_size(
            u32::try_from(limits.max_head_bytes * PARSER_SLACK).unwrap_or(u32::MAX),
        );
    let serving = builder.serve_connection_with_upgrades(TokioIo::new(tls), svc);
    tokio::pin!(serving);
    let result = tokio::select! {
        result = serving.as_mut() => result,
        () = proxy.shutdown.cancelled() => {
            serving.as_mut().graceful_shutdown();
            serving.await
        }
    };
    if let Err(e) = result {
        tracing::debug!("intercepted connection ended: {e}");
    }
}
