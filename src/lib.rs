//! keygate: a local, TLS-intercepting, credential-injecting HTTP(S) proxy for AI coding
//! agents and other sandboxed programs.
//!
//! # Layout
//!
//! Data flows one way, and the module tree follows it:
//!
//! ```text
//! cli/config  ──▶  Config (immutable)  ──▶  proxy::listener (accept, dispatch)
//!                                              │ per connection
//!                                              ▼
//!                                   policy::Policy::decide  ──▶ audit event
//!                                              │
//!          ┌────────────────────┬──────────────┴───────┬────────────────────┐
//!          ▼                    ▼                      ▼                    ▼
//!   connect::tunnel     connect::intercept     exchange::forward     (refusal: 403 +
//!  (SNI check, copy)  (TLS terminated; each  (plain HTTP, streamed)  X-Keygate-Reason,
//!                     request an exchange)                          or a refusal page)
//! ```
//!
//! * [`home`]: `$KEYGATE_HOME` and every path under it; owner-only file creation.
//! * [`config`]: `keygate.yaml` + command-line flags → a validated [`config::Config`].
//! * [`policy`]: host patterns, modes, the embedded trusted list, and the [`policy::Decision`].
//! * [`ca`]: the local certificate authority and `ca/bundle.pem`.
//! * [`credentials`]: credentials keygate computes: RS256 JWTs and minted tokens
//!   (OAuth2, Google service accounts, GitHub Apps) with their cache; no network I/O.
//! * [`audit`]: the JSONL audit log, written off the request path.
//! * [`proxy`]: one folder per stage of a request: listener, connect (tunnel, intercept,
//!   refusal pages), exchange (intercepted or forwarded), upstream.
//! * [`text`]: wording helpers for messages (a count and its noun).
//!
//! Dependency direction: `proxy` → `policy`, `ca`, `audit`; `config` and `policy` do no
//! I/O; nothing imports `proxy`.

pub mod addon;
pub mod admin;
pub mod agent;
pub mod audit;
pub mod ca;
pub mod config;
pub mod credentials;
pub mod home;
pub mod jail;
pub mod policy;
pub mod proxy;
pub mod secrets;
pub mod text;
