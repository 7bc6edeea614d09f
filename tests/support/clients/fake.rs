//! The fake of the services the real clients talk to (tests/integration/clients.rs):
//! the Anthropic Messages API, OpenAI Chat Completions, a git host and a plain API, on
//! 127.0.0.1 over TLS with a certificate from the test PKI, accepting only the real
//! value and recording every request server-side.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use serde_json::{Value, json};
use tokio_rustls::TlsAcceptor;

use crate::support::api::Seen;
use crate::support::body::{self, TestBody};
use crate::support::pki::TestPki;
use crate::support::trace;
use crate::support::upstream::{bind, drain};

/// What the fake git host advertises for `/owner/repo.git`: this commit as `HEAD` and
/// `refs/heads/main`.
pub const GIT_COMMIT: &str = "5d1c0f8e2b7a4c3d9e6f1a2b3c4d5e6f7a8b9c0d";

/// The text the fake Messages API and Chat Completions API answer with.
pub const REPLY: &str = "hello from the fake upstream";

/// A fake of the services the clients talk to, over TLS (HTTP/1.1 and h2) with a
/// certificate from the test PKI. It accepts only the real value and records every
/// request server-side. Routes:
///
/// * `POST /v1/messages`: the Anthropic Messages API, for the real value in `x-api-key`
///   or as `Bearer <real>`.
/// * `POST /v1/chat/completions`: OpenAI Chat Completions, for `Bearer <real>`.
/// * `GET /owner/repo.git/info/refs?service=git-upload-pack`: git smart HTTP; `401` with
///   `WWW-Authenticate: Basic` unless the Basic credentials are `x-access-token:<real>`.
/// * anything else: `{"ok": true}` for `Bearer <real>` (else 401), with the
///   `authorization` it received echoed in `x-seen-authorization` (keygate scrubs it).
///
/// It runs on a runtime of its own, so the tests that drive it are plain blocking code.
pub struct FakeService {
    /// Where it listens.
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    _runtime: tokio::runtime::Runtime,
}

impl FakeService {
    /// Starts the service for `host`, accepting `real`.
    pub fn start(pki: &TestPki, host: &str, real: &str) -> FakeService {
        trace::install();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("the fake service's runtime");
        let mut config = (*pki.server_config(&[host])).clone();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let (listener, addr) = runtime.block_on(bind());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (log, real) = (seen.clone(), Arc::<str>::from(real));
        runtime.spawn(trace::upstream(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, log, real) = (acceptor.clone(), log.clone(), real.clone());
                tokio::spawn(trace::upstream(async move {
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        serve(tls, log, real).await;
                    }
                }));
            }
        }));
        FakeService {
            addr,
            seen,
            _runtime: runtime,
        }
    }

    /// Every request received so far, in arrival order.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("seen").clone()
    }
}

/// Spawns hyper's h2 stream futures as the fake's work (left out of the trace capture).
#[derive(Clone)]
struct Exec;

impl<F> hyper::rt::Executor<F> for Exec
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        tokio::spawn(trace::upstream(fut));
    }
}

async fn serve(
    tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    seen: Arc<Mutex<Vec<Seen>>>,
    real: Arc<str>,
) {
    let svc = service_fn(move |req: Request<Incoming>| {
        let (seen, real) = (seen.clone(), real.clone());
        async move {
            seen.lock().expect("seen").push(Seen {
                version: req.version(),
                method: req.method().to_string(),
                target: req
                    .uri()
                    .path_and_query()
                    .map_or("/", |pq| pq.as_str())
                    .into(),
                headers: req
                    .headers()
                    .iter()
                    .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
                    .collect(),
            });
            Ok::<_, Infallible>(route(req, &real).await)
        }
    });
    let mut builder = auto::Builder::new(Exec);
    builder.http1().timer(TokioTimer::new());
    builder.http2().timer(TokioTimer::new());
    let _ = builder.serve_connection(TokioIo::new(tls), svc).await;
}

