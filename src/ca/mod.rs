//! The local certificate authority (SPEC §6): created once, loaded at start, used to mint
//! leaf certificates for intercepted hosts, and published in `ca/bundle.pem`.
//!
//! The CA is ECDSA P-256, pathlen 0, valid 10 years, subject "keygate CA". Its key is
//! written with mode 0600 at creation and never overwritten without `--force`.

mod bundle;
mod leaf;
mod refusal;
mod session;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SerialNumber,
};
use rustls_pki_types::CertificateDer;
use time::{Duration, OffsetDateTime};

pub use bundle::{BundleStatus, bundle_pem, write_bundle};
pub use leaf::{LeafCert, LeafIssuer};
pub use refusal::{REFUSAL_CA_COMMON_NAME, RefusalIssuer};
pub use session::{
    NOTHING_DNS, Permit, SESSION_CA_COMMON_NAME, SESSION_CA_VALIDITY, normalize_permits,
};

use crate::home::{self, Home};

/// How long the CA is valid.
const CA_VALIDITY: Duration = Duration::days(3650);
/// Certificates are backdated this much to tolerate clock skew.
const BACKDATE: Duration = Duration::hours(1);
/// Common name of the CA; also how bundle building recognises an old keygate CA.
pub const CA_COMMON_NAME: &str = "keygate CA";
/// Organisation of the CA and of every leaf.
pub const ORGANIZATION: &str = "keygate";

/// Errors creating, loading or using the CA. Messages name the file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// The CA files are missing.
    #[error("no CA in {0}: run `keygate ca init` (or `keygate start`, which creates it)")]
    Missing(PathBuf),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A file does not hold what it should.
    #[error("{path}: {what}; rotate the CA with `keygate ca init --force`")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        what: String,
    },
    /// The key file can be read by other users.
    #[error(
        "{0}: the CA private key is readable by other users; fix it with `chmod 600 {0}` (or rotate it with `keygate ca init --force`)"
    )]
    KeyPermissions(PathBuf),
    /// Certificate generation failed.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CaError + '_ {
    move |source| CaError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What `keygate ca init` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitOutcome {
    /// A CA was already there and was kept.
    Kept,
    /// A new CA was created.
    Created,
    /// The CA was replaced (`--force`).
    Rotated,
}

/// A loaded CA: its certificate and the issuer (with key) that signs leaves.
pub struct Ca {
    cert_der: CertificateDer<'static>,
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").finish_non_exhaustive()
    }
}

/// A random, positive, 16-byte certificate serial number.
pub(crate) fn random_serial() -> Result<SerialNumber, CaError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| CaError::Io {
        path: PathBuf::from("<random>"),
        source: io::Error::other(e.to_string()),
    })?;
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    Ok(SerialNumber::from_slice(&bytes))
}

fn ca_params() -> Result<CertificateParams, CaError> {
    let now = OffsetDateTime::now_utc();
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_COMMON_NAME);
    dn.push(DnType::OrganizationName, ORGANIZATION);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = now - BACKDATE;
    params.not_after = now + CA_VALIDITY;
    params.serial_number = Some(random_serial()?);
    Ok(params)
}

impl Ca {
    /// Creates the CA unless one exists; `force` replaces an existing one.
    pub fn init(home: &Home, force: bool) -> Result<InitOutcome, CaError> {
        let exists = home.ca_key().exists() || home.ca_cert().exists();
        if exists && !force {
            Ca::load(home)?;
            return Ok(InitOutcome::Kept);
        }
        Ca::create(home)?;
        Ok(if exists {
            InitOutcome::Rotated
        } else {
            InitOutcome::Created
        })
    }

    /// Loads the CA, creating it first if there is none. Returns whether it was created.
    pub fn load_or_create(home: &Home) -> Result<(Ca, bool), CaError> {
        match Ca::load(home) {
            Err(CaError::Missing(_)) => Ok((Ca::create(home)?, true)),
            other => other.map(|ca| (ca, false)),
        }
    }

    /// Generates a new CA and writes key (0600) then certificate, each atomically.
    fn create(home: &Home) -> Result<Ca, CaError> {
        home.ensure_dirs().map_err(io_err(home.root()))?;
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let params = ca_params()?;
        let cert = params.self_signed(&key)?;
        let key_path = home.ca_key();
        home::write_atomic(&key_path, key.serialize_pem().as_bytes(), home::FILE_MODE)
            .map_err(io_err(&key_path))?;
        let cert_path = home.ca_cert();
        home::write_atomic(&cert_path, cert.pem().as_bytes(), home::PUBLIC_FILE_MODE)
            .map_err(io_err(&cert_path))?;
        Ok(Ca {
            cert_der: cert.der().clone(),
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// Loads the CA from `ca/`, refusing a key readable by others or a key that does not
    /// belong to the certificate.
    pub fn load(home: &Home) -> Result<Ca, CaError> {
        let (cert_path, key_path) = (home.ca_cert(), home.ca_key());
        if !cert_path.exists() && !key_path.exists() {
            return Err(CaError::Missing(home.ca_dir()));
        }
        let cert_pem = fs::read_to_string(&cert_path).map_err(io_err(&cert_path))?;
        if home::group_or_other_bits(&key_path).map_err(io_err(&key_path))? != 0 {
            return Err(CaError::KeyPermissions(key_path));
        }
        let key_pem = fs::read_to_string(&key_path).map_err(io_err(&key_path))?;
        let invalid = |path: &Path, what: &str| CaError::Invalid {
            path: path.to_path_buf(),
            what: what.to_string(),
        };
        let key = KeyPair::from_pem(&key_pem)
            .map_err(|_| invalid(&key_path, "not a PEM private key keygate can use"))?;
        let cert_der = pem::parse(&cert_pem)
            .ok()
            .filter(|p| p.tag() == "CERTIFICATE")
            .map(|p| CertificateDer::from(p.into_contents()))
            .ok_or_else(|| invalid(&cert_path, "not a PEM certificate"))?;
        let (_, x509) = x509_parser::parse_x509_certificate(&cert_der)
            .map_err(|_| invalid(&cert_path, "not a valid X.509 certificate"))?;
        if x509.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(invalid(
                &key_path,
                "this key does not belong to keygate-ca.pem",
            ));
        }
        let issuer = Issuer::from_ca_cert_der(&cert_der, key)
            .map_err(|_| invalid(&cert_path, "not a certificate keygate can sign with"))?;
        Ok(Ca {
            cert_der,
            cert_pem,
            issuer,
        })
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// The CA certificate, PEM (exactly the contents of `ca/keygate-ca.pem`).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }
}

#[cfg(test)]
mod tests;
