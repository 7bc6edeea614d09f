//! `keygate run [--] CMD [ARGS]...`: runs CMD with the agent environment, scoped to the
//! child. Uses the keygate already answering on the configured address (when its CA is
//! ours), else an embedded proxy on an ephemeral loopback port for the child's lifetime.
//! Signals are forwarded; the child's exit code is returned.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, anyhow};
use keygate::agent;
use keygate::audit::AuditLog;
use keygate::home::Home;
use keygate::proxy::{self, Proxy};
use keygate::secrets::SecretValue;

use super::child::{AUDIT_FLUSH_TIMEOUT, Forwarder, exit_code};
use super::refusals::Printer;
use super::{Failure, load_config, load_registry, overrides};
use crate::cli::RunArgs;

pub fn run(home: &Home, mut args: RunArgs) -> Result<u8, Failure> {
    // Policy flags, or asking on this terminal: a private embedded proxy serves them.
    let custom_policy = !args.policy.is_empty() || args.ask;
    let policy = std::mem::replace(&mut args.policy, empty_policy());
    #[cfg_attr(not(unix), allow(unused_mut))]
    let mut config = load_config(home, overrides(None, policy))?;
    let bindings = load_registry(home)?
        .bindings()
        .map_err(|e| Failure::usage(anyhow!("{}: {e}", home.secrets_file().display())))?;
    let jailed = config.jail.enabled && !args.no_jail;
    if !jailed {
        let why = if args.no_jail {
            "--no-jail"
        } else {
            "jail.enabled: false"
        };
        eprintln!(
            "keygate: warning: {why}: the command runs unjailed and can still reach your keyring, the network around keygate, and keygate's files in {}",
            home.root().display()
        );
    }
    // Values are read even when an external keygate serves the child: they are how
    // variables holding a real key are found and kept out of the child's environment.
    let secrets = super::start::load_secrets(bindings.clone())?;
    let parts: Vec<SecretValue> = secrets.iter().flat_map(|b| secret_parts(b)).collect();
    let values: Vec<&SecretValue> = secrets
        .iter()
        .filter_map(|b| b.real.as_ref())
        .chain(&parts)
        .collect();
    let inherited: Vec<(String, String)> = std::env::vars_os()
        .map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                v.to_string_lossy().into_owned(),
            )
        })
        .collect();
    let leaking = agent::leaking_vars(
        inherited.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        &values,
    );
    for name in &leaking {
        eprintln!(
            "keygate: {name} holds a real secret; it is removed from the child's environment"
        );
    }
    if jailed {
        #[cfg(unix)]
        return super::session::run(home, config, secrets, leaking, args);
        #[cfg(not(unix))]
        return Err(anyhow!(
            "cannot build the jail: keygate has no jail engine for {} yet; run inside a container or VM whose only way out is keygate, with --no-jail",
            std::env::consts::OS
        )
        .into());
    }
    #[cfg(unix)]
    let terminal = super::ask::asking(&args, &mut config);
    #[cfg(not(unix))]
    let terminal: Option<std::sync::Arc<()>> = None;
    let ca = super::ca::ensure_ca(home)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let ca_pem = ca.cert_pem().to_string();
    runtime.block_on(async move {
        let listen = agent::client_address(config.listen);
        let credentials = match custom_policy {
            true => None,
            false => super::credentials_for(config.listen)?,
        };
        let existing = match custom_policy {
            true => None,
            false => super::probe::same_ca(listen, credentials.as_ref(), &ca_pem)
                .await
                .then_some(listen),
        };
        // The command's refusals, one line each on our stderr: handed over by the
        // embedded proxy, or read from the running keygate's audit log.
        let (addr, credentials, embedded, printer) = match existing {
            Some(addr) => (
                addr,
                credentials,
                None,
                Some(Printer::tail(&home.audit_log())),
            ),
            None => {
                let mut embedded = Embedded::start(home, config, ca, secrets, true).await?;
                #[cfg(unix)]
                if let Some(terminal) = &terminal {
                    tokio::spawn(super::ask::prompts(
                        embedded.proxy.clone(),
                        terminal.clone(),
                        home.config_file(),
                    ));
                }
                let printer = embedded.printer.take();
                (embedded.addr, None, Some(embedded), printer)
            }
        };
        let env = agent::agent_env(
            addr,
            credentials.as_ref(),
            &home.ca_cert(),
            &home.bundle(),
            &home.phantoms_dir(),
            &bindings,
        );
        let status = spawn_and_wait(&args.command, &env, &leaking, terminal.as_deref()).await;
        if let Some(embedded) = embedded {
            embedded.stop().await;
        }
        if let Some(printer) = printer {
            printer.finish();
        }
        status
    })
}

