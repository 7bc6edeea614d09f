//! Compressed responses from bound hosts: scrub can only search a body it can read, so
//! keygate decodes the body's content codings as a stream and sends the client the
//! decoded body, or refuses the response (502) when it cannot decode it. It never
//! passes a body it could not search.
//!
//! The steps, in the order a response meets them:
//!
//! * [`accept`]: the request's `Accept-Encoding` asks only for codings keygate decodes.
//! * [`plan`] (here): from the response head, decode (which codings, in decoding order),
//!   pass (no coding) or refuse (an unknown, empty or too deeply stacked coding, or a
//!   transfer coding other than chunked).
//! * [`body::Decoded`]: the body wrapper; [`chain::Chain`] runs the decoders
//!   (`flate`: gzip and deflate, `brotli`, `zstd`) in bounded steps and cuts a
//!   decompression bomb off at `limits.max_decoded_ratio`.
//!
//! Hosts without a bound secret never come here: their bodies pass as they are.

pub mod accept;
pub mod body;
mod brotli;
pub mod chain;
mod flate;
mod zstd;

use std::fmt;

use http::HeaderMap;
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH, TRANSFER_ENCODING};

use crate::proxy::respond::ProxyError;

/// Most content codings keygate undoes on one body (`gzip, br` is two). Each is a
/// decoder with its own window, so a longer stack would multiply what one response can
/// make keygate hold; no real server stacks more than two.
pub const MAX_STACKED_CODINGS: usize = 4;

/// A content coding keygate decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    /// `gzip` or `x-gzip` (RFC 1952, one or more members).
    Gzip,
    /// `deflate`: zlib-wrapped (RFC 1950) as RFC 9110 has it, or raw deflate as some
    /// servers send it.
    Deflate,
    /// `br` (RFC 7932).
    Brotli,
    /// `zstd` (RFC 8878), windows up to 8 MiB (RFC 9659).
    Zstd,
}

impl Coding {
    /// The coding a `Content-Encoding` token names, if keygate decodes it.
    pub fn from_token(token: &str) -> Option<Coding> {
        match token.to_ascii_lowercase().as_str() {
            "gzip" | "x-gzip" => Some(Coding::Gzip),
            "deflate" => Some(Coding::Deflate),
            "br" => Some(Coding::Brotli),
            "zstd" => Some(Coding::Zstd),
            _ => None,
        }
    }

    /// The coding's name in `Content-Encoding`.
    pub fn name(self) -> &'static str {
        match self {
            Coding::Gzip => "gzip",
            Coding::Deflate => "deflate",
            Coding::Brotli => "br",
            Coding::Zstd => "zstd",
        }
    }
}

/// A fresh decoder for `coding`.
fn stage_for(coding: Coding) -> Box<dyn chain::Stage> {
    match coding {
        Coding::Gzip => Box::<flate::Gzip>::default(),
        Coding::Deflate => Box::<flate::Deflate>::default(),
        Coding::Brotli => Box::<brotli::Brotli>::default(),
        Coding::Zstd => Box::<zstd::Zstd>::default(),
    }
}

impl fmt::Display for Coding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What keygate does with the body of a response from a bound host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Not content-coded (or only `identity`): the body is scrubbed as it is.
    Pass,
    /// Decode these codings, in this order (the reverse of the header's), then scrub.
    Decode(Vec<Coding>),
}

/// Decides from a response head. `Err` says why the body cannot be read.
pub fn plan(headers: &HeaderMap) -> Result<Plan, String> {
    check_transfer_coding(headers)?;
    let mut tokens = Vec::new();
    for value in headers.get_all(CONTENT_ENCODING) {
        let text = value
            .to_str()
            .map_err(|_| "its Content-Encoding is not ASCII text".to_string())?;
        tokens.extend(text.split(',').map(str::trim).filter(|t| !t.is_empty()));
    }
    if tokens.is_empty() {
        return match headers.contains_key(CONTENT_ENCODING) {
            true => Err("its Content-Encoding is empty".into()),
            false => Ok(Plan::Pass),
        };
    }
    let mut codings = Vec::new();
    for token in tokens {
        if token.eq_ignore_ascii_case("identity") {
            continue;
        }
        match Coding::from_token(token) {
            Some(coding) => codings.push(coding),
            None => {
                return Err(format!(
                    "its Content-Encoding `{}` is not one keygate decodes (gzip, deflate, br, zstd)",
                    printable(token)
                ));
            }
        }
    }
    if codings.len() > MAX_STACKED_CODINGS {
        return Err(format!(
            "it stacks {} content codings; keygate decodes at most {MAX_STACKED_CODINGS}",
            codings.len()
        ));
    }
    codings.reverse();
    Ok(match codings.is_empty() {
        true => Plan::Pass,
        false => Plan::Decode(codings),
    })
}

