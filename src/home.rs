//! `$KEYGATE_HOME` (SPEC §2) and every path under it; owner-only file creation.
//!
//! Resolution: `--home DIR` > `KEYGATE_HOME` > the platform config dir
//! (`~/.config/keygate` on Linux). Only `main` resolves it; everything else is handed a
//! [`Home`].

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Owner-only mode for keygate's directories.
pub const DIR_MODE: u32 = 0o700;
/// Owner-only mode for keygate's files (the CA key above all).
pub const FILE_MODE: u32 = 0o600;
/// Mode for public files meant to be read by other tools (the CA certificate, the bundle).
pub const PUBLIC_FILE_MODE: u32 = 0o644;

/// The keygate state directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home {
    root: PathBuf,
}

/// Why no home directory could be chosen.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot find a config directory for keygate: set KEYGATE_HOME or pass --home DIR (HOME is not set?)"
)]
pub struct NoHomeError;

impl Home {
    /// Uses `root` as the home directory as is.
    pub fn at(root: impl Into<PathBuf>) -> Home {
        Home { root: root.into() }
    }

    /// `flag` > `env_value` (the value of `KEYGATE_HOME`) > the platform config dir.
    pub fn resolve(flag: Option<PathBuf>, env_value: Option<PathBuf>) -> Result<Home, NoHomeError> {
        let root = flag
            .or(env_value.filter(|p| !p.as_os_str().is_empty()))
            .or_else(|| dirs::config_dir().map(|d| d.join("keygate")))
            .ok_or(NoHomeError)?;
        Ok(Home { root })
    }

    /// The home directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// `keygate.yaml`: policy and listeners (optional).
    pub fn config_file(&self) -> PathBuf {
        self.root.join("keygate.yaml")
    }
    /// `secrets.yaml`: the secret registry (metadata only).
    pub fn secrets_file(&self) -> PathBuf {
        self.root.join("secrets.yaml")
    }
    /// `ca/`: the CA and the trust bundle.
    pub fn ca_dir(&self) -> PathBuf {
        self.root.join("ca")
    }
    /// `ca/keygate-ca.pem`: the CA certificate (public).
    pub fn ca_cert(&self) -> PathBuf {
        self.ca_dir().join("keygate-ca.pem")
    }
    /// `ca/keygate-ca.key`: the CA private key (0600).
    pub fn ca_key(&self) -> PathBuf {
        self.ca_dir().join("keygate-ca.key")
    }
    /// `ca/bundle.pem`: system roots + the keygate CA.
    pub fn bundle(&self) -> PathBuf {
        self.ca_dir().join("bundle.pem")
    }
    /// `audit.jsonl`: one JSON object per decision.
    pub fn audit_log(&self) -> PathBuf {
        self.root.join("audit.jsonl")
    }
    /// `addons/`: the user's own provider recipes.
    pub fn addons_dir(&self) -> PathBuf {
        self.root.join("addons")
    }
    /// `phantoms/`: the phantom credential files the agent is given (issue 15): a
    /// `google` secret's phantom service-account JSON, whose private key keygate made
    /// (not a secret: keygate verifies the agent's JWTs with it, and answers them with
    /// phantom tokens).
    pub fn phantoms_dir(&self) -> PathBuf {
        self.root.join("phantoms")
    }
    /// `admin.sock`: the admin API of a running `keygate start` (0600).
    pub fn admin_socket(&self) -> PathBuf {
        self.root.join("admin.sock")
    }
    /// `tokens.json`: when each secret's current minted token expires (times only,
    /// never a token), written by the running keygate for `keygate secret list`.
    pub fn tokens_file(&self) -> PathBuf {
        self.root.join("tokens.json")
    }
    /// `phantoms/NAME.json`: the phantom service-account JSON of `google` secret `NAME`.
    pub fn phantom_file(&self, name: &str) -> PathBuf {
        self.phantoms_dir().join(format!("{name}.json"))
    }

    /// Takes group and other permissions off keygate's own files that have them
    /// (`secrets.yaml`, `audit.jsonl`, `ca/`): a file made by hand, copied in, or left by
    /// a permissive umask. Returns a line for each change, for a warning; the CA key is
    /// not here, it is refused instead ([`crate::ca::Ca::load`]).
    pub fn tighten(&self) -> io::Result<Vec<String>> {
        let mut changed = Vec::new();
        let rotated = (1..)
            .map(|n| rotated(&self.audit_log(), n))
            .take_while(|p| p.is_file())
            .map(|p| (p, FILE_MODE));
        for (path, mode) in [
            (self.secrets_file(), FILE_MODE),
            (self.audit_log(), FILE_MODE),
            (self.ca_dir(), DIR_MODE),
        ]
        .into_iter()
        .chain(rotated)
        {
            if let Some(was) = tighten(&path, mode)? {
                changed.push(format!(
                    "{} was open to group or others (mode {was:o}); now {mode:o}",
                    path.display()
                ));
            }
        }
        Ok(changed)
    }

    /// Creates the home directory and `ca/` (owner-only) if missing.
    pub fn ensure_dirs(&self) -> io::Result<()> {
        create_private_dir(&self.root)?;
        create_private_dir(&self.ca_dir())
    }
}

