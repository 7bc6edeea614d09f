//! One request on an intercepted connection: the addon pipeline (host check, tripwire,
//! least privilege, swap), the upstream over pooled verified TLS, and the response
//! back through scrub, streamed. WebSocket upgrades are bridged after the 101
//! ([`websocket`]).
//!
//! The other exchanges: absolute-form `http://` requests are [`forward`]ed (plain HTTP,
//! never a secret), and requests to `keygate.test` are answered by the [`selftest`]
//! origin on either path. Response bodies pass the addons' chunk filters as
//! [`filtered::Filtered`]; a bound host's compressed body is [`decode`]d first, so
//! that scrub reads it.

pub mod body_swap;
pub mod credential;
pub mod decode;
pub mod filtered;
pub mod forward;
pub mod selftest;
pub mod tripwired;
pub mod websocket;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use http::header::{CONNECTION, HOST, HeaderName, UPGRADE};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Either};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use super::headers::strip_hop_by_hop;
use super::io::idle::Activity;
use super::io::metered::{Direction, FlowRecord, Metered};
use super::respond::ProxyError;
use super::{Body, BoxError, ClientInfo, Generation, Proxy};
use crate::addon::FlowContext;
use crate::addon::body_swap::BodySwap;
use crate::addon::body_tripwire::BodyTripwire;
use crate::addon::websocket::FramePolicy;
use crate::audit::{Event, Kind, Verdict, path_without_query};
use crate::config::limits::Span;
use crate::policy::Host;
use crate::proxy::upstream::owned::{Owned, OwnedError};
use forward::upstream_error;

/// An intercepted connection: who, and the CONNECT host every request must name.
#[derive(Debug)]
pub struct Intercepted {
    /// The shared proxy.
    pub proxy: Arc<Proxy>,
    /// The configuration generation the connection started with (its connection-level
    /// settings; every request is decided by the current one).
    pub generation: Arc<Generation>,
    /// The client.
    pub client: ClientInfo,
    /// The CONNECT host.
    pub host: Host,
    /// The CONNECT port.
    pub port: u16,
    /// The upstream connection this client connection holds, once the upstream has
    /// answered in HTTP/1.1.
    pub upstream: Owned,
}

