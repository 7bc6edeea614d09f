//! The diagnostics users reach for, through the built binary or the proxy: `keygate
//! check`, `keygate doctor`, the `keygate.test` self-test origin, and logging options.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{Method, StatusCode, Version};
use keygate::ca::Ca;
use keygate::home::Home;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::bin::{self, Output, Running};
use crate::support::client::{body_bytes, send_raw};
use crate::support::intercepted::{Conn, tls_via};
use crate::support::proxy::ProxyBuilder;
use crate::support::secret::unique;
use crate::support::{WAIT, body, within};

/// The recipe of CONFIG.md's "Your own recipes" example.
const MYCORP_RECIPE: &str = r#"# $KEYGATE_HOME/addons/mycorp.yaml
description: Company LLM gateway token
hosts: [llm.corp.example]
header: authorization
format: "Bearer {secret}"
env: MYCORP_TOKEN
dummy: "mc_{name}_{hex:32}"
methods: [POST]
paths: ["/v1/*"]
"#;

fn check(home: &Path) -> Output {
    bin::run(bin::keygate_keyutils(home, &["check"]))
}

/// `keygate secret add` of a fresh keyutils secret bound to `api.diag.test`.
fn add_secret(home: &Path) -> bin::KeyutilsEntry {
    let name = format!("kgdiag-{}", unique());
    let mut cmd = bin::keygate_keyutils(
        home,
        &[
            "secret",
            "add",
            &name,
            "--host",
            "api.diag.test",
            "--from-env",
            "DIAG_VALUE",
        ],
    );
    cmd.env("DIAG_VALUE", format!("sk-real-diag-{}", unique()));
    let entry = bin::KeyutilsEntry(name);
    let out = bin::run(cmd);
    assert_eq!(out.code, Some(0), "secret add: {out:?}");
    entry
}

fn write(path: &Path, text: &str) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("mkdir");
    }
    std::fs::write(path, text).expect("write");
}

// ---------------------------------------------------------------- keygate check

#[test]
fn check_reports_an_unknown_field_in_secrets_yaml_with_file_line_and_column() {
    let home = tempfile::tempdir().unwrap();
    write(
        &home.path().join("secrets.yaml"),
        "- name: diag\n  hosts: [api.diag.test]\n  dummy: keygate-dummy-diag-0123456789\n  colour: red\n",
    );
    let out = check(home.path());
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("secrets.yaml:4:3"), "{}", out.stderr);
    assert!(out.stderr.contains("colour"), "{}", out.stderr);
}

const BAD_HOST_REGISTRY: &str =
    "- name: diag\n  hosts: [\"exa*mple.com\"]\n  dummy: keygate-dummy-diag-0123456789\n";

#[test]
fn check_rejects_a_bad_host_pattern_in_secrets_yaml_naming_the_file_and_pattern() {
    let home = tempfile::tempdir().unwrap();
    write(&home.path().join("secrets.yaml"), BAD_HOST_REGISTRY);
    let out = check(home.path());
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("secrets.yaml"), "{}", out.stderr);
    assert!(out.stderr.contains("exa*mple.com"), "{}", out.stderr);
}

#[test]
fn check_names_the_line_and_column_of_a_bad_host_pattern_in_secrets_yaml() {
    let home = tempfile::tempdir().unwrap();
    write(&home.path().join("secrets.yaml"), BAD_HOST_REGISTRY);
    let out = check(home.path());
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("secrets.yaml:2:"), "{}", out.stderr);
}

