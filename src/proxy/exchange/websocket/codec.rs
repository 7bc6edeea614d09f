//! WebSocket frames (RFC 6455 §5) on a byte stream, for the relay: headers are parsed
//! and formatted by tungstenite's `FrameHeader` (no hand-written wire format), payloads
//! are streamed in chunks of at most [`MAX_CHUNK`] bytes and unmasked on the way in, and
//! frames go out whole, masked with a fresh random key when they go to the upstream.

use std::io::{self, Cursor};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tungstenite::protocol::frame::FrameHeader;
use tungstenite::protocol::frame::coding::OpCode;

/// The most payload bytes read, held and filtered at once per direction: a larger frame
/// is streamed through in chunks of this size (re-emitted as continuation frames).
pub const MAX_CHUNK: usize = 64 * 1024;

/// What a [`FrameReader`] read next. No `Debug`: a payload may hold a real value.
pub enum Item {
    /// A frame header and its payload length; the payload follows as [`Item::Payload`]
    /// chunks (none when it is empty).
    Header(FrameHeader, u64),
    /// The next chunk of the current frame's payload, unmasked; `last` ends the frame.
    Payload {
        /// The bytes.
        chunk: BytesMut,
        /// True for the frame's last chunk.
        last: bool,
    },
    /// The peer closed the stream between two frames.
    End,
}

/// Why reading frames stopped.
#[derive(Debug)]
pub enum ReadError {
    /// The stream failed, or ended inside a frame.
    Io(io::Error),
    /// The bytes are not a WebSocket frame (e.g. a reserved opcode); says what.
    Protocol(String),
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> ReadError {
        ReadError::Io(e)
    }
}

/// Reads frames from a stream, header then payload chunks. No `Debug`: its buffer may
/// hold a real value.
pub struct FrameReader<R> {
    io: R,
    buf: BytesMut,
    /// Payload bytes of the current frame not yet returned.
    remaining: u64,
    mask: Option<[u8; 4]>,
    /// Payload bytes of the current frame returned so far (where the mask continues).
    offset: u64,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// A reader at a frame boundary.
    pub fn new(io: R) -> FrameReader<R> {
        FrameReader {
            io,
            buf: BytesMut::with_capacity(MAX_CHUNK),
            remaining: 0,
            mask: None,
            offset: 0,
        }
    }

    /// The next header or payload chunk. Cancel-safe: the state changes only once bytes
    /// are in, so a `select!` may drop the call and make it again.
    pub async fn next(&mut self) -> Result<Item, ReadError> {
        loop {
            if let Some(item) = self.take()? {
                return Ok(item);
            }
            // Only a partial header (< 14 bytes) or nothing is buffered here.
            self.buf.reserve(MAX_CHUNK);
            if self.io.read_buf(&mut self.buf).await? == 0 {
                if self.buf.is_empty() && self.remaining == 0 {
                    return Ok(Item::End);
                }
                return Err(ReadError::Io(io::ErrorKind::UnexpectedEof.into()));
            }
        }
    }

    /// What the buffer holds whole: a header or a payload chunk.
    fn take(&mut self) -> Result<Option<Item>, ReadError> {
        if self.remaining > 0 {
            if self.buf.is_empty() {
                return Ok(None);
            }
            let n =
                usize::try_from(self.remaining).map_or(self.buf.len(), |r| r.min(self.buf.len()));
            let mut chunk = self.buf.split_to(n);
            if let Some(key) = self.mask {
                apply_mask(&mut chunk, key, self.offset);
            }
            self.offset += n as u64;
            self.remaining -= n as u64;
            return Ok(Some(Item::Payload {
                chunk,
                last: self.remaining == 0,
            }));
        }
        let mut cursor = Cursor::new(&self.buf[..]);
        match FrameHeader::parse(&mut cursor) {
            Ok(Some((header, len))) => {
                let used = usize::try_from(cursor.position()).unwrap_or(self.buf.len());
                self.buf.advance(used);
                (self.remaining, self.mask, self.offset) = (len, header.mask, 0);
                Ok(Some(Item::Header(header, len)))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(ReadError::Protocol(e.to_string())),
        }
    }
}

/// XORs `buf`, the payload bytes from `offset` on, with the masking key (RFC 6455 §5.3).
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: u64) {
    let start = (offset % 4) as usize;
    for (i, byte) in buf.iter_mut().enumerate() {
        *byte ^= key[(start + i) % 4];
    }
}

