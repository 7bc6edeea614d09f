//! A response body passed through the addons' chunk filters (the scrubber), frame by
//! frame: nothing is buffered beyond what a filter holds back.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};

use crate::addon::ChunkFilter;

/// `inner` with every data chunk passed through `filters`, in order.
pub struct Filtered<B> {
    inner: B,
    filters: Vec<Box<dyn ChunkFilter>>,
    done: bool,
    trailers: Option<Frame<Bytes>>,
}

impl<B> Filtered<B> {
    /// Wraps `inner`; with no filter the body passes unchanged.
    pub fn new(inner: B, filters: Vec<Box<dyn ChunkFilter>>) -> Filtered<B> {
        Filtered {
            inner,
            filters,
            done: false,
            trailers: None,
        }
    }

    fn apply(&mut self, chunk: Bytes) -> Bytes {
        self.filters
            .iter_mut()
            .fold(chunk, |data, f| f.filter(data))
    }

    /// Passes a trailers frame through every filter's trailer hook.
    fn scrub_trailers(&mut self, frame: Frame<Bytes>) -> Frame<Bytes> {
        match frame.into_trailers() {
            Ok(mut trailers) => {
                for f in &mut self.filters {
                    f.trailers(&mut trailers);
                }
                Frame::trailers(trailers)
            }
            Err(other) => other,
        }
    }

    /// What the filters still hold at the end, each tail passed through the next filter.
    fn drain(&mut self) -> Bytes {
        let mut carry = Bytes::new();
        for f in &mut self.filters {
            let mut out = BytesMut::from(&f.filter(carry)[..]);
            out.extend_from_slice(&f.finish());
            carry = out.freeze();
        }
        carry
    }
}

impl<B> Body for Filtered<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        if self.filters.is_empty() {
            return Pin::new(&mut self.inner).poll_frame(cx);
        }
        if let Some(trailers) = self.trailers.take() {
            return Poll::Ready(Some(Ok(trailers)));
        }
        if self.done {
            return Poll::Ready(None);
        }
        loop {
            match Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        let out = self.apply(data);
                        if !out.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::data(out))));
                        }
                    }
                    Err(trailers) => {
                        self.done = true;
                        let trailers = self.scrub_trailers(trailers);
                        let tail = self.drain();
                        if tail.is_empty() {
                            return Poll::Ready(Some(Ok(trailers)));
                        }
                        self.trailers = Some(trailers);
                        return Poll::Ready(Some(Ok(Frame::data(tail))));
                    }
                },
                Poll::Ready(None) => {
                    self.done = true;
                    let tail = self.drain();
                    return Poll::Ready((!tail.is_empty()).then(|| Ok(Frame::data(tail))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        if self.filters.is_empty() {
            self.inner.is_end_stream()
        } else {
            self.done && self.trailers.is_none()
        }
    }

    fn size_hint(&self) -> SizeHint {
        if self.filters.is_empty() {
            self.inner.size_hint()
        } else {
            SizeHint::default()
        }
    }
}
