//! Issue 14: compressed responses from bound hosts. keygate decodes gzip, deflate (zlib
//! and raw), br, zstd and stacks of them as a stream, scrubs the decoded body and sends
//! it without `Content-Encoding`; it refuses (502 `undecodable-response`) a body it
//! cannot decode, never passing it unscrubbed; it cuts a decompression bomb off; and it
//! asks bound hosts only for codings it decodes. Hosts without a bound secret are left
//! alone.

use http::{StatusCode, Version};
use http_body_util::BodyExt;

use crate::support::api::Alpn;
use crate::support::client::body_bytes;
use crate::support::intercepted::Conn;
use crate::support::leak::{ClientSaw, assert_no_leak};
use crate::support::pki::TestPki;
use crate::support::proxy::{ProxyBuilder, reason};
use crate::support::raw::RawUpstream;
use crate::support::secret::TestSecret;
use crate::support::stack::Stack;
use crate::support::{compress, within};

const HOST: &str = "api.demo.test";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_bodies_reach_the_client_decoded_and_scrubbed() {
    for version in [Version::HTTP_11, Version::HTTP_2] {
        let secret = TestSecret::new("compressed", &[HOST]);
        let (dummy, real) = (secret.dummy(), secret.real());
        let stack = Stack::start(TestPki::new(), HOST, Alpn::H2AndHttp1, |b| {
            b.secret(&secret)
        })
        .await;
        let mut conn = Conn::open(&stack.proxy, HOST, version).await;
        let mut saw = ClientSaw::default();
        for mode in ["gzip", "deflate", "rawdeflate", "br", "zstd", "gzip-br"] {
            let headers = [
                ("x-api-key", dummy),
                ("x-reflect", dummy),
                ("accept-encoding", "gzip, deflate, br, zstd"),
            ];
            let target = format!("/reflect?mode={mode}");
            let resp = conn.send(conn.get(HOST, &target, &headers)).await;
            let (head, body) = saw.read(resp).await;
            let what = format!("{mode} {version:?}");
            assert_eq!(head.status, StatusCode::OK, "{what}: {body}");
            assert!(head.headers.get("content-encoding").is_none(), "{what}");
            assert!(head.headers.get("content-length").is_none(), "{what}");
            assert_eq!(head.headers["x-reflected"], dummy, "{what}");
            assert_eq!(body, format!("before:{dummy}:after\n"), "{what}");
        }
        for seen in stack.upstream.seen() {
            assert_eq!(seen.header("x-reflect"), [real], "the upstream had it");
        }
        drop(conn);
        assert_no_leak(real, &stack.proxy, &saw);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_is_asked_only_for_codings_keygate_decodes() {
    let secret = TestSecret::new("accept", &[HOST]);
    let stack = Stack::start(TestPki::new(), HOST, Alpn::H2AndHttp1, |b| {
        b.secret(&secret)
    })
    .await;
    let mut conn = Conn::open(&stack.proxy, HOST, Version::HTTP_2).await;
    let mut saw = ClientSaw::default();
    let asks = [
        (
            "br;q=1.0, zstd;q=0.9, gzip;q=0.5, compress, *;q=0.1",
            "br;q=1.0, gzip;q=0.5",
        ),
        ("zstd", "identity"),
    ];
    for (sent, expected) in asks {
        let headers = [("x-api-key", secret.dummy()), ("accept-encoding", sent)];
        let resp = conn.send(conn.get(HOST, "/echo", &headers)).await;
        saw.read(resp).await;
        let seen = stack.upstream.seen();
        assert_eq!(seen.last().unwrap().header("accept-encoding"), [expected]);
    }
    let resp = conn
        .send(conn.get(HOST, "/echo", &[("x-api-key", secret.dummy())]))
        .await;
    saw.read(resp).await;
    let seen = stack.upstream.seen();
    assert_eq!(
        seen.last().unwrap().header("accept-encoding"),
        ["identity"],
        "no Accept-Encoding means any coding: keygate asks for identity"
    );
    drop(conn);
    assert_no_leak(secret.real(), &stack.proxy, &saw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_or_empty_coding_is_refused_and_nothing_of_the_body_passes() {
    let secret = TestSecret::new("undecodable", &[HOST]);
    let (dummy, real) = (secret.dummy(), secret.real());
    let stack = Stack::start(TestPki::new(), HOST, Alpn::H2AndHttp1, |b| {
        b.secret(&secret)
    })
    .await;
    let mut saw = ClientSaw::default();
    for version in [Version::HTTP_11, Version::HTTP_2] {
        let mut conn = Conn::open(&stack.proxy, HOST, version).await;
        for (mode, why) in [("unknown", "`compress`"), ("emptycoding", "empty")] {
            let headers = [("x-api-key", dummy), ("x-reflect", dummy)];
            let target = format!("/reflect?mode={mode}");
            let resp = conn.send(conn.get(HOST, &target, &headers)).await;
            let (head, body) = saw.read(resp).await;
            let what = format!("{mode} {version:?}");
            assert_eq!(head.status, StatusCode::BAD_GATEWAY, "{what}");
            let reason = head.headers["x-keygate-reason"].to_str().unwrap();
            assert!(
                reason.starts_with("undecodable-response: "),
                "{what}: {reason}"
            );
            assert!(reason.contains(why), "{what}: {reason}");
            assert!(
                !body.contains("before:"),
                "{what}: nothing of the body: {body}"
            );
            assert!(head.headers.get("x-reflected").is_none(), "{what}");
        }
    }
    let refused = stack
        .proxy
        .events_n("request", 4, |e| e["status"] == 502)
        .await;
    for event in refused {
        assert!(
            reason(&event).starts_with("undecodable-response"),
            "{event}"
        );
        assert_eq!(event["decision"], "deny", "{event}");
    }
    assert_no_leak(real, &stack.proxy, &saw);
}

/// hyper's client undoes only the chunked framing of `Transfer-Encoding: gzip, chunked`
/// and leaves the header, which is hop-by-hop: passed on, the client would get raw gzip
/// with no label at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_coding_other_than_chunked_is_refused() {
    let secret = TestSecret::new("transfer", &[HOST]);
    let pki = TestPki::new();
    let dir = tempfile::tempdir().expect("temporary directory");
    let root = pki.write_root(dir.path());
    let packed = compress::gzip(format!("before:{}:after\n", secret.real()).as_bytes());
    let mut response = format!(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n{:x}\r\n",
        packed.len()
    )
    .into_bytes();
    response.extend_from_slice(&packed);
    response.extend_from_slice(b"\r\n0\r\n\r\n");
    let upstream = RawUpstream::tls(&pki, &[HOST], response).await;
    let proxy = ProxyBuilder::new()
        .resolve(&format!("{HOST}:443"), upstream.addr)
        .upstream_ca(&root)
        .secret(&secret)
        .start()
        .await;
    let mut saw = ClientSaw::default();
    for version in [Version::HTTP_11, Version::HTTP_2] {
        let mut conn = Conn::open(&proxy, HOST, version).await;
        let resp = conn
            .send(conn.get(HOST, "/", &[("x-api-key", secret.dummy())]))
            .await;
        let (head, body) = saw.read(resp).await;
        assert_eq!(head.status, StatusCode::BAD_GATEWAY, "{version:?}: {body}");
        let reason = head.headers["x-keygate-reason"].to_str().unwrap();
        assert!(
            reason.contains("Transfer-Encoding `gzip, chunked`"),
            "{reason}"
        );
        assert!(!body.contains("before:"), "{body}");
    }
    assert!(
        upstream.heads()[0].contains(&format!("x-api-key: {}", secret.real())),
        "the request went up"
    );
    assert_no_leak(secret.real(), &proxy, &saw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decompression_bomb_and_corrupt_data_are_cut_off_with_a_reason() {
    let secret = TestSecret::new("bomb", &[HOST]);
    let stack = Stack::start(TestPki::new(), HOST, Alpn::H2AndHttp1, |b| {
        b.secret(&secret)
    })
    .await;
    let mut saw = ClientSaw::default();
    let cases = [
        ("/bomb", "limits.max_decoded_ratio"),
        ("/reflect?mode=corrupt", "gzip data is corrupt"),
    ];
    for version in [Version::HTTP_11, Version::HTTP_2] {
        for (target, _) in cases {
            let mut conn = Conn::open(&stack.proxy, HOST, version).await;
            let headers = [("x-api-key", secret.dummy()), ("x-reflect", secret.dummy())];
            // The head goes out with the first decoded bytes: a body corrupt from its
            // first chunk takes the head with it (the stream or connection just ends).
            let Ok(resp) = conn.try_send(conn.get(HOST, target, &headers)).await else {
                continue;
            };
            saw.head(&resp);
            assert_eq!(resp.status(), StatusCode::OK, "{target} {version:?}");
            assert!(resp.headers().get("content-encoding").is_none());
            let body = within("the cut-off body", resp.into_body().collect()).await;
            assert!(
                body.is_err(),
                "{target} {version:?}: the body ends with an error"
            );
        }
    }
    for (target, why) in cases {
        let path = target.split('?').next().unwrap();
        let events = stack
            .proxy
            .events_n("request", 2, |e| {
                e["path"] == path && reason(e).contains(why)
            })
            .await;
        for event in events {
            let text = reason(&event);
            assert!(text.contains("ended early: undecodable-response"), "{text}");
            let down = event["bytes_down"].as_u64().unwrap();
            assert!(
                down < 32 * 1024 * 1024,
                "{target}: cut off early ({down} bytes)"
            );
        }
    }
    assert_no_leak(secret.real(), &stack.proxy, &saw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gzip_event_stream_arrives_event_by_event() {
    for version in [Version::HTTP_11, Version::HTTP_2] {
        let secret = TestSecret::new("gzip-events", &[HOST]);
        let stack = Stack::start(TestPki::new(), HOST, Alpn::H2AndHttp1, |b| {
            b.secret(&secret)
        })
        .await;
        let mut conn = Conn::open(&stack.proxy, HOST, version).await;
        let headers = [("x-api-key", secret.dummy()), ("accept-encoding", "gzip")];
        let resp = conn
            .send(conn.get(HOST, "/sse?coding=gzip", &headers))
            .await;
        let mut saw = ClientSaw::default();
        saw.head(&resp);
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(resp.headers().get("content-encoding").is_none());
        let mut body = resp.into_body();
        let mut got = Vec::new();
        // Event two is held upstream until released: event one must come alone.
        while !got.ends_with(b"data: one\n\n") {
            let frame = within("event one", body.frame()).await;
            let frame = frame.expect("event one before the end").expect("frame");
            got.extend_from_slice(frame.data_ref().map_or(&[][..], |d| &d[..]));
        }
        assert_eq!(got, b"data: one\n\n", "{version:?}");
        stack.upstream.release();
        let rest = within("the rest", body.collect()).await.expect("the rest");
        got.extend_from_slice(&rest.to_bytes());
        assert_eq!(got, b"data: one\n\ndata: two\n\n", "{version:?}");
        saw.text(String::from_utf8_lossy(&got).into_owned());
        drop(conn);
        assert_no_leak(secret.real(), &stack.proxy, &saw);
    }
}

/// A host without a bound secret is not scrubbed, so not decoded either: with
/// `intercept: all` its compressed body and its `Accept-Encoding` pass as they are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_without_a_bound_secret_keep_their_compressed_bodies() {
    let stack = Stack::start(TestPki::new(), HOST, Alpn::H2AndHttp1, |b| {
        b.intercept_all().allow(HOST)
    })
    .await;
    let mut conn = Conn::open(&stack.proxy, HOST, Version::HTTP_2).await;
    let headers = [("x-reflect", "plain-value"), ("accept-encoding", "zstd")];
    let resp = conn
        .send(conn.get(HOST, "/reflect?mode=br", &headers))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-encoding"], "br");
    let body = body_bytes(resp).await;
    assert_eq!(body, compress::br(b"before:plain-value:after\n"));
    assert_eq!(stack.upstream.only().header("accept-encoding"), ["zstd"]);
}
