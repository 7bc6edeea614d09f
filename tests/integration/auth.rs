//! Listener safety: a keygate listening beyond loopback requires proxy authentication
//! (Basic, credentials kept in the keyring) on every CONNECT and plain request.

use base64::Engine;

use crate::support::bin::{self, Running};
use crate::support::client;
use crate::support::proxy::ProxyBuilder;
use crate::support::upstream::HttpUpstream;

const CREDENTIALS: &str = "keygate:test-password-0123456789";

fn basic(credentials: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(credentials)
    )
}

#[tokio::test]
async fn requests_without_the_right_credentials_get_407_and_the_right_ones_pass() {
    let upstream = HttpUpstream::start().await;
    let proxy = ProxyBuilder::new()
        .allow("plain.auth.test:*")
        .resolve("plain.auth.test:80", upstream.addr)
        .proxy_auth(CREDENTIALS)
        .start()
        .await;
    let target = "http://plain.auth.test/hello";
    for header in [
        None,
        Some(basic("keygate:wrong")),
        Some(basic("other:test-password-0123456789")),
    ] {
        let auth = header
            .map(|h| format!("Proxy-Authorization: {h}\r\n"))
            .unwrap_or_default();
        let raw = format!(
            "GET {target} HTTP/1.1\r\nHost: plain.auth.test\r\n{auth}Connection: close\r\n\r\n"
        );
        let (_s, reply) = client::send_raw(proxy.addr, raw.as_bytes()).await;
        let reply = reply.expect("a reply");
        assert_eq!(reply.status, 407, "{reply:?}");
        assert_eq!(
            reply.header("proxy-authenticate"),
            Some("Basic realm=\"keygate\"")
        );
        assert!(
            reply.reason().starts_with("proxy-auth-required"),
            "{reply:?}"
        );
    }
    let (_s, reply) = client::send_raw(
        proxy.addr,
        b"CONNECT plain.auth.test:443 HTTP/1.1\r\nHost: plain.auth.test:443\r\n\r\n",
    )
    .await;
    assert_eq!(
        reply.expect("a reply").status,
        407,
        "CONNECT needs credentials too"
    );
    assert_eq!(upstream.accepted(), 0, "nothing reached the upstream");
    let raw = format!(
        "GET {target} HTTP/1.1\r\nHost: plain.auth.test\r\nProxy-Authorization: {}\r\nConnection: close\r\n\r\n",
        basic(CREDENTIALS)
    );
    let (_s, reply) = client::send_raw(proxy.addr, raw.as_bytes()).await;
    assert_eq!(reply.expect("a reply").status, 200);
    let refused = proxy.event("request", |e| e["status"] == 407).await;
    assert_eq!(refused["decision"], "deny");
    let text = serde_json::to_string(&proxy.events()).expect("events");
    assert!(
        !text.contains("test-password"),
        "the password never reaches the audit log"
    );
}

#[test]
fn a_non_loopback_listener_requires_credentials_from_the_keyring() {
    let home = tempfile::tempdir().expect("home");
    let keygate = |args: &[&str]| {
        let mut cmd = bin::keygate(home.path());
        cmd.env("KEYGATE_KEYRING", "keyutils").args(args);
        cmd
    };
    let running = Running::start(keygate(&["start", "--listen", "0.0.0.0:0"]));
    assert!(
        running
            .stderr()
            .iter()
            .any(|l| l.contains("proxy authentication is required")),
        "it says so: {:#?}",
        running.stderr()
    );
    let port = running.addr.port();
    let ca = home.path().join("ca/keygate-ca.pem");
    let mut anonymous = bin::curl(&ca);
    anonymous.args([
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-x",
        &format!("http://127.0.0.1:{port}"),
        "http://keygate.test/health",
    ]);
    assert_eq!(bin::run(anonymous).stdout, "407");
    // `keygate env` for that listener carries the credentials in the proxy URL.
    std::fs::write(
        home.path().join("keygate.yaml"),
        format!("listen: 0.0.0.0:{port}\n"),
    )
    .expect("yaml");
    let env = bin::run(keygate(&["env", "--shell", "json"]));
    assert_eq!(env.code, Some(0), "{env:?}");
    let vars: serde_json::Value = serde_json::from_str(&env.stdout).expect("json");
    let url = vars["HTTPS_PROXY"]
        .as_str()
        .expect("HTTPS_PROXY")
        .to_string();
    assert!(
        url.starts_with("http://keygate:") && url.ends_with(&format!("@127.0.0.1:{port}")),
        "{url}"
    );
    let mut authenticated = bin::curl(&ca);
    authenticated.args(["-x", &url, "https://keygate.test/health"]);
    let out = bin::run(authenticated);
    assert!(out.stdout.contains("\"tls\":true"), "{out:?}");
    let (status, stderr) = running.terminate_with_stderr();
    assert!(status.success());
    let password = url
        .trim_start_matches("http://keygate:")
        .split('@')
        .next()
        .expect("password")
        .to_string();
    assert!(
        stderr.iter().all(|l| !l.contains(&password)),
        "the password never reaches the log"
    );
}
