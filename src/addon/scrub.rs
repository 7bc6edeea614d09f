//! Scrub: in responses from bound hosts, every form of a real value
//! ([`crate::secrets::reflect`])
//! is replaced by the same form of its dummy: in the status line's reason phrase, header
//! names and values, the body (streaming, see [`super::scrubber`]) and trailers.

use http::HeaderMap;

use super::scrubber::{Scrubber, scrub_headers};
use super::{Addon, ChunkFilter, FlowContext};

/// The scrub addon: the reason phrase, header names and values of every response from
/// a bound host, its body, and its trailers. The proxy decodes a compressed body first
/// (`proxy::exchange::decode`, which removes `Content-Encoding`) or refuses the
/// response, so the body is plain here; only a bodiless answer (HEAD, 304) may still
/// carry a coding label, and then there is no body to search.
#[derive(Debug, Default)]
pub struct Scrub;

impl Addon for Scrub {
    fn name(&self) -> &'static str {
        "scrub"
    }

    fn on_response_head(&self, flow: &FlowContext, parts: &mut http::response::Parts) {
        let Some(reflections) = flow.reflections() else {
            return;
        };
        let mut scrubber = Scrubber::with(reflections.clone());
        scrub_reason_phrase(parts, &scrubber);
        // Usually no header holds a value: one pass over names and values first.
        let holds_a_value = parts.headers.iter().any(|(name, value)| {
            scrubber.holds(value.as_bytes()) || scrubber.holds(name.as_str().as_bytes())
        });
        if holds_a_value {
            scrub_headers(&mut parts.headers, &mut scrubber);
        }
        if is_plain_body(&parts.headers) && !reflections.same_length() {
            // SECURITY: the scrubbed body may differ in length from the upstream's; a
            // stale Content-Length would truncate it or desynchronise the connection.
            parts.headers.remove(http::header::CONTENT_LENGTH);
        }
    }

    fn response_body(
        &self,
        flow: &FlowContext,
        parts: &http::response::Parts,
    ) -> Option<Box<dyn ChunkFilter>> {
        let reflections = flow.reflections()?;
        let scrubber = match is_plain_body(&parts.headers) {
            true => Scrubber::with(reflections),
            // Still encoded (a bodiless answer's label): its trailers are searched.
            false => Scrubber::trailers_only(reflections),
        };
        Some(Box::new(scrubber))
    }
}

/// Drops an HTTP/1.1 reason phrase that holds a form of a real value (the client then
/// gets the status code's canonical phrase).
fn scrub_reason_phrase(parts: &mut http::response::Parts, scrubber: &Scrubber) {
    let tainted = parts
        .extensions
        .get::<hyper::ext::ReasonPhrase>()
        .is_some_and(|phrase| scrubber.holds(phrase.as_bytes()));
    if tainted {
        // SECURITY: hyper writes a non-standard reason phrase back verbatim to HTTP/1.1
        // clients (`401 invalid key REAL…`).
        tracing::warn!("dropped a response reason phrase that holds a secret value");
        parts.extensions.remove::<hyper::ext::ReasonPhrase>();
    }
}

/// True when the body is not content-encoded (or `identity`).
fn is_plain_body(headers: &HeaderMap) -> bool {
    headers
        .get_all(http::header::CONTENT_ENCODING)
        .iter()
        .all(|v| {
            v.to_str()
                .is_ok_and(|s| s.trim().eq_ignore_ascii_case("identity"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_addon_scrubs_response_headers_that_hold_a_value_and_only_those() {
        use crate::addon::testing::{self, binding, flow};
        let flow = flow(vec![binding(false)], true);
        let response = |headers: &[(&str, String)]| {
            let mut b = http::Response::builder().header("content-length", "40");
            for (k, v) in headers {
                b = b.header(*k, v.as_str());
            }
            b.body(()).unwrap().into_parts().0
        };
        let mut echoed = response(&[
            ("x-echo", format!("Bearer {}", testing::REAL)),
            ("x-other", "plain".into()),
        ]);
        Scrub.on_response_head(&flow, &mut echoed);
        assert_eq!(
            echoed.headers["x-echo"],
            format!("Bearer {}", testing::DUMMY).as_str()
        );
        assert_eq!(echoed.headers["x-other"], "plain");
        // The dummy and the real value differ in length: the body length may change.
        assert!(echoed.headers.get("content-length").is_none());

        let mut clean = response(&[("x-other", "plain".into())]);
        let before = clean.headers.clone();
        Scrub.on_response_head(&flow, &mut clean);
        assert_eq!(clean.headers.get("x-other"), before.get("x-other"));
        assert!(clean.headers.get("content-length").is_none());
    }
}
