//! Really compressed bodies for the fake API ([`super::api`]): each content coding
//! keygate decodes (with real encoders: flate2, brotli, ruzstd), a stack of two,
//! mislabelled bodies, a gzip event stream flushed event by event, and a gzip bomb.

use std::io::Write;

/// The bytes of `plain` in the coding `mode` names, and the `Content-Encoding` label
/// the upstream sends with them: `gzip`, `deflate` (zlib-wrapped), `rawdeflate` (raw
/// deflate labelled `deflate`), `br`, `zstd`, `gzip-br` (`gzip, br`: gzip, then br),
/// `unknown` (plain bytes labelled `compress`), `emptycoding` (plain bytes labelled
/// with an empty value), `corrupt` (plain bytes labelled `gzip`). `None` for any other
/// mode.
pub fn encode(mode: &str, plain: &[u8]) -> Option<(Vec<u8>, &'static str)> {
    Some(match mode {
        "gzip" => (gzip(plain), "gzip"),
        "deflate" => (zlib(plain), "deflate"),
        "rawdeflate" => (raw_deflate(plain), "deflate"),
        "br" => (br(plain), "br"),
        "zstd" => (zstd(plain), "zstd"),
        "gzip-br" => (br(&gzip(plain)), "gzip, br"),
        "unknown" => (plain.to_vec(), "compress"),
        "emptycoding" => (plain.to_vec(), ""),
        "corrupt" => (plain.to_vec(), "gzip"),
        _ => return None,
    })
}

/// gzip (RFC 1952).
pub fn gzip(plain: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(plain).expect("gzip");
    e.finish().expect("gzip")
}

/// zlib-wrapped deflate (RFC 1950), what `deflate` means in HTTP.
pub fn zlib(plain: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(plain).expect("zlib");
    e.finish().expect("zlib")
}

/// Raw deflate (RFC 1951), as some servers send `deflate`.
pub fn raw_deflate(plain: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(plain).expect("deflate");
    e.finish().expect("deflate")
}

/// Brotli (RFC 7932).
pub fn br(plain: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut w = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
        w.write_all(plain).expect("br");
    }
    out
}

/// zstd (RFC 8878).
pub fn zstd(plain: &[u8]) -> Vec<u8> {
    ruzstd::encoding::compress_to_vec(plain, ruzstd::encoding::CompressionLevel::Fastest)
}

/// Decoded size of [`bomb`].
pub const BOMB_SIZE: usize = 200 * 1024 * 1024;

/// A gzip bomb: [`BOMB_SIZE`] zero bytes in about 200 KB, as gzip members of 1 MiB of
/// zeros each, one after another (one stream, as RFC 1952 allows).
pub fn bomb() -> Vec<u8> {
    let member = gzip(&vec![0u8; 1024 * 1024]);
    member.repeat(BOMB_SIZE / (1024 * 1024))
}

/// A gzip stream written event by event, each flushed so that it can be decoded as
/// soon as it arrives (what a server compressing an event stream does).
pub struct GzipEvents(flate2::write::GzEncoder<Vec<u8>>);

impl Default for GzipEvents {
    fn default() -> GzipEvents {
        GzipEvents(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::default(),
        ))
    }
}

impl GzipEvents {
    /// The compressed bytes of `event`, flushed.
    pub fn event(&mut self, event: &[u8]) -> Vec<u8> {
        self.0.write_all(event).expect("gzip event");
        self.0.flush().expect("gzip flush");
        std::mem::take(self.0.get_mut())
    }

    /// The end of the stream (the gzip trailer).
    pub fn finish(self) -> Vec<u8> {
        self.0.finish().expect("gzip finish")
    }
}
