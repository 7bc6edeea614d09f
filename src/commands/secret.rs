//! `keygate secret add | list | rm`.

use std::io::{IsTerminal, Read};

use anyhow::{Context, anyhow};
use keygate::home::Home;
use keygate::secrets::keyring::KeyringStore;
use keygate::secrets::registry::{EnvVars, validate_name};
use keygate::secrets::{BodyMode, SecretEntry, SecretStore, dummy, recipe};

use super::secret_kinds::{apply_kind_flags, prepare_value, write_phantom};
use super::{Failure, load_registry, open_store, save_registry};
use crate::cli::{BodyArg, SecretAddArgs, SecretCommand};
use keygate::secrets::kind::KindName;
use zeroize::Zeroizing;

pub fn run(home: &Home, cmd: SecretCommand) -> Result<(), Failure> {
    match cmd {
        SecretCommand::Add(args) => add(home, *args),
        SecretCommand::List(args) => super::secret_list::list(home, args),
        SecretCommand::Rm { name, force } => rm(home, &name, force),
    }
}

/// The registry entry for `args`: flags > the existing entry > the recipe (`--recipe`,
/// else the one named like the secret). Also returns the recipe's name, when one was used.
fn entry_for(
    home: &Home,
    args: &SecretAddArgs,
    existing: Option<&SecretEntry>,
) -> Result<(SecretEntry, Option<String>), Failure> {
    if let Some(existing) = existing {
        if let Some(recipe) = &args.recipe {
            return Err(Failure::usage(anyhow!(
                "`{name}` is already registered in this home, and --recipe {recipe} applies to a new secret only; change its fields with --host, --header, --format, --env or --dummy, or `keygate secret rm {name}` first",
                name = args.name
            )));
        }
        let mut entry = existing.clone();
        apply_flags(&mut entry, args)?;
        return Ok((entry, None));
    }
    let recipe_name = args.recipe.as_deref().unwrap_or(&args.name);
    let recipe = recipe::find(recipe_name, &home.addons_dir()).map_err(Failure::usage)?;
    let built_in = || {
        recipe::BUILT_IN
            .iter()
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join(", ")
    };
    if recipe.is_none() && args.recipe.is_some() {
        return Err(Failure::usage(anyhow!(
            "there is no recipe named `{recipe_name}` (built-in recipes: {}; your own go in {})",
            built_in(),
            home.addons_dir().display()
        )));
    }
    if recipe.is_none() && args.hosts.is_empty() {
        return Err(Failure::usage(anyhow!(
            "there is no recipe named `{name}`; say where the secret goes, e.g. `keygate secret add {name} --host api.example.com --header authorization --format 'Bearer {{secret}}'`, or name a recipe with --recipe (built-in recipes: {list})",
            name = args.name,
            list = built_in()
        )));
    }
    let mut entry = match &recipe {
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
            websocket: false,
            body: None,
            kind: Default::default(),
            oauth2: None,
            github_app: None,
            google: None,
            aws: None,
        },
    };
    apply_flags(&mut entry, args)?;
    Ok((entry, recipe.map(|_| recipe_name.to_string())))
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
    if args.query {
        entry.query = true;
    }
    if args.websocket {
        entry.websocket = true;
    }
    if let Some(body) = args.body {
        entry.body = Some(match body {
            BodyArg::Json => BodyMode::Json,
            BodyArg::Form => BodyMode::Form,
            BodyArg::Text => BodyMode::Text,
        });
    }
    apply_kind_flags(entry, args)
}

