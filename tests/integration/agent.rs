//! `keygate env`, `keygate run` and `keygate doctor` through the built binary (SPEC §3,
//! §7): the environment an agent gets, scoped to the child, with real secrets kept out.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use keygate::secrets::SecretStore;
use keygate::secrets::keyring;

use crate::support::bin::{self, Running};

fn unique(tag: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("kgtest-{tag}-{}-{nanos}", std::process::id())
}

/// Registers a keyutils secret; returns its dummy. The guard removes the value.
struct Secret {
    name: String,
    dummy: String,
}

impl Drop for Secret {
    fn drop(&mut self) {
        if let Ok(store) = keyring::open(Some("keyutils")) {
            let _ = store.delete(&self.name);
        }
    }
}

fn add_secret(home: &Path, env_var: &str, real: &str) -> Secret {
    let name = unique("agent");
    let mut cmd = bin::keygate_keyutils(
        home,
        &[
            "secret",
            "add",
            &name,
            "--host",
            "api.agent.test",
            "--env",
            env_var,
        ],
    );
    cmd.args(["--from-env", "REAL_VALUE"])
        .env("REAL_VALUE", real);
    let out = bin::run(cmd);
    assert_eq!(out.code, Some(0), "{out:?}");
    let dummy = out.stdout.lines().last().expect("dummy").to_string();
    Secret { name, dummy }
}

#[test]
fn env_prints_the_contract_for_each_shell() {
    let home = bin::home_listening_on(18_001);
    let out = bin::run(bin::keygate_keyutils(home.path(), &["env"]));
    assert_eq!(out.code, Some(0), "{out:?}");
    let ca = home.path().join("ca/keygate-ca.pem").display().to_string();
    let bundle = home.path().join("ca/bundle.pem").display().to_string();
    for line in [
        "export HTTPS_PROXY='http://127.0.0.1:18001'".to_string(),
        "export http_proxy='http://127.0.0.1:18001'".to_string(),
        "export NO_PROXY='localhost,127.0.0.1,::1'".to_string(),
        format!("export NODE_EXTRA_CA_CERTS='{ca}'"),
        "export NODE_USE_ENV_PROXY='1'".to_string(),
        format!("export SSL_CERT_FILE='{bundle}'"),
        format!("export GIT_SSL_CAINFO='{bundle}'"),
        format!("export DENO_CERT='{ca}'"),
        "unset SSL_CERT_DIR".to_string(),
    ] {
        assert!(
            out.stdout.lines().any(|l| l == line),
            "missing `{line}` in:\n{}",
            out.stdout
        );
    }
    assert!(
        !out.stdout.contains("=*") && !out.stdout.contains("'*'"),
        "never NO_PROXY=*"
    );
    assert!(
        Path::new(&ca).exists() && Path::new(&bundle).exists(),
        "env creates what it points at"
    );
    for (shell, expect) in [
        ("fish", "set -gx HTTPS_PROXY 'http://127.0.0.1:18001'"),
        ("powershell", "$env:HTTPS_PROXY = 'http://127.0.0.1:18001'"),
        ("dotenv", "HTTPS_PROXY=http://127.0.0.1:18001"),
    ] {
        let out = bin::run(bin::keygate_keyutils(
            home.path(),
            &["env", "--shell", shell],
        ));
        assert_eq!(out.code, Some(0), "{shell}: {out:?}");
        assert!(
            out.stdout.lines().any(|l| l == expect),
            "{shell}: {}",
            out.stdout
        );
    }
    let json = bin::run(bin::keygate_keyutils(
        home.path(),
        &["env", "--shell", "json"],
    ));
    let value: serde_json::Value = serde_json::from_str(&json.stdout).expect("json");
    assert_eq!(value["HTTPS_PROXY"], "http://127.0.0.1:18001");
    assert!(value["SSL_CERT_DIR"].is_null());
}

