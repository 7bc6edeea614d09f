//! Documented CLI behaviour with no other test: `keygate run` edge cases, `secret add`
//! details, `start` flags and signals, and `ca/bundle.pem` with `SSL_CERT_FILE`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use keygate::secrets::{SecretStore, keyring};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::support::WAIT;
use crate::support::bin::{self, Running};
use crate::support::pki::TestPki;
use crate::support::secret::unique;
use crate::support::upstream::TlsUpstream;

fn kill(signal: &str, pid: u32) {
    let sent = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(sent.success(), "kill -{signal} {pid}");
}

// ---------------------------------------------------------------------------------------
// keygate run
// ---------------------------------------------------------------------------------------

#[test]
fn run_exits_126_for_a_command_that_cannot_be_executed_and_127_for_one_not_found() {
    let home = bin::home_listening_on(bin::free_port());
    let dir = tempfile::tempdir().expect("dir");
    let script = dir.path().join("not-executable.sh");
    std::fs::write(&script, "#!/bin/sh\necho should-not-run\n").expect("script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let script = script.display().to_string();
    let directory = dir.path().display().to_string();
    let missing = format!("keygate-no-such-command-{}", unique());

    for (program, code) in [(&script, 126), (&directory, 126), (&missing, 127)] {
        let out = bin::run(bin::keygate_keyutils(
            home.path(),
            &["run", "--no-jail", "--", program, "arg"],
        ));
        assert_eq!(out.code, Some(code), "{program}: {out:?}");
        assert!(
            out.stderr.contains("cannot run") && out.stderr.contains(program.as_str()),
            "stderr names the command and the failure: {}",
            out.stderr
        );
        assert!(!out.stdout.contains("should-not-run"), "{out:?}");
    }
}

#[test]
fn run_does_not_reuse_a_keygate_with_another_ca_on_the_listen_address() {
    // A foreign keygate (its own home, its own CA) on an ephemeral port.
    let foreign_home = tempfile::tempdir().expect("foreign home");
    let foreign = Running::start(bin::keygate_keyutils(
        foreign_home.path(),
        &["start", "--listen", "127.0.0.1:0"],
    ));
    let foreign_url = format!("http://{}", foreign.addr);

    // The run's home points `listen` at it, but has a CA of its own.
    let home = bin::home_listening_on(foreign.addr.port());
    assert_eq!(
        bin::run(bin::keygate_keyutils(home.path(), &["ca", "init"])).code,
        Some(0)
    );
    let ours = std::fs::read(home.path().join("ca/keygate-ca.pem")).expect("our CA");
    let theirs = std::fs::read(foreign_home.path().join("ca/keygate-ca.pem")).expect("their CA");
    assert_ne!(ours, theirs, "two homes, two CAs");

    let script = "printf '%s\\n' \"$HTTPS_PROXY\"; \
                  curl -sS --max-time 10 https://keygate.test/ca.pem";
    let out = bin::run(bin::keygate_keyutils(
        home.path(),
        &["run", "--no-jail", "--", "sh", "-c", script],
    ));
    assert_eq!(out.code, Some(0), "{out:?}");
    let (proxy, ca_seen) = out.stdout.split_once('\n').expect("two outputs");
    assert!(proxy.starts_with("http://127.0.0.1:"), "{proxy}");
    assert_ne!(
        proxy, foreign_url,
        "the child must not be sent to a keygate whose CA is not ours"
    );
    assert_eq!(
        ca_seen.as_bytes(),
        &ours[..],
        "the child's proxy (the embedded one) serves our CA and the child trusts it"
    );

    // The foreign keygate did answer (run probed it and turned it down).
    let (status, _) = foreign.terminate_with_stderr();
    assert_eq!(status.code(), Some(0));
    let audit = std::fs::read_to_string(foreign_home.path().join("audit.jsonl")).expect("audit");
    assert!(
        audit
            .lines()
            .any(|l| l.contains("\"host\":\"keygate.test\"") && l.contains("\"/ca.pem\"")),
        "the foreign keygate saw run's probe: {audit}"
    );
}

/// `keygate run -- sh -c SCRIPT` in the background, its stdout read line by line.
struct Background {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Background {
    fn spawn(home: &Path, script: &str) -> Background {
        let mut cmd = bin::keygate_keyutils(home, &["run", "--no-jail", "--", "sh", "-c", script]);
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn keygate run");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Background { child, lines }
    }

    fn next_line(&self) -> String {
        self.lines
            .recv_timeout(WAIT)
            .expect("a line from the child in time")
    }

    fn signal(&self, signal: &str) {
        kill(signal, self.child.id());
    }

    /// Waits (bounded) for `keygate run` to exit; its exit code.
    fn exit_code(&mut self) -> Option<i32> {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "keygate run did not exit in time"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The child's idle loop; bounded (about 30 s) so that a failed test leaves no
/// process looping forever.
const IDLE: &str = "i=0; while [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done; echo idle-timeout";

#[test]
fn run_forwards_hup_and_usr1_and_returns_the_childs_exit_code() {
    let home = bin::home_listening_on(bin::free_port());
    let script =
        format!("trap 'echo got-hup' HUP; trap 'echo got-usr1; exit 3' USR1; echo ready; {IDLE}");
    let mut run = Background::spawn(home.path(), &script);
    assert_eq!(run.next_line(), "ready");
    run.signal("HUP");
    assert_eq!(run.next_line(), "got-hup", "HUP reached the child");
    run.signal("USR1");
    assert_eq!(run.next_line(), "got-usr1", "USR1 reached the child");
    assert_eq!(run.exit_code(), Some(3), "run exits with the child's code");
}

#[test]
fn run_forwards_int_without_a_terminal_and_reports_a_signal_death_as_128_plus_n() {
    let home = bin::home_listening_on(bin::free_port());
    // INT is trapped; USR2 is not, so it ends the shell.
    let script = format!("trap 'echo got-int' INT; echo ready; {IDLE}");
    let mut run = Background::spawn(home.path(), &script);
    assert_eq!(run.next_line(), "ready");
    run.signal("INT");
    assert_eq!(
        run.next_line(),
        "got-int",
        "stdin is not a terminal: INT is forwarded"
    );
    run.signal("USR2");
    assert_eq!(
        run.exit_code(),
        Some(128 + libc::SIGUSR2),
        "a child ended by signal N gives 128+N"
    );
}

// ---------------------------------------------------------------------------------------
// keygate secret
// ---------------------------------------------------------------------------------------

#[test]
fn secret_add_refuses_a_value_that_contains_the_dummy_and_stores_nothing() {
    let home = tempfile::tempdir().expect("home");
    let name = format!("kgedge-{}", unique());
    let _entry = bin::KeyutilsEntry(name.clone());
    let dummy = format!("keygate-dummy-edge-{}", unique());
    for value in [dummy.clone(), format!("sk-{dummy}-tail")] {
        let mut cmd = bin::keygate_keyutils(
            home.path(),
            &[
                "secret",
                "add",
                &name,
                "--host",
                "api.edge.test",
                "--dummy",
                &dummy,
                "--from-env",
                "V",
            ],
        );
        cmd.env("V", &value);
        let out = bin::run(cmd);
        assert_eq!(out.code, Some(2), "a usage error: {:?}", out.code);
        assert!(
            out.stderr.contains("dummy"),
            "the message says why: {}",
            out.stderr
        );
        assert!(
            !out.stderr.contains(&value) && !out.stdout.contains(&value),
            "the refused value is not echoed"
        );
    }
    let store = keyring::open(Some("keyutils")).expect("keyutils");
    assert!(
        store.get(&name).expect("keyring get").is_none(),
        "nothing stored in the keyring"
    );
    let list = bin::run(bin::keygate_keyutils(home.path(), &["secret", "list"]));
    assert_eq!(list.code, Some(0), "{list:?}");
    assert!(!list.stdout.contains(&name), "not registered: {list:?}");
}

#[test]
fn secret_add_dummy_flag_sets_the_dummy_that_list_and_env_show() {
    let home = bin::home_listening_on(bin::free_port());
    let name = format!("kgedge-{}", unique());
    let _entry = bin::KeyutilsEntry(name.clone());
    let dummy = format!("my-own-dummy-{}", unique());
    let value = format!("sk-real-edge-{}", unique());
    let mut cmd = bin::keygate_keyutils(
        home.path(),
        &[
            "secret",
            "add",
            &name,
            "--host",
            "api.edge.test",
            "--dummy",
            &dummy,
            "--env",
            "EDGE_API_KEY",
            "--from-env",
            "V",
        ],
    );
    cmd.env("V", &value);
    let out = bin::run(cmd);
    assert_eq!(out.code, Some(0), "{:?} {}", out.code, out.stderr);
    assert_eq!(out.stdout.lines().last(), Some(dummy.as_str()));

    let list = bin::run(bin::keygate_keyutils(
        home.path(),
        &["secret", "list", "--long"],
    ));
    assert_eq!(list.code, Some(0), "{:?} {}", list.code, list.stderr);
    let line = list
        .stdout
        .lines()
        .find(|l| l.starts_with(&name))
        .unwrap_or_else(|| panic!("no line for the secret: {}", list.stdout));
    assert!(line.contains(&dummy), "{line}");
    assert!(line.trim_end().ends_with("  yes"), "{line}");

    let env = bin::run(bin::keygate_keyutils(home.path(), &["env"]));
    assert_eq!(env.code, Some(0), "{:?} {}", env.code, env.stderr);
    let expected = format!("export EDGE_API_KEY='{dummy}'");
    assert!(
        env.stdout.lines().any(|l| l == expected),
        "{expected} missing: {}",
        env.stdout
    );
    for (what, text) in [
        ("add stdout", &out.stdout),
        ("add stderr", &out.stderr),
        ("list stdout", &list.stdout),
        ("list stderr", &list.stderr),
        ("env stdout", &env.stdout),
    ] {
        assert!(!text.contains(&value), "{what} holds the real value");
    }
}

#[test]
fn secret_list_says_stored_no_for_a_hand_written_entry_without_a_value() {
    let home = tempfile::tempdir().expect("home");
    let name = format!("kgedge-{}", unique());
    let _entry = bin::KeyutilsEntry(name.clone());
    let dummy = format!("keygate-dummy-hand-{}", unique());
    std::fs::write(
        home.path().join("secrets.yaml"),
        format!("- name: {name}\n  hosts: [api.hand.test]\n  dummy: {dummy}\n"),
    )
    .expect("secrets.yaml");
    let list = bin::run(bin::keygate_keyutils(
        home.path(),
        &["secret", "list", "--long"],
    ));
    assert_eq!(list.code, Some(0), "{list:?}");
    let line = list
        .stdout
        .lines()
        .find(|l| l.starts_with(&name))
        .unwrap_or_else(|| panic!("no line for the secret: {}", list.stdout));
    assert!(line.contains("api.hand.test"), "{line}");
    assert!(line.contains(&dummy), "{line}");
    assert!(line.trim_end().ends_with("  no"), "{line}");
}

// ---------------------------------------------------------------------------------------
// keygate start
// ---------------------------------------------------------------------------------------

/// Sends `head` to `addr` and returns what came back until the end of the response head.
fn exchange(addr: SocketAddr, head: &str) -> String {
    let mut tcp = TcpStream::connect(addr).expect("connect");
    tcp.set_read_timeout(Some(WAIT)).expect("timeout");
    tcp.write_all(head.as_bytes()).expect("write");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match tcp.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!("reading the response: {e}; so far {got:?}"),
        }
    }
    String::from_utf8_lossy(&got).to_ascii_lowercase()
}

/// Waits (bounded) until `pid` has exited (a zombie not yet reaped by its parent).
fn wait_for_exit(pid: u32) {
    let deadline = Instant::now() + WAIT;
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc stat");
        // The state follows the parenthesised command name.
        let state = stat.rsplit_once(") ").map(|(_, r)| r.chars().next());
        if state == Some(Some('Z')) {
            return;
        }
        assert!(Instant::now() < deadline, "{pid} did not exit: {stat}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn start_deny_flag_beats_allow_and_sigint_exits_0() {
    let home = tempfile::tempdir().expect("home");
    // Stands in for ok.deny.test, so that no name is looked up beyond this machine.
    let upstream = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let resolve = format!("ok.deny.test:443={}", upstream.local_addr().expect("addr"));
    // The refusal answered at the CONNECT itself (`refusals: connect`).
    std::fs::write(home.path().join("keygate.yaml"), "refusals: connect\n").unwrap();
    let running = Running::start(bin::keygate_keyutils(
        home.path(),
        &[
            "start",
            "--listen",
            "127.0.0.1:0",
            "--mode",
            "custom",
            "--allow",
            ".deny.test",
            "--deny",
            "blocked.deny.test",
            "--resolve",
            &resolve,
        ],
    ));

    let connect = exchange(
        running.addr,
        "CONNECT blocked.deny.test:443 HTTP/1.1\r\nHost: blocked.deny.test:443\r\n\r\n",
    );
    assert!(connect.starts_with("http/1.1 403"), "{connect}");
    assert!(
        connect.contains("x-keygate-reason: denied"),
        "the deny rule, not the lack of an allow rule: {connect}"
    );
    let plain = exchange(
        running.addr,
        "GET http://blocked.deny.test/ HTTP/1.1\r\nHost: blocked.deny.test\r\nConnection: close\r\n\r\n",
    );
    assert!(plain.starts_with("http/1.1 403"), "{plain}");
    assert!(plain.contains("x-keygate-reason: denied"), "{plain}");
    // Another host under the same allow rule is let through (to a local listener).
    let allowed = exchange(
        running.addr,
        "CONNECT ok.deny.test:443 HTTP/1.1\r\nHost: ok.deny.test:443\r\n\r\n",
    );
    assert!(allowed.starts_with("http/1.1 200"), "{allowed}");

    kill("INT", running.pid());
    wait_for_exit(running.pid());
    // The process has exited: terminate() only collects its status.
    let (status, stderr) = running.terminate_with_stderr();
    assert_eq!(status.code(), Some(0), "SIGINT exits 0: {stderr:#?}");
    assert!(
        !stderr.iter().any(|l| l.contains("panicked")),
        "{stderr:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_trusts_an_upstream_root_given_by_ssl_cert_file() {
    let pki = TestPki::new();
    let upstream = TlsUpstream::echo(&pki, &["api.certfile.test"]).await;
    let certs = tempfile::tempdir().expect("certs");
    let root = pki.write_root(certs.path());
    let resolve = format!("api.certfile.test:443={}", upstream.addr);

    let codes = tokio::task::spawn_blocking(move || {
        let mut codes = Vec::new();
        for trust in [Some(&root), None] {
            let home = tempfile::tempdir().expect("home");
            let mut cmd = bin::keygate_keyutils(
                home.path(),
                &[
                    "start",
                    "--listen",
                    "127.0.0.1:0",
                    "--mode",
                    "custom",
                    "--intercept",
                    "all",
                    "--allow",
                    "api.certfile.test",
                    "--resolve",
                    &resolve,
                ],
            );
            match trust {
                Some(root) => cmd.env("SSL_CERT_FILE", root),
                None => cmd.env_remove("SSL_CERT_FILE"),
            };
            let running = Running::start(cmd);
            let out = bin::run({
                let mut curl = bin::curl(&home.path().join("ca/keygate-ca.pem"));
                curl.args(["--proxy", &format!("http://{}", running.addr)])
                    .args(["--write-out", "%{http_code}", "--output", "/dev/null"])
                    .arg("https://api.certfile.test/");
                curl
            });
            assert_eq!(running.terminate().code(), Some(0));
            codes.push(out.stdout);
        }
        codes
    })
    .await
    .expect("curl through keygate");
    assert_eq!(
        codes[0], "200",
        "SSL_CERT_FILE's root verifies the upstream"
    );
    assert_eq!(
        codes[1], "502",
        "without it the test root is not trusted (control)"
    );
}

// ---------------------------------------------------------------------------------------
// ca/bundle.pem
// ---------------------------------------------------------------------------------------

fn certs_in(path: &Path) -> Vec<CertificateDer<'static>> {
    let text = std::fs::read_to_string(path).expect("read PEM");
    let blocks = text.matches("-----BEGIN CERTIFICATE-----").count();
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .expect("PEM")
        .collect::<Result<_, _>>()
        .expect("certificates");
    assert_eq!(certs.len(), blocks, "{text}");
    certs
}

fn bundle_with(home: &Path, args: &[&str], cert_file: &Path) -> Vec<CertificateDer<'static>> {
    let mut cmd = bin::keygate_keyutils(home, args);
    cmd.env("SSL_CERT_FILE", cert_file);
    let out = bin::run(cmd);
    assert_eq!(out.code, Some(0), "{args:?}: {out:?}");
    certs_in(&home.join("ca/bundle.pem"))
}

#[test]
fn bundle_holds_exactly_the_ssl_cert_file_roots_plus_keygates_ca() {
    let home = tempfile::tempdir().expect("home");
    let certs = tempfile::tempdir().expect("certs");
    let (first, second) = (TestPki::new(), TestPki::named("second test root"));
    let (first_dir, second_dir) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let first_file = first.write_root(first_dir.path());
    let second_file = second.write_root(second_dir.path());
    let ca_path = home.path().join("ca/keygate-ca.pem");

    // `ca init` creates the bundle from the store SSL_CERT_FILE names.
    let bundle = bundle_with(home.path(), &["ca", "init"], &first_file);
    let ca = certs_in(&ca_path);
    assert_eq!(ca.len(), 1);
    assert_eq!(bundle, vec![ca[0].clone(), first.root_der()]);

    // Loading the CA with another store rewrites the bundle.
    let bundle = bundle_with(home.path(), &["ca", "path", "--bundle"], &second_file);
    assert_eq!(bundle, vec![ca[0].clone(), second.root_der()]);

    // A store that is our own bundle (a shell that ran `keygate env`) is not doubled,
    // and after a rotation the old keygate CA found there is dropped (THREAT_MODEL.md).
    let own = home.path().join("ca/bundle.pem");
    let copy = certs.path().join("old-bundle.pem");
    std::fs::copy(&own, &copy).expect("copy the bundle");
    let bundle = bundle_with(home.path(), &["ca", "path", "--bundle"], &copy);
    assert_eq!(bundle, vec![ca[0].clone(), second.root_der()]);
    let bundle = bundle_with(home.path(), &["ca", "init", "--force"], &copy);
    let rotated = certs_in(&ca_path);
    assert_ne!(rotated[0], ca[0]);
    assert_eq!(bundle, vec![rotated[0].clone(), second.root_der()]);
}
