//! The secret-leak check every injection test ends with (DESIGN "Testing the real
//! thing"): the real value must appear nowhere keygate wrote: not in the audit log, not
//! in any response head or body the client saw, not in keygate's logs at trace level.
//! [`assert_no_form`] looks harder: for the value in any form an upstream may have
//! re-encoded it into (case changed, percent-encoded, JSON-escaped, base64 at any
//! alignment).

use http::Response;
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::proxy::TestProxy;
use super::{trace, within};

/// Everything a client received, as text.
#[derive(Debug, Default)]
pub struct ClientSaw {
    texts: Vec<String>,
}

impl ClientSaw {
    /// Records a response head: status (with an HTTP/1.1 reason phrase that is not the
    /// status code's own, as hyper exposes it) and every header.
    pub fn head<B>(&mut self, resp: &Response<B>) {
        let mut text = format!("{:?} {}", resp.version(), resp.status());
        if let Some(reason) = resp.extensions().get::<hyper::ext::ReasonPhrase>() {
            text.push_str(&format!(
                " [reason: {}]",
                String::from_utf8_lossy(reason.as_bytes())
            ));
        }
        text.push('\n');
        for (k, v) in resp.headers() {
            text.push_str(&format!("{k}: {}\n", String::from_utf8_lossy(v.as_bytes())));
        }
        self.texts.push(text);
    }

    /// Records some text the client got another way (a curl output, a frame).
    pub fn text(&mut self, text: impl Into<String>) {
        self.texts.push(text.into());
    }

    /// Records trailers.
    pub fn trailers(&mut self, trailers: &http::HeaderMap) {
        let mut text = String::from("trailers:\n");
        for (k, v) in trailers {
            text.push_str(&format!("{k}: {}\n", String::from_utf8_lossy(v.as_bytes())));
        }
        self.texts.push(text);
    }

    /// Everything recorded so far, one text per part.
    pub fn texts(&self) -> &[String] {
        &self.texts
    }

    /// Records the head, reads the body (bounded), records it and returns it.
    pub async fn read(&mut self, resp: Response<Incoming>) -> (http::response::Parts, String) {
        self.head(&resp);
        let (parts, body) = resp.into_parts();
        let bytes = within("a response body", body.collect())
            .await
            .expect("response body")
            .to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        self.texts.push(text.clone());
        (parts, text)
    }
}

/// Fails if `real` appears in `text`, naming `what`.
pub fn assert_absent(real: &str, what: &str, text: &str) {
    if let Some(at) = text.find(real) {
        let from = text[..at]
            .char_indices()
            .rev()
            .nth(200)
            .map_or(0, |(i, _)| i);
        panic!(
            "the real secret value leaked into {what}: ...{}",
            &text[from..at]
        );
    }
}

/// Fails if `real` is in the proxy's audit events, in what the client saw, or in the
/// trace-level log of this test binary.
pub fn assert_no_leak(real: &str, proxy: &TestProxy, saw: &ClientSaw) {
    assert!(
        !saw.texts.is_empty(),
        "the leak check needs what the client saw"
    );
    let audit = serde_json::to_string(&proxy.events()).expect("audit events as JSON");
    assert_absent(real, "the audit log", &audit);
    for (i, text) in saw.texts.iter().enumerate() {
        assert_absent(real, &format!("client-visible response part #{i}"), text);
    }
    let log = trace::captured();
    assert!(
        log.contains("TRACE") || log.contains("DEBUG"),
        "the trace capture is not recording"
    );
    assert_absent(real, "keygate's trace-level log", &log);
}

/// Fails if any form of `real` is in `bytes` ([`find_form`]), naming `what` and the form,
/// with a short context in which the value is masked (a failure never prints it).
pub fn assert_no_form(real: &str, what: &str, bytes: &[u8]) {
    if let Some(found) = find_form(real.as_bytes(), bytes) {
        panic!(
            "a form of the real secret value leaked into {what}: {} found in ...{}...",
            found.form, found.context
        );
    }
}

/// [`assert_no_form`] for every part the client saw, and for the audit log. (Not for the
/// trace log: it holds every test's events, megabytes, and this check costs seconds a
/// megabyte in a debug build; [`assert_no_leak`] searches it for the value itself.)
pub fn assert_no_form_seen(real: &str, proxy: &TestProxy, saw: &ClientSaw) {
    for (i, text) in saw.texts().iter().enumerate() {
        assert_no_form(real, &format!("client-visible part #{i}"), text.as_bytes());
    }
    let audit = serde_json::to_string(&proxy.events()).expect("audit events as JSON");
    assert_no_form(real, "the audit log", audit.as_bytes());
}

