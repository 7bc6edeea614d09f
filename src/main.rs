//! The `keygate` binary: parse arguments, run a command, map failures to exit codes
//! (0 ok, 1 runtime failure, 2 usage or configuration error).

mod cli;
mod commands;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    commands::init_logging(cli.verbose, cli.log_format);
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("keygate: {:#}", failure.error);
            ExitCode::from(failure.code)
        }
    }
}
