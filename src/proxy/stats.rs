//! What the proxy measures about itself for `/metrics` (issue 16), kept to a few atomic
//! adds per request: keygate's added time per request, as a histogram; connections by
//! kind (total and open); TLS handshakes on either side; upstream failures by kind;
//! keyring errors.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use crate::secrets::{SecretStore, SecretValue, StoreError};

/// The histogram's bucket bounds, in microseconds (`le`).
pub const BUCKETS_US: [u64; 12] = [
    25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 100_000, 1_000_000,
];

/// A histogram of durations with fixed buckets (cumulative when read).
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS_US.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

/// A histogram as read: cumulative counts per bucket bound, count, sum.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistogramSnapshot {
    /// `(le in microseconds, observations at or below it)`, cumulative.
    pub buckets: Vec<(u64, u64)>,
    /// Every observation.
    pub count: u64,
    /// Their sum, in microseconds.
    pub sum_us: u64,
}

impl Histogram {
    /// Records one duration.
    pub fn observe(&self, elapsed: Duration) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        if let Some(i) = BUCKETS_US.iter().position(|&le| us <= le) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// The histogram now.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut total = 0;
        let buckets = BUCKETS_US
            .iter()
            .zip(&self.buckets)
            .map(|(&le, n)| {
                total += n.load(Ordering::Relaxed);
                (le, total)
            })
            .collect();
        HistogramSnapshot {
            buckets,
            count: self.count.load(Ordering::Relaxed),
            sum_us: self.sum_us.load(Ordering::Relaxed),
        }
    }
}

/// What a client connection became.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnKind {
    /// A CONNECT whose TLS keygate terminated.
    Intercepted,
    /// A CONNECT relayed byte for byte.
    Tunnelled,
    /// A client connection that carried plain-HTTP (absolute-form) requests.
    Plain,
}

impl ConnKind {
    /// Every kind, in the order `/metrics` lists them.
    pub const ALL: [ConnKind; 3] = [ConnKind::Intercepted, ConnKind::Tunnelled, ConnKind::Plain];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnKind::Intercepted => "intercepted",
            ConnKind::Tunnelled => "tunnelled",
            ConnKind::Plain => "plain",
        }
    }
}

/// Which side of keygate a TLS handshake was on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsSide {
    /// keygate as the server, with a leaf it minted, to an intercepted client.
    Client,
    /// keygate as the client, verifying the upstream.
    Upstream,
}

impl TlsSide {
    /// Both sides, in the order `/metrics` lists them.
    pub const ALL: [TlsSide; 2] = [TlsSide::Client, TlsSide::Upstream];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsSide::Client => "client",
            TlsSide::Upstream => "upstream",
        }
    }
}

/// Why keygate could not get an answer from an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamFailure {
    /// The name did not resolve.
    Resolve,
    /// No address accepted the TCP connection.
    Connect,
    /// Connecting or the TLS handshake took longer than its limit.
    Timeout,
    /// The TLS handshake failed (a rejected certificate included).
    Tls,
    /// The corporate upstream proxy refused or failed the CONNECT.
    Proxy,
    /// The connection broke or the upstream spoke bad HTTP after connecting.
    Protocol,
}

impl UpstreamFailure {
    /// Every kind, in the order `/metrics` lists them.
    pub const ALL: [UpstreamFailure; 6] = [
        UpstreamFailure::Resolve,
        UpstreamFailure::Connect,
        UpstreamFailure::Timeout,
        UpstreamFailure::Tls,
        UpstreamFailure::Proxy,
        UpstreamFailure::Protocol,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamFailure::Resolve => "resolve",
            UpstreamFailure::Connect => "connect",
            UpstreamFailure::Timeout => "timeout",
            UpstreamFailure::Tls => "tls",
            UpstreamFailure::Proxy => "proxy",
            UpstreamFailure::Protocol => "protocol",
        }
    }
}

/// Connections of one kind: every one so far, and those open now.
#[derive(Debug, Default)]
struct ConnCount {
    total: AtomicU64,
    open: AtomicI64,
}

