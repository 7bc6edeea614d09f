//! Leaf certificates: minting a new one (what the first CONNECT to a host costs) and
//! finding the server config of a host already in the cache (every later CONNECT).

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group};
use keygate::ca::{Ca, LeafIssuer};
use keygate::home::Home;
use keygate::policy::Host;
use keygate::proxy::connect::tls::{LEAF_CACHE_HOSTS, ServerConfigs};

fn ca(dir: &tempfile::TempDir) -> Arc<Ca> {
    let (ca, _created) = Ca::load_or_create(&Home::at(dir.path())).expect("a CA in a temp home");
    Arc::new(ca)
}

fn leaf(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = ca(&dir);
    let host = Host::parse("api.example.com").expect("host");
    let mut group = c.benchmark_group("leaf");
    group.bench_function("mint (cold: key + signature)", |b| {
        b.iter(|| ca.mint(black_box(&host)).expect("mint"))
    });
    // A cache of one host, asked for two hosts in turn: every call mints and builds a
    // rustls ServerConfig, which is what a CONNECT to a new host pays.
    let missing = ServerConfigs::new(ca.clone(), 1);
    let other = Host::parse("api.other.example").expect("host");
    let mut flip = false;
    group.bench_function("for_host (miss: mint + ServerConfig)", |b| {
        b.iter(|| {
            flip = !flip;
            let host = if flip { &host } else { &other };
            missing.for_host(black_box(host)).expect("config")
        })
    });
    let cached = ServerConfigs::new(ca.clone(), LEAF_CACHE_HOSTS);
    cached.for_host(&host).expect("warm the cache");
    group.bench_function("for_host (cached)", |b| {
        b.iter(|| cached.for_host(black_box(&host)).expect("config"))
    });
    group.finish();
}

criterion_group!(benches, leaf);
