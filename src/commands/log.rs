//! `keygate log`: the audit log for a human: one aligned line per event (UTC), or the
//! raw JSON lines; filtered by host and decision; the last N; followed through
//! rotations with `-f` (polling).

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::path::Path;
use std::time::Duration;

use anyhow::anyhow;
use keygate::audit::file::{chain_files, identity};
use keygate::audit::view::{self, Filter};
use keygate::home::Home;

use super::Failure;
use crate::cli::{DecisionArg, LogArgs};

/// How often `-f` looks for new lines.
const FOLLOW_POLL: Duration = Duration::from_millis(200);
/// Events shown before following when `-n` is not given (as `tail -f`).
const FOLLOW_BACKLOG: usize = 10;

pub fn run(home: &Home, args: LogArgs) -> Result<(), Failure> {
    let path = args.file.clone().unwrap_or_else(|| home.audit_log());
    let printer = Printer {
        json: args.json,
        filter: Filter {
            host: args.host,
            decision: args.decision.map(|d| {
                match d {
                    DecisionArg::Allow => "allow",
                    DecisionArg::Deny => "deny",
                    DecisionArg::Intercept => "intercept",
                }
                .to_string()
            }),
        },
    };
    if !path.is_file() && !args.follow {
        return Err(anyhow!(
            "{}: no audit log there yet (`keygate start` and `keygate run` write it)",
            path.display()
        )
        .into());
    }
    let limit = args.lines.or(args.follow.then_some(FOLLOW_BACKLOG));
    let mut shown = VecDeque::new();
    // The current file stays open: `-f` goes on from where the history ends, even if
    // it is rotated in between.
    let mut current = Tail::open(&path);
    for file in chain_files(&path) {
        if file == path {
            break;
        }
        if let Ok(f) = File::open(&file) {
            let mut tail = Tail::new(f);
            tail.lines(|line| keep(&mut shown, printer.render(line), limit))?;
        }
    }
    if let Some(tail) = current.as_mut() {
        tail.lines(|line| keep(&mut shown, printer.render(line), limit))?;
    }
    let mut out = io::stdout().lock();
    let written: io::Result<()> = (|| {
        if !printer.json {
            writeln!(out, "{}", view::header())?;
        }
        for line in shown {
            writeln!(out, "{line}")?;
        }
        out.flush()?;
        if args.follow {
            follow(&path, current, &printer, &mut out)?;
        }
        Ok(())
    })();
    match written {
        // `keygate log | head` closes the pipe: that is the reader being done.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other.map_err(Failure::from),
    }
}

fn keep(shown: &mut VecDeque<String>, line: Option<String>, limit: Option<usize>) {
    let Some(line) = line else { return };
    shown.push_back(line);
    if let Some(limit) = limit {
        while shown.len() > limit {
            shown.pop_front();
        }
    }
}

/// Polls `path` for new lines until interrupted; reopens it when it is rotated (after
/// reading what was added to the old file) or truncated.
fn follow(
    path: &Path,
    mut current: Option<Tail>,
    printer: &Printer,
    out: &mut impl Write,
) -> io::Result<()> {
    loop {
        // Rotation is looked for before the old file is drained: once it is renamed,
        // nothing more is appended to it, so draining it afterwards misses nothing.
        let now = std::fs::metadata(path).ok();
        let replaced = match (&current, &now) {
            (Some(tail), Some(meta)) => {
                identity(&tail.file.get_ref().metadata()?) != identity(meta)
                    || meta.len() < tail.offset
            }
            (None, Some(_)) => true,
            (_, None) => false,
        };
        let mut batch = Vec::new();
        if let Some(tail) = current.as_mut() {
            tail.lines(|line| batch.extend(printer.render(line)))?;
        }
        if replaced {
            // Files rotated in after the old one (several rotations between two polls)
            // are read whole, oldest first, before the new current file.
            if let Some(tail) = &current {
                let old = identity(&tail.file.get_ref().metadata()?);
                for file in rotated_after(path, old) {
                    if let Ok(f) = File::open(&file) {
                        Tail::new(f).lines(|line| batch.extend(printer.render(line)))?;
                    }
                }
            }
            current = Tail::open(path);
            if let Some(tail) = current.as_mut() {
                tail.lines(|line| batch.extend(printer.render(line)))?;
            }
        }
        for line in batch {
            writeln!(out, "{line}")?;
        }
        out.flush()?;
        std::thread::sleep(FOLLOW_POLL);
    }
}

/// The rotated files newer than the one whose identity is `old`, oldest first (none
/// when `old` is gone: kept files are bounded, and it has been deleted).
fn rotated_after(path: &Path, old: (u64, u64)) -> Vec<std::path::PathBuf> {
    let rotated: Vec<_> = (1..)
        .map(|n| keygate::audit::file::rotated(path, n))
        .take_while(|p| p.is_file())
        .collect();
    let found = rotated
        .iter()
        .position(|p| std::fs::metadata(p).is_ok_and(|m| identity(&m) == old));
    match found {
        Some(n) => rotated[..n].iter().rev().cloned().collect(),
        None => Vec::new(),
    }
}

/// An open log file read line by line as it grows; an unfinished last line waits.
struct Tail {
    file: BufReader<File>,
    pending: Vec<u8>,
    offset: u64,
}

impl Tail {
    fn open(path: &Path) -> Option<Tail> {
        File::open(path).ok().map(Tail::new)
    }

    fn new(file: File) -> Tail {
        Tail {
            file: BufReader::new(file),
            pending: Vec::new(),
            offset: 0,
        }
    }

    /// Calls `each` with every complete line read since the last call.
    fn lines(&mut self, mut each: impl FnMut(&[u8])) -> io::Result<()> {
        loop {
            let n = self.file.read_until(b'\n', &mut self.pending)?;
            if n == 0 || self.pending.last() != Some(&b'\n') {
                return Ok(());
            }
            self.offset += self.pending.len() as u64;
            each(&self.pending[..self.pending.len() - 1]);
            self.pending.clear();
        }
    }
}

struct Printer {
    json: bool,
    filter: Filter,
}

impl Printer {
    /// What to print for one raw line, if anything: the line itself (`--json`) or its
    /// table row; chain markers only as JSON, unreadable lines only unfiltered JSON.
    fn render(&self, raw: &[u8]) -> Option<String> {
        let Ok(event) = serde_json::from_slice::<serde_json::Value>(raw) else {
            let unfiltered = self.filter.host.is_none() && self.filter.decision.is_none();
            return (self.json && unfiltered).then(|| String::from_utf8_lossy(raw).into_owned());
        };
        if !self.filter.matches(&event) || (!self.json && view::is_marker(&event)) {
            return None;
        }
        Some(match self.json {
            true => String::from_utf8_lossy(raw).into_owned(),
            false => view::line(&event),
        })
    }
}
