//! `keygate start`: run the proxy in the foreground until SIGINT/SIGTERM.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
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
        let (home, flags) = (home.clone(), flags.clone());
        let loaded = tokio::task::spawn_blocking(move || load_generation(&home, flags)).await;
        match loaded {
            Ok(Ok((config, policy, secrets))) => {
                if config.listen != listen {
                    tracing::warn!(
                        "listen changed to {}; it takes effect on restart",
                        config.listen
                    );
                }
                let count = count_of(secrets.iter().count(), "secret", "secrets");
                match proxy.reload(config, policy, secrets) {
                    Ok(()) => {
                        tracing::info!("reloaded the configuration and {count} (SIGHUP)")
                    }
                    Err(e) => {
                        tracing::error!("reload failed, keeping the previous configuration: {e}")
                    }
                }
            }
            Ok(Err(failure)) => {
                tracing::error!(
                    "reload failed, keeping the previous configuration: {:#}",
                    failure.error
                );
            }
            Err(e) => tracing::error!("reload failed: {e}"),
        }
    }
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
