//! The swap in request bodies (issue 14), opt-in per secret with `body: json|form|text`:
//! the dummy of a secret bound to the request's host, found in a body of that kind, is
//! replaced by the real value written the way that body writes values (JSON-escaped in
//! JSON, form-encoded in an urlencoded form, as is elsewhere).
//!
//! Streaming, like the scrubber it is built on ([`Scrubber`]): only a chunk's tail that
//! may begin a dummy is held back until the next chunk. The exchange decides whether the
//! length can be recomputed up front (a small body with a `Content-Length` is read whole,
//! within `limits.max_body_swap_buffer`) or the body goes on without one (chunked).
//!
//! A body with a `Content-Encoding` is not read (keygate does not decompress requests):
//! its dummy goes upstream unswapped, to a host the secret is bound to, and a warning
//! says why the upstream will refuse it.

use std::sync::Arc;

use bytes::Bytes;
use http::HeaderMap;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use zeroize::Zeroizing;

use super::scrubber::Scrubber;
use super::{ChunkFilter, FlowContext};
use crate::secrets::BodyMode;
use crate::secrets::reflect::Reflections;

/// What `application/x-www-form-urlencoded` leaves as is (the WHATWG URL standard's
/// urlencoded serializer): ASCII alphanumerics and `*-._`; a space becomes `+`.
const FORM: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'*')
    .remove(b'-')
    .remove(b'.')
    .remove(b'_');

/// How a request body is written, as far as the swap cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Written {
    Json,
    UrlEncoded,
    Multipart,
    Other,
}

impl Written {
    fn of(headers: &HeaderMap) -> Written {
        let Some(value) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
            return Written::Other;
        };
        let essence = value.split(';').next().unwrap_or("").trim();
        let essence = essence.to_ascii_lowercase();
        let subtype = essence.split('/').nth(1).unwrap_or("");
        if subtype == "json" || subtype.ends_with("+json") {
            Written::Json
        } else if essence == "application/x-www-form-urlencoded" {
            Written::UrlEncoded
        } else if essence == "multipart/form-data" {
            Written::Multipart
        } else {
            Written::Other
        }
    }

    /// The real value as this body writes it, when `mode` swaps in such a body.
    fn encode(self, mode: BodyMode, real: &str) -> Option<Zeroizing<Vec<u8>>> {
        let encoded = match (mode, self) {
            (BodyMode::Json | BodyMode::Text, Written::Json) => json_escaped(real),
            (BodyMode::Form | BodyMode::Text, Written::UrlEncoded) => form_encoded(real),
            (BodyMode::Form | BodyMode::Text, Written::Multipart)
            | (BodyMode::Text, Written::Other) => real.as_bytes().to_vec(),
            _ => return None,
        };
        Some(Zeroizing::new(encoded))
    }
}

/// `real` inside a JSON string: `"`, `\` and control characters escaped (`/` is not).
fn json_escaped(real: &str) -> Vec<u8> {
    let quoted = Zeroizing::new(serde_json::to_string(real).unwrap_or_default());
    let inner = quoted.get(1..quoted.len().saturating_sub(1)).unwrap_or("");
    inner.as_bytes().to_vec()
}

/// `real` as an urlencoded form writes a field value.
fn form_encoded(real: &str) -> Vec<u8> {
    let encoded = Zeroizing::new(utf8_percent_encode(real, FORM).to_string());
    encoded.replace("%20", "+").into_bytes()
}

/// The swap for one request body.
pub struct BodySwap {
    scrubber: Scrubber,
    /// The secrets whose dummies it replaces.
    names: Vec<String>,
}

impl std::fmt::Debug for BodySwap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodySwap")
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

