//! What a sandboxed agent gets (SPEC §7): the proxy and trust variables, each secret's
//! dummy, and the variables that must not reach it. Pure: callers pass paths and values
//! in; [`render`] formats it for a shell.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

use crate::secrets::{Binding, SecretValue};

/// `NO_PROXY`: loopback only, never `*` (which would switch the proxy off entirely).
pub const NO_PROXY: &str = "localhost,127.0.0.1,::1";

/// Variables pointed at `ca/bundle.pem` (system roots + keygate CA): tools that
/// replace their trust store rather than add to it.
pub const BUNDLE_VARS: &[&str] = &[
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "GIT_SSL_CAINFO",
    "CARGO_HTTP_CAINFO",
    "PIP_CERT",
    "AWS_CA_BUNDLE",
    "HTTPLIB2_CA_CERTS",
    "NIX_SSL_CERT_FILE",
    "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH",
    "CLOUDSDK_CORE_CUSTOM_CA_CERTS_FILE",
];

/// Variables removed from the agent's environment: `SSL_CERT_DIR` would shadow
/// `SSL_CERT_FILE` for some TLS stacks.
pub const UNSET_VARS: &[&str] = &["SSL_CERT_DIR"];

/// The environment for an agent: variables to set, and variables to remove.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentEnv {
    /// Name → value, sorted by name.
    pub set: BTreeMap<String, String>,
    /// Names to remove.
    pub unset: Vec<String>,
}

/// The address clients should use for a proxy listening on `listen` (a wildcard bind
/// is reached on loopback).
pub fn client_address(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), listen.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), listen.port())
        }
        _ => listen,
    }
}

/// The proxy URL clients use: `http://ADDR`, with `user:password@` when the listener
/// requires proxy authentication.
pub fn proxy_url(proxy: SocketAddr, credentials: Option<&SecretValue>) -> String {
    let addr = client_address(proxy);
    let Some(credentials) = credentials else {
        return format!("http://{addr}");
    };
    let (user, password) = credentials
        .expose()
        .split_once(':')
        .unwrap_or((credentials.expose(), ""));
    let escape = |s: &str| percent_encoding::utf8_percent_encode(s, USERINFO).to_string();
    format!("http://{}:{}@{addr}", escape(user), escape(password))
}

/// Characters escaped in a URL's userinfo.
const USERINFO: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Builds the agent environment for a proxy at `proxy` (with its credentials, if it
/// requires them), the CA certificate `ca_cert`, the trust bundle `bundle`, the
/// directory of the phantom files as the agent sees it (`phantoms`), and the registered
/// secrets.
pub fn agent_env(
    proxy: SocketAddr,
    credentials: Option<&SecretValue>,
    ca_cert: &Path,
    bundle: &Path,
    phantoms: &Path,
    secrets: impl IntoIterator<Item = impl std::ops::Deref<Target = Binding>>,
) -> AgentEnv {
    let mut set = BTreeMap::new();
    let url = proxy_url(proxy, credentials);
    for var in ["HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"] {
        set.insert(var.to_string(), url.clone());
    }
    for var in ["NO_PROXY", "no_proxy"] {
        set.insert(var.to_string(), NO_PROXY.to_string());
    }
    let ca = ca_cert.display().to_string();
    set.insert("NODE_EXTRA_CA_CERTS".into(), ca.clone());
    set.insert("NODE_USE_ENV_PROXY".into(), "1".into());
    set.insert("DENO_CERT".into(), ca);
    for var in BUNDLE_VARS {
        set.insert(var.to_string(), bundle.display().to_string());
    }
    let mut unset: Vec<String> = UNSET_VARS.iter().map(|v| v.to_string()).collect();
    for binding in secrets {
        for var in &binding.env {
            set.insert(var.clone(), binding.dummy.clone());
        }
        kind_env(&binding, phantoms, &mut set, &mut unset);
    }
    unset.retain(|var| !set.contains_key(var));
    unset.dedup();
    AgentEnv { set, unset }
}

/// Variables removed from the agent's environment when it gets phantom AWS credentials:
/// with `AWS_PROFILE` (or `AWS_DEFAULT_PROFILE`) set, the AWS SDKs skip the credentials
/// in the environment (botocore: "an explicitly provided profile will negate an
/// EnvProvider"; the JavaScript SDK v3 likewise) and read the profile's real ones, or
/// fail in the jail, which hides `~/.aws`. A session token the phantoms do not include
/// (`AWS_SESSION_TOKEN`, or the older `AWS_SECURITY_TOKEN`) is real, from elsewhere.
pub const AWS_UNSET_VARS: &[&str] = &[
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
];

/// What a credential kind gives the agent besides its dummy: the phantom AWS secret key
/// and session token, the phantom service-account file; and what it takes away
/// ([`AWS_UNSET_VARS`] but the phantom session token).
fn kind_env(
    binding: &Binding,
    phantoms: &Path,
    set: &mut BTreeMap<String, String>,
    unset: &mut Vec<String>,
) {
    use crate::secrets::kind::Kind;
    match &binding.kind {
        Kind::Aws(aws) => {
            set.insert("AWS_ACCESS_KEY_ID".into(), binding.dummy.clone());
            set.insert(
                "AWS_SECRET_ACCESS_KEY".into(),
                aws.secret_access_key.clone(),
            );
            if let Some(token) = &aws.session_token {
                set.insert("AWS_SESSION_TOKEN".into(), token.clone());
            }
            unset.extend(AWS_UNSET_VARS.iter().map(|v| v.to_string()));
        }
        Kind::Google(_) => {
            let file = phantoms.join(format!("{}.json", binding.name));
            set.insert(
                "GOOGLE_APPLICATION_CREDENTIALS".into(),
                file.display().to_string(),
            );
        }
        _ => {}
    }
}

/// Secret values at least this long are also looked for *inside* variables (e.g.
/// `Bearer <key>`); shorter ones only by equality, so they cannot match by chance.
pub const MIN_CONTAINED_SECRET_LEN: usize = 8;

/// Names of inherited variables that must not reach the child: those whose value equals
/// a stored secret value, or contains one of at least [`MIN_CONTAINED_SECRET_LEN`] bytes.
pub fn leaking_vars<'a>(
    inherited: impl IntoIterator<Item = (&'a str, &'a str)>,
    secrets: &[&SecretValue],
) -> Vec<String> {
    let holds = |value: &str, secret: &str| {
        value == secret || (secret.len() >= MIN_CONTAINED_SECRET_LEN && value.contains(secret))
    };
    inherited
        .into_iter()
        .filter(|(_, value)| secrets.iter().any(|s| holds(value, s.expose())))
        .map(|(name, _)| name.to_string())
        .collect()
}

