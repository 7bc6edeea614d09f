//! One direction of an inspected WebSocket: frames read from one side, their payloads
//! passed through the direction's [`FrameFilter`], re-emitted to the other side.
//!
//! A data frame is streamed: each chunk the reader hands over (at most
//! [`codec::MAX_CHUNK`] bytes) goes out as soon as the filter releases it, as a frame of
//! its own: the message's first with its opcode, the rest as continuation frames, the
//! last with FIN. So one message may leave in more (or fewer) frames than it came in,
//! which RFC 6455 §5.4 allows an intermediary when no extension is in use (keygate
//! offers none). A small frame that arrives whole leaves as one frame of the same shape.
//! Control frames (at most 125 bytes) are filtered whole and may come between two
//! fragments, as they may arrive.

use std::io;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::oneshot;
use tungstenite::protocol::frame::FrameHeader;
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};

use super::codec::{self, FrameReader, Item, ReadError};
use crate::addon::websocket::{FrameFilter, MAX_CONTROL_PAYLOAD, Tripped, fit_control};

/// Close code: policy violation (RFC 6455 §7.4.1), for a tripped wire.
pub const POLICY_VIOLATION: u16 = 1008;
/// Close code: protocol error, for a frame keygate cannot read.
pub const PROTOCOL_ERROR: u16 = 1002;

/// A close frame one pump asks the other to send before it stops.
#[derive(Debug, Clone)]
pub struct Closing {
    /// The close code.
    pub code: u16,
    /// The reason; sent to the client only (the upstream gets the code alone).
    pub reason: String,
}

/// Why a pump stopped relaying.
#[derive(Debug)]
pub enum Fault {
    /// A payload carried a dummy that does not belong to this host.
    Tripped(Tripped),
    /// A side sent what keygate cannot read or relay; says what.
    Protocol(String),
}

/// How a pump ended.
#[derive(Debug)]
pub enum End {
    /// Its side closed the stream; the other side's write half was shut down.
    Eof,
    /// The other pump stopped it, and it sent the close frame asked for.
    Stopped,
    /// It closed both sides for this reason.
    Fault(Fault),
}

/// A data message on its way through: its opcode and whether a frame of it went out.
#[derive(Debug)]
struct Message {
    opcode: OpCode,
    started: bool,
}

/// One direction of the relay. No `Debug`: its buffers may hold a real value.
pub struct Pump<R, W, F> {
    reader: FrameReader<R>,
    writer: W,
    /// The direction's payload filter.
    pub filter: F,
    /// True when the writer is the client's side (frames go out unmasked, close reasons
    /// are written); false towards the upstream (frames are masked).
    to_client: bool,
    message: Option<Message>,
    /// The data frame being read ends its message.
    frame_final: bool,
    /// The control frame being read, and its payload so far.
    control: Option<(Control, BytesMut)>,
    stop: Option<oneshot::Receiver<Closing>>,
    peer: Option<oneshot::Sender<Closing>>,
}

