//! Issue 16, the admin listener of `keygate start` (the real binary): the Unix socket
//! `$KEYGATE_HOME/admin.sock` (0600), every route, the live feed, a rule added to
//! keygate.yaml with its comments kept (and in force at once), and errors as JSON.

use std::path::Path;

use http::Request;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::support::bin::{self, Running};
use crate::support::body;
use crate::support::upstream::HttpUpstream;
use crate::support::within;

const SITE: &str = "site.admin.test";

/// One request to the admin socket: (status, body).
async fn admin(sock: &Path, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let stream = within("the admin socket", tokio::net::UnixStream::connect(sock))
        .await
        .expect("connect to admin.sock");
    let headers = [("host", "keygate-admin")];
    let (status, _, text) = exchange(stream, method, path, &headers, body).await;
    (status, text)
}

/// One HTTP/1.1 request over `io`: (status, headers, body).
async fn exchange<IO>(
    io: IO,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (u16, http::HeaderMap, String)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(body::full(body.unwrap_or("").to_string()))
        .unwrap();
    let resp = within("an admin answer", sender.send_request(req))
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let head = resp.headers().clone();
    let text = within("an admin body", resp.into_body().collect())
        .await
        .unwrap()
        .to_bytes();
    (status, head, String::from_utf8_lossy(&text).into_owned())
}

async fn admin_json(sock: &Path, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    let (status, text) = admin(sock, method, path, body).await;
    let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}"));
    (status, value)
}

