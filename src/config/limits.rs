//! `limits:` in keygate.yaml: sizes, counts and timeouts that bound what a client or an
//! upstream can make keygate hold. Every field is optional; the defaults below are
//! what keygate uses without a file.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

use super::Parsed;

/// Default largest request head (request line + headers), bytes.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Default most headers in one request.
pub const MAX_HEADERS: usize = 100;
/// Default time a client has to send a complete request head (slowloris defence).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Default time a client has to send its TLS ClientHello and finish the handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time a tunnel or WebSocket may carry no byte either way before it is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// Default most client connections served at once; more wait in the listen backlog.
pub const MAX_CONNECTIONS: usize = 4096;
/// Default most concurrent HTTP/2 streams per intercepted client connection.
pub const H2_MAX_CONCURRENT_STREAMS: u32 = 100;
/// Default time DNS plus TCP connect to an upstream may take.
pub const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time an upstream may take to send its response head (a model may think for
/// minutes before its first byte; streamed bodies have no total limit).
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(600);
/// Default most TLS refusal pages per client per minute (`refusals: tls`); past it a
/// refused CONNECT is answered at the CONNECT, so refused names cannot make keygate
/// mint certificates without bound.
pub const REFUSAL_PAGES_PER_MINUTE: u32 = 60;
/// Default most decoded bytes per compressed byte read, in a compressed response from
/// a bound host (decoded to be scrubbed), on top of a floor of 1 MiB: a decompression
/// bomb is cut off there. Text compresses 5–20×; a body of zeros up to about 1000×.
pub const MAX_DECODED_RATIO: u64 = 100;
/// Default largest request body with a `Content-Length` that the body swap reads whole,
/// so that the upstream still gets an exact `Content-Length`; a larger one streams on
/// without it (chunked), as a body without a length always does.
pub const MAX_BODY_SWAP_BUFFER: usize = 1024 * 1024;

/// Default largest request body keygate hashes to re-sign an AWS SigV4 request whose
/// client declared no `x-amz-content-sha256` (the one place a request body is read whole
/// before it goes up: the signature covers its hash); a larger one is refused with 413.
pub const MAX_SIGNED_BODY: usize = 16 * 1024 * 1024;

/// The effective limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest request head, bytes (default 64 KiB); larger is 431.
    pub max_head_bytes: usize,
    /// Most headers in one request (default 100).
    pub max_headers: usize,
    /// Time to send a request head (default 30 s).
    pub header_read_timeout: Duration,
    /// Time for a ClientHello and TLS handshake (default 10 s).
    pub handshake_timeout: Duration,
    /// Tunnel/WebSocket idle time before closing (default 10 min).
    pub idle_timeout: Duration,
    /// Most client connections at once (default 4096).
    pub max_connections: usize,
    /// Most concurrent h2 streams per intercepted connection (default 100).
    pub h2_max_concurrent_streams: u32,
    /// Upstream DNS + connect time (default 10 s).
    pub upstream_connect_timeout: Duration,
    /// Time to the upstream's response head (default 10 min); then 504.
    pub response_timeout: Duration,
    /// TLS refusal pages per client per minute (default 60); then plain refusals.
    pub refusal_pages_per_minute: u32,
    /// Decoded bytes per compressed byte of a bound host's response, plus 1 MiB
    /// (default 100); past it the body is cut off.
    pub max_decoded_ratio: u64,
    /// Largest request body the body swap reads whole to keep its `Content-Length`
    /// (default 1 MiB); larger ones stream without one.
    pub max_body_swap_buffer: usize,
    /// Largest request body hashed to re-sign an AWS SigV4 request without a declared
    /// payload hash (default 16 MiB); larger is 413.
    pub max_signed_body: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_head_bytes: MAX_HEAD_BYTES,
            max_headers: MAX_HEADERS,
            header_read_timeout: HEADER_READ_TIMEOUT,
            handshake_timeout: HANDSHAKE_TIMEOUT,
            idle_timeout: IDLE_TIMEOUT,
            max_connections: MAX_CONNECTIONS,
            h2_max_concurrent_streams: H2_MAX_CONCURRENT_STREAMS,
            upstream_connect_timeout: UPSTREAM_CONNECT_TIMEOUT,
            response_timeout: RESPONSE_TIMEOUT,
            refusal_pages_per_minute: REFUSAL_PAGES_PER_MINUTE,
            max_decoded_ratio: MAX_DECODED_RATIO,
            max_body_swap_buffer: MAX_BODY_SWAP_BUFFER,
            max_signed_body: MAX_SIGNED_BODY,
        }
    }
}

