//! AWS Signature Version 4 with phantom credentials: the agent signs with the phantom
//! keys keygate gave it; keygate [`verify`]s that signature with the phantom secret (a
//! request not signed by the phantom is refused), then [`resign`]s the same request with
//! the real keys: the same x-amz-date, region, service, signed headers and payload hash,
//! the real access key id and session token. The phantom access key id, secret and
//! session token are nowhere in the request that leaves (`refusal_tests.rs` and
//! `botocore_tests.rs` check every header and the URI).
//!
//! Both forms are handled: the `Authorization: AWS4-HMAC-SHA256 Credential=…,
//! SignedHeaders=…, Signature=…` header, and presigned URLs (`X-Amz-Algorithm`,
//! `X-Amz-Credential`, … `X-Amz-Signature` in the query), re-signed in the query.
//!
//! # What the caller decides
//! - `authority`: the host the client signed, i.e. the `Host` header it sent (HTTP/1.1)
//!   or its `:authority` (HTTP/2, `parts.uri.authority()`). The default port (`:443`, or
//!   `:80` for an `http://` URI) is dropped, as botocore does; any other port is signed.
//!   The request must leave with that same host, since it is signed.
//! - `payload_hash`: [`declared_payload_hash`] when the client declared one, else
//!   [`sha256_hex`] of the body. Signed aws-chunked bodies
//!   (`STREAMING-AWS4-HMAC-SHA256-PAYLOAD…`) are refused: each chunk carries a signature
//!   chained from the phantom key, which re-signing the head cannot fix.
//!
//! Only what the client signed is covered: headers outside SignedHeaders (User-Agent,
//! for one) are not, here or at AWS.
//!
//! # Time
//! Neither function looks at the clock. The re-signed request keeps the client's
//! x-amz-date (and X-Amz-Expires), so AWS enforces its usual window (15 minutes of skew;
//! a presigned URL's expiry) exactly as if keygate were not there: a client with a bad
//! clock gets AWS's own `RequestTimeTooSkewed`, and a phantom-signed request captured
//! and replayed later is refused upstream once its window has passed.
//!
//! # Canonical form
//! botocore is the reference (`canonical.rs`): non-S3 services sign the path normalized
//! and encoded a second time, S3 signs it as sent; the service named in the credential
//! scope picks the mode, for verifying and re-signing alike. Since a request is re-signed
//! only after it verified, any canonical difference between keygate and a client shows up
//! as a refusal, never as a request re-signed differently from what the client meant.
//!
//! # Why not the `aws-sigv4` crate
//! It was evaluated: with `default-features = false, features = ["sign-http", "http1"]`
//! it adds 22 crates to the build, among them a second HTTP stack (http 0.2, http-body
//! 0.4, through aws-smithy-types 1.4) and a second crypto stack (RustCrypto sha2 + hmac)
//! beside aws-lc-rs; its current release needs Rust 1.94, above this crate's 1.90, so
//! the resolver falls back to 1.3. Its API signs "every header handed in, plus host and
//! x-amz-date, plus the token", which can reproduce an arbitrary client's SignedHeaders
//! only indirectly; it form-decodes the query (`+` becomes a space, unlike botocore); and
//! it `expect`s on inputs a proxy gets from the network (a non-UTF-8 header value, a URI
//! without authority). The arithmetic itself is about 150 lines over aws-lc-rs, which
//! rustls already builds.

mod canonical;
mod error;
mod read;
mod resign;

use http::header::AUTHORIZATION;
use http::request::Parts;
use http::uri::Uri;
use zeroize::Zeroizing;

use canonical::PathMode;
pub use canonical::sha256_hex;
pub use error::SigV4Error;
use read::{is_aws_scheme, is_presigned, parse_header, parse_query, query_param, single};
pub use resign::resign;

/// The session-token header (lower case, as hyper stores names).
const TOKEN_HEADER: &str = "x-amz-security-token";
/// The presigned query parameters.
const Q_ALGORITHM: &str = "X-Amz-Algorithm";
const Q_CREDENTIAL: &str = "X-Amz-Credential";
const Q_DATE: &str = "X-Amz-Date";
const Q_SIGNED_HEADERS: &str = "X-Amz-SignedHeaders";
const Q_SIGNATURE: &str = "X-Amz-Signature";
const Q_TOKEN: &str = "X-Amz-Security-Token";
/// The payload hash of S3 presigned URLs and of clients that do not sign the body.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// Payload markers whose body chunks are each signed with the (phantom) key.
const SIGNED_CHUNKS: &str = "STREAMING-AWS4-";

/// A set of AWS credentials, phantom or real. `Debug` shows the access key id only.
#[derive(Clone)]
pub struct AwsKeys {
    pub access_key_id: String,
    pub secret_access_key: Zeroizing<String>,
    pub session_token: Option<Zeroizing<String>>,
}

impl std::fmt::Debug for AwsKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsKeys")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// A request's SigV4 authorization, as [`parse`] read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signed {
    pub access_key_id: String,
    /// The scope's date, `YYYYMMDD` (the first 8 characters of `amz_date`).
    pub date: String,
    pub region: String,
    pub service: String,
    /// Lower-case header names, in the client's order (sorted, for every AWS SDK).
    pub signed_headers: Vec<String>,
    /// 64 lower-case hex digits.
    pub signature: String,
    /// `YYYYMMDDTHHMMSSZ`, from `X-Amz-Date` (header, or query when presigned).
    pub amz_date: String,
    /// Signed in the query (`X-Amz-Signature`) rather than the `Authorization` header.
    pub presigned: bool,
}

