//! The arithmetic of SigV4: the canonical request, the string to sign, the signing key
//! and the signature. Byte for byte what botocore computes (`botocore/auth.py`,
//! `SigV4Auth.canonical_request`), checked by `tests.rs` against AWS's published suite and
//! by `botocore_tests.rs` against botocore itself.

use std::fmt::Write as _;

use aws_lc_rs::{digest, hmac};
use http::HeaderMap;
use zeroize::Zeroizing;

/// The only algorithm keygate verifies and signs with.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// The last element of every credential scope.
pub const TERMINATOR: &str = "aws4_request";

/// How the request's path enters the canonical request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathMode {
    /// Every service but S3: the path as sent (already percent-encoded) loses its dot
    /// segments and empty segments, then is percent-encoded again (`%3A` → `%253A`).
    Double,
    /// S3 and its relatives: the path exactly as sent (`/` when empty), since object keys
    /// may legitimately hold `//` and `..`.
    Single,
}

impl PathMode {
    /// The mode botocore uses for `service` (the credential scope's service): S3SigV4Auth
    /// and its S3 Express and presigning variants sign the path as sent.
    pub fn for_service(service: &str) -> PathMode {
        match service {
            "s3" | "s3-object-lambda" | "s3express" | "s3-outposts" => PathMode::Single,
            _ => PathMode::Double,
        }
    }
}

/// What the canonical request is made of, as the caller determined it.
pub struct Parts<'a> {
    pub method: &'a str,
    /// The path as it appears in the request target (still percent-encoded).
    pub path: &'a str,
    /// The raw query, without `?`.
    pub query: Option<&'a str>,
    /// Leave `X-Amz-Signature` out of the canonical query (a presigned request).
    pub presigned: bool,
    pub headers: &'a HeaderMap,
    /// The value signed as `host` (the caller's authority, default port removed).
    pub host: &'a str,
    /// Lower-case names, in the order the client listed them.
    pub signed_headers: &'a [String],
    pub payload_hash: &'a str,
    pub mode: PathMode,
}

/// The canonical request, or the name of a signed header the request does not have.
pub fn request(p: &Parts<'_>) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(p.method.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(uri(p.path, p.mode).as_bytes());
    out.push(b'\n');
    out.extend_from_slice(query(p.query.unwrap_or(""), p.presigned).as_bytes());
    out.push(b'\n');
    for name in p.signed_headers {
        out.extend_from_slice(name.as_bytes());
        out.push(b':');
        if name == "host" {
            trim_all(p.host.as_bytes(), &mut out);
        } else {
            let mut values = p.headers.get_all(name.as_str()).iter().peekable();
            if values.peek().is_none() {
                return Err(name.clone());
            }
            for (i, value) in values.enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                trim_all(value.as_bytes(), &mut out);
            }
        }
        out.push(b'\n');
    }
    out.push(b'\n');
    out.extend_from_slice(p.signed_headers.join(";").as_bytes());
    out.push(b'\n');
    out.extend_from_slice(p.payload_hash.as_bytes());
    Ok(out)
}

/// The canonical URI of `path` in `mode`.
pub fn uri(path: &str, mode: PathMode) -> String {
    match mode {
        PathMode::Single if path.is_empty() => "/".to_owned(),
        PathMode::Single => path.to_owned(),
        PathMode::Double => {
            let mut out = String::with_capacity(path.len() + 8);
            encode(remove_dot_segments(path).as_bytes(), true, &mut out);
            out
        }
    }
}

/// botocore's `remove_dot_segments`: RFC 3986 §5.2.4 plus the removal of empty segments
/// (`//a//` → `/a/`) that AWS services require; an empty path is `/`.
fn remove_dot_segments(path: &str) -> String {
    if path.is_empty() {
        return "/".to_owned();
    }
    let mut kept: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                kept.pop();
            }
            other => kept.push(other),
        }
    }
    let first = if path.starts_with('/') { "/" } else { "" };
    let last = if path.ends_with('/') && !kept.is_empty() {
        "/"
    } else {
        ""
    };
    format!("{first}{}{last}", kept.join("/"))
}

/// The canonical query: each name and value percent-decoded, then encoded the AWS way,
/// sorted by name then value; `X-Amz-Signature` left out when `presigned`. Empty pairs
/// (`a=1&&b=2`) are skipped; a pair without `=` has an empty value. `+` is a literal
/// plus (`%2B`), not a space: AWS clients never send a form-encoded space in the query.
pub fn query(raw: &str, presigned: bool) -> String {
    let mut pairs: Vec<(String, String)> = raw
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .filter(|(name, _)| !(presigned && decode(name) == b"X-Amz-Signature"))
        .map(|(name, value)| (reencode(name), reencode(value)))
        .collect();
    pairs.sort();
    let mut out = String::with_capacity(raw.len() + 16);
    for (i, (name, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        let _ = write!(out, "{name}={value}");
    }
    out
}

/// Percent-decodes `raw` (an invalid escape stays as it is).
pub fn decode(raw: &str) -> Vec<u8> {
    percent_encoding::percent_decode_str(raw).collect()
}

fn reencode(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    encode(&decode(raw), false, &mut out);
    out
}

/// AWS's URI encoding: every byte but `A-Za-z0-9-_.~` (and `/` when `keep_slash`) as
/// `%XX` with upper-case hex.
pub fn encode(bytes: &[u8], keep_slash: bool, out: &mut String) {
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else if keep_slash && b == b'/' {
            out.push('/');
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

/// botocore's `' '.join(value.split())`: leading and trailing whitespace removed, every
/// inner run of spaces and tabs turned into one space.
fn trim_all(value: &[u8], out: &mut Vec<u8>) {
    let words = value
        .split(|b| matches!(b, b' ' | b'\t'))
        .filter(|w| !w.is_empty());
    for (i, word) in words.enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        out.extend_from_slice(word);
    }
}

/// `date/region/service/aws4_request`.
pub fn scope(date: &str, region: &str, service: &str) -> String {
    format!("{date}/{region}/{service}/{TERMINATOR}")
}

/// The hex signature of `canonical_request`, dated `amz_date` (`YYYYMMDDTHHMMSSZ`), in
/// the scope `date`/`region`/`service`, made with `secret`.
pub fn signature(
    secret: &str,
    amz_date: &str,
    (date, region, service): (&str, &str, &str),
    canonical_request: &[u8],
) -> String {
    let string_to_sign = format!(
        "{ALGORITHM}\n{amz_date}\n{}\n{}",
        scope(date, region, service),
        sha256_hex(canonical_request)
    );
    let key = signing_key(secret, date, region, service);
    hex(hmac::sign(&key, string_to_sign.as_bytes()).as_ref())
}

/// HMAC("AWS4" + secret, date) → region → service → "aws4_request".
fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> hmac::Key {
    let mut seed = Zeroizing::new(Vec::with_capacity(4 + secret.len()));
    seed.extend_from_slice(b"AWS4");
    seed.extend_from_slice(secret.as_bytes());
    let mut key = hmac::Key::new(hmac::HMAC_SHA256, &seed);
    for step in [date, region, service, TERMINATOR] {
        let tag = Zeroizing::new(hmac::sign(&key, step.as_bytes()).as_ref().to_vec());
        key = hmac::Key::new(hmac::HMAC_SHA256, &tag);
    }
    key
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(digest::digest(&digest::SHA256, bytes).as_ref())
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}
