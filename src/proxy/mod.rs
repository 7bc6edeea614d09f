//! The proxy: one folder per stage, in the order a request passes them.
//!
//! * [`listener`]: the accept loop and graceful shutdown; [`listener::service`] checks
//!   [`listener::auth`] and dispatches each request: `CONNECT` to [`connect`],
//!   absolute-form `http://` to [`exchange::forward`].
//! * [`connect`]: policy, upstream connect, then the 200; after it a
//!   [`connect::tunnel`], an [`connect::intercept`]ed connection (TLS terminated with a
//!   leaf from [`connect::tls`]), or, for a refused CONNECT, a [`connect::refusal`] page.
//! * [`exchange`]: one request on an intercepted connection (a bound host's compressed
//!   response [`exchange::decode`]d so that scrub reads it); [`exchange::forward`] for
//!   plain HTTP; the [`exchange::selftest`] origin on either path.
//! * [`upstream`]: every path to the network goes through [`upstream::Connector`];
//!   [`upstream::tls`] adds the verified handshake.
//!
//! Below the stages, shared by several of them (so their imports never run in a
//! circle): [`respond`] (what keygate answers when it does not forward: every refusal
//! goes through it), [`headers`] (head limits, hop-by-hop headers) and [`io`]
//! (byte-level wrappers). This file holds what every stage uses: the [`Proxy`], its
//! reloadable [`Generation`], the [`Body`] type and the [`ClientInfo`].

pub mod approvals;
pub mod connect;
pub mod exchange;
pub mod headers;
pub mod io;
pub mod listener;
pub mod respond;
pub mod stats;
pub mod upstream;

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::addon::Pipeline;
use crate::audit::AuditLog;
use crate::ca::LeafIssuer;
use crate::config::{Config, Intercept};
use crate::policy::{Host, Policy};
use crate::secrets::SecretSet;
use connect::refusal;
use connect::tls::{LEAF_CACHE_HOSTS, ServerConfigs};
use exchange::selftest;
use listener::auth;
pub use listener::run;
#[cfg(unix)]
pub use listener::run_unix;
use upstream::Connector;
use upstream::credentials::{CredentialEnv, Credentials, TOKEN_TIMEOUT, UpstreamTransport};
use upstream::tls::{self, TlsConnector, TlsSetupError};

/// Errors inside streamed bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body type of every request and response keygate produces: streamed, never buffered.
pub type Body = BoxBody<Bytes, BoxError>;

/// How long shutdown waits for in-flight requests and tunnels before closing them.
/// Here, below [`listener`], [`exchange`] and [`connect::tunnel`], so that their imports
/// do not run in a circle.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How long an idle pooled upstream connection is kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Most idle pooled upstream connections kept per host (busy ones are not limited).
const POOL_MAX_IDLE_PER_HOST: usize = 32;

/// Who is talking to keygate: the proxy-auth username if given, else the peer address.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    /// The TCP peer.
    pub peer: SocketAddr,
    /// The `Proxy-Authorization: Basic` username, if any (never the password).
    pub user: Option<String>,
    /// The connection's slot under `limits.max_connections`, held by every task that
    /// serves this client (tunnels and intercepted connections outlive the HTTP phase).
    pub slot: Option<Arc<OwnedSemaphorePermit>>,
}

impl fmt::Display for ClientInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.user {
            Some(user) => f.write_str(user),
            None => write!(f, "{}", self.peer),
        }
    }
}

/// The `keygate run` session a proxy serves: its clients are recorded as
/// `session:<id>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionTag {
    /// The session's id (12 hex digits).
    pub id: String,
}

impl SessionTag {
    /// The audit `client` of the session's requests.
    pub fn client(&self) -> String {
        format!("session:{}", self.id)
    }
}

/// What a reload replaces: configuration, policy, secrets, and the upstream clients
/// built from them. A connection keeps the generation it started with.
pub struct Generation {
    /// The effective configuration.
    pub config: Arc<Config>,
    /// The host policy.
    pub policy: Arc<Policy>,
    /// Registered secrets, values loaded once (at start or reload).
    pub secrets: Arc<SecretSet>,
    /// Opens upstream connections (policy-checked).
    pub connector: Connector,
    /// Pooling client for plain-HTTP forwarding.
    pub client: Client<Connector, Body>,
    /// Pooling client for intercepted requests (verified TLS, h2 or HTTP/1.1 by ALPN).
    pub tls_client: Client<TlsConnector, Body>,
    /// HTTP/1.1-only pooling client for WebSocket upgrades on intercepted connections.
    pub upgrade_client: Client<TlsConnector, Body>,
    /// Opens the HTTP/1.1 connections an intercepted client connection holds for its
    /// upstream ([`upstream::owned`]).
    pub h1_connector: TlsConnector,
    /// Token caches, real AWS keys and phantom accounts of the secrets of kinds other
    /// than `static` (issue 15).
    pub credentials: Credentials,
}

