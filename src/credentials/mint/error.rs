//! [`MintError`]: which endpoint, what it answered, and what to do — never a secret.
//!
//! A token endpoint's error body may quote what it was sent (a client secret, a refresh
//! token, a signed assertion). Only the OAuth `error` and `error_description` fields (and
//! GitHub's `message`) are ever copied, each shortened, and dropped entirely when it
//! shares any run of [`SCRUB_WINDOW`] characters with a credential the request carried.

use http::Uri;
use memchr::memmem;
use zeroize::Zeroizing;

use super::TokenRequest;
use crate::credentials::key::KeyError;

/// Longest provider text (an OAuth `error_description`) kept in an error, in characters.
pub const DETAIL_MAX: usize = 200;

/// Provider text sharing this many consecutive characters with a credential is dropped.
pub const SCRUB_WINDOW: usize = 8;

/// Provider text longer than this is dropped rather than scanned.
const DETAIL_SCAN_MAX: usize = 4096;

/// Which grant failed, for the advice in a [`MintError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantKind {
    /// OAuth2 client credentials.
    ClientCredentials,
    /// OAuth2 refresh token.
    RefreshToken,
    /// Google service account (JWT bearer).
    GoogleServiceAccount,
    /// GitHub App installation.
    GitHubApp,
}

/// Why no token was minted. Every variant names the endpoint (scheme, host and path: no
/// query, no user info); none holds a secret, token or assertion. All of them are upstream
/// failures as far as the agent is concerned (a 502 from the proxy).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MintError {
    /// The request could not be built (a key that cannot sign, a header-unsafe client id).
    #[error("cannot build the token request for {endpoint}: {problem}")]
    Request {
        /// The token endpoint.
        endpoint: String,
        /// What is wrong with the configuration.
        problem: String,
    },
    /// The key could not sign the JWT.
    #[error("cannot sign the JWT for {endpoint}: {source}")]
    Sign {
        /// The token endpoint.
        endpoint: String,
        /// Why signing failed.
        source: KeyError,
    },
    /// The endpoint could not be reached.
    #[error(
        "cannot reach the token endpoint {endpoint}: {reason}; check the network path to it (keygate tries again on the next request)"
    )]
    Transport {
        /// The token endpoint.
        endpoint: String,
        /// What the transport reported (scrubbed and shortened).
        reason: String,
    },
    /// The endpoint answered with an error.
    #[error("{endpoint} refused to issue a token (HTTP {status}{}); {advice}", detail(.error, .description))]
    Refused {
        /// The token endpoint.
        endpoint: String,
        /// The HTTP status.
        status: u16,
        /// The OAuth `error` code, scrubbed.
        error: Option<String>,
        /// The OAuth `error_description` (or GitHub's `message`), scrubbed and shortened.
        description: Option<String>,
        /// What to do about it.
        advice: &'static str,
    },
    /// The endpoint answered success with something that is not a usable token.
    #[error("{endpoint} answered HTTP {status} without a usable token: {problem}; {advice}")]
    BadResponse {
        /// The token endpoint.
        endpoint: String,
        /// The HTTP status.
        status: u16,
        /// What is wrong with the response.
        problem: String,
        /// What to do about it.
        advice: &'static str,
    },
}

impl MintError {
    /// A transport failure for `request`, its reason scrubbed of the request's credentials.
    pub(crate) fn transport(request: &TokenRequest, reason: &str) -> MintError {
        MintError::Transport {
            endpoint: endpoint_name(&request.uri),
            reason: scrub(reason, request.sensitive())
                .unwrap_or_else(|| "(reason withheld: it quoted a credential)".into()),
        }
    }

    /// The HTTP status the endpoint answered, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            MintError::Refused { status, .. } | MintError::BadResponse { status, .. } => {
                Some(*status)
            }
            _ => None,
        }
    }
}

fn detail(error: &Option<String>, description: &Option<String>) -> String {
    match (error, description) {
        (Some(e), Some(d)) => format!(": {e}: {d}"),
        (Some(text), None) | (None, Some(text)) => format!(": {text}"),
        (None, None) => String::new(),
    }
}

/// The endpoint as errors and logs show it: scheme, host, port and path.
pub fn endpoint_name(uri: &Uri) -> String {
    let scheme = uri.scheme_str().unwrap_or("https");
    let host = uri.host().unwrap_or("?");
    match uri.port_u16() {
        Some(port) => format!("{scheme}://{host}:{port}{}", uri.path()),
        None => format!("{scheme}://{host}{}", uri.path()),
    }
}

