//! keygate's integration tests: one binary, a module per area (DESIGN habit 10).
//!
//! Everything runs on real sockets on 127.0.0.1: the proxy is embedded in-process
//! (`keygate::proxy::run` on a listener bound to port 0) or, in `cli`, the built binary
//! is spawned. Upstreams are local fakes reached through resolve rules, so no test
//! sends a packet beyond the loopback interface.

mod support;

#[path = "integration/cli.rs"]
mod cli;
#[path = "integration/forward.rs"]
mod forward;
#[path = "integration/keyring.rs"]
mod keyring;
#[path = "integration/policy.rs"]
mod policy;
#[path = "integration/regression.rs"]
mod regression;
#[path = "integration/tunnel.rs"]
mod tunnel;
