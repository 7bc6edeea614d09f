//! `keygate run` in the jail (SPEC §10): every jailed run is a session with a CA and
//! dummies of its own, served on a Unix socket that only the jail reaches.
//!
//! Steps: check the engine; make the session directory (0700, removed at exit); mint the
//! session CA in memory (name-constrained to the hosts it intercepts); give each secret
//! a phantom dummy; serve the session's proxy on `keygate.sock`; lay out the jail; run
//! the command in it, forwarding signals to the jail's first process; stop; clean up.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use keygate::audit::AuditLog;
use keygate::ca::{self, Ca, Permit, RefusalIssuer};
use keygate::config::{Config, Intercept, Refusals};
use keygate::home::{self, Home};
use keygate::jail::{self, Layout, Plan, paths};
use keygate::proxy::{self, Proxy, SessionTag};
use keygate::secrets::SecretSet;

use super::Failure;
use super::ask::Terminal;
use super::child::{AUDIT_FLUSH_TIMEOUT, Forwarder, exit_code};
use super::refusals::Printer;
use crate::cli::RunArgs;

/// The longest Unix socket path (`sun_path` holds 108 bytes with the NUL).
const MAX_SOCKET_PATH: usize = 107;
/// How long keygate waits for bubblewrap to report the jail's first process.
const INFO_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `args.command` jailed; returns its exit code.
pub fn run(
    home: &Home,
    mut config: Config,
    secrets: SecretSet,
    leaking: Vec<String>,
    args: RunArgs,
) -> Result<u8, Failure> {
    let engine = jail::engine().map_err(|e| Failure::from(anyhow!(e)))?;
    let id = keygate::secrets::dummy::expand("{hex:12}", "").map_err(|e| anyhow!(e))?;
    let dir = SessionDir::create(home, &id)?;
    let secrets = secrets
        .session()
        .map_err(|e| Failure::usage(anyhow!("{}: {e}", home.secrets_file().display())))?;
    let permits = session_permits(&config, &secrets);
    let ca = Arc::new(Ca::session(&permits, ca::SESSION_CA_VALIDITY)?);
    // Refusal pages for names the session CA may not vouch for (see ca/refusal.rs);
    // the child trusts both CAs.
    let refusal_issuer = match config.refusals {
        Refusals::Tls => Some(Arc::new(RefusalIssuer::new(
            ca.clone(),
            &permits,
            ca::SESSION_CA_VALIDITY,
        )?)),
        Refusals::Connect => None,
    };
    let ca_file = dir.path.join("ca.pem");
    let bundle_file = dir.path.join("bundle.pem");
    let roots = rustls_native_certs::load_native_certs();
    let mut ca_text = ca.cert_pem().trim_end().to_string() + "\n";
    let mut bundle_text = ca::bundle_pem(&ca, &roots.certs);
    if let Some(issuer) = &refusal_issuer {
        let pem = issuer.refusal_ca_pem().trim_end();
        ca_text = format!("{ca_text}{pem}\n");
        bundle_text = format!("{bundle_text}# keygate session refusal CA\n{pem}\n");
    }
    write_public(&ca_file, &ca_text)?;
    write_public(&bundle_file, &bundle_text)?;
    // A `google` secret's phantom key file, the session's own, where the jailed command
    // can read it (the home is hidden from it).
    let phantoms_dir = dir.path.join("phantoms");
    super::session_phantoms::make(&secrets, &phantoms_dir)?;
    let socket = dir.path.join("keygate.sock");
    if socket.as_os_str().len() > MAX_SOCKET_PATH {
        return Err(anyhow!(
            "the session socket path {} is longer than a Unix socket allows ({MAX_SOCKET_PATH} bytes); use a shorter --home or KEYGATE_HOME",
            socket.display()
        )
        .into());
    }
    // Seatbelt has no network namespace: the command reaches the session's own TCP
    // listener on loopback. bubblewrap's jail reaches the Unix socket through its relay.
    let tcp = match engine.listens_on_tcp() {
        true => Some(
            std::net::TcpListener::bind(("127.0.0.1", 0))
                .context("binding the session listener on 127.0.0.1")?,
        ),
        false => None,
    };
    let port = match (&tcp, config.listen.port()) {
        (Some(listener), _) => listener.local_addr()?.port(),
        (None, 0) => keygate::config::DEFAULT_LISTEN_PORT,
        (None, port) => port,
    };
    let cwd = std::env::current_dir().context("reading the current directory")?;
    let exe = std::env::current_exe().context("finding keygate's own binary")?;
    let layout = layout(home, &config, &args, &cwd, &dir.path, &exe)?;
    let relay_addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let env = keygate::agent::agent_env(
        relay_addr,
        None,
        &ca_file,
        &bundle_file,
        &phantoms_dir,
        secrets.iter().map(|b| b.as_ref()),
    );
    let mut unset_env: Vec<String> = env.unset.clone();
    unset_env.extend(leaking);
    unset_env.extend(
        std::env::vars_os()
            .map(|(k, _)| k.to_string_lossy().into_owned())
            .filter(|k| jail::is_stripped(k)),
    );
    let plan = Plan {
        layout,
        cwd: paths::absolute(&cwd, &cwd),
        exe,
        port,
        socket: socket.clone(),
        set_env: env.set,
        unset_env,
        command: args.command.clone(),
    };
    let command_name = command_name(&args.command);
    let terminal = super::ask::asking(&args, &mut config);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let listener = match tcp {
            Some(tcp) => {
                tcp.set_nonblocking(true)?;
                Listener::Tcp(tokio::net::TcpListener::from_std(tcp)?)
            }
            None => Listener::Unix(
                tokio::net::UnixListener::bind(&socket)
                    .with_context(|| format!("listening on {}", socket.display()))?,
            ),
        };
        super::tighten_home(home)?;
        let (audit, _writer) = AuditLog::open(&home.audit_log(), config.audit)
            .with_context(|| format!("opening {}", home.audit_log().display()))?;
        let policy = config.policy(secrets.host_patterns());
        let (tap, refusals) = std::sync::mpsc::channel();
        let session_audit = audit.for_command(&command_name).with_refusal_tap(tap);
        let builder = Proxy::builder(config, policy, session_audit)
            .ca(ca)
            .secrets(secrets)
            .session(SessionTag { id: id.clone() });
        // The session's phantom accounts, not the home's (see session_phantoms.rs).
        let mut builder = super::with_credentials(builder, home).phantoms(phantoms_dir);
        if let Some(issuer) = refusal_issuer {
            builder = builder.refusal_ca(issuer);
        }
        let proxy = builder.build().map_err(Failure::usage)?;
        if let Some(terminal) = &terminal {
            tokio::spawn(super::ask::prompts(
                proxy.clone(),
                terminal.clone(),
                home.config_file(),
            ));
        }
        let printer = Printer::from_tap(refusals);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let stopped = async {
            let _ = stopped.await;
        };
        let serving = match listener {
            Listener::Unix(l) => tokio::spawn(proxy::run_unix(proxy, l, stopped)),
            Listener::Tcp(l) => tokio::spawn(proxy::run(proxy, l, stopped)),
        };
        tracing::info!(
            "session {id}: jailing {command_name} with {}",
            engine.name()
        );
        let status = spawn_jailed(engine.as_ref(), &plan, terminal.as_deref()).await;
        if let Some(terminal) = &terminal {
            terminal.take_back();
        }
        let _ = stop.send(());
        let _ = serving.await;
        audit.flush(AUDIT_FLUSH_TIMEOUT);
        printer.finish();
        status
    })
}