/// `PATH.N`: the Nth rotated file of a log (1 is the newest), e.g. `audit.jsonl.1`.
pub fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// Marks this process non-dumpable (`PR_SET_DUMPABLE` 0), so that no other process
/// of the same user can read its memory through `/proc/PID/mem` or ptrace, or its
/// environment through `/proc/PID/environ`: keygate holds real secret values. Every
/// keygate command calls it first. A no-op where there is no such switch.
pub fn make_undumpable() {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl(PR_SET_DUMPABLE, 0) takes no pointers; it only changes a flag of
    // this process.
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
}

/// Creates `dir` and its parents; the leaf gets mode 0700 when it is created here.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, DIR_MODE);
    builder.create(dir)
}

/// Opens a brand-new file with `mode` set at creation (never chmod after writing).
fn create_new_with_mode(path: &Path, mode: u32) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    options.open(path)
}

/// Writes `path` atomically: a temporary file beside it, created with `mode`, filled,
/// synced, then renamed over `path`. A reader sees the old or the new file, never half.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let result = (|| {
        let mut file = create_new_with_mode(&tmp, mode)?;
        file.write_all(contents)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// The permission bits of `path` that let someone other than the owner in, if any.
#[cfg(unix)]
pub fn group_or_other_bits(path: &Path) -> io::Result<u32> {
    use std::os::unix::fs::PermissionsExt;
    Ok(fs::metadata(path)?.permissions().mode() & 0o077)
}

/// Sets `path` to `mode` if it exists and lets group or others in; the old mode when
/// it did.
#[cfg(unix)]
fn tighten(path: &Path, mode: u32) -> io::Result<Option<u32>> {
    use std::os::unix::fs::PermissionsExt;
    let was = match fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_symlink() => meta.permissions().mode() & 0o7777,
        Ok(_) => return Ok(None),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if was & 0o077 == 0 {
        return Ok(None);
    }
    fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    Ok(Some(was))
}

#[cfg(not(unix))]
fn tighten(_path: &Path, _mode: u32) -> io::Result<Option<u32>> {
    Ok(None)
}

/// Always 0 where the platform has no Unix modes.
#[cfg(not(unix))]
pub fn group_or_other_bits(_path: &Path) -> io::Result<u32> {
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolution_order() {
        let flag = Some(PathBuf::from("/flag"));
        let env = Some(PathBuf::from("/env"));
        assert_eq!(
            Home::resolve(flag, env.clone()).unwrap().root(),
            Path::new("/flag")
        );
        assert_eq!(Home::resolve(None, env).unwrap().root(), Path::new("/env"));
        let default = Home::resolve(None, Some(PathBuf::new())).unwrap();
        assert!(default.root().ends_with("keygate"));
    }

    #[cfg(unix)]
    #[test]
    fn atomic_write_sets_mode_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        write_atomic(&path, b"one", FILE_MODE).unwrap();
        assert_eq!(group_or_other_bits(&path).unwrap(), 0);
        write_atomic(&path, b"two", FILE_MODE).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file is left behind");
    }

    #[cfg(unix)]
    #[test]
    fn tighten_takes_group_and_other_bits_off_keygates_files_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path().join("h"));
        home.ensure_dirs().unwrap();
        let open = |path: &Path, mode: u32| {
            fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap()
        };
        fs::write(home.audit_log(), b"").unwrap();
        open(&home.audit_log(), 0o644);
        open(&home.ca_dir(), 0o755);
        let rotated = rotated(&home.audit_log(), 1);
        fs::write(&rotated, b"").unwrap();
        open(&rotated, 0o640);
        // A symlinked secrets.yaml (dotfiles) is left alone: its target is not ours.
        let elsewhere = dir.path().join("elsewhere.yaml");
        fs::write(&elsewhere, b"[]").unwrap();
        open(&elsewhere, 0o644);
        std::os::unix::fs::symlink(&elsewhere, home.secrets_file()).unwrap();
        let keygate_yaml = home.root().join("keygate.yaml");
        fs::write(&keygate_yaml, b"").unwrap();
        open(&keygate_yaml, 0o644);

        let changed = home.tighten().unwrap();
        assert_eq!(changed.len(), 3, "{changed:?}");
        assert!(changed[0].contains("audit.jsonl") && changed[0].contains("644"));
        assert!(changed[2].contains("audit.jsonl.1") && changed[2].contains("640"));
        assert_eq!(group_or_other_bits(&home.audit_log()).unwrap(), 0);
        assert_eq!(group_or_other_bits(&home.ca_dir()).unwrap(), 0);
        assert_eq!(group_or_other_bits(&elsewhere).unwrap(), 0o044);
        assert_eq!(group_or_other_bits(&keygate_yaml).unwrap(), 0o044);
        assert!(home.tighten().unwrap().is_empty(), "nothing left to do");
    }

    #[cfg(unix)]
    #[test]
    fn private_dirs_are_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path().join("h"));
        home.ensure_dirs().unwrap();
        assert_eq!(group_or_other_bits(home.root()).unwrap(), 0);
        assert_eq!(group_or_other_bits(&home.ca_dir()).unwrap(), 0);
    }
}
