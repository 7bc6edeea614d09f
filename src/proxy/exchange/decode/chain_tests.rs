//! The decoders through [`Chain`], without sockets: each coding against a real encoder,
//! fed in small chunks; flushed streams give out each part as it arrives; stacks;
//! bombs; corrupt and truncated data.

use std::io::Write;

use bytes::Bytes;

use super::*;
use Coding::*;

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn raw_deflate(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn br(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut w = ::brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
        w.write_all(data).unwrap();
    }
    out
}

fn zstd(data: &[u8]) -> Vec<u8> {
    ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
}

/// A body that compresses but is not trivial: JSON-ish lines.
fn sample() -> Vec<u8> {
    (0..4000)
        .map(|i| format!("{{\"n\":{i},\"word\":\"value-{}\"}}\n", i * 7919 % 1000))
        .collect::<String>()
        .into_bytes()
}

/// Feeds `data` to a chain for `codings` in `chunk`-byte pieces; everything decoded.
fn decode(codings: &[Coding], data: &[u8], chunk: usize) -> Result<Vec<u8>, DecodeError> {
    let mut chain = Chain::new(codings, 100);
    let mut out = Vec::new();
    for piece in data.chunks(chunk) {
        chain.read(piece.len());
        let mut input = Bytes::copy_from_slice(piece);
        loop {
            out.extend_from_slice(&chain.step(&mut input)?);
            if input.is_empty() && !chain.holds_more() {
                break;
            }
        }
    }
    let mut none = Bytes::new();
    loop {
        let more = chain.step(&mut none)?;
        if more.is_empty() {
            break;
        }
        out.extend_from_slice(&more);
    }
    chain.end(&none)?;
    Ok(out)
}

#[test]
fn every_coding_decodes_in_any_chunking() {
    let plain = sample();
    let cases: [(Coding, Vec<u8>); 5] = [
        (Gzip, gzip(&plain)),
        (Deflate, zlib(&plain)),
        (Deflate, raw_deflate(&plain)),
        (Brotli, br(&plain)),
        (Zstd, zstd(&plain)),
    ];
    for (coding, packed) in &cases {
        for chunk in [1, 7, 1000, packed.len()] {
            let out = decode(&[*coding], packed, chunk)
                .unwrap_or_else(|e| panic!("{coding} in {chunk}-byte chunks: {e}"));
            assert!(out == plain, "{coding} in {chunk}-byte chunks");
        }
    }
}

#[test]
fn stacked_codings_decode_last_applied_first() {
    let plain = sample();
    // `Content-Encoding: gzip, br`: gzip applied first, then br.
    let packed = br(&gzip(&plain));
    assert_eq!(decode(&[Brotli, Gzip], &packed, 333).unwrap(), plain);
    let packed = gzip(&zstd(&zlib(&plain)));
    assert_eq!(
        decode(&[Gzip, Zstd, Deflate], &packed, 4096).unwrap(),
        plain
    );
}

#[test]
fn several_gzip_members_and_zstd_frames_follow_one_another() {
    let packed = [gzip(b"first "), gzip(b"second")].concat();
    assert_eq!(decode(&[Gzip], &packed, 5).unwrap(), b"first second");
    let skippable = [0x50, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 9, 9, 9];
    let packed = [zstd(b"first "), skippable.to_vec(), zstd(b"second")].concat();
    assert_eq!(decode(&[Zstd], &packed, 5).unwrap(), b"first second");
}

/// Each flushed part of a stream comes out as soon as its bytes are in: an event
/// stream is never held back for the next event.
#[test]
fn flushed_parts_come_out_as_they_arrive() {
    let events = [&b"data: one\n\n"[..], b"data: two\n\n", b"data: three\n\n"];
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut brw = ::brotli::CompressorWriter::new(Vec::new(), 4096, 5, 22);
    let (mut gz_parts, mut br_parts) = (Vec::new(), Vec::new());
    for event in events {
        gz.write_all(event).unwrap();
        gz.flush().unwrap();
        gz_parts.push(std::mem::take(gz.get_mut()));
        brw.write_all(event).unwrap();
        brw.flush().unwrap();
        br_parts.push(std::mem::take(brw.get_mut()));
    }
    for (coding, parts) in [(Gzip, gz_parts), (Brotli, br_parts)] {
        let mut chain = Chain::new(&[coding], 100);
        for (part, event) in parts.iter().zip(events) {
            chain.read(part.len());
            let out = chain.step(&mut Bytes::copy_from_slice(part)).unwrap();
            assert_eq!(&out[..], event, "{coding}: an event as soon as it arrives");
        }
    }
}

#[test]
fn a_bomb_is_cut_off_at_the_ratio() {
    let zeros = vec![0u8; 16 * 1024 * 1024];
    for (coding, packed) in [
        (Gzip, gzip(&zeros)),
        (Brotli, br(&zeros)),
        (Zstd, zstd(&zeros)),
    ] {
        let err = decode(&[coding], &packed, 16 * 1024).unwrap_err();
        assert!(
            matches!(err, DecodeError::TooLarge { .. }),
            "{coding}: {err}"
        );
        assert!(
            err.to_string().contains("limits.max_decoded_ratio"),
            "{err}"
        );
    }
    // Within the floor, a small body that compresses very well is fine.
    let small = vec![0u8; 512 * 1024];
    assert_eq!(
        decode(&[Gzip], &gzip(&small), 100).unwrap().len(),
        small.len()
    );
}

#[test]
fn corrupt_and_truncated_data_end_with_a_reason() {
    let plain = sample();
    let err = decode(&[Gzip], b"this is not gzip at all", 4).unwrap_err();
    assert!(err.to_string().contains("gzip data is corrupt"), "{err}");
    let packed = gzip(&plain);
    let err = decode(&[Gzip], &packed[..packed.len() / 2], 100).unwrap_err();
    assert!(
        matches!(err, DecodeError::Truncated { coding: Gzip }),
        "{err}"
    );
    let mut flipped = gzip(&plain);
    let at = flipped.len() - 6;
    flipped[at] ^= 0xff;
    let err = decode(&[Gzip], &flipped, 100).unwrap_err();
    assert!(err.to_string().contains("CRC32"), "{err}");
    for (coding, packed) in [
        (Brotli, br(&plain)),
        (Zstd, zstd(&plain)),
        (Deflate, zlib(&plain)),
    ] {
        let trailing = [packed.clone(), b"junk".to_vec()].concat();
        let err = decode(&[coding], &trailing, 100).unwrap_err();
        assert!(
            matches!(err, DecodeError::Corrupt { .. }),
            "{coding}: {err}"
        );
        let err = decode(&[coding], &packed[..packed.len() - 2], 100).unwrap_err();
        assert!(
            matches!(err, DecodeError::Truncated { .. }),
            "{coding}: {err}"
        );
    }
}

#[test]
fn a_zstd_window_over_8_mib_is_refused() {
    // Magic, descriptor (no single segment), window descriptor 2^24.
    let header = [0x28, 0xb5, 0x2f, 0xfd, 0x00, (24 - 10) << 3];
    let err = decode(&[Zstd], &header, 100).unwrap_err();
    assert!(
        matches!(err, DecodeError::Corrupt { coding: Zstd, .. }),
        "{err}"
    );
}
