//! Issue 16: `/metrics` read by a real Prometheus text-format parser (the
//! `prometheus_client` Python package) after a scripted mix of an allowed, a refused, a
//! swapped and a tripped request through `keygate start` (the real binary), with the
//! counts expected.

use std::path::Path;

use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::support::api::{Alpn, ApiUpstream};
use crate::support::bin::{self, KeyutilsEntry, Running};
use crate::support::clients;
use crate::support::pki::TestPki;
use crate::support::secret::unique;
use crate::support::{body, within};

const API: &str = "api.metrics.test";
const OTHER: &str = "other.metrics.test";
/// Allowed, no secret: tunnelled.
const TUNNEL: &str = "tunnel.metrics.test";
/// Bound to secret b, resolved to a closed port: an upstream connect failure.
const CLOSED: &str = "closed.metrics.test";
/// Bound to secret b, resolved to the upstream, whose certificate does not name it: an
/// upstream TLS failure.
const BADTLS: &str = "badtls.metrics.test";

async fn metrics_text(sock: &Path) -> String {
    let stream = tokio::net::UnixStream::connect(sock).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::builder()
        .uri("/metrics")
        .header("host", "keygate-admin")
        .body(body::empty())
        .unwrap();
    let resp = within("/metrics", sender.send_request(req)).await.unwrap();
    assert_eq!(resp.status(), 200);
    let type_ = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(type_.starts_with("text/plain; version=0.0.4"), "{type_}");
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// Every sample, as the parser read it: name, labels, value.
fn parse(python: &Path, text: &str) -> Vec<Value> {
    let script = "import sys, json\nfrom prometheus_client.parser import text_string_to_metric_families\nout = []\nfor family in text_string_to_metric_families(sys.stdin.read()):\n    for s in family.samples:\n        out.append({'family': family.name, 'type': family.type, 'name': s.name, 'labels': s.labels, 'value': s.value})\nprint(json.dumps(out))\n";
    let mut child = std::process::Command::new(python)
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the parser refused /metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn sample(samples: &[Value], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s["name"] == name
                && labels
                    .iter()
                    .all(|(k, v)| s["labels"][*k].as_str() == Some(*v))
        })
        .and_then(|s| s["value"].as_f64())
}

