//! `keygate doctor`: checks every piece a working setup needs and says how to fix each
//! broken one, on one screen. Exit 0 when nothing failed, 1 otherwise.

use std::process::Stdio;
use std::time::Duration;

use anyhow::anyhow;
use keygate::agent::{self, AgentEnv};
use keygate::ca::{self, Ca};
use keygate::config::Config;
use keygate::home::Home;
use keygate::secrets::{SecretSet, SecretStore};
use keygate::text::{count, count_of};

use super::probe::same_ca;
use super::run::Embedded;
use super::{Failure, load_config, load_registry, open_store};

/// How long one runtime probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(15);

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
            report.ok(
                "registry",
                format!(
                    "{} in {}",
                    count_of(b.len(), "secret", "secrets"),
                    home.secrets_file().display()
                ),
            );
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
            false => match Embedded::start(home, config.clone(), ca, secrets).await {
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
        let env = agent::agent_env(addr, credentials.as_ref(), &home.ca_cert(), &home.bundle(), &bindings);
        probe_runtimes(&env, &mut report).await;
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
                match u64::try_from(days) {
                    Ok(days @ 1..) => format!("in {}", count(days, "day", "days")),
                    _ => "within a day".to_string(),
                }
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
                if b.real.is_some() {
                    report.ok(
                        "secret",
                        format!("{} stored; bound to {}", b.name, hosts(b)),
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

/// A runtime probe: the program, its arguments, and what to do when it fails.
struct RuntimeProbe {
    name: &'static str,
    program: &'static str,
    args: &'static [&'static str],
    remedy: &'static str,
}

const RUNTIMES: &[RuntimeProbe] = &[
    RuntimeProbe {
        name: "curl",
        program: "curl",
        args: &["-sS", "--max-time", "10", "https://keygate.test/health"],
        remedy: "curl must see HTTPS_PROXY and CURL_CA_BUNDLE from `keygate env`",
    },
    RuntimeProbe {
        name: "python3",
        program: "python3",
        args: &[
            "-c",
            "import urllib.request; print(urllib.request.urlopen('https://keygate.test/health', timeout=10).read().decode())",
        ],
        remedy: "Python must see HTTPS_PROXY and SSL_CERT_FILE/REQUESTS_CA_BUNDLE from `keygate env`",
    },
    RuntimeProbe {
        name: "node",
        program: "node",
        args: &[
            "-e",
            "fetch('https://keygate.test/health').then(r => r.text()).then(t => console.log(t), e => { console.error(String(e.cause || e)); process.exit(1); })",
        ],
        remedy: "Node's fetch honours HTTPS_PROXY only with NODE_USE_ENV_PROXY=1 on a Node that supports it (24+); on older Node use undici's EnvHttpProxyAgent, and NODE_EXTRA_CA_CERTS for the CA",
    },
    RuntimeProbe {
        name: "git",
        program: "git",
        args: &["ls-remote", "https://keygate.test/doctor.git"],
        remedy: "git must see HTTPS_PROXY and GIT_SSL_CAINFO from `keygate env`",
    },
];

async fn probe_runtimes(env: &AgentEnv, report: &mut Report) {
    for probe in RUNTIMES {
        let mut cmd = tokio::process::Command::new(probe.program);
        cmd.args(probe.args)
            .envs(&env.set)
            .env("GIT_TERMINAL_PROMPT", "0")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        for name in &env.unset {
            cmd.env_remove(name);
        }
        let output = match cmd.output_with_timeout(PROBE_TIMEOUT).await {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                report.ok(probe.name, "not installed (skipped)");
                continue;
            }
            other => other,
        };
        match output {
            Ok(out)
                if out.status.success()
                    && (probe.name == "git"
                        || String::from_utf8_lossy(&out.stdout).contains("\"tls\":true")) =>
            {
                report.ok(
                    probe.name,
                    "reaches https://keygate.test through keygate and trusts its CA",
                );
            }
            Ok(out) => {
                let err = String::from_utf8_lossy(&out.stderr);
                let first = err
                    .lines()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("no output")
                    .trim();
                let old_node = match probe.name {
                    "node" => node_major().await.filter(|major| *major < 24),
                    _ => None,
                };
                match old_node {
                    // A known limit of the runtime, not of the setup: say what it means.
                    Some(major) => report.warn(
                        probe.name,
                        format!(
                            "Node {major}'s built-in fetch ignores HTTPS_PROXY, so scripts using it bypass keygate (tools with their own proxy support, like Claude Code, are fine); use Node 24+ with NODE_USE_ENV_PROXY=1, or undici's EnvHttpProxyAgent"
                        ),
                    ),
                    None => report.fail(probe.name, format!("{first} — {}", probe.remedy)),
                }
            }
            Err(e) => report.fail(probe.name, format!("{e} — {}", probe.remedy)),
        }
    }
}

/// The installed Node's major version.
async fn node_major() -> Option<u32> {
    let out = tokio::process::Command::new("node")
        .arg("--version")
        .output_with_timeout(PROBE_TIMEOUT)
        .await
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .trim_start_matches('v')
        .split('.')
        .next()?
        .parse()
        .ok()
}

/// `Command::output` bounded by a timeout (the child is killed on drop).
trait OutputWithTimeout {
    async fn output_with_timeout(
        &mut self,
        limit: Duration,
    ) -> std::io::Result<std::process::Output>;
}

impl OutputWithTimeout for tokio::process::Command {
    async fn output_with_timeout(
        &mut self,
        limit: Duration,
    ) -> std::io::Result<std::process::Output> {
        tokio::time::timeout(limit, self.output())
            .await
            .map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no answer within {}s", limit.as_secs()),
                )
            })?
    }
}