/// `text` fit for an error: `None` when it shares a run of [`SCRUB_WINDOW`] characters
/// with any of `sensitive` (or contains a shorter one whole) or is implausibly long;
/// otherwise control characters replaced and at most [`DETAIL_MAX`] characters kept.
pub fn scrub(text: &str, sensitive: &[Zeroizing<String>]) -> Option<String> {
    if text.len() > DETAIL_SCAN_MAX || quotes_any(text.as_bytes(), sensitive) {
        return None;
    }
    let mut out: String = text
        .chars()
        .take(DETAIL_MAX)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().nth(DETAIL_MAX).is_some() {
        out.push('…');
    }
    Some(out)
}

fn quotes_any(text: &[u8], sensitive: &[Zeroizing<String>]) -> bool {
    sensitive.iter().any(|secret| {
        let secret = secret.as_bytes();
        if secret.is_empty() {
            false
        } else if secret.len() <= SCRUB_WINDOW {
            memmem::find(text, secret).is_some()
        } else {
            secret
                .windows(SCRUB_WINDOW)
                .any(|window| memmem::find(text, window).is_some())
        }
    })
}

/// What to do after `status` / OAuth `error` from a `kind` endpoint.
pub(crate) fn advice(kind: GrantKind, status: u16, error: Option<&str>) -> &'static str {
    use GrantKind::*;
    match (kind, status, error) {
        (_, 429, _) => "the provider is rate limiting; wait before retrying",
        (_, 500..=599, _) => "the provider failed; keygate tries again on the next request",
        (RefreshToken, _, Some("invalid_grant")) => {
            "the refresh token was revoked or has expired: authorize again and store the new refresh token"
        }
        (GoogleServiceAccount, _, Some("invalid_grant")) => {
            "the service-account key may be deleted or disabled, or this machine's clock is wrong: check the key in the Cloud console and the system time"
        }
        (_, _, Some("invalid_client")) | (ClientCredentials | RefreshToken, 401, _) => {
            "check the client id and client secret stored for this credential"
        }
        (_, _, Some("invalid_scope")) => {
            "the scope is not allowed for this client: fix the scope in the credential's configuration"
        }
        (_, _, Some("unauthorized_client" | "unsupported_grant_type")) => {
            "this client may not use this grant: enable it in the provider's client settings"
        }
        (GitHubApp, 401, _) => {
            "GitHub did not accept the App JWT: check the app id, the App's private key, and this machine's clock"
        }
        (GitHubApp, 404, _) => {
            "the App has no such installation: check the installation id (and the API URL for GitHub Enterprise)"
        }
        (GitHubApp, 403 | 422, _) => {
            "the installation lacks the requested repositories or permissions: check the App installation's settings"
        }
        _ => "check this credential's configuration at the provider",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(values: &[&str]) -> Vec<Zeroizing<String>> {
        values
            .iter()
            .map(|v| Zeroizing::new(v.to_string()))
            .collect()
    }

    #[test]
    fn text_quoting_a_credential_or_part_of_one_is_dropped() {
        let sensitive = secrets(&["s3cr3t-client-secret-value", "abc"]);
        assert_eq!(
            scrub("Client authentication failed", &sensitive).as_deref(),
            Some("Client authentication failed")
        );
        assert_eq!(
            scrub("bad secret s3cr3t-client-secret-value", &sensitive),
            None
        );
        assert_eq!(
            scrub("secret starts ent-secr", &sensitive),
            None,
            "an 8-char run"
        );
        assert_eq!(
            scrub("secret starts ent-sec", &sensitive),
            Some("secret starts ent-sec".into())
        );
        assert_eq!(scrub("xabcx", &sensitive), None, "a short secret, whole");
        assert_eq!(scrub(&"x".repeat(5000), &sensitive), None);
    }

    #[test]
    fn text_is_shortened_and_stripped_of_control_characters() {
        let long = "é".repeat(DETAIL_MAX + 5);
        let kept = scrub(&long, &[]).unwrap();
        assert_eq!(kept.chars().count(), DETAIL_MAX + 1);
        assert!(kept.ends_with('…'));
        assert_eq!(scrub("a\r\nb\u{1b}[31m", &[]).unwrap(), "a  b [31m");
        assert_eq!(
            scrub(&"x".repeat(DETAIL_MAX), &[]).unwrap().len(),
            DETAIL_MAX
        );
    }

    #[test]
    fn endpoints_lose_user_info_and_query() {
        let uri: Uri = "https://user:pw@login.example.com:8443/oauth/token?key=k"
            .parse()
            .unwrap();
        assert_eq!(
            endpoint_name(&uri),
            "https://login.example.com:8443/oauth/token"
        );
    }
}
