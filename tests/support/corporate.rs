//! A corporate HTTP proxy, as `upstream.proxy` names one (squid and the like): it
//! answers `CONNECT host:port` with a tunnel to the local address its route table names
//! and 403 to any other target, and it records every request head it got and every byte
//! that went through its tunnels towards the upstream, so a test can show what such a
//! proxy gets to see.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::upstream::{Task, bind};

/// The most a request head may take here.
const MAX_HEAD: usize = 16 * 1024;

#[derive(Default)]
struct Seen {
    heads: Vec<String>,
    upward: Vec<u8>,
}

/// A CONNECT-only corporate proxy on 127.0.0.1.
pub struct CorporateProxy {
    /// Where it listens.
    pub addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
    _task: Task,
}

impl CorporateProxy {
    /// Starts the proxy; `routes` maps a CONNECT target (`host:port`) to where its
    /// tunnel really goes.
    pub async fn start(routes: &[(&str, SocketAddr)]) -> CorporateProxy {
        let (listener, addr) = bind().await;
        let routes: Arc<HashMap<String, SocketAddr>> = Arc::new(
            routes
                .iter()
                .map(|(target, addr)| (target.to_string(), *addr))
                .collect(),
        );
        let seen = Arc::new(Mutex::new(Seen::default()));
        let state = seen.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                tokio::spawn(serve(tcp, routes.clone(), state.clone()));
            }
        });
        CorporateProxy {
            addr,
            seen,
            _task: Task(task),
        }
    }

    /// Every request head received, in order.
    pub fn heads(&self) -> Vec<String> {
        self.seen.lock().unwrap().heads.clone()
    }

    /// Every byte its tunnels carried towards an upstream so far.
    pub fn upward(&self) -> Vec<u8> {
        self.seen.lock().unwrap().upward.clone()
    }
}

async fn serve(
    mut client: TcpStream,
    routes: Arc<HashMap<String, SocketAddr>>,
    seen: Arc<Mutex<Seen>>,
) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    // Byte by byte: nothing after the head may be read here, it belongs to the tunnel.
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > MAX_HEAD || !matches!(client.read(&mut byte).await, Ok(1)) {
            return;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    seen.lock().unwrap().heads.push(head.clone());
    let mut words = head.split_whitespace();
    let route = match (words.next(), words.next()) {
        (Some("CONNECT"), Some(target)) => routes.get(target).copied(),
        _ => None,
    };
    let upstream = match route {
        Some(addr) => TcpStream::connect(addr).await.ok(),
        None => None,
    };
    let Some(upstream) = upstream else {
        let _ = client
            .write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .await;
        return;
    };
    if client
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .await
        .is_err()
    {
        return;
    }
    let (mut client_read, mut client_write) = client.into_split();
    let (mut upstream_read, mut upstream_write) = upstream.into_split();
    let down = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut upstream_read, &mut client_write).await;
        let _ = client_write.shutdown().await;
    });
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match client_read.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                seen.lock().unwrap().upward.extend_from_slice(&buf[..n]);
                if upstream_write.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = upstream_write.shutdown().await;
    let _ = down.await;
}
