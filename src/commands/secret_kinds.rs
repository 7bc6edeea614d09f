//! `keygate secret add` for the credential kinds of issue 15: each kind's flags, and
//! the value checked and normalized for its kind (one line in the keyring), with the
//! phantoms `add` makes (AWS, a `google` secret's phantom key file).

use anyhow::{Context, anyhow};
use keygate::home::Home;
use keygate::secrets::kind::{
    AwsBlock, AwsCredentials, ClientAuthName, GithubAppBlock, GoogleBlock, GrantName, KindName,
    Oauth2Block,
};
use keygate::secrets::{SecretEntry, SecretValue, dummy};
use zeroize::Zeroizing;

use super::Failure;
use crate::cli::{ClientAuthArg, GrantArg, KindArg, SecretAddArgs};

/// `--kind` and the flags of each kind's block; a flag of another kind is an error.
pub(super) fn apply_kind_flags(
    entry: &mut SecretEntry,
    args: &SecretAddArgs,
) -> Result<(), Failure> {
    if let Some(kind) = args.kind {
        entry.kind = match kind {
            KindArg::Static => KindName::Static,
            KindArg::Aws => KindName::Aws,
            KindArg::Google => KindName::Google,
            KindArg::Oauth2 => KindName::Oauth2,
            KindArg::GithubApp => KindName::GithubApp,
        };
    }
    let kind = entry.kind;
    let name = &args.name;
    let wrong = |flags: &str, want: &str| {
        Failure::usage(anyhow!(
            "{flags} belong to --kind {want}, and `{name}` is of kind {}; add --kind {want} (or leave the flags out)",
            kind.as_str()
        ))
    };
    let oauth2_flags = args.token_url.is_some()
        || args.client_id.is_some()
        || args.grant.is_some()
        || args.client_auth.is_some();
    if oauth2_flags && kind != KindName::Oauth2 {
        return Err(wrong(
            "--token-url, --client-id, --grant and --client-auth",
            "oauth2",
        ));
    }
    let github_flags =
        args.app_id.is_some() || args.installation_id.is_some() || args.api_url.is_some();
    if github_flags && kind != KindName::GithubApp {
        return Err(wrong(
            "--app-id, --installation-id and --api-url",
            "github-app",
        ));
    }
    if args.aws_command.is_some() && kind != KindName::Aws {
        return Err(wrong("--aws-command", "aws"));
    }
    if !args.scopes.is_empty() && !matches!(kind, KindName::Oauth2 | KindName::Google) {
        return Err(wrong("--scope", "oauth2 or google"));
    }
    match kind {
        KindName::Static => {}
        KindName::Oauth2 => {
            let block = entry.oauth2.get_or_insert_with(Oauth2Block::default);
            if let Some(url) = &args.token_url {
                block.token_url = url.clone();
            }
            if let Some(id) = &args.client_id {
                block.client_id = id.clone();
            }
            if !args.scopes.is_empty() {
                block.scopes = args.scopes.clone();
            }
            if let Some(grant) = args.grant {
                block.grant = match grant {
                    GrantArg::ClientCredentials => GrantName::ClientCredentials,
                    GrantArg::RefreshToken => GrantName::RefreshToken,
                };
            }
            if let Some(auth) = args.client_auth {
                block.client_auth = match auth {
                    ClientAuthArg::Basic => ClientAuthName::Basic,
                    ClientAuthArg::Post => ClientAuthName::Post,
                };
            }
            let mut missing = Vec::new();
            if block.token_url.is_empty() {
                missing.push("--token-url URL");
            }
            if block.client_id.is_empty() {
                missing.push("--client-id ID");
            }
            if entry.hosts.is_empty() {
                missing.push("--host API-HOST");
            }
            if !missing.is_empty() {
                return Err(Failure::usage(anyhow!(
                    "an oauth2 secret needs {}, e.g. `keygate secret add {name} --recipe oauth2 --host api.example.com --token-url https://auth.example.com/oauth/token --client-id my-client --scope read`",
                    missing.join(" and ")
                )));
            }
        }
        KindName::GithubApp => {
            let block = entry.github_app.get_or_insert_with(GithubAppBlock::default);
            if let Some(id) = &args.app_id {
                block.app_id = id.clone();
            }
            if let Some(id) = args.installation_id {
                block.installation_id = id;
            }
            if let Some(url) = &args.api_url {
                block.api_url = Some(url.clone());
            }
            if block.app_id.is_empty() || block.installation_id == 0 {
                return Err(Failure::usage(anyhow!(
                    "a github-app secret needs --app-id ID and --installation-id ID (the App's settings page shows the app id; the installation id is the number at the end of the installation's URL), e.g. `keygate secret add {name} --recipe github-app --app-id 123456 --installation-id 7890123 --from-file app.private-key.pem`"
                )));
            }
        }
        KindName::Google => {
            let block = entry.google.get_or_insert_with(GoogleBlock::default);
            if !args.scopes.is_empty() {
                block.scopes = args.scopes.clone();
            }
        }
        KindName::Aws => {
            if entry.aws.is_none() {
                entry.aws = Some(phantom_aws_block()?);
            }
            if let (Some(block), Some(command)) = (entry.aws.as_mut(), &args.aws_command) {
                // Split as a shell would: a quoted argument keeps its spaces.
                let argv = shlex::split(command)
                    .filter(|argv| !argv.is_empty())
                    .ok_or_else(|| {
                        Failure::usage(anyhow!(
                            "--aws-command must be a command line (quotes balanced), e.g. 'aws configure export-credentials --profile dev --format process'"
                        ))
                    })?;
                block.command = Some(argv);
                block.source = Some(keygate::secrets::kind::AwsSourceName::Command);
            }
        }
    }
    Ok(())
}

