//! Asking whatever listens on an address whether it is a keygate, through keygate's
//! self-test origin (`http://keygate.test/...`, which keygate answers itself and never
//! forwards): `run` and `doctor` look for a running keygate with this home's CA, and
//! `start` names the keygate that already holds its port.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use keygate::secrets::SecretValue;

/// How long one probe may take, connection to last body byte.
const PROBE_TIMEOUT: Duration = Duration::from_millis(1500);
/// The most of an answer's body a probe reads (a CA certificate is about 1 KiB).
const MAX_BODY: usize = 64 * 1024;

/// An answer from `http://keygate.test{path}`.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

/// GETs `http://keygate.test{path}` through the proxy at `addr`, with `credentials`
/// as proxy authentication when given. `None` when nothing HTTP answered in time.
async fn get(addr: SocketAddr, path: &str, credentials: Option<&SecretValue>) -> Option<Answer> {
    let work = async {
        let tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .ok()?;
        tokio::spawn(conn);
        let mut request = http::Request::get(format!("http://keygate.test{path}"))
            .header(http::header::HOST, "keygate.test");
        if let Some(c) = credentials {
            use base64::Engine;
            let basic = base64::engine::general_purpose::STANDARD.encode(c.expose());
            request = request.header(http::header::PROXY_AUTHORIZATION, format!("Basic {basic}"));
        }
        let request = request.body(Empty::<Bytes>::new()).ok()?;
        let response = sender.send_request(request).await.ok()?;
        let (head, body) = response.into_parts();
        let body = Limited::new(body, MAX_BODY).collect().await.ok()?;
        Some(Answer {
            status: head.status,
            headers: head.headers,
            body: body.to_bytes(),
        })
    };
    tokio::time::timeout(PROBE_TIMEOUT, work)
        .await
        .ok()
        .flatten()
}

/// True when a keygate with our CA answers at `addr` (its self-test origin serves the CA).
pub async fn same_ca(addr: SocketAddr, credentials: Option<&SecretValue>, ca_pem: &str) -> bool {
    get(addr, "/ca.pem", credentials)
        .await
        .is_some_and(|a| a.status == StatusCode::OK && a.body == ca_pem.as_bytes())
}

/// What [`keygate_at`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Found {
    /// A keygate, with its version when it said (one that requires proxy credentials
    /// says only that it is keygate).
    Keygate {
        /// From `/health`.
        version: Option<String>,
    },
    /// Something else, or nothing that answered in time.
    Other,
}

/// Asks the listener at `addr` for keygate's `/health`, without credentials.
pub async fn keygate_at(addr: SocketAddr) -> Found {
    let Some(answer) = get(addr, "/health", None).await else {
        return Found::Other;
    };
    if answer.status == StatusCode::PROXY_AUTHENTICATION_REQUIRED {
        let keygate_realm = answer
            .headers
            .get(http::header::PROXY_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("realm=\"keygate\""));
        return match keygate_realm {
            true => Found::Keygate { version: None },
            false => Found::Other,
        };
    }
    let health: Option<serde_json::Value> = serde_json::from_slice(&answer.body).ok();
    match health {
        Some(h) if answer.status == StatusCode::OK && h["keygate"] == "ok" => Found::Keygate {
            version: h["version"].as_str().map(String::from),
        },
        _ => Found::Other,
    }
}
