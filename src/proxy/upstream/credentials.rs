//! The credentials of issue 15 as a configuration generation holds them: a token cache
//! per minted secret (`oauth2`, `github-app`, `google`), the real keys of each `aws`
//! secret (stored, or printed by its credential command), and each `google` secret's
//! phantom account (the key keygate verifies the agent's own JWTs with). Token endpoints
//! are reached through [`UpstreamTransport`]: the verified upstream client, with the same
//! `upstream.ca`, `--resolve` and private-address defence as every other request.
//!
//! Nothing here logs, prints or formats a real value or a minted token; the errors say
//! which secret, which endpoint and what to do.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use zeroize::Zeroizing;

use super::tls::TlsConnector;
use crate::credentials::key::{SigningKey, VerifyingKey};
use crate::credentials::mint::response::MAX_RESPONSE_BYTES;
use crate::credentials::mint::{
    ClientAuth, ClientCredentials, GitHubApp, GoogleServiceAccount, Grant, PostFuture,
    RefreshToken, TokenCache, Transport,
};
use crate::credentials::sigv4::AwsKeys;
use crate::secrets::kind::{
    AwsCredentials, ClientAuthName, GOOGLE_DEFAULT_SCOPE, GrantName, Kind, Oauth2,
};
use crate::secrets::{Binding, SecretSet, SecretStore, SecretValue};

/// How long a token endpoint has to answer, head and body.
pub const TOKEN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an AWS credential command may run.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// Credentials from a command are fetched again this long before they expire.
pub const COMMAND_REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);
/// Largest output of a credential command that is read.
const COMMAND_OUTPUT_MAX: usize = 64 * 1024;

/// One HTTPS POST over the verified upstream client, for the token caches.
pub struct UpstreamTransport<B> {
    client: Client<TlsConnector, B>,
    timeout: Duration,
}

impl<B> UpstreamTransport<B> {
    /// Posts through `client`, each exchange bounded by `timeout`.
    pub fn new(client: Client<TlsConnector, B>, timeout: Duration) -> UpstreamTransport<B> {
        UpstreamTransport { client, timeout }
    }
}

impl Transport for UpstreamTransport<super::super::Body> {
    fn post(&self, url: &Uri, headers: HeaderMap, body: Bytes) -> PostFuture<'_> {
        let url = url.clone();
        Box::pin(async move {
            let body = Full::new(body).map_err(|never| match never {}).boxed();
            let mut request = Request::post(url)
                .body(body)
                .map_err(|e| format!("cannot build the request: {e}"))?;
            *request.headers_mut() = headers;
            let exchange = async {
                let response = self
                    .client
                    .request(request)
                    .await
                    .map_err(|e| describe(&e))?;
                let status = response.status();
                let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES + 1)
                    .collect()
                    .await
                    .map_err(|e| format!("reading the answer: {e}"))?
                    .to_bytes();
                Ok::<_, String>((status, body))
            };
            tokio::time::timeout(self.timeout, exchange)
                .await
                .map_err(|_| format!("no answer within {} s", self.timeout.as_secs()))?
        })
    }
}

/// A hyper client error with its causes (no request content: none is in them).
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

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

/// Where an `aws` secret's real keys come from.
pub struct AwsSource {
    name: String,
    stored: Option<AwsKeys>,
    command: Option<Vec<String>>,
    /// Keys from the command and when to fetch again; one fetch at a time.
    cached: tokio::sync::Mutex<Option<(AwsKeys, Option<SystemTime>)>>,
}

impl std::fmt::Debug for AwsSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsSource")
            .field("name", &self.name)
            .field("command", &self.command.as_ref().map(|c| c.first()))
            .finish_non_exhaustive()
    }
}

