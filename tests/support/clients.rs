//! Real clients behind the real binary (tests/integration/clients.rs): where the
//! clients installed by scripts/setup-test-clients are, a fake of the services they talk
//! to, and a [`Sandbox`] that registers secrets with `keygate secret add` and runs a
//! client under `keygate run`, pinned to the fake with `--resolve`.
//!
//! Every client runs with an environment cleared of this machine's variables: it gets
//! `PATH`, a throw-away `HOME`, what a test passes, and what `keygate run` sets. So a
//! passing test shows that keygate's environment is enough, not that the machine's
//! trust or proxy settings happened to be.

mod fake;

use std::path::{Path, PathBuf};
use std::process::Command;

use keygate::secrets::SecretStore;
use keygate::secrets::keyring;
use serde_json::Value;
use tempfile::TempDir;

use super::bin::{self, Output};
use super::leak::assert_absent;
use super::pki::TestPki;
use super::secret::unique;

pub use fake::{FakeService, GIT_COMMIT, REPLY};

/// tests/clients: the client scripts, `.venv` and `node_modules`.
pub const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients");

/// True when the clients must be there: scripts/test sets `KEYGATE_TEST_CLIENTS=1` after
/// installing them, and a missing client then fails instead of skipping.
pub fn required() -> bool {
    std::env::var("KEYGATE_TEST_CLIENTS").is_ok_and(|v| v == "1")
}

/// `found`, or (when it is missing) a skip note, or a failure when clients are required.
fn present<T>(what: &str, found: Option<T>) -> Option<T> {
    if found.is_none() {
        assert!(
            !required(),
            "KEYGATE_TEST_CLIENTS=1 but {what}: not found; run scripts/setup-test-clients"
        );
        eprintln!(
            "skipping: {what}: not found (scripts/setup-test-clients installs it; \
             ./scripts/test runs it and requires it)"
        );
    }
    found
}

/// True when `program` is an executable file on `PATH`.
fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// The first line `program --version` prints, when it runs.
fn version(program: &str) -> Option<String> {
    if !on_path(program) {
        return None;
    }
    let mut cmd = Command::new(program);
    cmd.arg("--version");
    let out = bin::run(cmd);
    (out.code == Some(0)).then(|| out.stdout.lines().next().unwrap_or("").to_string())
}

/// The venv's Python, with requests, httpx, anthropic and openai.
pub fn python() -> Option<PathBuf> {
    let python = Path::new(DIR).join(".venv/bin/python");
    present(
        "the Python clients (tests/clients/.venv)",
        python.is_file().then_some(python),
    )
}

/// The venv's Python when it also has the `h2` package (for tests/clients/h2flood.py).
pub fn python_h2() -> Option<PathBuf> {
    let python = python()?;
    let found = Command::new(&python)
        .args(["-c", "import h2, hpack, hyperframe"])
        .env_clear()
        .status()
        .is_ok_and(|s| s.success());
    present(
        "the Python h2 package (tests/clients/.venv)",
        found.then_some(python),
    )
}

/// Node's major version, when node runs and undici is in tests/clients/node_modules.
pub fn node() -> Option<u32> {
    let undici = Path::new(DIR).join("node_modules/undici/package.json");
    let major = version("node")
        .filter(|_| undici.is_file())
        .and_then(|v| v.trim_start_matches('v').split('.').next()?.parse().ok());
    present("node with undici (tests/clients/node_modules)", major)
}

/// True when curl runs.
pub fn curl() -> Option<()> {
    present("curl", version("curl").map(|_| ()))
}

/// True when git runs.
pub fn git() -> Option<()> {
    present("git", version("git").map(|_| ()))
}

/// A `KEYGATE_HOME` of its own, the fake service for one host, and the secrets a test
/// registered (removed from the keyring when the sandbox is dropped, even on failure).
/// Secrets go to the keyutils keyring (`KEYGATE_KEYRING=keyutils`).
pub struct Sandbox {
    /// The home (also the clients' `HOME`).
    pub home: TempDir,
    /// The fake service `host:443` is pinned to.
    pub service: FakeService,
    /// The real value the service accepts.
    pub real: String,
    host: String,
    root: PathBuf,
    registered: Vec<String>,
}

impl Sandbox {
    /// A sandbox whose fake service answers for `host`, with a real value unique to it.
    pub fn new(host: &str) -> Sandbox {
        let pki = TestPki::new();
        let home = tempfile::tempdir().expect("home");
        let root = pki.write_root(home.path());
        let real = format!("sk-real-{}-{}", host.replace('.', "-"), unique());
        let service = FakeService::start(&pki, host, &real);
        Sandbox {
            home,
            service,
            real,
            host: host.to_string(),
            root,
            registered: Vec::new(),
        }
    }

