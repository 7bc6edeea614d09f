//! [`TokenCache`]: the current token for one secret, minted on demand, refreshed ahead of
//! expiry, one mint at a time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use super::error::endpoint_name;
use super::{Clock, Grant, MintError, SystemClock, Token, Transport};
use crate::secrets::SecretValue;

/// A token is refreshed when this little of its life is left (or half its lifetime, for a
/// token that lives less than ten minutes): five minutes.
pub const DEFAULT_REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);

/// Called with a refresh token the provider rotated in, once per rotation, while the mint
/// that received it still holds the flight lock: persist it quickly (hand the blocking
/// keyring write to `spawn_blocking`).
pub type RotationHook = Box<dyn Fn(SecretValue) + Send + Sync>;

/// The current token for one secret.
///
/// [`get`](TokenCache::get) returns the cached token while more than the refresh margin of
/// its life is left; otherwise one caller mints and every concurrent caller waits for that
/// mint and shares its outcome, success or error. A failed mint is not remembered: the
/// next call tries again. If a refresh fails while the current token has not expired yet,
/// callers keep getting the current token.
pub struct TokenCache {
    /// The flight lock, held across a mint. A `tokio` mutex because it is held across the
    /// transport's await, and a fair one, so waiters queue in order. It owns the grant
    /// because a refresh-token rotation changes it.
    flight: tokio::sync::Mutex<Flight>,
    /// How many mints have finished. A caller reads it before waiting for the flight lock;
    /// a different value once it holds the lock means a mint finished meanwhile, and
    /// [`Flight::last`] is that mint's outcome to share.
    finished: AtomicU64,
    /// The current token. A `std` mutex: it is held only to clone an `Arc`, never across
    /// an await, so the fast path never waits behind a mint in progress.
    current: Mutex<Option<Current>>,
    /// Refresh this long before expiry (capped at half the token's lifetime).
    margin: Duration,
    clock: Arc<dyn Clock>,
    on_rotation: Option<RotationHook>,
    /// The endpoint as logs show it.
    endpoint: String,
}

struct Flight {
    grant: Grant,
    /// The outcome of the latest finished mint.
    last: Option<Result<Arc<Token>, MintError>>,
}

struct Current {
    token: Arc<Token>,
    refresh_at: SystemTime,
}

impl TokenCache {
    /// An empty cache for `grant`, by the system clock, with [`DEFAULT_REFRESH_MARGIN`].
    pub fn new(grant: Grant) -> TokenCache {
        TokenCache {
            endpoint: endpoint_name(grant.endpoint()),
            flight: tokio::sync::Mutex::new(Flight { grant, last: None }),
            finished: AtomicU64::new(0),
            current: Mutex::new(None),
            margin: DEFAULT_REFRESH_MARGIN,
            clock: Arc::new(SystemClock),
            on_rotation: None,
        }
    }

