//! A minimal WebSocket (RFC 6455) over any byte stream: the handshake key, one frame
//! written (masked by clients, as the RFC requires, final or a fragment) and one frame
//! read. Enough to check that an upgraded connection carries frames both ways, and what
//! keygate does to them; no extensions.

use std::sync::{Arc, Mutex};

use base64::Engine;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The GUID every `Sec-WebSocket-Accept` is derived with (RFC 6455 §1.3).
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// Largest payload [`read_frame`] accepts.
const MAX_PAYLOAD: u64 = 1 << 20;

/// Opcode of a continuation frame (the second and later fragments of a message).
pub const CONTINUATION: u8 = 0x0;
/// Opcode of a text frame.
pub const TEXT: u8 = 0x1;
/// Opcode of a binary frame.
pub const BINARY: u8 = 0x2;
/// Opcode of a close frame.
pub const CLOSE: u8 = 0x8;
/// Opcode of a ping frame.
pub const PING: u8 = 0x9;
/// Opcode of a pong frame.
pub const PONG: u8 = 0xA;

/// SHA-1 (FIPS 180-4), only for the handshake's accept key.
fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [
        0x6745_2301,
        0xEFCD_AB89,
        0x98BA_DCFE,
        0x1032_5476,
        0xC3D2_E1F0,
    ];
    let mut msg = data.to_vec();
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&((data.len() as u64) * 8).to_be_bytes());
    for block in msg.chunks(64) {
        let mut w = [0u32; 80];
        for (i, word) in block.chunks(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A82_7999),
                20..=39 => (b ^ c ^ d, 0x6ED9_EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
                _ => (b ^ c ^ d, 0xCA62_C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*wi);
            (e, d, c, b, a) = (d, c, b.rotate_left(30), a, t);
        }
        for (slot, v) in h.iter_mut().zip([a, b, c, d, e]) {
            *slot = slot.wrapping_add(v);
        }
    }
    let mut out = [0u8; 20];
    for (chunk, v) in out.chunks_mut(4).zip(h) {
        chunk.copy_from_slice(&v.to_be_bytes());
    }
    out
}

/// The `Sec-WebSocket-Accept` value for a `Sec-WebSocket-Key`.
pub fn accept_key(key: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(sha1(format!("{key}{GUID}").as_bytes()))
}

/// Writes one final frame; `mask` is the client's masking key (servers pass `None`).
pub async fn write_frame(
    io: &mut (impl AsyncWrite + Unpin),
    opcode: u8,
    payload: &[u8],
    mask: Option<[u8; 4]>,
) -> std::io::Result<()> {
    write_fragment(io, opcode, true, payload, mask).await
}

