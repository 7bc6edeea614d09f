//! The proxy: listener, CONNECT tunnels and plain-HTTP forwarding.
//!
//! Per connection: [`server`] accepts and serves HTTP/1.1 with hyper; [`service`]
//! dispatches each request: `CONNECT` to [`connect`] (policy, upstream connect, then
//! [`tunnel`] after the upgrade), absolute-form `http://` to [`forward`]. Every path to
//! the network goes through [`upstream::Connector`]; every refusal through [`respond`].

pub mod connect;
pub mod forward;
pub mod headers;
pub mod metered;
pub mod respond;
pub mod server;
pub mod service;
pub mod tunnel;
pub mod upstream;

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::audit::AuditLog;
use crate::config::Config;
use crate::policy::Policy;
pub use server::run;
use upstream::Connector;

/// Errors inside streamed bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body type of every request and response keygate produces: streamed, never buffered.
pub type Body = BoxBody<Bytes, BoxError>;

/// How long an idle pooled upstream connection is kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Who is talking to keygate: the proxy-auth username if given, else the peer address.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    /// The TCP peer.
    pub peer: SocketAddr,
    /// The `Proxy-Authorization: Basic` username, if any (never the password).
    pub user: Option<String>,
}

impl fmt::Display for ClientInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.user {
            Some(user) => f.write_str(user),
            None => write!(f, "{}", self.peer),
        }
    }
}

/// Everything connections share. Built once; immutable but for the task tracker.
pub struct Proxy {
    /// The effective configuration.
    pub config: Arc<Config>,
    /// The host policy.
    pub policy: Arc<Policy>,
    /// Where decisions are recorded.
    pub audit: AuditLog,
    /// Opens upstream connections (policy-checked).
    pub connector: Connector,
    /// Pooling client for plain-HTTP forwarding.
    pub client: Client<Connector, Body>,
    /// Every connection and tunnel task, so shutdown can wait for them.
    pub tasks: TaskTracker,
    /// Cancelled when shutdown starts.
    pub shutdown: CancellationToken,
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy").finish_non_exhaustive()
    }
}

impl Proxy {
    /// Assembles a proxy from its collaborators; binds nothing.
    pub fn new(config: Config, policy: Policy, audit: AuditLog) -> Arc<Proxy> {
        let config = Arc::new(config);
        let policy = Arc::new(policy);
        let connector = Connector::new(config.clone(), policy.clone());
        let client = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .set_host(false)
            .build(connector.clone());
        Arc::new(Proxy {
            config,
            policy,
            audit,
            connector,
            client,
            tasks: TaskTracker::new(),
            shutdown: CancellationToken::new(),
        })
    }
}

impl Proxy {
    /// Logs and audits a refusal or failure, and builds the response for the client.
    /// `what` names the request for the body, e.g. "CONNECT evil.example:443".
    pub fn refuse(
        &self,
        mut event: crate::audit::Event,
        err: &respond::ProxyError,
        what: &str,
        started: std::time::Instant,
    ) -> http::Response<Body> {
        err.log(&format!("{what} from {}", event.client));
        event.decision = crate::audit::Verdict::Deny;
        event.reason = Some(err.to_string());
        event.status = Some(err.status().as_u16());
        event.ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.audit.record(event);
        err.to_response(what)
    }
}
