//! The `Accept-Encoding` of a request to a bound host, narrowed to what keygate decodes
//! and streams without delay.

use http::HeaderMap;
use http::header::{ACCEPT_ENCODING, HeaderValue};

/// The codings keygate asks bound hosts for. `zstd` is decoded when an upstream sends
/// it anyway, but not asked for: the pure-Rust decoder releases output only once it
/// leaves the window (up to 8 MiB) or the frame ends, which would hold a streamed
/// response (SSE) back.
const ASKED: &[&str] = &["gzip", "x-gzip", "deflate", "br", "identity"];

/// Rewrites `Accept-Encoding` to the client's codings that keygate decodes, in the
/// client's order and with its parameters (q-values); `identity` when none is left or
/// the client sent none.
pub fn restrict(headers: &mut HeaderMap) {
    let kept: Vec<String> = headers
        .get_all(ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|item| {
            let coding = item.split(';').next().unwrap_or("").trim();
            ASKED.iter().any(|c| c.eq_ignore_ascii_case(coding))
        })
        .map(str::to_string)
        .collect();
    let value = match kept.is_empty() {
        true => HeaderValue::from_static("identity"),
        false => HeaderValue::from_str(&kept.join(", "))
            .unwrap_or_else(|_| HeaderValue::from_static("identity")),
    };
    // SECURITY: a bound host's response must come in a coding keygate can decode, or it
    // cannot be scrubbed (and is refused with 502): the upstream is asked only for
    // those. `*`, zstd and unknown codings go; no header at all would mean "any coding".
    headers.insert(ACCEPT_ENCODING, value);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn restricted(values: &[&str]) -> String {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
        }
        restrict(&mut h);
        assert_eq!(h.get_all(ACCEPT_ENCODING).iter().count(), 1);
        h[ACCEPT_ENCODING].to_str().unwrap().to_string()
    }

    #[test]
    fn keeps_decodable_codings_in_order_with_their_q_values() {
        assert_eq!(
            restricted(&["gzip, deflate, br, zstd"]),
            "gzip, deflate, br"
        );
        assert_eq!(
            restricted(&["br;q=1.0, zstd;q=0.9, GZIP;q=0.5, *;q=0.1"]),
            "br;q=1.0, GZIP;q=0.5"
        );
        assert_eq!(
            restricted(&["zstd", "x-gzip ; q=0.3, identity;q=0"]),
            "x-gzip ; q=0.3, identity;q=0"
        );
    }

    #[test]
    fn nothing_decodable_or_nothing_sent_asks_for_identity() {
        assert_eq!(restricted(&[]), "identity");
        assert_eq!(restricted(&["zstd, compress, *"]), "identity");
        assert_eq!(restricted(&[""]), "identity");
    }
}
