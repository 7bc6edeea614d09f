//! The credential kinds of issue 15 on an intercepted request, around the addon
//! pipeline:
//!
//! * [`mint`] (before it): a request that carries the phantom of a minted secret
//!   (`oauth2`, `github-app`, `google`) gets the secret's current token from its cache,
//!   minted if needed; the swap then sends it in the phantom's place.
//! * [`google_token`] (before it): the agent's own token exchange at a `google` secret's
//!   token endpoint is answered by keygate: the JWT must verify with the phantom account
//!   keygate made, and the answer is the phantom bearer, never a real token.
//! * [`resign_aws`] (after it): a request to an `aws` secret's host signed with its
//!   phantom keys is verified with them and signed again with the real ones.

use std::time::SystemTime;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderValue, Method, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};

use super::super::respond::ProxyError;
use super::super::upstream::credentials::{Credentials, PhantomAccount};
use super::super::{Body, BoxError};
use crate::addon::inspect::{in_headers, in_query};
use crate::addon::{FlowContext, Refuse};
use crate::credentials::jwt;
use crate::credentials::sigv4::{self, AwsKeys};
use crate::secrets::kind::Kind;
use crate::secrets::{Binding, SecretValue};

/// Largest token-exchange body keygate reads (a form with one JWT).
const MAX_TOKEN_EXCHANGE: usize = 64 * 1024;
/// The grant type of a JWT bearer token exchange (RFC 7523).
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// How long the phantom token keygate answers with lives, by what it tells the agent.
const PHANTOM_LIFETIME_SECS: u64 = 3600;

fn refuse(status: StatusCode, code: &'static str, why: String, advice: String) -> ProxyError {
    ProxyError::Addon(Refuse {
        status,
        code,
        why,
        advice,
        alert: false,
    })
}

/// The phantom of `binding` is in the request's headers (or query, where it swaps there).
fn carries(parts: &Parts, binding: &Binding) -> bool {
    in_headers(&parts.headers, &binding.dummy)
        || (binding.query && in_query(&parts.uri, &binding.dummy))
}

/// Fills `flow.minted` with the current token of every minted secret whose phantom the
/// request carries. A token that cannot be minted is a 502 naming the secret, the
/// endpoint and what to do.
///
/// A `google` secret's phantom may also come as a self-signed JWT (Google's client
/// libraries send one as the bearer instead of exchanging it, with
/// `always_use_jwt_access`): one that verifies with the phantom account is replaced here
/// by a minted token, since no dummy is in it for the swap to find.
pub async fn mint(
    flow: &mut FlowContext,
    parts: &mut Parts,
    creds: &Credentials,
) -> Result<(), ProxyError> {
    if !creds.any_minted() {
        return Ok(());
    }
    for binding in flow.bound().iter() {
        if !binding.kind.is_minted() || binding.real.is_none() {
            continue;
        }
        let self_signed = !carries(parts, binding) && self_signed_jwt(parts, binding, creds);
        if !carries(parts, binding) && !self_signed {
            continue;
        }
        // Least privilege refuses it next; nothing to mint for.
        if !binding.permits(&parts.method, parts.uri.path()) {
            continue;
        }
        let name = &binding.name;
        if let Some(problem) = creds.problem(name) {
            return Err(mint_failed(name, problem.to_string()));
        }
        let Some(cache) = creds.cache(name) else {
            continue;
        };
        let token = cache
            .get_detached(creds.transport())
            .await
            .map_err(|e| mint_failed(name, e.to_string()))?;
        let value = SecretValue::new(token.value.to_string()).map_err(|_| {
            mint_failed(
                name,
                "the token endpoint answered a token that cannot go in an HTTP header".into(),
            )
        })?;
        creds.note_expiry(name, token.expires_at);
        if self_signed {
            let bearer = zeroize::Zeroizing::new(format!("Bearer {}", value.expose()));
            if let Ok(mut header) = HeaderValue::from_str(&bearer) {
                header.set_sensitive(true);
                parts.headers.insert(http::header::AUTHORIZATION, header);
                flow.swapped.push(name.clone());
            }
        }
        flow.minted.push((name.clone(), value));
    }
    Ok(())
}