/// Handles one request of an intercepted connection.
pub async fn handle(
    conn: Arc<Intercepted>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let started = Instant::now();
    let proxy = &conn.proxy;
    let (mut parts, body) = req.into_parts();
    let path = path_without_query(parts.uri.path());
    let mut event = Event::new(conn.client.to_string(), Kind::Request, Verdict::Allow);
    event.host = Some(conn.host.to_string());
    event.port = Some(conn.port);
    event.method = Some(parts.method.to_string());
    event.path = Some(path.clone());
    let what = format!("{} https://{}:{}{path}", parts.method, conn.host, conn.port);
    if selftest::is_self(&conn.host) {
        return Ok(proxy.self_test(event, &parts, true, started));
    }
    // SECURITY: every request is decided by the current configuration, not the one the
    // connection started with: a reload that denies the host or unbinds a secret
    // revokes it on the next request of every open connection, however long a client
    // keeps the connection alive.
    let generation = proxy.current();
    if let Err(refusal) = generation.policy.decide(&conn.host, conn.port) {
        let err = revoked(format!("{refusal}"), refusal.advice.clone());
        return Ok(proxy.refuse(event, &err, &what, started));
    }
    let limits = generation.config.limits;
    // The parsers stop only heads far past the limits (`PARSER_SLACK`); the rest are
    // refused here, with a reason.
    if let Err(err) = super::headers::check_head(&parts.uri, &parts.headers, &limits) {
        return Ok(proxy.refuse(event, &err, &what, started));
    }
    let mut flow = FlowContext::new(
        conn.client.to_string(),
        conn.host.clone(),
        conn.port,
        true,
        generation.secrets.clone(),
    );
    let creds = &generation.credentials;
    if let Some((binding, account)) = credential::token_endpoint_of(&flow, &parts, creds) {
        // A `google` secret's token endpoint: keygate answers the agent's exchange of
        // its phantom JWT itself; nothing goes upstream.
        event.secret = Some(binding.name.clone());
        return Ok(
            match credential::google_token(&binding, account, body).await {
                Ok(answer) => {
                    event.reason = Some(format!(
                        "keygate answered the token exchange for secret `{}` with its phantom token",
                        binding.name
                    ));
                    event.status = Some(answer.status().as_u16());
                    event.ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                    proxy.audit.record(event);
                    answer
                }
                Err(err) => proxy.refuse(event, &err, &what, started),
            },
        );
    }
    if let Err(err) = credential::mint(&mut flow, &mut parts, creds).await {
        return Ok(proxy.refuse(event, &err, &what, started));
    }
    if let Err(refuse) = proxy.pipeline.on_request(&mut flow, &mut parts) {
        event.secret = flow.tripped.clone();
        let err = match unbound_since_connect(&conn, &generation, &refuse, &flow) {
            Some(name) => revoked(
                format!(
                    "secret `{name}` is no longer bound to {}:{} (the configuration was reloaded since this connection opened)",
                    conn.host, conn.port
                ),
                "The secret's binding was removed on purpose; only a human can restore it in secrets.yaml.".into(),
            ),
            None => ProxyError::Addon(refuse),
        };
        return Ok(proxy.refuse(event, &err, &what, started));
    }
    if !flow.swapped.is_empty() {
        event.secret = Some(flow.swapped.join(","));
        tracing::debug!(client = %conn.client, "{what}: swapped {}", flow.swapped.join(","));
    }
    // A host a secret is bound to: its response is scrubbed, so its body must be
    // readable.
    let bound = flow.reflections().is_some();
    if bound {
        decode::accept::restrict(&mut parts.headers);
    }
    // An HTTP/1.1 client sends one request at a time (see upstream::owned).
    let sequential = parts.version != http::Version::HTTP_2;
    let client_upgrade = parts.extensions.remove::<OnUpgrade>();
    let upgrade = upgrade_request(&parts.headers, parts.version)
        .then_some(client_upgrade)
        .flatten();
    // The host the client signed, for SigV4 (HTTP/1.1 Host, h2 :authority).
    let authority = match creds.any_aws() {
        true => parts
            .headers
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_owned)
            .or_else(|| parts.uri.authority().map(|a| a.to_string()))
            .unwrap_or_default(),
        false => String::new(),
    };
    prepare(&mut parts, &conn.host, conn.port, upgrade.is_some());
    // Frames to a host a secret is bound to are read, so they must stay readable.
    let frames = upgrade.as_ref().and_then(|_| FramePolicy::for_flow(&flow));
    if frames.is_some() {
        websocket::offer_no_extensions(&mut parts.headers);
    }
    let flow_record = FlowRecord::start(proxy.audit.clone(), event, started);
    // hyper knows when a request has no body (a GET, Content-Length: 0, h2 END_STREAM).
    let has_body = !http_body::Body::is_end_stream(&body);
    let body = Metered::new(body, flow_record.clone(), Direction::Up)
        .map_err(|e| -> BoxError { Box::new(e) })
        .boxed();
    // The tripwire on the body: a dummy of a secret not bound to this host stops it
    // before any byte of the dummy goes upstream.
    let tripped: tripwired::Slot = Arc::default();
    let body = match BodyTripwire::for_flow(&flow).filter(|_| has_body) {
        Some(watcher) => tripwired::Tripwired::new(body, watcher, tripped.clone()).boxed(),
        None => body,
    };
    // The swap in the body (opt-in per secret), after the tripwire: the tripwire reads
    // what the client sent.
    let body = match BodySwap::for_request(&flow, &parts.headers).filter(|_| has_body) {
        None => body,
        Some(swap) => match body_swap::plan(&parts.headers, limits.max_body_swap_buffer) {
            body_swap::Plan::Streamed => {
                body_swap::streamed(body, swap, &mut parts.headers, flow_record.clone())
            }
            body_swap::Plan::Whole(declared) => {
                let read = body_swap::whole(body, declared, swap, &mut parts.headers, &flow_record);
                match read.await {
                    Ok(body) => body,
                    Err(e) => {
                        let err = match tripped.lock().ok().and_then(|mut t| t.take()) {
                            Some(tripped) => {
                                flow_record.update(|e| e.secret = Some(tripped.secret.clone()));
                                ProxyError::Addon(tripped.refuse)
                            }
                            None => ProxyError::BadRequest(format!(
                                "the request body ended early while keygate read it to swap a dummy: {e}"
                            )),
                        };
                        return Ok(fail(&flow_record, err, &what));
                    }
                }
            }
        },
    };
    // An `aws` secret: the phantom signature verified, the request signed again with
    // the real keys (the body hashed whole, within limits.max_signed_body, only when the
    // client declared no payload hash).
    let body = match credential::resign_aws(
        &flow,
        &mut parts,
        &authority,
        body,
        has_body,
        limits.max_signed_body,
        creds,
    )
    .await
    {
        Ok(resigned) => {
            if let Some(name) = resigned.secret {
                flow_record.update(|e| e.secret = Some(name));
            }
            resigned.body
        }
        Err(err) => {
            if let Some(tripped) = tripped.lock().ok().and_then(|mut t| t.take()) {
                flow_record.update(|e| e.secret = Some(tripped.secret.clone()));
                return Ok(fail(&flow_record, ProxyError::Addon(tripped.refuse), &what));
            }
            return Ok(fail(&flow_record, err, &what));
        }
    };
    let request = Request::from_parts(parts, body);
    proxy.stats.added_request(started.elapsed());
    let sent = tokio::time::timeout(
        limits.response_timeout,
        send(&conn, &generation, request, upgrade.is_some(), sequential),
    )
    .await;
    let response_in = Instant::now();
    if let Some(tripped) = tripped.lock().ok().and_then(|mut t| t.take()) {
        // The upstream got the body up to the dummy and then an aborted request; the
        // client gets the refusal, whatever the upstream answered.
        flow_record.update(|e| e.secret = Some(tripped.secret.clone()));
        return Ok(fail(&flow_record, ProxyError::Addon(tripped.refuse), &what));
    }
    let mut response = match sent {
        Ok(Ok(response)) => response,
        Ok(Err(err)) => return Ok(fail(&flow_record, err, &what)),
        Err(_) => {
            proxy
                .stats
                .upstream_failure(crate::proxy::stats::UpstreamFailure::Timeout);
            let err = ProxyError::Timeout(format!(
                "no response head within {} (limits.response_timeout)",
                Span(limits.response_timeout)
            ));
            return Ok(fail(&flow_record, err, &what));
        }
    };
    flow_record.update(|e| e.status = Some(response.status().as_u16()));
    credential::on_status(&flow, response.status(), creds);
    if response.status() == StatusCode::SWITCHING_PROTOCOLS
        && let Some(client_side) = upgrade
    {
        let bound_at_open: Vec<String> = flow.bound().iter().map(|b| b.name.clone()).collect();
        let revocation =
            websocket_revoked(proxy.clone(), conn.host.clone(), conn.port, bound_at_open);
        let reply = bridge(
            proxy,
            client_side,
            &mut response,
            flow_record,
            frames,
            what,
            revocation,
        );
        let (mut head, body) = reply.into_parts();
        // SECURITY: the 101 echoes request values (Sec-WebSocket-Protocol may carry the
        // key); it passes scrub like any response head.
        let _ = proxy.pipeline.on_response(&flow, &mut head);
        return Ok(Response::from_parts(head, body));
    }
    let (mut head, body) = response.into_parts();
    let codings = match bound {
        true => match decode::prepare(&mut head, http_body::Body::is_end_stream(&body)) {
            Ok(codings) => codings,
            Err(err) => return Ok(fail(&flow_record, err, &what)),
        },
        false => None,
    };
    let filters = proxy.pipeline.on_response(&flow, &mut head);
    strip_hop_by_hop(&mut head.headers);
    let body = match codings {
        Some(codings) => {
            let chain = decode::chain::Chain::new(&codings, limits.max_decoded_ratio);
            Either::Left(decode::body::Decoded::new(body, chain, what))
        }
        // The fast path: no decoder, no copy.
        None => Either::Right(body),
    };
    let body = filtered::Filtered::new(body, filters);
    let body = Metered::new(body, flow_record, Direction::Down).boxed();
    proxy.stats.added_response(response_in.elapsed());
    Ok(Response::from_parts(head, body))
}

