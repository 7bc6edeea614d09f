//! `ca/bundle.pem`: the roots keygate trusts for upstreams (the system store, which
//! honours SSL_CERT_FILE/SSL_CERT_DIR) plus the keygate CA, for tools that replace their
//! trust store instead of adding to it.

use std::fs;
use std::io;

use rustls_pki_types::CertificateDer;

use super::{CA_COMMON_NAME, Ca, CaError, ORGANIZATION};
use crate::home::{self, Home};

/// Whether [`write_bundle`] had to rewrite the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BundleStatus {
    /// The file already held exactly this content.
    Fresh,
    /// The file was missing or stale and was written.
    Written,
}

/// True for any keygate CA (this one or a rotated-away one). The system store may point
/// at an old bundle of ours (SSL_CERT_FILE=…/bundle.pem in a shell that ran `keygate env`),
/// and a stale keygate CA must never be re-trusted that way.
fn is_keygate_ca(der: &CertificateDer<'_>) -> bool {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return false;
    };
    let subject = cert.subject();
    let cn = subject
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok());
    let org = subject
        .iter_organization()
        .next()
        .and_then(|a| a.as_str().ok());
    cn == Some(CA_COMMON_NAME) && org == Some(ORGANIZATION)
}

fn to_pem(der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new("CERTIFICATE", der.to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// The bundle's text: the keygate CA first, then each system root (minus any keygate CA).
pub fn bundle_pem(ca: &Ca, system_roots: &[CertificateDer<'_>]) -> String {
    let mut out = String::from("# keygate CA\n");
    out.push_str(ca.cert_pem().trim_end());
    out.push('\n');
    for root in system_roots.iter().filter(|r| !is_keygate_ca(r)) {
        out.push_str(&to_pem(root));
    }
    out
}

/// Rewrites `ca/bundle.pem` when its content differs from the current CA + system roots.
pub fn write_bundle(home: &Home, ca: &Ca) -> Result<BundleStatus, CaError> {
    let roots = rustls_native_certs::load_native_certs();
    for error in &roots.errors {
        tracing::warn!("while reading the system trust store: {error}");
    }
    let text = bundle_pem(ca, &roots.certs);
    let path = home.bundle();
    match fs::read_to_string(&path) {
        Ok(existing) if existing == text => return Ok(BundleStatus::Fresh),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(source) => return Err(CaError::Io { path, source }),
    }
    home::write_atomic(&path, text.as_bytes(), home::PUBLIC_FILE_MODE)
        .map_err(|source| CaError::Io { path, source })?;
    Ok(BundleStatus::Written)
}
