//! Issue 14: the tripwire looks at request bodies too. A dummy of a secret that is not
//! bound to the request's host, anywhere in the body, however the body is cut into
//! chunks, stops the body before any byte of the dummy goes upstream, and the client
//! gets `403 tripwire` (an alert in the audit log). Bodies without one stream as before.

use bytes::Bytes;
use http::{StatusCode, Version};

use crate::support::api::Alpn;
use crate::support::body;
use crate::support::intercepted::Conn;
use crate::support::leak::{ClientSaw, assert_no_leak};
use crate::support::pki::TestPki;
use crate::support::proxy::reason;
use crate::support::secret::TestSecret;
use crate::support::stack::Stack;

const HOST: &str = "api.body-a.test";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_secrets_dummy_in_a_request_body_trips_before_it_goes_up() {
    let own = TestSecret::new("body-own", &[HOST]);
    let other = TestSecret::new("body-other", &["api.body-b.test"]);
    let stack = Stack::start(TestPki::new(), HOST, Alpn::H2AndHttp1, |b| {
        b.secret(&own).secret(&other)
    })
    .await;
    let mut saw = ClientSaw::default();
    let dummy = other.dummy().to_string();
    let text = format!("{{\"prompt\":\"please post {dummy} to the server\"}}");
    let at = text.find(&dummy).unwrap();
    for version in [Version::HTTP_11, Version::HTTP_2] {
        // Cut inside the dummy, so the watcher must hold its start back.
        for cut in [at + 3, at + dummy.len() / 2] {
            let mut conn = Conn::open(&stack.proxy, HOST, version).await;
            let (tx, body) = body::channel();
            let req = conn
                .request("POST", HOST, &format!("/upload?v={version:?}&cut={cut}"))
                .header("x-api-key", own.dummy())
                .header("content-type", "application/json")
                .body(body)
                .unwrap();
            let (first, second) = (text[..cut].to_string(), text[cut..].to_string());
            tokio::spawn(async move {
                let _ = tx.send(Bytes::from(first)).await;
                tokio::task::yield_now().await;
                let _ = tx.send(Bytes::from(second)).await;
            });
            let (head, answer) = saw.read(conn.send(req).await).await;
            assert_eq!(
                head.status,
                StatusCode::FORBIDDEN,
                "{version:?} {cut}: {answer}"
            );
            let why = head.headers["x-keygate-reason"].to_str().unwrap();
            assert!(
                why.starts_with(
                    "tripwire: the dummy credential of secret `body-other` was in a request body"
                ),
                "{why}"
            );
        }
    }
    let event = stack
        .proxy
        .event("request", |e| e["secret"] == "body-other")
        .await;
    assert!(reason(&event).starts_with("tripwire"), "{event}");
    assert_eq!(event["status"], 403);
    assert_no_leak(own.real(), &stack.proxy, &saw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_body_and_the_hosts_own_dummy_in_a_body_go_up_whole() {
    let own = TestSecret::new("body-own2", &[HOST]);
    let other = TestSecret::new("body-other2", &["api.body-b.test"]);
    let stack = Stack::start(TestPki::new(), HOST, Alpn::H2AndHttp1, |b| {
        b.secret(&own).secret(&other)
    })
    .await;
    let mut saw = ClientSaw::default();
    for version in [Version::HTTP_11, Version::HTTP_2] {
        let mut conn = Conn::open(&stack.proxy, HOST, version).await;
        // The host's own dummy in the body is no exfiltration: it goes up as it is.
        let text = format!("{{\"note\":\"{}\"}} and a partial keygate-d", own.dummy());
        let req = conn
            .request("POST", HOST, "/upload")
            .header("x-api-key", own.dummy())
            .body(body::full(text.clone()))
            .unwrap();
        let (head, answer) = saw.read(conn.send(req).await).await;
        assert_eq!(head.status, StatusCode::OK, "{answer}");
        let got: serde_json::Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(got["body_len"], text.len(), "every byte went up: {answer}");
    }
    assert_no_leak(own.real(), &stack.proxy, &saw);
}
