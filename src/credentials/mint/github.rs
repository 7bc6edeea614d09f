//! A GitHub App installation token: an RS256 JWT that proves the App, exchanged at
//! `POST {api}/app/installations/{id}/access_tokens` for a token (`ghs_…`) that lasts an
//! hour and can be narrowed to some repositories and permissions.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use zeroize::Zeroizing;

use super::error::{GrantKind, MintError, endpoint_name};
use super::response::{Answer, wipe};
use super::{Minted, Token, TokenRequest, form};
use crate::credentials::jwt::{self, unix_seconds};
use crate::credentials::key::SigningKey;

/// The public GitHub API; GitHub Enterprise Server uses `https://HOST/api/v3`.
pub const GITHUB_API: &str = "https://api.github.com";

/// The REST API version keygate speaks.
pub const GITHUB_API_VERSION: &str = "2022-11-28";

/// An installation token's documented lifetime. A later `expires_at` from GitHub (a clock
/// ahead of this machine's) is cut down to this.
pub const INSTALLATION_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// The App JWT is dated this far back, for clocks that run behind GitHub's.
const JWT_BACKDATE: u64 = 60;

/// The App JWT expires this long after now (GitHub allows at most ten minutes).
const JWT_LIFETIME: u64 = 540;

/// An App installation, and how far to narrow its tokens.
#[derive(Debug, Clone)]
pub struct GitHubApp {
    /// The App's id (`12345`) or client id (`Iv23…`): the JWT's issuer.
    pub app_id: String,
    /// The installation whose token is minted.
    pub installation_id: u64,
    /// The App's private key.
    pub key: Arc<SigningKey>,
    /// Repository names to narrow the token to; all of the installation's when empty.
    pub repositories: Vec<String>,
    /// Permissions to narrow the token to (`{"contents": "read"}`); all when empty.
    pub permissions: BTreeMap<String, String>,
    token_uri: Uri,
}

impl GitHubApp {
    /// An installation under `api` ([`GITHUB_API`] or a GitHub Enterprise `…/api/v3`).
    pub fn new(
        api: &str,
        app_id: String,
        installation_id: u64,
        key: Arc<SigningKey>,
    ) -> Result<GitHubApp, MintError> {
        let invalid = |problem: &str| MintError::Request {
            endpoint: api
                .chars()
                .filter(|c| c.is_ascii_graphic())
                .take(100)
                .collect(),
            problem: problem.into(),
        };
        if api.contains(['?', '#']) {
            return Err(invalid("the GitHub API URL has a query or fragment"));
        }
        let url = format!(
            "{}/app/installations/{installation_id}/access_tokens",
            api.trim_end_matches('/')
        );
        let token_uri: Uri = url.parse().map_err(|_| invalid("not a URL"))?;
        if token_uri.host().is_none() {
            return Err(invalid("the GitHub API URL has no host"));
        }
        Ok(GitHubApp {
            app_id,
            installation_id,
            key,
            repositories: Vec::new(),
            permissions: BTreeMap::new(),
            token_uri,
        })
    }

    /// `{api}/app/installations/{installation_id}/access_tokens`.
    pub fn token_uri(&self) -> &Uri {
        &self.token_uri
    }

    /// The App JWT's claims at `now`. A numeric app id is sent as a number, which GitHub
    /// Enterprise Server requires; a client id as a string.
    pub fn claims(&self, now: SystemTime) -> Value {
        let now = unix_seconds(now);
        let issuer = match self.app_id.parse::<u64>() {
            Ok(id) => json!(id),
            Err(_) => json!(self.app_id),
        };
        json!({
            "iat": now.saturating_sub(JWT_BACKDATE),
            "exp": now + JWT_LIFETIME,
            "iss": issuer,
        })
    }

    /// The POST with `Authorization: Bearer <App JWT>`, and a JSON body only when the
    /// token is narrowed.
    pub fn request(&self, now: SystemTime) -> Result<TokenRequest, MintError> {
        let endpoint = || endpoint_name(&self.token_uri);
        let app_jwt =
            jwt::sign(&self.key, None, &self.claims(now)).map_err(|source| MintError::Sign {
                endpoint: endpoint(),
                source,
            })?;
        let mut headers = HeaderMap::new();
        let bearer = Zeroizing::new(format!("Bearer {}", app_jwt.as_str()));
        let mut authorization = HeaderValue::from_str(&bearer).map_err(|_| MintError::Request {
            endpoint: endpoint(),
            problem: "the App JWT cannot go in a header".into(),
        })?;
        // SECURITY: the App JWT can mint tokens for every installation for ten minutes;
        // marked sensitive so HTTP/2 never adds it to a compression table.
        authorization.set_sensitive(true);
        headers.insert(AUTHORIZATION, authorization);
        headers.insert(
            ACCEPT,
            HeaderValue::from_static("application/vnd.github+json"),
        );
        headers.insert(USER_AGENT, HeaderValue::from_static("keygate"));
        headers.insert(
            HeaderName::from_static("x-github-api-version"),
            HeaderValue::from_static(GITHUB_API_VERSION),
        );
        let body = if self.repositories.is_empty() && self.permissions.is_empty() {
            Zeroizing::new(String::new())
        } else {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            let mut narrow = serde_json::Map::new();
            if !self.repositories.is_empty() {
                narrow.insert("repositories".into(), json!(self.repositories));
            }
            if !self.permissions.is_empty() {
                narrow.insert("permissions".into(), json!(self.permissions));
            }
            Zeroizing::new(Value::Object(narrow).to_string())
        };
        Ok(TokenRequest {
            uri: self.token_uri.clone(),
            headers,
            body: form::zeroizing_bytes(body),
            sensitive: vec![app_jwt],
        })
    }

    /// The token in GitHub's answer (`{"token": "ghs_…", "expires_at": "…Z"}`).
    pub fn parse(
        &self,
        request: &TokenRequest,
        status: StatusCode,
        body: &[u8],
        received_at: SystemTime,
    ) -> Result<Minted, MintError> {
        let answer = Answer {
            kind: GrantKind::GitHubApp,
            request,
            status,
        };
        let mut object = answer.object(body)?;
        let value = answer.token_field(&mut object, "token")?;
        let expires_at = match object.get("expires_at") {
            Some(Value::String(text)) => OffsetDateTime::parse(text, &Rfc3339)
                .map(SystemTime::from)
                .map_err(|_| answer.bad("expires_at is not an RFC 3339 time"))?,
            _ => return Err(answer.bad("the response has no expires_at")),
        };
        wipe(&mut object);
        let latest = received_at + INSTALLATION_TOKEN_LIFETIME;
        if expires_at <= received_at {
            return Err(MintError::BadResponse {
                endpoint: endpoint_name(&request.uri),
                status: status.as_u16(),
                problem: "the token's expires_at has already passed by this machine's clock".into(),
                advice: "check the system clock (GitHub's tokens last one hour)",
            });
        }
        Ok(Minted {
            token: Token {
                value,
                expires_at: expires_at.min(latest),
            },
            rotated_refresh_token: None,
        })
    }
}

#[cfg(test)]
#[path = "github_tests.rs"]
mod tests;
