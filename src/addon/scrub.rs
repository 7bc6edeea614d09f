//! Scrub: in responses from bound hosts, the real value is replaced by the dummy in
//! header values and in uncompressed bodies, streaming-safe across chunk boundaries.
//!
//! [`Scrubber`] holds back, between chunks, only a chunk's tail that is the beginning of
//! a real value (so a value split across chunks is still caught): at most `longest
//! value - 1` bytes, and none at all for an ordinary chunk, so streamed events (SSE)
//! are never delayed.

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http::header::HeaderValue;
use memchr::memmem;

use super::inspect::Needle;
use super::{Addon, ChunkFilter, FlowContext};
use crate::secrets::Binding;

/// A streaming find-and-replace of real values by their dummies.
pub struct Scrubber {
    needles: Vec<(memmem::Finder<'static>, Bytes)>,
    carry: BytesMut,
    /// False for a compressed body: data passes unchanged, only trailers are scrubbed.
    body: bool,
}

impl std::fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scrubber")
            .field("needles", &self.needles.len())
            .finish()
    }
}

impl Scrubber {
    /// Replaces each `(real, dummy)`; `None` when there is nothing to scrub.
    pub fn new(pairs: &[(&[u8], &[u8])]) -> Option<Scrubber> {
        let needles: Vec<_> = pairs
            .iter()
            .filter(|(real, _)| !real.is_empty())
            .map(|(real, dummy)| {
                (
                    memmem::Finder::new(real).into_owned(),
                    Bytes::copy_from_slice(dummy),
                )
            })
            .collect();
        if needles.is_empty() {
            return None;
        }
        Some(Scrubber {
            needles,
            carry: BytesMut::new(),
            body: true,
        })
    }

    /// Length of the longest tail of `buf` that is a proper prefix of some real value:
    /// those bytes may continue into the next chunk.
    fn partial_tail(&self, buf: &[u8]) -> usize {
        self.needles
            .iter()
            .map(|(finder, _)| {
                let needle = finder.needle();
                let longest = (needle.len() - 1).min(buf.len());
                (1..=longest)
                    .rev()
                    .find(|k| buf.ends_with(&needle[..*k]))
                    .unwrap_or(0)
            })
            .max()
            .unwrap_or(0)
    }

    /// The earliest match at or after `from`: (position, needle index).
    fn next_match(&self, buf: &[u8], from: usize) -> Option<(usize, usize)> {
        self.needles
            .iter()
            .enumerate()
            .filter_map(|(i, (finder, _))| finder.find(&buf[from..]).map(|p| (from + p, i)))
            .min()
    }

    /// Feeds a chunk; returns what can be released now.
    pub fn push(&mut self, chunk: &[u8]) -> Bytes {
        if self.passes_unchanged(chunk) {
            return Bytes::copy_from_slice(chunk);
        }
        self.carry.extend_from_slice(chunk);
        let buf = std::mem::take(&mut self.carry);
        let mut out = BytesMut::with_capacity(buf.len());
        let hold = self.replace(&buf, false, &mut out);
        self.carry.extend_from_slice(&buf[hold..]);
        out.freeze()
    }

    /// True when `chunk` goes out as it is: nothing held back from before, no value in
    /// it, and no tail that may begin one.
    fn passes_unchanged(&self, chunk: &[u8]) -> bool {
        self.carry.is_empty()
            && self.next_match(chunk, 0).is_none()
            && self.partial_tail(chunk) == 0
    }

    /// Releases what is held back at the end of the body, with any value in it replaced.
    pub fn finish(&mut self) -> Bytes {
        let buf = std::mem::take(&mut self.carry);
        let mut out = BytesMut::with_capacity(buf.len());
        self.replace(&buf, true, &mut out);
        out.freeze()
    }