/// A form of a real value found by [`find_form`].
#[derive(Debug)]
pub struct Found {
    /// Which form, e.g. `the value (any case), in the JSON-unescaped text`.
    pub form: String,
    /// Bytes around it, escaped, with the value and any piece of it masked.
    pub context: String,
}

/// Looks for `real` in `bytes` in every form an echoing upstream may produce. In each
/// view of the text (as it is; percent-decoded; JSON-unescaped: `\/`, `\"`, `\uXXXX`...;
/// and these in any order, up to three deep) it looks for the value ASCII case-insensitively; and in
/// each run of base64 characters of each view (standard and URL-safe alphabets), decoded
/// from each of the 4 offsets, as it is and percent-decoded, for the value minus two
/// bytes at each end (bytes shared with whatever the blob held around it).
pub fn find_form(real: &[u8], bytes: &[u8]) -> Option<Found> {
    let views = views(bytes);
    for (name, text) in &views {
        if let Some(at) = find_ci(text, real) {
            let form = format!("the value (any case), in the {name} text");
            return Some(found(form, text, at, real));
        }
    }
    let core = base64_core(real)?;
    for (name, text) in &views {
        for alphabet in [Alphabet::Standard, Alphabet::UrlSafe] {
            for run in base64_runs(text, alphabet) {
                for offset in 0..4 {
                    let decoded = decode_base64(&run[offset.min(run.len())..], alphabet);
                    for (how, d) in [
                        ("", decoded.clone()),
                        (", then percent-decoded", pct(&decoded)),
                    ] {
                        if let Some(at) = find_ci(&d, core) {
                            let form = format!(
                                "the value minus two bytes at each end, base64 ({alphabet:?}, \
                                 offset {offset}){how}, in the {name} text"
                            );
                            return Some(found(form, &d, at, core));
                        }
                    }
                }
            }
        }
    }
    None
}

/// The text as it is, and as percent-decoding and JSON-unescaping leave it, applied
/// in any order up to three times (a value percent-encoded twice, or percent-encoded and
/// then JSON-escaped); views equal to an earlier one are left out.
fn views(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    type Decode = fn(&[u8]) -> Vec<u8>;
    let decoders: [(&str, Decode); 2] =
        [("percent-decoded", pct), ("JSON-unescaped", json_unescape)];
    let mut views = vec![("verbatim".to_string(), bytes.to_vec())];
    let mut last = 0..1;
    for _ in 0..3 {
        let start = views.len();
        for i in last.clone() {
            for (name, decode) in decoders {
                let decoded = decode(&views[i].1);
                if views.iter().all(|(_, v)| *v != decoded) {
                    let name = match i {
                        0 => name.to_string(),
                        _ => format!("{}, then {name}", views[i].0),
                    };
                    views.push((name, decoded));
                }
            }
        }
        last = start..views.len();
    }
    views
}

/// The part of a value that a base64 blob holding it always encodes on its own.
fn base64_core(real: &[u8]) -> Option<&[u8]> {
    (real.len() >= 12).then(|| &real[2..real.len() - 2])
}

/// Where `needle` first occurs in `haystack`, ASCII case-insensitively.
fn find_ci(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let (h, n) = (haystack.to_ascii_lowercase(), needle.to_ascii_lowercase());
    memchr::memmem::find(&h, &n)
}

fn pct(bytes: &[u8]) -> Vec<u8> {
    percent_encoding::percent_decode(bytes).collect()
}

