//! Credential kinds (`kind:` in secrets.yaml, issue 15): what the agent holds, where
//! keygate gets the real credential, and how it is applied.
//!
//! | kind | the agent holds | the keyring holds | keygate sends |
//! |---|---|---|---|
//! | `static` (default) | the dummy | the key | the key, in place of the dummy |
//! | `oauth2` | a phantom bearer (the dummy) | the client secret, or the refresh token | an access token it mints (client credentials or refresh-token grant), cached and refreshed |
//! | `github-app` | a phantom `ghs_…` token (the dummy) | the App's private key (PEM) | an installation token it mints (RS256 JWT, then the installation token API) |
//! | `google` | a phantom service-account JSON whose key keygate made, and the phantom bearer keygate hands out for it | the service-account JSON | an access token it mints from the real service account (JWT bearer grant) |
//! | `aws` | phantom credentials (access key id = the dummy, secret access key, optional session token) | `{"access_key_id", "secret_access_key", "session_token"?}` as JSON | the request re-signed (SigV4) with the real credentials |
//!
//! Each kind's settings are a block of the same name in the entry (`oauth2:`,
//! `github_app:`, `google:`, `aws:`); this module validates them into a [`Kind`].

use http::Uri;
use serde::{Deserialize, Serialize};

/// `kind:` as written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KindName {
    /// A static key swapped for its dummy.
    #[default]
    Static,
    /// AWS SigV4: requests re-signed.
    Aws,
    /// A Google service account: access tokens minted.
    Google,
    /// OAuth2 client credentials or refresh token: access tokens minted.
    Oauth2,
    /// A GitHub App installation: installation tokens minted.
    GithubApp,
}

impl KindName {
    /// The name as written in secrets.yaml.
    pub fn as_str(self) -> &'static str {
        match self {
            KindName::Static => "static",
            KindName::Aws => "aws",
            KindName::Google => "google",
            KindName::Oauth2 => "oauth2",
            KindName::GithubApp => "github-app",
        }
    }

    /// True for `static` (serde's skip test).
    pub fn is_static(&self) -> bool {
        *self == KindName::Static
    }
}

/// The OAuth2 grant keygate uses to mint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GrantName {
    /// RFC 6749 §4.4; the keyring holds the client secret.
    #[default]
    ClientCredentials,
    /// RFC 6749 §6; the keyring holds the refresh token (rotated ones are written back).
    RefreshToken,
}

/// How the client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClientAuthName {
    /// HTTP Basic (`client_secret_basic`, the RFC's default).
    #[default]
    Basic,
    /// In the form body (`client_secret_post`).
    Post,
}

/// `oauth2:` as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Oauth2Block {
    /// The token endpoint (https).
    pub token_url: String,
    /// The client id (not a secret).
    pub client_id: String,
    /// Scopes asked for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// `client-credentials` (default) or `refresh-token`.
    #[serde(default)]
    pub grant: GrantName,
    /// `basic` (default) or `post`.
    #[serde(default)]
    pub client_auth: ClientAuthName,
}

/// `github_app:` as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GithubAppBlock {
    /// The App's id (or client id), the JWT's issuer.
    pub app_id: String,
    /// The installation whose tokens keygate mints.
    pub installation_id: u64,
    /// The API root (default `https://api.github.com`; GitHub Enterprise:
    /// `https://HOST/api/v3`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
}

/// `google:` as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoogleBlock {
    /// Scopes of the real access tokens (default cloud-platform).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
}

/// `aws:` as written: the phantom credentials besides the access key id (the dummy).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsBlock {
    /// The phantom secret access key the agent signs with (keygate verifies with it).
    pub secret_access_key: String,
    /// A phantom session token, for tools that want one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_token: Option<String>,
    /// Where the real credentials come from: `keyring` (the default without `command`)
    /// or `command` (the default with one). Written out for readers; `command` decides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<AwsSourceName>,
    /// The `credential_process`-style command keygate runs for the real credentials; its
    /// output is cached until the expiry it gives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
}

/// `aws.source` as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AwsSourceName {
    /// The keyring holds the real credentials as JSON.
    Keyring,
    /// `aws.command` prints them.
    Command,
}

/// A validated kind, as the proxy uses it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Kind {
    /// The dummy is swapped for the stored value.
    #[default]
    Static,
    /// Access tokens minted with an OAuth2 grant.
    Oauth2(Oauth2),
    /// Installation tokens minted for a GitHub App.
    GithubApp(GithubApp),
    /// Access tokens minted from a service account; keygate answers the agent's own
    /// token exchange at the token endpoint with a phantom.
    Google(Google),
    /// Requests re-signed with SigV4.
    Aws(Aws),
}

