//! WebSocket frames to a host a secret is bound to (issue 14): what happens to their
//! payloads once keygate can read them. Pure functions of the bytes; the relay that
//! parses and re-emits frames is `proxy::exchange::websocket`.
//!
//! * Client → upstream ([`Upward`]): the tripwire and the phantom alarms look at every
//!   payload (a dummy that does not belong to this host closes the WebSocket, see
//!   [`Tripped`]); the dummy of a bound secret is swapped for its real value only when
//!   the secret says `websocket: true` (else it goes up unchanged: a dummy is harmless
//!   at its own host).
//! * Upstream → client ([`Downward`]): every form of a bound secret's real value is
//!   scrubbed back to its dummy, as in response bodies ([`Scrubber`]).
//!
//! A data message may be fragmented over frames and each frame streamed in chunks: one
//! filter sees a message's payload chunk by chunk and carries what it holds back (a
//! possible start of a value, or the end of the last chunk for the tripwire) across
//! chunks and fragments until [`FrameFilter::finish`] at the message's final frame.
//! Control payloads (at most [`MAX_CONTROL_PAYLOAD`] bytes) are filtered whole and cut
//! back to that size if a replacement made them longer ([`fit_control`]).

use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::scrubber::Scrubber;
use super::{FlowContext, Refuse, phantom, tripwire};
use crate::policy::Host;
use crate::secrets::SecretSet;
use crate::secrets::reflect::Reflections;

/// The largest control frame payload (RFC 6455 §5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// A payload that carried a dummy which does not belong to this host: the WebSocket is
/// closed (1008) and the refusal logged and audited as an alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tripped {
    /// The secret whose dummy it was, when known.
    pub secret: Option<String>,
    /// The same refusal a request carrying it gets (`tripwire`, `static-dummy`, ...).
    pub refuse: Refuse,
}

/// One direction's payload transformation, fed one message at a time.
pub trait FrameFilter: Send {
    /// Feeds the next chunk of a data message; returns what can be sent now.
    fn push(&mut self, chunk: &[u8]) -> Result<Bytes, Tripped>;
    /// Ends the message (its final frame): releases what was held back.
    fn finish(&mut self) -> Bytes;
    /// Filters a whole control payload (`close`: a close frame's, whose 2-byte code is
    /// kept); the result fits a control frame.
    fn control(&mut self, payload: &[u8], close: bool) -> Result<Bytes, Tripped>;
}

/// What keygate does with the frames of one WebSocket it reads.
#[derive(Debug, Clone)]
pub struct FramePolicy {
    secrets: Arc<SecretSet>,
    host: Host,
    port: u16,
    /// Forms of the bound real values, scrubbed from what comes down.
    reflections: Option<Arc<Reflections>>,
    /// Exact pairs for what goes up: each opted-in bound dummy → its real value, and
    /// every other dummy → itself (so that the start of one at the end of a chunk is
    /// held back until the tripwire has seen whether it completes).
    swap: Option<Arc<Reflections>>,
    /// The longest dummy (static or retired): how much of a message's end the tripwire
    /// keeps to find one split across chunks.
    longest: usize,
}

