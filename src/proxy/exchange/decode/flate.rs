//! `gzip` and `deflate` as [`Stage`]s, on flate2's raw inflater (miniz_oxide). The gzip
//! framing is read here, so that a header's name and comment are skipped rather than
//! kept (they have no length limit) and several members follow one another.

use flate2::{Crc, Decompress, FlushDecompress, Status};

use super::chain::Stage;

/// Inflates from `input` into `output`: `(consumed, written, stream ended)`.
fn inflate(
    d: &mut Decompress,
    input: &[u8],
    output: &mut [u8],
) -> Result<(usize, usize, bool), String> {
    let (in_before, out_before) = (d.total_in(), d.total_out());
    let status = d
        .decompress(input, output, FlushDecompress::None)
        .map_err(|e| e.to_string())?;
    let used = usize::try_from(d.total_in() - in_before).unwrap_or(input.len());
    let wrote = usize::try_from(d.total_out() - out_before).unwrap_or(0);
    Ok((used, wrote, status == Status::StreamEnd))
}

/// `deflate`: zlib-wrapped (RFC 9110), or raw deflate, told apart by the first two
/// bytes as browsers do.
#[derive(Default)]
pub struct Deflate {
    inflater: Option<Decompress>,
    first: Option<u8>,
    ended: bool,
}

/// True when `cmf`, `flg` open a zlib stream (RFC 1950: method 8, window ≤ 32 KiB,
/// header check).
fn is_zlib(cmf: u8, flg: u8) -> bool {
    cmf & 0x0f == 8 && cmf >> 4 <= 7 && (u16::from(cmf) << 8 | u16::from(flg)) % 31 == 0
}

impl Stage for Deflate {
    fn decode(&mut self, input: &[u8], output: &mut [u8]) -> Result<(usize, usize), String> {
        let mut wrote = 0;
        if self.inflater.is_none() {
            let Some(&next) = input.first() else {
                return Ok((0, 0));
            };
            let Some(first) = self.first else {
                self.first = Some(next);
                return Ok((1, 0));
            };
            let mut inflater = Decompress::new(is_zlib(first, next));
            let (used, first_out, ended) = inflate(&mut inflater, &[first], output)?;
            if used != 1 {
                return Err("the decoder did not take the first byte".into());
            }
            (wrote, self.ended) = (first_out, ended);
            self.inflater = Some(inflater);
        }
        match self.inflater.as_mut() {
            Some(_) if self.ended && !input.is_empty() => {
                Err("data after the end of the deflate stream".into())
            }
            Some(inflater) if !self.ended => {
                let (used, more, ended) = inflate(inflater, input, &mut output[wrote..])?;
                self.ended = ended;
                Ok((used, wrote + more))
            }
            _ => Ok((0, wrote)),
        }
    }

    fn done(&self) -> bool {
        self.ended
    }
}

/// Header flags (RFC 1952 §2.3.1).
const FHCRC: u8 = 0x02;
const FEXTRA: u8 = 0x04;
const FNAME: u8 = 0x08;
const FCOMMENT: u8 = 0x10;
const RESERVED: u8 = 0xe0;

/// Where a gzip reader is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    /// The 10 fixed header bytes.
    Fixed,
    /// FEXTRA's two length bytes.
    ExtraLen,
    /// FEXTRA's data.
    Extra,
    /// The zero-terminated file name.
    Name,
    /// The zero-terminated comment.
    Comment,
    /// The header's CRC16.
    HeaderCrc,
    /// The deflate data.
    Body,
    /// CRC32 and ISIZE.
    Trailer,
    /// Between members: the stream may end here, or another member start.
    Between,
}

/// `gzip` (and `x-gzip`): one or more members (RFC 1952), each checked against its
/// CRC32 and length.
pub struct Gzip {
    part: Part,
    /// Bytes of the current fixed-size part read so far, kept in `held`.
    count: usize,
    held: [u8; 10],
    flags: u8,
    /// FEXTRA bytes left to skip.
    skip: usize,
    inflater: Decompress,
    crc: Crc,
}

impl Default for Gzip {
    fn default() -> Gzip {
        Gzip {
            part: Part::Fixed,
            count: 0,
            held: [0; 10],
            flags: 0,
            skip: 0,
            inflater: Decompress::new(false),
            crc: Crc::new(),
        }
    }
}

