//! Proxy authentication (`Proxy-Authorization: Basic`), required whenever keygate
//! listens on an address other than loopback: anyone who can reach the listener could
//! otherwise use its policy and the secrets bound to its hosts.

use base64::Engine;
use http::header::PROXY_AUTHORIZATION;
use http::{HeaderMap, HeaderValue, StatusCode};

use crate::proxy::Body;
use crate::proxy::respond::text_response;
use crate::secrets::SecretValue;

/// The user name keygate's generated proxy credentials use.
pub const PROXY_USER: &str = "keygate";

/// The credentials a client must present: `user:password`, held like a secret.
#[derive(Debug, Clone)]
pub struct ProxyAuth {
    credentials: SecretValue,
}

impl ProxyAuth {
    /// Requires `credentials` (`user:password`).
    pub fn new(credentials: SecretValue) -> ProxyAuth {
        ProxyAuth { credentials }
    }

    /// True when `headers` carry these credentials in `Proxy-Authorization: Basic`.
    pub fn admits(&self, headers: &HeaderMap) -> bool {
        let Some(given) = headers.get(PROXY_AUTHORIZATION).and_then(decode_basic) else {
            return false;
        };
        constant_time_eq(given.as_bytes(), self.credentials.expose().as_bytes())
    }
}

fn decode_basic(value: &HeaderValue) -> Option<String> {
    let (scheme, encoded) = value.to_str().ok()?.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    String::from_utf8(bytes).ok()
}

/// Compares without an early exit, so timing does not reveal how much of a guess matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for (i, byte) in b.iter().enumerate() {
        diff |= a.get(i).copied().unwrap_or(0) ^ byte;
    }
    diff == 0
}

/// The 407 answer that asks the client to authenticate.
pub fn challenge() -> http::Response<Body> {
    let mut response = text_response(
        StatusCode::PROXY_AUTHENTICATION_REQUIRED,
        "proxy-auth-required: this keygate listens beyond loopback and requires proxy credentials",
        "keygate requires proxy authentication on this address.\n\n\
         Use the proxy URL with credentials that `keygate env` prints (HTTPS_PROXY), \
         or run the command with `keygate run`.\n"
            .into(),
    );
    response.headers_mut().insert(
        http::header::PROXY_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"keygate\""),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(PROXY_AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn admits_only_the_exact_credentials() {
        let auth = ProxyAuth::new(SecretValue::new("keygate:s3cret-pass".into()).unwrap());
        let b64 = base64::engine::general_purpose::STANDARD;
        assert!(auth.admits(&headers(&format!(
            "Basic {}",
            b64.encode("keygate:s3cret-pass")
        ))));
        assert!(auth.admits(&headers(&format!(
            "basic {}",
            b64.encode("keygate:s3cret-pass")
        ))));
        for wrong in [
            "keygate:s3cret-pas",
            "keygate:s3cret-passX",
            "other:s3cret-pass",
            "",
        ] {
            assert!(
                !auth.admits(&headers(&format!("Basic {}", b64.encode(wrong)))),
                "{wrong}"
            );
        }
        assert!(!auth.admits(&headers("Bearer keygate:s3cret-pass")));
        assert!(!auth.admits(&HeaderMap::new()));
    }

    #[test]
    fn challenge_names_the_scheme() {
        let r = challenge();
        assert_eq!(r.status(), StatusCode::PROXY_AUTHENTICATION_REQUIRED);
        assert_eq!(r.headers()["proxy-authenticate"], "Basic realm=\"keygate\"");
    }
}
