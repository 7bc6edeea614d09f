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

use crate::audit::Event;
use crate::config::Refusals;
use crate::policy::Host;
use crate::proxy::connect::hello::Hello;
use crate::proxy::respond::{ProxyError, empty};
use crate::proxy::{Body, ClientInfo, Proxy};

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

/// A refusal page for a tunnel closed after its `200` (the ClientHello's SNI names
/// another host than the CONNECT: domain fronting; or no TLS at all), when the
/// configuration, the CA and the client's budget allow one. Its leaf is for the name
/// the client will check: the SNI name, else the CONNECT host.
pub fn page_for_tunnel(
    proxy: &Proxy,
    client: &ClientInfo,
    hello: &Hello,
    code: &'static str,
    why: String,
    host: &Host,
    port: u16,
) -> Option<page::Page> {
    let advice = match hello {
        Hello::Tls { .. } => format!(
            "Connect to the host you mean: the TLS server name must be the CONNECT host ({host}). keygate refuses a tunnel whose name differs (domain fronting)."
        ),
        Hello::NotTls => format!(
            "keygate tunnels only TLS. Send plain HTTP to the proxy as an absolute URL (http://{host}/..., what HTTP_PROXY does), not through CONNECT."
        ),
        _ => return None,
    };
    let leaf_host = match hello {
        Hello::Tls { sni: Some(sni) } => Host::parse(sni).ok()?,
        _ => host.clone(),
    };
    let usable = proxy.current().config.refusals == Refusals::Tls
        && proxy.refusal_configs.is_some()
        && proxy
            .refusal_rate
            .admit(&budget_key(client), Instant::now());
    usable.then_some(page::Page {
        error: ProxyError::Forbidden { code, why, advice },
        host: leaf_host,
        port,
    })
}

/// Whose budget a refusal page comes from: the proxy-auth user or session, else the
/// peer's address without its port (a new connection must not mean a new budget).
fn budget_key(client: &ClientInfo) -> String {
    match &client.user {
        Some(user) => user.clone(),
        None => client.peer.ip().to_string(),
    }
}
