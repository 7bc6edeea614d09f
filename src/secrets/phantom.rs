//! Phantom dummies (SPEC §10): the per-session dummies of a jailed `keygate run`.
//!
//! A phantom has its static dummy's format, so client-side format checks pass: the same
//! length, the same literal provider prefix (everything before the marker), punctuation
//! where the dummy has punctuation, and everywhere else a character drawn at random from
//! the same class (uppercase, lowercase, digit; a lowercase or uppercase hex dummy stays
//! hex). The static marker becomes a phantom marker of the same length:
//!
//! | static dummy                        | phantom                             |
//! |-------------------------------------|-------------------------------------|
//! | `sk-ant-api03-keygateDummy…AA`      | `sk-ant-api03-keygatePhntm…AA`      |
//! | `AIzaKeygateDummy…`                 | `AIzaKeygatePhntm…`                 |
//! | `keygate-dummy-NAME-…` (default)    | `keygate-phntm-NAME-…`              |
//!
//! A static marker is `keygate` (any case), an optional `-` or `_`, `dummy` (any case)
//! and an optional `-` or `_`; the phantom keeps all of it but spells `dummy` as `phntm`
//! (`Phntm` when it began with a capital). Every phantom marker holds [`NEEDLE`]: one
//! memmem pass over a header value finds a candidate, [`phantom_marker_around`] confirms
//! it, so any keygate process recognises a phantom it did not make and refuses it (a
//! phantom is valid only on its own session's socket).
//!
//! Also kept literally: the secret's name right after the marker (the default template,
//! so the variable still says which secret it is) and a trailing run of two to four equal
//! characters (Anthropic keys end in `AA`).
//!
//! A dummy without a marker (a user's `--dummy`) keeps its prefix up to the last `-` or
//! `_` among its first 16 characters and is randomised after it. Such a phantom carries no
//! marker: only the session that made it knows it, other keygate processes cannot tell it
//! from any other text and do not refuse it (it is not a dummy of theirs either, so it
//! is never swapped there).
//!
//! A phantom holds at least [`MIN_BITS`] bits of randomness. When drawing by class gives
//! fewer (a short dummy, a name kept), the kept name and suffix go back to random; then
//! every letter and digit is drawn from all 62 (length and punctuation stay, the class
//! pattern does not); when even that is too few, making the phantom fails.

use std::ops::Range;

/// Fewest bits of randomness a phantom may hold.
pub const MIN_BITS: f64 = 64.0;
/// Present in every phantom marker (`keygatePhntm`, `keygate-phntm-`): what a request is
/// searched for.
pub const NEEDLE: &[u8] = b"hntm";
/// Letters and digits a phantom marker must be followed by (in a run of `A-Za-z0-9-_.`)
/// to count as a phantom: a bare marker in prose is not one.
pub const MIN_TAIL: usize = 8;
/// The prefix a dummy without a marker keeps ends within its first this many characters.
const PREFIX_WINDOW: usize = 16;

/// Where a static marker (`keygateDummy`, `keygate-dummy-`, …) is in `dummy`.
pub fn static_marker(dummy: &[u8]) -> Option<Range<usize>> {
    (0..dummy.len()).find_map(|i| marker_at(dummy, i, b"dummy"))
}

/// Where the first phantom marker followed by a phantom's tail is in `text`.
pub fn phantom_marker(text: &[u8]) -> Option<Range<usize>> {
    memchr::memmem::find_iter(text, NEEDLE).find_map(|at| phantom_marker_around(text, at))
}

/// True when `dummy` holds a phantom marker (it is a session's phantom).
pub fn is_phantom(dummy: &str) -> bool {
    phantom_marker(dummy.as_bytes()).is_some()
}

