//! Command implementations: glue between the CLI and the library.

mod admin;
#[cfg(unix)]
mod ask;
mod audit;
mod busy;
mod ca;
mod check;
mod child;
mod doctor;
mod env;
mod log;
mod probe;
mod refusals;
mod run;
mod secret;
mod secret_kinds;
mod secret_list;
#[cfg(unix)]
mod session;
#[cfg(unix)]
mod session_phantoms;
mod start;
mod top;

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::anyhow;
use keygate::config::{Config, Overrides, RawConfig};
use keygate::home::Home;
use keygate::secrets::Registry;
use keygate::secrets::keyring::{self, KeyringStore};
use tracing_subscriber::EnvFilter;

use crate::cli::{Cli, Command, LogFormat, PolicyArgs};

/// A failed command: the message, and the exit code it maps to.
#[derive(Debug)]
pub struct Failure {
    /// 1 runtime failure, 2 usage or configuration error.
    pub code: u8,
    /// What went wrong, with context.
    pub error: anyhow::Error,
}

impl Failure {
    /// A usage or configuration error (exit 2).
    pub fn usage(error: impl Into<anyhow::Error>) -> Failure {
        Failure {
            code: 2,
            error: error.into(),
        }
    }
}

/// Anything else is a runtime failure (exit 1).
impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(error: E) -> Failure {
        Failure {
            code: 1,
            error: error.into(),
        }
    }
}

/// Runs the parsed command line; returns the exit code (the child's, for `run`).
pub fn run(cli: Cli) -> Result<u8, Failure> {
    if let Command::JailInit(args) = cli.command {
        return jail_init(args);
    }
    let home = Home::resolve(
        cli.home,
        std::env::var_os("KEYGATE_HOME").map(PathBuf::from),
    )
    .map_err(Failure::usage)?;
    let done = match cli.command {
        Command::Start(args) => start::run(&home, args),
        Command::Ca(cmd) => ca::run(&home, cmd),
        Command::Secret(cmd) => secret::run(&home, cmd),
        Command::Env { shell } => env::run(&home, shell),
        Command::Run(args) => return run::run(&home, args),
        Command::Check(args) => check::run(&home, args),
        Command::Doctor => doctor::run(&home),
        Command::Audit(cmd) => return audit::run(&home, cmd),
        Command::Log(args) => log::run(&home, args),
        Command::Admin(cmd) => admin::run(&home, cmd),
        Command::Top(args) => top::run(&home, args),
        Command::JailInit(_) => unreachable!("handled above"),
    };
    done.map(|()| 0)
}

/// The jail's first process: no home, no keyring, no secret.
fn jail_init(args: crate::cli::JailInitArgs) -> Result<u8, Failure> {
    keygate::jail::init::run(keygate::jail::init::InitArgs {
        port: args.port,
        socket: args.socket,
        command: args.command,
    })
    .map_err(|e| Failure::from(anyhow!(e)))
}

