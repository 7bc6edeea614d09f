//! One HTTP/1.1 client connection over verified TLS to the benchmark host, either
//! directly (`--connect IP:PORT`, like curl's `--resolve`) or through a proxy's CONNECT
//! tunnel (`--proxy IP:PORT`), as an agent behind keygate would open it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use bytes::Bytes;
use http::{Method, Request, Uri};
use http_body_util::Empty;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// Where and how to connect; shared by the `sse` and `idle` subcommands.
#[derive(clap::Args, Clone)]
pub struct Target {
    /// The URL to request, e.g. https://bench.test:8443/sse.
    #[arg(long)]
    pub url: Uri,
    /// Connect through this HTTP proxy (CONNECT), e.g. 127.0.0.1:8877.
    #[arg(long)]
    pub proxy: Option<SocketAddr>,
    /// Without a proxy: connect to this address instead of resolving the URL's host.
    #[arg(long)]
    pub connect: Option<SocketAddr>,
    /// PEM file of the roots to trust (the upstream's root, keygate's and mitmproxy's CA).
    #[arg(long)]
    pub cacert: PathBuf,
    /// Extra request header, `name: value` (repeatable).
    #[arg(long = "header")]
    pub headers: Vec<String>,
}

/// A byte stream a TLS session can run over: TCP, or a CONNECT tunnel.
trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// The client's connection to the benchmark host.
pub type Sender = SendRequest<Empty<Bytes>>;

/// A current-thread runtime: one client task set, measured without cross-thread wakeups.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// Client TLS (HTTP/1.1 only) trusting the roots in `cacert`.
pub fn tls_config(cacert: &Path) -> anyhow::Result<Arc<ClientConfig>> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(cacert)
        .with_context(|| format!("reading {}", cacert.display()))?
    {
        roots.add(cert?)?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

impl Target {
    fn host_port(&self) -> anyhow::Result<(String, u16)> {
        let host = self.url.host().context("the URL has no host")?.to_string();
        Ok((host, self.url.port_u16().unwrap_or(443)))
    }

    /// A GET of the URL with the extra headers.
    pub fn request(&self) -> anyhow::Result<Request<Empty<Bytes>>> {
        let (host, port) = self.host_port()?;
        let mut builder = Request::builder()
            .method(Method::GET)
            .uri(self.url.path_and_query().map_or("/", |pq| pq.as_str()))
            .header(http::header::HOST, format!("{host}:{port}"));
        for line in &self.headers {
            let (name, value) = line
                .split_once(':')
                .with_context(|| format!("header `{line}` is not `name: value`"))?;
            builder = builder.header(name.trim(), value.trim());
        }
        Ok(builder.body(Empty::new())?)
    }

    /// Opens a connection (TCP, CONNECT if proxied, TLS, HTTP/1.1 handshake).
    pub async fn open(&self, tls: &Arc<ClientConfig>) -> anyhow::Result<Sender> {
        let (host, port) = self.host_port()?;
        let stream: Box<dyn Io> = match (self.proxy, self.connect) {
            (Some(proxy), _) => Box::new(tunnel(proxy, &host, port).await?),
            (None, Some(addr)) => Box::new(tcp(addr).await?),
            (None, None) => Box::new(tcp_to(&host, port).await?),
        };
        let name = ServerName::try_from(host.clone())?;
        let tls = tokio_rustls::TlsConnector::from(tls.clone())
            .connect(name, stream)
            .await
            .with_context(|| format!("TLS with {host}"))?;
        let (sender, conn) = http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(conn);
        Ok(sender)
    }
}

async fn tcp(addr: SocketAddr) -> anyhow::Result<TcpStream> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

async fn tcp_to(host: &str, port: u16) -> anyhow::Result<TcpStream> {
    let stream = TcpStream::connect((host, port))
        .await
        .with_context(|| format!("connecting to {host}:{port}"))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// A CONNECT tunnel to `host:port` through the proxy at `proxy`.
async fn tunnel(
    proxy: SocketAddr,
    host: &str,
    port: u16,
) -> anyhow::Result<TokioIo<hyper::upgrade::Upgraded>> {
    let (mut sender, conn) = http1::handshake(TokioIo::new(tcp(proxy).await?)).await?;
    tokio::spawn(conn.with_upgrades());
    let authority = format!("{host}:{port}");
    let connect = Request::builder()
        .method(Method::CONNECT)
        .uri(authority.as_str())
        .header(http::header::HOST, authority.as_str())
        .body(Empty::<Bytes>::new())?;
    let response = sender.send_request(connect).await?;
    if !response.status().is_success() {
        bail!("CONNECT {authority} via {proxy}: {}", response.status());
    }
    Ok(TokioIo::new(hyper::upgrade::on(response).await?))
}
