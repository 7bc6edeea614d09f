//! keygate.yaml (SPEC §4) + command-line flags → a validated, immutable [`Config`].
//!
//! Two stages: [`RawConfig`] mirrors the file (serde, `deny_unknown_fields`, every value
//! parsed where it is read so errors carry file:line:column), then [`Config::build`]
//! merges the flags in one place. No I/O here: callers read the file and pass its text.
//! Config text never appears in an error beyond the offending value.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, de};

pub mod audit;
pub mod limits;

use crate::policy::{Host, HostPattern, Mode, Policy, PrivateAddresses, parse_authority};
pub use limits::Limits;

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8877";
/// The port of [`DEFAULT_LISTEN`]; also the relay's port inside a jail when `listen`
/// asks for an ephemeral one.
pub const DEFAULT_LISTEN_PORT: u16 = 8877;

/// How long a held request waits for a human's answer by default (`network.ask_timeout`).
pub const DEFAULT_ASK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Which allowed TLS connections keygate terminates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Intercept {
    /// Only hosts that have a registered secret; the rest are tunnelled. The default.
    #[default]
    Secrets,
    /// Every allowed TLS connection (full L7 visibility and Host policy).
    All,
}

impl fmt::Display for Intercept {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Intercept::Secrets => "secrets",
            Intercept::All => "all",
        })
    }
}

/// How keygate answers a CONNECT that policy refuses (`refusals:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Refusals {
    /// Accept the CONNECT, terminate the client's TLS with a leaf that only ever serves
    /// the refusal, and answer its first request with the refusal's status,
    /// `X-Keygate-Reason` and body: what HTTPS clients can show. Nothing is forwarded.
    /// The default.
    #[default]
    Tls,
    /// Answer the CONNECT itself with the refusal (most clients show only the status).
    Connect,
}

impl fmt::Display for Refusals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusals::Tls => "tls",
            Refusals::Connect => "connect",
        })
    }
}

/// `--resolve HOST:PORT=IP:PORT`: connect to `target` when the upstream is `host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolveRule {
    /// Upstream host as the client names it.
    pub host: Host,
    /// Upstream port as the client names it.
    pub port: u16,
    /// Where keygate really connects (SNI and verification still use `host`).
    pub target: SocketAddr,
}

impl FromStr for ResolveRule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (from, to) = s.split_once('=').ok_or_else(|| {
            format!("`{s}` is not HOST:PORT=IP:PORT (e.g. api.example.com:443=127.0.0.1:9443)")
        })?;
        resolve_rule(from, to)
    }
}

fn resolve_rule(from: &str, to: &str) -> Result<ResolveRule, String> {
    let (host, port) = parse_authority(from, None)
        .map_err(|e| format!("resolve `{from}`: {e} (expected HOST:PORT)"))?;
    let target = SocketAddr::from_str(to.trim()).map_err(|_| {
        format!("resolve target `{to}` is not IP:PORT (e.g. 127.0.0.1:9443 or [::1]:9443)")
    })?;
    Ok(ResolveRule { host, port, target })
}

/// `upstream.proxy`: a corporate HTTP proxy reached with CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamProxy {
    /// Proxy host.
    pub host: Host,
    /// Proxy port (default 8080 when the URL has none).
    pub port: u16,
}

impl FromStr for UpstreamProxy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let rest = s.strip_prefix("http://").ok_or_else(|| {
            format!(
                "upstream.proxy `{s}` must be an http:// URL, e.g. http://proxy.company.com:8080"
            )
        })?;
        let authority = rest.trim_end_matches('/');
        if authority.contains('@') {
            return Err("upstream.proxy must not contain credentials: keygate never keeps a secret in a file".into());
        }
        if authority.contains('/') {
            return Err(format!("upstream.proxy `{s}` must not have a path"));
        }
        let (host, port) = parse_authority(authority, Some(8080))
            .map_err(|e| format!("upstream.proxy `{s}`: {e}"))?;
        Ok(UpstreamProxy { host, port })
    }
}