impl Gzip {
    /// The header part after `after`, by the flags.
    fn after(&self, after: Part) -> Part {
        const ORDER: [(Part, u8); 4] = [
            (Part::ExtraLen, FEXTRA),
            (Part::Name, FNAME),
            (Part::Comment, FCOMMENT),
            (Part::HeaderCrc, FHCRC),
        ];
        let from = match after {
            Part::Fixed => 0,
            Part::Extra => 1,
            Part::Name => 2,
            Part::Comment => 3,
            _ => 4,
        };
        ORDER[from..]
            .iter()
            .find(|(_, flag)| self.flags & flag != 0)
            .map_or(Part::Body, |(part, _)| *part)
    }

    /// Reads one header or trailer byte.
    fn frame_byte(&mut self, b: u8) -> Result<(), String> {
        match self.part {
            Part::Between => {
                *self = Gzip::default();
                self.frame_byte(b)?;
            }
            Part::Fixed => {
                self.held[self.count] = b;
                self.count += 1;
                if self.count == 10 {
                    self.count = 0;
                    let h = self.held;
                    if h[0] != 0x1f || h[1] != 0x8b {
                        return Err("not a gzip member (bad magic bytes)".into());
                    }
                    if h[2] != 8 || h[3] & RESERVED != 0 {
                        return Err("unknown gzip method or flags".into());
                    }
                    self.flags = h[3];
                    self.part = self.after(Part::Fixed);
                }
            }
            Part::ExtraLen => {
                self.held[self.count] = b;
                self.count += 1;
                if self.count == 2 {
                    self.count = 0;
                    self.skip = usize::from(u16::from_le_bytes([self.held[0], self.held[1]]));
                    self.part = match self.skip {
                        0 => self.after(Part::Extra),
                        _ => Part::Extra,
                    };
                }
            }
            Part::Extra => {
                self.skip -= 1;
                if self.skip == 0 {
                    self.part = self.after(Part::Extra);
                }
            }
            Part::Name | Part::Comment if b == 0 => self.part = self.after(self.part),
            Part::Name | Part::Comment => {}
            Part::HeaderCrc => {
                self.count += 1;
                if self.count == 2 {
                    self.count = 0;
                    self.part = Part::Body;
                }
            }
            Part::Trailer => {
                self.held[self.count] = b;
                self.count += 1;
                if self.count == 8 {
                    let h = self.held;
                    let crc = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
                    let size = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
                    if crc != self.crc.sum() || size != self.crc.amount() {
                        return Err("a gzip member's CRC32 or length does not match".into());
                    }
                    self.part = Part::Between;
                }
            }
            Part::Body => unreachable!("body bytes go to the inflater"),
        }
        Ok(())
    }
}

impl Stage for Gzip {
    fn decode(&mut self, input: &[u8], output: &mut [u8]) -> Result<(usize, usize), String> {
        let mut used = 0;
        while used < input.len() && self.part != Part::Body {
            self.frame_byte(input[used])?;
            used += 1;
        }
        if self.part != Part::Body {
            return Ok((used, 0));
        }
        let (took, wrote, ended) = inflate(&mut self.inflater, &input[used..], output)?;
        self.crc.update(&output[..wrote]);
        if ended {
            self.part = Part::Trailer;
        }
        Ok((used + took, wrote))
    }

    fn done(&self) -> bool {
        self.part == Part::Between
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zlib_headers_are_told_from_raw_deflate() {
        assert!(is_zlib(0x78, 0x9c));
        assert!(is_zlib(0x78, 0x01));
        assert!(is_zlib(0x78, 0xda));
        assert!(!is_zlib(0xcb, 0x48), "raw deflate of \"hello\"");
        assert!(!is_zlib(0x78, 0x9d), "bad check bits");
    }

    #[test]
    fn header_parts_follow_the_flags() {
        let mut gz = Gzip {
            flags: FEXTRA | FCOMMENT,
            ..Gzip::default()
        };
        assert_eq!(gz.after(Part::Fixed), Part::ExtraLen);
        assert_eq!(gz.after(Part::Extra), Part::Comment);
        assert_eq!(gz.after(Part::Comment), Part::Body);
        gz.flags = FNAME | FHCRC;
        assert_eq!(gz.after(Part::Fixed), Part::Name);
        assert_eq!(gz.after(Part::Name), Part::HeaderCrc);
        assert_eq!(gz.after(Part::HeaderCrc), Part::Body);
    }
}