impl fmt::Debug for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Generation")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Generation {
    fn build(
        config: Config,
        policy: Policy,
        secrets: SecretSet,
        env: &CredentialEnv,
        stats: &Arc<stats::Stats>,
        previous: Option<&Generation>,
    ) -> Result<Generation, TlsSetupError> {
        let roots = tls::load_extra_roots(&config.upstream_ca)?;
        let config = Arc::new(config);
        let policy = Arc::new(policy);
        let connector = Connector::new(config.clone(), policy.clone(), stats.clone());
        let tls_connector = TlsConnector::new(
            connector.clone(),
            tls::client_config(&roots, &[b"h2", b"http/1.1"])?,
        );
        let h1_connector = TlsConnector::new(
            connector.clone(),
            tls::client_config(&roots, &[b"http/1.1"])?,
        );
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_max_idle_per_host(POOL_MAX_IDLE_PER_HOST);
        let tls_client = builder.clone().build(tls_connector);
        let transport = Arc::new(UpstreamTransport::new(tls_client.clone(), TOKEN_TIMEOUT));
        let credentials =
            Credentials::build(&secrets, env, transport, previous.map(|p| &p.credentials));
        Ok(Generation {
            client: builder.clone().set_host(false).build(connector.clone()),
            tls_client,
            upgrade_client: builder.build(h1_connector.clone()),
            h1_connector,
            credentials,
            secrets: Arc::new(secrets),
            config,
            policy,
            connector,
        })
    }

    /// Whether a CONNECT to `host:port` is intercepted (TLS terminated) or tunnelled.
    /// keygate's own self-test origin is always intercepted: it is answered locally.
    pub fn should_intercept(&self, host: &Host, port: u16) -> bool {
        self.config.intercept == Intercept::All
            || self.secrets.has_secret_for(host, port)
            || selftest::is_self(host)
    }
}

/// Everything connections share.
pub struct Proxy {
    /// The current generation. A std RwLock: held only to clone an `Arc`.
    current: RwLock<Arc<Generation>>,
    /// Where decisions are recorded.
    pub audit: AuditLog,
    /// Leaf certificates for intercepted hosts; `None` when no CA was given.
    pub server_configs: Option<ServerConfigs>,
    /// Leaf certificates for refusal pages (`refusals: tls`); `None` without a CA.
    pub refusal_configs: Option<ServerConfigs>,
    /// Each client's budget of refusal pages (`limits.refusal_pages_per_minute`, fixed
    /// at start like `max_connections`).
    pub refusal_rate: refusal::rate::RefusalRate,
    /// The request/response addons.
    pub pipeline: Pipeline,
    /// Every connection and tunnel task, so shutdown can wait for them.
    pub tasks: TaskTracker,
    /// Cancelled when shutdown starts.
    pub shutdown: CancellationToken,
    /// One permit per client connection being served (`limits.max_connections`, fixed
    /// at start: a reload does not resize it).
    pub connections: Arc<Semaphore>,
    /// Bumped by every successful [`Proxy::reload`]: open tunnels re-check their host
    /// against the new policy (a newly denied host's tunnels close).
    pub reloads: tokio::sync::watch::Sender<u64>,
    /// Required proxy credentials; `None` on loopback listeners.
    pub auth: Option<auth::ProxyAuth>,
    /// The session this proxy serves, if it is a `keygate run` session's.
    pub session: Option<SessionTag>,
    /// What the proxy measures about itself (`/metrics`).
    pub stats: Arc<stats::Stats>,
    /// Requests held while a human is asked (`network.ask`).
    pub approvals: approvals::Approvals,
    /// The keyring and phantom files the credentials of each generation use.
    credential_env: CredentialEnv,
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy").finish_non_exhaustive()
    }
}

