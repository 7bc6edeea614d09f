//! The tripwire on request bodies (issue 14): a dummy of a secret that is not bound to
//! the request's host, found anywhere in the body, stops the body before any byte of
//! the dummy goes upstream, and the request is refused as an alert, as [`super::tripwire`]
//! does for headers and the URL.
//!
//! Streaming and bounded: a chunk goes on at once unless it holds a dummy, or ends with
//! bytes that may begin one (only those are held back until the next chunk, at most the
//! longest dummy minus one byte). A body without such bytes passes without a copy.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::StatusCode;

use super::{FlowContext, Refuse};
use crate::secrets::reflect::Reflections;

/// A dummy found in a body: the refusal, and the secret it belongs to.
#[derive(Debug, Clone)]
pub struct Tripped {
    /// The refusal for the client (403, an alert).
    pub refuse: Refuse,
    /// The secret whose dummy it was.
    pub secret: String,
}

/// Watches one request body for the dummies of secrets not bound to its host.
pub struct BodyTripwire {
    /// Every registered dummy, each "replaced" by its secret's name (what a match
    /// reports): the set's searcher, compiled once per configuration.
    dummies: Arc<Reflections>,
    /// The secrets bound to this host (their dummies are no exfiltration here).
    bound: Vec<String>,
    /// Each other secret's name and the hosts it is bound to.
    secrets: Vec<(String, Vec<String>)>,
    carry: BytesMut,
    target: String,
}

impl std::fmt::Debug for BodyTripwire {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodyTripwire")
            .field("secrets", &self.secrets.len())
            .finish_non_exhaustive()
    }
}

impl BodyTripwire {
    /// A watcher for the body of a request in `flow`, or `None` when every registered
    /// secret is bound to its host (nothing could trip).
    pub fn for_flow(flow: &FlowContext) -> Option<BodyTripwire> {
        let (host, port) = (&flow.host, flow.port);
        let (bound, foreign): (Vec<_>, Vec<_>) = flow
            .secrets
            .iter()
            .filter(|b| !b.dummy.is_empty())
            .partition(|b| b.is_bound_to(host, port));
        if foreign.is_empty() {
            return None;
        }
        let secrets = foreign
            .iter()
            .map(|b| {
                (
                    b.name.clone(),
                    b.hosts.iter().map(|h| h.to_string()).collect(),
                )
            })
            .collect();
        Some(BodyTripwire {
            dummies: flow.secrets.dummy_names()?,
            bound: bound.iter().map(|b| b.name.clone()).collect(),
            secrets,
            carry: BytesMut::new(),
            target: format!("{host}:{port}"),
        })
    }

    /// The first dummy in `buf` of a secret not bound to this host: its secret's name.
    fn foreign_in(&self, buf: &[u8]) -> Option<Vec<u8>> {
        let mut at = 0;
        while let Some((_, end, name)) = self.dummies.find(buf, at) {
            if !self.bound.iter().any(|b| b.as_bytes() == &name[..]) {
                return Some(name.to_vec());
            }
            at = end;
        }
        None
    }

    /// Takes one chunk; returns what may go upstream now, or the refusal when a dummy
    /// of an unbound secret is in the body (nothing of it is returned).
    pub fn push(&mut self, chunk: Bytes) -> Result<Bytes, Tripped> {
        if self.carry.is_empty() {
            if let Some(name) = self.foreign_in(&chunk) {
                return Err(self.refuse(&name));
            }
            let hold = self.dummies.partial_tail(&chunk);
            if hold == 0 {
                return Ok(chunk);
            }
            self.carry.extend_from_slice(&chunk[chunk.len() - hold..]);
            return Ok(chunk.slice(..chunk.len() - hold));
        }
        self.carry.extend_from_slice(&chunk);
        if let Some(name) = self.foreign_in(&self.carry) {
            return Err(self.refuse(&name));
        }
        let hold = self.dummies.partial_tail(&self.carry);
        let release = self.carry.len() - hold;
        Ok(self.carry.split_to(release).freeze())
    }

    /// What is held back at the end of the body (it held no dummy, or `push` said so).
    pub fn finish(&mut self) -> Bytes {
        std::mem::take(&mut self.carry).freeze()
    }

    fn refuse(&self, name: &[u8]) -> Tripped {
        let name = String::from_utf8_lossy(name).into_owned();
        let hosts: Vec<String> = self
            .secrets
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, hosts)| hosts.clone())
            .unwrap_or_default();
        let refuse = Refuse {
            status: StatusCode::FORBIDDEN,
            code: "tripwire",
            why: format!(
                "the dummy credential of secret `{name}` was in a request body sent to {}, which it is not bound to (bound: {})",
                self.target,
                hosts.join(", ")
            ),
            advice: "Send this credential only to the hosts it is bound to. If the secret should also work here, a human can add the host to its `hosts` in secrets.yaml.".into(),
            alert: true,
        };
        Tripped {
            refuse,
            secret: name,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addon::testing::{DUMMY, binding, flow_to};

    fn watcher() -> BodyTripwire {
        BodyTripwire::for_flow(&flow_to("evil.example", vec![binding(false)], true)).unwrap()
    }

    #[test]
    fn a_dummy_anywhere_in_the_body_trips_before_any_of_it_goes_up() {
        let body = format!("{{\"note\":\"exfil {DUMMY} done\"}}");
        for cut in 0..=body.len() {
            let mut w = watcher();
            let mut sent = Vec::new();
            let mut refused = None;
            for part in [&body[..cut], &body[cut..]] {
                match w.push(Bytes::copy_from_slice(part.as_bytes())) {
                    Ok(out) => sent.extend_from_slice(&out),
                    Err(refuse) => {
                        refused = Some(refuse);
                        break;
                    }
                }
            }
            let tripped = refused.unwrap_or_else(|| panic!("cut at {cut}: not refused"));
            assert_eq!(tripped.refuse.code, "tripwire");
            assert!(tripped.refuse.alert);
            assert_eq!(tripped.secret, "demo");
            let sent = String::from_utf8(sent).unwrap();
            assert!(body.starts_with(&sent), "cut at {cut}");
            let at = body.find(DUMMY).unwrap();
            assert!(
                sent.len() <= at,
                "cut at {cut}: a byte of the dummy went up"
            );
        }
    }

    #[test]
    fn clean_bodies_pass_whole_and_only_a_dummys_start_waits() {
        let mut w = watcher();
        let chunk = Bytes::from_static(b"{\"prompt\":\"hello\"}");
        let out = w.push(chunk.clone()).unwrap();
        assert_eq!(out.as_ptr(), chunk.as_ptr(), "no copy");
        assert_eq!(
            &w.push(Bytes::from_static(b"tail keygate-du")).unwrap()[..],
            b"tail "
        );
        assert_eq!(
            &w.push(Bytes::from_static(b"ck!")).unwrap()[..],
            b"keygate-duck!"
        );
        assert!(w.finish().is_empty());
        let mut w = watcher();
        assert_eq!(
            &w.push(Bytes::from_static(b"end keygate")).unwrap()[..],
            b"end "
        );
        assert_eq!(&w.finish()[..], b"keygate");
    }

    #[test]
    fn a_bound_host_has_nothing_to_watch() {
        let flow = flow_to("api.example.com", vec![binding(false)], true);
        assert!(BodyTripwire::for_flow(&flow).is_none());
    }
}
