//! Idle timeouts for byte streams that keygate copies (tunnels, WebSocket bridges): a
//! stream that carries no byte either way for `limits.idle_timeout` is closed. Not a
//! total limit: a busy stream lives as long as it is busy.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// When a stream last moved a byte, shared by its wrappers and its watchdog.
#[derive(Debug, Clone)]
pub struct Activity {
    origin: Instant,
    last_ms: Arc<AtomicU64>,
}

impl Activity {
    /// Starts counting from now.
    pub fn new() -> Activity {
        Activity {
            origin: Instant::now(),
            last_ms: Arc::new(AtomicU64::new(0)),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.origin.elapsed().saturating_sub(last)
    }

    /// Completes once nothing moved for `limit`.
    pub async fn expired(&self, limit: Duration) {
        loop {
            let idle = self.idle_for();
            if idle >= limit {
                return;
            }
            tokio::time::sleep(limit - idle).await;
        }
    }

    /// Wraps `stream` so that its reads and writes count as activity.
    pub fn watch<S>(&self, stream: S) -> Watched<S> {
        Watched {
            inner: stream,
            activity: self.clone(),
            written: Arc::new(AtomicU64::new(0)),
        }
    }
}

impl Default for Activity {
    fn default() -> Self {
        Activity::new()
    }
}

/// A stream whose traffic stamps an [`Activity`], and which counts the bytes written
/// to it (what the audit log reports, however the copy ends: an idle close or a
/// shutdown drops the copy before it can say how much it moved).
#[derive(Debug)]
pub struct Watched<S> {
    inner: S,
    activity: Activity,
    written: Arc<AtomicU64>,
}

impl<S> Watched<S> {
    /// The count of bytes written to this stream so far, readable after the stream is
    /// gone.
    pub fn written(&self) -> Arc<AtomicU64> {
        self.written.clone()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled
            && n > 0
        {
            self.written.fetch_add(n as u64, Ordering::Relaxed);
            self.activity.touch();
        }
        polled
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn traffic_postpones_expiry() {
        // Only lower bounds: a slow machine makes every wait longer, never shorter.
        let activity = Activity::new();
        let (a, mut b) = tokio::io::duplex(64);
        let mut watched = activity.watch(a);
        let limit = Duration::from_millis(300);
        tokio::time::sleep(Duration::from_millis(200)).await;
        b.write_all(b"x").await.unwrap();
        let mut byte = [0u8; 1];
        watched.read_exact(&mut byte).await.unwrap();
        let touched = Instant::now();
        activity.expired(limit).await;
        assert!(
            touched.elapsed() >= Duration::from_millis(290),
            "the read at 200 ms postponed expiry"
        );
    }
}