/// Deserialises any `FromStr` value from a YAML string, so a bad value is reported at
/// its own line and column.
struct Parsed<T>(T);

impl<'de, T> Deserialize<'de> for Parsed<T>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Parsing inside the visitor, while the deserializer is still on the scalar,
        // makes the error carry the scalar's own line and column.
        d.deserialize_str(ParsedVisitor(std::marker::PhantomData))
    }
}

struct ParsedVisitor<T>(std::marker::PhantomData<T>);

impl<T> de::Visitor<'_> for ParsedVisitor<T>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    type Value = Parsed<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Parsed<T>, E> {
        text.parse().map(Parsed).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Parsed<T>, E> {
        self.visit_str(&n.to_string())
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Parsed<T>, E> {
        self.visit_str(&n.to_string())
    }
}

/// `listen`: an IP:PORT socket address.
struct ListenAddr(SocketAddr);

impl FromStr for ListenAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        SocketAddr::from_str(s.trim())
            .map(ListenAddr)
            .map_err(|_| format!("listen `{s}` is not IP:PORT (e.g. 127.0.0.1:8877 or [::1]:8877)"))
    }
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum RawMode {
    Trusted,
    None,
    Custom,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum RawPrivate {
    Deny,
    Allow,
}

/// keygate.yaml as written. Every field is optional; a missing file is all defaults.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    listen: Option<Parsed<ListenAddr>>,
    network: RawNetwork,
    upstream: RawUpstream,
    limits: limits::RawLimits,
    jail: RawJail,
    refusals: Option<Refusals>,
    audit: audit::RawAudit,
    admin: RawAdmin,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawAdmin {
    listen: Option<Parsed<ListenAddr>>,
    metrics: Option<bool>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawJail {
    enabled: Option<bool>,
    writable: Vec<PathBuf>,
    hide: Vec<PathBuf>,
}

/// `jail:`: how `keygate run` jails its command (SPEC §10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JailConfig {
    /// Jail by default (`--no-jail` turns it off for one run); default true.
    pub enabled: bool,
    /// Also writable inside (besides the current directory and the agent's state); `~/`
    /// is the home directory.
    pub writable: Vec<PathBuf>,
    /// Also hidden inside (besides keygate's home and the credential list).
    pub hide: Vec<PathBuf>,
}

impl Default for JailConfig {
    fn default() -> Self {
        JailConfig {
            enabled: true,
            writable: Vec::new(),
            hide: Vec::new(),
        }
    }
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawNetwork {
    ask: Option<bool>,
    ask_timeout: Option<Parsed<limits::Span>>,
    mode: Option<RawMode>,
    allow: Vec<Parsed<HostPattern>>,
    deny: Vec<Parsed<HostPattern>>,
    intercept: Option<Intercept>,
    private_addresses: Option<RawPrivate>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawUpstream {
    ca: Vec<PathBuf>,
    resolve: BTreeMap<String, String>,
    proxy: Option<Parsed<UpstreamProxy>>,
    no_proxy: Vec<Parsed<HostPattern>>,
}

/// A configuration error; `Display` is `file:line:column: message` for YAML errors.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Malformed YAML, an unknown key or a bad value at a known place.
    #[error("{}:{line}:{column}: {message}", path.display())]
    At {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong there.
        message: String,
    },
    /// A problem without a position.
    #[error("{}: {message}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

impl RawConfig {
    /// Parses keygate.yaml text; `path` is only used in error messages. An empty file
    /// is the same as a missing one.
    pub fn parse(text: &str, path: &Path) -> Result<RawConfig, ConfigError> {
        if text.trim().is_empty() {
            return Ok(RawConfig::default());
        }
        let mut raw: RawConfig = serde_yaml::from_str(text).map_err(|e| yaml_error(&e, path))?;
        let base = path.parent().unwrap_or(Path::new("."));
        raw.upstream.ca = raw.upstream.ca.iter().map(|p| base.join(p)).collect();
        Ok(raw)
    }

    /// `network.allow` as written (no flags merged).
    pub fn allow_patterns(&self) -> Vec<HostPattern> {
        self.network.allow.iter().map(|p| p.0.clone()).collect()
    }

    /// `network.deny` as written (no flags merged).
    pub fn deny_patterns(&self) -> Vec<HostPattern> {
        self.network.deny.iter().map(|p| p.0.clone()).collect()
    }
}

/// Turns a YAML error into `file:line:column: message`, without the library's own
/// " at line X column Y" suffix.
pub fn yaml_error(e: &serde_yaml::Error, path: &Path) -> ConfigError {
    let text = e.to_string();
    let message = match text.rfind(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    };
    match e.location() {
        Some(loc) => ConfigError::At {
            path: path.to_path_buf(),
            line: loc.line(),
            column: loc.column(),
            message,
        },
        None => ConfigError::File {
            path: path.to_path_buf(),
            message,
        },
    }
}

/// Command-line flags of `keygate start` that add to or override keygate.yaml.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--listen`: replaces `listen`.
    pub listen: Option<SocketAddr>,
    /// `--allow`: added to `network.allow`.
    pub allow: Vec<HostPattern>,
    /// `--deny`: added to `network.deny`.
    pub deny: Vec<HostPattern>,
    /// `--mode`: replaces `network.mode`.
    pub mode: Option<Mode>,
    /// `--intercept`: replaces `network.intercept`.
    pub intercept: Option<Intercept>,
    /// `--resolve`: added to `upstream.resolve`, replacing a rule for the same HOST:PORT.
    pub resolve: Vec<ResolveRule>,
    /// `--upstream-ca`: added to `upstream.ca`.
    pub upstream_ca: Vec<PathBuf>,
}

/// The validated, effective configuration. Immutable once built.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where keygate.yaml was read from, if it existed.
    pub source: Option<PathBuf>,
    /// Proxy listen address; default 127.0.0.1:8877.
    pub listen: SocketAddr,
    /// Network mode; default trusted.
    pub mode: Mode,
    /// Allow patterns (file, then flags).
    pub allow: Vec<HostPattern>,
    /// Deny patterns (file, then flags).
    pub deny: Vec<HostPattern>,
    /// Interception scope; default secrets.
    pub intercept: Intercept,
    /// Private-address defence; default deny.
    pub private_addresses: PrivateAddresses,
    /// Extra trusted roots for upstream verification (the system roots stay trusted).
    pub upstream_ca: Vec<PathBuf>,
    /// Connect overrides, one per HOST:PORT.
    pub resolve: Vec<ResolveRule>,
    /// Corporate proxy for upstream connections, if any.
    pub upstream_proxy: Option<UpstreamProxy>,
    /// Hosts reached directly even when `upstream_proxy` is set.
    pub no_proxy: Vec<HostPattern>,
    /// Sizes, counts and timeouts (`limits:`).
    pub limits: Limits,
    /// The jail of `keygate run` (`jail:`).
    pub jail: JailConfig,
    /// How refused CONNECTs are answered (`refusals:`); default tls.
    pub refusals: Refusals,
    /// When the audit log is rotated (`audit:`); default 64 MiB, 5 files.
    pub audit: crate::audit::Rotation,
    /// `network.ask`: a request to a host that is not allowed is held while a human is
    /// asked (the admin API, the dashboard) instead of refused at once.
    pub ask: bool,
    /// `network.ask_timeout`: how long a held request waits for an answer (default 30 s);
    /// then it is refused as without `ask`.
    pub ask_timeout: std::time::Duration,
    /// `admin.listen`: a TCP address for the admin API besides its Unix socket (a bearer
    /// token is then required); `None` = the socket only.
    pub admin_listen: Option<SocketAddr>,
    /// `admin.metrics`: whether keygate counts for `/metrics` (default true). Off, the
    /// per-request counters and histograms are not kept and `/metrics` answers 404.
    pub admin_metrics: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config::build(RawConfig::default(), None, Overrides::default())
            .unwrap_or_else(|_| unreachable!("the defaults are valid"))
    }
}

