//! Scrubber throughput: 1 MiB of response body in 16 KiB chunks, searched for a real
//! value (exactly, and in every form keygate knows), without a match (the common case)
//! and with one in every chunk.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group};
use std::sync::Arc;

use keygate::addon::scrubber::Scrubber;
use keygate::secrets::reflect::Reflections;

const MIB: usize = 1024 * 1024;
const CHUNK: usize = 16 * 1024;
const REAL: &[u8] = b"sk-ant-api03-REAL-9s8d7f6g5h4j3k2l1qwertyuiop";
const DUMMY: &[u8] = b"sk-ant-api03-keygate-dummy-AAAAAAAAAAAAAAAAA";

/// JSON-ish text (what model responses look like), with `REAL` in the middle of each
/// chunk when `with_match`.
fn body(with_match: bool) -> Vec<u8> {
    let line =
        b"{\"type\":\"content_block_delta\",\"delta\":{\"text\":\"lorem ipsum dolor sit amet\"}}\n";
    let mut body: Vec<u8> = line.iter().copied().cycle().take(MIB).collect();
    if with_match {
        for start in (CHUNK / 2..MIB).step_by(CHUNK) {
            body[start..start + REAL.len()].copy_from_slice(REAL);
        }
    }
    body
}

fn run(scrubber: &mut Scrubber, body: &[u8]) -> usize {
    let mut out = 0;
    for chunk in body.chunks(CHUNK) {
        out += scrubber.push(black_box(chunk)).len();
    }
    out + scrubber.finish().len()
}

fn scrub(c: &mut Criterion) {
    let mut group = c.benchmark_group("scrub (1 MiB in 16 KiB chunks)");
    group.throughput(Throughput::Bytes(MIB as u64));
    for (name, with_match) in [("no match", false), ("a match per chunk", true)] {
        let body = body(with_match);
        let matches = if with_match { MIB / CHUNK } else { 0 };
        let mut check = Scrubber::new(&[(REAL, DUMMY)]).expect("scrubber");
        assert_eq!(
            run(&mut check, &body),
            MIB + matches * DUMMY.len() - matches * REAL.len(),
            "{name}: every match replaced"
        );
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut scrubber = Scrubber::new(&[(REAL, DUMMY)]).expect("scrubber");
                run(&mut scrubber, &body)
            })
        });
        // What a response from a bound host gets: every form of the value (the set's
        // compiled reflections, built once per configuration, not per response).
        let forms = Arc::new(Reflections::of(&[(REAL, DUMMY)], &[]).expect("forms"));
        let mut check = Scrubber::with(forms.clone());
        assert_eq!(
            run(&mut check, &body),
            MIB + matches * DUMMY.len() - matches * REAL.len()
        );
        group.bench_function(format!("{name}, every form"), |b| {
            b.iter(|| {
                let mut scrubber = Scrubber::with(forms.clone());
                run(&mut scrubber, &body)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, scrub);
