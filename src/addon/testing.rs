//! Shared fixtures for the addon unit tests.

use std::sync::Arc;

use http::HeaderName;

use super::FlowContext;
use crate::policy::{Host, HostPattern};
use crate::secrets::{Binding, SecretSet, SecretValue};

pub const DUMMY: &str = "keygate-dummy-test-0123456789";
pub const REAL: &str = "sk-REAL-value-9876543210";

/// Secret `demo`, bound to api.example.com, with a value.
pub fn binding(query: bool) -> Binding {
    Binding {
        name: "demo".into(),
        hosts: vec![HostPattern::parse("api.example.com").unwrap()],
        header: HeaderName::from_static("authorization"),
        format: "Bearer {secret}".into(),
        env: vec!["DEMO_KEY".into()],
        dummy: DUMMY.into(),
        methods: None,
        paths: None,
        query,
        websocket: false,
        body: None,
        kind: Default::default(),
        real: Some(SecretValue::new(REAL.into()).unwrap()),
    }
}

pub fn flow(bindings: Vec<Binding>, intercepted: bool) -> FlowContext {
    flow_to("api.example.com", bindings, intercepted)
}

pub fn flow_to(host: &str, bindings: Vec<Binding>, intercepted: bool) -> FlowContext {
    context(host, SecretSet::new(bindings), intercepted)
}

fn context(host: &str, secrets: SecretSet, intercepted: bool) -> FlowContext {
    let port = if intercepted { 443 } else { 80 };
    FlowContext::new(
        "test".into(),
        Host::parse(host).unwrap(),
        port,
        intercepted,
        Arc::new(secrets),
    )
}

pub fn request(uri: &str, headers: &[(&str, &str)]) -> http::request::Parts {
    let mut builder = http::Request::builder().uri(uri);
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    builder.body(()).unwrap().into_parts().0
}

/// A flow on a session's listener: `bindings` with phantoms for dummies (their static
/// dummies retired).
pub fn session_flow_to(host: &str, bindings: Vec<Binding>, intercepted: bool) -> FlowContext {
    context(
        host,
        SecretSet::new(bindings).session().unwrap(),
        intercepted,
    )
}

/// The dummy of the flow's first secret (its phantom, in a session).
pub fn first_dummy(flow: &FlowContext) -> String {
    flow.secrets.iter().next().unwrap().dummy.clone()
}
