use super::*;
use crate::audit::verify::verify;
use crate::audit::{AuditLog, Kind, Verdict};
use std::time::Duration;

fn event(i: usize) -> Event {
    let mut e = Event::new("127.0.0.1:1", Kind::Request, Verdict::Allow);
    e.host = Some(format!("h{i}.example"));
    e.path = Some("/".repeat(40));
    e
}

fn write(path: &Path, rotation: Rotation, events: std::ops::Range<usize>) {
    let (log, writer) = AuditLog::open(path, rotation).unwrap();
    for i in events {
        log.record(event(i));
    }
    assert!(log.flush(Duration::from_secs(10)));
    drop(log);
    writer.finish();
}

fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn a_reopened_log_continues_its_chain_without_a_new_marker() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    write(&path, Rotation::default(), 0..3);
    write(&path, Rotation::default(), 3..5);
    let all = lines(&path);
    assert_eq!(all.len(), 6);
    assert_eq!(all.iter().filter(|v| v["kind"] == "chain").count(), 1);
    let report = verify(&chain_files(&path)).unwrap().unwrap();
    assert_eq!(report.lines, 6);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for p in [path.clone(), lock_path(&path)] {
            let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", p.display());
        }
    }
}

#[test]
fn rotation_keeps_a_bounded_number_of_files_and_one_chain_through_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let rotation = Rotation {
        max_bytes: 2048,
        keep: 3,
    };
    // One event per batch: flush after each, so files fill one line at a time.
    let (log, writer) = AuditLog::open(&path, rotation).unwrap();
    for i in 0..40 {
        log.record(event(i));
        assert!(log.flush(Duration::from_secs(10)));
    }
    drop(log);
    writer.finish();
    let files = chain_files(&path);
    assert_eq!(files.len(), 3, "{files:?}");
    assert!(!rotated(&path, 3).exists());
    for file in &files {
        assert!(
            std::fs::metadata(file).unwrap().len() <= 2048,
            "{}",
            file.display()
        );
        assert_eq!(lines(file)[0]["kind"], "chain", "{}", file.display());
        assert_eq!(lines(file)[0]["reason"], "rotated");
    }
    let report = verify(&files).unwrap().unwrap();
    assert!(report.starts_mid_chain, "the oldest files were deleted");
    // Each rotated file's first line links to the last line of the file before it.
    let older = std::fs::read_to_string(&files[1]).unwrap();
    let last = older.lines().last().unwrap();
    assert_eq!(
        lines(&path)[0]["prev"],
        crate::audit::chain::hex(&crate::audit::chain::hash_line(last.as_bytes()))
    );
}

#[test]
fn two_writers_on_one_file_keep_one_valid_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let rotation = Rotation {
        max_bytes: 16 * 1024,
        keep: 100,
    };
    let (a, wa) = AuditLog::open(&path, rotation).unwrap();
    let (b, wb) = AuditLog::open(&path, rotation).unwrap();
    let threads: Vec<_> = [a.clone(), b.clone()]
        .into_iter()
        .map(|log| {
            std::thread::spawn(move || {
                for i in 0..300 {
                    log.record(event(i));
                    if i % 7 == 0 {
                        std::thread::sleep(Duration::from_micros(300));
                    }
                }
                assert!(log.flush(Duration::from_secs(20)));
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    drop((a, b));
    wa.finish();
    wb.finish();
    let files = chain_files(&path);
    assert!(files.len() > 1, "the test rotates too");
    let report = verify(&files).unwrap().unwrap_or_else(|b| panic!("{b}"));
    let markers: u64 = files
        .iter()
        .map(|f| lines(f).iter().filter(|v| v["kind"] == "chain").count() as u64)
        .sum();
    assert_eq!(report.lines - markers, 600, "every event of both writers");
    assert!(!report.starts_mid_chain);
}

#[test]
fn a_log_from_before_the_chain_is_continued_after_a_marker() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    std::fs::write(&path, "{\"kind\":\"request\"}\n{\"kind\":\"request\"}\n").unwrap();
    write(&path, Rotation::default(), 0..2);
    let all = lines(&path);
    assert_eq!(all[2]["reason"], crate::audit::chain::REASON_UNCHAINED);
    let report = verify(&chain_files(&path)).unwrap().unwrap();
    assert_eq!((report.unchained, report.lines), (2, 3));
}

#[test]
fn a_line_cut_off_by_a_crash_is_ended_and_shows_in_verify() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    write(&path, Rotation::default(), 0..2);
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("{\"kind\":\"req");
    std::fs::write(&path, &text).unwrap();
    write(&path, Rotation::default(), 2..3);
    let after = std::fs::read_to_string(&path).unwrap();
    assert!(after.contains("{\"kind\":\"req\n"), "{after}");
    let b = verify(&chain_files(&path)).unwrap().unwrap_err();
    assert_eq!(b.line, 4);
    assert!(b.what.starts_with("not JSON"), "{}", b.what);
}
