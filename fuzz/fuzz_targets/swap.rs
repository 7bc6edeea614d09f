//! The request side of the addon pipeline (src/addon: host check, tripwire, least
//! privilege, swap) on arbitrary request heads, with four registered secrets whose
//! dummy/real pairs are known.
//!
//! Input: text (invalid UTF-8 is replaced), one item per line:
//!
//! ```text
//! <host> [<port>] [plain]          the flow: CONNECT host and port, or plain HTTP
//! <METHOD> <request-target>
//! <name>: <value>                  any number of headers
//! ```
//!
//! In the request target and header values `{a}` `{b}` `{c}` `{d}` stand for the dummies
//! of secrets alpha, beta, gamma and delta, `{%a}` … for a dummy fully percent-encoded;
//! a value starting `!basic ` becomes `Basic base64(rest)`.
//!
//! Properties, for every request the pipeline lets through (a refused request is never
//! forwarded): a real value appears only on an intercepted request to a host its secret
//! is bound to, and that secret is recorded as swapped; on such a request no dummy of a
//! bound secret is left in a header value (raw or inside Basic) nor, with `query: true`,
//! in the query; a credential header that carried the dummy has exactly one value; a
//! header without any dummy is unchanged; a dummy of a secret not bound to the host
//! never passes (the tripwire covers every form the swap would swap); plain HTTP is
//! never rewritten; a bound secret without a value refuses rather than forwarding its
//! dummy.

#![no_main]

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use keygate::addon::{FlowContext, Pipeline, swap};
use keygate::policy::{Host, HostPattern, parse_authority};
use keygate::secrets::{Binding, SecretSet, SecretValue};
use libfuzzer_sys::fuzz_target;
use percent_encoding::percent_decode_str;

/// (name, hosts, header, dummy, real, query, methods, paths). Fake values: no dummy
/// overlaps another or any real value, as the registry enforces.
type Spec = (
    &'static str,
    &'static [&'static str],
    &'static str,
    &'static str,
    Option<&'static str>,
    bool,
    Option<&'static [&'static str]>,
    Option<&'static [&'static str]>,
);

const SECRETS: [Spec; 4] = [
    (
        "alpha",
        &["api.alpha.example"],
        "authorization",
        "keygate-dummy-alpha-Q7x9Lm2Pz4Rt8Vw1",
        Some("sk-alpha-REAL-4f8e2a91c3d7b605"),
        false,
        None,
        None,
    ),
    (
        "beta",
        &["*.beta.example", "10.0.0.0/8:8443"],
        "x-api-key",
        "keygate-dummy-beta-Hn3Kc6Ys0Ub5Jd2F",
        // Every printable ASCII class that needs care in a query or a header.
        Some("beta REAL+/=&%?#|^\\[]{}`\"<>~;:,@!$'()*-9e1c"),
        true,
        None,
        None,
    ),
    (
        "gamma",
        &["api.alpha.example"],
        "x-goog-api-key",
        "AIzaKeygateDummyGammaWb8Nf3Tq6Xs1Z",
        Some("AIzaGAMMA-REAL_0123456789abcdefXYZ"),
        true,
        Some(&["GET", "POST"]),
        Some(&["/v1/*"]),
    ),
    (
        "delta",
        &["delta.example:*"],
        "authorization",
        "keygate-dummy-delta-Mv5Gp9Ld3Sx7Qa0K",
        None,
        false,
        None,
        None,
    ),
];

const TOKENS: [char; 4] = ['a', 'b', 'c', 'd'];

fn secrets() -> &'static Arc<SecretSet> {
    static SET: OnceLock<Arc<SecretSet>> = OnceLock::new();
    SET.get_or_init(|| {
        let bindings = SECRETS
            .iter()
            .map(
                |&(name, hosts, header, dummy, real, query, methods, paths)| Binding {
                    name: name.into(),
                    hosts: hosts
                        .iter()
                        .map(|h| HostPattern::parse(h).unwrap())
                        .collect(),
                    header: HeaderName::from_static(header),
                    format: "{secret}".into(),
                    env: Vec::new(),
                    dummy: dummy.into(),
                    methods: methods.map(|m| {
                        m.iter()
                            .map(|m| Method::from_bytes(m.as_bytes()).unwrap())
                            .collect()
                    }),
                    paths: paths
                        .map(|p| p.iter().map(|p| glob::Pattern::new(p).unwrap()).collect()),
                    query,
                    websocket: false,
                    body: None,
                    kind: Default::default(),
                    real: real.map(|r| SecretValue::new(r.into()).unwrap()),
                },
            )
            .collect();
        Arc::new(SecretSet::new(bindings))
    })
}

