//! Issue 15 through the real binary: `keygate secret add` for each credential kind
//! (recipes bedrock, vertex, github-app, oauth2; `--from-file`, the kind flags, a
//! credential command), what `secret list` and `keygate env` show, and that no real
//! material reaches any output, the registry or the environment. Keyring: keyutils.

use std::path::Path;

use keygate::credentials::key::SigningKey;
use keygate::secrets::{SecretStore, keyring};
use serde_json::{Value, json};

use crate::support::bin::{self, KeyutilsEntry, Output};
use crate::support::secret::unique;

fn name(prefix: &str) -> String {
    use std::hash::{BuildHasher, RandomState};
    format!(
        "{prefix}-{:06x}",
        RandomState::new().hash_one(unique()) & 0xff_ffff
    )
}

fn keygate(home: &Path, args: &[&str]) -> Output {
    bin::run(bin::keygate_keyutils(home, args))
}

fn stored(name: &str) -> Option<String> {
    keyring::open(Some("keyutils"))
        .expect("keyutils")
        .get(name)
        .expect("read the keyring")
        .map(|v| v.expose().to_string())
}

fn env_json(home: &Path) -> Value {
    let out = keygate(home, &["env", "--shell", "json"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    serde_json::from_str(&out.stdout).expect("env --shell json")
}

fn listed(home: &Path, name: &str) -> Value {
    let out = keygate(home, &["secret", "list", "--json"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let all: Value = serde_json::from_str(&out.stdout).unwrap();
    all.as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .cloned()
        .expect("listed")
}

fn assert_nowhere(real: &str, outputs: &[&Output], home: &Path) {
    for out in outputs {
        assert!(!out.stdout.contains(real), "stdout holds a real value");
        assert!(!out.stderr.contains(real), "stderr holds a real value");
    }
    let registry = std::fs::read_to_string(home.join("secrets.yaml")).unwrap();
    assert!(!registry.contains(real), "secrets.yaml holds a real value");
}

#[test]
fn bedrock_credentials_with_a_session_token_give_the_agent_three_phantoms() {
    let home = tempfile::tempdir().unwrap();
    let secret = name("bedrock");
    let _entry = KeyutilsEntry(secret.clone());
    let real_secret = format!("realSecretKey/{}+abc", unique());
    let real_token = format!("realSessionToken{}", unique());
    let file = home.path().join("creds.json");
    // As `aws configure export-credentials --format process` prints them.
    std::fs::write(
        &file,
        serde_json::to_string_pretty(&json!({
            "Version": 1,
            "AccessKeyId": "ASIAREALREALREAL0001",
            "SecretAccessKey": real_secret,
            "SessionToken": real_token,
        }))
        .unwrap(),
    )
    .unwrap();
    let add = keygate(
        home.path(),
        &[
            "secret",
            "add",
            &secret,
            "--recipe",
            "bedrock",
            "--from-file",
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(add.code, Some(0), "{add:?}");
    let dummy = add.stdout.trim();
    assert!(dummy.starts_with("ASIAKEYGATEDUMMY"), "{dummy}");
    let kept: Value = serde_json::from_str(&stored(&secret).unwrap()).unwrap();
    assert_eq!(kept["access_key_id"], "ASIAREALREALREAL0001");
    assert_eq!(kept["secret_access_key"], real_secret.as_str());
    let env = env_json(home.path());
    assert_eq!(env["AWS_ACCESS_KEY_ID"], dummy);
    let phantom_secret = env["AWS_SECRET_ACCESS_KEY"].as_str().unwrap();
    let phantom_token = env["AWS_SESSION_TOKEN"].as_str().unwrap();
    assert_ne!(phantom_secret, real_secret);
    assert_ne!(phantom_token, real_token);
    let registry = std::fs::read_to_string(home.path().join("secrets.yaml")).unwrap();
    assert!(registry.contains("kind: aws"), "{registry}");
    assert!(
        registry.contains(phantom_secret),
        "the phantom secret is registered"
    );
    let entry = listed(home.path(), &secret);
    assert_eq!(entry["kind"], "aws");
    assert_eq!(entry["stored"], true);
    let list = keygate(home.path(), &["secret", "list", "--long"]);
    assert!(list.stdout.contains("yes, aws"), "{list:?}");
    let env_out = keygate(home.path(), &["env"]);
    for real in [&real_secret, &real_token, "ASIAREALREALREAL0001"] {
        assert_nowhere(real, &[&add, &list, &env_out], home.path());
    }
}

#[test]
fn aws_credentials_from_a_command_store_nothing() {
    let home = tempfile::tempdir().unwrap();
    let secret = name("aws-sso");
    let _entry = KeyutilsEntry(secret.clone());
    let add = keygate(
        home.path(),
        &[
            "secret",
            "add",
            &secret,
            "--recipe",
            "aws",
            "--aws-command",
            "aws configure export-credentials --profile 'my dev' --format process",
        ],
    );
    assert_eq!(add.code, Some(0), "{add:?}");
    assert!(stored(&secret).is_none(), "nothing in the keyring");
    // A value besides the command would sit unused in the keyring: refused.
    let both = keygate(
        home.path(),
        &[
            "secret",
            "add",
            &secret,
            "--aws-command",
            "aws x",
            "--from-env",
            "HOME",
        ],
    );
    assert_eq!(both.code, Some(2), "{both:?}");
    assert!(both.stderr.contains("cannot be used with"), "{both:?}");
    assert!(stored(&secret).is_none(), "still nothing in the keyring");
    // Split as a shell would: the quoted profile name is one argument.
    let registry = std::fs::read_to_string(home.path().join("secrets.yaml")).unwrap();
    assert!(
        registry.lines().any(|l| l.trim() == "- my dev"),
        "{registry}"
    );
    let entry = listed(home.path(), &secret);
    assert_eq!(entry["command"], "aws");
    let list = keygate(home.path(), &["secret", "list", "--long"]);
    assert!(list.stdout.contains("command, aws"), "{list:?}");
    // `keygate check` accepts it, and a start would not call it missing.
    let check = keygate(home.path(), &["check"]);
    assert_eq!(check.code, Some(0), "{check:?}");
}

#[test]
fn a_service_account_gets_a_phantom_key_file_and_the_real_one_stays_in_the_keyring() {
    let home = tempfile::tempdir().unwrap();
    let secret = name("vertex");
    let _entry = KeyutilsEntry(secret.clone());
    let key = SigningKey::generate_rsa2048().unwrap();
    let pem = key.to_pkcs8_pem().unwrap();
    let file = home.path().join("sa.json");
    std::fs::write(
        &file,
        serde_json::to_string_pretty(&json!({
            "type": "service_account",
            "project_id": "proj",
            "private_key_id": "realkeyid0123",
            "private_key": pem.as_str(),
            "client_email": "agent@proj.iam.gserviceaccount.com",
            "token_uri": "https://oauth2.googleapis.com/token",
        }))
        .unwrap(),
    )
    .unwrap();
    let add = keygate(
        home.path(),
        &[
            "secret",
            "add",
            &secret,
            "--recipe",
            "vertex",
            "--from-file",
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(add.code, Some(0), "{add:?}");
    let phantom_path = home.path().join("phantoms").join(format!("{secret}.json"));
    let phantom: Value =
        serde_json::from_str(&std::fs::read_to_string(&phantom_path).unwrap()).unwrap();
    assert_eq!(
        phantom["client_email"],
        "agent@proj.iam.gserviceaccount.com"
    );
    assert_ne!(phantom["private_key"], pem.as_str());
    assert_ne!(phantom["private_key_id"], "realkeyid0123");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&phantom_path)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "the phantom file is owner-only");
    }
    let kept: Value = serde_json::from_str(&stored(&secret).unwrap()).unwrap();
    assert_eq!(kept["private_key"], pem.as_str());
    let env = env_json(home.path());
    assert_eq!(
        env["GOOGLE_APPLICATION_CREDENTIALS"],
        phantom_path.display().to_string()
    );
    let entry = listed(home.path(), &secret);
    assert_eq!(entry["kind"], "google");
    assert_eq!(entry["token_expires_at"], Value::Null);
    // A running keygate notes each minted token's expiry; list shows it, never a token.
    std::fs::write(
        home.path().join("tokens.json"),
        json!({ secret.as_str(): {"expires_at": "2030-01-01T00:00:00Z", "minted_at": "2029-12-31T23:00:00Z"} })
            .to_string(),
    )
    .unwrap();
    let entry = listed(home.path(), &secret);
    assert_eq!(entry["token_expires_at"], "2030-01-01T00:00:00Z");
    let list = keygate(home.path(), &["secret", "list", "--long"]);
    assert!(
        list.stdout.contains("token until 2030-01-01T00:00:00Z"),
        "{list:?}"
    );
    let body = pem.lines().nth(3).unwrap().to_string();
    assert_nowhere(&body, &[&add, &list], home.path());
    let rm = keygate(home.path(), &["secret", "rm", &secret]);
    assert_eq!(rm.code, Some(0), "{rm:?}");
    assert!(!phantom_path.exists(), "rm removes the phantom file");
}

#[test]
fn a_github_app_needs_its_ids_and_its_private_key() {
    let home = tempfile::tempdir().unwrap();
    let secret = name("ghapp");
    let _entry = KeyutilsEntry(secret.clone());
    let key = SigningKey::generate_rsa2048().unwrap();
    let pem_file = home.path().join("app.pem");
    std::fs::write(&pem_file, key.to_pkcs8_pem().unwrap().as_bytes()).unwrap();
    let pem_path = pem_file.to_str().unwrap();
    let missing = keygate(
        home.path(),
        &[
            "secret",
            "add",
            &secret,
            "--recipe",
            "github-app",
            "--from-file",
            pem_path,
        ],
    );
    assert_eq!(missing.code, Some(2), "{missing:?}");
    assert!(missing.stderr.contains("--app-id"), "{missing:?}");
    let not_a_key = home.path().join("not-a-key.pem");
    std::fs::write(&not_a_key, "hunter2-not-a-key\n").unwrap();
    let bad = keygate(
        home.path(),
        &[
            "secret",
            "add",
            &secret,
            "--recipe",
            "github-app",
            "--app-id",
            "42",
            "--installation-id",
            "7",
            "--from-file",
            not_a_key.to_str().unwrap(),
        ],
    );
    assert_eq!(bad.code, Some(2), "{bad:?}");
    assert!(bad.stderr.contains("private key"), "{bad:?}");
    assert!(
        !bad.stderr.contains("hunter2"),
        "the error quotes the value"
    );
    let add = keygate(
        home.path(),
        &[
            "secret",
            "add",
            &secret,
            "--recipe",
            "github-app",
            "--app-id",
            "42",
            "--installation-id",
            "7",
            "--from-file",
            pem_path,
        ],
    );
    assert_eq!(add.code, Some(0), "{add:?}");
    assert!(add.stdout.trim().starts_with("ghs_keygateDummy"), "{add:?}");
    let entry = listed(home.path(), &secret);
    assert_eq!(entry["kind"], "github-app");
    let env = env_json(home.path());
    assert_eq!(env["GH_TOKEN"], add.stdout.trim());
}

#[test]
fn an_oauth2_template_says_which_flags_it_needs() {
    let home = tempfile::tempdir().unwrap();
    let secret = name("corp");
    let _entry = KeyutilsEntry(secret.clone());
    let bare = keygate(
        home.path(),
        &["secret", "add", &secret, "--recipe", "oauth2"],
    );
    assert_eq!(bare.code, Some(2), "{bare:?}");
    for flag in ["--token-url", "--client-id", "--host"] {
        assert!(bare.stderr.contains(flag), "{flag}: {bare:?}");
    }
    let wrong = keygate(
        home.path(),
        &[
            "secret",
            "add",
            &secret,
            "--host",
            "api.corp.test",
            "--app-id",
            "1",
        ],
    );
    assert_eq!(wrong.code, Some(2), "{wrong:?}");
    assert!(wrong.stderr.contains("--kind github-app"), "{wrong:?}");
    let real = format!("client-secret-{}", unique());
    let mut cmd = bin::keygate_keyutils(
        home.path(),
        &[
            "secret",
            "add",
            &secret,
            "--recipe",
            "oauth2",
            "--host",
            "api.corp.test",
            "--token-url",
            "https://auth.corp.test/oauth/token",
            "--client-id",
            "my-client",
            "--scope",
            "read",
            "--scope",
            "write",
            "--from-env",
            "CORP_SECRET",
        ],
    );
    cmd.env("CORP_SECRET", &real);
    let add = bin::run(cmd);
    assert_eq!(add.code, Some(0), "{add:?}");
    assert_eq!(stored(&secret).as_deref(), Some(real.as_str()));
    let registry = std::fs::read_to_string(home.path().join("secrets.yaml")).unwrap();
    assert!(
        registry.contains("token_url: https://auth.corp.test/oauth/token"),
        "{registry}"
    );
    let entry = listed(home.path(), &secret);
    assert_eq!(entry["kind"], "oauth2");
    let list = keygate(home.path(), &["secret", "list", "--long"]);
    assert!(
        list.stdout.contains("yes, oauth2, no token yet"),
        "{list:?}"
    );
    assert_nowhere(&real, &[&add, &list], home.path());
}
