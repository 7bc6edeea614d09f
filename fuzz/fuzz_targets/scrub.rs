//! The response scrubber (src/addon/scrubber.rs, src/secrets/reflect.rs): an arbitrary
//! body, split into arbitrary chunks, with arbitrary (real, dummy) pairs.
//!
//! Input bytes:
//!
//! ```text
//! real1 TAB dummy1 [TAB real2 TAB dummy2 ...] LF body
//! ```
//!
//! Every 0xFF byte in the body is a chunk boundary (and is not part of the body).
//!
//! Properties: nothing panics; the streamed output equals the one-shot replacement of
//! the whole body (leftmost match first, the earlier pair on a tie) however the body is
//! chunked, and so do `scrub_all` and the `ChunkFilter` path; a chunk whose end cannot
//! be the start of a real value is released at once (nothing held back); when no dummy
//! overlaps a real value the output contains no real value. The same for a scrubber of
//! every form of the values (`Reflections::of`: percent, JSON, base64, any case): the
//! streamed output equals its one-shot replacement however the body is chunked, and the
//! body with each value replaced by one of its forms (the first body byte picks which)
//! comes out without that form. The scrub addon, given the pairs as secrets bound to
//! the flow's host, scrubs every form in the body and in a header, and drops a
//! Content-Length the replacement invalidates.

#![no_main]

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use keygate::addon::scrubber::Scrubber;
use keygate::secrets::reflect::{Reflections, forms};
use keygate::addon::{ChunkFilter, FlowContext, Pipeline};
use keygate::policy::{Host, HostPattern};
use keygate::secrets::{Binding, SecretSet, SecretValue};
use libfuzzer_sys::fuzz_target;

const CUT: u8 = 0xFF;
/// Checking the no-delay property costs a one-shot replacement per chunk.
const DELAY_CHECKS: usize = 32;

fuzz_target!(|data: &[u8]| {
    let Some(nl) = data.iter().position(|&b| b == b'\n') else {
        return;
    };
    let fields: Vec<&[u8]> = data[..nl].split(|&b| b == b'\t').collect();
    let pairs: Vec<(&[u8], &[u8])> = fields
        .chunks_exact(2)
        .take(4)
        .map(|p| (p[0], p[1]))
        .collect();
    let chunks: Vec<&[u8]> = data[nl + 1..].split(|&b| b == CUT).collect();
    let body: Vec<u8> = chunks.concat();

    let needles: Vec<(&[u8], &[u8])> = pairs
        .iter()
        .copied()
        .filter(|(r, _)| !r.is_empty())
        .collect();
    let Some(mut scrubber) = Scrubber::new(&pairs) else {
        assert!(
            needles.is_empty(),
            "a scrubber was refused for non-empty values"
        );
        return;
    };
    assert!(!needles.is_empty());
    let expected = reference(&needles, &body);

    // Streamed, chunk by chunk.
    let mut out = Vec::new();
    let mut seen = 0;
    for (i, chunk) in chunks.iter().enumerate() {
        out.extend_from_slice(&scrubber.push(chunk));
        seen += chunk.len();
        if i < DELAY_CHECKS && !ends_in_partial(&needles, &body[..seen]) {
            assert_eq!(
                out,
                reference(&needles, &body[..seen]),
                "bytes held back after chunk {i} although no value can start there"
            );
        }
    }
    out.extend_from_slice(&scrubber.finish());
    assert_eq!(
        out, expected,
        "streamed output differs from the one-shot replacement"
    );

    // One shot, and through the ChunkFilter trait the proxy uses.
    let mut whole = Scrubber::new(&pairs).unwrap();
    assert_eq!(whole.scrub_all(&body)[..], expected[..], "scrub_all");
    let mut filter: Box<dyn ChunkFilter> = Box::new(Scrubber::new(&pairs).unwrap());
    let mut via_trait = Vec::new();
    for chunk in &chunks {
        via_trait.extend_from_slice(&filter.filter(Bytes::copy_from_slice(chunk)));
    }
    via_trait.extend_from_slice(&filter.finish());
    assert_eq!(via_trait, expected, "ChunkFilter path");

    if no_overlap(&needles) {
        for (real, _) in &needles {
            assert!(!contains(&out, real), "a real value survived the scrub");
        }
    }
    check_forms(&needles, &chunks, &body);
    check_addon(&needles, &chunks, &body);
});

/// The one-shot replacement by a `Reflections`' own search over the whole body.
fn one_shot(reflections: &Reflections, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut at = 0;
    while let Some((start, end, with)) = reflections.find(body, at) {
        out.extend_from_slice(&body[at..start]);
        out.extend_from_slice(with);
        at = end;
    }
    out.extend_from_slice(&body[at..]);
    out
}

