use std::collections::BTreeSet;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls_pki_types::{ServerName, UnixTime};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::*;
use crate::ca::LeafIssuer;

fn parse(der: &[u8]) -> X509Certificate<'_> {
    X509Certificate::from_der(der).unwrap().1
}

fn pattern(s: &str) -> HostPattern {
    HostPattern::parse(s).unwrap()
}

fn permits(patterns: &[&str]) -> Vec<Permit> {
    patterns
        .iter()
        .flat_map(|p| Permit::from_pattern(&pattern(p)))
        .collect()
}

fn host(s: &str) -> Host {
    Host::parse(s).unwrap()
}

/// A general name as text: `dns:NAME` or `ip:ADDR/MASK` (mask in address notation).
fn name_text(name: &GeneralName<'_>) -> String {
    match name {
        GeneralName::DNSName(d) => format!("dns:{d}"),
        GeneralName::IPAddress(b) if b.len() == 8 => {
            let addr = Ipv4Addr::from(<[u8; 4]>::try_from(&b[..4]).unwrap());
            let mask = Ipv4Addr::from(<[u8; 4]>::try_from(&b[4..]).unwrap());
            format!("ip:{addr}/{mask}")
        }
        GeneralName::IPAddress(b) if b.len() == 32 => {
            let addr = Ipv6Addr::from(<[u8; 16]>::try_from(&b[..16]).unwrap());
            let mask = Ipv6Addr::from(<[u8; 16]>::try_from(&b[16..]).unwrap());
            format!("ip:{addr}/{mask}")
        }
        other => format!("other:{other:?}"),
    }
}

