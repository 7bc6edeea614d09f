//! Clients that talk to the proxy over real sockets: a raw one that writes request bytes
//! and parses the response head by hand (CONNECT, malformed input), TLS through a
//! tunnel verified against the test root, and hyper for well-formed HTTP/1.1.

use std::io;
use std::net::SocketAddr;

use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::body::{self, TestBody};
use super::pki::TestPki;
use super::within;

/// Largest response head the raw client reads.
const MAX_HEAD: usize = 64 * 1024;

/// A response read by the raw client.
#[derive(Debug)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Headers, names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    /// The body, when the response had a Content-Length.
    pub body: String,
}

impl Reply {
    /// The first value of header `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The `X-Keygate-Reason` header, or "" when there is none.
    pub fn reason(&self) -> &str {
        self.header("x-keygate-reason").unwrap_or("")
    }
}

/// Reads one response from `io`: the head, then a Content-Length body unless the
/// response opens a tunnel. `None` when the peer closed (or reset) before sending a
/// byte.
pub async fn read_reply(io: &mut (impl AsyncRead + Unpin), to_connect: bool) -> Option<Reply> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match io.read(&mut byte).await {
            Ok(0) | Err(_) if head.is_empty() => return None,
            Ok(0) => panic!(
                "connection closed inside a response head: {:?}",
                String::from_utf8_lossy(&head)
            ),
            Ok(_) => head.push(byte[0]),
            Err(e) => panic!("reading a response head: {e}"),
        }
        assert!(head.len() <= MAX_HEAD, "response head too large");
    }
    let text = String::from_utf8(head).expect("response head is UTF-8");
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut reply = Reply {
        status,
        headers,
        body: String::new(),
    };
    let tunnel = to_connect && (200..300).contains(&status);
    if let Some(len) = reply.header("content-length").filter(|_| !tunnel) {
        let mut body = vec![0u8; len.parse().expect("content-length")];
        io.read_exact(&mut body).await.expect("response body");
        reply.body = String::from_utf8_lossy(&body).into_owned();
    }
    Some(reply)
}

/// Writes `raw` on `stream` and reads the reply (bounded).
pub async fn exchange(stream: &mut TcpStream, raw: &[u8], to_connect: bool) -> Option<Reply> {
    within("a reply from the proxy", async {
        stream.write_all(raw).await.ok()?;
        read_reply(stream, to_connect).await
    })
    .await
}

/// Opens a new connection to the proxy, sends `raw`, and reads the reply.
pub async fn send_raw(proxy: SocketAddr, raw: &[u8]) -> (TcpStream, Option<Reply>) {
    let mut stream = TcpStream::connect(proxy).await.expect("connect to proxy");
    let to_connect = raw.starts_with(b"CONNECT ");
    let reply = exchange(&mut stream, raw, to_connect).await;
    (stream, reply)
}

/// The request bytes of `CONNECT target`.
pub fn connect_request(target: &str) -> Vec<u8> {
    format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").into_bytes()
}

/// Sends `CONNECT target` on a new connection; returns the connection and the reply.
pub async fn connect(proxy: SocketAddr, target: &str) -> (TcpStream, Reply) {
    let (stream, reply) = send_raw(proxy, &connect_request(target)).await;
    (
        stream,
        reply.expect("the proxy closed without answering the CONNECT"),
    )
}

/// Sends `CONNECT target`, expects 200, and returns the tunnel.
pub async fn open_tunnel(proxy: SocketAddr, target: &str) -> TcpStream {
    let (stream, reply) = connect(proxy, target).await;
    assert_eq!(reply.status, 200, "CONNECT {target}: {reply:?}");
    stream
}

/// A TLS client handshake over `io` for `server_name`, verifying against the test root.
pub async fn tls<IO>(io: IO, pki: &TestPki, server_name: &str) -> io::Result<TlsStream<IO>>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let name = ServerName::try_from(server_name.to_string()).expect("server name");
    let connector = TlsConnector::from(pki.client_config());
    within("a TLS handshake", connector.connect(name, io)).await
}

/// An HTTP/1.1 client connection over `io` (to the proxy, or inside a tunnel).
pub async fn http1<IO>(io: IO) -> SendRequest<TestBody>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = within(
        "an HTTP/1.1 handshake",
        hyper::client::conn::http1::handshake(TokioIo::new(io)),
    )
    .await
    .expect("HTTP/1.1 handshake");
    tokio::spawn(conn);
    sender
}

/// An HTTP/1.1 client connection to the proxy itself.
pub async fn proxy_http1(proxy: SocketAddr) -> SendRequest<TestBody> {
    http1(TcpStream::connect(proxy).await.expect("connect to proxy")).await
}

/// A GET request for `target` (absolute-form for the proxy, origin-form in a tunnel)
/// carrying `Host: host`.
pub fn get(target: &str, host: &str) -> Request<TestBody> {
    Request::get(target)
        .header(http::header::HOST, host)
        .body(body::empty())
        .expect("request")
}

/// Sends `req` and waits for the response head (bounded).
pub async fn send(
    sender: &mut SendRequest<TestBody>,
    req: Request<TestBody>,
) -> Response<Incoming> {
    within("a response", async {
        sender.ready().await.expect("connection ready");
        sender.send_request(req).await.expect("response")
    })
    .await
}

/// Collects a response body (bounded).
pub async fn body_bytes(resp: Response<Incoming>) -> bytes::Bytes {
    within("a response body", resp.into_body().collect())
        .await
        .expect("response body")
        .to_bytes()
}

/// Collects a response body and parses it as JSON (the echo upstreams' format).
pub async fn json(resp: Response<Incoming>) -> Value {
    let bytes = body_bytes(resp).await;
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)))
}

/// The values of header `name` in an echo upstream's report.
pub fn echoed_headers<'a>(echo: &'a Value, name: &str) -> Vec<&'a str> {
    echo["headers"]
        .as_array()
        .expect("headers")
        .iter()
        .filter(|h| h[0] == name)
        .filter_map(|h| h[1].as_str())
        .collect()
}
