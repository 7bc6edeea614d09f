//! Resident memory of a proxy per idle intercepted connection: one warm-up connection,
//! then VmRSS of the proxy (from /proc), then N more connections, each with one
//! completed request and then left idle, then VmRSS again. Prints one JSON line.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use http_body_util::BodyExt;
use tokio::sync::Semaphore;

use crate::client::{Sender, Target, tls_config};

/// Connections opened at the same time while building up the idle set.
const PARALLEL_OPENS: usize = 16;
/// Pause before reading VmRSS, so the allocator and the proxy's tasks settle.
const SETTLE: Duration = Duration::from_millis(1500);

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    target: Target,
    /// The proxy's process id (its /proc/PID/status is read).
    #[arg(long)]
    pid: u32,
    /// Idle connections to open.
    #[arg(short = 'n', long, default_value_t = 1000)]
    connections: usize,
}

pub async fn run(args: &Args) -> anyhow::Result<()> {
    let tls = tls_config(&args.target.cacert)?;
    let target = Arc::new(args.target.clone());
    let warm = open_and_request(target.clone(), tls.clone()).await?;
    tokio::time::sleep(SETTLE).await;
    let before = vm_rss_kib(args.pid)?;
    let permits = Arc::new(Semaphore::new(PARALLEL_OPENS));
    let mut tasks = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        let (target, tls, permits) = (target.clone(), tls.clone(), permits.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = permits.acquire_owned().await?;
            open_and_request(target, tls).await
        }));
    }
    let mut idle = Vec::with_capacity(args.connections);
    for task in tasks {
        idle.push(task.await??);
    }
    tokio::time::sleep(SETTLE).await;
    let after = vm_rss_kib(args.pid)?;
    let per_conn = (after as f64 - before as f64) * 1024.0 / args.connections as f64;
    println!(
        "{{\"connections\":{},\"rss_before_kib\":{before},\"rss_after_kib\":{after},\"per_conn_bytes\":{per_conn:.0}}}",
        args.connections
    );
    drop((warm, idle));
    Ok(())
}

/// A new connection that has completed one request and is now idle.
async fn open_and_request(
    target: Arc<Target>,
    tls: Arc<rustls::ClientConfig>,
) -> anyhow::Result<Sender> {
    let mut sender = target.open(&tls).await?;
    let response = sender.send_request(target.request()?).await?;
    if !response.status().is_success() {
        bail!("GET {}: {}", target.url, response.status());
    }
    response.into_body().collect().await?;
    Ok(sender)
}

/// VmRSS of `pid`, in KiB.
pub fn vm_rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS in /proc/PID/status")
}
