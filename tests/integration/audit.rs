//! The audit log through the binary (issue 16, point 6 and `keygate log`): the hash
//! chain written by `keygate start` and checked by `keygate audit verify`, rotation by
//! `audit:` in keygate.yaml, and `keygate log`'s filters and `-f`.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use keygate::audit::{AuditLog, Event, Kind, Rotation, Verdict};
use serde_json::Value;

use crate::support::WAIT;
use crate::support::bin::{Output, Running, curl, keygate, run};

/// Writes events to `home`'s audit.jsonl the way keygate does.
fn record(home: &Path, rotation: Rotation, events: Vec<Event>) {
    let (log, writer) = AuditLog::open(&home.join("audit.jsonl"), rotation).unwrap();
    for event in events {
        log.record(event);
        assert!(log.flush(WAIT));
    }
    drop(log);
    writer.finish();
}

fn event(host: &str, decision: Verdict, status: u16, secret: Option<&str>) -> Event {
    let mut e = Event::new("127.0.0.1:40000", Kind::Request, decision);
    e.host = Some(host.into());
    e.port = Some(443);
    e.method = Some("GET".into());
    e.path = Some("/v1/models".into());
    e.status = Some(status);
    e.secret = secret.map(String::from);
    e.reason = Some(format!("{decision:?} for the test").to_lowercase());
    e
}

fn three_events() -> Vec<Event> {
    vec![
        event("api.example.com", Verdict::Allow, 200, None),
        event("evil.test", Verdict::Deny, 403, None),
        event(
            "api.example.com",
            Verdict::Intercept,
            201,
            Some("anthropic"),
        ),
    ]
}

fn keygate_in(home: &Path, args: &[&str]) -> Output {
    let mut cmd = keygate(home);
    cmd.args(args);
    run(cmd)
}

fn rewrite(path: &Path, change: impl FnOnce(&mut Vec<String>)) {
    let mut lines: Vec<String> = fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    change(&mut lines);
    fs::write(path, lines.join("\n") + "\n").unwrap();
}

#[test]
fn audit_verify_reports_ok_then_an_edited_a_deleted_and_a_reordered_line() {
    let home = tempfile::tempdir().unwrap();
    let path = home.path().join("audit.jsonl");
    record(home.path(), Rotation::default(), three_events());
    let pristine = fs::read_to_string(&path).unwrap();

    let ok = keygate_in(home.path(), &["audit", "verify"]);
    assert_eq!(ok.code, Some(0), "{ok:?}");
    assert!(
        ok.stdout.contains("audit chain OK: 4 lines in 1 file"),
        "{ok:?}"
    );

    rewrite(&path, |l| l[2] = l[2].replace("403", "200"));
    let edited = keygate_in(home.path(), &["audit", "verify"]);
    assert_eq!(edited.code, Some(1), "{edited:?}");
    assert!(
        edited.stdout.contains("audit.jsonl:3: edited"),
        "{edited:?}"
    );

    fs::write(&path, &pristine).unwrap();
    rewrite(&path, |l| {
        l.remove(2);
    });
    let deleted = keygate_in(home.path(), &["audit", "verify"]);
    assert_eq!(deleted.code, Some(1), "{deleted:?}");
    assert!(
        deleted.stdout.contains("audit.jsonl:3: 1 line deleted"),
        "{deleted:?}"
    );

    fs::write(&path, &pristine).unwrap();
    rewrite(&path, |l| l.swap(1, 2));
    let reordered = keygate_in(home.path(), &["audit", "verify"]);
    assert_eq!(reordered.code, Some(1), "{reordered:?}");
    assert!(
        reordered.stdout.contains("audit.jsonl:2: reordered"),
        "{reordered:?}"
    );

    let copy = home.path().join("copy.jsonl");
    fs::write(&copy, &pristine[..pristine.len() - 5]).unwrap();
    let cut = keygate_in(
        home.path(),
        &["audit", "verify", "--file", copy.to_str().unwrap()],
    );
    assert_eq!(cut.code, Some(1), "{cut:?}");
    assert!(
        cut.stdout
            .contains("copy.jsonl:4: the last line is cut off"),
        "{cut:?}"
    );

    let missing = keygate_in(home.path(), &["audit", "verify", "--file", "/nonexistent"]);
    assert_eq!(missing.code, Some(1), "{missing:?}");
    assert!(missing.stderr.contains("no audit log there"), "{missing:?}");
}

