use std::path::Path;

use super::*;
use crate::secrets::dummy::{DEFAULT_TEMPLATE, expand};
use crate::secrets::recipe::{BUILT_IN, Recipe};

/// Digit, lowercase, uppercase, or the character itself (punctuation).
fn class(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b'9',
        b'a'..=b'z' => b'a',
        b'A'..=b'Z' => b'A',
        other => other,
    }
}

/// `phantom` has `dummy`'s format, with the marker at `marker` replaced.
fn assert_same_shape(dummy: &str, phantom: &str, marker: Range<usize>) {
    assert_eq!(phantom.len(), dummy.len(), "{dummy} -> {phantom}");
    assert_eq!(phantom[..marker.start], dummy[..marker.start], "prefix");
    let (d, p) = (&dummy[marker.clone()], &phantom[marker.clone()]);
    assert_eq!(
        d.to_ascii_lowercase().replace("dummy", "phntm"),
        p.to_ascii_lowercase()
    );
    assert_eq!(static_marker(phantom.as_bytes()), None, "{phantom}");
    assert_eq!(phantom_marker(phantom.as_bytes()), Some(marker.clone()));
    for (i, (a, b)) in dummy.bytes().zip(phantom.bytes()).enumerate() {
        if !marker.contains(&i) {
            assert_eq!(class(a), class(b), "position {i} of {dummy} -> {phantom}");
        }
    }
    assert!(is_phantom(phantom) && !is_phantom(dummy));
}

#[test]
fn every_built_in_recipe_gets_phantoms_of_its_shape() {
    for (name, text) in BUILT_IN {
        let recipe = Recipe::parse(text, Path::new(name)).unwrap();
        let dummy = expand(&recipe.dummy, name).unwrap();
        let marker = static_marker(dummy.as_bytes()).unwrap_or_else(|| panic!("{name}"));
        let (a, b) = (
            phantom(&dummy, name).unwrap(),
            phantom(&dummy, name).unwrap(),
        );
        assert_same_shape(&dummy, &a, marker.clone());
        assert_same_shape(&dummy, &b, marker);
        assert_ne!(a, b, "{name}");
        assert_ne!(a, dummy, "{name}");
    }
    let anthropic = expand("sk-ant-api03-keygateDummy{random:81}AA", "anthropic").unwrap();
    let p = phantom(&anthropic, "anthropic").unwrap();
    assert!(
        p.starts_with("sk-ant-api03-keygatePhntm") && p.ends_with("AA"),
        "{p}"
    );
    let gemini = phantom(&expand("AIzaKeygateDummy{random:23}", "g").unwrap(), "g").unwrap();
    assert!(gemini.starts_with("AIzaKeygatePhntm"), "{gemini}");
}

#[test]
fn the_default_template_keeps_the_name() {
    let dummy = expand(DEFAULT_TEMPLATE, "my-api").unwrap();
    let p = phantom(&dummy, "my-api").unwrap();
    assert!(p.starts_with("keygate-phntm-my-api-"), "{p}");
    assert_same_shape(&dummy, &p, 0..14);
}

#[test]
fn a_hex_dummy_stays_hex() {
    let dummy = expand("tok-keygate-dummy-{hex:40}", "x").unwrap();
    let p = phantom(&dummy, "x").unwrap();
    assert!(p.starts_with("tok-keygate-phntm-"));
    assert!(p[18..].bytes().all(|b| HEX_LOWER.contains(&b)), "{p}");
    let upper = phantom("KEYGATE_DUMMY_0123456789ABCDEF0123", "x").unwrap();
    assert!(upper.starts_with("KEYGATE_Phntm_"), "{upper}");
    assert!(
        upper[14..].bytes().all(|b| HEX_UPPER.contains(&b)),
        "{upper}"
    );
}

#[test]
fn a_dummy_without_a_marker_keeps_its_prefix_and_is_not_recognisable() {
    let dummy = "sk-live-Abcdefghijklmnopqrstuvwxyz012345";
    let p = phantom(dummy, "x").unwrap();
    assert!(p.starts_with("sk-live-") && p.len() == dummy.len(), "{p}");
    assert!(
        dummy
            .bytes()
            .zip(p.bytes())
            .all(|(a, b)| class(a) == class(b))
    );
    assert_ne!(p, dummy);
    assert!(!is_phantom(&p));
}

