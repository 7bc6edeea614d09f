//! Issue 15 with the real clients: boto3 (`converse`, `converse_stream`, S3) holding only
//! phantom AWS credentials, and google-auth holding only the phantom service-account
//! file, through the in-process keygate, against tests/support/fake_cloud.py (a Python
//! fake on 127.0.0.1 that verifies SigV4 with botocore's signer and the real keys, and
//! JWTs with the real service account's public key; docs: tests/support/FAKE_CLOUD.md).
//! The fake refuses any request that carries a phantom (`phantom-leak`).

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use keygate::credentials::key::SigningKey;
use keygate::secrets::kind::{AwsBlock, GoogleBlock, KindName};
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::support::clients::{self, DIR};
use crate::support::leak::{ClientSaw, assert_no_leak};
use crate::support::pki::TestPki;
use crate::support::proxy::{ProxyBuilder, TestProxy};
use crate::support::secret::{TestSecret, unique};

const BEDROCK: &str = "bedrock-runtime.us-east-1.amazonaws.com";
const BUCKET: &str = "kg-bucket";
const BUCKET_HOST: &str = "kg-bucket.s3.amazonaws.com";
const GTOKEN: &str = "oauth2.googleapis.com";
const VERTEX: &str = "us-central1-aiplatform.googleapis.com";

/// The venv's Python with boto3 and google-auth, or a skip (a failure when the clients
/// are required).
fn python() -> Option<PathBuf> {
    let python = clients::python()?;
    let found = Command::new(&python)
        .args(["-c", "import boto3, botocore, google.auth, cryptography"])
        .env_clear()
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found || !clients::required(),
        "KEYGATE_TEST_CLIENTS=1 but boto3/google-auth are missing from tests/clients/.venv; run scripts/setup-test-clients"
    );
    if !found {
        eprintln!(
            "skipping: boto3/google-auth not in tests/clients/.venv (scripts/setup-test-clients)"
        );
    }
    found.then_some(python)
}

/// tests/support/fake_cloud.py, running; killed when dropped.
struct FakeCloud {
    child: Child,
    port: u16,
    control: u16,
}

impl FakeCloud {
    fn start(
        python: &Path,
        pki: &TestPki,
        dir: &Path,
        names: &[&str],
        config: &Value,
    ) -> FakeCloud {
        let (chain, key) = pki.write_leaf(dir, names);
        let config_file = dir.join("fake-cloud.json");
        std::fs::write(&config_file, config.to_string()).unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/fake_cloud.py");
        let mut child = Command::new(python)
            .arg(script)
            .arg("--cert")
            .arg(&chain)
            .arg("--key")
            .arg(&key)
            .arg("--config")
            .arg(&config_file)
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start fake_cloud.py");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let ready: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("fake_cloud.py ready line {line:?}: {e}"));
        FakeCloud {
            child,
            port: ready["port"].as_u64().unwrap() as u16,
            control: ready["control_port"].as_u64().unwrap() as u16,
        }
    }

    fn addr(&self) -> std::net::SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }

    fn get(&self, path: &str) -> Value {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.control)).unwrap();
        write!(stream, "GET {path} HTTP/1.0\r\nHost: control\r\n\r\n").unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).unwrap();
        let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{path}: {e}: {text}"))
    }

    fn seen(&self) -> Vec<Value> {
        self.get("/__seen").as_array().unwrap().clone()
    }
}

impl Drop for FakeCloud {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn proxy(
    pki: &TestPki,
    dir: &TempDir,
    fake: &FakeCloud,
    names: &[&str],
    configure: impl FnOnce(ProxyBuilder) -> ProxyBuilder,
) -> TestProxy {
    let root = pki.write_root(dir.path());
    let mut builder = ProxyBuilder::new().upstream_ca(&root);
    for name in names {
        builder = builder.resolve(&format!("{name}:443"), fake.addr());
    }
    configure(builder).start().await
}

/// Runs a client script with only what a test gives it (and PATH, a throw-away HOME).
async fn run_client(
    python: &Path,
    script: &str,
    args: &[&str],
    env: &[(&str, String)],
    home: &Path,
) -> (bool, Vec<Value>, String) {
    let mut cmd = tokio::process::Command::new(python);
    cmd.arg(Path::new(DIR).join(script))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), cmd.output())
        .await
        .expect("the client finished within 60 s")
        .expect("run the client");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let text = format!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    (out.status.success(), lines, text)
}

