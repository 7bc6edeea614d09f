//! Allow/deny host patterns (SPEC §5).
//!
//! | pattern            | covers                                              |
//! |--------------------|-----------------------------------------------------|
//! | `example.com`      | exactly that host                                   |
//! | `*.example.com`    | every subdomain at any depth, not the apex          |
//! | `.example.com`     | the apex and every subdomain                        |
//! | `10.0.0.1`, `::1`  | that IP literal                                     |
//! | `10.0.0.0/8`       | IP literals inside the block                        |
//!
//! A pattern without a port covers ports 80 and 443; `:N` covers port N only;
//! `:*` covers every port. IPv6 with a port is bracketed: `[::1]:443`,
//! `[fd00::/8]:*`. Names are compared in their normalised form (see
//! [`Host::parse`]): case-insensitive, one trailing dot ignored, IDNs in
//! punycode.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

use super::host::{Host, HostError, parse_port};

/// Ports covered by a pattern that names none.
pub const DEFAULT_PORTS: [u16; 2] = [80, 443];

/// Why a pattern was refused. Every message quotes the pattern and says how to
/// write it correctly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// The pattern was empty (or only whitespace).
    #[error(
        "empty host pattern {pattern:?}: write a host such as \"example.com\", \
         \"*.example.com\" or \"10.0.0.0/8\""
    )]
    Empty {
        /// The pattern as given.
        pattern: String,
    },
    /// `*` somewhere other than a whole leading `*.` label.
    #[error(
        "invalid host pattern {pattern:?}: '*' may only be the whole first label; write \
         \"*.example.com\" for every subdomain, or \".example.com\" for the domain and every subdomain"
    )]
    MisplacedWildcard {
        /// The pattern as given.
        pattern: String,
    },
    /// `*.` or `.` with no domain after it.
    #[error(
        "invalid host pattern {pattern:?}: a domain must follow the leading '*.' or '.', \
         as in \"*.example.com\""
    )]
    MissingDomain {
        /// The pattern as given.
        pattern: String,
    },
    /// `*.` or `.` in front of an IP address.
    #[error(
        "invalid host pattern {pattern:?}: '*.' and a leading '.' apply to names only; \
         for address ranges write a CIDR block such as \"10.0.0.0/8\""
    )]
    WildcardIp {
        /// The pattern as given.
        pattern: String,
    },
    /// The host part is not a valid host name or IP literal.
    #[error(
        "invalid host in pattern {pattern:?}: {source}; write a host such as \"example.com\", \
         \"10.0.0.1\" or \"[::1]\""
    )]
    InvalidHost {
        /// The pattern as given.
        pattern: String,
        /// What is wrong with the host.
        source: HostError,
    },
    /// The port part is not `*` or a number 1..=65535.
    #[error(
        "invalid port in pattern {pattern:?}: {source}; write \":N\" with N from 1 to 65535, \
         \":*\" for any port, or no port for 80 and 443"
    )]
    InvalidPort {
        /// The pattern as given.
        pattern: String,
        /// What is wrong with the port.
        source: HostError,
    },
    /// A `/prefix` block that does not parse or whose prefix is too long.
    #[error(
        "invalid CIDR block in pattern {pattern:?}: {reason}; write an address and a prefix \
         length such as \"10.0.0.0/8\" or \"fd00::/8\""
    )]
    InvalidCidr {
        /// The pattern as given.
        pattern: String,
        /// What is wrong with the block.
        reason: String,
    },
    /// Bracket misuse, or an unbracketed IPv6 address followed by something
    /// that looks like a port.
    #[error(
        "invalid IPv6 pattern {pattern:?}: {reason}; write IPv6 addresses as \"::1\" or \
         \"fd00::/8\", and with a port in brackets: \"[::1]:443\", \"[fd00::/8]:*\""
    )]
    InvalidIpv6 {
        /// The pattern as given.
        pattern: String,
        /// What is wrong.
        reason: String,
    },
}

