//! The admin listener (issue 16): a window into a running `keygate start` and a way to
//! steer it, never on the proxy port and never reachable from a jailed command.
//!
//! It listens on the Unix socket `$KEYGATE_HOME/admin.sock` (0600, in the owner-only
//! home, which the jail hides). What it knows of the traffic it learns from the audit
//! events as they are recorded ([`observe::Observed`]), so it holds nothing the audit log
//! does not: no header value, no query, no secret value.
//!
//! * [`api`]: the routes (`/healthz`, `/readyz`, `/metrics`, `/api/flows`,
//!   `/api/flows/stream`, `/api/policy`, `/api/secrets`, `POST /api/reload`,
//!   `POST /api/rules`).
//! * [`dashboard`]: the page at `/` (and `/assets/`), embedded in the binary.
//! * [`observe`]: recent flows, the live feed, secret use counts, counters.
//! * [`metrics`]: the Prometheus text format.
//! * [`rules`]: a pattern added to keygate.yaml, comments kept.

pub mod answer;
pub mod api;
pub mod auth;
pub mod dashboard;
pub mod metrics;
pub mod observe;
pub mod rules;

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio_util::sync::CancellationToken;

use crate::proxy::Proxy;
use observe::Observed;

/// Reloads the configuration as SIGHUP does; `Ok` with a one-line summary.
pub type Reload =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<String, String>> + Send>> + Send + Sync>;

/// What the admin routes use.
pub struct Admin {
    /// The running proxy.
    pub proxy: Arc<Proxy>,
    /// What the audit events told.
    pub observed: Arc<Observed>,
    /// How to reload.
    pub reload: Reload,
    /// keygate.yaml (edited by `POST /api/rules`).
    pub config_file: PathBuf,
    /// `tokens.json`, for the minted tokens' expiries.
    pub tokens_file: Option<PathBuf>,
    /// One keygate.yaml edit at a time.
    pub rules_lock: tokio::sync::Mutex<()>,
    /// The proxy's bound address (the configuration may say port 0).
    pub listen: std::net::SocketAddr,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin")
            .field("config_file", &self.config_file)
            .finish_non_exhaustive()
    }
}

/// Binds the admin socket at `path`, owner-only. A socket left by a keygate that is gone
/// is replaced; one another keygate still answers on is an error that says so.
#[cfg(unix)]
pub fn bind_unix(path: &Path) -> io::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!(
                    "another keygate serves its admin API on {}; stop it, or give this one another --home",
                    path.display()
                ),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let listener = tokio::net::UnixListener::bind(path)?;
    std::fs::set_permissions(
        path,
        std::fs::Permissions::from_mode(crate::home::FILE_MODE),
    )?;
    Ok(listener)
}

/// Serves one admin connection (HTTP/1.1) until it ends, or until `stop` (then it gets a
/// second to finish).
async fn serve_connection<I, S>(io: I, service: S, stop: CancellationToken)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = answer::AdminBody>,
{
    let conn = hyper::server::conn::http1::Builder::new().serve_connection(io, service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        () = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), conn).await;
        }
    }
}

/// Serves the admin API over TCP on `listener` until `shutdown`: every request must
/// carry `token` ([`auth`]).
pub async fn serve_tcp(
    listener: tokio::net::TcpListener,
    admin: Arc<Admin>,
    token: crate::secrets::SecretValue,
    shutdown: CancellationToken,
) {
    let token = Arc::new(token);
    let Ok(local) = listener.local_addr() else {
        return;
    };
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!("admin listener: accept failed: {e}");
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let (admin, token, stop) = (admin.clone(), token.clone(), shutdown.clone());
        tokio::spawn(async move {
            let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let (admin, token) = (admin.clone(), token.clone());
                async move {
                    let answer = match auth::check(&req, &token, local) {
                        auth::Access::Granted => api::handle(admin, req).await,
                        auth::Access::Answer(answer) => answer,
                    };
                    Ok::<_, std::convert::Infallible>(answer)
                }
            });
            serve_connection(TokioIo::new(stream), service, stop).await;
        });
    }
}

/// Serves the admin API on `listener` until `shutdown`; removes the socket file then.
#[cfg(unix)]
pub async fn serve_unix(
    listener: tokio::net::UnixListener,
    path: PathBuf,
    admin: Arc<Admin>,
    shutdown: CancellationToken,
) {
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!("admin socket: accept failed: {e}");
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let admin = admin.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let admin = admin.clone();
                async move { Ok::<_, std::convert::Infallible>(api::handle(admin, req).await) }
            });
            serve_connection(TokioIo::new(stream), service, stop).await;
        });
    }
    let _ = std::fs::remove_file(&path);
}
