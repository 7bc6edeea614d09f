//! Faults (issue 6): an upstream that hangs gets a 504 after `limits.response_timeout`,
//! one that never completes the TCP connect a 504 after `limits.upstream_connect_timeout`,
//! one that never answers keygate's TLS handshake a 504 after `limits.handshake_timeout`
//! (nothing forwarded); an unreachable keyring at start is a clear error and exit 1.

use http::{StatusCode, Version};

use crate::support::bin;
use crate::support::client;
use crate::support::intercepted::Conn;
use crate::support::leak::{ClientSaw, assert_no_leak};
use crate::support::proxy::ProxyBuilder;
use crate::support::secret::TestSecret;
use crate::support::upstream::{HttpUpstream, RecordingUpstream};
use crate::support::{SilentPort, within};

#[tokio::test]
async fn an_upstream_that_never_answers_gets_a_504_after_the_response_timeout() {
    let upstream = HttpUpstream::start().await;
    let proxy = ProxyBuilder::new()
        .yaml("limits:\n  response_timeout: 300ms\n")
        .allow("slow.fault.test:*")
        .resolve("slow.fault.test:80", upstream.addr)
        .start()
        .await;
    let raw = "GET http://slow.fault.test/hold HTTP/1.1\r\nHost: slow.fault.test\r\nConnection: close\r\n\r\n";
    let (_s, reply) = client::send_raw(proxy.addr, raw.as_bytes()).await;
    let reply = reply.expect("a reply");
    assert_eq!(reply.status, 504, "{reply:?}");
    assert!(reply.reason().starts_with("upstream-timeout"), "{reply:?}");
    let event = proxy.event("request", |e| e["status"] == 504).await;
    assert_eq!(event["decision"], "deny");
    upstream.release();
    // The proxy goes on serving.
    let raw = "GET http://slow.fault.test/next HTTP/1.1\r\nHost: slow.fault.test\r\nConnection: close\r\n\r\n";
    let (_s, reply) = client::send_raw(proxy.addr, raw.as_bytes()).await;
    assert_eq!(reply.expect("a reply").status, 200);
}

#[tokio::test]
async fn an_upstream_that_never_completes_the_connect_gets_a_504_after_the_connect_timeout() {
    let silent = SilentPort::new().await;
    let upstream = HttpUpstream::start().await;
    let proxy = ProxyBuilder::new()
        .yaml("limits:\n  upstream_connect_timeout: 300ms\n")
        .allow("*.fault.test:*")
        .resolve("silent.fault.test:80", silent.addr)
        .resolve("silent.fault.test:443", silent.addr)
        .resolve("ok.fault.test:80", upstream.addr)
        .start()
        .await;

    // A proxied plain-HTTP request.
    let raw = "GET http://silent.fault.test/never HTTP/1.1\r\nHost: silent.fault.test\r\nConnection: close\r\n\r\n";
    let (_s, reply) = client::send_raw(proxy.addr, raw.as_bytes()).await;
    let reply = reply.expect("a reply");
    assert_eq!(reply.status, 504, "{reply:?}");
    let reason = reply.reason();
    assert!(reason.starts_with("upstream-timeout"), "{reply:?}");
    assert!(
        reason.contains("silent.fault.test:80")
            && reason.contains("limits.upstream_connect_timeout: 300ms"),
        "the reason names the host and the limit: {reason}"
    );
    let event = proxy
        .event("request", |e| e["path"] == "/never" && e["status"] == 504)
        .await;
    assert_eq!(event["decision"], "deny", "{event}");

    // A CONNECT tunnel.
    let (_s, reply) = client::connect(proxy.addr, "silent.fault.test:443").await;
    assert_eq!(reply.status, 504, "{reply:?}");
    assert!(
        reply.reason().contains("limits.upstream_connect_timeout"),
        "{reply:?}"
    );
    let event = proxy
        .event("connect", |e| e["host"] == "silent.fault.test")
        .await;
    assert_eq!(event["status"], 504, "{event}");

    // The proxy goes on serving.
    let raw = "GET http://ok.fault.test/next HTTP/1.1\r\nHost: ok.fault.test\r\nConnection: close\r\n\r\n";
    let (_s, reply) = client::send_raw(proxy.addr, raw.as_bytes()).await;
    assert_eq!(reply.expect("a reply").status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_never_answers_the_tls_handshake_gets_a_504_and_nothing_is_forwarded() {
    const MUTE: &str = "mute.fault.test";
    let secret = TestSecret::new("mute", &[MUTE]);
    // Accepts the TCP connection, reads, never writes a byte.
    let mute = RecordingUpstream::start().await;
    let proxy = ProxyBuilder::new()
        .yaml("limits:\n  handshake_timeout: 1s\n")
        .secret(&secret)
        .resolve("mute.fault.test:443", mute.addr)
        .start()
        .await;
    let mut conn = Conn::open(&proxy, MUTE, Version::HTTP_11).await;
    let resp = conn
        .send(conn.get(MUTE, "/v1/mute", &[("x-api-key", secret.dummy())]))
        .await;
    let mut saw = ClientSaw::default();
    let (head, text) = saw.read(resp).await;
    assert_eq!(head.status, StatusCode::GATEWAY_TIMEOUT, "{text}");
    let reason = head.headers["x-keygate-reason"].to_str().unwrap();
    assert!(reason.starts_with("upstream-timeout"), "{reason}");
    assert!(
        reason.contains("TLS handshake with mute.fault.test:443")
            && reason.contains("limits.handshake_timeout: 1s"),
        "{reason}"
    );
    // keygate gave up and closed: the upstream saw a ClientHello and nothing else.
    let got = within("the upstream's connection to close", mute.next_connection()).await;
    assert_eq!(got.first(), Some(&0x16), "a TLS handshake record");
    assert!(
        !got.windows(secret.real().len())
            .any(|w| w == secret.real().as_bytes()),
        "the real value never left keygate"
    );
    let event = proxy.event("request", |e| e["path"] == "/v1/mute").await;
    assert_eq!(event["status"], 504, "{event}");
    drop(conn);
    assert_no_leak(secret.real(), &proxy, &saw);
}

#[test]
fn an_unreachable_keyring_at_start_is_a_clear_error_and_exit_1() {
    let home = tempfile::tempdir().expect("home");
    std::fs::write(
        home.path().join("secrets.yaml"),
        "- name: fault-demo\n  hosts: [api.fault.test]\n  dummy: keygate-dummy-fault-0123456789\n",
    )
    .expect("registry");
    let mut cmd = bin::keygate(home.path());
    cmd.env("KEYGATE_KEYRING", "secret-service")
        .env(
            "DBUS_SESSION_BUS_ADDRESS",
            "unix:path=/nonexistent/keygate-fault-bus",
        )
        .args(["start", "--listen", "127.0.0.1:0"]);
    let out = bin::run(cmd);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr.contains("keyring backend secret-service"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("KEYGATE_KEYRING=keyutils"),
        "the remedy: {}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("listening"),
        "it did not start: {}",
        out.stderr
    );
}
