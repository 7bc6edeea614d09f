//! Real clients through the real `keygate` binary (DESIGN "Testing the real thing"):
//! Python requests and httpx, the official anthropic and openai SDKs, Node's fetch and
//! git, each unmodified under `keygate run` with no help but the environment keygate
//! sets, against a fake of its service on 127.0.0.1 (`--resolve HOST:443=...` and
//! `--upstream-ca`: nothing leaves the loopback interface). Each test checks that the
//! upstream got the real key, that the client held and saw only the dummy, and that the
//! real value is in none of the client's output, keygate's trace log and the audit log.
//!
//! The clients come from scripts/setup-test-clients. Without them a test prints a skip
//! note and passes, unless `KEYGATE_TEST_CLIENTS=1` (scripts/test sets it) makes it fail.

use crate::support::bin::Output;
use crate::support::clients::{self, DIR, GIT_COMMIT, REPLY, Sandbox, last_json, show};
use crate::support::secret::unique;

const DEMO_HOST: &str = "api.demo.test";
const DEMO_URL: &str = "https://api.demo.test/v1/demo";

/// The official SDKs as a user calls them: key from the usual variable, default client.
const ANTHROPIC_CALL: &str = "import anthropic
client = anthropic.Anthropic()
print(client.api_key)
print(client.messages.create(model='claude-x', max_tokens=16, messages=[{'role': 'user', 'content': 'hi'}]).content[0].text)";
const OPENAI_CALL: &str = "import openai
client = openai.OpenAI()
print(client.api_key)
print(client.chat.completions.create(model='gpt-x', messages=[{'role': 'user', 'content': 'hi'}]).choices[0].message.content)";

/// Registers a custom secret for the demo host (`Bearer`, `DEMO_KEY`), then runs
/// `command` (demo.py or fetch.mjs) and checks the swap both ways.
fn check_demo_client(label: &str, command: &[&str]) {
    let mut sandbox = Sandbox::new(DEMO_HOST);
    let name = format!("kgtest-demo-{}", unique());
    let fields = [
        "--host",
        DEMO_HOST,
        "--header",
        "authorization",
        "--format",
        "Bearer {secret}",
        "--env",
        "DEMO_KEY",
    ];
    let dummy = sandbox.add_secret(&name, &fields);
    let out = sandbox.run(&[], command);
    assert_eq!(out.code, Some(0), "{}", show(&out));
    let got = last_json(&out);
    assert_eq!(got["status"], 200, "{got}");
    let sent = got["sent"].as_str().unwrap_or_default().to_string();
    assert!(
        is_phantom_of(&sent, &dummy),
        "the client holds the session's phantom of the dummy: {got}"
    );
    assert_eq!(
        got["seen"],
        format!("Bearer {sent}"),
        "the credential the upstream echoes reaches the client as the phantom: {got}"
    );
    let seen = sandbox.service.seen();
    assert_eq!(seen.len(), 1, "{seen:#?}");
    let real = format!("Bearer {}", sandbox.real);
    assert_eq!(seen[0].header("authorization"), [real.as_str()]);
    assert_eq!(seen[0].target, "/v1/demo");
    assert_eq!(sandbox.swaps(&name).len(), 1, "audit: {}", sandbox.audit());
    sandbox.assert_no_leak(label, &out);
}

fn script(name: &str) -> String {
    format!("{DIR}/{name}")
}

/// curl with nothing but keygate's environment (CURL_CA_BUNDLE, the proxy variables),
/// printing the JSON line the other demo clients print.
const CURL_DEMO: &str = r#"out=$(curl -sS --max-time 10 -o /dev/null -D - -w 'status=%{http_code}\n' \
  -H "authorization: Bearer $DEMO_KEY" "$0") || exit
status=$(printf '%s\n' "$out" | sed -n 's/^status=//p')
seen=$(printf '%s\n' "$out" | tr -d '\r' | sed -n 's/^x-seen-authorization: //Ip')
printf '{"sent":"%s","status":%s,"seen":"%s"}\n' "$DEMO_KEY" "$status" "$seen""#;

#[test]
fn curl_sends_the_dummy_and_the_upstream_gets_the_real_key() {
    if clients::curl().is_none() {
        return;
    }
    check_demo_client("curl", &["sh", "-c", CURL_DEMO, DEMO_URL]);
}

#[test]
fn python_requests_sends_the_dummy_and_the_upstream_gets_the_real_key() {
    let Some(python) = clients::python() else {
        return;
    };
    let python = python.to_str().expect("a UTF-8 path");
    check_demo_client(
        "requests",
        &[python, &script("demo.py"), "requests", DEMO_URL],
    );
}

#[test]
fn python_httpx_sends_the_dummy_and_the_upstream_gets_the_real_key() {
    let Some(python) = clients::python() else {
        return;
    };
    let python = python.to_str().expect("a UTF-8 path");
    check_demo_client("httpx", &[python, &script("demo.py"), "httpx", DEMO_URL]);
}

