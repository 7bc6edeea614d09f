//! `keygate audit verify`: walks the chain of a log, across its rotated files oldest
//! first, and reports the first broken link with what it most likely is.
//!
//! What a chain cannot show on its own: lines cut off the end of the newest file (no
//! line comes after them to disagree), and a chain rewritten whole from the edit on.
//! [`Report::head`] is the hash of the last line: kept somewhere else, it pins the end.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};

use super::chain::{Hash, MARKER_KIND, chain_fields, hash_line, hex};

/// A chain that holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The files walked, oldest first.
    pub files: Vec<PathBuf>,
    /// Chained lines (markers included).
    pub lines: u64,
    /// Lines before the chain began that carry no chain fields (a log written before
    /// keygate chained it): not covered.
    pub unchained: u64,
    /// Whether the oldest file begins mid-chain (its predecessors rotated away).
    pub starts_mid_chain: bool,
    /// SHA-256 of the last line, in hex.
    pub head: Option<String>,
}

/// The first broken link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Break {
    /// The file holding the line.
    pub file: PathBuf,
    /// 1-based line number in that file.
    pub line: u64,
    /// What is wrong.
    pub what: String,
}

impl fmt::Display for Break {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.what)
    }
}

/// One line as read: where it is, its hash, its chain fields.
struct Line {
    file: usize,
    number: u64,
    hash: Hash,
    /// `Ok(None)`: JSON without chain fields; `Err`: why it is not a chained line.
    fields: Result<Option<Fields>, String>,
}

#[derive(Clone, Copy)]
struct Fields {
    seq: u64,
    prev: Option<Hash>,
    marker: bool,
}

/// Verifies the chain running through `files` (oldest first).
pub fn verify(files: &[PathBuf]) -> io::Result<Result<Report, Break>> {
    let mut lines = Vec::new();
    for (index, path) in files.iter().enumerate() {
        read_lines(path, index, &mut lines)?;
    }
    let mut first = HashMap::new();
    for (i, line) in lines.iter().enumerate() {
        first.entry(line.hash).or_insert(i);
    }
    Ok(Walk {
        files,
        lines: &lines,
        first: &first,
    }
    .run())
}

fn read_lines(path: &Path, file: usize, out: &mut Vec<Line>) -> io::Result<()> {
    let mut reader = BufReader::new(std::fs::File::open(path)?);
    let mut buf = Vec::new();
    let mut number = 0;
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf)? == 0 {
            return Ok(());
        }
        number += 1;
        let complete = buf.last() == Some(&b'\n');
        let bytes = buf.strip_suffix(b"\n").unwrap_or(&buf);
        let fields = match serde_json::from_slice::<serde_json::Value>(bytes) {
            Err(_) if !complete => Err(
                "the last line is cut off (no newline): the file was truncated or a write was interrupted"
                    .to_string(),
            ),
            Err(e) => Err(format!("not JSON ({e}): the line was edited or damaged")),
            Ok(value) => chain_fields(&value)
                .map(|f| {
                    f.map(|(seq, prev)| Fields {
                        seq,
                        prev,
                        marker: value["kind"] == MARKER_KIND,
                    })
                })
                .map_err(|e| format!("bad chain fields: {e}")),
        };
        out.push(Line {
            file,
            number,
            hash: hash_line(bytes),
            fields,
        });
    }
}

struct Walk<'a> {
    files: &'a [PathBuf],
    lines: &'a [Line],
    first: &'a HashMap<Hash, usize>,
}

