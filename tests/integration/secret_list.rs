//! `keygate secret list` (SPEC §3): a table that fits 80 columns, `--long` with whole
//! cells, `--json` for scripts; never a value.

use keygate::secrets::{SecretStore, SecretValue, keyring};
use serde_json::Value;

use crate::support::bin;
use crate::support::secret::unique;

/// A secret name as short as `anthropic` (9 characters), unique to the run.
fn short_name() -> String {
    use std::hash::{BuildHasher, RandomState};
    format!(
        "kg-{:06x}",
        RandomState::new().hash_one(unique()) & 0xff_ffff
    )
}

/// A dummy shaped like the anthropic recipe's: 108 characters.
fn anthropic_shaped_dummy() -> String {
    let middle: String = format!("keygate-dummy-{}", unique())
        .chars()
        .chain(std::iter::repeat('x'))
        .take(93)
        .collect();
    let dummy = format!("sk-ant-api03-{middle}AA");
    assert_eq!(dummy.len(), 108);
    dummy
}

#[test]
fn the_table_fits_80_columns_and_long_and_json_show_whole_dummies() {
    let home = tempfile::tempdir().expect("home");
    let (name, other) = (short_name(), short_name());
    let _entries = (
        bin::KeyutilsEntry(name.clone()),
        bin::KeyutilsEntry(other.clone()),
    );
    let real = format!("sk-real-list-{}", unique());
    keyring::open(Some("keyutils"))
        .expect("keyutils")
        .set(&name, &SecretValue::new(real.clone()).expect("value"))
        .expect("store the value");
    let dummy = anthropic_shaped_dummy();
    std::fs::write(
        home.path().join("secrets.yaml"),
        format!(
            "- name: {name}\n  hosts: [api.anthropic.com]\n  header: x-api-key\n  env: ANTHROPIC_API_KEY\n  dummy: {dummy}\n\
             - name: {other}\n  hosts: [api.github.com, github.com, uploads.github.com]\n  format: 'Bearer {{secret}}'\n  env: [GH_TOKEN, GITHUB_TOKEN]\n  dummy: ghp_{}\n  methods: [GET]\n",
            "y".repeat(36)
        ),
    )
    .expect("secrets.yaml");
    let list = |extra: &[&str]| {
        let mut args = vec!["secret", "list"];
        args.extend_from_slice(extra);
        let out = bin::run(bin::keygate_keyutils(home.path(), &args));
        assert_eq!(out.code, Some(0), "{out:?}");
        for text in [&out.stdout, &out.stderr] {
            assert!(!text.contains(&real), "secret list printed the value");
        }
        out
    };

    let table = list(&[]);
    for line in table.stdout.lines() {
        assert!(
            line.chars().count() <= 80,
            "{} wide: {line}",
            line.chars().count()
        );
    }
    let titles: Vec<&str> = table
        .stdout
        .lines()
        .next()
        .expect("title line")
        .split_whitespace()
        .collect();
    assert_eq!(
        titles,
        ["NAME", "HOSTS", "HEADER", "ENV", "DUMMY", "STORED"]
    );
    let row = |name: &str| -> Vec<String> {
        table
            .stdout
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no row for {name}: {}", table.stdout))
            .split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(String::from)
            .collect()
    };
    let mine = row(&name);
    assert_eq!(mine.last().map(String::as_str), Some("yes"), "{mine:?}");
    assert!(mine.contains(&"ANTHROPIC_API_KEY".to_string()), "{mine:?}");
    let cut = mine
        .iter()
        .find(|c| c.contains('…'))
        .unwrap_or_else(|| panic!("the dummy is cut with an ellipsis: {mine:?}"));
    let (start, end) = cut.split_once('…').expect("ellipsis");
    assert!(
        dummy.starts_with(start) && dummy.ends_with(end),
        "{cut} is not {dummy} cut"
    );
    assert!(
        start.starts_with("sk-") && end.ends_with("AA"),
        "recognisable: {cut}"
    );
    assert_eq!(row(&other).last().map(String::as_str), Some("no"));
    assert!(
        table.stderr.contains("reboot"),
        "the keyutils note: {}",
        table.stderr
    );

    let long = list(&["--long"]);
    let whole = long
        .stdout
        .lines()
        .find(|l| l.starts_with(&name))
        .expect("row");
    assert!(
        whole.contains(&dummy),
        "--long prints the whole dummy: {whole}"
    );
    assert!(whole.contains("api.anthropic.com"), "{whole}");
    assert!(
        long.stdout
            .contains("api.github.com,github.com,uploads.github.com"),
        "{}",
        long.stdout
    );

    let json = list(&["--json"]);
    let parsed: Value = serde_json::from_str(&json.stdout).expect("--json prints JSON");
    let items = parsed.as_array().expect("an array");
    assert_eq!(items.len(), 2, "{parsed}");
    assert_eq!(items[0]["name"], name.as_str());
    assert_eq!(items[0]["dummy"], dummy.as_str());
    assert_eq!(items[0]["hosts"], serde_json::json!(["api.anthropic.com"]));
    assert_eq!(items[0]["header"], "x-api-key");
    assert_eq!(items[0]["env"], serde_json::json!(["ANTHROPIC_API_KEY"]));
    assert_eq!(items[0]["stored"], true);
    assert_eq!(items[1]["stored"], false);
    assert_eq!(items[1]["format"], "Bearer {secret}");
    assert_eq!(items[1]["methods"], serde_json::json!(["GET"]));
    assert_eq!(
        items[1]["env"],
        serde_json::json!(["GH_TOKEN", "GITHUB_TOKEN"])
    );
}

#[test]
fn json_of_an_empty_registry_is_an_empty_array() {
    let home = tempfile::tempdir().expect("home");
    let out = bin::run(bin::keygate_keyutils(
        home.path(),
        &["secret", "list", "--json"],
    ));
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stdout.trim(), "[]");
}
