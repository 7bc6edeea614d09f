//! Host policy: `Policy::decide` with 1,000 `allow` patterns (exact names, wildcards,
//! CIDR blocks) in `trusted` mode, so a miss also walks the embedded trusted list.

use std::hint::black_box;

use criterion::{Criterion, criterion_group};
use keygate::policy::{Host, HostPattern, Mode, Policy, PrivateAddresses};

/// 400 exact names, 400 wildcards, 200 CIDR blocks, interleaved the way a long
/// hand-written allow list would be.
fn patterns() -> Vec<HostPattern> {
    let mut texts = Vec::with_capacity(1000);
    for i in 0..200 {
        texts.push(format!("api{i}.example{}.com", i % 17));
        texts.push(format!("*.svc{i}.internal"));
        texts.push(format!("10.{}.{}.0/24", i / 100, i % 100));
        texts.push(format!("registry{i}.corp.example:5000"));
        texts.push(format!("*.cdn{i}.example.net"));
    }
    texts
        .iter()
        .map(|t| HostPattern::parse(t).expect("pattern"))
        .collect()
}

fn decide(c: &mut Criterion) {
    let allow = patterns();
    assert_eq!(allow.len(), 1000);
    let deny = vec![HostPattern::parse("gist.github.com").expect("pattern")];
    let secret_hosts = vec![HostPattern::parse("api.anthropic.com").expect("pattern")];
    let policy = Policy::new(
        Mode::Trusted,
        allow,
        deny,
        secret_hosts,
        PrivateAddresses::Deny,
    );
    let cases = [
        ("secret host", "api.anthropic.com", 443, true),
        ("exact, late in the list", "api190.example3.com", 443, true),
        (
            "wildcard, late in the list",
            "a.b.svc195.internal",
            443,
            true,
        ),
        ("CIDR, late in the list", "10.1.98.7", 443, true),
        ("trusted list", "registry.npmjs.org", 443, true),
        ("miss (walks everything)", "exfil.example.org", 443, false),
    ];
    let mut group = c.benchmark_group("policy/decide (1,000 patterns)");
    for (name, host, port, allowed) in cases {
        let host = Host::parse(host).expect("host");
        assert_eq!(policy.decide(&host, port).is_ok(), allowed, "{name}");
        group.bench_function(name, |b| {
            b.iter(|| policy.decide(black_box(&host), black_box(port)))
        });
    }
    group.finish();
}

criterion_group!(benches, decide);
