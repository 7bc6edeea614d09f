use std::time::Duration;

use tokio::io::{AsyncWriteExt, DuplexStream, duplex};
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};

use super::codec::{FrameReader, Item, MAX_CHUNK, write_frame};
use super::*;
use crate::addon::testing::{DUMMY, REAL, binding, flow};
use crate::policy::HostPattern;
use crate::secrets::Binding;

const OTHER_DUMMY: &str = "keygate-dummy-other-5555555555";

/// A frame as a peer sees it: opcode, FIN, masked, payload.
type Seen = (OpCode, bool, bool, Vec<u8>);

/// `demo` bound here (`websocket` as given) and `other` bound elsewhere.
fn policy(websocket: bool) -> FramePolicy {
    let demo = Binding {
        websocket,
        ..binding(false)
    };
    let other = Binding {
        name: "other".into(),
        hosts: vec![HostPattern::parse("other.example").unwrap()],
        env: vec![],
        dummy: OTHER_DUMMY.into(),
        ..binding(false)
    };
    FramePolicy::for_flow(&flow(vec![demo, other], true)).unwrap()
}

/// The relay between two in-memory pipes: (client's end, upstream's end, the relay).
fn start(policy: FramePolicy) -> (DuplexStream, DuplexStream, tokio::task::JoinHandle<Relayed>) {
    let (client, client_side) = duplex(4 * MAX_CHUNK);
    let (upstream, upstream_side) = duplex(4 * MAX_CHUNK);
    let task = tokio::spawn(relay(client_side, upstream_side, Some(policy)));
    (client, upstream, task)
}

