//! Upstream connections: `--resolve` overrides, DNS, the private-address defence, TCP
//! connect with a timeout, and the optional corporate proxy (CONNECT).
//!
//! The same [`Connector`] serves CONNECT tunnels directly and, as a tower `Service<Uri>`,
//! hyper-util's pooling client for plain HTTP, so every path to the network passes the
//! same checks at the moment it connects (a pooled connection was checked when made).
//! For intercepted connections, [`tls`] adds the verified TLS handshake on top.

pub mod credentials;
pub mod owned;
pub mod tls;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::config::Config;
use crate::config::limits::Span;
use crate::policy::{Host, HostPattern, Policy, Refusal, parse_authority};
use crate::proxy::stats::{Stats, UpstreamFailure};

/// Why an upstream connection could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Policy refused the address the name resolved to.
    #[error("{0}")]
    Refused(Refusal),
    /// The name did not resolve.
    #[error("cannot resolve {host}: {source}")]
    Resolve {
        /// The upstream host.
        host: String,
        /// The resolver's error.
        source: io::Error,
    },
    /// Every address refused or failed.
    #[error("cannot connect to {target}: {source}")]
    Connect {
        /// host:port (and the address tried last).
        target: String,
        /// The last error.
        source: io::Error,
    },
    /// A step took longer than its limit: DNS + connect (`limits.upstream_connect_timeout`)
    /// or the TLS handshake (`limits.handshake_timeout`). The text names the step.
    #[error("{0} timed out")]
    Timeout(String),
    /// The corporate proxy refused or failed the CONNECT.
    #[error("upstream proxy {proxy}: {what}")]
    Proxy {
        /// The corporate proxy.
        proxy: String,
        /// What went wrong.
        what: String,
    },
    /// The upstream TLS handshake failed (certificate rejected, protocol error).
    #[error("TLS to {target}: {what}")]
    Tls {
        /// host:port.
        target: String,
        /// What went wrong, and what to do for a certificate failure.
        what: String,
    },
    /// The request named no usable host.
    #[error("bad upstream address: {0}")]
    BadAddress(String),
}

/// Connects to upstreams on behalf of clients; cheap to clone.
#[derive(Clone, Debug)]
pub struct Connector {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: Arc<Config>,
    policy: Arc<Policy>,
    stats: Arc<Stats>,
}

impl Connector {
    /// A connector applying `policy`'s address checks and `config`'s upstream settings.
    pub fn new(config: Arc<Config>, policy: Arc<Policy>, stats: Arc<Stats>) -> Connector {
        Connector {
            inner: Arc::new(Inner {
                config,
                policy,
                stats,
            }),
        }
    }

    /// Where connection failures and handshakes are counted.
    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    /// How long keygate's own TLS handshake with an upstream may take
    /// (`limits.handshake_timeout`, the bound on the client side's handshake too).
    pub fn handshake_timeout(&self) -> Duration {
        self.inner.config.limits.handshake_timeout
    }

    /// Opens a TCP connection to `host:port` (through the corporate proxy if configured),
    /// enforcing the private-address defence on every resolved address.
    pub async fn connect(&self, host: &Host, port: u16) -> Result<TcpStream, ConnectError> {
        let target = format!("{host}:{port}");
        let config = &self.inner.config;
        let via = config
            .upstream_proxy
            .as_ref()
            .filter(|_| !matches_any(&config.no_proxy, host, port));
        // One bound on all of it, the corporate proxy's answer to CONNECT included.
        let work = async {
            match via {
                Some(proxy) => {
                    let stream = self.direct(&proxy.host, proxy.port, false).await?;
                    via_proxy(stream, &target, &format!("{}:{}", proxy.host, proxy.port)).await
                }
                None => self.direct(host, port, true).await,
            }
        };
        let limit = config.limits.upstream_connect_timeout;
        let connected = tokio::time::timeout(limit, work).await.map_err(|_| {
            let through = via
                .map(|p| format!(" through the upstream proxy {}:{}", p.host, p.port))
                .unwrap_or_default();
            ConnectError::Timeout(format!(
                "connecting to {target}{through} (limits.upstream_connect_timeout: {})",
                Span(limit)
            ))
        });
        let connected = connected.and_then(|c| c);
        if let Err(e) = &connected {
            self.note_failure(e);
        }
        connected
    }

