//! The `nixseal` binary: argument parsing and exit codes only.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod deploy;

/// nixseal: secrets for NixOS fleets.
#[derive(Debug, Parser)]
#[command(name = "nixseal", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Decrypt this host's secrets (run by nixseal-activate.service).
    Deploy(deploy::DeployArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    match cli.command {
        Command::Deploy(args) => deploy::run(args),
    }
}
