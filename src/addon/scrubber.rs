//! The scrubber: a streaming find-and-replace of real values (in every form
//! [`Reflections`] knows) by the same forms of their dummies, safe across chunk
//! boundaries.
//!
//! [`Scrubber`] holds back, between chunks, only a chunk's tail that is the beginning of
//! a form (so a value split across chunks is still caught): at most `longest form - 1`
//! bytes, and none at all for an ordinary chunk, so streamed events (SSE) are never
//! delayed. A chunk with nothing to replace or hold back passes without a copy.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};

use super::ChunkFilter;
use crate::secrets::reflect::Reflections;

/// A streaming find-and-replace of reflections of real values.
pub struct Scrubber {
    reflections: Arc<Reflections>,
    carry: BytesMut,
    /// False for a body keygate cannot read (still encoded): data passes unchanged,
    /// only trailers are scrubbed.
    body: bool,
    /// How many forms it has replaced so far.
    replaced: usize,
}

impl std::fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scrubber")
            .field("reflections", &self.reflections)
            .finish_non_exhaustive()
    }
}

impl Scrubber {
    /// Replaces exactly each `(real, dummy)` byte string, case-sensitively (no other
    /// forms); `None` when there is nothing to scrub.
    pub fn new(pairs: &[(&[u8], &[u8])]) -> Option<Scrubber> {
        Reflections::exact(pairs).map(|r| Scrubber::with(Arc::new(r)))
    }

    /// Replaces every form `reflections` holds.
    pub fn with(reflections: Arc<Reflections>) -> Scrubber {
        Scrubber {
            reflections,
            carry: BytesMut::new(),
            body: true,
            replaced: 0,
        }
    }

    /// A filter for a body keygate cannot read: data passes unchanged, trailers are
    /// scrubbed.
    pub fn trailers_only(reflections: Arc<Reflections>) -> Scrubber {
        Scrubber {
            body: false,
            ..Scrubber::with(reflections)
        }
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

    /// True when `chunk` goes out as it is: nothing held back from before, no form in
    /// it, and no tail that may begin one.
    fn passes_unchanged(&self, chunk: &[u8]) -> bool {
        self.carry.is_empty()
            && !self.reflections.is_in(chunk)
            && self.reflections.partial_tail(chunk) == 0
    }

    /// Releases what is held back at the end of the body, with any form in it replaced.
    pub fn finish(&mut self) -> Bytes {
        let buf = std::mem::take(&mut self.carry);
        let mut out = BytesMut::with_capacity(buf.len());
        self.replace(&buf, true, &mut out);
        out.freeze()
    }

    /// Writes `buf` to `out` with its forms replaced (leftmost, then longest, first) and
    /// returns where the held-back tail starts. Unless `at_end`, a tail that may begin a
    /// form cut off by the chunk boundary is held, and so is any match inside it: the
    /// cut-off form starts earlier and wins over it once complete (found by fuzz/scrub:
    /// a shorter value inside a longer one must not split the longer one).
    fn replace(&mut self, buf: &[u8], at_end: bool, out: &mut BytesMut) -> usize {
        let hold_from = |from: usize| {
            if at_end {
                buf.len()
            } else {
                buf.len() - self.reflections.partial_tail(&buf[from..])
            }
        };
        let mut cursor = 0;
        let mut hold = hold_from(0);
        while let Some((start, end, with)) = self
            .reflections
            .find(buf, cursor)
            .filter(|&(start, _, _)| start < hold)
        {
            out.extend_from_slice(&buf[cursor..start]);
            out.extend_from_slice(with);
            self.replaced += 1;
            cursor = end;
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

    /// How many forms it has replaced so far.
    pub fn replaced(&self) -> usize {
        self.replaced
    }

    /// True when `bytes` holds a form.
    pub fn holds(&self, bytes: &[u8]) -> bool {
        self.reflections.is_in(bytes)
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
        match self.body {
            true => Scrubber::finish(self),
            false => Bytes::new(),
        }
    }
    fn trailers(&mut self, trailers: &mut HeaderMap) {
        let mut fresh = Scrubber::with(self.reflections.clone());
        scrub_headers(trailers, &mut fresh);
    }
}

/// Replaces forms of real values in every header value, and drops every header whose
/// name holds one (a name cannot be rewritten into a dummy reliably; it is logged).
pub fn scrub_headers(headers: &mut HeaderMap, scrubber: &mut Scrubber) {
    let tainted: Vec<HeaderName> = headers
        .keys()
        .filter(|name| scrubber.holds(name.as_str().as_bytes()))
        .cloned()
        .collect();
    for name in tainted {
        // SECURITY: a header *name* echoing a real value (lower-cased by HTTP/2 and by
        // hyper) would reach the client verbatim; the whole header goes.
        tracing::warn!("dropped a response header whose name holds a secret value");
        headers.remove(&name);
    }
    for value in headers.values_mut() {
        let scrubbed = scrubber.scrub_all(value.as_bytes());
        if scrubbed.as_ref() != value.as_bytes()
            && let Ok(new) = HeaderValue::from_maybe_shared(scrubbed)
        {
            *value = new;
        }
    }
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
    fn nothing_to_scrub() {
        assert!(Scrubber::new(&[]).is_none());
        assert!(Scrubber::new(&[(b"", b"x")]).is_none());
    }
}
