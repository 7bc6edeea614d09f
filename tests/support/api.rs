//! A fake API behind TLS, as an intercepted host's upstream: HTTP/1.1 and h2 by ALPN
//! (or HTTP/1.1 only), every request recorded server-side so a test asserts what the
//! upstream really received (a reflected body reaches the client scrubbed). Routes:
//!
//! * `/sse`: `text/event-stream`; event `one` at once, event `two` after
//!   [`ApiUpstream::release`]; `?coding=gzip` compresses the stream with gzip, flushed
//!   after each event.
//! * `/bomb`: [`compress::bomb`] labelled `Content-Encoding: gzip`.
//! * `/bytes/N`: N pattern bytes ([`body::pattern`]), streamed in 64 KiB frames.
//! * `/upload`: reads the request body; answers `{"body_len", "body_hash",
//!   "content_length"}` (the last the request's `Content-Length`, or null).
//! * `/ws`: a WebSocket echo (101, then [`ws::echo_server`], which records every frame,
//!   see [`ApiUpstream::ws_frames`]); an offered `Sec-WebSocket-Protocol` is selected,
//!   i.e. echoed in the 101, and the value of `x-accept-extension` is put in the 101's
//!   `Sec-WebSocket-Extensions` (a server that ignores what was offered).
//! * `/reflect`: the request's `x-reflect` header value echoed in the response header
//!   `x-reflected` and in the body `before:VALUE:after\n`, the value split across two
//!   body chunks; `?mode=bytewise` sends each byte of the value as a chunk of its own,
//!   `?mode=whole` the body in one piece with a Content-Length, `?mode=trailer` the body
//!   in one piece and the value again in the trailer `x-reflected-trailer`; any mode
//!   [`compress::encode`] knows (`gzip`, `br`, `gzip-br`, `unknown`, ...) the body really
//!   compressed (or mislabelled) in one piece, with its `Content-Encoding`.
//! * `/mirror`: a hostile echo of the credential received, in the form `?how=` names
//!   (verbatim, re-encoded, in the reason phrase, a header name, a trailer...): see
//!   [`mirror`].
//! * anything else: a JSON description of the request (method, uri, version, headers),
//!   with every header value and the query also echoed in the `x-echo` header.
//!
//! Its tasks run in the trace capture's upstream span: what it logs is not keygate's.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rustls::ServerConfig;
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio_rustls::TlsAcceptor;

use super::body::{self, TestBody};
use super::pki::TestPki;
use super::upstream::{Task, bind, drain, stream_pattern};
use super::{compress, mirror, trace, ws};

/// What the upstream offers in ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alpn {
    /// `h2` and `http/1.1`.
    H2AndHttp1,
    /// `http/1.1` only (and it serves nothing else).
    Http1Only,
}

/// One request as the upstream received it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// HTTP/1.1 or HTTP/2.
    pub version: Version,
    /// The method.
    pub method: String,
    /// Path and query.
    pub target: String,
    /// Every header, in order (names lower-case).
    pub headers: Vec<(String, String)>,
}

impl Seen {
    /// Every value of header `name`.
    pub fn header(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

#[derive(Default)]
struct State {
    seen: Mutex<Vec<Seen>>,
    release: Notify,
    ws: ws::Received,
}

/// A TLS API upstream on 127.0.0.1:0.
pub struct ApiUpstream {
    /// Where it listens.
    pub addr: SocketAddr,
    state: Arc<State>,
    handshakes: Arc<AtomicUsize>,
    alpn: Arc<Mutex<Vec<String>>>,
    _task: Task,
}

/// Spawns upstream futures (hyper's h2 streams included) inside the upstream span.
#[derive(Clone)]
struct UpstreamExec;

impl<F> hyper::rt::Executor<F> for UpstreamExec
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        tokio::spawn(trace::upstream(fut));
    }
}

impl ApiUpstream {
    /// An upstream for `names` (certificate from `pki`) offering `alpn`.
    pub async fn start(pki: &TestPki, names: &[&str], alpn: Alpn) -> ApiUpstream {
        ApiUpstream::with_config(pki.server_config(names), alpn).await
    }