#[test]
fn too_little_randomness_widens_then_fails() {
    // 4 lowercase + 10 digits by class is 52 bits: drawn from all 62 instead.
    let dummy = "keygate-dummy-test-0123456789";
    let p = phantom(dummy, "demo").unwrap();
    assert!(
        p.starts_with("keygate-phntm-") && p.len() == dummy.len(),
        "{p}"
    );
    assert_eq!(&p[18..19], "-");
    assert!(is_phantom(&p));
    // The kept name goes back to random when it would leave too little.
    let named = "keygate-dummy-averyveryverylongname-0123456789";
    let p = phantom(named, "averyveryverylongname").unwrap();
    assert!(!p.contains("averyveryverylongname"), "{p}");
    let err = phantom("sk-keygateDummy1234567", "short").unwrap_err();
    assert!(err.contains("64 needed") && err.contains("short"), "{err}");
    assert!(!err.contains("1234567"), "{err}");
}

#[test]
fn phantom_markers_are_recognised_only_with_a_tail() {
    let cases: &[(&str, bool)] = &[
        ("ghp_keygatePhntm12345678", true),
        ("Bearer ghp_keygatePhntm1234567", false),
        ("x=keygate-phntm-demo-abcd1234&y", true),
        ("keygate-phntm- is a marker", false),
        ("KEYGATE_Phntm_ABCDEF01", true),
        ("keygate-dummy-demo-abcd1234", false),
        ("hntm hntmhntm keygatehntm12345678", false),
        ("AIzaKeygatePhntmAbCdEf12", true),
    ];
    for (text, found) in cases {
        assert_eq!(phantom_marker(text.as_bytes()).is_some(), *found, "{text}");
    }
}

fn set(dummies: &[(&str, &str)]) -> crate::secrets::SecretSet {
    let bindings = dummies
        .iter()
        .map(|(name, dummy)| crate::secrets::Binding {
            name: name.to_string(),
            hosts: vec![crate::policy::HostPattern::parse("api.example.com").unwrap()],
            header: http::HeaderName::from_static("authorization"),
            format: "{secret}".into(),
            env: vec![],
            dummy: dummy.to_string(),
            methods: None,
            paths: None,
            query: false,
            websocket: false,
            body: None,
            kind: Default::default(),
            real: None,
        })
        .collect();
    crate::secrets::SecretSet::new(bindings)
}

#[test]
fn a_session_set_retires_its_static_dummies_and_keeps_phantoms_over_a_reload() {
    use crate::secrets::Alarm;
    let a = expand("ghp_keygateDummy{random:24}", "a").unwrap();
    // A static dummy that begins inside a needle (`…hntm` + `mDummy…`) is still found.
    let b = "mkeygate-dummy-b-0123456789abcdefghij";
    let plain = set(&[("a", &a), ("b", b)]);
    assert!(!plain.is_session() && plain.retired().next().is_none());
    let session = plain.session().unwrap();
    assert!(session.is_session());
    let retired: Vec<(&str, &str)> = session
        .retired()
        .map(|(binding, old)| (binding.name.as_str(), old))
        .collect();
    assert_eq!(retired, vec![("a", a.as_str()), ("b", b)]);
    let phantoms: Vec<String> = session.iter().map(|b| b.dummy.clone()).collect();
    assert!(is_phantom(&phantoms[0]) && is_phantom(&phantoms[1]));
    let found = |set: &crate::secrets::SecretSet, text: &str| match set.alarm_in(text.as_bytes()) {
        None => "none".to_string(),
        Some(Alarm::Retired(b)) => format!("retired {}", b.name),
        Some(Alarm::Foreign(like)) => format!("foreign {:?}", like.map(|b| b.name.clone())),
    };
    assert_eq!(found(&session, &format!("x hnt{b} y")), "retired b");
    assert_eq!(found(&session, &format!("Bearer {a}")), "retired a");
    assert_eq!(found(&session, &format!("Bearer {}", phantoms[0])), "none");
    assert_eq!(found(&plain, &format!("Bearer {a}")), "none");
    assert_eq!(
        found(&plain, &format!("Bearer {}", phantoms[0])),
        "foreign Some(\"a\")"
    );
    let other = plain.session().unwrap();
    assert_eq!(
        found(&other, &format!("k={}", phantoms[1])),
        "foreign Some(\"b\")"
    );
    // A reload keeps the phantom of an unchanged secret and renews a changed one.
    let changed = expand("ghp_keygateDummy{random:24}", "a").unwrap();
    let reloaded = set(&[("a", &changed), ("b", b)])
        .session_keeping(&session)
        .unwrap();
    let after: Vec<&str> = reloaded.iter().map(|b| b.dummy.as_str()).collect();
    assert_ne!(after[0], phantoms[0]);
    assert_eq!(after[1], phantoms[1]);
    assert_eq!(plain.session_keeping(&session).unwrap().iter().count(), 2);
}

