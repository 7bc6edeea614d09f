//! Time to the first server-sent event: on one keep-alive connection, the time from
//! sending `GET /sse` to holding the complete first event (`\n\n`); the rest of the
//! stream is then read to its end before the next request. Prints one JSON line.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use http_body_util::BodyExt;
use memchr::memmem;

use crate::client::{Target, tls_config};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    target: Target,
    /// Number of timed requests (after one untimed warm-up).
    #[arg(short = 'n', long, default_value_t = 100)]
    requests: usize,
}

pub async fn run(args: &Args) -> anyhow::Result<()> {
    let tls = tls_config(&args.target.cacert)?;
    let mut sender = args.target.open(&tls).await?;
    let mut samples = Vec::with_capacity(args.requests);
    for i in 0..=args.requests {
        sender.ready().await?;
        let started = Instant::now();
        let response = sender.send_request(args.target.request()?).await?;
        if !response.status().is_success() {
            bail!("GET {}: {}", args.target.url, response.status());
        }
        let mut body = response.into_body();
        let mut seen = Vec::new();
        let mut first = None;
        while let Some(frame) = body.frame().await {
            let frame = frame.context("reading the event stream")?;
            if let (None, Some(data)) = (first, frame.data_ref()) {
                seen.extend_from_slice(data);
                if memmem::find(&seen, b"\n\n").is_some() {
                    first = Some(started.elapsed());
                }
            }
        }
        let first = first.context("the stream ended without an event")?;
        if i > 0 {
            samples.push(first);
        }
    }
    samples.sort();
    let pick = |q: f64| {
        let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples.get(i).copied().unwrap_or(Duration::ZERO)
    };
    println!(
        "{{\"n\":{},\"min_ms\":{:.4},\"p50_ms\":{:.4},\"p99_ms\":{:.4}}}",
        samples.len(),
        ms(pick(0.0)),
        ms(pick(0.5)),
        ms(pick(0.99))
    );
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
