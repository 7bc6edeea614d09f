//! Where secret values live: the [`SecretStore`] trait, its errors, and an in-memory
//! store for unit tests (never what a user gets).

use std::collections::HashMap;
use std::sync::Mutex;

use super::SecretValue;

/// The keyring service name every keygate entry uses; the account is the secret name.
pub const SERVICE: &str = "keygate";
/// The account of keygate's own proxy credentials (`user:password`). Secret names start
/// with a letter or digit, so no secret can take this account.
pub const PROXY_AUTH_ACCOUNT: &str = "_proxy-auth";

/// A keyring backend failure. It names the backend, the cause and what to do, and
/// never contains a secret value.
#[derive(Debug, Clone, thiserror::Error)]
#[error("keyring backend {backend}: {reason}. {remedy}")]
pub struct StoreError {
    /// Backend name, e.g. `secret-service`.
    pub backend: &'static str,
    /// What failed.
    pub reason: String,
    /// What the user can do about it.
    pub remedy: String,
}

/// A store of secret values keyed by secret name.
pub trait SecretStore: Send + Sync {
    /// The backend name (`secret-service`, `keyutils`, `keychain`, `windows`, `memory`).
    fn backend(&self) -> &'static str;
    /// Reads a value; `Ok(None)` when no entry exists.
    fn get(&self, name: &str) -> Result<Option<SecretValue>, StoreError>;
    /// Creates or replaces a value.
    fn set(&self, name: &str, value: &SecretValue) -> Result<(), StoreError>;
    /// Deletes a value; `Ok(false)` when there was none.
    fn delete(&self, name: &str) -> Result<bool, StoreError>;
    /// A caveat the user should know about this backend (e.g. not surviving a reboot).
    fn caveat(&self) -> Option<&'static str> {
        None
    }
}

/// An in-memory store for unit tests. A std Mutex: held only for a map operation.
#[derive(Debug, Default)]
pub struct MemoryStore {
    values: Mutex<HashMap<String, SecretValue>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn poisoned() -> StoreError {
        StoreError {
            backend: "memory",
            reason: "lock poisoned".into(),
            remedy: "restart keygate".into(),
        }
    }
}

impl SecretStore for MemoryStore {
    fn backend(&self) -> &'static str {
        "memory"
    }
    fn get(&self, name: &str) -> Result<Option<SecretValue>, StoreError> {
        let values = self.values.lock().map_err(|_| MemoryStore::poisoned())?;
        Ok(values.get(name).cloned())
    }
    fn set(&self, name: &str, value: &SecretValue) -> Result<(), StoreError> {
        let mut values = self.values.lock().map_err(|_| MemoryStore::poisoned())?;
        values.insert(name.to_string(), value.clone());
        Ok(())
    }
    fn delete(&self, name: &str) -> Result<bool, StoreError> {
        let mut values = self.values.lock().map_err(|_| MemoryStore::poisoned())?;
        Ok(values.remove(name).is_some())
    }
}
