//! Issue 3: scrub. An upstream that reflects the real value (a debugging endpoint, an
//! error message quoting the key) must not hand it to the client: keygate puts the dummy
//! back in response headers and in bodies (compressed ones decoded first), even when the
//! value is split across body chunks.

use http::{StatusCode, Version};
use http_body_util::BodyExt;

use crate::support::api::Alpn;
use crate::support::intercepted::Conn;
use crate::support::leak::{ClientSaw, assert_no_leak};
use crate::support::pki::TestPki;
use crate::support::secret::TestSecret;
use crate::support::stack::Stack;
use crate::support::within;

const HOST: &str = "api.demo.test";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reflected_real_value_reaches_the_client_as_the_dummy() {
    for alpn in [Alpn::H2AndHttp1, Alpn::Http1Only] {
        for version in [Version::HTTP_11, Version::HTTP_2] {
            let secret = TestSecret::new("scrub", &[HOST]);
            let (dummy, real) = (secret.dummy(), secret.real());
            let stack = Stack::start(TestPki::new(), HOST, alpn, |b| b.secret(&secret)).await;
            let mut conn = Conn::open(&stack.proxy, HOST, version).await;
            let mut saw = ClientSaw::default();
            // `/reflect` splits the value across two body chunks, `bytewise` sends a
            // chunk per byte; `whole` sends one chunk with a Content-Length (which no
            // longer fits once scrubbed).
            for target in ["/reflect", "/reflect?mode=bytewise", "/reflect?mode=whole"] {
                let headers = [("x-api-key", dummy), ("x-reflect", dummy)];
                let resp = conn.send(conn.get(HOST, target, &headers)).await;
                let (head, body) = saw.read(resp).await;
                let what = format!("{target} {alpn:?} {version:?}");
                assert_eq!(head.status, StatusCode::OK, "{what}");
                assert_eq!(head.headers["x-reflected"], dummy, "{what}");
                assert_eq!(body, format!("before:{dummy}:after\n"), "{what}");
                if let Some(len) = head.headers.get("content-length") {
                    assert_eq!(len.to_str().unwrap(), body.len().to_string(), "{what}");
                }
            }
            for seen in stack.upstream.seen() {
                assert_eq!(seen.header("x-reflect"), [real], "the upstream had it");
            }
            drop(conn);
            assert_no_leak(real, &stack.proxy, &saw);
        }
    }
}

/// A compressed body is decoded to be scrubbed (issue 14; every coding is in
/// `compressed.rs`): the client gets it plain, with the dummy in its headers and body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compressed_body_is_decoded_and_scrubbed_with_its_headers() {
    let secret = TestSecret::new("gzip", &[HOST]);
    let (dummy, real) = (secret.dummy(), secret.real());
    let stack = Stack::start(TestPki::new(), HOST, Alpn::H2AndHttp1, |b| {
        b.secret(&secret)
    })
    .await;
    let mut conn = Conn::open(&stack.proxy, HOST, Version::HTTP_11).await;
    let headers = [("x-api-key", dummy), ("x-reflect", dummy)];
    let resp = conn
        .send(conn.get(HOST, "/reflect?mode=gzip", &headers))
        .await;
    let mut saw = ClientSaw::default();
    let (head, body) = saw.read(resp).await;
    assert_eq!(head.status, StatusCode::OK);
    assert!(
        head.headers.get("content-encoding").is_none(),
        "sent decoded"
    );
    assert_eq!(head.headers["x-reflected"], dummy);
    assert_eq!(body, format!("before:{dummy}:after\n"));
    drop(conn);
    assert_no_leak(real, &stack.proxy, &saw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_value_reflected_in_a_trailer_reaches_the_client_as_the_dummy() {
    let secret = TestSecret::new("trailer", &[HOST]);
    let (dummy, real) = (secret.dummy(), secret.real());
    let stack = Stack::start(TestPki::new(), HOST, Alpn::H2AndHttp1, |b| {
        b.secret(&secret)
    })
    .await;
    let mut conn = Conn::open(&stack.proxy, HOST, Version::HTTP_2).await;
    let headers = [
        ("x-api-key", dummy),
        ("x-reflect", dummy),
        ("te", "trailers"),
    ];
    let resp = conn
        .send(conn.get(HOST, "/reflect?mode=trailer", &headers))
        .await;
    let mut saw = ClientSaw::default();
    saw.head(&resp);
    assert_eq!(resp.status(), StatusCode::OK);
    let collected = within("the body and its trailers", resp.into_body().collect())
        .await
        .expect("body");
    let trailers = collected.trailers().cloned().expect("trailers arrived");
    let body = collected.to_bytes();
    saw.text(String::from_utf8_lossy(&body).into_owned());
    saw.text(format!("{trailers:?}"));
    assert_eq!(stack.upstream.only().header("x-reflect"), [real]);
    assert_eq!(body, format!("before:{dummy}:after\n").as_bytes());
    // Trailers are header fields too (gRPC puts its error message in one).
    assert_eq!(
        trailers["x-reflected-trailer"], dummy,
        "the trailer is scrubbed"
    );
    drop(conn);
    assert_no_leak(real, &stack.proxy, &saw);
}
