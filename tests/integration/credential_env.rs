//! Issue 15: what `keygate run` leaves in the child's environment when a secret is of a
//! kind whose stored value holds several real strings. The check of SPEC §7 ("every
//! variable whose value equals a stored secret value") looks for each of them: an AWS
//! secret key or session token, an OAuth2 refresh token or client secret in JSON. And an
//! `aws` secret takes away what would make the SDKs ignore its phantoms (`AWS_PROFILE`)
//! or send a real token beside them (`AWS_SESSION_TOKEN` when it has no phantom one).
//! Unjailed and, where bubblewrap runs, jailed. Also: an OAuth2 refresh token in JSON is
//! checked at `secret add` (the proxy reads only that shape) and kept on one line.

use std::path::Path;
use std::process::{Command, Stdio};

use keygate::secrets::SecretStore as _;
use serde_json::json;

use crate::support::bin::{self, KeyutilsEntry, Output};
use crate::support::secret::unique;

fn add(home: &Path, name: &str, args: &[&str], value: &str) -> String {
    let out = try_add(home, name, args, value);
    assert_eq!(out.code, Some(0), "{out:?}");
    out.stdout.lines().last().expect("the dummy").to_string()
}

fn try_add(home: &Path, name: &str, args: &[&str], value: &str) -> Output {
    let mut all = vec!["secret", "add", name];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--from-env", "REAL_VALUE"]);
    let mut cmd = bin::keygate_keyutils(home, &all);
    cmd.env("REAL_VALUE", value);
    bin::run(cmd)
}

/// `keygate run [--no-jail] -- env` with `inherited` in keygate's own environment.
fn child_env(home: &Path, jailed: bool, inherited: &[(&str, &str)]) -> Output {
    let mut args = vec!["run"];
    if !jailed {
        args.push("--no-jail");
    }
    args.extend_from_slice(&["--", "env"]);
    let mut cmd = bin::keygate_keyutils(home, &args);
    cmd.envs(inherited.iter().copied());
    let out = bin::run(cmd);
    assert_eq!(out.code, Some(0), "{out:?}");
    out
}

fn var<'a>(out: &'a Output, name: &str) -> Option<&'a str> {
    out.stdout
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
}

