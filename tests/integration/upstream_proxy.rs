//! `upstream.proxy`: behind a corporate HTTP proxy keygate opens every upstream
//! connection with CONNECT through it (intercepted requests keep their TLS end to end,
//! so the corporate proxy sees neither the dummy nor the real value), `upstream.no_proxy`
//! hosts are reached directly, and a corporate proxy that refuses or stays silent is a
//! 502 or a 504 that names it.

use http::{StatusCode, Version};

use crate::support::ClosedPort;
use crate::support::api::{Alpn, ApiUpstream};
use crate::support::client;
use crate::support::corporate::CorporateProxy;
use crate::support::intercepted::Conn;
use crate::support::leak::{ClientSaw, assert_no_leak};
use crate::support::pki::TestPki;
use crate::support::proxy::ProxyBuilder;
use crate::support::secret::TestSecret;
use crate::support::upstream::{HttpUpstream, RecordingUpstream};
use crate::support::within;

const API: &str = "api.corp.test";

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

fn get(host: &str, path: &str) -> String {
    format!("GET http://{host}{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connections_go_through_the_corporate_proxy_except_no_proxy_hosts() {
    let secret = TestSecret::new("corp", &[API]);
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let root = pki.write_root(dir.path());
    let api = ApiUpstream::start(&pki, &[API], Alpn::H2AndHttp1).await;
    let plain = HttpUpstream::start().await;
    let direct = HttpUpstream::start().await;
    let corp = CorporateProxy::start(&[
        ("api.corp.test:443", api.addr),
        ("plain.corp.test:80", plain.addr),
    ])
    .await;
    // keygate's own resolve rules for the proxied hosts lead nowhere: a request that
    // skipped the corporate proxy would fail.
    let nowhere = ClosedPort::new();
    let proxy = ProxyBuilder::new()
        .yaml(&format!(
            "upstream:\n  proxy: http://{}\n  no_proxy: [direct.corp.test]\n",
            corp.addr
        ))
        .secret(&secret)
        .upstream_ca(&root)
        .allow("plain.corp.test:80")
        .allow("direct.corp.test:80")
        .resolve("api.corp.test:443", nowhere.addr)
        .resolve("plain.corp.test:80", nowhere.addr)
        .resolve("direct.corp.test:80", direct.addr)
        .start()
        .await;
    let mut saw = ClientSaw::default();

    // Intercepted and swapped, over h2 and HTTP/1.1: one tunnel through the corporate
    // proxy, TLS from keygate to the API inside it.
    for version in [Version::HTTP_2, Version::HTTP_11] {
        let mut conn = Conn::open(&proxy, API, version).await;
        let resp = conn
            .send(conn.get(API, "/v1/corp", &[("x-api-key", secret.dummy())]))
            .await;
        let (head, text) = saw.read(resp).await;
        assert_eq!(head.status, StatusCode::OK, "{version:?}: {text}");
    }
    let seen = api.seen();
    assert_eq!(seen.len(), 2, "{seen:#?}");
    for request in &seen {
        assert_eq!(request.header("x-api-key"), [secret.real()]);
    }
    let upward = corp.upward();
    assert!(
        !upward.is_empty(),
        "the API was reached through the corporate proxy"
    );
    assert!(
        !contains(&upward, secret.real()) && !contains(&upward, secret.dummy()),
        "the corporate proxy saw only ciphertext"
    );

    // Plain HTTP: a tunnel too, the request inside it.
    let (_s, reply) = client::send_raw(proxy.addr, get("plain.corp.test", "/via").as_bytes()).await;
    assert_eq!(reply.expect("a reply").status, 200);
    assert_eq!(plain.next_arrival().await, "/via");

    // `no_proxy`: straight to the upstream.
    let (_s, reply) =
        client::send_raw(proxy.addr, get("direct.corp.test", "/direct").as_bytes()).await;
    assert_eq!(reply.expect("a reply").status, 200);
    assert_eq!(direct.next_arrival().await, "/direct");

    let heads = corp.heads();
    let targets: Vec<&str> = heads
        .iter()
        .map(|h| h.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
        .map(|line| match line.as_str() {
            "CONNECT api.corp.test:443" => "api",
            "CONNECT plain.corp.test:80" => "plain",
            _ => "other",
        })
        .collect();
    assert!(
        targets.contains(&"api") && targets.contains(&"plain"),
        "{heads:?}"
    );
    assert!(
        !targets.contains(&"other"),
        "only CONNECTs for proxied hosts: {heads:?}"
    );
    for head in &heads {
        assert!(
            !head.contains(secret.real()) && !head.contains(secret.dummy()),
            "no credential in a CONNECT head"
        );
        assert!(
            !head.to_ascii_lowercase().contains("proxy-authorization"),
            "{head}"
        );
    }
    assert_no_leak(secret.real(), &proxy, &saw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corporate_proxy_that_refuses_is_a_502_and_one_that_never_answers_a_504() {
    // Routes nothing: every CONNECT is answered 403.
    let refusing = CorporateProxy::start(&[]).await;
    let proxy = ProxyBuilder::new()
        .yaml(&format!("upstream:\n  proxy: http://{}\n", refusing.addr))
        .allow("*.corp.test:*")
        .start()
        .await;
    let (_s, reply) = client::send_raw(proxy.addr, get("blocked.corp.test", "/x").as_bytes()).await;
    let reply = reply.expect("a reply");
    assert_eq!(reply.status, 502, "{reply:?}");
    let reason = reply.reason();
    assert!(reason.starts_with("upstream-error"), "{reason}");
    assert!(
        reason.contains(&refusing.addr.to_string()) && reason.contains("403"),
        "names the corporate proxy and its answer: {reason}"
    );

    // Accepts the connection, never answers the CONNECT.
    let silent = RecordingUpstream::start().await;
    let proxy = ProxyBuilder::new()
        .yaml(&format!(
            "upstream:\n  proxy: http://{}\nlimits:\n  upstream_connect_timeout: 300ms\n",
            silent.addr
        ))
        .allow("*.corp.test:*")
        .start()
        .await;
    let (_s, reply) = client::send_raw(proxy.addr, get("slow.corp.test", "/x").as_bytes()).await;
    let reply = reply.expect("a reply");
    assert_eq!(reply.status, 504, "{reply:?}");
    let reason = reply.reason();
    assert!(
        reason.contains(&format!("through the upstream proxy {}", silent.addr))
            && reason.contains("limits.upstream_connect_timeout: 300ms"),
        "{reason}"
    );
    // keygate gave up on it: the connection closes, and it carried only the CONNECT.
    let got = within(
        "the silent proxy's connection to close",
        silent.next_connection(),
    )
    .await;
    let got = String::from_utf8_lossy(&got);
    assert!(
        got.starts_with("CONNECT slow.corp.test:80 HTTP/1.1\r\n"),
        "{got}"
    );
    assert!(
        got.ends_with("\r\n\r\n"),
        "nothing after the CONNECT head: {got}"
    );
}