    /// Counts `e` among the upstream failures `/metrics` shows (a policy refusal is
    /// not one).
    pub fn note_failure(&self, e: &ConnectError) {
        let kind = match e {
            ConnectError::Resolve { .. } => UpstreamFailure::Resolve,
            ConnectError::Connect { .. } => UpstreamFailure::Connect,
            ConnectError::Timeout(_) => UpstreamFailure::Timeout,
            ConnectError::Proxy { .. } => UpstreamFailure::Proxy,
            ConnectError::Tls { .. } => UpstreamFailure::Tls,
            _ => return,
        };
        self.inner.stats.upstream_failure(kind);
    }

    /// Resolves and connects; `check` applies the private-address defence (the
    /// user's own corporate proxy is exempt).
    async fn direct(&self, host: &Host, port: u16, check: bool) -> Result<TcpStream, ConnectError> {
        let addrs = self.addresses(host, port, check).await?;
        let mut last = None;
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    return Ok(stream);
                }
                Err(e) => last = Some((addr, e)),
            }
        }
        let (addr, source) = last.unwrap_or_else(|| {
            (
                SocketAddr::from(([0, 0, 0, 0], port)),
                io::Error::new(io::ErrorKind::NotFound, "no address"),
            )
        });
        Err(ConnectError::Connect {
            target: format!("{host}:{port} ({addr})"),
            source,
        })
    }

    /// The addresses to try: the `--resolve` target, the literal IP, or DNS answers that
    /// pass [`Policy::check_address`].
    async fn addresses(
        &self,
        host: &Host,
        port: u16,
        check: bool,
    ) -> Result<Vec<SocketAddr>, ConnectError> {
        if let Some(target) = self.inner.config.resolve_override(host, port) {
            // --resolve targets are trusted: the user pinned them on purpose.
            return Ok(vec![target]);
        }
        let resolved: Vec<SocketAddr> = match host {
            Host::Ip(ip) => vec![SocketAddr::new(*ip, port)],
            Host::Name(name) => tokio::net::lookup_host((name.as_str(), port))
                .await
                .map_err(|source| ConnectError::Resolve {
                    host: name.clone(),
                    source,
                })?
                .collect(),
        };
        if !check {
            return Ok(resolved);
        }
        let mut refusal = None;
        let allowed: Vec<SocketAddr> = resolved
            .into_iter()
            .filter(
                |a| match self.inner.policy.check_address(host, port, a.ip()) {
                    Ok(()) => true,
                    Err(r) => {
                        refusal.get_or_insert(r);
                        false
                    }
                },
            )
            .collect();
        match (allowed.is_empty(), refusal) {
            (true, Some(r)) => Err(ConnectError::Refused(r)),
            _ => Ok(allowed),
        }
    }
}

fn matches_any(patterns: &[HostPattern], host: &Host, port: u16) -> bool {
    patterns.iter().any(|p| p.matches(host, port))
}

/// Asks the corporate proxy for a tunnel to `target` with hyper's client (no hand-written
/// HTTP), then takes the TCP stream back out of the upgrade. Bounded by the caller's
/// `upstream_connect_timeout`.
async fn via_proxy(
    stream: TcpStream,
    target: &str,
    proxy: &str,
) -> Result<TcpStream, ConnectError> {
    let fail = |what: String| ConnectError::Proxy {
        proxy: proxy.to_string(),
        what,
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| fail(e.to_string()))?;
    tokio::spawn(conn.with_upgrades());
    let request = http::Request::connect(target)
        .header(http::header::HOST, target)
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| fail(e.to_string()))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| fail(e.to_string()))?;
    if !response.status().is_success() {
        return Err(fail(format!(
            "CONNECT {target} answered {}",
            response.status()
        )));
    }
    let upgraded = hyper::upgrade::on(response)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let parts = upgraded
        .downcast::<TokioIo<TcpStream>>()
        .map_err(|_| fail("unexpected connection type after CONNECT".into()))?;
    if !parts.read_buf.is_empty() {
        return Err(fail("the proxy sent data before the client spoke".into()));
    }
    Ok(parts.io.into_inner())
}

/// The upstream host and port a pooled request URI names (default port by scheme).
pub fn target_of(uri: &Uri) -> Result<(Host, u16), ConnectError> {
    let authority = uri
        .authority()
        .ok_or_else(|| ConnectError::BadAddress(uri.to_string()))?;
    let default_port = if uri.scheme() == Some(&http::uri::Scheme::HTTPS) {
        443
    } else {
        80
    };
    parse_authority(authority.as_str(), Some(default_port))
        .map_err(|e| ConnectError::BadAddress(e.to_string()))
}

/// hyper-util's pooling client calls this for each new plain-HTTP connection.
impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<TcpStream>;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, ConnectError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ConnectError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let (host, port) = target_of(&uri)?;
            this.connect(&host, port).await.map(TokioIo::new)
        })
    }
}