fn header(req: &Request<Incoming>, name: &str) -> Option<String> {
    req.headers()
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

fn reply(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<bytes::Bytes>,
) -> Response<TestBody> {
    let mut resp = Response::new(body::full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    resp
}

fn json_reply(ok: bool, value: Value) -> Response<TestBody> {
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::UNAUTHORIZED
    };
    reply(status, "application/json", value.to_string())
}

async fn route(req: Request<Incoming>, real: &str) -> Response<TestBody> {
    let bearer = header(&req, "authorization").is_some_and(|v| v == format!("Bearer {real}"));
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    if path.ends_with(".git/info/refs") {
        return git_refs(&req, real);
    }
    // The Messages API takes the key in `x-api-key` or, as the SDK sends it since 2.x,
    // as `Authorization: Bearer`.
    let api_key = bearer || header(&req, "x-api-key").is_some_and(|v| v == real);
    let seen_auth = header(&req, "authorization");
    drain(req.into_body()).await;
    match (method, path.as_str()) {
        (Method::POST, "/v1/messages") if api_key => json_reply(true, anthropic_message()),
        (Method::POST, "/v1/messages") => json_reply(false, anthropic_error()),
        (Method::POST, "/v1/chat/completions") => json_reply(
            bearer,
            if bearer {
                openai_completion()
            } else {
                openai_error()
            },
        ),
        (_, path) => {
            let mut resp = json_reply(bearer, json!({ "ok": bearer, "path": path }));
            if let Some(v) = seen_auth.and_then(|v| HeaderValue::from_str(&v).ok()) {
                resp.headers_mut().insert("x-seen-authorization", v);
            }
            resp
        }
    }
}

fn anthropic_message() -> Value {
    json!({
        "id": "msg_01KeygateFakeUpstream",
        "type": "message",
        "role": "assistant",
        "model": "claude-x",
        "content": [{ "type": "text", "text": REPLY }],
        "stop_reason": "end_turn",
        "stop_sequence": null,
        "usage": { "input_tokens": 8, "output_tokens": 5 },
    })
}

fn anthropic_error() -> Value {
    json!({
        "type": "error",
        "error": { "type": "authentication_error", "message": "invalid x-api-key" },
    })
}

fn openai_completion() -> Value {
    json!({
        "id": "chatcmpl-KeygateFakeUpstream",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "gpt-x",
        "choices": [{
            "index": 0,
            "message": { "role": "assistant", "content": REPLY, "refusal": null },
            "logprobs": null,
            "finish_reason": "stop",
        }],
        "usage": { "prompt_tokens": 8, "completion_tokens": 5, "total_tokens": 13 },
    })
}

fn openai_error() -> Value {
    json!({
        "error": {
            "message": "Incorrect API key provided",
            "type": "invalid_request_error",
            "param": null,
            "code": "invalid_api_key",
        },
    })
}

/// git's pkt-line framing.
fn pkt_line(data: &str) -> String {
    format!("{:04x}{data}", data.len() + 4)
}

/// The ref advertisement of `/owner/repo.git` (smart HTTP, protocol v0), or the 401 that
/// makes git ask its credential helper.
fn git_refs(req: &Request<Incoming>, real: &str) -> Response<TestBody> {
    let expected = format!("x-access-token:{real}");
    let authorized = header(req, "authorization")
        .and_then(|v| v.strip_prefix("Basic ").map(str::to_string))
        .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
        .is_some_and(|creds| creds == expected.as_bytes());
    if req.uri().path() != "/owner/repo.git/info/refs"
        || req.uri().query() != Some("service=git-upload-pack")
    {
        return reply(StatusCode::NOT_FOUND, "text/plain", "no such repository\n");
    }
    if !authorized {
        let mut resp = reply(
            StatusCode::UNAUTHORIZED,
            "text/plain",
            "authentication required\n",
        );
        resp.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"x\""),
        );
        return resp;
    }
    let caps = "side-band-64k object-format=sha1 symref=HEAD:refs/heads/main agent=git/fake";
    let body = format!(
        "{}0000{}{}0000",
        pkt_line("# service=git-upload-pack\n"),
        pkt_line(&format!("{GIT_COMMIT} HEAD\0{caps}\n")),
        pkt_line(&format!("{GIT_COMMIT} refs/heads/main\n")),
    );
    reply(
        StatusCode::OK,
        "application/x-git-upload-pack-advertisement",
        body,
    )
}
