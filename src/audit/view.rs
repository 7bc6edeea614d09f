//! Reading the audit log for a human (`keygate log`): filters and one aligned line per
//! event. Times are shown in UTC, as the log writes them, so that lines from different
//! machines and time zones line up.

use serde_json::Value;

use super::chain::MARKER_KIND;
use crate::policy::{Host, HostPattern};

/// Which events `keygate log` shows.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only events whose host matches (a name, or a pattern like `*.example.com`); a
    /// pattern without a port matches every port.
    pub host: Option<HostPattern>,
    /// Only events with this decision (`allow`, `deny`, `intercept`).
    pub decision: Option<String>,
}

impl Filter {
    /// Whether the parsed line `event` passes. Chain markers pass only an empty filter.
    pub fn matches(&self, event: &Value) -> bool {
        if let Some(decision) = &self.decision
            && event["decision"].as_str() != Some(decision.as_str())
        {
            return false;
        }
        if let Some(pattern) = &self.host {
            let Some(host) = event["host"].as_str().and_then(|h| Host::parse(h).ok()) else {
                return false;
            };
            let port = event["port"].as_u64().and_then(|p| u16::try_from(p).ok());
            let port = match pattern.has_port() {
                true => port.unwrap_or(443),
                false => 443,
            };
            return pattern.matches(&host, port);
        }
        true
    }
}

/// Whether `event` is a chain marker (not shown as an event).
pub fn is_marker(event: &Value) -> bool {
    event["kind"] == MARKER_KIND
}

/// The column heads of [`line`].
pub fn header() -> String {
    row([
        "TIME (UTC)",
        "CLIENT",
        "DECISION",
        "METHOD",
        "HOST",
        "PATH",
        "STATUS",
        "SECRET",
        "REASON",
    ])
}

/// Column widths; the last column (reason) is cut at its width too.
const WIDTHS: [usize; 9] = [19, 22, 9, 7, 30, 32, 6, 14, 40];

fn row(cells: [&str; 9]) -> String {
    let mut out = String::new();
    for (i, (cell, width)) in cells.iter().zip(WIDTHS).enumerate() {
        let cell = shorten(cell, width);
        if i + 1 == cells.len() {
            out.push_str(&cell);
        } else {
            out.push_str(&format!("{cell:<width$} "));
        }
    }
    out.trim_end().to_string()
}

/// `text` cut to `width` characters, with `…` when cut.
pub fn shorten(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// One aligned line for a parsed event: time, client (a session's command when there
/// is one), decision, method, host[:port unless 443/80], path, status, secret, reason.
pub fn line(event: &Value) -> String {
    let text = |key: &str| event[key].as_str().unwrap_or("-").to_string();
    let ts = event["ts"]
        .as_str()
        .map(|t| t.replace('T', " ").chars().take(19).collect::<String>())
        .unwrap_or_else(|| "-".into());
    let client = match event["command"].as_str() {
        Some(command) => format!("{} ({command})", text("client")),
        None => text("client"),
    };
    let host = match (event["host"].as_str(), event["port"].as_u64()) {
        (Some(h), Some(443 | 80) | None) => h.to_string(),
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (None, _) => "-".into(),
    };
    let status = event["status"]
        .as_u64()
        .map_or_else(|| "-".into(), |s| s.to_string());
    row([
        &ts,
        &client,
        &text("decision"),
        &text("method"),
        &host,
        &text("path"),
        &status,
        &text("secret"),
        &text("reason"),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> Value {
        serde_json::json!({
            "ts": "2026-12-05T23:52:05.123Z", "client": "127.0.0.1:5000", "kind": "request",
            "host": "api.example.com", "port": 443, "method": "POST", "path": "/v1/messages",
            "decision": "intercept", "reason": "secret host", "secret": "anthropic",
            "status": 200, "bytes_up": 1, "bytes_down": 2, "ms": 3, "seq": 4, "prev": null
        })
    }

    #[test]
    fn a_line_is_aligned_and_shows_the_fields_a_human_reads() {
        let text = line(&event());
        assert!(
            text.starts_with("2026-12-05 23:52:05 127.0.0.1:5000"),
            "{text}"
        );
        for part in [
            "intercept",
            "POST",
            "api.example.com ",
            "/v1/messages",
            "200",
            "anthropic",
            "secret host",
        ] {
            assert!(text.contains(part), "{part} in {text}");
        }
        assert_eq!(text.find("intercept"), header().find("DECISION"));
        assert_eq!(text.find("anthropic"), header().find("SECRET"));
    }

    #[test]
    fn long_cells_are_shortened() {
        let mut e = event();
        e["reason"] = Value::from("r".repeat(100));
        e["path"] = Value::from(format!("/{}", "p".repeat(100)));
        let text = line(&e);
        assert!(text.ends_with('…'));
        let column = |t: &str, part: &str| t.find(part).map(|i| t[..i].chars().count());
        assert_eq!(
            column(&text, " 200 "),
            column(&header(), "STATUS").map(|c| c - 1)
        );
    }

    #[test]
    fn filters_match_host_patterns_and_decisions() {
        let e = event();
        let by_host = |h: &str| Filter {
            host: Some(h.parse().unwrap()),
            decision: None,
        };
        assert!(by_host("api.example.com").matches(&e));
        assert!(by_host("*.example.com").matches(&e));
        assert!(!by_host("other.example.com").matches(&e));
        let mut on_8443 = e.clone();
        on_8443["port"] = Value::from(8443);
        assert!(by_host("api.example.com").matches(&on_8443), "any port");
        assert!(by_host("api.example.com:8443").matches(&on_8443));
        assert!(!by_host("api.example.com:9443").matches(&on_8443));
        let deny = Filter {
            host: None,
            decision: Some("deny".into()),
        };
        assert!(!deny.matches(&e));
        assert!(!deny.matches(&serde_json::json!({"kind": "chain"})));
        assert!(Filter::default().matches(&serde_json::json!({"kind": "chain"})));
    }
}