/// A validated `oauth2:` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Oauth2 {
    /// The token endpoint.
    pub token_url: Uri,
    /// The client id.
    pub client_id: String,
    /// Scopes asked for.
    pub scopes: Vec<String>,
    /// The grant.
    pub grant: GrantName,
    /// The client authentication.
    pub client_auth: ClientAuthName,
}

/// A validated `github_app:` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GithubApp {
    /// The JWT's issuer.
    pub app_id: String,
    /// The installation.
    pub installation_id: u64,
    /// The API root, without a trailing `/`.
    pub api_url: Uri,
}

/// A validated `google:` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Google {
    /// Scopes of the real access tokens.
    pub scopes: Vec<String>,
}

/// The default scope of a `google` secret's tokens.
pub const GOOGLE_DEFAULT_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// A validated `aws:` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aws {
    /// The phantom secret access key.
    pub secret_access_key: String,
    /// The phantom session token.
    pub session_token: Option<String>,
    /// The credential command, if the real credentials come from one.
    pub command: Option<Vec<String>>,
}

impl Kind {
    /// The name as written.
    pub fn name(&self) -> KindName {
        match self {
            Kind::Static => KindName::Static,
            Kind::Oauth2(_) => KindName::Oauth2,
            Kind::GithubApp(_) => KindName::GithubApp,
            Kind::Google(_) => KindName::Google,
            Kind::Aws(_) => KindName::Aws,
        }
    }

    /// True for kinds whose real credential is a token keygate mints.
    pub fn is_minted(&self) -> bool {
        matches!(self, Kind::Oauth2(_) | Kind::GithubApp(_) | Kind::Google(_))
    }

