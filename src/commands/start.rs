//! `keygate start`: run the proxy in the foreground until SIGINT/SIGTERM.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use keygate::admin::Admin;
use keygate::admin::observe::Observed;
use keygate::audit::AuditLog;
use keygate::config::{Config, Overrides};
use keygate::home::Home;
use keygate::policy::Policy;
use keygate::proxy::listener::auth::ProxyAuth;
use keygate::proxy::{self, Proxy};
use keygate::secrets::{Binding, SecretSet, SecretStore};
use keygate::text::count_of;

use super::{Failure, load_config, overrides};
use crate::cli::StartArgs;

/// How long exit waits for the audit log to reach the disk.
const AUDIT_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

pub fn run(home: &Home, args: StartArgs) -> Result<(), Failure> {
    let flags = overrides(args.listen, args.policy);
    let (config, bindings) = load_settings(home, flags.clone())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let listen = config.listen;
    // The port first: a second `keygate start` on a busy port fails at once, having
    // read no secret from the keyring and written no file.
    let listener = runtime.block_on(bind(listen))?;
    let secrets = load_secrets(bindings)?;
    let policy = config.policy(secrets.host_patterns());
    home.ensure_dirs()
        .with_context(|| format!("creating {}", home.root().display()))?;
    let ca = super::ca::ensure_ca(home)?;
    super::tighten_home(home)?;
    let (audit, writer) = AuditLog::open(&home.audit_log(), config.audit)
        .with_context(|| format!("opening {}", home.audit_log().display()))?;
    let observed = Arc::new(Observed::new(config.admin_metrics));
    let audit = audit.with_observer(observed.clone());
    let builder = Proxy::builder(config, policy, audit.clone())
        .ca(Arc::new(ca))
        .secrets(secrets);
    let mut builder = super::with_credentials(builder, home);
    if let Some(credentials) = super::credentials_for(listen)? {
        builder = builder.proxy_auth(ProxyAuth::new(credentials));
    }
    let proxy = builder.build().map_err(Failure::usage)?;
    let result = runtime.block_on(async {
        let addr = listener.local_addr()?;
        if !addr.ip().is_loopback() {
            eprintln!(
                "keygate: {addr} is not loopback, so proxy authentication is required (Basic, user `keygate`, password in the keyring); `keygate env` prints the proxy URL with it"
            );
        }
        // Signals are caught before "listening" is said: a script that sends one as soon
        // as it reads the line gets a reload or a graceful stop, not the default (exit).
        let hangups = hangups();
        let shutdown = shutdown_signal();
        eprintln!("keygate listening on http://{addr}");
        start_admin(home, &proxy, observed, &flags, (listen, addr));
        let reloads = tokio::spawn(reload_on_sighup(
            hangups,
            proxy.clone(),
            home.clone(),
            flags,
            listen,
        ));
        proxy::run(proxy, listener, shutdown).await?;
        reloads.abort();
        anyhow::Ok(())
    });
    if !audit.flush(AUDIT_FLUSH_TIMEOUT) {
        tracing::warn!("the audit log could not be flushed in time");
    }
    // Tasks still running after the grace period are dropped with the runtime; the
    // writer thread is not joined, since a dropped task may not have released its handle.
    runtime.shutdown_timeout(Duration::from_millis(100));
    drop(writer);
    result.map_err(Failure::from)
}

/// Serves the admin API on `$KEYGATE_HOME/admin.sock` until shutdown. A socket that
/// cannot be bound is a warning: the proxy serves on without it.
#[cfg(unix)]
fn start_admin(
    home: &Home,
    proxy: &Arc<Proxy>,
    observed: Arc<Observed>,
    flags: &Overrides,
    (listen, bound): (std::net::SocketAddr, std::net::SocketAddr),
) {
    let path = home.admin_socket();
    let listener = match keygate::admin::bind_unix(&path) {
        Ok(listener) => listener,
        Err(e) => {
            tracing::warn!("no admin API: cannot listen on {}: {e}", path.display());
            return;
        }
    };
    let (reload_proxy, reload_home, reload_flags) = (proxy.clone(), home.clone(), flags.clone());
    let reload: keygate::admin::Reload = Arc::new(move || {
        let (proxy, home, flags) = (
            reload_proxy.clone(),
            reload_home.clone(),
            reload_flags.clone(),
        );
        Box::pin(async move { reload_once(proxy, home, flags, listen, "admin API").await })
    });
    let admin = Arc::new(Admin {
        proxy: proxy.clone(),
        observed,
        reload,
        config_file: home.config_file(),
        tokens_file: Some(home.tokens_file()),
        rules_lock: tokio::sync::Mutex::new(()),
        listen: bound,
    });
    tracing::info!("admin API on {}", path.display());
    if let Some(tcp) = proxy.current().config.admin_listen {
        start_admin_tcp(tcp, admin.clone(), proxy);
    }
    proxy.tasks.spawn(keygate::admin::serve_unix(
        listener,
        path,
        admin,
        proxy.shutdown.clone(),
    ));
}

