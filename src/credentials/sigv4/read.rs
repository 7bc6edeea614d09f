//! Reading a request's SigV4 authorization: the `Authorization` header or the presigned
//! query, every field checked for its shape, so that what is later written back into
//! the request (region, service, signed header names) can hold no delimiter or control
//! character.

use http::HeaderMap;
use http::HeaderValue;
use http::request::Parts;

use super::canonical::{self, ALGORITHM, TERMINATOR};
use super::{Q_ALGORITHM, Q_CREDENTIAL, Q_DATE, Q_SIGNATURE, Q_SIGNED_HEADERS, SigV4Error};
use super::{Q_TOKEN, Signed};

/// The only value of `name` in `headers`; `Err` when it appears more than once.
pub(super) fn single<'a>(
    headers: &'a HeaderMap,
    name: &str,
) -> Result<Option<&'a HeaderValue>, ()> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    match values.next() {
        Some(_) => Err(()),
        None => Ok(first),
    }
}

/// An `Authorization` value of an AWS scheme (SigV4, SigV4a or SigV2); other schemes
/// (`Bearer`, …) are not AWS signatures and are left to the caller.
pub(super) fn is_aws_scheme(value: &str) -> bool {
    value.starts_with("AWS4-") || value.starts_with("AWS ")
}

/// A query holding an AWS signature (SigV4 presigned, or SigV2's `AWSAccessKeyId`).
pub(super) fn is_presigned(query: &str) -> bool {
    pairs(query).any(|(name, _)| {
        [Q_ALGORITHM, Q_CREDENTIAL, Q_SIGNATURE, "AWSAccessKeyId"]
            .iter()
            .any(|n| name.as_slice() == n.as_bytes())
    })
}

/// The `Authorization: AWS4-HMAC-SHA256 …` form; `x-amz-date` comes from its header.
pub(super) fn parse_header(value: &str, parts: &Parts) -> Result<Signed, SigV4Error> {
    use SigV4Error::MalformedHeader as Bad;
    let rest = match value.strip_prefix(ALGORITHM) {
        Some(rest) if rest.starts_with([' ', '\t']) => rest,
        _ => {
            return Err(unsupported(
                value.split([' ', '\t']).next().unwrap_or(value),
            ));
        }
    };
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for field in rest.split(',').map(str::trim) {
        let (name, text) = field.split_once('=').ok_or(Bad("a field without `=`"))?;
        let slot = match name {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed_headers,
            "Signature" => &mut signature,
            _ => return Err(Bad("an unknown field")),
        };
        if slot.replace(text).is_some() {
            return Err(Bad("a repeated field"));
        }
    }
    let amz_date = match single(&parts.headers, "x-amz-date") {
        Err(()) => return Err(Bad("more than one X-Amz-Date")),
        Ok(None) => return Err(SigV4Error::NoDate),
        Ok(Some(v)) => v.to_str().map_err(|_| Bad("X-Amz-Date is not text"))?,
    };
    signed(
        credential.ok_or(Bad("no Credential"))?,
        signed_headers.ok_or(Bad("no SignedHeaders"))?,
        signature.ok_or(Bad("no Signature"))?,
        amz_date,
        false,
    )
    .map_err(Bad)
}

/// The presigned form: `X-Amz-Algorithm`, `X-Amz-Credential`, `X-Amz-Date`,
/// `X-Amz-SignedHeaders`, `X-Amz-Signature` (percent-decoded).
pub(super) fn parse_query(query: &str) -> Result<Signed, SigV4Error> {
    use SigV4Error::MalformedQuery as Bad;
    let param = |name| query_param(query, name).map_err(Bad);
    match param(Q_ALGORITHM)?.as_deref() {
        Some(ALGORITHM) => {}
        Some(other) => return Err(unsupported(other)),
        None if param("AWSAccessKeyId")?.is_some() => return Err(unsupported("AWS ")),
        None => return Err(Bad("no X-Amz-Algorithm")),
    }
    param(Q_TOKEN)?; // only to refuse a repeated token
    signed(
        &param(Q_CREDENTIAL)?.ok_or(Bad("no X-Amz-Credential"))?,
        &param(Q_SIGNED_HEADERS)?.ok_or(Bad("no X-Amz-SignedHeaders"))?,
        &param(Q_SIGNATURE)?.ok_or(Bad("no X-Amz-Signature"))?,
        &param(Q_DATE)?.ok_or(Bad("no X-Amz-Date"))?,
        true,
    )
    .map_err(Bad)
}

