//! Shared helpers of the integration tests: a test PKI, fake upstreams on 127.0.0.1:0,
//! an in-process proxy launcher with its audit events, clients that speak to the proxy
//! over real sockets, and helpers to run the built `keygate` binary.
//!
//! Every socket here is on 127.0.0.1. Names the tests use (`api.test.example`, ...) are
//! reserved (RFC 2606) and always pinned to a local upstream with a resolve rule, so no
//! test ever makes a DNS query or a connection beyond the loopback interface.

pub mod bin;
pub mod body;
pub mod client;
pub mod pki;
pub mod proxy;
pub mod upstream;

use std::future::Future;
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