/// The admin API on TCP too (`admin.listen`), behind the token. A failure is a warning.
fn start_admin_tcp(addr: std::net::SocketAddr, admin: Arc<Admin>, proxy: &Arc<Proxy>) {
    let bound = std::net::TcpListener::bind(addr)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .and_then(tokio::net::TcpListener::from_std);
    let listener = match bound {
        Ok(listener) => listener,
        Err(e) => {
            tracing::warn!("no admin API on TCP: cannot listen on {addr}: {e}");
            return;
        }
    };
    let token = match super::admin_token() {
        Ok(token) => token,
        Err(failure) => {
            tracing::warn!("no admin API on TCP: its token: {:#}", failure.error);
            return;
        }
    };
    if let Ok(local) = listener.local_addr() {
        eprintln!("keygate admin API on http://{local} (the token: `keygate admin token`)");
    }
    proxy.tasks.spawn(keygate::admin::serve_tcp(
        listener,
        admin,
        token,
        proxy.shutdown.clone(),
    ));
}

#[cfg(not(unix))]
fn start_admin(_: &Home, _: &Arc<Proxy>, _: Arc<Observed>, _: &Overrides, _: std::net::SocketAddr) {
}

/// Binds the listener; when the address is taken, says by what (another keygate, or
/// which program) and what to do.
async fn bind(listen: std::net::SocketAddr) -> Result<tokio::net::TcpListener, Failure> {
    match tokio::net::TcpListener::bind(listen).await {
        Ok(listener) => Ok(listener),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            Err(anyhow::anyhow!(super::busy::in_use(listen).await).into())
        }
        Err(e) => Err(anyhow::anyhow!("cannot listen on {listen}: {e}").into()),
    }
}

/// Reads keygate.yaml (merged with `flags`) and secrets.yaml, not the keyring. Invalid
/// files are exit 2.
fn load_settings(home: &Home, flags: Overrides) -> Result<(Config, Vec<Binding>), Failure> {
    let config = load_config(home, flags)?;
    for ca in &config.upstream_ca {
        if !ca.is_file() {
            return Err(Failure::usage(anyhow::anyhow!(
                "--upstream-ca/upstream.ca: {} does not exist or is not a file",
                ca.display()
            )));
        }
    }
    let bindings = super::load_registry(home)?
        .bindings()
        .map_err(|e| Failure::usage(anyhow::anyhow!("{}: {e}", home.secrets_file().display())))?;
    Ok((config, bindings))
}

/// [`load_settings`] and every secret's value: what each reload needs. An unreachable
/// keyring is exit 1.
fn load_generation(home: &Home, flags: Overrides) -> Result<(Config, Policy, SecretSet), Failure> {
    let (config, bindings) = load_settings(home, flags)?;
    let secrets = load_secrets(bindings)?;
    let policy = config.policy(secrets.host_patterns());
    Ok((config, policy, secrets))
}

/// SIGHUP reloads keygate.yaml, secrets.yaml and the keyring values (off the async
/// threads); new connections use them, open ones finish with what they had. On any
/// error the previous configuration stays in force.
#[cfg(unix)]
async fn reload_on_sighup(
    hangups: Option<Hangups>,
    proxy: Arc<Proxy>,
    home: Home,
    flags: Overrides,
    listen: std::net::SocketAddr,
) {
    let Some(mut hangups) = hangups else {
        return;
    };
    while hangups.recv().await.is_some() {
        let _ = reload_once(proxy.clone(), home.clone(), flags.clone(), listen, "SIGHUP").await;
    }
}

