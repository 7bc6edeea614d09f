//! Hop-by-hop header handling (RFC 9110 §7.6.1) and the client's identity.

use base64::Engine;
use http::HeaderMap;
use http::header::{self, HeaderName};

/// Headers that describe one hop, never the end-to-end message.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Removes hop-by-hop headers, including every header named in `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // SECURITY: a header listed in Connection is meant for this hop only; forwarding it
    // would let a client smuggle per-hop semantics (or a Proxy-* credential) upstream.
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    // SECURITY: Proxy-Authorization carries the client's credential for keygate itself;
    // it must never reach an upstream (SPEC §6).
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
}

/// The proxy-auth username, when the client sent `Proxy-Authorization: Basic`. Only the
/// username is ever read: the password never leaves this function.
pub fn proxy_auth_user(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::PROXY_AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let end = decoded
        .iter()
        .position(|b| *b == b':')
        .unwrap_or(decoded.len());
    let user = String::from_utf8(decoded[..end].to_vec()).ok()?;
    let printable = !user.is_empty() && user.len() <= 128 && user.chars().all(|c| !c.is_control());
    printable.then_some(user)
}

/// How far past `limits.max_head_bytes` / `limits.max_headers` the HTTP parsers read
/// before they cut a head off themselves (a bare 431 and a close). Up to there keygate
/// sees the whole head and answers with its own 431 and a reason; beyond, the parser
/// keeps keygate from buffering without bound.
pub const PARSER_SLACK: usize = 2;

/// The headers hyper's HTTP/1 parser takes when no cap is set (and keeps on the stack).
pub const HYPER_INLINE_HEADERS: usize = 100;

/// Bytes of a request head as keygate counts them: the target plus every header name
/// and value (with `: ` and CRLF).
pub fn head_size(uri: &http::Uri, headers: &HeaderMap) -> usize {
    let target = uri
        .path_and_query()
        .map_or(0, |pq| pq.as_str().len())
        .max(uri.authority().map_or(0, |a| a.as_str().len()));
    target
        + headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 4)
            .sum::<usize>()
}

/// `Err` with what was too large when a request head is over `limits`.
pub fn check_head(
    uri: &http::Uri,
    headers: &HeaderMap,
    limits: &crate::config::limits::Limits,
) -> Result<(), super::respond::ProxyError> {
    use super::respond::ProxyError;
    if headers.len() > limits.max_headers {
        return Err(ProxyError::HeadTooLarge(format!(
            "the request has {}, more than limits.max_headers ({})",
            crate::text::count_of(headers.len(), "header", "headers"),
            limits.max_headers
        )));
    }
    let size = head_size(uri, headers);
    if size > limits.max_head_bytes {
        return Err(ProxyError::HeadTooLarge(format!(
            "the request head is {size} bytes, more than limits.max_head_bytes ({})",
            limits.max_head_bytes
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn strips_hop_by_hop_and_connection_named_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, X-Secret-Hop , close"),
        );
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(
            "proxy-authorization",
            HeaderValue::from_static("Basic dTpw"),
        );
        h.insert("proxy-connection", HeaderValue::from_static("keep-alive"));
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        h.insert("x-api-key", HeaderValue::from_static("dummy"));
        h.insert("content-length", HeaderValue::from_static("3"));
        strip_hop_by_hop(&mut h);
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, vec!["content-length", "x-api-key"]);
    }

    #[test]
    fn proxy_auth_username_only() {
        let mut h = HeaderMap::new();
        // "agent-7:hunter2"
        h.insert(
            "proxy-authorization",
            HeaderValue::from_static("Basic YWdlbnQtNzpodW50ZXIy"),
        );
        assert_eq!(proxy_auth_user(&h).as_deref(), Some("agent-7"));
        h.insert(
            "proxy-authorization",
            HeaderValue::from_static("Bearer abc"),
        );
        assert_eq!(proxy_auth_user(&h), None);
        h.insert("proxy-authorization", HeaderValue::from_static("Basic !!!"));
        assert_eq!(proxy_auth_user(&h), None);
    }
}
