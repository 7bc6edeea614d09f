//! A TLS upstream whose answers a test writes: each request (head and whole body) goes to
//! the test's handler, which returns the response. For token endpoints and APIs whose
//! checks a test states itself (issue 15's fake OAuth2, GitHub and Google endpoints).
//! HTTP/1.1 and h2 by ALPN; every request recorded.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::request::Parts;
use http::{Response, StatusCode};
use http_body_util::BodyExt;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio_rustls::TlsAcceptor;

use super::body::{self, TestBody};
use super::pki::TestPki;
use super::trace;
use super::upstream::{Task, bind};

/// One request as the scripted upstream received it.
#[derive(Debug, Clone)]
pub struct Received {
    /// The request head.
    pub parts: Parts,
    /// The whole body.
    pub body: Bytes,
}

impl Received {
    /// The value of header `name` (first), as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.parts
            .headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    }

    /// The body as form fields.
    pub fn form(&self) -> Vec<(String, String)> {
        url_decode_form(&self.body)
    }

    /// Form field `name`.
    pub fn field(&self, name: &str) -> Option<String> {
        self.form()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }
}

fn url_decode_form(body: &[u8]) -> Vec<(String, String)> {
    let decode = |s: &[u8]| {
        let spaced: Vec<u8> = s
            .iter()
            .map(|b| if *b == b'+' { b' ' } else { *b })
            .collect();
        percent_encoding::percent_decode(&spaced)
            .decode_utf8_lossy()
            .into_owned()
    };
    body.split(|b| *b == b'&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let mut kv = pair.splitn(2, |b| *b == b'=');
            (
                decode(kv.next().unwrap_or_default()),
                decode(kv.next().unwrap_or_default()),
            )
        })
        .collect()
}

/// The handler: a request in, a response out.
pub type Handler = Arc<dyn Fn(&Received) -> Response<TestBody> + Send + Sync>;

/// A scripted TLS upstream on 127.0.0.1:0.
pub struct Scripted {
    /// Where it listens.
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    _task: Task,
}

impl Scripted {
    /// Serves `names` (certificate from `pki`) with `handler`.
    pub async fn start(
        pki: &TestPki,
        names: &[&str],
        handler: impl Fn(&Received) -> Response<TestBody> + Send + Sync + 'static,
    ) -> Scripted {
        trace::install();
        let mut config = (*pki.server_config(names)).clone();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let (listener, addr) = bind().await;
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let handler: Handler = Arc::new(handler);
        let log = received.clone();
        let accept_loop = async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, handler, log) = (acceptor.clone(), handler.clone(), log.clone());
                tokio::spawn(trace::upstream(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let (handler, log) = (handler.clone(), log.clone());
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = match body.collect().await {
                                Ok(b) => b.to_bytes(),
                                Err(_) => Bytes::new(),
                            };
                            let got = Received { parts, body };
                            let response = handler(&got);
                            log.lock().expect("received").push(got);
                            Ok::<_, Infallible>(response)
                        }
                    });
                    let mut builder = auto::Builder::new(TokioExecutor::new());
                    builder.http1().timer(TokioTimer::new());
                    let _ = builder.serve_connection(TokioIo::new(tls), svc).await;
                }));
            }
        };
        let task = tokio::spawn(trace::upstream(accept_loop));
        Scripted {
            addr,
            received,
            _task: Task(task),
        }
    }

    /// Every request so far, in order.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("received").clone()
    }

    /// The requests so far whose path is `path`.
    pub fn to_path(&self, path: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.parts.uri.path() == path)
            .collect()
    }
}

/// A JSON response.
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<TestBody> {
    let mut response = Response::new(body::full(value.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}
