//! Host patterns, hosts and authorities (src/policy): parse arbitrary text, match
//! arbitrary hosts and ports.
//!
//! Input: UTF-8 text, up to four lines:
//!
//! ```text
//! <pattern>        e.g. *.example.com:8443
//! <host>           e.g. API.Example.com.
//! <port>           decimal, default 443
//! <authority>      e.g. [::1]:443
//! ```
//!
//! Properties: nothing panics (a bad pattern is an `Err`); a pattern's canonical form
//! parses back to an equal pattern; parsing and matching ignore ASCII case and one
//! trailing dot; `matches` agrees with the table in `pattern.rs` (label boundaries,
//! ports, IP/CIDR vs names); an exact pattern matches its own normalised host; a parsed
//! host or authority reparses from its canonical form; deny wins in the policy.

#![no_main]

use std::net::IpAddr;
use std::sync::OnceLock;

use keygate::policy::pattern::{HostMatch, PortMatch};
use keygate::policy::{Host, HostPattern, Mode, Policy, PrivateAddresses, parse_authority};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.split('\n');
    let pattern = lines.next().unwrap_or("");
    let host = lines.next().unwrap_or("");
    let port: u16 = lines
        .next()
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or(443);
    let authority = lines.next().unwrap_or("");

    let parsed_host = check_host(host);
    check_authority(authority);
    if let (Some(p), Some(h)) = (check_pattern(pattern), &parsed_host) {
        check_match(&p, h, host, port);
    }
});

/// Parses a pattern; checks case-insensitivity, the canonical form and self-matches.
fn check_pattern(text: &str) -> Option<HostPattern> {
    let parsed = HostPattern::parse(text);
    // Case never changes the outcome (names are lower-cased, hex digits and `xn--`
    // are case-insensitive).
    assert_eq!(
        HostPattern::parse(&text.to_ascii_uppercase()).ok(),
        parsed.clone().ok(),
        "upper-casing {text:?} changed the parse"
    );
    assert_eq!(
        HostPattern::parse(&text.to_ascii_lowercase()).ok(),
        parsed.clone().ok(),
        "lower-casing {text:?} changed the parse"
    );
    let p = parsed.ok()?;
    // The canonical form parses back to an equal pattern and is a fixed point.
    let canonical = p.to_string();
    let again = HostPattern::parse(&canonical)
        .unwrap_or_else(|e| panic!("canonical form {canonical:?} of {text:?} fails: {e}"));
    assert_eq!(again, p, "canonical form {canonical:?} of {text:?}");
    assert_eq!(again.to_string(), canonical);
    assert_eq!(
        p.is_ip(),
        matches!(p.host_match(), HostMatch::Ip(_) | HostMatch::Net(_))
    );
    check_self_match(&p);
    Some(p)
}

/// A port the pattern covers.
fn covered_port(p: &HostPattern) -> u16 {
    match p.ports() {
        PortMatch::Default => 443,
        PortMatch::One(n) => n,
        PortMatch::Any => 1,
    }
}

/// An exact pattern matches its own host, `.d` matches `d`, `*.d` does not; every
/// name pattern matches one more label on the left, never a glued-on prefix.
fn check_self_match(p: &HostPattern) {
    let port = covered_port(p);
    assert!(p.ports().covers(port));
    if let PortMatch::Default = p.ports() {
        assert!(p.ports().covers(80) && !p.ports().covers(8080));
    }
    match p.host_match() {
        HostMatch::Exact(n) | HostMatch::Subdomains(n) | HostMatch::Domain(n) => {
            let own = Host::parse(n).unwrap_or_else(|e| panic!("normalised name {n:?}: {e}"));
            assert_eq!(own, Host::Name(n.clone()), "{n:?} is not normalised");
            let exact_or_domain = !matches!(p.host_match(), HostMatch::Subdomains(_));
            assert_eq!(p.matches(&own, port), exact_or_domain, "{p} vs its own {n}");
            if let Ok(sub) = Host::parse(&format!("a.{n}")) {
                let is_sub_pattern = !matches!(p.host_match(), HostMatch::Exact(_));
                assert_eq!(p.matches(&sub, port), is_sub_pattern, "{p} vs a.{n}");
            }
            if let Ok(glued) = Host::parse(&format!("evil{n}")) {
                assert!(!p.matches(&glued, port), "{p} matched evil{n}");
            }
            for ip in ["127.0.0.1", "::1", "10.0.0.1"] {
                let ip: IpAddr = ip.parse().unwrap_or_else(|_| unreachable!());
                assert!(!p.matches_ip(ip, port), "name pattern {p} matched {ip}");
            }
        }
        HostMatch::Ip(ip) => {
            assert_eq!(*ip, ip.to_canonical(), "{p}: address not canonical");
            assert!(p.matches(&Host::Ip(*ip), port));
            assert!(p.matches_ip(*ip, port));
        }
        HostMatch::Net(net) => {
            assert_eq!(*net, net.trunc(), "{p}: host bits not cleared");
            assert!(p.matches_ip(net.network(), port));
            assert!(p.matches_ip(net.broadcast(), port));
        }
    }
}

