//! Criterion micro-benchmarks of keygate's per-connection and per-request work:
//! leaf minting (cold and cached), policy matching against 1,000 patterns, the header
//! swap and the whole request pipeline, scrubber throughput, and what `/metrics` adds to
//! each request (on vs `admin: { metrics: false }`).
//!
//! Run with `cargo bench --bench micro` (add a filter, e.g. `-- scrub`, to run one
//! group). Results are in docs/PERFORMANCE.md; they report, they never assert.

mod addon;
mod leaf;
mod metrics;
mod policy;
mod scrub;

criterion::criterion_main!(
    leaf::benches,
    policy::benches,
    addon::benches,
    scrub::benches,
    metrics::benches
);
