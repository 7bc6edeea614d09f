//! keygate's integration tests: one binary, a module per area (DESIGN habit 10).
//!
//! Everything runs on real sockets on 127.0.0.1: the proxy is embedded in-process
//! (`keygate::proxy::run` on a listener bound to port 0) or, in `cli`, the built binary
//! is spawned. Upstreams are local fakes reached through resolve rules, so no test
//! sends a packet beyond the loopback interface.

mod support;

#[path = "integration/admin.rs"]
mod admin;
#[path = "integration/agent.rs"]
mod agent;
#[path = "integration/audit.rs"]
mod audit;
#[path = "integration/auth.rs"]
mod auth;
#[path = "integration/body_swap.rs"]
mod body_swap;
#[path = "integration/body_tripwire.rs"]
mod body_tripwire;
#[path = "integration/cli.rs"]
mod cli;
#[path = "integration/cli_edges.rs"]
mod cli_edges;
#[path = "integration/clients.rs"]
mod clients;
#[path = "integration/compressed.rs"]
mod compressed;
#[path = "integration/containment.rs"]
mod containment;
#[path = "integration/credential_cli.rs"]
mod credential_cli;
#[path = "integration/credential_clients.rs"]
mod credential_clients;
#[path = "integration/credential_env.rs"]
mod credential_env;
#[path = "integration/credential_prompt.rs"]
mod credential_prompt;
#[path = "integration/credentials.rs"]
mod credentials;
#[path = "integration/dashboard.rs"]
mod dashboard;
#[path = "integration/diagnostics.rs"]
mod diagnostics;
#[path = "integration/edges.rs"]
mod edges;
#[path = "integration/faults.rs"]
mod faults;
#[path = "integration/forward.rs"]
mod forward;
#[path = "integration/hardening.rs"]
mod hardening;
#[path = "integration/hostile.rs"]
mod hostile;
#[path = "integration/inject.rs"]
mod inject;
#[path = "integration/intercept.rs"]
mod intercept;
#[path = "integration/jail.rs"]
mod jail;
#[path = "integration/keyring.rs"]
mod keyring;
#[path = "integration/keyring_homes.rs"]
mod keyring_homes;
#[path = "integration/large_body.rs"]
mod large_body;
#[path = "integration/metrics.rs"]
mod metrics;
#[path = "integration/policy.rs"]
mod policy;
#[path = "integration/refusals.rs"]
mod refusals;
#[path = "integration/refusals_clients.rs"]
mod refusals_clients;
#[path = "integration/regression.rs"]
mod regression;
#[path = "integration/reload.rs"]
mod reload;
#[path = "integration/revocation.rs"]
mod revocation;
#[path = "integration/run_ask.rs"]
mod run_ask;
#[path = "integration/scrub.rs"]
mod scrub;
#[path = "integration/secret_list.rs"]
mod secret_list;
#[path = "integration/session_ca.rs"]
mod session_ca;
#[path = "integration/soak.rs"]
mod soak;
#[path = "integration/start_busy.rs"]
mod start_busy;
#[path = "integration/streaming.rs"]
mod streaming;
#[path = "integration/tunnel.rs"]
mod tunnel;
#[path = "integration/upstream_failure.rs"]
mod upstream_failure;
#[path = "integration/upstream_proxy.rs"]
mod upstream_proxy;
#[path = "integration/websocket.rs"]
mod websocket;
