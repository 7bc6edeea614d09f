//! The credentials of issue 15 as a configuration generation holds them: a token cache
//! per minted secret (`oauth2`, `github-app`, `google`), the real keys of each `aws`
//! secret (stored, or printed by its credential command), and each `google` secret's
//! phantom account (the key keygate verifies the agent's own JWTs with). Token endpoints
//! are reached through [`UpstreamTransport`]: the verified upstream client, with the same
//! `upstream.ca`, `--resolve` and private-address defence as every other request.
//!
//! Nothing here logs, prints or formats a real value or a minted token; the errors say
//! which secret, which endpoint and what to do.

mod aws;
mod grants;
mod transport;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{StatusCode, Uri};

pub use aws::AwsSource;
use aws::{aws_keys, aws_source};
use grants::{cache_for, grant, phantom_account};
pub use transport::UpstreamTransport;

use crate::credentials::key::VerifyingKey;
use crate::credentials::mint::{TokenCache, Transport};
use crate::secrets::kind::{AwsCredentials, Kind};
use crate::secrets::{Binding, SecretSet, SecretStore, SecretValue};

/// How long a token endpoint has to answer, head and body.
pub const TOKEN_TIMEOUT: Duration = Duration::from_secs(30);

/// What the proxy gives the credentials besides the secrets: where a rotated refresh
/// token is written back, and where the phantom files are.
#[derive(Clone, Default)]
pub struct CredentialEnv {
    /// The keyring, for rotated refresh tokens; `None` keeps them in memory only.
    pub store: Option<Arc<dyn SecretStore>>,
    /// `$KEYGATE_HOME/phantoms`, where a `google` secret's phantom account is.
    pub phantoms: Option<PathBuf>,
    /// `$KEYGATE_HOME/tokens.json`, where each minted token's expiry is noted.
    pub tokens_file: Option<PathBuf>,
}

impl std::fmt::Debug for CredentialEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialEnv")
            .field("store", &self.store.as_ref().map(|s| s.backend()))
            .field("phantoms", &self.phantoms)
            .field("tokens_file", &self.tokens_file)
            .finish()
    }
}

/// The phantom service account keygate gave the agent for a `google` secret.
#[derive(Debug)]
pub struct PhantomAccount {
    /// Its public key: the agent's JWTs must verify with it.
    pub key: VerifyingKey,
    /// `client_email`: the JWTs' issuer.
    pub client_email: String,
    /// `token_uri`: where the agent exchanges its JWTs (keygate answers there).
    pub token_uri: Uri,
}

/// A generation's credentials: see the module documentation.
pub struct Credentials {
    tokens: HashMap<String, Arc<TokenCache>>,
    aws: HashMap<String, Arc<AwsSource>>,
    google: HashMap<String, Arc<PhantomAccount>>,
    /// Why a secret cannot be used (bad key material, a missing phantom file), by name.
    problems: HashMap<String, String>,
    /// What each cache was built from, to keep it across a reload that changed nothing.
    built_from: HashMap<String, Arc<Binding>>,
    transport: Arc<dyn Transport>,
    /// Where expiries are noted, and the last one noted per secret.
    tokens_file: Option<PathBuf>,
    noted: std::sync::Mutex<HashMap<String, SystemTime>>,
    /// Some secret is of a minted kind / of kind `aws` (the request path's fast checks).
    any_minted: bool,
    any_aws: bool,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("tokens", &self.tokens.keys().collect::<Vec<_>>())
            .field("aws", &self.aws.keys().collect::<Vec<_>>())
            .field("google", &self.google.keys().collect::<Vec<_>>())
            .field("problems", &self.problems)
            .finish()
    }
}

