//! The per-session CA (issue 12 §3): a CA made for one jailed run, kept in memory only
//! (its key is never written anywhere), whose certificate carries X.509 name constraints
//! so that it can vouch only for the hosts that session intercepts.
//!
//! Shape: ECDSA P-256, subject `CN=keygate session CA, O=keygate`, pathlen 0, the key
//! usages of the main CA, a random serial, backdated like the main CA, valid for what the
//! caller asks ([`SESSION_CA_VALIDITY`] is the suggested default). Its name-constraints
//! extension (critical: rcgen always marks it so) has permitted subtrees only:
//!
//! * one `dNSName` subtree per permitted domain. A `dNSName` subtree covers the name and
//!   every name below it (RFC 5280 §4.2.1.10), so `api.example.com` also permits
//!   `x.api.example.com`, and `*.example.com` (which excludes the apex in policy) permits
//!   the apex too. Policy decides which hosts are intercepted; the constraint only bounds
//!   what the CA could ever vouch for.
//! * one `iPAddress` subtree per permitted address block (a single address is a /32 or
//!   /128 block).
//!
//! A name type with no permitted subtree is *unconstrained* (RFC 5280: constraints apply
//! per name type). So a CA permitting only `example.com` would still vouch for every IP
//! address, and one permitting nothing would vouch for everything. To close that, a
//! subtree that permits nothing useful is added for every name type (and IP family) the
//! session does not permit: `dNSName` [`NOTHING_DNS`] (`keygate.invalid`; `.invalid`
//! never resolves), `iPAddress` `255.255.255.255/32` (limited broadcast: no TCP
//! connection goes there) and `100::/128` (RFC 6666 discard-only block). RFC 5280 treats
//! IPv4 and IPv6 as one name type, so one family's filler would do; both are added for
//! verifiers that treat the families apart.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use rcgen::{
    CidrSubnet, DistinguishedName, DnType, GeneralSubtree, Issuer, KeyPair, NameConstraints,
    PKCS_ECDSA_P256_SHA256,
};
use time::Duration;

use super::{BACKDATE, Ca, CaError, ORGANIZATION, ca_params};
use crate::policy::pattern::HostMatch;
use crate::policy::{Host, HostPattern};

/// Suggested validity of a session CA, counted from its creation (it is also backdated
/// like the main CA). Generous on purpose: a jailed agent can run for days, and TLS to
/// every intercepted host fails once the CA expires, while the key never leaves
/// keygate's memory and dies with the session.
pub const SESSION_CA_VALIDITY: Duration = Duration::days(7);

/// Common name of every session CA.
pub const SESSION_CA_COMMON_NAME: &str = "keygate session CA";

/// The `dNSName` subtree a session CA carries when it permits no DNS name: it covers
/// only `keygate.invalid` and names below it, none of which ever resolves.
pub const NOTHING_DNS: &str = "keygate.invalid";

/// The IPv4 block a session CA permits when it permits no IPv4 address.
const NOTHING_V4: Ipv4Addr = Ipv4Addr::BROADCAST;
/// The IPv6 block a session CA permits when it permits no IPv6 address (`100::`, in the
/// RFC 6666 discard-only prefix).
const NOTHING_V6: Ipv6Addr = Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0);

/// One permitted subtree of a session CA: a DNS domain (the name and every name below
/// it) or an IP address block. Built from a [`Host`] or a [`HostPattern`], so a name is
/// always canonical (lower case, punycode, no trailing dot) and never empty, and a block
/// never has host bits set.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Permit(Subtree);

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Subtree {
    Dns(String),
    Net(IpNet),
}

impl Permit {
    /// The permit for one host: its name (and, as every `dNSName` subtree, the names
    /// below it), or its address as a /32 or /128 block. `None` for a [`Host::Name`]
    /// that is not a valid host name (only a hand-built `Host` can be one; an empty name
    /// would permit every name).
    pub fn host(host: &Host) -> Option<Permit> {
        match host {
            Host::Name(name) => match Host::parse(name).ok()? {
                Host::Name(name) => Some(Permit(Subtree::Dns(name))),
                Host::Ip(ip) => Some(Permit::addr(ip)),
            },
            Host::Ip(ip) => Some(Permit::addr(*ip)),
        }
    }

