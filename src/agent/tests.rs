use std::path::PathBuf;

use super::*;
use crate::secrets::registry::{EnvVars, SecretEntry};

fn binding(name: &str, env: EnvVars, dummy: &str) -> Binding {
    SecretEntry {
        name: name.into(),
        hosts: vec!["api.example.com".into()],
        header: "x-api-key".into(),
        format: "{secret}".into(),
        env,
        dummy: dummy.into(),
        methods: None,
        paths: None,
        query: false,
        websocket: false,
        body: None,
        kind: Default::default(),
        oauth2: None,
        github_app: None,
        google: None,
        aws: None,
    }
    .validate()
    .unwrap()
}

fn sample() -> AgentEnv {
    let secrets = vec![
        binding(
            "anthropic",
            EnvVars::One("ANTHROPIC_API_KEY".into()),
            "sk-ant-api03-keygateDummyAAAA",
        ),
        binding(
            "github",
            EnvVars::Many(vec!["GH_TOKEN".into(), "GITHUB_TOKEN".into()]),
            "ghp_keygateDummy0123456789",
        ),
    ];
    agent_env(
        "0.0.0.0:8877".parse().unwrap(),
        None,
        &PathBuf::from("/h/ca/keygate-ca.pem"),
        &PathBuf::from("/h/ca/bundle.pem"),
        &PathBuf::from("/h/phantoms"),
        &secrets,
    )
}