    /// `keygate --home HOME ARGS` with a cleared environment: `PATH`, `HOME` (the
    /// sandbox's), and the keyutils keyring; `env` adds to it.
    pub fn keygate(&self, env: &[(&str, &str)], args: &[&str]) -> Command {
        let mut cmd = bin::keygate(self.home.path());
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.home.path())
            .env("LANG", "C.UTF-8")
            .env("KEYGATE_KEYRING", "keyutils")
            .envs(env.iter().copied())
            .args(args);
        cmd
    }

    /// `keygate secret add NAME FLAGS --from-env ...` with the sandbox's real value;
    /// returns the dummy. The entry is removed from the keyring on drop.
    pub fn add_secret(&mut self, name: &str, flags: &[&str]) -> String {
        self.registered.push(name.to_string());
        let mut cmd = self.keygate(
            &[("KEYGATE_TEST_REAL", &self.real)],
            &["secret", "add", name],
        );
        cmd.args(flags).args(["--from-env", "KEYGATE_TEST_REAL"]);
        let out = bin::run(cmd);
        assert_eq!(
            out.code,
            Some(0),
            "keygate secret add {name}: {}",
            show(&out)
        );
        self.assert_no_leak("`keygate secret add`", &out);
        out.stdout
            .lines()
            .last()
            .expect("the dummy line")
            .to_string()
    }

    /// `keygate secret add RECIPE`: the built-in recipe under its own name, which is also
    /// the keyring account, shared by every home of this user (and every test run on
    /// this machine). `None` (with a note) when a keyutils entry of that name already
    /// exists: a developer's real key, or another run's; either way not this test's.
    pub fn add_recipe_secret(&mut self, recipe: &str) -> Option<String> {
        let store = keyring::open(Some("keyutils")).expect("the keyutils keyring");
        if store
            .get(recipe)
            .expect("read the keyutils keyring")
            .is_some()
        {
            eprintln!(
                "note: a keyutils entry `{recipe}` exists (a real key, or another test run's); \
                 it is left alone, and the recipe is not tested under its own name"
            );
            return None;
        }
        Some(self.add_secret(recipe, &[]))
    }

    /// The built-in recipe `recipe_yaml` installed as the user recipe of a unique name in
    /// `$KEYGATE_HOME/addons`, then `keygate secret add NAME`: the same entry as the
    /// recipe's, under a keyring account no one else uses. Returns (name, dummy).
    pub fn add_recipe_copy(&mut self, tag: &str, recipe_yaml: &str) -> (String, String) {
        let name = format!("kgtest-{tag}-{}", unique());
        let addons = self.home.path().join("addons");
        std::fs::create_dir_all(&addons).expect("addons directory");
        std::fs::write(addons.join(format!("{name}.yaml")), recipe_yaml).expect("recipe");
        let dummy = self.add_secret(&name, &[]);
        (name, dummy)
    }

    /// `keygate -vv run --resolve HOST:443=FAKE --upstream-ca ROOT -- COMMAND` (the
    /// policy flags make it embed a private proxy), with `env` added to the cleared
    /// environment.
    pub fn run(&self, env: &[(&str, &str)], command: &[&str]) -> Output {
        let resolve = format!("{}:443={}", self.host, self.service.addr);
        let root = self.root.to_str().expect("a UTF-8 path");
        let mut cmd = self.keygate(env, &["-vv", "run", "--resolve", &resolve]);
        cmd.args(["--upstream-ca", root, "--"]).args(command);
        let out = bin::run(cmd);
        assert!(
            out.stderr.contains("TRACE") || out.stderr.contains("DEBUG"),
            "keygate logs at trace level, so the leak check reads everything: {}",
            show(&out)
        );
        out
    }

    /// The audit log so far.
    pub fn audit(&self) -> String {
        std::fs::read_to_string(self.home.path().join("audit.jsonl")).unwrap_or_default()
    }

    /// Fails if the real value is in what `what` printed (the client's output and
    /// keygate's trace-level log), in the audit log or in secrets.yaml.
    pub fn assert_no_leak(&self, what: &str, out: &Output) {
        assert_absent(&self.real, &format!("the stdout of {what}"), &out.stdout);
        assert_absent(&self.real, &format!("the stderr of {what}"), &out.stderr);
        assert_absent(&self.real, "audit.jsonl", &self.audit());
        let registry =
            std::fs::read_to_string(self.home.path().join("secrets.yaml")).unwrap_or_default();
        assert_absent(&self.real, "secrets.yaml", &registry);
    }

    /// The audit events that record a swap of secret `name`.
    pub fn swaps(&self, name: &str) -> Vec<Value> {
        self.audit()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).expect("an audit line"))
            .filter(|e| e["secret"] == name && e["kind"] == "request")
            .collect()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Ok(store) = keyring::open(Some("keyutils")) {
            for name in &self.registered {
                let _ = store.delete(name);
            }
        }
    }
}

/// The last line of `out`'s stdout as JSON (what the client scripts print).
pub fn last_json(out: &Output) -> Value {
    let line = out.stdout.lines().last().unwrap_or("");
    serde_json::from_str(line).unwrap_or_else(|e| panic!("no JSON line ({e}): {}", show(out)))
}

/// `out` for a failure message: the exit code, stdout, and stderr without keygate's
/// DEBUG and TRACE records (the leak check reads them all; a person rarely needs them).
pub fn show(out: &Output) -> String {
    let mut kept = Vec::new();
    let mut skipping = false;
    for line in out.stderr.lines() {
        let record = line.len() > 28 && line.starts_with("20") && line.as_bytes()[4] == b'-';
        if record {
            skipping = line.contains(" TRACE ") || line.contains(" DEBUG ");
        } else if skipping && !line.starts_with(|c: char| c.is_alphanumeric()) {
            continue;
        } else {
            skipping = false;
        }
        if !skipping {
            kept.push(line);
        }
    }
    format!(
        "exit code {:?}\n--- stdout\n{}\n--- stderr (DEBUG and TRACE left out)\n{}",
        out.code,
        out.stdout,
        kept.join("\n")
    )
}