fn pipeline() -> &'static Pipeline {
    static PIPELINE: OnceLock<Pipeline> = OnceLock::new();
    PIPELINE.get_or_init(Pipeline::default)
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Some((flow, mut parts)) = parse(&text) else {
        return;
    };
    let mut flow = flow;
    let input = parts.clone();
    let result = pipeline().on_request(&mut flow, &mut parts);
    if result.is_err() {
        // A refused request is answered by keygate and never forwarded.
        return;
    }
    for b in secrets().iter() {
        check_secret(b, &flow, &input, &parts);
    }
    if !flow.intercepted {
        assert_eq!(parts.headers, input.headers, "plain HTTP rewritten");
        assert_eq!(parts.uri, input.uri, "plain HTTP rewritten");
    }
    check_untouched_headers(&input.headers, &parts.headers);
});

fn check_secret(
    b: &Binding,
    flow: &FlowContext,
    input: &http::request::Parts,
    output: &http::request::Parts,
) {
    let bound = b.is_bound_to(&flow.host, flow.port);
    let dummy = b.dummy.as_str();
    let swapped = flow.swapped.contains(&b.name);
    if let Some(real) = b.real.as_ref().map(|r| r.expose()) {
        // (The input never holds a real value: the fuzzer is not given any.)
        if !anywhere(&input.headers, &input.uri, real)
            && anywhere(&output.headers, &output.uri, real)
        {
            assert!(flow.intercepted, "{}: real value in plain HTTP", b.name);
            assert!(
                bound,
                "{}: real value sent to {}:{}",
                b.name, flow.host, flow.port
            );
            assert!(swapped, "{}: real value sent but not recorded", b.name);
        }
    }
    if !bound {
        // The tripwire let it through, so nothing of this secret's may be in it.
        let mut probe = input.headers.clone();
        swap::swap_headers(&mut probe, &b.header, dummy, "SWAPPED");
        assert_eq!(
            probe, input.headers,
            "{}: dummy passed to unbound {}",
            b.name, flow.host
        );
        assert_eq!(swap::swap_query(&input.uri, dummy, "SWAPPED"), input.uri);
        assert!(
            !raw_headers_contain(&input.headers, dummy),
            "{}: dummy passed",
            b.name
        );
        assert!(
            !uri_contains(&input.uri, dummy),
            "{}: dummy in URL passed",
            b.name
        );
        assert!(!swapped);
        return;
    }
    let carried = raw_headers_contain(&input.headers, dummy)
        || basic_contains(&input.headers, dummy)
        || (b.query && query_contains(&input.uri, dummy));
    if !flow.intercepted {
        assert!(!swapped);
        return;
    }
    if b.real.is_none() {
        assert!(
            !carried,
            "{}: dummy forwarded although the secret has no value",
            b.name
        );
        assert!(!swapped);
        return;
    }
    // A dummy can be carried and not swapped only when an earlier secret's swap dropped
    // the value holding it (a second Authorization value): then it is gone, as below.
    assert!(
        !swapped || carried,
        "{}: recorded as swapped but not carried",
        b.name
    );
    if !carried {
        return;
    }
    for (name, value) in &output.headers {
        assert!(
            !contains(value.as_bytes(), dummy),
            "{}: dummy left in header {name}",
            b.name
        );
        assert!(
            !basic(value).is_some_and(|c| c.contains(dummy)),
            "{}: dummy left in Basic credentials of {name}",
            b.name
        );
    }
    if b.query {
        // Neither as written nor percent-encoded (the tripwire looks at both).
        assert!(
            !query_contains(&output.uri, dummy),
            "{}: dummy left in the query",
            b.name
        );
    }
    for name in [
        http::header::AUTHORIZATION,
        HeaderName::from_static("x-api-key"),
        b.header.clone(),
    ] {
        let had = input.headers.get_all(&name).iter().any(|v| {
            v.to_str().is_ok_and(|t| t.contains(dummy))
                || basic(v).is_some_and(|c| c.contains(dummy))
        });
        if had {
            let n = output.headers.get_all(&name).iter().count();
            assert_eq!(n, 1, "{}: credential header {name} has {n} values", b.name);
        }
    }
}

/// Header names in which no value carries any dummy keep their values, in order.
fn check_untouched_headers(input: &HeaderMap, output: &HeaderMap) {
    for name in input.keys() {
        let values: Vec<&HeaderValue> = input.get_all(name).iter().collect();
        let touched = values.iter().any(|v| {
            SECRETS.iter().any(|s| {
                contains(v.as_bytes(), s.3) || lenient_decodings(v).iter().any(|d| d.contains(s.3))
            })
        });
        if !touched {
            let after: Vec<&HeaderValue> = output.get_all(name).iter().collect();
            assert_eq!(after, values, "header {name} without a dummy was changed");
        }
    }
}

