//! The secret registry, `secrets.yaml` (SPEC §6): metadata only, never a value.
//!
//! A YAML list of entries; `keygate secret add/rm` rewrite it (comments are not kept),
//! and it stays hand-editable. [`SecretEntry::validate`] turns an entry into a
//! [`Binding`], checking every field with an error that says how to fix it.

use std::collections::HashSet;
use std::path::Path;

use http::{HeaderName, Method};
use serde::{Deserialize, Serialize};

use super::binding::{Binding, BodyMode};
use super::dummy::MIN_DUMMY_LEN;
use super::kind::{AwsBlock, Blocks, GithubAppBlock, GoogleBlock, KindName, Oauth2Block};
use crate::config::{ConfigError, yaml_error};
use crate::policy::HostPattern;

/// Environment variables a secret may not claim: `keygate env/run` sets them itself.
pub const RESERVED_ENV: &[&str] = &[
    "HTTPS_PROXY",
    "HTTP_PROXY",
    "https_proxy",
    "http_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NODE_EXTRA_CA_CERTS",
    "NODE_USE_ENV_PROXY",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
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
    "DENO_CERT",
    "KEYGATE_HOME",
    "KEYGATE_KEYRING",
    "PATH",
    "HOME",
];

/// Headers a secret may not be bound to: they never reach the upstream as sent.
const FORBIDDEN_HEADERS: &[&str] = &[
    "host",
    "connection",
    "keep-alive",
    "proxy-authorization",
    "proxy-connection",
    "proxy-authenticate",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
];

/// One or several environment variables (`env: X` or `env: [X, Y]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(untagged)]
pub enum EnvVars {
    /// No variable.
    #[default]
    None,
    /// One variable.
    One(String),
    /// Several variables, all set to the dummy.
    Many(Vec<String>),
}

impl EnvVars {
    /// The variable names.
    pub fn names(&self) -> Vec<String> {
        match self {
            EnvVars::None => Vec::new(),
            EnvVars::One(name) => vec![name.clone()],
            EnvVars::Many(names) => names.clone(),
        }
    }

    /// True when there is no variable.
    pub fn is_none(&self) -> bool {
        self.names().is_empty()
    }
}

fn default_header() -> String {
    "authorization".into()
}
fn default_format() -> String {
    "{secret}".into()
}
fn is_false(b: &bool) -> bool {
    !*b
}

/// One entry of secrets.yaml.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretEntry {
    /// Secret name: keyring account and `secret` command argument.
    pub name: String,
    /// Hosts (patterns) the secret is bound to.
    pub hosts: Vec<String>,
    /// The header the provider expects; informative (the swap looks in all headers).
    #[serde(default = "default_header")]
    pub header: String,
    /// How the value appears, e.g. `Bearer {secret}`.
    #[serde(default = "default_format")]
    pub format: String,
    /// Environment variable(s) `keygate env/run` set to the dummy.
    #[serde(default, skip_serializing_if = "EnvVars::is_none")]
    pub env: EnvVars,
    /// The dummy the sandbox holds.
    pub dummy: String,
    /// Allowed methods (least privilege); absent = any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub methods: Option<Vec<String>>,
    /// Allowed path globs (least privilege); absent = any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paths: Option<Vec<String>>,
    /// Also swap the dummy in the URL query.
    #[serde(default, skip_serializing_if = "is_false")]
    pub query: bool,
    /// Also swap the dummy in WebSocket frames the client sends (default false).
    #[serde(default, skip_serializing_if = "is_false")]
    pub websocket: bool,
    /// Also swap the dummy in request bodies of this kind: `json`, `form` or `text`
    /// (default: never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<BodyMode>,
    /// What kind of credential (default `static`; see [`super::kind`]).
    #[serde(default, skip_serializing_if = "KindName::is_static")]
    pub kind: KindName,
    /// `kind: oauth2` settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth2: Option<Oauth2Block>,
    /// `kind: github-app` settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub github_app: Option<GithubAppBlock>,
    /// `kind: google` settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub google: Option<GoogleBlock>,
    /// `kind: aws` settings (the phantom secret access key and session token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws: Option<AwsBlock>,
}

