//! Where a dummy can hide in a request: header values (also inside `Basic`
//! credentials) and the URL.

use std::sync::Arc;

use base64::Engine;
use http::HeaderValue;
use percent_encoding::percent_decode_str;

use crate::secrets::{Binding, SecretSet};

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
    // One searcher for every value: a request has a dozen or more header values, and
    // searching each with a prebuilt (SIMD) finder beats `memmem::find`'s per-call setup.
    let finder = memchr::memmem::Finder::new(needle.as_bytes());
    headers.values().any(|v| in_value(&finder, v))
}

/// True when the finder's needle is in `value`, raw or inside Basic credentials.
pub fn in_value(finder: &memchr::memmem::Finder<'_>, value: &HeaderValue) -> bool {
    finder.find(value.as_bytes()).is_some()
        || basic_credentials(value).is_some_and(|c| finder.find(c.as_bytes()).is_some())
}

/// A substring searched for in a few haystacks that usually do not hold it (the
/// response headers, for a real value).
///
/// `memmem::find` searches a haystack under 64 bytes with Rabin-Karp, which costs
/// nothing to set up, but builds a whole `memmem::Finder` for a longer one; a `Needle`
/// builds that finder only when a long haystack comes along, and then reuses it.
pub struct Needle<'n> {
    bytes: &'n [u8],
    finder: std::cell::OnceCell<memchr::memmem::Finder<'n>>,
}

impl<'n> Needle<'n> {
    /// The longest haystack searched without a finder (memchr's own threshold).
    const SHORT: usize = 64;

    /// A needle; nothing is built yet.
    pub fn new(bytes: &'n [u8]) -> Needle<'n> {
        Needle {
            bytes,
            finder: std::cell::OnceCell::new(),
        }
    }

    /// True when the needle occurs in `haystack`.
    pub fn is_in(&self, haystack: &[u8]) -> bool {
        if haystack.len() < Self::SHORT {
            memchr::memmem::find(haystack, self.bytes).is_some()
        } else {
            self.finder
                .get_or_init(|| memchr::memmem::Finder::new(self.bytes))
                .find(haystack)
                .is_some()
        }
    }
}

/// True when `needle` is in the query only, raw or percent-decoded.
pub fn in_query(uri: &http::Uri, needle: &str) -> bool {
    uri.query().is_some_and(|q| {
        q.contains(needle) || percent_decode_str(q).decode_utf8_lossy().contains(needle)
    })
}

/// The first secret accepted by `pick` whose dummy the request carries: in a header
/// value (raw or inside Basic credentials) or in the URL's path or query (raw or
/// percent-decoded). One pass over each place for every secret at once.
pub fn dummy_carried<'s>(
    secrets: &'s SecretSet,
    headers: &http::HeaderMap,
    uri: &http::Uri,
    pick: impl Fn(&Binding) -> bool + Copy,
) -> Option<&'s Arc<Binding>> {
    for value in headers.values() {
        let found = secrets.dummy_in(value.as_bytes(), pick).or_else(|| {
            basic_credentials(value).and_then(|c| secrets.dummy_in(c.as_bytes(), pick))
        });
        if found.is_some() {
            return found;
        }
    }
    let pq = uri.path_and_query()?.as_str();
    secrets.dummy_in(pq.as_bytes(), pick).or_else(|| {
        let decoded = percent_decode_str(pq).decode_utf8_lossy();
        secrets.dummy_in(decoded.as_bytes(), pick)
    })
}