#[test]
fn node_fetch_through_the_proxy_variables() {
    let Some(major) = clients::node() else {
        return;
    };
    let fetch = script("fetch.mjs");
    check_demo_client("node fetch (undici)", &["node", &fetch, "undici", DEMO_URL]);
    if major >= 24 {
        check_demo_client(
            "node fetch (built-in)",
            &["node", &fetch, "builtin", DEMO_URL],
        );
    } else {
        eprintln!(
            "note: node {major} < 24 ignores NODE_USE_ENV_PROXY; built-in fetch without \
             undici's EnvHttpProxyAgent is tested on Node 24+ only"
        );
    }
}

/// True when `held` is a `keygate run` session's phantom of `dummy` (the jail gives the
/// command per-session dummies of the same shape: SPEC §10).
fn is_phantom_of(held: &str, dummy: &str) -> bool {
    held.len() == dummy.len()
        && held != dummy
        && keygate::secrets::phantom::is_phantom(held)
        && held.bytes().zip(dummy.bytes()).take(3).all(|(a, b)| a == b)
}

/// An SDK script's output: the key it held (the phantom of `dummy`), then the reply.
fn check_held_phantom_and_reply(out: &Output, dummy: &str) {
    let mut lines = out.stdout.lines();
    let held = lines.next().unwrap_or_default();
    assert!(is_phantom_of(held, dummy), "{}", show(out));
    assert_eq!(lines.next(), Some(REPLY), "{}", show(out));
    assert_eq!(lines.next(), None, "{}", show(out));
}

/// Runs the anthropic SDK call and checks what it held, got and sent.
fn check_anthropic_sdk(sandbox: &Sandbox, name: &str, dummy: &str) {
    let python = clients::python().expect("checked by the caller");
    let python = python.to_str().expect("a UTF-8 path");
    let out = sandbox.run(&[], &[python, "-c", ANTHROPIC_CALL]);
    assert_eq!(out.code, Some(0), "{}", show(&out));
    check_held_phantom_and_reply(&out, dummy);
    let seen = sandbox.service.seen();
    let [call] = seen.as_slice() else {
        panic!("one request: {seen:#?}")
    };
    assert_eq!(
        (call.method.as_str(), call.target.as_str()),
        ("POST", "/v1/messages")
    );
    // The recipe names x-api-key; the SDK (2.x) sends `Authorization: Bearer` instead.
    // The swap looks in every header, so either way exactly one credential arrives, real.
    let mut credentials = call.header("x-api-key");
    credentials.extend(
        call.header("authorization")
            .into_iter()
            .map(|v| v.strip_prefix("Bearer ").unwrap_or(v)),
    );
    assert_eq!(credentials, [sandbox.real.as_str()], "{call:#?}");
    assert_eq!(sandbox.swaps(name).len(), 1, "audit: {}", sandbox.audit());
    sandbox.assert_no_leak("the anthropic SDK", &out);
}

/// `keygate run -- env` from a parent that holds the real key in `var` and a copy of it
/// elsewhere: the child gets the dummy in `var` and no variable with the real value.
fn check_env_holds_only_the_dummy(sandbox: &Sandbox, var: &str, dummy: &str) {
    let real = sandbox.real.clone();
    let copy = format!("x-api-key: {real}");
    let out = sandbox.run(&[(var, &real), ("KEYGATE_TEST_COPY", &copy)], &["env"]);
    assert_eq!(out.code, Some(0), "{}", show(&out));
    let vars: Vec<(&str, &str)> = out
        .stdout
        .lines()
        .filter_map(|l| l.split_once('='))
        .collect();
    assert!(
        vars.iter()
            .any(|(k, v)| *k == var && is_phantom_of(v, dummy)),
        "{var} is the session's phantom of the dummy: {}",
        out.stdout
    );
    assert!(
        !vars.iter().any(|(k, _)| *k == "KEYGATE_TEST_COPY"),
        "a variable holding the real value is removed"
    );
    assert!(
        out.stderr.contains("KEYGATE_TEST_COPY"),
        "and the removal is explained"
    );
    sandbox.assert_no_leak("`keygate run -- env`", &out);
}

#[test]
fn anthropic_sdk_unmodified_with_the_anthropic_recipe() {
    if clients::python().is_none() {
        return;
    }
    let mut sandbox = Sandbox::new("api.anthropic.com");
    let Some(dummy) = sandbox.add_recipe_secret("anthropic") else {
        return;
    };
    assert!(
        dummy.starts_with("sk-ant-api03-keygateDummy") && dummy.len() == 108,
        "the recipe's dummy keeps the key's shape: {dummy}"
    );
    check_anthropic_sdk(&sandbox, "anthropic", &dummy);
    check_env_holds_only_the_dummy(&sandbox, "ANTHROPIC_API_KEY", &dummy);
}

