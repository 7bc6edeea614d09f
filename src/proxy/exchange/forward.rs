//! Plain-HTTP forwarding of absolute-form requests (`GET http://host/path`): policy,
//! hop-by-hop headers, Host rewrite, then streamed both ways through the pooling client.
//! Plain HTTP never gets a secret (SPEC §6).

use std::error::Error as _;
use std::sync::Arc;
use std::time::Instant;

use http::header::HOST;
use http::uri::Scheme;
use http::{HeaderValue, Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::tripwired;
use crate::addon::FlowContext;
use crate::addon::body_tripwire::BodyTripwire;
use crate::audit::{Event, Kind, Verdict, path_without_query};
use crate::config::limits::Span;
use crate::policy::{Host, parse_authority};
use crate::proxy::headers::strip_hop_by_hop;
use crate::proxy::io::metered::{Direction, FlowRecord, Metered};
use crate::proxy::respond::ProxyError;
use crate::proxy::stats::UpstreamFailure;
use crate::proxy::upstream::ConnectError;
use crate::proxy::{Body, BoxError, ClientInfo, Proxy};

/// Forwards one absolute-form request.
pub async fn handle(
    proxy: Arc<Proxy>,
    client: ClientInfo,
    req: Request<Incoming>,
) -> Response<Body> {
    let started = Instant::now();
    let path = path_without_query(req.uri().path());
    let mut event = Event::new(client.to_string(), Kind::Request, Verdict::Allow);
    event.method = Some(req.method().to_string());
    event.path = Some(path.clone());
    let what = format!(
        "{} {}://{}{path}",
        req.method(),
        scheme_of(&req),
        authority_of(&req)
    );
    let (host, port) = match target(&req) {
        Ok(target) => target,
        Err(err) => return proxy.refuse(event, &err, &what, started),
    };
    event.host = Some(host.to_string());
    event.port = Some(port);
    if super::selftest::is_self(&host) {
        let (parts, _) = req.into_parts();
        return proxy.self_test(event, &parts, false, started);
    }
    let generation = proxy.current();
    let decided = proxy
        .or_ask(
            &generation,
            generation.policy.decide(&host, port),
            &client,
            &host,
            port,
            &what,
        )
        .await;
    let allowed = match decided {
        Ok(allowed) => allowed,
        Err(refusal) => return proxy.refuse(event, &ProxyError::Refused(refusal), &what, started),
    };
    let (mut parts, body) = req.into_parts();
    let mut flow = FlowContext::new(
        client.to_string(),
        host.clone(),
        port,
        false,
        generation.secrets.clone(),
    );
    if let Err(refuse) = proxy.pipeline.on_request(&mut flow, &mut parts) {
        event.secret = flow.tripped.clone();
        return proxy.refuse(event, &ProxyError::Addon(refuse), &what, started);
    }
    tracing::info!(client = %client, "{what}: forward ({allowed})");
    event.reason = Some(allowed.to_string());
    // The tripwire on the body, as on intercepted connections: a plain-HTTP body is as
    // readable to keygate (and to anyone on the path) as its headers.
    let watcher = BodyTripwire::for_flow(&flow).filter(|_| !http_body::Body::is_end_stream(&body));
    let flow = FlowRecord::start(proxy.audit.clone(), event.clone(), started);
    let tripped: tripwired::Slot = Arc::default();
    let req = prepare(Request::from_parts(parts, body), &host, port, &flow);
    let req = match watcher {
        Some(watcher) => {
            req.map(|body| tripwired::Tripwired::new(body, watcher, tripped.clone()).boxed())
        }
        None => req,
    };
    let timeout = generation.config.limits.response_timeout;
    let sent = tokio::time::timeout(timeout, generation.client.request(req)).await;
    if let Some(tripped) = tripped.lock().ok().and_then(|mut t| t.take()) {
        flow.update(|e| e.secret = Some(tripped.secret.clone()));
        return fail(&proxy, &flow, ProxyError::Addon(tripped.refuse), &what);
    }
    let response = match sent {
        Ok(Ok(response)) => response,
        Ok(Err(e)) => return fail(&proxy, &flow, upstream_error(&proxy, &e), &what),
        Err(_) => {
            proxy.stats.upstream_failure(UpstreamFailure::Timeout);
            let err = ProxyError::Timeout(format!(
                "no response head within {} (limits.response_timeout)",
                Span(timeout)
            ));
            return fail(&proxy, &flow, err, &what);
        }
    };
    flow.update(|e| e.status = Some(response.status().as_u16()));
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    let body = Metered::new(body, flow, Direction::Down)
        .map_err(|e| -> BoxError { Box::new(e) })
        .boxed();
    Response::from_parts(parts, body)
}

fn scheme_of(req: &Request<Incoming>) -> &str {
    req.uri().scheme_str().unwrap_or("")
}

fn authority_of(req: &Request<Incoming>) -> &str {
    req.uri().authority().map(|a| a.as_str()).unwrap_or("")
}

/// The upstream of an absolute-form request; only `http://` is forwarded.
fn target(req: &Request<Incoming>) -> Result<(Host, u16), ProxyError> {
    if req.uri().scheme() != Some(&Scheme::HTTP) {
        return Err(ProxyError::BadRequest(format!(
            "keygate forwards only http:// URLs in plain requests; send {}:// through CONNECT (set HTTPS_PROXY)",
            scheme_of(req)
        )));
    }
    let authority = authority_of(req);
    parse_authority(authority, Some(80))
        .map_err(|e| ProxyError::BadRequest(format!("request target `{authority}`: {e}")))
}

/// Rewrites the request for the upstream: hop-by-hop headers out, Host from the target,
/// and the body metered on its way up.
fn prepare(
    req: Request<Incoming>,
    host: &Host,
    port: u16,
    flow: &Arc<FlowRecord>,
) -> Request<Body> {
    let (mut parts, body) = req.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    // SECURITY: the upstream routes by Host, the policy checked the request target; a
    // Host that differs would be domain fronting, so the target wins (RFC 9112 §3.2.2).
    let host_header = if port == 80 {
        host.to_string()
    } else {
        format!("{host}:{port}")
    };
    if let Ok(value) = HeaderValue::from_str(&host_header) {
        parts.headers.insert(HOST, value);
    }
    let body = Metered::new(body, flow.clone(), Direction::Up)
        .map_err(|e| -> BoxError { Box::new(e) })
        .boxed();
    Request::from_parts(parts, body)
}

/// Maps a pooling-client error to the side that failed, finding our own connect error
/// (a policy refusal, a timeout) inside it when there is one.
/// A failure after connecting (the connection broke, bad HTTP) is counted here; a
/// connect failure was counted by the connector.
pub(super) fn upstream_error(proxy: &Proxy, e: &hyper_util::client::legacy::Error) -> ProxyError {
    let mut source = e.source();
    while let Some(cause) = source {
        if let Some(connect) = cause.downcast_ref::<ConnectError>() {
            return ProxyError::from(connect);
        }
        source = cause.source();
    }
    proxy.stats.upstream_failure(UpstreamFailure::Protocol);
    let detail = e
        .source()
        .map(|s| s.to_string())
        .unwrap_or_else(|| e.to_string());
    ProxyError::Upstream(detail)
}

fn fail(proxy: &Proxy, flow: &FlowRecord, err: ProxyError, what: &str) -> Response<Body> {
    err.log(what);
    flow.update(|e| {
        e.decision = Verdict::Deny;
        e.reason = Some(err.to_string());
        e.status = Some(err.status().as_u16());
    });
    let _ = proxy;
    err.to_response(what)
}