/// The longest timeout accepted: 30 days.
pub const MAX_SPAN: Duration = Duration::from_secs(30 * 24 * 3600);

/// A duration written `500ms`, `30s`, `10m` or `1h` (a bare number is seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span(pub Duration);

impl FromStr for Span {
    type Err = String;
    fn from_str(s: &str) -> Result<Span, String> {
        let text = s.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (digits, unit) = text.split_at(split);
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("`{s}` is not a duration; write e.g. 500ms, 30s, 10m or 1h"))?;
        let duration = match unit.trim() {
            "ms" => Some(Duration::from_millis(n)),
            "" | "s" => Some(Duration::from_secs(n)),
            // Checked (found by fuzz/config): enough minutes or hours overflow u64 seconds,
            // a panic in a debug build and a silently wrapped timeout in a release build.
            "m" => n.checked_mul(60).map(Duration::from_secs),
            "h" => n.checked_mul(3600).map(Duration::from_secs),
            other => return Err(format!("`{s}`: unknown unit `{other}` (use ms, s, m or h)")),
        }
        .ok_or_else(|| format!("`{s}` is too long a duration; write e.g. 10m or 1h"))?;
        if duration.is_zero() {
            return Err(format!("`{s}`: a timeout must be longer than zero"));
        }
        if duration > MAX_SPAN {
            // Timers add the span to the current instant; a bound keeps that sum (in
            // hyper and tokio alike) far from overflowing.
            return Err(format!(
                "`{s}` is longer than the longest timeout keygate takes (720h, 30 days)"
            ));
        }
        Ok(Span(duration))
    }
}

/// Written as the config spells it: `500ms`, `30s`, `10m`, `1h`.
impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        match ms {
            _ if ms.is_multiple_of(3_600_000) => write!(f, "{}h", ms / 3_600_000),
            _ if ms.is_multiple_of(60_000) => write!(f, "{}m", ms / 60_000),
            _ if ms.is_multiple_of(1_000) => write!(f, "{}s", ms / 1_000),
            _ => write!(f, "{ms}ms"),
        }
    }
}

/// A positive count, bounded by `MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Count<const MAX: u64>(pub u64);

impl<const MAX: u64> FromStr for Count<MAX> {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().parse::<u64>() {
            Ok(n) if (1..=MAX).contains(&n) => Ok(Count(n)),
            _ => Err(format!("`{s}` must be a whole number from 1 to {MAX}")),
        }
    }
}

impl<const MAX: u64> fmt::Display for Count<MAX> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// `limits:` as written; numbers may be given bare or quoted.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLimits {
    max_head_bytes: Option<Parsed<Count<{ 16 * 1024 * 1024 }>>>,
    max_headers: Option<Parsed<Count<10_000>>>,
    header_read_timeout: Option<Parsed<Span>>,
    handshake_timeout: Option<Parsed<Span>>,
    idle_timeout: Option<Parsed<Span>>,
    max_connections: Option<Parsed<Count<1_000_000>>>,
    h2_max_concurrent_streams: Option<Parsed<Count<10_000>>>,
    upstream_connect_timeout: Option<Parsed<Span>>,
    response_timeout: Option<Parsed<Span>>,
    refusal_pages_per_minute: Option<Parsed<Count<100_000>>>,
    max_decoded_ratio: Option<Parsed<Count<100_000>>>,
    max_body_swap_buffer: Option<Parsed<Count<{ 256 * 1024 * 1024 }>>>,
    max_signed_body: Option<Parsed<Count<{ 1024 * 1024 * 1024 }>>>,
}

