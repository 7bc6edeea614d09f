//! [`Owned`]: an intercepted client connection's own HTTP/1.1 connection to its upstream
//! (issue 17). Once the upstream has answered this client connection in HTTP/1.1 (it
//! was offered h2 and declined), the connection's next requests skip the pooling
//! client's checkout and dispatch: they go on one upstream connection that the client
//! connection holds while it lives, one request at a time, as HTTP/1.1 does anyway. An
//! upstream that speaks h2 stays with the pool, which multiplexes the requests of every
//! client connection over one upstream connection.
//!
//! The held connection belongs to the configuration generation that opened it: after a
//! reload the next request opens a new one (the new policy, resolve rules and roots).
//! A held connection the upstream closed meanwhile is replaced, and a request it could
//! not take (closed before a byte was written) is sent on the new one, as the pool
//! retries such requests.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use http::header::HOST;
use http::{HeaderValue, Request, Response, Uri, Version};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioExecutor;

use super::ConnectError;
use crate::policy::Host;
use crate::proxy::stats::UpstreamFailure;
use crate::proxy::{Body, Generation};

/// Why [`Owned::send`] got no response.
#[derive(Debug)]
pub enum OwnedError {
    /// The held connection is busy with another request of this client connection (an
    /// h2 client's concurrent streams): the request, for the pool.
    Busy(Request<Body>),
    /// No connection: policy, DNS, TCP, TLS (counted by the connector).
    Connect(ConnectError),
    /// The connection broke or the upstream spoke bad HTTP.
    Http(hyper::Error),
}

struct Held {
    generation: Arc<Generation>,
    sender: http1::SendRequest<Body>,
}

enum Slot {
    /// No connection yet, or the last one failed.
    Empty,
    /// A request is on it (or opening it).
    Busy,
    /// Idle, ready for the next request.
    Ready(Held),
}

/// See the module documentation.
pub struct Owned {
    /// The upstream answered in HTTP/1.1: later requests may use a held connection.
    http1: AtomicBool,
    slot: Mutex<Slot>,
}

impl Default for Owned {
    fn default() -> Owned {
        Owned {
            http1: AtomicBool::new(false),
            slot: Mutex::new(Slot::Empty),
        }
    }
}

impl std::fmt::Debug for Owned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Owned")
            .field("http1", &self.http1.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// The slot, claimed by one request: emptied when dropped unless a connection was put
/// back (a failed or cancelled request leaves no half-used connection behind).
struct Claim<'a> {
    owned: &'a Owned,
    put: bool,
}

impl Claim<'_> {
    fn put(mut self, generation: &Arc<Generation>, sender: http1::SendRequest<Body>) {
        *self.owned.lock() = Slot::Ready(Held {
            generation: generation.clone(),
            sender,
        });
        self.put = true;
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if !self.put {
            *self.owned.lock() = Slot::Empty;
        }
    }
}

impl Owned {
    /// Whether the next request should go on a held connection.
    pub fn usable(&self) -> bool {
        self.http1.load(Ordering::Relaxed)
    }

    /// Notes the version of a response the pool got for this client connection.
    pub fn learn(&self, version: Version) {
        if version == Version::HTTP_11 {
            self.http1.store(true, Ordering::Relaxed);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Claims the slot: `None` when busy; else the claim and the held connection, if it
    /// is of `generation` and open. `sequential`: the client connection is HTTP/1.1, so
    /// its previous response is through and the held connection is ready at once or
    /// within moments; an h2 client's other stream may still be streaming a long
    /// response on it, so then a connection not ready now counts as busy (the pool).
    #[allow(clippy::type_complexity)]
    fn claim(
        &self,
        generation: &Arc<Generation>,
        sequential: bool,
    ) -> Option<(Claim<'_>, Option<http1::SendRequest<Body>>)> {
        let mut slot = self.lock();
        if let Slot::Ready(held) = &*slot
            && Arc::ptr_eq(&held.generation, generation)
            && !held.sender.is_closed()
            && !held.sender.is_ready()
            && !sequential
        {
            return None;
        }
        let held = match std::mem::replace(&mut *slot, Slot::Busy) {
            Slot::Busy => return None,
            Slot::Empty => None,
            Slot::Ready(held) => (Arc::ptr_eq(&held.generation, generation)
                && !held.sender.is_closed())
            .then_some(held.sender),
        };
        drop(slot);
        Some((
            Claim {
                owned: self,
                put: false,
            },
            held,
        ))
    }

    /// Sends `req` (absolute-form, as [`crate::proxy::exchange`] prepares it) to
    /// `host:port` on the held connection, or on a new one. `sequential`: the client
    /// connection speaks HTTP/1.1 (one request at a time), not h2.
    pub async fn send(
        &self,
        generation: &Arc<Generation>,
        host: &Host,
        port: u16,
        req: Request<Body>,
        sequential: bool,
    ) -> Result<Response<Incoming>, OwnedError> {
        let Some((claim, held)) = self.claim(generation, sequential) else {
            return Err(OwnedError::Busy(req));
        };
        let origin = origin_form(req);
        // Ready once the upstream's previous response is read to its end (closed: a
        // new connection).
        let held = match held {
            Some(mut sender) => sender.ready().await.is_ok().then_some(sender),
            None => None,
        };
        let req = match held {
            Some(mut sender) => match sender.try_send_request(origin).await {
                Ok(response) => {
                    claim.put(generation, sender);
                    return Ok(response);
                }
                Err(mut e) => match e.take_message() {
                    // Not sent: the upstream had closed the connection. A new one.
                    Some(req) => req,
                    None => return Err(failed(generation, e.into_error())),
                },
            },
            None => origin,
        };
        let tls = generation
            .h1_connector
            .connect(host, port)
            .await
            .map_err(OwnedError::Connect)?;
        let (mut sender, connection) = http1::Builder::new()
            .handshake(tls)
            .await
            .map_err(|e| failed(generation, e))?;
        hyper::rt::Executor::execute(&TokioExecutor::new(), async move {
            if let Err(e) = connection.await {
                tracing::debug!("upstream connection ended: {e}");
            }
        });
        let response = sender
            .send_request(req)
            .await
            .map_err(|e| failed(generation, e))?;
        claim.put(generation, sender);
        Ok(response)
    }
}

fn failed(generation: &Generation, e: hyper::Error) -> OwnedError {
    generation
        .connector
        .stats()
        .upstream_failure(UpstreamFailure::Protocol);
    OwnedError::Http(e)
}

/// `https://host[:port]/path?query` as HTTP/1.1 sends it on a connection: the origin
/// form, with the authority in `Host` (what the pooling client does).
fn origin_form(req: Request<Body>) -> Request<Body> {
    let (mut parts, body) = req.into_parts();
    if let Some(authority) = parts.uri.authority()
        && let Ok(host) = HeaderValue::from_str(authority.as_str())
    {
        parts.headers.insert(HOST, host);
    }
    let path = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    if let Ok(uri) = Uri::try_from(path) {
        parts.uri = uri;
    }
    Request::from_parts(parts, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_origin_form_keeps_path_and_query_and_moves_the_authority_to_host() {
        let req = Request::builder()
            .uri("https://api.example.com:8443/v1/x?a=b")
            .body(Body::default())
            .unwrap();
        let req = origin_form(req);
        assert_eq!(req.uri(), "/v1/x?a=b");
        assert_eq!(req.headers()[HOST], "api.example.com:8443");
        let owned = Owned::default();
        assert!(!owned.usable());
        owned.learn(Version::HTTP_2);
        assert!(!owned.usable());
        owned.learn(Version::HTTP_11);
        assert!(owned.usable());
    }
}