impl AwsSource {
    /// The real keys: stored, or the command's (run again when they are due to expire).
    pub async fn keys(&self) -> Result<AwsKeys, String> {
        if let Some(keys) = &self.stored {
            return Ok(keys.clone());
        }
        let Some(command) = &self.command else {
            return Err(format!(
                "secret `{}` has no AWS credentials in the keyring and no aws.command",
                self.name
            ));
        };
        let mut cached = self.cached.lock().await;
        if let Some((keys, refresh_at)) = &*cached
            && refresh_at.is_none_or(|at| SystemTime::now() < at)
        {
            return Ok(keys.clone());
        }
        let (keys, expires) = run_command(&self.name, command).await?;
        let refresh_at = expires.map(|at| {
            at.checked_sub(COMMAND_REFRESH_MARGIN)
                .unwrap_or(SystemTime::UNIX_EPOCH)
        });
        *cached = Some((keys.clone(), refresh_at));
        Ok(keys)
    }
}

/// Runs a `credential_process`-style command and reads its JSON.
async fn run_command(name: &str, argv: &[String]) -> Result<(AwsKeys, Option<SystemTime>), String> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| format!("secret `{name}`: aws.command is empty"))?;
    let mut child = tokio::process::Command::new(program);
    child
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    let what = format!("secret `{name}`: the credential command `{program}`");
    let output = tokio::time::timeout(COMMAND_TIMEOUT, child.output())
        .await
        .map_err(|_| {
            format!(
                "{what} did not finish within {} s",
                COMMAND_TIMEOUT.as_secs()
            )
        })?
        .map_err(|e| format!("{what} could not run: {e}"))?;
    let stdout = Zeroizing::new(output.stdout);
    if !output.status.success() {
        return Err(format!(
            "{what} failed ({}); run it by hand to see why (for AWS SSO: `aws sso login`)",
            output.status
        ));
    }
    if stdout.len() > COMMAND_OUTPUT_MAX {
        return Err(format!("{what} printed more than 64 KiB"));
    }
    let text = std::str::from_utf8(&stdout).map_err(|_| format!("{what} printed non-UTF-8"))?;
    let creds = AwsCredentials::parse(text).map_err(|e| format!("{what}: {e}"))?;
    let expires =
        match &creds.expiration {
            None => None,
            Some(at) => Some(parse_expiration(at).ok_or_else(|| {
                format!("{what} printed an Expiration that is not an RFC 3339 time")
            })?),
        };
    Ok((aws_keys(&creds), expires))
}

fn parse_expiration(text: &str) -> Option<SystemTime> {
    let at =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    Some(SystemTime::from(at))
}