/// The phantom marker that holds the [`NEEDLE`] found at `needle_at`, if it is one and
/// at least [`MIN_TAIL`] letters or digits follow it.
pub fn phantom_marker_around(text: &[u8], needle_at: usize) -> Option<Range<usize>> {
    // `keygate` + `p` before the needle, or `keygate` + separator + `p`.
    let marker = [needle_at.checked_sub(8), needle_at.checked_sub(9)]
        .into_iter()
        .flatten()
        .find_map(|start| marker_at(text, start, b"phntm").filter(|m| m.contains(&needle_at)))?;
    let tail = text[marker.end..]
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        .filter(|b| b.is_ascii_alphanumeric())
        .count();
    (tail >= MIN_TAIL).then_some(marker)
}

/// `keygate` + optional separator + `word` + optional separator at `start`, any case.
fn marker_at(text: &[u8], start: usize, word: &[u8]) -> Option<Range<usize>> {
    let is_separator = |at: usize| matches!(text.get(at), Some(b'-' | b'_'));
    if !text.get(start..start + 7)?.eq_ignore_ascii_case(b"keygate") {
        return None;
    }
    let mut end = start + 7 + usize::from(is_separator(start + 7));
    if !text.get(end..end + word.len())?.eq_ignore_ascii_case(word) {
        return None;
    }
    end += word.len();
    end += usize::from(is_separator(end));
    Some(start..end)
}

/// What one position of a phantom gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Draw {
    /// The dummy's character, as it is.
    Keep,
    /// A random character from this alphabet.
    From(&'static [u8]),
}

const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const LOWER: &[u8] = b"abcdefghijklmnopqrstuvwxyz";
const DIGIT: &[u8] = b"0123456789";
const HEX_LOWER: &[u8] = b"0123456789abcdef";
const HEX_UPPER: &[u8] = b"0123456789ABCDEF";
const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// A fresh phantom of `dummy`, the static dummy of secret `name`. `Err` says why none can
/// be made (too little to randomise, no randomness available); it never holds the dummy.
pub fn phantom(dummy: &str, name: &str) -> Result<String, String> {
    let bytes = dummy.as_bytes();
    let marker = static_marker(bytes);
    let plans = [(true, false), (true, true), (false, false), (false, true)];
    let mut best = 0.0_f64;
    for (extras, widen) in plans {
        let draws = plan(bytes, marker.clone(), name, extras, widen);
        let bits: f64 = draws
            .iter()
            .map(|d| match d {
                Draw::Keep => 0.0,
                Draw::From(alphabet) => (alphabet.len() as f64).log2(),
            })
            .sum();
        if bits >= MIN_BITS {
            return fill(bytes, &draws, marker);
        }
        best = best.max(bits);
    }
    Err(format!(
        "its dummy leaves too little to randomise for a session dummy ({best:.0} bits, {MIN_BITS} needed): give it a longer `dummy` in secrets.yaml, e.g. `keygate-dummy-{name}-` and 32 random letters and digits"
    ))
}