/// The proxy's own measurements.
#[derive(Debug, Default)]
pub struct Stats {
    /// From an intercepted request's head in to its head out to the upstream (with any
    /// body keygate had to read first: a SigV4 hash, a body swap that keeps the length).
    pub request_head: Histogram,
    /// From the upstream's response head in to the head out to the client.
    pub response_head: Histogram,
    connections: [ConnCount; 3],
    /// `[side][ok, failed]`.
    handshakes: [[AtomicU64; 2]; 2],
    upstream_failures: [AtomicU64; 6],
    keyring_errors: AtomicU64,
    /// `admin.metrics: false`: nothing is counted.
    off: bool,
}

/// A connection being counted as open; counted closed when dropped.
#[derive(Debug)]
pub struct Open {
    stats: std::sync::Arc<Stats>,
    kind: ConnKind,
}

impl Drop for Open {
    fn drop(&mut self) {
        self.stats.connections[self.kind as usize]
            .open
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// A keyring that counts its failures in [`Stats`] (the proxy writes rotated refresh
/// tokens back while it runs).
pub struct CountedStore {
    inner: std::sync::Arc<dyn SecretStore>,
    stats: std::sync::Arc<Stats>,
}

impl CountedStore {
    /// Counts `inner`'s failures in `stats`.
    pub fn new(inner: std::sync::Arc<dyn SecretStore>, stats: std::sync::Arc<Stats>) -> Self {
        CountedStore { inner, stats }
    }

    fn count<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        if result.is_err() {
            self.stats.keyring_error();
        }
        result
    }
}

impl SecretStore for CountedStore {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    fn get(&self, name: &str) -> Result<Option<SecretValue>, StoreError> {
        self.count(self.inner.get(name))
    }
    fn set(&self, name: &str, value: &SecretValue) -> Result<(), StoreError> {
        self.count(self.inner.set(name, value))
    }
    fn delete(&self, name: &str) -> Result<bool, StoreError> {
        self.count(self.inner.delete(name))
    }
    fn caveat(&self) -> Option<&'static str> {
        self.inner.caveat()
    }
}

