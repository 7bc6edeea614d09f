//! Issue 14: revocation is immediate. A reload that unbinds a secret or denies a host
//! takes effect on the next request of every open intercepted connection, and closes
//! open tunnels to a newly denied host; each refusal is audited as `revoked`.

use std::time::Duration;

use http::{StatusCode, Version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::api::Alpn;
use crate::support::intercepted::{Conn, tls_through};
use crate::support::leak::{ClientSaw, assert_no_leak};
use crate::support::pki::TestPki;
use crate::support::proxy::{ProxyBuilder, reason};
use crate::support::secret::TestSecret;
use crate::support::stack::Stack;
use crate::support::upstream::TlsUpstream;
use crate::support::within;

const HOST: &str = "api.revoke.test";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unbound_secret_is_revoked_on_the_next_request_of_an_open_connection() {
    let secret = TestSecret::new("revoke", &[HOST]);
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let root = pki.write_root(dir.path());
    let stack = Stack::start(pki, HOST, Alpn::H2AndHttp1, |b| b.secret(&secret)).await;
    let mut saw = ClientSaw::default();
    for version in [Version::HTTP_11, Version::HTTP_2] {
        let mut conn = Conn::open(&stack.proxy, HOST, version).await;
        let headers = [("x-api-key", secret.dummy())];
        let (head, _) = saw
            .read(conn.send(conn.get(HOST, "/first", &headers)).await)
            .await;
        assert_eq!(head.status, StatusCode::OK);
        // The secret is now bound elsewhere; the host stays allowed.
        let mut moved = secret.clone();
        moved.entry.hosts = vec!["api.elsewhere.test".into()];
        stack.proxy.reload(
            ProxyBuilder::new()
                .secret(&moved)
                .allow(HOST)
                .resolve(&format!("{HOST}:443"), stack.upstream.addr)
                .upstream_ca(&root),
        );
        let resp = conn.send(conn.get(HOST, "/after-reload", &headers)).await;
        let (head, body) = saw.read(resp).await;
        assert_eq!(head.status, StatusCode::FORBIDDEN, "{version:?}: {body}");
        let why = head.headers["x-keygate-reason"].to_str().unwrap();
        assert!(
            why.starts_with("revoked: secret `revoke` is no longer bound to api.revoke.test:443"),
            "{why}"
        );
        // Put it back for the next round.
        stack.proxy.reload(
            ProxyBuilder::new()
                .secret(&secret)
                .resolve(&format!("{HOST}:443"), stack.upstream.addr)
                .upstream_ca(&root),
        );
    }
    let targets: Vec<String> = stack
        .upstream
        .seen()
        .iter()
        .map(|s| s.target.clone())
        .collect();
    assert_eq!(
        targets,
        ["/first", "/first"],
        "nothing after the revocation went up"
    );
    let event = stack
        .proxy
        .event("request", |e| e["path"] == "/after-reload")
        .await;
    assert!(reason(&event).starts_with("revoked"), "{event}");
    assert_eq!(event["decision"], "deny");
    assert_no_leak(secret.real(), &stack.proxy, &saw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deny_rule_revokes_an_open_connection_that_keeps_sending() {
    let secret = TestSecret::new("revoke-deny", &[HOST]);
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let root = pki.write_root(dir.path());
    let stack = Stack::start(pki, HOST, Alpn::H2AndHttp1, |b| b.secret(&secret)).await;
    let mut conn = Conn::open(&stack.proxy, HOST, Version::HTTP_11).await;
    let headers = [("x-api-key", secret.dummy())];
    let resp = conn.send(conn.get(HOST, "/before", &headers)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    crate::support::client::body_bytes(resp).await;
    stack.proxy.reload(
        ProxyBuilder::new()
            .secret(&secret)
            .deny(HOST)
            .resolve(&format!("{HOST}:443"), stack.upstream.addr)
            .upstream_ca(&root),
    );
    // However often the client sends, every request is refused.
    for n in 0..3 {
        let resp = conn
            .send(conn.get(HOST, &format!("/kept-{n}"), &headers))
            .await;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
        let why = resp.headers()["x-keygate-reason"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(why.starts_with("revoked: denied: "), "{why}");
        crate::support::client::body_bytes(resp).await;
    }
    assert_eq!(stack.upstream.seen().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunnel_to_a_newly_denied_host_is_closed_at_the_reload() {
    let pki = TestPki::new();
    let upstream = TlsUpstream::echo(&pki, &["tunnel.revoke.test"]).await;
    let start = |deny: bool| {
        let mut b = ProxyBuilder::new()
            .allow("tunnel.revoke.test")
            .resolve("tunnel.revoke.test:443", upstream.addr);
        if deny {
            b = b.deny("tunnel.revoke.test");
        }
        b
    };
    let proxy = start(false).start().await;
    let root = pki.root_der();
    let mut tls = tls_through(&proxy, "tunnel.revoke.test:443", &root, &[b"http/1.1"])
        .await
        .expect("TLS through the tunnel");
    tls.write_all(b"GET / HTTP/1.1\r\nHost: tunnel.revoke.test\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 12];
    within("the upstream's answer", tls.read_exact(&mut first))
        .await
        .unwrap();
    proxy.reload(start(true));
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut rest)).await;
    assert!(
        closed.is_ok(),
        "the tunnel is closed at the reload, not left open"
    );
    let event = proxy
        .event("tunnel", |e| e["host"] == "tunnel.revoke.test")
        .await;
    assert_eq!(event["decision"], "deny", "{event}");
    assert!(reason(&event).starts_with("revoked: denied"), "{event}");
}