/// The permitted subtrees of `ca`, asserting the extension is there, critical, and has
/// no excluded subtrees.
fn permitted(ca: &Ca) -> BTreeSet<String> {
    let cert = parse(ca.cert_der());
    let ext = cert
        .name_constraints()
        .unwrap()
        .expect("a session CA always has name constraints");
    assert!(ext.critical, "name constraints must be critical");
    assert!(
        ext.value.excluded_subtrees.is_none(),
        "no excluded subtrees"
    );
    let subtrees = ext.value.permitted_subtrees.as_ref().expect("permitted");
    let texts: BTreeSet<String> = subtrees.iter().map(|s| name_text(&s.base)).collect();
    assert_eq!(texts.len(), subtrees.len(), "duplicate subtree");
    texts
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

const V4_NOTHING: &str = "ip:255.255.255.255/255.255.255.255";
const V6_NOTHING: &str = "ip:100::/ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";

#[test]
fn constraints_are_critical_and_exactly_the_permits() {
    let ca = Ca::session(
        &permits(&[
            "api.anthropic.com",
            "*.example.com:8443",
            ".example.org:*",
            "10.0.0.0/8",
            "[::1]:443",
        ]),
        SESSION_CA_VALIDITY,
    )
    .unwrap();
    assert_eq!(
        permitted(&ca),
        set(&[
            "dns:api.anthropic.com",
            "dns:example.com",
            "dns:example.org",
            "ip:10.0.0.0/255.0.0.0",
            "ip:::1/ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        ])
    );
}

#[test]
fn an_empty_list_permits_nothing_useful_rather_than_everything() {
    let ca = Ca::session(&[], SESSION_CA_VALIDITY).unwrap();
    assert_eq!(
        permitted(&ca),
        set(&["dns:keygate.invalid", V4_NOTHING, V6_NOTHING])
    );
}

#[test]
fn every_name_type_without_a_permit_gets_a_filler() {
    let names_only = Ca::session(&permits(&["api.example.com"]), SESSION_CA_VALIDITY).unwrap();
    assert_eq!(
        permitted(&names_only),
        set(&["dns:api.example.com", V4_NOTHING, V6_NOTHING])
    );
    let v4_only = Ca::session(&permits(&["127.0.0.1"]), SESSION_CA_VALIDITY).unwrap();
    assert_eq!(
        permitted(&v4_only),
        set(&[
            "dns:keygate.invalid",
            "ip:127.0.0.1/255.255.255.255",
            V6_NOTHING
        ])
    );
    let v6_only = Ca::session(&permits(&["fd00::/8"]), SESSION_CA_VALIDITY).unwrap();
    assert_eq!(
        permitted(&v6_only),
        set(&["dns:keygate.invalid", V4_NOTHING, "ip:fd00::/ff00::"])
    );
}

#[test]
fn session_ca_has_the_ca_shape() {
    let ca = Ca::session(&permits(&["api.example.com"]), SESSION_CA_VALIDITY).unwrap();
    let cert = parse(ca.cert_der());
    assert!(cert.is_ca());
    let bc = cert.basic_constraints().unwrap().unwrap();
    assert!(bc.critical);
    assert_eq!(bc.value.path_len_constraint, Some(0));
    let cn = cert.subject().iter_common_name().next().unwrap();
    assert_eq!(cn.as_str().unwrap(), SESSION_CA_COMMON_NAME);
    let o = cert.subject().iter_organization().next().unwrap();
    assert_eq!(o.as_str().unwrap(), ORGANIZATION);
    assert_eq!(cert.issuer(), cert.subject(), "self-signed");
    let ku = cert.key_usage().unwrap().unwrap().value;
    assert!(ku.key_cert_sign() && ku.crl_sign() && ku.digital_signature());
    assert_eq!(
        cert.public_key().algorithm.algorithm.to_id_string(),
        "1.2.840.10045.2.1",
        "EC public key"
    );
    assert!(ca.cert_pem().starts_with("-----BEGIN CERTIFICATE-----"));
    let from_pem = pem::parse(ca.cert_pem()).unwrap();
    assert_eq!(from_pem.contents(), ca.cert_der().as_ref());
    assert_eq!(ca.ca_pem(), ca.cert_pem());
}

#[test]
fn validity_is_backdated_and_as_asked() {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    for validity in [Duration::hours(2), SESSION_CA_VALIDITY] {
        let ca = Ca::session(&[], validity).unwrap();
        let cert = parse(ca.cert_der());
        let v = cert.validity();
        let backdated = now - v.not_before.timestamp();
        assert!((3590..=3700).contains(&backdated), "backdated {backdated}s");
        let ahead = v.not_after.timestamp() - now;
        let want = validity.whole_seconds();
        assert!(
            (want - 10..=want + 100).contains(&ahead),
            "valid {ahead}s ahead, want {want}s"
        );
    }
}

#[test]
fn two_sessions_have_different_keys_and_serials() {
    let a = Ca::session(&[], SESSION_CA_VALIDITY).unwrap();
    let b = Ca::session(&[], SESSION_CA_VALIDITY).unwrap();
    let (ca, cb) = (parse(a.cert_der()), parse(b.cert_der()));
    assert_ne!(ca.public_key().raw, cb.public_key().raw);
    assert_ne!(ca.raw_serial(), cb.raw_serial());
}

#[test]
fn leaves_for_permitted_hosts() {
    let ca = Ca::session(
        &permits(&["api.example.com", "127.0.0.1"]),
        SESSION_CA_VALIDITY,
    )
    .unwrap();
    let ca_cert = parse(ca.cert_der());
    for (h, san) in [
        ("api.example.com", "dns:api.example.com"),
        ("127.0.0.1", "ip:[127, 0, 0, 1]"),
    ] {
        let leaf = ca.mint(&host(h)).unwrap();
        assert_eq!(leaf.chain.len(), 2);
        assert_eq!(&leaf.chain[1], ca.cert_der());
        let cert = parse(&leaf.chain[0]);
        assert!(!cert.is_ca());
        assert_eq!(cert.issuer(), ca_cert.subject());
        let sans: Vec<String> = cert
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names
            .iter()
            .map(|n| match n {
                GeneralName::DNSName(d) => format!("dns:{d}"),
                GeneralName::IPAddress(ip) => format!("ip:{ip:?}"),
                other => format!("other:{other:?}"),
            })
            .collect();
        assert_eq!(sans, vec![san]);
        assert_ne!(
            cert.public_key().raw,
            ca_cert.public_key().raw,
            "a leaf must never reuse the CA key"
        );
        assert!(cert.verify_signature(Some(ca_cert.public_key())).is_ok());
    }
}

/// rustls (webpki) enforces the constraints of a trust anchor: a leaf for a permitted
/// host verifies, a leaf for any other name or address does not.
#[test]
fn rustls_refuses_leaves_outside_the_constraints() {
    let ca = Ca::session(
        &permits(&["api.example.com", "10.0.0.0/8"]),
        SESSION_CA_VALIDITY,
    )
    .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert_der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .unwrap();
    let verify = |h: &str| {
        let leaf = ca.mint(&host(h)).unwrap();
        let name = ServerName::try_from(h.to_string()).unwrap();
        verifier.verify_server_cert(&leaf.chain[0], &[], &name, &[], UnixTime::now())
    };
    for ok in ["api.example.com", "deep.api.example.com", "10.1.2.3"] {
        assert!(verify(ok).is_ok(), "{ok}: {:?}", verify(ok));
    }
    for bad in ["example.com", "evil.example.net", "11.0.0.1", "::1"] {
        let err = verify(bad).expect_err(bad);
        assert!(
            format!("{err:?}").contains("NameConstraint"),
            "{bad}: {err:?}"
        );
    }
}

#[test]
fn from_pattern_maps_every_kind_of_pattern() {
    let cases: &[(&str, &[&str])] = &[
        ("api.anthropic.com", &["api.anthropic.com"]),
        ("API.Anthropic.com.:8443", &["api.anthropic.com"]),
        ("*.example.com", &["example.com"]),
        (".example.com:*", &["example.com"]),
        ("bücher.example", &["xn--bcher-kva.example"]),
        ("localhost", &["localhost"]),
        ("10.0.0.1", &["10.0.0.1/32"]),
        ("10.0.0.1:8080", &["10.0.0.1/32"]),
        ("10.9.9.9/8", &["10.0.0.0/8"]),
        ("0.0.0.0/0", &["0.0.0.0/0"]),
        ("::1", &["::1/128"]),
        ("[fd00::/8]:*", &["fd00::/8"]),
        ("::ffff:10.0.0.1", &["10.0.0.1/32"]),
        ("::ffff:10.0.0.0/104", &["10.0.0.0/8"]),
        ("::ffff:0:0/96", &["0.0.0.0/0"]),
        ("::/0", &["::/0", "0.0.0.0/0"]),
    ];
    for &(p, want) in cases {
        let got: Vec<String> = Permit::from_pattern(&pattern(p))
            .iter()
            .map(Permit::to_string)
            .collect();
        assert_eq!(got, want, "pattern {p:?}");
    }
    let dns = &Permit::from_pattern(&pattern("*.example.com"))[0];
    assert_eq!(dns.dns_name(), Some("example.com"));
    assert_eq!(dns.ip_network(), None);
    let net = &Permit::from_pattern(&pattern("10.0.0.0/8"))[0];
    assert_eq!(net.ip_network(), Some("10.0.0.0/8".parse().unwrap()));
    assert_eq!(net.dns_name(), None);
}

#[test]
fn host_permits_refuse_names_that_would_widen_the_constraint() {
    assert_eq!(
        Permit::host(&host("api.example.com")).unwrap().to_string(),
        "api.example.com"
    );
    assert_eq!(
        Permit::host(&Host::Ip("::ffff:127.0.0.1".parse().unwrap()))
            .unwrap()
            .to_string(),
        "127.0.0.1/32"
    );
    // A hand-built name is re-checked: an empty dNSName subtree would permit every name.
    for bad in ["", ".", "a..b", "exa mple.com"] {
        assert_eq!(Permit::host(&Host::Name(bad.to_string())), None, "{bad:?}");
    }
    assert_eq!(
        Permit::host(&Host::Name("EXAMPLE.com.".to_string()))
            .unwrap()
            .to_string(),
        "example.com"
    );
}

#[test]
fn normalize_sorts_dedups_and_drops_covered_permits() {
    let list = permits(&[
        "10.1.0.0/16",
        "b.example.com",
        "api.example.com",
        "10.0.0.0/8",
        "*.example.com",
        "api.example.com:8443",
        "example.net",
        "notexample.com",
        "::1",
        "::1",
        "192.168.1.1",
    ]);
    let got: Vec<String> = normalize_permits(list)
        .iter()
        .map(Permit::to_string)
        .collect();
    assert_eq!(
        got,
        vec![
            "example.com",
            "example.net",
            "notexample.com",
            "10.0.0.0/8",
            "192.168.1.1/32",
            "::1/128",
        ]
    );
    assert!(normalize_permits(Vec::new()).is_empty());
}
