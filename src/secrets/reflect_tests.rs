use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};

use super::*;

const REAL: &[u8] = b"sk-real/Key+With=Odd&Chars<42>";
const DUMMY: &[u8] = b"sk-dumm/Key+With=Odd&Chars<00>";

/// Replaces every reflection in `text` (one pass, as the scrubber does).
fn scrub(r: &Reflections, text: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some((start, end, with)) = r.find(text, at) {
        out.extend_from_slice(&text[at..start]);
        out.extend_from_slice(with);
        at = end;
    }
    out.extend_from_slice(&text[at..]);
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn every_encoding_of_the_value_is_found_and_replaced_by_the_dummys() {
    let r = Reflections::of(&[(REAL, DUMMY)], &[]).unwrap();
    let echoes: Vec<Vec<u8>> = vec![
        REAL.to_vec(),
        REAL.to_ascii_uppercase(),
        percent_encode(REAL, QUERY).to_string().into_bytes(),
        percent_encode(REAL, NON_ALPHANUMERIC)
            .to_string()
            .into_bytes(),
        percent_encode(REAL, NON_ALPHANUMERIC)
            .to_string()
            .to_ascii_lowercase()
            .into_bytes(),
        b"sk-real\\/Key+With=Odd&Chars<42>".to_vec(),
        b"sk-real/Key+With=Odd\\u0026Chars\\u003c42\\u003e".to_vec(),
        b"sk-real/Key+With=Odd\\u0026Chars\\u003C42\\u003E".to_vec(),
    ];
    for echo in &echoes {
        let text = [b"{\"echo\":\"".as_slice(), echo, b"\"}"].concat();
        let out = scrub(&r, &text);
        assert!(
            !contains(&out.to_ascii_lowercase(), b"real"),
            "{}",
            String::from_utf8_lossy(&out)
        );
    }
    assert_eq!(scrub(&r, REAL), DUMMY);
    assert_eq!(
        scrub(&r, b"sk-real\\/Key+With=Odd&Chars<42>"),
        b"sk-dumm\\/Key+With=Odd&Chars<00>"
    );
}

#[test]
fn base64_at_every_alignment_standard_and_url_safe() {
    let r = Reflections::of(&[(REAL, DUMMY)], &[]).unwrap();
    for prefix in ["", "x", "x:", "user:", "Bearer "] {
        for engine in [STANDARD, URL_SAFE] {
            let blob = engine.encode([prefix.as_bytes(), REAL, b"tail"].concat());
            let out = scrub(&r, blob.as_bytes());
            assert_ne!(out, blob.as_bytes(), "{prefix:?}: {blob}");
            // What is left decodes to no more than two bytes of the value at each end.
            let decoded = engine.decode(&out).unwrap_or_default();
            assert!(!contains(&decoded, &REAL[2..REAL.len() - 2]), "{prefix:?}");
        }
    }
}

#[test]
fn exact_bytes_keygate_sent_come_back_as_what_the_client_sent() {
    let sent = format!("Basic {}", STANDARD.encode([b"x:", REAL].concat())).into_bytes();
    let original = format!("Basic {}", STANDARD.encode([b"x:", DUMMY].concat())).into_bytes();
    let r = Reflections::of(&[(REAL, DUMMY)], &[(sent.clone(), original.clone())]).unwrap();
    assert_eq!(scrub(&r, &sent), original);
}

#[test]
fn a_plain_token_needs_no_encoded_forms_and_short_encodings_are_left_out() {
    let token = b"sk-ant-api03-0123456789abcdef";
    let forms = forms(token, b"sk-ant-api03-keygateDummy0000");
    // The value, then base64 only (three alignments; the URL-safe alphabet adds those
    // with `+` or `/`): its percent and JSON forms are itself.
    assert!(forms.iter().skip(1).all(|(n, _)| !n.starts_with(b"sk-")));
    assert!((1 + 3..=1 + 6).contains(&forms.len()), "{}", forms.len());
    let short = super::forms(b"abc123", b"zzz999");
    assert_eq!(
        short.len(),
        1,
        "a 6-byte value's base64 forms are too short"
    );
}

#[test]
fn exact_is_case_sensitive_and_of_is_not() {
    let exact = Reflections::exact(&[(b"Secret", b"Dummy!")]).unwrap();
    assert!(!exact.is_in(b"SECRET"));
    assert!(exact.is_in(b"a Secret b"));
    let folded = Reflections::of(&[(b"Secret", b"Dummy!")], &[]).unwrap();
    assert!(folded.is_in(b"SECRET"));
}

#[test]
fn partial_tails_are_prefixes_of_any_form() {
    let r = Reflections::of(&[(REAL, DUMMY)], &[]).unwrap();
    assert_eq!(r.partial_tail(b"data: sk-re"), 5);
    assert_eq!(r.partial_tail(b"data: SK-RE"), 5, "case-insensitive too");
    assert_eq!(r.partial_tail(b"data: sk-real%2FK"), 11);
    assert_eq!(r.partial_tail(b"data: {}\n"), 0);
    assert_eq!(r.partial_tail(b""), 0);
}

#[test]
fn debug_never_shows_a_needle() {
    let r = Reflections::of(&[(REAL, DUMMY)], &[]).unwrap();
    let text = format!("{r:?}");
    assert!(!text.contains("real") && !text.contains("sk-"), "{text}");
}

#[test]
fn what_keygate_put_on_the_wire_is_found_encoded_once_more() {
    let r = Reflections::of(&[(REAL, DUMMY)], &[]).unwrap();
    let wire = percent_encode(REAL, QUERY).to_string();
    let echoes = [
        // A JSON-escaped request target (PHP's `json_encode($_SERVER['REQUEST_URI'])`).
        wire.replace('/', "\\/"),
        wire.bytes()
            .map(|b| match b.is_ascii_alphanumeric() {
                true => char::from(b).to_string(),
                false => format!("\\u{b:04X}"),
            })
            .collect(),
        // A redirect that percent-encodes the target again.
        percent_encode(wire.as_bytes(), NON_ALPHANUMERIC).to_string(),
        // A state blob built from it.
        STANDARD.encode(format!("next={wire}!")),
    ];
    for echo in echoes {
        assert_ne!(
            scrub(&r, echo.as_bytes()),
            echo.as_bytes(),
            "{}",
            echo.len()
        );
    }
    // The Basic blob keygate sent, JSON-escaped.
    let sent = format!("Basic {}", STANDARD.encode([b"x:", REAL].concat())).into_bytes();
    let original = format!("Basic {}", STANDARD.encode([b"x:", DUMMY].concat())).into_bytes();
    let r = Reflections::of(&[(REAL, DUMMY)], &[(sent.clone(), original)]).unwrap();
    let escaped = String::from_utf8(sent).unwrap().replace('/', "\\/");
    assert_ne!(scrub(&r, escaped.as_bytes()), escaped.as_bytes());
}