/// Writes one frame and flushes it: `masked` (towards the upstream, as a client must)
/// with a fresh random key.
pub async fn write_frame<W: AsyncWrite + Unpin>(
    io: &mut W,
    opcode: OpCode,
    is_final: bool,
    payload: &[u8],
    masked: bool,
) -> io::Result<()> {
    let mask = match masked {
        true => {
            let mut key = [0u8; 4];
            getrandom::fill(&mut key)
                .map_err(|e| io::Error::other(format!("no randomness for a mask: {e}")))?;
            Some(key)
        }
        false => None,
    };
    let header = FrameHeader {
        is_final,
        rsv1: false,
        rsv2: false,
        rsv3: false,
        opcode,
        mask,
    };
    let len = payload.len() as u64;
    let mut out = Vec::with_capacity(header.len(len) + payload.len());
    header.format(len, &mut out).map_err(io::Error::other)?;
    let at = out.len();
    out.extend_from_slice(payload);
    if let Some(key) = mask {
        apply_mask(&mut out[at..], key, 0);
    }
    io.write_all(&out).await?;
    io.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tungstenite::protocol::frame::coding::{Control, Data};

    /// Every item `bytes` reads as, fed `step` bytes at a time.
    async fn items(bytes: &[u8], step: usize) -> Vec<String> {
        let (mut w, r) = tokio::io::duplex(step);
        let bytes = bytes.to_vec();
        let writer = tokio::spawn(async move {
            for piece in bytes.chunks(step) {
                w.write_all(piece).await.unwrap();
            }
        });
        let mut reader = FrameReader::new(r);
        let mut out = Vec::new();
        loop {
            match reader.next().await.unwrap() {
                Item::Header(h, len) => {
                    out.push(format!("{:?} fin={} len={len}", h.opcode, h.is_final))
                }
                Item::Payload { chunk, last } => out.push(format!(
                    "{}{}",
                    String::from_utf8_lossy(&chunk),
                    if last { "|" } else { "" }
                )),
                Item::End => break,
            }
        }
        writer.await.unwrap();
        out
    }

    #[tokio::test]
    async fn frames_written_masked_read_back_unmasked_in_any_pieces() {
        let mut wire = Vec::new();
        write_frame(&mut wire, OpCode::Data(Data::Text), false, b"hello ", true)
            .await
            .unwrap();
        write_frame(&mut wire, OpCode::Control(Control::Ping), true, b"", false)
            .await
            .unwrap();
        write_frame(
            &mut wire,
            OpCode::Data(Data::Continue),
            true,
            b"world",
            true,
        )
        .await
        .unwrap();
        assert_ne!(&wire[6..12], b"hello ", "masked on the wire");
        for step in [1, 3, 64] {
            let joined: String = items(&wire, step)
                .await
                .into_iter()
                .filter(|i| !i.contains("len="))
                .collect();
            assert_eq!(joined, "hello |world|", "step {step}");
        }
        let whole = items(&wire, 64).await;
        assert_eq!(whole[0], "Data(Text) fin=false len=6");
        assert_eq!(whole[2], "Control(Ping) fin=true len=0");
    }

    #[tokio::test]
    async fn a_reserved_opcode_or_a_cut_frame_is_an_error() {
        let (mut w, r) = tokio::io::duplex(64);
        w.write_all(&[0x83, 0x00]).await.unwrap();
        let read = FrameReader::new(r).next().await;
        assert!(matches!(read, Err(ReadError::Protocol(_))));
        let (mut w, r) = tokio::io::duplex(64);
        w.write_all(&[0x81, 0x05, b'a']).await.unwrap();
        drop(w);
        let mut reader = FrameReader::new(r);
        assert!(matches!(reader.next().await, Ok(Item::Header(..))));
        assert!(matches!(
            reader.next().await,
            Ok(Item::Payload { last: false, .. })
        ));
        assert!(matches!(reader.next().await, Err(ReadError::Io(_))));
    }
}