fn aws_keys(creds: &AwsCredentials) -> AwsKeys {
    AwsKeys {
        access_key_id: creds.access_key_id.clone(),
        secret_access_key: Zeroizing::new(creds.secret_access_key.clone()),
        session_token: creds.session_token.clone().map(Zeroizing::new),
    }
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

fn aws_source(binding: &Binding, stored: Option<AwsKeys>) -> AwsSource {
    let command = match &binding.kind {
        Kind::Aws(aws) => aws.command.clone(),
        _ => None,
    };
    AwsSource {
        name: binding.name.clone(),
        stored,
        command,
        cached: tokio::sync::Mutex::new(None),
    }
}

/// The grant that mints `binding`'s tokens from its real material.
fn grant(binding: &Binding, real: &SecretValue) -> Result<Grant, String> {
    let name = &binding.name;
    match &binding.kind {
        Kind::Oauth2(o) => oauth2_grant(name, o, real),
        Kind::GithubApp(app) => {
            let pem = private_key_pem(real.expose());
            let key = SigningKey::from_pem(&pem).map_err(|e| {
                format!("secret `{name}`: the GitHub App private key in the keyring: {e}; store the App's .pem again with `keygate secret add {name} --from-file KEY.pem`")
            })?;
            GitHubApp::new(
                &app.api_url.to_string(),
                app.app_id.clone(),
                app.installation_id,
                Arc::new(key),
            )
            .map(Grant::GitHubApp)
            .map_err(|e| format!("secret `{name}`: {e}"))
        }
        Kind::Google(google) => {
            let scopes = if google.scopes.is_empty() {
                vec![GOOGLE_DEFAULT_SCOPE.to_string()]
            } else {
                google.scopes.clone()
            };
            GoogleServiceAccount::from_json(real.expose(), scopes)
                .map(Grant::GoogleServiceAccount)
                .map_err(|e| format!("secret `{name}`: the service-account JSON in the keyring: {e}; store the key file again with `keygate secret add {name} --from-file KEY.json`"))
        }
        Kind::Static | Kind::Aws(_) => Err(format!("secret `{name}` is not a minted kind")),
    }
}

/// A PEM as stored: as is, or inside `{"private_key": "…"}` (one line, as the keyring
/// takes it).
fn private_key_pem(stored: &str) -> Zeroizing<String> {
    if stored.trim_start().starts_with('{')
        && let Ok(serde_json::Value::Object(mut map)) = serde_json::from_str(stored)
        && let Some(serde_json::Value::String(pem)) = map.remove("private_key")
    {
        return Zeroizing::new(pem);
    }
    Zeroizing::new(stored.replace("\\n", "\n"))
}

/// A stored refresh token: bare, or `{"refresh_token", "client_secret"}`.
struct StoredRefresh {
    refresh_token: SecretValue,
    client_secret: Option<SecretValue>,
    json: bool,
}

fn stored_refresh(name: &str, stored: &SecretValue) -> Result<StoredRefresh, String> {
    let text = stored.expose();
    if !text.trim_start().starts_with('{') {
        return Ok(StoredRefresh {
            refresh_token: stored.clone(),
            client_secret: None,
            json: false,
        });
    }
    let bad = || {
        format!(
            "secret `{name}`: the keyring value is neither a refresh token nor JSON with refresh_token (and client_secret)"
        )
    };
    let mut map: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(text).map_err(|_| bad())?;
    let mut take = |key: &str| match map.remove(key) {
        Some(serde_json::Value::String(v)) => SecretValue::new(v).ok(),
        _ => None,
    };
    Ok(StoredRefresh {
        refresh_token: take("refresh_token").ok_or_else(bad)?,
        client_secret: take("client_secret"),
        json: true,
    })
}

fn oauth2_grant(name: &str, o: &Oauth2, real: &SecretValue) -> Result<Grant, String> {
    let scope = (!o.scopes.is_empty()).then(|| o.scopes.join(" "));
    let auth = match o.client_auth {
        ClientAuthName::Basic => ClientAuth::Basic,
        ClientAuthName::Post => ClientAuth::Post,
    };
    match o.grant {
        GrantName::ClientCredentials => {
            let mut grant =
                ClientCredentials::new(o.token_url.clone(), o.client_id.clone(), real.clone());
            grant.scope = scope;
            grant.auth = auth;
            Ok(Grant::ClientCredentials(grant))
        }
        GrantName::RefreshToken => {
            let stored = stored_refresh(name, real)?;
            let mut grant = RefreshToken::new(
                o.token_url.clone(),
                o.client_id.clone(),
                stored.client_secret,
                stored.refresh_token,
            );
            grant.scope = scope;
            grant.auth = auth;
            Ok(Grant::RefreshToken(grant))
        }
    }
}

/// The cache for `binding`; a refresh-token grant writes each rotated token back to the
/// keyring, in the form it was stored in.
fn cache_for(binding: &Binding, grant: Grant, env: &CredentialEnv) -> TokenCache {
    let cache = TokenCache::new(grant);
    let (Kind::Oauth2(o), Some(store), Some(real)) = (&binding.kind, &env.store, &binding.real)
    else {
        return cache;
    };
    if o.grant != GrantName::RefreshToken {
        return cache;
    }
    let name = binding.name.clone();
    let store = store.clone();
    let json_secret = match stored_refresh(&name, real) {
        Ok(s) if s.json => Some(s.client_secret),
        _ => None,
    };
    cache.on_rotation(Box::new(move |rotated: SecretValue| {
        let value = match &json_secret {
            None => rotated,
            Some(secret) => {
                let mut map = serde_json::Map::new();
                map.insert("refresh_token".into(), rotated.expose().into());
                if let Some(secret) = secret {
                    map.insert("client_secret".into(), secret.expose().into());
                }
                let text = Zeroizing::new(serde_json::Value::Object(map).to_string());
                match SecretValue::new(text.to_string()) {
                    Ok(v) => v,
                    Err(_) => return,
                }
            }
        };
        let (store, name) = (store.clone(), name.clone());
        let write = move || match store.set(&name, &value) {
            Ok(()) => tracing::info!(secret = %name, "stored the rotated refresh token in the keyring"),
            Err(e) => tracing::error!(secret = %name, "cannot store the rotated refresh token: {e}; keygate uses it until it stops, then `keygate secret add {name}` is needed"),
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => drop(handle.spawn_blocking(write)),
            Err(_) => write(),
        }
    }))
}

/// The phantom account in `$KEYGATE_HOME/phantoms/NAME.json`.
fn phantom_account(binding: &Binding, env: &CredentialEnv) -> Result<PhantomAccount, String> {
    let name = &binding.name;
    let dir = env.phantoms.as_ref().ok_or_else(|| {
        format!("secret `{name}`: keygate was started without a home for phantom files")
    })?;
    let path = dir.join(format!("{name}.json"));
    let text = Zeroizing::new(std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "secret `{name}`: cannot read its phantom service account {}: {e}; run `keygate secret add {name}` again to make one",
            path.display()
        )
    })?);
    let account = GoogleServiceAccount::from_json(&text, Vec::new()).map_err(|e| {
        format!(
            "secret `{name}`: the phantom service account {}: {e}",
            path.display()
        )
    })?;
    let key = account
        .key
        .verifying_key()
        .map_err(|e| format!("secret `{name}`: the phantom key: {e}"))?;
    Ok(PhantomAccount {
        key,
        client_email: account.client_email,
        token_uri: account.token_uri,
    })
}

