//! Phantoms (SPEC §10): a session accepts only its own dummies. On every request keygate
//! can read (intercepted TLS and plain HTTP), a dummy that belongs elsewhere is refused
//! with 403 and logged as an alert, before the tripwire looks at it:
//!
//! * `static-dummy`: in a session, a secret's static dummy (the session gave the jailed
//!   command a phantom instead; the static one was copied from a file or another run);
//! * `foreign-phantom`: a phantom dummy that is not this set's own: another session's,
//!   or any session's on the shared `keygate start` listener. A phantom works only on
//!   the socket of the session that made it; anywhere else it was carried out of its jail.
//!
//! Looked for where the tripwire looks: header values (raw and inside `Basic`
//! credentials) and the URL (raw and percent-decoded). A request with neither costs one
//! memmem pass per header value (one automaton pass in a session) and allocates nothing.

use http::{HeaderValue, StatusCode};
use percent_encoding::percent_decode_str;

use super::inspect::basic_credentials;
use super::{Addon, FlowContext, Refuse};
use crate::secrets::{Alarm, Binding, SecretSet};

/// The phantoms addon.
#[derive(Debug, Default)]
pub struct Phantoms;

impl Addon for Phantoms {
    fn name(&self) -> &'static str {
        "phantom"
    }

    fn on_request(
        &self,
        flow: &mut FlowContext,
        req: &mut http::request::Parts,
    ) -> Result<(), Refuse> {
        let Some(alarm) = alarm_carried(&flow.secrets, &req.headers, &req.uri) else {
            return Ok(());
        };
        let (tripped, refuse) = refusal(&flow.secrets, alarm);
        flow.tripped = tripped;
        Err(refuse)
    }
}

/// The refusal for `alarm` and the secret it names, if any (also what a WebSocket frame
/// carrying it is closed with).
pub fn refusal(secrets: &SecretSet, alarm: Alarm<'_>) -> (Option<String>, Refuse) {
    match alarm {
        Alarm::Retired(binding) => (Some(binding.name.clone()), static_dummy(binding)),
        Alarm::Foreign(shaped_like) => (
            shaped_like.map(|b| b.name.clone()),
            foreign_phantom(secrets.is_session(), shaped_like),
        ),
    }
}

/// The first alarm in the request: header values (raw, then inside Basic credentials),
/// then the URL's authority and path and query (raw, then percent-decoded).
pub fn alarm_carried<'s>(
    secrets: &'s SecretSet,
    headers: &http::HeaderMap,
    uri: &http::Uri,
) -> Option<Alarm<'s>> {
    for value in headers.values() {
        let found = secrets.alarm_in(value.as_bytes()).or_else(|| {
            may_be_basic(value)
                .then(|| basic_credentials(value))
                .flatten()
                .and_then(|c| secrets.alarm_in(c.as_bytes()))
        });
        if found.is_some() {
            return found;
        }
    }
    // Userinfo (`user:pass@host`) of an absolute-form URL, too.
    let authority = uri.authority().map(|a| a.as_str().as_bytes());
    if let Some(found) = authority.and_then(|a| secrets.alarm_in(a)) {
        return Some(found);
    }
    let pq = uri.path_and_query()?.as_str();
    secrets.alarm_in(pq.as_bytes()).or_else(|| {
        memchr::memchr(b'%', pq.as_bytes())?;
        secrets.alarm_in(percent_decode_str(pq).decode_utf8_lossy().as_bytes())
    })
}

/// True when `value` starts with the `Basic ` scheme: [`basic_credentials`] (which
/// validates, trims and decodes) runs only then, not on every header.
fn may_be_basic(value: &HeaderValue) -> bool {
    let text = value.as_bytes().trim_ascii_start();
    text.get(..6)
        .is_some_and(|s| s[..5].eq_ignore_ascii_case(b"basic") && s[5] == b' ')
}

/// The secret's environment variables, for the advice: `$A` or `$A or $B`.
fn variables(binding: &Binding) -> Option<String> {
    let names: Vec<String> = binding.env.iter().map(|v| format!("${v}")).collect();
    (!names.is_empty()).then(|| names.join(" or "))
}

