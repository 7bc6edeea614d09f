//! [`AwsSource`]: where an `aws` secret's real keys come from: the keyring, or a
//! `credential_process`-style command whose output is cached until its expiry.

use std::time::{Duration, SystemTime};

use zeroize::Zeroizing;

use crate::credentials::sigv4::AwsKeys;
use crate::secrets::Binding;
use crate::secrets::kind::{AwsCredentials, Kind};

/// How long an AWS credential command may run.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// Credentials from a command are fetched again this long before they expire.
pub const COMMAND_REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);
/// Largest output of a credential command that is read.
const COMMAND_OUTPUT_MAX: usize = 64 * 1024;

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

pub(super) fn aws_keys(creds: &AwsCredentials) -> AwsKeys {
    AwsKeys {
        access_key_id: creds.access_key_id.clone(),
        secret_access_key: Zeroizing::new(creds.secret_access_key.clone()),
        session_token: creds.session_token.clone().map(Zeroizing::new),
    }
}

pub(super) fn aws_source(binding: &Binding, stored: Option<AwsKeys>) -> AwsSource {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expirations_parse_as_rfc3339() {
        assert!(parse_expiration("2030-01-01T00:00:00Z").is_some());
        assert!(parse_expiration("2030-01-01T00:00:00+02:00").is_some());
        assert!(parse_expiration("tomorrow").is_none());
    }
}
