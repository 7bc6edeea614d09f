//! [`ReadAhead`]: larger socket reads under rustls, only while data is streaming.
//!
//! rustls reads TLS records from its socket at most 4 KiB at a time, so a 1 MiB body
//! costs some 256 `recv` calls on each TLS connection that receives it, and keygate
//! terminates two. `ReadAhead` sits between the socket and rustls: as long as reads come
//! back small (a request, a response head, an idle connection) they go straight to the
//! socket and no buffer exists, so an idle connection costs nothing more; once a read
//! fills the caller's buffer completely (more is probably waiting), it reads up to
//! [`CAPACITY`] bytes at once and hands them out from memory, and it lets the buffer go
//! again as soon as a read finds the socket drained or nothing waiting. Writes pass
//! straight through.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes read from the socket at once while streaming.
pub const CAPACITY: usize = 64 * 1024;

/// An I/O stream whose reads are batched while data is streaming. See the module docs.
#[derive(Debug)]
pub struct ReadAhead<IO> {
    inner: IO,
    /// Present only while streaming; `buf[pos..len]` is read but not yet handed out.
    buf: Option<Box<[u8]>>,
    pos: usize,
    len: usize,
    /// The last refill did not fill the buffer: the socket was drained, so the buffer
    /// goes once its bytes are handed out.
    drained: bool,
}

impl<IO> ReadAhead<IO> {
    /// Wraps `inner`; no buffer is allocated until data streams.
    pub fn new(inner: IO) -> ReadAhead<IO> {
        ReadAhead {
            inner,
            buf: None,
            pos: 0,
            len: 0,
            drained: false,
        }
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &IO {
        &self.inner
    }

    /// True while a read-ahead buffer exists (for tests).
    pub fn is_buffering(&self) -> bool {
        self.buf.is_some()
    }

    /// Hands out buffered bytes, releasing the buffer when it is empty and drained.
    fn hand_out(&mut self, out: &mut ReadBuf<'_>) {
        let Some(buf) = &self.buf else { return };
        let n = out.remaining().min(self.len - self.pos);
        out.put_slice(&buf[self.pos..self.pos + n]);
        self.pos += n;
        if self.pos == self.len && self.drained {
            self.buf = None;
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for ReadAhead<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if out.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        if this.pos < this.len {
            this.hand_out(out);
            return Poll::Ready(Ok(()));
        }
        match &mut this.buf {
            Some(buf) => {
                let mut into = ReadBuf::new(buf);
                if Pin::new(&mut this.inner)
                    .poll_read(cx, &mut into)?
                    .is_pending()
                {
                    // Nothing is waiting: the stream stalled or went idle, and the buffer
                    // is empty, so it goes (an idle connection must not keep 64 KiB).
                    this.buf = None;
                    return Poll::Pending;
                }
                let got = into.filled().len();
                this.pos = 0;
                this.len = got;
                this.drained = got < buf.len();
                if got == 0 {
                    // End of stream: nothing handed out says so to the caller.
                    this.buf = None;
                    return Poll::Ready(Ok(()));
                }
                this.hand_out(out);
                Poll::Ready(Ok(()))
            }
            None => {
                let before = out.filled().len();
                ready!(Pin::new(&mut this.inner).poll_read(cx, out))?;
                let got = out.filled().len() - before;
                if got > 0 && out.remaining() == 0 && out.capacity() < CAPACITY {
                    // The caller's buffer was filled: more is probably waiting.
                    this.buf = Some(vec![0; CAPACITY].into_boxed_slice());
                    this.pos = 0;
                    this.len = 0;
                }
                Poll::Ready(Ok(()))
            }
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for ReadAhead<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

    /// Reads everything in `step`-byte reads, as rustls does (4 KiB).
    async fn read_all<R: AsyncRead + Unpin>(r: &mut R, step: usize) -> Vec<u8> {
        let mut all = Vec::new();
        let mut chunk = vec![0; step];
        loop {
            let n = r.read(&mut chunk).await.unwrap();
            if n == 0 {
                return all;
            }
            all.extend_from_slice(&chunk[..n]);
        }
    }

    #[tokio::test]
    async fn a_stream_arrives_whole_and_in_order_however_it_is_read() {
        let data: Vec<u8> = (0..1_000_003u32).map(|i| (i * 7 % 251) as u8).collect();
        for step in [1, 100, 4096, 70_000] {
            let (mut tx, rx) = duplex(256 * 1024);
            let sent = data.clone();
            let writer = tokio::spawn(async move {
                for piece in sent.chunks(9_999) {
                    tx.write_all(piece).await.unwrap();
                }
            });
            let mut r = ReadAhead::new(rx);
            let got = read_all(&mut r, step).await;
            writer.await.unwrap();
            assert_eq!(got.len(), data.len(), "step {step}");
            assert!(got == data, "step {step}: bytes differ");
            assert!(!r.is_buffering(), "step {step}: buffer kept after the end");
        }
    }

    #[tokio::test]
    async fn small_reads_never_allocate_and_a_drained_socket_releases_the_buffer() {
        let (mut tx, rx) = duplex(256 * 1024);
        let mut r = ReadAhead::new(rx);
        let mut chunk = [0u8; 4096];
        // A request-sized message: the read does not fill the buffer, nothing is kept.
        tx.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        assert_eq!(r.read(&mut chunk).await.unwrap(), 18);
        assert!(!r.is_buffering());
        // A burst bigger than one read: the first read fills, read-ahead starts.
        tx.write_all(&[7u8; 20_000]).await.unwrap();
        assert_eq!(r.read(&mut chunk).await.unwrap(), 4096);
        assert!(r.is_buffering());
        let mut rest = 0;
        while rest < 20_000 - 4096 {
            rest += r.read(&mut chunk).await.unwrap();
        }
        assert_eq!(rest, 20_000 - 4096);
        // The refill found the socket drained: the buffer is gone once handed out.
        assert!(!r.is_buffering());

        // A message that exactly fills a read starts read-ahead; when nothing follows,
        // the refill finds nothing waiting and the buffer goes while the stream idles.
        tx.write_all(&[1u8; 4096]).await.unwrap();
        assert_eq!(r.read(&mut chunk).await.unwrap(), 4096);
        assert!(r.is_buffering());
        let idle = tokio::time::timeout(Duration::from_millis(20), r.read(&mut chunk)).await;
        assert!(idle.is_err(), "nothing was sent");
        assert!(!r.is_buffering(), "an idle stream keeps no buffer");
        // And the next bytes still arrive.
        tx.write_all(b"next").await.unwrap();
        assert_eq!(r.read(&mut chunk).await.unwrap(), 4);
        assert_eq!(&chunk[..4], b"next");
        drop(tx);
        assert_eq!(r.read(&mut chunk).await.unwrap(), 0);
    }
}