#[test]
fn keygate_start_writes_a_chain_that_verifies_across_rotated_files() {
    let home = tempfile::tempdir().unwrap();
    fs::write(
        home.path().join("keygate.yaml"),
        "audit:\n  max_bytes: 1KiB\n  keep: 3\n",
    )
    .unwrap();
    let check = keygate_in(home.path(), &["check"]);
    assert_eq!(check.code, Some(0), "{check:?}");
    assert!(
        check
            .stdout
            .contains("audit: rotated past 1KiB, 3 files kept"),
        "{check:?}"
    );
    let mut cmd = keygate(home.path());
    cmd.args(["start", "--listen", "127.0.0.1:0", "--mode", "custom"]);
    let keygate = Running::start(cmd);
    for i in 0..8 {
        let out = run({
            let mut cmd = curl(&home.path().join("ca/keygate-ca.pem"));
            cmd.args(["--proxy", &format!("http://{}", keygate.addr)])
                .arg(format!("http://blocked{i}.invalid/"));
            cmd
        });
        assert_eq!(out.code, Some(0), "{out:?}");
    }
    assert_eq!(keygate.terminate().code(), Some(0));
    assert!(home.path().join("audit.jsonl.1").is_file(), "rotated");
    assert!(!home.path().join("audit.jsonl.3").exists(), "keep: 3");
    let ok = keygate_in(home.path(), &["audit", "verify"]);
    assert_eq!(ok.code, Some(0), "{ok:?}");
    assert!(ok.stdout.contains("audit.jsonl.1, "), "{ok:?}");
    let first: Value = serde_json::from_str(
        fs::read_to_string(home.path().join("audit.jsonl"))
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(first["kind"], "chain");
    assert_eq!(first["reason"], "rotated");
    assert!(first["prev"].is_string(), "{first}");
}

#[test]
fn a_bad_audit_section_is_a_configuration_error_with_its_place() {
    let home = tempfile::tempdir().unwrap();
    fs::write(
        home.path().join("keygate.yaml"),
        "audit:\n  max_bytes: 10\n",
    )
    .unwrap();
    let out = keygate_in(home.path(), &["check"]);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("keygate.yaml:2:"), "{out:?}");
    assert!(out.stderr.contains("1KiB"), "{out:?}");
    fs::write(home.path().join("keygate.yaml"), "audit:\n  kept: 3\n").unwrap();
    let out = keygate_in(home.path(), &["check"]);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("unknown field `kept`"), "{out:?}");
}

