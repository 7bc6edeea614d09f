//! Issue 15: `keygate secret add NAME --recipe aws` at a terminal asks for the access key
//! id, the secret access key and the session token (no echo), so real AWS credentials
//! need not be written to a file first. Driven through a pseudo-terminal by Python's
//! `pty` module, each answer sent when its prompt has appeared.

use std::process::Command;

use keygate::secrets::kind::AwsCredentials;
use keygate::secrets::{SecretStore as _, keyring};

use crate::support::bin::{self, KeyutilsEntry};
use crate::support::secret::unique;

/// Runs argv[1:] on a pseudo-terminal, answering each "(not echoed): " prompt with the
/// next of ANSWER_0, ANSWER_1, ... once the terminal's echo is off (as a person types
/// after the prompt; answering earlier would race the prompt's switching echo off);
/// prints what the terminal showed, exits as the child.
const DRIVER: &str = r#"
import os, pty, sys, termios, time
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
def echo_off():
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if not termios.tcgetattr(fd)[3] & termios.ECHO:
            return
        time.sleep(0.01)
seen, i = b"", 0
while True:
    try:
        chunk = os.read(fd, 4096)
    except OSError:
        break
    if not chunk:
        break
    seen += chunk
    if seen.count(b"(not echoed): ") > i and f"ANSWER_{i}" in os.environ:
        echo_off()
        os.write(fd, (os.environ[f"ANSWER_{i}"] + "\n").encode())
        i += 1
_, status = os.waitpid(pid, 0)
sys.stdout.write(seen.decode(errors="replace"))
sys.exit(os.waitstatus_to_exitcode(status))
"#;

#[test]
fn aws_credentials_are_asked_for_at_a_terminal_without_echo() {
    let home = tempfile::tempdir().unwrap();
    let name = format!("kg-prompt-{}", unique());
    let _entry = KeyutilsEntry(name.clone());
    let real_id = format!("AKIAPROMPT{}", unique().to_uppercase());
    let real_secret = format!("promptSecret/{}+x", unique());
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.args(["-c", DRIVER, env!("CARGO_BIN_EXE_keygate")])
        .arg("--home")
        .arg(home.path())
        .args(["secret", "add", &name, "--recipe", "aws"])
        .env("KEYGATE_KEYRING", "keyutils")
        .env("ANSWER_0", &real_id)
        .env("ANSWER_1", &real_secret)
        .env("ANSWER_2", "");
    let out = bin::run(cmd);
    assert_eq!(out.code, Some(0), "{out:?}");
    for prompt in [
        "AWS access key id",
        "AWS secret access key",
        "AWS session token",
    ] {
        assert!(out.stdout.contains(prompt), "{prompt}: {}", out.stdout);
    }
    assert!(!out.stdout.contains(&real_id), "the key id was echoed");
    assert!(!out.stdout.contains(&real_secret), "the secret was echoed");
    let stored = keyring::open(Some("keyutils"))
        .unwrap()
        .get(&name)
        .unwrap()
        .expect("stored");
    let creds = AwsCredentials::parse(stored.expose()).expect("stored as JSON");
    assert_eq!(creds.access_key_id, real_id);
    assert_eq!(creds.secret_access_key, real_secret);
    assert_eq!(creds.session_token, None, "an empty answer is no token");
    let dummy = out.stdout.lines().last().unwrap_or_default().trim();
    assert!(dummy.starts_with("AKIA"), "long-term phantoms: {dummy}");
}