    /// Reads the time from `clock` (tests use a fake one).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> TokenCache {
        self.clock = clock;
        self
    }

    /// Refreshes `margin` before expiry instead of [`DEFAULT_REFRESH_MARGIN`].
    pub fn with_refresh_margin(mut self, margin: Duration) -> TokenCache {
        self.margin = margin;
        self
    }

    /// Calls `hook` with each refresh token the provider rotates in, so the caller can
    /// store it (see [`RotationHook`]). The cache itself uses the new one from then on.
    pub fn on_rotation(mut self, hook: RotationHook) -> TokenCache {
        self.on_rotation = Some(hook);
        self
    }

    /// When the current token expires, for `keygate secret list`; `None` before the first
    /// mint or after [`invalidate`](TokenCache::invalidate).
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.lock_current().as_ref().map(|c| c.token.expires_at)
    }

    /// Forgets the current token, so the next [`get`](TokenCache::get) mints (for when the
    /// upstream rejects it as revoked).
    pub fn invalidate(&self) {
        *self.lock_current() = None;
    }

    /// The current token, minted through `transport` if there is none or it is due for
    /// refresh.
    ///
    /// Cancelling this future leaves the cache consistent, but a response that was already
    /// on its way is lost, and with it a rotated refresh token. Callers that may be
    /// cancelled (a request handler whose client hangs up) use
    /// [`get_detached`](TokenCache::get_detached).
    pub async fn get(&self, transport: &dyn Transport) -> Result<Arc<Token>, MintError> {
        if let Some(token) = self.fresh() {
            return Ok(token);
        }
        let seen = self.finished.load(Ordering::Acquire);
        let mut flight = self.flight.lock().await;
        if self.finished.load(Ordering::Acquire) != seen
            && let Some(outcome) = &flight.last
        {
            return outcome.clone();
        }
        // A mint may have finished between the first check and reading `seen`.
        if let Some(token) = self.fresh() {
            return Ok(token);
        }
        let outcome = self.mint(&mut flight.grant, transport).await;
        flight.last = Some(outcome.clone());
        self.finished.fetch_add(1, Ordering::Release);
        outcome
    }

    /// [`get`](TokenCache::get) with the mint running in its own task, so that it completes
    /// (and a rotated refresh token is kept) even if this future is dropped.
    pub async fn get_detached(
        self: &Arc<Self>,
        transport: Arc<dyn Transport>,
    ) -> Result<Arc<Token>, MintError> {
        if let Some(token) = self.fresh() {
            return Ok(token);
        }
        let cache = Arc::clone(self);
        let task = tokio::spawn(async move { cache.get(&*transport).await });
        match task.await {
            Ok(outcome) => outcome,
            // The task panicked or the runtime is shutting down: no answer from the
            // endpoint, as far as the caller is concerned.
            Err(_) => Err(MintError::Transport {
                endpoint: self.endpoint.clone(),
                reason: "the mint task did not finish".into(),
            }),
        }
    }

    async fn mint(
        &self,
        grant: &mut Grant,
        transport: &dyn Transport,
    ) -> Result<Arc<Token>, MintError> {
        let minted = match grant.mint_with_clock(transport, &*self.clock).await {
            Ok(minted) => minted,
            Err(error) => return self.unexpired_after(error),
        };
        if let Some(refresh_token) = minted.rotated_refresh_token {
            tracing::info!(endpoint = %self.endpoint, "the provider rotated the refresh token");
            grant.use_refresh_token(refresh_token.clone());
            if let Some(hook) = &self.on_rotation {
                hook(refresh_token);
            }
        }
        let token = Arc::new(minted.token);
        let refresh_at = refresh_time(self.clock.now(), token.expires_at, self.margin);
        *self.lock_current() = Some(Current {
            token: Arc::clone(&token),
            refresh_at,
        });
        tracing::debug!(endpoint = %self.endpoint, "minted a token");
        Ok(token)
    }

    /// After a failed mint: the current token while it has not expired, else the error.
    fn unexpired_after(&self, error: MintError) -> Result<Arc<Token>, MintError> {
        let now = self.clock.now();
        match &*self.lock_current() {
            Some(current) if current.token.expires_at > now => {
                tracing::warn!(
                    endpoint = %self.endpoint,
                    %error,
                    "refreshing the token failed; using the current one until it expires"
                );
                Ok(Arc::clone(&current.token))
            }
            _ => Err(error),
        }
    }

    /// The current token, if it is not yet due for refresh.
    fn fresh(&self) -> Option<Arc<Token>> {
        let now = self.clock.now();
        let current = self.lock_current();
        let current = current.as_ref()?;
        (now < current.refresh_at).then(|| Arc::clone(&current.token))
    }

    fn lock_current(&self) -> std::sync::MutexGuard<'_, Option<Current>> {
        // The guarded value is replaced whole, so a panic elsewhere cannot leave it torn.
        self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("endpoint", &self.endpoint)
            .field("expires_at", &self.expires_at())
            .finish_non_exhaustive()
    }
}

/// When a token received at `received` and expiring at `expires_at` is due for refresh:
/// `margin` before expiry, or half-way through its life if that is sooner.
pub fn refresh_time(received: SystemTime, expires_at: SystemTime, margin: Duration) -> SystemTime {
    let lifetime = expires_at
        .duration_since(received)
        .unwrap_or(Duration::ZERO);
    expires_at - margin.min(lifetime / 2)
}

#[cfg(test)]
#[path = "cache_tests.rs"]
mod tests;