/// Phantom AWS credentials besides the access key id (the dummy): a secret access key of
/// the real one's shape (40 characters).
fn phantom_aws_block() -> Result<AwsBlock, Failure> {
    Ok(AwsBlock {
        secret_access_key: dummy::expand("keygateDummy{random:28}", "")
            .map_err(|e| Failure::usage(anyhow!(e)))?,
        session_token: None,
        source: None,
        command: None,
    })
}

/// What `add` stores, once the raw text is read: the keyring value, normalized for the
/// kind (one line), and for a `google` secret the phantom key file to write.
pub(super) struct Prepared {
    pub(super) value: SecretValue,
    pub(super) phantom_file: Option<Zeroizing<String>>,
}

/// An `oauth2` secret's keyring value: as given, except a refresh token in JSON
/// (`{"refresh_token", "client_secret"?}`, for a confidential client), which must have
/// that shape (the proxy reads nothing else from it) and is kept on one line.
fn oauth2_value(entry: &SecretEntry, raw: Zeroizing<String>) -> Result<Zeroizing<String>, Failure> {
    let refresh = entry
        .oauth2
        .as_ref()
        .is_some_and(|o| o.grant == GrantName::RefreshToken);
    if !refresh || !raw.trim_start().starts_with('{') {
        return Ok(raw);
    }
    let shape = || {
        Failure::usage(anyhow!(
            "a refresh token given as JSON must be {{\"refresh_token\": \"...\", \"client_secret\": \"...\"}} (client_secret only for a confidential client, no other keys); or give the bare refresh token"
        ))
    };
    let json: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&raw).map_err(|_| shape())?;
    let text = |key: &str| {
        json.get(key)
            .and_then(|v| v.as_str())
            .filter(|t| !t.is_empty())
    };
    let only_known = json
        .keys()
        .all(|k| k == "refresh_token" || k == "client_secret");
    if !only_known
        || text("refresh_token").is_none()
        || json.contains_key("client_secret") && text("client_secret").is_none()
    {
        return Err(shape());
    }
    Ok(Zeroizing::new(serde_json::Value::Object(json).to_string()))
}

