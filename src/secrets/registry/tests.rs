use super::*;

fn entry(name: &str, dummy: &str) -> SecretEntry {
    SecretEntry {
        name: name.into(),
        hosts: vec!["api.example.com".into()],
        header: "authorization".into(),
        format: "Bearer {secret}".into(),
        env: EnvVars::One(format!("{}_KEY", name.to_uppercase())),
        dummy: dummy.into(),
        methods: None,
        paths: None,
        query: false,
        websocket: false,
        body: None,
        kind: Default::default(),
        oauth2: None,
        github_app: None,
        google: None,
        aws: None,
    }
}

fn err(e: SecretEntry) -> String {
    e.validate().unwrap_err()
}

#[test]
fn spec_example_parses_and_round_trips() {
    let text = r#"
- name: anthropic
  hosts: [api.anthropic.com]
  header: x-api-key
  format: "{secret}"
  env: ANTHROPIC_API_KEY
  dummy: sk-ant-api03-keygate-dummy-0123456789
  methods: [GET, post]
  paths: ["/v1/*"]
  query: false
"#;
    let path = Path::new("/h/secrets.yaml");
    let registry = Registry::parse(text, path).unwrap();
    let b = &registry.bindings().unwrap()[0];
    assert_eq!(b.header.as_str(), "x-api-key");
    assert_eq!(b.methods.as_ref().unwrap()[1], Method::POST);
    assert!(b.permits(&Method::POST, "/v1/messages"));
    assert!(b.permits(&Method::GET, "/v1/models/x/y"));
    assert!(!b.permits(&Method::DELETE, "/v1/messages"));
    assert!(!b.permits(&Method::POST, "/v2/messages"));
    let again = Registry::parse(&registry.to_yaml(), path).unwrap();
    assert_eq!(again, registry);
    assert!(!b.websocket, "WebSocket frames are swapped only on request");
}

#[test]
fn websocket_opts_in_to_the_frame_swap_and_round_trips() {
    let text = "- name: ws\n  hosts: [api.example.com]\n  dummy: keygate-dummy-ws-0123456789\n  websocket: true\n";
    let path = Path::new("/h/secrets.yaml");
    let registry = Registry::parse(text, path).unwrap();
    assert!(registry.bindings().unwrap()[0].websocket);
    assert!(registry.to_yaml().contains("websocket: true"));
    assert_eq!(
        Registry::parse(&registry.to_yaml(), path).unwrap(),
        registry
    );
}

#[test]
fn entry_errors_say_what_to_fix() {
    assert!(err(entry("Bad Name", "keygate-dummy-aaaaaaaa")).contains("secret name"));
    let mut e = entry("a", "keygate-dummy-aaaaaaaa");
    e.hosts.clear();
    assert!(err(e).contains("at least one host"));
    let mut e = entry("a", "keygate-dummy-aaaaaaaa");
    e.hosts = vec!["*bad.com".into()];
    assert!(err(e).contains("*bad.com"));
    let mut e = entry("a", "keygate-dummy-aaaaaaaa");
    e.header = "bad header".into();
    assert!(err(e).contains("not a valid HTTP header"));
    let mut e = entry("a", "keygate-dummy-aaaaaaaa");
    e.header = "Proxy-Authorization".into();
    assert!(err(e).contains("hop-by-hop"));
    let mut e = entry("a", "keygate-dummy-aaaaaaaa");
    e.format = "Bearer".into();
    assert!(err(e).contains("{secret}"));
    let mut e = entry("a", "keygate-dummy-aaaaaaaa");
    e.env = EnvVars::One("HTTPS_PROXY".into());
    assert!(err(e).contains("set by keygate"));
    let mut e = entry("a", "keygate-dummy-aaaaaaaa");
    e.env = EnvVars::One("1BAD".into());
    assert!(err(e).contains("not a valid environment"));
    assert!(err(entry("a", "short")).contains("at least"));
    assert!(err(entry("a", "has space in the dummy")).contains("printable"));
    let mut e = entry("a", "keygate-dummy-aaaaaaaa");
    e.methods = Some(vec!["GE T".into()]);
    assert!(err(e).contains("not an HTTP method"));
    let mut e = entry("a", "keygate-dummy-aaaaaaaa");
    e.paths = Some(vec!["v1/*".into()]);
    assert!(err(e).contains("start with '/'"));
}

