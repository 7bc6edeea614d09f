//! `/metrics`: the Prometheus text exposition format (version 0.0.4).
//!
//! Labels are bounded by construction: kinds, decisions and refusal codes are fixed
//! sets, secret names are the registry's. No label holds a path, a query, a header value
//! or a secret value.

use std::fmt::Write;
use std::time::SystemTime;

use super::observe::Counters;
use crate::proxy::stats::{Counts, HistogramSnapshot};

/// The gauges `/metrics` reads from the running proxy, besides the [`Counters`].
#[derive(Debug, Clone, Default)]
pub struct Gauges {
    /// Registered secrets.
    pub secrets: usize,
    /// Successful reloads since start.
    pub reloads: u64,
    /// Client connections being served.
    pub open_connections: usize,
    /// When keygate started.
    pub started: Option<SystemTime>,
    /// Leaves served from the cache, and minted.
    pub leaf_cache: (u64, u64),
    /// keygate's added time: request head in to out, response head in to out.
    pub added: Option<(HistogramSnapshot, HistogramSnapshot)>,
    /// Connections by kind, TLS handshakes, upstream failures, keyring errors.
    pub counts: Counts,
}

/// A label value escaped for the text format (`\`, `"` and newlines).
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// The exposition text.
pub fn render(counters: &Counters, gauges: &Gauges) -> String {
    let mut out = String::with_capacity(2048);
    family(
        &mut out,
        "keygate_build_info",
        "gauge",
        "keygate's version (always 1).",
    );
    let _ = writeln!(
        out,
        "keygate_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    family(
        &mut out,
        "keygate_events_total",
        "counter",
        "Audit events by kind (connect, request, tunnel), decision (allow, intercept, deny) and refusal code.",
    );
    for ((kind, decision, code), n) in &counters.events {
        let _ = writeln!(
            out,
            "keygate_events_total{{kind=\"{}\",decision=\"{}\",code=\"{}\"}} {n}",
            escape(kind),
            escape(decision),
            escape(code)
        );
    }
    family(
        &mut out,
        "keygate_swaps_total",
        "counter",
        "Requests a secret was swapped, signed or minted into, by secret name.",
    );
    for (secret, n) in &counters.swaps {
        let _ = writeln!(
            out,
            "keygate_swaps_total{{secret=\"{}\"}} {n}",
            escape(secret)
        );
    }
    family(
        &mut out,
        "keygate_tripwires_total",
        "counter",
        "Requests refused because a secret's dummy went to a host it is not bound to, by secret name.",
    );
    for (secret, n) in &counters.tripwires {
        let _ = writeln!(
            out,
            "keygate_tripwires_total{{secret=\"{}\"}} {n}",
            escape(secret)
        );
    }
    family(
        &mut out,
        "keygate_bytes_total",
        "counter",
        "Bytes relayed, by direction (up: client to upstream).",
    );
    let _ = writeln!(
        out,
        "keygate_bytes_total{{direction=\"up\"}} {}",
        counters.bytes_up
    );
    let _ = writeln!(
        out,
        "keygate_bytes_total{{direction=\"down\"}} {}",
        counters.bytes_down
    );
    family(&mut out, "keygate_secrets", "gauge", "Registered secrets.");
    let _ = writeln!(out, "keygate_secrets {}", gauges.secrets);
    family(
        &mut out,
        "keygate_reloads_total",
        "counter",
        "Successful configuration reloads since start.",
    );
    let _ = writeln!(out, "keygate_reloads_total {}", gauges.reloads);
    family(
        &mut out,
        "keygate_open_connections",
        "gauge",
        "Client connections being served (tunnels and intercepted connections included).",
    );
    let _ = writeln!(out, "keygate_open_connections {}", gauges.open_connections);
    render_counts(&mut out, &gauges.counts);
    family(
        &mut out,
        "keygate_leaf_cache_total",
        "counter",
        "Leaf certificates for intercepted hosts, by result (hit: from the cache, miss: minted).",
    );
    let _ = writeln!(
        out,
        "keygate_leaf_cache_total{{result=\"hit\"}} {}",
        gauges.leaf_cache.0
    );
    let _ = writeln!(
        out,
        "keygate_leaf_cache_total{{result=\"miss\"}} {}",
        gauges.leaf_cache.1
    );
    if let Some((request, response)) = &gauges.added {
        family(
            &mut out,
            "keygate_added_seconds",
            "histogram",
            "keygate's added time per intercepted request, by phase (request: head in to head out to the upstream; response: the upstream's head in to the head out to the client).",
        );
        for (phase, h) in [("request", request), ("response", response)] {
            for (le, n) in &h.buckets {
                let le = *le as f64 / 1e6;
                let _ = writeln!(
                    out,
                    "keygate_added_seconds_bucket{{phase=\"{phase}\",le=\"{le}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "keygate_added_seconds_bucket{{phase=\"{phase}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "keygate_added_seconds_sum{{phase=\"{phase}\"}} {}",
                h.sum_us as f64 / 1e6
            );
            let _ = writeln!(
                out,
                "keygate_added_seconds_count{{phase=\"{phase}\"}} {}",
                h.count
            );
        }
    }
    if let Some(started) = gauges.started {
        family(
            &mut out,
            "keygate_start_time_seconds",
            "gauge",
            "When keygate started, in seconds since the Unix epoch.",
        );
        let secs = started
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let _ = writeln!(out, "keygate_start_time_seconds {secs}");
    }
    out
}

fn render_counts(out: &mut String, counts: &Counts) {
    family(
        out,
        "keygate_connections_total",
        "counter",
        "Connections by kind (intercepted: a CONNECT whose TLS keygate terminated; tunnelled: a CONNECT relayed as is; plain: a client connection that carried plain-HTTP requests).",
    );
    for (kind, total, _) in &counts.connections {
        let _ = writeln!(out, "keygate_connections_total{{kind=\"{kind}\"}} {total}");
    }
    family(
        out,
        "keygate_connections_open",
        "gauge",
        "Connections open now, by kind (as keygate_connections_total).",
    );
    for (kind, _, open) in &counts.connections {
        let _ = writeln!(out, "keygate_connections_open{{kind=\"{kind}\"}} {open}");
    }
    family(
        out,
        "keygate_tls_handshakes_total",
        "counter",
        "TLS handshakes by side (client: keygate serving an intercepted client with a leaf it minted; upstream: keygate verifying an upstream) and result.",
    );
    for (side, ok, failed) in &counts.handshakes {
        for (result, n) in [("ok", ok), ("failed", failed)] {
            let _ = writeln!(
                out,
                "keygate_tls_handshakes_total{{side=\"{side}\",result=\"{result}\"}} {n}"
            );
        }
    }
    family(
        out,
        "keygate_upstream_errors_total",
        "counter",
        "Failures to reach or hear from an upstream, by kind (resolve, connect, timeout, tls, proxy: the corporate upstream proxy, protocol: the connection broke or bad HTTP).",
    );
    for (kind, n) in &counts.upstream_failures {
        let _ = writeln!(out, "keygate_upstream_errors_total{{kind=\"{kind}\"}} {n}");
    }
    family(
        out,
        "keygate_keyring_errors_total",
        "counter",
        "Keyring reads (at reload) and writes (a rotated refresh token) that failed.",
    );
    let _ = writeln!(
        out,
        "keygate_keyring_errors_total {}",
        counts.keyring_errors
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_have_help_and_type_and_labels_are_escaped() {
        let mut counters = Counters::default();
        counters
            .events
            .insert(("request", "deny", "tripwire".into()), 3);
        counters.swaps.insert("we\"ird\\name".into(), 2);
        let text = render(&counters, &Gauges::default());
        assert!(text.contains("# TYPE keygate_events_total counter"));
        assert!(text.contains(
            "keygate_events_total{kind=\"request\",decision=\"deny\",code=\"tripwire\"} 3"
        ));
        assert!(text.contains("keygate_swaps_total{secret=\"we\\\"ird\\\\name\"} 2"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }
}