    /// The phantoms of this kind besides the dummy (the tripwire knows them all).
    pub fn extra_phantoms(&self) -> Vec<&str> {
        match self {
            Kind::Aws(aws) => std::iter::once(aws.secret_access_key.as_str())
                .chain(aws.session_token.as_deref())
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// The blocks of one entry, for [`validate`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Blocks<'a> {
    /// `oauth2:`.
    pub oauth2: Option<&'a Oauth2Block>,
    /// `github_app:`.
    pub github_app: Option<&'a GithubAppBlock>,
    /// `google:`.
    pub google: Option<&'a GoogleBlock>,
    /// `aws:`.
    pub aws: Option<&'a AwsBlock>,
}

/// Validates `kind` with its block; a block of another kind is an error.
pub fn validate(kind: KindName, blocks: Blocks<'_>) -> Result<Kind, String> {
    let present = [
        (KindName::Oauth2, blocks.oauth2.is_some(), "oauth2"),
        (
            KindName::GithubApp,
            blocks.github_app.is_some(),
            "github_app",
        ),
        (KindName::Google, blocks.google.is_some(), "google"),
        (KindName::Aws, blocks.aws.is_some(), "aws"),
    ];
    if let Some((_, _, block)) = present.iter().find(|(k, there, _)| *there && *k != kind) {
        return Err(format!(
            "a `{block}:` block belongs to `kind: {}`, but this secret is `kind: {}`",
            block.replace('_', "-"),
            kind.as_str()
        ));
    }
    let need = |block: &str| {
        format!(
            "`kind: {}` needs a `{block}:` block (docs/CONFIG.md, \"Credential kinds\")",
            kind.as_str()
        )
    };
    Ok(match kind {
        KindName::Static => Kind::Static,
        KindName::Oauth2 => {
            let b = blocks.oauth2.ok_or_else(|| need("oauth2"))?;
            if b.client_id.trim().is_empty() {
                return Err("oauth2.client_id must not be empty".into());
            }
            Kind::Oauth2(Oauth2 {
                token_url: https_url(&b.token_url, "oauth2.token_url")?,
                client_id: b.client_id.clone(),
                scopes: b.scopes.clone(),
                grant: b.grant,
                client_auth: b.client_auth,
            })
        }
        KindName::GithubApp => {
            let b = blocks.github_app.ok_or_else(|| need("github_app"))?;
            if b.app_id.trim().is_empty() {
                return Err("github_app.app_id must not be empty".into());
            }
            let api = b.api_url.as_deref().unwrap_or("https://api.github.com");
            Kind::GithubApp(GithubApp {
                app_id: b.app_id.trim().to_string(),
                installation_id: b.installation_id,
                api_url: https_url(api.trim_end_matches('/'), "github_app.api_url")?,
            })
        }
        KindName::Google => {
            let scopes = blocks.google.map(|b| b.scopes.clone()).unwrap_or_default();
            Kind::Google(Google {
                scopes: match scopes.is_empty() {
                    true => vec![GOOGLE_DEFAULT_SCOPE.to_string()],
                    false => scopes,
                },
            })
        }
        KindName::Aws => {
            let b = blocks.aws.ok_or_else(|| need("aws"))?;
            if b.secret_access_key.len() < 16
                || !b.secret_access_key.bytes().all(|c| c.is_ascii_graphic())
            {
                return Err("aws.secret_access_key (the phantom) must be at least 16 printable characters; `keygate secret add NAME --recipe aws` makes one".into());
            }
            if let Some(command) = &b.command
                && command.first().is_none_or(|c| c.trim().is_empty())
            {
                return Err("aws.command must name a program, e.g. [aws, configure, export-credentials, --format, process]".into());
            }
            match (b.source, &b.command) {
                (Some(AwsSourceName::Command), None) => {
                    return Err("aws.source is `command` but there is no aws.command; add one, e.g. command: [aws, configure, export-credentials, --profile, dev, --format, process]".into());
                }
                (Some(AwsSourceName::Keyring), Some(_)) => {
                    return Err(
                        "aws.source is `keyring` but aws.command is set; remove one of the two"
                            .into(),
                    );
                }
                _ => {}
            }
            Kind::Aws(Aws {
                secret_access_key: b.secret_access_key.clone(),
                session_token: b.session_token.clone(),
                command: b.command.clone(),
            })
        }
    })
}

/// An `https://` URL with a host: keygate never sends credentials in the clear.
fn https_url(text: &str, what: &str) -> Result<Uri, String> {
    let uri: Uri = text
        .trim()
        .parse()
        .map_err(|_| format!("{what} `{text}` is not a URL"))?;
    if uri.scheme_str() != Some("https") || uri.host().is_none() {
        return Err(format!(
            "{what} `{text}` must be an https:// URL (keygate never sends a credential in the clear)"
        ));
    }
    Ok(uri)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oauth2(url: &str) -> Oauth2Block {
        Oauth2Block {
            token_url: url.into(),
            client_id: "cid".into(),
            ..Oauth2Block::default()
        }
    }

    #[test]
    fn static_needs_no_block_and_refuses_another_kinds() {
        assert_eq!(
            validate(KindName::Static, Blocks::default()),
            Ok(Kind::Static)
        );
        let block = oauth2("https://auth.example/token");
        let err = validate(
            KindName::Static,
            Blocks {
                oauth2: Some(&block),
                ..Blocks::default()
            },
        )
        .unwrap_err();
        assert!(err.contains("belongs to `kind: oauth2`"), "{err}");
    }

    #[test]
    fn oauth2_needs_its_block_and_an_https_token_url() {
        let err = validate(KindName::Oauth2, Blocks::default()).unwrap_err();
        assert!(err.contains("needs a `oauth2:` block"), "{err}");
        let plain = oauth2("http://auth.example/token");
        let err = validate(
            KindName::Oauth2,
            Blocks {
                oauth2: Some(&plain),
                ..Blocks::default()
            },
        )
        .unwrap_err();
        assert!(err.contains("must be an https:// URL"), "{err}");
        let good = oauth2("https://auth.example/token");
        let kind = validate(
            KindName::Oauth2,
            Blocks {
                oauth2: Some(&good),
                ..Blocks::default()
            },
        )
        .unwrap();
        assert!(kind.is_minted());
    }

    #[test]
    fn github_app_defaults_to_the_public_api() {
        let block = GithubAppBlock {
            app_id: "123".into(),
            installation_id: 9,
            api_url: None,
        };
        let Kind::GithubApp(app) = validate(
            KindName::GithubApp,
            Blocks {
                github_app: Some(&block),
                ..Blocks::default()
            },
        )
        .unwrap() else {
            panic!("a github-app kind")
        };
        assert_eq!(app.api_url, "https://api.github.com");
    }

    #[test]
    fn aws_phantoms_are_known_to_the_tripwire() {
        let block = AwsBlock {
            secret_access_key: "keygatePhantomSecretKey0123456789abcdefgh".into(),
            session_token: Some("keygatePhantomSessionToken0123".into()),
            source: None,
            command: None,
        };
        let kind = validate(
            KindName::Aws,
            Blocks {
                aws: Some(&block),
                ..Blocks::default()
            },
        )
        .unwrap();
        assert_eq!(kind.extra_phantoms().len(), 2);
        assert!(!kind.is_minted());
        // `source: command` needs a command, and `source: keyring` none.
        let check = |source, command: Option<Vec<String>>| {
            let block = AwsBlock {
                source,
                command,
                ..block.clone()
            };
            let blocks = Blocks {
                aws: Some(&block),
                ..Blocks::default()
            };
            validate(KindName::Aws, blocks).map(drop)
        };
        let argv = Some(vec!["aws".to_string()]);
        assert!(
            check(Some(AwsSourceName::Command), None)
                .unwrap_err()
                .contains("aws.command")
        );
        assert!(check(Some(AwsSourceName::Keyring), argv.clone()).is_err());
        assert!(check(Some(AwsSourceName::Command), argv).is_ok());
        let yaml = "secret_access_key: keygatePhantomSecretKey0123456789abcdefgh\nsource: command\ncommand: [aws, configure, export-credentials]\n";
        let parsed: AwsBlock = serde_yaml::from_str(yaml).unwrap();
        assert_eq!(parsed.source, Some(AwsSourceName::Command));
    }

    #[test]
    fn google_defaults_to_cloud_platform() {
        let Kind::Google(g) = validate(KindName::Google, Blocks::default()).unwrap() else {
            panic!("a google kind")
        };
        assert_eq!(g.scopes, [GOOGLE_DEFAULT_SCOPE]);
    }
}

/// Real AWS credentials, as stored in the keyring (keygate's own
/// `{"access_key_id", "secret_access_key", "session_token"?}`) or printed by a
/// `credential_process` command (`{"Version": 1, "AccessKeyId", "SecretAccessKey",
/// "SessionToken"?, "Expiration"?}`).
#[derive(Clone, Deserialize, zeroize::ZeroizeOnDrop)]
pub struct AwsCredentials {
    /// The access key id.
    #[serde(alias = "AccessKeyId")]
    pub access_key_id: String,
    /// The secret access key.
    #[serde(alias = "SecretAccessKey")]
    pub secret_access_key: String,
    /// The session token of temporary credentials.
    #[serde(default, alias = "SessionToken")]
    pub session_token: Option<String>,
    /// When temporary credentials expire (RFC 3339), from a credential command.
    #[serde(default, alias = "Expiration")]
    #[zeroize(skip)]
    pub expiration: Option<String>,
}

impl std::fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .field("expiration", &self.expiration)
            .finish_non_exhaustive()
    }
}

