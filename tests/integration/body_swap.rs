//! Issue 14: the opt-in swap in request bodies (`body: json|form|text`). The upstream
//! gets the real value written the way the body writes values (JSON-escaped, form-encoded,
//! as is), with an exact `Content-Length` when the client sent one (read whole, within
//! `limits.max_body_swap_buffer`) and streamed without one otherwise; a secret that did
//! not opt in, or a body of another kind, goes up as sent. The client never sees the
//! real value. Also: the tripwire reads plain-HTTP request bodies.

use bytes::Bytes;
use http::{Request, StatusCode, Version};
use keygate::secrets::BodyMode;

use crate::support::api::Alpn;
use crate::support::body::{self, Fnv};
use crate::support::client::{proxy_http1, send};
use crate::support::intercepted::Conn;
use crate::support::leak::{ClientSaw, assert_no_form_seen};
use crate::support::pki::TestPki;
use crate::support::proxy::{ProxyBuilder, reason};
use crate::support::secret::TestSecret;
use crate::support::stack::Stack;
use crate::support::upstream::HttpUpstream;
use http_body_util::BodyExt;

const HOST: &str = "api.body-swap.test";

fn fnv(bytes: &[u8]) -> u64 {
    let mut hash = Fnv::default();
    hash.update(bytes);
    hash.0
}

/// What `/upload` says it received: (length, hash, Content-Length).
async fn upload(
    conn: &mut Conn,
    saw: &mut ClientSaw,
    content_type: &str,
    parts: Vec<String>,
    declare_length: bool,
) -> (StatusCode, serde_json::Value) {
    let total: usize = parts.iter().map(String::len).sum();
    let (tx, stream) = body::channel();
    let mut req = conn
        .request("POST", HOST, "/upload")
        .header("content-type", content_type);
    if declare_length {
        req = req.header("content-length", total);
    }
    let req = req.body(stream).unwrap();
    tokio::spawn(async move {
        for part in parts {
            let _ = tx.send(Bytes::from(part)).await;
            tokio::task::yield_now().await;
        }
    });
    let (head, answer) = saw.read(conn.send(req).await).await;
    let got = serde_json::from_str(&answer).unwrap_or(serde_json::Value::Null);
    (head.status, got)
}

