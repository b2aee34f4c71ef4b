//! The `nixseal` binary: argument parsing, output and exit codes only; all
//! behaviour is in the `nixseal` library.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

mod audit;
mod deploy;
mod hints;
mod masters;
mod operator;
mod status;
mod ui;

const EXIT_CODES: &str = "Exit codes:
  0  success
  1  the operation failed (a secret could not be rekeyed, decrypted or written)
  2  bad input or usage (arguments, profile, manifest, identity files)
  3  environment not fit (deploy: mount point, lock, host key; renc, edit: the flake's lock)";

/// Secrets for NixOS fleets: rekey master secrets to host keys, deploy them at activation.
#[derive(Parser, Debug)]
#[command(name = "nixseal", version, after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Rekey every host's secrets to its ssh-ed25519 host key (only what changed); first generate missing master files that have a generator.
    #[command(after_help = EXIT_CODES)]
    Renc(operator::RencArgs),
    /// Exit 1 listing every rekeyed output that is missing or stale; needs no identity.
    #[command(after_help = EXIT_CODES)]
    Check(operator::CheckArgs),
    /// Re-encrypt master secrets to the profile's master recipients (identityRecipients + extraRecipients); only files whose recipients differ are rewritten.
    #[command(visible_alias = "updatekeys", after_help = EXIT_CODES)]
    RekeyMasters(masters::MastersArgs),
    /// Edit or create a master secret (new content from stdin when it is not a terminal).
    #[command(after_help = EXIT_CODES)]
    Edit(operator::EditArgs),
    /// Decrypt this host's secrets into a new generation and switch to it (run at activation).
    Deploy(deploy::DeployArgs),
    /// Host manifests: `manifest check FILE` validates one as deploy would, without the host.
    #[command(subcommand)]
    Manifest(deploy::ManifestCommand),
    /// Compare hosts' running or built manifests with the working tree; exit 1 if any needs a redeploy.
    #[command(after_help = EXIT_CODES)]
    Status(status::StatusArgs),
    /// Exit 1 naming every store path of a host's built system that carries secret material not its own (the flake source, master ciphertexts, other hosts' files).
    #[command(after_help = audit::EXIT_CODES)]
    Audit(audit::AuditArgs),
    /// Print shell completions (bash, zsh, fish, elvish, powershell) to stdout.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) to stdout.
    Man,
}

fn main() -> ExitCode {
    let result = run();
    match result {
        Ok(done) => ExitCode::from(done.code()),
        Err(e) => {
            e.print();
            ExitCode::from(e.code())
        }
    }
}

/// Parses the command line and runs the subcommand; every error comes back
/// here and is printed once, by `main`.
fn run() -> ui::CmdResult {
    // Before anything can hold plaintext: no core dump may write it to disk.
    if let Err(e) = nixseal::hardening::no_core_dumps() {
        return Err(ui::CliError::with_class(
            nixseal::ErrorClass::Environment,
            format_args!("cannot disable core dumps ({e}); refusing to handle secrets"),
        ));
    }
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // clap prints usage errors (and --help, --version) itself.
            let _ = e.print();
            return Ok(if e.use_stderr() {
                ui::Done::Usage
            } else {
                ui::Done::Ok
            });
        }
    };
    // The operator commands plan and encrypt on a pool of a bounded size
    // (`--jobs`, or one thread per core), whatever RAYON_NUM_THREADS says.
    let jobs = match &cli.command {
        Command::Renc(a) => Some(a.jobs()),
        Command::Check(_) | Command::Edit(_) | Command::Status(_) | Command::RekeyMasters(_) => {
            Some(None)
        }
        _ => None,
    };
    if let Some(jobs) = jobs {
        nixseal::rekey::init_threads(jobs)?;
    }
    match cli.command {
        Command::Renc(a) => operator::renc(a),
        Command::Check(a) => operator::check(a),
        Command::Edit(a) => operator::edit(a),
        Command::RekeyMasters(a) => masters::run(a),
        Command::Deploy(a) => deploy::run(a),
        Command::Manifest(c) => deploy::manifest(c),
        Command::Status(a) => status::status(a),
        Command::Audit(a) => audit::run(a),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "nixseal",
                &mut std::io::stdout(),
            );
            Ok(ui::Done::Ok)
        }
        Command::Man => {
            clap_mangen::Man::new(Cli::command())
                .render(&mut std::io::stdout())
                .map_err(|e| {
                    ui::CliError::with_class(
                        nixseal::ErrorClass::Failed,
                        format_args!("cannot write the man page: {e}"),
                    )
                })?;
            Ok(ui::Done::Ok)
        }
    }
}
