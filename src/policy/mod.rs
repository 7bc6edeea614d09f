//! Host policy (SPEC §5): which upstreams an agent may reach, and why not.
//!
//! Pure functions of their inputs: no sockets, no DNS, no files. The proxy resolves
//! names and asks [`Policy::check_address`] about each address it would connect to.

pub mod host;
pub mod pattern;
mod private;
mod refusal;
mod trusted;

use std::fmt;
use std::net::IpAddr;

pub use host::{Host, HostError, parse_authority};
pub use pattern::{HostPattern, PatternError};
pub use private::is_private;
pub use refusal::{Refusal, RefusalKind};
pub use trusted::TRUSTED;

/// Which hosts are allowed besides the explicit `allow` list and the secret hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// The embedded list of well-known developer hosts ([`TRUSTED`]) plus `allow`. The default.
    #[default]
    Trusted,
    /// Nothing but the hosts of registered secrets and `allow`.
    None,
    /// Only `allow` (the hosts of registered secrets stay allowed, as everywhere).
    Custom,
}

impl Mode {
    /// The name used in keygate.yaml and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Trusted => "trusted",
            Mode::None => "none",
            Mode::Custom => "custom",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether upstream addresses in loopback/private/link-local/reserved ranges may be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PrivateAddresses {
    /// Refused unless an IP/CIDR pattern in `allow` covers the address. The default.
    #[default]
    Deny,
    /// Allowed like any other address.
    Allow,
}

/// Why a host was allowed; recorded in the audit log and shown by `keygate check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allowed {
    /// The host is bound to a registered secret.
    SecretHost,
    /// An `allow` pattern matched.
    AllowRule(HostPattern),
    /// A pattern of the embedded trusted list matched.
    Trusted(HostPattern),
    /// keygate's own self-test origin (`keygate.test`), answered locally.
    SelfTest,
    /// Not allowed, but a human approved it when asked (`network.ask`): how and by whom.
    Approved(String),
}

impl fmt::Display for Allowed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Allowed::SecretHost => f.write_str("secret host"),
            Allowed::AllowRule(p) => write!(f, "allow rule {p}"),
            Allowed::Trusted(p) => write!(f, "trusted list {p}"),
            Allowed::SelfTest => f.write_str("keygate self-test origin"),
            Allowed::Approved(how) => f.write_str(how),
        }
    }
}

/// The outcome of [`Policy::decide`].
pub type Decision = Result<Allowed, Refusal>;

/// The effective host policy: immutable once built.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Network mode; default `trusted`.
    pub mode: Mode,
    /// Extra allowed patterns (keygate.yaml `network.allow` + `--allow`).
    pub allow: Vec<HostPattern>,
    /// Refused patterns; they win over everything (keygate.yaml `network.deny` + `--deny`).
    pub deny: Vec<HostPattern>,
    /// Hosts bound to registered secrets: always allowed unless denied.
    pub secret_hosts: Vec<HostPattern>,
    /// Private-address defence; default `deny`.
    pub private_addresses: PrivateAddresses,
    trusted: Vec<HostPattern>,
}

impl Policy {
    /// Builds a policy; the embedded trusted list is parsed once here.
    pub fn new(
        mode: Mode,
        allow: Vec<HostPattern>,
        deny: Vec<HostPattern>,
        secret_hosts: Vec<HostPattern>,
        private_addresses: PrivateAddresses,
    ) -> Policy {
        let trusted = TRUSTED
            .iter()
            .filter_map(|p| HostPattern::parse(p).ok())
            .collect();
        Policy {
            mode,
            allow,
            deny,
            secret_hosts,
            private_addresses,
            trusted,
        }
    }

    /// The patterns the current mode adds on its own (empty unless `trusted`).
    pub fn mode_patterns(&self) -> &[HostPattern] {
        match self.mode {
            Mode::Trusted => &self.trusted,
            Mode::None | Mode::Custom => &[],
        }
    }

    /// Decides whether `host:port` may be reached. `deny` wins over everything; then
    /// secret hosts, the `allow` list, and the mode's own list, in that order.
    pub fn decide(&self, host: &Host, port: u16) -> Decision {
        if let Some(rule) = self.deny.iter().find(|p| p.matches(host, port)) {
            return Err(Refusal::denied_by_rule(host, port, rule));
        }
        if self.secret_hosts.iter().any(|p| p.matches(host, port)) {
            return Ok(Allowed::SecretHost);
        }
        if let Some(rule) = self.allow.iter().find(|p| p.matches(host, port)) {
            return Ok(Allowed::AllowRule(rule.clone()));
        }
        if let Some(rule) = self.mode_patterns().iter().find(|p| p.matches(host, port)) {
            return Ok(Allowed::Trusted(rule.clone()));
        }
        Err(Refusal::not_allowed(host, port, self.mode))
    }

    /// The DNS-rebinding defence: may keygate connect to `ip`, which `host` resolved to?
    /// Public addresses always may; private ones only with `private_addresses: allow` or
    /// an IP/CIDR pattern (in `allow` or a secret's hosts) covering them. An IP-literal host was already matched by
    /// pattern in [`Policy::decide`], so only an IP pattern can have allowed it.
    pub fn check_address(&self, host: &Host, port: u16, ip: IpAddr) -> Result<(), Refusal> {
        let ip = ip.to_canonical();
        if self.private_addresses == PrivateAddresses::Allow || !is_private(ip) {
            return Ok(());
        }
        let mut explicit = self.allow.iter().chain(&self.secret_hosts);
        if explicit.any(|p| p.matches_ip(ip, port)) {
            return Ok(());
        }
        Err(Refusal::private_address(host, port, ip))
    }
}