impl Credentials {
    /// The credentials of `secrets`. A secret whose kind and value are unchanged since
    /// `previous` keeps its token cache (and its current token).
    pub fn build(
        secrets: &SecretSet,
        env: &CredentialEnv,
        transport: Arc<dyn Transport>,
        previous: Option<&Credentials>,
    ) -> Credentials {
        let mut creds = Credentials {
            tokens: HashMap::new(),
            aws: HashMap::new(),
            google: HashMap::new(),
            problems: HashMap::new(),
            built_from: HashMap::new(),
            transport,
            tokens_file: env.tokens_file.clone(),
            noted: std::sync::Mutex::default(),
            any_minted: secrets.iter().any(|b| b.kind.is_minted()),
            any_aws: secrets.iter().any(|b| matches!(b.kind, Kind::Aws(_))),
        };
        for binding in secrets.iter() {
            let name = binding.name.clone();
            if let Kind::Google(_) = binding.kind {
                match phantom_account(binding, env) {
                    Ok(account) => {
                        creds.google.insert(name.clone(), Arc::new(account));
                    }
                    Err(problem) => {
                        creds.problems.insert(name.clone(), problem);
                    }
                }
            }
            let Some(real) = binding.real.as_ref() else {
                if let Kind::Aws(aws) = &binding.kind
                    && aws.command.is_some()
                {
                    creds
                        .aws
                        .insert(name.clone(), Arc::new(aws_source(binding, None)));
                }
                continue;
            };
            if let Kind::Aws(_) = binding.kind {
                match AwsCredentials::parse(real.expose()) {
                    Ok(stored) => {
                        let source = aws_source(binding, Some(aws_keys(&stored)));
                        creds.aws.insert(name.clone(), Arc::new(source));
                    }
                    Err(e) => {
                        creds
                            .problems
                            .insert(name.clone(), format!("secret `{name}`: {e}"));
                    }
                }
                continue;
            }
            if !binding.kind.is_minted() {
                continue;
            }
            let kept = previous.and_then(|p| {
                let was = p.built_from.get(&name)?;
                let same = was.kind == binding.kind
                    && was.real.as_ref().map(SecretValue::expose) == Some(real.expose());
                same.then(|| p.tokens.get(&name).cloned()).flatten()
            });
            let cache = match kept {
                Some(cache) => Ok(cache),
                None => grant(binding, real).map(|grant| Arc::new(cache_for(binding, grant, env))),
            };
            match cache {
                Ok(cache) => {
                    creds.tokens.insert(name.clone(), cache);
                    creds.built_from.insert(name, binding.clone());
                }
                Err(problem) => {
                    creds.problems.insert(name, problem);
                }
            }
        }
        creds
    }

    /// Notes that `name`'s current token expires at `expires_at` in `tokens.json` (off
    /// the request path, and only when it changed).
    pub fn note_expiry(&self, name: &str, expires_at: SystemTime) {
        let Some(path) = self.tokens_file.clone() else {
            return;
        };
        let mut noted = self.noted.lock().unwrap_or_else(|p| p.into_inner());
        if noted.get(name) == Some(&expires_at) {
            return;
        }
        noted.insert(name.to_string(), expires_at);
        let name = name.to_string();
        let write = move || {
            if let Err(e) = crate::credentials::expiry::record(&path, &name, expires_at) {
                tracing::debug!(secret = %name, "cannot note the token's expiry in {}: {e}", path.display());
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => drop(handle.spawn_blocking(write)),
            Err(_) => write(),
        }
    }

    /// True when some secret is of a minted kind (`oauth2`, `github-app`, `google`).
    pub fn any_minted(&self) -> bool {
        self.any_minted
    }

    /// True when some secret is of kind `aws`.
    pub fn any_aws(&self) -> bool {
        self.any_aws
    }

    /// The token cache of minted secret `name`.
    pub fn cache(&self, name: &str) -> Option<&Arc<TokenCache>> {
        self.tokens.get(name)
    }

    /// The transport the caches mint through.
    pub fn transport(&self) -> Arc<dyn Transport> {
        self.transport.clone()
    }

    /// Why secret `name` cannot be used, if something is wrong with its material.
    pub fn problem(&self, name: &str) -> Option<&str> {
        self.problems.get(name).map(String::as_str)
    }

    /// The real-key source of `aws` secret `name`.
    pub fn aws(&self, name: &str) -> Option<&Arc<AwsSource>> {
        self.aws.get(name)
    }

    /// The phantom account of `google` secret `name`.
    pub fn google(&self, name: &str) -> Option<&Arc<PhantomAccount>> {
        self.google.get(name)
    }

    /// When the current token of each minted secret expires (`None`: none minted yet).
    pub fn expiries(&self) -> Vec<(String, Option<SystemTime>)> {
        let mut out: Vec<_> = self
            .tokens
            .iter()
            .map(|(name, cache)| (name.clone(), cache.expires_at()))
            .collect();
        out.sort();
        out
    }
}

/// An upstream status that says a minted token is no good (revoked early): the cache
/// forgets it so that the next request mints.
pub fn rejects_token(status: StatusCode) -> bool {
    status == StatusCode::UNAUTHORIZED
}
