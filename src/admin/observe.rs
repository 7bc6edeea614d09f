//! [`Observed`]: what the admin listener knows about the traffic, learned from the audit
//! events as they are recorded: the recent flows (a bounded ring), a live feed of them,
//! each secret's use count and last use, and the counters `/metrics` exports.
//!
//! An audit event holds no header value, no query and no secret value (SPEC §8), so
//! neither does anything here.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use serde::Serialize;
use tokio::sync::broadcast;

use crate::audit::{Event, Observer, Verdict};

/// How many recent flows are kept for `/api/flows`.
pub const RING: usize = 1000;
/// How many flows a slow live subscriber may fall behind before it misses some.
const LIVE_BACKLOG: usize = 256;

/// One flow as the API shows it: the audit event and a sequence number.
#[derive(Debug, Clone, Serialize)]
pub struct Flow {
    /// Increasing from 1 for this keygate process.
    pub id: u64,
    /// The audit event (shared with the audit writer).
    #[serde(flatten)]
    pub event: Arc<Event>,
    /// The refusal code (`not-allowed`, `tripwire`, …) of a `deny`, else none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

/// A secret's use, for `/api/secrets`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SecretUse {
    /// Requests it was swapped (or signed, or minted) into.
    pub uses: u64,
    /// When it was last used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_use: Option<String>,
    /// Requests refused because its dummy went to a host it is not bound to.
    pub tripwires: u64,
}

/// The counters of `/metrics`, keyed by their label values.
#[derive(Debug, Default, Clone)]
pub struct Counters {
    /// Events by (kind, decision, code).
    pub events: BTreeMap<(&'static str, &'static str, String), u64>,
    /// Swaps by secret.
    pub swaps: BTreeMap<String, u64>,
    /// Tripwires by secret.
    pub tripwires: BTreeMap<String, u64>,
    /// Bytes client → upstream.
    pub bytes_up: u64,
    /// Bytes upstream → client.
    pub bytes_down: u64,
}

/// What the admin listener learned; see the module documentation.
#[derive(Debug)]
pub struct Observed {
    next: AtomicU64,
    ring: Mutex<VecDeque<Arc<Flow>>>,
    live: broadcast::Sender<Arc<Flow>>,
    secrets: Mutex<HashMap<String, SecretUse>>,
    counters: Mutex<Counters>,
    /// `admin.metrics: false`: the counters are not kept.
    counting: bool,
    /// When this keygate started.
    pub started: SystemTime,
}

impl Default for Observed {
    fn default() -> Observed {
        Observed {
            next: AtomicU64::new(1),
            ring: Mutex::new(VecDeque::with_capacity(RING)),
            live: broadcast::channel(LIVE_BACKLOG).0,
            secrets: Mutex::default(),
            counters: Mutex::default(),
            counting: true,
            started: SystemTime::now(),
        }
    }
}

