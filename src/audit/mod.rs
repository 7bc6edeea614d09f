//! The audit log (SPEC §8): one JSON object per line per connection/request decision.
//!
//! Written off the request path: [`AuditLog::record`] only sends the event down a
//! channel (the timestamp is taken there, formatted later); a dedicated thread
//! serialises and appends. The writer drains what is queued, writes it, then pauses
//! [`BATCH_PAUSE`] before it looks again, so under load it wakes a few hundred times a
//! second instead of once per request, and a request never pays for waking it: an
//! event reaches the file at most a few milliseconds after its flow ends. The channel
//! is unbounded on purpose: dropping audit events under load would blind the user
//! exactly when it matters, and an event is a few hundred bytes.
//! Never a header value, never a query string, never a secret: the [`Event`] type has no
//! field that could hold one.
//!
//! Every line is chained to the one before it ([`chain`]); on disk the chain is shared
//! by every process that appends to the file, and the file is rotated by size
//! ([`file`]); [`verify`] walks the chain and [`view`] reads the log for a human.

pub mod chain;
pub mod file;
pub mod verify;
pub mod view;

use std::io::{self, Write};
use std::path::Path;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use serde::{Serialize, Serializer};

use chain::{Chain, Tail};
pub use file::{FileSink, Rotation};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// What an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A CONNECT decision (and, when refused or intercepted, its outcome).
    Connect,
    /// One HTTP request (plain HTTP, or inside an intercepted connection).
    Request,
    /// A finished tunnel, with its byte counts.
    Tunnel,
}

/// The decision recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Allowed and forwarded or tunnelled.
    Allow,
    /// Refused or failed.
    Deny,
    /// Allowed, and TLS terminated by keygate.
    Intercept,
}

impl Verdict {
    /// The name as the log writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
            Verdict::Intercept => "intercept",
        }
    }
}

impl Kind {
    /// The name as the log writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Connect => "connect",
            Kind::Request => "request",
            Kind::Tunnel => "tunnel",
        }
    }
}

/// One audit event. Field names are the contract of SPEC §8.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// When the event began, set by [`Event::new`]; written as an RFC 3339 UTC timestamp.
    #[serde(serialize_with = "rfc3339")]
    pub ts: SystemTime,
    /// Proxy-auth username if given, else the peer address.
    pub client: String,
    /// What the event is about.
    pub kind: Kind,
    /// Upstream host (normalised), when known.
    pub host: Option<String>,
    /// Upstream port, when known.
    pub port: Option<u16>,
    /// HTTP method, for requests and CONNECTs.
    pub method: Option<String>,
    /// Request path with the query removed.
    pub path: Option<String>,
    /// The decision.
    pub decision: Verdict,
    /// Why (a refusal's or failure's one-line reason, or what allowed it).
    pub reason: Option<String>,
    /// The secret swapped in, by name.
    pub secret: Option<String>,
    /// HTTP status returned to the client, when there was one.
    pub status: Option<u16>,
    /// Bytes from client to upstream.
    pub bytes_up: u64,
    /// Bytes from upstream to client.
    pub bytes_down: u64,
    /// Duration in milliseconds.
    pub ms: u64,
    /// The jailed command's name, on a `keygate run` session's events (set by the
    /// session's [`AuditLog::for_command`] handle, never by a client).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// On a policy refusal that an allow rule would lift: the `network.allow` pattern a
    /// human would add (what `keygate run` prints, and what a dashboard offers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow: Option<String>,
}

impl Event {
    /// A new event stamped now; the rest is filled in by the caller.
    pub fn new(client: impl Into<String>, kind: Kind, decision: Verdict) -> Event {
        Event {
            ts: SystemTime::now(),
            client: client.into(),
            kind,
            host: None,
            port: None,
            method: None,
            path: None,
            decision,
            reason: None,
            secret: None,
            status: None,
            bytes_up: 0,
            bytes_down: 0,
            ms: 0,
            command: None,
            allow: None,
        }
    }
}

/// How long the writer waits after a batch before it looks for the next one.
pub const BATCH_PAUSE: Duration = Duration::from_millis(2);

