//! The request/response pipeline: mitmproxy's addons, typed.
//!
//! An [`Addon`] has hooks with no-op defaults; a [`Pipeline`] runs them in order. Per-flow
//! state lives in an explicit [`FlowContext`]. Built-ins, one file each, in the order
//! they run: [`host_check`] (Host = CONNECT host), [`phantom`] (a session accepts only its
//! own dummies; a session's dummy is refused anywhere else), [`tripwire`] (a dummy going
//! where it is not bound), [`privilege`] (per-secret methods/paths), [`swap`] (dummy →
//! real), and on the way back [`scrub`] (real → dummy). [`websocket`] is the same policy
//! for the frames of a WebSocket to a bound host. Addons are pure functions of their inputs:
//! no sockets, no keyring; the audit record is written by the proxy from the context.

pub mod body_swap;
pub mod body_tripwire;
pub mod host_check;
pub mod inspect;
pub mod phantom;
pub mod privilege;
pub mod scrub;
pub mod scrubber;
pub mod swap;
pub mod tripwire;
pub mod websocket;

use std::sync::Arc;

use bytes::Bytes;
use http::StatusCode;

use crate::policy::Host;
use crate::secrets::kind::Kind;
use crate::secrets::reflect::Reflections;
use crate::secrets::{Binding, SecretSet, SecretValue};

/// An early answer from an addon: the request is not forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refuse {
    /// Status for the client (403, 421, 502, ...).
    pub status: StatusCode,
    /// Machine-readable code, first word of `X-Keygate-Reason`.
    pub code: &'static str,
    /// One line: why.
    pub why: String,
    /// What a human can do about it.
    pub advice: String,
    /// True for a security alert (logged at error level).
    pub alert: bool,
}

/// Per-request state shared by the hooks.
#[derive(Debug, Clone)]
pub struct FlowContext {
    /// Who sent the request (proxy-auth user or peer address).
    pub client: String,
    /// The upstream host (the CONNECT host on an intercepted connection).
    pub host: Host,
    /// The upstream port.
    pub port: u16,
    /// True on a TLS connection keygate terminated; false for plain HTTP (which never
    /// gets a secret).
    pub intercepted: bool,
    /// Every registered secret (set once, by [`FlowContext::new`]: the bound secrets
    /// are found from it then).
    pub secrets: Arc<SecretSet>,
    /// Names of the secrets swapped into this request.
    pub swapped: Vec<String>,
    /// Name of the secret whose dummy tripped the wire, if any.
    pub tripped: Option<String>,
    /// Exact bytes keygate sent that no generic form of a value covers (a Basic blob it
    /// re-encoded), with what the client had sent instead: the scrubber maps an echo of
    /// the one back to the other.
    pub sent: Sent,
    /// Tokens keygate minted for this request's minted-kind secrets (oauth2,
    /// github-app, google), by secret name: what the swap puts in place of their
    /// phantoms. Filled by the exchange before the pipeline runs.
    pub minted: Vec<(String, SecretValue)>,
    /// The secrets bound to `host:port`, found once per request (every hook asks).
    bound: Arc<[Arc<Binding>]>,
}

/// `(sent, original)` byte strings of one request (see [`FlowContext::sent`]). What was
/// sent holds a real value: never printed, zeroized when dropped.
#[derive(Clone, Default)]
pub struct Sent(pub Vec<(zeroize::Zeroizing<Vec<u8>>, Vec<u8>)>);

impl std::fmt::Debug for Sent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sent({} forms)", self.0.len())
    }
}

impl FlowContext {
    /// A context for a request to `host:port`.
    pub fn new(
        client: String,
        host: Host,
        port: u16,
        intercepted: bool,
        secrets: Arc<SecretSet>,
    ) -> FlowContext {
        let bound = secrets.bound_to(&host, port).cloned().collect();
        FlowContext {
            client,
            host,
            port,
            intercepted,
            secrets,
            bound,
            swapped: Vec::new(),
            tripped: None,
            sent: Sent::default(),
            minted: Vec::new(),
        }
    }

