//! [`Binding`]: a registered secret as the proxy uses it (validated entry + value), and
//! [`SecretSet`], every binding loaded at start.

use std::sync::Arc;

use aho_corasick::{AhoCorasick, MatchKind};
use http::{HeaderName, Method};

use super::phantom;
use super::reflect::Reflections;
use super::store::{SecretStore, StoreError};
use super::value::SecretValue;
use crate::policy::{Host, HostPattern};

/// Which request bodies a secret's dummy is swapped in (`body:` in secrets.yaml), and
/// how the real value is written there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BodyMode {
    /// JSON bodies (`application/json`, `*/*+json`): the value JSON-escaped.
    Json,
    /// Form bodies: `application/x-www-form-urlencoded` (the value form-encoded) and
    /// `multipart/form-data` (as is).
    Form,
    /// Any body, the value as is.
    Text,
}

impl BodyMode {
    /// The name used in secrets.yaml and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            BodyMode::Json => "json",
            BodyMode::Form => "form",
            BodyMode::Text => "text",
        }
    }
}

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
    /// Also swap in the WebSocket frames the client sends.
    pub websocket: bool,
    /// Also swap in request bodies of this kind (`body:`); `None` = never.
    pub body: Option<BodyMode>,
    /// What kind of credential; for kinds other than `static`, `real` holds the key
    /// material keygate mints or signs with, never sent as it is.
    pub kind: super::kind::Kind,
    /// The real value; `None` when the keyring has no entry for it.
    pub real: Option<SecretValue>,
}

impl Binding {
    /// Every phantom the agent holds for this secret: the dummy, then those of its kind
    /// (an AWS phantom secret key and session token). The tripwire knows them all.
    pub fn phantoms(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.dummy.as_str()).chain(self.kind.extra_phantoms())
    }

    /// What scrub replaces in responses from this secret's hosts: each real string the
    /// agent must never see, with the phantom it is turned back into. A static key and
    /// an OAuth2 client secret or refresh token: the value itself; AWS credentials: the
    /// real access key id, secret key and session token, each by its phantom. Key
    /// material that is never sent as it is (a private key, a service-account JSON)
    /// has none: the minted tokens are scrubbed per request instead.
    pub fn scrubbed(&self) -> Vec<(zeroize::Zeroizing<String>, String)> {
        use super::kind::{AwsCredentials, Kind};
        let Some(real) = self.real.as_ref() else {
            return Vec::new();
        };
        let pair = |r: &str, d: &str| (zeroize::Zeroizing::new(r.to_string()), d.to_string());
        match &self.kind {
            Kind::Static | Kind::Oauth2(_) => vec![pair(real.expose(), &self.dummy)],
            Kind::Aws(aws) => match AwsCredentials::parse(real.expose()) {
                Ok(creds) => {
                    let mut pairs = vec![
                        pair(&creds.access_key_id, &self.dummy),
                        pair(&creds.secret_access_key, &aws.secret_access_key),
                    ];
                    if let Some(token) = &creds.session_token {
                        let phantom = aws.session_token.as_deref().unwrap_or(&self.dummy);
                        pairs.push(pair(token, phantom));
                    }
                    pairs
                }
                Err(_) => Vec::new(),
            },
            Kind::GithubApp(_) | Kind::Google(_) => Vec::new(),
        }
    }

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
///
/// A *session* set ([`SecretSet::session`], a jailed `keygate run`) holds the session's
/// phantom dummies ([`super::phantom`]) in its bindings and remembers the static dummies
/// they replaced as *retired*: the session's listener refuses those.
#[derive(Debug, Clone)]
pub struct SecretSet {
    bindings: Vec<Arc<Binding>>,
    /// Every dummy in one automaton (pattern i is `bindings[i]`): finding which dummies a
    /// header value holds is one pass, however many secrets are registered.
    dummies: Option<AhoCorasick>,
    /// The binding each of `dummies`' patterns belongs to.
    owners: Vec<usize>,
    /// True for a session's set.
    session: bool,
    /// In a session, the static dummy of `bindings[i]` (refused there); else empty.
    retired: Vec<String>,
    /// What [`SecretSet::alarm_in`] searches for, in one pass.
    alarms: Alarms,
    /// Where each binding's dummy has a marker, static or phantom ([`Mark`]).
    marks: Vec<Mark>,
    /// Every form of `bindings[i]`'s real value, compiled once per set (the scrubber's
    /// searcher for a host bound to that one secret); `None` without a value.
    pub(super) reflections: Vec<Option<Arc<Reflections>>>,
    /// Every dummy, each "replaced" by its secret's name, compiled once per set: the
    /// body tripwire's searcher.
    pub(super) dummy_names: Option<Arc<Reflections>>,
    /// A prebuilt searcher for `bindings[i]`'s dummy (the swap's, per request).
    finders: Vec<memchr::memmem::Finder<'static>>,
}