pub(crate) fn rfc3339<S: Serializer>(ts: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    let text = OffsetDateTime::from(*ts)
        .format(&Rfc3339)
        .unwrap_or_else(|_| String::from("1970-01-01T00:00:00Z"));
    s.serialize_str(&text)
}

/// Removes the query (and fragment) from a request target, for the `path` field.
pub fn path_without_query(target: &str) -> String {
    let end = target.find(['?', '#']).unwrap_or(target.len());
    target[..end].to_string()
}

/// Sees every event recorded through a handle, on the recording thread, before it is
/// queued for the file (the admin listener's live flows, counters and metrics). Must
/// not block.
pub trait Observer: Send + Sync {
    /// Called with each event.
    fn observe(&self, event: &std::sync::Arc<Event>);
}

/// Handle to the audit writer; cheap to clone. Dropping every handle stops the writer.
#[derive(Clone)]
pub struct AuditLog {
    tx: Option<mpsc::Sender<Message>>,
    /// Stamped on every event recorded through this handle (a session's command).
    command: Option<std::sync::Arc<str>>,
    /// Also receives a copy of every `deny` event recorded through this handle.
    refusals: Option<mpsc::Sender<Event>>,
    /// Sees every event recorded through this handle.
    observer: Option<std::sync::Arc<dyn Observer>>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("enabled", &self.tx.is_some())
            .field("command", &self.command)
            .field("observed", &self.observer.is_some())
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
enum Message {
    Event(std::sync::Arc<Event>),
    /// Answered once everything queued before it is written and flushed.
    Flush(mpsc::Sender<()>),
}

/// Joins the writer thread once every [`AuditLog`] handle is gone.
#[derive(Debug)]
pub struct AuditWriter(Option<JoinHandle<()>>);

impl AuditWriter {
    /// Waits for every queued event to be written.
    pub fn finish(mut self) {
        if let Some(handle) = self.0.take() {
            let _ = handle.join();
        }
    }
}

impl AuditLog {
    /// Appends to `path` (created 0600 if missing), continuing the chain found at its
    /// end, under a lock shared with every other process appending to it, and rotating
    /// it as `rotation` says.
    pub fn open(path: &Path, rotation: Rotation) -> io::Result<(AuditLog, AuditWriter)> {
        Ok(AuditLog::spawn(FileSink::open(path, rotation)?))
    }

    /// Writes events to any sink (tests use a pipe or a buffer), chained from a marker
    /// line of its own.
    pub fn to_writer(sink: impl Write + Send + 'static) -> (AuditLog, AuditWriter) {
        AuditLog::spawn(StreamSink {
            out: sink,
            chain: Chain::after(Tail::Empty),
        })
    }

    fn spawn(sink: impl Sink + Send + 'static) -> (AuditLog, AuditWriter) {
        let (tx, rx) = mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("keygate-audit".into())
            .spawn(move || write_loop(rx, sink))
            .ok();
        (
            AuditLog {
                tx: Some(tx),
                command: None,
                refusals: None,
                observer: None,
            },
            AuditWriter(handle),
        )
    }

    /// An audit log that records nothing (embedded use without a home).
    pub fn disabled() -> AuditLog {
        AuditLog {
            tx: None,
            command: None,
            refusals: None,
            observer: None,
        }
    }

    /// A handle that stamps `command` on every event it records: a jailed session's
    /// events name the command that made them.
    pub fn for_command(&self, command: &str) -> AuditLog {
        AuditLog {
            command: Some(command.into()),
            ..self.clone()
        }
    }

    /// A handle that also sends a copy of each `deny` event it records to `tap`: how
    /// `keygate run` shows its command's refusals on its own stderr.
    pub fn with_refusal_tap(&self, tap: mpsc::Sender<Event>) -> AuditLog {
        AuditLog {
            refusals: Some(tap),
            ..self.clone()
        }
    }

    /// A handle whose every recorded event is also shown to `observer`.
    pub fn with_observer(&self, observer: std::sync::Arc<dyn Observer>) -> AuditLog {
        AuditLog {
            observer: Some(observer),
            ..self.clone()
        }
    }

