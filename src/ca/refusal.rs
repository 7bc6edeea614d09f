//! The session's refusal CA (issue 13): a second in-memory CA of a jailed session that
//! signs nothing but refusal pages.
//!
//! The session CA may vouch only for the hosts the session intercepts, so it cannot
//! sign a leaf for a refused name. The refusal CA can, and nothing else: keygate uses it
//! only in [`crate::proxy::connect::refusal`], whose connections answer the refusal and
//! never reach an upstream; its key never leaves keygate's memory and dies with the
//! session.
//! Its certificate *excludes* the session's intercepted hosts (name constraints,
//! excluded subtrees), so even keygate could not use it to stand in for a host that
//! receives a secret. A refused name inside those hosts (a deny rule on a secret host)
//! gets its page leaf from the session CA instead: [`RefusalIssuer`] picks.

use std::sync::Arc;

use rcgen::{DistinguishedName, DnType, Issuer, KeyPair, NameConstraints, PKCS_ECDSA_P256_SHA256};
use time::Duration;

use super::session::normalize_permits;
use super::{BACKDATE, Ca, CaError, LeafCert, LeafIssuer, ORGANIZATION, Permit, ca_params};
use crate::policy::Host;

/// Common name of every session refusal CA.
pub const REFUSAL_CA_COMMON_NAME: &str = "keygate session refusal CA";

impl Ca {
    /// A fresh refusal CA, in memory only, that may vouch for any name except those
    /// `excluded` holds (the session CA's permits). Validity as for [`Ca::session`].
    pub fn refusal(excluded: &[Permit], validity: Duration) -> Result<Ca, CaError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = ca_params()?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, REFUSAL_CA_COMMON_NAME);
        dn.push(DnType::OrganizationName, ORGANIZATION);
        params.distinguished_name = dn;
        params.not_after = params.not_before + BACKDATE + validity;
        let excluded = normalize_permits(excluded.iter().cloned());
        if !excluded.is_empty() {
            params.name_constraints = Some(NameConstraints {
                permitted_subtrees: Vec::new(),
                excluded_subtrees: excluded.iter().map(Permit::subtree).collect(),
            });
        }
        let cert = params.self_signed(&key)?;
        Ok(Ca {
            cert_der: cert.der().clone(),
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }
}

/// Mints refusal-page leaves for a session: from the session CA for a name it may vouch
/// for, else from the refusal CA (which may vouch for every other name).
pub struct RefusalIssuer {
    session: Arc<Ca>,
    refusal: Ca,
    permits: Vec<Permit>,
}

impl std::fmt::Debug for RefusalIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefusalIssuer")
            .field("permits", &self.permits.len())
            .finish_non_exhaustive()
    }
}

impl RefusalIssuer {
    /// A refusal CA excluding `permits`, paired with the session CA that permits them.
    pub fn new(session: Arc<Ca>, permits: &[Permit], validity: Duration) -> Result<Self, CaError> {
        Ok(RefusalIssuer {
            refusal: Ca::refusal(permits, validity)?,
            session,
            permits: normalize_permits(permits.iter().cloned()),
        })
    }

    /// The refusal CA's certificate, PEM: the child trusts it beside the session CA.
    pub fn refusal_ca_pem(&self) -> &str {
        self.refusal.cert_pem()
    }
}

impl LeafIssuer for RefusalIssuer {
    fn mint(&self, host: &Host) -> Result<LeafCert, CaError> {
        match self.permits.iter().any(|p| p.covers(host)) {
            true => self.session.mint(host),
            false => self.refusal.mint(host),
        }
    }

    fn ca_pem(&self) -> &str {
        self.refusal.cert_pem()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rustls::client::WebPkiServerVerifier;
    use rustls::client::danger::ServerCertVerifier;
    use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
    use x509_parser::prelude::{FromDer, X509Certificate};

    use super::*;
    use crate::ca::SESSION_CA_VALIDITY;
    use crate::policy::HostPattern;

    fn permits(patterns: &[&str]) -> Vec<Permit> {
        patterns
            .iter()
            .flat_map(|p| Permit::from_pattern(&HostPattern::parse(p).unwrap()))
            .collect()
    }

    fn verifier(root: &CertificateDer<'static>) -> Arc<WebPkiServerVerifier> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(root.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .unwrap()
    }

    fn verify(v: &WebPkiServerVerifier, leaf: &LeafCert, name: &str) -> Result<(), String> {
        let server = ServerName::try_from(name.to_string()).unwrap();
        v.verify_server_cert(&leaf.chain[0], &[], &server, &[], UnixTime::now())
            .map(|_| ())
            .map_err(|e| format!("{e:?}"))
    }

    fn issuer_cn(der: &[u8]) -> String {
        let (_, cert) = X509Certificate::from_der(der).unwrap();
        cert.issuer().to_string()
    }

    #[test]
    fn the_refusal_ca_vouches_for_any_name_but_the_sessions_hosts() {
        let hosts = permits(&["api.anthropic.com", "keygate.test", "10.0.0.0/8"]);
        let refusal = Ca::refusal(&hosts, SESSION_CA_VALIDITY).unwrap();
        let v = verifier(refusal.cert_der());
        for ok in ["evil.example", "anthropic.com", "11.0.0.1"] {
            let leaf = refusal.mint(&Host::parse(ok).unwrap()).unwrap();
            assert!(verify(&v, &leaf, ok).is_ok(), "{ok}");
        }
        // Even keygate could not stand in for a host that receives a secret with it.
        for excluded in ["api.anthropic.com", "x.api.anthropic.com", "10.1.2.3"] {
            let leaf = refusal.mint(&Host::parse(excluded).unwrap()).unwrap();
            let err = verify(&v, &leaf, excluded).expect_err(excluded);
            assert!(err.contains("NameConstraint"), "{excluded}: {err}");
        }
        let (_, cert) = X509Certificate::from_der(refusal.cert_der()).unwrap();
        assert!(cert.is_ca());
        assert!(cert.subject().to_string().contains(REFUSAL_CA_COMMON_NAME));
    }

    #[test]
    fn the_issuer_signs_with_the_session_ca_inside_its_hosts_and_the_refusal_ca_outside() {
        let hosts = permits(&["api.anthropic.com"]);
        let session = Arc::new(Ca::session(&hosts, SESSION_CA_VALIDITY).unwrap());
        let issuer = RefusalIssuer::new(session.clone(), &hosts, SESSION_CA_VALIDITY).unwrap();
        let inside = issuer
            .mint(&Host::parse("api.anthropic.com").unwrap())
            .unwrap();
        assert!(issuer_cn(&inside.chain[0]).contains("keygate session CA"));
        assert!(verify(&verifier(session.cert_der()), &inside, "api.anthropic.com").is_ok());
        let outside = issuer.mint(&Host::parse("evil.example").unwrap()).unwrap();
        assert!(issuer_cn(&outside.chain[0]).contains(REFUSAL_CA_COMMON_NAME));
        assert_ne!(issuer.refusal_ca_pem(), session.cert_pem());
        assert_eq!(issuer.ca_pem(), issuer.refusal_ca_pem());
    }

    #[test]
    fn without_hosts_to_exclude_the_refusal_ca_has_no_constraints() {
        let refusal = Ca::refusal(&[], SESSION_CA_VALIDITY).unwrap();
        let (_, cert) = X509Certificate::from_der(refusal.cert_der()).unwrap();
        assert!(cert.name_constraints().unwrap().is_none());
    }
}