impl Walk<'_> {
    fn run(&self) -> Result<Report, Break> {
        let mut report = Report {
            files: self.files.to_vec(),
            lines: 0,
            unchained: 0,
            starts_mid_chain: false,
            head: None,
        };
        let mut last_seq: Option<u64> = None;
        for (i, line) in self.lines.iter().enumerate() {
            let fields = line.fields.clone().map_err(|what| self.at(i, what))?;
            let Some(fields) = fields else {
                if last_seq.is_some() {
                    return Err(self.at(
                        i,
                        "no seq/prev inside the chain: a line added by hand".into(),
                    ));
                }
                report.unchained += 1;
                continue;
            };
            match last_seq {
                None => self.begin(i, fields, &mut report)?,
                Some(seq) => self.link(i, fields, seq)?,
            }
            last_seq = Some(fields.seq);
            report.lines += 1;
        }
        report.head = self.lines.last().map(|l| hex(&l.hash));
        Ok(report)
    }

    /// The first chained line: a chain start, the chain's link to the unchained lines
    /// before it, or (the older files rotated away) a line whose predecessor is gone.
    fn begin(&self, i: usize, fields: Fields, report: &mut Report) -> Result<(), Break> {
        match (i, fields.prev) {
            (0, None) if fields.marker => Ok(()),
            (0, None) => Err(self.at(i, "prev is null on a line that starts no chain".into())),
            (0, Some(_)) => {
                report.starts_mid_chain = true;
                Ok(())
            }
            (_, prev) if prev == Some(self.lines[i - 1].hash) => Ok(()),
            _ => Err(self.at(
                i,
                format!(
                    "the chain does not begin from {}, the unchained line before it",
                    self.name(i - 1)
                ),
            )),
        }
    }

    /// Checks line `i` against line `i - 1`, whose `seq` is `last_seq`.
    fn link(&self, i: usize, fields: Fields, last_seq: u64) -> Result<(), Break> {
        let expected = self.lines[i - 1].hash;
        let want_seq = last_seq + 1;
        let Some(prev) = fields.prev else {
            return Err(self.at(
                i,
                format!(
                    "a new chain starts here (prev is null) after {}: the lines before were replaced, or a log was mixed in",
                    self.name(i - 1)
                ),
            ));
        };
        if prev == expected {
            return match fields.seq == want_seq {
                true => Ok(()),
                false => Err(self.at(
                    i,
                    format!(
                        "edited: its seq is {} where {want_seq} follows {}",
                        fields.seq,
                        self.name(i - 1)
                    ),
                )),
            };
        }
        if let Some(&j) = self.first.get(&prev) {
            return Err(self.moved(i, j));
        }
        Err(match fields.seq {
            s if s == want_seq => self.at(
                i - 1,
                format!(
                    "edited: its hash is not the prev of the next line ({})",
                    self.name(i)
                ),
            ),
            s if s > want_seq => {
                let gone = s - want_seq;
                let place = match self.lines[i].number {
                    1 => format!(
                        "at the end of {} (truncated?)",
                        self.file_name(self.lines[i - 1].file)
                    ),
                    _ => format!("before {}", self.name(i)),
                };
                self.at(
                    i,
                    format!(
                        "{gone} line{} deleted {place}: seq jumps from {last_seq} to {s}",
                        if gone == 1 { "" } else { "s" }
                    ),
                )
            }
            s => self.at(
                i,
                format!(
                    "lines reordered or repeated: seq goes back from {last_seq} to {s}, and its prev is the hash of no line"
                ),
            ),
        })
    }

    /// Line `i` links to line `j`, which is not the line before it.
    fn moved(&self, i: usize, j: usize) -> Break {
        match j > i {
            true => self.at(
                i,
                format!(
                    "reordered: this line follows {} in the chain, a line that comes later",
                    self.name(j)
                ),
            ),
            false => self.at(
                i,
                format!(
                    "reordered or inserted: this line follows {} in the chain, not {}",
                    self.name(j),
                    self.name(i - 1)
                ),
            ),
        }
    }

    /// `file:line` of line `i`, the file by its name.
    fn name(&self, i: usize) -> String {
        let line = &self.lines[i];
        format!("{}:{}", self.file_name(line.file), line.number)
    }

    fn file_name(&self, file: usize) -> String {
        let path = &self.files[file];
        path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        )
    }

    fn at(&self, i: usize, what: String) -> Break {
        let line = &self.lines[i];
        Break {
            file: self.files[line.file].clone(),
            line: line.number,
            what,
        }
    }
}

#[cfg(test)]
#[path = "verify_tests.rs"]
mod tests;
