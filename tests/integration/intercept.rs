//! Issue 3: intercepted connections: the leaf keygate presents, what is intercepted and
//! what is tunnelled, upstream connection reuse, and the checks that refuse a request
//! before it can carry a secret anywhere (tripwire, host consistency).

use http::{StatusCode, Version};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::support::ClosedPort;
use crate::support::api::Alpn;
use crate::support::body;
use crate::support::client::{self, proxy_http1, send};
use crate::support::intercepted::{Conn, open_tls, tls_through};
use crate::support::leak::{ClientSaw, assert_no_leak};
use crate::support::pki::TestPki;
use crate::support::proxy::{ProxyBuilder, TestProxy};
use crate::support::secret::TestSecret;
use crate::support::stack::Stack;
use crate::support::upstream::HttpUpstream;
use crate::support::within;

const HOST: &str = "api.demo.test";
const OTHER: &str = "other.demo.test";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leaf_names_the_connect_host_only_and_is_signed_by_keygates_ca() {
    let named = TestSecret::new("leaf-name", &[HOST]);
    let ip = TestSecret::new("leaf-ip", &["127.0.0.1"]);
    // Nothing is requested, so no upstream is contacted; were one ever, it would be a
    // closed loopback port.
    let closed = ClosedPort::new();
    let proxy = ProxyBuilder::new()
        .secret(&named)
        .secret(&ip)
        .resolve("api.demo.test:443", closed.addr)
        .resolve("127.0.0.1:443", closed.addr)
        .start()
        .await;
    let ca_der = proxy.ca().der.clone();
    let (_, ca) = X509Certificate::from_der(&ca_der).expect("CA certificate");

    for (target, expected) in [
        ("api.demo.test:443", GeneralName::DNSName(HOST)),
        ("127.0.0.1:443", GeneralName::IPAddress(&[127, 0, 0, 1])),
    ] {
        // The client trusts keygate's CA only, so the handshake itself proves the chain.
        let tls = open_tls(&proxy, target, &[b"http/1.1"]).await;
        let chain = tls.get_ref().1.peer_certificates().expect("peer chain");
        let (_, leaf) = X509Certificate::from_der(&chain[0]).expect("leaf certificate");
        let san = leaf
            .subject_alternative_name()
            .expect("SAN parses")
            .expect("SAN present");
        assert_eq!(san.value.general_names, [expected], "{target}");
        assert_eq!(leaf.issuer(), ca.subject(), "{target}");
        leaf.verify_signature(Some(ca.public_key()))
            .expect("signed by keygate's CA");
        assert_ne!(
            leaf.public_key().raw,
            ca.public_key().raw,
            "the leaf has a key of its own"
        );
        assert!(!leaf.is_ca(), "{target}");
        let cn: Vec<_> = leaf.subject().iter_common_name().collect();
        if target.starts_with("127.") {
            assert!(cn.is_empty(), "an IP never goes in the CN");
        } else {
            assert_eq!(cn.len(), 1);
            assert_eq!(cn[0].as_str().unwrap(), HOST);
        }
        let validity = leaf.validity();
        let lifetime = validity.not_after.timestamp() - validity.not_before.timestamp();
        assert!(lifetime <= 30 * 24 * 3600, "valid {lifetime}s");
        assert!(validity.is_valid(), "{target}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let backdated = now - validity.not_before.timestamp();
        assert!(
            (3500..4000).contains(&backdated),
            "backdated about an hour: {backdated}s"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intercept_all_terminates_tls_for_an_allowed_host_without_a_secret() {
    let stack = Stack::start(TestPki::new(), OTHER, Alpn::H2AndHttp1, |b| {
        b.allow(OTHER).intercept_all()
    })
    .await;
    let target = "other.demo.test:443";

    // The upstream's own root does not validate keygate's leaf.
    let refused = tls_through(&stack.proxy, target, &stack.pki.root_der(), &[b"http/1.1"]).await;
    assert!(
        refused.is_err(),
        "intercepted: the upstream's root must not verify"
    );

    let mut conn = Conn::open(&stack.proxy, OTHER, Version::HTTP_11).await;
    let resp = conn.send(conn.get(OTHER, "/seen", &[])).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(stack.upstream.only().target, "/seen");
    let connect = stack
        .proxy
        .event("connect", |e| e["decision"] == "intercept")
        .await;
    assert_eq!(connect["host"], OTHER);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_a_host_without_a_secret_is_tunnelled_not_intercepted() {
    // A secret elsewhere gives the proxy its CA, as `keygate start` always has one.
    let secret = TestSecret::new("elsewhere", &[HOST]);
    let stack = Stack::start(TestPki::new(), OTHER, Alpn::H2AndHttp1, |b| {
        b.allow(OTHER).secret(&secret)
    })
    .await;
    let target = "other.demo.test:443";

    let keygate_ca = stack.proxy.ca().der.clone();
    let refused = tls_through(&stack.proxy, target, &keygate_ca, &[b"http/1.1"]).await;
    assert!(refused.is_err(), "tunnelled: keygate's CA must not verify");

    let tls = tls_through(&stack.proxy, target, &stack.pki.root_der(), &[b"http/1.1"])
        .await
        .expect("the upstream's own certificate through the tunnel");
    let mut conn = Conn::over(tls, Version::HTTP_11).await;
    let resp = conn.send(conn.get(OTHER, "/tunnelled", &[])).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let seen = stack.upstream.seen();
    assert_eq!(seen.last().expect("a request").target, "/tunnelled");
    let connect = stack
        .proxy
        .event("connect", |e| e["decision"] == "allow")
        .await;
    assert_eq!(connect["host"], OTHER);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_share_one_pooled_upstream_connection_across_client_connections() {
    let secret = TestSecret::new("pool", &[HOST]);
    let stack = Stack::start(TestPki::new(), HOST, Alpn::H2AndHttp1, |b| {
        b.secret(&secret)
    })
    .await;
    let mut saw = ClientSaw::default();
    let key = [("x-api-key", secret.dummy())];

    let mut first = Conn::open(&stack.proxy, HOST, Version::HTTP_11).await;
    for path in ["/one", "/two"] {
        let resp = first.send(first.get(HOST, path, &key)).await;
        assert_eq!(saw.read(resp).await.0.status, StatusCode::OK);
    }
    assert_eq!(
        stack.upstream.handshakes(),
        1,
        "keep-alive: one upstream TLS"
    );

    let mut second = Conn::open(&stack.proxy, HOST, Version::HTTP_11).await;
    let resp = second.send(second.get(HOST, "/three", &key)).await;
    assert_eq!(saw.read(resp).await.0.status, StatusCode::OK);
    assert_eq!(
        stack.upstream.handshakes(),
        1,
        "a second client connection reuses the pooled upstream connection"
    );
    let seen = stack.upstream.seen();
    let targets: Vec<&str> = seen.iter().map(|s| s.target.as_str()).collect();
    assert_eq!(targets, ["/one", "/two", "/three"]);
    for s in &seen {
        assert_eq!(s.header("x-api-key"), [secret.real()]);
    }
    drop((first, second));
    assert_no_leak(secret.real(), &stack.proxy, &saw);
}

/// An upstream that speaks HTTP/1.1 only (it declines h2): after its first answer,
/// through the pool, a client connection's requests go on an upstream connection of its
/// own, kept alive across them (issue 17: no pool checkout per request). Each is still
/// decided, swapped and scrubbed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http1_upstream_keeps_one_connection_per_client_connection() {
    let secret = TestSecret::new("own", &[HOST]);
    let stack = Stack::start(TestPki::new(), HOST, Alpn::Http1Only, |b| b.secret(&secret)).await;
    let mut saw = ClientSaw::default();
    let key = [("x-api-key", secret.dummy())];
    let mut first = Conn::open(&stack.proxy, HOST, Version::HTTP_11).await;
    for path in ["/1", "/2", "/3", "/4"] {
        let resp = first.send(first.get(HOST, path, &key)).await;
        assert_eq!(saw.read(resp).await.0.status, StatusCode::OK);
    }
    assert_eq!(
        stack.upstream.handshakes(),
        2,
        "the pool's connection for the first request, then the client connection's own for the rest"
    );
    let mut second = Conn::open(&stack.proxy, HOST, Version::HTTP_11).await;
    for path in ["/5", "/6", "/7"] {
        let resp = second.send(second.get(HOST, path, &key)).await;
        assert_eq!(saw.read(resp).await.0.status, StatusCode::OK);
    }
    assert_eq!(
        stack.upstream.handshakes(),
        3,
        "the second: the pool's idle connection first, then one of its own"
    );
    // An h2 client's concurrent streams: one on the connection's own, the rest pooled.
    let mut third = Conn::open(&stack.proxy, HOST, Version::HTTP_2).await;
    let resp = third.send(third.get(HOST, "/8", &key)).await;
    assert_eq!(saw.read(resp).await.0.status, StatusCode::OK);
    let Conn::H2(h2) = &third else {
        unreachable!("an h2 connection")
    };
    let sends: Vec<_> = (9..14)
        .map(|i| {
            let (mut sender, req) = (h2.clone(), third.get(HOST, &format!("/{i}"), &key));
            tokio::spawn(async move {
                sender.ready().await.expect("ready");
                sender.send_request(req).await.expect("a response")
            })
        })
        .collect();
    for send in sends {
        let resp = within("a concurrent response", send).await.expect("task");
        assert_eq!(saw.read(resp).await.0.status, StatusCode::OK);
    }
    let seen = stack.upstream.seen();
    assert_eq!(seen.len(), 13);
    for s in &seen {
        assert_eq!(s.header("x-api-key"), [secret.real()]);
    }
    assert!(
        stack.upstream.negotiated().iter().all(|p| p == "http/1.1"),
        "{:?}",
        stack.upstream.negotiated()
    );
    drop((first, second, third));
    assert_no_leak(secret.real(), &stack.proxy, &saw);
}

/// Sends `secret`'s dummy to OTHER on `conn` in a header and in the query; both must be
/// refused by the tripwire, naming the secret.
async fn assert_tripped(conn: &mut Conn, proxy: &TestProxy, secret: &TestSecret) -> ClientSaw {
    let mut saw = ClientSaw::default();
    let in_query = format!("/exfil?k={}", secret.dummy());
    let requests = [
        conn.get(OTHER, "/exfil", &[("x-api-key", secret.dummy())]),
        conn.get(OTHER, &in_query, &[]),
    ];
    for req in requests {
        let resp = conn.send(req).await;
        let (head, text) = saw.read(resp).await;
        assert_eq!(head.status, StatusCode::FORBIDDEN, "{text}");
        let reason = head.headers["x-keygate-reason"].to_str().unwrap();
        assert!(reason.starts_with("tripwire"), "{reason}");
        assert!(reason.contains(secret.name()), "{reason}");
    }
    let event = proxy
        .event("request", |e| {
            e["path"] == "/exfil" && e["secret"] == secret.name()
        })
        .await;
    assert_eq!(event["decision"], "deny", "{event}");
    assert_eq!(event["status"], 403);
    assert_eq!(event["host"], OTHER);
    saw
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dummy_sent_to_a_host_it_is_not_bound_to_trips_the_wire_on_intercepted_tls() {
    let a = TestSecret::new("wire-a", &[HOST]);
    let b = TestSecret::new("wire-b", &[OTHER]);
    // Host B intercepted because of `intercept: all`, then because of its own secret.
    let all = Stack::start(TestPki::new(), OTHER, Alpn::H2AndHttp1, |p| {
        p.secret(&a).allow(OTHER).intercept_all()
    })
    .await;
    let own = Stack::start(TestPki::new(), OTHER, Alpn::H2AndHttp1, |p| {
        p.secret(&a).secret(&b)
    })
    .await;
    for (stack, version) in [(&all, Version::HTTP_11), (&own, Version::HTTP_2)] {
        let mut conn = Conn::open(&stack.proxy, OTHER, version).await;
        let mut saw = assert_tripped(&mut conn, &stack.proxy, &a).await;
        assert!(stack.upstream.seen().is_empty(), "nothing reached host B");
        assert_eq!(stack.upstream.handshakes(), 0, "B was not even contacted");
        if std::ptr::eq(stack, &own) {
            // The connection is still good for B's own secret.
            let resp = conn
                .send(conn.get(OTHER, "/own", &[("x-api-key", b.dummy())]))
                .await;
            assert_eq!(saw.read(resp).await.0.status, StatusCode::OK);
            assert_eq!(stack.upstream.only().header("x-api-key"), [b.real()]);
        }
        drop(conn);
        assert_no_leak(a.real(), &stack.proxy, &saw);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dummy_sent_to_another_host_over_plain_http_trips_the_wire() {
    let a = TestSecret::new("wire-plain", &[HOST]);
    let plain = HttpUpstream::start().await;
    let proxy = ProxyBuilder::new()
        .secret(&a)
        .allow(OTHER)
        .resolve("other.demo.test:80", plain.addr)
        .start()
        .await;
    let mut saw = ClientSaw::default();
    let mut sender = proxy_http1(proxy.addr).await;
    let bearer = format!("Bearer {}", a.dummy());
    let req = http::Request::get("http://other.demo.test/exfil")
        .header("host", OTHER)
        .header("authorization", &bearer)
        .body(body::empty())
        .unwrap();
    let resp = send(&mut sender, req).await;
    saw.head(&resp);
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let reason = resp.headers()["x-keygate-reason"].to_str().unwrap();
    assert!(reason.starts_with("tripwire"), "{reason}");
    saw.text(String::from_utf8_lossy(&client::body_bytes(resp).await).into_owned());
    let event = proxy.event("request", |e| e["host"] == OTHER).await;
    assert_eq!(event["decision"], "deny");
    assert_eq!(event["secret"], "wire-plain");
    assert_eq!(plain.accepted(), 0, "the plain upstream saw no connection");

    // The same host without the dummy is forwarded: the refusal was the dummy's.
    let resp = send(&mut sender, client::get("http://other.demo.test/ok", OTHER)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(plain.next_arrival().await, "/ok");
    assert_no_leak(a.real(), &proxy, &saw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_naming_another_host_than_the_connect_is_421_and_goes_nowhere() {
    let secret = TestSecret::new("fronting", &[HOST]);
    let stack = Stack::start(TestPki::new(), HOST, Alpn::H2AndHttp1, |b| {
        b.secret(&secret).allow(OTHER)
    })
    .await;
    let key = ("x-api-key", secret.dummy());
    let mut saw = ClientSaw::default();

    let mut h1 = Conn::open(&stack.proxy, HOST, Version::HTTP_11).await;
    let absolute = format!("https://{OTHER}/front/absolute");
    let requests = [
        // A Host header naming another host.
        h1.request("GET", OTHER, "/front/host"),
        // An absolute-form target naming another host (the Host header agrees).
        h1.request("GET", HOST, &absolute),
    ];
    for req in requests {
        let resp = h1
            .send(req.header(key.0, key.1).body(body::empty()).unwrap())
            .await;
        let (head, text) = saw.read(resp).await;
        assert_eq!(head.status, StatusCode::MISDIRECTED_REQUEST, "{text}");
        let reason = head.headers["x-keygate-reason"].to_str().unwrap();
        assert!(reason.starts_with("host-mismatch"), "{reason}");
    }
    // h2: an :authority naming another host.
    let mut h2 = Conn::open(&stack.proxy, HOST, Version::HTTP_2).await;
    let resp = h2.send(h2.get(OTHER, "/front/authority", &[key])).await;
    let (head, _) = saw.read(resp).await;
    assert_eq!(head.status, StatusCode::MISDIRECTED_REQUEST);
    let reason = head.headers["x-keygate-reason"].to_str().unwrap();
    assert!(reason.starts_with("host-mismatch"), "{reason}");

    for path in ["/front/host", "/front/absolute", "/front/authority"] {
        let event = stack.proxy.event("request", |e| e["path"] == path).await;
        assert_eq!(event["decision"], "deny", "{event}");
        assert_eq!(event["status"], 421);
    }
    assert!(
        stack.upstream.seen().is_empty(),
        "nothing reached an upstream"
    );
    assert_eq!(stack.upstream.handshakes(), 0);
    drop((h1, h2));
    assert_no_leak(secret.real(), &stack.proxy, &saw);
}
