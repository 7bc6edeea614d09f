//! Refusals an HTTPS client can read (issue 13): with `refusals: tls` (the default) a
//! CONNECT refused by policy is accepted, and the client's first request inside it is
//! answered with the refusal; nothing is forwarded. In-process proxies here; the real
//! clients (curl, requests, httpx, the anthropic SDK, Node's fetch) are in
//! refusals_clients.rs.

use std::time::Duration;

use http::{StatusCode, Version};
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::client::{connect, read_reply};
use crate::support::intercepted::{Conn, open_tls};
use crate::support::pki::TestPki;
use crate::support::proxy::{ProxyBuilder, TestProxy, reason};
use crate::support::secret::TestSecret;
use crate::support::upstream::TlsUpstream;
use crate::support::within;

const BLOCKED: &str = "blocked.test";

/// A proxy with a CA (it has a secret for another host) that refuses `blocked.test`,
/// which is pinned to a real TLS upstream so that a forwarded byte would show.
async fn refusing(yaml: &str) -> (TestProxy, TlsUpstream, TestSecret) {
    let pki = TestPki::new();
    let upstream = TlsUpstream::echo(&pki, &[BLOCKED]).await;
    let secret = TestSecret::new("refusals", &["api.other.test"]);
    let proxy = ProxyBuilder::new()
        .yaml(yaml)
        .secret(&secret)
        .resolve(&format!("{BLOCKED}:443"), upstream.addr)
        .start()
        .await;
    (proxy, upstream, secret)
}