/// Reads the SigV4 authorization of a request: the `Authorization` header or the
/// presigned query. `Ok(None)` when the request is not AWS-signed at all.
pub fn parse(parts: &Parts) -> Result<Option<Signed>, SigV4Error> {
    let header = match single(&parts.headers, AUTHORIZATION.as_str()) {
        Err(()) => return Err(SigV4Error::MalformedHeader("more than one Authorization")),
        Ok(v) => v.map(|v| {
            v.to_str()
                .map_err(|_| SigV4Error::MalformedHeader("not text"))
        }),
    }
    .transpose()?
    .filter(|v| is_aws_scheme(v));
    let query = parts.uri.query().filter(|q| is_presigned(q));
    match (header, query) {
        (Some(_), Some(_)) => Err(SigV4Error::SignedTwice),
        (Some(value), None) => parse_header(value, parts).map(Some),
        (None, Some(query)) => parse_query(query).map(Some),
        (None, None) => Ok(None),
    }
}

/// The payload hash the client declared, when the body need not be hashed: its
/// `x-amz-content-sha256` header, or `UNSIGNED-PAYLOAD` for a presigned S3 URL (what
/// botocore's presigner signs). `None`: hash the body ([`sha256_hex`]).
pub fn declared_payload_hash(parts: &Parts, signed: &Signed) -> Option<String> {
    if let Some(v) = parts.headers.get("x-amz-content-sha256") {
        return v.to_str().ok().map(str::to_owned);
    }
    let s3 = PathMode::for_service(&signed.service) == PathMode::Single;
    (signed.presigned && s3).then(|| UNSIGNED_PAYLOAD.to_owned())
}

/// Checks that `signed` is `keys`'s signature of the request: the access key id and any
/// session token are the phantom's, and the signature (compared in constant time) is
/// the one `keys.secret_access_key` makes. The time is not checked (see the module doc).
pub fn verify(
    parts: &Parts,
    authority: &str,
    payload_hash: &str,
    signed: &Signed,
    keys: &AwsKeys,
) -> Result<(), SigV4Error> {
    refuse_signed_chunks(payload_hash)?;
    let same = |a: &str, b: &str| {
        aws_lc_rs::constant_time::verify_slices_are_equal(a.as_bytes(), b.as_bytes()).is_ok()
    };
    if !same(&signed.access_key_id, &keys.access_key_id) {
        return Err(SigV4Error::NotThePhantom);
    }
    match (request_token(parts, signed.presigned)?, &keys.session_token) {
        (Some(sent), Some(phantom)) if !same(&sent, phantom) => {
            return Err(SigV4Error::WrongSessionToken);
        }
        (Some(_), None) => return Err(SigV4Error::WrongSessionToken),
        _ => {}
    }
    let expected = signature(
        parts,
        authority,
        payload_hash,
        signed,
        &keys.secret_access_key,
    )?;
    if same(&expected, &signed.signature) {
        Ok(())
    } else {
        let mode = match PathMode::for_service(&signed.service) {
            PathMode::Double => "path normalized and encoded twice",
            PathMode::Single => "S3: path signed as sent",
        };
        Err(SigV4Error::SignatureMismatch {
            service: signed.service.clone(),
            region: signed.region.clone(),
            mode,
        })
    }
}

/// The signature `secret` makes of the request in `signed`'s scope and signed headers.
fn signature(
    parts: &Parts,
    authority: &str,
    payload_hash: &str,
    signed: &Signed,
    secret: &str,
) -> Result<String, SigV4Error> {
    let request = canonical::request(&canonical::Parts {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query(),
        presigned: signed.presigned,
        headers: &parts.headers,
        host: signed_host(authority, &parts.uri),
        signed_headers: &signed.signed_headers,
        payload_hash,
        mode: PathMode::for_service(&signed.service),
    })
    .map_err(SigV4Error::MissingSignedHeader)?;
    let scope = (
        signed.date.as_str(),
        signed.region.as_str(),
        signed.service.as_str(),
    );
    Ok(canonical::signature(
        secret,
        &signed.amz_date,
        scope,
        &request,
    ))
}

/// `authority` without its default port: `:80` for an `http://` URI, else `:443`
/// (keygate's intercepted requests are HTTPS).
fn signed_host<'a>(authority: &'a str, uri: &Uri) -> &'a str {
    let default = if uri.scheme_str() == Some("http") {
        ":80"
    } else {
        ":443"
    };
    authority.strip_suffix(default).unwrap_or(authority)
}

fn refuse_signed_chunks(payload_hash: &str) -> Result<(), SigV4Error> {
    if payload_hash.starts_with(SIGNED_CHUNKS) {
        return Err(SigV4Error::SignedChunks);
    }
    Ok(())
}

/// The session token the request carries (header, or query when presigned).
fn request_token(parts: &Parts, presigned: bool) -> Result<Option<String>, SigV4Error> {
    if presigned {
        let query = parts.uri.query().unwrap_or("");
        let token = query_param(query, Q_TOKEN).map_err(SigV4Error::MalformedQuery)?;
        return Ok(token);
    }
    match single(&parts.headers, TOKEN_HEADER) {
        Err(()) => Err(SigV4Error::WrongSessionToken),
        Ok(None) => Ok(None),
        Ok(Some(v)) => Ok(Some(String::from_utf8_lossy(v.as_bytes()).into_owned())),
    }
}

/// `value` URI-encoded the AWS way, as a query value.
fn encoded(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    canonical::encode(value.as_bytes(), false, &mut out);
    out
}

#[cfg(test)]
mod botocore_tests;
#[cfg(test)]
mod refusal_tests;
#[cfg(test)]
mod tests;