/// Real and phantom AWS keys, and the secret that binds them to Bedrock and the bucket.
struct Aws {
    secret: TestSecret,
    real_id: String,
    real_secret: String,
    phantom_id: String,
    phantom_secret: String,
}

fn aws() -> Aws {
    let tag = unique().to_uppercase();
    let phantom_id = format!(
        "AKIAKEYGATEDUMMY{:Q>24}",
        &tag[tag.len().saturating_sub(24)..]
    );
    let phantom_secret = format!("keygateDummy{}", unique());
    let real_id = "AKIAREALREALREAL0042".to_string();
    let real_secret = format!("realSecret/{}+k", unique());
    let stored = json!({"access_key_id": real_id, "secret_access_key": real_secret}).to_string();
    let (pid, psecret) = (phantom_id.clone(), phantom_secret.clone());
    let secret = TestSecret::new("bedrock", &[BEDROCK, BUCKET_HOST])
        .real_exact(&stored)
        .with(move |e| {
            e.kind = KindName::Aws;
            e.dummy = pid;
            e.aws = Some(AwsBlock {
                secret_access_key: psecret,
                session_token: None,
                source: None,
                command: None,
            });
        });
    Aws {
        secret,
        real_id,
        real_secret,
        phantom_id,
        phantom_secret,
    }
}