/// Every form at once: streamed equals one-shot; a body holding one encoded form of
/// each value loses it (when no dummy form can recreate it).
fn check_forms(needles: &[(&[u8], &[u8])], chunks: &[&[u8]], body: &[u8]) {
    let Some(reflections) = Reflections::of(needles, &[]) else {
        return;
    };
    let reflections = Arc::new(reflections);
    let mut scrubber = Scrubber::with(reflections.clone());
    let mut out = Vec::new();
    for chunk in chunks {
        out.extend_from_slice(&scrubber.push(chunk));
    }
    out.extend_from_slice(&scrubber.finish());
    assert_eq!(out, one_shot(&reflections, body), "forms: streamed vs one-shot");

    // The body again, with each value's chosen form in the middle.
    let pick = usize::from(body.first().copied().unwrap_or(0));
    let mut planted = body.to_vec();
    let mut planted_forms = Vec::new();
    for (real, dummy) in needles {
        let all = forms(real, dummy);
        let (form, _) = &all[pick % all.len()];
        planted.extend_from_slice(b" ");
        planted.extend_from_slice(form);
        planted_forms.push(form.clone());
    }
    let scrubbed = Scrubber::with(reflections).scrub_all(&planted);
    let replacements: Vec<Vec<u8>> = needles
        .iter()
        .flat_map(|(r, d)| forms(r, d).into_iter().map(|(_, with)| with))
        .collect();
    for form in &planted_forms {
        let clean = replacements.iter().chain(planted_forms.iter()).all(|other| {
            other == form || (!contains_ci(other, form) && !contains_ci(form, other))
        }) && !replacements.iter().any(|r| contains_ci(r, form));
        if clean && !contains_ci(body, form) {
            assert!(!contains_ci(&scrubbed, form), "a planted form survived");
        }
    }
}

fn contains_ci(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty()
        || haystack
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
}

/// The one-shot replacement: at each position the first pair whose real value starts
/// there wins; otherwise the byte is copied.
fn reference(needles: &[(&[u8], &[u8])], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        match needles.iter().find(|(real, _)| body[i..].starts_with(real)) {
            Some((real, dummy)) => {
                out.extend_from_slice(dummy);
                i += real.len();
            }
            None => {
                out.push(body[i]);
                i += 1;
            }
        }
    }
    out
}

/// Does `data` end with a proper prefix of some real value?
fn ends_in_partial(needles: &[(&[u8], &[u8])], data: &[u8]) -> bool {
    needles
        .iter()
        .any(|(real, _)| (1..real.len().min(data.len() + 1)).any(|k| data.ends_with(&real[..k])))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// Some proper suffix of `a` is a prefix of `b`.
fn suffix_prefix(a: &[u8], b: &[u8]) -> bool {
    (1..a.len().min(b.len())).any(|k| a.ends_with(&b[..k]))
}

/// No dummy contains, is contained in, or overlaps the start or end of a real value:
/// then a replacement cannot create a new occurrence (real secrets and the dummies
/// keygate generates never overlap like this).
fn no_overlap(needles: &[(&[u8], &[u8])]) -> bool {
    needles.iter().all(|(real, _)| {
        needles.iter().all(|(_, dummy)| {
            !contains(dummy, real)
                && !contains(real, dummy)
                && !suffix_prefix(dummy, real)
                && !suffix_prefix(real, dummy)
        })
    })
}

/// The scrub addon with the pairs as secrets bound to the flow's host, when they are
/// values the registry would accept (printable ASCII value, graphic ASCII dummy).
fn check_addon(needles: &[(&[u8], &[u8])], chunks: &[&[u8]], body: &[u8]) {
    let mut bindings = Vec::new();
    for (i, (real, dummy)) in needles.iter().enumerate() {
        let (Ok(real), Ok(dummy)) = (std::str::from_utf8(real), std::str::from_utf8(dummy)) else {
            return;
        };
        if dummy.is_empty() || !dummy.bytes().all(|b| b.is_ascii_graphic()) {
            return;
        }
        let Ok(value) = SecretValue::new(real.to_string()) else {
            return;
        };
        if value.expose() != real {
            return;
        }
        bindings.push(Binding {
            name: format!("s{i}"),
            hosts: vec![HostPattern::parse("api.example.com").unwrap()],
            header: HeaderName::from_static("authorization"),
            format: "{secret}".into(),
            env: Vec::new(),
            dummy: dummy.to_string(),
            methods: None,
            paths: None,
            query: false,
            websocket: false,
            body: None,
            kind: Default::default(),
            real: Some(value),
        });
    }
    let reflections = Reflections::of(needles, &[]).expect("non-empty values");
    let same_length = reflections.same_length();
    let flow = FlowContext::new(
        "fuzz".into(),
        Host::parse("api.example.com").unwrap(),
        443,
        true,
        Arc::new(SecretSet::new(bindings)),
    );
    let mut builder = http::Response::builder()
        .header("content-type", "text/plain")
        .header("content-length", body.len());
    let echo = HeaderValue::from_bytes(body).ok();
    if let Some(echo) = &echo {
        builder = builder.header("x-echo", echo);
    }
    let mut head = builder.body(()).unwrap().into_parts().0;
    let filters = Pipeline::default().on_response(&flow, &mut head);
    assert_eq!(filters.len(), 1, "one body filter (scrub) for a plain body");
    // A header whose *name* holds a form is dropped (a one-letter value can sit in
    // `content-length` itself; found by this target).
    let kept = |name: &str| !reflections.is_in(name.as_bytes());
    assert_eq!(
        head.headers.contains_key("content-length"),
        same_length && kept("content-length")
    );
    let want = one_shot(&reflections, body);
    if echo.is_some() && kept("x-echo") && HeaderValue::from_bytes(&want).is_ok() {
        assert_eq!(head.headers["x-echo"].as_bytes(), &want[..], "header scrub");
    }
    let mut filter = filters.into_iter().next().unwrap();
    let mut out = Vec::new();
    for chunk in chunks {
        out.extend_from_slice(&filter.filter(Bytes::copy_from_slice(chunk)));
    }
    out.extend_from_slice(&filter.finish());
    assert_eq!(out, want, "addon body scrub");
}