/// Checks a secret name: it becomes a keyring account and a file name.
pub fn validate_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_' || b == b'.'
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "secret name `{name}` must be 1-64 characters of a-z, 0-9, '-', '_' or '.', starting with a letter or digit"
        ))
    }
}

fn validate_env(name: &str) -> Result<(), String> {
    let valid = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !valid {
        return Err(format!(
            "env `{name}` is not a valid environment variable name"
        ));
    }
    if RESERVED_ENV.contains(&name) {
        return Err(format!(
            "env `{name}` is set by keygate itself; choose the variable your tool reads the key from"
        ));
    }
    Ok(())
}

fn validate_dummy(dummy: &str) -> Result<(), String> {
    if dummy.len() < MIN_DUMMY_LEN {
        return Err(format!(
            "dummy must be at least {MIN_DUMMY_LEN} characters, so it cannot occur by chance"
        ));
    }
    if !dummy.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("dummy must be printable ASCII without spaces".into());
    }
    Ok(())
}

fn validate_header(header: &str) -> Result<HeaderName, String> {
    let name = HeaderName::from_bytes(header.trim().as_bytes())
        .map_err(|_| format!("header `{header}` is not a valid HTTP header name"))?;
    if FORBIDDEN_HEADERS.contains(&name.as_str()) {
        return Err(format!(
            "header `{header}` is hop-by-hop or managed by keygate; a credential cannot travel in it"
        ));
    }
    Ok(name)
}

fn validate_format(format: &str) -> Result<(), String> {
    if format.matches("{secret}").count() != 1 {
        return Err(format!(
            "format `{format}` must contain {{secret}} exactly once, e.g. \"Bearer {{secret}}\""
        ));
    }
    if !format.bytes().all(|b| (b' '..=b'~').contains(&b)) {
        return Err(format!("format `{format}` must be printable ASCII"));
    }
    Ok(())
}