    /// An upstream presenting the certificate of `config` (e.g.
    /// [`TestPki::expired_server_config`]), offering `alpn`.
    pub async fn with_config(config: Arc<ServerConfig>, alpn: Alpn) -> ApiUpstream {
        trace::install();
        let mut config = (*config).clone();
        config.alpn_protocols = match alpn {
            Alpn::H2AndHttp1 => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            Alpn::Http1Only => vec![b"http/1.1".to_vec()],
        };
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let (listener, addr) = bind().await;
        let state = Arc::new(State::default());
        let handshakes = Arc::new(AtomicUsize::new(0));
        let negotiated = Arc::new(Mutex::new(Vec::new()));
        let (st, hs, neg) = (state.clone(), handshakes.clone(), negotiated.clone());
        let accept_loop = async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, st, hs, neg) =
                    (acceptor.clone(), st.clone(), hs.clone(), neg.clone());
                let conn = async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    hs.fetch_add(1, Ordering::SeqCst);
                    let proto = tls.get_ref().1.alpn_protocol().unwrap_or(b"none");
                    neg.lock()
                        .expect("alpn log")
                        .push(String::from_utf8_lossy(proto).into_owned());
                    serve(tls, st, alpn).await;
                };
                tokio::spawn(trace::upstream(conn));
            }
        };
        let task = tokio::spawn(trace::upstream(accept_loop));
        ApiUpstream {
            addr,
            state,
            handshakes,
            alpn: negotiated,
            _task: Task(task),
        }
    }

    /// Every request received so far, in arrival order.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().expect("seen").clone()
    }

    /// The only request received so far (fails unless exactly one arrived).
    pub fn only(&self) -> Seen {
        let seen = self.seen();
        assert_eq!(seen.len(), 1, "requests at the upstream: {seen:#?}");
        seen.into_iter().next().expect("one request")
    }

    /// TLS handshakes completed so far.
    pub fn handshakes(&self) -> usize {
        self.handshakes.load(Ordering::SeqCst)
    }

    /// The ALPN protocol of each connection so far (`none` when none was agreed).
    pub fn negotiated(&self) -> Vec<String> {
        self.alpn.lock().expect("alpn log").clone()
    }

    /// Every WebSocket frame `/ws` received so far, unmasked, in arrival order.
    pub fn ws_frames(&self) -> Vec<ws::Frame> {
        self.state.ws.lock().expect("frames").clone()
    }

    /// Lets the next (or a waiting) `/sse` send its second event.
    pub fn release(&self) {
        self.state.release.notify_one();
    }
}

async fn serve(
    tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    st: Arc<State>,
    alpn: Alpn,
) {
    let svc = service_fn(move |req| {
        let st = st.clone();
        async move { Ok::<_, Infallible>(route(st, req).await) }
    });
    let mut builder = auto::Builder::new(UpstreamExec);
    builder.http1().timer(TokioTimer::new());
    builder.http2().timer(TokioTimer::new());
    if alpn == Alpn::Http1Only {
        builder = builder.http1_only();
    }
    let _ = builder
        .serve_connection_with_upgrades(TokioIo::new(tls), svc)
        .await;
}

fn record(st: &State, req: &Request<Incoming>) {
    let seen = Seen {
        version: req.version(),
        method: req.method().to_string(),
        target: req
            .uri()
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .to_string(),
        headers: req
            .headers()
            .iter()
            .map(|(k, v)| {
                let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
                (k.as_str().to_string(), v)
            })
            .collect(),
    };
    st.seen.lock().expect("seen").push(seen);
}

async fn route(st: Arc<State>, req: Request<Incoming>) -> Response<TestBody> {
    record(&st, &req);
    let path = req.uri().path().to_string();
    if let Some(n) = path.strip_prefix("/bytes/") {
        return Response::new(stream_pattern(n.parse().expect("/bytes/N")));
    }
    match path.as_str() {
        "/sse" => sse(st, req.uri().query() == Some("coding=gzip")),
        "/bomb" => {
            let mut resp = Response::new(body::full(compress::bomb()));
            resp.headers_mut().insert(
                http::header::CONTENT_ENCODING,
                HeaderValue::from_static("gzip"),
            );
            resp
        }
        "/upload" => {
            let declared = req
                .headers()
                .get("content-length")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let (len, hash) = drain(req.into_body()).await;
            let out = json!({ "body_len": len, "body_hash": hash.0, "content_length": declared });
            Response::new(body::full(out.to_string()))
        }
        "/ws" => websocket(req, st.ws.clone()),
        "/reflect" => reflect(&req),
        "/mirror" => mirror::respond(&req),
        _ => echo(req),
    }
}

fn sse(st: Arc<State>, gzip: bool) -> Response<TestBody> {
    let (tx, body) = body::channel();
    tokio::spawn(trace::upstream(async move {
        let mut gz = gzip.then(compress::GzipEvents::default);
        let mut coded = |event: &'static [u8]| match gz.as_mut() {
            Some(gz) => Bytes::from(gz.event(event)),
            None => Bytes::from_static(event),
        };
        let _ = tx.send(coded(b"data: one\n\n")).await;
        st.release.notified().await;
        let _ = tx.send(coded(b"data: two\n\n")).await;
        if let Some(gz) = gz {
            let _ = tx.send(Bytes::from(gz.finish())).await;
        }
    }));
    let mut resp = Response::new(body);
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    if gzip {
        resp.headers_mut().insert(
            http::header::CONTENT_ENCODING,
            HeaderValue::from_static("gzip"),
        );
    }
    resp
}

