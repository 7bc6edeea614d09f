//! Swap (SPEC §6): on an intercepted request to a host the secret is bound to, every
//! occurrence of the dummy in header values (including inside `Basic` credentials) is
//! replaced by the real value, and in the query when the entry says `query: true`.
//! Bodies are never rewritten. Plain HTTP never gets a secret.

use base64::Engine;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use percent_encoding::utf8_percent_encode;

use super::inspect::{basic_credentials, in_query, in_value};
use super::{Addon, FlowContext, Refuse};
use crate::secrets::Binding;
use crate::secrets::kind::Kind;
use crate::secrets::reflect::QUERY;

/// The swap addon.
#[derive(Debug, Default)]
pub struct Swap;

impl Addon for Swap {
    fn name(&self) -> &'static str {
        "swap"
    }

    fn on_request(
        &self,
        flow: &mut FlowContext,
        req: &mut http::request::Parts,
    ) -> Result<(), Refuse> {
        if !flow.intercepted {
            return Ok(());
        }
        let secrets = flow.secrets.clone();
        for binding in flow.bound().iter() {
            // An AWS secret's phantoms are a signature's inputs: the exchange re-signs
            // the request (credentials::sigv4), nothing is swapped in place.
            if matches!(binding.kind, Kind::Aws(_)) {
                continue;
            }
            // The set's prebuilt searcher for the dummy (one per configuration).
            let built;
            let finder = match secrets.dummy_finder(binding) {
                Some(finder) => finder,
                None => {
                    built = memchr::memmem::Finder::new(binding.dummy.as_bytes());
                    &built
                }
            };
            let in_query = binding.query && in_query(&req.uri, &binding.dummy);
            let in_headers = req.headers.values().any(|v| in_value(finder, v));
            if !in_headers && !in_query {
                continue;
            }
            let real = flow
                .value_for(binding)
                .ok_or_else(|| missing(binding))?
                .clone();
            if in_headers {
                record_basic(flow, &req.headers, &binding.dummy, real.expose());
                swap_headers_with(
                    finder,
                    &mut req.headers,
                    &binding.header,
                    &binding.dummy,
                    real.expose(),
                );
            }
            if in_query {
                req.uri = swap_query(&req.uri, &binding.dummy, real.expose());
            }
            flow.swapped.push(binding.name.clone());
        }
        Ok(())
    }
}

/// Remembers each `Basic` credential that the swap re-encodes, as sent and as the client
/// sent it: the one base64 blob no generic form of the value matches whole, so the
/// scrubber can turn an echo of it back into the client's (see
/// [`crate::secrets::reflect`]).
fn record_basic(flow: &mut FlowContext, headers: &HeaderMap, dummy: &str, real: &str) {
    for value in headers.values() {
        let holds_dummy = basic_credentials(value).is_some_and(|c| c.contains(dummy));
        if holds_dummy && let Some(sent) = swap_value(value, dummy, real) {
            flow.sent.0.push((
                zeroize::Zeroizing::new(sent.as_bytes().to_vec()),
                value.as_bytes().to_vec(),
            ));
        }
    }
}

fn missing(binding: &Binding) -> Refuse {
    if binding.kind.is_minted() && binding.real.is_some() {
        // The exchange mints before the pipeline; no token here means it did not see
        // the phantom where the swap found it (never expected).
        return Refuse {
            status: StatusCode::BAD_GATEWAY,
            code: "mint-failed",
            why: format!("no token was minted for secret `{}`", binding.name),
            advice: "Retry; if it persists, run keygate with RUST_LOG=keygate=debug and report it."
                .into(),
            alert: false,
        };
    }
    Refuse {
        status: StatusCode::BAD_GATEWAY,
        code: "secret-missing",
        why: format!("secret `{}` has no value in the keyring", binding.name),
        advice: format!(
            "A human must store it: `keygate secret add {}`, then restart keygate. Other hosts are unaffected.",
            binding.name
        ),
        alert: false,
    }
}

/// The value with the dummy replaced, or `None` when it holds no dummy.
fn swap_value(value: &HeaderValue, dummy: &str, real: &str) -> Option<HeaderValue> {
    swap_value_with(
        &memchr::memmem::Finder::new(dummy.as_bytes()),
        value,
        dummy,
        real,
    )
}

