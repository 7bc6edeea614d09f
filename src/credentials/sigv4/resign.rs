//! [`resign`]: the verified phantom request, signed again with the real keys.

use http::header::{AUTHORIZATION, HeaderValue};
use http::request::Parts;
use http::uri::{PathAndQuery, Uri};

use super::canonical::{self, ALGORITHM};
use super::read::check_access_key_id;
use super::{AwsKeys, Q_CREDENTIAL, Q_SIGNATURE, Q_TOKEN, SigV4Error, Signed, TOKEN_HEADER};
use super::{encoded, refuse_signed_chunks, signature};

/// Rewrites the request's authorization with the `real` keys: the session token is
/// replaced (added and signed when the phantom request had none, removed when the real
/// keys have none), the signature is made again over the same signed headers (plus or
/// minus x-amz-security-token), the same x-amz-date and payload hash, and written to
/// `Authorization` or, when presigned, to `X-Amz-Credential` / `X-Amz-Security-Token` /
/// `X-Amz-Signature` in the query (every other parameter keeps its place and bytes).
///
/// Call it only after [`verify`](super::verify) succeeded. The real keys are checked
/// before anything is changed; still, a request whose `resign` failed must be refused,
/// never forwarded (it may be half rewritten).
pub fn resign(
    parts: &mut Parts,
    authority: &str,
    payload_hash: &str,
    signed: &Signed,
    real: &AwsKeys,
) -> Result<(), SigV4Error> {
    refuse_signed_chunks(payload_hash)?;
    check_access_key_id(&real.access_key_id)
        .map_err(|_| SigV4Error::BadRealKeys("access key id"))?;
    let token = match &real.session_token {
        None => None,
        Some(token) => {
            let mut value = HeaderValue::from_str(token)
                .map_err(|_| SigV4Error::BadRealKeys("session token"))?;
            value.set_sensitive(true);
            Some(value)
        }
    };
    let next = Signed {
        access_key_id: real.access_key_id.clone(),
        signature: String::new(),
        ..signed.clone()
    };
    if signed.presigned {
        resign_query(parts, authority, payload_hash, next, real)
    } else {
        resign_header(parts, authority, payload_hash, next, real, token)
    }
}

/// The `Authorization` form of [`resign`].
fn resign_header(
    parts: &mut Parts,
    authority: &str,
    payload_hash: &str,
    mut next: Signed,
    real: &AwsKeys,
    token: Option<HeaderValue>,
) -> Result<(), SigV4Error> {
    // SECURITY: the phantom session token must not reach AWS (it names the phantom);
    // the real one must be there when the real keys are temporary. A token the client
    // left out of its signature stays out of ours.
    let had_token = parts.headers.remove(TOKEN_HEADER).is_some();
    match token {
        Some(value) => {
            parts.headers.insert(TOKEN_HEADER, value);
            if !had_token {
                let at = next
                    .signed_headers
                    .partition_point(|h| h.as_str() < TOKEN_HEADER);
                next.signed_headers.insert(at, TOKEN_HEADER.to_owned());
            }
        }
        None => next.signed_headers.retain(|h| h != TOKEN_HEADER),
    }
    next.signature = signature(
        parts,
        authority,
        payload_hash,
        &next,
        &real.secret_access_key,
    )?;
    // SECURITY: the phantom's Authorization (its access key id) is replaced whole.
    let mut value = HeaderValue::from_str(&format!(
        "{ALGORITHM} Credential={}/{}, SignedHeaders={}, Signature={}",
        next.access_key_id,
        canonical::scope(&next.date, &next.region, &next.service),
        next.signed_headers.join(";"),
        next.signature
    ))
    .map_err(|_| SigV4Error::BadRealKeys("access key id"))?;
    value.set_sensitive(true);
    parts.headers.insert(AUTHORIZATION, value);
    Ok(())
}

/// The presigned form of [`resign`].
fn resign_query(
    parts: &mut Parts,
    authority: &str,
    payload_hash: &str,
    mut next: Signed,
    real: &AwsKeys,
) -> Result<(), SigV4Error> {
    let credential = format!(
        "{}/{}",
        next.access_key_id,
        canonical::scope(&next.date, &next.region, &next.service)
    );
    // SECURITY: X-Amz-Credential names the phantom and X-Amz-Security-Token is the
    // phantom's token: both are rewritten, the phantom's signature dropped.
    let mut query: Vec<String> = Vec::new();
    for pair in parts
        .uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let name = pair.split_once('=').map_or(pair, |(name, _)| name);
        match canonical::decode(name).as_slice() {
            n if n == Q_SIGNATURE.as_bytes() || n == Q_TOKEN.as_bytes() => {}
            n if n == Q_CREDENTIAL.as_bytes() => {
                query.push(format!("{name}={}", encoded(&credential)));
            }
            _ => query.push(pair.to_owned()),
        }
    }
    if let Some(token) = &real.session_token {
        query.push(format!("{Q_TOKEN}={}", encoded(token)));
    }
    parts.uri = with_query(&parts.uri, &query.join("&"))?;
    next.signature = signature(
        parts,
        authority,
        payload_hash,
        &next,
        &real.secret_access_key,
    )?;
    query.push(format!("{Q_SIGNATURE}={}", next.signature));
    parts.uri = with_query(&parts.uri, &query.join("&"))?;
    Ok(())
}

/// `uri` with its query replaced by `query`.
fn with_query(uri: &Uri, query: &str) -> Result<Uri, SigV4Error> {
    let mut parts = uri.clone().into_parts();
    let path_and_query = PathAndQuery::try_from(format!("{}?{query}", uri.path()))
        .map_err(|_| SigV4Error::BadRealKeys("credential"))?;
    parts.path_and_query = Some(path_and_query);
    Uri::from_parts(parts).map_err(|_| SigV4Error::BadRealKeys("credential"))
}
