//! The keyring is per user, not per home (SPEC §2: service `keygate`, account = secret
//! name): a throw-away `--home` must not replace or delete the value another home
//! registered, unless `--force`; re-adding a name this home registered (key rotation)
//! needs no flag. Real keyutils entries, unique to the run, removed even on failure.

use keygate::secrets::{SecretStore, keyring};

use crate::support::bin::{self, Output};
use crate::support::secret::unique;

/// `keygate secret add NAME --host api.homes.test [extra] --from-env V` with `value`.
fn add(home: &std::path::Path, name: &str, value: &str, extra: &[&str]) -> Output {
    let mut args = vec!["secret", "add", name, "--host", "api.homes.test"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--from-env", "V"]);
    let mut cmd = bin::keygate_keyutils(home, &args);
    cmd.env("V", value);
    bin::run(cmd)
}

fn rm(home: &std::path::Path, name: &str, extra: &[&str]) -> Output {
    let mut args = vec!["secret", "rm", name];
    args.extend_from_slice(extra);
    bin::run(bin::keygate_keyutils(home, &args))
}

fn stored(name: &str) -> Option<keygate::secrets::SecretValue> {
    keyring::open(Some("keyutils"))
        .expect("keyutils")
        .get(name)
        .expect("keyring get")
}

/// True when the keyring holds `value` for `name` (compared, never printed).
fn holds(name: &str, value: &str) -> bool {
    stored(name).is_some_and(|v| v.expose() == value)
}

fn registered(home: &std::path::Path, name: &str) -> bool {
    std::fs::read_to_string(home.join("secrets.yaml")).is_ok_and(|r| r.contains(name))
}

#[test]
fn a_throw_away_home_neither_replaces_nor_deletes_another_homes_value() {
    let (main, other, third) = (
        tempfile::tempdir().expect("home"),
        tempfile::tempdir().expect("home"),
        tempfile::tempdir().expect("home"),
    );
    let name = format!("kghomes-{}", unique());
    let _entry = bin::KeyutilsEntry(name.clone());
    let values: Vec<String> = (0..4)
        .map(|i| format!("sk-homes-{i}-{}", unique()))
        .collect();
    let mut outputs = Vec::new();

    let first = add(main.path(), &name, &values[0], &[]);
    assert_eq!(first.code, Some(0), "{first:?}");
    outputs.push(first);

    // Another home: refused before the value is read, nothing stored or registered.
    let refused = add(other.path(), &name, &values[1], &[]);
    assert_eq!(refused.code, Some(1), "{refused:?}");
    for words in [
        "already holds a value",
        "per user, not per home",
        "--force",
        &format!("keygate secret add {name}-test"),
    ] {
        assert!(
            refused.stderr.contains(words),
            "says {words:?}: {}",
            refused.stderr
        );
    }
    assert!(refused.stdout.is_empty(), "no dummy: {}", refused.stdout);
    assert!(holds(&name, &values[0]), "the first home's value is kept");
    assert!(!registered(other.path(), &name));
    outputs.push(refused);

    // Its rm leaves the other home's value alone too.
    let kept = rm(other.path(), &name, &[]);
    assert_eq!(kept.code, Some(1), "{kept:?}");
    assert!(kept.stderr.contains("--force"), "{}", kept.stderr);
    assert!(
        kept.stderr.contains("nothing was removed"),
        "{}",
        kept.stderr
    );
    assert!(holds(&name, &values[0]), "the first home's value is kept");
    outputs.push(kept);

    // The home that registered it rotates the key without a flag.
    let rotated = add(main.path(), &name, &values[2], &[]);
    assert_eq!(rotated.code, Some(0), "{rotated:?}");
    assert!(holds(&name, &values[2]), "the rotated value is stored");
    outputs.push(rotated);

    // --force replaces it, and says so.
    let forced = add(other.path(), &name, &values[3], &["--force"]);
    assert_eq!(forced.code, Some(0), "{forced:?}");
    assert!(
        forced.stderr.contains("--force: replacing"),
        "{}",
        forced.stderr
    );
    assert!(holds(&name, &values[3]), "--force stored the new value");
    assert!(registered(other.path(), &name));
    outputs.push(forced);

    // rm --force from a home that never listed it deletes the value.
    let deleted = rm(third.path(), &name, &["--force"]);
    assert_eq!(deleted.code, Some(0), "{deleted:?}");
    assert!(stored(&name).is_none(), "rm --force deleted the value");
    outputs.push(deleted);
    let unknown = rm(third.path(), &name, &[]);
    assert_eq!(
        unknown.code,
        Some(2),
        "nothing anywhere: a usage error: {unknown:?}"
    );
    outputs.push(unknown);

    // The registering home's rm still works when the value is already gone.
    let cleaned = rm(main.path(), &name, &[]);
    assert_eq!(cleaned.code, Some(0), "{cleaned:?}");
    assert!(
        cleaned.stderr.contains("held no value"),
        "{}",
        cleaned.stderr
    );
    assert!(!registered(main.path(), &name));
    outputs.push(cleaned);

    for out in &outputs {
        for value in &values {
            assert!(
                !out.stdout.contains(value) && !out.stderr.contains(value),
                "a value was printed"
            );
        }
    }
}

#[test]
fn recipe_registers_a_recipe_under_another_name() {
    let home = tempfile::tempdir().expect("home");
    let name = format!("kgrecipe-{}", unique());
    let _entry = bin::KeyutilsEntry(name.clone());
    let value = format!("sk-recipe-{}", unique());
    let mut cmd = add_as_anthropic(home.path(), &name);
    cmd.env("V", &value);
    let out = bin::run(cmd);
    assert_eq!(out.code, Some(0), "{out:?}");
    let dummy = out.stdout.lines().last().expect("the dummy");
    assert!(
        dummy.starts_with("sk-ant-api03-") && dummy.len() == 108,
        "{dummy}"
    );
    let list = bin::run(bin::keygate_keyutils(
        home.path(),
        &["secret", "list", "--json"],
    ));
    let listed: serde_json::Value = serde_json::from_str(&list.stdout).expect("JSON");
    assert_eq!(listed[0]["name"], name.as_str());
    assert_eq!(listed[0]["hosts"], serde_json::json!(["api.anthropic.com"]));
    assert_eq!(listed[0]["env"], serde_json::json!(["ANTHROPIC_API_KEY"]));
    assert_eq!(listed[0]["stored"], true);

    // A second home refuses the same name and suggests the recipe under another name.
    let other = tempfile::tempdir().expect("home");
    let mut again = add_as_anthropic(other.path(), &name);
    again.env("V", &value);
    let refused = bin::run(again);
    assert_eq!(refused.code, Some(1), "{refused:?}");
    assert!(
        refused.stderr.contains(&format!(
            "keygate secret add {name}-test --recipe anthropic"
        )),
        "{}",
        refused.stderr
    );

    // --recipe is for a new secret, and must name a recipe.
    let mut existing = bin::keygate_keyutils(
        home.path(),
        &[
            "secret",
            "add",
            &name,
            "--recipe",
            "openai",
            "--from-env",
            "V",
        ],
    );
    existing.env("V", &value);
    assert_eq!(bin::run(existing).code, Some(2));
    let mut missing = bin::keygate_keyutils(
        home.path(),
        &[
            "secret",
            "add",
            "kgrecipe-none",
            "--recipe",
            "nosuchrecipe",
            "--from-env",
            "V",
        ],
    );
    missing.env("V", &value);
    let missing = bin::run(missing);
    assert_eq!(missing.code, Some(2), "{missing:?}");
    assert!(
        missing.stderr.contains("no recipe named `nosuchrecipe`"),
        "{}",
        missing.stderr
    );
    for out in [&out, &refused, &missing, &list] {
        assert!(!out.stdout.contains(&value) && !out.stderr.contains(&value));
    }
}

/// `keygate secret add NAME --recipe anthropic --from-env V` in `home` (the caller sets V).
fn add_as_anthropic(home: &std::path::Path, name: &str) -> std::process::Command {
    bin::keygate_keyutils(
        home,
        &[
            "secret",
            "add",
            name,
            "--recipe",
            "anthropic",
            "--from-env",
            "V",
        ],
    )
}
