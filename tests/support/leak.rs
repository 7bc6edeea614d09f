//! The secret-leak check every injection test ends with (DESIGN "Testing the real
//! thing"): the real value must appear nowhere keygate wrote: not in the audit log, not
//! in any response head or body the client saw, not in keygate's logs at trace level.

use http::Response;
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::proxy::TestProxy;
use super::{trace, within};

/// Everything a client received, as text.
#[derive(Debug, Default)]
pub struct ClientSaw {
    texts: Vec<String>,
}

impl ClientSaw {
    /// Records a response head: status and every header.
    pub fn head<B>(&mut self, resp: &Response<B>) {
        let mut text = format!("{:?} {}\n", resp.version(), resp.status());
        for (k, v) in resp.headers() {
            text.push_str(&format!("{k}: {}\n", String::from_utf8_lossy(v.as_bytes())));
        }
        self.texts.push(text);
    }

    /// Records some text the client got another way (a curl output, a frame).
    pub fn text(&mut self, text: impl Into<String>) {
        self.texts.push(text.into());
    }

    /// Records the head, reads the body (bounded), records it and returns it.
    pub async fn read(&mut self, resp: Response<Incoming>) -> (http::response::Parts, String) {
        self.head(&resp);
        let (parts, body) = resp.into_parts();
        let bytes = within("a response body", body.collect())
            .await
            .expect("response body")
            .to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        self.texts.push(text.clone());
        (parts, text)
    }
}

/// Fails if `real` appears in `text`, naming `what`.
pub fn assert_absent(real: &str, what: &str, text: &str) {
    if let Some(at) = text.find(real) {
        let from = text[..at]
            .char_indices()
            .rev()
            .nth(200)
            .map_or(0, |(i, _)| i);
        panic!(
            "the real secret value leaked into {what}: ...{}",
            &text[from..at]
        );
    }
}

/// Fails if `real` is in the proxy's audit events, in what the client saw, or in the
/// trace-level log of this test binary.
pub fn assert_no_leak(real: &str, proxy: &TestProxy, saw: &ClientSaw) {
    assert!(
        !saw.texts.is_empty(),
        "the leak check needs what the client saw"
    );
    let audit = serde_json::to_string(&proxy.events()).expect("audit events as JSON");
    assert_absent(real, "the audit log", &audit);
    for (i, text) in saw.texts.iter().enumerate() {
        assert_absent(real, &format!("client-visible response part #{i}"), text);
    }
    let log = trace::captured();
    assert!(
        log.contains("TRACE") || log.contains("DEBUG"),
        "the trace capture is not recording"
    );
    assert_absent(real, "keygate's trace-level log", &log);
}
