//! `/mirror`: a hostile route of the fake API ([`super::api`]) that hands the credential
//! it received back to the client in one of the ways an upstream can (issue 14), so the
//! containment tests can check that none of them gets the real value past keygate.
//!
//! The credential is what arrived on the wire, from `?from=`:
//!
//! * `header`: the `x-api-key` value;
//! * `authorization`: the `Authorization` value, scheme included (`Basic …`);
//! * `query`: the `key` parameter of the raw request target, still percent-encoded as
//!   keygate sent it (an upstream echoing its request line returns that form).
//!
//! `?how=` says how it comes back (`V` is the credential):
//!
//! * `header`: verbatim in the header `x-mirror`; `body`: verbatim in the body;
//! * `basic`: as `header` and `body` together (meant for `from=authorization`);
//! * `reason`: `401 invalid key V` (an HTTP/1.1 reason phrase; h2 has none);
//! * `target`: the raw request target, in the body and in `x-mirror`;
//! * `redirect`: `302` to `/login?next=TARGET`, the raw request target percent-encoded
//!   once more (every non-alphanumeric byte), as a login wall sends a client back;
//! * `json-slash`: `{"key":"V"}` with every `/` escaped as `\/` (PHP's `json_encode`);
//! * `json-unicode`, `json-unicode-upper`: `{"key":"V"}` with every non-alphanumeric
//!   byte as `\u00xx`, lower- or upper-case hex;
//! * `upper`, `lower`: V upper- or lower-cased, in `x-mirror` and in the body;
//! * `header-name`: a header whose *name* is V lower-cased (422 if V cannot be a name);
//! * `base64`: V inside the blob `P + V + "!"` for each prefix P of 0, 1 and 2 bytes
//!   (the three alignments), base64-encoded standard and URL-safe: in the headers
//!   `x-mirror-b64-{std,url}-{0,1,2}` and one per line in the body;
//! * `trailer`: the body `ok\n`, then V in the trailer `x-mirror-trailer` (declared in
//!   `Trailer`);
//! * `gzip-trailer`: as `trailer`, but the body gzip-compressed (`Content-Encoding:
//!   gzip`): keygate decodes it, and its trailers it must still scrub.
//!
//! Every body goes out in two chunks cut in its middle (so a form is usually split across
//! them), and every response carries `x-mirror-how`. An unknown `how` or a missing
//! credential is a 400.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

use super::body::{self, TestBody};
use super::trace;

/// The answer of `/mirror` to `req`: see the module documentation.
pub fn respond(req: &Request<Incoming>) -> Response<TestBody> {
    let target = req
        .uri()
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_string();
    let query = req.uri().query().unwrap_or("");
    let how = param(query, "how").unwrap_or("");
    let Some(value) = credential(req, param(query, "from").unwrap_or("header")) else {
        return plain(StatusCode::BAD_REQUEST, "no credential to mirror\n");
    };
    let mut resp = match reflect(how, &value, &target) {
        Some(resp) => resp,
        None => plain(StatusCode::BAD_REQUEST, "unknown how\n"),
    };
    if let Ok(how) = HeaderValue::from_str(how) {
        resp.headers_mut().insert("x-mirror-how", how);
    }
    resp
}

/// The raw value of the query parameter `name` (not decoded).
fn param<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
}

/// The credential as it arrived, from where `from` says.
fn credential(req: &Request<Incoming>, from: &str) -> Option<Vec<u8>> {
    let header = |name: &str| req.headers().get(name).map(|v| v.as_bytes().to_vec());
    match from {
        "header" => header("x-api-key"),
        "authorization" => header("authorization"),
        "query" => param(req.uri().query()?, "key").map(|v| v.as_bytes().to_vec()),
        _ => None,
    }
}

/// The response for `how`, or `None` for an unknown `how`.
fn reflect(how: &str, value: &[u8], target: &str) -> Option<Response<TestBody>> {
    let text = String::from_utf8_lossy(value).into_owned();
    let resp = match how {
        "header" => with_header(in_two_chunks(Vec::new()), "x-mirror", value),
        "body" => in_two_chunks([b"you sent ".as_slice(), value, b"\n"].concat()),
        "basic" => with_header(in_two_chunks(value.to_vec()), "x-mirror", value),
        "reason" => reason(value),
        "target" => with_header(
            in_two_chunks(target.as_bytes().to_vec()),
            "x-mirror",
            target.as_bytes(),
        ),
        "redirect" => redirect(target),
        "json-slash" => json(&text.replace('/', "\\/")),
        "json-unicode" => json(&unicode_escaped(value, false)),
        "json-unicode-upper" => json(&unicode_escaped(value, true)),
        "upper" => cased(value.to_ascii_uppercase()),
        "lower" => cased(value.to_ascii_lowercase()),
        "header-name" => header_name(value),
        "base64" => base64_blobs(value),
        "trailer" => trailer(value, false),
        "gzip-trailer" => trailer(value, true),
        _ => return None,
    };
    Some(resp)
}

/// A fixed answer.
fn plain(status: StatusCode, text: &'static str) -> Response<TestBody> {
    let mut resp = Response::new(body::full(text));
    *resp.status_mut() = status;
    resp
}