/// Writes one frame, final (`fin`) or not: a message's first fragment has its opcode,
/// the others [`CONTINUATION`].
pub async fn write_fragment(
    io: &mut (impl AsyncWrite + Unpin),
    opcode: u8,
    fin: bool,
    payload: &[u8],
    mask: Option<[u8; 4]>,
) -> std::io::Result<()> {
    let mut frame = vec![if fin { 0x80 } else { 0 } | opcode];
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => frame.push(mask_bit | n as u8),
        n if n <= 0xffff => {
            frame.push(mask_bit | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(mask_bit | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(key) => {
            frame.extend_from_slice(&key);
            frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        None => frame.extend_from_slice(payload),
    }
    io.write_all(&frame).await?;
    io.flush().await
}

/// One frame as read: opcode, FIN, its masking key, and the unmasked payload.
#[derive(Debug, Clone)]
pub struct Frame {
    /// The opcode (1 text, 2 binary, 8 close, ...).
    pub opcode: u8,
    /// Whether it ends its message.
    pub fin: bool,
    /// Whether the sender masked it (clients must, servers must not).
    pub masked: bool,
    /// The masking key, when masked.
    pub key: Option<[u8; 4]>,
    /// The payload, unmasked.
    pub payload: Vec<u8>,
}

/// Reads one frame.
pub async fn read_frame(io: &mut (impl AsyncRead + Unpin)) -> std::io::Result<Frame> {
    let mut head = [0u8; 2];
    io.read_exact(&mut head).await?;
    let masked = head[1] & 0x80 != 0;
    let len = match head[1] & 0x7f {
        126 => u64::from(io.read_u16().await?),
        127 => io.read_u64().await?,
        n => u64::from(n),
    };
    if len > MAX_PAYLOAD {
        return Err(std::io::Error::other(format!("frame of {len} bytes")));
    }
    let mut key = [0u8; 4];
    if masked {
        io.read_exact(&mut key).await?;
    }
    let mut payload = vec![0u8; len as usize];
    io.read_exact(&mut payload).await?;
    if masked {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= key[i % 4];
        }
    }
    Ok(Frame {
        opcode: head[0] & 0x0f,
        fin: head[0] & 0x80 != 0,
        masked,
        key: masked.then_some(key),
        payload,
    })
}

/// Reads frames up to the end of the next data message (or a close frame); returns them
/// all, control frames in between included.
pub async fn read_message(io: &mut (impl AsyncRead + Unpin)) -> std::io::Result<Vec<Frame>> {
    let mut frames = Vec::new();
    loop {
        let frame = read_frame(io).await?;
        let done = frame.opcode == CLOSE || (frame.fin && frame.opcode < CLOSE);
        frames.push(frame);
        if done {
            return Ok(frames);
        }
    }
}

/// The payload of the data message in `frames` (control frames left out).
pub fn payload(frames: &[Frame]) -> Vec<u8> {
    frames
        .iter()
        .filter(|f| f.opcode < CLOSE)
        .flat_map(|f| f.payload.clone())
        .collect()
}

/// Every frame an [`echo_server`] received.
pub type Received = Arc<Mutex<Vec<Frame>>>;

/// Echoes each message back (unmasked, as one frame) until a close frame or the end of
/// the stream, and records every frame in `received`. A close is answered with a close,
/// a ping with a pong. A text message that starts with a command is answered by it:
///
/// * `fragment:…`: the whole message echoed in fragments of [`FRAGMENT`] bytes;
/// * `close:REASON`: a close frame, code 1000 and REASON, and the end;
/// * `ping:PAYLOAD`: a ping frame with PAYLOAD.
pub async fn echo_server(mut io: impl AsyncRead + AsyncWrite + Unpin, received: Received) {
    let mut message: Vec<u8> = Vec::new();
    let mut opcode = TEXT;
    while let Ok(frame) = read_frame(&mut io).await {
        received.lock().expect("frames").push(frame.clone());
        let answered = match frame.opcode {
            CLOSE => {
                let _ = write_frame(&mut io, CLOSE, &frame.payload, None).await;
                break;
            }
            PING => write_frame(&mut io, PONG, &frame.payload, None).await,
            PONG => Ok(()),
            op => {
                if op != CONTINUATION {
                    (opcode, message) = (op, Vec::new());
                }
                message.extend_from_slice(&frame.payload);
                if !frame.fin {
                    continue;
                }
                let whole = std::mem::take(&mut message);
                if let Some(reason) = whole.strip_prefix(b"close:") {
                    let close = [&1000u16.to_be_bytes()[..], reason].concat();
                    let _ = write_frame(&mut io, CLOSE, &close, None).await;
                    break;
                }
                answer(&mut io, opcode, &whole).await
            }
        };
        if answered.is_err() {
            break;
        }
    }
    let _ = io.shutdown().await;
}

/// The size of the fragments a `fragment:` message is echoed in.
pub const FRAGMENT: usize = 4;

/// The echo of one whole data message (see [`echo_server`]).
async fn answer(
    io: &mut (impl AsyncWrite + Unpin),
    opcode: u8,
    whole: &[u8],
) -> std::io::Result<()> {
    if let Some(payload) = whole.strip_prefix(b"ping:") {
        return write_frame(io, PING, payload, None).await;
    }
    if !whole.starts_with(b"fragment:") {
        return write_frame(io, opcode, whole, None).await;
    }
    let pieces: Vec<&[u8]> = whole.chunks(FRAGMENT).collect();
    for (i, piece) in pieces.iter().enumerate() {
        let op = if i == 0 { opcode } else { CONTINUATION };
        write_fragment(io, op, i + 1 == pieces.len(), piece, None).await?;
    }
    Ok(())
}

#[test]
fn the_accept_key_matches_the_rfc_example() {
    // RFC 6455 §1.3.
    assert_eq!(
        accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
}
