//! Refusals written for the agent that reads them: what, why, and how a human allows it.

use std::fmt;
use std::net::IpAddr;

use super::{Host, HostPattern, Mode};

/// The class of a refusal; its [`RefusalKind::code`] starts the `X-Keygate-Reason` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// The host matches no allow rule, secret host or trusted pattern.
    NotAllowed,
    /// A `deny` rule matched.
    DeniedByRule,
    /// The host resolved to a loopback, private, link-local or reserved address.
    PrivateAddress,
}

impl RefusalKind {
    /// Stable machine-readable code, e.g. `not-allowed`.
    pub fn code(self) -> &'static str {
        match self {
            RefusalKind::NotAllowed => "not-allowed",
            RefusalKind::DeniedByRule => "denied",
            RefusalKind::PrivateAddress => "private-address",
        }
    }
}

/// A policy refusal. `reason` is one line (header and audit log); `advice` says how a
/// human would allow the request, with the exact config line or flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// What kind of refusal this is.
    pub kind: RefusalKind,
    /// One line: why the request was refused.
    pub reason: String,
    /// Several lines: how a human allows it, if they want to.
    pub advice: String,
    /// The `network.allow` pattern that would let exactly this through, when adding one
    /// would (not for a deny rule, which wins over every allow).
    pub allow: Option<String>,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.code(), self.reason)
    }
}

/// The pattern a human would write to allow exactly this host and port.
fn suggested_pattern(host: &Host, port: u16) -> String {
    match port {
        80 | 443 => host.to_string(),
        _ => format!("{host}:{port}"),
    }
}

impl Refusal {
    pub(super) fn not_allowed(host: &Host, port: u16, mode: Mode) -> Refusal {
        let pattern = suggested_pattern(host, port);
        Refusal {
            kind: RefusalKind::NotAllowed,
            reason: format!(
                "{host}:{port} is not on keygate's allowlist (network mode: {mode}); unknown hosts are denied by default"
            ),
            advice: format!(
                "If this host is needed, ask the user to allow it. A human can add it to keygate.yaml:\n\
                 \n    network:\n      allow: [\"{pattern}\"]\n\n\
                 or restart the proxy with: keygate start --allow '{pattern}'"
            ),
            allow: Some(pattern),
        }
    }

    pub(super) fn denied_by_rule(host: &Host, port: u16, rule: &HostPattern) -> Refusal {
        Refusal {
            kind: RefusalKind::DeniedByRule,
            reason: format!(
                "{host}:{port} matches the deny rule \"{rule}\"; deny wins over every allow"
            ),
            advice: format!(
                "This host was denied on purpose. Only a human can lift it, by removing \"{rule}\" \
                 from network.deny in keygate.yaml (or from the --deny flags keygate was started with)."
            ),
            allow: None,
        }
    }

    pub(super) fn private_address(host: &Host, port: u16, ip: IpAddr) -> Refusal {
        Refusal {
            kind: RefusalKind::PrivateAddress,
            reason: format!(
                "{host}:{port} resolved to {ip}, a loopback, private, link-local or reserved address; keygate refuses those to defend against DNS rebinding"
            ),
            advice: format!(
                "If this internal address is meant to be reached, a human can allow it in keygate.yaml:\n\
                 \n    network:\n      allow: [\"{ip_pattern}\"]\n\n\
                 or allow every private address with `network.private_addresses: allow`, or pin the \
                 name with `keygate start --resolve {host}:{port}={ip_port}`.",
                ip_pattern = ip_pattern(ip, port),
                ip_port = socket(ip, port),
            ),
            allow: Some(ip_pattern(ip, port)),
        }
    }
}

fn ip_pattern(ip: IpAddr, port: u16) -> String {
    match (ip, port) {
        (IpAddr::V4(v4), 80 | 443) => v4.to_string(),
        (IpAddr::V4(v4), _) => format!("{v4}:{port}"),
        (IpAddr::V6(v6), 80 | 443) => format!("[{v6}]"),
        (IpAddr::V6(v6), _) => format!("[{v6}]:{port}"),
    }
}

fn socket(ip: IpAddr, port: u16) -> String {
    std::net::SocketAddr::new(ip, port).to_string()
}
