//! Issue 3: a 100 MB body each way through an intercepted host, streamed, with the
//! proxy's memory bounded. The proxy is a real `keygate start` (its memory is its own,
//! read from /proc), its secret in the keyutils keyring under a name unique to the run,
//! removed afterwards even on failure.

use std::time::{Duration, Instant};

use http::{StatusCode, Version};
use http_body_util::BodyExt;
use keygate::secrets::keyring;
use keygate::secrets::{Registry, SecretStore, SecretValue};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::support::api::{Alpn, ApiUpstream};
use crate::support::bin;
use crate::support::body::{self, Fnv, TestBody};
use crate::support::intercepted::Conn;
use crate::support::leak::assert_absent;
use crate::support::pki::TestPki;
use crate::support::secret::{TestSecret, unique};

const HOST: &str = "api.demo.test";

/// How long one 100 MB transfer may take (debug build, loopback: a few seconds).
const HEAVY_WAIT: Duration = Duration::from_secs(120);
/// How much the proxy's peak memory may grow while it streams a body each way.
const MEMORY_BOUND_KB: u64 = 64 * 1024;

/// A `/proc/PID/status` field in kB.
fn proc_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Deletes a keyring entry when dropped, even when the test fails.
struct KeyringEntry(String);

impl Drop for KeyringEntry {
    fn drop(&mut self) {
        if let Ok(store) = keyring::open(Some("keyutils")) {
            let _ = store.delete(&self.0);
        }
    }
}

/// Streams `size` pattern bytes up in 64 KiB frames as the connection takes them,
/// never holding more than a frame; resolves to the hash of what it sent.
fn upload_body(size: usize) -> (TestBody, tokio::task::JoinHandle<Fnv>) {
    let (tx, req_body) = body::channel();
    let producer = tokio::spawn(async move {
        let (mut offset, mut hash) = (0, Fnv::default());
        while offset < size {
            let chunk = body::pattern(offset, (64 << 10).min(size - offset));
            hash.update(&chunk);
            offset += chunk.len();
            if tx.send(chunk).await.is_err() {
                break;
            }
        }
        hash
    });
    (req_body, producer)
}

/// `size` bytes up and `size` bytes down through an intercepted host of a real
/// `keygate start` (its own process, so its memory is its own), with the swap applied.
async fn a_large_body_each_way(size: usize) {
    let started = Instant::now();
    let name = format!("big-{}", unique());
    let secret = TestSecret::new(&name, &[HOST]);
    let _entry = KeyringEntry(name.clone());
    let store = keyring::open(Some("keyutils")).expect("the keyutils keyring");
    store
        .set(&name, &SecretValue::new(secret.real().into()).unwrap())
        .expect("store the value");
    let pki = TestPki::new();
    let upstream = ApiUpstream::start(&pki, &[HOST], Alpn::H2AndHttp1).await;
    let home = tempfile::tempdir().unwrap();
    let root = pki.write_root(home.path());
    let registry = Registry {
        entries: vec![secret.entry.clone()],
    };
    std::fs::write(home.path().join("secrets.yaml"), registry.to_yaml()).unwrap();
    let mut start = bin::keygate(home.path());
    start
        .env("KEYGATE_KEYRING", "keyutils")
        .args([
            "-vv",
            "start",
            "--listen",
            "127.0.0.1:0",
            "--mode",
            "custom",
        ])
        .args(["--resolve", &format!("{HOST}:443={}", upstream.addr)])
        .arg("--upstream-ca")
        .arg(&root);
    let keygate = tokio::task::spawn_blocking(move || bin::Running::start(start))
        .await
        .unwrap();
    let ca = CertificateDer::from_pem_file(home.path().join("ca/keygate-ca.pem")).unwrap();
    let key = [("x-api-key", secret.dummy())];

    // Warm up (leaf minted, upstream connected and verified), then measure from here.
    let mut conn = Conn::open_via(keygate.addr, &ca, HOST, Version::HTTP_11).await;
    let resp = conn.send(conn.get(HOST, "/warm", &key)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    crate::support::client::body_bytes(resp).await;
    let baseline = proc_kb(keygate.pid(), "VmRSS");
    let transfer = Instant::now();

    let (up, producer) = upload_body(size);
    let req = conn
        .request("POST", HOST, "/upload")
        .header(key[0].0, key[0].1);
    let resp = conn.send_within(req.body(up).unwrap(), HEAVY_WAIT).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let reply = tokio::time::timeout(HEAVY_WAIT, resp.into_body().collect())
        .await
        .expect("the upload reply in time")
        .unwrap()
        .to_bytes();
    let sent = producer.await.unwrap();
    let reply: serde_json::Value = serde_json::from_slice(&reply).unwrap();
    assert_eq!(reply["body_len"], size, "{reply}");
    assert_eq!(reply["body_hash"], sent.0, "the upload arrived intact");
    let uploaded = transfer.elapsed();

    let resp = conn
        .send(conn.get(HOST, &format!("/bytes/{size}"), &key))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let (mut got, mut hash) = (0, Fnv::default());
    let download = async {
        while let Some(data) = body.frame().await {
            if let Ok(data) = data.expect("download frame").into_data() {
                got += data.len();
                hash.update(&data);
            }
        }
    };
    tokio::time::timeout(HEAVY_WAIT, download)
        .await
        .expect("the download in time");
    assert_eq!(got, size);
    // Same pattern, same length: the download must hash like the upload.
    assert_eq!(hash, sent, "the download arrived intact");

    let peak = proc_kb(keygate.pid(), "VmHWM");
    let grew = peak.saturating_sub(baseline);
    eprintln!(
        "{} MiB each way: up in {uploaded:?}, down in {:?} ({:?} with set-up); keygate RSS {baseline} kB before, peak {peak} kB",
        size >> 20,
        transfer.elapsed() - uploaded,
        started.elapsed()
    );
    assert!(
        grew < MEMORY_BOUND_KB,
        "keygate's peak memory grew by {grew} kB while streaming {size} bytes each way"
    );
    let seen = upstream.seen();
    assert!(
        seen.iter()
            .all(|s| s.header("x-api-key") == [secret.real()])
    );
    assert_eq!(seen.len(), 3);
    drop(conn);

    let stderr = tokio::task::spawn_blocking(move || {
        let (status, stderr) = keygate.terminate_with_stderr();
        assert_eq!(status.code(), Some(0));
        stderr.join("\n")
    })
    .await
    .unwrap();
    assert!(stderr.contains("TRACE"), "keygate logged at trace level");
    let audit = std::fs::read_to_string(home.path().join("audit.jsonl")).unwrap();
    assert!(audit.contains("\"secret\":\"big-"), "{audit}");
    assert_absent(secret.real(), "keygate's stderr", &stderr);
    assert_absent(secret.real(), "audit.jsonl", &audit);
    assert_absent(secret.real(), "the upload reply", &reply.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_100_mb_body_each_way_streams_through_with_bounded_proxy_memory() {
    a_large_body_each_way(100 << 20).await;
}