impl SecretEntry {
    /// Validates every field and builds the runtime binding (without its value).
    pub fn validate(&self) -> Result<Binding, String> {
        validate_name(&self.name)?;
        let at = |e: String| format!("secret `{}`: {e}", self.name);
        if self.hosts.is_empty() {
            return Err(at(
                "hosts must list at least one host, e.g. [api.example.com]".into(),
            ));
        }
        let hosts = self
            .hosts
            .iter()
            .map(|h| HostPattern::parse(h).map_err(|e| at(e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        let header = validate_header(&self.header).map_err(at)?;
        validate_format(&self.format).map_err(at)?;
        for env in self.env.names() {
            validate_env(&env).map_err(at)?;
        }
        validate_dummy(&self.dummy).map_err(at)?;
        let methods = match &self.methods {
            None => None,
            Some(list) => Some(
                list.iter()
                    .map(|m| {
                        Method::from_bytes(m.trim().to_ascii_uppercase().as_bytes())
                            .map_err(|_| at(format!("method `{m}` is not an HTTP method")))
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        let paths = match &self.paths {
            None => None,
            Some(list) => Some(
                list.iter()
                    .map(|p| {
                        if !p.starts_with('/') {
                            return Err(at(format!("path `{p}` must start with '/'")));
                        }
                        glob::Pattern::new(p).map_err(|e| at(format!("path `{p}`: {e}")))
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        let kind = super::kind::validate(
            self.kind,
            Blocks {
                oauth2: self.oauth2.as_ref(),
                github_app: self.github_app.as_ref(),
                google: self.google.as_ref(),
                aws: self.aws.as_ref(),
            },
        )
        .map_err(at)?;
        Ok(Binding {
            kind,
            name: self.name.clone(),
            hosts,
            header,
            format: self.format.clone(),
            env: self.env.names(),
            dummy: self.dummy.clone(),
            methods,
            paths,
            query: self.query,
            websocket: self.websocket,
            body: self.body,
            real: None,
        })
    }
}

/// Where entry `index` of a secrets.yaml written as a block list (each entry starting
/// with `-` in the first column, as keygate writes it) mentions a value quoted in
/// `message`, else where the entry starts: 1-based line and column. `None` for another
/// layout (a flow list), where the message alone has to do.
fn locate(text: &str, index: usize, message: &str) -> Option<(usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let starts: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].starts_with('-'))
        .collect();
    let first = *starts.get(index)?;
    let end = starts.get(index + 1).copied().unwrap_or(lines.len());
    let quoted: Vec<&str> = message
        .split('"')
        .skip(1)
        .step_by(2)
        .filter(|q| !q.is_empty())
        .collect();
    // The first quoted value is the offending one; later ones are advice.
    for q in quoted {
        for (no, line) in lines.iter().enumerate().take(end).skip(first) {
            if let Some(column) = line.find(q) {
                return Some((no + 1, column + 1));
            }
        }
    }
    Some((first + 1, 1))
}

/// The parsed registry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Registry {
    /// Entries in file order.
    pub entries: Vec<SecretEntry>,
}

impl Registry {
    /// Parses secrets.yaml text (an empty file is an empty registry). Errors name the
    /// file, line and column, or the entry.
    pub fn parse(text: &str, path: &Path) -> Result<Registry, ConfigError> {
        if text.trim().is_empty() {
            return Ok(Registry::default());
        }
        let entries: Vec<SecretEntry> =
            serde_yaml::from_str(text).map_err(|e| yaml_error(&e, path))?;
        let registry = Registry { entries };
        registry.validated().map_err(|(entry, message)| {
            // An error of one entry points at its line; one of the whole registry cannot.
            match entry.and_then(|index| locate(text, index, &message)) {
                Some((line, column)) => ConfigError::At {
                    path: path.to_path_buf(),
                    line,
                    column,
                    message,
                },
                None => ConfigError::File {
                    path: path.to_path_buf(),
                    message,
                },
            }
        })?;
        Ok(registry)
    }

    /// The YAML text to write back.
    pub fn to_yaml(&self) -> String {
        let body = serde_yaml::to_string(&self.entries).unwrap_or_default();
        format!(
            "# keygate secret registry: metadata only, never a secret value.\n# Values live in the OS keyring (service \"keygate\", account = name).\n{body}"
        )
    }

    /// Validates every entry and the registry as a whole: unique names, env vars and
    /// dummies, and no dummy inside another (the swap would be ambiguous).
    pub fn bindings(&self) -> Result<Vec<Binding>, String> {
        self.validated().map_err(|(_, message)| message)
    }

    /// [`Registry::bindings`], with the index of the entry an error is about (`None` for
    /// an error between entries).
    fn validated(&self) -> Result<Vec<Binding>, (Option<usize>, String)> {
        let bindings = self
            .entries
            .iter()
            .enumerate()
            .map(|(index, entry)| entry.validate().map_err(|e| (Some(index), e)))
            .collect::<Result<Vec<_>, _>>()?;
        let mut names = HashSet::new();
        let mut envs = HashSet::new();
        for b in &bindings {
            if !names.insert(b.name.as_str()) {
                return Err((None, format!("secret `{}` is registered twice", b.name)));
            }
            for env in &b.env {
                if !envs.insert(env.as_str()) {
                    return Err((
                        None,
                        format!(
                            "env `{env}` is claimed by two secrets (second: `{}`)",
                            b.name
                        ),
                    ));
                }
            }
        }
        for a in &bindings {
            for b in &bindings {
                if a.name != b.name && b.dummy.contains(&a.dummy) {
                    return Err((
                        None,
                        format!(
                            "the dummy of `{}` occurs inside the dummy of `{}`; give one of them another dummy",
                            a.name, b.name
                        ),
                    ));
                }
            }
        }
        Ok(bindings)
    }

    /// The entry named `name`.
    pub fn get(&self, name: &str) -> Option<&SecretEntry> {
        self.entries.iter().find(|e| e.name == name)
    }

    /// Adds or replaces the entry with the same name.
    pub fn upsert(&mut self, entry: SecretEntry) {
        match self.entries.iter_mut().find(|e| e.name == entry.name) {
            Some(existing) => *existing = entry,
            None => self.entries.push(entry),
        }
    }

    /// Removes the entry named `name`; false if there was none.
    pub fn remove(&mut self, name: &str) -> bool {
        let before = self.entries.len();
        self.entries.retain(|e| e.name != name);
        self.entries.len() != before
    }
}

#[cfg(test)]
mod tests;
