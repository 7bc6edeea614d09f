//! Clients of intercepted connections: CONNECT through the proxy, TLS trusting only
//! keygate's CA, then HTTP/1.1 or h2 (by ALPN) with hyper.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response, Version};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::body::{self, TestBody};
use super::client::{http1 as http1_over, open_tunnel};
use super::proxy::TestProxy;
use super::{WAIT, within};

/// A client TLS config trusting `root` only and offering `alpn`.
pub fn client_config(root: &CertificateDer<'static>, alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(root.clone()).expect("add root");
    let mut config = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// The ALPN a client offers for `version`.
fn alpn_for(version: Version) -> &'static [&'static [u8]] {
    if version == Version::HTTP_2 {
        &[b"h2"]
    } else {
        &[b"http/1.1"]
    }
}

/// CONNECT `host:port`, then a TLS handshake for `host` trusting only `root`.
pub async fn tls_through(
    proxy: &TestProxy,
    target: &str,
    root: &CertificateDer<'static>,
    alpn: &[&[u8]],
) -> io::Result<TlsStream<TcpStream>> {
    tls_via(proxy.addr, target, root, alpn).await
}

/// [`tls_through`] a proxy at `proxy` (e.g. a running `keygate start`).
pub async fn tls_via(
    proxy: SocketAddr,
    target: &str,
    root: &CertificateDer<'static>,
    alpn: &[&[u8]],
) -> io::Result<TlsStream<TcpStream>> {
    let tunnel = open_tunnel(proxy, target).await;
    let host = target.rsplit_once(':').map_or(target, |(h, _)| h);
    let name = ServerName::try_from(host.to_string()).expect("server name");
    let connector = TlsConnector::from(client_config(root, alpn));
    within(
        "a TLS handshake with keygate",
        connector.connect(name, tunnel),
    )
    .await
}

/// CONNECT `host:port` and a TLS handshake with keygate (trusting its CA only).
pub async fn open_tls(proxy: &TestProxy, target: &str, alpn: &[&[u8]]) -> TlsStream<TcpStream> {
    tls_through(proxy, target, &proxy.ca().der, alpn)
        .await
        .unwrap_or_else(|e| panic!("TLS with keygate for {target}: {e}"))
}

/// An HTTP connection on an intercepted host, HTTP/1.1 or h2.
pub enum Conn {
    /// HTTP/1.1 (requests in origin-form with a Host header).
    H1(http1::SendRequest<TestBody>),
    /// h2 (requests with an :authority).
    H2(http2::SendRequest<TestBody>),
}

impl Conn {
    /// Opens an intercepted connection to `host:443` and speaks `version` on it (checking
    /// that keygate agreed to it in ALPN).
    pub async fn open(proxy: &TestProxy, host: &str, version: Version) -> Conn {
        Conn::open_via(proxy.addr, &proxy.ca().der, host, version).await
    }

    /// [`Conn::open`] through the proxy at `proxy`, whose CA is `ca`.
    pub async fn open_via(
        proxy: SocketAddr,
        ca: &CertificateDer<'static>,
        host: &str,
        version: Version,
    ) -> Conn {
        let target = format!("{host}:443");
        let tls = tls_via(proxy, &target, ca, alpn_for(version))
            .await
            .unwrap_or_else(|e| panic!("TLS with keygate for {target}: {e}"));
        let agreed = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        assert_eq!(
            agreed.as_deref(),
            Some(alpn_for(version)[0]),
            "keygate's ALPN answer"
        );
        Conn::over(tls, version).await
    }

    /// Speaks `version` over an established stream.
    pub async fn over(tls: TlsStream<TcpStream>, version: Version) -> Conn {
        if version == Version::HTTP_2 {
            let (sender, conn) = within(
                "an h2 handshake",
                http2::handshake(TokioExecutor::new(), TokioIo::new(tls)),
            )
            .await
            .expect("h2 handshake");
            tokio::spawn(conn);
            Conn::H2(sender)
        } else {
            Conn::H1(http1_over(tls).await)
        }
    }

    /// A request builder for `method` `path` on `host`, in the form this version uses.
    pub fn request(&self, method: &str, host: &str, path: &str) -> http::request::Builder {
        match self {
            Conn::H1(_) => Request::builder()
                .method(method)
                .uri(path)
                .header(http::header::HOST, host),
            Conn::H2(_) => Request::builder()
                .method(method)
                .version(Version::HTTP_2)
                .uri(format!("https://{host}{path}")),
        }
    }

    /// A bodiless GET of `path` on `host` with `headers`.
    pub fn get(&self, host: &str, path: &str, headers: &[(&str, &str)]) -> Request<TestBody> {
        let mut builder = self.request("GET", host, path);
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        builder.body(body::empty()).expect("request")
    }

    /// Sends `req` and waits (bounded) for the response head.
    pub async fn send(&mut self, req: Request<TestBody>) -> Response<Incoming> {
        self.send_within(req, WAIT).await
    }

    /// Sends `req` and waits at most `limit` for the response head (for a response
    /// that only comes once a large request body is through).
    pub async fn send_within(
        &mut self,
        req: Request<TestBody>,
        limit: Duration,
    ) -> Response<Incoming> {
        let sent = tokio::time::timeout(limit, async {
            match self {
                Conn::H1(sender) => {
                    sender.ready().await.expect("connection ready");
                    sender.send_request(req).await.expect("response")
                }
                Conn::H2(sender) => {
                    sender.ready().await.expect("connection ready");
                    sender.send_request(req).await.expect("response")
                }
            }
        })
        .await;
        sent.unwrap_or_else(|_| panic!("no response head within {}s", limit.as_secs()))
    }

    /// Sends `req` and waits (bounded) for the response head, or for the error that
    /// ends the exchange instead (a stream reset, the connection closed).
    pub async fn try_send(&mut self, req: Request<TestBody>) -> hyper::Result<Response<Incoming>> {
        within("a response head or an error", async {
            match self {
                Conn::H1(sender) => {
                    sender.ready().await?;
                    sender.send_request(req).await
                }
                Conn::H2(sender) => {
                    sender.ready().await?;
                    sender.send_request(req).await
                }
            }
        })
        .await
    }
}