/// The searcher behind [`SecretSet::alarm_in`].
#[derive(Debug, Clone)]
enum Alarms {
    /// Outside a session: the phantom marker's needle alone (a prebuilt SIMD finder).
    Needle(Box<memchr::memmem::Finder<'static>>),
    /// In a session: every retired dummy (pattern i is `bindings[i]`), then the needle.
    /// Leftmost-first, so a retired dummy is reported before a needle inside it.
    Automaton(AhoCorasick),
}

/// A marker in the dummy of `bindings[binding]`, at `at`.
#[derive(Debug, Clone)]
struct Mark {
    binding: usize,
    at: std::ops::Range<usize>,
    /// A phantom marker (this set's own phantom) rather than a static one.
    phantom: bool,
}

/// What [`SecretSet::alarm_in`] found.
#[derive(Debug, Clone, Copy)]
pub enum Alarm<'s> {
    /// The static dummy of this binding, retired in this session.
    Retired(&'s Arc<Binding>),
    /// A phantom dummy that is not one of this set's own (another session's). With the
    /// binding it is shaped like (same provider prefix and marker), if any: most likely
    /// the same provider's secret in the session that made it.
    Foreign(Option<&'s Arc<Binding>>),
}

impl Default for SecretSet {
    fn default() -> SecretSet {
        SecretSet::new(Vec::new())
    }
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
        SecretSet::build(bindings, false, Vec::new())
    }

    fn build(bindings: Vec<Binding>, session: bool, retired: Vec<String>) -> SecretSet {
        // Every phantom a binding has (its dummy, then its kind's others: an AWS phantom
        // secret key and session token) with the binding it belongs to.
        let phantoms: Vec<(usize, &str)> = bindings
            .iter()
            .enumerate()
            .flat_map(|(i, b)| b.phantoms().map(move |p| (i, p)))
            .collect();
        let dummies = AhoCorasick::builder()
            .match_kind(MatchKind::Standard)
            .build(phantoms.iter().map(|(_, p)| p.as_bytes()))
            .ok();
        let owners = phantoms.iter().map(|(i, _)| *i).collect();
        let needle = Box::new(memchr::memmem::Finder::new(phantom::NEEDLE));
        let patterns = retired.iter().map(String::as_bytes);
        let alarms = match retired.is_empty() {
            true => None,
            false => AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostFirst)
                .build(patterns.chain([phantom::NEEDLE]))
                .ok(),
        }
        .map_or(Alarms::Needle(needle), Alarms::Automaton);
        let marks = bindings
            .iter()
            .enumerate()
            .filter_map(|(i, b)| {
                let dummy = b.dummy.as_bytes();
                let (at, phantom) = match phantom::phantom_marker(dummy) {
                    Some(at) => (at, true),
                    None => (phantom::static_marker(dummy)?, false),
                };
                Some(Mark {
                    binding: i,
                    at,
                    phantom,
                })
            })
            .collect();
        let reflections = bindings
            .iter()
            .map(|b| {
                let scrubbed = b.scrubbed();
                let pairs: Vec<(&[u8], &[u8])> = scrubbed
                    .iter()
                    .map(|(r, d)| (r.as_bytes(), d.as_bytes()))
                    .collect();
                Reflections::of(&pairs, &[]).map(Arc::new)
            })
            .collect();
        let named: Vec<(&[u8], &[u8])> = phantoms
            .iter()
            .filter(|(_, p)| !p.is_empty())
            .map(|(i, p)| (p.as_bytes(), bindings[*i].name.as_bytes()))
            .collect();
        let dummy_names = Reflections::exact(&named).map(Arc::new);
        let finders = bindings
            .iter()
            .map(|b| memchr::memmem::Finder::new(b.dummy.as_bytes()).into_owned())
            .collect();
        SecretSet {
            finders,
            reflections,
            dummy_names,
            bindings: bindings.into_iter().map(Arc::new).collect(),
            dummies,
            owners,
            session,
            retired,
            alarms,
            marks,
        }
    }

    /// A session's set: the same bindings (hosts, limits, real values), each with a
    /// fresh phantom dummy ([`super::phantom::phantom`]) instead of its static dummy,
    /// which becomes retired. `Err` names the secret no phantom could be made for.
    pub fn session(&self) -> Result<SecretSet, String> {
        self.session_keeping(&SecretSet::default())
    }