/// The host part of a [`HostPattern`], already normalised.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostMatch {
    /// `example.com`: exactly this name.
    Exact(String),
    /// `*.example.com`: any subdomain of this name at any depth, not the name itself.
    Subdomains(String),
    /// `.example.com`: this name and any subdomain of it.
    Domain(String),
    /// `10.0.0.1`, `::1`: exactly this address (IPv4-mapped IPv6 folded to IPv4).
    Ip(IpAddr),
    /// `10.0.0.0/8`, `fd00::/8`: any address in this block (host bits cleared).
    Net(IpNet),
}

/// The ports a [`HostPattern`] covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PortMatch {
    /// No port given: 80 and 443 ([`DEFAULT_PORTS`]).
    Default,
    /// `:N`: this port only.
    One(u16),
    /// `:*`: every port.
    Any,
}

impl PortMatch {
    /// Does this cover `port`?
    pub fn covers(self, port: u16) -> bool {
        match self {
            PortMatch::Default => DEFAULT_PORTS.contains(&port),
            PortMatch::One(p) => p == port,
            PortMatch::Any => true,
        }
    }
}

/// One allow/deny pattern of SPEC §5: a host part and the ports it covers.
///
/// Parse with [`HostPattern::parse`] or [`str::parse`]; [`fmt::Display`]
/// writes a canonical form that parses back to an equal pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPattern {
    host: HostMatch,
    ports: PortMatch,
}

impl HostPattern {
    /// Parse a pattern such as `example.com`, `*.example.com:8443`,
    /// `.example.com:*`, `10.0.0.0/8`, `::1`, `[::1]:443` or `[fd00::/8]:443`.
    ///
    /// Surrounding whitespace is ignored. Names are normalised like
    /// [`Host::parse`] (lower-case, one trailing dot dropped, punycode). CIDR
    /// blocks with host bits set are accepted and truncated (`10.1.2.3/8` is
    /// `10.0.0.0/8`); a full-length prefix (`/32`, `/128`) is the plain
    /// address. A bare IPv6 address (no brackets) never carries a port.
    pub fn parse(s: &str) -> Result<HostPattern, PatternError> {
        let pattern = s.trim();
        if pattern.is_empty() {
            return Err(PatternError::Empty {
                pattern: s.to_string(),
            });
        }
        let (host_text, port_text) = split_pattern(pattern)?;
        let ports = parse_ports(port_text, pattern)?;
        let host = parse_host_match(host_text, pattern)?;
        Ok(HostPattern { host, ports })
    }

    /// Does this pattern cover `host:port`?
    ///
    /// Name patterns match [`Host::Name`] only, on label boundaries
    /// (`*.example.com` does not cover `evilexample.com` or
    /// `example.com.evil.net`); IP and CIDR patterns match [`Host::Ip`] only.
    pub fn matches(&self, host: &Host, port: u16) -> bool {
        if !self.ports.covers(port) {
            return false;
        }
        match host {
            Host::Name(name) => self.matches_name(name),
            Host::Ip(ip) => self.matches_addr(*ip),
        }
    }

    /// True when the pattern names its ports (`host:8443`, `host:*`), false when it
    /// covers the default ones.
    pub fn has_port(&self) -> bool {
        !matches!(self.ports, PortMatch::Default)
    }

    /// True when the pattern is an IP literal or CIDR block (these may allow
    /// private addresses).
    pub fn is_ip(&self) -> bool {
        matches!(self.host, HostMatch::Ip(_) | HostMatch::Net(_))
    }

    /// For the private-address defence: does this IP/CIDR pattern cover the
    /// resolved address `ip` on `port`? Always false for name patterns.
    pub fn matches_ip(&self, ip: IpAddr, port: u16) -> bool {
        self.ports.covers(port) && self.matches_addr(ip)
    }

    /// The normalised host part.
    pub fn host_match(&self) -> &HostMatch {
        &self.host
    }

