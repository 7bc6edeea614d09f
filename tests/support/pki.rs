//! A test PKI minted with rcgen: a root CA of its own (never keygate's) and leaf
//! certificates for the fake upstreams (also an expired one), so a client can verify an
//! upstream's own certificate through a keygate tunnel.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A root CA for one test.
pub struct TestPki {
    root_der: CertificateDer<'static>,
    root_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl TestPki {
    /// Mints a fresh root (ECDSA P-256).
    pub fn new() -> TestPki {
        TestPki::named("keygate integration-test root")
    }

    /// Mints a fresh root whose subject's common name is `cn`.
    pub fn named(cn: &str) -> TestPki {
        let key = KeyPair::generate().expect("root key");
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        dn.push(DnType::OrganizationName, "keygate tests");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).expect("self-signed root");
        TestPki {
            root_der: cert.der().clone(),
            root_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// The root certificate (DER).
    pub fn root_der(&self) -> CertificateDer<'static> {
        self.root_der.clone()
    }

    /// Writes the root certificate to `dir/testroot.pem` (for curl's `--cacert`).
    pub fn write_root(&self, dir: &Path) -> PathBuf {
        let path = dir.join("testroot.pem");
        std::fs::write(&path, &self.root_pem).expect("write test root");
        path
    }

    /// A server configuration presenting a leaf for `names` (DNS names or IP literals,
    /// all in the SAN), issued by this root.
    pub fn server_config(&self, names: &[&str]) -> Arc<ServerConfig> {
        self.leaf_config(names, false)
    }

    /// [`TestPki::server_config`] with a leaf that expired long ago (valid through 2020
    /// only), otherwise correct: right names, right issuer.
    pub fn expired_server_config(&self, names: &[&str]) -> Arc<ServerConfig> {
        self.leaf_config(names, true)
    }

    /// Writes a leaf for `names` (chain: leaf then root) and its key as PEM files in
    /// `dir`, for a server that is not rustls (a Python fake). Returns (chain, key).
    pub fn write_leaf(&self, dir: &Path, names: &[&str]) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().expect("leaf key");
        let sans: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(sans).expect("leaf params");
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "keygate test upstream");
        params.distinguished_name = dn;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let leaf = params.signed_by(&key, &self.issuer).expect("leaf");
        let chain = dir.join("leaf-chain.pem");
        let key_path = dir.join("leaf-key.pem");
        std::fs::write(&chain, format!("{}{}", leaf.pem(), self.root_pem)).expect("write leaf");
        std::fs::write(&key_path, key.serialize_pem()).expect("write leaf key");
        (chain, key_path)
    }

    fn leaf_config(&self, names: &[&str], expired: bool) -> Arc<ServerConfig> {
        let key = KeyPair::generate().expect("leaf key");
        let sans: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(sans).expect("leaf params");
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "keygate test upstream");
        params.distinguished_name = dn;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let leaf = params.signed_by(&key, &self.issuer).expect("leaf");
        let chain = vec![leaf.der().clone(), self.root_der.clone()];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let config = ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("server config");
        Arc::new(config)
    }

    /// A client configuration that trusts this root only (and speaks HTTP/1.1).
    pub fn client_config(&self) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.root_der.clone()).expect("add test root");
        let mut config = ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }
}
