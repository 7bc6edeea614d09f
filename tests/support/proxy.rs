//! Runs keygate in-process (habit 1): a `Config` built the way the binary builds it, a
//! listener on 127.0.0.1:0, a stop handle, and the audit log captured as JSON values.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keygate::audit::{AuditLog, AuditWriter};
use keygate::ca::Ca;
use keygate::config::{Config, Intercept, Overrides, RawConfig, ResolveRule};
use keygate::home::Home;
use keygate::policy::{HostPattern, Mode};
use keygate::proxy::{self, Proxy};
use keygate::secrets::{Binding, SecretSet};
use rustls_pki_types::CertificateDer;
use serde_json::Value;
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use super::secret::TestSecret;
use super::{WAIT, trace, within};

/// Collects what the audit writer thread writes, and wakes waiters on every write.
#[derive(Clone)]
struct Sink {
    bytes: Arc<Mutex<Vec<u8>>>,
    writes: Arc<watch::Sender<u64>>,
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.bytes.lock().expect("sink").extend_from_slice(buf);
        self.writes.send_modify(|n| *n += 1);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Sink {
    /// Every complete line written so far, parsed.
    fn events(&self) -> Vec<Value> {
        let bytes = self.bytes.lock().expect("sink").clone();
        let text = String::from_utf8(bytes).expect("the audit log is UTF-8");
        let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
        complete
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("audit line {l:?}: {e}")))
            .collect()
    }
}

/// How a test proxy is configured: keygate.yaml text plus `keygate start` flags.
/// The network mode defaults to `custom`, so only what a test allows is allowed.
pub struct ProxyBuilder {
    yaml: String,
    flags: Overrides,
    secrets: Vec<Binding>,
    proxy_auth: Option<String>,
    store: Option<Arc<dyn keygate::secrets::SecretStore>>,
    phantoms: Option<PathBuf>,
    tokens_file: Option<PathBuf>,
}

impl ProxyBuilder {
    /// Mode `custom`, nothing allowed, no keygate.yaml.
    pub fn new() -> ProxyBuilder {
        ProxyBuilder {
            yaml: String::new(),
            flags: Overrides {
                mode: Some(Mode::Custom),
                ..Overrides::default()
            },
            secrets: Vec::new(),
            proxy_auth: None,
            store: None,
            phantoms: None,
            tokens_file: None,
        }
    }

    /// Requires proxy credentials `user:password`, as a non-loopback listener does.
    pub fn proxy_auth(mut self, credentials: &str) -> ProxyBuilder {
        self.proxy_auth = Some(credentials.to_string());
        self
    }

    /// Registers `secret` (value loaded, as `keygate start` loads it from the keyring).
    /// A proxy with a secret gets a CA of its own, in a temporary home.
    pub fn secret(mut self, secret: &TestSecret) -> ProxyBuilder {
        self.secrets.push(secret.binding());
        self
    }

    /// The keyring a rotated refresh token is written back to.
    pub fn store(mut self, store: Arc<dyn keygate::secrets::SecretStore>) -> ProxyBuilder {
        self.store = Some(store);
        self
    }

    /// Where `google` secrets' phantom accounts are (`$KEYGATE_HOME/phantoms`).
    pub fn phantoms(mut self, dir: &Path) -> ProxyBuilder {
        self.phantoms = Some(dir.to_path_buf());
        self
    }

    /// Where minted tokens' expiries are noted (`$KEYGATE_HOME/tokens.json`).
    pub fn tokens_file(mut self, path: &Path) -> ProxyBuilder {
        self.tokens_file = Some(path.to_path_buf());
        self
    }

    /// `--intercept all` (the proxy gets a CA of its own).
    pub fn intercept_all(mut self) -> ProxyBuilder {
        self.flags.intercept = Some(Intercept::All);
        self
    }

    /// `--upstream-ca FILE`.
    pub fn upstream_ca(mut self, path: &Path) -> ProxyBuilder {
        self.flags.upstream_ca.push(path.to_path_buf());
        self
    }

    /// keygate.yaml contents.
    pub fn yaml(mut self, text: &str) -> ProxyBuilder {
        self.yaml = text.to_string();
        self
    }

    /// `--mode`.
    pub fn mode(mut self, mode: Mode) -> ProxyBuilder {
        self.flags.mode = Some(mode);
        self
    }

    /// `--allow PATTERN`.
    pub fn allow(mut self, pattern: &str) -> ProxyBuilder {
        self.flags
            .allow
            .push(pattern.parse().expect("allow pattern"));
        self
    }

    /// `--deny PATTERN`.
    pub fn deny(mut self, pattern: &str) -> ProxyBuilder {
        let pattern: HostPattern = pattern.parse().expect("deny pattern");
        self.flags.deny.push(pattern);
        self
    }

    /// `--resolve HOST:PORT=target`.
    pub fn resolve(mut self, host_port: &str, target: SocketAddr) -> ProxyBuilder {
        let rule: ResolveRule = format!("{host_port}={target}")
            .parse()
            .expect("resolve rule");
        self.flags.resolve.push(rule);
        self
    }

    /// The configuration, policy and secrets this builder describes.
    fn generation(self) -> (Config, keygate::policy::Policy, SecretSet) {
        let raw = RawConfig::parse(&self.yaml, Path::new("keygate.yaml")).expect("keygate.yaml");
        let config = Config::build(raw, None, self.flags).expect("config");
        let secrets = SecretSet::new(self.secrets);
        let policy = config.policy(secrets.host_patterns());
        (config, policy, secrets)
    }

