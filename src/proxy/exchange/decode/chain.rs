//! The decoders of one body, stacked (`gzip, br`: br first, then gzip), run in bounded
//! steps: a step hands out at most [`STEP`] decoded bytes, so one small compressed
//! chunk never becomes one huge allocation, and every decoder's output so far is held
//! to `limits.max_decoded_ratio` times the compressed bytes read plus
//! [`DECODED_FLOOR`] (a decompression bomb is cut off there).

use bytes::{Buf, Bytes, BytesMut};

use super::Coding;

/// Most decoded bytes one step hands out (and one decoder's output waiting for the
/// next decoder of a stack).
pub const STEP: usize = 64 * 1024;

/// Decoded bytes allowed on top of the ratio, so a small body that compresses very
/// well (a short run of zeros, a tiny JSON answer) is never cut off.
pub const DECODED_FLOOR: u64 = 1024 * 1024;

/// One decoder: compressed bytes in, decoded bytes out, as much as each call can.
pub trait Stage: Send + Sync {
    /// Decodes from `input` into `output`: `(input bytes consumed, output bytes
    /// written)`. Given room in `output`, a stage takes all of `input` or writes
    /// something (it keeps what it cannot use yet); called with no input, it hands out
    /// what it still holds. `Err` says why the data is corrupt (no data in the text).
    fn decode(&mut self, input: &[u8], output: &mut [u8]) -> Result<(usize, usize), String>;

    /// True once the compressed stream has ended and everything was handed out.
    fn done(&self) -> bool;
}

/// Why a body's decoding stopped: the client's body ends with this error.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The compressed data is not valid.
    #[error("undecodable-response: the {coding} data is corrupt: {detail}")]
    Corrupt {
        /// Which coding.
        coding: Coding,
        /// What the decoder said.
        detail: String,
    },
    /// The body ended inside a compressed stream.
    #[error("undecodable-response: the body ended before its {coding} stream did")]
    Truncated {
        /// Which coding.
        coding: Coding,
    },
    /// A decompression bomb, or a body past the configured ratio.
    #[error(
        "undecodable-response: the {coding} body decodes to more than {ratio} times the {read} compressed bytes read plus {floor} bytes (limits.max_decoded_ratio); cut off"
    )]
    TooLarge {
        /// Which coding.
        coding: Coding,
        /// Compressed bytes read so far.
        read: u64,
        /// The ratio in force.
        ratio: u64,
        /// [`DECODED_FLOOR`].
        floor: u64,
    },
}

/// The stacked decoders of one body.
pub struct Chain {
    stages: Vec<(Coding, Box<dyn Stage>)>,
    /// `outputs[i]`: what stage `i` decoded that the next stage (or the client, for the
    /// last) has not taken yet.
    outputs: Vec<BytesMut>,
    /// Bytes each stage has written so far.
    produced: Vec<u64>,
    /// Compressed bytes read from the upstream so far.
    read: u64,
    ratio: u64,
    /// True when the last step stopped because its output was full.
    full: bool,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let codings: Vec<Coding> = self.stages.iter().map(|(c, _)| *c).collect();
        f.debug_struct("Chain")
            .field("codings", &codings)
            .field("read", &self.read)
            .finish_non_exhaustive()
    }
}

impl Chain {
    /// Decoders for `codings` (in decoding order, at least one), bounded by `ratio`.
    pub fn new(codings: &[Coding], ratio: u64) -> Chain {
        assert!(!codings.is_empty(), "a chain decodes at least one coding");
        let stages = codings.iter().map(|&c| (c, super::stage_for(c))).collect();
        Chain {
            stages,
            outputs: codings.iter().map(|_| BytesMut::new()).collect(),
            produced: vec![0; codings.len()],
            read: 0,
            ratio,
            full: false,
        }
    }

    /// Counts `n` compressed bytes read from the upstream.
    pub fn read(&mut self, n: usize) {
        self.read += n as u64;
    }

    /// Decodes from `input` (advancing it past what was used) until [`STEP`] bytes are
    /// out or nothing moves; returns the decoded bytes.
    pub fn step(&mut self, input: &mut Bytes) -> Result<Bytes, DecodeError> {
        let last = self.stages.len() - 1;
        loop {
            let mut moved = false;
            for i in 0..self.stages.len() {
                moved |= self.run(i, input)?;
            }
            self.full = self.outputs[last].len() >= STEP;
            if !moved || self.full {
                break;
            }
        }
        let out = self.outputs[last].split().freeze();
        if out.is_empty() && !input.is_empty() {
            return Err(DecodeError::Corrupt {
                coding: self.stages[0].0,
                detail: "the decoder stopped taking data".into(),
            });
        }
        Ok(out)
    }

    /// Runs stage `i` once on what waits for it; true when it used or wrote anything.
    fn run(&mut self, i: usize, input: &mut Bytes) -> Result<bool, DecodeError> {
        let allowed = self.allowed();
        let (before, after) = self.outputs.split_at_mut(i);
        let out = &mut after[0];
        let room = STEP.saturating_sub(out.len());
        if room == 0 {
            return Ok(false);
        }
        let source: &[u8] = match before.last() {
            Some(previous) => previous,
            None => input,
        };
        let (coding, stage) = &mut self.stages[i];
        let start = out.len();
        out.resize(start + room, 0);
        let decoded = stage.decode(source, &mut out[start..]);
        let (used, wrote) = match decoded {
            Ok(counts) => counts,
            Err(detail) => {
                return Err(DecodeError::Corrupt {
                    coding: *coding,
                    detail,
                });
            }
        };
        out.truncate(start + wrote);
        match before.last_mut() {
            Some(previous) => previous.advance(used),
            None => input.advance(used),
        }
        self.produced[i] += wrote as u64;
        if self.produced[i] > allowed {
            return Err(DecodeError::TooLarge {
                coding: *coding,
                read: self.read,
                ratio: self.ratio,
                floor: DECODED_FLOOR,
            });
        }
        Ok(used > 0 || wrote > 0)
    }

    /// Decoded bytes each stage may have written by now.
    fn allowed(&self) -> u64 {
        self.read
            .saturating_mul(self.ratio)
            .saturating_add(DECODED_FLOOR)
    }

    /// True when a step may hand out more without new input (the last one was full).
    pub fn holds_more(&self) -> bool {
        self.full
    }

    /// At the end of the body (after steps until nothing came out): `Err` unless every
    /// stream ended, or nothing was read at all (an empty body).
    pub fn end(&self, input: &Bytes) -> Result<(), DecodeError> {
        if self.read == 0 {
            return Ok(());
        }
        for (i, (coding, stage)) in self.stages.iter().enumerate() {
            let waiting = match i {
                0 => !input.is_empty(),
                _ => !self.outputs[i - 1].is_empty(),
            };
            if waiting {
                return Err(DecodeError::Corrupt {
                    coding: *coding,
                    detail: "the decoder stopped taking data".into(),
                });
            }
            if !stage.done() {
                return Err(DecodeError::Truncated { coding: *coding });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "chain_tests.rs"]
mod tests;