/// `resp` with header `name: value` (left out if `value` cannot be a header value).
fn with_header(
    mut resp: Response<TestBody>,
    name: &'static str,
    value: &[u8],
) -> Response<TestBody> {
    if let Ok(v) = HeaderValue::from_bytes(value) {
        resp.headers_mut().insert(name, v);
    }
    resp
}

/// A 200 whose body is `content` in two chunks, cut in the middle.
fn in_two_chunks(content: Vec<u8>) -> Response<TestBody> {
    let (tx, body) = body::channel();
    tokio::spawn(trace::upstream(async move {
        let content = Bytes::from(content);
        let half = content.len() / 2;
        let _ = tx.send(content.slice(..half)).await;
        tokio::task::yield_now().await;
        let _ = tx.send(content.slice(half..)).await;
    }));
    Response::new(body)
}

/// `401 invalid key V`, the reason phrase as an HTTP/1.1 server writes it.
fn reason(value: &[u8]) -> Response<TestBody> {
    let mut resp = plain(StatusCode::UNAUTHORIZED, "denied\n");
    let phrase = [b"invalid key ".as_slice(), value].concat();
    if let Ok(phrase) = hyper::ext::ReasonPhrase::try_from(phrase) {
        resp.extensions_mut().insert(phrase);
    }
    resp
}

/// A login wall: 302 to a login page that will send the client back to `target`.
fn redirect(target: &str) -> Response<TestBody> {
    let next = utf8_percent_encode(target, NON_ALPHANUMERIC);
    let mut resp = plain(StatusCode::FOUND, "log in first\n");
    let location = HeaderValue::from_str(&format!("/login?next={next}")).expect("encoded");
    resp.headers_mut().insert(http::header::LOCATION, location);
    resp
}

/// `{"key":"ESCAPED"}`: `escaped` is already JSON-escaped.
fn json(escaped: &str) -> Response<TestBody> {
    let mut resp = in_two_chunks(format!("{{\"key\":\"{escaped}\"}}").into_bytes());
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// Every non-alphanumeric byte of `value` as `\u00xx` (`\u00XX` when `upper`).
fn unicode_escaped(value: &[u8], upper: bool) -> String {
    value
        .iter()
        .map(|&b| match (b.is_ascii_alphanumeric(), upper) {
            (true, _) => char::from(b).to_string(),
            (false, false) => format!("\\u{b:04x}"),
            (false, true) => format!("\\u{b:04X}"),
        })
        .collect()
}

/// The recased value in `x-mirror` and in the body.
fn cased(value: Vec<u8>) -> Response<TestBody> {
    let body = [value.as_slice(), b"\n"].concat();
    with_header(in_two_chunks(body), "x-mirror", &value)
}

/// A header named after the value (lower-cased), or 422 when it cannot be a name.
fn header_name(value: &[u8]) -> Response<TestBody> {
    let Ok(name) = HeaderName::from_bytes(&value.to_ascii_lowercase()) else {
        return plain(StatusCode::UNPROCESSABLE_ENTITY, "not a header name\n");
    };
    let mut resp = in_two_chunks(b"named\n".to_vec());
    resp.headers_mut()
        .insert(name, HeaderValue::from_static("1"));
    resp
}

/// The value at each alignment inside a longer blob, base64 standard and URL-safe.
fn base64_blobs(value: &[u8]) -> Response<TestBody> {
    let mut headers = HeaderMap::new();
    let mut body = Vec::new();
    for (alphabet, engine) in [("std", STANDARD), ("url", URL_SAFE)] {
        for (offset, prefix) in [b"".as_slice(), b"x", b"x:"].into_iter().enumerate() {
            let blob = engine.encode([prefix, value, b"!"].concat());
            body.extend_from_slice(format!("{alphabet}-{offset}: {blob}\n").as_bytes());
            let name = format!("x-mirror-b64-{alphabet}-{offset}");
            let name = HeaderName::from_bytes(name.as_bytes()).expect("a header name");
            headers.insert(
                name,
                HeaderValue::from_str(&blob).expect("base64 is a value"),
            );
        }
    }
    let mut resp = in_two_chunks(body);
    resp.headers_mut().extend(headers);
    resp
}

/// A body, then the value in the trailer `x-mirror-trailer`; with `gzip`, the body is
/// labelled `Content-Encoding: gzip` (its bytes hold no value).
fn trailer(value: &[u8], gzip: bool) -> Response<TestBody> {
    let mut trailers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_bytes(value) {
        trailers.insert("x-mirror-trailer", v);
    }
    let content: &'static [u8] = match gzip {
        true => GZIP_BODY,
        false => b"ok\n",
    };
    let mut resp = Response::new(body::with_trailers(content, trailers));
    // Declared, or an HTTP/1.1 server (hyper) sends no trailer at all.
    resp.headers_mut().insert(
        http::header::TRAILER,
        HeaderValue::from_static("x-mirror-trailer"),
    );
    if gzip {
        resp.headers_mut().insert(
            http::header::CONTENT_ENCODING,
            HeaderValue::from_static("gzip"),
        );
    }
    resp
}

/// The body of `gzip-trailer`: a gzip member of the text `ok\n` (no value in it).
pub const GZIP_BODY: &[u8] = &[
    0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0xcb, 0xcf, 0xe6, 0x02, 0x00, 0x7d,
    0x0e, 0x16, 0xda, 0x03, 0x00, 0x00, 0x00,
];
