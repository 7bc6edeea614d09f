//! The real OS keyring backends (SPEC §2): keyutils always on Linux, Secret Service when
//! a session bus answers (scripts/test provides a throw-away one and sets
//! KEYGATE_TEST_SECRET_SERVICE=1 so that its absence fails instead of skipping).
//! Entry names are unique to the run and removed by a guard, even on failure.

use std::time::{SystemTime, UNIX_EPOCH};

use keygate::secrets::keyring::{self, KeyringStore};
use keygate::secrets::{SecretStore, SecretValue};

use crate::support::bin;

/// A name no other run or developer entry uses.
fn unique_name(tag: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("kgtest-{tag}-{}-{nanos}", std::process::id())
}

/// Deletes the entry when dropped, so a failing test leaves nothing behind.
struct Cleanup<'a> {
    store: &'a KeyringStore,
    name: String,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let _ = self.store.delete(&self.name);
    }
}

fn round_trip(store: &KeyringStore, backend: &str) {
    assert_eq!(store.backend(), backend);
    let name = unique_name(backend);
    let _cleanup = Cleanup {
        store,
        name: name.clone(),
    };
    let value = SecretValue::new(format!("sk-real-{name}")).expect("value");
    assert!(store.get(&name).expect("get before set").is_none());
    store.set(&name, &value).expect("set");
    let read = store.get(&name).expect("get").expect("stored");
    assert!(read == value, "the value read back differs");
    let replacement = SecretValue::new(format!("sk-rotated-{name}")).expect("value");
    store.set(&name, &replacement).expect("replace");
    assert!(store.get(&name).expect("get").expect("stored") == replacement);
    assert!(store.delete(&name).expect("delete"));
    assert!(store.get(&name).expect("get after delete").is_none());
    assert!(!store.delete(&name).expect("second delete"));
}

#[test]
fn keyutils_stores_reads_replaces_and_deletes() {
    let store = keyring::open(Some("keyutils")).expect("the keyutils backend");
    round_trip(&store, "keyutils");
    assert!(store.caveat().expect("keyutils caveat").contains("reboot"));
}

#[test]
fn secret_service_stores_reads_replaces_and_deletes() {
    let required = std::env::var("KEYGATE_TEST_SECRET_SERVICE").is_ok_and(|v| v == "1");
    match keyring::open(Some("secret-service")) {
        Ok(store) => round_trip(&store, "secret-service"),
        Err(_) if !required => {
            eprintln!(
                "skipped: no Secret Service on this session; ./scripts/test runs one (it needs gnome-keyring and dbus: apt-get install gnome-keyring dbus-daemon dbus-bin)"
            );
        }
        Err(e) => panic!(
            "KEYGATE_TEST_SECRET_SERVICE=1 (./scripts/test sets it inside the D-Bus session it starts) but the Secret Service is unreachable: {e}"
        ),
    }
}

#[test]
fn an_unknown_backend_is_named_with_the_choices() {
    let err = keyring::open(Some("vault")).unwrap_err().to_string();
    assert!(err.contains("KEYGATE_KEYRING=vault"), "{err}");
    assert!(
        err.contains("keyutils") && err.contains("secret-service"),
        "{err}"
    );
}

#[test]
fn an_unreachable_secret_service_says_what_to_do() {
    // No bus at this address: the error must name the backend and the remedy.
    let out = bin::run({
        let home = tempfile::tempdir().expect("home");
        let mut cmd = bin::keygate(home.path());
        cmd.env("KEYGATE_KEYRING", "secret-service")
            .env(
                "DBUS_SESSION_BUS_ADDRESS",
                "unix:path=/nonexistent/keygate-test-bus",
            )
            .args([
                "secret",
                "add",
                "demo",
                "--host",
                "api.demo.test",
                "--from-env",
                "DEMO_VALUE",
            ])
            .env("DEMO_VALUE", "sk-never-stored-123");
        cmd
    });
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("secret-service"), "{}", out.stderr);
    assert!(
        out.stderr.contains("KEYGATE_KEYRING=keyutils"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("sk-never-stored-123"));
}