/// Reads whole frames up to the first that `last` accepts (bounded).
async fn frames_until(io: &mut DuplexStream, last: impl Fn(&Seen) -> bool) -> Vec<Seen> {
    let mut reader = FrameReader::new(io);
    let mut out: Vec<Seen> = Vec::new();
    let read = async {
        loop {
            match reader.next().await.expect("a frame") {
                Item::Header(h, len) => {
                    out.push((h.opcode, h.is_final, h.mask.is_some(), Vec::new()));
                    if len == 0 && last(out.last().unwrap()) {
                        return;
                    }
                }
                Item::Payload { chunk, last: end } => {
                    let frame = out.last_mut().unwrap();
                    frame.3.extend_from_slice(&chunk);
                    if end && last(frame) {
                        return;
                    }
                }
                Item::End => panic!("the stream ended after {out:?}"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("frames in time");
    out
}

/// Frames up to the end of a data message.
async fn message(io: &mut DuplexStream) -> Vec<Seen> {
    frames_until(io, |f| f.1 && matches!(f.0, OpCode::Data(_))).await
}

/// Frames up to a close frame.
async fn closing(io: &mut DuplexStream) -> Vec<Seen> {
    frames_until(io, |f| f.0 == OpCode::Control(Control::Close)).await
}

fn text() -> OpCode {
    OpCode::Data(Data::Text)
}

fn more() -> OpCode {
    OpCode::Data(Data::Continue)
}

#[test]
fn no_extension_is_offered_and_a_101_with_one_is_unreadable() {
    let mut h = HeaderMap::new();
    h.insert(
        "sec-websocket-extensions",
        "permessage-deflate; client_max_window_bits"
            .parse()
            .unwrap(),
    );
    h.insert("sec-websocket-key", "a2V5".parse().unwrap());
    offer_no_extensions(&mut h);
    assert!(h.get("sec-websocket-extensions").is_none());
    assert!(h.get("sec-websocket-key").is_some());

    let mut answer = HeaderMap::new();
    answer.insert(UPGRADE, "WebSocket".parse().unwrap());
    assert!(unreadable(&answer).is_none());
    answer.insert(
        "sec-websocket-extensions",
        "permessage-deflate".parse().unwrap(),
    );
    assert!(
        unreadable(&answer)
            .unwrap()
            .to_string()
            .contains("extension")
    );
    answer.clear();
    answer.insert(UPGRADE, "h2c".parse().unwrap());
    assert!(unreadable(&answer).is_some());
}

#[tokio::test]
async fn a_value_split_across_fragments_is_scrubbed_and_frames_are_remasked() {
    let (mut client, mut upstream, task) = start(policy(true));
    write_frame(
        &mut client,
        text(),
        true,
        format!("up {DUMMY}").as_bytes(),
        true,
    )
    .await
    .unwrap();
    let up = message(&mut upstream).await;
    assert_eq!(
        up,
        [(text(), true, true, format!("up {REAL}").into_bytes())]
    );

    let (a, b) = REAL.split_at(7);
    write_frame(
        &mut upstream,
        text(),
        false,
        format!("echo {a}").as_bytes(),
        false,
    )
    .await
    .unwrap();
    let ping = OpCode::Control(Control::Ping);
    write_frame(&mut upstream, ping, true, REAL.as_bytes(), false)
        .await
        .unwrap();
    write_frame(
        &mut upstream,
        more(),
        true,
        format!("{b}!").as_bytes(),
        false,
    )
    .await
    .unwrap();
    let down = message(&mut client).await;
    let message: Vec<u8> = down
        .iter()
        .filter(|f| f.0 != ping)
        .flat_map(|f| f.3.clone())
        .collect();
    assert_eq!(message, format!("echo {DUMMY}!").as_bytes());
    assert!(
        down.iter().any(|f| f.0 == ping && f.3 == DUMMY.as_bytes()),
        "{down:?}"
    );
    assert!(
        down.iter().all(|f| !f.2),
        "frames to the client are not masked"
    );
    assert!(down.last().unwrap().1, "the message ends with FIN");
    drop((client, upstream));
    let relayed = task.await.unwrap();
    assert!(relayed.fault.is_none(), "{relayed:?}");
    assert_eq!(relayed.swapped, ["demo"]);
}

#[tokio::test]
async fn a_frame_larger_than_the_chunk_is_streamed_as_continuation_frames() {
    let (mut client, mut upstream, task) = start(policy(false));
    let mut big = vec![b'x'; 3 * MAX_CHUNK];
    big.extend_from_slice(REAL.as_bytes());
    let writer = tokio::spawn(async move {
        let bin = OpCode::Data(Data::Binary);
        write_frame(&mut upstream, bin, true, &big, false)
            .await
            .unwrap();
        upstream
    });
    let down = message(&mut client).await;
    assert!(down.len() > 1, "streamed in several frames");
    assert_eq!(down[0].0, OpCode::Data(Data::Binary));
    assert!(down[1..].iter().all(|f| f.0 == more()));
    assert!(down.iter().rev().skip(1).all(|f| !f.1) && down.last().unwrap().1);
    let payload: Vec<u8> = down.iter().flat_map(|f| f.3.clone()).collect();
    assert_eq!(payload.len(), 3 * MAX_CHUNK + DUMMY.len());
    assert!(payload.ends_with(DUMMY.as_bytes()));
    drop((client, writer.await.unwrap()));
    task.await.unwrap();
}

#[tokio::test]
async fn another_secrets_dummy_closes_both_sides_with_1008() {
    let (mut client, mut upstream, task) = start(policy(false));
    write_frame(
        &mut client,
        text(),
        true,
        format!("exfil {OTHER_DUMMY}").as_bytes(),
        true,
    )
    .await
    .unwrap();
    let to_client = closing(&mut client).await;
    let close = OpCode::Control(Control::Close);
    assert_eq!(to_client.len(), 1, "{to_client:?}");
    assert_eq!(to_client[0].0, close);
    assert_eq!(to_client[0].3[..2], 1008u16.to_be_bytes());
    assert_eq!(&to_client[0].3[2..], b"keygate: tripwire (secret `other`)");
    let to_upstream = closing(&mut upstream).await;
    assert_eq!(
        to_upstream,
        [(close, true, true, 1008u16.to_be_bytes().to_vec())]
    );
    let relayed = task.await.unwrap();
    let mut event = Event::new("test", crate::audit::Kind::Request, Verdict::Allow);
    relayed.record(&mut event, "1 byte up");
    assert_eq!(event.decision, Verdict::Deny);
    assert_eq!(event.secret.as_deref(), Some("other"));
    assert!(
        event.reason.as_deref().unwrap().starts_with("tripwire: "),
        "{event:?}"
    );
}

#[tokio::test]
async fn a_compressed_frame_from_the_upstream_closes_the_websocket() {
    let (mut client, mut upstream, task) = start(policy(false));
    // RSV1 (permessage-deflate's bit) on a text frame.
    upstream.write_all(&[0xC1, 0x03, 1, 2, 3]).await.unwrap();
    let to_client = closing(&mut client).await;
    assert_eq!(to_client.len(), 1, "{to_client:?}");
    assert_eq!(to_client[0].3[..2], 1002u16.to_be_bytes());
    let reason = String::from_utf8_lossy(&to_client[0].3[2..]).into_owned();
    assert!(reason.contains("reserved bit"), "{reason}");
    let relayed = task.await.unwrap();
    assert!(
        matches!(relayed.fault, Some(Fault::Protocol(_))),
        "{relayed:?}"
    );
}