fn jail_runs() -> bool {
    let ok = Command::new("bwrap")
        .args(["--unshare-all", "--ro-bind", "/", "/", "true"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok || !std::env::var("KEYGATE_TEST_JAIL").is_ok_and(|v| v == "1"),
        "KEYGATE_TEST_JAIL=1 but bubblewrap cannot build a jail here"
    );
    if !ok {
        eprintln!("skipping the jailed run: bubblewrap cannot build a jail here");
    }
    ok
}

#[test]
fn run_keeps_every_real_aws_string_and_the_profile_away_from_the_child() {
    let home = bin::home_listening_on(bin::free_port());
    let name = format!("kg-awsenv-{}", unique());
    let _entry = KeyutilsEntry(name.clone());
    let real_id = format!("AKIAREAL{}", unique().to_uppercase());
    let real_secret = format!("realSecretKey/{}+abc", unique());
    // Long-term credentials: the agent gets no phantom session token.
    let creds = json!({"access_key_id": real_id, "secret_access_key": real_secret});
    let dummy = add(
        home.path(),
        &name,
        &["--recipe", "bedrock"],
        &creds.to_string(),
    );
    let other_token = format!("otherRealSessionToken{}", unique());
    let inherited = [
        ("AWS_ACCESS_KEY_ID", real_id.as_str()),
        ("AWS_SECRET_ACCESS_KEY", &real_secret),
        ("SAVED_AWS_SECRET", &real_secret),
        ("AWS_SESSION_TOKEN", &other_token),
        ("AWS_SECURITY_TOKEN", &other_token),
        ("AWS_PROFILE", "dev"),
        ("AWS_DEFAULT_PROFILE", "dev"),
        ("UNRELATED", "kept"),
    ];
    let mut runs = vec![false];
    if jail_runs() {
        runs.push(true);
    }
    for jailed in runs {
        let out = child_env(home.path(), jailed, &inherited);
        for real in [&real_id, &real_secret, &other_token] {
            assert!(
                !out.stdout.contains(real.as_str()),
                "jailed {jailed}: a real string reached the child"
            );
            assert!(
                !out.stderr.contains(real.as_str()),
                "jailed {jailed}: stderr holds a real string"
            );
        }
        let phantom_id = var(&out, "AWS_ACCESS_KEY_ID").expect("the phantom key id");
        match jailed {
            false => assert_eq!(phantom_id, dummy),
            true => assert!(
                phantom_id.starts_with("AKIA") && phantom_id != dummy,
                "{phantom_id}"
            ),
        }
        assert!(var(&out, "AWS_SECRET_ACCESS_KEY").is_some_and(|s| s != real_secret));
        for gone in [
            "SAVED_AWS_SECRET",
            "AWS_SESSION_TOKEN",
            "AWS_SECURITY_TOKEN",
            "AWS_PROFILE",
            "AWS_DEFAULT_PROFILE",
        ] {
            assert_eq!(
                var(&out, gone),
                None,
                "jailed {jailed}: {gone} reached the child"
            );
        }
        assert_eq!(var(&out, "UNRELATED"), Some("kept"));
        assert!(
            out.stderr.contains("SAVED_AWS_SECRET"),
            "the removal is explained: {}",
            out.stderr
        );
    }
}

#[test]
fn an_oauth2_json_value_is_checked_kept_on_one_line_and_its_parts_kept_from_the_child() {
    let home = bin::home_listening_on(bin::free_port());
    let name = format!("kg-oauthenv-{}", unique());
    let _entry = KeyutilsEntry(name.clone());
    let refresh = format!("1//realRefresh{}", unique());
    let client_secret = format!("realClientSecret{}", unique());
    let args = [
        "--recipe",
        "oauth2",
        "--host",
        "api.corp.test",
        "--token-url",
        "https://auth.corp.test/token",
        "--client-id",
        "c",
        "--grant",
        "refresh-token",
        "--env",
        "CORP_TOKEN",
    ];
    // A shape the proxy could not read is refused at once, quoting nothing.
    let bad = json!({"refreshToken": refresh}).to_string();
    let out = try_add(home.path(), &name, &args, &bad);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("\"refresh_token\""), "{}", out.stderr);
    assert!(!out.stderr.contains(&refresh) && !out.stdout.contains(&refresh));
    // Pretty-printed JSON (several lines) is stored on one line.
    let value = json!({"refresh_token": refresh, "client_secret": client_secret});
    add(
        home.path(),
        &name,
        &args,
        &serde_json::to_string_pretty(&value).unwrap(),
    );
    let stored = keygate::secrets::keyring::open(Some("keyutils"))
        .unwrap()
        .get(&name)
        .unwrap()
        .expect("stored");
    let kept: serde_json::Value = serde_json::from_str(stored.expose()).unwrap();
    assert_eq!(kept, value);
    let inherited = [
        ("CORP_REFRESH_TOKEN", refresh.as_str()),
        ("CORP_CLIENT_SECRET", &client_secret),
    ];
    let out = child_env(home.path(), false, &inherited);
    for real in [&refresh, &client_secret] {
        assert!(
            !out.stdout.contains(real.as_str()),
            "a real string reached the child"
        );
    }
    assert_eq!(var(&out, "CORP_REFRESH_TOKEN"), None);
    assert_eq!(var(&out, "CORP_CLIENT_SECRET"), None);
    assert!(var(&out, "CORP_TOKEN").is_some());
}