    /// The permits that cover what `pattern` covers (ports play no part in
    /// certificates):
    ///
    /// | pattern                 | permits                                  |
    /// |-------------------------|------------------------------------------|
    /// | `api.example.com`       | DNS `api.example.com`                    |
    /// | `*.example.com`         | DNS `example.com`                        |
    /// | `.example.com`          | DNS `example.com`                        |
    /// | `10.0.0.1`, `::1`       | `10.0.0.1/32`, `::1/128`                 |
    /// | `10.0.0.0/8`            | `10.0.0.0/8`                             |
    /// | `::ffff:10.0.0.0/104`   | `10.0.0.0/8` (leaves carry IPv4 SANs)    |
    /// | `::/0`                  | `::/0` and `0.0.0.0/0`                   |
    ///
    /// An IPv6 block of IPv4-mapped addresses becomes the IPv4 block it maps (policy
    /// matches those IPv4 hosts, and their leaves carry 4-byte IP SANs, which a 16-byte
    /// constraint never matches); an IPv6 block that contains all of `::ffff:0:0/96`
    /// also permits all of IPv4. Every pattern has permits; the result is a `Vec` only
    /// because of that last case (it is never empty).
    pub fn from_pattern(pattern: &HostPattern) -> Vec<Permit> {
        match pattern.host_match() {
            HostMatch::Exact(name) | HostMatch::Subdomains(name) | HostMatch::Domain(name) => {
                Permit::host(&Host::Name(name.clone()))
                    .into_iter()
                    .collect()
            }
            HostMatch::Ip(ip) => vec![Permit::addr(*ip)],
            HostMatch::Net(net) => net_permits(*net),
        }
    }

    /// The domain, for a DNS permit.
    pub fn dns_name(&self) -> Option<&str> {
        match &self.0 {
            Subtree::Dns(name) => Some(name),
            Subtree::Net(_) => None,
        }
    }

    /// The address block, for an IP permit.
    pub fn ip_network(&self) -> Option<IpNet> {
        match self.0 {
            Subtree::Net(net) => Some(net),
            Subtree::Dns(_) => None,
        }
    }

    /// A single address (IPv4-mapped IPv6 folded to IPv4) as a full-length block.
    fn addr(ip: IpAddr) -> Permit {
        Permit(Subtree::Net(IpNet::from(ip.to_canonical())))
    }

    /// True when this subtree holds `host` (RFC 5280: a `dNSName` subtree holds the
    /// name and every name below it), so that a CA constrained to it may vouch for it.
    pub fn covers(&self, host: &Host) -> bool {
        match (&self.0, host) {
            (Subtree::Dns(domain), Host::Name(name)) => {
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                name == *domain
                    || name
                        .strip_suffix(domain.as_str())
                        .is_some_and(|rest| rest.ends_with('.'))
            }
            (Subtree::Net(net), Host::Ip(ip)) => net.contains(&ip.to_canonical()),
            _ => false,
        }
    }

    pub(super) fn subtree(&self) -> GeneralSubtree {
        match &self.0 {
            Subtree::Dns(name) => GeneralSubtree::DnsName(name.clone()),
            Subtree::Net(net) => GeneralSubtree::IpAddress(CidrSubnet::from_addr_prefix(
                net.addr(),
                net.prefix_len(),
            )),
        }
    }
}

/// Writes the domain (`example.com`) or the block (`10.0.0.0/8`, `::1/128`).
impl fmt::Display for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Subtree::Dns(name) => f.write_str(name),
            Subtree::Net(net) => write!(f, "{net}"),
        }
    }
}

