//! What `run` does around the command it starts, jailed or not: signal forwarding, the
//! shell's exit code, the audit flush at exit. Shared by [`super::run`] and
//! [`super::session`], below both so their imports do not run in a circle.

use std::process::ExitStatus;
use std::time::Duration;

#[cfg(unix)]
use std::io::IsTerminal;

/// How long exit waits for the audit log to reach the disk.
pub(super) const AUDIT_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// A shell's exit code for `status`: the code, or 128 + the signal that ended it.
pub(super) fn exit_code(status: ExitStatus) -> u8 {
    if let Some(code) = status.code() {
        return u8::try_from(code & 0xff).unwrap_or(1);
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return u8::try_from(128 + signal).unwrap_or(1);
        }
    }
    1
}

/// Signal handlers for the child's lifetime. Installed *before* the child is spawned:
/// a signal arriving in between would otherwise kill keygate and orphan the child.
#[cfg(unix)]
pub(super) struct Forwarder {
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    quit: tokio::signal::unix::Signal,
    usr1: tokio::signal::unix::Signal,
    usr2: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    chld: tokio::signal::unix::Signal,
    /// Ctrl-C in a terminal already reaches the child (same foreground process group);
    /// forwarding it too would deliver it twice. Without a terminal, forward it.
    forward_int: bool,
}

#[cfg(unix)]
impl Forwarder {
    pub(super) fn install() -> std::io::Result<Forwarder> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Forwarder {
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
            quit: signal(SignalKind::quit())?,
            usr1: signal(SignalKind::user_defined1())?,
            usr2: signal(SignalKind::user_defined2())?,
            int: signal(SignalKind::interrupt())?,
            chld: signal(SignalKind::child())?,
            forward_int: !std::io::stdin().is_terminal(),
        })
    }

    /// Waits for `child`, passing signals to `target` (the jail's first process) or,
    /// without one, to the child itself. With `terminal` (`run --ask`, the child a job
    /// in its own process group), a Ctrl-Z that stops the child stops keygate too.
    pub(super) async fn wait(
        &mut self,
        child: &mut tokio::process::Child,
        target: Option<u32>,
        terminal: Option<&super::ask::Terminal>,
    ) -> std::io::Result<ExitStatus> {
        let pid = target.or(child.id());
        let direct = child.id();
        loop {
            tokio::select! {
                status = child.wait() => return status,
                _ = self.chld.recv(), if terminal.is_some() => {
                    if let (Some(terminal), Some(direct)) = (terminal, direct) {
                        terminal.on_child_signal(direct);
                    }
                }
                _ = self.term.recv() => forward(pid, libc::SIGTERM),
                _ = self.hup.recv() => forward(pid, libc::SIGHUP),
                _ = self.quit.recv() => forward(pid, libc::SIGQUIT),
                _ = self.usr1.recv() => forward(pid, libc::SIGUSR1),
                _ = self.usr2.recv() => forward(pid, libc::SIGUSR2),
                _ = self.int.recv() => if self.forward_int { forward(pid, libc::SIGINT) },
            }
        }
    }
}

#[cfg(unix)]
fn forward(pid: Option<u32>, signal: libc::c_int) {
    let Some(pid) = pid.and_then(|p| libc::pid_t::try_from(p).ok()) else {
        return;
    };
    // SAFETY: kill(2) has no memory-safety preconditions; `pid` is our own child's id,
    // which stays reserved until we reap it (the wait above has not returned yet).
    unsafe {
        libc::kill(pid, signal);
    }
}

/// Without Unix signals there is nothing to forward.
#[cfg(not(unix))]
pub(super) struct Forwarder;

#[cfg(not(unix))]
impl Forwarder {
    pub(super) fn install() -> std::io::Result<Forwarder> {
        Ok(Forwarder)
    }

    pub(super) async fn wait(
        &mut self,
        child: &mut tokio::process::Child,
        _target: Option<u32>,
        _terminal: Option<&()>,
    ) -> std::io::Result<ExitStatus> {
        child.wait().await
    }
}