fn static_dummy(binding: &Binding) -> Refuse {
    let name = &binding.name;
    let advice = match variables(binding) {
        Some(vars) => format!(
            "Send the value {vars} has inside this session instead: every `keygate run` gives the command new dummies, and a dummy copied from a file, an earlier run or `keygate env` is refused here. If the command reads the key from its own configuration, make it read {vars}."
        ),
        None => format!(
            "Secret `{name}` sets no environment variable, so the command cannot learn this session's dummy: a human can give it an `env` in secrets.yaml."
        ),
    };
    Refuse {
        status: StatusCode::FORBIDDEN,
        code: "static-dummy",
        why: format!(
            "the request carries the static dummy of secret `{name}`; this keygate session accepts only its own per-session dummies"
        ),
        advice,
        alert: true,
    }
}

fn foreign_phantom(in_session: bool, shaped_like: Option<&std::sync::Arc<Binding>>) -> Refuse {
    let shape = shaped_like.map_or(String::new(), |b| {
        format!(" (shaped like secret `{}`'s)", b.name)
    });
    let vars = shaped_like.and_then(|b| variables(b));
    let (why, advice) = if in_session {
        (
            format!(
                "the request carries a dummy credential of another keygate session{shape}; a session's dummies are valid only on that session's own socket"
            ),
            match vars {
                Some(vars) => format!(
                    "Send the value {vars} has inside this session: dummies do not carry over between sessions (each `keygate run` makes new ones)."
                ),
                None => "Send only the dummies this session put in the command's environment: dummies do not carry over between sessions (each `keygate run` makes new ones).".into(),
            },
        )
    } else {
        (
            format!(
                "the request carries a dummy credential of a `keygate run` session{shape}; a session's dummies are valid only on that session's own socket, not on this shared listener"
            ),
            format!(
                "Run the command under `keygate run`, or send this listener the static dummy `keygate env` prints{}. A session dummy outside its session was carried out of the jail: find out how.",
                vars.map_or(String::new(), |v| format!(" (as {v})"))
            ),
        )
    };
    Refuse {
        status: StatusCode::FORBIDDEN,
        code: "foreign-phantom",
        why,
        advice,
        alert: true,
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;

    use super::*;
    use crate::addon::Pipeline;
    use crate::addon::testing::{
        DUMMY, REAL, binding, first_dummy, flow, flow_to, request, session_flow_to,
    };
    use crate::secrets::dummy::expand;

    /// A Basic credential holding `secret` as the password.
    fn basic(secret: &str) -> String {
        let b64 = base64::engine::general_purpose::STANDARD;
        format!("Basic {}", b64.encode(format!("x-access-token:{secret}")))
    }

    /// The header, Basic, query (percent-encoded) and path placements of `secret`.
    fn placements(secret: &str) -> Vec<(String, Vec<(&'static str, String)>)> {
        let encoded: String = secret.bytes().map(|b| format!("%{b:02X}")).collect();
        vec![
            (
                "https://api.example.com/v1".into(),
                vec![("x-api-key", secret.to_string())],
            ),
            (
                "https://api.example.com/v1".into(),
                vec![("authorization", basic(secret))],
            ),
            (format!("https://api.example.com/v1?key={encoded}"), vec![]),
            (format!("https://api.example.com/v1/{secret}/x"), vec![]),
        ]
    }

    fn run(
        flow: &mut FlowContext,
        url: &str,
        headers: &[(&'static str, String)],
    ) -> Result<(), Refuse> {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        Phantoms.on_request(flow, &mut request(url, &headers))
    }

    /// Neither the real value nor the dummy that tripped may appear in a refusal.
    fn assert_discreet(refuse: &Refuse, dummy: &str) {
        for text in [&refuse.why, &refuse.advice] {
            assert!(!text.contains(REAL) && !text.contains(dummy), "{text}");
        }
    }

    #[test]
    fn a_static_dummy_is_refused_in_a_session() {
        for (url, headers) in placements(DUMMY) {
            let mut f = session_flow_to("api.example.com", vec![binding(true)], true);
            let refuse = run(&mut f, &url, &headers).unwrap_err();
            assert_eq!(refuse.status, StatusCode::FORBIDDEN, "{url}");
            assert_eq!(refuse.code, "static-dummy", "{url}");
            assert!(refuse.alert);
            assert!(refuse.why.contains("`demo`"), "{}", refuse.why);
            assert!(refuse.advice.contains("$DEMO_KEY"), "{}", refuse.advice);
            assert_discreet(&refuse, DUMMY);
            assert_eq!(f.tripped.as_deref(), Some("demo"));
        }
        // Outside a session the static dummy is the one to send.
        let mut f = flow(vec![binding(false)], true);
        assert!(
            run(
                &mut f,
                "https://api.example.com/",
                &[("x-api-key", DUMMY.into())]
            )
            .is_ok()
        );
    }

    #[test]
    fn another_sessions_phantom_is_refused_on_the_shared_listener_and_in_a_session() {
        let elsewhere = session_flow_to("api.example.com", vec![binding(false)], true);
        let phantom = first_dummy(&elsewhere);
        for (url, headers) in placements(&phantom) {
            let mut shared = flow(vec![binding(false)], true);
            let refuse = run(&mut shared, &url, &headers).unwrap_err();
            assert_eq!(
                (refuse.code, refuse.alert),
                ("foreign-phantom", true),
                "{url}"
            );
            assert!(refuse.why.contains("shared listener"), "{}", refuse.why);
            assert_discreet(&refuse, &phantom);
            let mut other = session_flow_to("api.example.com", vec![binding(false)], true);
            let refuse = run(&mut other, &url, &headers).unwrap_err();
            assert_eq!(refuse.code, "foreign-phantom", "{url}");
            assert!(
                refuse.why.contains("another keygate session"),
                "{}",
                refuse.why
            );
            assert_discreet(&refuse, &phantom);
        }
        // Plain HTTP, to any host, and with no secret registered at all.
        let mut plain = flow_to("elsewhere.example", vec![], false);
        let url = format!("http://elsewhere.example/?k={phantom}");
        assert_eq!(
            run(&mut plain, &url, &[]).unwrap_err().code,
            "foreign-phantom"
        );
    }

    #[test]
    fn a_foreign_phantom_names_the_secret_it_looks_like() {
        let mut anthropic = binding(false);
        anthropic.name = "anthropic".into();
        anthropic.env = vec!["ANTHROPIC_API_KEY".into()];
        anthropic.dummy = expand("sk-ant-api03-keygateDummy{random:81}AA", "anthropic").unwrap();
        let elsewhere = session_flow_to("api.example.com", vec![anthropic.clone()], true);
        let phantom = first_dummy(&elsewhere);
        let headers = [("x-api-key", phantom.clone())];
        let mut shared = flow(vec![binding(false), anthropic.clone()], true);
        let refuse = run(&mut shared, "https://api.example.com/", &headers).unwrap_err();
        assert!(
            refuse.why.contains("shaped like secret `anthropic`"),
            "{}",
            refuse.why
        );
        assert!(
            refuse.advice.contains("$ANTHROPIC_API_KEY"),
            "{}",
            refuse.advice
        );
        assert_eq!(shared.tripped.as_deref(), Some("anthropic"));
        let mut session = session_flow_to("api.example.com", vec![anthropic], true);
        let refuse = run(&mut session, "https://api.example.com/", &headers).unwrap_err();
        assert!(
            refuse.advice.contains("$ANTHROPIC_API_KEY"),
            "{}",
            refuse.advice
        );
    }

    #[test]
    fn the_sessions_own_phantom_is_swapped_on_its_host_and_trips_elsewhere() {
        let mut f = session_flow_to("api.example.com", vec![binding(false)], true);
        let phantom = first_dummy(&f);
        assert_ne!(phantom, DUMMY);
        let auth = format!("Bearer {phantom}");
        let mut req = request("https://api.example.com/v1", &[("authorization", &auth)]);
        Pipeline::default().on_request(&mut f, &mut req).unwrap();
        assert_eq!(req.headers["authorization"], &format!("Bearer {REAL}"));
        assert_eq!(f.swapped, vec!["demo"]);
        let mut f = session_flow_to("evil.example", vec![binding(false)], true);
        let phantom = first_dummy(&f);
        let mut req = request("https://evil.example/", &[("x-api-key", &phantom)]);
        let refuse = Pipeline::default()
            .on_request(&mut f, &mut req)
            .unwrap_err();
        assert_eq!(refuse.code, "tripwire");
    }

    #[test]
    fn requests_without_a_dummy_pass() {
        let headers = [
            ("authorization", "Bearer own-token".to_string()),
            ("authorization", basic("own-password")),
            ("x-note", "keygate-phntm- hntm keygatePhntm1234".into()),
        ];
        let url = "https://api.example.com/v1/messages?beta=true&q=%41";
        let mut f = flow(vec![binding(false)], true);
        assert!(run(&mut f, url, &headers).is_ok());
        let mut f = session_flow_to("api.example.com", vec![binding(false)], true);
        assert!(run(&mut f, url, &headers).is_ok());
        assert_eq!(f.tripped, None);
    }
}
