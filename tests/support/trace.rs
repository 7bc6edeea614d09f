//! Everything the embedded proxy logs, at trace level, whatever RUST_LOG says: a global
//! subscriber (installed once for the test binary) appends every event to a buffer that
//! the leak checks search for real secret values. `log` records (rustls) come through
//! the same way.
//!
//! The fake upstreams run in this process too and legitimately hold real values, so
//! their futures are wrapped in [`upstream`], and events emitted while one is being
//! polled are left out; everything else (keygate, and the hyper/h2/rustls it drives) is
//! kept. (A span would not do: h2 opens its connection spans with no parent.)

use std::cell::Cell;
use std::io;
use std::pin::Pin;
use std::sync::{Mutex, Once};
use std::task::{Context, Poll};

use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::dynamic_filter_fn;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

thread_local! {
    /// True while this thread polls a fake upstream's future.
    static IN_UPSTREAM: Cell<bool> = const { Cell::new(false) };
}

/// Every formatted event so far (all tests of the binary: values are unique per test).
static BUFFER: Mutex<Vec<u8>> = Mutex::new(Vec::new());
static INSTALL: Once = Once::new();

/// Appends to [`BUFFER`].
struct BufferWriter;

impl io::Write for BufferWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        BUFFER
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

struct MakeBufferWriter;

impl<'a> MakeWriter<'a> for MakeBufferWriter {
    type Writer = BufferWriter;

    fn make_writer(&'a self) -> BufferWriter {
        BufferWriter
    }
}

/// Installs the capturing subscriber (once per test binary; later calls do nothing).
/// Call it before starting anything whose logs a test checks.
pub fn install() {
    INSTALL.call_once(|| {
        // Dynamic: a plain `filter_fn` caches its answer per call site.
        let not_upstream = dynamic_filter_fn(|_, _| !IN_UPSTREAM.get());
        let layer = tracing_subscriber::fmt::layer()
            .with_writer(MakeBufferWriter)
            .with_ansi(false)
            .with_target(true)
            .with_filter(not_upstream);
        tracing_subscriber::registry()
            .with(layer)
            .try_init()
            .expect("the capturing subscriber is the only global subscriber");
        tracing::trace!("keygate integration tests: trace capture installed");
    });
}

/// A fake upstream's future: what is logged while it is polled is not keygate's.
pub struct Upstream<F>(Pin<Box<F>>);

/// Marks `fut` as a fake upstream's work.
pub fn upstream<F: Future>(fut: F) -> Upstream<F> {
    Upstream(Box::pin(fut))
}

impl<F: Future> Future for Upstream<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let before = IN_UPSTREAM.replace(true);
        let polled = self.0.as_mut().poll(cx);
        IN_UPSTREAM.set(before);
        polled
    }
}

/// Everything captured so far.
pub fn captured() -> String {
    let bytes = BUFFER.lock().unwrap_or_else(|p| p.into_inner()).clone();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[tokio::test]
async fn the_capture_keeps_keygate_events_and_leaves_out_the_upstreams() {
    install();
    let marker = format!("capture-self-test-{}", std::process::id());
    tracing::trace!("proxy side {marker}-kept");
    upstream(async { tracing::info!("upstream side {marker}-dropped") }).await;
    let spawned = format!("{marker}-spawned");
    tokio::spawn(async move { tracing::debug!("another task {spawned}") })
        .await
        .expect("task");
    let log = captured();
    assert!(log.contains(&format!("{marker}-kept")));
    assert!(log.contains(&format!("{marker}-spawned")));
    assert!(!log.contains(&format!("{marker}-dropped")));
}