    /// The ports covered.
    pub fn ports(&self) -> PortMatch {
        self.ports
    }

    /// Name comparison on label boundaries.
    fn matches_name(&self, name: &str) -> bool {
        match &self.host {
            HostMatch::Exact(n) => name == n,
            HostMatch::Subdomains(n) => is_strict_subdomain(name, n),
            HostMatch::Domain(n) => name == n || is_strict_subdomain(name, n),
            HostMatch::Ip(_) | HostMatch::Net(_) => false,
        }
    }

    /// Address comparison; IPv4-mapped IPv6 compares as IPv4, and an IPv6 block that
    /// holds mapped addresses (`::ffff:10.0.0.0/104`) covers the IPv4 addresses they map.
    fn matches_addr(&self, ip: IpAddr) -> bool {
        let canonical = ip.to_canonical();
        match &self.host {
            HostMatch::Ip(a) => *a == canonical,
            HostMatch::Net(net) => {
                net.contains(&canonical)
                    || net.contains(&ip)
                    || matches!(canonical, IpAddr::V4(v4)
                        if net.contains(&IpAddr::V6(v4.to_ipv6_mapped())))
            }
            HostMatch::Exact(_) | HostMatch::Subdomains(_) | HostMatch::Domain(_) => false,
        }
    }
}

/// Writes the canonical form: `example.com`, `*.example.com:8443`,
/// `.example.com:*`, `10.0.0.0/8`, `::1`, `[::1]:443`, `[fd00::/8]:*`.
/// IPv6 is bracketed only when a port follows.
impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bracket = self.ports != PortMatch::Default && is_v6(&self.host);
        if bracket {
            f.write_str("[")?;
        }
        match &self.host {
            HostMatch::Exact(n) => f.write_str(n)?,
            HostMatch::Subdomains(n) => write!(f, "*.{n}")?,
            HostMatch::Domain(n) => write!(f, ".{n}")?,
            HostMatch::Ip(ip) => write!(f, "{ip}")?,
            HostMatch::Net(net) => write!(f, "{net}")?,
        }
        if bracket {
            f.write_str("]")?;
        }
        match self.ports {
            PortMatch::Default => Ok(()),
            PortMatch::One(p) => write!(f, ":{p}"),
            PortMatch::Any => f.write_str(":*"),
        }
    }
}

/// Parses like [`HostPattern::parse`].
impl FromStr for HostPattern {
    type Err = PatternError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        HostPattern::parse(s)
    }
}

/// Is the host part an IPv6 address or block?
fn is_v6(host: &HostMatch) -> bool {
    match host {
        HostMatch::Ip(ip) => ip.is_ipv6(),
        HostMatch::Net(net) => matches!(net, IpNet::V6(_)),
        HostMatch::Exact(_) | HostMatch::Subdomains(_) | HostMatch::Domain(_) => false,
    }
}

/// `name` is `<one or more labels>.parent`.
fn is_strict_subdomain(name: &str, parent: &str) -> bool {
    name.strip_suffix(parent)
        .and_then(|prefix| prefix.strip_suffix('.'))
        .is_some_and(|labels| !labels.is_empty())
}

/// Split a trimmed pattern into host text and optional port text.
fn split_pattern(pattern: &str) -> Result<(&str, Option<&str>), PatternError> {
    if let Some(rest) = pattern.strip_prefix('[') {
        return split_bracketed(rest, pattern);
    }
    if pattern.contains(']') {
        return Err(ipv6_error(pattern, "']' without a matching '['"));
    }
    match pattern.matches(':').count() {
        0 => Ok((pattern, None)),
        1 => match pattern.split_once(':') {
            Some((host, port)) => Ok((host, Some(port))),
            None => Ok((pattern, None)),
        },
        _ => Ok((pattern, None)),
    }
}

