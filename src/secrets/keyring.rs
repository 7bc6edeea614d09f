//! The OS keyring backends (SPEC §2) behind [`SecretStore`], and how one is chosen.
//!
//! `KEYGATE_KEYRING` forces a backend. Otherwise: macOS `keychain`, Windows `windows`,
//! Linux/BSD `secret-service` when a D-Bus session answers, else `keyutils` (which does
//! not survive a reboot). Every error names the backend, the cause and the remedy.

use std::sync::Arc;

use keyring_core::{CredentialStore, Error as KeyringError};
use zeroize::Zeroize;

use super::store::{SERVICE, SecretStore, StoreError};
use super::value::SecretValue;

/// The environment variable that forces a backend.
pub const BACKEND_ENV: &str = "KEYGATE_KEYRING";

/// The backends keygate knows, by the names `KEYGATE_KEYRING` accepts.
pub const BACKENDS: &[&str] = &["secret-service", "keyutils", "keychain", "windows"];

/// What a command says, once, when it uses keyutils because no Secret Service answered
/// (the D-Bus details are logged at debug level only).
pub const FALLBACK_NOTICE: &str =
    "using the kernel keyring (no Secret Service on this session); secrets do not survive a reboot";

/// A keyring-core store under one of the names in [`BACKENDS`].
pub struct KeyringStore {
    backend: &'static str,
    store: Arc<CredentialStore>,
    /// True when this is keyutils chosen because no Secret Service answered.
    fell_back: bool,
}

impl std::fmt::Debug for KeyringStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyringStore")
            .field("backend", &self.backend)
            .field("fell_back", &self.fell_back)
            .finish()
    }
}

/// Opens the backend `forced` names (the value of `KEYGATE_KEYRING`), or picks one.
pub fn open(forced: Option<&str>) -> Result<KeyringStore, StoreError> {
    match forced.map(str::trim).filter(|s| !s.is_empty()) {
        Some(name) => open_named(name),
        None => open_default(),
    }
}

fn open_named(name: &str) -> Result<KeyringStore, StoreError> {
    match name {
        "secret-service" => secret_service(),
        "keyutils" => keyutils(),
        "keychain" => keychain(),
        "windows" => windows(),
        other => Err(StoreError {
            backend: "unknown",
            reason: format!("{BACKEND_ENV}={other} names no backend"),
            remedy: format!(
                "Use one of: {}, or unset {BACKEND_ENV}.",
                BACKENDS.join(", ")
            ),
        }),
    }
}

#[cfg(target_os = "macos")]
fn open_default() -> Result<KeyringStore, StoreError> {
    keychain()
}

#[cfg(windows)]
fn open_default() -> Result<KeyringStore, StoreError> {
    windows()
}

#[cfg(not(any(target_os = "macos", windows)))]
fn open_default() -> Result<KeyringStore, StoreError> {
    match secret_service() {
        Ok(store) => Ok(store),
        Err(e) => {
            // The usual case on a headless machine, not an error: the caller says so
            // once in words (FALLBACK_NOTICE); the D-Bus details are for -v.
            tracing::debug!("{e}; falling back to the keyutils kernel keyring");
            let mut store = keyutils()?;
            store.fell_back = true;
            Ok(store)
        }
    }
}

fn unavailable(backend: &'static str) -> StoreError {
    StoreError {
        backend,
        reason: "not available on this operating system".into(),
        remedy: format!("Unset {BACKEND_ENV} to use this system's keyring."),
    }
}

#[cfg(target_os = "linux")]
fn secret_service() -> Result<KeyringStore, StoreError> {
    let store = zbus_secret_service_keyring_store::Store::new().map_err(|e| StoreError {
        backend: "secret-service",
        reason: format!("no Secret Service answers on the D-Bus session bus ({})", describe(&e)),
        remedy: "Start a desktop session or gnome-keyring-daemon (and unlock it), or set KEYGATE_KEYRING=keyutils to use the kernel keyring.".into(),
    })?;
    Ok(KeyringStore {
        backend: "secret-service",
        store,
        fell_back: false,
    })
}

