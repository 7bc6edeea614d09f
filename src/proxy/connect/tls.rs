//! TLS configuration: per-host server configs for intercepted connections (leaves
//! minted on demand, cached in a bounded LRU) and the upstream client config (always
//! verified: rustls' WebPKI verifier with the system's roots plus `upstream.ca`).

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use lru::LruCache;
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::ca::{CaError, LeafIssuer};
use crate::policy::Host;

/// How many hosts' leaf certificates are kept in memory.
pub const LEAF_CACHE_HOSTS: usize = 1024;
/// ALPN offered to clients of intercepted connections.
pub const CLIENT_ALPN: &[&[u8]] = &[b"h2", b"http/1.1"];

/// The one crypto provider keygate uses (aws-lc-rs).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Errors setting up TLS.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// An `upstream.ca` file could not be used.
    #[error("upstream CA {path}: {what}")]
    ExtraRoot {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        what: String,
    },
    /// Neither the system nor `upstream.ca` gives a root certificate to verify against.
    #[error(
        "no trusted root certificates: install the system's CA certificates (Debian: ca-certificates) or set upstream.ca"
    )]
    NoRoots,
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Server configs for intercepted hosts, one per host, minted on first use.
pub struct ServerConfigs {
    issuer: Arc<dyn LeafIssuer>,
    provider: Arc<CryptoProvider>,
    /// A std Mutex: held for a map lookup or insert, never while minting or awaiting.
    cache: Mutex<LruCache<Host, Arc<ServerConfig>>>,
}

impl std::fmt::Debug for ServerConfigs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfigs").finish_non_exhaustive()
    }
}

impl ServerConfigs {
    /// A cache of at most `capacity` hosts.
    pub fn new(issuer: Arc<dyn LeafIssuer>, capacity: usize) -> ServerConfigs {
        let capacity = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        ServerConfigs {
            issuer,
            provider: provider(),
            cache: Mutex::new(LruCache::new(capacity)),
        }
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        self.issuer.ca_pem()
    }

    /// The server config presenting a leaf for `host` (SAN = host only).
    pub fn for_host(&self, host: &Host) -> Result<Arc<ServerConfig>, CaError> {
        if let Some(config) = self
            .cache
            .lock()
            .ok()
            .and_then(|mut c| c.get(host).cloned())
        {
            return Ok(config);
        }
        let leaf = self.issuer.mint(host)?;
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .and_then(|b| {
                b.with_no_client_auth()
                    .with_single_cert(leaf.chain, PrivateKeyDer::Pkcs8(leaf.key))
            })
            .map_err(|e| CaError::Invalid {
                path: PathBuf::from("<leaf>"),
                what: e.to_string(),
            })?;
        config.alpn_protocols = CLIENT_ALPN.iter().map(|p| p.to_vec()).collect();
        let config = Arc::new(config);
        if let Ok(mut cache) = self.cache.lock() {
            cache.put(host.clone(), config.clone());
        }
        Ok(config)
    }
}

/// Reads every certificate of the `upstream.ca` files.
pub fn load_extra_roots(paths: &[PathBuf]) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let mut roots = Vec::new();
    for path in paths {
        let fail = |what: String| TlsSetupError::ExtraRoot {
            path: path.clone(),
            what,
        };
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| fail(e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| fail(e.to_string()))?;
        if certs.is_empty() {
            return Err(fail("no PEM certificate in the file".into()));
        }
        roots.extend(certs);
    }
    Ok(roots)
}

/// The upstream client config: verified always, with `alpn` offered.
pub fn client_config(
    extra_roots: &[CertificateDer<'static>],
    alpn: &[&[u8]],
) -> Result<Arc<ClientConfig>, TlsSetupError> {
    let provider = provider();
    // The system's trust store plus `upstream.ca`, checked by rustls' WebPKI verifier
    // (chain, validity dates, the SNI name): the only verifier keygate ever installs.
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    roots.add_parsable_certificates(extra_roots.iter().cloned());
    if roots.is_empty() {
        return Err(TlsSetupError::NoRoots);
    }
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|e| TlsSetupError::Rustls(rustls::Error::General(e.to_string())))?;
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_webpki_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}
