//! Tunnels: read the client's TLS ClientHello, check its SNI against the CONNECT host
//! (domain-fronting defence, [`super::hello`]), then copy bytes both ways, unbuffered,
//! with half-close.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use http::StatusCode;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::hello::{Hello, check_hello, read_client_hello};
use super::refusal;
use crate::audit::{Event, Kind, Verdict};
use crate::config::limits::Span;
use crate::policy::Host;
use crate::proxy::io::idle::Activity;
use crate::proxy::stats::ConnKind;
use crate::proxy::{ClientInfo, Proxy};

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
    let _open = proxy.stats.open(ConnKind::Tunnelled);
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
        why = revoked(&proxy, &host, port) => {
            event.decision = Verdict::Deny;
            tracing::warn!(client = %client, "tunnel to {host}:{port} closed: {why}");
            Err(std::io::Error::other(why))
        }
        () = activity.expired(limits.idle_timeout) => Err(std::io::Error::other(format!(
            "closed after {} without traffic (limits.idle_timeout)",
            Span(limits.idle_timeout)
        ))),
    };
    // What reached each side, the ClientHello included, however the copy ended.
    event.bytes_up = sent_up.load(Ordering::Relaxed);
    event.bytes_down = sent_down.load(Ordering::Relaxed);
    if let Err(e) = outcome {
        event.reason = Some(match event.decision {
            Verdict::Deny => e.to_string(),
            _ => format!("tunnel ended: {e}"),
        });
        tracing::debug!("tunnel to {host}:{port} ended: {e}");
    }
    finish(&proxy, event, started);
}

/// Completes, with the reason, once a reload makes the policy refuse `host:port`: a
/// tunnel to a host that was just denied closes at once instead of running on.
async fn revoked(proxy: &Proxy, host: &Host, port: u16) -> String {
    let mut reloads = proxy.reloads.subscribe();
    loop {
        // Checked once before waiting too: a reload may have come since the CONNECT.
        if let Err(refusal) = proxy.current().policy.decide(host, port) {
            return format!("revoked: {refusal} (the configuration was reloaded)");
        }
        if reloads.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
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