/// JSON string escapes undone wherever they are (`\uXXXX` as UTF-8); anything that is
/// not a valid escape is kept as it is.
fn json_unescape(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let (b, next) = (bytes[i], bytes.get(i + 1).copied());
        let simple = match next {
            Some(c @ (b'/' | b'"' | b'\\')) => Some(c),
            Some(b'n') => Some(b'\n'),
            Some(b'r') => Some(b'\r'),
            Some(b't') => Some(b'\t'),
            Some(b'b') => Some(8),
            Some(b'f') => Some(12),
            _ => None,
        };
        let unicode = (next == Some(b'u'))
            .then(|| bytes.get(i + 2..i + 6))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u32::from_str_radix(hex, 16).ok())
            .and_then(char::from_u32);
        match (b == b'\\', simple, unicode) {
            (true, Some(c), _) => {
                out.push(c);
                i += 2;
            }
            (true, None, Some(c)) => {
                out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                i += 6;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

#[derive(Debug, Clone, Copy)]
enum Alphabet {
    Standard,
    UrlSafe,
}

/// The 6-bit value of `c` in `alphabet`.
fn sextet(c: u8, alphabet: Alphabet) -> Option<u8> {
    match (c, alphabet) {
        (b'A'..=b'Z', _) => Some(c - b'A'),
        (b'a'..=b'z', _) => Some(c - b'a' + 26),
        (b'0'..=b'9', _) => Some(c - b'0' + 52),
        (b'+', Alphabet::Standard) | (b'-', Alphabet::UrlSafe) => Some(62),
        (b'/', Alphabet::Standard) | (b'_', Alphabet::UrlSafe) => Some(63),
        _ => None,
    }
}

/// Every maximal run of at least 4 characters of `alphabet`.
fn base64_runs(text: &[u8], alphabet: Alphabet) -> Vec<&[u8]> {
    text.split(|&c| sextet(c, alphabet).is_none())
        .filter(|run| run.len() >= 4)
        .collect()
}

/// The whole 4-character groups of `run`, decoded (a trailing partial group is dropped).
fn decode_base64(run: &[u8], alphabet: Alphabet) -> Vec<u8> {
    let mut out = Vec::with_capacity(run.len() / 4 * 3);
    for group in run.chunks_exact(4) {
        let n = group.iter().fold(0u32, |n, &c| {
            (n << 6) | u32::from(sextet(c, alphabet).unwrap_or(0))
        });
        out.extend_from_slice(&n.to_be_bytes()[1..]);
    }
    out
}

/// A [`Found`] at `at` in `text`: up to 32 bytes either side, the value masked.
fn found(form: String, text: &[u8], at: usize, value: &[u8]) -> Found {
    let from = at.saturating_sub(32);
    let to = (at + value.len() + 32).min(text.len());
    Found {
        form,
        context: masked(&text[from..to], value),
    }
}

/// `context`, escaped, with `*` for every byte inside a stretch of 5 or more bytes that
/// also occurs (in any case) in `value`: the value itself and any piece of it.
fn masked(context: &[u8], value: &[u8]) -> String {
    const PIECE: usize = 5;
    let mut hidden = vec![false; context.len()];
    for start in 0..context.len().saturating_sub(PIECE - 1) {
        if find_ci(value, &context[start..start + PIECE]).is_some() {
            hidden[start..start + PIECE].fill(true);
        }
    }
    context
        .iter()
        .zip(hidden)
        .map(|(&b, hide)| match hide {
            true => "*".to_string(),
            false => b.escape_ascii().to_string(),
        })
        .collect()
}

#[test]
fn the_form_checker_finds_each_form_and_never_prints_the_value() {
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    let real = "Sk+Real=Key/Mixed&Case%Tail-0123";
    let pct_all: String = real.bytes().map(|b| format!("%{b:02x}")).collect();
    let unicode: String = real.bytes().map(|b| format!("\\u{b:04X}")).collect();
    let cases = [
        ("verbatim", format!("x {real} y")),
        ("upper", real.to_ascii_uppercase()),
        ("percent", format!("/a?key={pct_all}&b=1")),
        (
            "json slash",
            format!("{{\"k\":\"{}\"}}", real.replace('/', "\\/")),
        ),
        ("json unicode", format!("{{\"k\":\"{unicode}\"}}")),
        (
            "percent in json",
            format!("\"/m?key={}\"", pct_all.replace("%2f", "\\/")),
        ),
        ("base64 offset 2", STANDARD.encode(format!("x:{real}!"))),
        (
            "base64url offset 1",
            URL_SAFE_NO_PAD.encode(format!("y{real}")),
        ),
        ("base64 of the percent-encoding", STANDARD.encode(&pct_all)),
        ("percent twice", pct_all.replace('%', "%25")),
    ];
    for (name, text) in cases {
        let found = find_form(real.as_bytes(), text.as_bytes())
            .unwrap_or_else(|| panic!("{name}: not found"));
        assert!(!found.context.contains("Real=Key"), "{name}: {found:?}");
    }
    let clean = [
        "keygate-dummy-x-0123",
        "Sk+Real=Key/ but not the rest",
        &STANDARD.encode("unrelated bytes, long enough to decode"),
    ];
    for text in clean {
        assert!(
            find_form(real.as_bytes(), text.as_bytes()).is_none(),
            "{text}"
        );
    }
}