fn aws_env(proxy: &TestProxy, aws: &Aws) -> Vec<(&'static str, String)> {
    vec![
        ("HTTPS_PROXY", format!("http://{}", proxy.addr)),
        ("AWS_CA_BUNDLE", proxy.ca().pem_path().display().to_string()),
        ("AWS_ACCESS_KEY_ID", aws.phantom_id.clone()),
        ("AWS_SECRET_ACCESS_KEY", aws.phantom_secret.clone()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ("AWS_CONFIG_FILE", "/dev/null".into()),
        ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null".into()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_converse_and_converse_stream_with_phantom_credentials_stream_through() {
    let Some(python) = python() else { return };
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let aws = aws();
    let config = json!({
        "phantoms": [aws.phantom_id, aws.phantom_secret],
        "aws": {"access_key_id": aws.real_id, "secret_access_key": aws.real_secret},
        "bedrock": {"text": "one two three four five", "stream_deltas": 5, "stream_delay_ms": 300},
    });
    let fake = FakeCloud::start(&python, &pki, dir.path(), &[BEDROCK], &config);
    let proxy = proxy(&pki, &dir, &fake, &[BEDROCK], |b| b.secret(&aws.secret)).await;
    let env = aws_env(&proxy, &aws);
    let mut saw = ClientSaw::default();

    let (ok, lines, text) =
        run_client(&python, "bedrock.py", &["converse"], &env, dir.path()).await;
    saw.text(text.clone());
    assert!(ok, "{text}\nfake saw: {:#?}", fake.seen());
    assert_eq!(lines.last().unwrap()["text"], "one two three four five");

    let (ok, lines, text) = run_client(
        &python,
        "bedrock.py",
        &["converse-stream"],
        &env,
        dir.path(),
    )
    .await;
    saw.text(text.clone());
    assert!(ok, "{text}\nfake saw: {:#?}", fake.seen());
    assert_eq!(lines.last().unwrap()["text"], "one two three four five");
    // Streamed, not buffered: the client had the first delta before the fake sent the
    // last one (both clocks are this machine's monotonic clock).
    let first_delta = lines
        .iter()
        .find(|l| l["event"] == "contentBlockDelta")
        .and_then(|l| l["t"].as_f64())
        .expect("a delta");
    let seen = fake.seen();
    let stream = seen
        .iter()
        .find(|s| s["stream"] == true)
        .expect("the stream request");
    let last_sent = stream["events_sent_at"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e[0] == "contentBlockDelta")
        .filter_map(|e| e[1].as_f64())
        .fold(0.0, f64::max);
    assert!(
        first_delta < last_sent,
        "the first delta reached boto3 at {first_delta}, after the fake sent the last at {last_sent}"
    );
    // What reached "AWS": signed with the real key id, no phantom anywhere.
    for request in &seen {
        assert_eq!(request["verdict"], "ok", "{request:#}");
        let authorization = request["headers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h[0].as_str().unwrap().eq_ignore_ascii_case("authorization"))
            .unwrap()[1]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            authorization.contains(&format!("Credential={}/", aws.real_id)),
            "{authorization}"
        );
    }
    assert_no_leak(&aws.real_secret, &proxy, &saw);
    assert_no_leak(&aws.real_id, &proxy, &saw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_s3_put_and_get_with_a_declared_payload_hash_and_with_boto3_defaults() {
    let Some(python) = python() else { return };
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let aws = aws();
    let config = json!({
        "phantoms": [aws.phantom_id, aws.phantom_secret],
        "aws": {"access_key_id": aws.real_id, "secret_access_key": aws.real_secret},
    });
    let fake = FakeCloud::start(&python, &pki, dir.path(), &[BUCKET_HOST], &config);
    let proxy = proxy(&pki, &dir, &fake, &[BUCKET_HOST], |b| b.secret(&aws.secret)).await;
    let env = aws_env(&proxy, &aws);
    let mut saw = ClientSaw::default();
    for payload in ["signed", "default"] {
        let key = format!("obj-{payload}.txt");
        let (ok, lines, text) = run_client(
            &python,
            "bedrock.py",
            &["s3", BUCKET, &key, "--payload", payload],
            &env,
            dir.path(),
        )
        .await;
        saw.text(text.clone());
        assert!(ok, "{payload}: {text}\nfake saw: {:#?}", fake.seen());
        assert_eq!(lines.last().unwrap()["same"], true, "{text}");
    }
    let seen = fake.seen();
    let hashes: Vec<&str> = seen
        .iter()
        .filter(|s| s["method"] == "PUT")
        .filter_map(|s| s["payload_hash"].as_str())
        .collect();
    assert_eq!(hashes.len(), 2, "{seen:#?}");
    assert_eq!(
        hashes[0].len(),
        64,
        "the body's SHA-256, declared by the client"
    );
    assert!(
        hashes[1].starts_with("STREAMING-"),
        "boto3's default: {}",
        hashes[1]
    );
    assert_no_leak(&aws.real_secret, &proxy, &saw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_auth_with_the_phantom_service_account_never_holds_a_real_token() {
    let Some(python) = python() else { return };
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let real_key = SigningKey::generate_rsa2048().unwrap();
    let real_json = json!({
        "type": "service_account",
        "project_id": "keygate-test",
        "private_key_id": format!("realkey{}", unique()),
        "private_key": real_key.to_pkcs8_pem().unwrap().as_str(),
        "client_email": "agent@keygate-test.iam.gserviceaccount.com",
        "client_id": "1234567890",
        "token_uri": format!("https://{GTOKEN}/token"),
    });
    let phantom_key = SigningKey::generate_rsa2048().unwrap();
    let phantom = keygate::credentials::mint::google::phantom_json(
        &real_json.to_string(),
        &phantom_key,
        "keygate-phantom-1",
    )
    .unwrap();
    let phantoms = dir.path().join("phantoms");
    std::fs::create_dir(&phantoms).unwrap();
    let phantom_file = phantoms.join("vertex.json");
    std::fs::write(&phantom_file, phantom.as_bytes()).unwrap();
    let secret = TestSecret::new("vertex", &[GTOKEN, VERTEX])
        .dummy_value("ya29.keygateDummy{unique}")
        .real_exact(&real_json.to_string())
        .with(|e| {
            e.header = "authorization".into();
            e.format = "Bearer {secret}".into();
            e.kind = KindName::Google;
            e.google = Some(GoogleBlock::default());
        });
    let config = json!({
        "phantoms": [secret.dummy(), "keygate-phantom-1"],
        "google": {"service_account": real_json, "expires_in": 3599},
    });
    let fake = FakeCloud::start(&python, &pki, dir.path(), &[GTOKEN, VERTEX], &config);
    let proxy = proxy(&pki, &dir, &fake, &[GTOKEN, VERTEX], |b| {
        b.secret(&secret).phantoms(&phantoms)
    })
    .await;
    let env = vec![
        ("HTTPS_PROXY", format!("http://{}", proxy.addr)),
        (
            "REQUESTS_CA_BUNDLE",
            proxy.ca().pem_path().display().to_string(),
        ),
        (
            "GOOGLE_APPLICATION_CREDENTIALS",
            phantom_file.display().to_string(),
        ),
    ];
    let mut saw = ClientSaw::default();
    let (ok, lines, text) =
        run_client(&python, "vertex.py", &["--calls", "2"], &env, dir.path()).await;
    saw.text(text.clone());
    assert!(ok, "{text}\nfake saw: {:#?}", fake.seen());
    let held = lines
        .iter()
        .find_map(|l| l["access_token"].as_str())
        .expect("the token the library holds");
    assert_eq!(held, secret.dummy(), "google-auth holds the phantom");
    let stats = fake.get("/__stats");
    assert_eq!(
        stats["google_mints"], 1,
        "keygate minted once, for both calls"
    );
    let seen = fake.seen();
    let vertex_calls: Vec<&Value> = seen.iter().filter(|s| s["host"] == VERTEX).collect();
    assert_eq!(vertex_calls.len(), 2);
    for call in &vertex_calls {
        assert_eq!(call["verdict"], "ok", "{call:#}");
    }
    // The agent's JWT exchange never left keygate: the one token request is keygate's.
    assert_eq!(seen.iter().filter(|s| s["host"] == GTOKEN).count(), 1);
    assert!(
        !text.contains("ya29.real-"),
        "the client saw a real token: {text}"
    );
    assert_no_leak("ya29.real-", &proxy, &saw);
}

/// True when bubblewrap runs here; else a skip note (a failure when `KEYGATE_TEST_JAIL=1`).
fn jail_runs() -> bool {
    let ok = Command::new("bwrap")
        .args(["--unshare-all", "--ro-bind", "/", "/", "true"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let required = std::env::var("KEYGATE_TEST_JAIL").is_ok_and(|v| v == "1");
    assert!(
        ok || !required,
        "KEYGATE_TEST_JAIL=1 but bubblewrap cannot run here"
    );
    if !ok {
        eprintln!("skipping: bubblewrap cannot run here");
    }
    ok
}

/// The whole path a user takes: `keygate secret add --recipe bedrock --from-file`, then
/// `keygate run` (jailed) of boto3's converse_stream. Inside the jail boto3 holds the
/// session's phantom access key id and the phantom secret; the fake checks the signature
/// with the real keys.
#[test]
fn a_jailed_boto3_streams_from_bedrock_with_the_sessions_phantoms() {
    let Some(python) = python() else { return };
    if !jail_runs() {
        return;
    }
    let pki = TestPki::new();
    let home = tempfile::tempdir().unwrap();
    let root = pki.write_root(home.path());
    let name = format!("kgtest-bedrock-{}", unique());
    let _entry = crate::support::bin::KeyutilsEntry(name.clone());
    let real_id = "AKIAREALREALREAL0043";
    let real_secret = format!("realSecret/{}+j", unique());
    let creds = home.path().join("creds.json");
    std::fs::write(
        &creds,
        json!({"access_key_id": real_id, "secret_access_key": real_secret}).to_string(),
    )
    .unwrap();
    let keygate = |args: &[&str]| {
        let mut cmd = crate::support::bin::keygate(home.path());
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", home.path())
            .env("LANG", "C.UTF-8")
            .env("KEYGATE_KEYRING", "keyutils")
            .args(args);
        cmd
    };
    let add = crate::support::bin::run(keygate(&[
        "secret",
        "add",
        &name,
        "--recipe",
        "bedrock",
        "--from-file",
        creds.to_str().unwrap(),
    ]));
    assert_eq!(add.code, Some(0), "{add:?}");
    std::fs::remove_file(&creds).unwrap();
    let static_dummy = add.stdout.lines().last().unwrap().to_string();
    let registry = std::fs::read_to_string(home.path().join("secrets.yaml")).unwrap();
    let phantom_secret = registry
        .lines()
        .find_map(|l| l.trim().strip_prefix("secret_access_key: "))
        .expect("the phantom secret in secrets.yaml")
        .trim_matches('\'')
        .trim_matches('"')
        .to_string();
    let config = json!({
        "phantoms": [static_dummy, phantom_secret],
        "aws": {"access_key_id": real_id, "secret_access_key": real_secret},
        "bedrock": {"text": "jailed and streaming", "stream_deltas": 4, "stream_delay_ms": 200},
    });
    let fake = FakeCloud::start(&python, &pki, home.path(), &[BEDROCK], &config);
    let resolve = format!("{BEDROCK}:443=127.0.0.1:{}", fake.port);
    let script = Path::new(DIR).join("bedrock.py");
    let mut run = keygate(&[
        "-vv",
        "run",
        "--resolve",
        &resolve,
        "--upstream-ca",
        root.to_str().unwrap(),
        "--",
    ]);
    run.arg(&python)
        .arg(&script)
        .arg("converse-stream")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null");
    let out = crate::support::bin::run(run);
    assert_eq!(out.code, Some(0), "{out:?}\nfake saw: {:#?}", fake.seen());
    let lines: Vec<Value> = out
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert_eq!(
        lines.last().unwrap()["text"],
        "jailed and streaming",
        "{out:?}"
    );
    let seen = fake.seen();
    assert!(seen.iter().all(|s| s["verdict"] == "ok"), "{seen:#?}");
    let audit = std::fs::read_to_string(home.path().join("audit.jsonl")).unwrap();
    let resigned = audit
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["secret"] == name.as_str() && e["host"] == BEDROCK)
        .inspect(|e| {
            let client = e["client"].as_str().unwrap_or("");
            assert!(
                client.starts_with("session:"),
                "a jailed session's request: {e}"
            );
        })
        .count();
    assert_eq!(resigned, 1, "{audit}");
    for text in [&out.stdout, &out.stderr, &audit] {
        assert!(
            !text.contains(&real_secret),
            "a real value in the output or audit"
        );
    }
}

/// `keygate secret add --recipe vertex --from-file`, then a jailed google-auth: the
/// session directory holds the phantom key file the command reads.
#[test]
fn a_jailed_google_auth_reads_the_phantom_file_from_the_session() {
    let Some(python) = python() else { return };
    if !jail_runs() {
        return;
    }
    let pki = TestPki::new();
    let home = tempfile::tempdir().unwrap();
    let root = pki.write_root(home.path());
    let name = format!("kgtest-vertex-{}", unique());
    let _entry = crate::support::bin::KeyutilsEntry(name.clone());
    let real_key = SigningKey::generate_rsa2048().unwrap();
    let real_json = json!({
        "type": "service_account",
        "project_id": "keygate-test",
        "private_key_id": "realkey-jailed",
        "private_key": real_key.to_pkcs8_pem().unwrap().as_str(),
        "client_email": "agent@keygate-test.iam.gserviceaccount.com",
        "token_uri": format!("https://{GTOKEN}/token"),
    });
    let sa = home.path().join("sa.json");
    std::fs::write(&sa, serde_json::to_string_pretty(&real_json).unwrap()).unwrap();
    let keygate = |args: &[&str]| {
        let mut cmd = crate::support::bin::keygate(home.path());
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", home.path())
            .env("LANG", "C.UTF-8")
            .env("KEYGATE_KEYRING", "keyutils")
            .args(args);
        cmd
    };
    let add = crate::support::bin::run(keygate(&[
        "secret",
        "add",
        &name,
        "--recipe",
        "vertex",
        "--from-file",
        sa.to_str().unwrap(),
    ]));
    assert_eq!(add.code, Some(0), "{add:?}");
    std::fs::remove_file(&sa).unwrap();
    let config = json!({
        "phantoms": [add.stdout.lines().last().unwrap()],
        "google": {"service_account": real_json},
    });
    let fake = FakeCloud::start(&python, &pki, home.path(), &[GTOKEN, VERTEX], &config);
    let target = format!("127.0.0.1:{}", fake.port);
    let mut run = keygate(&[
        "-vv",
        "run",
        "--resolve",
        &format!("{GTOKEN}:443={target}"),
        "--resolve",
        &format!("{VERTEX}:443={target}"),
        "--upstream-ca",
        root.to_str().unwrap(),
        "--",
    ]);
    run.arg(&python)
        .arg(Path::new(DIR).join("vertex.py"))
        .args(["--calls", "2"]);
    let out = crate::support::bin::run(run);
    assert_eq!(out.code, Some(0), "{out:?}\nfake saw: {:#?}", fake.seen());
    let held = out
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find_map(|l| l["access_token"].as_str().map(str::to_string))
        .expect("the token google-auth holds");
    assert!(held.starts_with("ya29.keygate"), "a phantom: {held}");
    assert!(!held.contains("real"), "{held}");
    assert_eq!(fake.get("/__stats")["google_mints"], 1);
    assert!(!out.stdout.contains("ya29.real-") && !out.stderr.contains("ya29.real-"));
}
