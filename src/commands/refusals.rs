//! What `keygate run` prints about its command's refusals: one short line each on its
//! own stderr (what was refused, why, and the allow line that would lift it), so the
//! human at the terminal sees what the agent was denied without reading the audit log.
//! Failures (an upstream that could not be reached: 5xx) get a line too; at the default
//! verbosity `run` logs neither, so each shows once.
//!
//! A proxy inside this process (a jailed session, or `--no-jail`'s embedded proxy)
//! hands its refusals over through an audit tap ([`Printer::from_tap`]). A running
//! keygate that `--no-jail` reuses is another process: its refusals are read from the
//! audit log it appends to ([`Printer::tail`]). That log also holds other clients'
//! refusals, which cannot be told apart from the command's (they all come from
//! loopback); other sessions' are skipped, the rest printed.

use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

use keygate::audit::{Event, Kind};

/// How often the audit log of a reused keygate is read for new lines.
const TAIL_POLL: Duration = Duration::from_millis(200);
/// How often the tap's thread looks whether it should stop.
const TAP_POLL: Duration = Duration::from_millis(100);
/// The longest reason printed; the audit log has the whole text.
const MAX_REASON_CHARS: usize = 160;

/// The fields of a refusal that the line shows.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Seen {
    /// `connect`, `request` or `tunnel`.
    pub kind: String,
    /// The client as audited.
    pub client: String,
    /// Host and port.
    pub host: String,
    /// The port.
    pub port: Option<u16>,
    /// Request method.
    pub method: Option<String>,
    /// Request path, without query.
    pub path: Option<String>,
    /// `code: why`.
    pub reason: String,
    /// The status the client got.
    pub status: Option<u16>,
    /// The allow pattern that would lift it.
    pub allow: Option<String>,
}

impl Seen {
    fn from_event(event: &Event) -> Seen {
        Seen {
            kind: match event.kind {
                Kind::Connect => "connect",
                Kind::Request => "request",
                Kind::Tunnel => "tunnel",
            }
            .into(),
            client: event.client.clone(),
            host: event.host.clone().unwrap_or_default(),
            port: event.port,
            method: event.method.clone(),
            path: event.path.clone(),
            reason: event.reason.clone().unwrap_or_default(),
            status: event.status,
            allow: event.allow.clone(),
        }
    }

    fn from_json(value: &serde_json::Value) -> Option<Seen> {
        if value.get("decision")?.as_str()? != "deny" {
            return None;
        }
        let text = |key: &str| value.get(key).and_then(|v| v.as_str()).map(str::to_string);
        let number = |key: &str| {
            value
                .get(key)
                .and_then(serde_json::Value::as_u64)
                .and_then(|n| u16::try_from(n).ok())
        };
        Some(Seen {
            kind: text("kind")?,
            client: text("client").unwrap_or_default(),
            host: text("host").unwrap_or_default(),
            port: number("port"),
            method: text("method"),
            path: text("path"),
            reason: text("reason").unwrap_or_default(),
            status: number("status"),
            allow: text("allow"),
        })
    }
}

/// The line for a refusal (or a failure: 5xx), or `None` for a deny that is not worth
/// a line: a client that left on its own.
pub fn line(seen: &Seen) -> Option<String> {
    let code = seen.reason.split(':').next().unwrap_or("").trim();
    let verb = match seen.status {
        Some(status) if (500..600).contains(&status) => "could not complete",
        Some(_) => "refused",
        None if seen.kind == "tunnel" && code != "client-closed" && !code.is_empty() => "closed",
        None => return None,
    };
    let authority = match seen.port {
        Some(port) => format!("{}:{port}", seen.host),
        None => seen.host.clone(),
    };
    let target = match (seen.kind.as_str(), &seen.method, &seen.path) {
        ("request", Some(method), Some(path)) => format!("{method} {authority}{path}"),
        ("connect", _, _) => format!("CONNECT {authority}"),
        _ => authority,
    };
    // The first clause says it; the rest of the reason is in the audit log.
    let mut reason: String = seen.reason.split(';').next().unwrap_or("").to_string();
    if reason.chars().count() > MAX_REASON_CHARS {
        reason = reason.chars().take(MAX_REASON_CHARS).collect::<String>() + "…";
    }
    let mut out = format!("keygate: {verb} {target}: {reason}");
    if let Some(pattern) = &seen.allow {
        out.push_str(&format!(
            "; to allow it, add to keygate.yaml: network: {{ allow: [\"{pattern}\"] }}"
        ));
    }
    Some(out)
}

/// Prints refusals on stderr from a background thread until [`Printer::finish`].
pub struct Printer {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Printer {
    /// Prints the refusals an in-process proxy sends to its audit tap.
    pub fn from_tap(tap: Receiver<Event>) -> Printer {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("keygate-refusals".into())
            .spawn(move || {
                loop {
                    match tap.recv_timeout(TAP_POLL) {
                        Ok(event) => print(&Seen::from_event(&event)),
                        Err(RecvTimeoutError::Disconnected) => return,
                        Err(RecvTimeoutError::Timeout) if flag.load(Ordering::Relaxed) => {
                            return;
                        }
                        Err(RecvTimeoutError::Timeout) => {}
                    }
                }
            })
            .ok();
        Printer { stop, handle }
    }

