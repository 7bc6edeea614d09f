//! Issue 3: the credential swap on intercepted connections. What the upstream received
//! is read from its own record (a reflected body reaches the client scrubbed), and every
//! test ends with the leak check.

use base64::Engine;
use http::{StatusCode, Version};

use crate::support::api::Alpn;
use crate::support::bin;
use crate::support::body;
use crate::support::client::{self, echoed_headers, proxy_http1, send};
use crate::support::intercepted::Conn;
use crate::support::leak::{ClientSaw, assert_no_leak};
use crate::support::pki::TestPki;
use crate::support::proxy::ProxyBuilder;
use crate::support::secret::TestSecret;
use crate::support::stack::Stack;
use crate::support::upstream::HttpUpstream;

const HOST: &str = "api.demo.test";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dummy_in_headers_becomes_the_real_value_and_only_one_authorization_goes_up() {
    let secret = TestSecret::new("headers", &[HOST]);
    let (dummy, real) = (secret.dummy(), secret.real());
    let stack = Stack::start(TestPki::new(), HOST, Alpn::H2AndHttp1, |b| {
        b.secret(&secret)
    })
    .await;
    let mut conn = Conn::open(&stack.proxy, HOST, Version::HTTP_11).await;
    let mut saw = ClientSaw::default();

    // The client's own Authorization comes first in one request and last in the other:
    // either way only the swapped one reaches the upstream.
    let bearer = format!("Bearer {dummy}");
    let orders = [
        ["Bearer client-own-token", bearer.as_str()],
        [bearer.as_str(), "Bearer client-own-token"],
    ];
    for (i, order) in orders.iter().enumerate() {
        let req = conn
            .request("GET", HOST, &format!("/v1/models/{i}?limit=5"))
            .header("x-api-key", dummy)
            .header("authorization", order[0])
            .header("authorization", order[1])
            .header("x-other", "untouched-value")
            .header("x-request-id", "req-0123")
            .body(body::empty())
            .unwrap();
        let resp = conn.send(req).await;
        let (head, echo) = saw.read(resp).await;
        assert_eq!(head.status, StatusCode::OK, "{echo}");

        let seen = &stack.upstream.seen()[i];
        assert_eq!(seen.target, format!("/v1/models/{i}?limit=5"));
        assert_eq!(seen.header("x-api-key"), [real]);
        assert_eq!(seen.header("authorization"), [format!("Bearer {real}")]);
        assert_eq!(seen.header("x-other"), ["untouched-value"]);
        assert_eq!(seen.header("x-request-id"), ["req-0123"]);

        // The upstream reflected what it got; the client reads the dummy in its place.
        let echo: serde_json::Value = serde_json::from_str(&echo).unwrap();
        assert_eq!(echoed_headers(&echo, "x-api-key"), [dummy]);
        assert_eq!(echoed_headers(&echo, "authorization"), [bearer.as_str()]);
        let reflected = head.headers["x-echo"].to_str().unwrap();
        assert!(reflected.contains(&bearer), "{reflected}");
    }

    drop(conn);
    let event = stack
        .proxy
        .event("request", |e| e["path"] == "/v1/models/1")
        .await;
    assert_eq!(event["decision"], "allow", "{event}");
    assert_eq!(event["secret"], "headers", "{event}");
    assert_eq!(event["status"], 200);
    assert_eq!(event["host"], HOST);
    assert_no_leak(real, &stack.proxy, &saw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dummy_inside_basic_credentials_is_swapped() {
    let secret = TestSecret::new("basic", &[HOST]);
    let stack = Stack::start(TestPki::new(), HOST, Alpn::H2AndHttp1, |b| {
        b.secret(&secret)
    })
    .await;
    let b64 = base64::engine::general_purpose::STANDARD;
    let basic = format!(
        "Basic {}",
        b64.encode(format!("x-access-token:{}", secret.dummy()))
    );
    let mut conn = Conn::open(&stack.proxy, HOST, Version::HTTP_11).await;
    let resp = conn
        .send(conn.get(HOST, "/repo.git/info/refs", &[("authorization", &basic)]))
        .await;
    let mut saw = ClientSaw::default();
    let (head, _) = saw.read(resp).await;
    assert_eq!(head.status, StatusCode::OK);

    let seen = stack.upstream.only();
    let sent = seen.header("authorization");
    assert_eq!(sent.len(), 1, "{sent:?}");
    let encoded = sent[0].strip_prefix("Basic ").expect("still Basic");
    let decoded = String::from_utf8(b64.decode(encoded).expect("base64")).unwrap();
    assert_eq!(decoded, format!("x-access-token:{}", secret.real()));
    drop(conn);
    let event = stack
        .proxy
        .event("request", |e| e["secret"] == "basic")
        .await;
    assert_eq!(event["path"], "/repo.git/info/refs");
    assert_no_leak(secret.real(), &stack.proxy, &saw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_query_is_swapped_only_when_the_secret_says_query_true() {
    for query in [true, false] {
        let secret = TestSecret::new(if query { "query-on" } else { "query-off" }, &[HOST]);
        let secret = if query { secret.query() } else { secret };
        let stack = Stack::start(TestPki::new(), HOST, Alpn::H2AndHttp1, |b| {
            b.secret(&secret)
        })
        .await;
        let mut conn = Conn::open(&stack.proxy, HOST, Version::HTTP_2).await;
        let target = format!("/v1/search?key={}&q=rust", secret.dummy());
        let resp = conn.send(conn.get(HOST, &target, &[])).await;
        let mut saw = ClientSaw::default();
        let (head, echo) = saw.read(resp).await;
        assert_eq!(head.status, StatusCode::OK, "{echo}");

        let seen = stack.upstream.only();
        if query {
            assert_eq!(
                seen.target,
                format!("/v1/search?key={}&q=rust", secret.real())
            );
            // Reflected in the body and a header, the query reads back with the dummy.
            assert!(echo.contains(&target), "{echo}");
            assert!(!head.headers["x-echo"].to_str().unwrap().contains("sk-real"));
        } else {
            assert_eq!(seen.target, target, "query: false leaves the query alone");
        }
        drop(conn);
        let event = stack
            .proxy
            .event("request", |e| e["path"] == "/v1/search")
            .await;
        assert_eq!(event["decision"], "allow");
        assert_eq!(event["secret"].as_str(), query.then_some(secret.name()));
        let audit = serde_json::to_string(&stack.proxy.events()).unwrap();
        assert!(!audit.contains("q=rust"), "a query string in the audit log");
        assert_no_leak(secret.real(), &stack.proxy, &saw);
    }
}

/// h2 lets a client split `cookie` into several fields (RFC 9113 §8.2.3), and clients
/// do: the swap must replace the dummy where it is, not drop the other crumbs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_values_of_a_header_that_carries_the_dummy_are_kept() {
    let secret = TestSecret::new("cookie", &[HOST]);
    let stack = Stack::start(TestPki::new(), HOST, Alpn::H2AndHttp1, |b| {
        b.secret(&secret)
    })
    .await;
    let mut conn = Conn::open(&stack.proxy, HOST, Version::HTTP_2).await;
    let crumb = format!("api_key={}", secret.dummy());
    let req = conn
        .request("GET", HOST, "/v1/cookies")
        .header("cookie", "session=abc123")
        .header("cookie", &crumb)
        .header("cookie", "theme=dark")
        .body(body::empty())
        .unwrap();
    let resp = conn.send(req).await;
    let mut saw = ClientSaw::default();
    assert_eq!(saw.read(resp).await.0.status, StatusCode::OK);

    let seen = stack.upstream.only();
    let crumbs: Vec<&str> = seen
        .header("cookie")
        .into_iter()
        .flat_map(|v| v.split("; "))
        .collect();
    let swapped = format!("api_key={}", secret.real());
    assert!(crumbs.contains(&swapped.as_str()), "{crumbs:?}");
    assert!(
        crumbs.contains(&"session=abc123"),
        "a crumb was dropped: {crumbs:?}"
    );
    assert!(
        crumbs.contains(&"theme=dark"),
        "a crumb was dropped: {crumbs:?}"
    );
    drop(conn);
    assert_no_leak(secret.real(), &stack.proxy, &saw);
}

/// A hyper client speaking `client` to keygate, against an upstream offering `alpn`.
async fn swap_with_hyper(client: Version, alpn: Alpn) {
    let secret = TestSecret::new("versions", &[HOST]);
    let stack = Stack::start(TestPki::new(), HOST, alpn, |b| b.secret(&secret)).await;
    let mut conn = Conn::open(&stack.proxy, HOST, client).await;
    let resp = conn
        .send(conn.get(HOST, "/v1/hyper", &[("x-api-key", secret.dummy())]))
        .await;
    assert_eq!(resp.version(), client);
    let mut saw = ClientSaw::default();
    let (head, body) = saw.read(resp).await;
    assert_eq!(head.status, StatusCode::OK, "{body}");

    let seen = stack.upstream.only();
    assert_eq!(
        seen.header("x-api-key"),
        [secret.real()],
        "{client:?}/{alpn:?}"
    );
    let expected = match alpn {
        Alpn::H2AndHttp1 => ("h2", Version::HTTP_2),
        Alpn::Http1Only => ("http/1.1", Version::HTTP_11),
    };
    assert_eq!(stack.upstream.negotiated(), [expected.0]);
    assert_eq!(seen.version, expected.1, "upstream protocol");
    drop(conn);
    assert_no_leak(secret.real(), &stack.proxy, &saw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hyper_h1_and_h2_clients_get_the_swap_whatever_the_upstream_speaks() {
    for client in [Version::HTTP_11, Version::HTTP_2] {
        for alpn in [Alpn::H2AndHttp1, Alpn::Http1Only] {
            swap_with_hyper(client, alpn).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_http1_and_http2_through_keygate_get_the_swap() {
    for alpn in [Alpn::H2AndHttp1, Alpn::Http1Only] {
        for (flag, version) in [("--http1.1", "1.1"), ("--http2", "2")] {
            let secret = TestSecret::new("curl", &[HOST]);
            let stack = Stack::start(TestPki::new(), HOST, alpn, |b| b.secret(&secret)).await;
            let ca = stack.proxy.ca().pem_path();
            let proxy = format!("http://{}", stack.proxy.addr);
            let header = format!("x-api-key: {}", secret.dummy());
            let out = tokio::task::spawn_blocking(move || {
                let mut cmd = bin::curl(&ca);
                cmd.args(["--proxy", &proxy, flag, "--header", &header])
                    .args(["--write-out", "\n%{http_code} %{http_version}"])
                    .arg(format!("https://{HOST}/v1/curl?via=curl"));
                bin::run(cmd)
            })
            .await
            .unwrap();
            assert_eq!(out.code, Some(0), "{out:?}");
            let (body, status) = out.stdout.rsplit_once('\n').unwrap();
            assert_eq!(status, format!("200 {version}"), "{flag} {alpn:?}: {out:?}");

            let seen = stack.upstream.only();
            assert_eq!(seen.header("x-api-key"), [secret.real()]);
            assert_eq!(seen.target, "/v1/curl?via=curl");
            let echo: serde_json::Value = serde_json::from_str(body).unwrap();
            assert_eq!(echoed_headers(&echo, "x-api-key"), [secret.dummy()]);
            let mut saw = ClientSaw::default();
            saw.text(out.stdout);
            saw.text(out.stderr);
            stack
                .proxy
                .event("request", |e| e["path"] == "/v1/curl")
                .await;
            assert_no_leak(secret.real(), &stack.proxy, &saw);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_privilege_refuses_the_dummy_outside_its_methods_and_paths() {
    let secret = TestSecret::new("scoped", &[HOST])
        .methods(&["POST"])
        .paths(&["/v1/messages*"]);
    let stack = Stack::start(TestPki::new(), HOST, Alpn::H2AndHttp1, |b| {
        b.secret(&secret)
    })
    .await;
    let mut conn = Conn::open(&stack.proxy, HOST, Version::HTTP_11).await;
    let mut saw = ClientSaw::default();
    let key = ("x-api-key", secret.dummy());

    let ok = conn
        .request("POST", HOST, "/v1/messages")
        .header(key.0, key.1);
    let resp = conn.send(ok.body(body::full("{}")).unwrap()).await;
    let (head, _) = saw.read(resp).await;
    assert_eq!(head.status, StatusCode::OK);
    let seen = stack.upstream.only();
    assert_eq!(
        (seen.method.as_str(), seen.target.as_str()),
        ("POST", "/v1/messages")
    );
    assert_eq!(seen.header("x-api-key"), [secret.real()]);

    for (method, path) in [("GET", "/v1/messages"), ("POST", "/v1/files")] {
        let req = conn.request(method, HOST, path).header(key.0, key.1);
        let resp = conn.send(req.body(body::empty()).unwrap()).await;
        let (head, text) = saw.read(resp).await;
        assert_eq!(head.status, StatusCode::FORBIDDEN, "{method} {path}");
        let reason = head.headers["x-keygate-reason"].to_str().unwrap();
        assert!(reason.starts_with("least-privilege"), "{reason}");
        assert!(text.contains("methods"), "the body says why: {text}");
        let event = stack
            .proxy
            .event("request", |e| e["method"] == method && e["path"] == path)
            .await;
        assert_eq!(event["decision"], "deny");
        assert_eq!(event["status"], 403);
    }
    // A path the globs match but the upstream may resolve elsewhere (RFC 3986 dot
    // segments, percent-encoded, behind an encoded slash, or Tomcat's `..;`) never
    // gets the secret.
    for path in [
        "/v1/messages/../../admin",
        "/v1/messages/./../admin",
        "/v1/messages/%2e%2e/%2E%2E/admin",
        "/v1/messages/.%2e/admin",
        "/v1/messages%2f..%2f..%2fadmin",
        "/v1/messages%5c..%5cadmin",
        "/v1/messages/..;/admin",
        "/v1/messages/%252e%252e/admin",
    ] {
        let req = conn.request("POST", HOST, path).header(key.0, key.1);
        let resp = conn.send(req.body(body::empty()).unwrap()).await;
        let (head, text) = saw.read(resp).await;
        assert_eq!(head.status, StatusCode::FORBIDDEN, "POST {path}: {text}");
        let reason = head.headers["x-keygate-reason"].to_str().unwrap();
        assert!(reason.starts_with("least-privilege"), "{reason}");
        assert!(text.contains("dot segment"), "the body says why: {text}");
    }
    assert_eq!(
        stack.upstream.seen().len(),
        1,
        "refused requests never left"
    );
    // Dots inside a segment are nothing special.
    let req = conn
        .request("POST", HOST, "/v1/messages/v1..2/.well")
        .header(key.0, key.1);
    let resp = conn.send(req.body(body::empty()).unwrap()).await;
    assert_eq!(saw.read(resp).await.0.status, StatusCode::OK);
    assert_eq!(stack.upstream.seen().len(), 2);
    drop(conn);
    assert_no_leak(secret.real(), &stack.proxy, &saw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_to_a_secret_host_never_gets_the_secret() {
    let secret = TestSecret::new("plain", &[HOST]);
    let plain = HttpUpstream::start().await;
    let proxy = ProxyBuilder::new()
        .secret(&secret)
        .resolve("api.demo.test:80", plain.addr)
        .start()
        .await;

    let mut sender = proxy_http1(proxy.addr).await;
    let bearer = format!("Bearer {}", secret.dummy());
    let req = http::Request::get("http://api.demo.test/v1/plain")
        .header("host", HOST)
        .header("authorization", &bearer)
        .body(body::empty())
        .unwrap();
    let resp = send(&mut sender, req).await;
    let mut saw = ClientSaw::default();
    saw.head(&resp);
    assert_eq!(resp.status(), StatusCode::OK);
    let echo = client::json(resp).await;
    saw.text(echo.to_string());
    assert_eq!(echoed_headers(&echo, "authorization"), [bearer.as_str()]);
    assert_eq!(plain.next_arrival().await, "/v1/plain");
    let event = proxy.event("request", |e| e["path"] == "/v1/plain").await;
    assert_eq!(event["decision"], "allow");
    assert!(event["secret"].is_null(), "{event}");
    assert_no_leak(secret.real(), &proxy, &saw);
}
