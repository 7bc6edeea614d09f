//! The `keygate` binary: CA management, `check`, usage errors, and `start` serving real
//! clients (curl) until SIGTERM.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_json::Value;

use crate::support::bin::{Running, curl, keygate, run};
use crate::support::pki::TestPki;
use crate::support::upstream::TlsUpstream;

fn ca_init(home: &Path, force: bool) -> String {
    let mut cmd = keygate(home);
    cmd.args(["ca", "init"]);
    if force {
        cmd.arg("--force");
    }
    let out = run(cmd);
    assert_eq!(out.code, Some(0), "ca init: {out:?}");
    out.stdout
}

#[test]
fn ca_init_creates_the_ca_with_a_private_key_and_a_bundle() {
    let home = tempfile::tempdir().unwrap();
    let stdout = ca_init(home.path(), false);
    let cert_path = home.path().join("ca/keygate-ca.pem");
    let key_path = home.path().join("ca/keygate-ca.key");
    assert_eq!(stdout.trim(), cert_path.display().to_string());

    let cert = fs::read_to_string(&cert_path).unwrap();
    assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"), "{cert}");
    let mode = fs::metadata(&key_path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the CA key is owner-only: {mode:o}");
    let key = fs::read_to_string(&key_path).unwrap();
    assert!(key.contains("PRIVATE KEY"));
    let bundle = fs::read_to_string(home.path().join("ca/bundle.pem")).unwrap();
    assert!(bundle.contains(cert.trim_end()), "the bundle holds the CA");
    assert!(!bundle.contains("PRIVATE KEY"));
}

#[test]
fn ca_init_keeps_the_key_and_force_rotates_it() {
    let home = tempfile::tempdir().unwrap();
    let key_path = home.path().join("ca/keygate-ca.key");
    let cert_path = home.path().join("ca/keygate-ca.pem");
    ca_init(home.path(), false);
    let (key, cert) = (fs::read(&key_path).unwrap(), fs::read(&cert_path).unwrap());

    ca_init(home.path(), false);
    assert_eq!(
        fs::read(&key_path).unwrap(),
        key,
        "a second init keeps the key"
    );
    assert_eq!(fs::read(&cert_path).unwrap(), cert);

    ca_init(home.path(), true);
    assert_ne!(fs::read(&key_path).unwrap(), key, "--force rotates the key");
    assert_ne!(fs::read(&cert_path).unwrap(), cert);
    let mode = fs::metadata(&key_path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let bundle = fs::read_to_string(home.path().join("ca/bundle.pem")).unwrap();
    let new_cert = fs::read_to_string(&cert_path).unwrap();
    assert!(
        bundle.contains(new_cert.trim_end()),
        "the bundle has the new CA"
    );
    assert!(
        !bundle.contains(String::from_utf8(cert).unwrap().trim_end()),
        "the bundle no longer trusts the old CA"
    );
}

#[test]
fn ca_path_and_export_give_the_certificate_never_the_key() {
    let home = tempfile::tempdir().unwrap();
    let out = run({
        let mut cmd = keygate(home.path());
        cmd.args(["ca", "path"]);
        cmd
    });
    assert_eq!(out.code, Some(0), "{out:?}");
    let cert_path = home.path().join("ca/keygate-ca.pem");
    assert_eq!(out.stdout.trim(), cert_path.display().to_string());
    assert!(cert_path.is_file(), "ca path creates the CA on first use");

    let out = run({
        let mut cmd = keygate(home.path());
        cmd.args(["ca", "path", "--bundle"]);
        cmd
    });
    assert_eq!(out.code, Some(0), "{out:?}");
    let bundle = home.path().join("ca/bundle.pem");
    assert_eq!(out.stdout.trim(), bundle.display().to_string());
    assert!(bundle.is_file());

    let dest = tempfile::tempdir().unwrap();
    let exported = dest.path().join("certs/keygate-ca.pem");
    let out = run({
        let mut cmd = keygate(home.path());
        cmd.args(["ca", "export", "--out"]).arg(&exported);
        cmd
    });
    assert_eq!(out.code, Some(0), "{out:?}");
    let text = fs::read_to_string(&exported).unwrap();
    assert_eq!(text, fs::read_to_string(&cert_path).unwrap());
    assert_eq!(text.matches("-----BEGIN ").count(), 1, "{text}");
    assert!(text.contains("-----BEGIN CERTIFICATE-----"));
    assert!(!text.contains("PRIVATE KEY"));
}

#[test]
fn check_prints_the_effective_policy_with_the_trusted_list() {
    let home = tempfile::tempdir().unwrap();
    let out = run({
        let mut cmd = keygate(home.path());
        cmd.arg("check");
        cmd
    });
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.contains("mode: trusted"), "{}", out.stdout);
    for host in [
        "registry.npmjs.org",
        "*.npmjs.org",
        "pypi.org",
        "crates.io",
        "github.com",
        "api.github.com",
        "api.anthropic.com",
        "api.openai.com",
        "ghcr.io",
    ] {
        assert!(
            out.stdout.lines().any(|l| l.trim() == format!("- {host}")),
            "{host} missing from the trusted list:\n{}",
            out.stdout
        );
    }
    for untrusted in ["gist.github.com", "*.vercel.app"] {
        assert!(
            !out.stdout
                .lines()
                .any(|l| l.trim() == format!("- {untrusted}")),
            "{untrusted} must not be trusted:\n{}",
            out.stdout
        );
    }
}

#[test]
fn check_reports_an_unknown_key_with_file_line_and_column() {
    let home = tempfile::tempdir().unwrap();
    fs::write(
        home.path().join("keygate.yaml"),
        "network:\n  mode: custom\n  allw: [\"x.test.example\"]\n",
    )
    .unwrap();
    let out = run({
        let mut cmd = keygate(home.path());
        cmd.arg("check");
        cmd
    });
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("keygate.yaml:3:3"), "{}", out.stderr);
    assert!(out.stderr.contains("allw"), "{}", out.stderr);
}