    /// Every form of the bound secrets' values (and of what keygate sent) that a
    /// response could echo; `None` when no bound secret has a value. Cached per secret
    /// set for the common case of one bound secret.
    pub fn reflections(&self) -> Option<Arc<Reflections>> {
        let exact: Vec<(Vec<u8>, Vec<u8>)> = self
            .sent
            .0
            .iter()
            .map(|(sent, original)| (sent.to_vec(), original.clone()))
            .collect();
        // A minted token is scrubbed in every form, like a stored value.
        let minted: Vec<(&[u8], &[u8])> = self
            .minted
            .iter()
            .filter_map(|(name, token)| {
                let b = self.secrets.iter().find(|b| &b.name == name)?;
                Some((token.expose().as_bytes(), b.dummy.as_bytes()))
            })
            .collect();
        self.secrets
            .reflections_for(&self.host, self.port, &minted, &exact)
    }

    /// The value the swap sends for `binding`: its minted token for a minted kind, else
    /// its stored value; `None` for an AWS secret (re-signed, never swapped) and for a
    /// value that is missing.
    pub fn value_for<'a>(&'a self, binding: &'a Binding) -> Option<&'a SecretValue> {
        match &binding.kind {
            Kind::Static => binding.real.as_ref(),
            Kind::Aws(_) => None,
            _ => self
                .minted
                .iter()
                .find(|(name, _)| *name == binding.name)
                .map(|(_, token)| token),
        }
    }

    /// The secrets bound to this flow's host (shared: no copy per call).
    pub fn bound(&self) -> Arc<[Arc<Binding>]> {
        self.bound.clone()
    }
}

/// A streaming body transformation for one response (e.g. the scrubber).
pub trait ChunkFilter: Send + Sync {
    /// Transforms one data chunk; may hold bytes back for the next one.
    fn filter(&mut self, chunk: Bytes) -> Bytes;
    /// Releases whatever is held back at the end of the body.
    fn finish(&mut self) -> Bytes;
    /// Rewrites the trailers, if the body ends with some. Default: unchanged.
    fn trailers(&mut self, _trailers: &mut http::HeaderMap) {}
}

/// One step of the pipeline. Every hook has a no-op default.
pub trait Addon: Send + Sync {
    /// Short name for logs.
    fn name(&self) -> &'static str;

    /// Runs before the request goes upstream, in pipeline order. `Err` answers the
    /// client at once and skips the remaining addons and the upstream.
    fn on_request(
        &self,
        _flow: &mut FlowContext,
        _req: &mut http::request::Parts,
    ) -> Result<(), Refuse> {
        Ok(())
    }

    /// Runs on the response head before it goes to the client.
    fn on_response_head(&self, _flow: &FlowContext, _res: &mut http::response::Parts) {}

    /// A filter for this response's body chunks, if the addon needs one. Called after
    /// every `on_response_head`.
    fn response_body(
        &self,
        _flow: &FlowContext,
        _res: &http::response::Parts,
    ) -> Option<Box<dyn ChunkFilter>> {
        None
    }
}

/// Addons in the order they run.
pub struct Pipeline {
    addons: Vec<Box<dyn Addon>>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.addons.iter().map(|a| a.name()).collect();
        f.debug_struct("Pipeline").field("addons", &names).finish()
    }
}

impl Default for Pipeline {
    /// The built-in pipeline: host check, phantoms, tripwire, least privilege, swap,
    /// scrub.
    fn default() -> Pipeline {
        Pipeline::new(vec![
            Box::new(host_check::HostCheck),
            Box::new(phantom::Phantoms),
            Box::new(tripwire::Tripwire),
            Box::new(privilege::LeastPrivilege),
            Box::new(swap::Swap),
            Box::new(scrub::Scrub),
        ])
    }
}

impl Pipeline {
    /// A pipeline of `addons`, run in this order.
    pub fn new(addons: Vec<Box<dyn Addon>>) -> Pipeline {
        Pipeline { addons }
    }

    /// Runs every `on_request` hook until one refuses.
    pub fn on_request(
        &self,
        flow: &mut FlowContext,
        req: &mut http::request::Parts,
    ) -> Result<(), Refuse> {
        self.addons.iter().try_for_each(|a| a.on_request(flow, req))
    }

    /// Runs every `on_response_head` hook, then collects the body filters.
    pub fn on_response(
        &self,
        flow: &FlowContext,
        res: &mut http::response::Parts,
    ) -> Vec<Box<dyn ChunkFilter>> {
        for addon in &self.addons {
            addon.on_response_head(flow, res);
        }
        self.addons
            .iter()
            .filter_map(|a| a.response_body(flow, res))
            .collect()
    }
}

#[cfg(test)]
pub(crate) mod testing;