async fn body_text(resp: http::Response<hyper::body::Incoming>) -> String {
    let bytes = within("the refusal body", resp.into_body().collect())
        .await
        .expect("body")
        .to_bytes();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connect_is_answered_inside_tls_and_nothing_reaches_the_upstream() {
    let (proxy, upstream, _secret) = refusing("").await;
    let mut conn = Conn::open(&proxy, BLOCKED, Version::HTTP_11).await;
    let resp = conn
        .send(conn.get(BLOCKED, "/v1/upload?token=abc", &[]))
        .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let headers = resp.headers().clone();
    let why = headers["x-keygate-reason"].to_str().unwrap().to_string();
    assert!(why.starts_with("not-allowed: blocked.test:443"), "{why}");
    assert_eq!(headers["connection"], "close");
    assert_eq!(headers["cache-control"], "no-store");
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let body = body_text(resp).await;
    assert!(
        body.starts_with("keygate refused GET https://blocked.test/v1/upload.\n"),
        "the request, without its query: {body}"
    );
    assert!(body.contains("allow: [\"blocked.test\"]"), "{body}");
    assert!(!body.contains("token"), "{body}");
    // One answer, then the connection is closed.
    let Conn::H1(sender) = &mut conn else {
        unreachable!("an HTTP/1.1 connection")
    };
    let ready = within("the connection to close", sender.ready()).await;
    assert!(ready.is_err(), "the refusal page serves one request");
    assert_eq!(upstream.accepted(), 0, "no connection to the refused host");
    let event = proxy.event("connect", |e| e["host"] == BLOCKED).await;
    assert_eq!(event["decision"], "deny", "{event}");
    assert_eq!(event["status"], 403, "{event}");
    assert_eq!(event["allow"], BLOCKED, "{event}");
    assert!(reason(&event).starts_with("not-allowed"), "{event}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_h2_a_client_that_asks_for_json_gets_a_json_refusal() {
    let (proxy, upstream, _secret) = refusing("network:\n  deny: [blocked.test]\n").await;
    let mut conn = Conn::open(&proxy, BLOCKED, Version::HTTP_2).await;
    let req = conn.get(
        BLOCKED,
        "/v1/messages",
        &[("accept", "application/json, text/plain;q=0.5")],
    );
    let resp = conn.send(req).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(resp.version(), Version::HTTP_2);
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert!(resp.headers().get("connection").is_none(), "not in h2");
    let body: serde_json::Value = serde_json::from_str(&body_text(resp).await).expect("JSON");
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["error"]["type"], "keygate_refusal", "{body}");
    assert_eq!(body["error"]["code"], "denied", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("keygate refused GET https://blocked.test/v1/messages: denied: "),
        "{message}"
    );
    assert!(
        body["error"]["advice"]
            .as_str()
            .unwrap()
            .contains("network.deny")
    );
    assert_eq!(upstream.accepted(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_through_a_refused_connect_gets_the_refusal_too() {
    let (proxy, upstream, _secret) = refusing("").await;
    let (mut stream, reply) = connect(proxy.addr, "blocked.test:80").await;
    assert_eq!(reply.status, 200, "{reply:?}");
    stream
        .write_all(b"GET /plain HTTP/1.1\r\nHost: blocked.test\r\n\r\n")
        .await
        .unwrap();
    let reply = within("the refusal", read_reply(&mut stream, false))
        .await
        .expect("a reply");
    assert_eq!(reply.status, 403, "{reply:?}");
    assert!(reply.reason().starts_with("not-allowed"), "{reply:?}");
    assert!(
        reply
            .body
            .starts_with("keygate refused GET http://blocked.test/plain.")
    );
    let mut rest = Vec::new();
    let closed = within("the close", stream.read_to_end(&mut rest)).await;
    assert!(closed.is_ok() && rest.is_empty(), "closed after one answer");
    assert_eq!(upstream.accepted(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_connect_answers_the_connect_itself() {
    let (proxy, upstream, _secret) = refusing("refusals: connect\n").await;
    let (_stream, reply) = connect(proxy.addr, "blocked.test:443").await;
    assert_eq!(reply.status, 403, "{reply:?}");
    assert!(reply.reason().starts_with("not-allowed"), "{reply:?}");
    assert!(
        reply.body.contains("allow: [\"blocked.test\"]"),
        "{reply:?}"
    );
    assert_eq!(upstream.accepted(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusal_pages_are_rate_limited_per_client_and_then_the_connect_says_why() {
    let (proxy, upstream, _secret) = refusing("limits:\n  refusal_pages_per_minute: 2\n").await;
    // Different names, as a client minting certificates would ask for.
    for name in ["a.blocked.test", "b.blocked.test"] {
        let tls = open_tls(&proxy, &format!("{name}:443"), &[b"http/1.1"]).await;
        drop(tls);
    }
    let (_stream, reply) = connect(proxy.addr, "c.blocked.test:443").await;
    assert_eq!(reply.status, 403, "{reply:?}");
    let why = reply.reason();
    assert!(why.starts_with("not-allowed: c.blocked.test:443"), "{why}");
    assert!(
        why.contains("rate-limited: 127.0.0.1 had more than 2 refused CONNECTs"),
        "{why}"
    );
    assert!(
        reply.body.contains("limits.refusal_pages_per_minute"),
        "{reply:?}"
    );
    let event = proxy
        .event("connect", |e| e["host"] == "c.blocked.test")
        .await;
    assert!(reason(&event).contains("rate-limited"), "{event}");
    assert_eq!(upstream.accepted(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_address_refusal_is_a_page_and_no_connection_is_made() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let secret = TestSecret::new("refusals-private", &["api.other.test"]);
    let proxy = ProxyBuilder::new()
        .secret(&secret)
        .allow(&format!("localhost:{port}"))
        .start()
        .await;
    let target = format!("localhost:{port}");
    let mut conn = {
        let tls = open_tls(&proxy, &target, &[b"http/1.1"]).await;
        Conn::over(tls, Version::HTTP_11).await
    };
    let resp = conn.send(conn.get(&target, "/", &[])).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let why = resp.headers()["x-keygate-reason"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(why.starts_with("private-address"), "{why}");
    let accepted = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
    assert!(
        accepted.is_err(),
        "nothing connected to the private address"
    );
    let event = proxy.event("connect", |e| e["host"] == "localhost").await;
    assert_eq!(event["allow"], format!("127.0.0.1:{port}"), "{event}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_line_of_a_refusal_says_why_for_clients_that_show_only_it() {
    let (proxy, _upstream, _secret) = refusing("refusals: connect\n").await;
    let mut stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    stream
        .write_all(b"CONNECT blocked.test:443 HTTP/1.1\r\nHost: blocked.test:443\r\n\r\n")
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n") {
        let n = within("the status line", stream.read(&mut byte))
            .await
            .unwrap();
        assert_eq!(n, 1, "closed early: {}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
    }
    let line = String::from_utf8(head).unwrap();
    // What Python prints: "Tunnel connection failed: 403 Forbidden (keygate not-allowed: …)".
    assert!(
        line.starts_with(
            "HTTP/1.1 403 Forbidden (keygate not-allowed: blocked.test:443 is not on keygate's allowlist"
        ),
        "{line}"
    );
    assert!(line.len() <= 200, "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fronted_tunnel_gets_a_readable_sni_mismatch_and_its_upstream_no_byte() {
    let pki = TestPki::new();
    let allowed = TlsUpstream::echo(&pki, &["allowed.test"]).await;
    let secret = TestSecret::new("refusals-fronting", &["api.other.test"]);
    let proxy = ProxyBuilder::new()
        .secret(&secret)
        .allow("allowed.test")
        .resolve("allowed.test:443", allowed.addr)
        .start()
        .await;
    // CONNECT to the allowed host, TLS for another name (domain fronting).
    let tunnel = crate::support::client::open_tunnel(proxy.addr, "allowed.test:443").await;
    let name = rustls_pki_types::ServerName::try_from("fronted.test".to_string()).unwrap();
    let config = crate::support::intercepted::client_config(&proxy.ca().der, &[b"http/1.1"]);
    let tls = within(
        "TLS with the refusal page",
        tokio_rustls::TlsConnector::from(config).connect(name, tunnel),
    )
    .await
    .expect("a leaf for the name the client checks");
    let mut conn = Conn::over(tls, Version::HTTP_11).await;
    let resp = conn.send(conn.get("fronted.test", "/", &[])).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let why = resp.headers()["x-keygate-reason"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        why.starts_with("sni-mismatch: TLS SNI `fronted.test` differs"),
        "{why}"
    );
    assert!(body_text(resp).await.contains("domain fronting"));
    assert_eq!(
        allowed.handshakes(),
        0,
        "not a byte of TLS reached the allowed host"
    );
    let event = proxy.event("tunnel", |e| e["host"] == "allowed.test").await;
    assert_eq!(event["decision"], "deny", "{event}");
    assert_eq!(event["status"], 403, "{event}");
}