impl RawLimits {
    /// The effective limits: each given field replaces its default.
    pub fn resolve(&self) -> Limits {
        let d = Limits::default();
        let count = |v: &Option<Parsed<Count<{ 16 * 1024 * 1024 }>>>, default: usize| {
            v.as_ref()
                .map_or(default, |p| usize::try_from(p.0.0).unwrap_or(default))
        };
        let span =
            |v: &Option<Parsed<Span>>, default: Duration| v.as_ref().map_or(default, |p| p.0.0);
        Limits {
            max_head_bytes: count(&self.max_head_bytes, d.max_head_bytes).max(8 * 1024),
            max_headers: self.max_headers.as_ref().map_or(d.max_headers, |p| {
                usize::try_from(p.0.0).unwrap_or(d.max_headers)
            }),
            header_read_timeout: span(&self.header_read_timeout, d.header_read_timeout),
            handshake_timeout: span(&self.handshake_timeout, d.handshake_timeout),
            idle_timeout: span(&self.idle_timeout, d.idle_timeout),
            max_connections: self
                .max_connections
                .as_ref()
                .map_or(d.max_connections, |p| {
                    usize::try_from(p.0.0).unwrap_or(d.max_connections)
                }),
            h2_max_concurrent_streams: self
                .h2_max_concurrent_streams
                .as_ref()
                .map_or(d.h2_max_concurrent_streams, |p| {
                    u32::try_from(p.0.0).unwrap_or(d.h2_max_concurrent_streams)
                }),
            upstream_connect_timeout: span(
                &self.upstream_connect_timeout,
                d.upstream_connect_timeout,
            ),
            response_timeout: span(&self.response_timeout, d.response_timeout),
            refusal_pages_per_minute: self
                .refusal_pages_per_minute
                .as_ref()
                .map_or(d.refusal_pages_per_minute, |p| {
                    u32::try_from(p.0.0).unwrap_or(d.refusal_pages_per_minute)
                }),
            max_decoded_ratio: self
                .max_decoded_ratio
                .as_ref()
                .map_or(d.max_decoded_ratio, |p| p.0.0),
            max_body_swap_buffer: self
                .max_body_swap_buffer
                .as_ref()
                .map_or(d.max_body_swap_buffer, |p| {
                    usize::try_from(p.0.0).unwrap_or(d.max_body_swap_buffer)
                }),
            max_signed_body: self
                .max_signed_body
                .as_ref()
                .map_or(d.max_signed_body, |p| {
                    usize::try_from(p.0.0).unwrap_or(d.max_signed_body)
                }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans() {
        assert_eq!(
            "500ms".parse::<Span>().unwrap().0,
            Duration::from_millis(500)
        );
        assert_eq!("30".parse::<Span>().unwrap().0, Duration::from_secs(30));
        assert_eq!("10m".parse::<Span>().unwrap().0, Duration::from_secs(600));
        assert_eq!(" 1h ".parse::<Span>().unwrap().0, Duration::from_secs(3600));
        for text in ["300ms", "1500ms", "30s", "10m", "90s", "1h", "25h"] {
            assert_eq!(text.parse::<Span>().unwrap().to_string(), text);
        }
        assert!(
            "0s".parse::<Span>()
                .unwrap_err()
                .contains("longer than zero")
        );
        assert!(
            "5 days"
                .parse::<Span>()
                .unwrap_err()
                .contains("unknown unit")
        );
        assert!(
            "soon"
                .parse::<Span>()
                .unwrap_err()
                .contains("not a duration")
        );
    }

    #[test]
    fn a_duration_past_the_clock_is_an_error_not_a_panic() {
        for text in [
            "307445734561825861m",
            "5124095576030432h",
            "99999999999999999999h",
        ] {
            let err = text.parse::<Span>().unwrap_err();
            assert!(
                err.contains("too long") || err.contains("not a duration"),
                "{text}: {err}"
            );
        }
        assert_eq!("720h".parse::<Span>().unwrap().0, MAX_SPAN);
        for text in ["721h", "43201m", "307445734561825860m"] {
            let err = text.parse::<Span>().unwrap_err();
            assert!(err.contains("720h"), "{text}: {err}");
        }
    }

    #[test]
    fn counts() {
        assert_eq!("12".parse::<Count<100>>().unwrap().0, 12);
        assert!("0".parse::<Count<100>>().is_err());
        assert!(
            "101"
                .parse::<Count<100>>()
                .unwrap_err()
                .contains("1 to 100")
        );
    }
}
