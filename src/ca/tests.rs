use std::fs;

use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::*;
use crate::policy::Host;

fn home() -> (tempfile::TempDir, Home) {
    let dir = tempfile::tempdir().unwrap();
    let home = Home::at(dir.path().join("home"));
    (dir, home)
}

fn parse(der: &[u8]) -> X509Certificate<'_> {
    X509Certificate::from_der(der).unwrap().1
}

fn sans(cert: &X509Certificate<'_>) -> Vec<String> {
    let ext = cert.subject_alternative_name().unwrap().unwrap();
    ext.value
        .general_names
        .iter()
        .map(|n| match n {
            GeneralName::DNSName(d) => format!("dns:{d}"),
            GeneralName::IPAddress(ip) => format!("ip:{ip:?}"),
            other => format!("other:{other:?}"),
        })
        .collect()
}

#[test]
fn ca_has_the_contracted_shape() {
    let (_d, home) = home();
    assert_eq!(Ca::init(&home, false).unwrap(), InitOutcome::Created);
    let ca = Ca::load(&home).unwrap();
    let cert = parse(ca.cert_der());
    assert!(cert.is_ca());
    let bc = cert.basic_constraints().unwrap().unwrap().value;
    assert_eq!(bc.path_len_constraint, Some(0));
    let cn = cert.subject().iter_common_name().next().unwrap();
    assert_eq!(cn.as_str().unwrap(), CA_COMMON_NAME);
    let days =
        (cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp()) / 86_400;
    assert!((3650..=3651).contains(&days), "validity {days} days");
    assert_eq!(
        cert.public_key().algorithm.algorithm.to_id_string(),
        "1.2.840.10045.2.1",
        "EC public key"
    );
    let ku = cert.key_usage().unwrap().unwrap().value;
    assert!(ku.key_cert_sign());
}

#[cfg(unix)]
#[test]
fn key_is_owner_only_and_not_overwritten_without_force() {
    let (_d, home) = home();
    Ca::init(&home, false).unwrap();
    assert_eq!(home::group_or_other_bits(&home.ca_key()).unwrap(), 0);
    let key_before = fs::read(home.ca_key()).unwrap();
    assert_eq!(Ca::init(&home, false).unwrap(), InitOutcome::Kept);
    assert_eq!(fs::read(home.ca_key()).unwrap(), key_before);
    assert_eq!(Ca::init(&home, true).unwrap(), InitOutcome::Rotated);
    assert_ne!(fs::read(home.ca_key()).unwrap(), key_before);
    assert_eq!(home::group_or_other_bits(&home.ca_key()).unwrap(), 0);
}

#[cfg(unix)]
#[test]
fn refuses_a_world_readable_key() {
    use std::os::unix::fs::PermissionsExt;
    let (_d, home) = home();
    Ca::init(&home, false).unwrap();
    fs::set_permissions(home.ca_key(), fs::Permissions::from_mode(0o644)).unwrap();
    let err = Ca::load(&home).unwrap_err().to_string();
    assert!(err.contains("chmod 600"), "{err}");
}

#[test]
fn refuses_a_key_of_another_ca() {
    let (_d, home) = home();
    let (_d2, other) = self::home();
    Ca::init(&home, false).unwrap();
    Ca::init(&other, false).unwrap();
    fs::copy(other.ca_key(), home.ca_key()).unwrap();
    let err = Ca::load(&home).unwrap_err().to_string();
    assert!(err.contains("does not belong"), "{err}");
}

#[test]
fn missing_ca_says_how_to_create_it() {
    let (_d, home) = home();
    let err = Ca::load(&home).unwrap_err().to_string();
    assert!(err.contains("keygate ca init"), "{err}");
}

#[test]
fn leaf_for_a_name() {
    let (_d, home) = home();
    let (ca, created) = Ca::load_or_create(&home).unwrap();
    assert!(created);
    let host = Host::Name("api.example.com".into());
    let leaf = ca.mint(&host).unwrap();
    assert_eq!(leaf.chain.len(), 2);
    assert_eq!(&leaf.chain[1], ca.cert_der());
    let cert = parse(&leaf.chain[0]);
    assert_eq!(sans(&cert), vec!["dns:api.example.com"]);
    assert!(!cert.is_ca());
    assert_eq!(cert.issuer(), parse(ca.cert_der()).subject());
    let v = cert.validity();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let backdated = now - v.not_before.timestamp();
    assert!((3500..=3700).contains(&backdated), "backdated {backdated}s");
    assert!(v.not_after.timestamp() - v.not_before.timestamp() <= 30 * 86_400);
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth);
}

#[test]
fn leaf_for_an_ip_keeps_it_out_of_the_cn() {
    let (_d, home) = home();
    let (ca, _) = Ca::load_or_create(&home).unwrap();
    let leaf = ca.mint(&Host::Ip("127.0.0.1".parse().unwrap())).unwrap();
    let cert = parse(&leaf.chain[0]);
    assert_eq!(sans(&cert), vec!["ip:[127, 0, 0, 1]"]);
    assert_eq!(cert.subject().iter_common_name().count(), 0);
}

#[test]
fn leaves_have_own_keys_and_unique_serials() {
    let (_d, home) = home();
    let (ca, _) = Ca::load_or_create(&home).unwrap();
    let ca_spki = parse(ca.cert_der()).public_key().raw.to_vec();
    let host = Host::Name("example.com".into());
    let mut serials = std::collections::HashSet::new();
    let mut keys = std::collections::HashSet::new();
    for _ in 0..20 {
        let leaf = ca.mint(&host).unwrap();
        let cert = parse(&leaf.chain[0]);
        assert!(
            serials.insert(cert.raw_serial().to_vec()),
            "duplicate serial"
        );
        let spki = cert.public_key().raw.to_vec();
        assert_ne!(spki, ca_spki, "a leaf must never reuse the CA key");
        assert!(keys.insert(spki), "duplicate leaf key");
        let has_aki = cert.extensions().iter().any(|e| {
            matches!(
                e.parsed_extension(),
                ParsedExtension::AuthorityKeyIdentifier(_)
            )
        });
        assert!(has_aki);
    }
}

#[test]
fn bundle_has_ca_and_system_roots_but_no_stale_keygate_ca() {
    let (_d, home) = home();
    let (_d2, old_home) = self::home();
    let (ca, _) = Ca::load_or_create(&home).unwrap();
    let (old, _) = Ca::load_or_create(&old_home).unwrap();
    let (other_ca, _) = {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        (params.self_signed(&key).unwrap(), key)
    };
    let roots = vec![old.cert_der().clone(), other_ca.der().clone()];
    let text = bundle_pem(&ca, &roots);
    let ders: Vec<Vec<u8>> = pem::parse_many(&text)
        .unwrap()
        .into_iter()
        .map(|p| p.into_contents())
        .collect();
    assert_eq!(ders, vec![ca.cert_der().to_vec(), other_ca.der().to_vec()]);
}

#[test]
fn write_bundle_is_idempotent() {
    let (_d, home) = home();
    let (ca, _) = Ca::load_or_create(&home).unwrap();
    assert_eq!(write_bundle(&home, &ca).unwrap(), BundleStatus::Written);
    assert_eq!(write_bundle(&home, &ca).unwrap(), BundleStatus::Fresh);
    let text = fs::read_to_string(home.bundle()).unwrap();
    assert!(text.starts_with("# keygate CA\n-----BEGIN CERTIFICATE-----"));
}
