//! The usual interception set-up: a fake API upstream for a host, and a proxy that
//! resolves `host:443` to it and trusts the test root for upstream verification.

use http::{StatusCode, Version};
use tempfile::TempDir;

use super::api::{Alpn, ApiUpstream};
use super::intercepted::Conn;
use super::leak::ClientSaw;
use super::pki::TestPki;
use super::proxy::{ProxyBuilder, TestProxy};
use super::secret::{TestSecret, unique};

/// An upstream and the proxy in front of it.
pub struct Stack {
    /// The test PKI the upstream's certificate comes from.
    pub pki: TestPki,
    /// The fake API.
    pub upstream: ApiUpstream,
    /// The proxy.
    pub proxy: TestProxy,
    _dir: TempDir,
}

impl Stack {
    /// Starts an upstream for `host` offering `alpn`, and a proxy resolving `host:443` to
    /// it with the test root as `upstream.ca`; `configure` adds the rest (secrets, ...).
    pub async fn start(
        pki: TestPki,
        host: &str,
        alpn: Alpn,
        configure: impl FnOnce(ProxyBuilder) -> ProxyBuilder,
    ) -> Stack {
        let dir = tempfile::tempdir().expect("temporary directory");
        let root = pki.write_root(dir.path());
        let upstream = ApiUpstream::start(&pki, &[host], alpn).await;
        let builder = ProxyBuilder::new()
            .resolve(&format!("{host}:443"), upstream.addr)
            .upstream_ca(&root);
        let proxy = configure(builder).start().await;
        Stack {
            pki,
            upstream,
            proxy,
            _dir: dir,
        }
    }
}

/// One GET with the dummy on a new intercepted connection: 200, and the upstream got
/// the real value.
pub async fn swapped_request_succeeds(
    stack: &Stack,
    secret: &TestSecret,
    host: &str,
    saw: &mut ClientSaw,
) {
    let mut conn = Conn::open(&stack.proxy, host, Version::HTTP_2).await;
    let path = format!("/after/{}", unique());
    let resp = conn
        .send(conn.get(host, &path, &[("x-api-key", secret.dummy())]))
        .await;
    let (head, text) = saw.read(resp).await;
    assert_eq!(head.status, StatusCode::OK, "{text}");
    let seen = stack.upstream.seen();
    let last = seen.last().expect("the request arrived");
    assert_eq!(last.target, path);
    assert_eq!(last.header("x-api-key"), [secret.real()]);
}