impl Config {
    /// Merges the file's settings with the flags: the one place where precedence lives.
    pub fn build(
        raw: RawConfig,
        source: Option<PathBuf>,
        flags: Overrides,
    ) -> Result<Config, ConfigError> {
        let file = source
            .clone()
            .unwrap_or_else(|| PathBuf::from("keygate.yaml"));
        let mut resolve = Vec::new();
        for (from, to) in &raw.upstream.resolve {
            let rule = resolve_rule(from, to).map_err(|message| ConfigError::File {
                path: file.clone(),
                message: format!("upstream.resolve: {message}"),
            })?;
            resolve.push(rule);
        }
        for rule in flags.resolve {
            resolve.retain(|r: &ResolveRule| (&r.host, r.port) != (&rule.host, rule.port));
            resolve.push(rule);
        }
        let admin_listen = raw.admin.listen.map(|p| p.0.0);
        let net = raw.network;
        let ask = net.ask.unwrap_or(false);
        let ask_timeout = net
            .ask_timeout
            .as_ref()
            .map_or(DEFAULT_ASK_TIMEOUT, |p| p.0.0);
        let default_listen =
            SocketAddr::from_str(DEFAULT_LISTEN).map_err(|e| ConfigError::File {
                path: file.clone(),
                message: e.to_string(),
            })?;
        Ok(Config {
            source,
            listen: flags
                .listen
                .or(raw.listen.map(|p| p.0.0))
                .unwrap_or(default_listen),
            mode: flags.mode.or(net.mode.map(mode_of)).unwrap_or_default(),
            allow: net
                .allow
                .into_iter()
                .map(|p| p.0)
                .chain(flags.allow)
                .collect(),
            deny: net
                .deny
                .into_iter()
                .map(|p| p.0)
                .chain(flags.deny)
                .collect(),
            intercept: flags.intercept.or(net.intercept).unwrap_or_default(),
            private_addresses: match net.private_addresses {
                Some(RawPrivate::Allow) => PrivateAddresses::Allow,
                Some(RawPrivate::Deny) | None => PrivateAddresses::Deny,
            },
            upstream_ca: raw
                .upstream
                .ca
                .into_iter()
                .chain(flags.upstream_ca)
                .collect(),
            resolve,
            upstream_proxy: raw.upstream.proxy.map(|p| p.0),
            no_proxy: raw.upstream.no_proxy.into_iter().map(|p| p.0).collect(),
            limits: raw.limits.resolve(),
            jail: JailConfig {
                enabled: raw.jail.enabled.unwrap_or(true),
                writable: raw.jail.writable,
                hide: raw.jail.hide,
            },
            refusals: raw.refusals.unwrap_or_default(),
            audit: raw.audit.resolve(),
            ask,
            ask_timeout,
            admin_listen,
            admin_metrics: raw.admin.metrics.unwrap_or(true),
        })
        .and_then(|config| {
            match config.admin_listen {
                Some(admin) if admin.port() != 0 && admin == config.listen => {
                    Err(ConfigError::File {
                        path: file.clone(),
                        message: format!(
                            "admin.listen ({admin}) is the proxy's own address; the admin API is never on the proxy port: pick another port, e.g. 127.0.0.1:8878"
                        ),
                    })
                }
                _ => Ok(config),
            }
        })
    }

    /// The host policy of this configuration, with the hosts of registered secrets.
    pub fn policy(&self, secret_hosts: Vec<HostPattern>) -> Policy {
        Policy::new(
            self.mode,
            self.allow.clone(),
            self.deny.clone(),
            secret_hosts,
            self.private_addresses,
        )
    }

    /// The `--resolve` target for `host:port`, if any.
    pub fn resolve_override(&self, host: &Host, port: u16) -> Option<SocketAddr> {
        self.resolve
            .iter()
            .find(|r| &r.host == host && r.port == port)
            .map(|r| r.target)
    }
}

fn mode_of(raw: RawMode) -> Mode {
    match raw {
        RawMode::Trusted => Mode::Trusted,
        RawMode::None => Mode::None,
        RawMode::Custom => Mode::Custom,
    }
}

#[cfg(test)]
mod tests;