    /// Prints the refusals appended to `audit_log` from now on, except other sessions'.
    pub fn tail(audit_log: &Path) -> Printer {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let path = audit_log.to_path_buf();
        let start = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let handle = std::thread::Builder::new()
            .name("keygate-refusals".into())
            .spawn(move || tail_loop(&path, start, &flag))
            .ok();
        Printer { stop, handle }
    }

    /// Prints what is still pending and stops.
    pub fn finish(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

fn print(seen: &Seen) {
    if let Some(mut text) = line(seen) {
        // One write, newline included: the command shares this stderr, and a pipe keeps
        // a write of less than PIPE_BUF bytes whole, where eprintln! may write twice.
        text.push('\n');
        let _ = std::io::stderr().write_all(text.as_bytes());
    }
}

fn tail_loop(path: &Path, mut offset: u64, stop: &AtomicBool) {
    loop {
        // Read once more after the stop: the last refusals may have just been written.
        let stopping = stop.load(Ordering::Relaxed);
        offset = read_new(path, offset);
        if stopping {
            return;
        }
        std::thread::sleep(TAIL_POLL);
    }
}

/// Prints the complete lines past `offset`; returns the offset after the last one.
fn read_new(path: &Path, offset: u64) -> u64 {
    let Ok(mut file) = std::fs::File::open(path) else {
        return offset;
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    // The log was rotated or truncated: start again from its beginning.
    let offset = if len < offset { 0 } else { offset };
    if file.seek(SeekFrom::Start(offset)).is_err() {
        return offset;
    }
    let mut reader = BufReader::new(file);
    let mut consumed = offset;
    let mut text = String::new();
    loop {
        text.clear();
        match reader.read_line(&mut text) {
            Ok(0) | Err(_) => return consumed,
            // A line still being written: read it whole next time.
            Ok(_) if !text.ends_with('\n') => return consumed,
            Ok(n) => consumed += n as u64,
        }
        let seen = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .as_ref()
            .and_then(Seen::from_json);
        if let Some(seen) = seen
            && !seen.client.starts_with("session:")
        {
            print(&seen);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect(reason: &str, status: Option<u16>, allow: Option<&str>) -> Seen {
        Seen {
            kind: "connect".into(),
            client: "session:abc".into(),
            host: "evil.example".into(),
            port: Some(443),
            method: Some("CONNECT".into()),
            reason: reason.into(),
            status,
            allow: allow.map(str::to_string),
            ..Seen::default()
        }
    }

    #[test]
    fn a_refusal_is_one_line_with_the_allow_pattern() {
        let seen = connect(
            "not-allowed: evil.example:443 is not on keygate's allowlist (network mode: trusted); unknown hosts are denied by default",
            Some(403),
            Some("evil.example"),
        );
        let text = line(&seen).unwrap();
        assert_eq!(
            text,
            "keygate: refused CONNECT evil.example:443: not-allowed: evil.example:443 is not on keygate's allowlist (network mode: trusted); to allow it, add to keygate.yaml: network: { allow: [\"evil.example\"] }"
        );
        assert!(!text.contains('\n'));
    }

    #[test]
    fn failures_say_so_and_clients_that_left_are_not_shown() {
        let failed = line(&connect("upstream-error: refused", Some(502), None)).unwrap();
        assert!(
            failed.starts_with(
                "keygate: could not complete CONNECT evil.example:443: upstream-error"
            ),
            "{failed}"
        );
        let mut gone = connect("client-closed: the client closed", None, None);
        gone.kind = "tunnel".into();
        assert!(line(&gone).is_none());
        let mut fronting = connect("sni-mismatch: TLS SNI `a` differs", None, None);
        fronting.kind = "tunnel".into();
        assert!(
            line(&fronting)
                .unwrap()
                .starts_with("keygate: closed evil.example:443: sni-mismatch")
        );
    }

    #[test]
    fn a_request_names_its_method_and_path_and_long_reasons_are_cut() {
        let mut seen = connect(&format!("tripwire: {}", "x".repeat(400)), Some(403), None);
        seen.kind = "request".into();
        seen.method = Some("POST".into());
        seen.path = Some("/v1/upload".into());
        let text = line(&seen).unwrap();
        assert!(text.starts_with("keygate: refused POST evil.example:443/v1/upload: tripwire: "));
        assert!(text.ends_with('…'));
        assert!(text.chars().count() < 240);
    }

    #[test]
    fn audit_lines_parse_into_the_same_fields() {
        let json = serde_json::json!({
            "ts": "2026-12-05T12:00:00Z", "client": "127.0.0.1:5000", "kind": "connect",
            "host": "evil.example", "port": 443, "method": "CONNECT", "path": null,
            "decision": "deny", "reason": "denied: evil.example:443 matches the deny rule \"evil.example\"; deny wins over every allow",
            "secret": null, "status": 403, "bytes_up": 0, "bytes_down": 0, "ms": 0
        });
        let seen = Seen::from_json(&json).unwrap();
        assert_eq!(seen.host, "evil.example");
        assert_eq!(seen.status, Some(403));
        let text = line(&seen).unwrap();
        assert!(
            text.ends_with("matches the deny rule \"evil.example\""),
            "{text}"
        );
        let allowed = serde_json::json!({"decision": "allow", "kind": "connect"});
        assert!(Seen::from_json(&allowed).is_none());
    }
}
