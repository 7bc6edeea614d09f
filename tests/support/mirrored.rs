//! The client side of [`super::mirror`]: where a request puts the dummy ([`Source`]), the
//! request itself ([`MirrorRequest`]), everything the client gets back ([`Got`]), and
//! whether the upstream received the real value (the swap happened).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::{HeaderMap, StatusCode, Version};
use http_body_util::BodyExt;
use percent_encoding::{percent_decode_str, utf8_percent_encode};

use super::api::ApiUpstream;
use super::intercepted::Conn;
use super::leak::ClientSaw;
use super::within;

/// Where the client puts the dummy (and so where the upstream reads the real value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `x-api-key: DUMMY`.
    Header,
    /// `Authorization: Basic base64(x:DUMMY)`.
    Basic,
    /// `?key=DUMMY`, percent-encoded as keygate encodes a query value.
    Query,
}

/// `value` percent-encoded as keygate puts a value in a query.
pub fn query_encoded(value: &str) -> String {
    utf8_percent_encode(value, keygate::secrets::reflect::QUERY).to_string()
}

/// One `/mirror` request (always with `te: trailers`).
#[derive(Debug, Clone)]
pub struct MirrorRequest {
    /// Path and query.
    pub path: String,
    /// Headers besides the host.
    pub headers: Vec<(&'static str, String)>,
    /// The credential as the client wrote it: what the client must get back wherever
    /// the upstream echoed it.
    pub sent: String,
}

impl MirrorRequest {
    /// `/mirror?how=HOW` with `dummy` where `source` says.
    pub fn new(how: &str, source: Source, dummy: &str) -> MirrorRequest {
        let te = ("te", "trailers".to_string());
        let (from, headers, sent) = match source {
            Source::Header => (
                "header",
                vec![("x-api-key", dummy.to_string())],
                dummy.to_string(),
            ),
            Source::Basic => {
                let blob = format!("Basic {}", STANDARD.encode(format!("x:{dummy}")));
                ("authorization", vec![("authorization", blob.clone())], blob)
            }
            Source::Query => ("query", Vec::new(), query_encoded(dummy)),
        };
        let key = match source {
            Source::Query => format!("&key={sent}"),
            _ => String::new(),
        };
        MirrorRequest {
            path: format!("/mirror?how={how}&from={from}{key}"),
            headers: headers.into_iter().chain([te]).collect(),
            sent,
        }
    }

    /// Sends it on `conn` (to `host`) and reads everything back, recorded in `saw`.
    pub async fn exchange(&self, conn: &mut Conn, host: &str, saw: &mut ClientSaw) -> Got {
        let headers: Vec<(&str, &str)> =
            self.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let resp = conn.send(conn.get(host, &self.path, &headers)).await;
        saw.head(&resp);
        let reason = resp
            .extensions()
            .get::<hyper::ext::ReasonPhrase>()
            .map(|r| r.as_bytes().to_vec());
        let (parts, body) = resp.into_parts();
        let collected = within("a body and its trailers", body.collect())
            .await
            .expect("the response body");
        let trailers = collected.trailers().cloned();
        let body = collected.to_bytes();
        saw.text(String::from_utf8_lossy(&body).into_owned());
        if let Some(t) = &trailers {
            saw.trailers(t);
        }
        Got {
            version: parts.version,
            status: parts.status,
            reason,
            headers: parts.headers,
            body,
            trailers,
        }
    }
}

/// What the client received, every part of it.
#[derive(Debug)]
pub struct Got {
    /// The response's HTTP version.
    pub version: Version,
    /// The status code.
    pub status: StatusCode,
    /// An HTTP/1.1 reason phrase that is not the status code's own.
    pub reason: Option<Vec<u8>>,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
    /// The trailers, if any came.
    pub trailers: Option<HeaderMap>,
}

impl Got {
    /// Each part as a leak check reads it: reason phrase, header names, header values,
    /// body, trailer names and values.
    pub fn parts(&self) -> Vec<(&'static str, Vec<u8>)> {
        let names = |h: &HeaderMap| h.keys().map(|k| k.as_str()).collect::<Vec<_>>().join("\n");
        let values = |h: &HeaderMap| {
            h.values()
                .map(|v| v.as_bytes())
                .collect::<Vec<_>>()
                .join(&b"\n"[..])
        };
        let mut parts = vec![
            ("the reason phrase", self.reason.clone().unwrap_or_default()),
            ("the header names", names(&self.headers).into_bytes()),
            ("the header values", values(&self.headers)),
            ("the body", self.body.to_vec()),
        ];
        if let Some(t) = &self.trailers {
            parts.push(("the trailer names", names(t).into_bytes()));
            parts.push(("the trailer values", values(t)));
        }
        parts
    }

    /// Header `name` as text (`<absent>` if missing).
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map_or("<absent>", |v| v.to_str().unwrap_or("<not text>"))
    }

    /// The body as text (`<not text>` if it is not UTF-8).
    pub fn body_text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap_or("<not text>")
    }
}

/// The last request `upstream` received carried `real` where `source` says (the swap
/// happened); the error never holds the value.
pub fn upstream_got(upstream: &ApiUpstream, source: Source, real: &str) -> Result<(), String> {
    let seen = upstream.seen();
    let last = seen.last().ok_or("no request reached the upstream")?;
    let got = match source {
        Source::Header => last.header("x-api-key").first().map(|v| v.to_string()),
        Source::Basic => last
            .header("authorization")
            .first()
            .and_then(|v| v.strip_prefix("Basic "))
            .and_then(|b| STANDARD.decode(b).ok())
            .map(|d| String::from_utf8_lossy(&d).into_owned())
            .and_then(|d| d.strip_prefix("x:").map(str::to_string)),
        Source::Query => last
            .target
            .split_once('?')
            .and_then(|(_, query)| query.split('&').find_map(|p| p.strip_prefix("key=")))
            .map(|k| percent_decode_str(k).decode_utf8_lossy().into_owned()),
    };
    match got.as_deref() == Some(real) {
        true => Ok(()),
        false => Err(format!(
            "the upstream did not get the real value from {source:?} (no swap)"
        )),
    }
}
