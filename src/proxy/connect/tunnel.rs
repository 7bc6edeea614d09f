//! Tunnels: read the client's TLS ClientHello, check its SNI against the CONNECT host
//! (domain-fronting defence), then copy bytes both ways, unbuffered, with half-close.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use http::StatusCode;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::refusal;
use crate::audit::{Event, Kind, Verdict};
use crate::config::limits::Span;
use crate::policy::Host;
use crate::proxy::io::idle::Activity;
use crate::proxy::{ClientInfo, Proxy};

/// Largest ClientHello keygate reads before giving up (post-quantum key shares make
/// hellos of 2 KB common; 64 KiB is generous).
pub const MAX_HELLO_BYTES: usize = 64 * 1024;
/// TLS record content type of a handshake.
const TLS_HANDSHAKE: u8 = 0x16;

/// What the client sent first.
#[derive(Debug)]
pub enum Hello {
    /// A complete TLS ClientHello; `sni` is its server_name, if any.
    Tls {
        /// The SNI host name as sent.
        sni: Option<String>,
    },
    /// Bytes that are not a TLS handshake.
    NotTls,
    /// A TLS record that is not a well-formed ClientHello, or too large.
    Malformed(String),
    /// The client closed before sending a complete hello.
    Closed,
    /// No complete hello within the time allowed (the text says which limit).
    TooSlow(String),
}

/// Reads until a complete ClientHello has arrived; returns it and every byte read (to be
/// replayed upstream). rustls parses the hello: no hand-written TLS parser.
pub async fn read_client_hello(
    io: &mut (impl AsyncRead + Unpin),
) -> std::io::Result<(Hello, Vec<u8>)> {
    let mut seen = Vec::with_capacity(2048);
    let mut acceptor = rustls::server::Acceptor::default();
    let mut chunk = [0u8; 4096];
    loop {
        let n = io.read(&mut chunk).await?;
        if n == 0 {
            return Ok((Hello::Closed, seen));
        }
        seen.extend_from_slice(&chunk[..n]);
        if seen[0] != TLS_HANDSHAKE {
            return Ok((Hello::NotTls, seen));
        }
        if seen.len() > MAX_HELLO_BYTES {
            return Ok((Hello::Malformed("ClientHello too large".into()), seen));
        }
        let mut fresh = &chunk[..n];
        while !fresh.is_empty() {
            match acceptor.read_tls(&mut fresh) {
                Ok(0) => return Ok((Hello::Malformed("ClientHello too large".into()), seen)),
                Ok(_) => {}
                Err(e) => return Ok((Hello::Malformed(e.to_string()), seen)),
            }
        }
        match acceptor.accept() {
            Ok(Some(accepted)) => {
                let sni = accepted.client_hello().server_name().map(str::to_string);
                return Ok((Hello::Tls { sni }, seen));
            }
            Ok(None) => continue,
            Err((e, _alert)) => return Ok((Hello::Malformed(e.to_string()), seen)),
        }
    }
}

/// Why a hello is not acceptable for a tunnel to `host`, or `None` when it is.
pub fn check_hello(hello: &Hello, host: &Host) -> Option<(&'static str, String)> {
    match hello {
        Hello::Tls { sni: None } => None,
        Hello::Tls { sni: Some(sni) } => match Host::parse(sni) {
            Ok(named) if &named == host => None,
            _ => Some((
                "sni-mismatch",
                format!("TLS SNI `{sni}` differs from the CONNECT host {host} (domain fronting?)"),
            )),
        },
        Hello::NotTls => Some((
            "not-tls",
            format!("the tunnel to {host} does not carry TLS; keygate tunnels only TLS"),
        )),
        Hello::Malformed(why) => Some(("bad-tls", format!("malformed TLS ClientHello: {why}"))),
        Hello::TooSlow(why) => Some(("bad-tls", why.clone())),
        Hello::Closed => Some((
            "client-closed",
            "the client closed before its TLS ClientHello".into(),
        )),
    }
}