/// The request's bearer is a JWT that `binding`'s phantom account signed.
fn self_signed_jwt(parts: &Parts, binding: &Binding, creds: &Credentials) -> bool {
    let Some(account) = creds.google(&binding.name) else {
        return false;
    };
    let Some(token) = parts
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .filter(|t| t.starts_with("eyJ"))
    else {
        return false;
    };
    jwt::verify(
        token.trim(),
        &account.key,
        SystemTime::now(),
        jwt::DEFAULT_LEEWAY,
    )
    .is_ok_and(|claims| claims.get("iss").and_then(|v| v.as_str()) == Some(&account.client_email))
}

fn mint_failed(name: &str, why: String) -> ProxyError {
    refuse(
        StatusCode::BAD_GATEWAY,
        "mint-failed",
        format!("keygate could not get a token for secret `{name}`: {why}"),
        format!(
            "The agent's request was not sent. Check the endpoint and the credential (`keygate secret list` shows `{name}`; `keygate secret add {name}` replaces it); keygate tries again on the next request."
        ),
    )
}

/// Forgets the minted tokens of this request when the upstream rejected them (401), so
/// that the next request mints anew (a token revoked before its expiry).
pub fn on_status(flow: &FlowContext, status: StatusCode, creds: &Credentials) {
    if flow.minted.is_empty() || !super::super::upstream::credentials::rejects_token(status) {
        return;
    }
    for (name, _) in &flow.minted {
        if let Some(cache) = creds.cache(name) {
            tracing::info!(secret = %name, "the upstream answered {status}; the next request mints a new token");
            cache.invalidate();
        }
    }
}

/// The `google` secret whose token endpoint this request is, if any: keygate answers it.
pub fn token_endpoint_of<'a>(
    flow: &FlowContext,
    parts: &Parts,
    creds: &'a Credentials,
) -> Option<(std::sync::Arc<Binding>, &'a PhantomAccount)> {
    if parts.method != Method::POST || !creds.any_minted() {
        return None;
    }
    flow.bound().iter().find_map(|b| {
        if !matches!(b.kind, Kind::Google(_)) {
            return None;
        }
        let account = creds.google(&b.name)?;
        let uri = &account.token_uri;
        let same_host = uri
            .host()
            .is_some_and(|h| h.eq_ignore_ascii_case(&flow.host.to_string()));
        let same_port = uri.port_u16().unwrap_or(443) == flow.port;
        (same_host && same_port && uri.path() == parts.uri.path())
            .then_some((b.clone(), &**account))
    })
}