    /// Writes `buf` to `out` with its values replaced (leftmost match first) and returns
    /// where the held-back tail starts. Unless `at_end`, a tail that may begin a value cut
    /// off by the chunk boundary is held, and so is any match inside it: the cut-off
    /// value starts earlier and wins over it once complete (found by fuzz/scrub: a
    /// shorter value inside a longer one must not split the longer one).
    fn replace(&self, buf: &[u8], at_end: bool, out: &mut BytesMut) -> usize {
        let hold_from = |from: usize| {
            if at_end {
                buf.len()
            } else {
                buf.len() - self.partial_tail(&buf[from..])
            }
        };
        let mut cursor = 0;
        let mut hold = hold_from(0);
        while let Some((at, i)) = self.next_match(buf, cursor).filter(|&(at, _)| at < hold) {
            out.extend_from_slice(&buf[cursor..at]);
            out.extend_from_slice(&self.needles[i].1);
            cursor = at + self.needles[i].0.needle().len();
            if cursor > hold {
                hold = hold_from(cursor);
            }
        }
        out.extend_from_slice(&buf[cursor..hold]);
        hold
    }

    /// Scrubs one complete value (a header).
    pub fn scrub_all(&mut self, whole: &[u8]) -> Bytes {
        let mut out = BytesMut::from(&self.push(whole)[..]);
        out.extend_from_slice(&self.finish());
        out.freeze()
    }
}

impl ChunkFilter for Scrubber {
    fn filter(&mut self, chunk: Bytes) -> Bytes {
        if !self.body || self.passes_unchanged(&chunk) {
            // The common case: nothing to replace or hold back, so no copy at all.
            return chunk;
        }
        self.push(&chunk)
    }
    fn finish(&mut self) -> Bytes {
        Scrubber::finish(self)
    }
    fn trailers(&mut self, trailers: &mut HeaderMap) {
        let mut fresh = Scrubber {
            needles: self.needles.clone(),
            carry: BytesMut::new(),
            body: true,
        };
        scrub_headers(trailers, &mut fresh);
    }
}

/// The `(real, dummy)` pairs of the secrets bound to the flow's host that have a value.
fn pairs(bound: &[std::sync::Arc<Binding>]) -> Vec<(&[u8], &[u8])> {
    bound
        .iter()
        .filter_map(|b| {
            b.real
                .as_ref()
                .map(|r| (r.expose().as_bytes(), b.dummy.as_bytes()))
        })
        .filter(|(real, _)| !real.is_empty())
        .collect()
}

/// Replaces real values in every header value.
pub fn scrub_headers(headers: &mut HeaderMap, scrubber: &mut Scrubber) {
    for value in headers.values_mut() {
        let scrubbed = scrubber.scrub_all(value.as_bytes());
        if scrubbed.as_ref() != value.as_bytes()
            && let Ok(new) = HeaderValue::from_maybe_shared(scrubbed)
        {
            *value = new;
        }
    }
}

/// The scrub addon: headers of every response from a bound host, and bodies that are
/// not compressed (a compressed body cannot be searched without decoding it).
#[derive(Debug, Default)]
pub struct Scrub;

