//! Leaf certificates for intercepted hosts (SPEC §6): ECDSA P-256, a key of their own,
//! SAN = the CONNECT host only, random serial, backdated one hour, valid 30 days.

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType,
};
use rustls_pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use time::{Duration, OffsetDateTime};

use super::{BACKDATE, Ca, CaError, ORGANIZATION, random_serial};
use crate::policy::Host;

/// Total validity of a leaf, counted from its backdated start.
pub const LEAF_VALIDITY: Duration = Duration::days(30);

/// A freshly minted leaf: the chain to serve (leaf, then CA) and the leaf's own key.
pub struct LeafCert {
    /// Leaf certificate followed by the CA certificate.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key (PKCS#8); never the CA key.
    pub key: PrivatePkcs8KeyDer<'static>,
}

impl std::fmt::Debug for LeafCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeafCert")
            .field("chain_len", &self.chain.len())
            .finish_non_exhaustive()
    }
}

/// Something that mints leaf certificates; the proxy depends on this, not on [`Ca`].
pub trait LeafIssuer: Send + Sync {
    /// Mints a new leaf for `host` (no caching here; callers cache).
    fn mint(&self, host: &Host) -> Result<LeafCert, CaError>;
    /// The CA certificate, PEM (served at `http://keygate.test/ca.pem`).
    fn ca_pem(&self) -> &str;
}

fn leaf_params(host: &Host) -> Result<CertificateParams, CaError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, ORGANIZATION);
    match host {
        // An IP address goes in the SAN only, never in the CN.
        Host::Ip(ip) => params.subject_alt_names = vec![SanType::IpAddress(*ip)],
        Host::Name(name) => {
            dn.push(DnType::CommonName, name.as_str());
            params.subject_alt_names = vec![SanType::DnsName(name.clone().try_into()?)];
        }
    }
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.not_before = OffsetDateTime::now_utc() - BACKDATE;
    params.not_after = params.not_before + LEAF_VALIDITY;
    params.serial_number = Some(random_serial()?);
    Ok(params)
}

impl LeafIssuer for Ca {
    fn mint(&self, host: &Host) -> Result<LeafCert, CaError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let cert = leaf_params(host)?.signed_by(&key, &self.issuer)?;
        Ok(LeafCert {
            chain: vec![cert.der().clone(), self.cert_der.clone()],
            key: PrivatePkcs8KeyDer::from(key.serialize_der()),
        })
    }

    fn ca_pem(&self) -> &str {
        self.cert_pem()
    }
}
