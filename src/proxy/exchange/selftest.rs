//! The self-test origin `keygate.test` (like mitmproxy's mitm.it): served by keygate
//! itself over plain HTTP and over intercepted HTTPS, never forwarded. `keygate doctor`
//! and `keygate run` use it to check a client's proxy and trust settings end to end.
//!
//! * `/` — a short page saying the client reached keygate, and how to get the CA.
//! * `/ca.pem` — the CA certificate (public part), for download.
//! * `/health` — `{"keygate":"ok","version":…,"tls":…}`.
//! * `/doctor.git/info/refs?service=git-upload-pack` — an empty git repository, so
//!   `git ls-remote` can probe.
//!
//! GET and HEAD only (else 405 `bad-request`); any other path is 404 `not-found`.

use http::header::{ALLOW, CONTENT_TYPE};
use http::{HeaderValue, Method, Response, StatusCode};

use crate::policy::Host;
use crate::proxy::Body;
use crate::proxy::respond::{full, text_response};

/// The reserved name keygate answers itself. `.test` is reserved (RFC 6761): it can
/// never be a real host on the internet.
pub const SELF_HOST: &str = "keygate.test";

/// True when `host` is keygate's own self-test origin.
pub fn is_self(host: &Host) -> bool {
    matches!(host, Host::Name(name) if name == SELF_HOST)
}

/// The pkt-line framing of git's smart HTTP protocol.
fn pkt_line(data: &str) -> String {
    format!("{:04x}{data}", data.len() + 4)
}

/// An empty repository's ref advertisement (git smart HTTP, protocol v0).
fn empty_repository() -> String {
    let zero = "0".repeat(40);
    format!(
        "{}0000{}0000",
        pkt_line("# service=git-upload-pack\n"),
        pkt_line(&format!(
            "{zero} capabilities^{{}}\0side-band-64k object-format=sha1\n"
        ))
    )
}

fn with_type(body: impl Into<bytes::Bytes>, content_type: &'static str) -> Response<Body> {
    let mut response = Response::new(full(body));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// Answers a request to `keygate.test`. `tls` says whether it arrived over an
/// intercepted TLS connection; `ca_pem` is the CA certificate, when keygate has one.
pub fn respond(
    method: &Method,
    path: &str,
    query: Option<&str>,
    tls: bool,
    ca_pem: Option<&str>,
) -> Response<Body> {
    if method != Method::GET && method != Method::HEAD {
        let mut response = text_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "bad-request: keygate.test answers GET and HEAD only",
            "keygate.test answers GET and HEAD only.\n".into(),
        );
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    match (path, ca_pem) {
        ("/health", _) => {
            let body = serde_json::json!({
                "keygate": "ok",
                "version": env!("CARGO_PKG_VERSION"),
                "tls": tls,
            });
            with_type(format!("{body}\n"), "application/json")
        }
        ("/ca.pem", Some(pem)) => with_type(pem.to_string(), "application/x-pem-file"),
        ("/doctor.git/info/refs", _) if query == Some("service=git-upload-pack") => with_type(
            empty_repository(),
            "application/x-git-upload-pack-advertisement",
        ),
        ("/", _) => {
            let scheme = if tls { "https" } else { "http" };
            let body = format!(
                "keygate is working: this page came from keygate itself over {scheme}.\n\n\
                 Download the CA certificate: http://{SELF_HOST}/ca.pem\n\
                 Or export it: keygate ca export --out certs/keygate-ca.pem\n"
            );
            with_type(body, "text/plain; charset=utf-8")
        }
        _ => text_response(
            StatusCode::NOT_FOUND,
            "not-found: keygate.test serves /, /ca.pem, /health, /doctor.git/info/refs",
            "keygate.test serves /, /ca.pem, /health and \
             /doctor.git/info/refs?service=git-upload-pack (an empty git repository).\n"
                .into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_advertisement_is_well_framed() {
        let ad = empty_repository();
        assert!(ad.starts_with("001e# service=git-upload-pack\n0000"));
        let second = &ad[34..];
        let len = usize::from_str_radix(&second[..4], 16).unwrap();
        assert_eq!(&second[len..], "0000");
    }

    #[test]
    fn self_host_only() {
        assert!(is_self(&Host::parse("KEYGATE.test.").unwrap()));
        assert!(!is_self(&Host::parse("keygate.test.evil").unwrap()));
    }
}
