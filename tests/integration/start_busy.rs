//! A second `keygate start` on a busy address: it binds before it reads the keyring,
//! fails with exit 1, and names what holds the address.

use crate::support::bin::{self, Output, Running};
use crate::support::secret::unique;

/// `keygate start --listen ADDR` in a home whose secrets.yaml names a secret with no
/// value in the keyring: reading the keyring would print a "registered but has no
/// value" warning, and starting would create the CA.
fn second_start(addr: std::net::SocketAddr) -> (Output, tempfile::TempDir) {
    let home = tempfile::tempdir().expect("home");
    let name = format!("kgbusy-{}", unique());
    std::fs::write(
        home.path().join("secrets.yaml"),
        format!("- name: {name}\n  hosts: [api.busy.test]\n  dummy: keygate-dummy-{name}\n"),
    )
    .expect("secrets.yaml");
    let out = bin::run(bin::keygate_keyutils(
        home.path(),
        &["start", "--listen", &addr.to_string()],
    ));
    (out, home)
}

fn read_nothing(out: &Output, home: &std::path::Path) {
    assert!(
        !out.stderr.contains("no value in the") && !out.stderr.contains("loaded"),
        "the keyring was read: {}",
        out.stderr
    );
    assert!(!home.join("ca").exists(), "no CA was created");
    assert!(!out.stderr.contains("listening"), "{}", out.stderr);
}

#[test]
fn a_second_start_on_a_busy_port_names_the_keygate_there_and_reads_no_secret() {
    let first_home = tempfile::tempdir().expect("home");
    let first = Running::start(bin::keygate_keyutils(
        first_home.path(),
        &["start", "--listen", "127.0.0.1:0"],
    ));
    let (out, home) = second_start(first.addr);
    assert_eq!(out.code, Some(1), "{out:?}");
    let expected = format!(
        "keygate: {} is in use by another keygate (version {}",
        first.addr,
        env!("CARGO_PKG_VERSION")
    );
    assert!(out.stderr.contains(&expected), "{}", out.stderr);
    #[cfg(target_os = "linux")]
    assert!(
        out.stderr.contains(&format!("pid {})", first.pid())),
        "names the pid: {}",
        out.stderr
    );
    assert!(
        out.stderr.contains("--listen 127.0.0.1:0"),
        "{}",
        out.stderr
    );
    assert_eq!(out.stderr.lines().count(), 1, "one line: {}", out.stderr);
    read_nothing(&out, home.path());
    let status = first.terminate();
    assert!(
        status.success(),
        "the first keygate is unharmed: {status:?}"
    );
}

#[test]
fn a_port_held_by_another_program_is_named_too() {
    // A listener that never answers: the probe times out, so it is not a keygate.
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = squatter.local_addr().expect("addr");
    let (out, home) = second_start(addr);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr.contains(&format!(
            "cannot listen on {addr}: the address is in use by"
        )),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("not a keygate"), "{}", out.stderr);
    #[cfg(target_os = "linux")]
    assert!(
        out.stderr
            .contains(&format!("(pid {})", std::process::id())),
        "names this test process: {}",
        out.stderr
    );
    read_nothing(&out, home.path());
    drop(squatter);
}
