//! The grant each minted secret's token cache mints with, built from the secret's real
//! material; a refresh-token grant's rotation written back to the keyring; a `google`
//! secret's phantom account.

use std::sync::Arc;

use zeroize::Zeroizing;

use super::{CredentialEnv, PhantomAccount};
use crate::credentials::key::SigningKey;
use crate::credentials::mint::{
    ClientAuth, ClientCredentials, GitHubApp, GoogleServiceAccount, Grant, RefreshToken, TokenCache,
};
use crate::secrets::kind::{ClientAuthName, GOOGLE_DEFAULT_SCOPE, GrantName, Kind, Oauth2};
use crate::secrets::{Binding, SecretValue};

/// The grant that mints `binding`'s tokens from its real material.
pub(super) fn grant(binding: &Binding, real: &SecretValue) -> Result<Grant, String> {
    let name = &binding.name;
    match &binding.kind {
        Kind::Oauth2(o) => oauth2_grant(name, o, real),
        Kind::GithubApp(app) => {
            let pem = private_key_pem(real.expose());
            let key = SigningKey::from_pem(&pem).map_err(|e| {
                format!("secret `{name}`: the GitHub App private key in the keyring: {e}; store the App's .pem again with `keygate secret add {name} --from-file KEY.pem`")
            })?;
            GitHubApp::new(
                &app.api_url.to_string(),
                app.app_id.clone(),
                app.installation_id,
                Arc::new(key),
            )
            .map(Grant::GitHubApp)
            .map_err(|e| format!("secret `{name}`: {e}"))
        }
        Kind::Google(google) => {
            let scopes = if google.scopes.is_empty() {
                vec![GOOGLE_DEFAULT_SCOPE.to_string()]
            } else {
                google.scopes.clone()
            };
            GoogleServiceAccount::from_json(real.expose(), scopes)
                .map(Grant::GoogleServiceAccount)
                .map_err(|e| format!("secret `{name}`: the service-account JSON in the keyring: {e}; store the key file again with `keygate secret add {name} --from-file KEY.json`"))
        }
        Kind::Static | Kind::Aws(_) => Err(format!("secret `{name}` is not a minted kind")),
    }
}

/// A PEM as stored: as is, or inside `{"private_key": "…"}` (one line, as the keyring
/// takes it).
fn private_key_pem(stored: &str) -> Zeroizing<String> {
    if stored.trim_start().starts_with('{')
        && let Ok(serde_json::Value::Object(mut map)) = serde_json::from_str(stored)
        && let Some(serde_json::Value::String(pem)) = map.remove("private_key")
    {
        return Zeroizing::new(pem);
    }
    Zeroizing::new(stored.replace("\\n", "\n"))
}

/// A stored refresh token: bare, or `{"refresh_token", "client_secret"}`.
struct StoredRefresh {
    refresh_token: SecretValue,
    client_secret: Option<SecretValue>,
    json: bool,
}

fn stored_refresh(name: &str, stored: &SecretValue) -> Result<StoredRefresh, String> {
    let text = stored.expose();
    if !text.trim_start().starts_with('{') {
        return Ok(StoredRefresh {
            refresh_token: stored.clone(),
            client_secret: None,
            json: false,
        });
    }
    let bad = || {
        format!(
            "secret `{name}`: the keyring value is neither a refresh token nor JSON with refresh_token (and client_secret)"
        )
    };
    let mut map: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(text).map_err(|_| bad())?;
    let mut take = |key: &str| match map.remove(key) {
        Some(serde_json::Value::String(v)) => SecretValue::new(v).ok(),
        _ => None,
    };
    Ok(StoredRefresh {
        refresh_token: take("refresh_token").ok_or_else(bad)?,
        client_secret: take("client_secret"),
        json: true,
    })
}

fn oauth2_grant(name: &str, o: &Oauth2, real: &SecretValue) -> Result<Grant, String> {
    let scope = (!o.scopes.is_empty()).then(|| o.scopes.join(" "));
    let auth = match o.client_auth {
        ClientAuthName::Basic => ClientAuth::Basic,
        ClientAuthName::Post => ClientAuth::Post,
    };
    match o.grant {
        GrantName::ClientCredentials => {
            let mut grant =
                ClientCredentials::new(o.token_url.clone(), o.client_id.clone(), real.clone());
            grant.scope = scope;
            grant.auth = auth;
            Ok(Grant::ClientCredentials(grant))
        }
        GrantName::RefreshToken => {
            let stored = stored_refresh(name, real)?;
            let mut grant = RefreshToken::new(
                o.token_url.clone(),
                o.client_id.clone(),
                stored.client_secret,
                stored.refresh_token,
            );
            grant.scope = scope;
            grant.auth = auth;
            Ok(Grant::RefreshToken(grant))
        }
    }
}

