//! Hardening (issue 6): HTTP/2 floods inside an intercepted connection, an expired
//! upstream certificate, an upstream that resets mid-response, clients that stall their
//! TLS handshake or request head, and the connection limit. Each test checks that
//! keygate bounds the abuse, forwards nothing it should not (least of all the real
//! secret), and goes on serving.
//!
//! The h2 floods are driven by Python's `h2` package (tests/clients/h2flood.py, in the
//! venv scripts/setup-test-clients installs). Without it they print a skip note and
//! pass, unless `KEYGATE_TEST_CLIENTS=1` makes them fail (as in `clients`).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use http::{Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use rustls_pki_types::ServerName;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::abrupt::{AbruptUpstream, CUT_LENGTH};
use crate::support::api::{Alpn, ApiUpstream};
use crate::support::bin;
use crate::support::client::{self, read_reply};
use crate::support::clients::{self, last_json, show};
use crate::support::intercepted::{Conn, open_tls};
use crate::support::leak::{ClientSaw, assert_no_leak};
use crate::support::pki::TestPki;
use crate::support::proxy::{ProxyBuilder, TestProxy, reason};
use crate::support::secret::{TestSecret, unique};
use crate::support::stack::{Stack, swapped_request_succeeds};
use crate::support::upstream::{HttpUpstream, RecordingUpstream, TlsUpstream};
use crate::support::within;

/// The bound on "keygate closed it": generous next to the 300 ms limits set here, and
/// well below the 10 s defaults, so a limit that is not applied fails the test.
const CLOSED_WITHIN: Duration = Duration::from_secs(5);
/// How long a client that must not be served yet is watched. A negative check: a slow
/// machine can only make it miss a bug, never fail a good proxy.
const NOT_SERVED_FOR: Duration = Duration::from_millis(500);

/// Reads until keygate closes the connection (a FIN or a reset), failing after
/// [`CLOSED_WITHIN`]; returns what it sent before.
async fn closed_by_proxy(io: &mut (impl AsyncRead + Unpin), what: &str) -> Vec<u8> {
    let mut got = Vec::new();
    let read = tokio::time::timeout(CLOSED_WITHIN, io.read_to_end(&mut got)).await;
    assert!(read.is_ok(), "{what}: still open after {CLOSED_WITHIN:?}");
    got
}

// ---- HTTP/2 floods ---------------------------------------------------------------

const FLOOD_HOST: &str = "api.flood.test";
/// GOAWAY's ENHANCE_YOUR_CALM (RFC 9113 §7).
const ENHANCE_YOUR_CALM: u64 = 11;
/// The most requests of a rapid-reset flood the upstream may see: the proxy's
/// `h2_max_concurrent_streams` default. (h2 answers more than 20 resets of streams not
/// yet accepted with GOAWAY, so in practice the upstream sees none.)
const RAPID_RESET_FORWARDED_AT_MOST: u64 = 100;

/// Runs tests/clients/h2flood.py `mode` with `count` against `FLOOD_HOST` through the
/// proxy; returns its JSON report.
async fn h2flood(python: &Path, proxy: &TestProxy, dummy: &str, mode: &str, count: u64) -> Value {
    let mut cmd = Command::new(python);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("LANG", "C.UTF-8")
        .arg(format!("{}/h2flood.py", clients::DIR))
        .arg(proxy.addr.to_string())
        .arg(FLOOD_HOST)
        .arg(proxy.ca().pem_path())
        .args([dummy, mode, &count.to_string()]);
    let out = tokio::task::spawn_blocking(move || bin::run(cmd))
        .await
        .expect("the h2 driver");
    assert_eq!(out.code, Some(0), "{}", show(&out));
    last_json(&out)
}

