//! `application/x-www-form-urlencoded` bodies built in zeroizing buffers, and the HTTP
//! Basic client authentication of RFC 6749 §2.3.1.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::HeaderValue;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use zeroize::Zeroizing;

/// What the URL standard's form encoding leaves alone: ASCII alphanumerics and `*-._`.
const FORM: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'*')
    .remove(b'-')
    .remove(b'.')
    .remove(b'_');

/// `value` form-encoded (a space becomes `%20`, which every form decoder reads as a space).
pub(crate) fn encode(value: &str) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::with_capacity(value.len() * 3));
    for piece in utf8_percent_encode(value, FORM) {
        out.push_str(piece);
    }
    out
}

/// `name=value&…`, every name and value encoded.
pub(crate) fn body(pairs: &[(&str, &str)]) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::new());
    for (i, (name, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(&encode(name));
        out.push('=');
        out.push_str(&encode(value));
    }
    out
}

/// A body whose buffer is zeroized when the last clone of the `Bytes` is dropped.
pub(crate) fn zeroizing_bytes(text: Zeroizing<String>) -> Bytes {
    Bytes::from_owner(text)
}

/// The `Authorization: Basic` value for a client (RFC 6749 §2.3.1: id and secret are
/// form-encoded before they are joined and base64-encoded, as Go's x/oauth2 does), marked
/// sensitive so HTTP/2 never indexes it. Returns the base64 credential too, for scrubbing.
pub(crate) fn basic(
    client_id: &str,
    client_secret: &str,
) -> Result<(HeaderValue, Zeroizing<String>), http::header::InvalidHeaderValue> {
    let mut pair = encode(client_id);
    pair.push(':');
    pair.push_str(&encode(client_secret));
    let credential = Zeroizing::new(STANDARD.encode(pair.as_bytes()));
    let text = Zeroizing::new(format!("Basic {}", credential.as_str()));
    let mut value = HeaderValue::from_str(&text)?;
    value.set_sensitive(true);
    Ok((value, credential))
}
