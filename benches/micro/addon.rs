//! The request side of an intercepted request: the header swap alone, and the whole
//! built-in pipeline (host check, tripwire, least privilege, swap) on a request shaped
//! like one from an official AI SDK, with six registered secrets.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, criterion_group};
use http::{HeaderMap, HeaderName, HeaderValue};
use keygate::addon::host_check::HostCheck;
use keygate::addon::privilege::LeastPrivilege;
use keygate::addon::swap::{Swap, swap_headers};
use keygate::addon::tripwire::Tripwire;
use keygate::addon::{Addon, FlowContext, Pipeline};
use keygate::policy::{Host, HostPattern};
use keygate::secrets::{Binding, SecretSet, SecretValue};

const HOST: &str = "api.anthropic.com";
const DUMMY: &str =
    "sk-ant-api03-keygate-dummy-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
const REAL: &str =
    "sk-ant-api03-REAL-9s8d7f6g5h4j3k2l1qwertyuiopasdfghjklzxcvbnm0123456789abcdefgh";

/// The headers an SDK sends with a small JSON request.
fn sdk_headers() -> HeaderMap {
    let pairs = [
        ("host", HOST),
        ("user-agent", "Anthropic/Python 0.69.0"),
        ("accept", "application/json"),
        ("accept-encoding", "gzip, deflate"),
        ("content-type", "application/json"),
        ("content-length", "312"),
        ("anthropic-version", "2023-06-01"),
        ("x-api-key", DUMMY),
        ("x-stainless-lang", "python"),
        ("x-stainless-package-version", "0.69.0"),
        ("x-stainless-os", "Linux"),
        ("x-stainless-arch", "x64"),
        ("x-stainless-runtime", "CPython"),
        ("x-stainless-runtime-version", "3.12.3"),
        ("x-stainless-retry-count", "0"),
        ("x-stainless-timeout", "600"),
    ];
    let mut headers = HeaderMap::with_capacity(pairs.len());
    for (name, value) in pairs {
        headers.append(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    headers
}

fn binding(name: &str, host: &str, header: &'static str, real: &str) -> Binding {
    Binding {
        name: name.into(),
        hosts: vec![HostPattern::parse(host).expect("pattern")],
        header: HeaderName::from_static(header),
        format: "{secret}".into(),
        env: vec![format!("{}_KEY", name.to_uppercase())],
        dummy: if name == "anthropic" {
            DUMMY.into()
        } else {
            format!("{name}-keygate-dummy-0123456789abcdef0123456789")
        },
        methods: None,
        paths: None,
        query: false,
        websocket: false,
        body: None,
        kind: Default::default(),
        real: Some(SecretValue::new(real.into()).expect("value")),
    }
}

fn secrets() -> Arc<SecretSet> {
    Arc::new(SecretSet::new(vec![
        binding("anthropic", HOST, "x-api-key", REAL),
        binding(
            "openai",
            "api.openai.com",
            "authorization",
            "sk-proj-real-1",
        ),
        binding("github", "api.github.com", "authorization", "ghp_real_2"),
        binding(
            "gemini",
            "generativelanguage.googleapis.com",
            "x-goog-api-key",
            "AIza-real-3",
        ),
        binding(
            "huggingface",
            "huggingface.co",
            "authorization",
            "hf_real_4",
        ),
        binding("npm", "registry.npmjs.org", "authorization", "npm_real_5"),
    ]))
}

fn request() -> http::request::Parts {
    let mut parts = http::Request::builder()
        .method("POST")
        .uri("/v1/messages?beta=true")
        .body(())
        .expect("request")
        .into_parts()
        .0;
    parts.headers = sdk_headers();
    parts
}

/// The head of a small JSON response from an AI API.
fn response() -> http::response::Parts {
    let pairs = [
        ("date", "Mon, 23 Nov 2026 09:00:00 GMT"),
        ("content-type", "application/json"),
        ("content-length", "412"),
        ("connection", "keep-alive"),
        ("request-id", "req_011CU1AbCdEfGhIjKlMnOpQr"),
        ("anthropic-ratelimit-requests-limit", "4000"),
        ("anthropic-ratelimit-requests-remaining", "3999"),
        ("anthropic-ratelimit-requests-reset", "2026-11-23T09:00:01Z"),
        (
            "anthropic-organization-id",
            "0d9a2c1e-7b4f-4c1a-9e2d-5f6a7b8c9d0e",
        ),
        ("via", "1.1 google"),
        ("cf-cache-status", "DYNAMIC"),
        ("server", "cloudflare"),
    ];
    let mut parts = http::Response::new(()).into_parts().0;
    for (name, value) in pairs {
        parts.headers.append(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    parts
}

fn swap(c: &mut Criterion) {
    let header = HeaderName::from_static("x-api-key");
    let mut group = c.benchmark_group("addon");
    group.bench_function("swap_headers (16 headers)", |b| {
        b.iter_batched_ref(
            sdk_headers,
            |headers| swap_headers(headers, black_box(&header), DUMMY, REAL),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("clone the 16 headers (baseline of the above)", |b| {
        let headers = sdk_headers();
        b.iter(|| black_box(&headers).clone())
    });
    let pipeline = Pipeline::default();
    let secrets = secrets();
    let host = Host::parse(HOST).expect("host");
    let setup = || {
        let flow = FlowContext::new(
            "127.0.0.1:50000".into(),
            host.clone(),
            443,
            true,
            secrets.clone(),
        );
        (flow, request())
    };
    group.bench_function("Pipeline::on_request (6 secrets, swap)", |b| {
        b.iter_batched_ref(
            setup,
            |(flow, parts)| {
                pipeline.on_request(flow, parts).expect("allowed");
            },
            BatchSize::SmallInput,
        )
    });
    let (mut flow, mut parts) = setup();
    pipeline.on_request(&mut flow, &mut parts).expect("allowed");
    assert_eq!(parts.headers["x-api-key"], REAL, "the swap happened");
    // Each built-in request addon alone, to see where the pipeline's time goes.
    let single: [(&str, Box<dyn Addon>); 4] = [
        ("host check", Box::new(HostCheck)),
        ("tripwire", Box::new(Tripwire)),
        ("least privilege", Box::new(LeastPrivilege)),
        ("swap", Box::new(Swap)),
    ];
    for (name, addon) in single {
        group.bench_function(format!("on_request: {name} alone"), |b| {
            b.iter_batched_ref(
                setup,
                |(flow, parts)| addon.on_request(flow, parts).expect("allowed"),
                BatchSize::SmallInput,
            )
        });
    }
    // The response side: scrub's header pass and the body filter it hands out.
    let (flow, _) = setup();
    group.bench_function("Pipeline::on_response (12 headers, scrub)", |b| {
        b.iter_batched_ref(
            response,
            |head| pipeline.on_response(&flow, head),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, swap);