/// [`swap_value`] with a prebuilt searcher for `dummy`.
fn swap_value_with(
    finder: &memchr::memmem::Finder<'_>,
    value: &HeaderValue,
    dummy: &str,
    real: &str,
) -> Option<HeaderValue> {
    // On the bytes: a value with obs-text (bytes >= 0x80) is no &str but may hold the
    // dummy all the same (found by fuzz/swap).
    let bytes = value.as_bytes();
    if finder.find(bytes).is_some() {
        return sensitive(&replace_bytes(
            finder,
            bytes,
            dummy.as_bytes(),
            real.as_bytes(),
        ));
    }
    let credentials = basic_credentials(value).filter(|c| c.contains(dummy))?;
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(credentials.replace(dummy, real));
    sensitive(format!("Basic {encoded}").as_bytes())
}

/// `haystack` with every (non-overlapping) `needle` replaced by `with`.
fn replace_bytes(
    finder: &memchr::memmem::Finder<'_>,
    haystack: &[u8],
    needle: &[u8],
    with: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len() + with.len());
    let mut last = 0;
    for at in finder.find_iter(haystack) {
        out.extend_from_slice(&haystack[last..at]);
        out.extend_from_slice(with);
        last = at + needle.len();
    }
    out.extend_from_slice(&haystack[last..]);
    out
}

/// A header value marked sensitive (HTTP/2 never puts it in a compression table).
fn sensitive(bytes: &[u8]) -> Option<HeaderValue> {
    let mut value = HeaderValue::from_bytes(bytes).ok()?;
    value.set_sensitive(true);
    Some(value)
}

/// True for the headers that carry one credential: Authorization, x-api-key, and the
/// header the secret is registered for.
fn is_credential_header(name: &HeaderName, secret_header: &HeaderName) -> bool {
    name == http::header::AUTHORIZATION || name.as_str() == "x-api-key" || name == secret_header
}

/// Replaces the dummy in every header value. In a credential header the swapped value
/// becomes the only value; in any other header (e.g. split `cookie` headers) the other
/// values are kept as they are.
pub fn swap_headers(headers: &mut HeaderMap, secret_header: &HeaderName, dummy: &str, real: &str) {
    let finder = memchr::memmem::Finder::new(dummy.as_bytes());
    swap_headers_with(&finder, headers, secret_header, dummy, real);
}

/// [`swap_headers`] with a prebuilt searcher for `dummy`.
fn swap_headers_with(
    finder: &memchr::memmem::Finder<'_>,
    headers: &mut HeaderMap,
    secret_header: &HeaderName,
    dummy: &str,
    real: &str,
) {
    // Only the headers that hold the dummy are rebuilt (usually one of a dozen or more).
    let mut names: Vec<HeaderName> = Vec::new();
    for (name, value) in headers.iter() {
        if !names.contains(name) && in_value(finder, value) {
            names.push(name.clone());
        }
    }
    for name in names {
        let values: Vec<HeaderValue> = headers.get_all(&name).iter().cloned().collect();
        let swapped: Vec<Option<HeaderValue>> = values
            .iter()
            .map(|v| swap_value_with(finder, v, dummy, real))
            .collect();
        let Some(first) = swapped.iter().flatten().next().cloned() else {
            continue;
        };
        if is_credential_header(&name, secret_header) {
            // SECURITY: the swap produces the credential; any other value of the same
            // header (a second Authorization, an attacker's x-api-key) is dropped, so
            // the upstream never sees two and cannot pick the wrong one (SPEC §6).
            headers.insert(name, first);
            continue;
        }
        headers.remove(&name);
        for (original, swapped) in values.into_iter().zip(swapped) {
            headers.append(name.clone(), swapped.unwrap_or(original));
        }
    }
}

