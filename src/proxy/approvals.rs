//! Approvals (`network.ask`, issue 16): a request to a host the policy does not allow is
//! held, up to `network.ask_timeout`, while a human is asked through the admin API (the
//! dashboard): allow once, allow always (the admin API writes the rule to keygate.yaml),
//! or deny. No answer in time, or too many already held: refused exactly as without
//! `ask`. Only refusals an allow rule would lift are asked about (never a `deny` rule,
//! never a private address).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::oneshot;

use crate::policy::{Allowed, Host, Refusal};

/// Most requests held at once; more are refused at once.
pub const MAX_HELD: usize = 64;

/// A human's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// This request (this connection) only.
    Once,
    /// The host is allowed from now on (the answerer wrote the rule and reloaded).
    Always,
    /// Refused.
    Deny,
}

impl Answer {
    fn as_str(self) -> &'static str {
        match self {
            Answer::Once => "once",
            Answer::Always => "always",
            Answer::Deny => "deny",
        }
    }
}

/// A held request, as the admin API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Pending {
    /// Its id, for the answer.
    pub id: u64,
    /// Who sent it.
    pub client: String,
    /// Where to.
    pub host: String,
    /// Which port.
    pub port: u16,
    /// What (`CONNECT host:port`, `GET http://…`, without the query).
    pub what: String,
    /// The `network.allow` pattern "allow always" adds.
    pub allow: String,
    /// When it was held, RFC 3339.
    pub since: String,
}

struct Held {
    pending: Pending,
    answer: oneshot::Sender<(Answer, String)>,
}

/// The requests held for an answer.
pub struct Approvals {
    next: AtomicU64,
    held: Mutex<BTreeMap<u64, Held>>,
    /// Bumped whenever a request is held, for whoever asks (a terminal prompt).
    changes: tokio::sync::watch::Sender<u64>,
    /// Patterns a human allowed "always" in this process, when nothing reloads the
    /// policy (a `keygate run` session's terminal prompt): not asked again.
    remembered: Mutex<BTreeSet<String>>,
}

impl Default for Approvals {
    fn default() -> Approvals {
        Approvals {
            next: AtomicU64::new(0),
            held: Mutex::default(),
            changes: tokio::sync::watch::Sender::new(0),
            remembered: Mutex::default(),
        }
    }
}

impl std::fmt::Debug for Approvals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Approvals")
            .field("held", &self.pending().len())
            .finish()
    }
}

/// Removes a held request whose wait ended (answered, timed out, or its client gone).
struct Release<'a> {
    approvals: &'a Approvals,
    id: u64,
}

impl Drop for Release<'_> {
    fn drop(&mut self) {
        self.approvals.lock().remove(&self.id);
    }
}

impl Approvals {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Held>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The requests waiting now, oldest first.
    pub fn pending(&self) -> Vec<Pending> {
        self.lock().values().map(|h| h.pending.clone()).collect()
    }

    /// Answers held request `id`; false when there is none (answered, or gone).
    pub fn answer(&self, id: u64, answer: Answer, by: &str) -> bool {
        match self.lock().remove(&id) {
            Some(held) => held.answer.send((answer, by.to_string())).is_ok(),
            None => false,
        }
    }

    /// Whether request `id` is still waiting for an answer.
    pub fn is_held(&self, id: u64) -> bool {
        self.lock().contains_key(&id)
    }

    /// Wakes whenever a request is held.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Requests an allow rule `pattern` would lift are approved without asking from now
    /// on (for a proxy whose policy is not reloaded with the rule).
    pub fn remember(&self, pattern: &str) {
        self.remembered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(pattern.to_string());
    }

    /// The pattern "allow always" would add for held request `id`.
    pub fn allow_pattern(&self, id: u64) -> Option<String> {
        self.lock().get(&id).map(|h| h.pending.allow.clone())
    }

