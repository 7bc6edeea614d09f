//! Where a dummy can hide in a request: header values (also inside `Basic`
//! credentials) and the URL.

use base64::Engine;
use http::HeaderValue;
use percent_encoding::percent_decode_str;

/// The decoded `user:password` of a `Basic` credential, if the value is one.
pub fn basic_credentials(value: &HeaderValue) -> Option<String> {
    let text = value.to_str().ok()?.trim();
    let (scheme, encoded) = text.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    String::from_utf8(bytes).ok()
}

/// True when `needle` is in a header value, raw or inside Basic credentials.
pub fn in_headers(headers: &http::HeaderMap, needle: &str) -> bool {
    headers.values().any(|v| {
        memchr::memmem::find(v.as_bytes(), needle.as_bytes()).is_some()
            || basic_credentials(v).is_some_and(|c| c.contains(needle))
    })
}

/// True when `needle` is in the URL's path or query, raw or percent-decoded.
pub fn in_url(uri: &http::Uri, needle: &str) -> bool {
    let Some(pq) = uri.path_and_query() else {
        return false;
    };
    pq.as_str().contains(needle)
        || percent_decode_str(pq.as_str())
            .decode_utf8_lossy()
            .contains(needle)
}

/// True when `needle` is in the query only, raw or percent-decoded.
pub fn in_query(uri: &http::Uri, needle: &str) -> bool {
    uri.query().is_some_and(|q| {
        q.contains(needle) || percent_decode_str(q).decode_utf8_lossy().contains(needle)
    })
}
