//! OAuth2 grants that post a form to a token endpoint: client credentials (RFC 6749 §4.4)
//! and refresh token (§6), with the client authenticated by HTTP Basic
//! (`client_secret_basic`, the default) or in the body (`client_secret_post`).

use std::time::SystemTime;

use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, StatusCode, Uri};
use zeroize::Zeroizing;

use super::error::{GrantKind, MintError, endpoint_name};
use super::response::{Answer, parse_token};
use super::{Minted, TokenRequest, form};
use crate::secrets::SecretValue;

/// How the client proves its identity to the token endpoint (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ClientAuth {
    /// `Authorization: Basic` with the form-encoded id and secret (`client_secret_basic`),
    /// which every server must support. The default.
    #[default]
    Basic,
    /// `client_id` and `client_secret` in the form body (`client_secret_post`).
    Post,
}

/// The client credentials grant: the client's own token, no user involved.
#[derive(Debug, Clone)]
pub struct ClientCredentials {
    /// The token endpoint.
    pub token_uri: Uri,
    /// The client id (not secret).
    pub client_id: String,
    /// The client secret.
    pub client_secret: SecretValue,
    /// The space-separated scopes to ask for; none when `None`.
    pub scope: Option<String>,
    /// Where the client credentials go. Default: HTTP Basic.
    pub auth: ClientAuth,
    /// Extra form parameters some providers require (Auth0's `audience`, for instance).
    pub extra: Vec<(String, String)>,
}

impl ClientCredentials {
    /// A grant with no scope, Basic authentication and no extra parameters.
    pub fn new(token_uri: Uri, client_id: String, client_secret: SecretValue) -> Self {
        ClientCredentials {
            token_uri,
            client_id,
            client_secret,
            scope: None,
            auth: ClientAuth::default(),
            extra: Vec::new(),
        }
    }

    /// `grant_type=client_credentials&scope=…` plus the client authentication.
    pub fn request(&self) -> Result<TokenRequest, MintError> {
        let mut fields = vec![("grant_type", "client_credentials")];
        if let Some(scope) = &self.scope {
            fields.push(("scope", scope));
        }
        fields.extend(self.extra.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let client = Client {
            id: &self.client_id,
            secret: Some(&self.client_secret),
            auth: self.auth,
        };
        client.request(&self.token_uri, fields, Vec::new())
    }

    /// The token in the endpoint's answer.
    pub fn parse(
        &self,
        request: &TokenRequest,
        status: StatusCode,
        body: &[u8],
        received_at: SystemTime,
    ) -> Result<Minted, MintError> {
        let answer = Answer {
            kind: GrantKind::ClientCredentials,
            request,
            status,
        };
        parse_token(&answer, body, received_at, None)
    }
}

/// The refresh token grant: a user's access, renewed with a long-lived refresh token. A
/// provider that rotates refresh tokens answers with a new one, reported in
/// [`Minted::rotated_refresh_token`].
#[derive(Debug, Clone)]
pub struct RefreshToken {
    /// The token endpoint.
    pub token_uri: Uri,
    /// The client id (not secret).
    pub client_id: String,
    /// The client secret; `None` for a public client, which sends its id in the body.
    pub client_secret: Option<SecretValue>,
    /// The refresh token.
    pub refresh_token: SecretValue,
    /// Narrower scopes to ask for; `None` keeps the original grant's.
    pub scope: Option<String>,
    /// Where the client credentials go. Default: HTTP Basic.
    pub auth: ClientAuth,
}

impl RefreshToken {
    /// A grant with no scope and Basic authentication (when there is a secret).
    pub fn new(
        token_uri: Uri,
        client_id: String,
        client_secret: Option<SecretValue>,
        refresh_token: SecretValue,
    ) -> Self {
        RefreshToken {
            token_uri,
            client_id,
            client_secret,
            refresh_token,
            scope: None,
            auth: ClientAuth::default(),
        }
    }

    /// `grant_type=refresh_token&refresh_token=…` plus the client authentication.
    pub fn request(&self) -> Result<TokenRequest, MintError> {
        let mut fields = vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", self.refresh_token.expose()),
        ];
        if let Some(scope) = &self.scope {
            fields.push(("scope", scope));
        }
        let client = Client {
            id: &self.client_id,
            secret: self.client_secret.as_ref(),
            auth: self.auth,
        };
        let sensitive = vec![
            Zeroizing::new(self.refresh_token.expose().to_owned()),
            form::encode(self.refresh_token.expose()),
        ];
        client.request(&self.token_uri, fields, sensitive)
    }

    /// The token in the endpoint's answer, and the rotated refresh token if any.
    pub fn parse(
        &self,
        request: &TokenRequest,
        status: StatusCode,
        body: &[u8],
        received_at: SystemTime,
    ) -> Result<Minted, MintError> {
        let answer = Answer {
            kind: GrantKind::RefreshToken,
            request,
            status,
        };
        parse_token(&answer, body, received_at, Some(&self.refresh_token))
    }
}

/// A client as it authenticates to the token endpoint.
struct Client<'a> {
    id: &'a str,
    secret: Option<&'a SecretValue>,
    auth: ClientAuth,
}

impl<'a> Client<'a> {
    /// The form POST of `fields` with this client's authentication added.
    fn request(
        &self,
        uri: &Uri,
        mut fields: Vec<(&'a str, &'a str)>,
        mut sensitive: Vec<Zeroizing<String>>,
    ) -> Result<TokenRequest, MintError> {
        let mut headers = form_headers();
        match (self.secret, self.auth) {
            (Some(secret), ClientAuth::Basic) => {
                let (value, credential) =
                    form::basic(self.id, secret.expose()).map_err(|_| MintError::Request {
                        endpoint: endpoint_name(uri),
                        problem: "the client id cannot go in an HTTP header".into(),
                    })?;
                // SECURITY: the client secret travels only in this header, marked sensitive
                // so HTTP/2 never adds it to a compression table.
                headers.insert(AUTHORIZATION, value);
                sensitive.push(credential);
            }
            (Some(secret), ClientAuth::Post) => {
                fields.push(("client_id", self.id));
                fields.push(("client_secret", secret.expose()));
            }
            (None, _) => fields.push(("client_id", self.id)),
        }
        if let Some(secret) = self.secret {
            sensitive.push(Zeroizing::new(secret.expose().to_owned()));
            sensitive.push(form::encode(secret.expose()));
        }
        Ok(TokenRequest {
            uri: uri.clone(),
            headers,
            body: form::zeroizing_bytes(form::body(&fields)),
            sensitive,
        })
    }
}

/// `Content-Type` of a form and `Accept: application/json` (GitHub's OAuth endpoint, for
/// one, answers form-encoded without it).
pub(crate) fn form_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
    headers
}

#[cfg(test)]
#[path = "oauth_tests.rs"]
mod tests;