#[test]
fn a_long_phantom_keeps_its_static_tail_so_agents_ask_to_approve_it_once() {
    let anthropic = crate::secrets::dummy::expand("sk-ant-api03-keygateDummy{random:81}AA", "a")
        .expect("template");
    let (one, two) = (
        phantom(&anthropic, "a").expect("phantom"),
        phantom(&anthropic, "a").expect("phantom"),
    );
    let tail = anthropic.len() - STABLE_TAIL;
    assert_eq!(
        one[tail..],
        anthropic[tail..],
        "the last 20 characters stay"
    );
    assert_eq!(one[tail..], two[tail..]);
    assert_ne!(one[..tail], two[..tail], "the rest is new every session");
    assert_ne!(one[..tail], anthropic[..tail]);
    // A short dummy has too little to spare: its tail is random too.
    let short =
        crate::secrets::dummy::expand("keygate-dummy-{name}-{random:32}", "s").expect("template");
    let p = phantom(&short, "s").expect("phantom");
    assert_ne!(p[p.len() - 8..], short[short.len() - 8..]);
}

#[test]
fn an_aws_secret_gets_session_phantoms_for_its_secret_key_and_token_too() {
    use crate::secrets::kind::{Aws, Kind};
    let mut set_of = set(&[("aws", "AKIAKEYGATEDUMMY0123456789ABCDEFGHIJKLMN")]);
    let mut bindings: Vec<crate::secrets::Binding> = set_of
        .iter()
        .map(|b| crate::secrets::Binding::clone(b))
        .collect();
    bindings[0].kind = Kind::Aws(Aws {
        secret_access_key: "keygateDummyAbCdEfGhIjKlMnOpQrStUvWxYz12".into(),
        session_token: Some("IQoJkeygateDummy0123456789abcdefghijABCDEFGHIJ".into()),
        command: None,
    });
    set_of = crate::secrets::SecretSet::new(bindings);
    let session = set_of.session().unwrap();
    let (Kind::Aws(registered), Kind::Aws(own)) = (
        &set_of.iter().next().unwrap().kind,
        &session.iter().next().unwrap().kind,
    ) else {
        panic!("aws kinds")
    };
    assert_ne!(own.secret_access_key, registered.secret_access_key);
    assert_eq!(
        own.secret_access_key.len(),
        registered.secret_access_key.len()
    );
    assert!(is_phantom(&own.secret_access_key));
    let (token, registered_token) = (
        own.session_token.as_deref().unwrap(),
        registered.session_token.as_deref().unwrap(),
    );
    assert_ne!(token, registered_token);
    assert_eq!(token.len(), registered_token.len());
    // The tripwire knows the session's phantoms; a reload keeps them.
    let phantoms: Vec<&str> = session.iter().next().unwrap().phantoms().collect();
    assert!(phantoms.contains(&own.secret_access_key.as_str()) && phantoms.contains(&token));
    let reloaded = set_of.session_keeping(&session).unwrap();
    let Kind::Aws(kept) = &reloaded.iter().next().unwrap().kind else {
        panic!("aws")
    };
    assert_eq!(kept.secret_access_key, own.secret_access_key);
}
