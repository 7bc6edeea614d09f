//! Issue 3: when the upstream side of an intercepted request fails (a certificate keygate
//! refuses, nothing listening, a secret with no value), the client gets a 502 saying
//! why, nothing is forwarded, and the proxy goes on serving everything else. The
//! upstreams that never answer (504s) are in `faults.rs`.

use http::{StatusCode, Version};

use crate::support::ClosedPort;
use crate::support::api::{Alpn, ApiUpstream};
use crate::support::intercepted::Conn;
use crate::support::leak::{ClientSaw, assert_no_leak};
use crate::support::pki::TestPki;
use crate::support::proxy::ProxyBuilder;
use crate::support::secret::TestSecret;
use crate::support::stack::Stack;

const MISNAMED: &str = "misnamed.demo.test";
const STRANGER: &str = "stranger.demo.test";
const GOOD: &str = "good.demo.test";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_certificate_for_another_name_or_from_an_unknown_ca_is_refused() {
    let secret = TestSecret::new("verify", &[MISNAMED, STRANGER, GOOD]);
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let root = pki.write_root(dir.path());
    // A certificate from the trusted root, but for another name.
    let misnamed = ApiUpstream::start(&pki, &["wrong.demo.test"], Alpn::H2AndHttp1).await;
    // The right name, from a root keygate does not trust.
    let unknown = TestPki::named("a root nobody trusts");
    let stranger = ApiUpstream::start(&unknown, &[STRANGER], Alpn::H2AndHttp1).await;
    let good = ApiUpstream::start(&pki, &[GOOD], Alpn::H2AndHttp1).await;
    let proxy = ProxyBuilder::new()
        .secret(&secret)
        .upstream_ca(&root)
        .resolve("misnamed.demo.test:443", misnamed.addr)
        .resolve("stranger.demo.test:443", stranger.addr)
        .resolve("good.demo.test:443", good.addr)
        .start()
        .await;
    let key = [("x-api-key", secret.dummy())];
    let mut saw = ClientSaw::default();

    for (host, upstream, problem) in [
        (MISNAMED, &misnamed, "notvalidforname"),
        (STRANGER, &stranger, "unknownissuer"),
    ] {
        let mut conn = Conn::open(&proxy, host, Version::HTTP_11).await;
        let resp = conn.send(conn.get(host, "/v1/refused", &key)).await;
        let (head, text) = saw.read(resp).await;
        assert_eq!(head.status, StatusCode::BAD_GATEWAY, "{host}: {text}");
        let reason = head.headers["x-keygate-reason"].to_str().unwrap();
        let lower = reason.to_ascii_lowercase();
        assert!(lower.contains("certificate"), "{host}: {reason}");
        assert!(lower.contains(problem), "{host}: {reason}");
        assert!(
            upstream.seen().is_empty(),
            "{host}: a request was forwarded"
        );
        let event = proxy
            .event("request", |e| {
                e["host"] == host && e["path"] == "/v1/refused"
            })
            .await;
        assert_eq!(event["decision"], "deny", "{event}");
        assert_eq!(event["status"], 502);

        // The proxy goes on serving: a host whose certificate verifies works.
        let mut ok = Conn::open(&proxy, GOOD, Version::HTTP_2).await;
        let resp = ok.send(ok.get(GOOD, "/v1/after", &key)).await;
        assert_eq!(saw.read(resp).await.0.status, StatusCode::OK);
    }
    assert_eq!(good.seen().len(), 2);
    assert_eq!(good.seen()[1].header("x-api-key"), [secret.real()]);
    assert_no_leak(secret.real(), &proxy, &saw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_listening_upstream_is_a_502_with_a_reason() {
    let secret = TestSecret::new("refused", &[GOOD]);
    let closed = ClosedPort::new();
    let proxy = ProxyBuilder::new()
        .secret(&secret)
        .resolve("good.demo.test:443", closed.addr)
        .start()
        .await;
    let mut conn = Conn::open(&proxy, GOOD, Version::HTTP_11).await;
    let resp = conn
        .send(conn.get(GOOD, "/v1/nobody", &[("x-api-key", secret.dummy())]))
        .await;
    let mut saw = ClientSaw::default();
    let (head, text) = saw.read(resp).await;
    assert_eq!(head.status, StatusCode::BAD_GATEWAY, "{text}");
    let reason = head.headers["x-keygate-reason"].to_str().unwrap();
    assert!(reason.starts_with("upstream-error"), "{reason}");
    assert!(reason.contains("connect"), "{reason}");
    let event = proxy.event("request", |e| e["path"] == "/v1/nobody").await;
    assert_eq!(event["decision"], "deny");
    assert_eq!(event["status"], 502);
    drop(conn);
    assert_no_leak(secret.real(), &proxy, &saw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_without_a_value_is_a_502_only_for_requests_that_carry_its_dummy() {
    let missing = TestSecret::new("novalue", &[GOOD]).without_value();
    let other = TestSecret::new("hasvalue", &[STRANGER]);
    let stranger_pki = TestPki::named("second test root");
    let stranger = ApiUpstream::start(&stranger_pki, &[STRANGER], Alpn::H2AndHttp1).await;
    let dir = tempfile::tempdir().unwrap();
    let stranger_root = stranger_pki.write_root(dir.path());
    let stack = Stack::start(TestPki::new(), GOOD, Alpn::H2AndHttp1, |b| {
        b.secret(&missing)
            .secret(&other)
            .upstream_ca(&stranger_root)
            .resolve("stranger.demo.test:443", stranger.addr)
    })
    .await;
    let mut saw = ClientSaw::default();

    let mut conn = Conn::open(&stack.proxy, GOOD, Version::HTTP_11).await;
    let resp = conn
        .send(conn.get(GOOD, "/v1/needs", &[("x-api-key", missing.dummy())]))
        .await;
    let (head, text) = saw.read(resp).await;
    assert_eq!(head.status, StatusCode::BAD_GATEWAY, "{text}");
    let reason = head.headers["x-keygate-reason"].to_str().unwrap();
    assert!(reason.starts_with("secret-missing"), "{reason}");
    assert!(text.contains("keygate secret add novalue"), "{text}");
    assert!(stack.upstream.seen().is_empty());

    // Without the dummy, the same host on the same connection is served.
    let resp = conn
        .send(conn.get(GOOD, "/v1/public", &[("x-api-key", "own-key")]))
        .await;
    assert_eq!(saw.read(resp).await.0.status, StatusCode::OK);
    assert_eq!(stack.upstream.only().header("x-api-key"), ["own-key"]);
    // Another secret's host is unaffected.
    let mut elsewhere = Conn::open(&stack.proxy, STRANGER, Version::HTTP_11).await;
    let resp = elsewhere
        .send(elsewhere.get(STRANGER, "/v1/fine", &[("x-api-key", other.dummy())]))
        .await;
    assert_eq!(saw.read(resp).await.0.status, StatusCode::OK);
    assert_eq!(stranger.only().header("x-api-key"), [other.real()]);

    let event = stack
        .proxy
        .event("request", |e| e["path"] == "/v1/needs")
        .await;
    assert_eq!(event["decision"], "deny");
    assert_eq!(event["status"], 502);
    drop((conn, elsewhere));
    assert_no_leak(other.real(), &stack.proxy, &saw);
}