/// `curl -x PROXY http://SITE/path`: the HTTP status.
fn curl_through(proxy: std::net::SocketAddr, url: &str) -> u16 {
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "10",
            "-x",
        ])
        .arg(format!("http://{proxy}"))
        .arg(url)
        .output()
        .expect("run curl");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_socket_answers_every_route_and_a_rule_takes_effect_at_once() {
    if crate::support::clients::curl().is_none() {
        return;
    }
    let upstream = HttpUpstream::start().await;
    let home = tempfile::tempdir().unwrap();
    let yaml = "# my keygate\nlisten: 127.0.0.1:0   # any port\nnetwork:\n  mode: custom\n  # hosts I trust\n  allow: [\"keygate.test\"]\n";
    std::fs::write(home.path().join("keygate.yaml"), yaml).unwrap();
    let resolve = format!("{SITE}:80={}", upstream.addr);
    let mut cmd = bin::keygate_keyutils(home.path(), &["start", "--resolve", &resolve]);
    cmd.env("RUST_LOG", "keygate=info");
    let keygate = Running::start(cmd);
    let sock = home.path().join("admin.sock");
    keygate.wait_for_line("admin API on");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&sock).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "admin.sock is owner-only");
    }

    let (status, health) = admin_json(&sock, "GET", "/healthz", None).await;
    assert_eq!((status, &health["status"]), (200, &Value::from("ok")));
    let (status, ready) = admin_json(&sock, "GET", "/readyz", None).await;
    assert_eq!(status, 200);
    assert_eq!(ready["ready"], true);
    assert_eq!(ready["listen"], keygate.addr.to_string());

    // The live feed, opened before the traffic.
    let stream = tokio::net::UnixStream::connect(&sock).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::builder()
        .uri("/api/flows/stream")
        .header("host", "keygate-admin")
        .body(body::empty())
        .unwrap();
    let live = sender.send_request(req).await.unwrap();
    assert_eq!(live.status(), 200);
    assert_eq!(live.headers()["content-type"], "text/event-stream");
    let mut live = live.into_body();

    // A refused request: the site is not allowed yet.
    let proxy = keygate.addr;
    let refused =
        tokio::task::spawn_blocking(move || curl_through(proxy, &format!("http://{SITE}/before")))
            .await
            .unwrap();
    assert_eq!(refused, 403);
    let mut seen = String::new();
    within("the refusal on the live feed", async {
        while !seen.contains("/before") {
            let frame = live.frame().await.expect("the feed goes on").unwrap();
            if let Ok(data) = frame.into_data() {
                seen.push_str(&String::from_utf8_lossy(&data));
            }
        }
    })
    .await;
    let line = seen
        .lines()
        .find(|l| l.starts_with("data: ") && l.contains("/before"))
        .unwrap();
    let flow: Value = serde_json::from_str(&line["data: ".len()..]).unwrap();
    assert_eq!(flow["decision"], "deny");
    assert_eq!(flow["code"], "not-allowed");
    assert_eq!(flow["allow"], SITE, "the pattern a human would allow");

    let (status, flows) = admin_json(&sock, "GET", "/api/flows?limit=5", None).await;
    assert_eq!(status, 200);
    let flows = flows["flows"].as_array().unwrap();
    assert!(
        flows
            .iter()
            .any(|f| f["path"] == "/before" && f["host"] == SITE)
    );

    let (status, policy) = admin_json(&sock, "GET", "/api/policy", None).await;
    assert_eq!(status, 200);
    assert_eq!(policy["mode"], "custom");
    assert_eq!(policy["allow"], serde_json::json!(["keygate.test"]));

    // Allow it through the API: keygate.yaml keeps its comments, the rule is in force.
    let (status, added) = admin_json(
        &sock,
        "POST",
        "/api/rules",
        Some(&format!(r#"{{"allow": "{SITE}"}}"#)),
    )
    .await;
    assert_eq!(status, 200, "{added}");
    assert_eq!(added["changed"], true);
    let written = std::fs::read_to_string(home.path().join("keygate.yaml")).unwrap();
    assert!(
        written.contains(&format!("allow: [\"keygate.test\", \"{SITE}\"]")),
        "{written}"
    );
    assert!(written.contains("# my keygate") && written.contains("# hosts I trust"));
    let allowed =
        tokio::task::spawn_blocking(move || curl_through(proxy, &format!("http://{SITE}/after")))
            .await
            .unwrap();
    assert_eq!(allowed, 200, "the new rule is in force");
    assert_eq!(upstream.next_arrival().await, "/after");
    let (_, again) = admin_json(
        &sock,
        "POST",
        "/api/rules",
        Some(&format!(r#"{{"deny": "evil.{SITE}"}}"#)),
    )
    .await;
    assert_eq!(again["changed"], true);
    let (_, policy) = admin_json(&sock, "GET", "/api/policy", None).await;
    assert_eq!(policy["deny"], serde_json::json!([format!("evil.{SITE}")]));

    // Metrics: the refusal and the allowed request, counted.
    let (status, metrics) = admin(&sock, "GET", "/metrics", None).await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains(
            "keygate_events_total{kind=\"request\",decision=\"deny\",code=\"not-allowed\"} 1"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("keygate_events_total{kind=\"request\",decision=\"allow\",code=\"\"} 1"),
        "{metrics}"
    );
    let (status, secrets) = admin_json(&sock, "GET", "/api/secrets", None).await;
    assert_eq!(status, 200);
    assert_eq!(secrets["secrets"], serde_json::json!([]));
    let (status, reloaded) = admin_json(&sock, "POST", "/api/reload", None).await;
    assert_eq!(status, 200, "{reloaded}");
    assert_eq!(reloaded["reloaded"], true);

    // Errors are JSON with a reason.
    for (method, path, body, want) in [
        ("GET", "/nope", None, 404),
        ("DELETE", "/api/flows", None, 405),
        ("GET", "/api/flows?limit=zero", None, 400),
        ("POST", "/api/rules", Some("not json"), 400),
        (
            "POST",
            "/api/rules",
            Some(r#"{"allow": "exa*mple.com"}"#),
            400,
        ),
        (
            "POST",
            "/api/rules",
            Some(r#"{"allow": "a.test", "deny": "b.test"}"#),
            400,
        ),
    ] {
        let (status, answer) = admin_json(&sock, method, path, body).await;
        assert_eq!(status, want, "{method} {path}: {answer}");
        assert!(
            answer["error"].is_string() && answer["reason"].is_string(),
            "{answer}"
        );
    }
    drop(live);
    let status = keygate.terminate();
    assert!(status.success(), "{status:?}");
    assert!(!sock.exists(), "the socket is removed at exit");
}

#[test]
fn a_second_keygate_on_the_same_home_serves_without_an_admin_socket() {
    let home = tempfile::tempdir().unwrap();
    std::fs::write(home.path().join("keygate.yaml"), "listen: 127.0.0.1:0\n").unwrap();
    let first = Running::start(bin::keygate_keyutils(home.path(), &["start"]));
    first.wait_for_line("admin API on");
    let second = Running::start(bin::keygate_keyutils(home.path(), &["start"]));
    second.wait_for_line("another keygate serves its admin API");
    assert!(
        home.path().join("admin.sock").exists(),
        "the first one's socket stays"
    );
    drop(second);
    drop(first);
}

/// `admin.listen`: the API on TCP too, behind the token from the keyring; the
/// dashboard's log-in URL sets a cookie; a foreign Host is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tcp_admin_listener_needs_the_token_and_its_own_host() {
    let home = tempfile::tempdir().unwrap();
    let port = bin::free_port();
    std::fs::write(
        home.path().join("keygate.yaml"),
        format!("listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:{port}\n"),
    )
    .unwrap();
    let _entry = bin::KeyutilsEntry(keygate::admin::auth::ADMIN_TOKEN_ACCOUNT.into());
    let keygate = Running::start(bin::keygate_keyutils(home.path(), &["start"]));
    keygate.wait_for_line("keygate admin API on http://");
    let raw = bin::run(bin::keygate_keyutils(
        home.path(),
        &["admin", "token", "--raw"],
    ));
    assert_eq!(raw.code, Some(0), "{raw:?}");
    let token = raw.stdout.trim().to_string();
    assert_eq!(token.len(), 32);
    let url = bin::run(bin::keygate_keyutils(home.path(), &["admin", "token"]));
    assert_eq!(
        url.stdout.trim(),
        format!("http://127.0.0.1:{port}/?token={token}")
    );
    let host = format!("127.0.0.1:{port}");
    let call = |headers: Vec<(&'static str, String)>, path: &'static str| {
        let host = host.clone();
        async move {
            let tcp = tokio::net::TcpStream::connect(&host).await.unwrap();
            let mut all: Vec<(&str, &str)> = vec![("host", host.as_str())];
            for (k, v) in &headers {
                all.retain(|(name, _)| name != k);
                all.push((k, v.as_str()));
            }
            exchange(tcp, "GET", path, &all, None).await
        }
    };
    let (status, _, text) = call(vec![], "/api/flows").await;
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("keygate admin token"), "{text}");
    let (status, _, _) = call(vec![("authorization", "Bearer wrong".into())], "/api/flows").await;
    assert_eq!(status, 401);
    let bearer = format!("Bearer {token}");
    let (status, _, text) = call(vec![("authorization", bearer.clone())], "/api/flows").await;
    assert_eq!(status, 200, "{text}");
    let (status, _, _) = call(
        vec![
            ("authorization", bearer),
            ("host", "rebound.example:8878".into()),
        ],
        "/api/flows",
    )
    .await;
    assert_eq!(status, 403, "a page on another name is refused");
    let login = format!("/?token={token}");
    let tcp = tokio::net::TcpStream::connect(&host).await.unwrap();
    let (status, head, _) = exchange(tcp, "GET", &login, &[("host", host.as_str())], None).await;
    assert_eq!(status, 303);
    let cookie = head["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let (status, _, text) = call(vec![("cookie", cookie)], "/healthz").await;
    assert_eq!(status, 200, "{text}");
    assert!(keygate.terminate().success());
}

/// A jailed command reaches neither the admin socket nor the admin port (run as root
/// here; the jail's own namespaces, not file permissions, are what stop it).
#[test]
fn a_jailed_command_cannot_reach_the_admin_api() {
    let jail = std::process::Command::new("bwrap")
        .args(["--unshare-all", "--ro-bind", "/", "/", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !jail {
        assert!(
            std::env::var("KEYGATE_TEST_JAIL").is_ok_and(|v| v != "1")
                || std::env::var("KEYGATE_TEST_JAIL").is_err(),
            "KEYGATE_TEST_JAIL=1 but bubblewrap cannot run here"
        );
        eprintln!("skipping: bubblewrap cannot run here");
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let port = bin::free_port();
    let proxy_port = bin::free_port();
    std::fs::write(
        home.path().join("keygate.yaml"),
        format!("listen: 127.0.0.1:{proxy_port}\nadmin:\n  listen: 127.0.0.1:{port}\n"),
    )
    .unwrap();
    // The admin token stays in the keyring: the TCP test of this run may be reading it.
    let keygate = Running::start(bin::keygate_keyutils(home.path(), &["start"]));
    keygate.wait_for_line("keygate admin API on http://");
    let sock = home.path().join("admin.sock");
    assert!(sock.exists());
    let probe = format!(
        "import socket, json\nout = {{}}\ntry:\n    s = socket.socket(socket.AF_UNIX); s.connect({sock:?}); out['unix'] = 'connected'\nexcept Exception as e:\n    out['unix'] = type(e).__name__\ntry:\n    s = socket.create_connection(('127.0.0.1', {port}), timeout=2); out['tcp'] = 'connected'\nexcept Exception as e:\n    out['tcp'] = type(e).__name__\nprint(json.dumps(out))\n",
        sock = sock.display().to_string()
    );
    let out = bin::run(bin::keygate_keyutils(
        home.path(),
        &["run", "--", "/usr/bin/python3", "-c", &probe],
    ));
    jail_stopped_the_probe(&out);
    // Outside the jail both answer (the probe is not merely broken).
    let outside = std::process::Command::new("/usr/bin/python3")
        .args(["-c", &probe])
        .output()
        .unwrap();
    let outside: Value = serde_json::from_slice(&outside.stdout).unwrap();
    assert_eq!(outside["unix"], "connected");
    assert_eq!(outside["tcp"], "connected");
    drop(keygate);
}

/// The jailed probe's report: it ran, and reached neither admin.sock nor the port.
fn jail_stopped_the_probe(out: &bin::Output) -> Value {
    assert_eq!(out.code, Some(0), "{out:?}");
    let seen: Value = serde_json::from_str(out.stdout.lines().last().unwrap()).unwrap();
    assert_ne!(
        seen["unix"], "connected",
        "the jail reached admin.sock: {seen}"
    );
    assert_ne!(
        seen["tcp"], "connected",
        "the jail reached the admin port: {seen}"
    );
    seen
}

/// As [`a_jailed_command_cannot_reach_the_admin_api`], everything as an ordinary user
/// (uid 65534, no capabilities, via setpriv): keygate, its home and admin socket, the
/// jailed command. Outside the jail that user reaches both (the socket is its own);
/// inside, the namespaces stop it, not permissions.
#[test]
fn a_jailed_command_cannot_reach_the_admin_api_as_an_unprivileged_user() {
    let Some(uid) = crate::jail::unprivileged_user() else {
        return;
    };
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let (home, cwd) = (dirs[0].path(), dirs[1].path());
    let (port, proxy_port) = (bin::free_port(), bin::free_port());
    std::fs::write(
        home.join("keygate.yaml"),
        format!("listen: 127.0.0.1:{proxy_port}\nadmin:\n  listen: 127.0.0.1:{port}\n"),
    )
    .unwrap();
    for dir in [home, cwd] {
        let chown = std::process::Command::new("chown")
            .args(["-R", &format!("{uid}:{uid}")])
            .arg(dir)
            .status()
            .unwrap();
        assert!(chown.success());
    }
    let as_user = |args: &[&str]| {
        let mut cmd = std::process::Command::new("setpriv");
        cmd.args([
            format!("--reuid={uid}"),
            format!("--regid={uid}"),
            "--clear-groups".into(),
            "--".into(),
        ])
        .arg(env!("CARGO_BIN_EXE_keygate"))
        .arg("--home")
        .arg(home)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", cwd)
        .env("LANG", "C.UTF-8")
        .env("KEYGATE_KEYRING", "keyutils")
        .current_dir(cwd)
        .stdin(std::process::Stdio::null());
        cmd
    };
    let keygate = Running::start(as_user(&["start"]));
    keygate.wait_for_line("keygate admin API on http://");
    let sock = home.join("admin.sock");
    let probe = format!(
        "import os, socket, json\nout = {{'uid': os.getuid()}}\ntry:\n    s = socket.socket(socket.AF_UNIX); s.connect({sock:?}); out['unix'] = 'connected'\nexcept Exception as e:\n    out['unix'] = type(e).__name__\ntry:\n    s = socket.create_connection(('127.0.0.1', {port}), timeout=2); out['tcp'] = 'connected'\nexcept Exception as e:\n    out['tcp'] = type(e).__name__\nprint(json.dumps(out))\n",
        sock = sock.display().to_string()
    );
    let out = bin::run(as_user(&["run", "--", "/usr/bin/python3", "-c", &probe]));
    let seen = jail_stopped_the_probe(&out);
    assert_eq!(
        seen["uid"], uid,
        "the probe ran as the ordinary user: {seen}"
    );
    // The same user, unjailed, reaches both: only the jail stands in the way.
    let mut outside = std::process::Command::new("setpriv");
    outside
        .args([
            format!("--reuid={uid}"),
            format!("--regid={uid}"),
            "--clear-groups".into(),
            "--".into(),
            "/usr/bin/python3".into(),
            "-c".into(),
            probe,
        ])
        .current_dir(cwd);
    let outside = outside.output().unwrap();
    let outside: Value = serde_json::from_slice(&outside.stdout).unwrap();
    assert_eq!(outside["uid"], uid);
    assert_eq!(outside["unix"], "connected", "{outside}");
    assert_eq!(outside["tcp"], "connected", "{outside}");
    drop(keygate);
    let _token = bin::run(as_user(&["secret", "rm", "--force", "_admin-token"]));
}

/// `curl -x PROXY URL` in the background: the status and the body.
fn curl_body(proxy: std::net::SocketAddr, url: String) -> tokio::task::JoinHandle<(u16, String)> {
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new("curl")
            .args(["-s", "-w", "\n%{http_code}", "--max-time", "20", "-x"])
            .arg(format!("http://{proxy}"))
            .arg(url)
            .output()
            .expect("run curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_string())
    })
}

/// The id of the one held request, once it is held.
async fn held(sock: &Path) -> u64 {
    within("a held request", async {
        loop {
            let (_, list) = admin_json(sock, "GET", "/api/approvals", None).await;
            if let Some(id) = list["pending"][0]["id"].as_u64() {
                return id;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
}

/// `network.ask`: a request to a host that is not allowed waits for an answer: allowed
/// once, refused by a deny, refused when no one answers in time, and allowed for good
/// (the rule written to keygate.yaml) by "always".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_requests_are_released_denied_or_time_out() {
    if crate::support::clients::curl().is_none() {
        return;
    }
    let upstream = HttpUpstream::start().await;
    let home = tempfile::tempdir().unwrap();
    std::fs::write(
        home.path().join("keygate.yaml"),
        "listen: 127.0.0.1:0\nnetwork:\n  mode: custom\n  ask: true\n  ask_timeout: 2s\n",
    )
    .unwrap();
    let resolve = format!("{SITE}:80={}", upstream.addr);
    let keygate = Running::start(bin::keygate_keyutils(
        home.path(),
        &["start", "--resolve", &resolve],
    ));
    keygate.wait_for_line("admin API on");
    let sock = home.path().join("admin.sock");
    let proxy = keygate.addr;
    let answer = |id: u64, decision: &'static str| {
        let sock = sock.clone();
        async move {
            let body = format!(r#"{{"decision": "{decision}"}}"#);
            admin_json(&sock, "POST", &format!("/api/approvals/{id}"), Some(&body)).await
        }
    };

    // Allowed once.
    let request = curl_body(proxy, format!("http://{SITE}/once"));
    let id = held(&sock).await;
    let (_, list) = admin_json(&sock, "GET", "/api/approvals", None).await;
    assert_eq!(list["pending"][0]["host"], SITE);
    assert_eq!(list["pending"][0]["allow"], SITE);
    let (status, answered) = answer(id, "once").await;
    assert_eq!(status, 200, "{answered}");
    assert_eq!(request.await.unwrap().0, 200);
    assert_eq!(upstream.next_arrival().await, "/once");
    // Once is once: the next request is held again; denied.
    let request = curl_body(proxy, format!("http://{SITE}/denied"));
    let id = held(&sock).await;
    answer(id, "deny").await;
    let (status, body) = request.await.unwrap();
    assert_eq!(status, 403);
    assert!(
        body.contains("denied by the admin API when asked"),
        "{body}"
    );
    // No answer in time.
    let (status, body) = curl_body(proxy, format!("http://{SITE}/late"))
        .await
        .unwrap();
    assert_eq!(status, 403);
    assert!(
        body.contains("no answer within 2 s (network.ask_timeout)"),
        "{body}"
    );
    let (status, _) = answer(id, "once").await;
    assert_eq!(status, 404, "an answered request is not held any more");
    // Always: the rule is written, and the next request is not held.
    let request = curl_body(proxy, format!("http://{SITE}/always"));
    let id = held(&sock).await;
    answer(id, "always").await;
    assert_eq!(request.await.unwrap().0, 200);
    let yaml = std::fs::read_to_string(home.path().join("keygate.yaml")).unwrap();
    assert!(yaml.contains(&format!("allow: [\"{SITE}\"]")), "{yaml}");
    let (status, _) = curl_body(proxy, format!("http://{SITE}/after"))
        .await
        .unwrap();
    assert_eq!(status, 200);
    // Each decision is audited with who answered.
    let audit = std::fs::read_to_string(home.path().join("audit.jsonl")).unwrap();
    assert!(
        audit.contains("approved (once) by the admin API when asked"),
        "{audit}"
    );
    assert!(
        audit.contains("approved (always) by the admin API when asked"),
        "{audit}"
    );
    assert!(keygate.terminate().success());
}

/// `keygate top --plain`: the recent flows, then each new one as it happens, one line
/// each, from the admin socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keygate_top_prints_recent_and_live_flows() {
    if crate::support::clients::curl().is_none() {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    std::fs::write(
        home.path().join("keygate.yaml"),
        "listen: 127.0.0.1:0\nnetwork:\n  mode: custom\n",
    )
    .unwrap();
    let keygate = Running::start(bin::keygate_keyutils(home.path(), &["start"]));
    keygate.wait_for_line("admin API on");
    let proxy = keygate.addr;
    assert_eq!(
        curl_body(proxy, "http://before.top.test/".into())
            .await
            .unwrap()
            .0,
        403
    );
    let top = bin::keygate_keyutils(home.path(), &["top", "--plain", "--count", "2"]);
    let top = tokio::task::spawn_blocking(move || bin::run(top));
    // Until top is connected its feed may miss a flow: keep sending until it has two.
    let mut sent = 0;
    while !top.is_finished() && sent < 50 {
        let _ = curl_body(proxy, "http://live.top.test/".into()).await;
        sent += 1;
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let out = top.await.unwrap();
    assert_eq!(out.code, Some(0), "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{out:?}");
    assert!(
        lines[0].contains("before.top.test") && lines[0].contains("[not-allowed]"),
        "{out:?}"
    );
    assert!(lines[1].contains("live.top.test"), "{out:?}");
    assert!(keygate.terminate().success());
}
