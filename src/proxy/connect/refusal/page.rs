//! The refusal page: after keygate accepted a refused CONNECT, it serves exactly one
//! answer on it: the refusal. TLS is terminated with a leaf from the refusal issuer
//! (see [`super`]); a client that sends plain HTTP through the CONNECT gets the same
//! answer unencrypted. The first request is answered with the refusal's status,
//! `X-Keygate-Reason` and body (JSON when its `Accept` prefers JSON), then the
//! connection closes. Nothing is ever forwarded and no upstream is contacted: this file
//! holds no path to one.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, Request, Response, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::upgrade::Upgraded;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio_rustls::LazyConfigAcceptor;

use crate::audit::path_without_query;
use crate::config::limits::Limits;
use crate::policy::Host;
use crate::proxy::respond::ProxyError;
use crate::proxy::{Body, BoxError, Proxy};

/// The longest a refusal page's connection lives after its handshake: one request and
/// its answer need far less.
pub const PAGE_LIFETIME: Duration = Duration::from_secs(30);
/// Concurrent h2 streams on a refusal page's connection: the first is answered, then
/// the connection goes away.
const PAGE_H2_STREAMS: u32 = 4;
/// The most of a request body read (and dropped) before the answer.
const DRAIN_BYTES: usize = 1024 * 1024;
/// The longest a request body is read before the answer.
const DRAIN_TIME: Duration = Duration::from_secs(2);
/// TLS record content type of a handshake.
const TLS_HANDSHAKE: u8 = 0x16;

/// What a refusal page answers, shared by the requests of its connection.
pub struct Page {
    /// The refusal.
    pub error: ProxyError,
    /// The CONNECT host: the leaf's only name, and the authority shown in the answer.
    pub host: Host,
    /// The CONNECT port.
    pub port: u16,
}

/// Serves the refusal on an accepted CONNECT until its first request is answered, the
/// client leaves, or a limit expires.
pub async fn serve(proxy: Arc<Proxy>, upgraded: Upgraded, page: Page, limits: Limits) {
    let mut io = TokioIo::new(upgraded);
    let mut first = [0u8; 1];
    let read = tokio::time::timeout(limits.handshake_timeout, io.read(&mut first)).await;
    let Ok(Ok(1)) = read else {
        tracing::debug!("refusal page for {}: the client sent nothing", page.host);
        return;
    };
    serve_after(proxy, io, first.to_vec(), page, limits).await;
}

/// Serves the refusal on `io`, whose first bytes (`read`, at least one) were already
/// read from it: a TLS ClientHello (then TLS is terminated) or anything else (then
/// plain HTTP is answered).
pub async fn serve_after<IO>(proxy: Arc<Proxy>, io: IO, read: Vec<u8>, page: Page, limits: Limits)
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let tls_first = read.first() == Some(&TLS_HANDSHAKE);
    let (reader, writer) = tokio::io::split(io);
    let io = tokio::io::join(std::io::Cursor::new(read).chain(reader), writer);
    let page = Arc::new(page);
    if !tls_first {
        return answer(io, page, &limits, false).await;
    }
    let Some(configs) = &proxy.refusal_configs else {
        return;
    };
    let accepted = tokio::time::timeout(
        limits.handshake_timeout,
        LazyConfigAcceptor::new(rustls::server::Acceptor::default(), io),
    )
    .await;
    let Ok(Ok(start)) = accepted else {
        tracing::debug!("refusal page for {}: no TLS ClientHello", page.host);
        return;
    };
    let config = match configs.for_host(&page.host) {
        Ok(config) => config,
        Err(e) => {
            tracing::warn!(
                "refusal page for {}: cannot mint its certificate: {e}",
                page.host
            );
            return;
        }
    };
    match tokio::time::timeout(limits.handshake_timeout, start.into_stream(config)).await {
        Ok(Ok(tls)) => answer(tls, page, &limits, true).await,
        // Most often a client that does not trust keygate's CA: it sees a certificate
        // error instead of the refusal (`refusals: connect` serves such clients).
        Ok(Err(e)) => tracing::info!(
            "refusal page for {}: the client's TLS handshake failed ({e}); it may not trust keygate's CA (refusals: connect answers such clients at the CONNECT)",
            page.host
        ),
        Err(_) => tracing::debug!("refusal page for {}: handshake timed out", page.host),
    }
}

/// Serves HTTP/1.1 or h2 on `io`, answering with the refusal, until the first answer
/// has gone out.
async fn answer<IO>(io: IO, page: Arc<Page>, limits: &Limits, tls: bool)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let answered = Arc::new(tokio::sync::Notify::new());
    let notify = answered.clone();
    let svc = service_fn(move |req: Request<Incoming>| {
        // The connection goes away once the answer's body is dropped, that is, written
        // out: an h2 GOAWAY sent earlier could reach the client before the answer.
        let response = respond(&page, &req, tls).map(|body| {
            let body = Sent {
                body,
                notify: notify.clone(),
            };
            BodyExt::boxed(body)
        });
        async move {
            discard_body(req.into_body()).await;
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(false);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(PAGE_H2_STREAMS);
    let serving = builder.serve_connection(TokioIo::new(io), svc);
    tokio::pin!(serving);
    let lifetime = tokio::time::sleep(PAGE_LIFETIME);
    tokio::pin!(lifetime);
    tokio::select! {
        _ = serving.as_mut() => return,
        () = answered.notified() => serving.as_mut().graceful_shutdown(),
        () = lifetime.as_mut() => return,
    }
    // The answer is on its way: let it finish, within what is left of the lifetime.
    tokio::select! {
        _ = serving => {}
        () = lifetime => {}
    }
}

/// Reads and drops what the client sends of its request body (at most [`DRAIN_BYTES`]
/// within [`DRAIN_TIME`]) before the answer: closing a connection with unread data makes
/// the kernel reset it, and a client then loses the answer before it reads it
/// ("Server disconnected without sending a response"). Nothing of it goes anywhere.
async fn discard_body(mut body: Incoming) {
    let drain = async {
        let mut seen = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            seen += frame.data_ref().map_or(0, bytes::Bytes::len);
            if seen > DRAIN_BYTES {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, drain).await;
}

/// A body that says when it is dropped (hyper drops a response body once it is sent).
struct Sent {
    body: Body,
    notify: Arc<tokio::sync::Notify>,
}

impl Drop for Sent {
    fn drop(&mut self) {
        self.notify.notify_one();
    }
}

impl http_body::Body for Sent {
    type Data = bytes::Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// The refusal for one request on the page.
fn respond(page: &Page, req: &Request<Incoming>, tls: bool) -> Response<Body> {
    let scheme = if tls { "https" } else { "http" };
    let authority = match (tls, page.port) {
        (true, 443) | (false, 80) => page.host.to_string(),
        _ => format!("{}:{}", page.host, page.port),
    };
    let what = format!(
        "{} {scheme}://{authority}{}",
        req.method(),
        path_without_query(req.uri().path())
    );
    let mut response = page
        .error
        .to_response_for(&what, req.headers().get(header::ACCEPT));
    let headers = response.headers_mut();
    // A refusal is about this moment's policy: never cached, and the connection ends.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if req.version() < http::Version::HTTP_2 {
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}
