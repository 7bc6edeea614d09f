//! What keygate answers when it does not forward: refusals and failures, each a status,
//! an `X-Keygate-Reason: <code>: <why>` header and a short text body for the agent.
//!
//! The error type records which side failed, so status and log level follow from it:
//! client → 4xx (info), policy → 403 (warn), upstream → 502/504 (warn), internal → 500.

use std::convert::Infallible;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};

use super::upstream::ConnectError;
use super::{Body, BoxError};
use crate::addon::Refuse;
use crate::policy::Refusal;

/// The response header that says why keygate refused or failed a request.
pub const REASON_HEADER: &str = "x-keygate-reason";

/// Why a request was not forwarded.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The client sent something keygate will not handle (400).
    #[error("bad-request: {0}")]
    BadRequest(String),
    /// Host policy refused it (403).
    #[error("{0}")]
    Refused(Refusal),
    /// A TLS tunnel or request broke a consistency rule, e.g. SNI ≠ CONNECT host (403).
    #[error("{code}: {why}")]
    Forbidden {
        /// Machine-readable code, e.g. `sni-mismatch`.
        code: &'static str,
        /// Why.
        why: String,
        /// What a human can do about it.
        advice: String,
    },
    /// An addon answered early (tripwire, host check, least privilege, missing secret).
    #[error("{}: {}", .0.code, .0.why)]
    Addon(Refuse),
    /// The request head is larger than keygate accepts (431); the text says which
    /// limit.
    #[error("head-too-large: {0}")]
    HeadTooLarge(String),
    /// keygate itself failed (500).
    #[error("internal-error: {0}")]
    Internal(String),
    /// The upstream could not be reached or failed (502).
    #[error("upstream-error: {0}")]
    Upstream(String),
    /// The upstream did not answer in time (504).
    #[error("upstream-timeout: {0}")]
    Timeout(String),
    /// A bound host's response body keygate cannot decode, so cannot scrub (502): an
    /// unknown or empty content coding, or a transfer coding other than chunked.
    #[error("undecodable-response: {0}")]
    Undecodable(String),
    /// A refused CONNECT answered at the CONNECT rather than with a TLS refusal page,
    /// because its client spent its pages (`limits.refusal_pages_per_minute`).
    #[error("{refusal}; rate-limited: {why}")]
    Throttled {
        /// The refusal itself.
        refusal: Box<ProxyError>,
        /// Why there is no refusal page.
        why: String,
    },
}

impl From<&ConnectError> for ProxyError {
    fn from(e: &ConnectError) -> ProxyError {
        match e {
            ConnectError::Refused(r) => ProxyError::Refused(r.clone()),
            ConnectError::Timeout(_) => ProxyError::Timeout(e.to_string()),
            other => ProxyError::Upstream(other.to_string()),
        }
    }
}

impl From<ConnectError> for ProxyError {
    fn from(e: ConnectError) -> ProxyError {
        ProxyError::from(&e)
    }
}