    /// Queues an event; never blocks.
    pub fn record(&self, mut event: Event) {
        if let Some(command) = &self.command {
            event.command = Some(command.to_string());
        }
        if let Some(tap) = &self.refusals
            && event.decision == Verdict::Deny
        {
            let _ = tap.send(event.clone());
        }
        // Shared, not copied: the observer keeps the event in its ring of recent flows.
        let event = std::sync::Arc::new(event);
        if let Some(observer) = &self.observer {
            observer.observe(&event);
        }
        if let Some(tx) = &self.tx {
            let _ = tx.send(Message::Event(event));
        }
    }

    /// Waits (at most `timeout`) until every event queued so far is on disk. Returns
    /// false on timeout. For shutdown, when lingering tasks may still hold handles.
    pub fn flush(&self, timeout: std::time::Duration) -> bool {
        let Some(tx) = &self.tx else { return true };
        let (ack_tx, ack_rx) = mpsc::channel();
        if tx.send(Message::Flush(ack_tx)).is_err() {
            return false;
        }
        ack_rx.recv_timeout(timeout).is_ok()
    }
}

/// Where the writer thread puts a batch of events.
trait Sink {
    /// Appends `events`, chained, and flushes.
    fn append(&mut self, events: &[std::sync::Arc<Event>]) -> io::Result<()>;
}

impl Sink for FileSink {
    fn append(&mut self, events: &[std::sync::Arc<Event>]) -> io::Result<()> {
        FileSink::append(self, events)
    }
}

/// Any writer, with a chain of its own.
struct StreamSink<W> {
    out: W,
    chain: Chain,
}

impl<W: Write> Sink for StreamSink<W> {
    fn append(&mut self, events: &[std::sync::Arc<Event>]) -> io::Result<()> {
        let mut buf = Vec::new();
        for event in events {
            self.chain.push(event.as_ref(), &mut buf)?;
        }
        self.out.write_all(&buf)?;
        self.out.flush()
    }
}

fn write_loop(rx: mpsc::Receiver<Message>, mut sink: impl Sink) {
    while let Ok(first) = rx.recv() {
        let mut waiting = Vec::new();
        let mut events = Vec::new();
        let mut next = Some(first);
        while let Some(message) = next {
            match message {
                Message::Event(event) => events.push(event),
                Message::Flush(ack) => waiting.push(ack),
            }
            next = rx.try_recv().ok();
        }
        if !events.is_empty()
            && let Err(e) = sink.append(&events)
        {
            tracing::error!("cannot write the audit log: {e}");
        }
        for ack in waiting {
            let _ = ack.send(());
        }
        // Batch: while the writer sleeps it is not parked on the channel, so senders
        // queue without a wake-up system call.
        std::thread::sleep(BATCH_PAUSE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn writes_one_json_object_per_line_with_the_contract_fields() {
        let sink = Shared::default();
        let (log, writer) = AuditLog::to_writer(sink.clone());
        let mut e = Event::new("127.0.0.1:5000", Kind::Request, Verdict::Deny);
        e.host = Some("evil.example".into());
        e.port = Some(443);
        e.path = Some(path_without_query("/x?token=abc"));
        e.status = Some(403);
        log.record(e.clone());
        log.record(e);
        assert!(log.flush(std::time::Duration::from_secs(5)));
        drop(log);
        writer.finish();
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "a chain marker, then the two events");
        let v: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
        for key in [
            "ts",
            "client",
            "kind",
            "host",
            "port",
            "method",
            "path",
            "decision",
            "reason",
            "secret",
            "status",
            "bytes_up",
            "bytes_down",
            "ms",
        ] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        assert_eq!(v["kind"], "request");
        assert_eq!(v["decision"], "deny");
        assert_eq!(v["path"], "/x");
        assert!(!text.contains("token"));
    }

    #[test]
    fn path_without_query_strips_query_and_fragment() {
        assert_eq!(path_without_query("/a/b?c=d#e"), "/a/b");
        assert_eq!(path_without_query("/a#e"), "/a");
        assert_eq!(path_without_query("/"), "/");
    }
}