/// Reads the value from --stdin, --from-env, --from-file, or a no-echo prompt (one
/// line: key files need --from-file or --stdin).
fn read_raw(args: &SecretAddArgs, kind: KindName) -> Result<Zeroizing<String>, Failure> {
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
    } else if let Some(path) = &args.from_file {
        std::fs::read_to_string(path)
            .map_err(|e| Failure::usage(anyhow!("cannot read {}: {e}", path.display())))?
    } else if matches!(kind, KindName::Google | KindName::GithubApp) {
        return Err(Failure::usage(anyhow!(
            "a {} secret's value is a file; give it with --from-file FILE (or --stdin)",
            kind.as_str()
        )));
    } else if kind == KindName::Aws && std::io::stdin().is_terminal() {
        return prompt_aws(&args.name);
    } else if std::io::stdin().is_terminal() {
        rpassword::prompt_password(format!("Value for secret `{}` (not echoed): ", args.name))
            .context("reading the value from the terminal")?
    } else {
        return Err(Failure::usage(anyhow!(
            "no terminal to prompt for the value; pass it with --stdin, --from-env VAR or --from-file FILE"
        )));
    };
    Ok(Zeroizing::new(text))
}

/// AWS credentials from three no-echo prompts (so they need not be written to a file
/// first), as the JSON the keyring holds.
fn prompt_aws(name: &str) -> Result<Zeroizing<String>, Failure> {
    let ask = |what: &str| -> Result<Zeroizing<String>, Failure> {
        let text = rpassword::prompt_password(format!("{what} for `{name}` (not echoed): "))
            .context("reading the value from the terminal")?;
        Ok(Zeroizing::new(text.trim().to_string()))
    };
    let id = ask("AWS access key id")?;
    let secret = ask("AWS secret access key")?;
    let token = ask("AWS session token (empty for long-term keys)")?;
    let mut creds = serde_json::json!({"access_key_id": *id, "secret_access_key": *secret});
    if !token.is_empty() {
        creds["session_token"] = serde_json::Value::String(token.to_string());
    }
    Ok(Zeroizing::new(creds.to_string()))
}

fn add(home: &Home, args: SecretAddArgs) -> Result<(), Failure> {
    validate_name(&args.name).map_err(|e| Failure::usage(anyhow!(e)))?;
    let mut registry = load_registry(home)?;
    let registered = registry.get(&args.name).is_some();
    let (mut entry, recipe) = entry_for(home, &args, registry.get(&args.name))?;
    let mut candidate = registry.clone();
    candidate.upsert(entry.clone());
    candidate
        .bindings()
        .map_err(|e| Failure::usage(anyhow!(e)))?;
    // Before the prompt: a refusal should not come after the user typed the key.
    let store = open_store()?;
    if !registered {
        guard_foreign_value(home, &store, &args, recipe.as_deref())?;
    }
    let from_command = entry.aws.as_ref().is_some_and(|a| a.command.is_some())
        && !args.stdin
        && args.from_env.is_none()
        && args.from_file.is_none();
    if from_command {
        // The real credentials come from the command each time; nothing to store.
        if let Some(block) = entry.aws.as_mut() {
            block.session_token = None;
        }
        let had = store.delete(&entry.name)?;
        registry.upsert(entry.clone());
        save_registry(home, &registry)?;
        eprintln!(
            "keygate: `{}` gets its AWS credentials from its command (no keyring value{}); bound to {}",
            entry.name,
            if had {
                ": the stored one was removed"
            } else {
                ""
            },
            entry.hosts.join(", ")
        );
        println!("{}", entry.dummy);
        return Ok(());
    }
    let raw = read_raw(&args, entry.kind)?;
    let prepared = prepare_value(&mut entry, raw)?;
    let value = prepared.value;
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
    store.set(&entry.name, &value)?;
    if let Some(file) = &prepared.phantom_file {
        write_phantom(home, &entry.name, file)?;
    }
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
    match entry.kind {
        KindName::Aws => eprintln!(
            "keygate: `keygate env` and `keygate run` give the agent phantoms only: AWS_ACCESS_KEY_ID (the dummy), AWS_SECRET_ACCESS_KEY{}",
            match entry
                .aws
                .as_ref()
                .is_some_and(|a| a.session_token.is_some())
            {
                true => " and AWS_SESSION_TOKEN",
                false => "",
            }
        ),
        // write_phantom has said where GOOGLE_APPLICATION_CREDENTIALS points.
        KindName::Google => {}
        _ if !envs.is_empty() => eprintln!(
            "keygate: give the agent the dummy, e.g. {}=<dummy> (`keygate env` does it)",
            envs.join("=<dummy> ")
        ),
        _ => {}
    }
    eprintln!(
        "keygate: a running `keygate start` loads it on SIGHUP (`kill -HUP <pid>`) or restart"
    );
    println!("{}", entry.dummy);
    Ok(())
}

