//! `keygate secret list`: every registered secret and whether the keyring holds its
//! value (never the value itself), as a table that fits 80 columns, whole (`--long`),
//! or as JSON (`--json`).

use anyhow::anyhow;
use keygate::home::Home;
use keygate::secrets::{SecretEntry, SecretStore};
use keygate::text::Table;

use super::{Failure, caveat, load_registry, open_store};
use crate::cli::SecretListArgs;

/// The widest line the table prints without `--long`.
const TABLE_WIDTH: usize = 80;

const TITLES: [&str; 6] = ["NAME", "HOSTS", "HEADER", "ENV", "DUMMY", "STORED"];
const NAME: usize = 0;
const HOSTS: usize = 1;
const HEADER: usize = 2;
const ENV: usize = 3;
const DUMMY: usize = 4;

/// The order in which columns give up width to fit [`TABLE_WIDTH`], each down to a
/// floor: the dummy first (people recognise it by its start and end, which stay;
/// `--long` prints it whole), then the other columns, the header and env var names
/// last because they are what a user types.
const SHRINK: &[(usize, usize)] = &[
    (DUMMY, 12),
    (DUMMY, 8),
    (HOSTS, 16),
    (NAME, 12),
    (ENV, 12),
    (HEADER, 9),
    (HOSTS, 10),
    (NAME, 8),
    (ENV, 8),
    (DUMMY, 5),
];

/// One secret in `--json`: the registry's metadata and whether the keyring holds a
/// value (null when the keyring could not say). Never a value.
#[derive(serde::Serialize)]
struct Listed<'a> {
    name: &'a str,
    hosts: &'a [String],
    header: &'a str,
    format: &'a str,
    env: Vec<String>,
    dummy: &'a str,
    methods: Option<&'a [String]>,
    paths: Option<&'a [String]>,
    query: bool,
    websocket: bool,
    body: Option<&'static str>,
    stored: Option<bool>,
    /// The credential kind (`static`, `aws`, `google`, `oauth2`, `github-app`).
    kind: &'static str,
    /// For an `aws` secret whose real credentials come from a command: the program.
    #[serde(skip_serializing_if = "Option::is_none")]
    command: Option<&'a str>,
    /// For a minted kind: when the token the running keygate last minted expires (RFC
    /// 3339), or null when none was minted yet. Never the token.
    #[serde(skip_serializing_if = "Option::is_none")]
    token_expires_at: Option<Option<String>>,
}

pub fn list(home: &Home, args: SecretListArgs) -> Result<(), Failure> {
    let registry = load_registry(home)?;
    if registry.entries.is_empty() {
        if args.json {
            println!("[]");
        } else {
            eprintln!("keygate: no secrets registered; add one with `keygate secret add NAME`");
        }
        return Ok(());
    }
    let store = open_store();
    let mut failure = None;
    let stored: Vec<Option<bool>> = registry
        .entries
        .iter()
        .map(|e| {
            let found = match &store {
                Ok(store) => store.get(&e.name).map_err(|err| err.to_string()),
                Err(err) => Err(format!("{:#}", err.error)),
            };
            match found {
                Ok(value) => Some(value.is_some()),
                Err(message) => {
                    failure.get_or_insert(message);
                    None
                }
            }
        })
        .collect();
    let expiries = keygate::credentials::expiry::read(&home.tokens_file());
    let expiry = |e: &SecretEntry| expiries.get(&e.name).map(|x| x.expires_at.clone());
    if args.json {
        print_json(&registry.entries, &stored, &expiry);
    } else {
        for line in table(&registry.entries, &stored, &expiry, args.long) {
            println!("{line}");
        }
    }
    if let Ok(store) = &store {
        eprintln!("keygate: values are in the {} keyring", store.backend());
        if let Some(caveat) = caveat(store) {
            eprintln!("keygate: note: {caveat}");
        }
    }
    match failure {
        Some(message) => Err(Failure::from(anyhow!(message))),
        None => Ok(()),
    }
}

/// The table's lines: whole cells with `long`, else fitted to [`TABLE_WIDTH`] (lists of
/// hosts or variables shortened to their first item and a count when that is needed).
fn table(
    entries: &[SecretEntry],
    stored: &[Option<bool>],
    expiry: &dyn Fn(&SecretEntry) -> Option<String>,
    long: bool,
) -> Vec<String> {
    let build = |lists: fn(&[String]) -> String| {
        let mut table = Table::new(&TITLES);
        for (e, stored) in entries.iter().zip(stored) {
            let env = e.env.names();
            table.row(vec![
                e.name.clone(),
                lists(&e.hosts),
                e.header.clone(),
                if env.is_empty() {
                    "-".into()
                } else {
                    lists(&env)
                },
                e.dummy.clone(),
                stored_cell(e, *stored, expiry(e)),
            ]);
        }
        table
    };
    let whole = build(|items| items.join(","));
    if long {
        return whole.render(None, &[]);
    }
    let table = match whole.natural_width() > TABLE_WIDTH {
        true => build(first_and_count),
        false => whole,
    };
    table.render(Some(TABLE_WIDTH), SHRINK)
}

/// The STORED cell: yes / no / unknown, and for a kind other than `static` the kind
/// and, for a minted one, when the current token expires (`yes, oauth2, token until
/// 2026-12-05T14:05:00Z`); an `aws` secret with a command says `command, aws`.
fn stored_cell(e: &SecretEntry, stored: Option<bool>, expires: Option<String>) -> String {
    use keygate::secrets::kind::KindName;
    let from_command = e.aws.as_ref().is_some_and(|a| a.command.is_some());
    let base = match (stored, from_command) {
        (_, true) if e.kind == KindName::Aws => "command",
        (Some(true), _) => "yes",
        (Some(false), _) => "no",
        (None, _) => "unknown",
    };
    match e.kind {
        KindName::Static => base.to_string(),
        KindName::Aws => format!("{base}, aws"),
        kind => match expires {
            Some(at) => format!("{base}, {}, token until {at}", kind.as_str()),
            None => format!("{base}, {}, no token yet", kind.as_str()),
        },
    }
}

/// `a +2` for `[a, b, c]`; `a` for `[a]`.
fn first_and_count(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [first, rest @ ..] => format!("{first} +{}", rest.len()),
    }
}

/// A JSON array of [`Listed`] secrets.
fn print_json(
    entries: &[SecretEntry],
    stored: &[Option<bool>],
    expiry: &dyn Fn(&SecretEntry) -> Option<String>,
) {
    let items: Vec<Listed> = entries
        .iter()
        .zip(stored)
        .map(|(e, &stored)| Listed {
            name: &e.name,
            hosts: &e.hosts,
            header: &e.header,
            format: &e.format,
            env: e.env.names(),
            dummy: &e.dummy,
            methods: e.methods.as_deref(),
            paths: e.paths.as_deref(),
            query: e.query,
            websocket: e.websocket,
            body: e.body.map(|b| b.as_str()),
            stored,
            kind: e.kind.as_str(),
            command: e
                .aws
                .as_ref()
                .and_then(|a| a.command.as_ref())
                .and_then(|c| c.first())
                .map(String::as_str),
            token_expires_at: matches!(
                e.kind,
                keygate::secrets::kind::KindName::Oauth2
                    | keygate::secrets::kind::KindName::Google
                    | keygate::secrets::kind::KindName::GithubApp
            )
            .then(|| expiry(e)),
        })
        .collect();
    let text = serde_json::to_string_pretty(&items).unwrap_or_else(|_| "[]".into());
    println!("{text}");
}