impl ProxyError {
    /// The status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ProxyError::Refused(_) | ProxyError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ProxyError::Addon(refuse) => refuse.status,
            ProxyError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ProxyError::HeadTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ProxyError::Upstream(_) | ProxyError::Undecodable(_) => StatusCode::BAD_GATEWAY,
            ProxyError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::Throttled { refusal, .. } => refusal.status(),
        }
    }

    /// The machine-readable code that starts `X-Keygate-Reason`, e.g. `not-allowed`.
    pub fn code(&self) -> &'static str {
        match self {
            ProxyError::BadRequest(_) => "bad-request",
            ProxyError::Refused(r) => r.kind.code(),
            ProxyError::Forbidden { code, .. } => code,
            ProxyError::Addon(refuse) => refuse.code,
            ProxyError::HeadTooLarge(_) => "head-too-large",
            ProxyError::Internal(_) => "internal-error",
            ProxyError::Upstream(_) => "upstream-error",
            ProxyError::Timeout(_) => "upstream-timeout",
            ProxyError::Undecodable(_) => "undecodable-response",
            ProxyError::Throttled { refusal, .. } => refusal.code(),
        }
    }

    /// The `network.allow` pattern that would lift this refusal, when one would.
    pub fn allow_pattern(&self) -> Option<&str> {
        match self {
            ProxyError::Refused(r) => r.allow.as_deref(),
            ProxyError::Throttled { refusal, .. } => refusal.allow_pattern(),
            _ => None,
        }
    }

    /// What a human can do about it, for the body.
    fn advice(&self) -> String {
        match self {
            ProxyError::HeadTooLarge(_) => "Send fewer or shorter headers.".into(),
            ProxyError::BadRequest(_) => {
                "Check the request: keygate is an HTTP proxy and expects CONNECT host:port or an absolute http:// URL.".into()
            }
            ProxyError::Refused(r) => r.advice.clone(),
            ProxyError::Forbidden { advice, .. } => advice.clone(),
            ProxyError::Addon(refuse) => refuse.advice.clone(),
            ProxyError::Internal(_) => "This is a keygate bug or a broken installation; keygate's log has details.".into(),
            ProxyError::Upstream(_) | ProxyError::Timeout(_) => {
                "The upstream failed, not the policy: retrying later may work. keygate's log has details.".into()
            }
            ProxyError::Undecodable(_) => {
                "keygate scrubs the real value out of every response from a host a secret is bound to, so it refuses a body it cannot read rather than pass it unscrubbed. It asks such hosts for gzip, deflate or br only (Accept-Encoding) and decodes gzip, deflate, br and zstd; this upstream answered with something else.".into()
            }
            ProxyError::Throttled { refusal, .. } => format!(
                "{}\n\nThis client was refused too often in the last minute, so keygate answered the CONNECT itself instead of a TLS refusal page (limits.refusal_pages_per_minute). Retrying a refused host does not help.",
                refusal.advice()
            ),
        }
    }

    /// Logs this error at the level its side deserves.
    pub fn log(&self, what: &str) {
        match self {
            ProxyError::BadRequest(_) | ProxyError::HeadTooLarge(_) => {
                tracing::info!("{what}: {self}")
            }
            ProxyError::Addon(refuse) if refuse.alert => tracing::error!("ALERT {what}: {self}"),
            ProxyError::Throttled { refusal, .. } if matches!(**refusal, ProxyError::Addon(ref r) if r.alert) =>
            {
                tracing::error!("ALERT {what}: {self}")
            }
            ProxyError::Internal(_) => tracing::error!("{what}: {self}"),
            _ => tracing::warn!("{what}: {self}"),
        }
    }

    fn verb(&self) -> &'static str {
        match self {
            ProxyError::Upstream(_)
            | ProxyError::Timeout(_)
            | ProxyError::Internal(_)
            | ProxyError::Undecodable(_) => "could not complete",
            _ => "refused",
        }
    }

    /// The full response: status, reason header, and the text body.
    pub fn to_response(&self, what: &str) -> Response<Body> {
        let body = format!(
            "keygate {} {what}.\n\nWhy: {self}\n\n{}\n",
            self.verb(),
            self.advice()
        );
        text_response(self.status(), &self.to_string(), body)
    }

    /// The same answer with a JSON body, for clients that asked for JSON: an error
    /// object in the shape the Anthropic and OpenAI APIs use (`error.type`,
    /// `error.message`), so their SDKs put keygate's reason in the exception they raise.
    pub fn to_json_response(&self, what: &str) -> Response<Body> {
        let body = serde_json::json!({
            "type": "error",
            "error": {
                "type": "keygate_refusal",
                "code": self.code(),
                "message": format!("keygate {} {what}: {self}", self.verb()),
                "advice": self.advice(),
            },
        });
        let mut response = text_response(self.status(), &self.to_string(), format!("{body}\n"));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }

    /// [`ProxyError::to_json_response`] when `accept` prefers JSON, else
    /// [`ProxyError::to_response`].
    pub fn to_response_for(&self, what: &str, accept: Option<&HeaderValue>) -> Response<Body> {
        match accept
            .and_then(|v| v.to_str().ok())
            .is_some_and(prefers_json)
        {
            true => self.to_json_response(what),
            false => self.to_response(what),
        }
    }
}

