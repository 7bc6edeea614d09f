//! The jail (SPEC §10): `keygate run` keeps its command in a box whose only way out is
//! keygate. Linux: new user, mount, pid, ipc, uts and network namespaces built by
//! bubblewrap ([`bwrap`]), with keygate itself as the jail's first process ([`init`]),
//! which relays `127.0.0.1:<port>` to the session's Unix socket ([`relay`]) and joins a
//! fresh session keyring before it starts the command. macOS: a Seatbelt profile
//! ([`seatbelt`], driven by [`macos`]; generated and unit-tested, untested on a real Mac).
//!
//! Everything above the [`Engine`] seam (flags, config, [`paths::Layout`], the
//! environment, the session) is shared by every platform.

#[cfg(unix)]
pub mod bwrap;
pub mod init;
pub mod macos;
pub mod paths;
#[cfg(unix)]
pub mod relay;
pub mod seatbelt;
#[cfg(target_os = "linux")]
pub mod seccomp;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;

pub use paths::Layout;

/// Environment variables never passed into the jail: the session bus (and with it the
/// Secret Service), the SSH and GPG agents. `KEYGATE_*` variables go too.
pub const STRIPPED_VARS: &[&str] = &[
    "DBUS_SESSION_BUS_ADDRESS",
    "SSH_AUTH_SOCK",
    "SSH_AGENT_PID",
    "GPG_AGENT_INFO",
    "XDG_RUNTIME_DIR",
];

/// True for a variable the jail never passes on ([`STRIPPED_VARS`] and `KEYGATE_*`).
pub fn is_stripped(name: &str) -> bool {
    STRIPPED_VARS.contains(&name) || name.starts_with("KEYGATE_")
}

/// Everything an engine needs to build one jail.
#[derive(Debug, Clone)]
pub struct Plan {
    /// What is writable, hidden and shown.
    pub layout: Layout,
    /// The command's working directory (writable, at its own path).
    pub cwd: PathBuf,
    /// The keygate binary, run inside as the jail's first process.
    pub exe: PathBuf,
    /// The port the relay listens on inside the jail (127.0.0.1).
    pub port: u16,
    /// The session listener's Unix socket (visible inside at the same path).
    pub socket: PathBuf,
    /// Variables to set in the command's environment.
    pub set_env: BTreeMap<String, String>,
    /// Variables to remove from it.
    pub unset_env: Vec<String>,
    /// The command and its arguments.
    pub command: Vec<OsString>,
}

/// Why the jail cannot be built here, and the ways forward.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailable {
    /// The engine that was tried (`bubblewrap`, `seatbelt`).
    pub engine: &'static str,
    /// What failed.
    pub why: String,
    /// What to install or enable.
    pub fix: String,
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot build the jail ({}): {}. {} Or, if this already runs in a container or VM whose only way out is keygate, run with --no-jail (see docs/guides/jail.md).",
            self.engine, self.why, self.fix
        )
    }
}

impl std::error::Error for Unavailable {}

/// A platform's way of building the jail.
pub trait Engine: Send + Sync {
    /// Short name for messages (`bubblewrap`).
    fn name(&self) -> &'static str;
    /// Checks that a jail can be built here (the engine is installed and works).
    fn check(&self) -> Result<(), Unavailable>;
    /// True when the jailed command reaches keygate over TCP on localhost (Seatbelt,
    /// which has no network namespace) instead of a relay to the session's Unix socket.
    fn listens_on_tcp(&self) -> bool {
        false
    }
    /// The command that runs `plan` jailed; `info_fd` is a descriptor the engine may
    /// write its status to (bubblewrap's `--info-fd`), inherited by the child.
    fn command(
        &self,
        plan: &Plan,
        info_fd: Option<i32>,
    ) -> Result<std::process::Command, Unavailable>;
}

/// The engine for this platform, or why there is none.
pub fn engine() -> Result<Box<dyn Engine>, Unavailable> {
    #[cfg(target_os = "linux")]
    {
        bwrap::Bwrap::locate().map(|b| Box::new(b) as Box<dyn Engine>)
    }
    #[cfg(target_os = "macos")]
    {
        macos::Seatbelt::locate().map(|s| Box::new(s) as Box<dyn Engine>)
    }
    #[cfg(not(any(target_os = "linux", target_os = "macos")))]
    {
        Err(Unavailable {
            engine: "none",
            why: format!(
                "keygate has no jail engine for {} yet",
                std::env::consts::OS
            ),
            fix: "Run keygate inside a container or VM whose only way out is the proxy.".into(),
        })
    }
}