#[test]
fn bad_flags_are_usage_errors() {
    let home = tempfile::tempdir().unwrap();
    for args in [
        &["start", "--no-such-flag"][..],
        &["start", "--allow", "exa*mple.com"],
        &["start", "--resolve", "api.test.example:443"],
        &["check", "--mode", "sometimes"],
    ] {
        let out = run({
            let mut cmd = keygate(home.path());
            cmd.args(args);
            cmd
        });
        assert_eq!(out.code, Some(2), "{args:?}: {out:?}");
        assert!(!out.stderr.is_empty(), "{args:?} says what is wrong");
    }
}

#[test]
fn start_refuses_a_connect_from_curl_and_exits_0_on_sigterm() {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = keygate(home.path());
    cmd.args(["start", "--listen", "127.0.0.1:0", "--mode", "custom"]);
    let keygate = Running::start(cmd);
    assert!(keygate.addr.ip().is_loopback() && keygate.addr.port() != 0);

    // refusals: tls (the default): the CONNECT is accepted, TLS terminated with a leaf
    // of keygate's CA, and curl's request answered with the refusal, which curl prints.
    let out = run({
        let mut cmd = curl(&home.path().join("ca/keygate-ca.pem"));
        cmd.arg("--verbose")
            .args(["--write-out", "\n%{http_connect} %{http_code}"])
            .args(["--proxy", &format!("http://{}", keygate.addr)])
            .arg("https://blocked.invalid/");
        cmd
    });
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.ends_with("200 403"), "{out:?}");
    assert!(
        out.stdout
            .starts_with("keygate refused GET https://blocked.invalid/."),
        "{out:?}"
    );
    assert!(
        out.stdout
            .contains("network:\n      allow: [\"blocked.invalid\"]"),
        "{out:?}"
    );
    let verbose = out.stderr.to_ascii_lowercase();
    assert!(
        verbose.contains("x-keygate-reason: not-allowed"),
        "{}",
        out.stderr
    );

    let status = keygate.terminate();
    assert_eq!(status.code(), Some(0), "exit status after SIGTERM");
    assert!(
        home.path().join("ca/keygate-ca.pem").is_file(),
        "start creates the CA"
    );
    let audit = fs::read_to_string(home.path().join("audit.jsonl")).unwrap();
    let refused = audit
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|e| e["host"] == "blocked.invalid")
        .unwrap_or_else(|| panic!("no audit event for the refusal: {audit}"));
    assert_eq!(refused["kind"], "connect");
    assert_eq!(refused["decision"], "deny");
    assert_eq!(refused["status"], 403);
}