#[cfg(not(target_os = "linux"))]
fn secret_service() -> Result<KeyringStore, StoreError> {
    Err(unavailable("secret-service"))
}

#[cfg(target_os = "linux")]
fn keyutils() -> Result<KeyringStore, StoreError> {
    use linux_keyutils::{KeyRing, KeyRingIdentifier};
    let fail = |reason: String| {
        StoreError {
        backend: "keyutils",
        reason,
        remedy: "The kernel keyring may be blocked (containers often filter keyctl); run keygate on the host, or start a Secret Service (gnome-keyring) and unset KEYGATE_KEYRING.".into(),
    }
    };
    // keyutils stores need the process to have joined a session keyring, or writes
    // fail with AccessDenied.
    KeyRing::from_special_id(KeyRingIdentifier::Session, true)
        .map_err(|e| fail(format!("cannot join a session keyring: {e:?}")))?;
    let store = linux_keyutils_keyring_store::Store::new()
        .map_err(|e| fail(format!("cannot open the kernel keyring: {}", describe(&e))))?;
    Ok(KeyringStore {
        backend: "keyutils",
        store,
        fell_back: false,
    })
}

/// Drops this process's own session-keyring link to the key of secret `name`, so the
/// next read finds the current key through the persistent keyring. Each keygate process
/// joins a session keyring of its own, and a read links the key found into it: without
/// this, a long-running `keygate start` would keep reading a value that `keygate secret
/// add` has since replaced (it links the new key into the shared persistent keyring).
/// Reads happen at start and reload only, never per request.
#[cfg(target_os = "linux")]
fn forget_session_link(name: &str) {
    use linux_keyutils::{KeyRing, KeyRingIdentifier};
    // The description linux-keyutils-keyring-store gives an entry with its default
    // delimiters: "keyring:" + user + "@" + service.
    let description = format!("keyring:{name}@{SERVICE}");
    if let Ok(session) = KeyRing::from_special_id(KeyRingIdentifier::Session, false)
        && let Ok(key) = session.search(&description)
    {
        let _ = session.unlink_key(key);
    }
}

#[cfg(not(target_os = "linux"))]
fn keyutils() -> Result<KeyringStore, StoreError> {
    Err(unavailable("keyutils"))
}

#[cfg(target_os = "macos")]
fn keychain() -> Result<KeyringStore, StoreError> {
    let store = apple_native_keyring_store::keychain::Store::new().map_err(|e| StoreError {
        backend: "keychain",
        reason: describe(&e),
        remedy: "Unlock the login keychain (Keychain Access) and try again.".into(),
    })?;
    Ok(KeyringStore {
        backend: "keychain",
        store,
        fell_back: false,
    })
}

#[cfg(not(target_os = "macos"))]
fn keychain() -> Result<KeyringStore, StoreError> {
    Err(unavailable("keychain"))
}

#[cfg(windows)]
fn windows() -> Result<KeyringStore, StoreError> {
    let store = windows_native_keyring_store::Store::new().map_err(|e| StoreError {
        backend: "windows",
        reason: describe(&e),
        remedy: "Check that the Credential Manager service is running.".into(),
    })?;
    Ok(KeyringStore {
        backend: "windows",
        store,
        fell_back: false,
    })
}

#[cfg(not(windows))]
fn windows() -> Result<KeyringStore, StoreError> {
    Err(unavailable("windows"))
}

