use super::*;
use crate::addon::testing::{DUMMY, REAL, binding, flow, flow_to, session_flow_to};
use crate::policy::HostPattern;
use crate::secrets::Binding;

const OTHER_DUMMY: &str = "keygate-dummy-other-5555555555";

/// Secret `other`, bound to other.example only.
fn other() -> Binding {
    Binding {
        name: "other".into(),
        hosts: vec![HostPattern::parse("other.example").unwrap()],
        env: vec!["OTHER_KEY".into()],
        dummy: OTHER_DUMMY.into(),
        ..binding(false)
    }
}

/// `demo` (bound to api.example.com), with `websocket` as given, and `other`.
fn policy(websocket: bool) -> FramePolicy {
    let demo = Binding {
        websocket,
        ..binding(false)
    };
    FramePolicy::for_flow(&flow(vec![demo, other()], true)).unwrap()
}

/// Every chunk through `filter` as one message, then its end.
fn message(filter: &mut impl FrameFilter, chunks: &[&[u8]]) -> Result<Vec<u8>, Tripped> {
    let mut out = Vec::new();
    for chunk in chunks {
        out.extend_from_slice(&filter.push(chunk)?);
    }
    out.extend_from_slice(&filter.finish());
    Ok(out)
}

#[test]
fn hosts_without_a_bound_secret_are_tripwired_but_not_rewritten() {
    let unbound = flow_to("elsewhere.example", vec![binding(false)], true);
    let policy = FramePolicy::for_flow(&unbound).expect("a policy: the tripwire reads frames");
    let clean = format!("{{\"echo\":\"{REAL}\"}}");
    assert_eq!(
        message(&mut policy.downward(), &[clean.as_bytes()]).unwrap(),
        clean.as_bytes()
    );
    assert_eq!(
        message(&mut policy.upward(), &[b"hello"]).unwrap(),
        b"hello"
    );
    let exfil = format!("x {DUMMY} y");
    let (a, b) = exfil.as_bytes().split_at(6);
    let tripped = message(&mut policy.upward(), &[a, b]).unwrap_err();
    assert_eq!(tripped.refuse.code, "tripwire");
    let nothing = flow_to("elsewhere.example", vec![], true);
    assert!(
        FramePolicy::for_flow(&nothing).is_none(),
        "no secret, no reading"
    );
}

#[test]
fn the_real_value_is_scrubbed_however_a_message_is_cut() {
    let payload = format!("{{\"echo\":\"{REAL}\",\"b64\":\"x\"}}");
    let payload = payload.as_bytes();
    let want = format!("{{\"echo\":\"{DUMMY}\",\"b64\":\"x\"}}");
    let policy = policy(false);
    let mut down = policy.downward();
    for cut in 0..=payload.len() {
        let out = message(&mut down, &[&payload[..cut], &payload[cut..]]).unwrap();
        assert_eq!(out, want.as_bytes(), "cut at {cut}");
    }
    let bytewise: Vec<&[u8]> = payload.chunks(1).collect();
    assert_eq!(message(&mut down, &bytewise).unwrap(), want.as_bytes());
}

#[test]
fn the_dummy_goes_up_unchanged_without_the_opt_in_and_swapped_with_it() {
    let payload = format!("key={DUMMY};");
    let payload = payload.as_bytes();
    let mut up = policy(false).upward();
    assert_eq!(message(&mut up, &[payload]).unwrap(), payload);
    assert!(up.swapped().is_empty());
    let want = format!("key={REAL};");
    for cut in 0..=payload.len() {
        let mut up = policy(true).upward();
        let out = message(&mut up, &[&payload[..cut], &payload[cut..]]).unwrap();
        assert_eq!(out, want.as_bytes(), "cut at {cut}");
        assert_eq!(up.swapped(), ["demo"], "cut at {cut}");
    }
}

