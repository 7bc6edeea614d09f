//! A request body watched by the body tripwire ([`crate::addon::body_tripwire`]): data
//! goes upstream as the watcher releases it; when it finds the dummy of a secret not
//! bound to the host, the body ends with an error (the upstream request is aborted
//! before any byte of the dummy), the alert is logged, and the refusal is left in a
//! shared slot for the exchange to answer the client with.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::addon::body_tripwire::{BodyTripwire, Tripped};
use crate::proxy::BoxError;

/// Where a watched body leaves its refusal. A std Mutex: set once, read once.
pub type Slot = Arc<Mutex<Option<Tripped>>>;

/// `inner` watched by `watcher`.
pub struct Tripwired<B> {
    inner: B,
    watcher: BodyTripwire,
    slot: Slot,
    done: bool,
    trailers: Option<Frame<Bytes>>,
}

impl<B> Tripwired<B> {
    /// Watches `inner`; a refusal goes to `slot`.
    pub fn new(inner: B, watcher: BodyTripwire, slot: Slot) -> Tripwired<B> {
        Tripwired {
            inner,
            watcher,
            slot,
            done: false,
            trailers: None,
        }
    }

    fn trip(&mut self, tripped: Tripped) -> BoxError {
        tracing::error!("ALERT {}: {}", tripped.refuse.code, tripped.refuse.why);
        let why = tripped.refuse.why.clone();
        if let Ok(mut slot) = self.slot.lock() {
            *slot = Some(tripped);
        }
        self.done = true;
        BoxError::from(format!("tripwire: {why}"))
    }
}

impl<B> Body for Tripwired<B>
where
    B: Body<Data = Bytes, Error = BoxError> + Unpin,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(trailers) = self.trailers.take() {
            return Poll::Ready(Some(Ok(trailers)));
        }
        if self.done {
            return Poll::Ready(None);
        }
        loop {
            let frame = match Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Some(Ok(frame))) => frame,
                Poll::Ready(None) => {
                    self.done = true;
                    let tail = self.watcher.finish();
                    return Poll::Ready((!tail.is_empty()).then(|| Ok(Frame::data(tail))));
                }
            };
            match frame.into_data() {
                Ok(data) => match self.watcher.push(data) {
                    Ok(out) if out.is_empty() => continue,
                    Ok(out) => return Poll::Ready(Some(Ok(Frame::data(out)))),
                    Err(tripped) => {
                        let error = self.trip(tripped);
                        return Poll::Ready(Some(Err(error)));
                    }
                },
                Err(trailers) => {
                    self.done = true;
                    let tail = self.watcher.finish();
                    if tail.is_empty() {
                        return Poll::Ready(Some(Ok(trailers)));
                    }
                    self.trailers = Some(trailers);
                    return Poll::Ready(Some(Ok(Frame::data(tail))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        // Held-back bytes come out later, never more than went in.
        self.inner.size_hint()
    }
}
