//! `keygate run --ask` (issue 16): a request to a host that is not allowed is held while
//! keygate asks on its terminal: allow once, allow always (written to keygate.yaml),
//! or deny. No answer within `network.ask_timeout`: refused as without `--ask`.
//!
//! The command shares the terminal, so keygate runs it as a shell runs a job: in a
//! process group of its own, in the terminal's foreground. To ask, keygate stops the
//! command (SIGSTOP: it cannot race the prompt for keystrokes or draw over it), takes
//! the foreground, discards keys typed before the prompt showed (never an accidental
//! answer), and sets TOSTOP. After the answer the terminal's modes and foreground are
//! restored, and the command is continued (SIGCONT) and told to redraw (SIGWINCH). Ctrl-Z stops the command; keygate then stops too, so the shell
//! gets its terminal back, and `fg` resumes both.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::Duration;

use keygate::admin::rules::{self, List, WriteError};
use keygate::proxy::Proxy;
use keygate::proxy::approvals::{Answer, Pending};

/// How often a prompt checks that its request is still held.
const POLL: Duration = Duration::from_millis(200);
/// Who answered, as the audit log says it.
const WHO: &str = "the terminal";

/// keygate's controlling terminal, shared with the command it runs.
#[derive(Debug)]
pub struct Terminal {
    tty: File,
    /// keygate's own process group.
    own: libc::pid_t,
    /// The command's process group; 0 until it is spawned.
    child: AtomicI32,
    /// A prompt holds the terminal.
    prompting: AtomicBool,
}

