//! RS256 JSON Web Tokens (RFC 7519 over RFC 7515 compact serialization): [`sign`] the
//! assertions keygate sends to token endpoints (Google's JWT bearer grant, GitHub App
//! JWTs), and [`verify`] a JWT the agent signed with its phantom service-account key before
//! keygate acts on it.
//!
//! Only RS256 exists here: the header's `alg` is checked against that one value, so `none`,
//! HS256 (the "public key as HMAC secret" confusion) and every other algorithm are refused
//! before any signature work. Errors never contain the token.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};
use zeroize::Zeroizing;

use super::key::{KeyError, SigningKey, VerifyingKey};

/// How far clocks may disagree when [`verify`] checks `exp`, `nbf` and `iat`: one minute.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);

/// Longest JWT [`verify`] looks at, in bytes. Assertions are a few hundred bytes; this only
/// bounds the work an agent can ask for.
pub const MAX_JWT_LEN: usize = 16 * 1024;

/// Longest piece of an untrusted header value quoted in an error.
const QUOTE_MAX: usize = 16;

/// Why a JWT was refused. Messages never contain the token or any part of its signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// Not three base64url parts, not JSON objects, or over [`MAX_JWT_LEN`].
    #[error("the JWT is malformed: {0}")]
    Malformed(&'static str),
    /// `alg` is not `RS256` (quoted, shortened).
    #[error("the JWT's alg is {0:?}; only RS256 is accepted")]
    Algorithm(String),
    /// The header lists critical extensions keygate does not implement (RFC 7515 §4.1.11).
    #[error("the JWT's header has a crit parameter; no extensions are supported")]
    Critical,
    /// The signature is not the expected key's signature over header and payload.
    #[error("the JWT's signature does not verify against the expected key")]
    BadSignature,
    /// No numeric `exp` claim: a JWT without one would be valid forever.
    #[error("the JWT has no numeric exp claim")]
    MissingExp,
    /// `exp` (plus the leeway) is before now.
    #[error("the JWT expired {0} s ago")]
    Expired(u64),
    /// `nbf` is after now (plus the leeway).
    #[error("the JWT is not valid before a time that is still {0} s away")]
    NotYetValid(u64),
    /// `iat` is after now (plus the leeway): a clock is wrong, or the token is forged.
    #[error("the JWT's iat is {0} s in the future; check this machine's clock")]
    IssuedInFuture(u64),
}

/// Seconds since the Unix epoch (0 for a clock set before 1970).
pub fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Signs `claims` as an RS256 JWT with header `{"alg":"RS256","typ":"JWT"}` plus `kid` when
/// given. The result is a credential, so it is zeroized when dropped.
pub fn sign(
    key: &SigningKey,
    kid: Option<&str>,
    claims: &Value,
) -> Result<Zeroizing<String>, KeyError> {
    let mut header = json!({"alg": "RS256", "typ": "JWT"});
    if let Some(kid) = kid {
        header["kid"] = Value::String(kid.to_owned());
    }
    let claims_json = Zeroizing::new(claims.to_string());
    let mut token = Zeroizing::new(String::with_capacity(512 + claims_json.len() * 4 / 3));
    URL_SAFE_NO_PAD.encode_string(header.to_string(), &mut token);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(claims_json.as_bytes(), &mut token);
    let signature = key.sign_rs256(token.as_bytes())?;
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(signature, &mut token);
    Ok(token)
}

/// Checks that `token` is an RS256 JWT signed by `key` and currently valid, and returns its
/// claims (a JSON object).
///
/// `exp` is required; `nbf` and `iat` are checked when present. Each comparison with `now`
/// allows `leeway` (usually [`DEFAULT_LEEWAY`]). Audience, issuer and scope are the
/// caller's to check in the returned claims.
pub fn verify(
    token: &str,
    key: &VerifyingKey,
    now: SystemTime,
    leeway: Duration,
) -> Result<Value, JwtError> {
    if token.len() > MAX_JWT_LEN {
        return Err(JwtError::Malformed("longer than 16 KiB"));
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed("not three dot-separated parts"));
    };
    check_header(&decode_object(header, "header")?)?;
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| JwtError::Malformed("the signature is not base64url"))?;
    let signed = &token[..header.len() + 1 + payload.len()];
    if !key.verify_rs256(signed.as_bytes(), &signature) {
        return Err(JwtError::BadSignature);
    }
    let claims = decode_object(payload, "payload")?;
    check_times(&claims, unix_seconds(now), leeway.as_secs())?;
    Ok(Value::Object(claims))
}

/// One base64url part that must hold a JSON object.
fn decode_object(part: &str, what: &'static str) -> Result<Map<String, Value>, JwtError> {
    let bytes = Zeroizing::new(URL_SAFE_NO_PAD.decode(part).map_err(|_| {
        JwtError::Malformed(if what == "header" {
            "the header is not base64url"
        } else {
            "the payload is not base64url"
        })
    })?);
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ if what == "header" => Err(JwtError::Malformed("the header is not a JSON object")),
        _ => Err(JwtError::Malformed("the payload is not a JSON object")),
    }
}

fn check_header(header: &Map<String, Value>) -> Result<(), JwtError> {
    match header.get("alg") {
        Some(Value::String(alg)) if alg == "RS256" => {}
        Some(Value::String(alg)) => return Err(JwtError::Algorithm(quote(alg))),
        _ => return Err(JwtError::Malformed("the header has no alg")),
    }
    if header.contains_key("crit") {
        return Err(JwtError::Critical);
    }
    Ok(())
}

fn check_times(claims: &Map<String, Value>, now: u64, leeway: u64) -> Result<(), JwtError> {
    let exp = numeric_date(claims.get("exp")).ok_or(JwtError::MissingExp)?;
    if now > exp.saturating_add(leeway) {
        return Err(JwtError::Expired(now - exp));
    }
    if let Some(nbf) = numeric_date(claims.get("nbf"))
        && nbf > now.saturating_add(leeway)
    {
        return Err(JwtError::NotYetValid(nbf - now));
    }
    if let Some(iat) = numeric_date(claims.get("iat"))
        && iat > now.saturating_add(leeway)
    {
        return Err(JwtError::IssuedInFuture(iat - now));
    }
    Ok(())
}

/// A NumericDate (RFC 7519 §2): seconds, possibly fractional; negative counts as 0.
fn numeric_date(value: Option<&Value>) -> Option<u64> {
    let seconds = value?.as_f64()?;
    // `as` saturates: a negative date becomes 0 and a huge one u64::MAX.
    Some(seconds as u64)
}

/// An untrusted header value, shortened and limited to printable ASCII for an error.
fn quote(value: &str) -> String {
    value
        .chars()
        .take(QUOTE_MAX)
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .collect()
}

#[cfg(test)]
#[path = "jwt_tests.rs"]
mod tests;
