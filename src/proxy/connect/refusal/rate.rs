//! How many TLS refusal pages each client may get: a token bucket per client, so a
//! client that opens refused CONNECTs to ever new names cannot make keygate mint
//! certificates (or hold handshakes) without bound. Past its budget a client's refused
//! CONNECTs are answered at the CONNECT, as with `refusals: connect`, and say why.

use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lru::LruCache;

/// How many clients' buckets are remembered. A forgotten client starts with a full
/// bucket again, so the cap bounds memory, not the rate: clients are few (loopback, a
/// session, proxy-auth users), and each refusal page costs a token either way.
pub const TRACKED_CLIENTS: usize = 4096;
/// The window a client's budget refills over.
const WINDOW: Duration = Duration::from_secs(60);

/// Per-client budgets of refusal pages: `per_minute` at once, refilled evenly.
pub struct RefusalRate {
    per_minute: u32,
    /// A std Mutex: held for one map update, never across an await.
    buckets: Mutex<LruCache<String, Bucket>>,
}

impl std::fmt::Debug for RefusalRate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefusalRate")
            .field("per_minute", &self.per_minute)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RefusalRate {
    /// Budgets of `per_minute` refusal pages per client (0: none ever).
    pub fn new(per_minute: u32) -> RefusalRate {
        RefusalRate {
            per_minute,
            buckets: Mutex::new(LruCache::new(
                NonZeroUsize::new(TRACKED_CLIENTS).unwrap_or(NonZeroUsize::MIN),
            )),
        }
    }

    /// The budget per client per minute.
    pub fn per_minute(&self) -> u32 {
        self.per_minute
    }

    /// Takes one page from `client`'s budget at `now`; false when it is spent.
    pub fn admit(&self, client: &str, now: Instant) -> bool {
        if self.per_minute == 0 {
            return false;
        }
        let capacity = f64::from(self.per_minute);
        let Ok(mut buckets) = self.buckets.lock() else {
            return false;
        };
        let bucket = buckets.get_or_insert_mut(client.to_string(), || Bucket {
            tokens: capacity,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * capacity / WINDOW.as_secs_f64()).min(capacity);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_gets_its_budget_then_waits_for_the_refill() {
        let rate = RefusalRate::new(3);
        let t0 = Instant::now();
        assert!((0..3).all(|_| rate.admit("127.0.0.1", t0)));
        assert!(!rate.admit("127.0.0.1", t0));
        // Other clients have budgets of their own.
        assert!(rate.admit("session:abc", t0));
        // One page comes back every 20 s at 3 a minute.
        assert!(!rate.admit("127.0.0.1", t0 + Duration::from_secs(10)));
        assert!(rate.admit("127.0.0.1", t0 + Duration::from_secs(31)));
        assert!(!rate.admit("127.0.0.1", t0 + Duration::from_secs(31)));
        // A long pause refills to the budget, never past it.
        let later = t0 + Duration::from_secs(3600);
        assert!((0..3).all(|_| rate.admit("127.0.0.1", later)));
        assert!(!rate.admit("127.0.0.1", later));
    }

    #[test]
    fn zero_means_no_pages() {
        assert!(!RefusalRate::new(0).admit("127.0.0.1", Instant::now()));
    }
}
