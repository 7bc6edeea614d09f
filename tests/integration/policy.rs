//! Host policy through the proxy (SPEC §5): refusals with a reason and advice, deny over
//! allow, wildcard and port rules, and the private-address defence.

use http::{StatusCode, Version};
use keygate::policy::Mode;

use crate::support::api::{Alpn, ApiUpstream};
use crate::support::client::{self, connect, exchange, get, open_tunnel, proxy_http1, send, tls};
use crate::support::intercepted::{Conn, open_tls};
use crate::support::leak::{ClientSaw, assert_no_leak};
use crate::support::pki::TestPki;
use crate::support::proxy::{ProxyBuilder, reason};
use crate::support::secret::TestSecret;
use crate::support::upstream::{HttpUpstream, RecordingUpstream, TlsUpstream};

const HOST: &str = "api.test.example";

/// CONNECT `target` on a new connection and expect a 403 whose reason starts with `code`.
async fn refused(proxy: std::net::SocketAddr, target: &str, code: &str) -> client::Reply {
    let (_stream, reply) = connect(proxy, target).await;
    assert_eq!(reply.status, 403, "CONNECT {target}: {reply:?}");
    assert!(
        reply.reason().starts_with(code),
        "CONNECT {target}: {reply:?}"
    );
    reply
}

