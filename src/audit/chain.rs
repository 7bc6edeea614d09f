//! The hash chain of the audit log: every line carries `seq` (its number in the chain)
//! and `prev` (the SHA-256, in hex, of the previous line's bytes without its newline),
//! so an edited, deleted, inserted or reordered line breaks a link that
//! `keygate audit verify` ([`super::verify`]) reports.
//!
//! A chain begins with a marker line, `{"ts":…,"kind":"chain","reason":…,"seq":…,
//! "prev":…}`: `prev` is null on the very first line of a log, and the hash of the last
//! line of the file before on the first line of a file started by rotation. The SPEC §8
//! fields of events are unchanged: `seq` and `prev` are added at the end of each line.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::time::SystemTime;

use aws_lc_rs::digest;
use serde::Serialize;

/// A SHA-256 digest of one line.
pub type Hash = [u8; 32];

/// `kind` of a marker line.
pub const MARKER_KIND: &str = "chain";
/// `reason` of the marker that begins a new chain.
pub const REASON_START: &str = "chain start";
/// `reason` of the marker that begins a file after rotation.
pub const REASON_ROTATED: &str = "rotated";
/// `reason` of the marker written after lines that carry no chain fields (a log from
/// before keygate chained it, or a line cut off by a crash).
pub const REASON_UNCHAINED: &str = "chain start after unchained lines";

/// How much of a file's end is read at a time to find its last line.
const TAIL_CHUNK: u64 = 4096;

/// SHA-256 of `line` (without its newline).
pub fn hash_line(line: &[u8]) -> Hash {
    let mut hash = [0; 32];
    hash.copy_from_slice(digest::digest(&digest::SHA256, line).as_ref());
    hash
}

/// Lower-case hex, as written in `prev`.
pub fn hex(hash: &Hash) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(2 * hash.len());
    for b in hash {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// Parses 64 hex digits.
pub fn parse_hex(text: &str) -> Option<Hash> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut hash = [0; 32];
    for (i, byte) in hash.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(hash)
}

/// The end of a chain: the last line's hash and number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    /// SHA-256 of the last line.
    pub hash: Hash,
    /// Its `seq`.
    pub seq: u64,
}

/// What the end of a log holds, which decides how the next line links.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tail {
    /// Nothing: the next line starts a chain.
    Empty,
    /// A chained line.
    Chained(Link),
    /// A line without chain fields; `complete` is false when it has no newline.
    Unchained {
        /// SHA-256 of that line.
        hash: Hash,
        /// Whether the line ends with a newline.
        complete: bool,
    },
}

/// The chain fields of a parsed line: `None` when the line has neither.
pub fn chain_fields(value: &serde_json::Value) -> Result<Option<(u64, Option<Hash>)>, String> {
    let object = value.as_object().ok_or("not a JSON object")?;
    match (object.get("seq"), object.get("prev")) {
        (None, None) => Ok(None),
        (Some(seq), Some(prev)) => {
            let seq = seq.as_u64().ok_or("`seq` is not a whole number")?;
            let prev = match prev {
                serde_json::Value::Null => None,
                serde_json::Value::String(text) => {
                    Some(parse_hex(text).ok_or("`prev` is not a SHA-256 in hex")?)
                }
                _ => return Err("`prev` is not a SHA-256 in hex".into()),
            };
            Ok(Some((seq, prev)))
        }
        _ => Err("it has only one of `seq` and `prev`".into()),
    }
}

/// What `tail` means for a line's bytes.
pub fn tail_of(line: &[u8], complete: bool) -> Tail {
    let hash = hash_line(line);
    let fields = serde_json::from_slice::<serde_json::Value>(line)
        .ok()
        .and_then(|v| chain_fields(&v).ok().flatten());
    match fields {
        Some((seq, _)) if complete => Tail::Chained(Link { hash, seq }),
        _ => Tail::Unchained { hash, complete },
    }
}

/// Reads the last line of `file`, whose length is `len`, from its end backwards.
pub fn read_tail(file: &mut File, len: u64) -> io::Result<Tail> {
    if len == 0 {
        return Ok(Tail::Empty);
    }
    let mut end = len;
    let mut last = [0u8; 1];
    file.seek(SeekFrom::Start(len - 1))?;
    file.read_exact(&mut last)?;
    let complete = last[0] == b'\n';
    if complete {
        end -= 1;
    }
    // Grow the window backwards until it holds the newline before the last line.
    let mut start = end;
    let mut line = Vec::new();
    loop {
        let from = start.saturating_sub(TAIL_CHUNK);
        let mut chunk = vec![0; usize::try_from(start - from).unwrap_or(0)];
        file.seek(SeekFrom::Start(from))?;
        file.read_exact(&mut chunk)?;
        chunk.extend_from_slice(&line);
        line = chunk;
        start = from;
        if let Some(i) = line.iter().rposition(|&b| b == b'\n') {
            line.drain(..=i);
            break;
        }
        if start == 0 {
            break;
        }
    }
    Ok(tail_of(&line, complete))
}

#[derive(Serialize)]
struct Marker<'a> {
    #[serde(serialize_with = "super::rfc3339")]
    ts: SystemTime,
    kind: &'static str,
    reason: &'a str,
}

#[derive(Serialize)]
struct Chained<'a, T> {
    #[serde(flatten)]
    body: &'a T,
    seq: u64,
    prev: Option<String>,
}