/// What each position of the phantom of `dummy` gets. `extras`: also keep the name after
/// the marker and a short trailing run; `widen`: letters and digits from all 62.
fn plan(
    dummy: &[u8],
    marker: Option<Range<usize>>,
    name: &str,
    extras: bool,
    widen: bool,
) -> Vec<Draw> {
    let literal = match &marker {
        Some(m) => {
            let named = [name.as_bytes(), b"-"].concat();
            let keeps_name = extras && dummy[m.end..].starts_with(&named);
            m.end + if keeps_name { named.len() } else { 0 }
        }
        None if extras => (0..dummy.len().min(PREFIX_WINDOW))
            .rev()
            .find(|i| matches!(dummy[*i], b'-' | b'_'))
            .map_or(0, |i| i + 1),
        None => 0,
    };
    let suffix = if extras {
        let run = trailing_run(&dummy[literal..]);
        // A long key keeps its static dummy's last STABLE_TAIL characters: agents that
        // remember which key the user approved by its tail (Claude Code keeps the last
        // 20 characters) then ask once, not at every session. The rest stays random.
        if dummy.len() - literal >= STABLE_TAIL + STABLE_TAIL_MIN_RANDOM {
            run.max(STABLE_TAIL)
        } else {
            run
        }
    } else {
        0
    };
    let random = &dummy[literal..dummy.len() - suffix];
    let alnum: Vec<u8> = random
        .iter()
        .copied()
        .filter(u8::is_ascii_alphanumeric)
        .collect();
    let hex = |digits: &[u8]| {
        alnum.iter().all(|b| digits.contains(b)) && alnum.iter().any(u8::is_ascii_alphabetic)
    };
    let (hex_lower, hex_upper) = (hex(HEX_LOWER), hex(HEX_UPPER));
    dummy
        .iter()
        .enumerate()
        .map(|(i, b)| match b {
            _ if i < literal || i >= dummy.len() - suffix => Draw::Keep,
            b if !b.is_ascii_alphanumeric() => Draw::Keep,
            _ if widen => Draw::From(ALNUM),
            _ if hex_lower => Draw::From(HEX_LOWER),
            _ if hex_upper => Draw::From(HEX_UPPER),
            b if b.is_ascii_digit() => Draw::From(DIGIT),
            b if b.is_ascii_lowercase() => Draw::From(LOWER),
            _ => Draw::From(UPPER),
        })
        .collect()
}

/// How many trailing characters a long phantom shares with its static dummy.
pub const STABLE_TAIL: usize = 20;
/// The random characters a phantom must still have to keep a stable tail.
const STABLE_TAIL_MIN_RANDOM: usize = 48;

/// Length of a trailing run of 2 to 4 equal letters or digits (`…AA`), else 0.
fn trailing_run(text: &[u8]) -> usize {
    let Some(last) = text.last().filter(|b| b.is_ascii_alphanumeric()) else {
        return 0;
    };
    let run = text.iter().rev().take_while(|b| *b == last).count();
    if (2..=4).contains(&run) && run < text.len() {
        run
    } else {
        0
    }
}

/// The phantom: `draws` applied to `dummy`, the static marker turned into a phantom one.
fn fill(dummy: &[u8], draws: &[Draw], marker: Option<Range<usize>>) -> Result<String, String> {
    let mut random = Random::new();
    let mut out = Vec::with_capacity(dummy.len());
    for (b, draw) in dummy.iter().zip(draws) {
        out.push(match draw {
            Draw::Keep => *b,
            Draw::From(alphabet) => alphabet[random.below(alphabet.len())?],
        });
    }
    if let Some(m) = marker {
        // `dummy` sits after `keygate` and an optional separator.
        let word = m.start + 7 + usize::from(matches!(dummy[m.start + 7], b'-' | b'_'));
        out[word..word + 5].copy_from_slice(b"phntm");
        if dummy[word].is_ascii_uppercase() {
            out[word] = b'P';
        }
    }
    String::from_utf8(out).map_err(|_| "the dummy is not ASCII".to_string())
}

/// Uniform draws from the OS's randomness, a batch at a time (as [`super::dummy`] does).
struct Random {
    batch: [u8; 64],
    /// Bytes of `batch` used; all of them at first.
    used: usize,
}

impl Random {
    fn new() -> Random {
        Random {
            batch: [0; 64],
            used: 64,
        }
    }

    /// A uniform number below `n` (2 to 256).
    fn below(&mut self, n: usize) -> Result<usize, String> {
        // 256 is not a multiple of 62: reject the top values to keep the draw uniform.
        let limit = 256 - 256 % n;
        loop {
            if self.used == self.batch.len() {
                getrandom::fill(&mut self.batch)
                    .map_err(|e| format!("no randomness available: {e}"))?;
                self.used = 0;
            }
            let b = usize::from(self.batch[self.used]);
            self.used += 1;
            if b < limit {
                return Ok(b % n);
            }
        }
    }
}

#[cfg(test)]
mod tests;