    /// Builds the configuration and serves it on 127.0.0.1:0.
    pub async fn start(self) -> TestProxy {
        let proxy_auth = self.proxy_auth.clone();
        let (store, phantoms) = (self.store.clone(), self.phantoms.clone());
        let tokens_file = self.tokens_file.clone();
        let (config, policy, secrets) = self.generation();
        let ca = (config.intercept == Intercept::All || !secrets.is_empty()).then(TestCa::new);
        let (watch_tx, _) = watch::channel(0);
        let sink = Sink {
            bytes: Arc::default(),
            writes: Arc::new(watch_tx),
        };
        let (audit, writer) = AuditLog::to_writer(sink.clone());
        let mut builder = Proxy::builder(config, policy, audit).secrets(secrets);
        if let Some(store) = store {
            builder = builder.store(store);
        }
        if let Some(dir) = phantoms {
            builder = builder.phantoms(dir);
        }
        if let Some(path) = tokens_file {
            builder = builder.tokens_file(path);
        }
        if let Some(ca) = &ca {
            let loaded = Ca::load(&Home::at(ca.home.path())).expect("load the test CA");
            builder = builder.ca(Arc::new(loaded));
        }
        if let Some(credentials) = &proxy_auth {
            let value =
                keygate::secrets::SecretValue::new(credentials.clone()).expect("credentials");
            builder = builder.proxy_auth(keygate::proxy::listener::auth::ProxyAuth::new(value));
        }
        let proxy = builder.build().expect("proxy");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stop_rx.await;
        };
        let handle = proxy.clone();
        let run = tokio::spawn(proxy::run(proxy, listener, shutdown));
        TestProxy {
            handle,
            addr,
            stop: Some(stop_tx),
            run,
            result: None,
            sink,
            ca,
            _writer: writer,
        }
    }
}

/// keygate's CA in a temporary home, created the way `keygate start` creates it.
pub struct TestCa {
    home: TempDir,
    /// The CA certificate (DER).
    pub der: CertificateDer<'static>,
}

impl TestCa {
    fn new() -> TestCa {
        // Interception tests check keygate's logs: capture them from the start.
        trace::install();
        let home = tempfile::tempdir().expect("temporary home");
        let (ca, created) = Ca::load_or_create(&Home::at(home.path())).expect("create the CA");
        assert!(created, "a fresh home has no CA");
        TestCa {
            der: ca.cert_der().clone(),
            home,
        }
    }

    /// `ca/keygate-ca.pem`, what clients of keygate trust.
    pub fn pem_path(&self) -> PathBuf {
        Home::at(self.home.path()).ca_cert()
    }
}

/// A running in-process proxy. Dropping it stops it.
pub struct TestProxy {
    handle: Arc<Proxy>,
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    run: JoinHandle<io::Result<()>>,
    result: Option<io::Result<()>>,
    sink: Sink,
    ca: Option<TestCa>,
    _writer: AuditWriter,
}

impl TestProxy {
    /// keygate's CA (only proxies with a secret or `intercept: all` have one).
    pub fn ca(&self) -> &TestCa {
        self.ca.as_ref().expect("this proxy has no CA")
    }

    /// Replaces its configuration, policy and secrets with `next`'s (what SIGHUP does in
    /// the binary; the CA, listener and proxy credentials stay).
    pub fn reload(&self, next: ProxyBuilder) {
        let (config, policy, secrets) = next.generation();
        self.handle
            .reload(config, policy, secrets)
            .expect("a valid reload");
    }

    /// Sends the stop signal (what SIGTERM does in the binary).
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Whether `run` returns within `limit`. For negative checks ("still waiting"):
    /// a slow machine can only make such a check miss a bug, never fail a good proxy.
    pub async fn returns_within(&mut self, limit: Duration) -> bool {
        if self.result.is_some() {
            return true;
        }
        match tokio::time::timeout(limit, &mut self.run).await {
            Ok(result) => {
                self.result = Some(result.expect("proxy task"));
                true
            }
            Err(_) => false,
        }
    }

    /// Sends the stop signal, waits for `run` to return (bounded), and returns its result.
    pub async fn join(mut self) -> io::Result<()> {
        self.stop();
        if let Some(result) = self.result.take() {
            return result;
        }
        let run = &mut self.run;
        within("proxy::run to return", run)
            .await
            .expect("proxy task")
    }

    /// The audit events written so far.
    pub fn events(&self) -> Vec<Value> {
        self.sink.events()
    }

    /// Waits (bounded) until `n` audit events of `kind` satisfy `pred`; returns them all.
    pub async fn events_n(
        &self,
        kind: &str,
        n: usize,
        pred: impl Fn(&Value) -> bool,
    ) -> Vec<Value> {
        let mut writes = self.sink.writes.subscribe();
        let found = tokio::time::timeout(WAIT, async {
            loop {
                let found: Vec<Value> = self
                    .sink
                    .events()
                    .into_iter()
                    .filter(|e| e["kind"] == kind && pred(e))
                    .collect();
                if found.len() >= n {
                    return found;
                }
                writes.changed().await.expect("audit sink");
            }
        })
        .await;
        found.unwrap_or_else(|_| {
            panic!(
                "fewer than {n} matching `{kind}` audit events within {}s; events: {:#?}",
                WAIT.as_secs(),
                self.events()
            )
        })
    }

    /// Waits (bounded) for an audit event of `kind` for which `pred` holds.
    pub async fn event(&self, kind: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.events_n(kind, 1, pred).await.swap_remove(0)
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The `reason` of an audit event, or "".
pub fn reason(event: &Value) -> &str {
    event["reason"].as_str().unwrap_or("")
}
