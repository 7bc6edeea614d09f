//! Fake upstreams on 127.0.0.1:0: a TLS HTTP/1.1 echo server (or a TLS server that reads
//! to end-of-stream before it replies), a plain HTTP/1.1 server with streaming and gated
//! routes, and a raw TCP server that records the bytes it receives.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls::ServerConfig;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{Mutex, Notify, mpsc};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use super::body::{self, Fnv, TestBody};
use super::pki::TestPki;
use super::{WAIT, within};

/// Stops an accept loop when the upstream handle is dropped.
pub(super) struct Task(pub(super) JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub(super) async fn bind() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind upstream");
    let addr = listener.local_addr().expect("upstream address");
    (listener, addr)
}

/// Serves HTTP/1.1 on `io` with `handler`.
async fn serve_http<IO, F, Fut>(io: IO, handler: F)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<TestBody>> + Send + 'static,
{
    let handler = Arc::new(handler);
    let svc = service_fn(move |req| {
        let handler = handler.clone();
        async move { Ok::<_, Infallible>(handler(req).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), svc)
        .await;
}

/// Reads a request body to its end: its length and hash.
pub(super) async fn drain(body: Incoming) -> (usize, Fnv) {
    drain_from(body, 0, Fnv::default()).await
}

/// Reads the rest of a body, continuing a length and hash.
async fn drain_from(mut body: Incoming, mut len: usize, mut hash: Fnv) -> (usize, Fnv) {
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { break };
        if let Some(data) = frame.data_ref() {
            len += data.len();
            hash.update(data);
        }
    }
    (len, hash)
}

/// A JSON description of `req`: method, request target, headers in order, and the
/// body's length and hash. `extra` is merged in.
async fn echo(req: Request<Incoming>, extra: Value) -> Response<TestBody> {
    let (parts, incoming) = req.into_parts();
    let headers: Vec<Value> = parts
        .headers
        .iter()
        .map(|(k, v)| json!([k.as_str(), String::from_utf8_lossy(v.as_bytes())]))
        .collect();
    let (len, hash) = drain(incoming).await;
    let mut out = json!({
        "method": parts.method.as_str(),
        "uri": parts.uri.to_string(),
        "headers": headers,
        "body_len": len,
        "body_hash": hash.0,
    });
    if let (Some(out), Value::Object(extra)) = (out.as_object_mut(), extra) {
        out.extend(extra);
    }
    Response::new(body::full(out.to_string()))
}

/// What the TLS upstream does once the handshake is done.
#[derive(Clone, Copy)]
enum TlsBehaviour {
    /// Serve HTTP/1.1, answering every request with [`echo`] (plus the SNI it saw).
    Echo,
    /// Read application data until the client's close_notify/FIN, then write one line
    /// saying how much arrived, then close.
    ReplyAfterEof,
}

/// A TLS upstream presenting a leaf of the test PKI.
pub struct TlsUpstream {
    /// Where it listens.
    pub addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    handshakes: Arc<AtomicUsize>,
    _task: Task,
}

impl TlsUpstream {
    /// An HTTP/1.1 echo server whose certificate covers `names`.
    pub async fn echo(pki: &TestPki, names: &[&str]) -> TlsUpstream {
        TlsUpstream::start(pki.server_config(names), TlsBehaviour::Echo).await
    }

    /// A server that reads to end-of-stream, then replies
    /// `received N bytes, fnv HASH` and closes.
    pub async fn reply_after_eof(pki: &TestPki, names: &[&str]) -> TlsUpstream {
        TlsUpstream::start(pki.server_config(names), TlsBehaviour::ReplyAfterEof).await
    }

    async fn start(config: Arc<ServerConfig>, behaviour: TlsBehaviour) -> TlsUpstream {
        let (listener, addr) = bind().await;
        let accepted = Arc::new(AtomicUsize::new(0));
        let handshakes = Arc::new(AtomicUsize::new(0));
        let acceptor = TlsAcceptor::from(config);
        let (acc, hs) = (accepted.clone(), handshakes.clone());
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                acc.fetch_add(1, Ordering::SeqCst);
                let (acceptor, hs) = (acceptor.clone(), hs.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    hs.fetch_add(1, Ordering::SeqCst);
                    match behaviour {
                        TlsBehaviour::Echo => {
                            let sni = tls.get_ref().1.server_name().map(str::to_string);
                            serve_http(tls, move |req| echo(req, json!({ "sni": sni.clone() })))
                                .await;
                        }
                        TlsBehaviour::ReplyAfterEof => reply_after_eof(tls).await,
                    }
                });
            }
        });
        TlsUpstream {
            addr,
            accepted,
            handshakes,
            _task: Task(task),
        }
    }

    /// TCP connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// TLS handshakes completed so far.
    pub fn handshakes(&self) -> usize {
        self.handshakes.load(Ordering::SeqCst)
    }
}

async fn reply_after_eof(mut tls: impl AsyncRead + AsyncWrite + Unpin) {
    let mut received = Vec::new();
    if tls.read_to_end(&mut received).await.is_err() {
        return;
    }
    let mut hash = Fnv::default();
    hash.update(&received);
    let reply = format!("received {} bytes, fnv {:016x}\n", received.len(), hash.0);
    let _ = tls.write_all(reply.as_bytes()).await;
    let _ = tls.shutdown().await;
}

