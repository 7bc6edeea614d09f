//! A request body through the body swap ([`crate::addon::body_swap`]), with its length
//! kept honest: a body with a `Content-Length` within `limits.max_body_swap_buffer` is
//! read whole and sent with its new exact length (servers that refuse chunked uploads
//! still get one); any other body streams on, swapped chunk by chunk, without a
//! `Content-Length` (chunked over HTTP/1.1, plain DATA frames over HTTP/2).

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::HeaderValue;
use http::header::CONTENT_LENGTH;
use http_body_util::{BodyExt, Full};

use super::filtered::Filtered;
use crate::addon::ChunkFilter;
use crate::addon::body_swap::BodySwap;
use crate::proxy::io::metered::FlowRecord;
use crate::proxy::{Body, BoxError};

/// How the swapped body goes upstream.
pub enum Plan {
    /// Read whole (it declared this many bytes, within the limit).
    Whole(u64),
    /// Streamed without a length.
    Streamed,
}

/// The plan for a body with these headers.
pub fn plan(headers: &http::HeaderMap, limit: usize) -> Plan {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match declared {
        Some(n) if n <= limit as u64 => Plan::Whole(n),
        _ => Plan::Streamed,
    }
}

/// Reads `body` whole (it declared `declared` bytes), swaps it, and sets the new length.
/// `Err` when the body failed on the way (the client went away, or the tripwire stopped
/// it): the caller decides what the client hears.
pub async fn whole(
    body: Body,
    declared: u64,
    mut swap: BodySwap,
    headers: &mut http::HeaderMap,
    record: &FlowRecord,
) -> Result<Body, BoxError> {
    // The declared length is within the limit; the count guards against a body that
    // runs past it anyway (hyper should have stopped it: belt and braces).
    let mut body = body;
    let mut data = BytesMut::new();
    let mut trailers = None;
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        match frame.into_data() {
            Ok(chunk) => data.extend_from_slice(&chunk),
            Err(frame) => trailers = frame.into_trailers().ok(),
        }
        if data.len() as u64 > declared {
            return Err(format!("the body is longer than its Content-Length ({declared})").into());
        }
    }
    let collected = data.freeze();
    let swapped = swap.swap_all(&collected);
    note(&swap, record);
    headers.insert(CONTENT_LENGTH, HeaderValue::from(swapped.len()));
    let full = Full::new(swapped).map_err(|never| match never {});
    Ok(match trailers {
        // Trailers after a buffered body: rare (gRPC never has a Content-Length); they
        // go on as they came.
        Some(trailers) => full
            .with_trailers(async move { Some(Ok(trailers)) })
            .boxed(),
        None => full.boxed(),
    })
}

/// `body` swapped as it streams; its `Content-Length` is removed from `headers`.
pub fn streamed(
    body: Body,
    swap: BodySwap,
    headers: &mut http::HeaderMap,
    record: Arc<FlowRecord>,
) -> Body {
    headers.remove(CONTENT_LENGTH);
    let filter: Box<dyn ChunkFilter> = Box::new(Noted { swap, record });
    Filtered::new(body, vec![filter]).boxed()
}

/// Names the swapped secrets in the audit event once the body has ended.
struct Noted {
    swap: BodySwap,
    record: Arc<FlowRecord>,
}

impl ChunkFilter for Noted {
    fn filter(&mut self, chunk: Bytes) -> Bytes {
        self.swap.filter(chunk)
    }
    fn finish(&mut self) -> Bytes {
        let tail = self.swap.finish();
        note(&self.swap, &self.record);
        tail
    }
}

/// Adds the secrets a body swap replaced to the event's `secret` field.
fn note(swap: &BodySwap, record: &FlowRecord) {
    if !swap.swapped() {
        return;
    }
    record.update(|event| {
        let mut names: Vec<String> = event
            .secret
            .as_deref()
            .map(|s| s.split(',').map(str::to_string).collect())
            .unwrap_or_default();
        for name in swap.names() {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
        event.secret = Some(names.join(","));
    });
}
