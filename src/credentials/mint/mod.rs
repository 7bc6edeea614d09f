//! Short-lived tokens keygate mints with the real credential and injects on the agent's
//! behalf: the grants that ask a token endpoint for one, and the [`TokenCache`] that keeps
//! the current token for one secret.
//!
//! Nothing here does network I/O. The proxy implements [`Transport`] over its verified
//! upstream client; everything else is pure request building and response parsing (unit
//! tested with an in-memory transport) plus the cache's single-flight logic.
//!
//! * [`oauth`]: OAuth2 client credentials (RFC 6749 §4.4) and refresh token (§6) grants.
//! * [`google`]: a Google service account's JWT bearer grant (RFC 7523).
//! * [`github`]: a GitHub App installation token.
//! * [`response`]: the OAuth2 token response (RFC 6749 §5.1) and error response (§5.2).
//! * [`error`]: [`MintError`], which never carries a secret.
//! * [`cache`]: [`TokenCache`], one mint at a time, refreshed ahead of expiry.

use std::future::Future;
use std::pin::Pin;
use std::time::SystemTime;

use bytes::Bytes;
use http::{HeaderMap, StatusCode, Uri};
use zeroize::Zeroizing;

use crate::secrets::SecretValue;

pub mod cache;
pub mod error;
mod form;
pub mod github;
pub mod google;
pub mod oauth;
pub mod response;

pub use cache::TokenCache;
pub use error::MintError;
pub use github::GitHubApp;
pub use google::GoogleServiceAccount;
pub use oauth::{ClientAuth, ClientCredentials, RefreshToken};

#[cfg(test)]
mod fake;

/// A minted access token. `Debug` shows only when it expires; there is no `Display`.
pub struct Token {
    /// The bearer token, zeroized when the last holder drops it.
    pub value: Zeroizing<String>,
    /// When the provider stops accepting it, by this machine's clock.
    pub expires_at: SystemTime,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("value", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// What one successful mint produced.
#[derive(Debug)]
pub struct Minted {
    /// The new access token.
    pub token: Token,
    /// A refresh token the provider rotated in (refresh grant only): the old one may no
    /// longer work, so the caller must store this one (the [`TokenCache`] also uses it for
    /// its next refresh).
    pub rotated_refresh_token: Option<SecretValue>,
}

/// The future [`Transport::post`] returns.
pub type PostFuture<'a> =
    Pin<Box<dyn Future<Output = Result<(StatusCode, Bytes), String>> + Send + 'a>>;

/// The network, as the proxy provides it: one HTTPS POST over its verified upstream
/// client (`upstream.ca`, the platform verifier, `--resolve`).
///
/// Implementations should bound the response body (the grants refuse one over
/// [`response::MAX_RESPONSE_BYTES`]), apply a timeout, and return any status as `Ok`.
/// The `Err` string says what failed (DNS, connect, TLS, timeout) and must not quote the
/// request: headers and body carry credentials.
pub trait Transport: Send + Sync {
    /// Sends `body` to `url` with `headers` and returns the status and body.
    fn post(&self, url: &Uri, headers: HeaderMap, body: Bytes) -> PostFuture<'_>;
}

/// Where the cache and the grants read the time (a fake in tests).
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> SystemTime;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A token request, built by a grant and sent as is by a [`Transport`]. `Debug` shows the
/// URL, header names and body length only.
pub struct TokenRequest {
    /// The token endpoint.
    pub uri: Uri,
    /// Headers, credential-bearing ones marked sensitive.
    pub headers: HeaderMap,
    /// The body; its buffer is zeroized when the last clone is dropped.
    pub body: Bytes,
    /// Every credential the request carries, in every encoding it carries it in: a
    /// response quoting any of them is not repeated in an error.
    sensitive: Vec<Zeroizing<String>>,
}

impl TokenRequest {
    /// The credentials this request carries, for scrubbing what the endpoint says back.
    pub fn sensitive(&self) -> &[Zeroizing<String>] {
        &self.sensitive
    }
}

impl std::fmt::Debug for TokenRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenRequest")
            .field("uri", &error::endpoint_name(&self.uri))
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// One way of minting a token: which grant, with which (real) credentials.
#[derive(Debug, Clone)]
pub enum Grant {
    /// OAuth2 client credentials.
    ClientCredentials(ClientCredentials),
    /// OAuth2 refresh token.
    RefreshToken(RefreshToken),
    /// A Google service account's signed JWT.
    GoogleServiceAccount(GoogleServiceAccount),
    /// A GitHub App installation.
    GitHubApp(GitHubApp),
}

impl Grant {
    /// The token endpoint this grant posts to.
    pub fn endpoint(&self) -> &Uri {
        match self {
            Grant::ClientCredentials(g) => &g.token_uri,
            Grant::RefreshToken(g) => &g.token_uri,
            Grant::GoogleServiceAccount(g) => &g.token_uri,
            Grant::GitHubApp(g) => g.token_uri(),
        }
    }

    /// The request to send at `now`.
    pub fn request(&self, now: SystemTime) -> Result<TokenRequest, MintError> {
        match self {
            Grant::ClientCredentials(g) => g.request(),
            Grant::RefreshToken(g) => g.request(),
            Grant::GoogleServiceAccount(g) => g.request(now),
            Grant::GitHubApp(g) => g.request(now),
        }
    }

    /// The token in the endpoint's answer to `request`, received at `received_at`.
    pub fn parse(
        &self,
        request: &TokenRequest,
        status: StatusCode,
        body: &[u8],
        received_at: SystemTime,
    ) -> Result<Minted, MintError> {
        match self {
            Grant::ClientCredentials(g) => g.parse(request, status, body, received_at),
            Grant::RefreshToken(g) => g.parse(request, status, body, received_at),
            Grant::GoogleServiceAccount(g) => g.parse(request, status, body, received_at),
            Grant::GitHubApp(g) => g.parse(request, status, body, received_at),
        }
    }

    /// Mints a token through `transport`, by the system clock.
    pub async fn mint(&self, transport: &dyn Transport) -> Result<Minted, MintError> {
        self.mint_with_clock(transport, &SystemClock).await
    }

    /// Mints a token through `transport`: JWTs are dated by `clock` before sending, and
    /// `expires_in` counts from `clock` at receipt (never from the provider's clock).
    pub async fn mint_with_clock(
        &self,
        transport: &dyn Transport,
        clock: &dyn Clock,
    ) -> Result<Minted, MintError> {
        let request = self.request(clock.now())?;
        let answer = transport
            .post(&request.uri, request.headers.clone(), request.body.clone())
            .await;
        let (status, body) = answer.map_err(|reason| MintError::transport(&request, &reason))?;
        self.parse(&request, status, &body, clock.now())
    }

    /// Uses `refresh_token` from now on (after the provider rotated it). Other grants
    /// ignore it.
    pub fn use_refresh_token(&mut self, refresh_token: SecretValue) {
        if let Grant::RefreshToken(g) = self {
            g.refresh_token = refresh_token;
        }
    }
}

impl From<ClientCredentials> for Grant {
    fn from(grant: ClientCredentials) -> Grant {
        Grant::ClientCredentials(grant)
    }
}

impl From<RefreshToken> for Grant {
    fn from(grant: RefreshToken) -> Grant {
        Grant::RefreshToken(grant)
    }
}

impl From<GoogleServiceAccount> for Grant {
    fn from(grant: GoogleServiceAccount) -> Grant {
        Grant::GoogleServiceAccount(grant)
    }
}

impl From<GitHubApp> for Grant {
    fn from(grant: GitHubApp) -> Grant {
        Grant::GitHubApp(grant)
    }
}