/// The cache for `binding`; a refresh-token grant writes each rotated token back to the
/// keyring, in the form it was stored in.
pub(super) fn cache_for(binding: &Binding, grant: Grant, env: &CredentialEnv) -> TokenCache {
    let cache = TokenCache::new(grant);
    let (Kind::Oauth2(o), Some(store), Some(real)) = (&binding.kind, &env.store, &binding.real)
    else {
        return cache;
    };
    if o.grant != GrantName::RefreshToken {
        return cache;
    }
    let name = binding.name.clone();
    let store = store.clone();
    let json_secret = match stored_refresh(&name, real) {
        Ok(s) if s.json => Some(s.client_secret),
        _ => None,
    };
    cache.on_rotation(Box::new(move |rotated: SecretValue| {
        let value = match &json_secret {
            None => rotated,
            Some(secret) => {
                let mut map = serde_json::Map::new();
                map.insert("refresh_token".into(), rotated.expose().into());
                if let Some(secret) = secret {
                    map.insert("client_secret".into(), secret.expose().into());
                }
                let text = Zeroizing::new(serde_json::Value::Object(map).to_string());
                match SecretValue::new(text.to_string()) {
                    Ok(v) => v,
                    Err(_) => return,
                }
            }
        };
        let (store, name) = (store.clone(), name.clone());
        let write = move || match store.set(&name, &value) {
            Ok(()) => tracing::info!(secret = %name, "stored the rotated refresh token in the keyring"),
            Err(e) => tracing::error!(secret = %name, "cannot store the rotated refresh token: {e}; keygate uses it until it stops, then `keygate secret add {name}` is needed"),
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => drop(handle.spawn_blocking(write)),
            Err(_) => write(),
        }
    }))
}

/// The phantom account in `$KEYGATE_HOME/phantoms/NAME.json`.
pub(super) fn phantom_account(
    binding: &Binding,
    env: &CredentialEnv,
) -> Result<PhantomAccount, String> {
    let name = &binding.name;
    let dir = env.phantoms.as_ref().ok_or_else(|| {
        format!("secret `{name}`: keygate was started without a home for phantom files")
    })?;
    let path = dir.join(format!("{name}.json"));
    let text = Zeroizing::new(std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "secret `{name}`: cannot read its phantom service account {}: {e}; run `keygate secret add {name}` again to make one",
            path.display()
        )
    })?);
    let account = GoogleServiceAccount::from_json(&text, Vec::new()).map_err(|e| {
        format!(
            "secret `{name}`: the phantom service account {}: {e}",
            path.display()
        )
    })?;
    let key = account
        .key
        .verifying_key()
        .map_err(|e| format!("secret `{name}`: the phantom key: {e}"))?;
    Ok(PhantomAccount {
        key,
        client_email: account.client_email,
        token_uri: account.token_uri,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_pem_is_read_bare_escaped_or_in_json() {
        let pem = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert_eq!(&*private_key_pem(pem), pem);
        assert_eq!(&*private_key_pem(&pem.replace('\n', "\\n")), pem);
        let json = serde_json::json!({ "private_key": pem }).to_string();
        assert_eq!(&*private_key_pem(&json), pem);
    }

    #[test]
    fn a_refresh_token_is_bare_or_json_and_errors_quote_nothing() {
        let bare = SecretValue::new("rt-secret-1".into()).unwrap();
        let s = stored_refresh("x", &bare).unwrap();
        assert!(!s.json && s.client_secret.is_none());
        assert_eq!(s.refresh_token.expose(), "rt-secret-1");
        let json =
            SecretValue::new(r#"{"refresh_token":"rt-2","client_secret":"cs-2"}"#.into()).unwrap();
        let s = stored_refresh("x", &json).unwrap();
        assert!(s.json);
        assert_eq!(s.client_secret.unwrap().expose(), "cs-2");
        let broken = SecretValue::new(r#"{"nope":"rt-secret-3"}"#.into()).unwrap();
        let err = stored_refresh("x", &broken).err().unwrap();
        assert!(!err.contains("rt-secret-3"), "{err}");
    }
}