impl FramePolicy {
    /// The policy for a WebSocket upgraded by `flow` on an intercepted connection:
    /// for a host a secret is bound to, and for any other intercepted host (`intercept:
    /// all`) while a secret is registered, since what goes up there is read by the
    /// tripwire like a request body. `None` when no secret is registered at all (its
    /// frames are relayed as bytes).
    pub fn for_flow(flow: &FlowContext) -> Option<FramePolicy> {
        let bound = flow.bound();
        // No secret registered: nothing to read for.
        flow.secrets.iter().next()?;
        let swapped: Vec<(&[u8], &[u8])> = bound
            .iter()
            .filter(|b| b.websocket)
            .filter_map(|b| Some((b.dummy.as_bytes(), flow.value_for(b)?.expose().as_bytes())))
            .collect();
        let others = flow
            .secrets
            .iter()
            .filter(|b| !bound.iter().any(|own| own.name == b.name))
            .map(|b| b.dummy.as_bytes())
            .chain(flow.secrets.retired().map(|(_, dummy)| dummy.as_bytes()));
        let held: Vec<(&[u8], &[u8])> = others.map(|d| (d, d)).collect();
        let pairs: Vec<(&[u8], &[u8])> = swapped.iter().chain(&held).copied().collect();
        let dummies = flow.secrets.iter().map(|b| b.dummy.len());
        let retired = flow.secrets.retired().map(|(_, d)| d.len());
        Some(FramePolicy {
            secrets: flow.secrets.clone(),
            host: flow.host.clone(),
            port: flow.port,
            reflections: flow.reflections(),
            swap: (!swapped.is_empty() || !held.is_empty())
                .then(|| Reflections::exact(&pairs).map(Arc::new))
                .flatten(),
            longest: dummies.chain(retired).max().unwrap_or(0),
        })
    }

    /// A filter for the client's frames.
    pub fn upward(&self) -> Upward {
        Upward {
            scrubber: self.swap.clone().map(Scrubber::with),
            policy: self.clone(),
            tail: Vec::new(),
            swapped: Vec::new(),
        }
    }

    /// A filter for the upstream's frames.
    pub fn downward(&self) -> Downward {
        Downward {
            reflections: self.reflections.clone(),
            scrubber: self.reflections.clone().map(Scrubber::with),
        }
    }

    /// The alarm or tripwire `haystack` sets off, if any (alarms first, as in the
    /// request pipeline).
    fn trip(&self, haystack: &[u8]) -> Option<Tripped> {
        if let Some(alarm) = self.secrets.alarm_in(haystack) {
            let (secret, refuse) = phantom::refusal(&self.secrets, alarm);
            return Some(Tripped { secret, refuse });
        }
        let (host, port) = (&self.host, self.port);
        let binding = self
            .secrets
            .dummy_in(haystack, |b| !b.is_bound_to(host, port))?;
        Some(Tripped {
            secret: Some(binding.name.clone()),
            refuse: tripwire::refusal(binding, host, port),
        })
    }

    /// The name of an opted-in bound secret not in `known` whose dummy is in `haystack`.
    fn swaps_in(&self, haystack: &[u8], known: &[String]) -> Option<String> {
        let (host, port) = (&self.host, self.port);
        let b = self.secrets.dummy_in(haystack, |b| {
            b.websocket
                && b.real.is_some()
                && !matches!(b.kind, crate::secrets::kind::Kind::Aws(_))
                && b.is_bound_to(host, port)
                && !known.contains(&b.name)
        })?;
        Some(b.name.clone())
    }
}

/// The client-to-upstream filter: tripwire, phantom alarms, and the opt-in swap.
#[derive(Debug)]
pub struct Upward {
    policy: FramePolicy,
    scrubber: Option<Scrubber>,
    /// The last `longest - 1` bytes of the message so far.
    tail: Vec<u8>,
    swapped: Vec<String>,
}

impl Upward {
    /// The secrets whose dummy was swapped in some frame so far.
    pub fn swapped(&self) -> &[String] {
        &self.swapped
    }

    /// Trips on a dummy in `chunk` or spanning the end of the message so far and it;
    /// notes the swapped secrets; keeps the new tail.
    fn check(&mut self, chunk: &[u8]) -> Result<(), Tripped> {
        let keep = self.policy.longest.saturating_sub(1);
        if !self.tail.is_empty() {
            let mut edge = self.tail.clone();
            edge.extend_from_slice(&chunk[..chunk.len().min(keep)]);
            self.scan(&edge)?;
        }
        self.scan(chunk)?;
        if chunk.len() >= keep {
            self.tail = chunk[chunk.len() - keep..].to_vec();
        } else {
            self.tail.extend_from_slice(chunk);
            let extra = self.tail.len().saturating_sub(keep);
            self.tail.drain(..extra);
        }
        Ok(())
    }

