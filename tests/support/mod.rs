//! Shared helpers of the integration tests: a test PKI, fake upstreams on 127.0.0.1:0
//! (plain, TLS, a recording TLS API with h2 and a hostile echo route, and one that dies
//! mid-response), an in-process proxy launcher with its audit events (and, for
//! interception, its CA and secrets), clients that speak to the proxy over real sockets
//! (also through intercepted TLS, HTTP/1.1 or h2, and WebSocket), the trace capture and
//! leak checks (the value itself, and every form of it), and helpers to run the built
//! `keygate` binary.
//!
//! Every socket here is on 127.0.0.1. Names the tests use (`api.test.example`,
//! `api.demo.test`, ...) are reserved (RFC 2606) and always pinned to a local address
//! with a resolve rule, so no test ever makes a DNS query or a connection beyond the
//! loopback interface.

pub mod abrupt;
pub mod api;
pub mod bin;
pub mod body;
pub mod client;
pub mod clients;
pub mod compress;
pub mod corporate;
pub mod intercepted;
pub mod leak;
pub mod mirror;
pub mod mirrored;
pub mod pki;
pub mod proxy;
pub mod raw;
pub mod scripted;
pub mod secret;
pub mod stack;
pub mod started;
pub mod trace;
pub mod upstream;
pub mod webdriver;
pub mod ws;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

/// The bound on every wait in the suite: a bug fails the test instead of hanging it.
pub const WAIT: Duration = Duration::from_secs(10);

/// Awaits `fut`, failing the test with `what` if it takes longer than [`WAIT`].
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(WAIT, fut).await {
        Ok(value) => value,
        Err(_) => panic!("timed out after {}s waiting for {what}", WAIT.as_secs()),
    }
}

/// A loopback port that refuses connections for as long as this lives: bound but never
/// listening, so no other test's listener can take it (a port merely "just free" can be
/// handed to the next bind).
pub struct ClosedPort {
    _socket: tokio::net::TcpSocket,
    /// The address; connecting to it is refused.
    pub addr: SocketAddr,
}

impl ClosedPort {
    /// Reserves a port on 127.0.0.1.
    pub fn new() -> ClosedPort {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .expect("bind");
        let addr = socket.local_addr().expect("local address");
        ClosedPort {
            _socket: socket,
            addr,
        }
    }
}

/// A loopback port whose connections never complete, like a host that drops every
/// packet: it listens with the smallest backlog (one connection), a connection of its
/// own that is never accepted fills it, and the kernel then drops every later SYN, so a
/// connect waits (retransmitting) until its caller gives up. A silent peer without
/// leaving the loopback interface.
pub struct SilentPort {
    _listener: tokio::net::TcpListener,
    _filler: tokio::net::TcpStream,
    /// The address; a connection to it is never established.
    pub addr: SocketAddr,
}

impl SilentPort {
    /// Listens on 127.0.0.1 and fills the accept queue; checks that a further connect
    /// indeed waits.
    pub async fn new() -> SilentPort {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .expect("bind");
        let listener = socket.listen(0).expect("listen");
        let addr = listener.local_addr().expect("local address");
        let filler = within(
            "the connection that fills the backlog",
            tokio::net::TcpStream::connect(addr),
        )
        .await
        .expect("the first connection");
        let probe = tokio::time::timeout(
            Duration::from_millis(200),
            tokio::net::TcpStream::connect(addr),
        )
        .await;
        assert!(
            probe.is_err(),
            "this kernel completed a connection past a full accept queue: {probe:?}"
        );
        SilentPort {
            _listener: listener,
            _filler: filler,
            addr,
        }
    }
}
