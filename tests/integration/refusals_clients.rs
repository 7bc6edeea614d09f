//! What real clients show of a refusal (issue 13), each unmodified under `keygate run`
//! (jailed, as a user runs them) with nothing but keygate's environment: curl prints
//! the refusal's body, requests and httpx get a 403 response carrying the reason, the
//! anthropic SDK raises an `APIStatusError` whose message holds it, Node's fetch (undici)
//! gets the 403. In the jail the page's leaf comes from the session's refusal CA. And
//! `keygate run` prints each refusal on its own stderr, also when it reuses a running
//! keygate (`--no-jail`).
//!
//! The clients come from scripts/setup-test-clients; see clients.rs for the skip rules.

use serde_json::Value;

use crate::support::bin::{self, Output, Running};
use crate::support::clients::{self, DIR, Sandbox, last_json, show};

/// Not on any allowlist: refused by policy before any name is resolved.
const REFUSED_BASE: &str = "https://refused.example";
const REFUSED_URL: &str = "https://refused.example/v1/upload";

/// The line `keygate run` prints for the refusal of `REFUSED`.
fn assert_run_printed_the_refusal(out: &Output) {
    // The command shares keygate's stderr: a client writing at the same moment (curl -v
    // writes `<` before it has the rest of its line) may put bytes ahead of keygate's
    // line, never inside it.
    const START: &str = "keygate: refused CONNECT refused.example:443: not-allowed";
    let line = out
        .stderr
        .lines()
        .find_map(|l| l.find(START).map(|at| &l[at..]))
        .unwrap_or_else(|| panic!("keygate run prints the refusal: {}", show(out)));
    assert!(
        line.ends_with(
            "to allow it, add to keygate.yaml: network: { allow: [\"refused.example\"] }"
        ),
        "{line}"
    );
}

fn python_client(library: &str, url: &str, extra: &[&str]) -> Option<Output> {
    let python = clients::python()?;
    let python = python.to_str().expect("a UTF-8 path").to_string();
    let sandbox = Sandbox::new("api.refusals.test");
    let script = format!("{DIR}/refused.py");
    let mut command = vec![python.as_str(), script.as_str(), library, url];
    command.extend(extra);
    let out = sandbox.run(&[], &command);
    assert_eq!(out.code, Some(0), "{}", show(&out));
    assert_run_printed_the_refusal(&out);
    Some(out)
}

fn assert_text_refusal(got: &Value) {
    assert_eq!(got["status"], 403, "{got}");
    let reason = got["reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("not-allowed: refused.example:443"),
        "{got}"
    );
    let body = got["body"].as_str().unwrap_or_default();
    assert!(
        body.starts_with("keygate refused GET https://refused.example/v1/upload."),
        "{got}"
    );
    assert!(body.contains("allow: [\"refused.example\"]"), "{got}");
}

#[test]
fn curl_prints_the_refusal_signed_by_the_sessions_refusal_ca() {
    if clients::curl().is_none() {
        return;
    }
    let sandbox = Sandbox::new("api.refusals.test");
    let out = sandbox.run(&[], &["curl", "-sS", "-v", "--max-time", "10", REFUSED_URL]);
    assert_eq!(
        out.code,
        Some(0),
        "curl succeeds: the refusal is an answer: {}",
        show(&out)
    );
    assert!(
        out.stdout
            .starts_with("keygate refused GET https://refused.example/v1/upload."),
        "{}",
        show(&out)
    );
    assert!(out.stdout.contains("Why: not-allowed"), "{}", show(&out));
    let verbose = out.stderr.to_ascii_lowercase();
    assert!(
        verbose.contains("x-keygate-reason: not-allowed"),
        "{}",
        show(&out)
    );
    assert!(
        out.stderr.contains("keygate session refusal CA"),
        "the leaf's issuer is the session's refusal CA: {}",
        show(&out)
    );
    assert_run_printed_the_refusal(&out);
}

#[test]
fn python_requests_and_httpx_get_a_403_that_carries_the_reason() {
    for library in ["requests", "httpx"] {
        let Some(out) = python_client(library, REFUSED_URL, &[]) else {
            return;
        };
        assert_text_refusal(&last_json(&out));
    }
    // Asked for JSON, the body is an API-style error object.
    let Some(out) = python_client("requests", REFUSED_URL, &["application/json"]) else {
        return;
    };
    let got = last_json(&out);
    let body: Value = serde_json::from_str(got["body"].as_str().unwrap()).expect("JSON body");
    assert_eq!(body["error"]["code"], "not-allowed", "{got}");
}

#[test]
fn the_anthropic_sdks_api_status_error_holds_the_reason() {
    let Some(out) = python_client("anthropic", REFUSED_BASE, &[]) else {
        return;
    };
    let got = last_json(&out);
    assert_eq!(got["exception"], "PermissionDeniedError", "{got}");
    assert_eq!(got["status"], 403, "{got}");
    let message = got["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("keygate refused POST https://refused.example/v1/messages: not-allowed"),
        "{message}"
    );
}

#[test]
fn node_fetch_through_undici_gets_the_403_and_its_reason() {
    if clients::node().is_none() {
        return;
    }
    let sandbox = Sandbox::new("api.refusals.test");
    let script = format!("{DIR}/refused.mjs");
    let out = sandbox.run(&[], &["node", &script, REFUSED_URL]);
    assert_eq!(out.code, Some(0), "{}", show(&out));
    assert_text_refusal(&last_json(&out));
    assert_run_printed_the_refusal(&out);
}

/// `keygate run --no-jail FLAGS -- curl REFUSED_URL`, which prints the refusal's body.
fn run_curl_unjailed(home: &std::path::Path, flags: &[&str]) -> Output {
    let mut args = vec!["run", "--no-jail"];
    args.extend(flags);
    args.extend(["--", "curl", "-sS", "--max-time", "10", REFUSED_URL]);
    let out = bin::run(bin::keygate_keyutils(home, &args));
    assert_eq!(out.code, Some(0), "{}", show(&out));
    assert!(out.stdout.contains("Why: not-allowed"), "{}", show(&out));
    out
}

#[test]
fn run_prints_the_refusals_of_a_keygate_it_reuses() {
    if clients::curl().is_none() {
        return;
    }
    let home = bin::home_listening_on(bin::free_port());
    let running = Running::start(bin::keygate_keyutils(home.path(), &["start"]));
    let out = run_curl_unjailed(home.path(), &[]);
    assert_run_printed_the_refusal(&out);
    let (_, stderr) = running.terminate_with_stderr();
    assert!(
        stderr
            .iter()
            .any(|l| l.contains("CONNECT refused.example:443")),
        "the running keygate made the refusal: {stderr:#?}"
    );
}

#[test]
fn run_prints_the_refusals_of_its_embedded_proxy() {
    if clients::curl().is_none() {
        return;
    }
    let home = bin::home_listening_on(bin::free_port());
    // A policy flag makes `run --no-jail` embed a proxy of its own.
    let out = run_curl_unjailed(home.path(), &["--mode", "custom"]);
    let line = out
        .stderr
        .lines()
        .find(|l| l.starts_with("keygate: refused CONNECT refused.example:443: not-allowed"))
        .unwrap_or_else(|| panic!("{}", show(&out)));
    assert!(line.contains("(network mode: custom)"), "{line}");
    assert_eq!(
        out.stderr.matches("refused.example:443").count(),
        2,
        "one line (with the host twice), no log record besides: {}",
        out.stderr
    );
}