#[test]
fn check_reports_an_unknown_field_in_a_user_recipe_with_file_line_and_column() {
    let home = tempfile::tempdir().unwrap();
    write(
        &home.path().join("addons/mycorp.yaml"),
        &format!("{MYCORP_RECIPE}colour: red\n"),
    );
    let out = check(home.path());
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(
        out.stderr.contains("addons/mycorp.yaml:10:1"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("colour"), "{}", out.stderr);
    assert!(out.stdout.is_empty(), "no policy for an invalid setup");
}

#[test]
fn check_rejects_a_user_recipe_with_an_invalid_host_or_dummy_template() {
    for (bad, what) in [
        (
            MYCORP_RECIPE.replace("[llm.corp.example]", "[\"exa*mple.com\"]"),
            "exa*mple.com",
        ),
        (MYCORP_RECIPE.replace("{hex:32}", "{bogus:32}"), "bogus"),
    ] {
        let home = tempfile::tempdir().unwrap();
        write(&home.path().join("addons/mycorp.yaml"), &bad);
        let out = check(home.path());
        assert_eq!(out.code, Some(2), "{what}: {out:?}");
        assert!(out.stderr.contains("addons/mycorp.yaml"), "{}", out.stderr);
        assert!(out.stderr.contains(what), "{}", out.stderr);
    }
}

#[test]
fn check_accepts_a_user_recipe_without_the_optional_header() {
    let home = tempfile::tempdir().unwrap();
    write(
        &home.path().join("addons/mycorp.yaml"),
        &MYCORP_RECIPE.replace("header: authorization\n", ""),
    );
    let out = check(home.path());
    assert_eq!(out.code, Some(0), "{out:?}");
}

#[test]
fn check_accepts_a_valid_setup_and_lists_a_user_recipe_as_yours() {
    let home = tempfile::tempdir().unwrap();
    write(&home.path().join("addons/mycorp.yaml"), MYCORP_RECIPE);
    write(
        &home.path().join("secrets.yaml"),
        "- name: diag\n  hosts: [api.diag.test]\n  header: x-api-key\n  env: DIAG_KEY\n  dummy: keygate-dummy-diag-0123456789\n",
    );
    write(
        &home.path().join("keygate.yaml"),
        "network:\n  mode: custom\n  allow: [\"*.example.com\"]\n",
    );
    let out = check(home.path());
    assert_eq!(out.code, Some(0), "{out:?}");
    let recipes = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("recipes: "))
        .unwrap_or_else(|| panic!("no recipes line:\n{}", out.stdout));
    let names: Vec<&str> = recipes.split(", ").collect();
    assert!(names.contains(&"mycorp (yours)"), "{recipes}");
    for built_in in [
        "anthropic",
        "openai",
        "github",
        "gemini",
        "huggingface",
        "npm",
    ] {
        assert!(names.contains(&built_in), "{built_in} missing: {recipes}");
    }
    assert!(out.stdout.contains("mode: custom"), "{}", out.stdout);
    assert!(
        out.stdout
            .lines()
            .any(|l| l.contains("diag -> api.diag.test") && l.contains("DIAG_KEY")),
        "the secret is listed:\n{}",
        out.stdout
    );
    assert!(
        out.stdout.lines().any(|l| l.trim() == "- *.example.com"),
        "{}",
        out.stdout
    );
}

// ---------------------------------------------------------------- keygate doctor

fn rows<'a>(out: &'a Output, prefix: &str) -> Vec<&'a str> {
    out.stdout
        .lines()
        .filter(|l| l.starts_with(prefix))
        .collect()
}

#[test]
fn doctor_exits_0_with_a_ca_a_reachable_keyring_and_a_stored_secret() {
    let home = bin::home_listening_on(bin::free_port());
    assert_eq!(
        bin::run(bin::keygate_keyutils(home.path(), &["ca", "init"])).code,
        Some(0)
    );
    let secret = add_secret(home.path());
    let out = bin::run(bin::keygate_keyutils(home.path(), &["doctor"]));
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(rows(&out, "[FAIL]").is_empty(), "{}", out.stdout);
    for ok in ["config", "registry", "CA", "bundle", "keyring", "curl"] {
        assert!(
            out.stdout
                .lines()
                .any(|l| l.starts_with("[ok  ]") && l[6..].trim_start().starts_with(ok)),
            "no ok row for {ok}:\n{}",
            out.stdout
        );
    }
    assert!(
        rows(&out, "[ok  ] secret")
            .iter()
            .any(|l| l.contains(&secret.0) && l.contains("api.diag.test")),
        "{}",
        out.stdout
    );
    assert!(
        rows(&out, "[ok  ] keyring")
            .iter()
            .any(|l| l.contains("keyutils") && l.contains("reboot")),
        "doctor states the keyutils caveat:\n{}",
        out.stdout
    );
    assert_eq!(
        rows(&out, "[warn] listener").len(),
        1,
        "nothing listens: {}",
        out.stdout
    );
}