#[test]
fn env_output_evaluates_in_a_real_shell_with_secret_dummies() {
    let home = bin::home_listening_on(18_002);
    let secret = add_secret(home.path(), "AGENT_API_KEY", "sk-real-env-eval-0123456789");
    let script = format!(
        "eval \"$('{}' --home '{}' env)\"; printf '%s|%s|%s' \"$HTTPS_PROXY\" \"$AGENT_API_KEY\" \"${{SSL_CERT_DIR-unset}}\"",
        env!("CARGO_BIN_EXE_keygate"),
        home.path().display()
    );
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(script)
        .env("SSL_CERT_DIR", "/etc/ssl/certs")
        .env("KEYGATE_KEYRING", "keyutils");
    let out = bin::run(cmd);
    assert_eq!(
        out.stdout,
        format!("http://127.0.0.1:18002|{}|unset", secret.dummy),
        "{out:?}"
    );
}

#[test]
fn run_scopes_the_environment_to_the_child_and_keeps_real_secrets_out() {
    let home = bin::home_listening_on(bin::free_port());
    let real = "sk-real-run-scope-0123456789";
    let secret = add_secret(home.path(), "AGENT_API_KEY", real);
    let mut cmd = bin::keygate_keyutils(home.path(), &["run", "--no-jail", "--", "env"]);
    cmd.env("AGENT_API_KEY", real)
        .env("SOME_OTHER_COPY", format!("Bearer {real}"))
        .env("SSL_CERT_DIR", "/etc/ssl/certs")
        .env("UNRELATED", "kept");
    let out = bin::run(cmd);
    assert_eq!(out.code, Some(0), "{out:?}");
    let vars: Vec<(&str, &str)> = out
        .stdout
        .lines()
        .filter_map(|l| l.split_once('='))
        .collect();
    let get = |name: &str| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
    assert_eq!(get("AGENT_API_KEY"), Some(secret.dummy.as_str()));
    assert_eq!(
        get("SOME_OTHER_COPY"),
        None,
        "a variable holding the real value is removed"
    );
    assert_eq!(get("SSL_CERT_DIR"), None);
    assert_eq!(get("UNRELATED"), Some("kept"));
    assert_eq!(get("NO_PROXY"), Some("localhost,127.0.0.1,::1"));
    let proxy = get("HTTPS_PROXY").expect("HTTPS_PROXY");
    assert!(proxy.starts_with("http://127.0.0.1:"), "{proxy}");
    assert!(
        !out.stdout.contains(real),
        "the child never sees the real value"
    );
    assert!(
        !out.stderr.contains(real),
        "nor does stderr: {}",
        out.stderr
    );
    assert!(
        out.stderr.contains("SOME_OTHER_COPY"),
        "the removal is explained: {}",
        out.stderr
    );
}

#[test]
fn run_serves_the_child_through_an_embedded_proxy_and_stops_it() {
    let home = bin::home_listening_on(bin::free_port());
    let script = "curl -sS --max-time 10 https://keygate.test/health";
    let out = bin::run(bin::keygate_keyutils(
        home.path(),
        &["run", "--", "sh", "-c", script],
    ));
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stdout.contains("\"tls\":true"),
        "curl trusted keygate's CA via the bundle: {out:?}"
    );
    let audit = std::fs::read_to_string(home.path().join("audit.jsonl")).expect("audit");
    assert!(audit.contains("\"host\":\"keygate.test\""), "{audit}");
}

#[test]
fn run_reuses_a_keygate_already_listening_with_the_same_ca() {
    let port = bin::free_port();
    let home = bin::home_listening_on(port);
    let running = Running::start(bin::keygate_keyutils(home.path(), &["start"]));
    assert_eq!(running.addr.port(), port);
    let out = bin::run(bin::keygate_keyutils(
        home.path(),
        &[
            "run",
            "--no-jail",
            "--",
            "sh",
            "-c",
            "printf %s \"$HTTPS_PROXY\"",
        ],
    ));
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stdout, format!("http://127.0.0.1:{port}"));
    // Policy flags ask for a private proxy with that policy.
    let flagged = bin::run(bin::keygate_keyutils(
        home.path(),
        &[
            "run",
            "--no-jail",
            "--allow",
            "x.test",
            "--",
            "sh",
            "-c",
            "printf %s \"$HTTPS_PROXY\"",
        ],
    ));
    assert_eq!(flagged.code, Some(0), "{flagged:?}");
    assert_ne!(flagged.stdout, format!("http://127.0.0.1:{port}"));
    assert!(running.terminate().success());
}