/// `[v6]` or `[v6]:port`, with the leading `[` already removed.
fn split_bracketed<'a>(
    rest: &'a str,
    pattern: &str,
) -> Result<(&'a str, Option<&'a str>), PatternError> {
    let Some((inner, after)) = rest.split_once(']') else {
        return Err(ipv6_error(pattern, "'[' without a matching ']'"));
    };
    if !inner.contains(':') {
        return Err(ipv6_error(pattern, "only IPv6 addresses go in brackets"));
    }
    match after.strip_prefix(':') {
        Some(port) => Ok((inner, Some(port))),
        None if after.is_empty() => Ok((inner, None)),
        None => Err(ipv6_error(pattern, "only ':port' may follow ']'")),
    }
}

/// Parse the port part: absent, `*` or a number.
fn parse_ports(port: Option<&str>, pattern: &str) -> Result<PortMatch, PatternError> {
    match port {
        None => Ok(PortMatch::Default),
        Some("*") => Ok(PortMatch::Any),
        Some(p) => parse_port(p)
            .map(PortMatch::One)
            .map_err(|source| PatternError::InvalidPort {
                pattern: pattern.to_string(),
                source,
            }),
    }
}

/// Parse the host part of a pattern.
fn parse_host_match(host: &str, pattern: &str) -> Result<HostMatch, PatternError> {
    if host.contains('/') {
        return parse_cidr(host, pattern);
    }
    if let Some(domain) = host.strip_prefix("*.") {
        return parse_domain(domain, pattern).map(HostMatch::Subdomains);
    }
    if let Some(domain) = host.strip_prefix('.') {
        return parse_domain(domain, pattern).map(HostMatch::Domain);
    }
    if host.contains('*') {
        return Err(PatternError::MisplacedWildcard {
            pattern: pattern.to_string(),
        });
    }
    match parse_plain_host(host, pattern)? {
        Host::Name(name) => Ok(HostMatch::Exact(name)),
        Host::Ip(ip) => Ok(HostMatch::Ip(ip)),
    }
}

/// The domain after a leading `*.` or `.`: a name, never an IP.
fn parse_domain(domain: &str, pattern: &str) -> Result<String, PatternError> {
    if domain.contains('*') {
        return Err(PatternError::MisplacedWildcard {
            pattern: pattern.to_string(),
        });
    }
    if domain.is_empty() || domain == "." {
        return Err(PatternError::MissingDomain {
            pattern: pattern.to_string(),
        });
    }
    if domain.contains(':') {
        return Err(PatternError::WildcardIp {
            pattern: pattern.to_string(),
        });
    }
    match parse_plain_host(domain, pattern)? {
        Host::Name(name) => Ok(name),
        Host::Ip(_) => Err(PatternError::WildcardIp {
            pattern: pattern.to_string(),
        }),
    }
}

/// A single host (name or address); explains a bare IPv6 followed by a port.
fn parse_plain_host(host: &str, pattern: &str) -> Result<Host, PatternError> {
    Host::parse(host).map_err(|source| match source {
        HostError::InvalidIpv6 { .. } | HostError::ZoneId { .. } => {
            ipv6_error(pattern, &source.to_string())
        }
        _ => PatternError::InvalidHost {
            pattern: pattern.to_string(),
            source,
        },
    })
}

