//! `keygate doctor`: checks every piece a working setup needs and says how to fix each
//! broken one, on one screen. Exit 0 when nothing failed, 1 otherwise.

use anyhow::anyhow;
use keygate::agent;
use keygate::ca::{self, Ca};
use keygate::config::Config;
use keygate::home::Home;
use keygate::secrets::{SecretSet, SecretStore};
use keygate::text::{count, count_of};

use super::probe::same_ca;
use super::run::Embedded;
use super::{Failure, load_config, load_registry, open_store};

mod runtimes;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Ok,
    Warn,
    Fail,
}

#[derive(Default)]
struct Report {
    rows: Vec<(Status, String, String)>,
}

impl Report {
    fn ok(&mut self, what: &str, detail: impl Into<String>) {
        self.rows.push((Status::Ok, what.into(), detail.into()));
    }
    fn warn(&mut self, what: &str, detail: impl Into<String>) {
        self.rows.push((Status::Warn, what.into(), detail.into()));
    }
    fn fail(&mut self, what: &str, detail: impl Into<String>) {
        self.rows.push((Status::Fail, what.into(), detail.into()));
    }
    fn print(&self) {
        for (status, what, detail) in &self.rows {
            let mark = match status {
                Status::Ok => "ok  ",
                Status::Warn => "warn",
                Status::Fail => "FAIL",
            };
            println!("[{mark}] {what:<10} {detail}");
        }
    }
    fn failures(&self) -> usize {
        self.rows.iter().filter(|r| r.0 == Status::Fail).count()
    }
}

pub fn run(home: &Home) -> Result<(), Failure> {
    let mut report = Report::default();
    let config = check_config(home, &mut report);
    let bindings = match load_registry(home)
        .and_then(|r| r.bindings().map_err(|e| Failure::usage(anyhow!(e))))
    {
        Ok(b) => {
            let secrets = count_of(b.len(), "secret", "secrets");
            let file = home.secrets_file();
            report.ok("registry", format!("{secrets} in {}", file.display()));
            b
        }
        Err(f) => {
            report.fail(
                "registry",
                format!(
                    "{:#}; fix secrets.yaml (`keygate check` shows where)",
                    f.error
                ),
            );
            Vec::new()
        }
    };
    let ca = check_ca(home, &mut report);
    let secrets = check_keyring(&bindings, &mut report);
    for (name, path) in super::missing_phantom_files(home, &bindings) {
        report.fail(
            "secret",
            format!(
                "{name} (kind google) has no phantom service-account file at {}: the agent's GOOGLE_APPLICATION_CREDENTIALS points at nothing; `keygate secret add {name} --from-file SA.json` makes it",
                path.display()
            ),
        );
    }
    check_jail(&config, &mut report);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let Some(ca) = ca else {
            report.fail("runtimes", "not probed: no usable CA");
            return;
        };
        let listen = agent::client_address(config.listen);
        let credentials = match super::credentials_for(config.listen) {
            Ok(c) => c,
            Err(f) => {
                report.fail("listener", format!("cannot read the proxy credentials: {:#}", f.error));
                None
            }
        };
        let running = same_ca(listen, credentials.as_ref(), ca.cert_pem()).await;
        if running {
            report.ok("listener", format!("keygate answers on {listen} with this CA"));
        } else {
            report.warn(
                "listener",
                format!("no keygate with this CA on {listen}: start one with `keygate start` (`keygate run` embeds one); probing through a temporary proxy"),
            );
        }
        let embedded = match running {
            true => None,
            false => match Embedded::start(home, config.clone(), ca, secrets, false).await {
                Ok(e) => Some(e),
                Err(f) => {
                    report.fail("runtimes", format!("cannot start a temporary proxy: {:#}", f.error));
                    return;
                }
            },
        };
        let (addr, credentials) = match &embedded {
            Some(e) => (e.addr, None),
            None => (listen, credentials),
        };
        let env = agent::agent_env(addr, credentials.as_ref(), &home.ca_cert(), &home.bundle(), &home.phantoms_dir(), &bindings);
        runtimes::probe_runtimes(&env, &mut report).await;
        if let Some(e) = embedded {
            e.stop().await;
        }
    });
    report.print();
    match report.failures() {
        0 => Ok(()),
        n => Err(Failure::from(anyhow!(
            "{n} problem(s) found; each FAIL line says what to do"
        ))),
    }
}