/// The decoded value of the query parameter `name`; `Err` when it is repeated.
pub(super) fn query_param(query: &str, name: &str) -> Result<Option<String>, &'static str> {
    let mut found = pairs(query).filter(|(n, _)| n.as_slice() == name.as_bytes());
    let first = found.next();
    if found.next().is_some() {
        return Err("a repeated X-Amz-* parameter");
    }
    first
        .map(|(_, value)| String::from_utf8(value).map_err(|_| "a parameter that is not UTF-8"))
        .transpose()
}

/// The query's pairs, percent-decoded.
fn pairs(query: &str) -> impl Iterator<Item = (Vec<u8>, Vec<u8>)> + '_ {
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        (canonical::decode(name), canonical::decode(value))
    })
}

fn unsupported(scheme: &str) -> SigV4Error {
    SigV4Error::Unsupported(match scheme {
        "AWS4-ECDSA-P256-SHA256" => "SigV4a (AWS4-ECDSA-P256-SHA256, multi-region signing)",
        "AWS" | "AWS " => "AWS signature version 2",
        _ => "this signing algorithm",
    })
}

/// A [`Signed`] from its text fields, each checked.
fn signed(
    credential: &str,
    signed_headers: &str,
    signature: &str,
    amz_date: &str,
    presigned: bool,
) -> Result<Signed, &'static str> {
    let scope: Vec<&str> = credential.split('/').collect();
    let [access_key_id, date, region, service, TERMINATOR] = scope[..] else {
        return Err("a Credential that is not AKID/YYYYMMDD/REGION/SERVICE/aws4_request");
    };
    check_access_key_id(access_key_id)?;
    if !(date.len() == 8 && date.bytes().all(|b| b.is_ascii_digit())) {
        return Err("a Credential date that is not YYYYMMDD");
    }
    if ![region, service]
        .iter()
        .all(|s| !s.is_empty() && s.bytes().all(is_scope_byte))
    {
        return Err("a Credential region or service with characters other than a-z 0-9 . _ -");
    }
    let date_shape = amz_date.len() == 16
        && amz_date.bytes().enumerate().all(|(i, b)| match i {
            8 => b == b'T',
            15 => b == b'Z',
            _ => b.is_ascii_digit(),
        });
    if !date_shape {
        return Err("an X-Amz-Date that is not YYYYMMDDTHHMMSSZ");
    }
    if &amz_date[..8] != date {
        return Err("a Credential date that is not the day of X-Amz-Date");
    }
    let names: Vec<String> = signed_headers.split(';').map(str::to_owned).collect();
    let name_ok = |n: &String| !n.is_empty() && n.bytes().all(is_header_name_byte);
    if !names.iter().all(name_ok) {
        return Err("SignedHeaders that are not lower-case header names separated by `;`");
    }
    let hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
    if !(signature.len() == 64 && signature.bytes().all(hex)) {
        return Err("a Signature that is not 64 lower-case hex digits");
    }
    Ok(Signed {
        access_key_id: access_key_id.to_owned(),
        date: date.to_owned(),
        region: region.to_owned(),
        service: service.to_owned(),
        signed_headers: names,
        signature: signature.to_owned(),
        amz_date: amz_date.to_owned(),
        presigned,
    })
}

/// An access key id: letters, digits, `.`, `_`, `-` (AWS's are upper-case alphanumeric;
/// S3-compatible stores allow a little more), never a delimiter of the Credential.
pub(super) fn check_access_key_id(id: &str) -> Result<(), &'static str> {
    if id.is_empty() || !id.bytes().all(is_scope_byte) {
        return Err("an access key id with characters other than A-Z a-z 0-9 . _ -");
    }
    Ok(())
}

fn is_scope_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')
}

/// A lower-case header-name character (RFC 9110 token, upper case excluded).
fn is_header_name_byte(b: u8) -> bool {
    b.is_ascii_lowercase()
        || b.is_ascii_digit()
        || matches!(
            b,
            b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.'
        )
        || matches!(b, b'^' | b'_' | b'`' | b'|' | b'~')
}
