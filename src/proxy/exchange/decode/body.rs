//! A response body decoded as it streams: each compressed chunk in gives out the
//! decoded bytes available so far (in pieces of at most [`STEP`](super::chain::STEP)),
//! nothing buffered beyond the decoders' own windows. Corrupt or truncated data, or a
//! decompression bomb, ends the body with an error (the client sees it cut off: the
//! head is already sent), logged as a warning and recorded in the flow's audit event.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

use super::chain::{Chain, DecodeError};
use crate::proxy::BoxError;

/// Where the body is.
enum State {
    /// Reading compressed frames from the upstream.
    Reading,
    /// The upstream body ended (with these trailers, if any): decoders are drained.
    Ending(Option<HeaderMap>),
    /// Over (or failed).
    Done,
}

/// `inner` with its content codings undone.
pub struct Decoded<B> {
    inner: B,
    chain: Chain,
    /// Compressed bytes not yet taken by the first decoder.
    pending: Bytes,
    state: State,
    /// The request, for the warning (`GET https://host:443/path`).
    what: String,
}

impl<B> Decoded<B> {
    /// Decodes `inner` through `chain`; `what` names the request in a warning.
    pub fn new(inner: B, chain: Chain, what: String) -> Decoded<B> {
        Decoded {
            inner,
            chain,
            pending: Bytes::new(),
            state: State::Reading,
            what,
        }
    }

    /// Ends the body with `err`.
    fn fail(&mut self, err: DecodeError) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        tracing::warn!("{}: response body cut off: {err}", self.what);
        self.state = State::Done;
        Poll::Ready(Some(Err(Box::new(err))))
    }
}

impl<B> Body for Decoded<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            let ending = match &mut this.state {
                State::Done => return Poll::Ready(None),
                State::Reading => false,
                State::Ending(_) => true,
            };
            if ending || !this.pending.is_empty() || this.chain.holds_more() {
                match this.chain.step(&mut this.pending) {
                    Err(err) => return this.fail(err),
                    Ok(out) if !out.is_empty() => return Poll::Ready(Some(Ok(Frame::data(out)))),
                    Ok(_) => {}
                }
            }
            if let State::Ending(trailers) = &mut this.state {
                let trailers = trailers.take();
                if let Err(err) = this.chain.end(&this.pending) {
                    return this.fail(err);
                }
                this.state = State::Done;
                return Poll::Ready(trailers.map(|t| Ok(Frame::trailers(t))));
            }
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => this.state = State::Ending(None),
                Poll::Ready(Some(Err(e))) => {
                    this.state = State::Done;
                    return Poll::Ready(Some(Err(e.into())));
                }
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        this.chain.read(data.len());
                        this.pending = data;
                    }
                    Err(frame) => this.state = State::Ending(frame.into_trailers().ok()),
                },
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.state, State::Done)
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::convert::Infallible;

    use http_body_util::BodyExt;

    use super::*;
    use crate::proxy::exchange::decode::Coding;

    /// A body of ready frames.
    struct Frames(VecDeque<Frame<Bytes>>);

    impl Body for Frames {
        type Data = Bytes;
        type Error = Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            Poll::Ready(self.0.pop_front().map(Ok))
        }
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn decoded(frames: Vec<Frame<Bytes>>) -> Decoded<Frames> {
        let chain = Chain::new(&[Coding::Gzip], 100);
        Decoded::new(Frames(frames.into()), chain, "GET https://t:443/".into())
    }

    #[tokio::test]
    async fn a_gzip_body_decodes_across_chunks_and_keeps_its_trailers() {
        let plain = b"data: one\n\ndata: two\n\n".repeat(100);
        let mut frames: Vec<Frame<Bytes>> = gzip(&plain)
            .chunks(7)
            .map(|c| Frame::data(Bytes::copy_from_slice(c)))
            .collect();
        let mut trailers = HeaderMap::new();
        trailers.insert("x-t", http::HeaderValue::from_static("1"));
        frames.push(Frame::trailers(trailers));
        let collected = decoded(frames).collect().await.unwrap();
        assert_eq!(collected.trailers().unwrap()["x-t"], "1");
        assert_eq!(collected.to_bytes(), plain);
    }

    #[tokio::test]
    async fn a_truncated_body_ends_with_an_error_and_an_empty_one_does_not() {
        let packed = gzip(b"hello hello hello");
        let cut = Bytes::copy_from_slice(&packed[..packed.len() - 3]);
        let err = decoded(vec![Frame::data(cut)]).collect().await.unwrap_err();
        assert!(
            err.to_string().contains("ended before its gzip stream"),
            "{err}"
        );
        let empty = decoded(vec![]).collect().await.unwrap().to_bytes();
        assert!(empty.is_empty());
    }
}
