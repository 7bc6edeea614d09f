//! The Linux engine: bubblewrap (`bwrap`, the package `bubblewrap`, what Flatpak and
//! sandbox-runtime use), driven by keygate.
//!
//! The jail: new user, mount, pid, ipc, uts, cgroup and network namespaces; `/`
//! read-only; a fresh `/dev` and `/proc` (keygate's process is not in it); the
//! [`super::paths::Layout`] applied as mounts; no capabilities; no further user
//! namespaces; the jail dies with keygate. keygate's own binary is the first process
//! (`keygate jail-init`), which starts the relay and then the command.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use super::paths::Step;
use super::{Engine, Plan, Unavailable};

/// Overrides which bubblewrap binary is used (tests use it to make the engine missing).
pub const BWRAP_ENV: &str = "KEYGATE_BWRAP";
/// How long the start-up probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// Where a hidden file's content comes from: nothing.
const EMPTY_FILE: &str = "/dev/null";

const INSTALL: &str = "Install bubblewrap (Debian/Ubuntu: `sudo apt install bubblewrap`; Fedora: `sudo dnf install bubblewrap`; Arch: `sudo pacman -S bubblewrap`).";

/// The bubblewrap engine.
#[derive(Debug, Clone)]
pub struct Bwrap {
    binary: PathBuf,
}

impl Bwrap {
    /// Finds `bwrap`: `$KEYGATE_BWRAP`, else the first one on `PATH`.
    pub fn locate() -> Result<Bwrap, Unavailable> {
        if let Some(forced) = std::env::var_os(BWRAP_ENV) {
            let binary = PathBuf::from(forced);
            if !is_executable(&binary) {
                return Err(Unavailable {
                    engine: "bubblewrap",
                    why: format!(
                        "{} (from {BWRAP_ENV}) is not an executable file",
                        binary.display()
                    ),
                    fix: format!("Point {BWRAP_ENV} at bwrap, or unset it. {INSTALL}"),
                });
            }
            return Ok(Bwrap { binary });
        }
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .map(|dir| dir.join("bwrap"))
            .find(|candidate| is_executable(candidate))
            .map(|binary| Bwrap { binary })
            .ok_or_else(|| Unavailable {
                engine: "bubblewrap",
                why: "bwrap is not installed (not found on PATH)".into(),
                fix: INSTALL.into(),
            })
    }

    /// The binary in use.
    pub fn binary(&self) -> &Path {
        &self.binary
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The namespaces and hardening flags every jail gets.
fn base_args() -> Vec<OsString> {
    [
        "--unshare-user",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-net",
        "--unshare-cgroup-try",
        // No further user namespace inside: it would hand the command capabilities over
        // a copy of the jail's mounts.
        "--disable-userns",
        "--die-with-parent",
        "--cap-drop",
        "ALL",
        "--hostname",
        "keygate-jail",
        "--ro-bind",
        "/",
        "/",
        "--dev",
        "/dev",
        "--proc",
        "/proc",
    ]
    .iter()
    .map(OsString::from)
    .collect()
}

/// What a path is on the host, for choosing how to hide it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A directory: hidden by an empty read-only tmpfs.
    Dir,
    /// Anything else: hidden by an empty file.
    File,
    /// Not there: nothing to hide or show.
    Missing,
}

/// The host's view of `path` (symbolic links followed).
pub fn kind_of(path: &Path) -> Kind {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Kind::Dir,
        Ok(_) => Kind::File,
        Err(_) => Kind::Missing,
    }
}