fn curl(args: &[&str]) -> u16 {
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "10",
        ])
        .args(args)
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_with_prometheus_client_and_count_the_scripted_mix() {
    let Some(python) = clients::python() else {
        return;
    };
    if clients::curl().is_none() {
        return;
    }
    let found = std::process::Command::new(&python)
        .args(["-c", "import prometheus_client"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found || !clients::required(),
        "prometheus_client missing from tests/clients/.venv"
    );
    if !found {
        eprintln!("skipping: prometheus_client not installed (scripts/setup-test-clients)");
        return;
    }
    let pki = TestPki::new();
    let upstream = ApiUpstream::start(&pki, &[API, OTHER, TUNNEL], Alpn::H2AndHttp1).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let home = tempfile::tempdir().unwrap();
    let root = pki.write_root(home.path());
    std::fs::write(
        home.path().join("keygate.yaml"),
        format!("listen: 127.0.0.1:0\nnetwork:\n  mode: custom\n  allow: [{TUNNEL}]\n"),
    )
    .unwrap();
    let (a, b) = (format!("kgm-a-{}", unique()), format!("kgm-b-{}", unique()));
    let _entries = (KeyutilsEntry(a.clone()), KeyutilsEntry(b.clone()));
    let real = format!("sk-real-metrics-{}", unique());
    let mut dummies = Vec::new();
    for (name, hosts) in [(&a, vec![API]), (&b, vec![OTHER, CLOSED, BADTLS])] {
        let mut args = vec!["secret", "add", name.as_str()];
        for host in hosts {
            args.extend(["--host", host]);
        }
        args.extend(["--header", "x-api-key", "--from-env", "REAL"]);
        let mut cmd = bin::keygate_keyutils(home.path(), &args);
        cmd.env("REAL", &real);
        let out = bin::run(cmd);
        assert_eq!(out.code, Some(0), "{out:?}");
        dummies.push(out.stdout.lines().last().unwrap().to_string());
    }
    let resolve: Vec<String> = [API, OTHER, TUNNEL, BADTLS]
        .iter()
        .map(|h| format!("{h}:443={}", upstream.addr))
        .chain([format!("{CLOSED}:443=127.0.0.1:{closed_port}")])
        .collect();
    let mut args = vec!["start", "--upstream-ca", root.to_str().unwrap()];
    for r in &resolve {
        args.extend(["--resolve", r.as_str()]);
    }
    let keygate = Running::start(bin::keygate_keyutils(home.path(), &args));
    keygate.wait_for_line("admin API on");
    let proxy = format!("http://{}", keygate.addr);
    let ca = home.path().join("ca").join("keygate-ca.pem");
    let ca = ca.to_str().unwrap().to_string();
    let root = root.to_str().unwrap().to_string();
    let header = format!("x-api-key: {}", dummies[0]);
    let statuses = tokio::task::spawn_blocking(move || {
        [
            // Allowed: the self-test origin.
            curl(&["-x", &proxy, "--cacert", &ca, "https://keygate.test/health"]),
            // Swapped: secret a to its own host.
            curl(&[
                "-x",
                &proxy,
                "--cacert",
                &ca,
                "-H",
                &header,
                &format!("https://{API}/v1/x"),
            ]),
            // Tripped: secret a's dummy to secret b's host.
            curl(&[
                "-x",
                &proxy,
                "--cacert",
                &ca,
                "-H",
                &header,
                &format!("https://{OTHER}/v1/x"),
            ]),
            // Refused: a host not on the list (a plain-HTTP connection).
            curl(&["-x", &proxy, "http://denied.metrics.test/"]),
            // Tunnelled: allowed, no secret; the client verifies the upstream itself.
            curl(&[
                "-x",
                &proxy,
                "--cacert",
                &root,
                &format!("https://{TUNNEL}/"),
            ]),
            // Upstream failures: nothing listens; a certificate for other names.
            curl(&["-x", &proxy, "--cacert", &ca, &format!("https://{CLOSED}/")]),
            curl(&["-x", &proxy, "--cacert", &ca, &format!("https://{BADTLS}/")]),
        ]
    })
    .await
    .unwrap();
    assert_eq!(statuses, [200, 200, 403, 403, 200, 502, 502]);
    let sock = home.path().join("admin.sock");
    // The events are recorded as the flows end; give the last one a moment.
    let mut samples = Vec::new();
    for _ in 0..50 {
        samples = parse(&python, &metrics_text(&sock).await);
        if sample(&samples, "keygate_events_total", &[("code", "not-allowed")]).is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        sample(&samples, "keygate_swaps_total", &[("secret", &a)]),
        Some(1.0)
    );
    assert_eq!(
        sample(&samples, "keygate_tripwires_total", &[("secret", &a)]),
        Some(1.0)
    );
    assert_eq!(
        sample(&samples, "keygate_swaps_total", &[("secret", &b)]),
        None
    );
    let refused = [
        ("kind", "request"),
        ("decision", "deny"),
        ("code", "not-allowed"),
    ];
    assert_eq!(
        sample(&samples, "keygate_events_total", &refused),
        Some(1.0)
    );
    let tripped = [
        ("kind", "request"),
        ("decision", "deny"),
        ("code", "tripwire"),
    ];
    assert_eq!(
        sample(&samples, "keygate_events_total", &tripped),
        Some(1.0)
    );
    assert_eq!(sample(&samples, "keygate_secrets", &[]), Some(2.0));
    assert!(sample(&samples, "keygate_bytes_total", &[("direction", "down")]).unwrap() > 0.0);
    // keygate's added time: the request phase of the requests sent upstream (the
    // swapped one, and CLOSED's and BADTLS's, which failed there; the tripped one was
    // refused before, the self-test origin is answered locally), the response phase
    // of the one answered.
    let added = [("phase", "request"), ("le", "+Inf")];
    assert_eq!(
        sample(&samples, "keygate_added_seconds_bucket", &added),
        Some(3.0)
    );
    assert_eq!(
        sample(
            &samples,
            "keygate_added_seconds_count",
            &[("phase", "response")]
        ),
        Some(1.0)
    );
    assert!(sample(&samples, "keygate_leaf_cache_total", &[("result", "miss")]).unwrap() >= 2.0);
    // Connections by kind: keygate.test, API, OTHER, CLOSED and BADTLS intercepted.
    let connections = |samples: &[Value], kind: &str| {
        sample(samples, "keygate_connections_total", &[("kind", kind)])
    };
    assert_eq!(connections(&samples, "intercepted"), Some(5.0));
    assert_eq!(connections(&samples, "tunnelled"), Some(1.0));
    assert_eq!(connections(&samples, "plain"), Some(1.0));
    let handshakes = |side: &str, result: &str| {
        sample(
            &samples,
            "keygate_tls_handshakes_total",
            &[("side", side), ("result", result)],
        )
    };
    assert_eq!(handshakes("client", "ok"), Some(5.0));
    assert_eq!(handshakes("client", "failed"), Some(0.0));
    // Only API's request and BADTLS's reached for an upstream handshake (OTHER's
    // tripped first, CLOSED's had no TCP connection).
    assert_eq!(handshakes("upstream", "ok"), Some(1.0));
    assert_eq!(handshakes("upstream", "failed"), Some(1.0));
    let upstream_errors =
        |kind: &str| sample(&samples, "keygate_upstream_errors_total", &[("kind", kind)]);
    assert_eq!(upstream_errors("connect"), Some(1.0));
    assert_eq!(upstream_errors("tls"), Some(1.0));
    assert_eq!(upstream_errors("resolve"), Some(0.0));
    assert_eq!(upstream_errors("protocol"), Some(0.0));
    assert_eq!(
        sample(&samples, "keygate_keyring_errors_total", &[]),
        Some(0.0)
    );
    // Every connection closed: none is counted open any more.
    let mut open = f64::NAN;
    for _ in 0..100 {
        let now = parse(&python, &metrics_text(&sock).await);
        open = ["intercepted", "tunnelled", "plain"]
            .iter()
            .map(|k| sample(&now, "keygate_connections_open", &[("kind", k)]).unwrap())
            .sum();
        if open == 0.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        open, 0.0,
        "connections still counted open after every client left"
    );
    let families: Vec<&str> = samples.iter().filter_map(|s| s["type"].as_str()).collect();
    assert!(families.contains(&"histogram"));
    assert!(families.contains(&"counter") && families.contains(&"gauge"));
    // No label holds a path, a dummy or a value.
    let text = metrics_text(&sock).await;
    for needle in [real.as_str(), dummies[0].as_str(), "/v1/x"] {
        assert!(!text.contains(needle), "/metrics holds {needle:?}");
    }
    assert!(keygate.terminate().success());
}