#[test]
fn run_returns_the_childs_exit_code() {
    let home = bin::home_listening_on(bin::free_port());
    let exit = |script: &str| {
        bin::run(bin::keygate_keyutils(
            home.path(),
            &["run", "--", "sh", "-c", script],
        ))
        .code
    };
    assert_eq!(exit("exit 0"), Some(0));
    assert_eq!(exit("exit 7"), Some(7));
    assert_eq!(
        exit("kill -TERM $$"),
        Some(128 + 15),
        "a signal is reported like a shell does"
    );
    let missing = bin::run(bin::keygate_keyutils(
        home.path(),
        &["run", "--", "/nonexistent/program"],
    ));
    assert_eq!(missing.code, Some(127), "{missing:?}");
    assert!(missing.stderr.contains("/nonexistent/program"));
    let usage = bin::run(bin::keygate_keyutils(home.path(), &["run"]));
    assert_eq!(usage.code, Some(2), "no command is a usage error");
}

#[test]
fn run_forwards_signals_to_the_child() {
    let home = bin::home_listening_on(bin::free_port());
    let script = "trap 'echo got-term; exit 42' TERM; echo ready; while :; do sleep 0.05; done";
    let mut cmd = bin::keygate_keyutils(home.path(), &["run", "--", "sh", "-c", script]);
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    // Lines are read on a thread so that a regression fails the test instead of hanging it.
    let (line_tx, line_rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = line_tx.send(line);
        }
    });
    let next_line = || {
        line_rx
            .recv_timeout(crate::support::WAIT)
            .expect("a line from the child in time")
    };
    assert_eq!(next_line(), "ready");
    let sent = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .expect("kill");
    assert!(sent.success());
    assert_eq!(next_line(), "got-term");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let status = rx
        .recv_timeout(crate::support::WAIT)
        .expect("keygate run exits")
        .expect("wait");
    assert_eq!(status.code(), Some(42));
}

#[test]
fn doctor_explains_a_missing_secret_and_passes_the_rest() {
    let home = bin::home_listening_on(bin::free_port());
    let fresh = bin::run(bin::keygate_keyutils(home.path(), &["doctor"]));
    assert_eq!(fresh.code, Some(1), "no CA yet: {fresh:?}");
    assert!(
        fresh.stdout.contains("[FAIL] CA") && fresh.stdout.contains("keygate ca init"),
        "{}",
        fresh.stdout
    );
    assert_eq!(
        bin::run(bin::keygate_keyutils(home.path(), &["ca", "init"])).code,
        Some(0)
    );
    let secret = add_secret(home.path(), "AGENT_API_KEY", "sk-real-doctor-0123456789");
    let store = keyring::open(Some("keyutils")).expect("keyutils");
    store
        .delete(&secret.name)
        .expect("delete the value, keep the registry entry");
    let out = bin::run(bin::keygate_keyutils(home.path(), &["doctor"]));
    assert_eq!(out.code, Some(1), "{out:?}");
    let fail = out
        .stdout
        .lines()
        .find(|l| l.starts_with("[FAIL] secret"))
        .expect("secret FAIL line");
    assert!(
        fail.contains(&secret.name) && fail.contains("keygate secret add"),
        "{fail}"
    );
    for ok in [
        "[ok  ] CA",
        "[ok  ] bundle",
        "[ok  ] keyring",
        "[ok  ] config",
        "[ok  ] curl",
    ] {
        assert!(out.stdout.contains(ok), "missing `{ok}`:\n{}", out.stdout);
    }
    assert!(
        out.stdout.contains("[warn] listener"),
        "nothing listens: {}",
        out.stdout
    );
    assert!(out.stderr.contains("problem"), "{}", out.stderr);
}
