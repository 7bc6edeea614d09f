//! What `/metrics` adds to each request (issue 16): the admin listener's [`Observed`]
//! taking the audit event of an intercepted, swapped request, with its counters kept
//! (`admin.metrics`, the default) and not (`admin: { metrics: false }`); and the proxy's
//! [`Stats`]: the two added-time histograms and a connection's open/closed count, on
//! and off. The difference between "on" and "off" is the metrics' cost; what "off"
//! still costs is the flow ring and the secrets' use, which the dashboard shows either
//! way.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use criterion::{Criterion, criterion_group};
use keygate::admin::observe::Observed;
use keygate::audit::{Event, Kind, Observer, Verdict};
use keygate::proxy::stats::{ConnKind, Stats};

/// The audit event of a small intercepted request whose API key keygate swapped, as
/// `proxy::exchange` records it when the response has gone back.
fn swapped_request() -> Event {
    let mut event = Event::new("127.0.0.1:50000", Kind::Request, Verdict::Allow);
    event.ts = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000);
    event.host = Some("api.anthropic.com".into());
    event.port = Some(443);
    event.method = Some("POST".into());
    event.path = Some("/v1/messages".into());
    event.secret = Some("anthropic".into());
    event.status = Some(200);
    event.bytes_up = 312;
    event.bytes_down = 412;
    event.ms = 1;
    event
}

fn metrics(c: &mut Criterion) {
    let mut group = c.benchmark_group("metrics");
    let event = Arc::new(swapped_request());
    for (label, counting) in [("on", true), ("off", false)] {
        // The ring fills during the warm-up, so what is measured is the steady state: a
        // flow in, the oldest out.
        let observed = Observed::new(counting);
        group.bench_function(
            format!("Observed::observe (swapped request, metrics {label})"),
            |b| b.iter(|| observed.observe(black_box(&event))),
        );
    }
    for (label, on) in [("on", true), ("off", false)] {
        let stats = Arc::new(Stats::new(on));
        let (request, response) = (Duration::from_micros(40), Duration::from_micros(30));
        group.bench_function(
            format!("Stats: added_request + added_response (metrics {label})"),
            |b| {
                b.iter(|| {
                    stats.added_request(black_box(request));
                    stats.added_response(black_box(response));
                })
            },
        );
        group.bench_function(
            format!("Stats: open + drop an Open guard (metrics {label})"),
            |b| b.iter(|| drop(black_box(stats.open(ConnKind::Intercepted)))),
        );
        group.bench_function(
            format!("Stats: both histograms + open/drop (metrics {label})"),
            |b| {
                b.iter(|| {
                    let open = stats.open(ConnKind::Intercepted);
                    stats.added_request(black_box(request));
                    stats.added_response(black_box(response));
                    drop(black_box(open));
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, metrics);
