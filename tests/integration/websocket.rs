//! Issue 14: WebSocket frames to a host a secret is bound to are read. What comes down
//! is scrubbed (fragments, close reasons and pings too), what goes up is tripwired and,
//! with `websocket: true`, swapped; no extension is negotiated, so every frame stays
//! readable. Frames to other intercepted hosts are tripwired; a reload that unbinds the
//! secret closes an open WebSocket. The upgrade request itself is in `streaming.rs`.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::support::api::Alpn;
use crate::support::client::{Reply, read_reply};
use crate::support::intercepted::open_tls;
use crate::support::leak::{ClientSaw, assert_no_leak};
use crate::support::pki::TestPki;
use crate::support::proxy::reason;
use crate::support::secret::{TestSecret, unique};
use crate::support::stack::Stack;
use crate::support::ws::{self, Frame};
use crate::support::{trace, within};

const HOST: &str = "api.ws.test";
const OTHER: &str = "other.ws.test";
/// The masking key this test client uses for every frame.
const MASK: [u8; 4] = [7, 1, 9, 3];

/// A proxy with `secrets` in front of the echo upstream for HOST.
async fn stack(secrets: &[&TestSecret]) -> Stack {
    Stack::start(TestPki::new(), HOST, Alpn::H2AndHttp1, |mut b| {
        for secret in secrets {
            b = b.secret(secret);
        }
        b
    })
    .await
}

/// Opens an intercepted connection to HOST and sends a WebSocket upgrade for `/ws` with
/// `extra` header lines; the reply.
async fn upgrade(stack: &Stack, extra: &str) -> (TlsStream<TcpStream>, Reply) {
    let mut tls = open_tls(&stack.proxy, &format!("{HOST}:443"), &[b"http/1.1"]).await;
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {HOST}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: a2V5Z2F0ZS13ZWJzb2NrZXQ=\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    );
    let reply = within("the reply to the upgrade", async {
        tls.write_all(request.as_bytes()).await.expect("write");
        read_reply(&mut tls, false).await.expect("a reply")
    })
    .await;
    (tls, reply)
}

/// An upgraded WebSocket to HOST (101 checked).
async fn open(stack: &Stack, saw: &mut ClientSaw) -> TlsStream<TcpStream> {
    let (tls, reply) = upgrade(stack, "").await;
    saw.text(format!("{reply:?}"));
    assert_eq!(reply.status, 101, "{reply:?}");
    tls
}

/// Sends one final frame and reads the answer up to the end of a message (or a close);
/// records what came back.
async fn exchange(
    tls: &mut TlsStream<TcpStream>,
    opcode: u8,
    payload: &[u8],
    saw: &mut ClientSaw,
) -> Vec<Frame> {
    let frames = within("a frame and its answer", async {
        ws::write_frame(tls, opcode, payload, Some(MASK))
            .await
            .expect("write frame");
        ws::read_message(tls).await.expect("read frames")
    })
    .await;
    record(saw, &frames);
    frames
}

fn record(saw: &mut ClientSaw, frames: &[Frame]) {
    for frame in frames {
        saw.text(String::from_utf8_lossy(&frame.payload).into_owned());
    }
}

/// The payloads of the data frames the upstream received so far, each as text.
fn upstream_texts(stack: &Stack) -> Vec<String> {
    let frames = stack.upstream.ws_frames();
    frames
        .iter()
        .filter(|f| f.opcode < ws::CLOSE)
        .map(|f| String::from_utf8_lossy(&f.payload).into_owned())
        .collect()
}