/// `addr/prefix`; host bits are cleared, a full-length prefix becomes the address.
fn parse_cidr(text: &str, pattern: &str) -> Result<HostMatch, PatternError> {
    let cidr_error = |reason: String| PatternError::InvalidCidr {
        pattern: pattern.to_string(),
        reason,
    };
    let Some((addr, prefix)) = text.split_once('/') else {
        return Err(cidr_error("missing '/'".to_string()));
    };
    if addr.contains('*') || prefix.contains('*') {
        return Err(PatternError::MisplacedWildcard {
            pattern: pattern.to_string(),
        });
    }
    if let Some((len, port)) = prefix.split_once(':') {
        return Err(ipv6_error(
            pattern,
            &format!("a port after an IPv6 block needs brackets, as in \"[{addr}/{len}]:{port}\""),
        ));
    }
    let ip = parse_cidr_addr(addr)
        .ok_or_else(|| cidr_error(format!("{addr:?} is not an IP address")))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len = parse_prefix_len(prefix).ok_or_else(|| {
        cidr_error(format!(
            "prefix length {prefix:?} is not a number from 0 to {max}"
        ))
    })?;
    if len > max {
        return Err(cidr_error(format!(
            "prefix length /{len} is too long for an IPv{} address (at most /{max})",
            if ip.is_ipv4() { 4 } else { 6 }
        )));
    }
    if len == max {
        return Ok(HostMatch::Ip(ip.to_canonical()));
    }
    IpNet::new(ip, len)
        .map(|net| HostMatch::Net(net.trunc()))
        .map_err(|e| cidr_error(e.to_string()))
}

/// The address of a CIDR block: canonical IPv4 or IPv6 (no zone id).
fn parse_cidr_addr(addr: &str) -> Option<IpAddr> {
    addr.parse::<IpAddr>().ok()
}

/// A prefix length: 1 to 3 ASCII digits.
fn parse_prefix_len(prefix: &str) -> Option<u8> {
    if prefix.is_empty() || prefix.len() > 3 || !prefix.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    prefix.parse::<u8>().ok()
}