/// Checks and normalizes `raw` for `entry`'s kind; may give `entry` a phantom session
/// token (aws). No error quotes the value.
pub(super) fn prepare_value(
    entry: &mut SecretEntry,
    raw: Zeroizing<String>,
) -> Result<Prepared, Failure> {
    let usage = |e: String| Failure::usage(anyhow!(e));
    let plain = |text: &str| SecretValue::new(text.to_string()).map_err(Failure::usage);
    match entry.kind {
        KindName::Static => Ok(Prepared {
            value: plain(&raw)?,
            phantom_file: None,
        }),
        KindName::Oauth2 => Ok(Prepared {
            value: plain(&oauth2_value(entry, raw)?)?,
            phantom_file: None,
        }),
        KindName::Aws => {
            let creds = AwsCredentials::parse(&raw).map_err(usage)?;
            let compact = Zeroizing::new(
                serde_json::json!({
                    "access_key_id": creds.access_key_id,
                    "secret_access_key": creds.secret_access_key,
                    "session_token": creds.session_token,
                })
                .to_string(),
            );
            if let Some(block) = entry.aws.as_mut() {
                match creds.session_token.is_some() {
                    true if block.session_token.is_none() => {
                        block.session_token =
                            Some(dummy::expand("IQoJkeygateDummy{random:300}", "").map_err(usage)?);
                    }
                    true => {}
                    false => block.session_token = None,
                }
                // Temporary credentials' ids start ASIA, long-term ones AKIA.
                let prefix = if block.session_token.is_some() {
                    "ASIA"
                } else {
                    "AKIA"
                };
                if let Some(rest) = entry
                    .dummy
                    .strip_prefix("AKIA")
                    .or_else(|| entry.dummy.strip_prefix("ASIA"))
                {
                    entry.dummy = format!("{prefix}{rest}");
                }
            }
            Ok(Prepared {
                value: plain(&compact)?,
                phantom_file: None,
            })
        }
        KindName::Google => {
            let parsed: serde_json::Value = serde_json::from_str(&raw).map_err(|e| {
                usage(format!(
                    "the value is not a service-account key file (JSON, line {} column {}); give the file the Cloud console downloaded with --from-file KEY.json",
                    e.line(),
                    e.column()
                ))
            })?;
            let compact = Zeroizing::new(parsed.to_string());
            drop(parsed);
            keygate::credentials::mint::GoogleServiceAccount::from_json(&compact, Vec::new())
                .map_err(|e| usage(format!("the service-account key file: {e}")))?;
            let phantom = keygate::credentials::key::SigningKey::generate_rsa2048()
                .map_err(|e| usage(format!("cannot make the phantom key: {e}")))?;
            let key_id = dummy::expand("keygate{hex:32}", "").map_err(usage)?;
            let file =
                keygate::credentials::mint::google::phantom_json(&compact, &phantom, &key_id)
                    .map_err(|e| usage(format!("the service-account key file: {e}")))?;
            Ok(Prepared {
                value: plain(&compact)?,
                phantom_file: Some(file),
            })
        }
        KindName::GithubApp => {
            let pem = raw.trim();
            keygate::credentials::key::SigningKey::from_pem(pem).map_err(|e| {
                usage(format!(
                    "the value is not the GitHub App's private key ({e}); give the .pem GitHub made with --from-file app.private-key.pem"
                ))
            })?;
            let stored = Zeroizing::new(serde_json::json!({ "private_key": pem }).to_string());
            Ok(Prepared {
                value: plain(&stored)?,
                phantom_file: None,
            })
        }
    }
}

/// Writes a `google` secret's phantom key file, owner-only, in `phantoms/`.
pub(super) fn write_phantom(home: &Home, name: &str, text: &str) -> Result<(), Failure> {
    let dir = home.phantoms_dir();
    keygate::home::create_private_dir(&dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    let path = home.phantom_file(name);
    keygate::home::write_atomic(&path, text.as_bytes(), keygate::home::FILE_MODE)
        .with_context(|| format!("writing {}", path.display()))?;
    eprintln!(
        "keygate: the agent's phantom service-account file is {} (`keygate env` sets GOOGLE_APPLICATION_CREDENTIALS to it)",
        path.display()
    );
    Ok(())
}
