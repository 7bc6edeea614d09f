//! What the jail shows, hides and lets the command write (SPEC §10): pure functions of
//! the home directory, the flags and the configuration, so every platform's engine
//! starts from the same [`Layout`] and the rules are unit-tested without a jail.

use std::path::{Component, Path, PathBuf};

/// Credential files and directories hidden by default, relative to the home directory.
/// Each holds a key, a token or an agent socket that a jailed command must not read.
pub const CREDENTIAL_PATHS: &[&str] = &[
    ".ssh",
    ".aws",
    ".config/gcloud",
    ".azure",
    ".kube",
    ".docker/config.json",
    ".netrc",
    ".git-credentials",
    ".config/gh",
    ".npmrc",
    ".pypirc",
    ".cargo/credentials",
    ".cargo/credentials.toml",
    ".gnupg",
    ".password-store",
    ".local/share/keyrings",
];

/// An agent's own state, writable in the jail: (profile, paths relative to home).
/// A path ending in `.json` is a file, the others are directories.
pub const AGENT_PROFILES: &[(&str, &[&str])] = &[
    ("claude", &[".claude", ".claude.json"]),
    ("codex", &[".codex"]),
    ("gemini", &[".gemini"]),
];

/// The profile for `--agent NAME`, or for the command's own name when no flag is given.
pub fn agent_profile(flag: Option<&str>, command: &Path) -> Option<&'static str> {
    let name = match flag {
        Some(flag) => flag.to_string(),
        None => command.file_name()?.to_string_lossy().into_owned(),
    };
    AGENT_PROFILES
        .iter()
        .find(|(profile, _)| *profile == name)
        .map(|(profile, _)| *profile)
}

/// The state paths of an agent profile under `home`.
pub fn agent_paths(profile: &str, home: &Path) -> Vec<PathBuf> {
    AGENT_PROFILES
        .iter()
        .filter(|(p, _)| *p == profile)
        .flat_map(|(_, paths)| paths.iter().map(|p| home.join(p)))
        .collect()
}

/// The agent names `--agent` accepts.
pub fn agent_names() -> Vec<&'static str> {
    AGENT_PROFILES.iter().map(|(p, _)| *p).collect()
}

/// What the jail's file system looks like, before an engine turns it into mounts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layout {
    /// Writable at their own paths (the current directory first).
    pub writable: Vec<PathBuf>,
    /// Hidden unless a more specific rule shows them (empty, or unreadable).
    pub hidden: Vec<PathBuf>,
    /// Hidden whatever else is said: keygate's own files. Nothing re-exposes them.
    pub always_hidden: Vec<PathBuf>,
    /// Read-only exceptions shown inside hidden places: the session's files, keygate's
    /// own binary.
    pub visible: Vec<PathBuf>,
}

/// One mount step, in the order an engine applies them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// An empty private directory (`/tmp`), writable.
    Scratch(PathBuf),
    /// Hide a directory (an empty read-only directory over it) or a file (an empty file).
    Hide(PathBuf),
    /// The host path, writable, at the same place.
    Writable(PathBuf),
    /// The host path, read-only, at the same place.
    Visible(PathBuf),
}

impl Step {
    fn path(&self) -> &Path {
        match self {
            Step::Scratch(p) | Step::Hide(p) | Step::Writable(p) | Step::Visible(p) => p,
        }
    }

    /// Among steps on the same path, the later one wins: writable first, then hide.
    fn rank(&self) -> u8 {
        match self {
            Step::Scratch(_) => 0,
            Step::Writable(_) => 1,
            Step::Hide(_) => 2,
            Step::Visible(_) => 3,
        }
    }
}

/// Number of normal components: a mount on a deeper path is applied after a mount on a
/// path that contains it, so the most specific rule wins.
fn depth(path: &Path) -> usize {
    path.components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .count()
}

