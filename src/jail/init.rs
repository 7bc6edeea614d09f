//! `keygate jail-init`: the jail's first process (pid 1 of its pid namespace). It holds
//! no secret: it leaves keygate's session keyring for a fresh, empty one, starts the
//! relay to the session's socket, runs the command, passes signals on, reaps orphans,
//! and exits with the command's exit code (128 + n when signal n ended it).

use std::ffi::OsString;
use std::io::IsTerminal;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

/// What `jail-init` is told.
#[derive(Debug, Clone)]
pub struct InitArgs {
    /// The relay's port on 127.0.0.1.
    pub port: u16,
    /// The session listener's socket.
    pub socket: PathBuf,
    /// The command and its arguments.
    pub command: Vec<OsString>,
}

/// Joins a new, empty, anonymous session keyring: the command must not inherit
/// keygate's, which holds links to the keys keygate read (a user namespace alone does
/// not change the session keyring).
#[cfg(target_os = "linux")]
pub fn join_fresh_session_keyring() -> std::io::Result<()> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    // SAFETY: keyctl(KEYCTL_JOIN_SESSION_KEYRING, NULL) reads no memory of ours (a NULL
    // name asks for an anonymous keyring); it only changes this process's credentials.
    let id = unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            KEYCTL_JOIN_SESSION_KEYRING,
            std::ptr::null::<libc::c_char>(),
        )
    };
    if id < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Runs the jail's first process; returns the exit code.
#[cfg(unix)]
pub fn run(args: InitArgs) -> Result<u8, String> {
    #[cfg(target_os = "linux")]
    join_fresh_session_keyring()
        .map_err(|e| format!("cannot join a fresh session keyring: {e}"))?;
    #[cfg(target_os = "linux")]
    super::seccomp::install()
        .map_err(|e| format!("cannot install the jail's seccomp filter (no TIOCSTI): {e}"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the relay's runtime: {e}"))?;
    let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, args.port));
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(listen))
        .map_err(|e| format!("the relay cannot listen on {listen} inside the jail: {e}"))?;
    runtime.spawn(super::relay::serve(listener, args.socket.clone()));
    let (program, rest) = args
        .command
        .split_first()
        .ok_or_else(|| "no command given".to_string())?;
    let child = match std::process::Command::new(program).args(rest).spawn() {
        Ok(child) => child,
        Err(e) => {
            eprintln!("keygate: cannot run {}: {e}", program.to_string_lossy());
            return Ok(if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            });
        }
    };
    let pid = libc::pid_t::try_from(child.id()).map_err(|e| e.to_string())?;
    // The command is waited for by the reaper below (waitpid(-1)), never by `child`.
    std::mem::forget(child);
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<u8>();
    std::thread::spawn(move || reap(pid, done_tx));
    runtime.block_on(forward_until_done(pid, done_rx))
}

/// Reaps every child (as pid 1, orphans are ours) until `pid` ends; sends its code.
#[cfg(unix)]
fn reap(pid: libc::pid_t, done: tokio::sync::oneshot::Sender<u8>) {
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: waitpid writes only to `status`, a local we own.
        let reaped = unsafe { libc::waitpid(-1, &mut status, 0) };
        if reaped == pid {
            let code = if libc::WIFEXITED(status) {
                u8::try_from(libc::WEXITSTATUS(status) & 0xff).unwrap_or(1)
            } else if libc::WIFSIGNALED(status) {
                u8::try_from(128 + libc::WTERMSIG(status)).unwrap_or(1)
            } else {
                continue;
            };
            let _ = done.send(code);
            return;
        }
        if reaped < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            let _ = done.send(1);
            return;
        }
    }
}

/// Passes keygate's forwarded signals on to the command until it ends.
#[cfg(unix)]
async fn forward_until_done(
    pid: libc::pid_t,
    mut done: tokio::sync::oneshot::Receiver<u8>,
) -> Result<u8, String> {
    use tokio::signal::unix::{SignalKind, signal};
    let install = |kind| signal(kind).map_err(|e| format!("installing signal handlers: {e}"));
    let mut term = install(SignalKind::terminate())?;
    let mut hup = install(SignalKind::hangup())?;
    let mut quit = install(SignalKind::quit())?;
    let mut usr1 = install(SignalKind::user_defined1())?;
    let mut usr2 = install(SignalKind::user_defined2())?;
    let mut int = install(SignalKind::interrupt())?;
    // With a terminal, Ctrl-C already reaches the command (same process group).
    let forward_int = !std::io::stdin().is_terminal();
    let send = |signal| {
        // SAFETY: kill(2) has no memory-safety preconditions; `pid` is our child, not
        // yet reaped (the reaper reports before it could be reused).
        unsafe {
            libc::kill(pid, signal);
        }
    };
    loop {
        tokio::select! {
            code = &mut done => return Ok(code.unwrap_or(1)),
            _ = term.recv() => send(libc::SIGTERM),
            _ = hup.recv() => send(libc::SIGHUP),
            _ = quit.recv() => send(libc::SIGQUIT),
            _ = usr1.recv() => send(libc::SIGUSR1),
            _ = usr2.recv() => send(libc::SIGUSR2),
            _ = int.recv() => if forward_int { send(libc::SIGINT) },
        }
    }
}

/// Without Unix there is no jail to start.
#[cfg(not(unix))]
pub fn run(_args: InitArgs) -> Result<u8, String> {
    Err("jail-init runs only inside a Linux jail".into())
}