/// Sends the prepared request upstream: a WebSocket upgrade through the HTTP/1.1 pool;
/// else on the connection's own upstream connection once the upstream has answered it
/// in HTTP/1.1, or through the pool (h2 multiplexed across client connections).
async fn send(
    conn: &Intercepted,
    generation: &Arc<Generation>,
    request: Request<Body>,
    upgrade: bool,
    sequential: bool,
) -> Result<Response<Incoming>, ProxyError> {
    let proxy = &conn.proxy;
    if upgrade {
        return generation
            .upgrade_client
            .request(request)
            .await
            .map_err(|e| upstream_error(proxy, &e));
    }
    let request = match conn.upstream.usable() {
        true => match conn
            .upstream
            .send(generation, &conn.host, conn.port, request, sequential)
            .await
        {
            Ok(response) => return Ok(response),
            // Another stream of this (h2) client connection has it: the pool.
            Err(OwnedError::Busy(request)) => request,
            Err(OwnedError::Connect(e)) => return Err(ProxyError::from(&e)),
            Err(OwnedError::Http(e)) => return Err(ProxyError::Upstream(e.to_string())),
        },
        false => request,
    };
    let response = generation
        .tls_client
        .request(request)
        .await
        .map_err(|e| upstream_error(proxy, &e))?;
    conn.upstream.learn(response.version());
    Ok(response)
}