#[test]
fn keygate_log_shows_one_line_per_event_and_filters_by_host_and_decision() {
    let home = tempfile::tempdir().unwrap();
    record(home.path(), Rotation::default(), three_events());

    let all = keygate_in(home.path(), &["log"]);
    assert_eq!(all.code, Some(0), "{all:?}");
    let lines: Vec<&str> = all.stdout.lines().collect();
    assert_eq!(
        lines.len(),
        4,
        "a header and three events, no marker: {all:?}"
    );
    assert!(lines[0].starts_with("TIME (UTC)"), "{all:?}");
    assert!(lines[3].contains("intercept") && lines[3].contains("anthropic"));
    let column = |line: &str, part: &str| line.find(part);
    assert_eq!(column(lines[1], "allow"), column(lines[0], "DECISION"));

    let denied = keygate_in(home.path(), &["log", "--decision", "deny"]);
    let lines: Vec<&str> = denied.stdout.lines().skip(1).collect();
    assert_eq!(lines.len(), 1, "{denied:?}");
    assert!(lines[0].contains("evil.test") && lines[0].contains("403"));

    let by_host = keygate_in(home.path(), &["log", "--host", "*.example.com"]);
    assert_eq!(by_host.stdout.lines().count(), 3, "{by_host:?}");
    assert!(!by_host.stdout.contains("evil.test"), "{by_host:?}");

    let raw = keygate_in(home.path(), &["log", "--json", "-n", "1"]);
    let lines: Vec<&str> = raw.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{raw:?}");
    let last: Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(last["secret"], "anthropic");
    assert!(last["prev"].is_string());

    let bad = keygate_in(home.path(), &["log", "--decision", "maybe"]);
    assert_eq!(bad.code, Some(2), "{bad:?}");
    let nowhere = tempfile::tempdir().unwrap();
    let missing = keygate_in(nowhere.path(), &["log"]);
    assert_eq!(missing.code, Some(1), "{missing:?}");
    assert!(
        missing.stderr.contains("no audit log there yet"),
        "{missing:?}"
    );
}

#[test]
fn keygate_log_follows_new_events_through_a_rotation() {
    let home = tempfile::tempdir().unwrap();
    record(home.path(), Rotation::default(), three_events());
    let mut cmd = keygate(home.path());
    cmd.args(["log", "-f", "--json", "--decision", "deny"]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let next = |rx: &mpsc::Receiver<String>| -> Value {
        let line = rx.recv_timeout(WAIT).expect("a line from keygate log -f");
        serde_json::from_str(&line).unwrap()
    };
    assert_eq!(next(&rx)["host"], "evil.test", "the backlog");
    let small = Rotation {
        max_bytes: 1024,
        keep: 5,
    };
    let refusals: Vec<Event> = (0..6)
        .map(|i| event(&format!("r{i}.test"), Verdict::Deny, 403, None))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    record(home.path(), small, refusals);
    for i in 0..6 {
        assert_eq!(next(&rx)["host"], format!("r{i}.test"));
    }
    assert!(
        home.path().join("audit.jsonl.2").is_file(),
        "it rotated twice"
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn two_keygate_processes_appending_at_once_keep_one_chain() {
    let home = tempfile::tempdir().unwrap();
    fs::write(
        home.path().join("keygate.yaml"),
        "audit:\n  max_bytes: 4KiB\n  keep: 1000\n",
    )
    .unwrap();
    assert_eq!(keygate_in(home.path(), &["ca", "init"]).code, Some(0));
    let start = || {
        let mut cmd = keygate(home.path());
        cmd.args(["start", "--listen", "127.0.0.1:0", "--mode", "custom"]);
        Running::start(cmd)
    };
    let (a, b) = (start(), start());
    let ca = home.path().join("ca/keygate-ca.pem");
    let clients: Vec<_> = [a.addr, b.addr]
        .into_iter()
        .map(|addr| {
            let ca = ca.clone();
            std::thread::spawn(move || {
                for i in 0..15 {
                    let out = run({
                        let mut cmd = curl(&ca);
                        cmd.args(["--proxy", &format!("http://{addr}")])
                            .arg(format!("http://p{}-{i}.invalid/", addr.port()));
                        cmd
                    });
                    assert_eq!(out.code, Some(0), "{out:?}");
                }
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    assert_eq!(a.terminate().code(), Some(0));
    assert_eq!(b.terminate().code(), Some(0));
    let ok = keygate_in(home.path(), &["audit", "verify"]);
    assert_eq!(ok.code, Some(0), "{ok:?}");
    assert!(home.path().join("audit.jsonl.2").is_file(), "it rotated");
    let raw = keygate_in(home.path(), &["log", "--json", "--decision", "deny"]);
    assert_eq!(
        raw.stdout.lines().count(),
        30,
        "every refusal of both: {raw:?}"
    );
}
