use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    let path = Path::new("/etc/kg/keygate.yaml");
    let raw = RawConfig::parse(text, path)?;
    Config::build(raw, Some(path.to_path_buf()), Overrides::default())
}

fn err(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

#[test]
fn empty_file_is_the_defaults() {
    let c = parse("").unwrap();
    assert_eq!(c.listen.to_string(), "127.0.0.1:8877");
    assert_eq!(c.mode, Mode::Trusted);
    assert_eq!(c.intercept, Intercept::Secrets);
    assert_eq!(c.private_addresses, PrivateAddresses::Deny);
    assert!(c.allow.is_empty() && c.deny.is_empty() && c.resolve.is_empty());
    assert_eq!(Config::default().listen, c.listen);
}

#[test]
fn the_spec_example_parses() {
    let c = parse(
        r#"
listen: 127.0.0.1:9999
network:
  mode: custom
  allow: ["*.example.com", "registry.company.internal:5000"]
  deny:  ["gist.github.com"]
  intercept: all
  private_addresses: allow
upstream:
  ca: [extra-root.pem, /abs/root.pem]
  resolve: {"api.anthropic.com:443": "127.0.0.1:9443", "v6.example:443": "[::1]:9443"}
  proxy: http://proxy.company.com:8080
  no_proxy: ["*.company.internal"]
"#,
    )
    .unwrap();
    assert_eq!(c.listen.port(), 9999);
    assert_eq!(c.mode, Mode::Custom);
    assert_eq!(c.allow.len(), 2);
    assert_eq!(c.deny[0].to_string(), "gist.github.com");
    assert_eq!(c.intercept, Intercept::All);
    assert_eq!(c.private_addresses, PrivateAddresses::Allow);
    assert_eq!(
        c.upstream_ca,
        vec![
            PathBuf::from("/etc/kg/extra-root.pem"),
            PathBuf::from("/abs/root.pem")
        ]
    );
    let host = Host::parse("api.anthropic.com").unwrap();
    assert_eq!(
        c.resolve_override(&host, 443),
        Some("127.0.0.1:9443".parse().unwrap())
    );
    assert_eq!(c.resolve_override(&host, 80), None);
    let v6 = Host::parse("v6.example").unwrap();
    assert_eq!(
        c.resolve_override(&v6, 443),
        Some("[::1]:9443".parse().unwrap())
    );
    let proxy = c.upstream_proxy.unwrap();
    assert_eq!(
        (proxy.host.to_string(), proxy.port),
        ("proxy.company.com".into(), 8080)
    );
    assert_eq!(c.no_proxy.len(), 1);
}

#[test]
fn unknown_top_level_key_names_file_line_column_and_key() {
    let e = err("listen: 127.0.0.1:1\nnetwrok:\n  mode: none\n");
    assert!(e.starts_with("/etc/kg/keygate.yaml:2:1: "), "{e}");
    assert!(e.contains("unknown field `netwrok`"), "{e}");
}

#[test]
fn unknown_nested_key_names_its_place() {
    let e = err("network:\n  mode: none\n  alow: [example.com]\n");
    assert!(e.starts_with("/etc/kg/keygate.yaml:3:3: "), "{e}");
    assert!(e.contains("alow"), "{e}");
    assert!(e.contains("network"), "{e}");
}

#[test]
fn bad_pattern_is_reported_at_its_line() {
    let e = err("network:\n  allow:\n    - example.com\n    - \"*example.com\"\n");
    assert!(e.starts_with("/etc/kg/keygate.yaml:4:"), "{e}");
    assert!(e.contains("*example.com"), "{e}");
}

#[test]
fn bad_mode_lists_the_choices() {
    let e = err("network:\n  mode: open\n");
    assert!(e.starts_with("/etc/kg/keygate.yaml:2:9: "), "{e}");
    assert!(e.contains("trusted") && e.contains("custom"), "{e}");
}

#[test]
fn bad_listen_address() {
    let e = err("listen: localhost\n");
    assert!(e.starts_with("/etc/kg/keygate.yaml:1:9: "), "{e}");
}

#[test]
fn yaml_syntax_error_has_a_position() {
    let e = err("network:\n  allow: [a.com\n  deny: []\n");
    assert!(e.starts_with("/etc/kg/keygate.yaml:"), "{e}");
    let pos: Vec<&str> = e.splitn(4, ':').collect();
    assert!(
        pos[1].parse::<usize>().is_ok() && pos[2].parse::<usize>().is_ok(),
        "{e}"
    );
}

#[test]
fn bad_resolve_rule() {
    let e = err("upstream:\n  resolve: {\"api.example.com\": \"127.0.0.1:9443\"}\n");
    assert!(
        e.contains("upstream.resolve") && e.contains("api.example.com"),
        "{e}"
    );
    let e = err("upstream:\n  resolve: {\"api.example.com:443\": \"localhost:9443\"}\n");
    assert!(e.contains("IP:PORT"), "{e}");
}

#[test]
fn upstream_proxy_rules() {
    assert!(err("upstream:\n  proxy: https://p:1\n").contains("http://"));
    assert!(err("upstream:\n  proxy: http://u:pw@p:1\n").contains("credentials"));
    let c = parse("upstream:\n  proxy: http://proxy.local\n").unwrap();
    assert_eq!(c.upstream_proxy.unwrap().port, 8080);
}

#[test]
fn flags_override_and_extend_the_file() {
    let path = Path::new("/k/keygate.yaml");
    let raw = RawConfig::parse(
        "listen: 127.0.0.1:1\nnetwork:\n  mode: none\n  allow: [a.example]\nupstream:\n  resolve: {\"a.example:443\": \"127.0.0.1:1\"}\n",
        path,
    )
    .unwrap();
    let flags = Overrides {
        listen: Some("127.0.0.1:2".parse().unwrap()),
        allow: vec!["b.example".parse().unwrap()],
        deny: vec!["c.example".parse().unwrap()],
        mode: Some(Mode::Custom),
        intercept: Some(Intercept::All),
        resolve: vec!["a.example:443=127.0.0.1:3".parse().unwrap()],
        upstream_ca: vec![PathBuf::from("x.pem")],
    };
    let c = Config::build(raw, Some(path.into()), flags).unwrap();
    assert_eq!(c.listen.port(), 2);
    assert_eq!(c.mode, Mode::Custom);
    assert_eq!(c.intercept, Intercept::All);
    let allow: Vec<String> = c.allow.iter().map(|p| p.to_string()).collect();
    assert_eq!(allow, vec!["a.example", "b.example"]);
    assert_eq!(c.deny.len(), 1);
    assert_eq!(
        c.resolve.len(),
        1,
        "the flag replaces the file's rule for the same HOST:PORT"
    );
    assert_eq!(c.resolve[0].target.port(), 3);
    assert_eq!(c.upstream_ca, vec![PathBuf::from("x.pem")]);
}

#[test]
fn resolve_rule_from_flag() {
    let r: ResolveRule = "API.Example.com:443=[::1]:9443".parse().unwrap();
    assert_eq!(r.host.to_string(), "api.example.com");
    assert_eq!(r.target, "[::1]:9443".parse().unwrap());
    assert!(
        "api.example.com:443"
            .parse::<ResolveRule>()
            .unwrap_err()
            .contains("HOST:PORT=IP:PORT")
    );
    assert!(
        "api.example.com:0=127.0.0.1:1"
            .parse::<ResolveRule>()
            .is_err()
    );
}

#[test]
fn limits_default_and_override() {
    let c = parse("").unwrap();
    assert_eq!(c.limits, Limits::default());
    let c = parse(
        "limits:\n  max_head_bytes: 32768\n  max_headers: \"50\"\n  header_read_timeout: 5s\n  handshake_timeout: 2500ms\n  idle_timeout: 2m\n  max_connections: 64\n  h2_max_concurrent_streams: 8\n  upstream_connect_timeout: 3s\n  response_timeout: 1m\n",
    )
    .unwrap();
    let l = c.limits;
    assert_eq!(l.max_head_bytes, 32768);
    assert_eq!(l.max_headers, 50);
    assert_eq!(l.header_read_timeout.as_secs(), 5);
    assert_eq!(l.handshake_timeout.as_millis(), 2500);
    assert_eq!(l.idle_timeout.as_secs(), 120);
    assert_eq!(l.max_connections, 64);
    assert_eq!(l.h2_max_concurrent_streams, 8);
    assert_eq!(l.upstream_connect_timeout.as_secs(), 3);
    assert_eq!(l.response_timeout.as_secs(), 60);
}

#[test]
fn bad_limits_name_their_place() {
    let e = err("limits:\n  response_timeout: forever\n");
    assert!(e.starts_with("/etc/kg/keygate.yaml:2:"), "{e}");
    assert!(e.contains("not a duration"), "{e}");
    let e = err("limits:\n  max_connections: 0\n");
    assert!(e.contains("from 1 to"), "{e}");
    let e = err("limits:\n  max_conections: 5\n");
    assert!(e.contains("max_conections"), "{e}");
}

#[test]
fn the_jail_section_defaults_to_on_and_takes_paths() {
    let default = parse("").unwrap().jail;
    assert!(default.enabled && default.writable.is_empty() && default.hide.is_empty());
    let jail = parse("jail:\n  enabled: false\n  writable: [\"~/.cache\"]\n  hide: [/srv/keys]\n")
        .unwrap()
        .jail;
    assert!(!jail.enabled);
    assert_eq!(jail.writable, vec![PathBuf::from("~/.cache")]);
    assert_eq!(jail.hide, vec![PathBuf::from("/srv/keys")]);
    let e = err("jail:\n  enabled: true\n  bogus: 1\n");
    assert!(e.contains(":3:3:") && e.contains("bogus"), "{e}");
}

#[test]
fn refusals_default_to_tls_and_take_connect() {
    assert_eq!(parse("").unwrap().refusals, Refusals::Tls);
    assert_eq!(
        parse("refusals: connect\n").unwrap().refusals,
        Refusals::Connect
    );
    assert_eq!(parse("refusals: tls\n").unwrap().refusals, Refusals::Tls);
    let e = err("listen: 127.0.0.1:1\nrefusals: page\n");
    assert!(e.starts_with("/etc/kg/keygate.yaml:2:"), "{e}");
    assert!(e.contains("tls") && e.contains("connect"), "{e}");
    let c = parse("limits:\n  refusal_pages_per_minute: 5\n").unwrap();
    assert_eq!(c.limits.refusal_pages_per_minute, 5);
    assert_eq!(parse("").unwrap().limits.refusal_pages_per_minute, 60);
}

#[test]
fn the_decoded_ratio_defaults_to_100_and_takes_a_positive_count() {
    let c = parse("limits:\n  max_decoded_ratio: 20\n").unwrap();
    assert_eq!(c.limits.max_decoded_ratio, 20);
    assert_eq!(parse("").unwrap().limits.max_decoded_ratio, 100);
    assert!(parse("limits:\n  max_decoded_ratio: 0\n").is_err());
}

#[test]
fn audit_rotation_defaults_and_takes_sizes_and_counts_with_their_place_on_error() {
    let d = parse("").unwrap().audit;
    assert_eq!((d.max_bytes, d.keep), (64 << 20, 5));
    let a = parse("audit:\n  max_bytes: 2MiB\n  keep: 2\n")
        .unwrap()
        .audit;
    assert_eq!((a.max_bytes, a.keep), (2 << 20, 2));
    let e = err("audit:\n  max_bytes: 100\n");
    assert!(e.starts_with("/etc/kg/keygate.yaml:2:"), "{e}");
    assert!(e.contains("1KiB"), "{e}");
    let e = err("audit:\n  keep: 0\n");
    assert!(
        e.starts_with("/etc/kg/keygate.yaml:2:") && e.contains("1 to 1000"),
        "{e}"
    );
    let e = err("audit:\n  max_files: 3\n");
    assert!(e.contains("unknown field `max_files`"), "{e}");
}
