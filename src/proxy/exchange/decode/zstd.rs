//! `zstd` as a [`Stage`], on ruzstd's frame decoder. ruzstd decodes whole blocks from
//! a reader, so this stage gathers each frame header and block (at most 128 KiB) before
//! handing it over, and skips skippable frames itself.
//!
//! ruzstd keeps a frame's last window of output (the history later blocks refer to)
//! until the frame ends, so output lags the input by up to the window: keygate does not
//! ask for zstd (see [`super::accept`]), and takes windows of at most 8 MiB, the limit
//! RFC 9659 sets for HTTP.

use std::io::Read;

use ruzstd::decoding::{BlockDecodingStrategy, FrameDecoder};

use super::chain::Stage;

/// Largest window accepted (RFC 9659 §3).
pub const MAX_WINDOW: u64 = 8 * 1024 * 1024;
/// Largest block content (RFC 8878 §3.1.1.2.4).
const MAX_BLOCK: usize = 128 * 1024;
/// A zstd frame's magic number.
const MAGIC: u32 = 0xFD2F_B528;
/// Skippable frames' magic numbers.
const SKIPPABLE: std::ops::RangeInclusive<u32> = 0x184D_2A50..=0x184D_2A5F;

/// What the stage is gathering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    /// A frame header (or a skippable frame's).
    Header,
    /// A skippable frame's data: bytes left.
    Skip(u64),
    /// A block; the frame has a content checksum after its last block.
    Block { checksum: bool },
}

/// A zstd stream being decoded: one or more frames.
pub struct Zstd {
    decoder: FrameDecoder,
    part: Part,
    held: Vec<u8>,
    frames: u64,
}

impl Default for Zstd {
    fn default() -> Zstd {
        let mut decoder = FrameDecoder::new();
        decoder.set_max_window_size(MAX_WINDOW);
        Zstd {
            decoder,
            part: Part::Header,
            held: Vec::new(),
            frames: 0,
        }
    }
}

/// The length of the frame header that `held` begins, once it can be told (RFC 8878
/// §3.1.1.1): magic, descriptor, window descriptor, dictionary ID, content size.
fn header_len(held: &[u8]) -> Option<usize> {
    let descriptor = *held.get(4)?;
    let single_segment = descriptor & 0x20 != 0;
    let window = usize::from(!single_segment);
    let dictionary = [0, 1, 2, 4][usize::from(descriptor & 0x03)];
    let content_size = match descriptor >> 6 {
        0 => usize::from(single_segment),
        1 => 2,
        2 => 4,
        _ => 8,
    };
    Some(5 + window + dictionary + content_size)
}

/// The length of the block (header, content, and the checksum after a last block)
/// that `held` begins, once its 3-byte header is in.
fn block_len(held: &[u8], checksum: bool) -> Result<Option<usize>, String> {
    let Some(h) = held.get(..3) else {
        return Ok(None);
    };
    let header = u32::from_le_bytes([h[0], h[1], h[2], 0]);
    let last = header & 1 != 0;
    let size = usize::try_from(header >> 3).unwrap_or(usize::MAX);
    if size > MAX_BLOCK {
        return Err("a zstd block is larger than 128 KiB".into());
    }
    let content = match (header >> 1) & 3 {
        0 | 2 => size,
        1 => 1,
        _ => return Err("a zstd block of the reserved type".into()),
    };
    let trailer = if last && checksum { 4 } else { 0 };
    Ok(Some(3 + content + trailer))
}

impl Zstd {
    /// Moves bytes of `input` into `held` until it is `len` long; true once it is.
    fn gather(&mut self, input: &[u8], used: &mut usize, len: usize) -> bool {
        let take = len.saturating_sub(self.held.len()).min(input.len() - *used);
        self.held.extend_from_slice(&input[*used..*used + take]);
        *used += take;
        self.held.len() >= len
    }

