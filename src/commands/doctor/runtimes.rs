//! `keygate doctor`'s runtime probes: curl, python3, node and git, each run with the
//! agent environment against `https://keygate.test`, so a failure shows which runtime
//! does not honour the proxy or trust the CA.

use std::process::Stdio;
use std::time::Duration;

use keygate::agent::AgentEnv;

use super::Report;

/// How long one runtime probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(15);

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

/// Runs every probe in [`RUNTIMES`] and reports each (a missing program is skipped).
pub(super) async fn probe_runtimes(env: &AgentEnv, report: &mut Report) {
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
