//! Reflections: every form in which a real value can come back from an upstream, each
//! with the form of the dummy that replaces it (what the scrubber searches for).
//!
//! An upstream that echoes what it received returns the value as keygate sent it, or
//! re-encoded by whatever framework echoes it. [`forms`] lists, for one `(real, dummy)`:
//!
//! * the value itself; matched ASCII case-insensitively (an upstream that upper-cases
//!   its echo; also `%2f`/`%2F` and `\u002f`/`\u002F` below);
//! * percent-encoded: as keygate puts it in a query ([`QUERY`]), as a URI component
//!   (every byte but RFC 3986's unreserved ones) and strictly (every non-alphanumeric);
//! * JSON-escaped: `/` as `\/` (PHP's default), `"` and `\` escaped, `<`, `>`, `&` and `'`
//!   as `\u003c`… (Go, and HTML-safe encoders), and every non-alphanumeric as `\u00XX`;
//! * base64, standard and URL-safe, at each of the three alignments the value can have
//!   inside a longer blob (`Basic base64(user:REAL)`): the characters that depend on the
//!   value's bytes alone (a blob that holds them holds the value, give or take two bytes
//!   at each end), when there are at least [`MIN_ENCODED`] of them.
//!
//! What keygate itself put on the wire is encoded once more in each of these ways (found
//! by tests/integration/containment.rs: a JSON-escaped request target, a redirect that
//! percent-encodes the target again, base64 of it, a JSON-escaped Basic blob).
//!
//! A [`Reflections`] compiles the forms of every bound secret (and any exact bytes keygate
//! itself sent) into one automaton: one pass over a chunk finds any of them. Forms a
//! value does not need (a plain token is its own percent-encoding) are not repeated.
//! The honest residue (hashes, encryption, a value split across responses, encodings
//! nobody can enumerate) is in docs/THREAT_MODEL.md.

use aho_corasick::{AhoCorasick, Input, MatchKind};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use std::sync::Arc;

use bytes::Bytes;
use percent_encoding::{AsciiSet, CONTROLS, NON_ALPHANUMERIC, percent_encode};

use super::SecretSet;
use crate::policy::Host;

/// Bytes percent-encoded when keygate puts a real value into a query string.
pub const QUERY: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'<')
    .add(b'>')
    .add(b'&')
    .add(b'+')
    .add(b'=')
    .add(b'%')
    .add(b'`')
    .add(b'{')
    .add(b'}');

/// Every byte but RFC 3986's unreserved ones (`A-Z a-z 0-9 - . _ ~`): what
/// `encodeURIComponent`-like and `quote(s, safe='')`-like encoders produce.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The shortest encoded form searched for: shorter ones would match ordinary text.
pub const MIN_ENCODED: usize = 12;

/// Every form of `real` worth searching for, each with the same form of `dummy`: see
/// the module documentation. The first is the value itself; no needle repeats. The form
/// keygate itself puts on the wire (percent-encoded in a query) is encoded once more in
/// every way, since an upstream echoes what it received: a JSON-escaped request target,
/// a redirect that percent-encodes it again, a base64 state blob built from it.
pub fn forms(real: &[u8], dummy: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Forms::new(real.len());
    out.add(real.to_vec(), dummy.to_vec());
    out.encoded(real, dummy);
    let (wire, wire_dummy) = (query_encode(real), query_encode(dummy));
    if wire != real {
        out.encoded(&wire, &wire_dummy);
    }
    out.0
}

/// The forms of bytes keygate sent exactly (a re-encoded `Basic` blob) with what the
/// client sent: the bytes themselves and each of their encodings.
pub fn sent_forms(sent: &[u8], original: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Forms::new(sent.len());
    out.add(sent.to_vec(), original.to_vec());
    out.encoded(sent, original);
    out.0
}

fn query_encode(v: &[u8]) -> Vec<u8> {
    percent_encode(v, QUERY).to_string().into_bytes()
}

/// A list of `(needle, replacement)` without repeated needles (compared as the
/// automaton compares: ASCII case-insensitively).
struct Forms(Vec<(Vec<u8>, Vec<u8>)>, usize);

impl Forms {
    /// `shortest`: the length of the value; encoded forms shorter than [`MIN_ENCODED`]
    /// (or than the value itself, when it is shorter) are left out.
    fn new(shortest: usize) -> Forms {
        Forms(Vec::new(), MIN_ENCODED.min(shortest))
    }

    fn add(&mut self, needle: Vec<u8>, with: Vec<u8>) {
        let fresh = !self.0.iter().any(|(n, _)| n.eq_ignore_ascii_case(&needle));
        if fresh && !needle.is_empty() && (self.0.is_empty() || needle.len() >= self.1) {
            self.0.push((needle, with));
        }
    }