/// State shared between the plain upstream and its test.
struct Shared {
    arrivals: mpsc::UnboundedSender<String>,
    release: Notify,
}

/// A plain-HTTP/1.1 upstream. Routes:
///
/// * `/bytes/N`: a chunked response of N pattern bytes ([`body::pattern`]).
/// * `/gate`: the head and `first\n` at once, then `rest\n` after [`HttpUpstream::release`].
/// * `/hold`: nothing until [`HttpUpstream::release`], then `held\n`.
/// * `/upload-gate`: reads the first body frame, reports the arrival, then reads the rest
///   and echoes.
/// * anything else: [`echo`].
///
/// Every request's target is reported to [`HttpUpstream::next_arrival`] when it arrives.
pub struct HttpUpstream {
    /// Where it listens.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    arrivals: Mutex<mpsc::UnboundedReceiver<String>>,
    accepted: Arc<AtomicUsize>,
    _task: Task,
}

impl HttpUpstream {
    /// Starts the upstream on 127.0.0.1:0.
    pub async fn start() -> HttpUpstream {
        let (listener, addr) = bind().await;
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            arrivals: tx,
            release: Notify::new(),
        });
        let accepted = Arc::new(AtomicUsize::new(0));
        let (state, acc) = (shared.clone(), accepted.clone());
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                acc.fetch_add(1, Ordering::SeqCst);
                let state = state.clone();
                tokio::spawn(serve_http(tcp, move |req| route(state.clone(), req)));
            }
        });
        HttpUpstream {
            addr,
            shared,
            arrivals: Mutex::new(rx),
            accepted,
            _task: Task(task),
        }
    }

    /// The target of the next request that arrived (or the first frame of an upload).
    pub async fn next_arrival(&self) -> String {
        let mut rx = self.arrivals.lock().await;
        within("a request at the upstream", rx.recv())
            .await
            .expect("upstream gone")
    }

    /// An arrival already reported, without waiting.
    pub fn try_arrival(&self) -> Option<String> {
        self.arrivals.try_lock().ok()?.try_recv().ok()
    }

    /// Lets one gated route go on.
    pub fn release(&self) {
        self.shared.release.notify_one();
    }

    /// TCP connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

async fn route(state: Arc<Shared>, req: Request<Incoming>) -> Response<TestBody> {
    let target = req.uri().to_string();
    let path = req.uri().path().to_string();
    if path != "/upload-gate" {
        let _ = state.arrivals.send(target.clone());
    }
    if let Some(n) = path.strip_prefix("/bytes/") {
        let n: usize = n.parse().expect("/bytes/N");
        return Response::new(stream_pattern(n));
    }
    match path.as_str() {
        "/gate" => {
            let (tx, body) = body::channel();
            tokio::spawn(async move {
                let _ = tx.send(Bytes::from_static(b"first\n")).await;
                state.release.notified().await;
                let _ = tx.send(Bytes::from_static(b"rest\n")).await;
            });
            Response::new(body)
        }
        "/hold" => {
            state.release.notified().await;
            Response::new(body::full("held\n"))
        }
        "/upload-gate" => {
            let (parts, mut incoming) = req.into_parts();
            let mut hash = Fnv::default();
            let mut len = 0;
            if let Some(Ok(frame)) = incoming.frame().await
                && let Some(data) = frame.data_ref()
            {
                len += data.len();
                hash.update(data);
            }
            let _ = state.arrivals.send(target);
            let (total, hash) = drain_from(incoming, len, hash).await;
            let out = json!({
                "method": parts.method.as_str(),
                "first_len": len,
                "body_len": total,
                "body_hash": hash.0,
            });
            Response::new(body::full(out.to_string()))
        }
        _ => echo(req, json!({})).await,
    }
}

/// `n` pattern bytes in 64 KiB frames, produced as the client reads them.
pub(super) fn stream_pattern(n: usize) -> TestBody {
    const FRAME: usize = 64 * 1024;
    let (tx, body) = body::channel();
    tokio::spawn(async move {
        let mut offset = 0;
        while offset < n {
            let len = FRAME.min(n - offset);
            if tx.send(body::pattern(offset, len)).await.is_err() {
                return;
            }
            offset += len;
        }
    });
    body
}

/// A raw TCP upstream that reads each connection to its end and reports what it got.
pub struct RecordingUpstream {
    /// Where it listens.
    pub addr: SocketAddr,
    received: Mutex<mpsc::UnboundedReceiver<Vec<u8>>>,
    _task: Task,
}

impl RecordingUpstream {
    /// Starts the upstream on 127.0.0.1:0.
    pub async fn start() -> RecordingUpstream {
        let (listener, addr) = bind().await;
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut got = Vec::new();
                    // Longer than a test waits: a connection the proxy never
                    // closes fails the test instead of passing as empty.
                    let _ = tokio::time::timeout(2 * WAIT, tcp.read_to_end(&mut got)).await;
                    let _ = tx.send(got);
                });
            }
        });
        RecordingUpstream {
            addr,
            received: Mutex::new(rx),
            _task: Task(task),
        }
    }

    /// Every byte the next connection carried, once its peer closed it.
    pub async fn next_connection(&self) -> Vec<u8> {
        let mut rx = self.received.lock().await;
        within("a connection at the recording upstream", rx.recv())
            .await
            .expect("upstream gone")
    }
}
