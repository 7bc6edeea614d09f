//! A Google service account's token (RFC 7523 JWT bearer grant, as Google documents for
//! server-to-server OAuth): an RS256 JWT signed with the account's key, exchanged at its
//! `token_uri` for an access token.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{StatusCode, Uri};
use serde_json::{Map, Value, json};
use zeroize::{Zeroize as _, Zeroizing};

use super::error::{GrantKind, MintError, endpoint_name};
use super::oauth::form_headers;
use super::response::{Answer, parse_token};
use super::{Minted, TokenRequest, form};
use crate::credentials::jwt::{self, unix_seconds};
use crate::credentials::key::{KeyError, SigningKey};

/// Google's token endpoint, used when a key file names none.
pub const GOOGLE_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";

/// The grant type of RFC 7523 §2.1.
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// How long the signed assertion is valid: one hour, Google's maximum.
pub const ASSERTION_LIFETIME: Duration = Duration::from_secs(3600);

/// Why a service-account key file cannot be used. Never quotes the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceAccountError {
    /// Not a JSON object.
    #[error("the service-account key file is not a JSON object")]
    NotJson,
    /// `type` is something else (an `authorized_user` file holds a refresh token instead).
    #[error("the key file's type is not \"service_account\"")]
    NotServiceAccount,
    /// A required field is absent or not a string.
    #[error("the service-account key file has no {0}")]
    Missing(&'static str),
    /// `token_uri` is not a URL.
    #[error("the service-account key file's token_uri is not a URL")]
    TokenUri,
    /// `private_key` is not a usable RSA key.
    #[error("the service-account key file's private_key: {0}")]
    Key(#[from] KeyError),
}

/// A service account and the scopes its tokens carry.
#[derive(Debug, Clone)]
pub struct GoogleServiceAccount {
    /// `client_email`: the JWT's issuer.
    pub client_email: String,
    /// `private_key_id`: the JWT header's `kid`.
    pub private_key_id: Option<String>,
    /// The account's key (shared by grants for different scopes).
    pub key: Arc<SigningKey>,
    /// `token_uri`: where the JWT is exchanged, and its audience.
    pub token_uri: Uri,
    /// The OAuth scopes to ask for (joined with spaces in the `scope` claim).
    pub scopes: Vec<String>,
    /// A user to impersonate (domain-wide delegation, the `sub` claim); usually `None`.
    pub subject: Option<String>,
}

impl GoogleServiceAccount {
    /// Reads a service-account key file (the JSON the Cloud console downloads).
    pub fn from_json(json: &str, scopes: Vec<String>) -> Result<Self, ServiceAccountError> {
        let mut file = parse_key_file(json)?;
        let private_key = take_private_key(&mut file)?;
        let key = SigningKey::from_pem(&private_key)?;
        let text = |name: &'static str| match file.get(name) {
            Some(Value::String(text)) => Some(text.clone()),
            _ => None,
        };
        let token_uri = match text("token_uri") {
            Some(uri) => uri.parse().map_err(|_| ServiceAccountError::TokenUri)?,
            None => Uri::from_static(GOOGLE_TOKEN_URI),
        };
        Ok(GoogleServiceAccount {
            client_email: text("client_email")
                .ok_or(ServiceAccountError::Missing("client_email"))?,
            private_key_id: text("private_key_id"),
            key: Arc::new(key),
            token_uri,
            scopes,
            subject: None,
        })
    }

    /// The assertion's claims at `now`: `iss`, `scope`, `aud`, `iat`, `exp` (and `sub`).
    pub fn claims(&self, now: SystemTime) -> Value {
        let iat = unix_seconds(now);
        let mut claims = json!({
            "iss": self.client_email,
            "scope": self.scopes.join(" "),
            "aud": self.token_uri.to_string(),
            "iat": iat,
            "exp": iat + ASSERTION_LIFETIME.as_secs(),
        });
        if let Some(subject) = &self.subject {
            claims["sub"] = Value::String(subject.clone());
        }
        claims
    }

    /// `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<JWT>`.
    pub fn request(&self, now: SystemTime) -> Result<TokenRequest, MintError> {
        let assertion = jwt::sign(&self.key, self.private_key_id.as_deref(), &self.claims(now))
            .map_err(|source| MintError::Sign {
                endpoint: endpoint_name(&self.token_uri),
                source,
            })?;
        let body = form::body(&[("grant_type", JWT_BEARER_GRANT), ("assertion", &assertion)]);
        Ok(TokenRequest {
            uri: self.token_uri.clone(),
            headers: form_headers(),
            body: form::zeroizing_bytes(body),
            sensitive: vec![assertion],
        })
    }

    /// The token in Google's answer.
    pub fn parse(
        &self,
        request: &TokenRequest,
        status: StatusCode,
        body: &[u8],
        received_at: SystemTime,
    ) -> Result<Minted, MintError> {
        let answer = Answer {
            kind: GrantKind::GoogleServiceAccount,
            request,
            status,
        };
        parse_token(&answer, body, received_at, None)
    }
}

/// The key file handed to the agent: `real_json` with its `private_key` replaced by
/// `phantom`'s PKCS#8 PEM and `private_key_id` by `phantom_key_id`. Everything else
/// (client_email, project_id, token_uri) stays, so client libraries behave as with the
/// real file; the JWTs they sign verify only with the phantom's public key.
pub fn phantom_json(
    real_json: &str,
    phantom: &SigningKey,
    phantom_key_id: &str,
) -> Result<Zeroizing<String>, ServiceAccountError> {
    let mut file = parse_key_file(real_json)?;
    drop(take_private_key(&mut file)?);
    let pem = phantom.to_pkcs8_pem()?;
    file.insert("private_key".into(), Value::String(pem.to_string()));
    file.insert(
        "private_key_id".into(),
        Value::String(phantom_key_id.into()),
    );
    let text = serde_json::to_string_pretty(&file).map_err(|_| ServiceAccountError::NotJson);
    if let Some(Value::String(key)) = file.get_mut("private_key") {
        key.zeroize();
    }
    text.map(Zeroizing::new)
}

fn parse_key_file(json: &str) -> Result<Map<String, Value>, ServiceAccountError> {
    let file: Map<String, Value> =
        serde_json::from_str(json).map_err(|_| ServiceAccountError::NotJson)?;
    match file.get("type") {
        None => Ok(file),
        Some(Value::String(kind)) if kind == "service_account" => Ok(file),
        Some(_) => Err(ServiceAccountError::NotServiceAccount),
    }
}

/// Moves `private_key` out of the parsed file into a zeroizing string.
fn take_private_key(
    file: &mut Map<String, Value>,
) -> Result<Zeroizing<String>, ServiceAccountError> {
    match file.remove("private_key") {
        Some(Value::String(pem)) => Ok(Zeroizing::new(pem)),
        _ => Err(ServiceAccountError::Missing("private_key")),
    }
}

#[cfg(test)]
#[path = "google_tests.rs"]
mod tests;