    /// Each encoding of `value` (percent ×3, JSON ×4, base64 ×6), with the same
    /// encoding of `with`.
    fn encoded(&mut self, value: &[u8], with: &[u8]) {
        type Encode = fn(&[u8]) -> Vec<u8>;
        let encoders: [Encode; 7] = [
            query_encode,
            |v| percent_encode(v, COMPONENT).to_string().into_bytes(),
            |v| percent_encode(v, NON_ALPHANUMERIC).to_string().into_bytes(),
            |v| json_escape(v, |b| (b == b'/').then_some(b"\\/".to_vec())),
            |v| json_escape(v, standard_json),
            |v| json_escape(v, |b| b"<>&'".contains(&b).then(|| unicode_escape(b))),
            |v| {
                json_escape(v, |b| {
                    (!b.is_ascii_alphanumeric()).then(|| unicode_escape(b))
                })
            },
        ];
        for encode in encoders {
            self.add(encode(value), encode(with));
        }
        for engine in [STANDARD, URL_SAFE] {
            for offset in 0..3 {
                let needle = base64_middle(&engine, offset, value);
                if needle.len() >= MIN_ENCODED {
                    self.add(needle, base64_middle(&engine, offset, with));
                }
            }
        }
    }
}

/// JSON's mandatory escapes.
fn standard_json(b: u8) -> Option<Vec<u8>> {
    match b {
        b'"' => Some(b"\\\"".to_vec()),
        b'\\' => Some(b"\\\\".to_vec()),
        _ => None,
    }
}

/// `b` as `\u00xx`.
fn unicode_escape(b: u8) -> Vec<u8> {
    format!("\\u{:04x}", b).into_bytes()
}

/// `value` with each byte that `escape` maps replaced by what it maps to.
fn json_escape(value: &[u8], escape: impl Fn(u8) -> Option<Vec<u8>>) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len());
    for &b in value {
        match escape(b) {
            Some(escaped) => out.extend_from_slice(&escaped),
            None => out.push(b),
        }
    }
    out
}

/// The base64 characters of `value` preceded by `offset` (0–2) unknown bytes that
/// depend on `value`'s bytes alone: whole 3-byte groups only, without the first group
/// when it holds unknown bytes and without a last group that unknown bytes may follow.
fn base64_middle(engine: &impl Engine, offset: usize, value: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0u8; offset];
    bytes.extend_from_slice(value);
    let encoded = engine.encode(&bytes).into_bytes();
    let start = if offset > 0 { 4 } else { 0 };
    let end = (bytes.len() / 3) * 4;
    encoded
        .get(start..end.max(start))
        .unwrap_or_default()
        .to_vec()
}

/// Compiled needles (every form of the bound secrets, or exact bytes) and their
/// replacements: one automaton, leftmost first (then the longest form, or the earlier
/// exact pair).
pub struct Reflections {
    automaton: AhoCorasick,
    needles: Vec<Vec<u8>>,
    replacements: Vec<Bytes>,
    /// `tails[b]`: byte `b` (either case) occurs in some needle, so a chunk ending in
    /// it may end with the start of one.
    tails: [bool; 256],
    same_length: bool,
    /// Needles match ASCII case-insensitively.
    fold: bool,
}

impl std::fmt::Debug for Reflections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the needles: they are forms of real values.
        f.debug_struct("Reflections")
            .field("needles", &self.needles.len())
            .finish_non_exhaustive()
    }
}

impl Reflections {
    /// Every form of each `(real, dummy)` ([`forms`]), matched ASCII case-insensitively,
    /// plus `exact` byte strings (what keygate sent) in every encoding ([`sent_forms`])
    /// with their replacements. `None` when there is nothing to search for.
    pub fn of(pairs: &[(&[u8], &[u8])], exact: &[(Vec<u8>, Vec<u8>)]) -> Option<Reflections> {
        let mut all: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        for (sent, original) in exact {
            all.extend(sent_forms(sent, original));
        }
        for (real, dummy) in pairs.iter().filter(|(r, _)| !r.is_empty()) {
            all.extend(forms(real, dummy));
        }
        Reflections::compile(all, true)
    }

    /// Exactly these byte strings, case-sensitively (no other forms).
    pub fn exact(pairs: &[(&[u8], &[u8])]) -> Option<Reflections> {
        let all = pairs
            .iter()
            .map(|(r, d)| (r.to_vec(), d.to_vec()))
            .collect();
        Reflections::compile(all, false)
    }