/// A request refused because a reload took away what the connection was opened for.
fn revoked(why: String, advice: String) -> ProxyError {
    ProxyError::Forbidden {
        code: "revoked",
        why,
        advice,
    }
}

/// The secret whose dummy tripped the wire here although it was bound to this host
/// when the connection opened: a binding a reload removed, not an exfiltration.
fn unbound_since_connect(
    conn: &Intercepted,
    now: &Generation,
    refuse: &crate::addon::Refuse,
    flow: &FlowContext,
) -> Option<String> {
    let name = flow
        .tripped
        .as_ref()
        .filter(|_| refuse.code == "tripwire")?;
    let was_bound = conn
        .generation
        .secrets
        .bound_to(&conn.host, conn.port)
        .any(|b| &b.name == name);
    let still_bound = now
        .secrets
        .bound_to(&conn.host, conn.port)
        .any(|b| &b.name == name);
    (was_bound && !still_bound).then(|| name.clone())
}

/// Completes, with the reason, once a reload makes an open WebSocket one the current
/// configuration would refuse: its host denied, or a secret bound to it when it opened
/// (whose dummy it may be swapping) no longer bound. Like a tunnel, it closes at once
/// rather than run on under the bindings it was opened with.
async fn websocket_revoked(
    proxy: Arc<Proxy>,
    host: Host,
    port: u16,
    bound_at_open: Vec<String>,
) -> String {
    let mut reloads = proxy.reloads.subscribe();
    loop {
        let now = proxy.current();
        if let Err(refusal) = now.policy.decide(&host, port) {
            return format!("revoked: {refusal} (the configuration was reloaded)");
        }
        let unbound = bound_at_open
            .iter()
            .find(|name| !now.secrets.bound_to(&host, port).any(|b| &&b.name == name));
        if let Some(name) = unbound {
            return format!(
                "revoked: secret `{name}` is no longer bound to {host}:{port} (the configuration was reloaded)"
            );
        }
        if reloads.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

/// An HTTP/1.1 `Connection: upgrade` request with an `Upgrade` header (WebSocket).
fn upgrade_request(headers: &HeaderMap, version: Version) -> bool {
    let connection_upgrade = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    version == Version::HTTP_11 && connection_upgrade && headers.contains_key(UPGRADE)
}

/// Rewrites the request for the upstream: hop-by-hop headers out (but for a WebSocket
/// upgrade's own), and the target rebuilt from the CONNECT host.
fn prepare(parts: &mut http::request::Parts, host: &Host, port: u16, upgrade: bool) {
    let upgrade_value = parts.headers.get(UPGRADE).cloned();
    let te_trailers = parts
        .headers
        .get(http::header::TE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    strip_hop_by_hop(&mut parts.headers);
    if te_trailers {
        // gRPC needs `te: trailers` end to end; it carries no per-hop meaning.
        parts
            .headers
            .insert(http::header::TE, HeaderValue::from_static("trailers"));
    }
    if upgrade && let Some(value) = upgrade_value {
        parts
            .headers
            .insert(CONNECTION, HeaderValue::from_static("upgrade"));
        parts.headers.insert(UPGRADE, value);
    }
    // SECURITY: the upstream is always the CONNECT host (already checked equal to the
    // request's Host/:authority); hyper sets Host or :authority from this URI.
    parts.headers.remove(HOST);
    let authority = if port == 443 {
        host.to_string()
    } else {
        format!("{host}:{port}")
    };
    let path = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    if let Ok(uri) = Uri::try_from(format!("https://{authority}{path}")) {
        parts.uri = uri;
    }
    // The pooling client picks HTTP/1.1 or h2 per upstream (ALPN) on its own.
    parts.version = Version::HTTP_11;
}

fn fail(flow: &FlowRecord, err: ProxyError, what: &str) -> Response<Body> {
    err.log(what);
    flow.update(|e| {
        e.decision = Verdict::Deny;
        e.reason = Some(err.to_string());
        e.status = Some(err.status().as_u16());
    });
    err.to_response(what)
}

/// Answers 101 to the client and relays the WebSocket between the two upgraded
/// connections: its frames through `frames` for a host a secret is bound to (a 101
/// keygate could not read is answered 502 instead), else as bytes.
fn bridge(
    proxy: &Proxy,
    client_side: OnUpgrade,
    response: &mut Response<Incoming>,
    flow: Arc<FlowRecord>,
    frames: Option<FramePolicy>,
    what: String,
    revocation: impl std::future::Future<Output = String> + Send + 'static,
) -> Response<Body> {
    if let Some(err) = frames
        .as_ref()
        .and_then(|_| websocket::unreadable(response.headers()))
    {
        return fail(&flow, err, &what);
    }
    let upstream_side = hyper::upgrade::on(&mut *response);
    let idle_timeout = proxy.current().config.limits.idle_timeout;
    let shutdown = proxy.shutdown.clone();
    let grace = async move {
        shutdown.cancelled().await;
        tokio::time::sleep(super::SHUTDOWN_GRACE).await;
    };
    proxy.tasks.spawn(async move {
        let (client_io, upstream_io) = match tokio::try_join!(client_side, upstream_side) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!("WebSocket upgrade failed: {e}");
                return;
            }
        };
        let activity = Activity::new();
        let (a, b) = (activity.watch(TokioIo::new(client_io)), activity.watch(TokioIo::new(upstream_io)));
        let (sent_up, sent_down) = (b.written(), a.written());
        let relayed = tokio::select! {
            relayed = websocket::relay(a, b, frames) => relayed,
            () = grace => websocket::Relayed::cut("closed by shutdown"),
            () = activity.expired(idle_timeout) => websocket::Relayed::cut("closed: idle (limits.idle_timeout)"),
            why = revocation => websocket::Relayed::cut(&why),
        };
        // Counted as they go: an idle close or a shutdown drops the relay mid-way.
        let moved = format!(
            "{} up, {} down",
            crate::text::count(sent_up.load(Ordering::Relaxed), "byte", "bytes"),
            crate::text::count(sent_down.load(Ordering::Relaxed), "byte", "bytes")
        );
        relayed.log(&what);
        flow.update(|e| relayed.record(e, &moved));
        drop(flow);
    });
    let mut reply = Response::new(super::respond::empty());
    *reply.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let names = [
        CONNECTION,
        UPGRADE,
        HeaderName::from_static("sec-websocket-accept"),
        HeaderName::from_static("sec-websocket-protocol"),
        HeaderName::from_static("sec-websocket-extensions"),
    ];
    for name in names {
        for value in response.headers().get_all(&name) {
            reply.headers_mut().append(name.clone(), value.clone());
        }
    }
    reply
}

/// Compile-time guard: the request future must stay `Send` (hyper's executor spawns
/// it). A non-`Send` await inside `handle` shows up here by name, rather than as a
/// puzzling trait error where the connection is served.
#[allow(dead_code)]
fn _handle_is_send(conn: Arc<Intercepted>, req: Request<Incoming>) {
    fn send<T: Send>(_: T) {}
    send(handle(conn, req));
}