/// Refuses (exit 1) to replace a keyring value that this home did not register, unless
/// `--force`: `add` of a name missing from this home's secrets.yaml but present in the
/// keyring.
// SECURITY: the keyring is per user (service `keygate`, account = the secret's name),
// not per home, so a throw-away `--home` would otherwise silently replace the real key
// the user's main home (or an earlier install) relies on.
fn guard_foreign_value(
    home: &Home,
    store: &KeyringStore,
    args: &SecretAddArgs,
    recipe: Option<&str>,
) -> Result<(), Failure> {
    let name = &args.name;
    if store.get(name)?.is_none() {
        return Ok(());
    }
    if args.force {
        eprintln!(
            "keygate: --force: replacing the {} keyring's value of `{name}`, which this home did not register; every keygate home that lists `{name}` uses the new value",
            store.backend()
        );
        return Ok(());
    }
    let other = format!("{name}-test");
    let rename = match recipe {
        Some(recipe) => format!("`keygate secret add {other} --recipe {recipe}`"),
        None => format!(
            "`keygate secret add {other}` with the same --host, --header, --format and --env"
        ),
    };
    Err(anyhow!(
        "the {backend} keyring already holds a value for `{name}` that this home ({home}) did not register: another keygate home, or an earlier install, stored it. The keyring is per user, not per home, so storing it here would replace the value that other home uses. Pass --force to replace it, or register this key under another name, e.g. {rename}",
        backend = store.backend(),
        home = home.root().display(),
    )
    .into())
}

fn rm(home: &Home, name: &str, force: bool) -> Result<(), Failure> {
    validate_name(name).map_err(|e| Failure::usage(anyhow!(e)))?;
    let mut registry = load_registry(home)?;
    let store = open_store()?;
    if registry.get(name).is_none() {
        return rm_unregistered(home, &store, name, force);
    }
    let had_value = store.delete(name)?;
    registry.remove(name);
    save_registry(home, &registry)?;
    let _ = std::fs::remove_file(home.phantom_file(name));
    match had_value {
        true => eprintln!(
            "keygate: removed `{name}` from the {} keyring and the registry",
            store.backend()
        ),
        false => eprintln!(
            "keygate: removed `{name}` from the registry (the {} keyring held no value for it)",
            store.backend()
        ),
    }
    Ok(())
}

/// `rm` of a name this home's registry does not list: its keyring value, if any, belongs
/// to another home, so it stays unless `--force` (exit 1 without it).
// SECURITY: as for `add` (see `guard_foreign_value`): the keyring is per user, not per
// home, and a throw-away home must not delete the value another home relies on.
fn rm_unregistered(
    home: &Home,
    store: &KeyringStore,
    name: &str,
    force: bool,
) -> Result<(), Failure> {
    if store.get(name)?.is_none() {
        return Err(Failure::usage(anyhow!(
            "no secret named `{name}` (see `keygate secret list`)"
        )));
    }
    if !force {
        return Err(anyhow!(
            "`{name}` is not registered in this home ({}), but the {} keyring holds a value for it that another keygate home, or an earlier install, registered. The keyring is per user, not per home, so nothing was removed; pass --force to delete that value anyway",
            home.secrets_file().display(),
            store.backend()
        )
        .into());
    }
    store.delete(name)?;
    eprintln!(
        "keygate: --force: removed the {} keyring's value of `{name}` (this home's registry does not list it)",
        store.backend()
    );
    Ok(())
}