/// The code of a refusal reason (`not-allowed: …` → `not-allowed`): its first word when
/// it is one of lower-case letters and dashes followed by `:`.
pub fn reason_code(reason: &str) -> Option<&str> {
    let (code, _) = reason.split_once(':')?;
    (!code.is_empty() && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')).then_some(code)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn rfc3339(at: SystemTime) -> String {
    time::OffsetDateTime::from(at)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl Observed {
    /// Keeping the counters of `/metrics` (`admin.metrics`) or not; the flows and the
    /// secrets' use are kept either way (the dashboard shows them).
    pub fn new(counting: bool) -> Observed {
        Observed {
            counting,
            ..Observed::default()
        }
    }

    /// The most recent `limit` flows, oldest first.
    pub fn recent(&self, limit: usize) -> Vec<Arc<Flow>> {
        let ring = lock(&self.ring);
        let skip = ring.len().saturating_sub(limit);
        ring.iter().skip(skip).cloned().collect()
    }

    /// A feed of the flows recorded from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Flow>> {
        self.live.subscribe()
    }

    /// Each secret's use so far, by name.
    pub fn secret_uses(&self) -> HashMap<String, SecretUse> {
        lock(&self.secrets).clone()
    }

    /// The counters so far.
    pub fn counters(&self) -> Counters {
        lock(&self.counters).clone()
    }
}

impl Observer for Observed {
    fn observe(&self, event: &Arc<Event>) {
        let code = match event.decision {
            Verdict::Deny => event
                .reason
                .as_deref()
                .and_then(reason_code)
                .map(str::to_string),
            _ => None,
        };
        let tripped = code.as_deref() == Some("tripwire");
        if self.counting {
            let mut counters = lock(&self.counters);
            let (kind, decision) = (event.kind.as_str(), event.decision.as_str());
            *counters
                .events
                .entry((kind, decision, code.clone().unwrap_or_default()))
                .or_default() += 1;
            counters.bytes_up += event.bytes_up;
            counters.bytes_down += event.bytes_down;
            if let Some(secrets) = &event.secret {
                for name in secrets.split(',') {
                    let map = match tripped {
                        true => &mut counters.tripwires,
                        false => &mut counters.swaps,
                    };
                    *map.entry(name.to_string()).or_default() += 1;
                }
            }
        }
        if let Some(secrets) = &event.secret {
            let mut uses = lock(&self.secrets);
            for name in secrets.split(',') {
                let entry = uses.entry(name.to_string()).or_default();
                match tripped {
                    true => entry.tripwires += 1,
                    false if event.decision != Verdict::Deny => {
                        entry.uses += 1;
                        entry.last_use = Some(rfc3339(event.ts));
                    }
                    false => {}
                }
            }
        }
        let flow = Arc::new(Flow {
            id: self.next.fetch_add(1, Ordering::Relaxed),
            event: Arc::clone(event),
            code,
        });
        {
            let mut ring = lock(&self.ring);
            if ring.len() == RING {
                ring.pop_front();
            }
            ring.push_back(flow.clone());
        }
        // No subscriber is no error.
        let _ = self.live.send(flow);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Kind;

    fn event(decision: Verdict, reason: Option<&str>, secret: Option<&str>) -> Event {
        let mut e = Event::new("127.0.0.1:1", Kind::Request, decision);
        e.host = Some("api.example.com".into());
        e.reason = reason.map(str::to_string);
        e.secret = secret.map(str::to_string);
        e.bytes_up = 10;
        e.bytes_down = 20;
        e
    }

    #[test]
    fn flows_are_kept_in_a_ring_and_counted() {
        let observed = Observed::default();
        let mut live = observed.subscribe();
        for _ in 0..RING + 5 {
            observed.observe(&Arc::new(event(
                Verdict::Intercept,
                None,
                Some("anthropic"),
            )));
        }
        observed.observe(&Arc::new(event(
            Verdict::Deny,
            Some("tripwire: the dummy of secret `anthropic` was sent to evil.example"),
            Some("anthropic"),
        )));
        observed.observe(&Arc::new(event(
            Verdict::Deny,
            Some("not-allowed: evil.example:443 is not on the list"),
            None,
        )));
        let recent = observed.recent(3);
        assert_eq!(recent.len(), 3);
        assert_eq!(recent[2].code.as_deref(), Some("not-allowed"));
        assert_eq!(recent[2].id, (RING + 7) as u64);
        assert_eq!(observed.recent(usize::MAX).len(), RING);
        // A subscriber that fell behind is told how many it missed, then goes on.
        assert!(matches!(
            live.try_recv(),
            Err(broadcast::error::TryRecvError::Lagged(_))
        ));
        assert!(live.try_recv().unwrap().id > 1);
        let uses = observed.secret_uses();
        assert_eq!(uses["anthropic"].uses, (RING + 5) as u64);
        assert_eq!(uses["anthropic"].tripwires, 1);
        let counters = observed.counters();
        assert_eq!(counters.tripwires["anthropic"], 1);
        assert_eq!(counters.swaps["anthropic"], (RING + 5) as u64);
        let denied = ("request", "deny", "not-allowed".to_string());
        assert_eq!(counters.events[&denied], 1);
        assert_eq!(counters.bytes_down, 20 * (RING + 7) as u64);
    }

    #[test]
    fn reason_codes_are_the_leading_word() {
        assert_eq!(reason_code("not-allowed: x"), Some("not-allowed"));
        assert_eq!(reason_code("upstream-error: x: y"), Some("upstream-error"));
        assert_eq!(reason_code("Something else: x"), None);
        assert_eq!(reason_code("no colon"), None);
    }
}