/// Logs go to stderr: info by default (warn when `quiet`), -v debug, -vv trace;
/// RUST_LOG wins.
pub fn init_logging(verbose: u8, format: LogFormat, quiet: bool) {
    let default = match verbose {
        // Refusals and upstream failures are not logged here: `run` prints each on a
        // line of its own (commands/refusals.rs), and alerts stay (error level).
        0 if quiet => "warn,keygate::proxy::respond=error",
        0 => "keygate=info,warn",
        1 => "keygate=debug,info",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Reads keygate.yaml (missing = defaults) and merges the flags. Errors are exit 2.
pub fn load_config(home: &Home, overrides: Overrides) -> Result<Config, Failure> {
    let path = home.config_file();
    let (raw, source) = match std::fs::read_to_string(&path) {
        Ok(text) => (
            RawConfig::parse(&text, &path).map_err(Failure::usage)?,
            Some(path),
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (RawConfig::default(), None),
        Err(e) => return Err(Failure::usage(anyhow!("{}: {e}", path.display()))),
    };
    Config::build(raw, source, overrides).map_err(Failure::usage)
}

/// The policy flags as config overrides.
pub fn overrides(listen: Option<std::net::SocketAddr>, policy: PolicyArgs) -> Overrides {
    Overrides {
        listen,
        allow: policy.allow,
        deny: policy.deny,
        mode: policy.mode.map(Into::into),
        intercept: policy.intercept.map(Into::into),
        resolve: policy.resolve,
        upstream_ca: policy.upstream_ca,
    }
}

/// Reads secrets.yaml (missing = empty). Errors are exit 2.
pub fn load_registry(home: &Home) -> Result<Registry, Failure> {
    let path = home.secrets_file();
    match std::fs::read_to_string(&path) {
        Ok(text) => Registry::parse(&text, &path).map_err(Failure::usage),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Registry::default()),
        Err(e) => Err(Failure::usage(anyhow!("{}: {e}", path.display()))),
    }
}

/// Writes secrets.yaml atomically, owner-only.
pub fn save_registry(home: &Home, registry: &Registry) -> Result<(), Failure> {
    home.ensure_dirs()?;
    let path = home.secrets_file();
    keygate::home::write_atomic(
        &path,
        registry.to_yaml().as_bytes(),
        keygate::home::FILE_MODE,
    )
    .map_err(|e| anyhow!("writing {}: {e}", path.display()))?;
    Ok(())
}

/// Opens the keyring backend chosen by KEYGATE_KEYRING or the platform default. When
/// keyutils stands in for a missing Secret Service, says so on stderr once per process
/// (`start` opens the store again at every SIGHUP; one notice is enough).
pub fn open_store() -> Result<KeyringStore, Failure> {
    static FALLBACK_NOTICE: std::sync::Once = std::sync::Once::new();
    let forced = std::env::var(keyring::BACKEND_ENV).ok();
    let store = keyring::open(forced.as_deref())?;
    if store.fell_back() {
        FALLBACK_NOTICE.call_once(|| eprintln!("keygate: {}", keyring::FALLBACK_NOTICE));
    }
    Ok(store)
}

/// The `google` secrets among `bindings` whose phantom service-account file is missing
/// (a hand-written entry, a deleted file), with the path it should be at: the agent's
/// `GOOGLE_APPLICATION_CREDENTIALS` would point at nothing, and the proxy refuses the
/// secret's token exchange.
pub fn missing_phantom_files<'a>(
    home: &Home,
    bindings: impl IntoIterator<Item = &'a keygate::secrets::Binding>,
) -> Vec<(&'a str, std::path::PathBuf)> {
    bindings
        .into_iter()
        .filter(|b| matches!(b.kind, keygate::secrets::kind::Kind::Google(_)))
        .map(|b| (b.name.as_str(), home.phantom_file(&b.name)))
        .filter(|(_, path)| !path.exists())
        .collect()
}

/// Gives the proxy what the credential kinds of issue 15 need beyond the secrets: the
/// keyring (a rotated OAuth2 refresh token is written back to it) and the phantom files
/// (a `google` secret's phantom account). A keyring that cannot be opened here only
/// means rotated tokens are kept in memory.
pub fn with_credentials(
    builder: keygate::proxy::ProxyBuilder,
    home: &Home,
) -> keygate::proxy::ProxyBuilder {
    builder
        .phantoms(home.phantoms_dir())
        .tokens_file(home.tokens_file())
        .store(std::sync::Arc::new(LazyStore::default()))
}

/// The keyring, opened on first use: only a rotated refresh token needs it once keygate
/// runs, and most runs have none (so no backend notice is printed for nothing).
#[derive(Default)]
struct LazyStore(std::sync::OnceLock<Result<KeyringStore, keygate::secrets::StoreError>>);

impl LazyStore {
    fn store(&self) -> Result<&KeyringStore, keygate::secrets::StoreError> {
        self.0
            .get_or_init(|| keyring::open(std::env::var(keyring::BACKEND_ENV).ok().as_deref()))
            .as_ref()
            .map_err(Clone::clone)
    }
}

impl keygate::secrets::SecretStore for LazyStore {
    fn backend(&self) -> &'static str {
        self.store().map_or("keyring", |s| s.backend())
    }
    fn get(
        &self,
        name: &str,
    ) -> Result<Option<keygate::secrets::SecretValue>, keygate::secrets::StoreError> {
        self.store()?.get(name)
    }
    fn set(
        &self,
        name: &str,
        value: &keygate::secrets::SecretValue,
    ) -> Result<(), keygate::secrets::StoreError> {
        self.store()?.set(name, value)
    }
    fn delete(&self, name: &str) -> Result<bool, keygate::secrets::StoreError> {
        self.store()?.delete(name)
    }
}

/// The backend's caveat for the user, unless the fallback notice has already said it.
pub fn caveat(store: &KeyringStore) -> Option<&'static str> {
    use keygate::secrets::SecretStore;
    store.caveat().filter(|_| !store.fell_back())
}

/// keygate's own proxy credentials (`keygate:<random>`), from the keyring; created on
/// first need. They authenticate clients to keygate, never to an upstream.
pub fn proxy_credentials() -> Result<keygate::secrets::SecretValue, Failure> {
    use keygate::secrets::store::PROXY_AUTH_ACCOUNT;
    use keygate::secrets::{SecretStore, SecretValue, dummy};
    let store = open_store()?;
    if let Some(existing) = store.get(PROXY_AUTH_ACCOUNT)? {
        return Ok(existing);
    }
    let password = dummy::expand("{random:32}", "").map_err(|e| anyhow!(e))?;
    let value = SecretValue::new(format!(
        "{}:{password}",
        keygate::proxy::listener::auth::PROXY_USER
    ))
    .map_err(|e| anyhow!(e))?;
    store.set(PROXY_AUTH_ACCOUNT, &value)?;
    Ok(value)
}

/// The admin API's bearer token from the keyring, made (32 random letters and digits)
/// and stored on first use.
pub fn admin_token() -> Result<keygate::secrets::SecretValue, Failure> {
    use keygate::secrets::{SecretStore, SecretValue, dummy};
    let store = open_store()?;
    let account = keygate::admin::auth::ADMIN_TOKEN_ACCOUNT;
    if let Some(existing) = store.get(account)? {
        return Ok(existing);
    }
    let token = dummy::expand("{random:32}", "").map_err(|e| anyhow!(e))?;
    let value = SecretValue::new(token).map_err(|e| anyhow!(e))?;
    store.set(account, &value)?;
    Ok(value)
}

/// The credentials clients of a listener on `listen` need: none on loopback; beyond it,
/// proxy authentication is required.
pub fn credentials_for(
    listen: std::net::SocketAddr,
) -> Result<Option<keygate::secrets::SecretValue>, Failure> {
    if listen.ip().is_loopback() {
        Ok(None)
    } else {
        proxy_credentials().map(Some)
    }
}

/// Takes group and other access off keygate's own files ([`Home::tighten`]) and warns
/// about each change; `start` and `run` call it before they open the audit log.
pub fn tighten_home(home: &Home) -> Result<(), Failure> {
    let changes = home.tighten().map_err(|e| {
        anyhow!(
            "checking the permissions under {}: {e}",
            home.root().display()
        )
    })?;
    for change in changes {
        tracing::warn!("{change}");
    }
    Ok(())
}
