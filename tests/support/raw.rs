//! A TLS upstream (a leaf of the test PKI, HTTP/1.1, no ALPN) that answers every
//! request with the same bytes, written as they are: for response heads no HTTP
//! library would send (`Transfer-Encoding: gzip, chunked`). It closes the connection
//! after each answer and keeps every request head it read.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsAcceptor;

use super::pki::TestPki;
use super::upstream::{Task, bind};

/// Largest request head read.
const MAX_HEAD: usize = 64 * 1024;

/// The upstream on 127.0.0.1:0.
pub struct RawUpstream {
    /// Where it listens.
    pub addr: SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
    _task: Task,
}

impl RawUpstream {
    /// Answers every request for `names` (certificate from `pki`) with `response`.
    pub async fn tls(pki: &TestPki, names: &[&str], response: Vec<u8>) -> RawUpstream {
        let acceptor = TlsAcceptor::from(pki.server_config(names));
        let (listener, addr) = bind().await;
        let heads = Arc::new(Mutex::new(Vec::new()));
        let (kept, response) = (heads.clone(), Arc::new(response));
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, kept, response) = (acceptor.clone(), kept.clone(), response.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    kept.lock()
                        .expect("heads")
                        .push(String::from_utf8_lossy(&head).into_owned());
                    let _ = tls.write_all(&response).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        RawUpstream {
            addr,
            heads,
            _task: Task(task),
        }
    }

    /// Every request head received so far.
    pub fn heads(&self) -> Vec<String> {
        self.heads.lock().expect("heads").clone()
    }
}