/// Bytes copied per read and write in each direction of a tunnel. tokio's default of
/// 8 KiB made a 1 MiB download cost keygate 700–950 µs of CPU (256 system calls each
/// way); 32 KiB costs 440–500 µs (benches/e2e.sh, docs/PERFORMANCE.md), for 48 KiB more
/// memory per busy tunnel.
const COPY_BUFFER: usize = 32 * 1024;

/// Runs one tunnel to its end and records it in the audit log.
pub async fn run(
    proxy: Arc<Proxy>,
    client: ClientInfo,
    upgraded: Upgraded,
    upstream: TcpStream,
    host: Host,
    port: u16,
) {
    let started = Instant::now();
    let mut downstream = TokioIo::new(upgraded);
    let mut event = Event::new(client.to_string(), Kind::Tunnel, Verdict::Allow);
    event.host = Some(host.to_string());
    event.port = Some(port);
    let limits = proxy.current().config.limits;
    let hello =
        tokio::time::timeout(limits.handshake_timeout, read_client_hello(&mut downstream)).await;
    let (hello, first_bytes) = match hello {
        Ok(Ok(read)) => read,
        Ok(Err(e)) => (Hello::Malformed(e.to_string()), Vec::new()),
        Err(_) => (
            Hello::TooSlow(format!(
                "no complete TLS ClientHello within {} (limits.handshake_timeout)",
                Span(limits.handshake_timeout)
            )),
            Vec::new(),
        ),
    };
    if let Some((code, why)) = check_hello(&hello, &host) {
        if code != "client-closed" {
            tracing::warn!(client = %client, "tunnel to {host}:{port} closed: {code}: {why}");
        }
        event.decision = Verdict::Deny;
        event.reason = Some(format!("{code}: {why}"));
        event.bytes_up = first_bytes.len() as u64;
        // SECURITY: the upstream connection is dropped unused; a refusal page, if the
        // client gets one, is served by code with no path upstream.
        drop(upstream);
        let page = refusal::page_for_tunnel(&proxy, &client, &hello, code, why, &host, port);
        if page.is_some() {
            event.status = Some(StatusCode::FORBIDDEN.as_u16());
        }
        finish(&proxy, event, started);
        if let Some(page) = page {
            refusal::page::serve_after(proxy, downstream, first_bytes, page, limits).await;
        }
        return;
    }
    let activity = Activity::new();
    let (mut downstream, mut upstream) = (activity.watch(downstream), activity.watch(upstream));
    let (sent_up, sent_down) = (upstream.written(), downstream.written());
    let copied = async {
        upstream.write_all(&first_bytes).await?;
        tokio::io::copy_bidirectional_with_sizes(
            &mut downstream,
            &mut upstream,
            COPY_BUFFER,
            COPY_BUFFER,
        )
        .await
    };
    let outcome = tokio::select! {
        outcome = copied => outcome,
        () = grace_expired(&proxy) => Err(std::io::Error::other("closed by shutdown")),
        () = activity.expired(limits.idle_timeout) => Err(std::io::Error::other(format!(
            "closed after {} without traffic (limits.idle_timeout)",
            Span(limits.idle_timeout)
        ))),
    };
    // What reached each side, the ClientHello included, however the copy ended.
    event.bytes_up = sent_up.load(Ordering::Relaxed);
    event.bytes_down = sent_down.load(Ordering::Relaxed);
    if let Err(e) = outcome {
        event.reason = Some(format!("tunnel ended: {e}"));
        tracing::debug!("tunnel to {host}:{port} ended: {e}");
    }
    finish(&proxy, event, started);
}

/// Completes once shutdown started and its grace period has passed.
pub(super) async fn grace_expired(proxy: &Proxy) {
    proxy.shutdown.cancelled().await;
    tokio::time::sleep(crate::proxy::SHUTDOWN_GRACE).await;
}

fn finish(proxy: &Proxy, mut event: Event, started: Instant) {
    event.ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    proxy.audit.record(event);
}