/// Builds a [`Proxy`] from its collaborators; binds nothing.
pub struct ProxyBuilder {
    config: Config,
    policy: Policy,
    audit: AuditLog,
    issuer: Option<Arc<dyn LeafIssuer>>,
    refusal_issuer: Option<Arc<dyn LeafIssuer>>,
    secrets: SecretSet,
    pipeline: Pipeline,
    auth: Option<auth::ProxyAuth>,
    session: Option<SessionTag>,
    credential_env: CredentialEnv,
}

impl ProxyBuilder {
    /// The keyring, where a rotated OAuth2 refresh token is written back. Default: none
    /// (rotated tokens are kept in memory only).
    pub fn store(mut self, store: Arc<dyn crate::secrets::SecretStore>) -> ProxyBuilder {
        self.credential_env.store = Some(store);
        self
    }

    /// `$KEYGATE_HOME/phantoms`, where `google` secrets' phantom accounts are.
    pub fn phantoms(mut self, dir: std::path::PathBuf) -> ProxyBuilder {
        self.credential_env.phantoms = Some(dir);
        self
    }

    /// `$KEYGATE_HOME/tokens.json`, where each minted token's expiry is noted for
    /// `keygate secret list`. Default: not noted.
    pub fn tokens_file(mut self, path: std::path::PathBuf) -> ProxyBuilder {
        self.credential_env.tokens_file = Some(path);
        self
    }

    /// Serves a `keygate run` session: every client is `session:<id>`.
    pub fn session(mut self, tag: SessionTag) -> ProxyBuilder {
        self.session = Some(tag);
        self
    }

    /// The CA that mints leaves for intercepted hosts. Without one, keygate only
    /// tunnels and forwards (a host that needs interception is refused with 500).
    pub fn ca(mut self, issuer: Arc<dyn LeafIssuer>) -> ProxyBuilder {
        self.issuer = Some(issuer);
        self
    }

    /// The CA that signs refusal pages' leaves (`refusals: tls`). Default: the CA of
    /// [`ProxyBuilder::ca`]. A session gives its refusal CA here, because its own CA is
    /// name-constrained to the hosts it intercepts.
    pub fn refusal_ca(mut self, issuer: Arc<dyn LeafIssuer>) -> ProxyBuilder {
        self.refusal_issuer = Some(issuer);
        self
    }

    /// The registered secrets (values loaded). Default: none.
    pub fn secrets(mut self, secrets: SecretSet) -> ProxyBuilder {
        self.secrets = secrets;
        self
    }

    /// Requires these proxy credentials on every request (for non-loopback listeners).
    pub fn proxy_auth(mut self, auth: auth::ProxyAuth) -> ProxyBuilder {
        self.auth = Some(auth);
        self
    }

    /// Replaces the built-in addon pipeline.
    pub fn pipeline(mut self, pipeline: Pipeline) -> ProxyBuilder {
        self.pipeline = pipeline;
        self
    }

    /// Assembles the proxy; fails when `upstream.ca` cannot be read.
    pub fn build(mut self) -> Result<Arc<Proxy>, TlsSetupError> {
        let stats = Arc::new(stats::Stats::new(self.config.admin_metrics));
        if let Some(store) = self.credential_env.store.take() {
            self.credential_env.store =
                Some(Arc::new(stats::CountedStore::new(store, stats.clone())));
        }
        let max_connections = self.config.limits.max_connections;
        let refusal_pages = self.config.limits.refusal_pages_per_minute;
        let refusal_configs = self
            .refusal_issuer
            .or_else(|| self.issuer.clone())
            .map(|i| ServerConfigs::new(i, refusal::REFUSAL_LEAF_CACHE_HOSTS));
        let generation = Generation::build(
            self.config,
            self.policy,
            self.secrets,
            &self.credential_env,
            &stats,
            None,
        )?;
        Ok(Arc::new(Proxy {
            connections: Arc::new(Semaphore::new(max_connections)),
            reloads: tokio::sync::watch::Sender::new(0),
            auth: self.auth,
            session: self.session,
            credential_env: self.credential_env,
            stats,
            approvals: approvals::Approvals::default(),
            current: RwLock::new(Arc::new(generation)),
            server_configs: self.issuer.map(|i| ServerConfigs::new(i, LEAF_CACHE_HOSTS)),
            refusal_configs,
            refusal_rate: refusal::rate::RefusalRate::new(refusal_pages),
            pipeline: self.pipeline,
            audit: self.audit,
            tasks: TaskTracker::new(),
            shutdown: CancellationToken::new(),
        }))
    }
}