impl Layout {
    /// The mount steps: a private `/tmp`, then every writable and hidden path from the
    /// shallowest to the deepest (so the current directory stays visible under a hidden
    /// directory or `/tmp`, and a hidden path inside it stays hidden), then keygate's
    /// own files, then the read-only exceptions. Duplicates are dropped.
    pub fn steps(&self, private_tmp: &Path) -> Vec<Step> {
        let mut general: Vec<Step> = vec![Step::Scratch(private_tmp.to_path_buf())];
        general.extend(self.writable.iter().cloned().map(Step::Writable));
        general.extend(self.hidden.iter().cloned().map(Step::Hide));
        general.sort_by(|a, b| {
            (depth(a.path()), a.rank(), a.path()).cmp(&(depth(b.path()), b.rank(), b.path()))
        });
        general.dedup();
        let mut always: Vec<Step> = self.always_hidden.iter().cloned().map(Step::Hide).collect();
        always.sort_by(|a, b| (depth(a.path()), a.path()).cmp(&(depth(b.path()), b.path())));
        always.dedup();
        let mut visible: Vec<Step> = self.visible.iter().cloned().map(Step::Visible).collect();
        visible.sort_by(|a, b| (depth(a.path()), a.path()).cmp(&(depth(b.path()), b.path())));
        visible.dedup();
        general.into_iter().chain(always).chain(visible).collect()
    }
}

/// The entries of `$KEYGATE_HOME` a jailed command must never see, whatever the
/// writable paths say: the CA key, the registry, the configuration, the recipes, the
/// audit log with its lock and the rotated files present now (`audit.jsonl.N`).
pub fn keygate_private_paths(home: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = [
        "ca",
        "secrets.yaml",
        "keygate.yaml",
        "addons",
        "audit.jsonl",
        "audit.jsonl.lock",
    ]
    .iter()
    .map(|p| home.join(p))
    .collect();
    paths.extend(
        (1..)
            .map(|n| crate::home::rotated(&home.join("audit.jsonl"), n))
            .take_while(|p| p.is_file()),
    );
    paths
}

/// Makes `path` absolute against `cwd` and resolves symbolic links when it exists, so a
/// link cannot point a rule somewhere else than what it names.
pub fn absolute(path: &Path, cwd: &Path) -> PathBuf {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        cwd.join(path)
    };
    std::fs::canonicalize(&joined).unwrap_or(joined)
}

/// Expands a leading `~/` to `home`.
pub fn expand_tilde(path: &Path, home: &Path) -> PathBuf {
    match path.strip_prefix("~") {
        Ok(rest) => home.join(rest),
        Err(_) => path.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    #[test]
    fn agent_profile_from_flag_or_command_name() {
        assert_eq!(
            agent_profile(None, Path::new("/usr/bin/claude")),
            Some("claude")
        );
        assert_eq!(agent_profile(None, Path::new("codex")), Some("codex"));
        assert_eq!(agent_profile(None, Path::new("python3")), None);
        assert_eq!(
            agent_profile(Some("gemini"), Path::new("node")),
            Some("gemini")
        );
        assert_eq!(
            agent_paths("claude", Path::new("/h")),
            vec![p("/h/.claude"), p("/h/.claude.json")]
        );
    }

    #[test]
    fn the_most_specific_rule_wins() {
        let layout = Layout {
            writable: vec![p("/tmp/work"), p("/home/u/.ssh/project")],
            hidden: vec![p("/home/u/.ssh"), p("/tmp/work/.aws"), p("/tmp/work")],
            always_hidden: vec![p("/tmp/work/kg/ca")],
            visible: vec![p("/tmp/work/kg/sessions/x")],
        };
        let steps = layout.steps(Path::new("/tmp"));
        assert_eq!(
            steps,
            vec![
                Step::Scratch(p("/tmp")),
                // Same path: writable first, then hide, so hiding the current directory
                // hides it.
                Step::Writable(p("/tmp/work")),
                Step::Hide(p("/tmp/work")),
                Step::Hide(p("/home/u/.ssh")),
                Step::Hide(p("/tmp/work/.aws")),
                Step::Writable(p("/home/u/.ssh/project")),
                Step::Hide(p("/tmp/work/kg/ca")),
                Step::Visible(p("/tmp/work/kg/sessions/x")),
            ]
        );
    }

    #[test]
    fn keygate_files_and_tilde() {
        let private = keygate_private_paths(Path::new("/k"));
        assert!(private.contains(&p("/k/ca")));
        assert!(private.contains(&p("/k/secrets.yaml")));
        assert!(private.contains(&p("/k/audit.jsonl.lock")));
        assert_eq!(expand_tilde(Path::new("~/x"), Path::new("/h")), p("/h/x"));
        assert_eq!(expand_tilde(Path::new("/a/x"), Path::new("/h")), p("/a/x"));
        assert_eq!(
            absolute(Path::new("rel"), Path::new("/nonexistent")),
            p("/nonexistent/rel")
        );
    }
}