/// Parses a host; checks normalisation, case, trailing dot and the Display forms.
fn check_host(text: &str) -> Option<Host> {
    let parsed = Host::parse(text).ok();
    assert_eq!(
        Host::parse(&text.to_ascii_uppercase()).ok(),
        parsed,
        "upper-casing host {text:?}"
    );
    let plain = !text.is_empty()
        && !text.ends_with('.')
        && !text.contains([':', '[', ']'])
        && text.len() < 1000;
    if plain {
        assert_eq!(
            Host::parse(&format!("{text}.")).ok(),
            parsed,
            "one trailing dot changed host {text:?}"
        );
    }
    let host = parsed?;
    assert_eq!(Host::parse(&host.as_str()).as_ref(), Ok(&host));
    assert_eq!(Host::parse(&host.to_string()).as_ref(), Ok(&host));
    match &host {
        Host::Name(n) => {
            assert!(
                n.len() <= 253 && !n.is_empty() && !n.ends_with('.'),
                "{n:?}"
            );
            assert!(
                n.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b)),
                "{n:?}"
            );
            assert!(n.split('.').all(|l| (1..=63).contains(&l.len())), "{n:?}");
        }
        Host::Ip(ip) => assert_eq!(*ip, ip.to_canonical()),
    }
    Some(host)
}

/// Parses an authority; a result reparses from `host:port`.
fn check_authority(text: &str) {
    for default in [None, Some(443)] {
        if let Ok((host, port)) = parse_authority(text, default) {
            assert_ne!(port, 0);
            let again = parse_authority(&format!("{host}:{port}"), None);
            assert_eq!(again, Ok((host, port)), "authority {text:?}");
        }
    }
}

/// `matches` against an independent reading of the pattern table, case and the
/// policy's precedence.
fn check_match(p: &HostPattern, host: &Host, host_text: &str, port: u16) {
    let got = p.matches(host, port);
    let host_ok = match (p.host_match(), host) {
        (HostMatch::Exact(e), Host::Name(n)) => n == e,
        (HostMatch::Subdomains(d), Host::Name(n)) => strictly_under(n, d),
        (HostMatch::Domain(d), Host::Name(n)) => n == d || strictly_under(n, d),
        (HostMatch::Ip(a), Host::Ip(b)) => a == b,
        // An IPv6 block of IPv4-mapped addresses also covers the IPv4 addresses.
        (HostMatch::Net(net), Host::Ip(b)) => {
            net.contains(b)
                || matches!(b, IpAddr::V4(v4) if net.contains(&IpAddr::V6(v4.to_ipv6_mapped())))
        }
        _ => false,
    };
    assert_eq!(
        got,
        host_ok && p.ports().covers(port),
        "{p} vs {host}:{port}"
    );
    if let Host::Ip(ip) = host {
        assert_eq!(p.matches_ip(*ip, port), got, "matches_ip {p} vs {ip}");
    }
    if let Ok(upper) = Host::parse(&host_text.to_ascii_uppercase()) {
        assert_eq!(
            p.matches(&upper, port),
            got,
            "case changed {p} vs {host_text:?}"
        );
    }
    // Policy precedence: deny wins over secret hosts and allow; in custom mode only the
    // listed patterns allow.
    let mut policy = base_policy().clone();
    policy.allow = vec![p.clone()];
    assert_eq!(policy.decide(host, port).is_ok(), got);
    policy.secret_hosts = vec![p.clone()];
    policy.deny = vec![p.clone()];
    assert!(
        policy.decide(host, port).is_err(),
        "deny {p} lost for {host}:{port}"
    );
}

fn strictly_under(name: &str, parent: &str) -> bool {
    name.len() > parent.len() + 1
        && name.ends_with(parent)
        && name.as_bytes()[name.len() - parent.len() - 1] == b'.'
}

fn base_policy() -> &'static Policy {
    static POLICY: OnceLock<Policy> = OnceLock::new();
    POLICY.get_or_init(|| {
        Policy::new(
            Mode::Custom,
            Vec::new(),
            Vec::new(),
            Vec::new(),
            PrivateAddresses::Deny,
        )
    })
}