impl Terminal {
    /// The controlling terminal, when standard input is one; else none (nobody to ask).
    pub fn open() -> Option<Arc<Terminal>> {
        if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
            return None;
        }
        let tty = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/tty")
            .ok()?;
        // While the command has the foreground, keygate is a background process of its
        // own terminal: its refusal lines and terminal calls must not stop it.
        // SAFETY: setting a signal's disposition to SIG_IGN has no preconditions.
        unsafe {
            libc::signal(libc::SIGTTOU, libc::SIG_IGN);
        }
        Some(Arc::new(Terminal {
            tty,
            // SAFETY: getpgrp(2) cannot fail.
            own: unsafe { libc::getpgrp() },
            child: AtomicI32::new(0),
            prompting: AtomicBool::new(false),
        }))
    }

    fn fd(&self) -> libc::c_int {
        self.tty.as_raw_fd()
    }

    /// Makes `cmd` start in a process group of its own in the terminal's foreground
    /// (done in the child before exec and again by [`Terminal::hand_over`]: whichever
    /// runs first, the command never reads the terminal from the background).
    pub fn prepare(&self, cmd: &mut std::process::Command) {
        use std::os::unix::process::CommandExt;
        let fd = self.fd();
        // SAFETY: the closure runs between fork and exec and calls only
        // async-signal-safe functions (setpgid, signal, tcsetpgrp, getpid).
        unsafe {
            cmd.pre_exec(move || {
                libc::setpgid(0, 0);
                libc::signal(libc::SIGTTOU, libc::SIG_IGN);
                libc::tcsetpgrp(fd, libc::getpid());
                // keygate ignores SIGTTOU; the command gets the default back.
                libc::signal(libc::SIGTTOU, libc::SIG_DFL);
                Ok(())
            });
        }
    }

    /// After spawning `pid`: its process group has the terminal.
    pub fn hand_over(&self, pid: u32) {
        let Ok(pgid) = libc::pid_t::try_from(pid) else {
            return;
        };
        // SAFETY: plain system calls on our own child and our own terminal.
        unsafe {
            libc::setpgid(pgid, pgid);
            libc::tcsetpgrp(self.fd(), pgid);
        }
        self.child.store(pgid, Ordering::SeqCst);
    }

    /// The command is gone: the terminal goes back to keygate's group.
    pub fn take_back(&self) {
        self.child.store(0, Ordering::SeqCst);
        // SAFETY: a system call on our own terminal.
        unsafe {
            libc::tcsetpgrp(self.fd(), self.own);
        }
    }

    /// On SIGCHLD: when the command (`pid`, keygate's child) was stopped by Ctrl-Z,
    /// keygate stops too, handing the terminal back to the shell; once continued
    /// (`fg`), it gives the terminal to the command again and continues it.
    pub fn on_child_signal(&self, pid: u32) {
        let pid = libc::id_t::from(pid);
        let child = self.child.load(Ordering::SeqCst);
        if child == 0 {
            return;
        }
        // SAFETY: waitid(2) with WSTOPPED only (never WEXITED: the exit is reaped by
        // tokio's wait) fills `info`, which we own.
        let stopped = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            libc::waitid(libc::P_PID, pid, &mut info, libc::WSTOPPED | libc::WNOHANG) == 0
                && info.si_pid() != 0
        };
        // Stopped for touching the terminal during a prompt: the prompt continues it.
        if !stopped || self.prompting.load(Ordering::SeqCst) {
            return;
        }
        // SAFETY: system calls on our own terminal, process and child's group.
        unsafe {
            let foreground = libc::tcgetpgrp(self.fd());
            if foreground != child && foreground != self.own {
                return;
            }
            libc::tcsetpgrp(self.fd(), self.own);
            libc::kill(libc::getpid(), libc::SIGTSTP);
            // Continued. In the foreground again (`fg`), the command gets the terminal.
            if libc::tcgetpgrp(self.fd()) == self.own {
                libc::tcsetpgrp(self.fd(), child);
            }
            libc::kill(-child, libc::SIGCONT);
        }
    }

    /// Asks about `pending` until answered or until `held` says it is no longer waiting
    /// (answered elsewhere, timed out, client gone): the answer, or none.
    fn ask(&self, pending: &Pending, held: impl Fn() -> bool) -> Option<Answer> {
        self.prompting.store(true, Ordering::SeqCst);
        let fd = self.fd();
        let child = self.child.load(Ordering::SeqCst);
        // SAFETY: termios calls on our own terminal into a struct we own.
        let saved = unsafe {
            let mut saved: libc::termios = std::mem::zeroed();
            (libc::tcgetattr(fd, &mut saved) == 0).then_some(saved)
        };
        // SAFETY: as above; kill(2) on the command's own process group.
        unsafe {
            // Stopped first: a read of the terminal it already waits in would
            // otherwise take the answer (the background check is made when a read
            // starts; a stopped read restarts, and is checked, once continued).
            if child != 0 {
                libc::kill(-child, libc::SIGSTOP);
            }
        }
        if child != 0 {
            wait_stopped(child);
        }
        // SAFETY: as above.
        unsafe {
            libc::tcsetpgrp(fd, self.own);
            // Keys typed for the command before the prompt showed are not an answer.
            libc::tcflush(fd, libc::TCIFLUSH);
            if let Some(saved) = saved {
                let mut cooked = saved;
                cooked.c_lflag |= libc::ICANON | libc::ECHO | libc::ISIG | libc::TOSTOP;
                cooked.c_iflag |= libc::ICRNL;
                cooked.c_oflag |= libc::OPOST | libc::ONLCR;
                libc::tcsetattr(fd, libc::TCSADRAIN, &cooked);
            }
        }
        let answer = self.dialogue(pending, held);
        // SAFETY: as above.
        unsafe {
            if let Some(saved) = saved {
                libc::tcsetattr(fd, libc::TCSADRAIN, &saved);
            }
            if child != 0 {
                libc::tcsetpgrp(fd, child);
                libc::kill(-child, libc::SIGCONT);
                libc::kill(-child, libc::SIGWINCH);
            }
        }
        self.prompting.store(false, Ordering::SeqCst);
        answer
    }

    fn dialogue(&self, pending: &Pending, held: impl Fn() -> bool) -> Option<Answer> {
        let mut tty = &self.tty;
        let _ = write!(
            tty,
            "\n\x07keygate: {} wants {}, which is not allowed.\n  Allow [o]nce, allow [a]lways (adds `{}` to network.allow in keygate.yaml), or [d]eny? ",
            pending.client, pending.what, pending.allow
        );
        let mut line = Vec::new();
        loop {
            if !held() {
                let _ = writeln!(
                    tty,
                    "\nkeygate: no longer waiting (answered elsewhere, timed out, or the client left)"
                );
                return None;
            }
            let mut poll = libc::pollfd {
                fd: self.fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let timeout = libc::c_int::try_from(POLL.as_millis()).unwrap_or(200);
            // SAFETY: poll(2) on one descriptor we own, `poll` lives across the call.
            if unsafe { libc::poll(&mut poll, 1, timeout) } <= 0 {
                continue;
            }
            let mut buf = [0u8; 256];
            let n = match tty.read(&mut buf) {
                Ok(0) | Err(_) => return None,
                Ok(n) => n,
            };
            line.extend_from_slice(&buf[..n]);
            if !line.contains(&b'\n') {
                continue;
            }
            let text = String::from_utf8_lossy(&line).trim().to_ascii_lowercase();
            line.clear();
            match parse(&text) {
                Some(answer) => return Some(answer),
                None => {
                    let _ = write!(tty, "  Answer o (once), a (always) or d (deny): ");
                }
            }
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        self.take_back();
    }
}

/// Waits (half a second at most) until every process of group `pgid` has stopped: a
/// stop signal is acted on when its target next runs, and until then a read it waits
/// in could still take keys typed at the prompt.
fn wait_stopped(pgid: libc::pid_t) {
    for _ in 0..50 {
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return;
        };
        let running = entries.flatten().any(|entry| {
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            // pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses.
            let Some((_, rest)) = stat.rsplit_once(") ") else {
                return false;
            };
            let mut fields = rest.split(' ');
            let state = fields.next().unwrap_or("");
            let pgrp = fields.nth(1).and_then(|p| p.parse::<libc::pid_t>().ok());
            pgrp == Some(pgid) && !matches!(state, "T" | "t" | "Z" | "X")
        });
        if !running {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A typed answer: `o`/`once`/`y`/`yes`, `a`/`always`, `d`/`deny`/`n`/`no`.
fn parse(text: &str) -> Option<Answer> {
    match text {
        "o" | "once" | "y" | "yes" => Some(Answer::Once),
        "a" | "always" => Some(Answer::Always),
        "d" | "deny" | "n" | "no" => Some(Answer::Deny),
        _ => None,
    }
}

/// `--ask`: the terminal to ask on, with `network.ask` on for this run; none (with a
/// warning) when keygate has no terminal. `network.ask: true` in keygate.yaml asks on
/// the terminal too.
pub(super) fn asking(
    args: &crate::cli::RunArgs,
    config: &mut keygate::config::Config,
) -> Option<Arc<Terminal>> {
    if !args.ask && !config.ask {
        return None;
    }
    let terminal = Terminal::open();
    if terminal.is_none() && args.ask {
        eprintln!(
            "keygate: {}: standard input is not a terminal, so there is nobody to ask; requests to hosts that are not allowed are refused at once",
            match args.ask {
                true => "--ask",
                false => "network.ask",
            }
        );
    }
    config.ask = terminal.is_some();
    terminal
}

/// Asks on `terminal` about each request `proxy` holds, one at a time, until the proxy
/// is dropped. "Always" writes the rule to `config_file` and is remembered for the rest
/// of the run (the session's policy is not reloaded).
pub async fn prompts(proxy: Arc<Proxy>, terminal: Arc<Terminal>, config_file: PathBuf) {
    let mut changes = proxy.approvals.subscribe();
    let mut asked = 0;
    loop {
        let next = proxy.approvals.pending().into_iter().find(|p| p.id > asked);
        let Some(pending) = next else {
            if changes.changed().await.is_err() {
                return;
            }
            continue;
        };
        asked = pending.id;
        let (asking, watching) = (terminal.clone(), proxy.clone());
        let id = pending.id;
        let asked_about = pending.clone();
        let answer = tokio::task::spawn_blocking(move || {
            asking.ask(&asked_about, || watching.approvals.is_held(id))
        })
        .await
        .ok()
        .flatten();
        let Some(answer) = answer else {
            continue;
        };
        if answer == Answer::Always {
            let note = write_rule(&config_file, &pending.allow);
            proxy.approvals.remember(&pending.allow);
            let mut tty = &terminal.tty;
            let _ = writeln!(tty, "keygate: {note}");
        }
        proxy.approvals.answer(id, answer, WHO);
    }
}

/// Adds `pattern` to `network.allow` in `path`, keeping its comments; says what
/// happened (a failure still allows the host for the rest of the run).
fn write_rule(path: &std::path::Path, pattern: &str) -> String {
    match rules::write(path, List::Allow, pattern) {
        Ok(Some(_)) => format!("added {pattern} to network.allow in {}", path.display()),
        Ok(None) => format!("{pattern} is already in network.allow"),
        Err(WriteError::Bad(reason)) => {
            format!("allowed {pattern} for this run; not written: {reason}")
        }
        Err(WriteError::Unreadable(reason) | WriteError::Unwritable(reason)) => {
            format!("allowed {pattern} for this run; {reason}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_leniently_and_nothing_else_is_one() {
        assert_eq!(parse("o"), Some(Answer::Once));
        assert_eq!(parse("yes"), Some(Answer::Once));
        assert_eq!(parse("always"), Some(Answer::Always));
        assert_eq!(parse("n"), Some(Answer::Deny));
        assert_eq!(parse(""), None);
        assert_eq!(parse("allow"), None);
    }

    #[test]
    fn always_writes_the_rule_keeping_comments() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keygate.yaml");
        std::fs::write(&path, "# mine\nnetwork:\n  mode: custom\n").unwrap();
        let note = write_rule(&path, "api.example.com");
        assert!(note.starts_with("added api.example.com"), "{note}");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# mine\n"), "{text}");
        assert!(text.contains("api.example.com"), "{text}");
        let again = write_rule(&path, "api.example.com");
        assert!(again.contains("already"), "{again}");
    }
}
