//! The macOS engine: `sandbox-exec` with a [`super::seatbelt`] profile generated for the
//! session. There are no namespaces: the command reaches the session's listener on
//! `localhost:<port>` directly (the profile allows no other outbound connection), and
//! keygate's process is protected by the profile (no reads of its files) rather than
//! hidden. Plain Rust, so it is built and unit-tested on every platform; it is chosen
//! only on macOS, and it is UNTESTED on a real Mac.

use std::path::PathBuf;

use super::seatbelt::{self, SeatbeltPolicy};
use super::{Engine, Plan, Unavailable};

/// The Seatbelt engine.
#[derive(Debug, Clone)]
pub struct Seatbelt {
    binary: PathBuf,
}

impl Seatbelt {
    /// The system's `sandbox-exec`.
    pub fn locate() -> Result<Seatbelt, Unavailable> {
        let binary = PathBuf::from(seatbelt::SANDBOX_EXEC);
        if !binary.exists() {
            return Err(Unavailable {
                engine: "seatbelt",
                why: format!("{} is missing", binary.display()),
                fix: "sandbox-exec ships with macOS; on another system keygate has no jail.".into(),
            });
        }
        Ok(Seatbelt { binary })
    }

    /// The profile for `plan`: writable paths, hidden paths (the always-hidden ones
    /// too) and the read-only exceptions, outbound only to keygate's port.
    pub fn policy(plan: &Plan) -> SeatbeltPolicy {
        let layout = &plan.layout;
        SeatbeltPolicy {
            proxy_port: plan.port,
            writable: layout.writable.clone(),
            hidden: layout
                .hidden
                .iter()
                .chain(&layout.always_hidden)
                .cloned()
                .collect(),
            readable: layout.visible.clone(),
        }
    }
}

impl Engine for Seatbelt {
    fn name(&self) -> &'static str {
        "seatbelt"
    }

    fn check(&self) -> Result<(), Unavailable> {
        Ok(())
    }

    fn listens_on_tcp(&self) -> bool {
        true
    }

    fn command(
        &self,
        plan: &Plan,
        _info_fd: Option<i32>,
    ) -> Result<std::process::Command, Unavailable> {
        let profile = seatbelt::profile(&Self::policy(plan)).map_err(|e| Unavailable {
            engine: "seatbelt",
            why: format!("cannot write the Seatbelt profile: {e}"),
            fix: "Run from a directory whose path has no control characters, or drop the --writable/--hide path it names.".into(),
        })?;
        let mut cmd = std::process::Command::new(&self.binary);
        cmd.args(seatbelt::sandbox_exec_args(&profile, &plan.command));
        cmd.current_dir(&plan.cwd);
        for name in &plan.unset_env {
            cmd.env_remove(name);
        }
        cmd.envs(&plan.set_env);
        Ok(cmd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jail::Layout;

    #[test]
    fn the_command_is_sandbox_exec_with_the_sessions_profile() {
        let plan = Plan {
            layout: Layout {
                writable: vec!["/work".into()],
                hidden: vec!["/Users/u/.ssh".into()],
                always_hidden: vec!["/k/ca".into()],
                visible: vec!["/k/sessions/abc".into()],
            },
            cwd: "/work".into(),
            exe: "/usr/local/bin/keygate".into(),
            port: 50123,
            socket: "/k/sessions/abc/keygate.sock".into(),
            set_env: [(
                "HTTPS_PROXY".to_string(),
                "http://127.0.0.1:50123".to_string(),
            )]
            .into(),
            unset_env: vec!["SSH_AUTH_SOCK".into()],
            command: vec!["claude".into()],
        };
        let engine = Seatbelt {
            binary: seatbelt::SANDBOX_EXEC.into(),
        };
        let cmd = engine.command(&plan, None).expect("a profile");
        assert_eq!(cmd.get_program(), seatbelt::SANDBOX_EXEC);
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(args[0], "-p");
        assert!(args[1].contains("localhost:50123"), "{}", args[1]);
        assert!(args[1].contains("/k/ca") && args[1].contains("/Users/u/.ssh"));
        assert_eq!(&args[2..], ["--", "claude"]);
        assert!(engine.listens_on_tcp());
    }
}
