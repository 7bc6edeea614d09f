//! Documented edges with no other test: an intercepted connection whose SNI names
//! another host, a client that does not trust keygate's CA (`client-tls`), the idle
//! timeout of tunnels and WebSockets, and `head-too-large` with custom limits.

use http::{StatusCode, Version};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;

use crate::support::api::Alpn;
use crate::support::client::{self, Reply, read_reply};
use crate::support::intercepted::{Conn, client_config, open_tls, tls_through};
use crate::support::leak::{ClientSaw, assert_no_leak};
use crate::support::pki::TestPki;
use crate::support::proxy::{ProxyBuilder, reason};
use crate::support::secret::{TestSecret, unique};
use crate::support::stack::{Stack, swapped_request_succeeds};
use crate::support::upstream::{HttpUpstream, TlsUpstream};
use crate::support::{within, ws};

/// Reads until the peer closes the connection (end of stream or an error), bounded;
/// returns what arrived before.
async fn until_closed(io: &mut (impl AsyncRead + Unpin), what: &str) -> Vec<u8> {
    within(what, async {
        let mut got = Vec::new();
        let _ = io.read_to_end(&mut got).await;
        got
    })
    .await
}

// ---- SNI of an intercepted connection ---------------------------------------------

const SNI_HOST: &str = "api.sni.test";
const SNI_OTHER: &str = "other.test";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_intercepted_connection_whose_sni_names_another_host_is_closed_and_nothing_is_forwarded()
{
    let secret = TestSecret::new(&format!("sni-{}", unique()), &[SNI_HOST]);
    let stack = Stack::start(TestPki::new(), SNI_HOST, Alpn::H2AndHttp1, |b| {
        b.secret(&secret)
    })
    .await;
    let proxy = &stack.proxy;
    let mut saw = ClientSaw::default();

    // CONNECT names the secret host; the ClientHello names another one. The client
    // trusts keygate's CA, so only the mismatch can fail the handshake.
    let tunnel = client::open_tunnel(proxy.addr, &format!("{SNI_HOST}:443")).await;
    let name = ServerName::try_from(SNI_OTHER.to_string()).expect("server name");
    let connector = TlsConnector::from(client_config(&proxy.ca().der, &[b"http/1.1"]));
    let handshake = within("the fronted handshake", connector.connect(name, tunnel)).await;
    let err = handshake.expect_err("a handshake whose SNI differs from the CONNECT host");
    saw.text(err.to_string());

    let event = proxy
        .event("connect", |e| {
            e["host"] == SNI_HOST && e["decision"] == "deny"
        })
        .await;
    assert!(reason(&event).starts_with("sni-mismatch"), "{event}");
    assert!(reason(&event).contains(SNI_OTHER), "{event}");
    assert!(
        stack.upstream.seen().is_empty(),
        "{:?}",
        stack.upstream.seen()
    );
    assert_eq!(stack.upstream.handshakes(), 0, "no upstream connection");

    // A client whose SNI matches is intercepted and swapped as usual.
    swapped_request_succeeds(&stack, &secret, SNI_HOST, &mut saw).await;
    assert_eq!(stack.upstream.seen().len(), 1);
    assert_no_leak(secret.real(), proxy, &saw);
}

// ---- A client that does not trust keygate's CA -----------------------------------

const UNTRUSTED_HOST: &str = "api.untrusted.test";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_trust_keygates_ca_gets_client_tls_with_the_fix_in_the_audit_log() {
    let secret = TestSecret::new(&format!("untrusted-{}", unique()), &[UNTRUSTED_HOST]);
    let stack = Stack::start(TestPki::new(), UNTRUSTED_HOST, Alpn::H2AndHttp1, |b| {
        b.secret(&secret)
    })
    .await;
    let proxy = &stack.proxy;
    let mut saw = ClientSaw::default();

    let other = TestPki::named("other");
    let target = format!("{UNTRUSTED_HOST}:443");
    let handshake = tls_through(proxy, &target, &other.root_der(), &[b"http/1.1"]).await;
    let err = handshake.expect_err("a client trusting another root rejects keygate's leaf");
    saw.text(err.to_string());

    let event = proxy
        .event("connect", |e| {
            e["host"] == UNTRUSTED_HOST && e["decision"] == "deny"
        })
        .await;
    let why = reason(&event);
    assert!(why.starts_with("client-tls"), "{event}");
    // The fix, in the words intercept.rs promises (CONFIG.md "Refusals": typically a
    // client that does not trust keygate's CA).
    assert!(why.contains("keygate ca path"), "{event}");
    assert!(why.contains("keygate env"), "{event}");
    assert!(
        stack.upstream.seen().is_empty(),
        "{:?}",
        stack.upstream.seen()
    );
    assert_eq!(stack.upstream.handshakes(), 0, "no upstream connection");

    // A client that trusts keygate's CA is served.
    swapped_request_succeeds(&stack, &secret, UNTRUSTED_HOST, &mut saw).await;
    assert_no_leak(secret.real(), proxy, &saw);
}

