//! The benchmark upstream: one HTTPS server (rustls, hyper HTTP/1.1 with keep-alive;
//! h2 only with `--h2`) answering
//!
//! * `GET /small`: a 12-byte JSON body (the latency and request-rate figures);
//! * `GET /bytes/N`: N bytes (at most 64 MiB) with a Content-Length;
//! * `POST /upload`: reads the body, answers its length;
//! * `GET /sse?hold_ms=M`: `text/event-stream`, one event at once, end of stream M ms later;
//! * `GET /key`: `real` when `x-api-key` equals `$BENCH_REAL_KEY` (proves the swap).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body::{Body, Frame};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::time::Sleep;

/// Largest `/bytes/N` body.
const MAX_BYTES: usize = 64 * 1024 * 1024;
/// The one event `/sse` sends.
const EVENT: &[u8] = b"event: message\ndata: {\"type\":\"ping\"}\n\n";

#[derive(clap::Args)]
pub struct Args {
    /// Address to listen on (loopback).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Certificate chain (PEM).
    #[arg(long)]
    cert: PathBuf,
    /// Private key (PEM).
    #[arg(long)]
    key: PathBuf,
    /// Tokio worker threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Offer h2 as well as http/1.1 in ALPN.
    #[arg(long)]
    h2: bool,
}

type ResBody = BoxBody<Bytes, Infallible>;

struct Routes {
    payload: Bytes,
    real_key: Option<String>,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let certs = CertificateDer::pem_file_iter(&args.cert)
        .with_context(|| format!("reading {}", args.cert.display()))?
        .collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(&args.key)
        .with_context(|| format!("reading {}", args.key.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = if args.h2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    let routes = Arc::new(Routes {
        payload: Bytes::from(vec![b'x'; MAX_BYTES]),
        real_key: std::env::var("BENCH_REAL_KEY").ok(),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = TcpListener::bind(args.listen).await?;
        println!("listening on {}", listener.local_addr()?);
        serve(
            listener,
            tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            routes,
        )
        .await
    })
}

async fn serve(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    routes: Arc<Routes>,
) -> anyhow::Result<()> {
    loop {
        let (tcp, _) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        let (acceptor, routes) = (acceptor.clone(), routes.clone());
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let svc = service_fn(move |req| route(routes.clone(), req));
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), svc)
                .await;
        });
    }
}

async fn route(
    routes: Arc<Routes>,
    req: Request<Incoming>,
) -> Result<Response<ResBody>, Infallible> {
    let path = req.uri().path().to_string();
    let response = match (req.method(), path.as_str()) {
        (&Method::GET, "/small") => {
            full("application/json", Bytes::from_static(b"{\"ok\":true}\n"))
        }
        (&Method::GET, p) if p.starts_with("/bytes/") => {
            match p["/bytes/".len()..].parse::<usize>() {
                Ok(n) if n <= MAX_BYTES => {
                    full("application/octet-stream", routes.payload.slice(..n))
                }
                _ => status(StatusCode::BAD_REQUEST),
            }
        }
        (&Method::POST, "/upload") => {
            let mut body = req.into_body();
            let mut total = 0usize;
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(frame) => total += frame.data_ref().map_or(0, Bytes::len),
                    Err(_) => return Ok(status(StatusCode::BAD_REQUEST)),
                }
            }
            full("text/plain", Bytes::from(format!("{total}\n")))
        }
        (&Method::GET, "/sse") => sse(hold(req.uri().query())),
        (&Method::GET, "/key") => {
            let sent = req.headers().get("x-api-key").map(|v| v.as_bytes());
            let real = routes.real_key.as_deref().map(str::as_bytes);
            let verdict = if sent.is_some() && sent == real {
                "real\n"
            } else {
                "not-real\n"
            };
            full("text/plain", Bytes::from_static(verdict.as_bytes()))
        }
        _ => status(StatusCode::NOT_FOUND),
    };
    Ok(response)
}

fn full(content_type: &'static str, body: Bytes) -> Response<ResBody> {
    let mut response = Response::new(Full::new(body).boxed());
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    response
}

fn status(code: StatusCode) -> Response<ResBody> {
    let mut response = full("text/plain", Bytes::new());
    *response.status_mut() = code;
    response
}

/// `hold_ms` from the query, default 50.
fn hold(query: Option<&str>) -> Duration {
    let ms = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|kv| kv.strip_prefix("hold_ms="))
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    Duration::from_millis(ms)
}

fn sse(hold: Duration) -> Response<ResBody> {
    let body = SseBody {
        sent: false,
        hold: Box::pin(tokio::time::sleep(hold)),
    };
    let mut response = Response::new(body.boxed());
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-cache"),
    );
    response
}

/// One event at once, then the end of the stream after `hold` (a proxy that buffers the
/// stream shows up as a first event no earlier than `hold`).
struct SseBody {
    sent: bool,
    hold: Pin<Box<Sleep>>,
}

impl Body for SseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if !self.sent {
            self.sent = true;
            return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(EVENT)))));
        }
        self.hold.as_mut().poll(cx).map(|()| None)
    }
}
