//! Issue 16, approvals on `keygate run --ask`: the request is held while keygate asks on
//! its terminal (a real pseudo-terminal, driven by tests/support/pty_drive.py): allow
//! once, deny, allow always (the rule written to keygate.yaml, not asked again in the
//! run); a command reading the terminal does not get the answer's keystrokes; Ctrl-Z
//! stops keygate with its command and `fg` resumes both; without a terminal nothing is
//! held.

use std::path::Path;

use serde_json::Value;

use crate::support::bin;
use crate::support::clients;
use crate::support::upstream::HttpUpstream;

const SITE: &str = "site.ask.test";
const PROMPT: &str = "or [d]eny? ";

/// Runs `argv` on a pseudo-terminal, typing each step's keys once its text appeared.
fn on_terminal(steps: &[(&str, &str)], argv: &[&str]) -> (String, i64, usize) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/pty_drive.py");
    let steps: Vec<[&str; 2]> = steps.iter().map(|(a, b)| [*a, *b]).collect();
    let out = bin::run({
        let mut cmd = std::process::Command::new("/usr/bin/python3");
        cmd.arg(script)
            .arg(serde_json::to_string(&steps).unwrap())
            .arg("40")
            .arg("--")
            .args(argv)
            .env_remove("HTTP_PROXY")
            .env_remove("HTTPS_PROXY")
            .env_remove("http_proxy")
            .env_remove("https_proxy")
            .env("KEYGATE_KEYRING", "keyutils")
            .env("TERM", "dumb");
        cmd
    });
    assert_eq!(out.code, Some(0), "the driver failed: {out:?}");
    let got: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    (
        got["out"].as_str().unwrap().to_string(),
        got["code"].as_i64().unwrap(),
        usize::try_from(got["steps"].as_u64().unwrap()).unwrap(),
    )
}

fn ready() -> bool {
    clients::curl().is_some() && Path::new("/usr/bin/python3").exists()
}

fn home(ask_timeout: &str) -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    std::fs::write(
        home.path().join("keygate.yaml"),
        format!(
            "# the user's own comment\nlisten: 127.0.0.1:0\nnetwork:\n  mode: custom\n  ask_timeout: {ask_timeout}\n"
        ),
    )
    .unwrap();
    home
}

/// `keygate --home H run --ask [extra] --resolve SITE:80=UPSTREAM -- COMMAND...`
fn run_ask<'a>(
    home: &'a Path,
    resolve: &'a str,
    extra: &[&'a str],
    command: &[&'a str],
) -> Vec<&'a str> {
    let mut argv = vec![
        env!("CARGO_BIN_EXE_keygate"),
        "--home",
        home.to_str().unwrap(),
        "run",
        "--ask",
    ];
    argv.extend(extra);
    argv.extend(["--resolve", resolve, "--"]);
    argv.extend(command);
    argv
}