/// Build an [`PatternError::InvalidIpv6`].
fn ipv6_error(pattern: &str, reason: &str) -> PatternError {
    PatternError::InvalidIpv6 {
        pattern: pattern.to_string(),
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(s: &str) -> Host {
        Host::parse(s).unwrap()
    }

    fn pat(s: &str) -> HostPattern {
        HostPattern::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    #[test]
    fn matching_table() {
        // (pattern, host, port, expected)
        let cases: &[(&str, &str, u16, bool)] = &[
            // exact names
            ("example.com", "example.com", 443, true),
            ("example.com", "example.com", 80, true),
            ("example.com", "example.com", 8080, false),
            ("example.com", "EXAMPLE.com.", 443, true),
            ("EXAMPLE.com.", "example.com", 443, true),
            ("Example.COM", "example.com.", 80, true),
            ("example.com", "www.example.com", 443, false),
            ("example.com", "example.co", 443, false),
            ("example.com", "example.com.evil.net", 443, false),
            ("example.com", "evilexample.com", 443, false),
            // *.example.com: subdomains at any depth, not the apex
            ("*.example.com", "api.example.com", 443, true),
            ("*.example.com", "a.b.c.example.com", 80, true),
            ("*.example.com", "example.com", 443, false),
            ("*.example.com", "evilexample.com", 443, false),
            ("*.example.com", "api.evilexample.com", 443, false),
            ("*.example.com", "example.com.evil.net", 443, false),
            ("*.example.com", "api.example.com.evil.net", 443, false),
            ("*.example.com", "API.Example.Com.", 443, true),
            ("*.example.com", "api.example.com", 8443, false),
            // .example.com: apex and every subdomain
            (".example.com", "example.com", 443, true),
            (".example.com", "deep.sub.domain.example.com", 443, true),
            ("example.com.", "example.com", 80, true),
            (".example.com", "evilexample.com", 443, false),
            (".example.com", "example.com.evil.net", 443, false),
            (".example.com", "example.com", 22, false),
            // ports
            ("example.com:*", "example.com", 22, true),
            ("example.com:*", "example.com", 65535, true),
            ("example.com:8443", "example.com", 8443, true),
            ("example.com:8443", "example.com", 443, false),
            ("example.com:443", "example.com", 80, false),
            ("example.com:80", "example.com", 80, true),
            ("*.example.com:*", "x.example.com", 9000, true),
            (".example.com:8443", "example.com", 8443, true),
            (".example.com:8443", "a.example.com", 443, false),
            (
                "registry.company.internal:5000",
                "registry.company.internal",
                5000,
                true,
            ),
            // IDN: punycode and Unicode are the same
            ("bücher.example", "xn--bcher-kva.example", 443, true),
            ("xn--bcher-kva.example", "bücher.example", 443, true),
            ("BÜCHER.example.", "xn--bcher-kva.example", 443, true),
            ("*.bücher.example", "shop.xn--bcher-kva.example", 443, true),
            ("*.xn--bcher-kva.example", "shop.bücher.example", 443, true),
            ("xn--bcher-kva.example", "bucher.example", 443, false),
            // IPv4 literals and CIDR
            ("10.0.0.1", "10.0.0.1", 443, true),
            ("10.0.0.1", "10.0.0.2", 443, false),
            ("10.0.0.1", "10.0.0.1", 8080, false),
            ("10.0.0.0/8", "10.1.2.3", 443, true),
            ("10.0.0.0/8", "10.255.255.255", 80, true),
            ("10.0.0.0/8", "11.0.0.1", 443, false),
            ("10.0.0.0/8", "10.1.2.3", 8080, false),
            ("10.0.0.0/8:*", "10.1.2.3", 8080, true),
            ("10.9.9.9/8", "10.0.0.1", 443, true),
            ("0.0.0.0/0", "8.8.8.8", 443, true),
            ("127.0.0.1:*", "::ffff:127.0.0.1", 5432, true),
            // IPv4 pattern vs a name host, and the reverse
            ("127.0.0.1", "localhost", 443, false),
            ("10.0.0.0/8", "example.com", 443, false),
            ("localhost", "127.0.0.1", 443, false),
            ("example.com", "10.0.0.1", 443, false),
            // IPv6 literals and CIDR
            ("[::1]:443", "::1", 443, true),
            ("[::1]:443", "[::1]", 443, true),
            ("[::1]:443", "::1", 80, false),
            ("[::1]:443", "::2", 443, false),
            ("::1", "[::1]", 80, true),
            ("::1", "[::1]", 8080, false),
            ("[::1]", "::1", 443, true),
            ("[::1]:*", "::1", 1, true),
            ("::1", "127.0.0.1", 443, false),
            ("fd00::/8", "fd12:3456::1", 443, true),
            ("fd00::/8", "fe80::1", 443, false),
            ("fd00::/8", "10.0.0.1", 443, false),
            ("[fd00::/8]:443", "fdff::1", 443, true),
            ("[fd00::/8]:443", "fdff::1", 80, false),
            ("[FD00::/8]:*", "fd00::abcd", 22, true),
            ("2001:db8::/32", "2001:db8:ffff::1", 80, true),
            ("2001:db8::/32", "2001:db9::1", 80, false),
            // IPv6 blocks of IPv4-mapped addresses cover those IPv4 addresses
            ("::ffff:10.0.0.0/104", "10.1.2.3", 443, true),
            ("::ffff:10.0.0.0/104", "::ffff:10.1.2.3", 443, true),
            ("::ffff:10.0.0.0/104", "11.0.0.1", 443, false),
            ("::ffff:0:0/96", "192.168.1.1", 443, true),
            ("::/0", "8.8.8.8", 443, true),
        ];
        assert!(cases.len() >= 50, "only {} cases", cases.len());
        for &(p, h, port, want) in cases {
            let got = pat(p).matches(&host(h), port);
            assert_eq!(got, want, "pattern {p:?} host {h:?} port {port}");
        }
    }

    #[test]
    fn matches_ip_for_private_address_defence() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(pat("10.0.0.0/8").matches_ip(ip("10.2.3.4"), 443));
        assert!(!pat("10.0.0.0/8").matches_ip(ip("10.2.3.4"), 22));
        assert!(pat("10.0.0.0/8:22").matches_ip(ip("10.2.3.4"), 22));
        assert!(!pat("10.0.0.0/8").matches_ip(ip("192.168.1.1"), 443));
        assert!(pat("127.0.0.1").matches_ip(ip("::ffff:127.0.0.1"), 80));
        assert!(pat("[::1]:443").matches_ip(ip("::1"), 443));
        assert!(pat("fd00::/8").matches_ip(ip("fd00::1"), 80));
        assert!(pat("::ffff:0:0/96").matches_ip(ip("::ffff:10.0.0.1"), 80));
        assert!(pat("::ffff:10.0.0.0/104").matches_ip(ip("10.0.0.1"), 80));
        assert!(!pat("::ffff:10.0.0.0/104").matches_ip(ip("10.0.0.1"), 22));
        // Name patterns never cover an address.
        assert!(!pat("localhost").matches_ip(ip("127.0.0.1"), 443));
        assert!(!pat(".example.com:*").matches_ip(ip("10.0.0.1"), 443));
    }

    #[test]
    fn is_ip_only_for_addresses_and_blocks() {
        for p in [
            "10.0.0.1",
            "10.0.0.0/8",
            "::1",
            "[::1]:443",
            "fd00::/8",
            "[fd00::/8]:*",
        ] {
            assert!(pat(p).is_ip(), "{p:?}");
        }
        for p in [
            "example.com",
            "*.example.com",
            ".example.com:*",
            "localhost",
        ] {
            assert!(!pat(p).is_ip(), "{p:?}");
        }
    }

    #[test]
    fn accessors_expose_normalised_parts() {
        let p = pat("*.Bücher.Example.:8443");
        assert_eq!(
            p.host_match(),
            &HostMatch::Subdomains("xn--bcher-kva.example".to_string())
        );
        assert_eq!(p.ports(), PortMatch::One(8443));
        assert_eq!(pat("x").ports(), PortMatch::Default);
        assert_eq!(pat("x:*").ports(), PortMatch::Any);
        assert_eq!(
            pat("10.1.2.3/8").host_match(),
            &HostMatch::Net("10.0.0.0/8".parse().unwrap())
        );
    }

    #[test]
    fn parse_errors_name_the_pattern() {
        // (pattern, text the message must contain besides the pattern)
        let cases: &[(&str, &str)] = &[
            ("*example.com", "'*' may only be the whole first label"),
            ("a.*.com", "'*' may only be the whole first label"),
            ("**.x", "'*' may only be the whole first label"),
            ("*.*.x", "'*' may only be the whole first label"),
            ("*", "'*' may only be the whole first label"),
            ("*:443", "'*' may only be the whole first label"),
            ("example.*", "'*' may only be the whole first label"),
            ("*.", "a domain must follow"),
            (".", "a domain must follow"),
            ("*..", "a domain must follow"),
            ("..example.com", "empty label"),
            ("*.10.0.0.1", "CIDR block"),
            (".10.0.0.1", "CIDR block"),
            ("*.::1", "CIDR block"),
            ("a..b", "empty label"),
            ("exa mple.com", "invalid character"),
            ("example.com/path", "is not an IP address"),
            ("127.1", "IPv4"),
            ("2130706433", "IPv4"),
            ("0x7f.1", "IPv4"),
            ("example.com:0", "port 0 is not a valid port"),
            ("example.com:70000", "out of range"),
            ("example.com:abc", "not a number"),
            ("example.com:", "not a number"),
            ("example.com:+1", "not a number"),
            ("[::1]:0", "port 0"),
            ("10.0.0.0/33", "at most /32"),
            ("fd00::/129", "at most /128"),
            ("10.0.0.0/", "prefix length"),
            ("10.0.0.0/x", "prefix length"),
            ("10.0.0.0/-1", "prefix length"),
            ("10.0.0.0/8/8", "prefix length"),
            ("300.0.0.0/8", "is not an IP address"),
            ("10.0.0.0/8.5", "prefix length"),
            ("[::1", "without a matching ']'"),
            ("::1]", "without a matching '['"),
            ("[example.com]:443", "only IPv6 addresses go in brackets"),
            ("[10.0.0.1]", "only IPv6 addresses go in brackets"),
            ("[::1]443", "only ':port' may follow"),
            ("fd00::/8:443", "[fd00::/8]:443"),
            ("1::2::3", "invalid IPv6 address"),
            ("fe80::1%eth0", "zone"),
            ("xn--a.example", "internationalised"),
            ("", "empty host pattern"),
            ("   ", "empty host pattern"),
        ];
        for &(input, needle) in cases {
            let err = HostPattern::parse(input).unwrap_err();
            let msg = err.to_string();
            assert!(
                msg.contains(&format!("{:?}", input.trim())) || msg.contains(&format!("{input:?}")),
                "message for {input:?} does not quote it: {msg}"
            );
            assert!(
                msg.contains(needle),
                "message for {input:?} lacks {needle:?}: {msg}"
            );
        }
    }

    #[test]
    fn error_messages_say_how_to_fix() {
        let msg = HostPattern::parse("*example.com").unwrap_err().to_string();
        assert!(msg.contains("\"*.example.com\""), "{msg}");
        let msg = HostPattern::parse("x:0").unwrap_err().to_string();
        assert!(msg.contains("\":*\" for any port"), "{msg}");
        let msg = HostPattern::parse("10.0.0.0/40").unwrap_err().to_string();
        assert!(msg.contains("\"10.0.0.0/8\""), "{msg}");
    }

    #[test]
    fn display_canonical_forms() {
        let cases: &[(&str, &str)] = &[
            ("example.com", "example.com"),
            ("EXAMPLE.com.", "example.com"),
            ("  example.com  ", "example.com"),
            ("*.Example.com", "*.example.com"),
            (".example.com:8443", ".example.com:8443"),
            (".example.com.:*", ".example.com:*"),
            ("bücher.example", "xn--bcher-kva.example"),
            ("*.bücher.example:*", "*.xn--bcher-kva.example:*"),
            ("10.0.0.0/8:*", "10.0.0.0/8:*"),
            ("10.1.2.3/8", "10.0.0.0/8"),
            ("10.0.0.1/32", "10.0.0.1"),
            ("10.0.0.1:8080", "10.0.0.1:8080"),
            ("0.0.0.0/0", "0.0.0.0/0"),
            ("[::1]:443", "[::1]:443"),
            ("[::1]", "::1"),
            ("::1", "::1"),
            ("::1/128", "::1"),
            ("[::1]:*", "[::1]:*"),
            ("fd00::/8", "fd00::/8"),
            ("[fd00::/8]", "fd00::/8"),
            ("[FD12::1/8]:443", "[fd00::/8]:443"),
            ("::ffff:10.0.0.1", "10.0.0.1"),
            ("[::ffff:10.0.0.1]:443", "10.0.0.1:443"),
            ("example.com:0443", "example.com:443"),
        ];
        for &(input, want) in cases {
            let p = pat(input);
            assert_eq!(p.to_string(), want, "input {input:?}");
            let again: HostPattern = want.parse().unwrap();
            assert_eq!(again, p, "round trip of {input:?}");
            assert_eq!(again.to_string(), want, "second display of {input:?}");
        }
    }

    #[test]
    fn equal_spellings_give_equal_patterns() {
        assert_eq!(pat("bücher.example"), pat("XN--BCHER-KVA.example."));
        assert_eq!(pat("[::1]"), pat("::1"));
        assert_eq!(pat("10.0.0.0/8"), pat("10.200.0.0/8"));
        assert_ne!(pat("*.example.com"), pat(".example.com"));
        assert_ne!(pat("example.com"), pat("example.com:443"));
    }

    #[test]
    fn embedded_style_patterns_all_parse() {
        for p in [
            "registry.npmjs.org",
            "*.npmjs.org",
            "registry-1.docker.io",
            "*.azurecr.io",
            "generativelanguage.googleapis.com",
        ] {
            assert_eq!(pat(p).to_string(), p);
        }
    }
}