#[test]
fn credential_kinds_give_their_phantoms_and_nothing_real() {
    use crate::secrets::kind::{AwsBlock, GoogleBlock, KindName};
    let recipe = |name: &str| {
        crate::secrets::recipe::find(name, std::path::Path::new("/nonexistent"))
            .unwrap()
            .unwrap()
    };
    let mut aws = recipe("bedrock").entry("bedrock").unwrap();
    aws.aws = Some(AwsBlock {
        secret_access_key: "keygateDummyPhantomSecret0123456789abcdef".into(),
        session_token: Some("IQoJkeygateDummyToken0123456789".into()),
        source: None,
        command: None,
    });
    assert_eq!(aws.kind, KindName::Aws);
    let mut aws = aws.validate().unwrap();
    aws.real = Some(
        SecretValue::new(r#"{"access_key_id":"AKIAREAL","secret_access_key":"realsecret"}"#.into())
            .unwrap(),
    );
    let mut google = recipe("vertex").entry("vertex").unwrap();
    google.google = Some(GoogleBlock::default());
    let google = google.validate().unwrap();
    let env = agent_env(
        "127.0.0.1:8877".parse().unwrap(),
        None,
        &PathBuf::from("/h/ca/keygate-ca.pem"),
        &PathBuf::from("/h/ca/bundle.pem"),
        &PathBuf::from("/s/phantoms"),
        [&aws, &google],
    );
    assert_eq!(env.set["AWS_ACCESS_KEY_ID"], aws.dummy);
    assert!(aws.dummy.starts_with("AKIAKEYGATEDUMMY"));
    assert_eq!(
        env.set["AWS_SECRET_ACCESS_KEY"],
        "keygateDummyPhantomSecret0123456789abcdef"
    );
    assert_eq!(
        env.set["AWS_SESSION_TOKEN"],
        "IQoJkeygateDummyToken0123456789"
    );
    assert_eq!(
        env.set["GOOGLE_APPLICATION_CREDENTIALS"],
        "/s/phantoms/vertex.json"
    );
    let all = format!("{:?}", env.set);
    assert!(
        !all.contains("realsecret") && !all.contains("AKIAREAL"),
        "{all}"
    );
    // A profile would make the SDKs ignore the phantoms; the phantom token stays.
    for var in ["AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SECURITY_TOKEN"] {
        assert!(
            env.unset.contains(&var.to_string()),
            "{var}: {:?}",
            env.unset
        );
    }
    assert!(!env.unset.contains(&"AWS_SESSION_TOKEN".to_string()));

    // Long-term credentials: no phantom token, and any token in the environment goes.
    let mut long_term = aws.clone();
    let crate::secrets::kind::Kind::Aws(block) = &mut long_term.kind else {
        panic!("an aws kind")
    };
    block.session_token = None;
    let env = agent_env(
        "127.0.0.1:8877".parse().unwrap(),
        None,
        &PathBuf::from("/h/ca/keygate-ca.pem"),
        &PathBuf::from("/h/ca/bundle.pem"),
        &PathBuf::from("/s/phantoms"),
        [&long_term],
    );
    assert!(!env.set.contains_key("AWS_SESSION_TOKEN"));
    assert!(env.unset.contains(&"AWS_SESSION_TOKEN".to_string()));
    assert!(env.unset.contains(&"AWS_PROFILE".to_string()));
    let sh = render(&env, Shell::Sh);
    assert!(sh.lines().any(|l| l == "unset AWS_PROFILE"), "{sh}");
}

#[test]
fn the_contract_variables() {
    let env = sample();
    for var in ["HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"] {
        assert_eq!(env.set[var], "http://127.0.0.1:8877", "{var}");
    }
    assert_eq!(env.set["NO_PROXY"], "localhost,127.0.0.1,::1");
    assert_eq!(env.set["no_proxy"], env.set["NO_PROXY"]);
    assert!(!env.set.values().any(|v| v == "*"), "never NO_PROXY=*");
    assert_eq!(env.set["NODE_EXTRA_CA_CERTS"], "/h/ca/keygate-ca.pem");
    assert_eq!(env.set["DENO_CERT"], "/h/ca/keygate-ca.pem");
    assert_eq!(env.set["NODE_USE_ENV_PROXY"], "1");
    for var in BUNDLE_VARS {
        assert_eq!(env.set[*var], "/h/ca/bundle.pem", "{var}");
    }
    assert_eq!(
        env.set["ANTHROPIC_API_KEY"],
        "sk-ant-api03-keygateDummyAAAA"
    );
    assert_eq!(env.set["GH_TOKEN"], env.set["GITHUB_TOKEN"]);
    assert_eq!(env.unset, vec!["SSL_CERT_DIR"]);
    assert!(!env.set.contains_key("SSL_CERT_DIR"));
}

#[test]
fn ipv6_wildcard_and_explicit_addresses() {
    assert_eq!(
        client_address("[::]:1".parse().unwrap()).to_string(),
        "[::1]:1"
    );
    assert_eq!(
        client_address("127.0.0.2:1".parse().unwrap()).to_string(),
        "127.0.0.2:1"
    );
}

#[test]
fn shells() {
    let mut env = sample();
    env.set.insert("ODD".into(), "it's $HOME \"x\"".into());
    let sh = render(&env, Shell::Sh);
    assert!(sh.contains("export HTTPS_PROXY='http://127.0.0.1:8877'\n"));
    assert!(sh.contains(r#"export ODD='it'\''s $HOME "x"'"#));
    assert!(sh.ends_with("unset SSL_CERT_DIR\n"));
    let fish = render(&env, Shell::Fish);
    assert!(fish.contains("set -gx NO_PROXY 'localhost,127.0.0.1,::1'\n"));
    assert!(fish.contains(r"set -gx ODD 'it\'s $HOME "));
    assert!(fish.contains("set -e SSL_CERT_DIR\n"));
    let ps = render(&env, Shell::PowerShell);
    assert!(ps.contains("$env:HTTPS_PROXY = 'http://127.0.0.1:8877'\n"));
    assert!(ps.contains("$env:ODD = 'it''s $HOME \"x\"'"));
    assert!(ps.contains("Remove-Item Env:SSL_CERT_DIR"));
    let dotenv = render(&env, Shell::Dotenv);
    assert!(dotenv.contains("HTTPS_PROXY=http://127.0.0.1:8877\n"));
    assert!(dotenv.contains(r#"ODD="it's \$HOME \"x\"""#));
    assert!(dotenv.contains("# SSL_CERT_DIR must be unset"));
    let json: serde_json::Value = serde_json::from_str(&render(&env, Shell::Json)).unwrap();
    assert_eq!(json["HTTPS_PROXY"], "http://127.0.0.1:8877");
    assert!(json["SSL_CERT_DIR"].is_null());
}

#[test]
fn sh_output_round_trips_through_a_real_shell() {
    let env = sample();
    let script = format!(
        "{}\nprintf '%s|%s|%s' \"$HTTPS_PROXY\" \"$GH_TOKEN\" \"${{SSL_CERT_DIR-unset}}\"",
        render(&env, Shell::Sh)
    );
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(script)
        .env("SSL_CERT_DIR", "/etc/ssl/certs")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "http://127.0.0.1:8877|ghp_keygateDummy0123456789|unset"
    );
}

#[test]
fn leaking_vars_are_found_by_value() {
    let real = SecretValue::new("sk-real-abcdef123456".into()).unwrap();
    let inherited = [
        ("ANTHROPIC_API_KEY", "sk-real-abcdef123456"),
        ("SOME_HEADER", "Bearer sk-real-abcdef123456"),
        ("PATH", "/usr/bin"),
    ];
    assert_eq!(
        leaking_vars(inherited, &[&real]),
        vec!["ANTHROPIC_API_KEY", "SOME_HEADER"]
    );
}

#[test]
fn proxy_url_carries_credentials_when_required() {
    let addr = "192.168.7.1:8877".parse().unwrap();
    assert_eq!(proxy_url(addr, None), "http://192.168.7.1:8877");
    let creds = SecretValue::new("keygate:p@ss:w/rd".into()).unwrap();
    assert_eq!(
        proxy_url(addr, Some(&creds)),
        "http://keygate:p%40ss%3Aw%2Frd@192.168.7.1:8877"
    );
}