/// The mount arguments for `steps`; `kind` says what each path is on the host.
pub fn mount_args(steps: &[Step], kind: impl Fn(&Path) -> Kind) -> Vec<OsString> {
    let mut args: Vec<OsString> = Vec::new();
    let mut read_only: Vec<&Path> = Vec::new();
    let mut push = |items: &[&std::ffi::OsStr]| args.extend(items.iter().map(OsString::from));
    for step in steps {
        match step {
            Step::Scratch(p) => push(&["--tmpfs".as_ref(), p.as_os_str()]),
            Step::Hide(p) => match kind(p) {
                Kind::Dir => {
                    push(&["--tmpfs".as_ref(), p.as_os_str()]);
                    read_only.push(p);
                }
                Kind::File => push(&["--ro-bind".as_ref(), EMPTY_FILE.as_ref(), p.as_os_str()]),
                Kind::Missing => {}
            },
            Step::Writable(p) if kind(p) != Kind::Missing => {
                push(&["--bind".as_ref(), p.as_os_str(), p.as_os_str()]);
            }
            Step::Visible(p) if kind(p) != Kind::Missing => {
                push(&["--ro-bind".as_ref(), p.as_os_str(), p.as_os_str()]);
            }
            Step::Writable(_) | Step::Visible(_) => {}
        }
    }
    // Read-only only now: mounts inside a hidden directory need their mount points
    // created first.
    for p in read_only {
        push(&["--remount-ro".as_ref(), p.as_os_str()]);
    }
    args
}

/// The whole bwrap command line after the binary, for `plan`.
pub fn args(plan: &Plan, info_fd: Option<i32>, kind: impl Fn(&Path) -> Kind) -> Vec<OsString> {
    let mut args = base_args();
    args.extend(mount_args(&plan.layout.steps(Path::new("/tmp")), kind));
    // A command without a terminal gets a session of its own: it cannot push input into
    // the caller's terminal (TIOCSTI). With a terminal, job control needs the same one.
    if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        args.push("--new-session".into());
    }
    // keygate's first process is pid 1 itself, so signals keygate forwards reach it
    // (bubblewrap's own pid 1 would not pass them on).
    args.push("--as-pid-1".into());
    args.push("--chdir".into());
    args.push(plan.cwd.clone().into());
    if let Some(fd) = info_fd {
        args.push("--info-fd".into());
        args.push(fd.to_string().into());
    }
    args.push("--".into());
    args.push(plan.exe.clone().into());
    args.push("jail-init".into());
    args.push("--port".into());
    args.push(plan.port.to_string().into());
    args.push("--socket".into());
    args.push(plan.socket.clone().into());
    args.push("--".into());
    args.extend(plan.command.iter().cloned());
    args
}

impl Engine for Bwrap {
    fn name(&self) -> &'static str {
        "bubblewrap"
    }

    fn check(&self) -> Result<(), Unavailable> {
        let mut child = std::process::Command::new(&self.binary)
            .args(base_args())
            .args(["--tmpfs", "/tmp", "--", "true"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Unavailable {
                engine: "bubblewrap",
                why: format!("cannot run {}: {e}", self.binary.display()),
                fix: INSTALL.into(),
            })?;
        let started = std::time::Instant::now();
        loop {
            match child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(()),
                Ok(Some(_)) => break,
                Ok(None) if started.elapsed() < PROBE_TIMEOUT => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(Unavailable {
                        engine: "bubblewrap",
                        why: format!("{} did not finish a test run", self.binary.display()),
                        fix: INSTALL.into(),
                    });
                }
            }
        }
        let mut stderr = String::new();
        if let Some(mut pipe) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
        }
        Err(explain(stderr.trim()))
    }

    fn command(
        &self,
        plan: &Plan,
        info_fd: Option<i32>,
    ) -> Result<std::process::Command, Unavailable> {
        let mut cmd = std::process::Command::new(&self.binary);
        cmd.args(args(plan, info_fd, kind_of));
        for name in &plan.unset_env {
            cmd.env_remove(name);
        }
        cmd.envs(&plan.set_env);
        Ok(cmd)
    }
}