    /// Decides a refused request: holds it and asks when `ask` is on and an allow rule
    /// would lift the refusal; else (or on deny, timeout, too many held) the refusal,
    /// its reason saying why no one allowed it.
    #[allow(clippy::too_many_arguments)]
    pub async fn decide(
        &self,
        ask: bool,
        timeout: Duration,
        client: &str,
        host: &Host,
        port: u16,
        what: &str,
        mut refusal: Refusal,
    ) -> Result<Allowed, Refusal> {
        let Some(allow) = refusal.allow.clone().filter(|_| ask) else {
            return Err(refusal);
        };
        if self
            .remembered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&allow)
        {
            return Ok(Allowed::Approved(
                "approved (always) when asked earlier".into(),
            ));
        }
        let (tx, rx) = oneshot::channel();
        let id = {
            let mut held = self.lock();
            if held.len() >= MAX_HELD {
                refusal.reason.push_str(&format!(
                    "; not asked: {MAX_HELD} requests are already waiting for an answer"
                ));
                return Err(refusal);
            }
            let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
            let since = time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default();
            held.insert(
                id,
                Held {
                    pending: Pending {
                        id,
                        client: client.to_string(),
                        host: host.to_string(),
                        port,
                        what: what.to_string(),
                        allow,
                        since,
                    },
                    answer: tx,
                },
            );
            id
        };
        self.changes.send_modify(|n| *n += 1);
        let _release = Release {
            approvals: self,
            id,
        };
        tracing::info!(client, "{what}: held, asking (network.ask)");
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok((Answer::Deny, by))) => {
                refusal
                    .reason
                    .push_str(&format!("; denied by {by} when asked"));
                Err(refusal)
            }
            Ok(Ok((answer, by))) => Ok(Allowed::Approved(format!(
                "approved ({}) by {by} when asked",
                answer.as_str()
            ))),
            Ok(Err(_)) => Err(refusal),
            Err(_) => {
                refusal.reason.push_str(&format!(
                    "; no answer within {} s (network.ask_timeout)",
                    timeout.as_secs()
                ));
                Err(refusal)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Mode, Policy, PrivateAddresses};

    fn refusal(host: &Host) -> Refusal {
        let policy = Policy::new(Mode::Custom, vec![], vec![], vec![], PrivateAddresses::Deny);
        policy.decide(host, 443).unwrap_err()
    }

    #[tokio::test]
    async fn held_requests_are_answered_or_time_out_and_leave_no_trace() {
        let approvals = std::sync::Arc::new(Approvals::default());
        let host: Host = "ask.example.com".parse().unwrap();
        let ask = |a: std::sync::Arc<Approvals>, t: Duration| {
            let host = host.clone();
            tokio::spawn(async move {
                let r = refusal(&host);
                a.decide(true, t, "c", &host, 443, "CONNECT ask.example.com:443", r)
                    .await
            })
        };
        let held = ask(approvals.clone(), Duration::from_secs(10));
        while approvals.pending().is_empty() {
            tokio::task::yield_now().await;
        }
        let pending = approvals.pending();
        assert_eq!(pending[0].allow, "ask.example.com");
        assert!(approvals.answer(pending[0].id, Answer::Once, "admin API"));
        let allowed = held.await.unwrap().unwrap();
        assert!(allowed.to_string().contains("approved (once) by admin API"));
        assert!(approvals.pending().is_empty());

        let held = ask(approvals.clone(), Duration::from_secs(10));
        while approvals.pending().is_empty() {
            tokio::task::yield_now().await;
        }
        approvals.answer(approvals.pending()[0].id, Answer::Deny, "dashboard");
        let refused = held.await.unwrap().unwrap_err();
        assert!(
            refused.reason.ends_with("; denied by dashboard when asked"),
            "{}",
            refused.reason
        );

        let refused = ask(approvals.clone(), Duration::from_millis(10))
            .await
            .unwrap()
            .unwrap_err();
        assert!(
            refused.reason.contains("no answer within"),
            "{}",
            refused.reason
        );
        assert!(approvals.pending().is_empty());
        // Without ask: refused at once, nothing held.
        let r = refusal(&host);
        let refused = approvals
            .decide(false, Duration::from_secs(10), "c", &host, 443, "x", r)
            .await
            .unwrap_err();
        assert!(!refused.reason.contains("asked"));
        // Remembered ("always" on a terminal): approved without holding or asking.
        let changes = approvals.subscribe();
        approvals.remember("ask.example.com");
        let r = refusal(&host);
        let allowed = approvals
            .decide(true, Duration::from_secs(10), "c", &host, 443, "x", r)
            .await
            .unwrap();
        assert!(allowed.to_string().contains("when asked earlier"));
        assert!(!changes.has_changed().unwrap(), "nothing was held");
    }
}
