//! An upstream that dies mid-response, plain or behind TLS (a leaf of the test PKI,
//! HTTP/1.1, no ALPN). For a request whose target contains `/cut` it sends a response
//! head announcing [`CUT_LENGTH`] bytes and the first [`CUT_SENT`] of them, then
//! resets the connection (SO_LINGER 0: the close is an RST, not a FIN). Any other
//! request gets `ok\n` and `Connection: close`. Every request head it read is kept.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use super::pki::TestPki;
use super::upstream::{Task, bind};

/// The body length the `/cut` response head announces.
pub const CUT_LENGTH: usize = 1024 * 1024;
/// The body bytes it sends before the reset.
pub const CUT_SENT: usize = 16 * 1024;
/// The pause between the partial response and the reset, so the proxy has read the
/// head by then (a test accepts a 502 too, should a slow machine see the reset first).
const BEFORE_RESET: Duration = Duration::from_millis(100);
/// Largest request head read.
const MAX_HEAD: usize = 64 * 1024;

/// The upstream on 127.0.0.1:0.
pub struct AbruptUpstream {
    /// Where it listens.
    pub addr: SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
    _task: Task,
}

impl AbruptUpstream {
    /// A plain-HTTP/1.1 upstream.
    pub async fn plain() -> AbruptUpstream {
        AbruptUpstream::start(None).await
    }

    /// A TLS upstream whose certificate covers `names`.
    pub async fn tls(pki: &TestPki, names: &[&str]) -> AbruptUpstream {
        AbruptUpstream::start(Some(TlsAcceptor::from(pki.server_config(names)))).await
    }

    async fn start(tls: Option<TlsAcceptor>) -> AbruptUpstream {
        let (listener, addr) = bind().await;
        let heads = Arc::new(Mutex::new(Vec::new()));
        let kept = heads.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                tokio::spawn(connection(tcp, tls.clone(), kept.clone()));
            }
        });
        AbruptUpstream {
            addr,
            heads,
            _task: Task(task),
        }
    }

    /// Every request head received so far (request line and headers, as sent).
    pub fn heads(&self) -> Vec<String> {
        self.heads.lock().expect("heads").clone()
    }
}

async fn connection(tcp: TcpStream, tls: Option<TlsAcceptor>, heads: Arc<Mutex<Vec<String>>>) {
    match tls {
        None => {
            let mut tcp = tcp;
            if answer(&mut tcp, &heads).await {
                reset(&tcp).await;
            }
        }
        Some(acceptor) => {
            let Ok(mut tls) = acceptor.accept(tcp).await else {
                return;
            };
            if answer(&mut tls, &heads).await {
                reset(tls.get_ref().0).await;
            }
        }
    }
}

/// Arms an RST for the close that follows (the caller drops the stream).
async fn reset(tcp: &TcpStream) {
    tokio::time::sleep(BEFORE_RESET).await;
    tcp.set_zero_linger().expect("SO_LINGER 0");
}

/// Reads one request head and answers it; true when the answer was cut short.
async fn answer(
    io: &mut (impl AsyncRead + AsyncWrite + Unpin),
    heads: &Mutex<Vec<String>>,
) -> bool {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match io.read(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > MAX_HEAD {
            return false;
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let cut = head.split(' ').nth(1).is_some_and(|t| t.contains("/cut"));
    heads.lock().expect("heads").push(head);
    if cut {
        let partial = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {CUT_LENGTH}\r\n\r\n{}",
            "x".repeat(CUT_SENT)
        );
        let _ = io.write_all(partial.as_bytes()).await;
        let _ = io.flush().await;
    } else {
        let whole = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n";
        let _ = io.write_all(whole.as_bytes()).await;
        let _ = io.shutdown().await;
    }
    cut
}