/// The permits for an address block; see [`Permit::from_pattern`].
fn net_permits(net: IpNet) -> Vec<Permit> {
    let block = |net: IpNet| Permit(Subtree::Net(net.trunc()));
    let IpNet::V6(v6) = net.trunc() else {
        return vec![block(net)];
    };
    let mapped = Ipv6Net::new(Ipv4Addr::UNSPECIFIED.to_ipv6_mapped(), 96).expect("/96 is valid");
    if mapped.contains(&v6) {
        let v4 = v6.network().to_ipv4_mapped().expect("inside ::ffff:0:0/96");
        let v4 = Ipv4Net::new(v4, v6.prefix_len() - 96).expect("prefix at most 32");
        vec![block(IpNet::V4(v4))]
    } else if v6.contains(&mapped) {
        vec![block(net), block(IpNet::V4(Ipv4Net::default()))]
    } else {
        vec![block(net)]
    }
}

/// A canonical permit list: sorted (DNS names first, then blocks), without duplicates
/// and without permits another one already covers (`api.example.com` under
/// `example.com`, `10.1.0.0/16` inside `10.0.0.0/8`). [`Ca::session`] applies it itself.
pub fn normalize_permits(permits: impl IntoIterator<Item = Permit>) -> Vec<Permit> {
    let mut all: Vec<Permit> = permits.into_iter().collect();
    all.sort();
    all.dedup();
    let covered = |p: &Permit| {
        all.iter().any(|q| {
            q != p
                && match (&p.0, &q.0) {
                    (Subtree::Dns(p), Subtree::Dns(q)) => p
                        .strip_suffix(q.as_str())
                        .is_some_and(|rest| rest.ends_with('.')),
                    (Subtree::Net(p), Subtree::Net(q)) => q.contains(p),
                    _ => false,
                }
        })
    };
    all.iter().filter(|p| !covered(p)).cloned().collect()
}

/// The permitted subtrees a session CA carries for `permits`: the normalised permits,
/// then a permit-nothing filler for each name type (and IP family) with none.
fn permitted_subtrees(permits: &[Permit]) -> Vec<GeneralSubtree> {
    let permits = normalize_permits(permits.iter().cloned());
    let has_dns = permits.iter().any(|p| p.dns_name().is_some());
    let has = |v4: bool| {
        permits
            .iter()
            .filter_map(Permit::ip_network)
            .any(|net| matches!(net, IpNet::V4(_)) == v4)
    };
    let mut subtrees: Vec<GeneralSubtree> = permits.iter().map(Permit::subtree).collect();
    if !has_dns {
        subtrees.push(GeneralSubtree::DnsName(NOTHING_DNS.to_string()));
    }
    if !has(true) {
        subtrees.push(GeneralSubtree::IpAddress(CidrSubnet::from_v4_prefix(
            NOTHING_V4.octets(),
            32,
        )));
    }
    if !has(false) {
        subtrees.push(GeneralSubtree::IpAddress(CidrSubnet::from_v6_prefix(
            NOTHING_V6.octets(),
            128,
        )));
    }
    subtrees
}

impl Ca {
    /// A fresh session CA, in memory only, permitted to vouch for `permits` and nothing
    /// else (see the module documentation; an empty list permits nothing useful, it does
    /// not leave the CA unconstrained). Valid from one hour ago to `validity` from now
    /// ([`SESSION_CA_VALIDITY`] is the suggested value; a validity of zero or less gives
    /// a certificate no client accepts). It mints leaves through [`super::LeafIssuer`]
    /// exactly as the main CA does; [`Ca::cert_pem`] is the certificate for the session
    /// directory's `ca.pem`.
    pub fn session(permits: &[Permit], validity: Duration) -> Result<Ca, CaError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = ca_params()?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, SESSION_CA_COMMON_NAME);
        dn.push(DnType::OrganizationName, ORGANIZATION);
        params.distinguished_name = dn;
        params.not_after = params.not_before + BACKDATE + validity;
        params.name_constraints = Some(NameConstraints {
            permitted_subtrees: permitted_subtrees(permits),
            excluded_subtrees: Vec::new(),
        });
        let cert = params.self_signed(&key)?;
        Ok(Ca {
            cert_der: cert.der().clone(),
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