/// `Err` for an HTTP/1.1 transfer coding other than `chunked`: hyper undoes only the
/// chunked framing and leaves the header (`gzip, chunked`) in place, so the body it
/// hands over is still gzip, and the header itself is hop-by-hop and stripped.
fn check_transfer_coding(headers: &HeaderMap) -> Result<(), String> {
    for value in headers.get_all(TRANSFER_ENCODING) {
        let text = value.to_str().unwrap_or("?");
        let other = text
            .split(',')
            .map(str::trim)
            .any(|t| !t.is_empty() && !t.eq_ignore_ascii_case("chunked"));
        if other {
            return Err(format!(
                "its Transfer-Encoding `{}` has a transfer coding other than chunked",
                printable(text)
            ));
        }
    }
    Ok(())
}

/// At most 40 characters of `text`, visible ASCII only (it goes into a header).
fn printable(text: &str) -> String {
    text.chars()
        .take(40)
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect()
}

/// Applies [`plan`] to the head of a response from a bound host: the codings to
/// decode (with `Content-Encoding` and `Content-Length` removed, since the client gets
/// the decoded body), `None` to pass the body as it is, or the 502 to answer instead.
/// A body that is already over (a HEAD or 304 answer) has nothing to decode: its head
/// stays as the upstream sent it.
pub fn prepare(
    head: &mut http::response::Parts,
    body_is_empty: bool,
) -> Result<Option<Vec<Coding>>, ProxyError> {
    if body_is_empty {
        return Ok(None);
    }
    match plan(&head.headers) {
        Ok(Plan::Pass) => Ok(None),
        Ok(Plan::Decode(codings)) => {
            // SECURITY: the client gets the decoded (and scrubbed) body: a coding label
            // left in place would make it decode plain bytes, and the upstream's length
            // is that of the encoded body.
            head.headers.remove(CONTENT_ENCODING);
            head.headers.remove(CONTENT_LENGTH);
            Ok(Some(codings))
        }
        Err(why) => Err(ProxyError::Undecodable(format!(
            "the response from a host a secret is bound to cannot be scrubbed: {why}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn decode(codings: &[Coding]) -> Result<Plan, String> {
        Ok(Plan::Decode(codings.to_vec()))
    }

    #[test]
    fn plain_bodies_pass() {
        assert_eq!(plan(&headers(&[])), Ok(Plan::Pass));
        assert_eq!(
            plan(&headers(&[("content-encoding", "identity")])),
            Ok(Plan::Pass)
        );
        assert_eq!(
            plan(&headers(&[("transfer-encoding", "chunked")])),
            Ok(Plan::Pass)
        );
    }

    #[test]
    fn known_codings_decode_last_applied_first() {
        use Coding::*;
        assert_eq!(
            plan(&headers(&[("content-encoding", "gzip")])),
            decode(&[Gzip])
        );
        assert_eq!(
            plan(&headers(&[("content-encoding", "X-GZIP")])),
            decode(&[Gzip])
        );
        assert_eq!(
            plan(&headers(&[("content-encoding", "deflate")])),
            decode(&[Deflate])
        );
        assert_eq!(
            plan(&headers(&[("content-encoding", "gzip, br")])),
            decode(&[Brotli, Gzip])
        );
        assert_eq!(
            plan(&headers(&[
                ("content-encoding", "zstd"),
                ("content-encoding", "identity, gzip")
            ])),
            decode(&[Gzip, Zstd])
        );
    }

    #[test]
    fn unknown_empty_and_deep_codings_are_refused_with_a_reason() {
        let why = plan(&headers(&[("content-encoding", "compress")])).unwrap_err();
        assert!(why.contains("`compress`"), "{why}");
        let why = plan(&headers(&[("content-encoding", "")])).unwrap_err();
        assert!(why.contains("empty"), "{why}");
        let why = plan(&headers(&[("content-encoding", " , ")])).unwrap_err();
        assert!(why.contains("empty"), "{why}");
        let why = plan(&headers(&[(
            "content-encoding",
            "gzip, gzip, gzip, gzip, gzip",
        )]))
        .unwrap_err();
        assert!(why.contains("at most 4"), "{why}");
        let why = plan(&headers(&[("content-encoding", "gzip, aes128gcm")])).unwrap_err();
        assert!(why.contains("aes128gcm"), "{why}");
    }

    #[test]
    fn a_transfer_coding_other_than_chunked_is_refused() {
        for te in ["gzip, chunked", "gzip", "chunked, gzip"] {
            let why = plan(&headers(&[("transfer-encoding", te)])).unwrap_err();
            assert!(why.contains("Transfer-Encoding"), "{te}: {why}");
        }
    }

    #[test]
    fn prepare_strips_the_coding_and_the_length_of_a_decoded_body() {
        let mut head = http::Response::builder()
            .header("content-encoding", "br")
            .header("content-length", "12")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        let before = head.headers.clone();
        assert_eq!(
            prepare(&mut head, true).unwrap(),
            None,
            "no body, no decoding"
        );
        assert_eq!(head.headers, before);
        assert_eq!(
            prepare(&mut head, false).unwrap(),
            Some(vec![Coding::Brotli])
        );
        assert!(head.headers.get("content-encoding").is_none());
        assert!(head.headers.get("content-length").is_none());

        head.headers
            .insert("content-encoding", HeaderValue::from_static("lzma"));
        let err = prepare(&mut head, false).unwrap_err();
        assert_eq!(err.code(), "undecodable-response");
        assert_eq!(err.status(), http::StatusCode::BAD_GATEWAY);
    }
}