#[test]
fn doctor_reports_a_keygate_running_on_the_listen_address_as_ok() {
    let port = bin::free_port();
    let home = bin::home_listening_on(port);
    let keygate_start = Running::start(bin::keygate_keyutils(home.path(), &["start"]));
    assert_eq!(keygate_start.addr.port(), port);
    let out = bin::run(bin::keygate_keyutils(home.path(), &["doctor"]));
    let _ = keygate_start.terminate();
    assert_eq!(out.code, Some(0), "{out:?}");
    let listener = rows(&out, "[ok  ] listener");
    assert!(
        listener
            .iter()
            .any(|l| l.contains(&format!("127.0.0.1:{port}"))),
        "{}",
        out.stdout
    );
    assert!(rows(&out, "[FAIL]").is_empty(), "{}", out.stdout);
}

/// Writes a keygate CA (cert and 0600 key) valid for `days` more days, and its bundle.
fn write_ca_valid_for(home: &Path, days: u64) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, "keygate diagnostics short-lived CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock");
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    params.not_before = epoch + now - Duration::from_secs(86_400);
    params.not_after = epoch + now + Duration::from_secs(days * 86_400);
    let cert = params.self_signed(&key).expect("self-signed CA");
    let h = Home::at(home);
    write(&h.ca_cert(), &cert.pem());
    write(&h.ca_key(), &key.serialize_pem());
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(h.ca_key(), std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let ca = Ca::load(&h).expect("keygate loads the short-lived CA");
    keygate::ca::write_bundle(&h, &ca).expect("bundle");
}

#[test]
fn doctor_warns_when_the_ca_expires_within_30_days() {
    let home = bin::home_listening_on(bin::free_port());
    write_ca_valid_for(home.path(), 10);
    let out = bin::run(bin::keygate_keyutils(home.path(), &["doctor"]));
    let ca = rows(&out, "[warn] CA");
    assert_eq!(ca.len(), 1, "{}", out.stdout);
    assert!(
        ca[0].contains("expires in") && ca[0].contains("keygate ca init --force"),
        "{}",
        ca[0]
    );
    assert!(rows(&out, "[ok  ] CA").is_empty(), "{}", out.stdout);
    assert!(rows(&out, "[FAIL] CA").is_empty(), "{}", out.stdout);
    assert_eq!(out.code, Some(0), "a warning is not a failure: {out:?}");
}

// ---------------------------------------------------------------- keygate.test

fn ca_der_of(pem: &[u8]) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem).expect("a PEM certificate")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_test_origin_answers_over_intercepted_tls() {
    // Mode custom, nothing allowed: policy does not apply to keygate.test.
    let proxy = ProxyBuilder::new().intercept_all().start().await;
    for version in [Version::HTTP_11, Version::HTTP_2] {
        let mut conn = Conn::open(&proxy, "keygate.test", version).await;
        let host = "keygate.test";

        let resp = conn.send(conn.get(host, "/", &[])).await;
        assert_eq!(resp.status(), StatusCode::OK, "{version:?} /");
        let page = String::from_utf8(body_bytes(resp).await.to_vec()).expect("UTF-8");
        assert!(page.contains("keygate"), "{page}");
        assert!(page.contains("https"), "says it came over TLS: {page}");
        assert!(page.contains("/ca.pem"), "says how to get the CA: {page}");

        let resp = conn.send(conn.get(host, "/health", &[])).await;
        assert_eq!(resp.status(), StatusCode::OK);
        let health: Value = serde_json::from_slice(&body_bytes(resp).await).expect("JSON");
        assert_eq!(health["keygate"], "ok", "{health}");
        assert_eq!(health["tls"], true, "{health}");
        assert_eq!(health["version"], env!("CARGO_PKG_VERSION"), "{health}");

        let resp = conn.send(conn.get(host, "/ca.pem", &[])).await;
        assert_eq!(resp.status(), StatusCode::OK);
        let pem = body_bytes(resp).await;
        assert!(!String::from_utf8_lossy(&pem).contains("PRIVATE"));
        assert_eq!(ca_der_of(&pem), proxy.ca().der, "{version:?}: keygate's CA");

        let resp = conn.send(conn.get(host, "/no-such-page", &[])).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{version:?}");

        let post = conn
            .request("POST", host, "/health")
            .body(body::full("x"))
            .expect("request");
        let resp = conn.send(post).await;
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED, "{version:?}");

        let head = conn
            .request(Method::HEAD.as_str(), host, "/health")
            .body(body::empty())
            .expect("request");
        let resp = conn.send(head).await;
        assert_eq!(
            resp.status(),
            StatusCode::OK,
            "{version:?}: HEAD is allowed"
        );
    }
}

