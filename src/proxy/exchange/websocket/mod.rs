//! The WebSocket after the 101 (issue 14).
//!
//! To a host a secret is bound to, keygate reads the frames ([`pump`], over [`codec`]):
//! what comes down is scrubbed of every form of the real value, what goes up is
//! tripwired and (with `websocket: true`) swapped; the policy is
//! [`crate::addon::websocket`]. For that the upgrade offers no extension
//! ([`offer_no_extensions`]), and a 101 that switches to anything keygate cannot read is
//! refused ([`unreadable`]). Per direction, keygate holds a frame header and at most
//! [`codec::MAX_CHUNK`] bytes of payload at a time, plus what the filter holds back
//! (shorter than the longest form of a value); any frame size passes.
//!
//! Every other host's WebSocket is relayed as bytes, as before: nothing there to scrub.

pub mod codec;
pub mod pump;

use http::HeaderMap;
use http::header::{HeaderName, UPGRADE};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::oneshot;

use super::super::respond::ProxyError;
use crate::addon::websocket::{FramePolicy, Tripped};
use crate::audit::{Event, Verdict};
use pump::{End, Fault, POLICY_VIOLATION, Pump};

/// `Sec-WebSocket-Extensions`, offered by the client and accepted by the server.
const EXTENSIONS: HeaderName = HeaderName::from_static("sec-websocket-extensions");

/// Takes every extension (`permessage-deflate`, ...) out of a WebSocket upgrade request
/// to a host a secret is bound to.
pub fn offer_no_extensions(headers: &mut HeaderMap) {
    // SECURITY: with permessage-deflate the frames are compressed: a real value the
    // upstream echoes would reach the client unscrubbed, and a dummy the client sends
    // would pass the tripwire. With none offered, the server may use none (RFC 6455
    // §9.1), so keygate can read every frame; clients fall back to plain frames.
    headers.remove(EXTENSIONS);
}

/// Why keygate cannot read the WebSocket a 101 from a host a secret is bound to opens,
/// if it cannot: the server accepted an extension nobody offered it, or switched to a
/// protocol that is not WebSocket. The client then gets this error, not the 101.
pub fn unreadable(headers: &HeaderMap) -> Option<ProxyError> {
    let websocket = headers
        .get(UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    if !websocket {
        return Some(ProxyError::Upstream(
            "the upstream switched to a protocol other than WebSocket; keygate relays only WebSocket frames, which it can read, from a host a secret is bound to".into(),
        ));
    }
    headers.contains_key(EXTENSIONS).then(|| {
        ProxyError::Upstream(
            "the upstream accepted a WebSocket extension keygate did not offer (e.g. compression); keygate cannot read such frames".into(),
        )
    })
}

/// How a bridged WebSocket ended, for the audit record.
#[derive(Debug, Default)]
pub struct Relayed {
    /// Why it ended, when not by a close from either side: `closed by shutdown`, ...
    pub why: Option<String>,
    /// The fault keygate closed it for.
    pub fault: Option<Fault>,
    /// Secrets whose dummy was swapped in a frame.
    pub swapped: Vec<String>,
}

impl Relayed {
    /// Ended by keygate for `why` (a timeout, a shutdown).
    pub fn cut(why: &str) -> Relayed {
        Relayed {
            why: Some(why.to_string()),
            ..Relayed::default()
        }
    }

    /// Logs an alert for a tripped wire (error level) or a protocol fault (warn).
    pub fn log(&self, what: &str) {
        match &self.fault {
            Some(Fault::Tripped(Tripped { refuse, .. })) => {
                ProxyError::Addon(refuse.clone()).log(&format!("{what} (a WebSocket frame)"));
            }
            Some(Fault::Protocol(why)) => tracing::warn!("{what}: WebSocket closed: {why}"),
            None => {}
        }
    }

    /// Writes the outcome into the request's audit event; `moved` is the byte counts.
    pub fn record(&self, event: &mut Event, moved: &str) {
        for name in &self.swapped {
            let mut names: Vec<&str> = event.secret.iter().flat_map(|s| s.split(',')).collect();
            if !names.contains(&name.as_str()) {
                names.push(name);
                event.secret = Some(names.join(","));
            }
        }
        event.reason = Some(match (&self.fault, &self.why) {
            (Some(Fault::Tripped(tripped)), _) => {
                event.decision = Verdict::Deny;
                event.secret = tripped.secret.clone();
                format!(
                    "{}: {} (in a WebSocket frame; closed {POLICY_VIOLATION}); {moved}",
                    tripped.refuse.code, tripped.refuse.why
                )
            }
            (Some(Fault::Protocol(why)), _) => {
                format!(
                    "websocket closed ({}): {why}; {moved}",
                    pump::PROTOCOL_ERROR
                )
            }
            (None, Some(why)) => format!("websocket {why}; {moved}"),
            (None, None) => format!("websocket: {moved}"),
        });
    }
}

/// Relays a WebSocket between `client` and `upstream` until both sides end: through
/// `frames` when there is a policy, else as bytes.
pub async fn relay<C, U>(mut client: C, mut upstream: U, frames: Option<FramePolicy>) -> Relayed
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let Some(policy) = frames else {
        return match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
            Ok(_) => Relayed::default(),
            Err(e) => Relayed::cut(&format!("ended: {e}")),
        };
    };
    let (client_read, client_write) = tokio::io::split(client);
    let (upstream_read, upstream_write) = tokio::io::split(upstream);
    let (stop_up, up_stopped) = oneshot::channel();
    let (stop_down, down_stopped) = oneshot::channel();
    let mut up = Pump::new(
        client_read,
        upstream_write,
        policy.upward(),
        false,
        up_stopped,
        stop_down,
    );
    let mut down = Pump::new(
        upstream_read,
        client_write,
        policy.downward(),
        true,
        down_stopped,
        stop_up,
    );
    let ended = tokio::try_join!(up.run(), down.run());
    let mut relayed = Relayed {
        swapped: up.filter.swapped().to_vec(),
        ..Relayed::default()
    };
    match ended {
        Ok((End::Fault(fault), _) | (_, End::Fault(fault))) => relayed.fault = Some(fault),
        Ok(_) => {}
        Err(e) => relayed.why = Some(format!("ended: {e}")),
    }
    relayed
}

#[cfg(test)]
mod tests;