impl Proxy {
    /// Starts building a proxy: config, host policy (include the secret hosts, see
    /// [`Config::policy`]) and the audit log are required.
    pub fn builder(config: Config, policy: Policy, audit: AuditLog) -> ProxyBuilder {
        ProxyBuilder {
            config,
            policy,
            audit,
            issuer: None,
            refusal_issuer: None,
            secrets: SecretSet::default(),
            pipeline: Pipeline::default(),
            auth: None,
            session: None,
            credential_env: CredentialEnv::default(),
        }
    }

    /// A proxy without CA or secrets: it tunnels and forwards only.
    pub fn new(
        config: Config,
        policy: Policy,
        audit: AuditLog,
    ) -> Result<Arc<Proxy>, TlsSetupError> {
        Proxy::builder(config, policy, audit).build()
    }

    /// The current generation (configuration, policy, secrets, upstream clients).
    pub fn current(&self) -> Arc<Generation> {
        match self.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replaces configuration, policy and secrets. New connections use them, and so does
    /// the next request of every open intercepted connection (a binding removed or a
    /// host denied is revoked at once, `revoked`); open tunnels to a host the new
    /// policy refuses are closed. The listen address and the CA are not reloaded. On
    /// error nothing changes.
    pub fn reload(
        &self,
        config: Config,
        policy: Policy,
        secrets: SecretSet,
    ) -> Result<(), TlsSetupError> {
        let previous = self.current();
        let next = Arc::new(Generation::build(
            config,
            policy,
            secrets,
            &self.credential_env,
            &self.stats,
            Some(&previous),
        )?);
        match self.current.write() {
            Ok(mut guard) => *guard = next,
            Err(poisoned) => *poisoned.into_inner() = next,
        }
        self.reloads.send_modify(|n| *n += 1);
        Ok(())
    }

    /// Answers a request to the self-test origin, and audits it.
    pub fn self_test(
        &self,
        mut event: crate::audit::Event,
        parts: &http::request::Parts,
        tls: bool,
        started: std::time::Instant,
    ) -> http::Response<Body> {
        let ca_pem = self.server_configs.as_ref().map(|c| c.ca_pem());
        let response = selftest::respond(
            &parts.method,
            parts.uri.path(),
            parts.uri.query(),
            tls,
            ca_pem,
        );
        event.reason = Some("keygate self-test origin".into());
        event.status = Some(response.status().as_u16());
        event.ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.audit.record(event);
        response
    }
}

impl Proxy {
    /// `decided`, or, for a refusal, what a human answers when `network.ask` holds the
    /// request ([`approvals`]).
    pub async fn or_ask(
        &self,
        generation: &Generation,
        decided: crate::policy::Decision,
        client: &ClientInfo,
        host: &Host,
        port: u16,
        what: &str,
    ) -> crate::policy::Decision {
        let refusal = match decided {
            Ok(allowed) => return Ok(allowed),
            Err(refusal) => refusal,
        };
        let config = &generation.config;
        self.approvals
            .decide(
                config.ask,
                config.ask_timeout,
                &client.to_string(),
                host,
                port,
                what,
                refusal,
            )
            .await
    }

    /// Logs and audits a refusal or failure, and builds the response for the client.
    /// `what` names the request for the body, e.g. "CONNECT evil.example:443".
    pub fn refuse(
        &self,
        event: crate::audit::Event,
        err: &respond::ProxyError,
        what: &str,
        started: std::time::Instant,
    ) -> http::Response<Body> {
        self.record_refusal(event, err, what, started);
        err.to_response(what)
    }

    /// Logs and audits a refusal or failure whose answer is sent some other way (a
    /// refusal page).
    pub fn record_refusal(
        &self,
        mut event: crate::audit::Event,
        err: &respond::ProxyError,
        what: &str,
        started: std::time::Instant,
    ) {
        err.log(&format!("{what} from {}", event.client));
        event.decision = crate::audit::Verdict::Deny;
        event.reason = Some(err.to_string());
        event.status = Some(err.status().as_u16());
        event.allow = err.allow_pattern().map(str::to_string);
        event.ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.audit.record(event);
    }
}