    fn compile(mut all: Vec<(Vec<u8>, Vec<u8>)>, fold: bool) -> Option<Reflections> {
        all.retain(|(needle, _)| !needle.is_empty());
        if all.is_empty() {
            return None;
        }
        // Forms: at one position the longest form wins (it hides the most). Exact pairs:
        // the earlier pair wins, as the caller listed them.
        let kind = match fold {
            true => MatchKind::LeftmostLongest,
            false => MatchKind::LeftmostFirst,
        };
        let automaton = AhoCorasick::builder()
            .match_kind(kind)
            .ascii_case_insensitive(fold)
            .build(all.iter().map(|(n, _)| n))
            .ok()?;
        let mut tails = [false; 256];
        for b in all.iter().flat_map(|(n, _)| n.iter()) {
            tails[usize::from(b.to_ascii_lowercase())] = true;
            tails[usize::from(b.to_ascii_uppercase())] = true;
        }
        let same_length = all.iter().all(|(n, r)| n.len() == r.len());
        let (needles, replacements) = all.into_iter().map(|(n, r)| (n, Bytes::from(r))).unzip();
        Some(Reflections {
            automaton,
            needles,
            replacements,
            tails,
            same_length,
            fold,
        })
    }

    /// The leftmost match in `haystack[from..]`: (start, end, replacement).
    pub fn find(&self, haystack: &[u8], from: usize) -> Option<(usize, usize, &Bytes)> {
        let found = self
            .automaton
            .find(Input::new(haystack).range(from..haystack.len()))?;
        Some((
            found.start(),
            found.end(),
            &self.replacements[found.pattern().as_usize()],
        ))
    }

    /// True when `haystack` holds a needle.
    pub fn is_in(&self, haystack: &[u8]) -> bool {
        self.automaton.is_match(haystack)
    }

    /// Length of the longest tail of `buf` that is a proper prefix of some needle
    /// (compared as the automaton compares): those bytes may continue in the next chunk.
    pub fn partial_tail(&self, buf: &[u8]) -> usize {
        let Some(&last) = buf.last() else { return 0 };
        if !self.tails[usize::from(last)] {
            return 0;
        }
        let eq = |a: &[u8], b: &[u8]| match self.fold {
            true => a.eq_ignore_ascii_case(b),
            false => a == b,
        };
        self.needles
            .iter()
            .map(|needle| {
                let longest = (needle.len() - 1).min(buf.len());
                (1..=longest)
                    .rev()
                    .filter(|&k| needle[k - 1].eq_ignore_ascii_case(&last))
                    .find(|&k| eq(&buf[buf.len() - k..], &needle[..k]))
                    .unwrap_or(0)
            })
            .max()
            .unwrap_or(0)
    }

    /// True when every replacement is as long as its needle (a scrubbed body keeps its
    /// length).
    pub fn same_length(&self) -> bool {
        self.same_length
    }
}

impl SecretSet {
    /// Every dummy of the set, each reporting its secret's name when found (what the
    /// body tripwire searches with); `None` for an empty set.
    pub fn dummy_names(&self) -> Option<Arc<Reflections>> {
        self.dummy_names.clone()
    }

    /// The reflections of the secrets bound to `host:port` that have a value, plus the
    /// `exact` bytes of one request: the set's compiled searcher when one secret is
    /// bound and there is nothing exact (the common case), else compiled now. `None`
    /// when there is nothing to search for.
    pub fn reflections_for(
        &self,
        host: &Host,
        port: u16,
        minted: &[(&[u8], &[u8])],
        exact: &[(Vec<u8>, Vec<u8>)],
    ) -> Option<Arc<Reflections>> {
        let bound: Vec<usize> = self
            .iter()
            .enumerate()
            .filter(|(_, b)| b.real.is_some() && b.is_bound_to(host, port))
            .map(|(i, _)| i)
            .collect();
        match (bound.as_slice(), exact.is_empty() && minted.is_empty()) {
            ([], true) => return None,
            ([one], true) => return self.reflections.get(*one).cloned().flatten(),
            _ => {}
        }
        let bindings: Vec<&Arc<super::Binding>> = self.iter().collect();
        let scrubbed: Vec<_> = bound.iter().flat_map(|&i| bindings[i].scrubbed()).collect();
        let pairs: Vec<(&[u8], &[u8])> = scrubbed
            .iter()
            .map(|(r, d)| (r.as_bytes(), d.as_bytes()))
            .chain(minted.iter().copied())
            .collect();
        Reflections::of(&pairs, exact).map(Arc::new)
    }
}

#[cfg(test)]
#[path = "reflect_tests.rs"]
mod tests;
