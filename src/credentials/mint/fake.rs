//! Test doubles: an in-memory [`Transport`] that records requests, counts calls, can be
//! slow, and answers through a closure; and a [`Clock`] that moves only when told.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, StatusCode, Uri};

use super::{Clock, PostFuture, Transport};

/// A request as the fake transport received it.
#[derive(Clone)]
pub struct Recorded {
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Recorded {
    /// The form body, decoded.
    pub fn form(&self) -> BTreeMap<String, String> {
        let body = std::str::from_utf8(&self.body).unwrap();
        body.split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (name, value) = pair.split_once('=').unwrap();
                (decode(name), decode(value))
            })
            .collect()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

fn decode(text: &str) -> String {
    let text = text.replace('+', " ");
    percent_encoding::percent_decode_str(&text)
        .decode_utf8()
        .unwrap()
        .into_owned()
}

type Reply = Result<(StatusCode, Bytes), String>;
type Responder = Box<dyn Fn(&Recorded, usize) -> Reply + Send + Sync>;

pub struct FakeTransport {
    responder: Responder,
    delay: Duration,
    calls: AtomicUsize,
    requests: Mutex<Vec<Recorded>>,
}

impl FakeTransport {
    /// Answers each request (with the 0-based call number) through `responder`.
    pub fn new(responder: impl Fn(&Recorded, usize) -> Reply + Send + Sync + 'static) -> Self {
        FakeTransport {
            responder: Box::new(responder),
            delay: Duration::ZERO,
            calls: AtomicUsize::new(0),
            requests: Mutex::new(Vec::new()),
        }
    }

    /// Always answers `status` with `body`.
    pub fn replying(status: u16, body: &str) -> Self {
        let body = Bytes::copy_from_slice(body.as_bytes());
        let status = StatusCode::from_u16(status).unwrap();
        FakeTransport::new(move |_, _| Ok((status, body.clone())))
    }

    /// Sleeps `delay` before answering.
    pub fn slow(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    pub fn last(&self) -> Recorded {
        self.requests().pop().expect("no request was sent")
    }
}

impl Transport for FakeTransport {
    fn post(&self, url: &Uri, headers: HeaderMap, body: Bytes) -> PostFuture<'_> {
        let recorded = Recorded {
            uri: url.clone(),
            headers,
            body,
        };
        Box::pin(async move {
            let call = self.calls.fetch_add(1, Ordering::SeqCst);
            self.requests.lock().unwrap().push(recorded.clone());
            if !self.delay.is_zero() {
                tokio::time::sleep(self.delay).await;
            }
            (self.responder)(&recorded, call)
        })
    }
}

/// A token response with `access_token` and `expires_in`.
pub fn token_json(access_token: &str, expires_in: u64) -> String {
    serde_json::json!({
        "access_token": access_token,
        "expires_in": expires_in,
        "token_type": "Bearer",
    })
    .to_string()
}

pub fn ok(body: String) -> Reply {
    Ok((StatusCode::OK, Bytes::from(body)))
}

/// A clock standing still at [`FakeClock::START`] until advanced.
pub struct FakeClock(Mutex<SystemTime>);

impl FakeClock {
    pub const START: u64 = 1_780_000_000;

    pub fn new() -> Self {
        FakeClock(Mutex::new(UNIX_EPOCH + Duration::from_secs(Self::START)))
    }

    pub fn advance(&self, by: Duration) {
        *self.0.lock().unwrap() += by;
    }
}

impl Clock for FakeClock {
    fn now(&self) -> SystemTime {
        *self.0.lock().unwrap()
    }
}

/// `FakeClock::START + seconds`.
pub fn at(seconds: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(FakeClock::START + seconds)
}
