//! Host consistency (SPEC §6): on an intercepted connection, a request whose
//! Host / :authority names another host than the CONNECT (domain fronting) is refused
//! with 421 Misdirected Request.

use http::StatusCode;
use http::header::HOST;

use super::{Addon, FlowContext, Refuse};
use crate::policy::parse_authority;

/// The host-consistency addon.
#[derive(Debug, Default)]
pub struct HostCheck;

impl Addon for HostCheck {
    fn name(&self) -> &'static str {
        "host-check"
    }

    fn on_request(
        &self,
        flow: &mut FlowContext,
        req: &mut http::request::Parts,
    ) -> Result<(), Refuse> {
        if !flow.intercepted {
            return Ok(());
        }
        let header = req
            .headers
            .get(HOST)
            .map(|v| v.to_str().unwrap_or("\u{fffd}").to_string());
        let authority = req.uri.authority().map(|a| a.as_str().to_string());
        if header.is_none() && authority.is_none() {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "bad-request",
                "the request has neither a Host header nor an :authority".into(),
            ));
        }
        for named in header.iter().chain(authority.iter()) {
            let same = parse_authority(named, Some(flow.port))
                .is_ok_and(|(host, port)| host == flow.host && port == flow.port);
            if !same {
                // SECURITY: the upstream routes by Host/:authority while the policy and
                // the secret binding were decided on the CONNECT host; a different name
                // here is domain fronting, and would carry the swapped secret elsewhere.
                return Err(refuse(
                    StatusCode::MISDIRECTED_REQUEST,
                    "host-mismatch",
                    format!(
                        "the request names host `{named}` on a connection opened for {}:{} (domain fronting?)",
                        flow.host, flow.port
                    ),
                ));
            }
        }
        Ok(())
    }
}

fn refuse(status: StatusCode, code: &'static str, why: String) -> Refuse {
    Refuse {
        status,
        code,
        why,
        advice: "Open a separate CONNECT for each host; keygate checks every request against the host it was opened for.".into(),
        alert: code == "host-mismatch",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addon::testing::{flow_to, request};

    #[test]
    fn host_must_match_the_connect_host() {
        let ok = [
            ("api.example.com", 443u16),
            ("API.example.com.", 443),
            ("api.example.com:443", 443),
        ];
        for (host, _) in ok {
            let mut f = flow_to("api.example.com", vec![], true);
            let mut req = request("/v1", &[("host", host)]);
            assert!(HostCheck.on_request(&mut f, &mut req).is_ok(), "{host}");
        }
        for host in [
            "evil.example",
            "api.example.com:8443",
            "api.example.com.evil",
        ] {
            let mut f = flow_to("api.example.com", vec![], true);
            let mut req = request("/v1", &[("host", host)]);
            let refuse = HostCheck.on_request(&mut f, &mut req).unwrap_err();
            assert_eq!(refuse.status, StatusCode::MISDIRECTED_REQUEST, "{host}");
        }
        let mut f = flow_to("api.example.com", vec![], true);
        let mut h2 = request("https://evil.example/v1", &[]);
        assert_eq!(
            HostCheck.on_request(&mut f, &mut h2).unwrap_err().code,
            "host-mismatch"
        );
        let mut none = request("/v1", &[]);
        assert_eq!(
            HostCheck.on_request(&mut f, &mut none).unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
    }
}
