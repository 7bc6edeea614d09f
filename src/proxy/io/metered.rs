//! Byte counting for streamed bodies, and the audit event written when a flow ends.
//!
//! Bodies are never buffered: [`Metered`] counts each frame as it passes. The event is
//! recorded when the last [`FlowRecord`] handle drops, i.e. once both the request body
//! (held by the upstream client) and the response body (held by the client connection)
//! are finished or abandoned, so `bytes_up`, `bytes_down` and `ms` are final.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::audit::{AuditLog, Event};

/// The pending audit event of one request; recorded on drop of the last handle.
#[derive(Debug)]
pub struct FlowRecord {
    audit: AuditLog,
    event: Mutex<Option<Event>>,
    start: Instant,
    up: AtomicU64,
    down: AtomicU64,
}

impl FlowRecord {
    /// Starts timing `event`, which will be recorded when the flow ends.
    pub fn start(audit: AuditLog, event: Event, start: Instant) -> Arc<FlowRecord> {
        Arc::new(FlowRecord {
            audit,
            event: Mutex::new(Some(event)),
            start,
            up: AtomicU64::new(0),
            down: AtomicU64::new(0),
        })
    }

    /// Changes the pending event (status, reason, ...) before it is recorded.
    pub fn update(&self, f: impl FnOnce(&mut Event)) {
        // A std Mutex: held for a field assignment, never across an await.
        if let Ok(mut guard) = self.event.lock()
            && let Some(event) = guard.as_mut()
        {
            f(event);
        }
    }
}

impl Drop for FlowRecord {
    fn drop(&mut self) {
        let event = self.event.get_mut().ok().and_then(|e| e.take());
        if let Some(mut event) = event {
            event.bytes_up = self.up.load(Ordering::Relaxed);
            event.bytes_down = self.down.load(Ordering::Relaxed);
            event.ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
            self.audit.record(event);
        }
    }
}

/// Which way a metered body flows.
#[derive(Debug, Clone, Copy)]
pub enum Direction {
    /// Client → upstream.
    Up,
    /// Upstream → client.
    Down,
}

/// A body that counts its data bytes into a [`FlowRecord`].
pub struct Metered<B> {
    inner: B,
    flow: Arc<FlowRecord>,
    direction: Direction,
}

impl<B> Metered<B> {
    /// Wraps `inner`, counting towards `flow` in `direction`.
    pub fn new(inner: B, flow: Arc<FlowRecord>, direction: Direction) -> Metered<B> {
        Metered {
            inner,
            flow,
            direction,
        }
    }
}

impl<B> Body for Metered<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let counter = match self.direction {
                        Direction::Up => &self.flow.up,
                        Direction::Down => &self.flow.down,
                    };
                    counter.fetch_add(data.len() as u64, Ordering::Relaxed);
                }
            }
            Poll::Ready(Some(Err(e))) => {
                // A body cut short (upstream reset, client gone) is allowed traffic that
                // did not complete: the audit says so instead of a bare status 200.
                let which = match self.direction {
                    Direction::Up => "the request body",
                    Direction::Down => "the response body",
                };
                let reason = format!("{which} ended early: {e}");
                self.flow.update(|event| {
                    event.reason = Some(match event.reason.take() {
                        Some(before) => format!("{before}; {reason}"),
                        None => reason,
                    });
                });
            }
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