#[test]
fn registry_wide_rules() {
    let path = Path::new("/h/secrets.yaml");
    let dup = Registry {
        entries: vec![
            entry("a", "keygate-dummy-aaaaaaaa"),
            entry("a", "keygate-dummy-bbbbbbbb"),
        ],
    };
    assert!(dup.bindings().unwrap_err().contains("twice"));
    let nested = Registry {
        entries: vec![
            entry("a", "keygate-dummy-aaaaaaaa"),
            entry("b", "keygate-dummy-aaaaaaaa-more"),
        ],
    };
    assert!(nested.bindings().unwrap_err().contains("occurs inside"));
    let mut b = entry("b", "keygate-dummy-bbbbbbbb");
    b.env = EnvVars::One("A_KEY".into());
    let env_clash = Registry {
        entries: vec![entry("a", "keygate-dummy-aaaaaaaa"), b],
    };
    assert!(env_clash.bindings().unwrap_err().contains("claimed by two"));
    let e = Registry::parse("- name: a\n  hosts: [x.com]\n  dumy: y\n", path)
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("/h/secrets.yaml:3:"), "{e}");
    assert!(e.contains("dumy"), "{e}");
}

#[test]
fn env_accepts_one_or_many() {
    let path = Path::new("s.yaml");
    let r = Registry::parse(
        "- name: gh\n  hosts: [github.com]\n  env: [GH_TOKEN, GITHUB_TOKEN]\n  dummy: ghp_keygateDummy0123456789\n",
        path,
    )
    .unwrap();
    assert_eq!(
        r.bindings().unwrap()[0].env,
        vec!["GH_TOKEN", "GITHUB_TOKEN"]
    );
}

#[test]
fn upsert_and_remove() {
    let mut r = Registry::default();
    r.upsert(entry("a", "keygate-dummy-aaaaaaaa"));
    r.upsert(entry("a", "keygate-dummy-cccccccc"));
    assert_eq!(r.entries.len(), 1);
    assert_eq!(r.get("a").unwrap().dummy, "keygate-dummy-cccccccc");
    assert!(r.remove("a"));
    assert!(!r.remove("a"));
}

#[test]
fn a_path_with_dot_segments_is_outside_every_path_glob() {
    use crate::secrets::has_dot_segments;
    for dotted in [
        "/v1/messages/../admin",
        "/v1/messages/./x",
        "/v1/messages/..",
        "/v1/messages/%2e%2e/admin",
        "/v1/messages/%2E./admin",
        "/v1/messages%2f..%2fadmin",
        "/v1/messages%2F%2e%2e%2Fadmin",
        "/v1/messages\\..\\admin",
        "/v1/messages%5c..%5cadmin",
        "/v1/messages/..;/admin",
        "/v1/messages/..;jsessionid=1/admin",
        "/v1/messages/%252e%252e/admin",
        "/v1/messages/%25252e%25252e/admin",
    ] {
        assert!(has_dot_segments(dotted), "{dotted}");
    }
    for plain in [
        "/v1/messages",
        "/v1/messages/v1..2",
        "/v1/.well-known/x",
        "/v1/messages/...",
        "/v1/messages/a.b/c..",
        "/v1/messages/%2e%2e%2e",
        "/v1/messages/%zz/..x",
        "",
        "/",
    ] {
        assert!(!has_dot_segments(plain), "{plain}");
    }
    // Through `permits`: only a secret with `paths` is concerned.
    let text = r#"
- name: scoped
  hosts: [api.example.com]
  dummy: keygate-dummy-scoped-0123456789
  paths: ["/v1/messages*"]
- name: open
  hosts: [api.example.com]
  dummy: keygate-dummy-open-0123456789
"#;
    let registry = Registry::parse(text, Path::new("/h/secrets.yaml")).unwrap();
    let bindings = registry.bindings().unwrap();
    let (scoped, open) = (&bindings[0], &bindings[1]);
    assert!(scoped.permits(&Method::POST, "/v1/messages/x"));
    assert!(!scoped.permits(&Method::POST, "/v1/messages/../../admin"));
    assert!(open.permits(&Method::POST, "/v1/messages/../../admin"));
}

#[test]
fn an_invalid_entry_is_reported_at_its_line() {
    let text = "- name: good\n  hosts: [api.example.com]\n  dummy: keygate-dummy-good-0123456789\n- name: bad\n  hosts:\n    - api.example.com\n    - \"exa*mple.com\"\n  dummy: keygate-dummy-bad-0123456789\n";
    let err = Registry::parse(text, Path::new("/h/secrets.yaml")).unwrap_err();
    let shown = err.to_string();
    assert!(shown.starts_with("/h/secrets.yaml:7:8: "), "{shown}");
    assert!(shown.contains("exa*mple.com"), "{shown}");
    // A flow list: no line, the message alone.
    let flow = "[{name: bad, hosts: [\"exa*mple.com\"], dummy: keygate-dummy-bad-0123456789}]";
    let shown = Registry::parse(flow, Path::new("/h/secrets.yaml"))
        .unwrap_err()
        .to_string();
    assert!(shown.starts_with("/h/secrets.yaml: "), "{shown}");
}
