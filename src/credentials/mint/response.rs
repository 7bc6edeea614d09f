//! The OAuth2 token response (RFC 6749 §5.1) and error response (§5.2), read without
//! ever quoting the body: a JSON parser's error message can repeat the token it choked on,
//! so every problem is described in keygate's own words.

use std::time::{Duration, SystemTime};

use http::StatusCode;
use serde_json::{Map, Value};
use zeroize::{Zeroize as _, Zeroizing};

use super::error::{GrantKind, MintError, advice, endpoint_name, scrub};
use super::{Minted, Token, TokenRequest};
use crate::secrets::SecretValue;

/// Largest token response read, in bytes (a transport should stop reading there too).
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// The lifetime assumed when a token response has no `expires_in`: one hour, the usual
/// lifetime of the tokens these grants mint (RFC 6749 leaves it to documentation). Too long
/// a guess is caught when the upstream answers 401; the proxy then calls
/// [`TokenCache::invalidate`](super::TokenCache::invalidate).
pub const DEFAULT_EXPIRES_IN: Duration = Duration::from_secs(3600);

/// What every parse needs to describe a failure: which grant, which request.
pub(crate) struct Answer<'a> {
    pub kind: GrantKind,
    pub request: &'a TokenRequest,
    pub status: StatusCode,
}

impl Answer<'_> {
    /// A success answer that is not usable.
    pub fn bad(&self, problem: impl Into<String>) -> MintError {
        MintError::BadResponse {
            endpoint: endpoint_name(&self.request.uri),
            status: self.status.as_u16(),
            problem: problem.into(),
            advice: match self.kind {
                GrantKind::GitHubApp => "check the GitHub API URL",
                _ => "the endpoint may not be an OAuth2 token endpoint; check the token URL",
            },
        }
    }

    /// An error answer, with the OAuth `error` / `error_description` (or GitHub's
    /// `message`) from `body` when they are safe to repeat.
    pub fn refused(&self, body: Option<&Map<String, Value>>) -> MintError {
        let field = |name: &str| {
            let text = body?.get(name)?.as_str()?;
            scrub(text, self.request.sensitive())
        };
        let error = field("error");
        let description = field("error_description").or_else(|| field("message"));
        MintError::Refused {
            endpoint: endpoint_name(&self.request.uri),
            status: self.status.as_u16(),
            advice: advice(self.kind, self.status.as_u16(), error.as_deref()),
            error,
            description,
        }
    }

    /// The body as a JSON object, or the error to return: the endpoint's refusal for an
    /// error status (or a success status with an `error` field and no token).
    pub fn object(&self, body: &[u8]) -> Result<Map<String, Value>, MintError> {
        if body.len() > MAX_RESPONSE_BYTES {
            return Err(self.bad("the response is larger than 64 KiB"));
        }
        let object = match serde_json::from_slice(body) {
            Ok(Value::Object(object)) => Some(object),
            _ => None,
        };
        match object {
            _ if !self.status.is_success() => Err(self.refused(object.as_ref())),
            Some(object) if object.contains_key("error") && !has_token(&object) => {
                Err(self.refused(Some(&object)))
            }
            Some(object) => Ok(object),
            None => Err(self.bad("the response is not a JSON object")),
        }
    }

    /// The string field `name` moved out of `object` as a header-safe token.
    pub fn token_field(
        &self,
        object: &mut Map<String, Value>,
        name: &str,
    ) -> Result<Zeroizing<String>, MintError> {
        let value = match object.remove(name) {
            Some(Value::String(value)) => Zeroizing::new(value),
            Some(_) => return Err(self.bad(format!("{name} is not a string"))),
            None => return Err(self.bad(format!("the response has no {name}"))),
        };
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(self.bad(format!(
                "{name} is empty or has characters that cannot go in a header"
            )));
        }
        Ok(value)
    }
}

fn has_token(object: &Map<String, Value>) -> bool {
    object.contains_key("access_token") || object.contains_key("token")
}

/// Reads an OAuth2 token response. `expires_in` counts from `received_at`; a new
/// `refresh_token` different from `current_refresh` is reported as rotated.
pub(crate) fn parse_token(
    answer: &Answer<'_>,
    body: &[u8],
    received_at: SystemTime,
    current_refresh: Option<&SecretValue>,
) -> Result<Minted, MintError> {
    let mut object = answer.object(body)?;
    let value = answer.token_field(&mut object, "access_token")?;
    match object.get("token_type") {
        None | Some(Value::Null) => {}
        Some(Value::String(kind)) if kind.eq_ignore_ascii_case("bearer") => {}
        Some(_) => {
            return Err(answer.bad("token_type is not Bearer, the only kind keygate injects"));
        }
    }
    let expires_in = expires_in(object.get("expires_in"))
        .ok_or_else(|| answer.bad("expires_in is not a number of seconds"))?;
    let rotated_refresh_token = match current_refresh {
        Some(current) if object.contains_key("refresh_token") => {
            let new = answer.token_field(&mut object, "refresh_token")?;
            let new = SecretValue::new(new.to_string())
                .map_err(|e| answer.bad(format!("the new refresh_token is unusable: {e}")))?;
            (new != *current).then_some(new)
        }
        _ => None,
    };
    wipe(&mut object);
    Ok(Minted {
        token: Token {
            value,
            expires_at: received_at + expires_in,
        },
        rotated_refresh_token,
    })
}

/// Zeroizes what is left of a token response (an unused `refresh_token` or `id_token`).
pub(crate) fn wipe(object: &mut Map<String, Value>) {
    for value in object.values_mut() {
        if let Value::String(text) = value {
            text.zeroize();
        }
    }
}

/// `expires_in` as a duration: absent or null means [`DEFAULT_EXPIRES_IN`]; a number or a
/// numeric string (some providers send one) counts; anything else is `None`.
fn expires_in(value: Option<&Value>) -> Option<Duration> {
    let seconds = match value {
        None | Some(Value::Null) => return Some(DEFAULT_EXPIRES_IN),
        Some(Value::Number(n)) => n.as_f64()?,
        Some(Value::String(s)) => s.trim().parse::<f64>().ok()?,
        Some(_) => return None,
    };
    // A negative or absurd lifetime is the provider's bug; clamp rather than overflow.
    (seconds.is_finite() && seconds >= 0.0)
        .then(|| Duration::from_secs_f64(seconds.min(366.0 * 86_400.0)))
}