async fn flood_stack(secret: &TestSecret) -> Stack {
    Stack::start(TestPki::new(), FLOOD_HOST, Alpn::H2AndHttp1, |b| {
        b.secret(secret)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_rapid_reset_is_cut_off_by_a_goaway_and_forwards_at_most_a_few_requests() {
    let Some(python) = clients::python_h2() else {
        return;
    };
    let secret = TestSecret::new(&format!("rapid-{}", unique()), &[FLOOD_HOST]);
    let stack = flood_stack(&secret).await;
    let got = h2flood(&python, &stack.proxy, secret.dummy(), "rapid-reset", 5000).await;
    // The limits keygate announces (defaults: `limits.h2_max_concurrent_streams`, and
    // twice `limits.max_head_bytes` as the header-list size: h2 cuts off lists past it,
    // keygate answers 431 with a reason to those past the limit itself).
    assert_eq!(got["settings"]["max_concurrent_streams"], 100, "{got}");
    assert_eq!(
        got["settings"]["max_header_list_size"],
        2 * 64 * 1024,
        "{got}"
    );
    assert_eq!(got["goaway"]["error_code"], ENHANCE_YOUR_CALM, "{got}");
    assert!(
        got["closed"].is_string(),
        "keygate closed the connection: {got}"
    );
    // Streams above a GOAWAY's last stream id were not processed (RFC 9113 §6.8).
    let last = got["goaway"]["last_stream_id"]
        .as_u64()
        .expect("last stream id");
    assert!(last < 2 * RAPID_RESET_FORWARDED_AT_MOST, "{got}");

    let mut saw = ClientSaw::default();
    swapped_request_succeeds(&stack, &secret, FLOOD_HOST, &mut saw).await;
    let flood: Vec<_> = stack
        .upstream
        .seen()
        .into_iter()
        .filter(|s| s.target.starts_with("/rapid/"))
        .collect();
    assert!(
        flood.len() as u64 <= last.div_ceil(2),
        "{} flood requests forwarded: {got}",
        flood.len()
    );
    for seen in &flood {
        // Whatever got through was a complete request, swapped once.
        assert_eq!(seen.method, "GET");
        assert_eq!(seen.header("x-api-key"), [secret.real()], "{seen:?}");
    }
    saw.text(got.to_string());
    assert_no_leak(secret.real(), &stack.proxy, &saw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_continuation_floods_get_a_goaway_and_nothing_reaches_the_upstream() {
    let Some(python) = clients::python_h2() else {
        return;
    };
    let secret = TestSecret::new(&format!("continuation-{}", unique()), &[FLOOD_HOST]);
    let stack = flood_stack(&secret).await;
    let mut saw = ClientSaw::default();
    // Empty frames test the frame-count limit, 16 KB frames the header-list size;
    // 2,000 of those (32 MB) are more than loopback socket buffers hold, so a flood cut
    // short shows that keygate stopped reading.
    for (mode, count) in [("continuation-empty", 10_000), ("continuation-fat", 2_000)] {
        let got = h2flood(&python, &stack.proxy, secret.dummy(), mode, count).await;
        let code = got["goaway"]["error_code"].as_u64();
        assert!(
            code.is_some_and(|c| c != 0),
            "{mode}: an error GOAWAY: {got}"
        );
        assert!(
            got["closed"].is_string(),
            "{mode}: keygate closed the connection: {got}"
        );
        assert_eq!(got["responses"], 0, "{mode}: {got}");
        if mode == "continuation-fat" {
            assert!(
                got["sent"].as_u64() < Some(count),
                "{mode}: the whole flood was read: {got}"
            );
        }
        saw.text(got.to_string());
    }
    assert!(
        stack.upstream.seen().is_empty(),
        "{:?}",
        stack.upstream.seen()
    );
    swapped_request_succeeds(&stack, &secret, FLOOD_HOST, &mut saw).await;
    assert_eq!(stack.upstream.seen().len(), 1);
    assert_no_leak(secret.real(), &stack.proxy, &saw);
}

// ---- Upstream faults -------------------------------------------------------------

const EXPIRED_HOST: &str = "expired.fault.test";
const VALID_HOST: &str = "valid.fault.test";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_upstream_certificate_is_a_502_and_nothing_is_forwarded() {
    let secret = TestSecret::new(
        &format!("expired-{}", unique()),
        &[EXPIRED_HOST, VALID_HOST],
    );
    let pki = TestPki::new();
    let expired =
        ApiUpstream::with_config(pki.expired_server_config(&[EXPIRED_HOST]), Alpn::H2AndHttp1)
            .await;
    let stack = Stack::start(pki, VALID_HOST, Alpn::H2AndHttp1, |b| {
        b.secret(&secret)
            .resolve(&format!("{EXPIRED_HOST}:443"), expired.addr)
    })
    .await;
    let key = [("x-api-key", secret.dummy())];
    let mut saw = ClientSaw::default();
    for version in [Version::HTTP_11, Version::HTTP_2] {
        let mut conn = Conn::open(&stack.proxy, EXPIRED_HOST, version).await;
        let resp = conn.send(conn.get(EXPIRED_HOST, "/v1/expired", &key)).await;
        let (head, text) = saw.read(resp).await;
        assert_eq!(head.status, StatusCode::BAD_GATEWAY, "{version:?}: {text}");
        let why = head.headers["x-keygate-reason"]
            .to_str()
            .expect("reason")
            .to_ascii_lowercase();
        assert!(
            why.contains("certificate") && why.contains("expired"),
            "{version:?}: {why}"
        );
    }
    // The handshake never completed: no request (and no secret) reached the upstream.
    assert!(expired.seen().is_empty(), "{:?}", expired.seen());
    assert_eq!(expired.handshakes(), 0);
    let events = stack
        .proxy
        .events_n("request", 2, |e| e["path"] == "/v1/expired")
        .await;
    for event in events {
        assert_eq!(
            (event["decision"].as_str(), event["status"].as_u64()),
            (Some("deny"), Some(502)),
            "{event}"
        );
    }
    swapped_request_succeeds(&stack, &secret, VALID_HOST, &mut saw).await;
    assert_no_leak(secret.real(), &stack.proxy, &saw);
}

const CUT_HOST: &str = "api.cut.test";
const PLAIN_CUT_HOST: &str = "plain.cut.test";

/// A response the upstream cut off must not reach the client as a complete one: it is a
/// 502 (the reset came before the head) or the head and then a body error.
async fn cut_short(what: &str, resp: Response<Incoming>, saw: &mut ClientSaw) {
    saw.head(&resp);
    if resp.status() == StatusCode::BAD_GATEWAY {
        return;
    }
    assert_eq!(resp.status(), StatusCode::OK, "{what}");
    match within("the cut-off body", resp.into_body().collect()).await {
        Err(e) => saw.text(e.to_string()),
        Ok(body) => panic!(
            "{what}: a response cut off by the upstream arrived complete, {} bytes ({CUT_LENGTH} announced)",
            body.to_bytes().len()
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_reset_mid_response_is_an_error_for_the_client_and_keygate_goes_on() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().expect("directory");
    let root = pki.write_root(dir.path());
    let tls = AbruptUpstream::tls(&pki, &[CUT_HOST]).await;
    let plain = AbruptUpstream::plain().await;
    let secret = TestSecret::new(&format!("cut-{}", unique()), &[CUT_HOST]);
    let proxy = ProxyBuilder::new()
        .secret(&secret)
        .upstream_ca(&root)
        .resolve(&format!("{CUT_HOST}:443"), tls.addr)
        .allow(&format!("{PLAIN_CUT_HOST}:*"))
        .resolve(&format!("{PLAIN_CUT_HOST}:80"), plain.addr)
        .start()
        .await;
    let mut saw = ClientSaw::default();

    // Plain forwarding: the cut response, then the next request on a new connection.
    for path in ["/cut", "/ok"] {
        let mut sender = client::proxy_http1(proxy.addr).await;
        let url = format!("http://{PLAIN_CUT_HOST}{path}");
        let resp = client::send(&mut sender, client::get(&url, PLAIN_CUT_HOST)).await;
        if path == "/cut" {
            cut_short("plain", resp, &mut saw).await;
        } else {
            let (head, text) = saw.read(resp).await;
            assert_eq!((head.status, text.as_str()), (StatusCode::OK, "ok\n"));
        }
    }
    assert_eq!(plain.heads().len(), 2, "{:?}", plain.heads());

    // Intercepted (HTTP/1.1 to the upstream): on h2 the same connection goes on, an
    // HTTP/1.1 connection whose response broke off is closed, so a new one is opened.
    let key = [("x-api-key", secret.dummy())];
    for version in [Version::HTTP_11, Version::HTTP_2] {
        let mut conn = Conn::open(&proxy, CUT_HOST, version).await;
        let resp = conn.send(conn.get(CUT_HOST, "/cut", &key)).await;
        cut_short(&format!("intercepted {version:?}"), resp, &mut saw).await;
        if version == Version::HTTP_11 {
            conn = Conn::open(&proxy, CUT_HOST, version).await;
        }
        let resp = conn.send(conn.get(CUT_HOST, "/ok", &key)).await;
        let (head, text) = saw.read(resp).await;
        assert_eq!(
            (head.status, text.as_str()),
            (StatusCode::OK, "ok\n"),
            "{version:?}"
        );
    }
    let heads = tls.heads();
    assert_eq!(heads.len(), 4, "each request arrived once: {heads:?}");
    let swapped = format!("x-api-key: {}\r\n", secret.real());
    assert!(
        heads.iter().all(|h| h.contains(&swapped)),
        "every request was swapped"
    );
    // The audit log does not claim the announced body: it counts what went down.
    let cut = proxy.events_n("request", 3, |e| e["path"] == "/cut").await;
    for event in cut {
        let down = event["bytes_down"].as_u64().expect("bytes_down");
        assert!(down < CUT_LENGTH as u64, "{event}");
        // ... and says the body was cut short (or, if the reset beat the head, the 502).
        let reason = event["reason"].as_str().unwrap_or_default();
        assert!(
            reason.contains("response body ended early") || event["status"] == 502,
            "{event}"
        );
    }
    assert_no_leak(secret.real(), &proxy, &saw);
}

// ---- Stalling clients ------------------------------------------------------------

const STALL_HOST: &str = "api.stall.test";
const QUIET_HOST: &str = "quiet.stall.test";

/// The first bytes a TLS client sends for `host`: a complete ClientHello record.
fn client_hello(host: &str) -> Vec<u8> {
    let name = ServerName::try_from(host.to_string()).expect("server name");
    let mut tls =
        rustls::ClientConnection::new(TestPki::new().client_config(), name).expect("client");
    let mut hello = Vec::new();
    tls.write_tls(&mut hello).expect("ClientHello");
    hello
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_handshake_that_stalls_is_closed_after_the_handshake_timeout() {
    let secret = TestSecret::new(&format!("stall-{}", unique()), &[STALL_HOST]);
    let quiet = RecordingUpstream::start().await;
    let stack = Stack::start(TestPki::new(), STALL_HOST, Alpn::H2AndHttp1, |b| {
        b.secret(&secret)
            .yaml("limits:\n  handshake_timeout: 300ms\n")
            .allow(&format!("{QUIET_HOST}:443"))
            .resolve(&format!("{QUIET_HOST}:443"), quiet.addr)
    })
    .await;
    let proxy = &stack.proxy;
    let hello = client_hello(STALL_HOST);
    let half = &hello[..hello.len() / 2];
    for (what, sent) in [("nothing", &[][..]), ("half a ClientHello", half)] {
        let mut intercepted = client::open_tunnel(proxy.addr, &format!("{STALL_HOST}:443")).await;
        intercepted.write_all(sent).await.expect("write");
        let answer = closed_by_proxy(&mut intercepted, &format!("intercepted, {what}")).await;
        assert!(
            answer.is_empty() || answer[0] == 0x15,
            "at most a TLS alert: {answer:?}"
        );

        let mut tunnel = client::open_tunnel(proxy.addr, &format!("{QUIET_HOST}:443")).await;
        tunnel.write_all(sent).await.expect("write");
        let answer = closed_by_proxy(&mut tunnel, &format!("tunnelled, {what}")).await;
        assert!(answer.is_empty(), "{answer:?}");
        assert!(
            quiet.next_connection().await.is_empty(),
            "{what}: bytes reached the upstream"
        );
    }
    let refused = proxy
        .events_n("connect", 2, |e| {
            e["host"] == STALL_HOST && e["decision"] == "deny"
        })
        .await;
    assert!(
        refused.iter().all(|e| reason(e).starts_with("bad-tls")),
        "{refused:?}"
    );
    let refused = proxy
        .events_n("tunnel", 2, |e| {
            e["host"] == QUIET_HOST && e["decision"] == "deny"
        })
        .await;
    assert!(
        refused.iter().all(|e| reason(e).starts_with(
            "bad-tls: no complete TLS ClientHello within 300ms (limits.handshake_timeout)"
        )),
        "{refused:?}"
    );

    // keygate goes on: a complete hello is tunnelled, and interception swaps.
    let complete = client_hello(QUIET_HOST);
    let mut tunnel = client::open_tunnel(proxy.addr, &format!("{QUIET_HOST}:443")).await;
    tunnel.write_all(&complete).await.expect("write");
    tunnel.shutdown().await.expect("half-close");
    assert_eq!(quiet.next_connection().await, complete);
    let mut saw = ClientSaw::default();
    swapped_request_succeeds(&stack, &secret, STALL_HOST, &mut saw).await;
    assert_no_leak(secret.real(), proxy, &saw);
}

const SLOW_HOST: &str = "api.slowloris.test";
const PLAIN_SLOW_HOST: &str = "plain.slowloris.test";

/// What keygate may send a client whose request head never ended before closing: nothing,
/// or a 4xx (hyper's 408).
fn at_most_a_4xx(what: &str, answer: &[u8]) {
    assert!(
        answer.is_empty() || answer.starts_with(b"HTTP/1.1 4"),
        "{what}: {:?}",
        String::from_utf8_lossy(answer)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_that_never_ends_is_closed_after_the_header_read_timeout() {
    let secret = TestSecret::new(&format!("slowloris-{}", unique()), &[SLOW_HOST]);
    let plain = HttpUpstream::start().await;
    let stack = Stack::start(TestPki::new(), SLOW_HOST, Alpn::H2AndHttp1, |b| {
        b.secret(&secret)
            .yaml("limits:\n  header_read_timeout: 300ms\n")
            .allow(&format!("{PLAIN_SLOW_HOST}:*"))
            .resolve(&format!("{PLAIN_SLOW_HOST}:80"), plain.addr)
    })
    .await;
    let proxy = &stack.proxy;
    // A connection that sends nothing at all does not hold its slot either.
    let mut silent = TcpStream::connect(proxy.addr).await.expect("connect");
    at_most_a_4xx(
        "silent connection",
        &closed_by_proxy(&mut silent, "a silent connection").await,
    );
    // On a connection to the proxy: a head cut off inside a header line, then nothing.
    let mut slow = TcpStream::connect(proxy.addr).await.expect("connect");
    let partial = format!(
        "GET http://{PLAIN_SLOW_HOST}/slow HTTP/1.1\r\nHost: {PLAIN_SLOW_HOST}\r\nx-slow: a"
    );
    slow.write_all(partial.as_bytes()).await.expect("write");
    at_most_a_4xx(
        "proxy connection",
        &closed_by_proxy(&mut slow, "a partial proxy request").await,
    );
    // Inside an intercepted HTTP/1.1 connection, the dummy already sent.
    let mut tls = open_tls(proxy, &format!("{SLOW_HOST}:443"), &[b"http/1.1"]).await;
    let partial = format!(
        "GET /slow HTTP/1.1\r\nHost: {SLOW_HOST}\r\nx-api-key: {}\r\nx-slow: a",
        secret.dummy()
    );
    tls.write_all(partial.as_bytes()).await.expect("write");
    at_most_a_4xx(
        "intercepted",
        &closed_by_proxy(&mut tls, "a partial intercepted request").await,
    );
    assert_eq!(plain.try_arrival(), None);
    assert!(
        stack.upstream.seen().is_empty(),
        "{:?}",
        stack.upstream.seen()
    );

    // keygate goes on, both ways.
    let raw = format!(
        "GET http://{PLAIN_SLOW_HOST}/next HTTP/1.1\r\nHost: {PLAIN_SLOW_HOST}\r\nConnection: close\r\n\r\n"
    );
    let (_stream, reply) = client::send_raw(proxy.addr, raw.as_bytes()).await;
    assert_eq!(reply.expect("a reply").status, 200);
    let mut saw = ClientSaw::default();
    swapped_request_succeeds(&stack, &secret, SLOW_HOST, &mut saw).await;
    assert_no_leak(secret.real(), proxy, &saw);
}

// ---- Connection limit ------------------------------------------------------------

const TUNNEL_LIMIT_HOST: &str = "tunnel.limit.test";
const PLAIN_LIMIT_HOST: &str = "plain.limit.test";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_max_connections_a_new_client_waits_until_a_connection_closes() {
    let pki = TestPki::new();
    let tunnelled = TlsUpstream::echo(&pki, &[TUNNEL_LIMIT_HOST]).await;
    let plain = HttpUpstream::start().await;
    let proxy = ProxyBuilder::new()
        .yaml("limits:\n  max_connections: 2\n")
        .allow(&format!("{TUNNEL_LIMIT_HOST}:443"))
        .resolve(&format!("{TUNNEL_LIMIT_HOST}:443"), tunnelled.addr)
        .allow(&format!("{PLAIN_LIMIT_HOST}:*"))
        .resolve(&format!("{PLAIN_LIMIT_HOST}:80"), plain.addr)
        .start()
        .await;
    let get = |path: &str| {
        client::get(
            &format!("http://{PLAIN_LIMIT_HOST}{path}"),
            PLAIN_LIMIT_HOST,
        )
    };
    // Slot 1: an open tunnel, TLS with the upstream established through it.
    let tunnel = client::open_tunnel(proxy.addr, &format!("{TUNNEL_LIMIT_HOST}:443")).await;
    let tls = client::tls(tunnel, &pki, TUNNEL_LIMIT_HOST)
        .await
        .expect("TLS through the tunnel");
    // Slot 2: a keep-alive connection, idle after one request.
    let mut idle = client::proxy_http1(proxy.addr).await;
    let resp = client::send(&mut idle, get("/first")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    client::body_bytes(resp).await;
    assert!(plain.next_arrival().await.ends_with("/first"));

    // A third client connects (the listen backlog takes it) but is not served.
    let mut third = TcpStream::connect(proxy.addr).await.expect("connect");
    let raw = format!(
        "GET http://{PLAIN_LIMIT_HOST}/third HTTP/1.1\r\nHost: {PLAIN_LIMIT_HOST}\r\nConnection: close\r\n\r\n"
    );
    third.write_all(raw.as_bytes()).await.expect("write");
    let mut byte = [0u8; 1];
    let early = tokio::time::timeout(NOT_SERVED_FOR, third.peek(&mut byte)).await;
    assert!(
        early.is_err(),
        "a third client was answered while both slots were held: {early:?}"
    );
    assert_eq!(plain.try_arrival(), None);

    // The tunnel closes: its slot goes to the waiting client.
    drop(tls);
    let reply = within("the third client's reply", read_reply(&mut third, false)).await;
    assert_eq!(reply.expect("a reply").status, 200);
    assert!(plain.next_arrival().await.ends_with("/third"));
    // The keep-alive connection held its slot and is served as before.
    let resp = client::send(&mut idle, get("/again")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let tunnel_event = proxy
        .event("tunnel", |e| e["host"] == TUNNEL_LIMIT_HOST)
        .await;
    assert_eq!(tunnel_event["decision"], "allow", "{tunnel_event}");
}