/// The counters as read, for `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// `(kind, total, open)`.
    pub connections: Vec<(&'static str, u64, u64)>,
    /// `(side, ok, failed)`.
    pub handshakes: Vec<(&'static str, u64, u64)>,
    /// `(kind, failures)`.
    pub upstream_failures: Vec<(&'static str, u64)>,
    /// Keyring reads or writes that failed.
    pub keyring_errors: u64,
}

impl Stats {
    /// Counting (`admin.metrics`, on by default) or not.
    pub fn new(on: bool) -> Stats {
        Stats {
            off: !on,
            ..Stats::default()
        }
    }

    /// Whether anything is counted.
    pub fn on(&self) -> bool {
        !self.off
    }

    /// Records keygate's time from an intercepted request's head in to its head out.
    pub fn added_request(&self, elapsed: Duration) {
        if !self.off {
            self.request_head.observe(elapsed);
        }
    }

    /// Records keygate's time from the upstream's response head in to the head out.
    pub fn added_response(&self, elapsed: Duration) {
        if !self.off {
            self.response_head.observe(elapsed);
        }
    }

    /// Counts a new connection of `kind`, open until the returned guard drops (none
    /// when nothing is counted).
    pub fn open(self: &std::sync::Arc<Self>, kind: ConnKind) -> Option<Open> {
        if self.off {
            return None;
        }
        let count = &self.connections[kind as usize];
        count.total.fetch_add(1, Ordering::Relaxed);
        count.open.fetch_add(1, Ordering::Relaxed);
        Some(Open {
            stats: self.clone(),
            kind,
        })
    }

    /// Counts a TLS handshake on `side`.
    pub fn handshake(&self, side: TlsSide, ok: bool) {
        if !self.off {
            self.handshakes[side as usize][usize::from(!ok)].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a failure to reach or hear from an upstream.
    pub fn upstream_failure(&self, kind: UpstreamFailure) {
        if !self.off {
            self.upstream_failures[kind as usize].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a failed keyring read or write.
    pub fn keyring_error(&self) {
        if !self.off {
            self.keyring_errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The counters now.
    pub fn counts(&self) -> Counts {
        Counts {
            connections: ConnKind::ALL
                .iter()
                .map(|&k| {
                    let c = &self.connections[k as usize];
                    let open = c.open.load(Ordering::Relaxed).max(0);
                    (
                        k.as_str(),
                        c.total.load(Ordering::Relaxed),
                        u64::try_from(open).unwrap_or(0),
                    )
                })
                .collect(),
            handshakes: TlsSide::ALL
                .iter()
                .map(|&s| {
                    let h = &self.handshakes[s as usize];
                    (
                        s.as_str(),
                        h[0].load(Ordering::Relaxed),
                        h[1].load(Ordering::Relaxed),
                    )
                })
                .collect(),
            upstream_failures: UpstreamFailure::ALL
                .iter()
                .map(|&k| {
                    (
                        k.as_str(),
                        self.upstream_failures[k as usize].load(Ordering::Relaxed),
                    )
                })
                .collect(),
            keyring_errors: self.keyring_errors.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_the_sum_is_kept() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(10));
        h.observe(Duration::from_micros(300));
        h.observe(Duration::from_secs(5));
        let s = h.snapshot();
        assert_eq!(s.count, 3);
        assert_eq!(s.sum_us, 5_000_310);
        assert_eq!(s.buckets[0], (25, 1));
        assert_eq!(s.buckets[4], (500, 2));
        assert_eq!(
            s.buckets.last(),
            Some(&(1_000_000, 2)),
            "5 s is only in +Inf"
        );
    }

    #[test]
    fn connections_are_open_until_their_guard_drops() {
        let stats = std::sync::Arc::new(Stats::default());
        let a = stats.open(ConnKind::Intercepted);
        let b = stats.open(ConnKind::Intercepted);
        let _c = stats.open(ConnKind::Plain);
        drop(a);
        stats.handshake(TlsSide::Upstream, false);
        stats.handshake(TlsSide::Client, true);
        stats.upstream_failure(UpstreamFailure::Tls);
        stats.keyring_error();
        let counts = stats.counts();
        assert_eq!(
            counts.connections,
            vec![("intercepted", 2, 1), ("tunnelled", 0, 0), ("plain", 1, 1)]
        );
        assert_eq!(
            counts.handshakes,
            vec![("client", 1, 0), ("upstream", 0, 1)]
        );
        assert!(counts.upstream_failures.contains(&("tls", 1)));
        assert_eq!(counts.keyring_errors, 1);
        drop(b);
        assert_eq!(stats.counts().connections[0], ("intercepted", 2, 0));

        let off = std::sync::Arc::new(Stats::new(false));
        assert!(off.open(ConnKind::Plain).is_none());
        off.handshake(TlsSide::Client, true);
        off.added_request(Duration::from_micros(5));
        assert_eq!(off.counts(), Stats::default().counts());
        assert_eq!(off.request_head.snapshot().count, 0);
    }

    #[test]
    fn a_counted_store_counts_failures_only() {
        struct Locked;
        impl SecretStore for Locked {
            fn backend(&self) -> &'static str {
                "locked"
            }
            fn get(&self, _: &str) -> Result<Option<SecretValue>, StoreError> {
                Err(StoreError {
                    backend: "locked",
                    reason: "the collection is locked".into(),
                    remedy: "unlock it".into(),
                })
            }
            fn set(&self, _: &str, _: &SecretValue) -> Result<(), StoreError> {
                Ok(())
            }
            fn delete(&self, _: &str) -> Result<bool, StoreError> {
                Ok(false)
            }
        }
        let stats = std::sync::Arc::new(Stats::default());
        let store = CountedStore::new(std::sync::Arc::new(Locked), stats.clone());
        assert!(store.get("a").is_err());
        assert!(
            store
                .set("a", &SecretValue::new("x".into()).unwrap())
                .is_ok()
        );
        assert!(store.get("b").is_err());
        assert_eq!(stats.counts().keyring_errors, 2);
        assert_eq!(store.backend(), "locked");
    }
}