/// True when an `Accept` header ranks JSON above plain text: `application/json` (or a
/// `+json` type) with a higher quality than `text/*` and `*/*`. `*/*` alone is text, which
/// is what curl and browsers print best.
pub fn prefers_json(accept: &str) -> bool {
    let (mut json, mut text) = (0.0_f32, 0.0_f32);
    for item in accept.split(',') {
        let mut parts = item.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        if media == "application/json" || media.ends_with("+json") {
            json = json.max(q);
        } else if media.starts_with("text/") || media == "*/*" {
            text = text.max(q);
        }
    }
    json > 0.0 && json > text
}

/// At most `max` characters of `text`, each visible ASCII or a space: anything else
/// becomes '?' (what header values and reason phrases may hold).
fn visible_ascii(text: &str, max: usize) -> String {
    text.chars()
        .map(|c| {
            if c == ' ' || c.is_ascii_graphic() {
                c
            } else {
                '?'
            }
        })
        .take(max)
        .collect()
}

/// Header values must be visible ASCII.
fn header_safe(text: &str) -> HeaderValue {
    HeaderValue::from_str(&visible_ascii(text, 512))
        .unwrap_or_else(|_| HeaderValue::from_static("refused"))
}

/// The longest reason phrase keygate writes.
const MAX_REASON_PHRASE: usize = 160;

/// The HTTP/1.1 reason phrase of a refusal: the canonical one, then keygate's reason
/// (its first clause), e.g. `Forbidden (keygate not-allowed: x.example:443 is not on
/// keygate's allowlist (network mode: trusted))`. Clients that show only the status
/// line (Python's `Tunnel connection failed: 403 …`, `raise_for_status()`, Node's
/// `statusText`) then show why. keygate's own text, never an upstream's.
fn reason_phrase(status: StatusCode, reason: &str) -> Option<hyper::ext::ReasonPhrase> {
    let first = reason.split(';').next().unwrap_or("");
    let text = format!(
        "{} (keygate {first})",
        status.canonical_reason().unwrap_or("Refused")
    );
    let cleaned = visible_ascii(&text, MAX_REASON_PHRASE);
    hyper::ext::ReasonPhrase::try_from(cleaned).ok()
}

/// A plain-text response carrying `X-Keygate-Reason` (and, on HTTP/1.1, a reason phrase
/// that says it too).
pub fn text_response(status: StatusCode, reason: &str, body: String) -> Response<Body> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    if let Some(phrase) = reason_phrase(status, reason) {
        response.extensions_mut().insert(phrase);
    }
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(REASON_HEADER, header_safe(reason));
    response
}

/// A body with fixed contents.
pub fn full(content: impl Into<Bytes>) -> Body {
    Full::new(content.into())
        .map_err(|never: Infallible| -> BoxError { match never {} })
        .boxed()
}

/// An empty body.
pub fn empty() -> Body {
    full(Bytes::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_only_when_the_client_ranks_it_above_text() {
        for yes in [
            "application/json",
            "application/json, text/plain;q=0.5",
            "application/problem+json",
            "text/plain;q=0.1, application/json",
        ] {
            assert!(prefers_json(yes), "{yes}");
        }
        for no in [
            "*/*",
            "",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
            "application/json;q=0.5, */*",
            "application/json;q=0",
        ] {
            assert!(!prefers_json(no), "{no}");
        }
    }

    #[test]
    fn the_json_refusal_has_the_api_error_shape_and_the_same_reason_header() {
        let err = ProxyError::Forbidden {
            code: "sni-mismatch",
            why: "TLS SNI differs".into(),
            advice: "Use the same name.".into(),
        };
        let response = err.to_json_response("CONNECT a.example:443");
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            response.headers()[REASON_HEADER],
            "sni-mismatch: TLS SNI differs"
        );
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(err.code(), "sni-mismatch");
    }
}