/// Answers the agent's token exchange for `binding`: reads the form (bounded), checks
/// the JWT with the phantom account, and answers the phantom bearer.
pub async fn google_token(
    binding: &Binding,
    account: &PhantomAccount,
    body: hyper::body::Incoming,
) -> Result<Response<Body>, ProxyError> {
    let name = &binding.name;
    let bad = |why: String| {
        refuse(
            StatusCode::BAD_REQUEST,
            "token-exchange",
            format!("the token exchange for secret `{name}`: {why}"),
            "keygate answers this endpoint for the phantom service account it gave the agent (GOOGLE_APPLICATION_CREDENTIALS); point the client at that file.".into(),
        )
    };
    let form = Limited::new(body, MAX_TOKEN_EXCHANGE)
        .collect()
        .await
        .map_err(|_| bad("the body is unreadable or larger than 64 KiB".into()))?
        .to_bytes();
    let fields = parse_form(&form);
    let field = |key: &str| {
        fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    if field("grant_type") != Some(JWT_BEARER) {
        return Err(bad(format!("grant_type is not {JWT_BEARER}")));
    }
    let assertion = field("assertion").ok_or_else(|| bad("no assertion".into()))?;
    let claims = jwt::verify(assertion, &account.key, SystemTime::now(), jwt::DEFAULT_LEEWAY)
        .map_err(|e| {
            refuse(
                StatusCode::FORBIDDEN,
                "token-exchange",
                format!("the JWT for secret `{name}` does not verify with its phantom account: {e}"),
                "Use the phantom service-account file keygate gave the agent; a JWT signed with any other key is refused here.".into(),
            )
        })?;
    let text = |k: &str| claims.get(k).and_then(|v| v.as_str()).unwrap_or("");
    if text("iss") != account.client_email {
        return Err(bad(
            "the JWT's iss is not the phantom account's client_email".into(),
        ));
    }
    let audience = account.token_uri.to_string();
    if text("aud").trim_end_matches('/') != audience.trim_end_matches('/') {
        return Err(bad(format!("the JWT's aud is not {audience}")));
    }
    let answer = serde_json::json!({
        "access_token": binding.dummy,
        "expires_in": PHANTOM_LIFETIME_SECS,
        "token_type": "Bearer",
    });
    let mut response = Response::new(
        Full::new(Bytes::from(answer.to_string()))
            .map_err(|never| -> BoxError { match never {} })
            .boxed(),
    );
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response.headers_mut().insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    Ok(response)
}

/// `application/x-www-form-urlencoded` pairs (`+` is a space).
fn parse_form(body: &[u8]) -> Vec<(String, String)> {
    let decode = |s: &[u8]| {
        let spaced: Vec<u8> = s
            .iter()
            .map(|b| if *b == b'+' { b' ' } else { *b })
            .collect();
        percent_encoding::percent_decode(&spaced)
            .decode_utf8_lossy()
            .into_owned()
    };
    body.split(|b| *b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let mut kv = pair.splitn(2, |b| *b == b'=');
            let k = decode(kv.next().unwrap_or_default());
            let v = decode(kv.next().unwrap_or_default());
            (k, v)
        })
        .collect()
}

/// What [`resign_aws`] did.
pub struct Resigned {
    /// The body to send (read whole when keygate hashed it).
    pub body: Body,
    /// The secret whose real keys signed the request, if it was re-signed.
    pub secret: Option<String>,
}

/// Verifies a request signed with an `aws` secret's phantom keys and signs it again with
/// the real ones. `authority` is the host the client signed (its `Host` or
/// `:authority`). A request that carries an `aws` phantom and cannot be re-signed is
/// refused, never forwarded as it is.
pub async fn resign_aws(
    flow: &FlowContext,
    parts: &mut Parts,
    authority: &str,
    body: Body,
    has_body: bool,
    max_body: usize,
    creds: &Credentials,
) -> Result<Resigned, ProxyError> {
    if !creds.any_aws() {
        return Ok(Resigned { body, secret: None });
    }
    let aws: Vec<_> = flow
        .bound()
        .iter()
        .filter(|b| matches!(b.kind, Kind::Aws(_)))
        .cloned()
        .collect();
    let pass = |body| Ok(Resigned { body, secret: None });
    if aws.is_empty() {
        return pass(body);
    }
    let phantom_in = |parts: &Parts| {
        aws.iter().find(|b| {
            b.phantoms()
                .any(|p| in_headers(&parts.headers, p) || in_query(&parts.uri, p))
        })
    };
    let sigv4_refusal = |name: &str, e: sigv4::SigV4Error| {
        refuse(
            e.status(),
            "sigv4",
            format!("secret `{name}`: {e}"),
            "keygate re-signs requests signed with the phantom AWS credentials it gave the agent (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY); sign with those, unchanged.".into(),
        )
    };
    let signed = match sigv4::parse(parts) {
        Ok(signed) => signed,
        Err(e) => {
            return match phantom_in(parts) {
                Some(b) => Err(sigv4_refusal(&b.name, e)),
                None => pass(body),
            };
        }
    };
    let target = signed
        .as_ref()
        .and_then(|s| aws.iter().find(|b| b.dummy == s.access_key_id));
    let (Some(signed), Some(binding)) = (signed.as_ref(), target) else {
        // Not signed with a phantom: it goes up as is, unless a phantom is in it anyway.
        return match phantom_in(parts) {
            Some(b) => Err(refuse(
                StatusCode::BAD_REQUEST,
                "sigv4",
                format!(
                    "the request carries a phantom credential of secret `{}` but is not SigV4-signed with its access key id",
                    b.name
                ),
                "Let the AWS SDK sign the request with the credentials keygate gave the agent."
                    .into(),
            )),
            None => pass(body),
        };
    };
    let Kind::Aws(kind) = &binding.kind else {
        return pass(body);
    };
    let phantom = AwsKeys {
        access_key_id: binding.dummy.clone(),
        secret_access_key: zeroize::Zeroizing::new(kind.secret_access_key.clone()),
        session_token: kind.session_token.clone().map(zeroize::Zeroizing::new),
    };
    let (payload_hash, body) = match sigv4::declared_payload_hash(parts, signed) {
        Some(hash) => (hash, body),
        None if !has_body => (sigv4::sha256_hex(b""), body),
        None => {
            let whole = read_whole(body, max_body, &binding.name).await?;
            let hash = sigv4::sha256_hex(&whole);
            let body = Full::new(whole)
                .map_err(|never| -> BoxError { match never {} })
                .boxed();
            (hash, body)
        }
    };
    sigv4::verify(parts, authority, &payload_hash, signed, &phantom)
        .map_err(|e| sigv4_refusal(&binding.name, e))?;
    if let Some(problem) = creds.problem(&binding.name) {
        return Err(aws_failed(&binding.name, problem.to_string()));
    }
    let source = creds.aws(&binding.name).ok_or_else(|| {
        refuse(
            StatusCode::BAD_GATEWAY,
            "secret-missing",
            format!("secret `{}` has no AWS credentials in the keyring", binding.name),
            format!(
                "A human must store them: `keygate secret add {} --recipe aws`, then restart keygate.",
                binding.name
            ),
        )
    })?;
    let real = source
        .keys()
        .await
        .map_err(|e| aws_failed(&binding.name, e))?;
    sigv4::resign(parts, authority, &payload_hash, signed, &real)
        .map_err(|e| sigv4_refusal(&binding.name, e))?;
    // SECURITY: whatever the signature covered, no phantom leaves.
    if let Some(b) = phantom_in(parts) {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "sigv4",
            format!(
                "the re-signed request still carries a phantom credential of secret `{}` outside its signature",
                b.name
            ),
            "Remove the phantom from the other headers or the query.".into(),
        ));
    }
    Ok(Resigned {
        body,
        secret: Some(binding.name.clone()),
    })
}

