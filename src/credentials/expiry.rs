//! `$KEYGATE_HOME/tokens.json`: when the current minted token of each secret expires, as
//! the running keygate last minted it, for `keygate secret list` (another process). Only
//! names and times: never a token. Written owner-only and atomically; a keygate that
//! mints for the same secret later overwrites that secret's line.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// One secret's line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expiry {
    /// When the token expires, RFC 3339 UTC.
    pub expires_at: String,
    /// When it was minted, RFC 3339 UTC.
    pub minted_at: String,
}

fn rfc3339(at: SystemTime) -> String {
    time::OffsetDateTime::from(at)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Every secret's line; empty when the file is missing or unreadable.
pub fn read(path: &Path) -> BTreeMap<String, Expiry> {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default()
}

/// Records that `name`'s current token expires at `expires_at`.
pub fn record(path: &Path, name: &str, expires_at: SystemTime) -> std::io::Result<()> {
    let mut all = read(path);
    all.insert(
        name.to_string(),
        Expiry {
            expires_at: rfc3339(expires_at),
            minted_at: rfc3339(SystemTime::now()),
        },
    );
    let text = serde_json::to_string_pretty(&all).map_err(std::io::Error::other)?;
    crate::home::write_atomic(path, text.as_bytes(), crate::home::FILE_MODE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn lines_are_kept_per_secret_and_the_file_is_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        assert!(read(&path).is_empty());
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_900_000_000);
        record(&path, "a", at).unwrap();
        record(&path, "b", at + Duration::from_secs(60)).unwrap();
        let all = read(&path);
        assert_eq!(all["a"].expires_at, "2030-03-17T17:46:40Z");
        assert_eq!(all["b"].expires_at, "2030-03-17T17:47:40Z");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