impl AwsCredentials {
    /// Parses stored or printed credentials; the error never quotes the text.
    pub fn parse(text: &str) -> Result<AwsCredentials, String> {
        let creds: AwsCredentials = serde_json::from_str(text.trim()).map_err(|e| {
            format!(
                "the AWS credentials are not JSON with access_key_id and secret_access_key (line {}, column {}); store them with `keygate secret add NAME --recipe aws`, which asks for both",
                e.line(),
                e.column()
            )
        })?;
        if creds.access_key_id.is_empty() || creds.secret_access_key.is_empty() {
            return Err(
                "the AWS credentials have an empty access key id or secret access key".into(),
            );
        }
        Ok(creds)
    }
}

#[cfg(test)]
mod credentials_tests {
    use super::*;

    #[test]
    fn both_spellings_parse_and_errors_quote_nothing() {
        let ours = AwsCredentials::parse(
            r#"{"access_key_id":"AKIAREAL","secret_access_key":"s3cr3t","session_token":"tok"}"#,
        )
        .unwrap();
        assert_eq!(ours.session_token.as_deref(), Some("tok"));
        let process = AwsCredentials::parse(
            r#"{"Version":1,"AccessKeyId":"ASIAREAL","SecretAccessKey":"s3cr3t","SessionToken":"t","Expiration":"2030-01-01T00:00:00Z"}"#,
        )
        .unwrap();
        assert_eq!(process.access_key_id, "ASIAREAL");
        assert_eq!(process.expiration.as_deref(), Some("2030-01-01T00:00:00Z"));
        let err = AwsCredentials::parse("s3cr3t-not-json").unwrap_err();
        assert!(!err.contains("s3cr3t"), "{err}");
        assert!(!format!("{ours:?}").contains("s3cr3t"));
    }
}