/// Where the session's proxy listens.
enum Listener {
    /// bubblewrap: `keygate.sock`, reached through the jail's relay.
    Unix(tokio::net::UnixListener),
    /// Seatbelt: loopback, the only address its profile lets the command reach.
    Tcp(tokio::net::TcpListener),
}

/// The session's directory under `$KEYGATE_HOME/sessions/`, removed when dropped.
struct SessionDir {
    path: PathBuf,
}

impl SessionDir {
    fn create(home: &Home, id: &str) -> Result<SessionDir, Failure> {
        let sessions = home.root().join("sessions");
        home::create_private_dir(&sessions)
            .and_then(|()| home::create_private_dir(&sessions.join(id)))
            .with_context(|| format!("creating {}", sessions.display()))?;
        Ok(SessionDir {
            path: sessions.join(id),
        })
    }
}

impl Drop for SessionDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.path) {
            tracing::warn!("removing {}: {e}", self.path.display());
        }
    }
}

fn write_public(path: &Path, text: &str) -> Result<(), Failure> {
    home::write_atomic(path, text.as_bytes(), home::PUBLIC_FILE_MODE)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// What the session CA may vouch for: the hosts this session intercepts (the secrets'
/// hosts and keygate.test; with `intercept: all`, every allowed pattern).
fn session_permits(config: &Config, secrets: &SecretSet) -> Vec<Permit> {
    let mut permits: Vec<Permit> = secrets
        .host_patterns()
        .iter()
        .flat_map(Permit::from_pattern)
        .collect();
    if let Ok(host) = keygate::policy::Host::parse(keygate::proxy::exchange::selftest::SELF_HOST) {
        permits.extend(Permit::host(&host));
    }
    if config.intercept == Intercept::All {
        let policy = config.policy(Vec::new());
        permits.extend(
            config
                .allow
                .iter()
                .chain(policy.mode_patterns())
                .flat_map(Permit::from_pattern),
        );
    }
    permits
}

/// The jail's file-system rules from the flags, keygate.yaml and the agent profile.
fn layout(
    home: &Home,
    config: &Config,
    args: &RunArgs,
    cwd: &Path,
    session_dir: &Path,
    exe: &Path,
) -> Result<Layout, Failure> {
    let user_home = dirs::home_dir().unwrap_or_else(|| PathBuf::from("/nonexistent"));
    let resolve = |p: &Path| paths::absolute(&paths::expand_tilde(p, &user_home), cwd);
    let mut writable = vec![paths::absolute(cwd, cwd)];
    let program = args.command.first().map(PathBuf::from).unwrap_or_default();
    if let Some(profile) = paths::agent_profile(args.agent.as_deref(), &program) {
        for path in paths::agent_paths(profile, &user_home) {
            prepare_agent_path(&path)?;
            writable.push(resolve(&path));
        }
    }
    for path in args.writable.iter().chain(&config.jail.writable) {
        let path = resolve(path);
        if !path.exists() {
            return Err(Failure::usage(anyhow!(
                "--writable {}: no such file or directory (create it first, or drop the flag)",
                path.display()
            )));
        }
        writable.push(path);
    }
    let mut hidden = vec![paths::absolute(home.root(), cwd)];
    if let Some(runtime_dir) = std::env::var_os("XDG_RUNTIME_DIR") {
        hidden.push(resolve(Path::new(&runtime_dir)));
    }
    hidden.extend(
        paths::CREDENTIAL_PATHS
            .iter()
            .map(|p| resolve(&user_home.join(p))),
    );
    hidden.extend(
        args.hide
            .iter()
            .chain(&config.jail.hide)
            .map(|p| resolve(p)),
    );
    Ok(Layout {
        writable,
        hidden,
        always_hidden: paths::keygate_private_paths(&paths::absolute(home.root(), cwd)),
        visible: vec![paths::absolute(session_dir, cwd), paths::absolute(exe, cwd)],
    })
}

/// Creates an agent's state path when it is missing, so the agent can write it from
/// inside (the rest of the home directory is read-only there): a directory, or for
/// `*.json` an empty JSON object.
fn prepare_agent_path(path: &Path) -> Result<(), Failure> {
    if path.exists() {
        return Ok(());
    }
    let made = if path.extension().is_some_and(|e| e == "json") {
        home::write_atomic(path, b"{}\n", home::FILE_MODE)
    } else {
        home::create_private_dir(path)
    };
    made.with_context(|| format!("creating {} for the jailed agent", path.display()))?;
    Ok(())
}

fn command_name(command: &[OsString]) -> String {
    command
        .first()
        .map(Path::new)
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Spawns the engine's command, learns the jail's first process from bubblewrap's info
/// descriptor, forwards signals to it, and returns the exit code.
async fn spawn_jailed(
    engine: &dyn jail::Engine,
    plan: &Plan,
    terminal: Option<&Terminal>,
) -> Result<u8, Failure> {
    // Only bubblewrap reports its first process; Seatbelt's command is the child itself.
    let info = match engine.listens_on_tcp() {
        true => None,
        false => Some(info_pipe().context("creating the jail's info pipe")?),
    };
    let mut std_cmd = engine
        .command(plan, info.map(|(_, write)| write))
        .map_err(|e| Failure::from(anyhow!(e)))?;
    if let Some(terminal) = terminal {
        terminal.prepare(&mut std_cmd);
    }
    let mut cmd = tokio::process::Command::from(std_cmd);
    cmd.kill_on_drop(true);
    let mut forwarder = Forwarder::install().context("installing signal handlers")?;
    let spawned = cmd.spawn();
    if let Some((_, write)) = info {
        // SAFETY: `write` is our own descriptor from pipe(2); the child has its copy.
        unsafe {
            libc::close(write);
        }
    }
    let mut child = spawned.with_context(|| format!("starting {}", engine.name()))?;
    if let (Some(terminal), Some(pid)) = (terminal, child.id()) {
        terminal.hand_over(pid);
    }
    let first = match info {
        Some((read, _)) => tokio::time::timeout(
            INFO_TIMEOUT,
            tokio::task::spawn_blocking(move || read_child_pid(read)),
        )
        .await
        .ok()
        .and_then(Result::ok)
        .flatten(),
        None => None,
    };
    let status = forwarder
        .wait(&mut child, first, terminal)
        .await
        .context("waiting for the jailed command")?;
    // No first process reported and a failure: the jail itself could not be built (the
    // command never ran). Only now is the engine's test run worth its time, to say why.
    if info.is_some() && first.is_none() && !status.success() {
        engine.check().map_err(|e| Failure::from(anyhow!(e)))?;
    }
    Ok(exit_code(status))
}

/// A pipe whose read end is ours alone (close-on-exec) and whose write end the engine
/// inherits.
fn info_pipe() -> std::io::Result<(i32, i32)> {
    let mut fds = [0; 2];
    // SAFETY: pipe(2) writes two descriptors into `fds`, an array we own.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fcntl on a descriptor we just created.
    unsafe {
        libc::fcntl(fds[0], libc::F_SETFD, libc::FD_CLOEXEC);
    }
    Ok((fds[0], fds[1]))
}

/// Reads bubblewrap's `--info-fd` report (`{"child-pid": N, ...}`) and closes the pipe.
fn read_child_pid(fd: i32) -> Option<u32> {
    use std::io::Read;
    use std::os::fd::FromRawFd;
    // SAFETY: `fd` is the read end of our pipe; the File takes ownership and closes it.
    let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
    let mut text = String::new();
    let mut buf = [0u8; 1024];
    loop {
        let n = file.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
        // bubblewrap may keep the descriptor open: parse as soon as the object is whole.
        if let Ok(value) = serde_json::from_str::<serde_json::Value>(text.trim()) {
            return value.get("child-pid")?.as_u64()?.try_into().ok();
        }
    }
    None
}