fn aws_failed(name: &str, why: String) -> ProxyError {
    refuse(
        StatusCode::BAD_GATEWAY,
        "aws-credentials",
        format!("keygate has no usable real AWS credentials for secret `{name}`: {why}"),
        format!(
            "Store them again with `keygate secret add {name} --recipe aws` (or fix its aws.command); the agent's request was not sent."
        ),
    )
}

/// The body, read whole within `max` bytes (`limits.max_signed_body`): the SigV4 payload
/// hash covers it. Past the limit: 413.
async fn read_whole(mut body: Body, max: usize, name: &str) -> Result<Bytes, ProxyError> {
    // By frames rather than with `Limited`: its error conversion is not general enough
    // for a future that must be `Send` across this await.
    let mut whole = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            ProxyError::BadRequest(format!(
                "the request body ended early while keygate read it to hash it for SigV4: {e}"
            ))
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if whole.len() + data.len() > max {
            return Err(refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                "signed-body-too-large",
                format!(
                    "the body of a request signed for secret `{name}` is larger than {max} bytes (limits.max_signed_body), and the client declared no x-amz-content-sha256, so keygate must hash it whole to re-sign it"
                ),
                "Raise limits.max_signed_body in keygate.yaml, or have the client send x-amz-content-sha256 (S3 clients do).".into(),
            ));
        }
        whole.extend_from_slice(&data);
    }
    Ok(whole.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode_plus_and_percent() {
        let fields = parse_form(b"grant_type=urn%3Aietf%3Aparams&assertion=a.b.c&x=1+2&&empty");
        assert_eq!(fields[0], ("grant_type".into(), "urn:ietf:params".into()));
        assert_eq!(fields[1], ("assertion".into(), "a.b.c".into()));
        assert_eq!(fields[2], ("x".into(), "1 2".into()));
        assert_eq!(fields[3], ("empty".into(), String::new()));
    }
}