#[test]
fn another_secrets_dummy_trips_even_split_and_none_of_it_goes_up_first() {
    let payload = format!("before {OTHER_DUMMY} after");
    let payload = payload.as_bytes();
    for cut in 0..=payload.len() {
        for websocket in [false, true] {
            let mut up = policy(websocket).upward();
            let first = up.push(&payload[..cut]);
            let tripped = match first {
                Err(tripped) => tripped,
                Ok(released) => {
                    // Only what comes before the dummy may have been released.
                    assert!(b"before ".starts_with(&released), "cut at {cut}");
                    up.push(&payload[cut..]).unwrap_err()
                }
            };
            assert_eq!(tripped.secret.as_deref(), Some("other"));
            assert_eq!(tripped.refuse.code, "tripwire");
            assert!(tripped.refuse.alert);
            let said = format!("{} {}", tripped.refuse.why, tripped.refuse.advice);
            assert!(
                !said.contains(OTHER_DUMMY) && !said.contains(REAL),
                "{said}"
            );
        }
    }
}

#[test]
fn a_dummy_split_across_messages_is_two_harmless_halves() {
    let mut up = policy(false).upward();
    let (a, b) = OTHER_DUMMY.split_at(10);
    assert_eq!(message(&mut up, &[a.as_bytes()]).unwrap(), a.as_bytes());
    assert_eq!(message(&mut up, &[b.as_bytes()]).unwrap(), b.as_bytes());
}

#[test]
fn control_payloads_are_tripwired_swapped_and_scrubbed() {
    let mut up = policy(true).upward();
    let tripped = up.control(OTHER_DUMMY.as_bytes(), false).unwrap_err();
    assert_eq!(tripped.secret.as_deref(), Some("other"));
    let mut close = vec![0x03, 0xe8];
    close.extend_from_slice(DUMMY.as_bytes());
    let swapped = up.control(&close, true).unwrap();
    assert_eq!(&swapped[..2], [0x03, 0xe8]);
    assert_eq!(&swapped[2..], REAL.as_bytes());
    assert_eq!(up.swapped(), ["demo"]);

    let mut down = policy(false).downward();
    // A message in progress holds back the start of a value; a ping between two of its
    // fragments is scrubbed on its own.
    let held = down.push(&REAL.as_bytes()[..5]).unwrap();
    assert!(held.is_empty());
    let ping = format!("ping {REAL}");
    assert_eq!(
        &down.control(ping.as_bytes(), false).unwrap()[..],
        format!("ping {DUMMY}").as_bytes()
    );
    assert_eq!(
        &down.push(&REAL.as_bytes()[5..]).unwrap()[..],
        DUMMY.as_bytes()
    );
}

#[test]
fn a_control_payload_made_longer_is_cut_to_125_bytes_keeping_a_close_code() {
    let mut down = policy(false).downward();
    // REAL is shorter than DUMMY: a reason of REALs grows past the limit.
    let mut close = vec![0x0f, 0xa0];
    while close.len() + REAL.len() <= MAX_CONTROL_PAYLOAD {
        close.extend_from_slice(REAL.as_bytes());
    }
    let out = down.control(&close, true).unwrap();
    assert_eq!(out.len(), MAX_CONTROL_PAYLOAD);
    assert_eq!(&out[..2], [0x0f, 0xa0]);
    assert!(!String::from_utf8_lossy(&out).contains(REAL));
    let ping = down.control(&close[2..], false).unwrap();
    assert_eq!(ping.len(), MAX_CONTROL_PAYLOAD);
    // A reason is cut at a character boundary.
    let mut reason = vec![0x03, 0xe8];
    reason.extend_from_slice("é".repeat(70).as_bytes());
    let cut = fit_control(Bytes::from(reason), true);
    assert_eq!(cut.len(), 124);
    assert!(std::str::from_utf8(&cut[2..]).is_ok());
}

#[test]
fn in_a_session_a_static_dummy_in_a_frame_sets_off_the_alarm() {
    let session = session_flow_to("api.example.com", vec![binding(false)], true);
    let mut up = FramePolicy::for_flow(&session).unwrap().upward();
    let tripped = message(&mut up, &[b"x", DUMMY.as_bytes()]).unwrap_err();
    assert_eq!(tripped.refuse.code, "static-dummy");
    assert_eq!(tripped.secret.as_deref(), Some("demo"));
}
