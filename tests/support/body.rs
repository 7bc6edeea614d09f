//! Streamed bodies for both sides of a test, and a deterministic byte pattern with a
//! cheap hash, so multi-megabyte bodies can be checked for exact content.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use tokio::sync::mpsc;

/// The body type of every request or response a test builds.
pub type TestBody = BoxBody<Bytes, Infallible>;

/// A body whose frames arrive through a channel: its length is unknown up front, so
/// HTTP/1.1 sends it chunked, and each frame goes out when the test sends it.
pub struct ChannelBody {
    rx: mpsc::Receiver<Bytes>,
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

/// A streamed body and the sender that feeds it; dropping the sender ends the body.
pub fn channel() -> (mpsc::Sender<Bytes>, TestBody) {
    let (tx, rx) = mpsc::channel(4);
    (tx, ChannelBody { rx }.boxed())
}

/// One data frame, then `trailers`.
pub fn with_trailers(data: impl Into<Bytes>, trailers: http::HeaderMap) -> TestBody {
    WithTrailers {
        data: Some(data.into()),
        trailers: Some(trailers),
    }
    .boxed()
}

struct WithTrailers {
    data: Option<Bytes>,
    trailers: Option<http::HeaderMap>,
}

impl Body for WithTrailers {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let frame = match self.data.take() {
            Some(data) => Some(Frame::data(data)),
            None => self.trailers.take().map(Frame::trailers),
        };
        Poll::Ready(frame.map(Ok))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && self.trailers.is_none()
    }
}

/// An empty body.
pub fn empty() -> TestBody {
    Empty::new().boxed()
}

/// A body with fixed contents.
pub fn full(content: impl Into<Bytes>) -> TestBody {
    Full::new(content.into()).boxed()
}

/// `len` bytes of the test pattern starting at stream offset `offset`.
pub fn pattern(offset: usize, len: usize) -> Bytes {
    (offset..offset + len)
        .map(|i| (i % 251) as u8 ^ ((i / 251) % 7) as u8)
        .collect::<Vec<u8>>()
        .into()
}

/// FNV-1a, incrementally: enough to tell two multi-megabyte bodies apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fnv(pub u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    /// Adds `data` to the hash.
    pub fn update(&mut self, data: &[u8]) {
        for b in data {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    /// The hash of the first `len` bytes of the test pattern.
    pub fn of_pattern(len: usize) -> Fnv {
        let mut h = Fnv::default();
        h.update(&pattern(0, len));
        h
    }
}