/// Builds the flow and the request head; `None` for input hyper would not deliver.
fn parse(text: &str) -> Option<(FlowContext, http::request::Parts)> {
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let mut flow_words = lines.next()?.split_whitespace();
    let host = Host::parse(flow_words.next()?).ok()?;
    let port = flow_words
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or(443);
    let intercepted = flow_words.next() != Some("plain");
    let (method, target) = lines.next()?.split_once(' ')?;
    let uri: Uri = expand(target.trim()).parse().ok()?;
    let mut builder = http::Request::builder()
        .method(Method::from_bytes(method.as_bytes()).ok()?)
        .uri(uri);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = expand(value.trim_matches([' ', '\t']));
        let value = match value.strip_prefix("!basic ") {
            Some(creds) => format!("Basic {}", STANDARD.encode(creds)),
            None => value,
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.trim().as_bytes()),
            HeaderValue::from_bytes(value.as_bytes()),
        ) else {
            continue;
        };
        builder = builder.header(name, value);
    }
    let parts = builder.body(()).ok()?.into_parts().0;
    if !intercepted {
        // What src/proxy/exchange/forward.rs hands the pipeline: an absolute `http://`
        // target whose authority is the flow's host and port (anything else is a 400
        // first).
        let authority = parts.uri.authority()?.as_str();
        let target = parse_authority(authority, Some(80)).ok()?;
        if parts.uri.scheme() != Some(&http::uri::Scheme::HTTP) || target != (host.clone(), port) {
            return None;
        }
    }
    let flow = FlowContext::new("fuzz".into(), host, port, intercepted, secrets().clone());
    Some((flow, parts))
}

/// Replaces `{a}`.. by the dummies and `{%a}`.. by the dummies percent-encoded.
fn expand(text: &str) -> String {
    let mut out = text.to_string();
    for (token, spec) in TOKENS.iter().zip(&SECRETS) {
        let encoded: String = spec.3.bytes().map(|b| format!("%{b:02X}")).collect();
        out = out
            .replace(&format!("{{{token}}}"), spec.3)
            .replace(&format!("{{%{token}}}"), &encoded);
    }
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

fn raw_headers_contain(headers: &HeaderMap, needle: &str) -> bool {
    headers.values().any(|v| contains(v.as_bytes(), needle))
}

/// `Basic <base64>` as clients send it (scheme case-insensitive).
fn basic(value: &HeaderValue) -> Option<String> {
    let text = value.to_str().ok()?.trim();
    let (scheme, encoded) = text.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()
}

fn basic_contains(headers: &HeaderMap, needle: &str) -> bool {
    headers
        .values()
        .any(|v| basic(v).is_some_and(|c| c.contains(needle)))
}

/// Every base64 reading of every word of the value: a superset of what any addon
/// decodes.
fn lenient_decodings(value: &HeaderValue) -> Vec<String> {
    let text = String::from_utf8_lossy(value.as_bytes());
    let mut out = Vec::new();
    for word in text.split(|c: char| c.is_whitespace() || c == ',' || c == ';' || c == '=') {
        for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
            if let Ok(bytes) = engine.decode(word) {
                out.push(String::from_utf8_lossy(&bytes).into_owned());
            }
        }
    }
    // Padding is stripped by the word split at '='; decode the unsplit words too.
    for word in text.split_whitespace() {
        if let Ok(bytes) = STANDARD.decode(word) {
            out.push(String::from_utf8_lossy(&bytes).into_owned());
        }
    }
    out
}

fn decoded(text: &str) -> Cow<'_, str> {
    percent_decode_str(text).decode_utf8_lossy()
}

/// In the part of the URL that goes upstream: keygate rebuilds the upstream URL from
/// the CONNECT host and the path and query (src/proxy/exchange/mod.rs `prepare`), and
/// the plain-HTTP client sends origin-form, so a scheme or userinfo never leaves.
fn uri_contains(uri: &Uri, needle: &str) -> bool {
    let text = uri.path_and_query().map_or("", |pq| pq.as_str());
    text.contains(needle) || decoded(text).contains(needle)
}

fn query_contains(uri: &Uri, needle: &str) -> bool {
    uri.query()
        .is_some_and(|q| q.contains(needle) || decoded(q).contains(needle))
}

/// The value anywhere in the head: raw, percent-decoded, or base64-decoded.
fn anywhere(headers: &HeaderMap, uri: &Uri, needle: &str) -> bool {
    raw_headers_contain(headers, needle)
        || headers
            .values()
            .any(|v| lenient_decodings(v).iter().any(|d| d.contains(needle)))
        || headers
            .values()
            .any(|v| decoded(&String::from_utf8_lossy(v.as_bytes())).contains(needle))
        || uri_contains(uri, needle)
}
