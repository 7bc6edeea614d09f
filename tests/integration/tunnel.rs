//! CONNECT tunnels: the client's TLS reaches the upstream untouched (its own certificate,
//! verified by the client through the tunnel), the SNI must match the CONNECT host, and
//! only TLS goes through.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::body::{Fnv, pattern};
use crate::support::client::{self, get, http1, open_tunnel, send, tls};
use crate::support::pki::TestPki;
use crate::support::proxy::{ProxyBuilder, reason};
use crate::support::upstream::{RecordingUpstream, TlsUpstream};
use crate::support::within;

const HOST: &str = "api.test.example";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_reaches_the_upstream_whose_own_certificate_the_client_verifies() {
    let pki = TestPki::new();
    let upstream = TlsUpstream::echo(&pki, &[HOST]).await;
    let proxy = ProxyBuilder::new()
        .allow(HOST)
        .resolve("api.test.example:443", upstream.addr)
        .start()
        .await;

    let tunnel = open_tunnel(proxy.addr, "api.test.example:443").await;
    let client_addr = tunnel.local_addr().unwrap().to_string();
    // The client trusts only the test root: the handshake succeeds only if the
    // upstream's own certificate came through the tunnel untouched.
    let tls = tls(tunnel, &pki, HOST)
        .await
        .expect("TLS through the tunnel");
    let mut sender = http1(tls).await;
    let resp = send(&mut sender, get("/hello/world?x=1", HOST)).await;
    assert_eq!(resp.status(), 200);
    let echo = client::json(resp).await;
    assert_eq!(echo["method"], "GET");
    assert_eq!(echo["uri"], "/hello/world?x=1");
    assert_eq!(echo["sni"], HOST, "the upstream sees the client's SNI");
    drop(sender);

    let connect = proxy
        .event("connect", |e| e["host"] == HOST && e["decision"] == "allow")
        .await;
    assert_eq!(connect["port"], 443);
    assert_eq!(connect["method"], "CONNECT");
    assert_eq!(connect["status"], 200);
    assert_eq!(connect["client"], client_addr.as_str());
    let tunnel = proxy.event("tunnel", |e| e["host"] == HOST).await;
    assert_eq!(tunnel["decision"], "allow", "{tunnel}");
    assert_eq!(tunnel["port"], 443);
    assert!(tunnel["bytes_up"].as_u64().unwrap() > 0, "{tunnel}");
    assert!(tunnel["bytes_down"].as_u64().unwrap() > 0, "{tunnel}");
    assert_eq!(upstream.handshakes(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ip_literal_allowed_by_an_ip_pattern_is_tunnelled() {
    let pki = TestPki::new();
    let upstream = TlsUpstream::echo(&pki, &["127.0.0.1"]).await;
    let proxy = ProxyBuilder::new().allow("127.0.0.1:*").start().await;

    let target = upstream.addr.to_string();
    let tunnel = open_tunnel(proxy.addr, &target).await;
    // An IP server name: the client sends no SNI and verifies the IP SAN.
    let tls = tls(tunnel, &pki, "127.0.0.1").await.expect("TLS to an IP");
    let mut sender = http1(tls).await;
    let resp = send(&mut sender, get("/ip", &target)).await;
    assert_eq!(resp.status(), 200);
    let echo = client::json(resp).await;
    assert_eq!(echo["uri"], "/ip");
    assert!(echo["sni"].is_null(), "no SNI for an IP: {echo}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_matching_ignores_case_and_one_trailing_dot() {
    let pki = TestPki::new();
    let upstream = TlsUpstream::echo(&pki, &[HOST]).await;
    let proxy = ProxyBuilder::new()
        .allow(HOST)
        .resolve("api.test.example:443", upstream.addr)
        .start()
        .await;

    let tunnel = open_tunnel(proxy.addr, "API.Test.Example.:443").await;
    let tls = tls(tunnel, &pki, HOST)
        .await
        .expect("TLS through the tunnel");
    let mut sender = http1(tls).await;
    let resp = send(&mut sender, get("/", HOST)).await;
    assert_eq!(resp.status(), 200);
    let connect = proxy.event("connect", |e| e["decision"] == "allow").await;
    assert_eq!(
        connect["host"], HOST,
        "the audit log has the normalised host"
    );
}

/// Half-close through the tunnel. keygate only tunnels TLS, so the half-close is made
/// the TLS way: the client sends its data, then shuts down its write side
/// (close_notify + FIN) and keeps reading. The upstream reads to end-of-stream, which it
/// only reaches if keygate passed the FIN on, and only then writes its reply, which the
/// client only gets if keygate kept the other direction open after the client's FIN.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_close_reaches_the_upstream_and_its_reply_still_reaches_the_client() {
    let pki = TestPki::new();
    let upstream = TlsUpstream::reply_after_eof(&pki, &[HOST]).await;
    let proxy = ProxyBuilder::new()
        .allow(HOST)
        .resolve("api.test.example:443", upstream.addr)
        .start()
        .await;

    let tunnel = open_tunnel(proxy.addr, "api.test.example:443").await;
    let mut tls = tls(tunnel, &pki, HOST)
        .await
        .expect("TLS through the tunnel");
    let sent = pattern(0, 300_000);
    let reply = within("the half-closed exchange", async {
        tls.write_all(&sent).await.expect("write");
        tls.shutdown().await.expect("shut down the write side");
        let mut reply = String::new();
        tls.read_to_string(&mut reply)
            .await
            .expect("read the reply");
        reply
    })
    .await;
    let expected = format!(
        "received {} bytes, fnv {:016x}\n",
        sent.len(),
        Fnv::of_pattern(sent.len()).0
    );
    assert_eq!(reply, expected);

    let tunnel = proxy.event("tunnel", |e| e["host"] == HOST).await;
    assert_eq!(tunnel["decision"], "allow", "{tunnel}");
    // TLS adds framing: at least the payload went up, at least the reply came down.
    assert!(tunnel["bytes_up"].as_u64().unwrap() > sent.len() as u64);
    assert!(tunnel["bytes_down"].as_u64().unwrap() > expected.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_differing_from_the_connect_host_closes_the_tunnel_before_the_upstream() {
    let pki = TestPki::new();
    let upstream = RecordingUpstream::start().await;
    // Both names are allowed: the refusal is about the mismatch, not the policy.
    let proxy = ProxyBuilder::new()
        .allow("a.test.example")
        .allow("b.test.example")
        .resolve("a.test.example:443", upstream.addr)
        .resolve("b.test.example:443", upstream.addr)
        .start()
        .await;

    let tunnel = open_tunnel(proxy.addr, "a.test.example:443").await;
    let handshake = tls(tunnel, &pki, "b.test.example").await;
    assert!(handshake.is_err(), "the TLS handshake must not complete");
    assert_eq!(
        upstream.next_connection().await,
        b"",
        "the upstream must not see a byte of the fronted hello"
    );
    let event = proxy
        .event("tunnel", |e| e["host"] == "a.test.example")
        .await;
    assert_eq!(event["decision"], "deny", "{event}");
    assert!(reason(&event).starts_with("sni-mismatch"), "{event}");
    assert!(reason(&event).contains("b.test.example"), "{event}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_that_are_not_tls_are_not_tunnelled() {
    let upstream = RecordingUpstream::start().await;
    let proxy = ProxyBuilder::new()
        .allow(HOST)
        .resolve("api.test.example:443", upstream.addr)
        .start()
        .await;

    let mut tunnel = open_tunnel(proxy.addr, "api.test.example:443").await;
    let leftover = within("the proxy to close the tunnel", async {
        tunnel
            .write_all(b"GET / HTTP/1.1\r\nHost: api.test.example\r\n\r\n")
            .await
            .expect("write");
        let mut leftover = Vec::new();
        let _ = tunnel.read_to_end(&mut leftover).await;
        leftover
    })
    .await;
    assert!(leftover.is_empty(), "nothing comes back: {leftover:?}");
    assert_eq!(upstream.next_connection().await, b"");
    let event = proxy.event("tunnel", |e| e["host"] == HOST).await;
    assert_eq!(event["decision"], "deny", "{event}");
    assert!(reason(&event).starts_with("not-tls"), "{event}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_upstream_is_a_502_with_a_reason() {
    // A port bound but never listening: no parallel test can take it meanwhile.
    let closed = crate::support::ClosedPort::new();
    let proxy = ProxyBuilder::new()
        .allow(HOST)
        .resolve("api.test.example:443", closed.addr)
        .start()
        .await;
    let (_stream, reply) = client::connect(proxy.addr, "api.test.example:443").await;
    assert_eq!(reply.status, 502, "{reply:?}");
    assert!(reply.reason().starts_with("upstream-error"), "{reply:?}");
    let event = proxy.event("connect", |e| e["host"] == HOST).await;
    assert_eq!(event["decision"], "deny");
    assert_eq!(event["status"], 502);
}