/// The URI with the dummy replaced in the query (percent-encoding the real value),
/// whether the client wrote the dummy as is or percent-encoded, wholly or in part
/// (`keygate%2Ddummy…`): the places [`in_query`] finds it. The rest of the query is
/// kept byte for byte.
pub fn swap_query(uri: &Uri, dummy: &str, real: &str) -> Uri {
    let Some(query) = uri.query() else {
        return uri.clone();
    };
    let encoded: String = utf8_percent_encode(real, QUERY).collect();
    let query = replace_decoded(query.as_bytes(), dummy.as_bytes(), encoded.as_bytes());
    let mut pq = Vec::with_capacity(uri.path().len() + 1 + query.len());
    pq.extend_from_slice(uri.path().as_bytes());
    pq.push(b'?');
    pq.extend_from_slice(&query);
    let mut parts = uri.clone().into_parts();
    match http::uri::PathAndQuery::try_from(pq.as_slice()) {
        Ok(pq) => {
            parts.path_and_query = Some(pq);
            Uri::from_parts(parts).unwrap_or_else(|_| uri.clone())
        }
        Err(_) => uri.clone(),
    }
}

/// `raw` with every stretch whose percent-decoding is `needle` replaced by `with`
/// (a plain occurrence decodes to itself). Escapes are decoded one byte each and never
/// split, and bytes outside a match are copied unchanged.
fn replace_decoded(raw: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    // decoded[i] came from raw[start[i]..start[i + 1]].
    let mut decoded = Vec::with_capacity(raw.len());
    let mut start = Vec::with_capacity(raw.len() + 1);
    let mut i = 0;
    while i < raw.len() {
        start.push(i);
        let escape = (raw[i] == b'%')
            .then(|| raw.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escape {
            Some(byte) => {
                decoded.push(byte);
                i += 3;
            }
            None => {
                decoded.push(raw[i]);
                i += 1;
            }
        }
    }
    start.push(raw.len());
    let mut out = Vec::with_capacity(raw.len() + with.len());
    let mut last = 0;
    for at in memchr::memmem::find_iter(&decoded, needle) {
        out.extend_from_slice(&raw[last..start[at]]);
        out.extend_from_slice(with);
        last = start[at + needle.len()];
    }
    out.extend_from_slice(&raw[last..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addon::testing::{DUMMY, REAL, binding, flow, request};

    #[test]
    fn swaps_in_any_header_and_keeps_one_value() {
        let mut h = HeaderMap::new();
        h.append(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {DUMMY}")).unwrap(),
        );
        h.append("authorization", HeaderValue::from_static("Bearer attacker"));
        h.insert(
            "x-custom",
            HeaderValue::from_str(&format!("k={DUMMY};k2={DUMMY}")).unwrap(),
        );
        h.insert("x-plain", HeaderValue::from_static("unrelated"));
        h.append("cookie", HeaderValue::from_static("session=abc"));
        h.append(
            "cookie",
            HeaderValue::from_str(&format!("api_key={DUMMY}")).unwrap(),
        );
        h.append("cookie", HeaderValue::from_static("theme=dark"));
        swap_headers(&mut h, &HeaderName::from_static("x-api-key"), DUMMY, REAL);
        let auth: Vec<_> = h.get_all("authorization").iter().collect();
        assert_eq!(auth.len(), 1);
        assert_eq!(auth[0], &format!("Bearer {REAL}"));
        assert!(auth[0].is_sensitive());
        assert_eq!(h["x-custom"], &format!("k={REAL};k2={REAL}"));
        assert_eq!(h["x-plain"], "unrelated");
        let cookies: Vec<_> = h
            .get_all("cookie")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(
            cookies,
            vec!["session=abc", &format!("api_key={REAL}"), "theme=dark"]
        );
    }

    #[test]
    fn swaps_in_a_value_that_is_not_visible_ascii() {
        // Found by fuzz/swap: obs-text (here UTF-8 "é") made the value no &str, and the
        // dummy in it was left in place although the request was recorded as swapped.
        let mut h = HeaderMap::new();
        let value = format!("caf\u{e9} {DUMMY}");
        h.insert("x-note", HeaderValue::from_bytes(value.as_bytes()).unwrap());
        swap_headers(&mut h, &HeaderName::from_static("x-api-key"), DUMMY, REAL);
        assert_eq!(
            h["x-note"].as_bytes(),
            format!("caf\u{e9} {REAL}").as_bytes()
        );
        assert!(h["x-note"].is_sensitive());
    }

    #[test]
    fn swaps_inside_basic_credentials() {
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut h = HeaderMap::new();
        let basic = format!("Basic {}", b64.encode(format!("x-access-token:{DUMMY}")));
        h.insert("authorization", HeaderValue::from_str(&basic).unwrap());
        swap_headers(
            &mut h,
            &HeaderName::from_static("authorization"),
            DUMMY,
            REAL,
        );
        let decoded = basic_credentials(&h["authorization"]).unwrap();
        assert_eq!(decoded, format!("x-access-token:{REAL}"));
    }

    #[test]
    fn swaps_a_percent_encoded_dummy_in_the_query() {
        let encoded: String = DUMMY.bytes().map(|b| format!("%{b:02X}")).collect();
        let half = format!("{}{}", &DUMMY[..4], &encoded[12..]);
        for (written, label) in [(encoded.clone(), "all encoded"), (half, "half encoded")] {
            let uri: Uri = format!("/v1?a=%41+b&key={written}&z=%2F").parse().unwrap();
            let swapped = swap_query(&uri, DUMMY, REAL);
            assert_eq!(
                swapped.query(),
                Some(format!("a=%41+b&key={REAL}&z=%2F").as_str()),
                "{label}"
            );
            assert!(
                in_query(&uri, DUMMY) && !in_query(&swapped, DUMMY),
                "{label}"
            );
        }
        // A bad escape or a lone '%' is kept as it is.
        let uri: Uri = format!("/v1?x=%zz&key={DUMMY}&y=%").parse().unwrap();
        assert_eq!(
            swap_query(&uri, DUMMY, REAL).query(),
            Some(format!("x=%zz&key={REAL}&y=%").as_str())
        );
    }

    #[test]
    fn swaps_query_only_when_enabled() {
        let uri: Uri = format!("https://api.example.com/v1/x?key={DUMMY}&a=1")
            .parse()
            .unwrap();
        let swapped = swap_query(&uri, DUMMY, "r e+al&");
        assert_eq!(swapped.query(), Some("key=r%20e%2Bal%26&a=1"));
        let (mut f, mut req) = (
            flow(vec![binding(false)], true),
            request(&uri.to_string(), &[]),
        );
        Swap.on_request(&mut f, &mut req).unwrap();
        assert!(
            req.uri.query().unwrap().contains(DUMMY),
            "query swap is off"
        );
        assert!(f.swapped.is_empty());
        let (mut f, mut req) = (
            flow(vec![binding(true)], true),
            request(&uri.to_string(), &[]),
        );
        Swap.on_request(&mut f, &mut req).unwrap();
        assert_eq!(req.uri.query(), Some(format!("key={REAL}&a=1").as_str()));
        assert_eq!(f.swapped, vec!["demo"]);
    }

    #[test]
    fn plain_http_never_gets_a_secret() {
        let mut f = flow(vec![binding(false)], false);
        let mut req = request(
            "http://api.example.com/",
            &[("authorization", &format!("Bearer {DUMMY}"))],
        );
        Swap.on_request(&mut f, &mut req).unwrap();
        assert_eq!(req.headers["authorization"], &format!("Bearer {DUMMY}"));
    }

    #[test]
    fn missing_value_is_a_502_naming_the_secret() {
        let mut b = binding(false);
        b.real = None;
        let mut f = flow(vec![b], true);
        let mut req = request("https://api.example.com/", &[("x-api-key", DUMMY)]);
        let refuse = Swap.on_request(&mut f, &mut req).unwrap_err();
        assert_eq!(refuse.status, StatusCode::BAD_GATEWAY);
        assert!(refuse.advice.contains("keygate secret add demo"));
    }

    #[test]
    fn requests_without_the_dummy_are_untouched() {
        let mut f = flow(vec![binding(false)], true);
        let mut req = request(
            "https://api.example.com/",
            &[("authorization", "Bearer own-token")],
        );
        Swap.on_request(&mut f, &mut req).unwrap();
        assert_eq!(req.headers["authorization"], "Bearer own-token");
        assert!(f.swapped.is_empty());
    }
}