#[test]
fn anthropic_sdk_with_the_recipe_fields_under_a_unique_name() {
    if clients::python().is_none() {
        return;
    }
    let mut sandbox = Sandbox::new("api.anthropic.com");
    let name = format!("kgtest-anthropic-{}", unique());
    let fields = [
        "--host",
        "api.anthropic.com",
        "--header",
        "x-api-key",
        "--env",
        "ANTHROPIC_API_KEY",
    ];
    let dummy = sandbox.add_secret(&name, &fields);
    check_anthropic_sdk(&sandbox, &name, &dummy);
    check_env_holds_only_the_dummy(&sandbox, "ANTHROPIC_API_KEY", &dummy);
}

#[test]
fn openai_sdk_unmodified_with_the_openai_recipe() {
    let Some(python) = clients::python() else {
        return;
    };
    let mut sandbox = Sandbox::new("api.openai.com");
    let (name, dummy) = sandbox.add_recipe_copy("openai", include_str!("../../addons/openai.yaml"));
    assert!(dummy.starts_with("sk-proj-keygateDummy") && dummy.len() == 164);
    let python = python.to_str().expect("a UTF-8 path");
    let out = sandbox.run(&[], &[python, "-c", OPENAI_CALL]);
    assert_eq!(out.code, Some(0), "{}", show(&out));
    check_held_phantom_and_reply(&out, &dummy);
    let seen = sandbox.service.seen();
    let [call] = seen.as_slice() else {
        panic!("one request: {seen:#?}")
    };
    assert_eq!(
        (call.method.as_str(), call.target.as_str()),
        ("POST", "/v1/chat/completions")
    );
    let real = format!("Bearer {}", sandbox.real);
    assert_eq!(call.header("authorization"), [real.as_str()]);
    assert_eq!(sandbox.swaps(&name).len(), 1, "audit: {}", sandbox.audit());
    sandbox.assert_no_leak("the openai SDK", &out);
}

/// A git configuration for one test: a credential helper that answers with
/// `x-access-token` and `$GH_TOKEN`, as `gh auth git-credential` does.
const GITCONFIG: &str = r#"[credential]
	helper = "!f() { if test \"$1\" = get; then printf 'username=x-access-token\\npassword=%s\\n' \"$GH_TOKEN\"; fi; }; f"
"#;

fn git_ls_remote(sandbox: &Sandbox) -> Output {
    // Not in $KEYGATE_HOME, nor in /tmp: the jail hides the one and has a /tmp of its
    // own. The target directory is inside the (writable, visible) current directory.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("git config dir");
    let config = dir.path().join("gitconfig");
    std::fs::write(&config, GITCONFIG).expect("gitconfig");
    let config = config.to_str().expect("a UTF-8 path");
    let env = [
        ("GIT_CONFIG_GLOBAL", config),
        ("GIT_CONFIG_NOSYSTEM", "1"),
        ("GIT_TERMINAL_PROMPT", "0"),
    ];
    let url = "https://github.com/owner/repo.git";
    sandbox.run(&env, &["git", "ls-remote", url])
}

#[test]
fn git_ls_remote_with_a_dummy_github_token_in_basic_credentials() {
    if clients::git().is_none() {
        return;
    }
    let mut sandbox = Sandbox::new("github.com");
    let (name, dummy) = sandbox.add_recipe_copy("github", include_str!("../../addons/github.yaml"));
    assert!(dummy.starts_with("ghp_keygateDummy") && dummy.len() == 40);
    let out = git_ls_remote(&sandbox);
    assert_eq!(out.code, Some(0), "{}", show(&out));
    assert!(
        out.stdout
            .contains(&format!("{GIT_COMMIT}\trefs/heads/main")),
        "{}",
        show(&out)
    );
    let seen = sandbox.service.seen();
    let [first, second] = seen.as_slice() else {
        panic!("a challenge, then the authenticated request: {seen:#?}")
    };
    let refs = "/owner/repo.git/info/refs?service=git-upload-pack";
    assert_eq!(
        (first.target.as_str(), second.target.as_str()),
        (refs, refs)
    );
    assert!(first.header("authorization").is_empty(), "{first:#?}");
    let basic = second.header("authorization");
    let [basic] = basic.as_slice() else {
        panic!("one credential: {second:#?}")
    };
    let creds = basic
        .strip_prefix("Basic ")
        .and_then(|b| {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.decode(b).ok()
        })
        .expect("Basic credentials");
    assert_eq!(
        String::from_utf8_lossy(&creds),
        format!("x-access-token:{}", sandbox.real),
        "the real token, inside Basic"
    );
    assert_eq!(sandbox.swaps(&name).len(), 1, "audit: {}", sandbox.audit());
    sandbox.assert_no_leak("git", &out);
}