// ---- Idle timeout ----------------------------------------------------------------

const IDLE_TUNNEL_HOST: &str = "tunnel.idle.test";
const IDLE_WS_HOST: &str = "ws.idle.test";
const IDLE_LIMITS: &str = "limits:\n  idle_timeout: 500ms\n";

/// A tunnel to a keep-alive TLS echo upstream (which never closes on its own) that
/// carries one request and its reply, then stays silent until keygate closes it.
/// Returns the tunnel's audit event and the length of the reply's body.
async fn idle_closed_tunnel() -> (serde_json::Value, u64) {
    let pki = TestPki::new();
    let upstream = TlsUpstream::echo(&pki, &[IDLE_TUNNEL_HOST]).await;
    let proxy = ProxyBuilder::new()
        .yaml(IDLE_LIMITS)
        .allow(&format!("{IDLE_TUNNEL_HOST}:443"))
        .resolve(&format!("{IDLE_TUNNEL_HOST}:443"), upstream.addr)
        .start()
        .await;
    let tunnel = client::open_tunnel(proxy.addr, &format!("{IDLE_TUNNEL_HOST}:443")).await;
    let mut tls = client::tls(tunnel, &pki, IDLE_TUNNEL_HOST)
        .await
        .expect("TLS with the upstream through the tunnel");
    let request = format!("GET /first HTTP/1.1\r\nHost: {IDLE_TUNNEL_HOST}\r\n\r\n");
    let reply = within("a reply through the tunnel", async {
        tls.write_all(request.as_bytes()).await.expect("write");
        read_reply(&mut tls, false).await.expect("a reply")
    })
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(reply.body.contains("/first"), "{reply:?}");

    // Silence: keygate closes the tunnel; nothing more comes.
    let after = until_closed(&mut tls, "keygate to close the idle tunnel").await;
    assert!(after.is_empty(), "{after:?}");
    assert_eq!(upstream.handshakes(), 1);

    let event = proxy
        .event("tunnel", |e| e["host"] == IDLE_TUNNEL_HOST)
        .await;
    (event, reply.body.len() as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_tunnel_is_closed_after_the_idle_timeout() {
    let (event, _) = idle_closed_tunnel().await;
    assert_eq!(event["decision"], "allow", "{event}");
    assert_eq!(
        reason(&event),
        "tunnel ended: closed after 500ms without traffic (limits.idle_timeout)",
        "{event}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunnel_closed_for_idleness_is_audited_with_the_bytes_it_carried() {
    let (event, body_len) = idle_closed_tunnel().await;
    // TLS adds framing: at least the reply's body came down, and more went up than a
    // ClientHello (the rest of the handshake and the request).
    assert!(event["bytes_down"].as_u64() > Some(body_len), "{event}");
    let hello_len = client_hello_len(IDLE_TUNNEL_HOST);
    assert!(event["bytes_up"].as_u64() > Some(hello_len), "{event}");
}

/// The length of a ClientHello rustls sends for `host` (the test root's client config,
/// as `client::tls` uses).
fn client_hello_len(host: &str) -> u64 {
    let name = ServerName::try_from(host.to_string()).expect("server name");
    let mut tls =
        rustls::ClientConnection::new(TestPki::new().client_config(), name).expect("client");
    let mut hello = Vec::new();
    tls.write_tls(&mut hello).expect("ClientHello");
    hello.len() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_websocket_is_closed_after_the_idle_timeout() {
    let secret = TestSecret::new(&format!("ws-idle-{}", unique()), &[IDLE_WS_HOST]);
    let stack = Stack::start(TestPki::new(), IDLE_WS_HOST, Alpn::H2AndHttp1, |b| {
        b.secret(&secret).yaml(IDLE_LIMITS)
    })
    .await;
    let mut tls = open_tls(&stack.proxy, &format!("{IDLE_WS_HOST}:443"), &[b"http/1.1"]).await;
    let mut saw = ClientSaw::default();
    let key = "a2V5Z2F0ZS1pZGxlLXdzMQ==";
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {IDLE_WS_HOST}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nx-api-key: {}\r\n\r\n",
        secret.dummy()
    );
    let reply = within("the 101", async {
        tls.write_all(request.as_bytes()).await.expect("write");
        read_reply(&mut tls, false).await.expect("a reply")
    })
    .await;
    saw.text(format!("{reply:?}"));
    assert_eq!(reply.status, 101, "{reply:?}");
    let echoed = within("a frame echoed back", async {
        ws::write_frame(&mut tls, ws::TEXT, b"one frame", Some([5, 6, 7, 8]))
            .await
            .expect("write frame");
        ws::read_frame(&mut tls).await.expect("read frame")
    })
    .await;
    assert_eq!(echoed.payload, b"one frame");

    // Silence: keygate closes the bridge (the upstream echo would have kept it open).
    let after = until_closed(&mut tls, "keygate to close the idle WebSocket").await;
    saw.text(String::from_utf8_lossy(&after).into_owned());
    assert!(after.is_empty(), "{after:?}");

    let event = stack.proxy.event("request", |e| e["path"] == "/ws").await;
    assert_eq!(event["status"], 101, "{event}");
    // The frame up: 2 bytes of header, a 4-byte mask, 9 of payload; down: unmasked.
    assert_eq!(
        reason(&event),
        "websocket closed: idle (limits.idle_timeout); 15 bytes up, 11 bytes down",
        "{event}"
    );
    let seen = stack.upstream.only();
    assert_eq!(seen.header("x-api-key"), [secret.real()]);
    assert_no_leak(secret.real(), &stack.proxy, &saw);
}

// ---- Custom head limits ----------------------------------------------------------

const PLAIN_HEAD_HOST: &str = "plain.head.test";
const HEAD_HOST: &str = "api.head.test";
const HEAD_LIMITS: &str = "limits:\n  max_head_bytes: 8192\n  max_headers: 10\n";

/// A request head with `Host` and `extra` headers `x-extra-N: value`.
fn head_with(request_line: &str, host: &str, extra: usize, value: &str) -> String {
    let mut head = format!("{request_line}\r\nHost: {host}\r\n");
    for i in 0..extra {
        head.push_str(&format!("x-extra-{i}: {value}\r\n"));
    }
    head.push_str("\r\n");
    head
}

/// HTTP/1.1 heads: one with a 9 KiB header, one with 11 small headers, and one under
/// both limits (10 small headers).
struct Heads {
    big: String,
    many: String,
    fine: String,
}

impl Heads {
    fn new(request_line: impl Fn(&str) -> String, host: &str) -> Heads {
        let big = head_with(&request_line("/refused"), host, 1, &"a".repeat(9 * 1024));
        assert!(big.len() > 9 * 1024);
        Heads {
            big,
            many: head_with(&request_line("/refused"), host, 10, "v"),
            fine: head_with(&request_line("/fine"), host, 9, "v"),
        }
    }
}

/// Header fields of an h2 request.
type Fields = Vec<(String, String)>;

/// The h2 header lists: 11 small headers, one 9 KiB header, and 10 small headers.
fn h2_headers() -> (Fields, Fields, Fields) {
    let small = |n: usize| {
        (0..n)
            .map(|i| (format!("x-extra-{i}"), "v".to_string()))
            .collect()
    };
    let big = vec![("x-big".to_string(), "a".repeat(9 * 1024))];
    (small(11), big, small(10))
}

fn pairs(headers: &[(String, String)]) -> Vec<(&str, &str)> {
    headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

/// A proxy with the custom head limits: `HEAD_HOST` intercepted (a secret), and
/// `PLAIN_HEAD_HOST` forwarded as plain HTTP to `plain`.
async fn head_limit_stack(secret: &TestSecret, plain: &HttpUpstream) -> Stack {
    Stack::start(TestPki::new(), HEAD_HOST, Alpn::H2AndHttp1, |b| {
        b.secret(secret)
            .yaml(HEAD_LIMITS)
            .allow(&format!("{PLAIN_HEAD_HOST}:*"))
            .resolve(&format!("{PLAIN_HEAD_HOST}:80"), plain.addr)
    })
    .await
}

/// Sends `raw` on a new intercepted HTTP/1.1 connection and reads the reply.
async fn intercepted_raw(stack: &Stack, raw: &str) -> Option<Reply> {
    let mut tls = open_tls(&stack.proxy, &format!("{HEAD_HOST}:443"), &[b"http/1.1"]).await;
    within("a reply on an intercepted connection", async {
        tls.write_all(raw.as_bytes()).await.expect("write");
        read_reply(&mut tls, false).await
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_head_limits_answer_431_and_forward_nothing() {
    let secret = TestSecret::new(&format!("head-{}", unique()), &[HEAD_HOST]);
    let plain = HttpUpstream::start().await;
    let stack = head_limit_stack(&secret, &plain).await;
    let proxy = &stack.proxy;
    let mut saw = ClientSaw::default();

    // Proxy requests.
    let heads = Heads::new(
        |path| format!("GET http://{PLAIN_HEAD_HOST}{path} HTTP/1.1"),
        PLAIN_HEAD_HOST,
    );
    for (what, raw, limit) in [
        ("a 9 KiB head", &heads.big, "limits.max_head_bytes (8192)"),
        ("11 headers", &heads.many, "limits.max_headers (10)"),
    ] {
        let (_stream, reply) = client::send_raw(proxy.addr, raw.as_bytes()).await;
        let reply = reply.unwrap_or_else(|| panic!("proxy, {what}: closed without a reply"));
        assert_eq!(reply.status, 431, "proxy, {what}: {reply:?}");
        assert!(
            reply.reason().starts_with("head-too-large") && reply.reason().contains(limit),
            "proxy, {what}: the reason names the limit: {reply:?}"
        );
    }
    assert_eq!(plain.accepted(), 0, "a refused head went upstream");
    let (_stream, reply) = client::send_raw(proxy.addr, heads.fine.as_bytes()).await;
    assert_eq!(reply.expect("a reply").status, 200, "proxy, 10 headers");
    assert!(plain.next_arrival().await.ends_with("/fine"));
    assert_eq!(plain.try_arrival(), None);

    // Intercepted HTTP/1.1, each head on a connection of its own. Too many headers is
    // keygate's own refusal, with its reason.
    let heads = Heads::new(|path| format!("GET {path} HTTP/1.1"), HEAD_HOST);
    let reply = intercepted_raw(&stack, &heads.big).await;
    let reply = reply.expect("h1, a 9 KiB head: closed without a reply");
    saw.text(format!("{reply:?}"));
    assert_eq!(reply.status, 431, "h1, a 9 KiB head: {reply:?}");
    assert!(
        reply.reason().starts_with("head-too-large"),
        "h1, a 9 KiB head: {reply:?}"
    );
    let reply = intercepted_raw(&stack, &heads.many).await;
    let reply = reply.expect("h1, 11 headers: closed without a reply");
    saw.text(format!("{reply:?}"));
    assert_eq!(reply.status, 431, "h1, 11 headers: {reply:?}");
    assert!(
        reply.reason().starts_with("head-too-large"),
        "h1, 11 headers: {reply:?}"
    );
    let reply = intercepted_raw(&stack, &heads.fine).await;
    let reply = reply.expect("h1, 10 headers: closed without a reply");
    assert_eq!(reply.status, 200, "h1, 10 headers: {reply:?}");

    // h2, one connection: refused streams do not end it.
    let (many, big, fine) = h2_headers();
    let mut conn = Conn::open(proxy, HEAD_HOST, Version::HTTP_2).await;
    let resp = conn
        .send(conn.get(HEAD_HOST, "/refused", &pairs(&many)))
        .await;
    let (head, text) = saw.read(resp).await;
    assert_eq!(head.status, 431, "h2, 11 headers: {text}");
    let why = head.headers.get("x-keygate-reason").map(|v| v.to_str());
    assert!(
        matches!(why, Some(Ok(w)) if w.starts_with("head-too-large")),
        "h2, 11 headers: {why:?}"
    );
    let resp = conn
        .send(conn.get(HEAD_HOST, "/refused", &pairs(&big)))
        .await;
    let (head, text) = saw.read(resp).await;
    assert_eq!(head.status, 431, "h2, a 9 KiB header: {text}");
    let why = head.headers.get("x-keygate-reason").map(|v| v.to_str());
    assert!(
        matches!(why, Some(Ok(w)) if w.starts_with("head-too-large")),
        "h2, a 9 KiB header: {why:?}"
    );
    let resp = conn.send(conn.get(HEAD_HOST, "/fine", &pairs(&fine))).await;
    let (head, text) = saw.read(resp).await;
    assert_eq!(head.status, StatusCode::OK, "h2, 10 headers: {text}");

    let seen: Vec<String> = stack
        .upstream
        .seen()
        .into_iter()
        .map(|s| s.target)
        .collect();
    assert_eq!(seen, ["/fine", "/fine"], "the refused heads went nowhere");
    // Every refusal is audited: 2 proxy requests, 2 intercepted HTTP/1.1, 2 h2.
    let refused = proxy
        .events_n("request", 6, |e| reason(e).starts_with("head-too-large"))
        .await;
    for event in &refused {
        assert_eq!(event["decision"], "deny", "{event}");
        assert_eq!(event["status"], 431, "{event}");
        assert!(reason(event).starts_with("head-too-large"), "{event}");
    }
    assert_no_leak(secret.real(), proxy, &saw);
}