    /// As [`SecretSet::session`], but a secret whose name and static dummy are the same
    /// in `previous` (the session's set before a reload) keeps its phantom there: the
    /// jailed command's environment still holds it.
    pub fn session_keeping(&self, previous: &SecretSet) -> Result<SecretSet, String> {
        let mut bindings = Vec::with_capacity(self.bindings.len());
        let mut retired = Vec::with_capacity(self.bindings.len());
        for (b, static_dummy) in self.bindings.iter().zip(self.static_dummies()) {
            let kept = previous
                .bindings
                .iter()
                .zip(&previous.retired)
                .find(|(p, old)| p.name == b.name && *old == static_dummy)
                .map(|(p, _)| p);
            let fresh = |dummy: &str| {
                phantom::phantom(dummy, &b.name).map_err(|e| format!("secret `{}`: {e}", b.name))
            };
            let dummy = match kept {
                Some(p) => p.dummy.clone(),
                None => fresh(static_dummy)?,
            };
            // An AWS secret's other phantoms (secret key, session token) are the
            // session's own too, kept across a reload like the dummy.
            let kind = match (&b.kind, kept.map(|p| &p.kind)) {
                (super::kind::Kind::Aws(_), Some(kind @ super::kind::Kind::Aws(_))) => kind.clone(),
                (super::kind::Kind::Aws(aws), _) => super::kind::Kind::Aws(super::kind::Aws {
                    secret_access_key: fresh(&aws.secret_access_key)?,
                    session_token: aws.session_token.as_deref().map(fresh).transpose()?,
                    command: aws.command.clone(),
                }),
                (kind, _) => kind.clone(),
            };
            bindings.push(Binding {
                dummy,
                kind,
                ..Binding::clone(b)
            });
            retired.push(static_dummy.to_string());
        }
        Ok(SecretSet::build(bindings, true, retired))
    }

    /// Each binding's static dummy: the retired one in a session, else its own.
    fn static_dummies(&self) -> impl Iterator<Item = &str> {
        self.bindings
            .iter()
            .enumerate()
            .map(|(i, b)| self.retired.get(i).unwrap_or(&b.dummy).as_str())
    }

    /// True for a session's set ([`SecretSet::session`]).
    pub fn is_session(&self) -> bool {
        self.session
    }

    /// In a session, every binding with the static dummy it retired; else nothing.
    pub fn retired(&self) -> impl Iterator<Item = (&Arc<Binding>, &str)> {
        self.bindings
            .iter()
            .zip(self.retired.iter().map(String::as_str))
    }

    /// The first retired static dummy or foreign phantom in `haystack`, if any. Costs one
    /// memmem pass (one automaton pass in a session) when there is none.
    pub fn alarm_in(&self, haystack: &[u8]) -> Option<Alarm<'_>> {
        match &self.alarms {
            Alarms::Needle(finder) => finder
                .find_iter(haystack)
                .find_map(|at| self.foreign_at(haystack, at)),
            Alarms::Automaton(automaton) => {
                let mut from = 0;
                while let Some(m) = automaton.find(aho_corasick::Input::new(haystack).range(from..))
                {
                    if let Some(b) = self.bindings.get(m.pattern().as_usize()) {
                        return Some(Alarm::Retired(b));
                    }
                    if let Some(alarm) = self.foreign_at(haystack, m.start()) {
                        return Some(alarm);
                    }
                    // A retired dummy may begin inside this needle.
                    from = m.start() + 1;
                }
                None
            }
        }
    }

    /// The alarm for the phantom needle at `needle_at`: none when it is not in a phantom
    /// marker or the phantom is one of this set's own.
    fn foreign_at(&self, haystack: &[u8], needle_at: usize) -> Option<Alarm<'_>> {
        let marker = phantom::phantom_marker_around(haystack, needle_at)?;
        let own = self.marks.iter().filter(|m| m.phantom).any(|m| {
            let dummy = self.bindings[m.binding].dummy.as_bytes();
            marker.start.checked_sub(m.at.start).is_some_and(|start| {
                haystack
                    .get(start..start + dummy.len())
                    .is_some_and(|h| h == dummy)
            })
        });
        if own {
            return None;
        }
        let shaped_like = self.marks.iter().find(|m| {
            let b = &self.bindings[m.binding];
            let prefix = &b.dummy.as_bytes()[..m.at.start];
            let named = [b.name.as_bytes(), b"-"].concat();
            m.at.len() == marker.len()
                && marker
                    .start
                    .checked_sub(prefix.len())
                    .is_some_and(|start| &haystack[start..marker.start] == prefix)
                && (!prefix.is_empty() || haystack[marker.end..].starts_with(&named))
        });
        Some(Alarm::Foreign(
            shaped_like.map(|m| &self.bindings[m.binding]),
        ))
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
                .filter_map(|m| self.owners.get(m.pattern().as_usize()))
                .map(|&i| &self.bindings[i])
                .find(|b| pick(b)),
            // Only when the automaton could not be built (never seen): one search each.
            None => self.bindings.iter().find(|b| {
                pick(b)
                    && b.phantoms()
                        .any(|p| memchr::memmem::find(haystack, p.as_bytes()).is_some())
            }),
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
            // An `aws` secret with a credential command needs no stored value.
            let from_command =
                matches!(&b.kind, super::kind::Kind::Aws(aws) if aws.command.is_some());
            if b.real.is_none() && !from_command {
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

    /// A prebuilt searcher for `binding`'s dummy, when `binding` is one of this set's.
    pub fn dummy_finder(&self, binding: &Binding) -> Option<&memchr::memmem::Finder<'static>> {
        let i = self
            .bindings
            .iter()
            .position(|b| std::ptr::eq(b.as_ref(), binding))?;
        self.finders.get(i)
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