impl<R, W, F> Pump<R, W, F>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
    F: FrameFilter,
{
    /// A pump from `reader` to `writer`; `stop` is its own stop signal, `peer` the other
    /// pump's.
    pub fn new(
        reader: R,
        writer: W,
        filter: F,
        to_client: bool,
        stop: oneshot::Receiver<Closing>,
        peer: oneshot::Sender<Closing>,
    ) -> Self {
        Pump {
            reader: FrameReader::new(reader),
            writer,
            filter,
            to_client,
            message: None,
            frame_final: false,
            control: None,
            stop: Some(stop),
            peer: Some(peer),
        }
    }

    /// Relays until its side ends, the other pump stops it, or a fault closes both.
    /// `Err` for a broken stream (the caller drops both sides).
    pub async fn run(&mut self) -> io::Result<End> {
        loop {
            let next = tokio::select! {
                biased;
                closing = stopped(&mut self.stop) => Err(closing),
                item = self.reader.next() => Ok(item),
            };
            let step = match next {
                Err(Some(closing)) => {
                    let _ = self.close(&closing).await;
                    return Ok(End::Stopped);
                }
                // The other pump ended without a word: keep going.
                Err(None) => {
                    self.stop = None;
                    continue;
                }
                Ok(Err(ReadError::Io(e))) => return Err(e),
                Ok(Err(ReadError::Protocol(why))) => Err(Fault::Protocol(format!(
                    "{} sent an invalid frame ({why})",
                    self.source()
                ))),
                Ok(Ok(Item::End)) => {
                    let _ = self.writer.shutdown().await;
                    return Ok(End::Eof);
                }
                Ok(Ok(item)) => self.handle(item).await?,
            };
            if let Err(fault) = step {
                return Ok(self.fail(fault).await);
            }
        }
    }

    /// The side this pump reads, for messages.
    fn source(&self) -> &'static str {
        match self.to_client {
            true => "the upstream",
            false => "the client",
        }
    }

    fn protocol(&self, what: &str) -> Fault {
        Fault::Protocol(format!("{} sent {what}", self.source()))
    }

    /// One header or payload chunk. The outer `Err` is a broken stream, the inner one a
    /// fault.
    async fn handle(&mut self, item: Item) -> io::Result<Result<(), Fault>> {
        match item {
            Item::Header(header, len) => self.header(&header, len).await,
            Item::Payload { chunk, last } => self.payload(chunk, last).await,
            Item::End => Ok(Ok(())),
        }
    }

    async fn header(&mut self, header: &FrameHeader, len: u64) -> io::Result<Result<(), Fault>> {
        if header.rsv1 || header.rsv2 || header.rsv3 {
            // Compressed (permessage-deflate sets RSV1) or another extension's frame:
            // keygate offered none, so it cannot read it and will not relay it unread.
            return Ok(Err(
                self.protocol("a frame with a reserved bit set (compressed?)")
            ));
        }
        match header.opcode {
            OpCode::Control(control) => {
                if len > MAX_CONTROL_PAYLOAD as u64 || !header.is_final {
                    return Ok(Err(
                        self.protocol("an oversized or fragmented control frame")
                    ));
                }
                self.control = Some((control, BytesMut::with_capacity(MAX_CONTROL_PAYLOAD)));
                if len == 0 {
                    return self.end_control().await;
                }
            }
            OpCode::Data(data) => {
                match (data, self.message.is_some()) {
                    (Data::Continue, true) => {}
                    (Data::Text | Data::Binary, false) => {
                        self.message = Some(Message {
                            opcode: header.opcode,
                            started: false,
                        });
                    }
                    _ => return Ok(Err(self.protocol("a frame out of its message's order"))),
                }
                self.frame_final = header.is_final;
                if len == 0 && header.is_final {
                    let rest = self.filter.finish();
                    self.emit(&rest, true).await?;
                }
            }
        }
        Ok(Ok(()))
    }

    async fn payload(&mut self, chunk: BytesMut, last: bool) -> io::Result<Result<(), Fault>> {
        if let Some((_, payload)) = self.control.as_mut() {
            payload.extend_from_slice(&chunk);
            return match last {
                true => self.end_control().await,
                false => Ok(Ok(())),
            };
        }
        let out = match self.filter.push(&chunk) {
            Ok(out) => out,
            Err(tripped) => return Ok(Err(Fault::Tripped(tripped))),
        };
        let fin = last && self.frame_final;
        let out = match fin {
            true => [out, self.filter.finish()].concat().into(),
            false => out,
        };
        self.emit(&out, fin).await?;
        Ok(Ok(()))
    }

    /// Filters and sends the control frame just read.
    async fn end_control(&mut self) -> io::Result<Result<(), Fault>> {
        let Some((control, payload)) = self.control.take() else {
            return Ok(Ok(()));
        };
        let out = match self.filter.control(&payload, control == Control::Close) {
            Ok(out) => out,
            Err(tripped) => return Ok(Err(Fault::Tripped(tripped))),
        };
        let masked = !self.to_client;
        codec::write_frame(
            &mut self.writer,
            OpCode::Control(control),
            true,
            &out,
            masked,
        )
        .await?;
        Ok(Ok(()))
    }

    /// Sends `payload` as the message's next frame (nothing when it is empty and does
    /// not end the message).
    async fn emit(&mut self, payload: &Bytes, fin: bool) -> io::Result<()> {
        let Some(message) = self.message.as_mut() else {
            return Ok(());
        };
        if payload.is_empty() && !fin {
            return Ok(());
        }
        let opcode = match message.started {
            true => OpCode::Data(Data::Continue),
            false => message.opcode,
        };
        message.started = true;
        if fin {
            self.message = None;
        }
        codec::write_frame(&mut self.writer, opcode, fin, payload, !self.to_client).await
    }

    /// Closes both sides for `fault`: asks the other pump to send its close, sends this
    /// one's.
    async fn fail(&mut self, fault: Fault) -> End {
        let closing = match &fault {
            Fault::Tripped(tripped) => Closing {
                code: POLICY_VIOLATION,
                reason: match &tripped.secret {
                    Some(name) => format!("keygate: {} (secret `{name}`)", tripped.refuse.code),
                    None => format!("keygate: {}", tripped.refuse.code),
                },
            },
            Fault::Protocol(why) => Closing {
                code: PROTOCOL_ERROR,
                reason: format!("keygate: {why}"),
            },
        };
        if let Some(peer) = self.peer.take() {
            let _ = peer.send(closing.clone());
        }
        let _ = self.close(&closing).await;
        End::Fault(fault)
    }

    /// Sends a close frame and shuts the write side down.
    async fn close(&mut self, closing: &Closing) -> io::Result<()> {
        let mut payload = closing.code.to_be_bytes().to_vec();
        if self.to_client {
            payload.extend_from_slice(closing.reason.as_bytes());
        }
        let payload = fit_control(payload.into(), true);
        let close = OpCode::Control(Control::Close);
        codec::write_frame(&mut self.writer, close, true, &payload, !self.to_client).await?;
        self.writer.shutdown().await
    }
}

/// The close frame the other pump asks for; `None` when it ended without asking.
async fn stopped(stop: &mut Option<oneshot::Receiver<Closing>>) -> Option<Closing> {
    match stop {
        Some(rx) => rx.await.ok(),
        None => std::future::pending().await,
    }
}
