//! Plain-HTTP forwarding of absolute-form requests: Host from the target, hop-by-hop
//! headers dropped, bodies streamed both ways, keep-alive.

use bytes::Bytes;
use http::Request;
use http_body_util::BodyExt;

use crate::support::body::{self, Fnv, pattern};
use crate::support::client::{self, echoed_headers, get, proxy_http1, send};
use crate::support::proxy::{ProxyBuilder, TestProxy};
use crate::support::upstream::HttpUpstream;
use crate::support::within;

const HOST: &str = "api.test.example";

/// A proxy that forwards `http://api.test.example/...` to `upstream`.
async fn proxy_to(upstream: &HttpUpstream) -> TestProxy {
    ProxyBuilder::new()
        .allow(HOST)
        .resolve("api.test.example:80", upstream.addr)
        .start()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_get_reaches_the_upstream_without_hop_by_hop_headers() {
    let upstream = HttpUpstream::start().await;
    let proxy = proxy_to(&upstream).await;

    let mut sender = proxy_http1(proxy.addr).await;
    let req = Request::get("http://api.test.example/path/x?q=query-value")
        .header("host", HOST)
        .header("connection", "keep-alive, x-hop-only")
        .header("x-hop-only", "must not pass")
        .header("keep-alive", "timeout=5")
        .header("proxy-connection", "keep-alive")
        // "agent-7:hunter2"
        .header("proxy-authorization", "Basic YWdlbnQtNzpodW50ZXIy")
        .header("x-end-to-end", "kept")
        .body(body::empty())
        .unwrap();
    let resp = send(&mut sender, req).await;
    assert_eq!(resp.status(), 200);
    let echo = client::json(resp).await;
    assert_eq!(echo["method"], "GET");
    assert_eq!(echo["uri"], "/path/x?q=query-value", "origin-form upstream");
    assert_eq!(echoed_headers(&echo, "host"), vec![HOST]);
    assert_eq!(echoed_headers(&echo, "x-end-to-end"), vec!["kept"]);
    for hop in [
        "connection",
        "x-hop-only",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
    ] {
        assert!(
            echoed_headers(&echo, hop).is_empty(),
            "{hop} was forwarded: {echo}"
        );
    }

    let event = proxy.event("request", |e| e["host"] == HOST).await;
    assert_eq!(event["decision"], "allow");
    assert_eq!(event["method"], "GET");
    assert_eq!(event["path"], "/path/x", "the query is never logged");
    assert_eq!(event["port"], 80);
    assert_eq!(event["status"], 200);
    assert_eq!(
        event["client"], "agent-7",
        "the proxy-auth username names the client"
    );
    let log = serde_json::to_string(&proxy.events()).unwrap();
    assert!(
        !log.contains("query-value"),
        "query in the audit log: {log}"
    );
    assert!(!log.contains("hunter2"), "password in the audit log: {log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_sees_the_targets_host_on_a_non_default_port() {
    let upstream = HttpUpstream::start().await;
    let proxy = ProxyBuilder::new()
        .allow("api.test.example:8080")
        .resolve("api.test.example:8080", upstream.addr)
        .start()
        .await;
    let mut sender = proxy_http1(proxy.addr).await;
    let resp = send(
        &mut sender,
        get("http://api.test.example:8080/p", "api.test.example:8080"),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let echo = client::json(resp).await;
    assert_eq!(echoed_headers(&echo, "host"), vec!["api.test.example:8080"]);
}

/// The policy checked the request target; a Host header naming another host must not
/// route the request there (domain fronting). Either the target wins or it is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_header_naming_another_host_never_reaches_the_upstream() {
    let upstream = HttpUpstream::start().await;
    let proxy = proxy_to(&upstream).await;
    let mut sender = proxy_http1(proxy.addr).await;
    let resp = send(
        &mut sender,
        get("http://api.test.example/", "evil.test.example"),
    )
    .await;
    if resp.status() == 200 {
        let echo = client::json(resp).await;
        assert_eq!(echoed_headers(&echo, "host"), vec![HOST], "{echo}");
    } else {
        assert!(resp.status().is_client_error(), "{}", resp.status());
        assert_eq!(upstream.accepted(), 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_request_body_streams_to_the_upstream_before_it_ends() {
    const FIRST: usize = 64 * 1024;
    const TOTAL: usize = 3 * 1024 * 1024 + 17;
    let upstream = HttpUpstream::start().await;
    let proxy = proxy_to(&upstream).await;

    let mut sender = proxy_http1(proxy.addr).await;
    let (tx, body) = body::channel();
    let req = Request::post("http://api.test.example/upload-gate")
        .header("host", HOST)
        .body(body)
        .unwrap();
    let response = tokio::spawn(async move { send(&mut sender, req).await });
    tx.send(pattern(0, FIRST)).await.unwrap();
    // The upstream reports the first frame while the rest is not even written: the
    // proxy streams the request body instead of buffering it.
    assert_eq!(upstream.next_arrival().await, "/upload-gate");
    let mut offset = FIRST;
    while offset < TOTAL {
        let len = (256 * 1024).min(TOTAL - offset);
        within("sending the body", tx.send(pattern(offset, len)))
            .await
            .unwrap();
        offset += len;
    }
    drop(tx);
    let resp = within("the upload response", response).await.unwrap();
    assert_eq!(resp.status(), 200);
    let echo = client::json(resp).await;
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["body_len"], TOTAL);
    assert_eq!(echo["body_hash"], Fnv::of_pattern(TOTAL).0);

    let event = proxy.event("request", |e| e["method"] == "POST").await;
    assert_eq!(event["bytes_up"], TOTAL, "{event}");
    assert_eq!(event["status"], 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_response_body_streams_intact() {
    const TOTAL: usize = 4 * 1024 * 1024 + 5;
    let upstream = HttpUpstream::start().await;
    let proxy = proxy_to(&upstream).await;

    let mut sender = proxy_http1(proxy.addr).await;
    let resp = send(
        &mut sender,
        get(&format!("http://api.test.example/bytes/{TOTAL}"), HOST),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let bytes = client::body_bytes(resp).await;
    assert_eq!(bytes.len(), TOTAL);
    let mut hash = Fnv::default();
    hash.update(&bytes);
    assert_eq!(hash, Fnv::of_pattern(TOTAL));

    let event = proxy.event("request", |e| e["host"] == HOST).await;
    assert_eq!(event["bytes_down"], TOTAL, "{event}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_body_reaches_the_client_before_the_upstream_finishes_it() {
    let upstream = HttpUpstream::start().await;
    let proxy = proxy_to(&upstream).await;

    let mut sender = proxy_http1(proxy.addr).await;
    let resp = send(&mut sender, get("http://api.test.example/gate", HOST)).await;
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    // The upstream holds the rest back until the client has the first part: a proxy
    // that buffered the body would deadlock here and time out.
    let first = within("the first part of the body", body.frame())
        .await
        .expect("a frame")
        .expect("a data frame")
        .into_data()
        .expect("data");
    assert_eq!(first, Bytes::from_static(b"first\n"));
    upstream.release();
    let rest = within("the rest of the body", body.collect())
        .await
        .expect("the rest")
        .to_bytes();
    assert_eq!(rest, Bytes::from_static(b"rest\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_requests_on_one_keep_alive_connection() {
    let upstream = HttpUpstream::start().await;
    let proxy = proxy_to(&upstream).await;

    let mut sender = proxy_http1(proxy.addr).await;
    for path in ["/one", "/two"] {
        let resp = send(
            &mut sender,
            get(&format!("http://api.test.example{path}"), HOST),
        )
        .await;
        assert_eq!(resp.status(), 200, "{path}");
        assert_eq!(client::json(resp).await["uri"], path);
    }
    let one = proxy.event("request", |e| e["path"] == "/one").await;
    let two = proxy.event("request", |e| e["path"] == "/two").await;
    assert_eq!(one["client"], two["client"], "one client connection");
}