/// `text` cut in two inside `needle`.
fn cut_inside(text: &str, needle: &str) -> Vec<String> {
    let at = text.find(needle).unwrap() + needle.len() / 2;
    vec![text[..at].to_string(), text[at..].to_string()]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_body_gets_the_real_value_json_escaped_with_an_exact_length_or_streamed() {
    let secret = TestSecret::new("body-json", &[HOST])
        .real_value("sk/real\"quoted\\{unique}")
        .body(BodyMode::Json);
    let stack = Stack::start(TestPki::new(), HOST, Alpn::H2AndHttp1, |b| {
        b.secret(&secret)
    })
    .await;
    let mut saw = ClientSaw::default();
    let sent = format!("{{\"api_key\":\"{}\",\"prompt\":\"hi\"}}", secret.dummy());
    let escaped = serde_json::to_string(secret.real()).unwrap();
    let expected = format!("{{\"api_key\":{escaped},\"prompt\":\"hi\"}}");
    for version in [Version::HTTP_11, Version::HTTP_2] {
        for declare_length in [true, false] {
            let mut conn = Conn::open(&stack.proxy, HOST, version).await;
            let (status, got) = upload(
                &mut conn,
                &mut saw,
                "application/json",
                cut_inside(&sent, secret.dummy()),
                declare_length,
            )
            .await;
            let at = format!("{version:?}, length declared: {declare_length}");
            assert_eq!(status, StatusCode::OK, "{at}: {got}");
            assert_eq!(got["body_len"], expected.len(), "{at}: {got}");
            assert_eq!(
                got["body_hash"],
                fnv(expected.as_bytes()),
                "{at}: the upstream got the JSON-escaped real value"
            );
            match declare_length {
                // Read whole: the upstream gets the new exact length.
                true => assert_eq!(got["content_length"], expected.len().to_string(), "{at}"),
                // Streamed: no length over HTTP/1.1 (chunked); h2 needs none.
                false => assert!(got["content_length"].is_null(), "{at}: {got}"),
            }
        }
    }
    let event = stack
        .proxy
        .event("request", |e| {
            e["path"] == "/upload" && e["secret"] == "body-json"
        })
        .await;
    assert_eq!(event["status"], 200, "{event}");
    assert_no_form_seen(secret.real(), &stack.proxy, &saw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_body_gets_the_real_value_form_encoded() {
    let secret = TestSecret::new("body-form", &[HOST])
        .real_value("sk+real/{unique}=&x")
        .body(BodyMode::Form);
    let stack = Stack::start(TestPki::new(), HOST, Alpn::H2AndHttp1, |b| {
        b.secret(&secret)
    })
    .await;
    let mut saw = ClientSaw::default();
    let sent = format!(
        "grant_type=client_credentials&client_secret={}&scope=a+b",
        secret.dummy()
    );
    let encoded = secret
        .real()
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D")
        .replace('&', "%26");
    let expected = format!("grant_type=client_credentials&client_secret={encoded}&scope=a+b");
    for version in [Version::HTTP_11, Version::HTTP_2] {
        let mut conn = Conn::open(&stack.proxy, HOST, version).await;
        let (status, got) = upload(
            &mut conn,
            &mut saw,
            "application/x-www-form-urlencoded",
            vec![sent.clone()],
            true,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{version:?}: {got}");
        assert_eq!(
            got["body_hash"],
            fnv(expected.as_bytes()),
            "{version:?}: {got}"
        );
        assert_eq!(got["content_length"], expected.len().to_string());
    }
    assert_no_form_seen(secret.real(), &stack.proxy, &saw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_opt_in_or_in_another_kind_of_body_the_dummy_goes_up_as_sent() {
    let json_only = TestSecret::new("body-json-only", &[HOST]).body(BodyMode::Json);
    let not_opted = TestSecret::new("body-none", &[HOST]);
    let stack = Stack::start(TestPki::new(), HOST, Alpn::H2AndHttp1, |b| {
        b.secret(&json_only).secret(&not_opted)
    })
    .await;
    let mut saw = ClientSaw::default();
    let mut conn = Conn::open(&stack.proxy, HOST, Version::HTTP_2).await;
    for (content_type, text) in [
        // A text body: `body: json` does not swap there.
        ("text/plain", format!("key {}", json_only.dummy())),
        // A JSON body with the dummy of a secret that did not opt in.
        (
            "application/json",
            format!("{{\"k\":\"{}\"}}", not_opted.dummy()),
        ),
    ] {
        let (status, got) =
            upload(&mut conn, &mut saw, content_type, vec![text.clone()], true).await;
        assert_eq!(status, StatusCode::OK, "{content_type}: {got}");
        assert_eq!(
            got["body_hash"],
            fnv(text.as_bytes()),
            "{content_type}: unchanged"
        );
        assert_eq!(got["content_length"], text.len().to_string());
    }
    assert_no_form_seen(json_only.real(), &stack.proxy, &saw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_buffer_limit_streams_on_swapped_without_a_length() {
    let secret = TestSecret::new("body-big", &[HOST]).body(BodyMode::Text);
    let stack = Stack::start(TestPki::new(), HOST, Alpn::H2AndHttp1, |b| {
        b.secret(&secret)
            .yaml("limits:\n  max_body_swap_buffer: 1024\n")
    })
    .await;
    let mut saw = ClientSaw::default();
    let filler = "x".repeat(4000);
    let sent = format!("{filler}{}{filler}", secret.dummy());
    let expected = format!("{filler}{}{filler}", secret.real());
    let mut conn = Conn::open(&stack.proxy, HOST, Version::HTTP_11).await;
    let (status, got) = upload(
        &mut conn,
        &mut saw,
        "text/plain",
        cut_inside(&sent, secret.dummy()),
        true,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{got}");
    assert_eq!(got["body_hash"], fnv(expected.as_bytes()));
    assert!(got["content_length"].is_null(), "streamed, chunked: {got}");
    assert_no_form_seen(secret.real(), &stack.proxy, &saw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_http_body_with_a_dummy_trips() {
    let upstream = HttpUpstream::start().await;
    let secret = TestSecret::new("body-plain", &["api.bound-elsewhere.test"]);
    let proxy = ProxyBuilder::new()
        .allow("plain.body-swap.test")
        .resolve("plain.body-swap.test:80", upstream.addr)
        .secret(&secret)
        .start()
        .await;
    let mut sender = proxy_http1(proxy.addr).await;
    let req = Request::post("http://plain.body-swap.test/upload")
        .header("host", "plain.body-swap.test")
        .body(body::full(format!("token={}", secret.dummy())))
        .unwrap();
    let resp = send(&mut sender, req).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let why = resp.headers()["x-keygate-reason"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(why.starts_with("tripwire"), "{why}");
    let _ = resp.into_body().collect().await;
    let event = proxy
        .event("request", |e| e["secret"] == "body-plain")
        .await;
    assert!(reason(&event).starts_with("tripwire"), "{event}");
}
