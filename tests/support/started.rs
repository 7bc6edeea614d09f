//! A real `keygate start` in its own process (so its memory and file descriptors are
//! its own, read from /proc), intercepting one host with a secret stored in the
//! keyutils keyring under a name unique to the run (removed on drop, even on failure).

use keygate::secrets::keyring;
use keygate::secrets::{Registry, SecretStore, SecretValue};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tempfile::TempDir;

use super::api::{Alpn, ApiUpstream};
use super::bin::{self, Running};
use super::pki::TestPki;
use super::secret::{TestSecret, unique};

/// `keygate start` with one secret host, its fake API and what a client needs.
pub struct Started {
    /// The running binary.
    pub keygate: Running,
    /// The secret bound to [`Started::host`].
    pub secret: TestSecret,
    /// The fake API behind the host.
    pub upstream: ApiUpstream,
    /// keygate's CA certificate (clients trust it for the intercepted host).
    pub ca: CertificateDer<'static>,
    _home: TempDir,
}

impl Drop for Started {
    fn drop(&mut self) {
        if let Ok(store) = keyring::open(Some("keyutils")) {
            let _ = store.delete(self.secret.name());
        }
    }
}

impl Started {
    /// Starts an upstream for `host` and `keygate start` intercepting it, with `yaml`
    /// as keygate.yaml.
    pub async fn start(host: &'static str, tag: &str, yaml: &str) -> Started {
        let name = format!("{tag}-{}", unique());
        let secret = TestSecret::new(&name, &[host]);
        let store = keyring::open(Some("keyutils")).expect("the keyutils keyring");
        store
            .set(
                &name,
                &SecretValue::new(secret.real().into()).expect("value"),
            )
            .expect("store the value");
        let pki = TestPki::new();
        let upstream = ApiUpstream::start(&pki, &[host], Alpn::H2AndHttp1).await;
        let home = tempfile::tempdir().expect("home");
        let root = pki.write_root(home.path());
        let registry = Registry {
            entries: vec![secret.entry.clone()],
        };
        std::fs::write(home.path().join("secrets.yaml"), registry.to_yaml()).expect("registry");
        std::fs::write(home.path().join("keygate.yaml"), yaml).expect("keygate.yaml");
        let mut cmd = bin::keygate(home.path());
        cmd.env("KEYGATE_KEYRING", "keyutils")
            .args(["start", "--listen", "127.0.0.1:0", "--mode", "custom"])
            .args(["--resolve", &format!("{host}:443={}", upstream.addr)])
            .arg("--upstream-ca")
            .arg(&root);
        let keygate = tokio::task::spawn_blocking(move || Running::start(cmd))
            .await
            .expect("start");
        let ca = CertificateDer::from_pem_file(home.path().join("ca/keygate-ca.pem")).expect("CA");
        Started {
            keygate,
            secret,
            upstream,
            ca,
            _home: home,
        }
    }

    /// Open file descriptors of the keygate process.
    pub fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.keygate.pid()))
            .map(|d| d.count())
            .expect("/proc/PID/fd")
    }

    /// A `/proc/PID/status` field in kB (e.g. VmRSS).
    pub fn status_kb(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.keygate.pid()))
            .expect("status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc status"))
    }

    /// The descriptor count once it reads the same three times in a row (bounded).
    pub async fn stable_fds(&self) -> usize {
        let mut last = (self.fds(), 0);
        for _ in 0..100 {
            tokio::time::sleep(std::time::Duration::from_millis(30)).await;
            let now = self.fds();
            last = if now == last.0 {
                (now, last.1 + 1)
            } else {
                (now, 0)
            };
            if last.1 >= 2 {
                break;
            }
        }
        last.0
    }

    /// Waits (bounded) until keygate holds at most `limit` descriptors; returns the last count.
    pub async fn settle_fds(&self, limit: usize) -> usize {
        let deadline = std::time::Instant::now() + super::WAIT;
        loop {
            let now = self.fds();
            if now <= limit || std::time::Instant::now() > deadline {
                return now;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}