/// Output formats of `keygate env`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shell {
    /// POSIX sh, bash, zsh: `export NAME='value'`.
    Sh,
    /// fish: `set -gx NAME 'value'`.
    Fish,
    /// PowerShell: `$env:NAME = 'value'`.
    PowerShell,
    /// `.env` files: `NAME=value` (cannot unset; says so in a comment).
    Dotenv,
    /// One JSON object; removed variables are `null`.
    Json,
}

fn sh_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

fn fish_quote(value: &str) -> String {
    format!("'{}'", value.replace('\\', r"\\").replace('\'', r"\'"))
}

fn ps_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

fn dotenv_quote(value: &str) -> String {
    let plain = value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_./:,@+=".contains(&b));
    if plain {
        value.to_string()
    } else {
        format!(
            "\"{}\"",
            value
                .replace('\\', r"\\")
                .replace('"', "\\\"")
                .replace('$', "\\$")
        )
    }
}

/// Renders `env` for `shell`, ready for `eval "$(keygate env)"` and friends.
pub fn render(env: &AgentEnv, shell: Shell) -> String {
    let mut out = String::new();
    match shell {
        Shell::Json => {
            let mut map = serde_json::Map::new();
            for (k, v) in &env.set {
                map.insert(k.clone(), serde_json::Value::String(v.clone()));
            }
            for k in &env.unset {
                map.insert(k.clone(), serde_json::Value::Null);
            }
            out = serde_json::to_string_pretty(&map).unwrap_or_default();
            out.push('\n');
        }
        _ => {
            for (k, v) in &env.set {
                let line = match shell {
                    Shell::Sh => format!("export {k}={}", sh_quote(v)),
                    Shell::Fish => format!("set -gx {k} {}", fish_quote(v)),
                    Shell::PowerShell => format!("$env:{k} = {}", ps_quote(v)),
                    _ => format!("{k}={}", dotenv_quote(v)),
                };
                out.push_str(&line);
                out.push('\n');
            }
            for k in &env.unset {
                let line = match shell {
                    Shell::Sh => format!("unset {k}"),
                    Shell::Fish => format!("set -e {k}"),
                    Shell::PowerShell => {
                        format!("Remove-Item Env:{k} -ErrorAction SilentlyContinue")
                    }
                    _ => format!("# {k} must be unset for the agent (a .env file cannot unset it)"),
                };
                out.push_str(&line);
                out.push('\n');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
