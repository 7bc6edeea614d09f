//! Per-request dispatch on a client connection.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use std::time::Instant;

use http::{Method, Request, Response};
use hyper::body::Incoming;
use tokio::sync::OwnedSemaphorePermit;

use crate::audit::{Event, Kind, Verdict, path_without_query};
use crate::proxy::exchange::forward;
use crate::proxy::respond::ProxyError;
use crate::proxy::stats::{ConnKind, Open};
use crate::proxy::{Body, ClientInfo, Proxy, connect, headers};

/// Routes one request: CONNECT → tunnel/intercept, absolute-form → forward, anything
/// else → 400 (keygate is a proxy, not an origin server).
pub async fn handle(
    proxy: Arc<Proxy>,
    peer: SocketAddr,
    slot: Arc<OwnedSemaphorePermit>,
    plain: Arc<OnceLock<Option<Open>>>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let client = ClientInfo {
        peer,
        // A session's clients are the session: its socket is theirs alone, so the name
        // cannot be forged; a Proxy-Authorization user there changes nothing.
        user: match &proxy.session {
            Some(session) => Some(session.client()),
            None => headers::proxy_auth_user(req.headers()),
        },
        slot: Some(slot),
    };
    if let Some(auth) = &proxy.auth
        && !auth.admits(req.headers())
    {
        return Ok(unauthenticated(&proxy, &client, &req));
    }
    let limits = proxy.current().config.limits;
    if let Err(err) = headers::check_head(req.uri(), req.headers(), &limits) {
        let mut event = refused_event(&client, &req);
        if let Some(host) = req.uri().host() {
            event.host = Some(host.to_string());
        }
        if req.method() != Method::CONNECT {
            event.path = Some(path_without_query(req.uri().path()));
        }
        return Ok(proxy.refuse(event, &err, "the request", Instant::now()));
    }
    let response = if req.method() == Method::CONNECT {
        connect::handle(proxy, client, req).await
    } else if req.uri().scheme().is_some() {
        plain.get_or_init(|| proxy.stats.open(ConnKind::Plain));
        forward::handle(proxy, client, req).await
    } else {
        not_a_proxy_request(&proxy, &client, &req)
    };
    Ok(response)
}

/// An origin-form request (`GET /path`): the client treats keygate as a web server.
fn not_a_proxy_request(
    proxy: &Proxy,
    client: &ClientInfo,
    req: &Request<Incoming>,
) -> Response<Body> {
    let path = path_without_query(req.uri().path());
    let mut event = Event::new(client.to_string(), Kind::Request, Verdict::Deny);
    event.method = Some(req.method().to_string());
    event.path = Some(path.clone());
    let err = ProxyError::BadRequest(format!(
        "{} {path} is not a proxy request; keygate is a proxy: point HTTP_PROXY/HTTPS_PROXY at it",
        req.method()
    ));
    proxy.refuse(event, &err, "the request", Instant::now())
}

/// A request without the required proxy credentials: 407, logged and audited.
fn unauthenticated(proxy: &Proxy, client: &ClientInfo, req: &Request<Incoming>) -> Response<Body> {
    let mut event = refused_event(client, req);
    event.reason = Some("proxy-auth-required: missing or wrong proxy credentials".into());
    event.status = Some(407);
    tracing::warn!(client = %client.peer, "{} refused: missing or wrong proxy credentials", req.method());
    proxy.audit.record(event);
    super::auth::challenge()
}

/// The audit event of a request refused before it is handled: a `connect` or a
/// `request` by its method.
fn refused_event(client: &ClientInfo, req: &Request<Incoming>) -> Event {
    let kind = if req.method() == Method::CONNECT {
        Kind::Connect
    } else {
        Kind::Request
    };
    let mut event = Event::new(client.to_string(), kind, Verdict::Deny);
    event.method = Some(req.method().to_string());
    event
}