fn websocket(mut req: Request<Incoming>, received: ws::Received) -> Response<TestBody> {
    let key = req
        .headers()
        .get("sec-websocket-key")
        .and_then(|v| v.to_str().ok())
        .map(ws::accept_key);
    let is_ws = req
        .headers()
        .get(http::header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    let Some(accept) = key.filter(|_| is_ws) else {
        let mut resp = Response::new(body::full("not a WebSocket handshake\n"));
        *resp.status_mut() = StatusCode::BAD_REQUEST;
        return resp;
    };
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(trace::upstream(async move {
        if let Ok(upgraded) = upgrade.await {
            ws::echo_server(TokioIo::new(upgraded), received).await;
        }
    }));
    let mut resp = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(http::header::CONNECTION, "upgrade")
        .header(http::header::UPGRADE, "websocket")
        .header("sec-websocket-accept", accept)
        .body(body::empty())
        .expect("101");
    // The server selects the (single) subprotocol the client offered, as RFC 6455 has
    // it echo one of the offers.
    if let Some(offer) = req.headers().get("sec-websocket-protocol") {
        resp.headers_mut()
            .insert("sec-websocket-protocol", offer.clone());
    }
    // A server that accepts an extension whether offered or not (a broken one).
    if let Some(accepted) = req.headers().get("x-accept-extension") {
        resp.headers_mut()
            .insert("sec-websocket-extensions", accepted.clone());
    }
    resp
}

fn reflect(req: &Request<Incoming>) -> Response<TestBody> {
    let value = req
        .headers()
        .get("x-reflect")
        .map(|v| v.as_bytes().to_vec())
        .unwrap_or_default();
    let mode = req.uri().query().unwrap_or("");
    let whole = [b"before:".as_slice(), &value, b":after\n"].concat();
    let coded = mode
        .strip_prefix("mode=")
        .and_then(|m| compress::encode(m, &whole));
    let mut resp = if let Some((bytes, label)) = coded {
        let mut resp = Response::new(body::full(bytes));
        resp.headers_mut().insert(
            http::header::CONTENT_ENCODING,
            HeaderValue::from_static(label),
        );
        resp
    } else if mode.contains("mode=whole") {
        Response::new(body::full(whole))
    } else if mode.contains("mode=trailer") {
        let mut trailers = http::HeaderMap::new();
        if let Ok(v) = HeaderValue::from_bytes(&value) {
            trailers.insert("x-reflected-trailer", v);
        }
        Response::new(body::with_trailers(whole, trailers))
    } else if mode.contains("mode=bytewise") {
        // Every byte of the value in a chunk of its own.
        let (tx, body) = body::channel();
        let bytes = value.clone();
        tokio::spawn(trace::upstream(async move {
            let _ = tx.send(Bytes::from_static(b"before:")).await;
            for b in bytes {
                let _ = tx.send(Bytes::from(vec![b])).await;
                tokio::task::yield_now().await;
            }
            let _ = tx.send(Bytes::from_static(b":after\n")).await;
        }));
        Response::new(body)
    } else {
        // The value in two chunks, so a scrubber must join them.
        let half = value.len() / 2;
        let first = [b"before:".as_slice(), &value[..half]].concat();
        let second = [&value[half..], b":after\n".as_slice()].concat();
        let (tx, body) = body::channel();
        tokio::spawn(trace::upstream(async move {
            let _ = tx.send(Bytes::from(first)).await;
            tokio::task::yield_now().await;
            let _ = tx.send(Bytes::from(second)).await;
        }));
        Response::new(body)
    };
    if let Ok(v) = HeaderValue::from_bytes(&value) {
        resp.headers_mut().insert("x-reflected", v);
    }
    resp
}

fn echo(req: Request<Incoming>) -> Response<TestBody> {
    let headers: Vec<Value> = req
        .headers()
        .iter()
        .map(|(k, v)| json!([k.as_str(), String::from_utf8_lossy(v.as_bytes())]))
        .collect();
    let version = format!("{:?}", req.version());
    let out = json!({
        "method": req.method().as_str(),
        "uri": req.uri().path_and_query().map_or("/", |pq| pq.as_str()),
        "version": version,
        "headers": headers,
    });
    let mut all: Vec<&[u8]> = req.headers().values().map(|v| v.as_bytes()).collect();
    all.push(req.uri().query().unwrap_or("").as_bytes());
    let mut resp = Response::new(body::full(out.to_string()));
    if let Ok(v) = HeaderValue::from_bytes(&all.join(&b"; "[..])) {
        resp.headers_mut().insert("x-echo", v);
    }
    resp
}
