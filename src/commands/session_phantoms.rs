//! A jailed session's own phantom service accounts (SPEC §10: "per-session phantom
//! dummies"; issue 15: "in a jailed run the phantoms are the session's own"). Each
//! `google` secret gets a phantom service-account file made for this session, with a key
//! generated for it, in the session directory (the jail hides `$KEYGATE_HOME`); the
//! session's proxy checks the agent's JWTs against that key only. So the home's phantom
//! file (`keygate env`, `keygate start`) is refused on the session's socket, and the
//! session's key, gone with the session directory, is worth nothing anywhere else.

use std::path::Path;

use anyhow::Context;
use keygate::credentials::key::SigningKey;
use keygate::credentials::mint::google::phantom_json;
use keygate::home;
use keygate::secrets::kind::Kind;
use keygate::secrets::{SecretSet, dummy};

use super::Failure;

/// Writes `dir/NAME.json` (owner-only) for each `google` secret of `secrets` that has its
/// real service account. One without (no keyring value) gets none: the proxy refuses its
/// token exchange with the reason.
pub fn make(secrets: &SecretSet, dir: &Path) -> Result<(), Failure> {
    let google: Vec<_> = secrets
        .iter()
        .filter(|b| matches!(b.kind, Kind::Google(_)))
        .collect();
    if google.is_empty() {
        return Ok(());
    }
    home::create_private_dir(dir).with_context(|| format!("creating {}", dir.display()))?;
    for binding in google {
        let Some(real) = &binding.real else {
            continue;
        };
        let key = SigningKey::generate_rsa2048()
            .map_err(|e| anyhow::anyhow!("a session phantom key for `{}`: {e}", binding.name))?;
        let key_id = dummy::expand("keygate{hex:32}", "").map_err(|e| anyhow::anyhow!(e))?;
        let file = match phantom_json(real.expose(), &key, &key_id) {
            Ok(file) => file,
            Err(e) => {
                // The proxy refuses this secret's exchange and says why (the same error).
                tracing::warn!(secret = %binding.name, "no session phantom account: {e}");
                continue;
            }
        };
        let path = dir.join(format!("{}.json", binding.name));
        home::write_atomic(&path, file.as_bytes(), home::FILE_MODE)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