#[cfg(unix)]
#[test]
fn start_takes_group_and_other_access_off_an_existing_audit_log_and_says_so() {
    use std::os::unix::fs::PermissionsExt;
    let home = tempfile::tempdir().unwrap();
    let audit = home.path().join("audit.jsonl");
    fs::write(&audit, "").unwrap();
    fs::set_permissions(&audit, fs::Permissions::from_mode(0o644)).unwrap();
    let mut cmd = keygate(home.path());
    cmd.args(["start", "--listen", "127.0.0.1:0"]);
    let running = Running::start(cmd);
    let mode = fs::metadata(&audit).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{mode:o}");
    let (status, stderr) = running.terminate_with_stderr();
    assert_eq!(status.code(), Some(0));
    assert!(
        stderr
            .iter()
            .any(|l| l.contains("audit.jsonl was open to group or others (mode 644); now 600")),
        "it says so: {stderr:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_tunnels_through_keygate_start_to_a_local_tls_upstream() {
    let pki = TestPki::new();
    let upstream = TlsUpstream::echo(&pki, &["api.test.example"]).await;
    let home = tempfile::tempdir().unwrap();
    let certs = tempfile::tempdir().unwrap();
    let root = pki.write_root(certs.path());
    let resolve = format!("api.test.example:443={}", upstream.addr);
    let home_dir = home.path().to_path_buf();

    let (echo, status, wrong_ca) = tokio::task::spawn_blocking(move || {
        let mut cmd = keygate(&home_dir);
        cmd.args(["start", "--listen", "127.0.0.1:0", "--mode", "custom"])
            .args(["--allow", "api.test.example", "--resolve", &resolve]);
        let keygate = Running::start(cmd);
        let proxy = format!("http://{}", keygate.addr);
        let out = run({
            let mut cmd = curl(&root);
            cmd.args(["--proxy", &proxy])
                .args(["--write-out", "\n%{http_code}"])
                .arg("https://api.test.example/through/curl?x=1");
            cmd
        });
        // keygate's own CA does not validate the upstream: the tunnel was not
        // intercepted, curl verified the upstream's own certificate.
        let wrong_ca = run({
            let mut cmd = curl(&home_dir.join("ca/keygate-ca.pem"));
            cmd.args(["--proxy", &proxy])
                .arg("https://api.test.example/");
            cmd
        });
        let status = keygate.terminate();
        (out, status, wrong_ca)
    })
    .await
    .unwrap();

    assert_eq!(echo.code, Some(0), "{echo:?}");
    let (json, code) = echo.stdout.rsplit_once('\n').unwrap();
    assert_eq!(code, "200");
    let json: Value = serde_json::from_str(json).unwrap();
    assert_eq!(json["uri"], "/through/curl?x=1");
    assert_eq!(json["sni"], "api.test.example");
    assert_eq!(
        wrong_ca.code,
        Some(60),
        "certificate verification fails: {wrong_ca:?}"
    );
    assert_eq!(status.code(), Some(0));
    assert_eq!(
        upstream.handshakes(),
        1,
        "only the verified curl got through"
    );
}
