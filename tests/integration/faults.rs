//! Faults (issue 6): an upstream that hangs gets a 504 after `limits.response_timeout`;
//! an unreachable keyring at start is a clear error and exit 1.

use crate::support::bin;
use crate::support::client;
use crate::support::proxy::ProxyBuilder;
use crate::support::upstream::HttpUpstream;

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
