//! Refusals an HTTPS client can read (`refusals: tls`, the default).
//!
//! A refused CONNECT answered `403` shows the agent only its TLS library's words
//! ("CONNECT tunnel failed, response 403"); the reason keygate wrote is in a body no
//! client prints. So, for a CONNECT refused by policy, keygate instead records the
//! refusal, accepts the CONNECT, and serves a [`page`] on it: the client's first request
//! gets the refusal as an HTTP answer its library does show, then the connection
//! closes. Nothing is forwarded and no upstream is contacted.
//!
//! Bounds: page leaves come from their own small cache ([`REFUSAL_LEAF_CACHE_HOSTS`]),
//! and each client gets at most `limits.refusal_pages_per_minute` pages ([`rate`]);
//! past that its refused CONNECTs are answered at the CONNECT and say why. In a
//! jailed session, the session CA may not vouch for refused names (it is
//! name-constrained), so pages are signed by the session's refusal CA
//! ([`crate::ca::RefusalIssuer`]).

pub mod page;
pub mod rate;

use std::sync::Arc;
use std::time::Instant;

use http::{Request, Response};
use hyper::body::Incoming;

use super::respond::{ProxyError, empty};
use super::{Body, ClientInfo, Proxy};
use crate::audit::Event;
use crate::config::Refusals;
use crate::policy::Host;

/// How many refused hosts' leaves are kept in memory (apart from the intercepted
/// hosts' cache, so refused names never push those out).
pub const REFUSAL_LEAF_CACHE_HOSTS: usize = 64;

/// Answers a CONNECT to `host:port` refused with `error`: with a refusal page when the
/// configuration, the CA and the client's budget allow one, else at the CONNECT.
/// Either way the refusal is logged and audited once, here.
#[allow(clippy::too_many_arguments)]
pub fn answer_connect(
    proxy: Arc<Proxy>,
    client: &ClientInfo,
    req: Request<Incoming>,
    event: Event,
    error: ProxyError,
    host: Host,
    port: u16,
    what: &str,
    started: Instant,
) -> Response<Body> {
    let generation = proxy.current();
    if generation.config.refusals == Refusals::Connect || proxy.refusal_configs.is_none() {
        return proxy.refuse(event, &error, what, started);
    }
    let key = budget_key(client);
    if !proxy.refusal_rate.admit(&key, Instant::now()) {
        let throttled = ProxyError::Throttled {
            why: format!(
                "{key} had more than {} refused CONNECTs in the last minute, so this one gets no TLS refusal page",
                proxy.refusal_rate.per_minute()
            ),
            refusal: Box::new(error),
        };
        return proxy.refuse(event, &throttled, what, started);
    }
    proxy.record_refusal(event, &error, what, started);
    let limits = generation.config.limits;
    let page = page::Page { error, host, port };
    let task_proxy = proxy.clone();
    let what = what.to_string();
    proxy.tasks.spawn(async move {
        match hyper::upgrade::on(req).await {
            Ok(upgraded) => page::serve(task_proxy, upgraded, page, limits).await,
            Err(e) => tracing::debug!("{what}: the client left before its refusal page: {e}"),
        }
    });
    // SECURITY: a 200 here opens nothing: the upgraded connection is served by
    // `page::serve` alone, which answers the refusal and has no path upstream.
    Response::new(empty())
}

/// Whose budget a refusal page comes from: the proxy-auth user or session, else the
/// peer's address without its port (a new connection must not mean a new budget).
fn budget_key(client: &ClientInfo) -> String {
    match &client.user {
        Some(user) => user.clone(),
        None => client.peer.ip().to_string(),
    }
}