/// Waits (bounded) until the upstream received a frame that `pred` accepts.
async fn upstream_got(stack: &Stack, what: &str, pred: impl Fn(&Frame) -> bool) -> Frame {
    within(what, async {
        loop {
            if let Some(f) = stack.upstream.ws_frames().into_iter().find(|f| pred(f)) {
                return f;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

/// Closes the WebSocket from the client and waits for the relay's audit event.
async fn close(
    stack: &Stack,
    mut tls: TlsStream<TcpStream>,
    saw: &mut ClientSaw,
) -> serde_json::Value {
    let answer = exchange(&mut tls, ws::CLOSE, &1000u16.to_be_bytes(), saw).await;
    assert_eq!(answer.last().map(|f| f.opcode), Some(ws::CLOSE));
    drop(tls);
    stack.proxy.event("request", |e| e["path"] == "/ws").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_websocket_true_a_dummy_in_a_frame_goes_up_real_and_its_echo_comes_back_as_the_dummy()
{
    let secret = TestSecret::new(&format!("ws-swap-{}", unique()), &[HOST]).websocket();
    let stack = stack(&[&secret]).await;
    let mut saw = ClientSaw::default();
    let mut tls = open(&stack, &mut saw).await;
    for opcode in [ws::TEXT, ws::BINARY] {
        let sent = format!("{{\"key\":\"{}\",\"op\":{opcode}}}", secret.dummy());
        let echoed = exchange(&mut tls, opcode, sent.as_bytes(), &mut saw).await;
        assert_eq!(echoed[0].opcode, opcode);
        assert!(
            echoed.iter().all(|f| !f.masked),
            "frames to the client are not masked"
        );
        assert_eq!(
            ws::payload(&echoed),
            sent.as_bytes(),
            "the echo comes back as the dummy"
        );
        let real = sent.replace(secret.dummy(), secret.real());
        assert_eq!(
            upstream_texts(&stack).last(),
            Some(&real),
            "the upstream got the real value"
        );
    }
    for frame in stack.upstream.ws_frames() {
        assert!(frame.masked, "frames to the upstream are masked");
        assert_ne!(frame.key, Some(MASK), "re-masked with a fresh key");
    }
    let event = close(&stack, tls, &mut saw).await;
    assert_eq!(event["status"], 101, "{event}");
    assert_eq!(event["secret"], secret.name(), "{event}");
    assert!(reason(&event).starts_with("websocket"), "{event}");
    assert_no_leak(secret.real(), &stack.proxy, &saw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_opt_in_a_dummy_in_a_frame_goes_up_unchanged() {
    let secret = TestSecret::new(&format!("ws-plain-{}", unique()), &[HOST]);
    let stack = stack(&[&secret]).await;
    let mut saw = ClientSaw::default();
    let mut tls = open(&stack, &mut saw).await;
    let sent = format!("key={}", secret.dummy());
    let echoed = exchange(&mut tls, ws::TEXT, sent.as_bytes(), &mut saw).await;
    assert_eq!(ws::payload(&echoed), sent.as_bytes());
    assert_eq!(upstream_texts(&stack), [sent]);
    let event = close(&stack, tls, &mut saw).await;
    assert!(event["secret"].is_null(), "nothing was swapped: {event}");
    assert_no_leak(secret.real(), &stack.proxy, &saw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_split_across_fragments_is_swapped_going_up_and_scrubbed_coming_down() {
    let secret = TestSecret::new(&format!("ws-frag-{}", unique()), &[HOST]).websocket();
    let stack = stack(&[&secret]).await;
    let mut saw = ClientSaw::default();
    let mut tls = open(&stack, &mut saw).await;
    // Up: the dummy cut in two fragments. Down: the upstream echoes the message in
    // 4-byte fragments, so the real value spans several of them.
    let (a, b) = secret.dummy().split_at(9);
    let echoed = within("a fragmented message and its echo", async {
        ws::write_fragment(
            &mut tls,
            ws::TEXT,
            false,
            format!("fragment:key={a}").as_bytes(),
            Some(MASK),
        )
        .await
        .expect("first fragment");
        ws::write_fragment(
            &mut tls,
            ws::CONTINUATION,
            true,
            format!("{b};").as_bytes(),
            Some(MASK),
        )
        .await
        .expect("last fragment");
        ws::read_message(&mut tls).await.expect("the echo")
    })
    .await;
    record(&mut saw, &echoed);
    let sent = format!("fragment:key={};", secret.dummy());
    assert!(echoed.len() > 1, "the echo stays fragmented: {echoed:?}");
    assert_eq!(echoed[0].opcode, ws::TEXT);
    assert!(echoed[1..].iter().all(|f| f.opcode == ws::CONTINUATION));
    assert_eq!(ws::payload(&echoed), sent.as_bytes());
    assert_eq!(
        upstream_texts(&stack).concat(),
        sent.replace(secret.dummy(), secret.real()),
        "the upstream got the whole real value"
    );
    close(&stack, tls, &mut saw).await;
    assert_no_leak(secret.real(), &stack.proxy, &saw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_and_a_close_reason_that_echo_the_value_are_scrubbed() {
    let secret = TestSecret::new(&format!("ws-close-{}", unique()), &[HOST]).websocket();
    let stack = stack(&[&secret]).await;
    let mut saw = ClientSaw::default();
    let mut tls = open(&stack, &mut saw).await;
    let ping = within("a ping", async {
        let command = format!("ping:{}", secret.dummy());
        ws::write_frame(&mut tls, ws::TEXT, command.as_bytes(), Some(MASK))
            .await
            .expect("write");
        ws::read_frame(&mut tls).await.expect("the ping")
    })
    .await;
    record(&mut saw, std::slice::from_ref(&ping));
    assert_eq!(ping.opcode, ws::PING);
    assert_eq!(ping.payload, secret.dummy().as_bytes());

    let command = format!("close:bye {}", secret.dummy());
    let closed = exchange(&mut tls, ws::TEXT, command.as_bytes(), &mut saw).await;
    assert_eq!(closed.len(), 1, "{closed:?}");
    assert_eq!(closed[0].opcode, ws::CLOSE);
    assert_eq!(
        closed[0].payload[..2],
        1000u16.to_be_bytes(),
        "the code is kept"
    );
    assert_eq!(
        &closed[0].payload[2..],
        format!("bye {}", secret.dummy()).as_bytes()
    );
    let reason_up = format!("bye {}", secret.real());
    assert!(
        upstream_texts(&stack)
            .iter()
            .any(|t| t.ends_with(&reason_up))
    );
    drop(tls);
    stack.proxy.event("request", |e| e["path"] == "/ws").await;
    assert_no_leak(secret.real(), &stack.proxy, &saw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_secrets_dummy_in_a_frame_closes_the_websocket_with_1008_and_an_alert() {
    let own = TestSecret::new(&format!("ws-own-{}", unique()), &[HOST]).websocket();
    let foreign = TestSecret::new(&format!("ws-foreign-{}", unique()), &[OTHER]);
    let stack = stack(&[&own, &foreign]).await;
    let mut saw = ClientSaw::default();
    let mut tls = open(&stack, &mut saw).await;
    let exfil = format!("exfil {}", foreign.dummy());
    let answer = exchange(&mut tls, ws::TEXT, exfil.as_bytes(), &mut saw).await;
    assert_eq!(answer.len(), 1, "{answer:?}");
    assert_eq!(answer[0].opcode, ws::CLOSE);
    assert_eq!(answer[0].payload[..2], 1008u16.to_be_bytes());
    let why = String::from_utf8_lossy(&answer[0].payload[2..]).into_owned();
    assert!(
        why.contains("tripwire") && why.contains(foreign.name()),
        "{why}"
    );
    let closed = upstream_got(&stack, "the close keygate sends up", |f| {
        f.opcode == ws::CLOSE
    })
    .await;
    assert_eq!(
        closed.payload,
        1008u16.to_be_bytes(),
        "the upstream gets the code alone"
    );
    assert!(
        !upstream_texts(&stack)
            .iter()
            .any(|t| t.contains(foreign.dummy())),
        "the foreign dummy never reached the upstream"
    );
    drop(tls);
    let event = stack.proxy.event("request", |e| e["path"] == "/ws").await;
    assert_eq!(event["decision"], "deny", "{event}");
    assert_eq!(event["secret"], foreign.name(), "{event}");
    assert!(reason(&event).starts_with("tripwire: "), "{event}");
    assert!(reason(&event).contains("in a WebSocket frame"), "{event}");
    let alert = trace::captured().lines().any(|l| {
        l.contains("ALERT") && l.contains("WebSocket frame") && l.contains(foreign.name())
    });
    assert!(alert, "an alert in keygate's log");
    assert_no_leak(own.real(), &stack.proxy, &saw);
    assert_no_leak(foreign.real(), &stack.proxy, &saw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_extension_reaches_a_bound_host_and_a_101_that_accepts_one_anyway_is_refused() {
    let secret = TestSecret::new(&format!("ws-ext-{}", unique()), &[HOST]);
    let stack = stack(&[&secret]).await;
    let mut saw = ClientSaw::default();
    let offer = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";
    let (mut tls, reply) = upgrade(&stack, offer).await;
    saw.text(format!("{reply:?}"));
    assert_eq!(reply.status, 101, "{reply:?}");
    assert_eq!(reply.header("sec-websocket-extensions"), None);
    let seen = stack.upstream.only();
    assert!(
        seen.header("sec-websocket-extensions").is_empty(),
        "{seen:?}"
    );
    let echoed = exchange(&mut tls, ws::TEXT, b"plain frames", &mut saw).await;
    assert_eq!(ws::payload(&echoed), b"plain frames");
    close(&stack, tls, &mut saw).await;

    let forced = format!("{offer}x-accept-extension: permessage-deflate\r\n");
    let (_tls, reply) = upgrade(&stack, &forced).await;
    saw.text(format!("{reply:?}"));
    assert_eq!(reply.status, 502, "{reply:?}");
    assert!(reply.reason().starts_with("upstream-error"), "{reply:?}");
    assert!(reply.reason().contains("extension"), "{reply:?}");
    assert_no_leak(secret.real(), &stack.proxy, &saw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_to_an_intercepted_host_without_a_bound_secret_are_tripwired_too() {
    // `intercept: all`: what goes up to a host no secret is bound to is read like a
    // request body, so a dummy carried there in a frame trips as it would in a body.
    let elsewhere = TestSecret::new(&format!("ws-elsewhere-{}", unique()), &[OTHER]);
    let stack = Stack::start(TestPki::new(), HOST, Alpn::H2AndHttp1, |b| {
        b.secret(&elsewhere).allow(HOST).intercept_all()
    })
    .await;
    let mut saw = ClientSaw::default();
    let mut tls = open(&stack, &mut saw).await;
    let echoed = exchange(&mut tls, ws::TEXT, b"untouched", &mut saw).await;
    assert_eq!(
        ws::payload(&echoed),
        b"untouched",
        "a clean frame goes through"
    );
    let exfil = format!("exfil {}", elsewhere.dummy());
    let answer = exchange(&mut tls, ws::TEXT, exfil.as_bytes(), &mut saw).await;
    assert_eq!(answer.len(), 1, "{answer:?}");
    assert_eq!(answer[0].opcode, ws::CLOSE);
    assert_eq!(answer[0].payload[..2], 1008u16.to_be_bytes());
    assert!(
        !upstream_texts(&stack)
            .iter()
            .any(|t| t.contains(elsewhere.dummy())),
        "the dummy never reached the upstream"
    );
    drop(tls);
    let event = stack.proxy.event("request", |e| e["path"] == "/ws").await;
    assert_eq!(event["secret"], elsewhere.name(), "{event}");
    assert!(reason(&event).starts_with("tripwire: "), "{event}");
    assert_no_leak(elsewhere.real(), &stack.proxy, &saw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_unbinds_the_secret_closes_an_open_websocket() {
    use tokio::io::AsyncReadExt;
    let secret = TestSecret::new(&format!("ws-revoke-{}", unique()), &[HOST]).websocket();
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let root = pki.write_root(dir.path());
    let stack = Stack::start(pki, HOST, Alpn::H2AndHttp1, |b| b.secret(&secret)).await;
    let mut saw = ClientSaw::default();
    let mut tls = open(&stack, &mut saw).await;
    let echoed = exchange(&mut tls, ws::TEXT, b"before the reload", &mut saw).await;
    assert_eq!(ws::payload(&echoed), b"before the reload");
    // The secret is no longer bound to HOST (the host itself stays allowed).
    let unbound = TestSecret {
        entry: keygate::secrets::SecretEntry {
            hosts: vec![OTHER.to_string()],
            ..secret.entry.clone()
        },
        real: secret.real.clone(),
    };
    stack.proxy.reload(
        crate::support::proxy::ProxyBuilder::new()
            .secret(&unbound)
            .allow(HOST)
            .resolve(&format!("{HOST}:443"), stack.upstream.addr)
            .upstream_ca(&root),
    );
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut rest)).await;
    assert!(
        closed.is_ok(),
        "the WebSocket is closed at the reload, not left open"
    );
    let event = stack.proxy.event("request", |e| e["path"] == "/ws").await;
    assert!(
        reason(&event).contains(&format!(
            "revoked: secret `{}` is no longer bound",
            secret.name()
        )),
        "{event}"
    );
    assert_no_leak(secret.real(), &stack.proxy, &saw);
}