#[test]
fn cli_add_list_rm_with_keyutils() {
    let home = tempfile::tempdir().expect("home");
    let name = unique_name("cli");
    let real = format!("sk-live-{name}");
    let cmd = |args: &[&str]| {
        let mut cmd = bin::keygate(home.path());
        cmd.env("KEYGATE_KEYRING", "keyutils").args(args);
        cmd
    };
    let store = keyring::open(Some("keyutils")).expect("keyutils");
    let _cleanup = Cleanup {
        store: &store,
        name: name.clone(),
    };

    let mut add = cmd(&[
        "secret",
        "add",
        &name,
        "--host",
        "api.demo.test",
        "--format",
        "Bearer {secret}",
    ]);
    add.args(["--env", "DEMO_API_KEY", "--from-env", "DEMO_VALUE"])
        .env("DEMO_VALUE", &real);
    let out = bin::run(add);
    assert_eq!(out.code, Some(0), "{out:?}");
    let dummy = out.stdout.lines().last().expect("dummy line").to_string();
    assert!(dummy.starts_with("keygate-dummy-"), "{dummy}");
    assert!(!out.stdout.contains(&real) && !out.stderr.contains(&real));
    assert!(
        out.stderr.contains("reboot"),
        "the keyutils caveat is shown: {}",
        out.stderr
    );
    let registry = std::fs::read_to_string(home.path().join("secrets.yaml")).expect("registry");
    assert!(registry.contains(&dummy) && !registry.contains(&real));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(home.path().join("secrets.yaml"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "secrets.yaml is owner-only");
    }

    // Adding again (a rotated key) keeps the dummy the sandbox already holds.
    let mut again = cmd(&["secret", "add", &name, "--stdin"]);
    again.stdin(std::process::Stdio::piped());
    let mut child = again
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        writeln!(stdin, "{real}-rotated").expect("write value");
    }
    let rotated = child.wait_with_output().expect("wait");
    let rotated_err = String::from_utf8_lossy(&rotated.stderr);
    assert!(rotated.status.success(), "{rotated_err}");
    assert_eq!(String::from_utf8_lossy(&rotated.stdout).trim(), dummy);
    assert!(
        rotated_err.contains(&format!("keygate: stored `{name}`")),
        "{rotated_err}"
    );
    assert!(!rotated_err.contains(&real), "the value is not printed");
    let stored = store.get(&name).expect("get").expect("stored");
    assert_eq!(
        stored.expose(),
        format!("{real}-rotated"),
        "the trailing newline is dropped"
    );

    let list = bin::run(cmd(&["secret", "list", "--long"]));
    assert_eq!(list.code, Some(0), "{list:?}");
    let row = list
        .stdout
        .lines()
        .find(|l| l.starts_with(&name))
        .expect("listed");
    assert!(
        row.contains("api.demo.test") && row.contains(&dummy) && row.ends_with("  yes"),
        "{row}"
    );
    assert!(!list.stdout.contains(&real));

    let rm = bin::run(cmd(&["secret", "rm", &name]));
    assert_eq!(rm.code, Some(0), "{rm:?}");
    assert!(store.get(&name).expect("get").is_none());
    assert!(
        !std::fs::read_to_string(home.path().join("secrets.yaml"))
            .expect("registry")
            .contains(&name)
    );
    let again = bin::run(cmd(&["secret", "rm", &name]));
    assert_eq!(
        again.code,
        Some(2),
        "removing an unknown secret is a usage error"
    );
}

