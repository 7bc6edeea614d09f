//! Load, soak and disconnects (issue 6), against a real `keygate start` whose file
//! descriptors and memory are read from /proc.
//!
//! The soak test is ignored by default (`cargo test -- --ignored soak`); its length is
//! `KEYGATE_SOAK_SECS` (default 30). `.ci/run` runs it for 30 seconds.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::{StatusCode, Version};
use http_body_util::BodyExt;

use crate::support::intercepted::Conn;
use crate::support::started::Started;
use crate::support::within;

const HOST: &str = "api.soak.test";

/// How far above the idle baseline keygate's descriptors may stay: idle pooled upstream
/// connections (bounded per host) and allocator/runtime noise.
const FD_SLACK: usize = 72;

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_disconnects_mid_stream_leaves_nothing_open() {
    let started = Started::start(HOST, "disconnect", "").await;
    let key = [("x-api-key", started.secret.dummy())];
    // Warm up: CA leaf minted, verifier loaded, one pooled upstream connection.
    let mut warm = Conn::open_via(started.keygate.addr, &started.ca, HOST, Version::HTTP_11).await;
    let resp = warm.send(warm.get(HOST, "/warm", &key)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    resp.into_body().collect().await.expect("warm-up body");
    drop(warm);
    let baseline = started.stable_fds().await;

    let mut conn = Conn::open_via(started.keygate.addr, &started.ca, HOST, Version::HTTP_11).await;
    let resp = conn.send(conn.get(HOST, "/bytes/500000000", &key)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let mut got = 0usize;
    while got < 2 << 20 {
        let frame = within("a body frame", body.frame())
            .await
            .expect("frame")
            .expect("data");
        got += frame.data_ref().map_or(0, |d| d.len());
    }
    let during = started.fds();
    drop(body);
    drop(conn);
    let after = started.settle_fds(baseline).await;
    assert!(
        after <= baseline,
        "keygate held {after} descriptors after the client left mid-stream (baseline {baseline}, during {during}): the upstream side was not closed"
    );
    // And it goes on serving.
    let mut again = Conn::open_via(started.keygate.addr, &started.ca, HOST, Version::HTTP_11).await;
    let resp = again.send(again.get(HOST, "/after", &key)).await;
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "soak: run with `cargo test -- --ignored soak` (KEYGATE_SOAK_SECS, default 30)"]
async fn soak_256_keep_alive_intercepted_connections() {
    let secs: u64 = std::env::var("KEYGATE_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let started =
        Arc::new(Started::start(HOST, "soak", "limits:\n  max_connections: 1024\n").await);
    let key = started.secret.dummy().to_string();
    let fds_idle = started.fds();
    let rss_idle = started.status_kb("VmRSS");
    let (ok, errors) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for i in 0..256 {
        let (started, key, ok, errors) = (started.clone(), key.clone(), ok.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let version = if i % 2 == 0 {
                Version::HTTP_11
            } else {
                Version::HTTP_2
            };
            let mut conn = Conn::open_via(started.keygate.addr, &started.ca, HOST, version).await;
            let mut n = 0u64;
            while Instant::now() < deadline {
                let req = conn.get(
                    HOST,
                    &format!("/soak/{i}/{n}"),
                    &[("x-api-key", key.as_str())],
                );
                match tokio::time::timeout(Duration::from_secs(10), conn.send(req)).await {
                    Ok(resp) if resp.status() == StatusCode::OK => {
                        let body = resp.into_body().collect().await;
                        let counter = if body.is_ok() { &ok } else { &errors };
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                n += 1;
            }
        }));
    }
    for task in tasks {
        task.await.expect("client task");
    }
    let rss_peak = started.status_kb("VmHWM");
    let (ok, errors) = (ok.load(Ordering::Relaxed), errors.load(Ordering::Relaxed));
    eprintln!(
        "soak: {secs}s, 256 connections, {ok} requests ({:.0}/s), {errors} errors; RSS idle {rss_idle} kB, peak {rss_peak} kB",
        ok as f64 / secs as f64
    );
    assert_eq!(errors, 0, "every request succeeded");
    assert!(ok >= 256, "every connection made requests");
    let fds_after = started.settle_fds(fds_idle + FD_SLACK).await;
    assert!(
        fds_after <= fds_idle + FD_SLACK,
        "descriptors back near baseline: idle {fds_idle}, after {fds_after}"
    );
    let rss_after = started.status_kb("VmRSS");
    assert!(
        rss_after < rss_idle + 128 * 1024,
        "RSS back near baseline: idle {rss_idle} kB, after {rss_after} kB"
    );
    let seen = started.upstream.seen();
    assert!(
        seen.iter()
            .all(|s| s.header("x-api-key") == vec![started.secret.real()]),
        "every request was swapped"
    );
}