/// Each real string a stored value holds besides the value itself, for the environment
/// check: the key id, secret key and session token of AWS credentials (as the scrubber
/// knows them), the refresh token and client secret of an OAuth2 value in JSON. Never
/// the other fields of a JSON value (a service account's project id is no secret, and
/// the agent's own variables hold it).
fn secret_parts(binding: &keygate::secrets::Binding) -> Vec<SecretValue> {
    use keygate::secrets::kind::Kind;
    let mut parts: Vec<String> = binding
        .scrubbed()
        .into_iter()
        .map(|(real, _)| real.to_string())
        .collect();
    if let (Kind::Oauth2(_), Some(real)) = (&binding.kind, &binding.real)
        && let Ok(serde_json::Value::Object(json)) = serde_json::from_str(real.expose())
    {
        for field in ["refresh_token", "client_secret"] {
            if let Some(serde_json::Value::String(text)) = json.get(field) {
                parts.push(text.clone());
            }
        }
    }
    parts
        .into_iter()
        .filter_map(|text| SecretValue::new(zeroize::Zeroizing::new(text).to_string()).ok())
        .collect()
}

/// A proxy running inside this process on an ephemeral loopback port.
pub struct Embedded {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    serving: tokio::task::JoinHandle<std::io::Result<()>>,
    audit: AuditLog,
    /// Prints the command's refusals (for the caller to take and finish), when asked.
    pub printer: Option<Printer>,
    /// The proxy, for the terminal prompts of `--ask`.
    #[cfg_attr(not(unix), allow(dead_code))]
    pub proxy: Arc<Proxy>,
}

impl Embedded {
    /// Starts a proxy with `config`'s policy, `ca` and `secrets` on 127.0.0.1:0; with
    /// `show_refusals`, its refusals are printed by [`Embedded::printer`].
    pub async fn start(
        home: &Home,
        config: keygate::config::Config,
        ca: keygate::ca::Ca,
        secrets: keygate::secrets::SecretSet,
        show_refusals: bool,
    ) -> Result<Embedded, Failure> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .context("binding an embedded proxy on 127.0.0.1")?;
        let addr = listener.local_addr()?;
        super::tighten_home(home)?;
        let (audit, _writer) = AuditLog::open(&home.audit_log(), config.audit)
            .with_context(|| format!("opening {}", home.audit_log().display()))?;
        let policy = config.policy(secrets.host_patterns());
        let (tap, refusals) = std::sync::mpsc::channel();
        let proxy_audit = match show_refusals {
            true => audit.with_refusal_tap(tap),
            false => audit.clone(),
        };
        let builder = Proxy::builder(config, policy, proxy_audit)
            .ca(Arc::new(ca))
            .secrets(secrets);
        let proxy = super::with_credentials(builder, home)
            .build()
            .map_err(Failure::usage)?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn(proxy::run(proxy.clone(), listener, async {
            let _ = stopped.await;
        }));
        Ok(Embedded {
            proxy,
            addr,
            stop,
            serving,
            audit,
            printer: show_refusals.then(|| Printer::from_tap(refusals)),
        })
    }

    /// Stops it (in-flight work finishes, bounded) and flushes its audit events.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.serving.await;
        self.audit.flush(AUDIT_FLUSH_TIMEOUT);
    }
}

/// Spawns the child with `env` (and without `remove`), forwards signals, and returns
/// its exit code (128 + signal when a signal ended it, like a shell).
async fn spawn_and_wait(
    command: &[OsString],
    env: &agent::AgentEnv,
    remove: &[String],
    #[cfg(unix)] terminal: Option<&super::ask::Terminal>,
    #[cfg(not(unix))] terminal: Option<&()>,
) -> Result<u8, Failure> {
    let (program, rest) = command
        .split_first()
        .ok_or_else(|| Failure::usage(anyhow!("no command given")))?;
    let mut std_cmd = std::process::Command::new(program);
    std_cmd.args(rest);
    for name in remove.iter().chain(&env.unset) {
        std_cmd.env_remove(name);
    }
    std_cmd.envs(&env.set);
    #[cfg(unix)]
    if let Some(terminal) = terminal {
        terminal.prepare(&mut std_cmd);
    }
    let mut cmd = tokio::process::Command::from(std_cmd);
    let mut forwarder = Forwarder::install().context("installing signal handlers")?;
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => {
            let code = if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            };
            eprintln!("keygate: cannot run {}: {e}", program.to_string_lossy());
            return Ok(code);
        }
    };
    #[cfg(unix)]
    if let (Some(terminal), Some(pid)) = (terminal, child.id()) {
        terminal.hand_over(pid);
    }
    let status = forwarder
        .wait(&mut child, None, terminal)
        .await
        .context("waiting for the command")?;
    Ok(exit_code(status))
}

/// The policy flags of a command line that gave none.
fn empty_policy() -> crate::cli::PolicyArgs {
    crate::cli::PolicyArgs {
        allow: Vec::new(),
        deny: Vec::new(),
        mode: None,
        intercept: None,
        resolve: Vec::new(),
        upstream_ca: Vec::new(),
    }
}