    /// Reads a frame header from `input`; true when one is complete (and started).
    fn header(&mut self, input: &[u8], used: &mut usize) -> Result<bool, String> {
        if !self.gather(input, used, 4) {
            return Ok(false);
        }
        let magic = u32::from_le_bytes([self.held[0], self.held[1], self.held[2], self.held[3]]);
        if SKIPPABLE.contains(&magic) {
            if self.gather(input, used, 8) {
                let h = &self.held;
                self.part = Part::Skip(u64::from(u32::from_le_bytes([h[4], h[5], h[6], h[7]])));
                self.held.clear();
            }
            return Ok(false);
        }
        if magic != MAGIC {
            return Err("not a zstd frame (bad magic number)".into());
        }
        let len = header_len(&self.held).unwrap_or(5);
        if !self.gather(input, used, len) || header_len(&self.held) != Some(len) {
            return Ok(false);
        }
        self.decoder
            .reset(&self.held[..])
            .map_err(|e| e.to_string())?;
        self.part = Part::Block {
            checksum: self.held[4] & 0x04 != 0,
        };
        self.held.clear();
        Ok(true)
    }

    /// Reads a block from `input`; decodes it once complete.
    fn block(&mut self, input: &[u8], used: &mut usize, checksum: bool) -> Result<(), String> {
        self.gather(input, used, 3);
        let Some(len) = block_len(&self.held, checksum)? else {
            return Ok(());
        };
        if !self.gather(input, used, len) {
            return Ok(());
        }
        let ended = self
            .decoder
            .decode_blocks(&self.held[..], BlockDecodingStrategy::UptoBlocks(1))
            .map_err(|e| e.to_string())?;
        self.held.clear();
        if ended {
            self.part = Part::Header;
            self.frames += 1;
        }
        Ok(())
    }
}

impl Stage for Zstd {
    fn decode(&mut self, input: &[u8], output: &mut [u8]) -> Result<(usize, usize), String> {
        // What was decoded goes out first (a finished frame must be empty before the
        // next one resets the decoder).
        let wrote = self.decoder.read(output).map_err(|e| e.to_string())?;
        if wrote > 0 {
            return Ok((0, wrote));
        }
        let mut used = 0;
        // One block at most per call: the decoder's buffer then stays within a window
        // and a block of what has not gone out.
        while used < input.len() {
            match self.part {
                Part::Header => {
                    self.header(input, &mut used)?;
                }
                Part::Skip(left) => {
                    let take = left.min((input.len() - used) as u64);
                    used += take as usize;
                    self.part = match left - take {
                        0 => Part::Header,
                        rest => Part::Skip(rest),
                    };
                }
                Part::Block { checksum } => {
                    self.block(input, &mut used, checksum)?;
                    break;
                }
            }
        }
        Ok((used, 0))
    }

    fn done(&self) -> bool {
        self.frames > 0
            && self.part == Part::Header
            && self.held.is_empty()
            && self.decoder.can_collect() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_header_lengths_follow_the_descriptor() {
        let with = |descriptor: u8| {
            let mut h = MAGIC.to_le_bytes().to_vec();
            h.push(descriptor);
            header_len(&h)
        };
        assert_eq!(header_len(&MAGIC.to_le_bytes()), None);
        assert_eq!(with(0x00), Some(6), "window descriptor only");
        assert_eq!(with(0x20), Some(6), "single segment: a 1-byte content size");
        assert_eq!(
            with(0x63),
            Some(5 + 4 + 2),
            "2-byte size, 4-byte dictionary"
        );
        assert_eq!(with(0xc0), Some(6 + 8));
    }

    #[test]
    fn block_lengths_follow_the_type() {
        // Raw, size 5, not last.
        assert_eq!(block_len(&[5 << 3, 0, 0], true), Ok(Some(8)));
        // RLE, last, with a checksum: one content byte.
        assert_eq!(block_len(&[(100 << 3) | 0b011, 0, 0], true), Ok(Some(8)));
        assert!(block_len(&[0b110, 0, 0], false).is_err(), "reserved type");
        assert_eq!(block_len(&[0, 0], false), Ok(None));
    }
}
