//! [`Binding`]: a registered secret as the proxy uses it (validated entry + value), and
//! [`SecretSet`], every binding loaded at start.

use std::sync::Arc;

use aho_corasick::{AhoCorasick, MatchKind};
use http::{HeaderName, Method};

use super::store::{SecretStore, StoreError};
use super::value::SecretValue;
use crate::policy::{Host, HostPattern};

/// A validated registry entry and, once loaded, its real value.
#[derive(Debug, Clone)]
pub struct Binding {
    /// Secret name.
    pub name: String,
    /// Hosts the secret is bound to.
    pub hosts: Vec<HostPattern>,
    /// The provider's header (informative).
    pub header: HeaderName,
    /// How the value appears, e.g. `Bearer {secret}`.
    pub format: String,
    /// Environment variables set to the dummy.
    pub env: Vec<String>,
    /// The dummy the sandbox holds.
    pub dummy: String,
    /// Allowed methods; `None` = any.
    pub methods: Option<Vec<Method>>,
    /// Allowed path globs; `None` = any.
    pub paths: Option<Vec<glob::Pattern>>,
    /// Also swap in the URL query.
    pub query: bool,
    /// The real value; `None` when the keyring has no entry for it.
    pub real: Option<SecretValue>,
}

impl Binding {
    /// True when this secret may be sent to `host:port`.
    pub fn is_bound_to(&self, host: &Host, port: u16) -> bool {
        self.hosts.iter().any(|p| p.matches(host, port))
    }

    /// True when `method` and `path` are inside this secret's least-privilege limits.
    /// With `paths`, a path that has dot segments ([`has_dot_segments`]) is never
    /// inside them.
    pub fn permits(&self, method: &Method, path: &str) -> bool {
        let method_ok = self.methods.as_ref().is_none_or(|m| m.contains(method));
        let options = glob::MatchOptions {
            case_sensitive: true,
            require_literal_separator: false,
            require_literal_leading_dot: false,
        };
        let path_ok = self.paths.as_ref().is_none_or(|p| {
            // SECURITY: the globs see the path as sent, the upstream resolves `..` before
            // routing: `/v1/messages/../../admin` matches `/v1/messages*` and reaches
            // `/admin`. Such a path is outside every glob.
            !has_dot_segments(path) && p.iter().any(|g| g.matches_with(path, options))
        });
        method_ok && path_ok
    }
}

/// How many rounds of percent-decoding [`has_dot_segments`] looks through
/// (`%252e` is `%2e` after one round, `.` after two).
const DECODE_ROUNDS: usize = 3;

/// True when `path` has a `.` or `..` segment (RFC 3986 §5.2.4) that a server could
/// resolve: written plainly or percent-encoded (`%2e`, also double-encoded), between
/// `/`, `\` or their encodings (`%2f`, `%5c`), or with a `;` parameter after it (`..;`,
/// which Java servers treat as `..`). Dots inside a segment (`v1..2`, `.well-known`)
/// are not segments.
pub fn has_dot_segments(path: &str) -> bool {
    let mut bytes = path.as_bytes().to_vec();
    for round in 0..=DECODE_ROUNDS {
        let dotted = bytes
            .split(|b| *b == b'/' || *b == b'\\')
            .map(|segment| segment.split(|b| *b == b';').next().unwrap_or_default())
            .any(|segment| segment == b"." || segment == b"..");
        if dotted {
            return true;
        }
        if round == DECODE_ROUNDS || !bytes.contains(&b'%') {
            return false;
        }
        let decoded: Vec<u8> = percent_encoding::percent_decode(&bytes).collect();
        if decoded == bytes {
            return false;
        }
        bytes = decoded;
    }
    false
}

/// Every registered secret, with values read once at start (never per request).
#[derive(Debug, Clone, Default)]
pub struct SecretSet {
    bindings: Vec<Arc<Binding>>,
    /// Every dummy in one automaton (pattern i is `bindings[i]`): finding which dummies a
    /// header value holds is one pass, however many secrets are registered.
    dummies: Option<AhoCorasick>,
}

/// What loading found missing: a registered secret with no value in the keyring.
#[derive(Debug, Clone)]
pub struct Missing {
    /// The secret name.
    pub name: String,
}

impl SecretSet {
    /// A set from bindings whose values are already filled in (tests, reloads).
    pub fn new(bindings: Vec<Binding>) -> SecretSet {
        let dummies = AhoCorasick::builder()
            .match_kind(MatchKind::Standard)
            .build(bindings.iter().map(|b| b.dummy.as_bytes()))
            .ok();
        SecretSet {
            bindings: bindings.into_iter().map(Arc::new).collect(),
            dummies,
        }
    }

    /// The first binding accepted by `pick` whose dummy occurs in `haystack`.
    pub fn dummy_in(
        &self,
        haystack: &[u8],
        pick: impl Fn(&Binding) -> bool,
    ) -> Option<&Arc<Binding>> {
        match &self.dummies {
            Some(automaton) => automaton
                .find_overlapping_iter(haystack)
                .map(|m| &self.bindings[m.pattern().as_usize()])
                .find(|b| pick(b)),
            // Only when the automaton could not be built (never seen): one search each.
            None => self
                .bindings
                .iter()
                .find(|b| pick(b) && memchr::memmem::find(haystack, b.dummy.as_bytes()).is_some()),
        }
    }

    /// Reads each binding's value from `store`. A missing value is reported, not fatal:
    /// requests that need it get a 502, everything else is served. A store that cannot
    /// be reached at all is an error.
    pub fn load(
        mut bindings: Vec<Binding>,
        store: &dyn SecretStore,
    ) -> Result<(SecretSet, Vec<Missing>), StoreError> {
        let mut missing = Vec::new();
        for b in &mut bindings {
            b.real = store.get(&b.name)?;
            if b.real.is_none() {
                missing.push(Missing {
                    name: b.name.clone(),
                });
            }
        }
        Ok((SecretSet::new(bindings), missing))
    }

    /// Every binding.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Binding>> {
        self.bindings.iter()
    }

    /// True when there is no secret.
    pub fn is_empty(&self) -> bool {
        self.bindings.is_empty()
    }

    /// The bindings that may be sent to `host:port`.
    pub fn bound_to<'a>(
        &'a self,
        host: &'a Host,
        port: u16,
    ) -> impl Iterator<Item = &'a Arc<Binding>> + 'a {
        self.bindings
            .iter()
            .filter(move |b| b.is_bound_to(host, port))
    }

    /// True when some secret is bound to `host:port` (such hosts are intercepted).
    pub fn has_secret_for(&self, host: &Host, port: u16) -> bool {
        self.bound_to(host, port).next().is_some()
    }

    /// The host patterns of every secret (always allowed by the policy).
    pub fn host_patterns(&self) -> Vec<crate::policy::HostPattern> {
        self.bindings
            .iter()
            .flat_map(|b| b.hosts.iter().cloned())
            .collect()
    }
}
