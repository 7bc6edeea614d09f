//! SIGHUP reload of `keygate start`: secret values are read at start and on reload,
//! never per request; a rotated key is used after a reload, and a broken configuration
//! leaves the running one in force.

use std::process::Command;
use std::time::{Duration, Instant};

use http::{StatusCode, Version};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::support::api::{Alpn, ApiUpstream};
use crate::support::bin::{self, Running};
use crate::support::intercepted::Conn;
use crate::support::leak::ClientSaw;
use crate::support::pki::TestPki;
use crate::support::secret::unique;

const HOST: &str = "api.reload.test";

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

/// `keygate start` on a free port with `HOST:443` resolved to `upstream` and `root` as
/// an extra upstream root (flags, which every reload merges again).
async fn start(
    home: &std::path::Path,
    upstream: std::net::SocketAddr,
    root: &std::path::Path,
) -> Running {
    let mut cmd = bin::keygate(home);
    cmd.env("KEYGATE_KEYRING", "keyutils")
        .args([
            "start",
            "--listen",
            "127.0.0.1:0",
            "--resolve",
            &format!("{HOST}:443={upstream}"),
        ])
        .arg("--upstream-ca")
        .arg(root);
    tokio::task::spawn_blocking(move || Running::start(cmd))
        .await
        .expect("start")
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
    let _entry = bin::KeyutilsEntry(name.clone());
    let (first, second) = (format!("sk-first-{name}"), format!("sk-second-{name}"));
    let dummy = add(home.path(), &name, &first);

    let keygate = start(home.path(), upstream.addr, &root).await;
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
        keygate.wait_for_line("reloaded the configuration");
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
        keygate.wait_for_line("reload failed, keeping the previous configuration");
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

#[tokio::test(flavor = "multi_thread")]
async fn sighup_applies_a_new_deny_and_a_removed_secret_and_keeps_the_start_flags() {
    let pki = TestPki::new();
    let upstream = ApiUpstream::start(&pki, &[HOST], Alpn::H2AndHttp1).await;
    let home = tempfile::tempdir().expect("home");
    let root = pki.write_root(home.path());
    let name = format!("reload-{}", unique());
    let _entry = bin::KeyutilsEntry(name.clone());
    let value = format!("sk-reload-{name}");
    let dummy = add(home.path(), &name, &value);

    let keygate = start(home.path(), upstream.addr, &root).await;
    let ca_pem = home.path().join("ca/keygate-ca.pem");
    let ca = CertificateDer::from_pem_file(&ca_pem).expect("CA");
    let proxy = format!("http://{}", keygate.addr);
    // curl on a new connection: the CONNECT status and curl's exit code.
    let call = |dummy: &str, path: &str| {
        let mut curl = bin::curl(&ca_pem);
        curl.args(["--write-out", "%{http_connect} %{http_code}"])
            .args(["-x", &proxy, "-H", &format!("x-api-key: {dummy}")])
            .arg(format!("https://{HOST}{path}"));
        tokio::task::block_in_place(|| bin::run(curl))
    };
    let reload = |expect: &str| {
        tokio::task::block_in_place(|| {
            let before = keygate
                .stderr()
                .iter()
                .filter(|l| l.contains(expect))
                .count();
            hup(&keygate);
            let deadline = Instant::now() + crate::support::WAIT;
            while keygate
                .stderr()
                .iter()
                .filter(|l| l.contains(expect))
                .count()
                == before
            {
                assert!(Instant::now() < deadline, "{:#?}", keygate.stderr());
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };

    let out = call(&dummy, "/before");
    assert_eq!(out.code, Some(0), "{out:?}");
    // A keep-alive connection opened under the first configuration.
    let mut saw = ClientSaw::default();
    let mut open = Conn::open_via(keygate.addr, &ca, HOST, Version::HTTP_11).await;
    let resp = open
        .send(open.get(HOST, "/open-1", &[("x-api-key", &dummy)]))
        .await;
    let (head, text) = saw.read(resp).await;
    assert_eq!(head.status, StatusCode::OK, "{text}");

    // A new deny: new connections are refused ...
    std::fs::write(
        home.path().join("keygate.yaml"),
        format!("network:\n  deny: [{HOST}]\n"),
    )
    .expect("yaml");
    reload("reloaded the configuration");
    // (refusals: tls: the CONNECT is accepted and the request answered with the 403.)
    let out = call(&dummy, "/denied");
    assert!(out.stdout.ends_with("200 403"), "{out:?}");
    assert!(out.stdout.contains("Why: denied"), "{out:?}");
    // ... and so is the next request of the connection opened before (issue 14: a
    // client that keeps sending cannot hold a revoked host open).
    let resp = open
        .send(open.get(HOST, "/open-2", &[("x-api-key", &dummy)]))
        .await;
    let (head, text) = saw.read(resp).await;
    assert_eq!(head.status, StatusCode::FORBIDDEN, "{text}");
    let why = head.headers["x-keygate-reason"].to_str().unwrap();
    assert!(why.starts_with("revoked: denied: "), "{why}");
    assert!(
        !upstream.seen().iter().any(|s| s.target == "/open-2"),
        "the revoked request never reached the upstream"
    );
    drop(open);

    // The deny goes, the secret goes: its host was allowed only as a secret host.
    std::fs::write(home.path().join("keygate.yaml"), "").expect("yaml");
    let rm = tokio::task::block_in_place(|| {
        let mut cmd = bin::keygate(home.path());
        cmd.env("KEYGATE_KEYRING", "keyutils")
            .args(["secret", "rm", &name]);
        bin::run(cmd)
    });
    assert_eq!(rm.code, Some(0), "{rm:?}");
    reload("reloaded the configuration");
    let out = call(&dummy, "/removed");
    assert!(out.stdout.ends_with("200 403"), "{out:?}");
    assert!(out.stdout.contains("Why: not-allowed"), "{out:?}");

    // Registered again, after a reload it works again, through the flags' resolve
    // rule and extra root.
    let dummy = add(home.path(), &name, &value);
    reload("reloaded the configuration");
    let out = call(&dummy, "/again");
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.ends_with("200"), "{out:?}");

    let targets: Vec<String> = upstream.seen().iter().map(|s| s.target.clone()).collect();
    assert_eq!(targets, ["/before", "/open-1", "/again"]);
    for seen in upstream.seen() {
        assert_eq!(seen.header("x-api-key"), [value.as_str()]);
    }
    let (status, stderr) = tokio::task::block_in_place(|| keygate.terminate_with_stderr());
    assert!(status.success());
    for line in &stderr {
        assert!(
            !line.contains(&value),
            "a secret value in keygate's log: {line}"
        );
    }
}