fn curl_status(url: &str) -> Vec<String> {
    vec![
        "curl".into(),
        "-s".into(),
        "-o".into(),
        "/dev/null".into(),
        "-w".into(),
        "status=%{http_code}\\n".into(),
        url.into(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_terminal_allows_once_denies_and_allows_always() {
    if !ready() || !crate::jail::jail_available() {
        return;
    }
    let upstream = HttpUpstream::start().await;
    let home = home("20s");
    let resolve = format!("{SITE}:80={}", upstream.addr);
    // Once, in the jail.
    let url = format!("http://{SITE}/once");
    let curl = curl_status(&url);
    let curl: Vec<&str> = curl.iter().map(String::as_str).collect();
    let argv = run_ask(home.path(), &resolve, &[], &curl);
    let (out, code, _) = tokio::task::spawn_blocking({
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        move || {
            let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
            on_terminal(&[(PROMPT, "o\n")], &argv)
        }
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!(
            "wants GET http://{SITE}/once, which is not allowed"
        )),
        "{out}"
    );
    assert!(out.contains("status=200"), "{out}");
    assert_eq!(upstream.next_arrival().await, "/once");
    // Deny.
    let url = format!("http://{SITE}/denied");
    let curl = curl_status(&url);
    let argv: Vec<String> = run_ask(
        home.path(),
        &resolve,
        &[],
        &curl.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (out, _, _) = tokio::task::spawn_blocking(move || {
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        on_terminal(&[(PROMPT, "d\n")], &argv)
    })
    .await
    .unwrap();
    assert!(out.contains("status=403"), "{out}");
    let audit = std::fs::read_to_string(home.path().join("audit.jsonl")).unwrap();
    assert!(
        audit.contains("denied by the terminal when asked"),
        "the audit names who answered: {audit}"
    );
    // Always, unjailed this time: written to keygate.yaml (the comment kept), and the
    // run's next request to the host is not asked about.
    let script = format!(
        "curl -s -o /dev/null -w 'first=%{{http_code}}\\n' http://{SITE}/always; curl -s -o /dev/null -w 'second=%{{http_code}}\\n' http://{SITE}/again"
    );
    let argv: Vec<String> = run_ask(
        home.path(),
        &resolve,
        &["--no-jail"],
        &["sh", "-c", &script],
    )
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (out, _, steps) = tokio::task::spawn_blocking(move || {
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        on_terminal(&[(PROMPT, "a\n"), (PROMPT, "d\n")], &argv)
    })
    .await
    .unwrap();
    assert_eq!(steps, 1, "asked once only: {out}");
    assert!(
        out.contains("first=200") && out.contains("second=200"),
        "{out}"
    );
    assert!(
        out.contains(&format!("added {SITE} to network.allow")),
        "{out}"
    );
    assert_eq!(upstream.next_arrival().await, "/always");
    assert_eq!(upstream.next_arrival().await, "/again");
    let yaml = std::fs::read_to_string(home.path().join("keygate.yaml")).unwrap();
    assert!(yaml.starts_with("# the user's own comment\n"), "{yaml}");
    assert!(yaml.contains(&format!("allow: [\"{SITE}\"]")), "{yaml}");
    let audit = std::fs::read_to_string(home.path().join("audit.jsonl")).unwrap();
    assert!(
        audit.contains("approved (always) by the terminal when asked"),
        "{audit}"
    );
}

/// The command reads the terminal while keygate asks: the kernel stops it (it is in
/// the background then), so the answer goes to keygate and the command's own line to
/// the command, once continued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_reading_the_terminal_does_not_take_the_answer() {
    if !ready() || !crate::jail::jail_available() {
        return;
    }
    let upstream = HttpUpstream::start().await;
    let home = home("20s");
    let resolve = format!("{SITE}:80={}", upstream.addr);
    let script = format!(
        "curl -s -o /dev/null -w 'status=%{{http_code}}\\n' http://{SITE}/read & read line; echo \"child read: $line\"; wait"
    );
    let argv: Vec<String> = run_ask(home.path(), &resolve, &[], &["sh", "-c", &script])
        .iter()
        .map(|s| s.to_string())
        .collect();
    let (out, code, steps) = tokio::task::spawn_blocking(move || {
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        on_terminal(&[(PROMPT, "o\n"), ("status=", "hello\n")], &argv)
    })
    .await
    .unwrap();
    assert_eq!((code, steps), (0, 2), "{out}");
    assert!(out.contains("status=200"), "{out}");
    assert!(out.contains("child read: hello"), "{out}");
    assert!(
        !out.contains("child read: o"),
        "the command took the answer: {out}"
    );
    assert_eq!(upstream.next_arrival().await, "/read");
}

/// Under an interactive shell: Ctrl-Z stops keygate together with its jailed command
/// (the shell reports the job stopped and gets its prompt back); `fg` resumes both.
#[test]
fn ctrl_z_stops_keygate_with_its_command_and_fg_resumes_both() {
    if !ready() || !crate::jail::jail_available() || !Path::new("/bin/bash").exists() {
        return;
    }
    let home = home("20s");
    let line = format!(
        "{} --home {} run --ask -- sh -c 'sleep 1; echo tick$((1)); sleep 2; echo tick$((2))'\n",
        env!("CARGO_BIN_EXE_keygate"),
        home.path().display()
    );
    let (out, _, steps) = on_terminal(
        &[
            ("$ ", &line),
            ("tick1", "\u{1a}"),
            ("Stopped", "fg\n"),
            ("tick2", "exit\n"),
        ],
        &["env", "PS1=$ ", "/bin/bash", "--norc", "--noprofile", "-i"],
    );
    assert_eq!(steps, 4, "{out}");
    let stopped = out.find("Stopped").unwrap();
    assert!(out[stopped..].contains("tick2"), "{out}");
}

/// Without a terminal, `--ask` says there is nobody to ask and refuses at once (with
/// a ten-minute `ask_timeout`, a held request would outlast the test's wait).
#[test]
fn without_a_terminal_nothing_is_held() {
    if !ready() || !crate::jail::jail_available() {
        return;
    }
    let home = home("10m");
    let url = format!("http://{SITE}/");
    let mut cmd = bin::keygate_keyutils(home.path(), &["run", "--ask", "--"]);
    cmd.args(curl_status(&url));
    let out = bin::run(cmd);
    assert!(out.stdout.contains("status=403"), "{out:?}");
    assert!(
        out.stderr
            .contains("--ask: standard input is not a terminal"),
        "{out:?}"
    );
    let audit = std::fs::read_to_string(home.path().join("audit.jsonl")).unwrap();
    assert!(audit.contains("not-allowed"), "{audit}");
    assert!(!audit.contains("asked"), "{audit}");
}

/// The jail's seccomp filter (this test runs as whoever runs the suite: root here and in
/// CI; the next one as uid 65534): a jailed command that shares keygate's terminal cannot
/// push keys into it (TIOCSTI), so it can neither answer `--ask`'s prompt itself nor
/// type into the user's shell after keygate exits. Unjailed, the same call works where
/// the kernel still allows it (`dev.tty.legacy_tiocsti`): the probe is not merely broken.
#[test]
fn a_jailed_command_cannot_push_keys_into_the_terminal() {
    if !ready() || !crate::jail::jail_available() {
        return;
    }
    let home = home("20s");
    let probe = "import fcntl, termios\ntry:\n    fcntl.ioctl(0, termios.TIOCSTI, b'x'); print('tiocsti=' + 'injected')\nexcept OSError as e:\n    print('tiocsti=' + type(e).__name__)\n";
    let keygate = env!("CARGO_BIN_EXE_keygate");
    let home_arg = home.path().to_str().unwrap();
    let (out, code, _) = on_terminal(
        &[],
        &[
            keygate,
            "--home",
            home_arg,
            "run",
            "--",
            "/usr/bin/python3",
            "-c",
            probe,
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("tiocsti=PermissionError"), "{out}");
    let legacy =
        std::fs::read_to_string("/proc/sys/dev/tty/legacy_tiocsti").is_ok_and(|v| v.trim() == "1");
    if legacy {
        let (out, _, _) = on_terminal(
            &[],
            &[
                keygate,
                "--home",
                home_arg,
                "run",
                "--no-jail",
                "--",
                "/usr/bin/python3",
                "-c",
                probe,
            ],
        );
        assert!(out.contains("tiocsti=injected"), "{out}");
    }
}

/// As [`a_jailed_command_cannot_push_keys_into_the_terminal`], with keygate and the
/// jailed command run as an ordinary user (uid 65534 via setpriv, no capabilities): root
/// could do more than a user, so the refusal must hold for a user too. Unjailed as that
/// user the call works (where the kernel allows it): the filter, not the uid, refuses.
#[test]
fn a_jailed_command_cannot_push_keys_into_the_terminal_as_an_unprivileged_user() {
    if !ready() || !crate::jail::jail_available() {
        return;
    }
    let Some(uid) = crate::jail::unprivileged_user() else {
        return;
    };
    let home = home("20s");
    let cwd = tempfile::tempdir().unwrap();
    for dir in [home.path(), cwd.path()] {
        let chown = std::process::Command::new("chown")
            .args(["-R", &format!("{uid}:{uid}")])
            .arg(dir)
            .status()
            .unwrap();
        assert!(chown.success());
    }
    // Double quotes only: the probe travels in a single-quoted shell variable.
    let probe = "import fcntl, os, termios\ntry:\n    fcntl.ioctl(0, termios.TIOCSTI, b\"x\"); print(\"tiocsti=\" + \"injected\", os.getuid())\nexcept OSError as e:\n    print(\"tiocsti=\" + type(e).__name__, os.getuid())\n";
    let as_user = |extra: &str| {
        format!(
            "cd {cwd} && exec setpriv --reuid={uid} --regid={uid} --clear-groups -- env HOME={cwd} {keygate} --home {home} run {extra} -- /usr/bin/python3 -c \"$PROBE\"",
            cwd = cwd.path().display(),
            keygate = env!("CARGO_BIN_EXE_keygate"),
            home = home.path().display(),
        )
    };
    let run = |extra: &str| {
        let script = format!("export PROBE='{probe}'; {}", as_user(extra));
        on_terminal(&[], &["/bin/sh", "-c", &script])
    };
    let (out, code, _) = run("");
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("tiocsti=PermissionError {uid}")),
        "jailed, as uid {uid}: {out}"
    );
    let legacy =
        std::fs::read_to_string("/proc/sys/dev/tty/legacy_tiocsti").is_ok_and(|v| v.trim() == "1");
    if legacy {
        let (out, _, _) = run("--no-jail");
        assert!(
            out.contains(&format!("tiocsti=injected {uid}")),
            "unjailed, as uid {uid}: {out}"
        );
    }
}
