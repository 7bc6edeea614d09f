//! SIGHUP reload of `keygate start`: secret values are read at start and on reload,
//! never per request; a rotated key is used after a reload, and a broken configuration
//! leaves the running one in force.

use std::process::Command;
use std::time::{Duration, Instant};

use keygate::secrets::{SecretStore, keyring};

use crate::support::api::{Alpn, ApiUpstream};
use crate::support::bin::{self, Running};
use crate::support::pki::TestPki;
use crate::support::secret::unique;

const HOST: &str = "api.reload.test";

/// Removes the keyutils entry even when the test fails.
struct Entry(String);

impl Drop for Entry {
    fn drop(&mut self) {
        if let Ok(store) = keyring::open(Some("keyutils")) {
            let _ = store.delete(&self.0);
        }
    }
}

fn add(home: &std::path::Path, name: &str, value: &str) -> String {
    let mut cmd = bin::keygate(home);
    cmd.env("KEYGATE_KEYRING", "keyutils")
        .env("V", value)
        .args([
            "secret",
            "add",
            name,
            "--host",
            HOST,
            "--header",
            "x-api-key",
            "--from-env",
            "V",
        ]);
    let out = bin::run(cmd);
    assert_eq!(out.code, Some(0), "{out:?}");
    out.stdout.lines().last().expect("dummy").to_string()
}

/// Waits until keygate's stderr has a line containing `needle`.
fn wait_for_line(keygate: &Running, needle: &str) {
    let deadline = Instant::now() + crate::support::WAIT;
    while !keygate.stderr().iter().any(|l| l.contains(needle)) {
        assert!(
            Instant::now() < deadline,
            "no `{needle}` line; stderr: {:#?}",
            keygate.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn hup(keygate: &Running) {
    let sent = Command::new("kill")
        .arg("-HUP")
        .arg(keygate.pid().to_string())
        .status()
        .expect("kill");
    assert!(sent.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_a_rotated_secret_and_survives_a_broken_config() {
    let pki = TestPki::new();
    let upstream = ApiUpstream::start(&pki, &[HOST], Alpn::H2AndHttp1).await;
    let home = tempfile::tempdir().expect("home");
    let root = pki.write_root(home.path());
    let name = format!("reload-{}", unique());
    let _entry = Entry(name.clone());
    let (first, second) = (format!("sk-first-{name}"), format!("sk-second-{name}"));
    let dummy = add(home.path(), &name, &first);

    let mut start = bin::keygate(home.path());
    start
        .env("KEYGATE_KEYRING", "keyutils")
        .args([
            "start",
            "--listen",
            "127.0.0.1:0",
            "--resolve",
            &format!("{HOST}:443={}", upstream.addr),
        ])
        .arg("--upstream-ca")
        .arg(&root);
    let keygate = tokio::task::spawn_blocking(move || Running::start(start))
        .await
        .expect("start");
    let ca = home.path().join("ca/keygate-ca.pem");
    let proxy = format!("http://{}", keygate.addr);
    let call = |path: &str| {
        let mut curl = bin::curl(&ca);
        curl.args([
            "-x",
            &proxy,
            "-H",
            &format!("x-api-key: {dummy}"),
            &format!("https://{HOST}{path}"),
        ]);
        bin::run(curl)
    };

    let out = tokio::task::block_in_place(|| call("/one"));
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(upstream.seen()[0].header("x-api-key"), vec![first.as_str()]);

    // Rotate the value (the dummy stays), then reload.
    assert_eq!(
        add(home.path(), &name, &second),
        dummy,
        "rotation keeps the dummy"
    );
    let out = tokio::task::block_in_place(|| call("/before-reload"));
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(
        upstream.seen()[1].header("x-api-key"),
        vec![first.as_str()],
        "values are cached, not read per request"
    );
    tokio::task::block_in_place(|| {
        hup(&keygate);
        wait_for_line(&keygate, "reloaded the configuration");
    });
    let out = tokio::task::block_in_place(|| call("/after-reload"));
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(
        upstream.seen()[2].header("x-api-key"),
        vec![second.as_str()]
    );

    // A broken keygate.yaml: the reload is refused and the proxy keeps serving.
    std::fs::write(
        home.path().join("keygate.yaml"),
        "network:\n  mode: sideways\n",
    )
    .expect("yaml");
    tokio::task::block_in_place(|| {
        hup(&keygate);
        wait_for_line(
            &keygate,
            "reload failed, keeping the previous configuration",
        );
    });
    let out = tokio::task::block_in_place(|| call("/after-failed-reload"));
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(
        upstream.seen()[3].header("x-api-key"),
        vec![second.as_str()]
    );
    let (status, stderr) = tokio::task::block_in_place(|| keygate.terminate_with_stderr());
    assert!(status.success());
    for line in &stderr {
        assert!(
            !line.contains(&first) && !line.contains(&second),
            "a secret value in keygate's log: {line}"
        );
    }
}