/// CONNECT `target`, then a verified TLS handshake for `name` through the tunnel.
async fn tunnels(proxy: std::net::SocketAddr, pki: &TestPki, target: &str, name: &str) {
    let tunnel = open_tunnel(proxy, target).await;
    tls(tunnel, pki, name)
        .await
        .unwrap_or_else(|e| panic!("TLS to {name} through CONNECT {target}: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connect_is_a_403_saying_why_and_how_to_allow_it() {
    let pki = TestPki::new();
    let upstream = TlsUpstream::echo(&pki, &[HOST]).await;
    let proxy = ProxyBuilder::new()
        .allow(HOST)
        .resolve("api.test.example:443", upstream.addr)
        .start()
        .await;

    let (mut stream, reply) = connect(proxy.addr, "blocked.test.example:443").await;
    assert_eq!(reply.status, 403, "{reply:?}");
    assert!(reply.reason().starts_with("not-allowed"), "{reply:?}");
    assert!(
        reply.body.contains("blocked.test.example"),
        "{}",
        reply.body
    );
    assert!(
        reply.body.contains("allow: [\"blocked.test.example\"]")
            && reply.body.contains("--allow 'blocked.test.example'"),
        "the body says how a human allows it: {}",
        reply.body
    );
    let event = proxy
        .event("connect", |e| e["host"] == "blocked.test.example")
        .await;
    assert_eq!(event["decision"], "deny");
    assert_eq!(event["status"], 403);
    assert_eq!(event["port"], 443);
    assert!(reason(&event).starts_with("not-allowed"), "{event}");

    // The same client connection goes on to an allowed host...
    let again = exchange(
        &mut stream,
        &client::connect_request("api.test.example:443"),
        true,
    )
    .await
    .expect("a reply to the second CONNECT on the same connection");
    assert_eq!(again.status, 200, "{again:?}");
    tls(stream, &pki, HOST).await.expect("TLS after a refusal");
    // ...and so does a new one.
    tunnels(proxy.addr, &pki, "api.test.example:443", HOST).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_wins_over_allow() {
    let pki = TestPki::new();
    let upstream = TlsUpstream::echo(&pki, &[HOST, "other.test.example"]).await;
    let plain = HttpUpstream::start().await;
    let proxy = ProxyBuilder::new()
        .allow("*.test.example")
        .allow(HOST)
        .deny(HOST)
        .resolve("api.test.example:443", upstream.addr)
        .resolve("other.test.example:443", upstream.addr)
        .resolve("api.test.example:80", plain.addr)
        .start()
        .await;

    let reply = refused(proxy.addr, "api.test.example:443", "denied").await;
    assert!(reply.reason().contains(HOST), "{reply:?}");
    assert!(reply.body.contains("api.test.example"), "{}", reply.body);
    let mut sender = proxy_http1(proxy.addr).await;
    let resp = send(&mut sender, get("http://api.test.example/x", HOST)).await;
    assert_eq!(resp.status(), 403);
    let why = resp.headers()["x-keygate-reason"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(why.starts_with("denied"), "{why}");
    assert_eq!(
        upstream.accepted() + plain.accepted(),
        0,
        "no upstream was contacted"
    );

    // The wildcard itself works for the hosts it was not overridden for.
    tunnels(
        proxy.addr,
        &pki,
        "other.test.example:443",
        "other.test.example",
    )
    .await;
    let event = proxy
        .event("connect", |e| e["host"] == HOST && e["decision"] == "deny")
        .await;
    assert!(reason(&event).starts_with("denied"), "{event}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_wins_over_the_trusted_list() {
    // A safety net: were the deny ignored, the connection would still stay on loopback.
    let net = RecordingUpstream::start().await;
    let proxy = ProxyBuilder::new()
        .mode(Mode::Trusted)
        .deny("api.github.com")
        .resolve("api.github.com:443", net.addr)
        .start()
        .await;
    refused(proxy.addr, "api.github.com:443", "denied").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wildcard_covers_subdomains_at_any_depth_but_not_the_apex() {
    let pki = TestPki::new();
    let names = ["api.example.test", "deep.api.example.test", "example.test"];
    let upstream = TlsUpstream::echo(&pki, &names).await;
    let mut builder = ProxyBuilder::new().allow("*.example.test");
    for name in names.iter().chain(&["evilexample.test"]) {
        builder = builder.resolve(&format!("{name}:443"), upstream.addr);
    }
    let proxy = builder.start().await;

    tunnels(proxy.addr, &pki, "api.example.test:443", "api.example.test").await;
    tunnels(
        proxy.addr,
        &pki,
        "deep.api.example.test:443",
        "deep.api.example.test",
    )
    .await;
    refused(proxy.addr, "example.test:443", "not-allowed").await;
    refused(proxy.addr, "evilexample.test:443", "not-allowed").await;

    // `.example.test` is the apex and every subdomain.
    let mut builder = ProxyBuilder::new().allow(".example.test");
    for name in names {
        builder = builder.resolve(&format!("{name}:443"), upstream.addr);
    }
    let dotted = builder.start().await;
    tunnels(dotted.addr, &pki, "example.test:443", "example.test").await;
    tunnels(
        dotted.addr,
        &pki,
        "deep.api.example.test:443",
        "deep.api.example.test",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pattern_without_a_port_covers_only_80_and_443() {
    let pki = TestPki::new();
    let upstream = TlsUpstream::echo(&pki, &[HOST]).await;
    let plain = HttpUpstream::start().await;
    let proxy = ProxyBuilder::new()
        .allow(HOST)
        .resolve("api.test.example:443", upstream.addr)
        .resolve("api.test.example:8443", upstream.addr)
        .resolve("api.test.example:8080", plain.addr)
        .start()
        .await;

    let reply = refused(proxy.addr, "api.test.example:8443", "not-allowed").await;
    assert!(
        reply.body.contains("api.test.example:8443"),
        "the advice names the port: {}",
        reply.body
    );
    let mut sender = proxy_http1(proxy.addr).await;
    let resp = send(&mut sender, get("http://api.test.example:8080/", HOST)).await;
    assert_eq!(resp.status(), 403, "plain HTTP on another port");
    assert_eq!(upstream.accepted() + plain.accepted(), 0);
    tunnels(proxy.addr, &pki, "api.test.example:443", HOST).await;

    // `host:8443` allows that port only.
    let ported = ProxyBuilder::new()
        .allow("api.test.example:8443")
        .resolve("api.test.example:443", upstream.addr)
        .resolve("api.test.example:8443", upstream.addr)
        .start()
        .await;
    tunnels(ported.addr, &pki, "api.test.example:8443", HOST).await;
    refused(ported.addr, "api.test.example:443", "not-allowed").await;
}

/// `localhost` resolves to 127.0.0.1 through the system resolver (no resolve rule).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_that_resolves_to_loopback_is_refused_as_a_private_address() {
    let plain = HttpUpstream::start().await;
    let port = plain.addr.port();
    let proxy = ProxyBuilder::new()
        .allow(&format!("localhost:{port}"))
        .start()
        .await;

    let mut sender = proxy_http1(proxy.addr).await;
    let url = format!("http://localhost:{port}/echo");
    let resp = send(&mut sender, get(&url, &format!("localhost:{port}"))).await;
    assert_eq!(resp.status(), 403);
    let why = resp.headers()["x-keygate-reason"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(why.starts_with("private-address"), "{why}");
    let body = String::from_utf8(client::body_bytes(resp).await.to_vec()).unwrap();
    assert!(body.contains("private_addresses: allow"), "{body}");

    refused(proxy.addr, &format!("localhost:{port}"), "private-address").await;
    assert_eq!(plain.accepted(), 0, "the upstream was never contacted");
    let event = proxy.event("request", |e| e["host"] == "localhost").await;
    assert_eq!(event["decision"], "deny");
    assert!(reason(&event).starts_with("private-address"), "{event}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_addresses_allow_lets_a_loopback_name_through() {
    let plain = HttpUpstream::start().await;
    let port = plain.addr.port();
    let proxy = ProxyBuilder::new()
        .yaml("network:\n  private_addresses: allow\n")
        .allow(&format!("localhost:{port}"))
        .start()
        .await;
    let mut sender = proxy_http1(proxy.addr).await;
    let url = format!("http://localhost:{port}/echo");
    let resp = send(&mut sender, get(&url, &format!("localhost:{port}"))).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(client::json(resp).await["uri"], "/echo");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ip_pattern_allows_a_loopback_name() {
    let plain = HttpUpstream::start().await;
    let port = plain.addr.port();
    let proxy = ProxyBuilder::new()
        .allow(&format!("localhost:{port}"))
        .allow("127.0.0.1:*")
        .start()
        .await;
    let mut sender = proxy_http1(proxy.addr).await;
    let url = format!("http://localhost:{port}/echo");
    let resp = send(&mut sender, get(&url, &format!("localhost:{port}"))).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(client::json(resp).await["uri"], "/echo");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_wins_over_a_secrets_own_hosts() {
    const SECRET_HOST: &str = "api.denied-secret.test";
    let secret = TestSecret::new("denied", &[SECRET_HOST]);
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let root = pki.write_root(dir.path());
    let api = ApiUpstream::start(&pki, &[SECRET_HOST], Alpn::H2AndHttp1).await;
    let plain = HttpUpstream::start().await;
    let proxy = ProxyBuilder::new()
        .yaml("refusals: connect\n")
        .secret(&secret)
        .upstream_ca(&root)
        .deny(SECRET_HOST)
        .resolve("api.denied-secret.test:443", api.addr)
        .resolve("api.denied-secret.test:80", plain.addr)
        .start()
        .await;

    let mut saw = ClientSaw::default();
    let reply = refused(proxy.addr, "api.denied-secret.test:443", "denied").await;
    assert!(reply.reason().contains(SECRET_HOST), "{reply:?}");
    saw.text(format!("{reply:?}"));
    let raw = format!(
        "GET http://{SECRET_HOST}/x HTTP/1.1\r\nHost: {SECRET_HOST}\r\nx-api-key: {}\r\nConnection: close\r\n\r\n",
        secret.dummy()
    );
    let (_s, reply) = client::send_raw(proxy.addr, raw.as_bytes()).await;
    let reply = reply.expect("a reply");
    assert_eq!(reply.status, 403, "{reply:?}");
    assert!(reply.reason().starts_with("denied"), "{reply:?}");
    saw.text(format!("{reply:?}"));
    assert_eq!(api.handshakes(), 0, "no TLS to the secret's host");
    assert!(api.seen().is_empty());
    assert_eq!(plain.accepted(), 0, "no plain connection either");
    let event = proxy.event("connect", |e| e["host"] == SECRET_HOST).await;
    assert_eq!(event["decision"], "deny", "{event}");
    assert_no_leak(secret.real(), &proxy, &saw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_is_bound_to_its_hosts_ports_and_its_dummy_trips_on_any_other() {
    // `api.ports.test` without a port: 80 and 443 only.
    const SECRET_HOST: &str = "api.ports.test";
    let secret = TestSecret::new("ports", &[SECRET_HOST]);
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let root = pki.write_root(dir.path());
    let api = ApiUpstream::start(&pki, &[SECRET_HOST], Alpn::H2AndHttp1).await;
    let plain = HttpUpstream::start().await;
    let proxy = ProxyBuilder::new()
        .secret(&secret)
        .upstream_ca(&root)
        .intercept_all()
        .allow("api.ports.test:8443")
        .allow("api.ports.test:8080")
        .resolve("api.ports.test:443", api.addr)
        .resolve("api.ports.test:8443", api.addr)
        .resolve("api.ports.test:8080", plain.addr)
        .start()
        .await;
    let mut saw = ClientSaw::default();
    let key = ("x-api-key", secret.dummy());

    // Port 8443, intercepted (intercept: all): the dummy is not bound here.
    let tls = open_tls(&proxy, "api.ports.test:8443", &[b"http/1.1"]).await;
    let mut conn = Conn::over(tls, Version::HTTP_11).await;
    let req = conn.get("api.ports.test:8443", "/v1/elsewhere", &[key]);
    let (head, text) = saw.read(conn.send(req).await).await;
    assert_eq!(head.status, StatusCode::FORBIDDEN, "{text}");
    let why = head.headers["x-keygate-reason"].to_str().unwrap();
    assert!(why.starts_with("tripwire"), "{why}");
    // Without the dummy the same connection is served, untouched.
    let req = conn.get("api.ports.test:8443", "/v1/own", &[("x-api-key", "own")]);
    let (head, _) = saw.read(conn.send(req).await).await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(api.only().header("x-api-key"), ["own"]);

    // Plain HTTP on port 8080: the tripwire runs there too.
    let raw = format!(
        "GET http://api.ports.test:8080/x HTTP/1.1\r\nHost: api.ports.test:8080\r\nx-api-key: {}\r\nConnection: close\r\n\r\n",
        secret.dummy()
    );
    let (_s, reply) = client::send_raw(proxy.addr, raw.as_bytes()).await;
    let reply = reply.expect("a reply");
    assert_eq!(reply.status, 403, "{reply:?}");
    assert!(reply.reason().starts_with("tripwire"), "{reply:?}");
    assert_eq!(plain.accepted(), 0, "nothing reached the plain upstream");

    // Port 443: bound, swapped.
    let mut conn = Conn::open(&proxy, SECRET_HOST, Version::HTTP_2).await;
    let req = conn.get(SECRET_HOST, "/v1/bound", &[key]);
    let (head, _) = saw.read(conn.send(req).await).await;
    assert_eq!(head.status, StatusCode::OK);
    let seen = api.seen();
    assert_eq!(seen.len(), 2, "{seen:#?}");
    assert_eq!(seen[1].header("x-api-key"), [secret.real()]);
    let alerts = proxy
        .events_n("request", 2, |e| reason(e).starts_with("tripwire"))
        .await;
    assert!(alerts.iter().all(|e| e["decision"] == "deny"), "{alerts:?}");
    assert_no_leak(secret.real(), &proxy, &saw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_names_that_are_really_numbers_are_refused_even_where_their_address_is_allowed() {
    // Were one of them resolved as the IPv4 literal it spells, it would reach this.
    let net = HttpUpstream::start().await;
    let port = net.addr.port();
    let proxy = ProxyBuilder::new().allow("127.0.0.1:*").start().await;
    for name in ["2130706433", "0x7f.1", "127.1", "0177.0.0.1", "127.0.0.0x1"] {
        let target = format!("{name}:{port}");
        let (_s, reply) = connect(proxy.addr, &target).await;
        assert_eq!(reply.status, 400, "CONNECT {target}: {reply:?}");
        assert!(
            reply.body.contains("127.0.0.1") && reply.body.contains("IPv4"),
            "says how to write it: {reply:?}"
        );
        let raw = format!(
            "GET http://{target}/x HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n"
        );
        let (_s, reply) = client::send_raw(proxy.addr, raw.as_bytes()).await;
        let reply = reply.expect("a reply");
        assert_eq!(reply.status, 400, "GET http://{target}/: {reply:?}");
    }
    assert_eq!(
        net.accepted(),
        0,
        "no refused name reached the address it spells"
    );
    // The literal itself is allowed: the refusals were about the names.
    let target = format!("127.0.0.1:{port}");
    let raw =
        format!("GET http://{target}/ok HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n");
    let (_s, reply) = client::send_raw(proxy.addr, raw.as_bytes()).await;
    assert_eq!(reply.expect("a reply").status, 200);
    assert_eq!(net.next_arrival().await, "/ok");
}