/// Reloads keygate.yaml, secrets.yaml and the keyring values (off the async threads);
/// on any error the previous configuration stays in force. Logs the outcome and returns
/// it (`why` names what asked: SIGHUP, the admin API).
async fn reload_once(
    proxy: Arc<Proxy>,
    home: Home,
    flags: Overrides,
    listen: std::net::SocketAddr,
    why: &'static str,
) -> Result<String, String> {
    let loaded = tokio::task::spawn_blocking(move || load_generation(&home, flags)).await;
    let outcome = match loaded {
        Ok(Ok((config, policy, secrets))) => {
            if config.listen != listen {
                tracing::warn!(
                    "listen changed to {}; it takes effect on restart",
                    config.listen
                );
            }
            let count = count_of(secrets.iter().count(), "secret", "secrets");
            match proxy.reload(config, policy, secrets) {
                Ok(()) => Ok(format!("reloaded the configuration and {count}")),
                Err(e) => Err(format!(
                    "reload failed, keeping the previous configuration: {e}"
                )),
            }
        }
        Ok(Err(failure)) => Err({
            if failure
                .error
                .downcast_ref::<keygate::secrets::StoreError>()
                .is_some()
            {
                proxy.stats.keyring_error();
            }
            format!(
                "reload failed, keeping the previous configuration: {:#}",
                failure.error
            )
        }),
        Err(e) => Err(format!("reload failed: {e}")),
    };
    match &outcome {
        Ok(message) => tracing::info!("{message} ({why})"),
        Err(message) => tracing::error!("{message} ({why})"),
    }
    outcome
}

#[cfg(not(unix))]
async fn reload_on_sighup(
    _: Option<Hangups>,
    _: Arc<Proxy>,
    _: Home,
    _: Overrides,
    _: std::net::SocketAddr,
) {
}

/// The stream of SIGHUPs (none where there is no SIGHUP).
#[cfg(unix)]
type Hangups = tokio::signal::unix::Signal;
#[cfg(not(unix))]
type Hangups = ();

/// Starts listening for SIGHUP (inside the runtime); `None`, with a warning, when the
/// handler cannot be installed.
#[cfg(unix)]
fn hangups() -> Option<Hangups> {
    use tokio::signal::unix::{SignalKind, signal};
    signal(SignalKind::hangup())
        .inspect_err(|e| tracing::warn!("cannot listen for SIGHUP ({e}): reload is unavailable"))
        .ok()
}

#[cfg(not(unix))]
fn hangups() -> Option<Hangups> {
    None
}

/// Starts listening for SIGINT (Ctrl-C) and SIGTERM (inside the runtime) and returns
/// what completes on the first of them. Called before "listening" is printed, so a
/// signal sent as soon as that line appears stops keygate gracefully instead of taking
/// the signal's default action.
#[cfg(unix)]
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{Signal, SignalKind, signal};
    async fn first(signal: Option<Signal>) {
        match signal {
            Some(mut s) => {
                s.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    }
    let interrupt = signal(SignalKind::interrupt())
        .inspect_err(|e| tracing::warn!("cannot listen for SIGINT: {e}"))
        .ok();
    let terminate = signal(SignalKind::terminate())
        .inspect_err(|e| tracing::warn!("cannot listen for SIGTERM: {e}"))
        .ok();
    async move {
        tokio::select! {
            () = first(interrupt) => tracing::info!("SIGINT received"),
            () = first(terminate) => tracing::info!("SIGTERM received"),
        }
    }
}

#[cfg(not(unix))]
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("Ctrl-C received");
    }
}

/// Reads every registered secret's value once, before serving (never per request).
/// No registered secret: the keyring is not touched. Unreachable keyring: exit 1.
pub fn load_secrets(bindings: Vec<Binding>) -> Result<SecretSet, Failure> {
    if bindings.is_empty() {
        return Ok(SecretSet::default());
    }
    let store = super::open_store()?;
    let (secrets, missing) = SecretSet::load(bindings, &store)?;
    for m in &missing {
        tracing::warn!(
            "secret `{}` is registered but has no value in the {} keyring: requests that need it get 502; store it with `keygate secret add {}`",
            m.name,
            store.backend(),
            m.name
        );
    }
    if let Some(caveat) = super::caveat(&store) {
        tracing::info!("{caveat}");
    }
    let names: Vec<&str> = secrets
        .iter()
        .filter(|b| b.real.is_some())
        .map(|b| b.name.as_str())
        .collect();
    let listed = match names.is_empty() {
        true => String::new(),
        false => format!(": {}", names.join(", ")),
    };
    tracing::info!(
        "loaded {} from the {} keyring{listed}",
        count_of(names.len(), "secret", "secrets"),
        store.backend()
    );
    Ok(secrets)
}