impl BodySwap {
    /// The swap for the body of a request in `flow` with these headers, or `None` when
    /// no secret bound to its host swaps in such a body (or the body is encoded). Only
    /// intercepted requests: plain HTTP never gets a secret.
    pub fn for_request(flow: &FlowContext, headers: &HeaderMap) -> Option<BodySwap> {
        if !flow.intercepted {
            return None;
        }
        let written = Written::of(headers);
        let bound = flow.bound();
        let wanted: Vec<_> = bound
            .iter()
            .filter_map(|b| Some((b, b.body?)))
            .filter_map(|(b, mode)| Some((b, written.encode(mode, flow.value_for(b)?.expose())?)))
            .collect();
        if wanted.is_empty() {
            return None;
        }
        if headers.contains_key(CONTENT_ENCODING) {
            tracing::warn!(
                "{}:{}: a request body with a Content-Encoding is not swapped (keygate does not decompress requests); send it uncompressed for the body swap of {}",
                flow.host,
                flow.port,
                wanted
                    .iter()
                    .map(|(b, _)| b.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            return None;
        }
        let pairs: Vec<(&[u8], &[u8])> = wanted
            .iter()
            .map(|(b, encoded)| (b.dummy.as_bytes(), encoded.as_slice()))
            .collect();
        let reflections = Reflections::exact(&pairs)?;
        Some(BodySwap {
            scrubber: Scrubber::with(Arc::new(reflections)),
            names: wanted.iter().map(|(b, _)| b.name.clone()).collect(),
        })
    }

    /// The secrets this swap replaces the dummies of.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// True once a dummy has been replaced.
    pub fn swapped(&self) -> bool {
        self.scrubber.replaced() > 0
    }

    /// Swaps a whole body at once (one read within the buffer limit).
    pub fn swap_all(&mut self, body: &[u8]) -> Bytes {
        self.scrubber.scrub_all(body)
    }
}

impl ChunkFilter for BodySwap {
    fn filter(&mut self, chunk: Bytes) -> Bytes {
        self.scrubber.filter(chunk)
    }
    fn finish(&mut self) -> Bytes {
        ChunkFilter::finish(&mut self.scrubber)
    }
    // Trailers of a request are left as they are: the header swap does not look there
    // either (and the tripwire does not let another secret's dummy through in them:
    // hyper drops request trailers the upstream did not ask for).
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addon::testing::{DUMMY, binding, flow};
    use crate::secrets::SecretValue;

    fn flow_with(mode: BodyMode, real: &str) -> FlowContext {
        let mut b = binding(false);
        b.body = Some(mode);
        b.real = Some(SecretValue::new(real.into()).unwrap());
        flow(vec![b], true)
    }

    fn swap(
        mode: BodyMode,
        content_type: Option<&str>,
        real: &str,
        body: &[&[u8]],
    ) -> Option<Vec<u8>> {
        let flow = flow_with(mode, real);
        let mut headers = HeaderMap::new();
        if let Some(ct) = content_type {
            headers.insert(CONTENT_TYPE, ct.parse().unwrap());
        }
        let mut swap = BodySwap::for_request(&flow, &headers)?;
        let mut out = Vec::new();
        for chunk in body {
            out.extend_from_slice(&swap.filter(Bytes::copy_from_slice(chunk)));
        }
        out.extend_from_slice(&ChunkFilter::finish(&mut swap));
        Some(out)
    }

    #[test]
    fn json_bodies_get_the_value_json_escaped_even_split_across_chunks() {
        let body = format!(r#"{{"api_key":"{DUMMY}","n":1}}"#);
        let (a, b) = body.as_bytes().split_at(14);
        let out = swap(
            BodyMode::Json,
            Some("application/json; charset=utf-8"),
            "re\"al/x\\y",
            &[a, b],
        );
        assert_eq!(
            String::from_utf8(out.unwrap()).unwrap(),
            r#"{"api_key":"re\"al/x\\y","n":1}"#
        );
    }

    #[test]
    fn vendor_json_types_count_as_json() {
        let body = format!(r#"{{"k":"{DUMMY}"}}"#);
        let out = swap(
            BodyMode::Json,
            Some("application/vnd.api+json"),
            "REAL",
            &[body.as_bytes()],
        );
        assert_eq!(out.unwrap(), br#"{"k":"REAL"}"#);
    }

    #[test]
    fn urlencoded_forms_get_the_value_form_encoded() {
        let body = format!("grant_type=client_credentials&client_secret={DUMMY}&x=1");
        let out = swap(
            BodyMode::Form,
            Some("application/x-www-form-urlencoded"),
            "a+b/c=d e&f~",
            &[body.as_bytes()],
        );
        assert_eq!(
            String::from_utf8(out.unwrap()).unwrap(),
            "grant_type=client_credentials&client_secret=a%2Bb%2Fc%3Dd+e%26f%7E&x=1"
        );
    }

    #[test]
    fn multipart_forms_get_the_value_as_is() {
        let body = format!(
            "--b\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\n{DUMMY}\r\n--b--\r\n"
        );
        let out = swap(
            BodyMode::Form,
            Some("multipart/form-data; boundary=b"),
            "a+b",
            &[body.as_bytes()],
        )
        .unwrap();
        assert!(String::from_utf8(out).unwrap().contains("\r\n\r\na+b\r\n"));
    }

    #[test]
    fn text_mode_swaps_in_any_body_in_its_encoding() {
        let out = swap(
            BodyMode::Text,
            Some("text/plain"),
            "R/1",
            &[DUMMY.as_bytes()],
        );
        assert_eq!(out.unwrap(), b"R/1");
        let out = swap(BodyMode::Text, None, "R/1", &[DUMMY.as_bytes()]);
        assert_eq!(out.unwrap(), b"R/1");
        let out = swap(
            BodyMode::Text,
            Some("application/x-www-form-urlencoded"),
            "R/1",
            &[DUMMY.as_bytes()],
        );
        assert_eq!(out.unwrap(), b"R%2F1");
    }

    #[test]
    fn a_mode_leaves_other_kinds_of_body_alone() {
        assert!(swap(BodyMode::Json, Some("text/plain"), "R", &[DUMMY.as_bytes()]).is_none());
        assert!(swap(BodyMode::Json, None, "R", &[DUMMY.as_bytes()]).is_none());
        assert!(
            swap(
                BodyMode::Form,
                Some("application/json"),
                "R",
                &[DUMMY.as_bytes()]
            )
            .is_none()
        );
    }

    #[test]
    fn an_encoded_body_is_not_read() {
        let flow = flow_with(BodyMode::Text, "R");
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_ENCODING, "gzip".parse().unwrap());
        assert!(BodySwap::for_request(&flow, &headers).is_none());
    }

    #[test]
    fn plain_http_never_gets_a_value() {
        let mut flow = flow_with(BodyMode::Text, "R");
        flow.intercepted = false;
        assert!(BodySwap::for_request(&flow, &HeaderMap::new()).is_none());
    }

    #[test]
    fn reports_whether_it_swapped() {
        let flow = flow_with(BodyMode::Text, "R");
        let mut swap = BodySwap::for_request(&flow, &HeaderMap::new()).unwrap();
        assert_eq!(swap.names(), ["demo"]);
        let _ = swap.swap_all(b"nothing here");
        assert!(!swap.swapped());
        assert_eq!(&swap.swap_all(DUMMY.as_bytes())[..], b"R");
        assert!(swap.swapped());
    }
}
