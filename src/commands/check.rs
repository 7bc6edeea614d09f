//! `keygate check`: validate the configuration and print the effective policy.

use std::fmt::Write as _;

use keygate::config::Config;
use keygate::home::Home;
use keygate::policy::{HostPattern, Mode, Policy};
use keygate::secrets::recipe;

use super::{Failure, load_config, overrides};
use crate::cli::CheckArgs;

/// Hosts deliberately left out of the trusted list (SPEC Appendix A).
const NOT_TRUSTED: &str = "*.cloudfront.net, *.vercel.app, *.netlify.app, *.supabase.co, gist.github.com, *.ngrok.io, pastebins";

pub fn run(home: &Home, args: CheckArgs) -> Result<(), Failure> {
    let config = load_config(home, overrides(args.listen, args.policy))?;
    for ca in &config.upstream_ca {
        if !ca.is_file() {
            return Err(Failure::usage(anyhow::anyhow!(
                "upstream.ca: {} does not exist or is not a file",
                ca.display()
            )));
        }
    }
    let registry = super::load_registry(home)?;
    let bindings = registry
        .bindings()
        .map_err(|e| Failure::usage(anyhow::anyhow!("{}: {e}", home.secrets_file().display())))?;
    let recipes = check_recipes(home)?;
    let secret_hosts = bindings
        .iter()
        .flat_map(|b| b.hosts.iter().cloned())
        .collect();
    let policy = config.policy(secret_hosts);
    print!("{}", describe(home, &config, &policy));
    println!("\nsecrets ({}):", home.secrets_file().display());
    if bindings.is_empty() {
        println!("  (none)");
    }
    for b in &bindings {
        let hosts: Vec<String> = b.hosts.iter().map(|h| h.to_string()).collect();
        println!(
            "  - {} -> {} (header {}, env {})",
            b.name,
            hosts.join(", "),
            b.header,
            b.env.join(",")
        );
    }
    println!("recipes: {}", recipes.join(", "));
    println!("{}", describe_jail(&config.jail));
    eprintln!("keygate: configuration is valid");
    Ok(())
}

/// Parses every built-in recipe and every `addons/*.yaml` of the user; returns names.
fn check_recipes(home: &Home) -> Result<Vec<String>, Failure> {
    let mut names: Vec<String> = recipe::BUILT_IN
        .iter()
        .map(|(n, _)| n.to_string())
        .collect();
    let dir = home.addons_dir();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(names);
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .map_err(|e| Failure::usage(anyhow::anyhow!("{}: {e}", path.display())))?;
        let recipe = recipe::Recipe::parse(&text, &path).map_err(Failure::usage)?;
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        // What `secret add NAME` would refuse is refused here already.
        recipe
            .check(&name)
            .map_err(|e| Failure::usage(anyhow::anyhow!("{}: {e}", path.display())))?;
        // A user recipe overrides the built-in one of the same name.
        names.retain(|n| n != &name);
        names.push(format!("{name} (yours)"));
    }
    Ok(names)
}

fn list(out: &mut String, title: &str, patterns: &[HostPattern]) {
    let _ = writeln!(out, "{title}:");
    if patterns.is_empty() {
        let _ = writeln!(out, "  (none)");
    }
    for p in patterns {
        let _ = writeln!(out, "  - {p}");
    }
}

/// The effective policy, in the order it is applied.
pub fn describe(home: &Home, config: &Config, policy: &Policy) -> String {
    let mut out = String::new();
    let source = match &config.source {
        Some(path) => path.display().to_string(),
        None => format!(
            "{} (absent: embedded defaults)",
            home.config_file().display()
        ),
    };
    let _ = writeln!(out, "config: {source}");
    let _ = writeln!(out, "home: {}", home.root().display());
    let _ = writeln!(out, "listen: {}", config.listen);
    let _ = writeln!(out, "mode: {}", config.mode);
    let _ = writeln!(out, "intercept: {}", config.intercept);
    let private = match config.private_addresses {
        keygate::policy::PrivateAddresses::Deny => "deny",
        keygate::policy::PrivateAddresses::Allow => "allow",
    };
    let _ = writeln!(out, "private_addresses: {private}");
    let _ = writeln!(out, "refusals: {}", config.refusals);
    let _ = writeln!(
        out,
        "audit: rotated past {}, {} files kept",
        keygate::config::audit::Size(config.audit.max_bytes),
        config.audit.keep
    );
    let _ = writeln!(
        out,
        "\nrules, in order (deny wins over everything; unknown hosts are denied):"
    );
    list(&mut out, "deny", &policy.deny);
    list(
        &mut out,
        "secret hosts (always allowed)",
        &policy.secret_hosts,
    );
    list(&mut out, "allow", &policy.allow);
    match config.mode {
        Mode::Trusted => list(&mut out, "trusted (embedded list)", policy.mode_patterns()),
        Mode::None | Mode::Custom => {
            let _ = writeln!(
                out,
                "trusted (embedded list): not used in mode {}",
                config.mode
            );
        }
    }
    let _ = writeln!(
        out,
        "not trusted by default (anyone can publish there): {NOT_TRUSTED}"
    );
    let _ = writeln!(out, "\nupstream:");
    for ca in &config.upstream_ca {
        let _ = writeln!(out, "  extra root: {}", ca.display());
    }
    for r in &config.resolve {
        let _ = writeln!(out, "  resolve: {}:{} -> {}", r.host, r.port, r.target);
    }
    match &config.upstream_proxy {
        Some(p) => {
            let _ = writeln!(out, "  proxy: http://{}:{}", p.host, p.port);
            for n in &config.no_proxy {
                let _ = writeln!(out, "  no_proxy: {n}");
            }
        }
        None => {
            let _ = writeln!(out, "  proxy: (none, direct connections)");
        }
    }
    out
}

/// The `jail:` settings as `keygate run` applies them.
fn describe_jail(jail: &keygate::config::JailConfig) -> String {
    let list = |paths: &[std::path::PathBuf]| match paths {
        [] => "(none)".to_string(),
        _ => paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    };
    format!(
        "jail: {} (keygate run; --no-jail for one run); extra writable: {}; extra hidden: {}",
        if jail.enabled { "on" } else { "off" },
        list(&jail.writable),
        list(&jail.hide)
    )
}