/// A keyring error in words, never including stored bytes (BadEncoding and
/// BadDataFormat carry the raw secret; their payload is never formatted).
fn describe(e: &KeyringError) -> String {
    match e {
        KeyringError::BadEncoding(_) => "the stored value is not valid UTF-8".into(),
        KeyringError::BadDataFormat(_, _) => {
            "the stored value is not in the expected format".into()
        }
        KeyringError::PlatformFailure(inner) => format!("platform failure: {inner}"),
        KeyringError::NoStorageAccess(inner) => format!("no access to the keyring: {inner}"),
        KeyringError::NoEntry => "no such entry".into(),
        KeyringError::BadStoreFormat(what) => format!("the keyring is malformed: {what}"),
        KeyringError::TooLong(attr, limit) => {
            format!("{attr} is longer than the backend's limit of {limit}")
        }
        KeyringError::Invalid(what, why) => format!("invalid {what}: {why}"),
        KeyringError::Ambiguous(entries) => {
            format!("{} entries match; remove the duplicates", entries.len())
        }
        KeyringError::NoDefaultStore => "no default store".into(),
        KeyringError::NotSupportedByStore(what) => format!("not supported: {what}"),
        _ => "unknown keyring error".into(),
    }
}

impl KeyringStore {
    /// True when this is the keyutils backend, chosen because no Secret Service answered
    /// (not forced with `KEYGATE_KEYRING`): commands then say [`FALLBACK_NOTICE`] once.
    pub fn fell_back(&self) -> bool {
        self.fell_back
    }

    fn error(&self, action: &str, name: &str, e: &KeyringError) -> StoreError {
        let remedy = match (self.backend, e) {
            ("secret-service", KeyringError::NoStorageAccess(_)) => {
                "Unlock your login keyring (log in to the desktop, or `gnome-keyring-daemon --unlock`), or set KEYGATE_KEYRING=keyutils."
            }
            (_, KeyringError::BadEncoding(_) | KeyringError::BadDataFormat(_, _)) => {
                "Store it again with `keygate secret add NAME`."
            }
            _ => {
                "Check that the keyring is running and unlocked; `keygate doctor` shows what is reachable."
            }
        };
        StoreError {
            backend: self.backend,
            reason: format!("cannot {action} secret `{name}`: {}", describe(e)),
            remedy: remedy.into(),
        }
    }

    fn entry(&self, name: &str) -> Result<keyring_core::Entry, StoreError> {
        self.store
            .build(SERVICE, name, None)
            .map_err(|e| self.error("address", name, &e))
    }
}

impl SecretStore for KeyringStore {
    fn backend(&self) -> &'static str {
        self.backend
    }

    fn get(&self, name: &str) -> Result<Option<SecretValue>, StoreError> {
        #[cfg(target_os = "linux")]
        if self.backend == "keyutils" {
            forget_session_link(name);
        }
        let mut bytes = match self.entry(name)?.get_secret() {
            Ok(bytes) => bytes,
            Err(KeyringError::NoEntry) => return Ok(None),
            Err(e) => return Err(self.error("read", name, &e)),
        };
        let text = String::from_utf8(std::mem::take(&mut bytes));
        bytes.zeroize();
        let text = text.map_err(|e| {
            let mut raw = e.into_bytes();
            raw.zeroize();
            self.error("read", name, &KeyringError::BadEncoding(Vec::new()))
        })?;
        SecretValue::new(text).map(Some).map_err(|e| StoreError {
            backend: self.backend,
            reason: format!("the stored value of `{name}` is unusable: {e}"),
            remedy: "Store it again with `keygate secret add NAME`.".into(),
        })
    }

    fn set(&self, name: &str, value: &SecretValue) -> Result<(), StoreError> {
        self.entry(name)?
            .set_secret(value.expose().as_bytes())
            .map_err(|e| self.error("store", name, &e))
    }

    fn delete(&self, name: &str) -> Result<bool, StoreError> {
        match self.entry(name)?.delete_credential() {
            Ok(()) => Ok(true),
            Err(KeyringError::NoEntry) => Ok(false),
            Err(e) => Err(self.error("delete", name, &e)),
        }
    }

    fn caveat(&self) -> Option<&'static str> {
        (self.backend == "keyutils")
            .then_some("keyutils keeps secrets in the kernel keyring: they do not survive a reboot")
    }
}
