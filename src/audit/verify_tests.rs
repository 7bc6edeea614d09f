use super::*;
use crate::audit::chain::{Chain, Tail};

/// A chained log of `n` events, as lines without newlines.
fn log(n: usize) -> Vec<String> {
    let mut chain = Chain::after(Tail::Empty);
    let mut out = Vec::new();
    for i in 0..n {
        chain
            .push(
                &serde_json::json!({"kind": "request", "host": format!("h{i}.example")}),
                &mut out,
            )
            .unwrap();
    }
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

fn check(files: &[Vec<String>]) -> Result<Report, Break> {
    let dir = tempfile::tempdir().unwrap();
    let paths: Vec<PathBuf> = files
        .iter()
        .enumerate()
        .map(|(i, lines)| {
            let path = dir.path().join(format!("f{i}"));
            let mut text = lines.join("\n");
            text.push('\n');
            std::fs::write(&path, text).unwrap();
            path
        })
        .collect();
    verify(&paths).unwrap()
}

fn broken(files: &[Vec<String>]) -> (String, u64, String) {
    let b = check(files).expect_err("the chain should be broken");
    let name = b.file.file_name().unwrap().to_string_lossy().into_owned();
    (name, b.line, b.what)
}

#[test]
fn an_intact_log_verifies_with_its_count_and_head() {
    let lines = log(5);
    let report = check(std::slice::from_ref(&lines)).unwrap();
    assert_eq!(report.lines, 6, "marker + 5 events");
    assert_eq!(report.unchained, 0);
    assert!(!report.starts_mid_chain);
    assert_eq!(
        report.head.unwrap(),
        hex(&hash_line(lines.last().unwrap().as_bytes()))
    );
}

#[test]
fn an_edited_line_is_named_by_its_own_number() {
    let mut lines = log(5);
    lines[3] = lines[3].replace("h2.example", "h9.example");
    let (file, line, what) = broken(&[lines]);
    assert_eq!((file.as_str(), line), ("f0", 4));
    assert!(what.starts_with("edited"), "{what}");
    assert!(what.contains("f0:5"), "{what}");
}

#[test]
fn a_deleted_line_is_reported_where_the_seq_jumps() {
    let mut lines = log(5);
    lines.remove(2);
    let (_, line, what) = broken(&[lines]);
    assert_eq!(line, 3);
    assert!(what.contains("1 line deleted"), "{what}");
}

#[test]
fn reordered_lines_are_reported_as_reordered() {
    let mut lines = log(5);
    lines.swap(2, 3);
    let (_, line, what) = broken(&[lines]);
    assert_eq!(line, 3);
    assert!(what.starts_with("reordered"), "{what}");
}

#[test]
fn a_line_that_is_not_json_is_reported() {
    let mut lines = log(3);
    lines[2] = "not json".into();
    let (_, line, what) = broken(&[lines]);
    assert_eq!(line, 3);
    assert!(what.starts_with("not JSON"), "{what}");
}

#[test]
fn a_file_cut_mid_line_is_reported_as_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let text = log(3).join("\n");
    std::fs::write(&path, &text[..text.len() - 10]).unwrap();
    let b = verify(&[path]).unwrap().unwrap_err();
    assert_eq!(b.line, 4);
    assert!(b.what.contains("cut off"), "{}", b.what);
}

#[test]
fn a_rotated_file_cut_at_a_line_end_is_caught_by_the_next_files_marker() {
    let lines = log(6);
    let old = lines[..5].to_vec();
    let mut chain = Chain::after(crate::audit::chain::tail_of(lines[4].as_bytes(), true));
    let mut out = Vec::new();
    chain.marker("rotated", &mut out).unwrap();
    let new: Vec<String> = vec![String::from_utf8(out).unwrap().trim_end().to_string()];
    assert!(check(&[old.clone(), new.clone()]).is_ok());
    let (file, line, what) = broken(&[old[..4].to_vec(), new]);
    assert_eq!((file.as_str(), line), ("f1", 1));
    assert!(what.contains("deleted at the end of"), "{what}");
}

#[test]
fn an_inserted_line_is_reported() {
    let mut lines = log(3);
    lines.insert(2, r#"{"kind":"request","host":"forged.example"}"#.into());
    let (_, line, what) = broken(&[lines]);
    assert_eq!(line, 3);
    assert!(what.contains("added by hand"), "{what}");
}

#[test]
fn lines_from_before_the_chain_are_counted_not_covered() {
    let legacy = r#"{"kind":"request","host":"old.example"}"#.to_string();
    let mut chain = Chain::after(crate::audit::chain::tail_of(legacy.as_bytes(), true));
    let mut out = Vec::new();
    chain.push(&serde_json::json!({"a": 1}), &mut out).unwrap();
    let mut lines = vec![legacy];
    lines.extend(String::from_utf8(out).unwrap().lines().map(String::from));
    let report = check(&[lines]).unwrap();
    assert_eq!((report.unchained, report.lines), (1, 2));
}

#[test]
fn a_log_whose_start_was_rotated_away_verifies_from_its_first_line() {
    let lines = log(5);
    let report = check(&[lines[2..].to_vec()]).unwrap();
    assert!(report.starts_mid_chain);
    assert_eq!(report.lines, 4);
}
