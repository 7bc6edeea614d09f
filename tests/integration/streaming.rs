//! Issue 3: what streams through an intercepted host without being buffered: WebSocket
//! (the swap applied to the upgrade request) and server-sent events. Large bodies are
//! in `large_body.rs`.

use bytes::Bytes;
use http::{StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::support::api::Alpn;
use crate::support::client::{Reply, read_reply};
use crate::support::intercepted::{Conn, open_tls};
use crate::support::leak::{ClientSaw, assert_no_leak};
use crate::support::pki::TestPki;
use crate::support::secret::TestSecret;
use crate::support::stack::Stack;
use crate::support::{within, ws};

const HOST: &str = "api.demo.test";

/// The next data frame of `body` (bounded); `None` at its end.
async fn next_data(body: &mut Incoming) -> Option<Bytes> {
    within("a body frame", async {
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.expect("body frame").into_data() {
                return Some(data);
            }
        }
        None
    })
    .await
}

/// Sends a WebSocket upgrade for `/ws` with `extra` header lines on `tls`; the reply.
async fn upgrade(tls: &mut TlsStream<TcpStream>, key: &str, extra: &str) -> Reply {
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {HOST}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    );
    within("the 101", async {
        tls.write_all(request.as_bytes()).await.expect("write");
        read_reply(tls, false).await.expect("a reply")
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_echo_works_through_an_intercepted_host_with_the_swap_on_the_upgrade() {
    let secret = TestSecret::new("websocket", &[HOST]);
    let stack = Stack::start(TestPki::new(), HOST, Alpn::H2AndHttp1, |b| {
        b.secret(&secret)
    })
    .await;
    let mut tls = open_tls(&stack.proxy, "api.demo.test:443", &[b"http/1.1"]).await;
    let mut saw = ClientSaw::default();

    let key = "a2V5Z2F0ZS13cy10ZXN0MQ==";
    let auth = format!("Authorization: Bearer {}\r\n", secret.dummy());
    let reply = upgrade(&mut tls, key, &auth).await;
    saw.text(format!("{reply:?}"));
    assert_eq!(reply.status, 101, "{reply:?}");
    assert_eq!(
        reply.header("sec-websocket-accept"),
        Some(ws::accept_key(key).as_str())
    );
    assert!(
        reply
            .header("upgrade")
            .unwrap()
            .eq_ignore_ascii_case("websocket")
    );

    for message in ["hello through keygate", "and a second frame"] {
        let echoed = within("a frame echoed back", async {
            ws::write_frame(&mut tls, ws::TEXT, message.as_bytes(), Some([7, 1, 9, 3]))
                .await
                .expect("write frame");
            ws::read_frame(&mut tls).await.expect("read frame")
        })
        .await;
        assert_eq!(echoed.opcode, ws::TEXT);
        assert!(!echoed.masked, "server frames are not masked");
        assert_eq!(echoed.payload, message.as_bytes());
        saw.text(String::from_utf8_lossy(&echoed.payload).into_owned());
    }
    let closed = within("the close handshake", async {
        ws::write_frame(&mut tls, ws::CLOSE, &[0x03, 0xe8], Some([1, 2, 3, 4]))
            .await
            .expect("write close");
        ws::read_frame(&mut tls).await.expect("read close")
    })
    .await;
    assert_eq!(closed.opcode, ws::CLOSE);

    let seen = stack.upstream.only();
    assert_eq!(seen.target, "/ws");
    assert_eq!(
        seen.version,
        Version::HTTP_11,
        "WebSocket upgrades go up as HTTP/1.1"
    );
    assert_eq!(
        seen.header("authorization"),
        [format!("Bearer {}", secret.real())]
    );
    assert_eq!(seen.header("sec-websocket-key"), [key]);
    drop(tls);
    let event = stack.proxy.event("request", |e| e["path"] == "/ws").await;
    assert_eq!(event["status"], 101, "{event}");
    assert_eq!(event["secret"], "websocket");
    assert_no_leak(secret.real(), &stack.proxy, &saw);
}

/// Browsers cannot set headers on a WebSocket, so some APIs take the key as a
/// subprotocol, and the server selects (echoes) it in the 101. That echo is a response
/// header from a bound host: it must reach the client scrubbed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_value_echoed_in_the_websocket_handshake_is_scrubbed() {
    let secret = TestSecret::new("subprotocol", &[HOST]);
    let stack = Stack::start(TestPki::new(), HOST, Alpn::H2AndHttp1, |b| {
        b.secret(&secret)
    })
    .await;
    let mut tls = open_tls(&stack.proxy, "api.demo.test:443", &[b"http/1.1"]).await;
    let protocol = format!("key.{}", secret.dummy());
    let extra = format!("Sec-WebSocket-Protocol: {protocol}\r\n");
    let reply = upgrade(&mut tls, "c3VicHJvdG9jb2wtdGVzdA==", &extra).await;
    let mut saw = ClientSaw::default();
    saw.text(format!("{reply:?}"));
    assert_eq!(reply.status, 101, "{reply:?}");
    assert_eq!(
        stack.upstream.only().header("sec-websocket-protocol"),
        [format!("key.{}", secret.real())],
        "the swap applies to the subprotocol header"
    );
    assert_eq!(
        reply.header("sec-websocket-protocol"),
        Some(protocol.as_str()),
        "the selected subprotocol reaches the client with the dummy"
    );
    drop(tls);
    assert_no_leak(secret.real(), &stack.proxy, &saw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_sent_events_reach_the_client_one_at_a_time() {
    for version in [Version::HTTP_11, Version::HTTP_2] {
        let secret = TestSecret::new("events", &[HOST]);
        let stack = Stack::start(TestPki::new(), HOST, Alpn::H2AndHttp1, |b| {
            b.secret(&secret)
        })
        .await;
        let mut conn = Conn::open(&stack.proxy, HOST, version).await;
        let resp = conn
            .send(conn.get(HOST, "/sse", &[("x-api-key", secret.dummy())]))
            .await;
        let mut saw = ClientSaw::default();
        saw.head(&resp);
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        let mut body = resp.into_body();

        // The upstream holds event two until released: event one must arrive alone.
        let mut got = Vec::new();
        while !got.ends_with(b"data: one\n\n") {
            let data = next_data(&mut body)
                .await
                .expect("event one before the end");
            got.extend_from_slice(&data);
        }
        assert_eq!(got, b"data: one\n\n", "{version:?}");
        stack.upstream.release();
        while let Some(data) = next_data(&mut body).await {
            got.extend_from_slice(&data);
        }
        assert_eq!(got, b"data: one\n\ndata: two\n\n", "{version:?}");
        saw.text(String::from_utf8_lossy(&got).into_owned());
        assert_eq!(stack.upstream.only().header("x-api-key"), [secret.real()]);
        drop(conn);
        assert_no_leak(secret.real(), &stack.proxy, &saw);
    }
}
