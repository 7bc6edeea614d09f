//! The session CA's name constraints, as real OpenSSL clients enforce them (issue 12 §3):
//! a session CA permitted `api.example.com` and `127.0.0.1/32` mints leaves with the
//! same `LeafIssuer` API the proxy uses; curl (and Python's ssl module, when python3 is
//! there) trusting only that CA accept the leaf for the permitted host and refuse the
//! leaf for `evil.example.net`, whose certificate is otherwise perfect (right name,
//! right issuer, in date): only the constraint can refuse it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use keygate::ca::{Ca, LeafCert, LeafIssuer, Permit, SESSION_CA_VALIDITY};
use keygate::policy::Host;
use rustls::ServerConfig;
use rustls_pki_types::PrivateKeyDer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::support::bin::{self, Output};
use crate::support::clients;

const PERMITTED: &str = "api.example.com";
const OUTSIDE: &str = "evil.example.net";
const REPLY: &str = "session-ca-ok";

/// A TLS server on 127.0.0.1:0 presenting one leaf, answering any request with
/// [`REPLY`]; stopped when dropped.
struct Server {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    async fn start(leaf: LeafCert) -> Server {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(leaf.chain, PrivateKeyDer::Pkcs8(leaf.key))
            .expect("server config");
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    // A client that refuses the certificate ends the handshake here.
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{REPLY}",
                        REPLY.len()
                    );
                    let _ = tls.write_all(reply.as_bytes()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        Server { addr, task }
    }
}

fn host(s: &str) -> Host {
    Host::parse(s).expect("host")
}

/// `curl https://NAME:PORT/` trusting `ca_file` only, with a NAME that is not an address
/// pinned to the server.
async fn curl(ca_file: &Path, name: &str, server: &Server) -> Output {
    let port = server.addr.port();
    let mut cmd = bin::curl(ca_file);
    if name.parse::<std::net::IpAddr>().is_err() {
        cmd.arg("--resolve").arg(format!("{name}:{port}:127.0.0.1"));
    }
    cmd.arg(format!("https://{name}:{port}/"));
    tokio::task::spawn_blocking(move || bin::run(cmd))
        .await
        .expect("curl")
}

/// Python's ssl module (OpenSSL) trusting `ca_file` only: prints `verified` and exits 0,
/// or prints the verification error and exits 3.
const PY_CHECK: &str = r#"
import socket, ssl, sys
cafile, name, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
ctx = ssl.create_default_context(cafile=cafile)
try:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        with ctx.wrap_socket(sock, server_hostname=name):
            print("verified")
except ssl.SSLCertVerificationError as e:
    print("refused:", e.verify_message)
    sys.exit(3)
"#;

/// Runs [`PY_CHECK`] for `name` against `server`; `None` when python3 is not installed.
async fn python(ca_file: &Path, name: &str, server: &Server) -> Option<Output> {
    let found = Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("skipping the Python check: python3 not found");
        return None;
    }
    let mut cmd = Command::new("python3");
    for var in ["SSL_CERT_FILE", "SSL_CERT_DIR", "CURL_CA_BUNDLE"] {
        cmd.env_remove(var);
    }
    cmd.args(["-c", PY_CHECK])
        .arg(ca_file)
        .arg(name)
        .arg(server.addr.port().to_string());
    Some(
        tokio::task::spawn_blocking(move || bin::run(cmd))
            .await
            .expect("python3"),
    )
}

/// True when curl is built on OpenSSL, whose refusal names the violated constraint.
fn curl_uses_openssl() -> bool {
    Command::new("/usr/bin/curl")
        .arg("--version")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("OpenSSL/"))
}

fn write_ca(dir: &Path, ca: &Ca) -> PathBuf {
    let path = dir.join("ca.pem");
    std::fs::write(&path, ca.cert_pem()).expect("write ca.pem");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_clients_refuse_a_session_leaf_outside_the_constraints() {
    if clients::curl().is_none() {
        return;
    }
    let permits: Vec<Permit> = [host(PERMITTED), host("127.0.0.1")]
        .iter()
        .map(|h| Permit::host(h).expect("permit"))
        .collect();
    let ca = Ca::session(&permits, SESSION_CA_VALIDITY).expect("session CA");
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_file = write_ca(dir.path(), &ca);

    let inside = Server::start(ca.mint(&host(PERMITTED)).expect("mint")).await;
    let outside = Server::start(ca.mint(&host(OUTSIDE)).expect("mint")).await;
    let by_ip = Server::start(ca.mint(&host("127.0.0.1")).expect("mint")).await;

    let ok = curl(&ca_file, PERMITTED, &inside).await;
    assert_eq!(ok.code, Some(0), "permitted host: {ok:?}");
    assert_eq!(ok.stdout, REPLY, "{ok:?}");

    let ok = curl(&ca_file, "127.0.0.1", &by_ip).await;
    assert_eq!(ok.code, Some(0), "permitted address: {ok:?}");
    assert_eq!(ok.stdout, REPLY, "{ok:?}");

    let refused = curl(&ca_file, OUTSIDE, &outside).await;
    assert_eq!(
        refused.code,
        Some(60),
        "a leaf outside the constraints must fail verification: {refused:?}"
    );
    assert!(
        refused.stderr.contains("certificate"),
        "curl should name a certificate problem: {refused:?}"
    );
    assert!(refused.stdout.is_empty(), "{refused:?}");
    if curl_uses_openssl() {
        assert!(
            refused.stderr.contains("permitted subtree violation"),
            "OpenSSL should refuse for the name constraint: {refused:?}"
        );
    }

    // Python (OpenSSL through the ssl module) agrees, when it is there.
    if let Some(out) = python(&ca_file, PERMITTED, &inside).await {
        assert_eq!(out.code, Some(0), "python, permitted host: {out:?}");
        assert_eq!(out.stdout.trim(), "verified", "{out:?}");
        let out = python(&ca_file, OUTSIDE, &outside).await.expect("python3");
        assert_eq!(out.code, Some(3), "python, outside host: {out:?}");
        assert!(
            out.stdout
                .starts_with("refused: permitted subtree violation"),
            "{out:?}"
        );
    }
}

/// An unconstrained CA would vouch for everything: check that a session CA with no
/// permits at all still refuses a leaf for a real-looking host and for an address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_ca_with_no_permits_vouches_for_nothing() {
    if clients::curl().is_none() {
        return;
    }
    let ca = Ca::session(&[], SESSION_CA_VALIDITY).expect("session CA");
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_file = write_ca(dir.path(), &ca);
    for name in [PERMITTED, "127.0.0.1"] {
        let server = Server::start(ca.mint(&host(name)).expect("mint")).await;
        let refused = curl(&ca_file, name, &server).await;
        assert_eq!(refused.code, Some(60), "{name}: {refused:?}");
        if curl_uses_openssl() {
            assert!(
                refused.stderr.contains("permitted subtree violation"),
                "{name}: {refused:?}"
            );
        }
    }
}