/// Appends chained lines to a buffer, advancing the chain's end.
#[derive(Debug, Clone)]
pub struct Chain {
    last: Option<Link>,
    /// Hash of an unchained last line to link the next marker to.
    unchained: Option<Hash>,
}

impl Chain {
    /// A chain that continues after `tail`. Writing to a log whose last line lacks a
    /// newline first needs one: [`Chain::needs_newline`].
    pub fn after(tail: Tail) -> Chain {
        match tail {
            Tail::Empty => Chain {
                last: None,
                unchained: None,
            },
            Tail::Chained(link) => Chain {
                last: Some(link),
                unchained: None,
            },
            Tail::Unchained { hash, .. } => Chain {
                last: None,
                unchained: Some(hash),
            },
        }
    }

    /// The end of the chain so far.
    pub fn last(&self) -> Option<Link> {
        self.last
    }

    /// Appends a marker line with `reason`.
    pub fn marker(&mut self, reason: &str, out: &mut Vec<u8>) -> serde_json::Result<()> {
        let marker = Marker {
            ts: SystemTime::now(),
            kind: MARKER_KIND,
            reason,
        };
        let (seq, prev) = match (self.last, self.unchained.take()) {
            (Some(link), _) => (link.seq + 1, Some(link.hash)),
            (None, prev) => (0, prev),
        };
        self.line(&marker, seq, prev, out)
    }

    /// Appends `body` as a chained line; a chain that has not begun begins with a
    /// marker.
    pub fn push<T: Serialize>(&mut self, body: &T, out: &mut Vec<u8>) -> serde_json::Result<()> {
        let Some(link) = self.last else {
            let reason = match self.unchained {
                Some(_) => REASON_UNCHAINED,
                None => REASON_START,
            };
            self.marker(reason, out)?;
            return self.push(body, out);
        };
        self.line(body, link.seq + 1, Some(link.hash), out)
    }

    fn line<T: Serialize>(
        &mut self,
        body: &T,
        seq: u64,
        prev: Option<Hash>,
        out: &mut Vec<u8>,
    ) -> serde_json::Result<()> {
        let start = out.len();
        serde_json::to_writer(
            &mut *out,
            &Chained {
                body,
                seq,
                prev: prev.as_ref().map(hex),
            },
        )?;
        self.last = Some(Link {
            hash: hash_line(&out[start..]),
            seq,
        });
        out.push(b'\n');
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_chain_starts_with_a_marker_and_links_each_line_to_the_one_before() {
        let mut chain = Chain::after(Tail::Empty);
        let mut out = Vec::new();
        chain.push(&serde_json::json!({"a": 1}), &mut out).unwrap();
        chain.push(&serde_json::json!({"a": 2}), &mut out).unwrap();
        let lines: Vec<&[u8]> = out
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        assert_eq!(lines.len(), 3);
        let values: Vec<serde_json::Value> = lines
            .iter()
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        assert_eq!(values[0]["kind"], "chain");
        assert_eq!(values[0]["reason"], REASON_START);
        assert_eq!(values[0]["prev"], serde_json::Value::Null);
        assert_eq!(values[0]["seq"], 0);
        for i in 1..3 {
            assert_eq!(values[i]["seq"], i as u64);
            assert_eq!(values[i]["prev"], hex(&hash_line(lines[i - 1])));
        }
        assert_eq!(chain.last().unwrap().hash, hash_line(lines[2]));
    }

    #[test]
    fn the_tail_of_a_file_is_its_last_line_however_long() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut chain = Chain::after(Tail::Empty);
        let mut out = Vec::new();
        let long = "x".repeat(10_000);
        chain
            .push(&serde_json::json!({"a": long}), &mut out)
            .unwrap();
        chain
            .push(&serde_json::json!({"b": long}), &mut out)
            .unwrap();
        std::fs::write(&path, &out).unwrap();
        let mut file = File::open(&path).unwrap();
        let tail = read_tail(&mut file, out.len() as u64).unwrap();
        assert_eq!(tail, Tail::Chained(chain.last().unwrap()));

        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        file.write_all(b"{\"cut\":").unwrap();
        let len = file.metadata().unwrap().len();
        let mut file = File::open(&path).unwrap();
        assert_eq!(
            read_tail(&mut file, len).unwrap(),
            Tail::Unchained {
                hash: hash_line(b"{\"cut\":"),
                complete: false
            }
        );
    }

    #[test]
    fn a_chain_after_unchained_lines_links_its_marker_to_the_last_of_them() {
        let legacy = br#"{"ts":"x","kind":"request"}"#;
        let mut chain = Chain::after(tail_of(legacy, true));
        let mut out = Vec::new();
        chain.push(&serde_json::json!({"a": 1}), &mut out).unwrap();
        let first: serde_json::Value =
            serde_json::from_slice(out.split(|&b| b == b'\n').next().unwrap()).unwrap();
        assert_eq!(first["reason"], REASON_UNCHAINED);
        assert_eq!(first["prev"], hex(&hash_line(legacy)));
    }

    #[test]
    fn hex_round_trips_and_rejects_what_is_not_a_digest() {
        let hash = hash_line(b"abc");
        assert_eq!(
            hex(&hash),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(parse_hex(&hex(&hash)), Some(hash));
        assert_eq!(parse_hex("abc"), None);
        assert_eq!(parse_hex(&"zz".repeat(32)), None);
    }
}