#[test]
fn cli_add_rejects_bad_input_without_echoing_the_value() {
    let home = tempfile::tempdir().expect("home");
    let run = |args: &[&str], value: &str| {
        let mut cmd = bin::keygate(home.path());
        cmd.env("KEYGATE_KEYRING", "keyutils")
            .env("V", value)
            .args(args);
        bin::run(cmd)
    };
    let no_recipe = run(
        &["secret", "add", "nosuchprovider", "--from-env", "V"],
        "sk-value-1",
    );
    assert_eq!(no_recipe.code, Some(2));
    assert!(no_recipe.stderr.contains("--host"), "{}", no_recipe.stderr);
    let bad_format = run(
        &[
            "secret",
            "add",
            "x1",
            "--host",
            "a.test",
            "--format",
            "Bearer",
            "--from-env",
            "V",
        ],
        "sk-value-2",
    );
    assert_eq!(bad_format.code, Some(2));
    assert!(
        bad_format.stderr.contains("{secret}"),
        "{}",
        bad_format.stderr
    );
    let crlf = run(
        &["secret", "add", "x2", "--host", "a.test", "--from-env", "V"],
        "sk-val\r\nX-Evil: 1",
    );
    assert_eq!(crlf.code, Some(2));
    assert!(!crlf.stderr.contains("sk-val"), "{}", crlf.stderr);
    let no_tty = run(&["secret", "add", "x3", "--host", "a.test"], "unused");
    assert_eq!(no_tty.code, Some(2));
    assert!(no_tty.stderr.contains("--stdin"), "{}", no_tty.stderr);
    assert!(
        !home.path().join("secrets.yaml").exists(),
        "nothing was registered"
    );
}

/// A session bus address where nothing answers: no Secret Service, so keyutils.
const NO_BUS: &str = "unix:path=/nonexistent/keygate-test-bus";

/// Asserts that `lines` say the keyutils fallback notice exactly once, without the
/// D-Bus details (those are for -v) and without a second "reboot" caveat.
fn says_the_fallback_once(what: &str, lines: &[String]) {
    let notices = lines
        .iter()
        .filter(|l| l.contains("using the kernel keyring"))
        .count();
    assert_eq!(notices, 1, "{what}: one notice: {lines:#?}");
    assert!(
        lines.iter().any(|l| l
            == "keygate: using the kernel keyring (no Secret Service on this session); secrets do not survive a reboot"),
        "{what}: the notice's words: {lines:#?}"
    );
    assert_eq!(
        lines.iter().filter(|l| l.contains("reboot")).count(),
        1,
        "{what}: the reboot caveat is said once: {lines:#?}"
    );
    for line in lines {
        let lower = line.to_lowercase();
        assert!(
            !lower.contains("zbus") && !lower.contains("d-bus") && !lower.contains("falling back"),
            "{what}: no bus details without -v: {line}"
        );
    }
}

#[test]
fn without_a_secret_service_the_keyutils_fallback_is_one_short_notice() {
    let home = tempfile::tempdir().expect("home");
    let name = unique_name("fallback");
    let _entry = bin::KeyutilsEntry(name.clone());
    let cmd = |args: &[&str]| {
        // KEYGATE_KEYRING is removed by bin::keygate: the backend is chosen, not forced.
        let mut cmd = bin::keygate(home.path());
        cmd.env("DBUS_SESSION_BUS_ADDRESS", NO_BUS).args(args);
        cmd
    };
    let value = format!("sk-fallback-{name}");
    let mut add = cmd(&["secret", "add", &name, "--host", "api.fallback.test"]);
    add.args(["--from-env", "V"]).env("V", &value);
    let add = bin::run(add);
    assert_eq!(add.code, Some(0), "{add:?}");
    assert!(add.stderr.contains("keyutils"), "{}", add.stderr);
    let lines: Vec<String> = add.stderr.lines().map(String::from).collect();
    says_the_fallback_once("secret add", &lines);

    let list = bin::run(cmd(&["secret", "list"]));
    assert_eq!(list.code, Some(0), "{list:?}");
    let lines: Vec<String> = list.stderr.lines().map(String::from).collect();
    says_the_fallback_once("secret list", &lines);

    // start reads the keyring at start and again at each SIGHUP: still one notice.
    let keygate = bin::Running::start(cmd(&["start", "--listen", "127.0.0.1:0"]));
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &keygate.pid().to_string()])
        .status()
        .expect("kill -HUP");
    assert!(hup.success());
    keygate.wait_for_line("reloaded the configuration");
    let (status, lines) = keygate.terminate_with_stderr();
    assert!(status.success(), "{status:?}: {lines:#?}");
    says_the_fallback_once("start + SIGHUP", &lines);
    for text in [&add.stdout, &add.stderr, &list.stdout, &list.stderr] {
        assert!(!text.contains(&value), "the value is never printed");
    }
    assert!(!lines.iter().any(|l| l.contains(&value)));
}
