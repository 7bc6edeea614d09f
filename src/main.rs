//! The `keygate` binary: parse arguments, run a command, map failures to exit codes
//! (0 ok, 1 runtime failure, 2 usage or configuration error).

mod cli;
mod commands;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    keygate::home::make_undumpable();
    let cli = cli::Cli::parse();
    // `run` and `env` share the terminal with a child or a shell: warnings only by default.
    let quiet = matches!(
        cli.command,
        cli::Command::Run(_)
            | cli::Command::Env { .. }
            | cli::Command::Doctor
            | cli::Command::JailInit(_)
    );
    commands::init_logging(cli.verbose, cli.log_format, quiet);
    match commands::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            eprintln!("keygate: {:#}", failure.error);
            ExitCode::from(failure.code)
        }
    }
}
