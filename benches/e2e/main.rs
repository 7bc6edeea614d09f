//! The end-to-end benchmark's helper, driven by `benches/e2e.sh`:
//!
//! * `pki`: a test root and a leaf for the upstream's names (written as PEM files);
//! * `upstream`: the one local HTTPS upstream every scenario talks to;
//! * `sse`: time to the first server-sent event, directly or through a proxy;
//! * `idle`: a proxy's resident memory per idle intercepted connection;
//! * `free-port`: an unused loopback port.
//!
//! The load itself comes from a third-party generator (oha); this binary only does what
//! no load generator measures. `cargo bench` runs it with no subcommand: it does nothing.

mod client;
mod idle;
mod pki;
mod sse;
mod upstream;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "keygate end-to-end benchmark helper (see benches/e2e.sh)")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Write a test root and an upstream leaf for the given names.
    Pki(pki::Args),
    /// Serve the benchmark routes over HTTPS.
    Upstream(upstream::Args),
    /// Measure time to the first server-sent event.
    Sse(sse::Args),
    /// Measure a proxy's RSS per idle intercepted connection.
    Idle(idle::Args),
    /// Print an unused TCP port on 127.0.0.1.
    FreePort,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        None => {
            eprintln!("e2e: the end-to-end helper; run benches/e2e.sh (see docs/PERFORMANCE.md)");
            Ok(())
        }
        Some(Command::Pki(args)) => pki::run(&args),
        Some(Command::Upstream(args)) => upstream::run(&args),
        Some(Command::Sse(args)) => client::runtime()?.block_on(sse::run(&args)),
        Some(Command::Idle(args)) => client::runtime()?.block_on(idle::run(&args)),
        Some(Command::FreePort) => {
            let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
            println!("{}", listener.local_addr()?.port());
            Ok(())
        }
    }
}