impl Addon for Scrub {
    fn name(&self) -> &'static str {
        "scrub"
    }

    fn on_response_head(&self, flow: &FlowContext, parts: &mut http::response::Parts) {
        let bound = flow.bound();
        let pairs = pairs(&bound);
        if pairs.is_empty() {
            return;
        }
        // Usually no header holds a value: a plain search (see `Needle`) avoids building
        // the scrubber's searchers for nothing.
        let holds_a_value = pairs.iter().any(|(real, _)| {
            let needle = Needle::new(real);
            parts.headers.values().any(|v| needle.is_in(v.as_bytes()))
        });
        if holds_a_value && let Some(mut scrubber) = Scrubber::new(&pairs) {
            scrub_headers(&mut parts.headers, &mut scrubber);
        }
        let same_length = bound
            .iter()
            .filter_map(|b| b.real.as_ref().map(|r| r.expose().len() == b.dummy.len()))
            .all(|same| same);
        if is_plain_body(&parts.headers) && !same_length {
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
        if !is_plain_body(&parts.headers) {
            return None;
        }
        let bound = flow.bound();
        Scrubber::new(&pairs(&bound)).map(|s| Box::new(s) as Box<dyn ChunkFilter>)
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

    fn run(pairs: &[(&[u8], &[u8])], chunks: &[&[u8]]) -> Vec<u8> {
        let mut s = Scrubber::new(pairs).unwrap();
        let mut out = Vec::new();
        for c in chunks {
            out.extend_from_slice(&s.push(c));
        }
        out.extend_from_slice(&s.finish());
        out
    }

    const REAL: &[u8] = b"sk-REAL-0123456789";
    const DUMMY: &[u8] = b"sk-dummy-xx";

    #[test]
    fn replaces_within_one_chunk() {
        let out = run(
            &[(REAL, DUMMY)],
            &[b"key=sk-REAL-0123456789; again sk-REAL-0123456789."],
        );
        assert_eq!(out, b"key=sk-dummy-xx; again sk-dummy-xx.");
    }

    #[test]
    fn replaces_a_value_split_across_chunks_at_every_point() {
        let body = b"{\"echo\":\"sk-REAL-0123456789\",\"n\":1}";
        for cut in 0..=body.len() {
            for cut2 in cut..=body.len() {
                let out = run(
                    &[(REAL, DUMMY)],
                    &[&body[..cut], &body[cut..cut2], &body[cut2..]],
                );
                assert_eq!(
                    out, b"{\"echo\":\"sk-dummy-xx\",\"n\":1}",
                    "cuts at {cut},{cut2}"
                );
            }
        }
    }

    #[test]
    fn byte_by_byte_and_several_needles() {
        let body = b"a sk-REAL-0123456789 b OTHER-REAL c sk-REAL-0123456789";
        let chunks: Vec<&[u8]> = body.chunks(1).collect();
        let out = run(
            &[(REAL, DUMMY), (b"OTHER-REAL", b"OTHER-DUMMY-LONGER")],
            &chunks,
        );
        assert_eq!(
            out,
            b"a sk-dummy-xx b OTHER-DUMMY-LONGER c sk-dummy-xx".to_vec()
        );
    }

    #[test]
    fn untouched_chunks_are_released_whole_and_only_a_real_prefix_is_held() {
        let mut s = Scrubber::new(&[(REAL, DUMMY)]).unwrap();
        let chunk = vec![b'x'; 100_000];
        assert_eq!(s.push(&chunk).len(), 100_000);
        // An SSE event is released at once, terminator included.
        assert_eq!(&s.push(b"data: {}\n\n")[..], b"data: {}\n\n");
        assert!(s.finish().is_empty());
        // A tail that starts the real value waits for the next chunk, and only it.
        let mut s = Scrubber::new(&[(REAL, DUMMY)]).unwrap();
        assert_eq!(&s.push(b"data: sk-RE")[..], b"data: ");
        assert_eq!(&s.push(b"AL-0123456789\n\n")[..], b"sk-dummy-xx\n\n");
        // A prefix of the needle at the very end is released by finish, unchanged.
        let out = run(&[(REAL, DUMMY)], &[b"tail sk-REAL-01"]);
        assert_eq!(out, b"tail sk-REAL-01");
    }

    #[test]
    fn a_value_inside_another_is_replaced_as_in_one_pass_however_the_body_is_cut() {
        // Found by fuzz/scrub: with "bc" (a second secret's value) inside "abcd", a cut
        // after "abc" replaced "bc" and released the rest of "abcd" around its dummy.
        let pairs: &[(&[u8], &[u8])] = &[(b"abcd", b"D1"), (b"bc", b"D2")];
        let body = b"xxabcdxx bc abc";
        let whole = run(pairs, &[body]);
        assert_eq!(whole, b"xxD1xx D2 aD2");
        for cut in 0..=body.len() {
            assert_eq!(
                run(pairs, &[&body[..cut], &body[cut..]]),
                whole,
                "cut at {cut}"
            );
        }
        let chunks: Vec<&[u8]> = body.chunks(1).collect();
        assert_eq!(run(pairs, &chunks), whole);
    }

    #[test]
    fn headers_are_scrubbed() {
        let mut h = HeaderMap::new();
        h.insert(
            "x-echo",
            HeaderValue::from_static("Bearer sk-REAL-0123456789"),
        );
        h.insert("x-other", HeaderValue::from_static("fine"));
        let mut s = Scrubber::new(&[(REAL, DUMMY)]).unwrap();
        scrub_headers(&mut h, &mut s);
        assert_eq!(h["x-echo"], "Bearer sk-dummy-xx");
        assert_eq!(h["x-other"], "fine");
    }

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

    #[test]
    fn nothing_to_scrub() {
        assert!(Scrubber::new(&[]).is_none());
        assert!(Scrubber::new(&[(b"", b"x")]).is_none());
    }
}