/// Turns bwrap's complaint into why and what to do.
fn explain(stderr: &str) -> Unavailable {
    let userns = stderr.contains("namespace")
        || stderr.contains("Operation not permitted")
        || stderr.contains("Permission denied");
    let fix = if userns {
        "Unprivileged user namespaces are off here. On a host: `sudo sysctl -w kernel.unprivileged_userns_clone=1` (Debian) or allow bwrap in AppArmor (Ubuntu 24.04: `kernel.apparmor_restrict_unprivileged_userns=0`, or a profile for bwrap). Inside Docker the default seccomp profile forbids them: run the container with `--security-opt seccomp=unconfined`, or keep the container's only way out through keygate and use --no-jail."
    } else if stderr.contains("Unknown option") || stderr.contains("unrecognized") {
        "This bwrap is too old (keygate needs 0.8 or later, for --disable-userns); upgrade bubblewrap."
    } else {
        INSTALL
    };
    let why = if stderr.is_empty() {
        "bwrap failed a test run".to_string()
    } else {
        format!("bwrap failed a test run: {}", stderr.trim_end_matches('.'))
    };
    Unavailable {
        engine: "bubblewrap",
        why,
        fix: fix.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jail::Layout;

    fn plan() -> Plan {
        Plan {
            layout: Layout {
                writable: vec!["/work".into()],
                hidden: vec!["/home/u/.ssh".into(), "/home/u/.netrc".into()],
                always_hidden: vec!["/k/ca".into()],
                visible: vec!["/k/sessions/abc".into()],
            },
            cwd: "/work".into(),
            exe: "/usr/bin/keygate".into(),
            port: 8877,
            socket: "/k/sessions/abc/keygate.sock".into(),
            set_env: Default::default(),
            unset_env: vec![],
            command: vec!["claude".into(), "--flag".into()],
        }
    }

    fn kind(p: &Path) -> Kind {
        match p.to_str() {
            Some("/home/u/.netrc") => Kind::File,
            _ => Kind::Dir,
        }
    }

    fn joined(args: &[OsString]) -> String {
        args.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn namespaces_mounts_and_the_first_process() {
        let line = joined(&args(&plan(), Some(5), kind));
        for flag in [
            "--unshare-user",
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            "--unshare-net",
            "--disable-userns",
            "--die-with-parent",
            "--cap-drop ALL",
            "--ro-bind / /",
            "--proc /proc",
            "--as-pid-1",
            "--info-fd 5",
        ] {
            assert!(line.contains(flag), "{flag} missing in {line}");
        }
        assert!(line.contains(
            "--tmpfs /tmp --bind /work /work --ro-bind /dev/null /home/u/.netrc --tmpfs /home/u/.ssh --tmpfs /k/ca --ro-bind /k/sessions/abc /k/sessions/abc --remount-ro /home/u/.ssh --remount-ro /k/ca"
        ), "{line}");
        assert!(line.ends_with(
            "--chdir /work --info-fd 5 -- /usr/bin/keygate jail-init --port 8877 --socket /k/sessions/abc/keygate.sock -- claude --flag"
        ), "{line}");
    }

    #[test]
    fn missing_paths_are_skipped() {
        let steps = vec![Step::Hide("/nope".into()), Step::Writable("/nope2".into())];
        assert!(mount_args(&steps, |_| Kind::Missing).is_empty());
    }

    #[test]
    fn explains_failures() {
        let e = explain(
            "bwrap: No permissions to create new namespace, likely because the kernel does not allow non-privileged user namespaces.",
        );
        assert!(e.fix.contains("seccomp"), "{}", e.fix);
        assert!(e.to_string().contains("--no-jail"));
        assert!(explain("").why.contains("test run"));
    }

    #[test]
    fn stripped_variables() {
        assert!(crate::jail::is_stripped("DBUS_SESSION_BUS_ADDRESS"));
        assert!(crate::jail::is_stripped("KEYGATE_HOME"));
        assert!(!crate::jail::is_stripped("PATH"));
    }
}