/// An upstream status that says a minted token is no good (revoked early): the cache
/// forgets it so that the next request mints.
pub fn rejects_token(status: StatusCode) -> bool {
    status == StatusCode::UNAUTHORIZED
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_pem_is_read_bare_escaped_or_in_json() {
        let pem = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert_eq!(&*private_key_pem(pem), pem);
        assert_eq!(&*private_key_pem(&pem.replace('\n', "\\n")), pem);
        let json = serde_json::json!({ "private_key": pem }).to_string();
        assert_eq!(&*private_key_pem(&json), pem);
    }

    #[test]
    fn a_refresh_token_is_bare_or_json_and_errors_quote_nothing() {
        let bare = SecretValue::new("rt-secret-1".into()).unwrap();
        let s = stored_refresh("x", &bare).unwrap();
        assert!(!s.json && s.client_secret.is_none());
        assert_eq!(s.refresh_token.expose(), "rt-secret-1");
        let json =
            SecretValue::new(r#"{"refresh_token":"rt-2","client_secret":"cs-2"}"#.into()).unwrap();
        let s = stored_refresh("x", &json).unwrap();
        assert!(s.json);
        assert_eq!(s.client_secret.unwrap().expose(), "cs-2");
        let broken = SecretValue::new(r#"{"nope":"rt-secret-3"}"#.into()).unwrap();
        let err = stored_refresh("x", &broken).err().unwrap();
        assert!(!err.contains("rt-secret-3"), "{err}");
    }

    #[test]
    fn expirations_parse_as_rfc3339() {
        assert!(parse_expiration("2030-01-01T00:00:00Z").is_some());
        assert!(parse_expiration("2030-01-01T00:00:00+02:00").is_some());
        assert!(parse_expiration("tomorrow").is_none());
    }
}