    /// Trips on a dummy in `haystack`, else notes the swapped secrets it holds.
    fn scan(&mut self, haystack: &[u8]) -> Result<(), Tripped> {
        if let Some(tripped) = self.policy.trip(haystack) {
            return Err(tripped);
        }
        while let Some(name) = self.policy.swaps_in(haystack, &self.swapped) {
            self.swapped.push(name);
        }
        Ok(())
    }
}

impl FrameFilter for Upward {
    fn push(&mut self, chunk: &[u8]) -> Result<Bytes, Tripped> {
        self.check(chunk)?;
        Ok(match &mut self.scrubber {
            Some(scrubber) => scrubber.push(chunk),
            None => Bytes::copy_from_slice(chunk),
        })
    }

    fn finish(&mut self) -> Bytes {
        self.tail.clear();
        self.scrubber
            .as_mut()
            .map_or_else(Bytes::new, |scrubber| scrubber.finish())
    }

    fn control(&mut self, payload: &[u8], close: bool) -> Result<Bytes, Tripped> {
        self.scan(payload)?;
        let swap = self.policy.swap.clone();
        Ok(rewrite_control(payload, close, |text| match &swap {
            Some(pairs) => Scrubber::with(pairs.clone()).scrub_all(text),
            None => Bytes::copy_from_slice(text),
        }))
    }
}

/// The upstream-to-client filter: every form of a bound real value back to its dummy.
#[derive(Debug)]
pub struct Downward {
    reflections: Option<Arc<Reflections>>,
    scrubber: Option<Scrubber>,
}

impl FrameFilter for Downward {
    fn push(&mut self, chunk: &[u8]) -> Result<Bytes, Tripped> {
        Ok(match &mut self.scrubber {
            Some(scrubber) => scrubber.push(chunk),
            None => Bytes::copy_from_slice(chunk),
        })
    }

    fn finish(&mut self) -> Bytes {
        self.scrubber
            .as_mut()
            .map_or_else(Bytes::new, |scrubber| scrubber.finish())
    }

    fn control(&mut self, payload: &[u8], close: bool) -> Result<Bytes, Tripped> {
        let reflections = &self.reflections;
        Ok(rewrite_control(payload, close, |text| match reflections {
            // A scrubber of its own: a control frame may come between two fragments of
            // a message, whose held-back tail is no part of it.
            Some(r) => Scrubber::with(r.clone()).scrub_all(text),
            None => Bytes::copy_from_slice(text),
        }))
    }
}

/// A control payload with `rewrite` applied to its text (a close frame's reason, after
/// its 2-byte code; a ping's or pong's whole payload), cut to fit a control frame.
fn rewrite_control(payload: &[u8], close: bool, rewrite: impl FnOnce(&[u8]) -> Bytes) -> Bytes {
    let keep = if close { payload.len().min(2) } else { 0 };
    let (code, text) = payload.split_at(keep);
    let mut out = BytesMut::with_capacity(payload.len());
    out.extend_from_slice(code);
    out.extend_from_slice(&rewrite(text));
    fit_control(out.freeze(), close)
}

/// `payload` cut to [`MAX_CONTROL_PAYLOAD`] bytes: a close frame keeps its code, and its
/// reason (UTF-8) is cut at a character boundary.
pub fn fit_control(payload: Bytes, close: bool) -> Bytes {
    if payload.len() <= MAX_CONTROL_PAYLOAD {
        return payload;
    }
    let mut end = MAX_CONTROL_PAYLOAD;
    if close {
        // A UTF-8 continuation byte (10xxxxxx) never starts a character.
        while end > 2 && payload[end] & 0xC0 == 0x80 {
            end -= 1;
        }
    }
    payload.slice(..end)
}

#[cfg(test)]
#[path = "websocket_tests.rs"]
mod tests;
