//! The YAML files `keygate check` reads (src/config.rs, src/secrets/registry.rs,
//! src/secrets/recipe.rs): the same bytes as keygate.yaml, as secrets.yaml and as an
//! addons/*.yaml recipe, through the same entry points `keygate check` uses
//! (`RawConfig::parse` + `Config::build`, `Registry::parse`, `Recipe::parse`).
//!
//! Properties: nothing panics; every error names the file, and a YAML error carries
//! `line:column` inside the text (except the YAML library's few errors about the
//! document as a whole, e.g. "more than one document", which it reports without one);
//! an accepted config has limits in their documented ranges and patterns that reparse
//! from their canonical form; an accepted registry survives `to_yaml` → `parse`
//! unchanged up to spelling (what `keygate secret add` writes back).

#![no_main]

use std::path::Path;

use keygate::config::{Config, ConfigError, Overrides, RawConfig};
use keygate::policy::{Host, HostPattern};
use keygate::secrets::Registry;
use keygate::secrets::recipe::Recipe;
use keygate::secrets::registry::SecretEntry;
use libfuzzer_sys::fuzz_target;

const CONFIG: &str = "/home/fuzz/.config/keygate/keygate.yaml";
const SECRETS: &str = "/home/fuzz/.config/keygate/secrets.yaml";
const RECIPE: &str = "/home/fuzz/.config/keygate/addons/fuzz.yaml";

fuzz_target!(|data: &[u8]| {
    // `keygate check` reads the files with read_to_string: only UTF-8 gets this far.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    check_config(text);
    check_registry(text);
    check_recipe(text);
});

fn check_config(text: &str) {
    let path = Path::new(CONFIG);
    let raw = match RawConfig::parse(text, path) {
        Ok(raw) => raw,
        Err(e) => return check_error(&e, text, path, true),
    };
    let config = match Config::build(raw, Some(path.to_path_buf()), Overrides::default()) {
        Ok(config) => config,
        Err(e) => {
            check_error(&e, text, path, false);
            let msg = e.to_string();
            assert!(
                msg.contains("upstream.resolve"),
                "unplaced build error: {msg}"
            );
            return;
        }
    };
    let l = config.limits;
    assert!(
        (8 * 1024..=16 * 1024 * 1024).contains(&l.max_head_bytes),
        "{l:?}"
    );
    assert!((1..=10_000).contains(&l.max_headers), "{l:?}");
    assert!((1..=1_000_000).contains(&l.max_connections), "{l:?}");
    assert!((1..=10_000).contains(&l.h2_max_concurrent_streams), "{l:?}");
    for t in [
        l.header_read_timeout,
        l.handshake_timeout,
        l.idle_timeout,
        l.upstream_connect_timeout,
        l.response_timeout,
    ] {
        assert!(!t.is_zero(), "{l:?}");
    }
    for p in config
        .allow
        .iter()
        .chain(&config.deny)
        .chain(&config.no_proxy)
    {
        assert_eq!(HostPattern::parse(&p.to_string()).as_ref(), Ok(p));
    }
    for r in &config.resolve {
        assert_ne!(r.port, 0);
        assert_eq!(Host::parse(&r.host.to_string()).as_ref(), Ok(&r.host));
    }
    if let Some(proxy) = &config.upstream_proxy {
        assert_ne!(proxy.port, 0);
    }
    for ca in &config.upstream_ca {
        // Relative paths are resolved against the file's directory.
        assert!(ca.is_absolute() || ca.starts_with("/"), "{ca:?}");
    }
    let policy = config.policy(Vec::new());
    if let Ok(host) = Host::parse("example.com") {
        let _ = policy.decide(&host, 443);
    }
}

fn check_registry(text: &str) {
    let path = Path::new(SECRETS);
    let registry = match Registry::parse(text, path) {
        Ok(r) => r,
        Err(e) => return check_error(&e, text, path, false),
    };
    let bindings = registry
        .bindings()
        .unwrap_or_else(|e| panic!("accepted registry fails validation: {e}"));
    assert_eq!(bindings.len(), registry.entries.len());
    let written = registry.to_yaml();
    let reread = Registry::parse(&written, path)
        .unwrap_or_else(|e| panic!("registry does not reread its own YAML: {e}\n{written}"));
    // Equal up to spelling: `env: []` is written back as no `env` at all.
    let same = |a: &SecretEntry, b: &SecretEntry| {
        a.env.names() == b.env.names() && {
            let mut b = b.clone();
            b.env = a.env.clone();
            *a == b
        }
    };
    assert_eq!(reread.entries.len(), registry.entries.len());
    for (a, b) in registry.entries.iter().zip(&reread.entries) {
        assert!(same(a, b), "to_yaml/parse round trip: {a:?} became {b:?}");
    }
    assert_eq!(reread.to_yaml(), written, "to_yaml is not a fixed point");
}

fn check_recipe(text: &str) {
    let path = Path::new(RECIPE);
    let recipe = match Recipe::parse(text, path) {
        Ok(r) => r,
        Err(e) => return check_error(&e, text, path, true),
    };
    // What `keygate secret add --recipe` does with it: expand the dummy template and
    // validate the entry. Either may refuse; neither may panic.
    let Ok(dummy) = keygate::secrets::dummy::expand(&recipe.dummy, "fuzz") else {
        return;
    };
    let entry = SecretEntry {
        name: "fuzz".into(),
        hosts: recipe.hosts.clone(),
        header: recipe.header.clone(),
        format: recipe.format.clone(),
        env: recipe.env.clone(),
        dummy,
        methods: recipe.methods.clone(),
        paths: recipe.paths.clone(),
        query: recipe.query,
        websocket: false,
        body: None,
        kind: Default::default(),
        oauth2: None,
        github_app: None,
        google: None,
        aws: None,
    };
    let _ = entry.validate();
}

/// Every error names the file; YAML errors (`yaml` = from the YAML stage) carry a
/// position inside the text.
fn check_error(e: &ConfigError, text: &str, path: &Path, yaml: bool) {
    let msg = e.to_string();
    assert!(msg.starts_with(&path.display().to_string()), "{msg}");
    match e {
        ConfigError::At { line, column, .. } => {
            // libyaml breaks lines at LF, CR, CRLF, NEL, LS and PS.
            let lines = text
                .replace("\r\n", "\n")
                .split(['\n', '\r', '\u{85}', '\u{2028}', '\u{2029}'])
                .count();
            assert!(
                *line >= 1 && *line <= lines + 1,
                "line {line} of {lines}: {msg}"
            );
            assert!(*column >= 1, "{msg}");
        }
        ConfigError::File { message, .. } => {
            let whole_document = WHOLE_DOCUMENT.iter().any(|m| message.contains(m));
            assert!(
                !yaml || whole_document,
                "YAML error without a position: {message}"
            );
        }
    }
}

/// The YAML library's errors about the document as a whole, which it reports without
/// a position (yaml_serde `ErrorImpl` variants without a mark): the file name and the
/// message are all there is to say.
const WHOLE_DOCUMENT: &[&str] = &[
    "more than one document",
    "EOF while parsing a value",
    "repetition limit exceeded",
    "for merging",
    "tagged value in merge",
    "empty YAML tag",
    "failed to parse YAML number",
    "bytes in YAML is not implemented",
];
