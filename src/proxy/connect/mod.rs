//! CONNECT: parse the authority, decide, connect upstream, answer 200, then tunnel.
//!
//! The upstream connection is made *before* the 200, so an unreachable or refused
//! upstream is a 403/502/504 with a reason rather than a tunnel that dies at once.
//!
//! After the 200 the connection is a [`tunnel`] (bytes copied, SNI checked) or is
//! [`intercept`]ed (TLS terminated with a leaf from [`tls`], each request then an
//! [`exchange`](super::exchange)); a CONNECT refused by policy gets a [`refusal`] page.

pub mod hello;
pub mod intercept;
pub mod refusal;
pub mod tls;
pub mod tunnel;

use std::sync::Arc;
use std::time::Instant;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use super::respond::{ProxyError, empty};
use super::upstream::ConnectError;
use super::{Body, ClientInfo, Generation, Proxy};
use crate::audit::{Event, Kind, Verdict};
use crate::policy::{Allowed, Host, parse_authority};

/// Handles one CONNECT request.
pub async fn handle(
    proxy: Arc<Proxy>,
    client: ClientInfo,
    req: Request<Incoming>,
) -> Response<Body> {
    let started = Instant::now();
    let mut event = Event::new(client.to_string(), Kind::Connect, Verdict::Allow);
    event.method = Some("CONNECT".into());
    let raw_target = req.uri().to_string();
    let (host, port) = match target(&req) {
        Ok(target) => target,
        Err(err) => return proxy.refuse(event, &err, &format!("CONNECT {raw_target}"), started),
    };
    event.host = Some(host.to_string());
    event.port = Some(port);
    let what = format!("CONNECT {host}:{port}");
    let generation = proxy.current();
    let decided = match super::exchange::selftest::is_self(&host) {
        true => Ok(Allowed::SelfTest),
        false => generation.policy.decide(&host, port),
    };
    let decided = proxy
        .or_ask(&generation, decided, &client, &host, port, &what)
        .await;
    let allowed = match decided {
        Ok(allowed) => allowed,
        Err(refusal) => {
            let error = ProxyError::Refused(refusal);
            return refusal::answer_connect(
                proxy, &client, req, event, error, host, port, &what, started,
            );
        }
    };
    if generation.should_intercept(&host, port) {
        return intercept(
            proxy, generation, client, req, event, allowed, host, port, started,
        );
    }
    let upstream = match generation.connector.connect(&host, port).await {
        Ok(stream) => stream,
        // A private address found at connect time is a policy refusal like the others.
        Err(ConnectError::Refused(refusal)) => {
            let error = ProxyError::Refused(refusal);
            return refusal::answer_connect(
                proxy, &client, req, event, error, host, port, &what, started,
            );
        }
        Err(e) => return proxy.refuse(event, &ProxyError::from(e), &what, started),
    };
    tracing::info!(client = %client, "{what}: tunnel ({allowed})");
    event.reason = Some(allowed.to_string());
    event.status = Some(StatusCode::OK.as_u16());
    event.ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    proxy.audit.record(event);
    let tunnel_proxy = proxy.clone();
    proxy.tasks.spawn(async move {
        match hyper::upgrade::on(req).await {
            Ok(upgraded) => tunnel::run(tunnel_proxy, client, upgraded, upstream, host, port).await,
            Err(e) => tracing::debug!("{what}: the client left before the tunnel opened: {e}"),
        }
    });
    Response::new(empty())
}

/// The CONNECT target as host and port; both are required.
fn target(req: &Request<Incoming>) -> Result<(Host, u16), ProxyError> {
    let authority = req
        .uri()
        .authority()
        .ok_or_else(|| ProxyError::BadRequest("CONNECT needs a host:port target".into()))?;
    parse_authority(authority.as_str(), None).map_err(|e| {
        ProxyError::BadRequest(format!("CONNECT target `{}`: {e}", authority.as_str()))
    })
}

/// Answers 200 and terminates TLS after the upgrade. The upstream is connected lazily,
/// per request, through the pooling client.
#[allow(clippy::too_many_arguments)]
fn intercept(
    proxy: Arc<Proxy>,
    generation: Arc<Generation>,
    client: ClientInfo,
    req: Request<Incoming>,
    mut event: Event,
    allowed: Allowed,
    host: Host,
    port: u16,
    started: Instant,
) -> Response<Body> {
    let what = format!("CONNECT {host}:{port}");
    if proxy.server_configs.is_none() {
        let err = ProxyError::Internal("this proxy has no CA, so it cannot intercept".into());
        return proxy.refuse(event, &err, &what, started);
    }
    tracing::info!(client = %client, "{what}: intercept ({allowed})");
    event.decision = Verdict::Intercept;
    event.reason = Some(allowed.to_string());
    event.status = Some(StatusCode::OK.as_u16());
    event.ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    proxy.audit.record(event);
    let task_proxy = proxy.clone();
    proxy.tasks.spawn(async move {
        match hyper::upgrade::on(req).await {
            Ok(upgraded) => {
                intercept::run(task_proxy, generation, client, upgraded, host, port).await
            }
            Err(e) => tracing::debug!("{what}: the client left before TLS started: {e}"),
        }
    });
    Response::new(empty())
}
