//! TLS to upstreams of intercepted connections: the client config (always verified:
//! rustls' WebPKI verifier with the system's roots plus `upstream.ca`), and the
//! [`TlsConnector`]: TCP through [`Connector`] (policy and private-address checks
//! included), then a verified handshake with SNI = the host. As a tower `Service<Uri>`
//! it feeds hyper-util's pooling client, which then reuses connections per host and
//! speaks h2 when the upstream's ALPN says so.

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls::crypto::CryptoProvider;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector as RustlsConnector;
use tokio_rustls::client::TlsStream;

use super::{ConnectError, Connector, target_of};
use crate::config::limits::Span;
use crate::policy::Host;
use crate::proxy::io::read_ahead::ReadAhead;
use crate::proxy::stats::TlsSide;

/// The one crypto provider keygate uses (aws-lc-rs), on both sides: the leaves of
/// intercepted connections ([`crate::proxy::connect::tls`]) use it too.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Errors setting up TLS.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// An `upstream.ca` file could not be used.
    #[error("upstream CA {path}: {what}")]
    ExtraRoot {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        what: String,
    },
    /// Neither the system nor `upstream.ca` gives a root certificate to verify against.
    #[error(
        "no trusted root certificates: install the system's CA certificates (Debian: ca-certificates) or set upstream.ca"
    )]
    NoRoots,
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Reads every certificate of the `upstream.ca` files.
pub fn load_extra_roots(paths: &[PathBuf]) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let mut roots = Vec::new();
    for path in paths {
        let fail = |what: String| TlsSetupError::ExtraRoot {
            path: path.clone(),
            what,
        };
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| fail(e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| fail(e.to_string()))?;
        if certs.is_empty() {
            return Err(fail("no PEM certificate in the file".into()));
        }
        roots.extend(certs);
    }
    Ok(roots)
}

/// The upstream client config: verified always, with `alpn` offered.
pub fn client_config(
    extra_roots: &[CertificateDer<'static>],
    alpn: &[&[u8]],
) -> Result<Arc<ClientConfig>, TlsSetupError> {
    let provider = provider();
    // The system's trust store plus `upstream.ca`, checked by rustls' WebPKI verifier
    // (chain, validity dates, the SNI name): the only verifier keygate ever installs.
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    roots.add_parsable_certificates(extra_roots.iter().cloned());
    if roots.is_empty() {
        return Err(TlsSetupError::NoRoots);
    }
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|e| TlsSetupError::Rustls(rustls::Error::General(e.to_string())))?;
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_webpki_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// Opens verified TLS connections to upstreams.
#[derive(Clone)]
pub struct TlsConnector {
    tcp: Connector,
    tls: RustlsConnector,
}

impl std::fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConnector").finish_non_exhaustive()
    }
}

impl TlsConnector {
    /// TLS over `tcp` with `config` (its ALPN decides h2 vs http/1.1).
    pub fn new(tcp: Connector, config: Arc<ClientConfig>) -> TlsConnector {
        TlsConnector {
            tcp,
            tls: RustlsConnector::from(config),
        }
    }

    /// Connects and completes a verified handshake with `host`.
    pub async fn connect(&self, host: &Host, port: u16) -> Result<UpstreamTls, ConnectError> {
        let tcp = self.tcp.connect(host, port).await?;
        let name = match host {
            Host::Ip(ip) => ServerName::IpAddress((*ip).into()),
            Host::Name(n) => ServerName::try_from(n.clone()).map_err(|_| {
                ConnectError::BadAddress(format!("{n} is not a valid TLS server name"))
            })?,
        };
        let handshake = self.tls.connect(name, ReadAhead::new(tcp));
        let limit = self.tcp.handshake_timeout();
        let stream = tokio::time::timeout(limit, handshake)
            .await
            .map_err(|_| {
                ConnectError::Timeout(format!(
                    "the TLS handshake with {host}:{port} (limits.handshake_timeout: {})",
                    Span(limit)
                ))
            })
            .and_then(|done| done.map_err(|e| tls_error(host, port, e)));
        self.tcp
            .stats()
            .handshake(TlsSide::Upstream, stream.is_ok());
        let stream = stream.inspect_err(|e| self.tcp.note_failure(e))?;
        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
        Ok(UpstreamTls {
            io: TokioIo::new(stream),
            h2,
        })
    }
}

/// Names certificate failures plainly: they are the ones a user must act on.
fn tls_error(host: &Host, port: u16, e: io::Error) -> ConnectError {
    let what = match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::InvalidCertificate(cert)) => {
            format!(
                "the upstream certificate was rejected ({cert:?}); keygate never skips verification, add its root with --upstream-ca if it is a private CA"
            )
        }
        Some(other) => format!("TLS error: {other}"),
        None => format!("TLS handshake failed: {e}"),
    };
    ConnectError::Tls {
        target: format!("{host}:{port}"),
        what,
    }
}

/// A verified TLS connection to an upstream.
#[derive(Debug)]
pub struct UpstreamTls {
    io: TokioIo<TlsStream<ReadAhead<TcpStream>>>,
    h2: bool,
}

impl UpstreamTls {
    /// The tokio stream, for upgraded (WebSocket) bridging.
    pub fn into_inner(self) -> TlsStream<ReadAhead<TcpStream>> {
        self.io.into_inner()
    }
}

impl Connection for UpstreamTls {
    fn connected(&self) -> Connected {
        let connected = Connected::new();
        if self.h2 {
            connected.negotiated_h2()
        } else {
            connected
        }
    }
}

impl hyper::rt::Read for UpstreamTls {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for UpstreamTls {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
}

impl tower_service::Service<Uri> for TlsConnector {
    type Response = UpstreamTls;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<UpstreamTls, ConnectError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ConnectError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let (host, port) = target_of(&uri)?;
            this.connect(&host, port).await
        })
    }
}
