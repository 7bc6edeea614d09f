//! `keygate secret add | list | rm`.

use std::io::{IsTerminal, Read};

use anyhow::{Context, anyhow};
use keygate::home::Home;
use keygate::secrets::registry::{EnvVars, validate_name};
use keygate::secrets::{SecretEntry, SecretStore, SecretValue, dummy, recipe};

use super::{Failure, load_registry, open_store, save_registry};
use crate::cli::{SecretAddArgs, SecretCommand};

pub fn run(home: &Home, cmd: SecretCommand) -> Result<(), Failure> {
    match cmd {
        SecretCommand::Add(args) => add(home, args),
        SecretCommand::List(args) => super::secret_list::list(home, args),
        SecretCommand::Rm { name } => rm(home, &name),
    }
}

/// The registry entry for `args`: flags > the existing entry > the recipe.
fn entry_for(
    home: &Home,
    args: &SecretAddArgs,
    existing: Option<&SecretEntry>,
) -> Result<SecretEntry, Failure> {
    if let Some(existing) = existing {
        let mut entry = existing.clone();
        apply_flags(&mut entry, args)?;
        return Ok(entry);
    }
    let recipe = recipe::find(&args.name, &home.addons_dir()).map_err(Failure::usage)?;
    if recipe.is_none() && args.hosts.is_empty() {
        return Err(Failure::usage(anyhow!(
            "there is no recipe named `{name}`; say where the secret goes, e.g. `keygate secret add {name} --host api.example.com --header authorization --format 'Bearer {{secret}}'` (built-in recipes: {list})",
            name = args.name,
            list = recipe::BUILT_IN
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let mut entry = match recipe {
        Some(r) => r
            .entry(&args.name)
            .map_err(|e| Failure::usage(anyhow!(e)))?,
        None => SecretEntry {
            name: args.name.clone(),
            hosts: Vec::new(),
            header: "authorization".into(),
            format: "{secret}".into(),
            env: EnvVars::None,
            dummy: dummy::expand(dummy::DEFAULT_TEMPLATE, &args.name)
                .map_err(|e| Failure::usage(anyhow!(e)))?,
            methods: None,
            paths: None,
            query: false,
        },
    };
    apply_flags(&mut entry, args)?;
    Ok(entry)
}

fn apply_flags(entry: &mut SecretEntry, args: &SecretAddArgs) -> Result<(), Failure> {
    if !args.hosts.is_empty() {
        entry.hosts = args.hosts.clone();
    }
    if let Some(header) = &args.header {
        entry.header = header.clone();
    }
    if let Some(format) = &args.format {
        entry.format = format.clone();
    }
    if let Some(dummy) = &args.dummy {
        entry.dummy = dummy.clone();
    }
    if let Some(env) = &args.env {
        entry.env = EnvVars::One(env.clone());
    }
    Ok(())
}

/// Reads the value from --stdin, --from-env, or a no-echo prompt.
fn read_value(args: &SecretAddArgs) -> Result<SecretValue, Failure> {
    let text = if args.stdin {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the value from stdin")?;
        text
    } else if let Some(var) = &args.from_env {
        std::env::var(var).map_err(|_| {
            Failure::usage(anyhow!(
                "environment variable {var} is not set (or not UTF-8)"
            ))
        })?
    } else if std::io::stdin().is_terminal() {
        rpassword::prompt_password(format!("Value for secret `{}` (not echoed): ", args.name))
            .context("reading the value from the terminal")?
    } else {
        return Err(Failure::usage(anyhow!(
            "no terminal to prompt for the value; pass it with --stdin or --from-env VAR"
        )));
    };
    SecretValue::new(text).map_err(Failure::usage)
}

fn add(home: &Home, args: SecretAddArgs) -> Result<(), Failure> {
    validate_name(&args.name).map_err(|e| Failure::usage(anyhow!(e)))?;
    let mut registry = load_registry(home)?;
    let entry = entry_for(home, &args, registry.get(&args.name))?;
    let mut candidate = registry.clone();
    candidate.upsert(entry.clone());
    candidate
        .bindings()
        .map_err(|e| Failure::usage(anyhow!(e)))?;
    let value = read_value(&args)?;
    if value.expose().contains(&entry.dummy) {
        let what = if value.expose() == entry.dummy {
            "is the dummy itself"
        } else {
            "contains the dummy"
        };
        return Err(Failure::usage(anyhow!(
            "the value given {what}; give the real key"
        )));
    }
    let store = open_store()?;
    store.set(&entry.name, &value)?;
    registry.upsert(entry.clone());
    save_registry(home, &registry)?;
    eprintln!(
        "keygate: stored `{}` in the {} keyring; bound to {}",
        entry.name,
        store.backend(),
        entry.hosts.join(", ")
    );
    if let Some(caveat) = super::caveat(&store) {
        eprintln!("keygate: note: {caveat}");
    }
    let envs = entry.env.names();
    if !envs.is_empty() {
        eprintln!(
            "keygate: give the agent the dummy, e.g. {}=<dummy> (`keygate env` does it)",
            envs.join("=<dummy> ")
        );
    }
    eprintln!(
        "keygate: a running `keygate start` loads it on SIGHUP (`kill -HUP <pid>`) or restart"
    );
    println!("{}", entry.dummy);
    Ok(())
}

fn rm(home: &Home, name: &str) -> Result<(), Failure> {
    validate_name(name).map_err(|e| Failure::usage(anyhow!(e)))?;
    let mut registry = load_registry(home)?;
    let store = open_store()?;
    let had_value = store.delete(name)?;
    let had_entry = registry.remove(name);
    if !had_value && !had_entry {
        return Err(Failure::usage(anyhow!(
            "no secret named `{name}` (see `keygate secret list`)"
        )));
    }
    save_registry(home, &registry)?;
    eprintln!(
        "keygate: removed `{name}` from the {} keyring and the registry",
        store.backend()
    );
    Ok(())
}
