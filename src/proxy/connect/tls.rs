//! Leaves for intercepted connections: per-host server configs, each presenting a leaf
//! minted on demand for that host alone, cached in a bounded LRU.

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use lru::LruCache;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls_pki_types::PrivateKeyDer;

use crate::ca::{CaError, LeafIssuer};
use crate::policy::Host;
use crate::proxy::upstream::tls::provider;

/// How many hosts' leaf certificates are kept in memory.
pub const LEAF_CACHE_HOSTS: usize = 1024;
/// ALPN offered to clients of intercepted connections.
pub const CLIENT_ALPN: &[&[u8]] = &[b"h2", b"http/1.1"];

/// Server configs for intercepted hosts, one per host, minted on first use.
pub struct ServerConfigs {
    issuer: Arc<dyn LeafIssuer>,
    provider: Arc<CryptoProvider>,
    /// A std Mutex: held for a map lookup or insert, never while minting or awaiting.
    cache: Mutex<LruCache<Host, Arc<ServerConfig>>>,
    hits: std::sync::atomic::AtomicU64,
    misses: std::sync::atomic::AtomicU64,
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
            hits: Default::default(),
            misses: Default::default(),
        }
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        self.issuer.ca_pem()
    }

    /// Leaves served from the cache, and minted, so far.
    pub fn cache_stats(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.hits.load(Relaxed), self.misses.load(Relaxed))
    }

    /// The server config presenting a leaf for `host` (SAN = host only).
    pub fn for_host(&self, host: &Host) -> Result<Arc<ServerConfig>, CaError> {
        use std::sync::atomic::Ordering::Relaxed;
        if let Some(config) = self
            .cache
            .lock()
            .ok()
            .and_then(|mut c| c.get(host).cloned())
        {
            self.hits.fetch_add(1, Relaxed);
            return Ok(config);
        }
        self.misses.fetch_add(1, Relaxed);
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