async fn plain(proxy: SocketAddr, method: &str, url: &str) -> crate::support::client::Reply {
    let raw = format!("{method} {url} HTTP/1.1\r\nHost: keygate.test\r\nContent-Length: 0\r\n\r\n");
    send_raw(proxy, raw.as_bytes())
        .await
        .1
        .unwrap_or_else(|| panic!("no reply to {method} {url}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_test_origin_answers_over_plain_http() {
    let proxy = ProxyBuilder::new().intercept_all().start().await;
    let addr = proxy.addr;

    let root = plain(addr, "GET", "http://keygate.test/").await;
    assert_eq!(root.status, 200, "{root:?}");
    assert!(root.body.contains("keygate"), "{}", root.body);
    assert!(root.body.contains("/ca.pem"), "{}", root.body);

    for url in [
        "http://keygate.test/health",
        "http://keygate.test:8080/health",
    ] {
        let health = plain(addr, "GET", url).await;
        assert_eq!(health.status, 200, "{url}: {health:?}");
        let json: Value = serde_json::from_str(&health.body).expect("JSON");
        assert_eq!(json["keygate"], "ok", "{json}");
        assert_eq!(json["tls"], false, "{url}: plain HTTP: {json}");
        assert_eq!(json["version"], env!("CARGO_PKG_VERSION"));
    }

    let pem = plain(addr, "GET", "http://keygate.test/ca.pem").await;
    assert_eq!(pem.status, 200, "{pem:?}");
    assert_eq!(ca_der_of(pem.body.as_bytes()), proxy.ca().der);

    let missing = plain(addr, "GET", "http://keygate.test/etc/passwd").await;
    assert_eq!(missing.status, 404, "{missing:?}");
    let reason = missing.header("x-keygate-reason").expect("a reason");
    assert!(reason.starts_with("not-found: "), "{reason}");
    for served in ["/ca.pem", "/health", "/doctor.git"] {
        assert!(
            reason.contains(served),
            "the reason lists {served}: {reason}"
        );
        assert!(
            missing.body.contains(served),
            "the body lists {served}: {}",
            missing.body
        );
    }
    for method in ["POST", "PUT", "DELETE"] {
        let refused = plain(addr, method, "http://keygate.test/health").await;
        assert_eq!(refused.status, 405, "{method}: {refused:?}");
        assert_eq!(refused.header("allow"), Some("GET, HEAD"), "{refused:?}");
        assert!(refused.body.contains("GET and HEAD"), "{}", refused.body);
    }
    assert!(
        proxy.events().iter().all(|e| e["decision"] != "deny"),
        "policy does not apply to keygate.test: {:#?}",
        proxy.events()
    );
}

// ---------------------------------------------------------------- logging

/// What a `keygate start` (built by `configure`) wrote to stderr, after it served an
/// intercepted keygate.test connection that sent garbage (a debug-level event: the
/// connection ended with an HTTP parse error) and a refused plain request (a warning),
/// then got SIGTERM (info).
async fn start_and_log(configure: impl FnOnce(&mut Command) + Send + 'static) -> Vec<String> {
    let home = tempfile::tempdir().expect("home");
    let dir = home.path().to_path_buf();
    let keygate_start = tokio::task::spawn_blocking(move || {
        let mut cmd = bin::keygate(&dir);
        configure(&mut cmd);
        cmd.args(["start", "--listen", "127.0.0.1:0", "--mode", "custom"]);
        Running::start(cmd)
    })
    .await
    .expect("start");
    let ca = CertificateDer::from_pem_file(Home::at(home.path()).ca_cert()).expect("CA");
    let mut tls = tls_via(keygate_start.addr, "keygate.test:443", &ca, &[b"http/1.1"])
        .await
        .expect("TLS with keygate");
    tls.write_all(b"NOT AN HTTP REQUEST\r\n\r\n")
        .await
        .expect("write");
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(WAIT, tls.read_to_end(&mut sink)).await;
    let refused = plain(keygate_start.addr, "GET", "http://blocked.diag.example/").await;
    assert_eq!(refused.status, 403, "{refused:?}");
    let (status, lines) = within(
        "keygate start to exit",
        tokio::task::spawn_blocking(move || keygate_start.terminate_with_stderr()),
    )
    .await
    .expect("terminate");
    assert_eq!(status.code(), Some(0), "{lines:#?}");
    lines
}

const LISTENING: &str = "keygate listening on http://";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_log_format_json_writes_one_json_object_per_line() {
    let lines = start_and_log(|cmd| {
        cmd.args(["--log-format", "json"]);
    })
    .await;
    let mut events = Vec::new();
    for line in &lines {
        // The address line is a documented plain-text line (CONFIG.md `listen`), not a
        // log event; scripts look for it.
        if line.starts_with(LISTENING) || line.starts_with("keygate: created a new CA") {
            continue;
        }
        let event: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line:?}\nall: {lines:#?}"));
        assert!(event.is_object(), "{line}");
        assert!(event["level"].is_string(), "{line}");
        assert!(event["timestamp"].is_string(), "{line}");
        events.push(event);
    }
    let message = |e: &Value| e["fields"]["message"].as_str().unwrap_or("").to_string();
    assert!(
        events
            .iter()
            .any(|e| e["level"] == "WARN" && message(e).contains("not-allowed")),
        "the refusal is a JSON warning: {lines:#?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e["level"] == "INFO" && message(e).contains("SIGTERM")),
        "{lines:#?}"
    );
    assert!(
        events.iter().all(|e| e["level"] != "DEBUG"),
        "no debug without -v: {lines:#?}"
    );
}

fn has_level(lines: &[String], level: &str) -> bool {
    lines.iter().any(|l| l.contains(&format!(" {level} ")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_verbose_adds_debug_lines_and_rust_log_overrides_the_level() {
    let default = start_and_log(|_| {}).await;
    assert!(has_level(&default, "INFO"), "info by default: {default:#?}");
    assert!(has_level(&default, "WARN"), "{default:#?}");
    assert!(!has_level(&default, "DEBUG"), "{default:#?}");

    let verbose = start_and_log(|cmd| {
        cmd.arg("-v");
    })
    .await;
    assert!(
        verbose
            .iter()
            .any(|l| l.contains(" DEBUG ") && l.contains("intercepted connection ended")),
        "-v adds debug: {verbose:#?}"
    );

    let debug = start_and_log(|cmd| {
        cmd.env("RUST_LOG", "keygate=debug");
    })
    .await;
    assert!(has_level(&debug, "DEBUG"), "RUST_LOG raises it: {debug:#?}");

    let off = start_and_log(|cmd| {
        cmd.arg("-v").env("RUST_LOG", "off");
    })
    .await;
    let logged: Vec<&String> = off
        .iter()
        .filter(|l| !l.starts_with(LISTENING) && !l.starts_with("keygate: created a new CA"))
        .collect();
    assert!(logged.is_empty(), "RUST_LOG=off beats -v: {off:#?}");
}

#[test]
fn env_and_run_are_quiet_on_stderr_unless_asked() {
    let home = bin::home_listening_on(bin::free_port());
    assert_eq!(
        bin::run(bin::keygate_keyutils(home.path(), &["ca", "init"])).code,
        Some(0)
    );
    let env = bin::run(bin::keygate_keyutils(home.path(), &["env"]));
    assert_eq!(env.code, Some(0), "{env:?}");
    assert!(env.stdout.contains("HTTPS_PROXY"), "{}", env.stdout);
    assert_eq!(env.stderr, "", "keygate env is quiet");

    let run = bin::run(bin::keygate_keyutils(home.path(), &["run", "--", "true"]));
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.stderr, "", "keygate run is quiet (warnings only)");

    // The embedded proxy logs its shutdown at info: visible with -v or RUST_LOG.
    let verbose = bin::run(bin::keygate_keyutils(
        home.path(),
        &["-v", "run", "--", "true"],
    ));
    assert_eq!(verbose.code, Some(0), "{verbose:?}");
    assert!(verbose.stderr.contains("INFO"), "{}", verbose.stderr);
    let mut cmd = bin::keygate_keyutils(home.path(), &["run", "--", "true"]);
    cmd.env("RUST_LOG", "keygate=info");
    let overridden = bin::run(cmd);
    assert_eq!(overridden.code, Some(0), "{overridden:?}");
    assert!(overridden.stderr.contains("INFO"), "{}", overridden.stderr);
}