fn check_config(home: &Home, report: &mut Report) -> Config {
    match load_config(home, Default::default()) {
        Ok(config) => {
            let source = config
                .source
                .as_ref()
                .map_or("embedded defaults".into(), |p| p.display().to_string());
            report.ok(
                "config",
                format!("{source}; mode {}, listen {}", config.mode, config.listen),
            );
            config
        }
        Err(f) => {
            report.fail(
                "config",
                format!("{:#}; fix it (`keygate check` validates)", f.error),
            );
            Config::default()
        }
    }
}

/// Whether `keygate run` can jail its command here, with which engine, or why not.
fn check_jail(config: &Config, report: &mut Report) {
    if !config.jail.enabled {
        report.warn(
            "jail",
            "jail.enabled is false in keygate.yaml: `keygate run` leaves its command unjailed (keyring, network and keygate's files reachable)",
        );
        return;
    }
    match keygate::jail::engine().and_then(|e| e.check().map(|()| e)) {
        Ok(engine) => report.ok(
            "jail",
            format!(
                "{} works here: `keygate run` jails its command",
                engine.name()
            ),
        ),
        Err(why) => report.fail("jail", why.to_string()),
    }
}

fn check_ca(home: &Home, report: &mut Report) -> Option<Ca> {
    let ca = match Ca::load(home) {
        Ok(ca) => ca,
        Err(e) => {
            report.fail("CA", e.to_string());
            return None;
        }
    };
    let days_left = x509_parser::parse_x509_certificate(ca.cert_der())
        .ok()
        .and_then(|(_, c)| c.validity().time_to_expiration())
        .map(|d| d.whole_days());
    match days_left {
        Some(days) if days > 30 => report.ok(
            "CA",
            format!("{} (valid {days} more days)", home.ca_cert().display()),
        ),
        Some(days) => report.warn(
            "CA",
            format!(
                "expires {}: rotate with `keygate ca init --force`",
                within(days)
            ),
        ),
        None => report.fail("CA", "expired: rotate with `keygate ca init --force`"),
    }
    let roots = rustls_native_certs::load_native_certs();
    let expected = ca::bundle_pem(&ca, &roots.certs);
    match std::fs::read_to_string(home.bundle()) {
        Ok(text) if text == expected => {
            report.ok("bundle", format!("{} is current", home.bundle().display()))
        }
        Ok(_) => report.warn(
            "bundle",
            "stale (system roots or CA changed): refresh with `keygate ca path --bundle`",
        ),
        Err(_) => report.fail(
            "bundle",
            "missing: create it with `keygate ca path --bundle`",
        ),
    }
    Some(ca)
}

/// `in 3 days`, `in 1 day`, or `within a day` for less than one whole day.
fn within(days: i64) -> String {
    match u64::try_from(days) {
        Ok(days @ 1..) => format!("in {}", count(days, "day", "days")),
        _ => "within a day".into(),
    }
}

fn check_keyring(bindings: &[keygate::secrets::Binding], report: &mut Report) -> SecretSet {
    let store = match open_store() {
        Ok(store) => store,
        Err(f) => {
            report.fail("keyring", format!("{:#}", f.error));
            return SecretSet::default();
        }
    };
    let caveat = store
        .caveat()
        .map(|c| format!(" ({c})"))
        .unwrap_or_default();
    report.ok(
        "keyring",
        format!("{} backend reachable{caveat}", store.backend()),
    );
    match SecretSet::load(bindings.to_vec(), &store) {
        Ok((secrets, missing)) => {
            for b in secrets.iter() {
                let command = match &b.kind {
                    keygate::secrets::kind::Kind::Aws(aws) => aws.command.as_ref(),
                    _ => None,
                };
                if b.real.is_some() {
                    let kind = match b.kind.name() {
                        keygate::secrets::kind::KindName::Static => String::new(),
                        kind => format!(" (kind {})", kind.as_str()),
                    };
                    report.ok(
                        "secret",
                        format!("{} stored{kind}; bound to {}", b.name, hosts(b)),
                    );
                } else if let Some(command) = command {
                    report.ok(
                        "secret",
                        format!(
                            "{} (kind aws) gets its credentials from `{}` when needed; bound to {}",
                            b.name,
                            command.join(" "),
                            hosts(b)
                        ),
                    );
                }
            }
            for m in missing {
                report.fail(
                    "secret",
                    format!(
                        "{} has no value in the keyring: `keygate secret add {}`",
                        m.name, m.name
                    ),
                );
            }
            secrets
        }
        Err(e) => {
            report.fail("keyring", e.to_string());
            SecretSet::default()
        }
    }
}

fn hosts(b: &keygate::secrets::Binding) -> String {
    b.hosts
        .iter()
        .map(|h| h.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