#[test]
fn a_missing_google_phantom_file_is_a_warning_for_env_and_a_failure_for_doctor() {
    let home = bin::home_listening_on(bin::free_port());
    let name = format!("kg-gmissing-{}", unique());
    let _entry = KeyutilsEntry(name.clone());
    let key = keygate::credentials::key::SigningKey::generate_rsa2048().unwrap();
    let account = json!({
        "type": "service_account",
        "private_key": key.to_pkcs8_pem().unwrap().to_string(),
        "client_email": "agent@kg-test.iam.gserviceaccount.com",
    });
    add(
        home.path(),
        &name,
        &["--recipe", "vertex"],
        &account.to_string(),
    );
    let phantom = home.path().join("phantoms").join(format!("{name}.json"));
    assert!(phantom.exists());
    let env = bin::run(bin::keygate_keyutils(home.path(), &["env"]));
    assert_eq!(env.code, Some(0), "{env:?}");
    assert!(
        !env.stderr.contains("phantom service-account"),
        "{}",
        env.stderr
    );

    std::fs::remove_file(&phantom).unwrap();
    let env = bin::run(bin::keygate_keyutils(home.path(), &["env"]));
    assert_eq!(env.code, Some(0), "{env:?}");
    let warning = env
        .stderr
        .lines()
        .find(|l| l.contains("no phantom service-account file"))
        .unwrap_or_else(|| panic!("no warning: {}", env.stderr));
    assert!(
        warning.contains(&name) && warning.contains("keygate secret add"),
        "{warning}"
    );
    let doctor = bin::run(bin::keygate_keyutils(home.path(), &["doctor"]));
    assert_eq!(doctor.code, Some(1), "{doctor:?}");
    assert!(
        doctor
            .stdout
            .lines()
            .any(|l| l.starts_with("[FAIL] secret") && l.contains(&name) && l.contains("phantom")),
        "{}",
        doctor.stdout
    );
}

#[test]
fn a_jailed_run_gets_a_phantom_account_of_its_own() {
    if !jail_runs() {
        return;
    }
    let home = bin::home_listening_on(bin::free_port());
    let name = format!("kg-gsession-{}", unique());
    let _entry = KeyutilsEntry(name.clone());
    let key = keygate::credentials::key::SigningKey::generate_rsa2048().unwrap();
    let real_pem = key.to_pkcs8_pem().unwrap().to_string();
    let account = json!({
        "type": "service_account",
        "private_key": real_pem,
        "client_email": "agent@kg-test.iam.gserviceaccount.com",
    });
    add(
        home.path(),
        &name,
        &["--recipe", "vertex"],
        &account.to_string(),
    );
    let read = |path: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    };
    let home_phantom = read(&home.path().join("phantoms").join(format!("{name}.json")));
    let script = "cat \"$GOOGLE_APPLICATION_CREDENTIALS\"";
    let mut sessions = Vec::new();
    for _ in 0..2 {
        let out = bin::run(bin::keygate_keyutils(
            home.path(),
            &["run", "--", "sh", "-c", script],
        ));
        assert_eq!(out.code, Some(0), "{out:?}");
        let session: serde_json::Value = serde_json::from_str(&out.stdout).expect("the file");
        assert_eq!(session["client_email"], account["client_email"]);
        sessions.push(session);
    }
    let key_of = |v: &serde_json::Value| v["private_key"].as_str().unwrap().to_string();
    // (assert!, not assert_ne!: a failure prints no key.)
    for session in &sessions {
        assert!(
            key_of(session) != key_of(&home_phantom),
            "the home's phantom key"
        );
        assert!(key_of(session) != real_pem, "the real key");
        assert!(session["private_key_id"] != home_phantom["private_key_id"]);
    }
    assert!(
        key_of(&sessions[0]) != key_of(&sessions[1]),
        "each session its own"
    );
    assert!(
        !home.path().join("sessions").exists()
            || std::fs::read_dir(home.path().join("sessions"))
                .unwrap()
                .next()
                .is_none(),
        "the session's files go with it"
    );
}
