//! `nixseal deploy`: the host side. Thin: parse, call the library, print, exit.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use nixseal::activate::{self, DeployError, DeployOptions, SessionError};

use crate::hints;
use crate::ui::{CliError, CmdResult, Done};

/// Exit codes of `nixseal deploy` (also in docs/host.md).
pub const EXIT_CODES: &str = "Exit codes: 0 ok; 1 a secret (or a step after the switch) failed, \
the previous generation is kept if the switch did not happen; 2 bad manifest or usage, nothing \
touched; 3 environment (mount point, lock, host key, /etc/passwd, state directory, an existing \
file where the symlink goes), nothing switched.";

/// Decrypt this host's secrets from its manifest into a new generation and switch to it.
#[derive(Debug, Args)]
#[command(after_help = EXIT_CODES)]
pub struct DeployArgs {
    /// The host manifest (JSON, version 1) made by the NixOS module.
    #[arg(long, value_name = "FILE")]
    pub manifest: PathBuf,
    /// Prove that every secret decrypts with the host key and every template
    /// renders; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not restart or reload the units of changed secrets.
    #[arg(long)]
    pub no_restart: bool,
    /// Install only `neededForUsers` secrets (root-owned, before user accounts exist).
    #[arg(long, conflicts_with = "user_session")]
    pub users: bool,
    /// Deploy a user-session manifest (home-manager module) as its user, never
    /// root: into $XDG_RUNTIME_DIR, restarting user units (`systemctl --user`).
    #[arg(long)]
    pub user_session: bool,
}

/// Runs the subcommand and maps the outcome to the documented exit code.
pub fn run(args: DeployArgs) -> CmdResult {
    let opts = DeployOptions {
        dry_run: args.dry_run,
        no_restart: args.no_restart,
        users: args.users,
        user_session: args.user_session,
    };
    // Plaintext in this process's memory stays out of swap where the kernel
    // lets us lock it (root has CAP_IPC_LOCK); see docs/threat-model.md.
    if let Err(e) = nixseal::hardening::lock_memory() {
        eprintln!("nixseal: warning: cannot lock memory ({e}); decrypted secrets may be swapped out while deploy runs");
    }
    match activate::deploy(&args.manifest, &opts) {
        Ok(r) => {
            for w in &r.warnings {
                eprintln!("nixseal: warning: {w}");
            }
            if args.dry_run {
                eprintln!(
                    "nixseal: dry run: {} secret(s) decrypt and {} template(s) render; nothing written",
                    r.secrets, r.templates
                );
            } else {
                report(&r);
            }
            Ok(Done::Ok)
        }
        Err(e) => {
            if let DeployError::Finish { report: r, .. } = &e {
                for w in &r.warnings {
                    eprintln!("nixseal: warning: {w}");
                }
                report(r);
            }
            let notes = notes_of(&e);
            let mut err = CliError::from(e).prefix("nixseal deploy");
            for note in notes {
                err = err.note(note);
            }
            Err(err)
        }
    }
}

/// What `nixseal deploy` adds after an error: what was (not) touched, and
/// what to do about failures inside it.
fn notes_of(e: &DeployError) -> Vec<&'static str> {
    let mut notes = hints::deploy_notes(e);
    let hint = match e {
        DeployError::Manifest(_) | DeployError::Source { .. } => {
            Some("nothing was touched; fix the configuration and rebuild")
        }
        DeployError::Session(
            SessionError::Root
            | SessionError::UserManifest { .. }
            | SessionError::RuntimeDir { .. },
        ) => Some("nothing was touched"),
        DeployError::Session(_) => Some("the previous generation is still active"),
        DeployError::Secrets { .. }
        | DeployError::Generation { .. }
        | DeployError::Placement { .. }
        | DeployError::Occupied { .. }
        | DeployError::Mount(_)
        | DeployError::Lock(_)
        | DeployError::State(_) => Some("the previous generation is still active"),
        _ => None,
    };
    if let Some(h) = hint {
        notes.insert(0, h);
    }
    notes
}

fn report(r: &activate::DeployReport) {
    if let Some(g) = r.generation {
        eprintln!(
            "nixseal: {} secret(s), {} template(s) in generation {g} ({}/{g} <- {}){}",
            r.secrets,
            r.templates,
            r.mount_point,
            r.symlink,
            if r.mounted { ", ramfs mounted" } else { "" }
        );
    }
    if r.previous.is_none() && r.generation.is_some() {
        // A first deployment: every secret is new; no list of hundreds of names.
        eprintln!("nixseal: no previous generation: every secret is new");
    } else if !r.changed.is_empty() {
        eprintln!("nixseal: changed: {}", r.changed.join(" "));
    }
    for p in &r.removed {
        eprintln!("nixseal: removed {p} (no longer configured)");
    }
    for p in &r.left_alone {
        eprintln!("nixseal: warning: left alone (no longer configured, but not what nixseal placed there): {p}");
    }
    if !r.owed.is_empty() {
        eprintln!("nixseal: owed by an earlier deploy: {}", r.owed.join(" "));
    }
    if !r.restarted.is_empty() {
        eprintln!("nixseal: restarted: {}", r.restarted.join(" "));
    }
    if !r.reloaded.is_empty() {
        eprintln!("nixseal: reloaded: {}", r.reloaded.join(" "));
    }
    if let Some(why) = r.units_skipped {
        eprintln!("nixseal: units not restarted/reloaded ({why})");
    }
    if !r.pruned.is_empty() {
        let p: Vec<String> = r.pruned.iter().map(u64::to_string).collect();
        eprintln!("nixseal: pruned generation(s) {}", p.join(" "));
    }
}

/// Exit codes of `nixseal manifest check`.
pub const CHECK_EXIT_CODES: &str = "Exit codes: 0 the manifest is valid (warnings, if any, on \
stderr); 2 it is not (every problem is listed), or usage.";

/// `nixseal manifest …`
#[derive(Debug, Subcommand)]
pub enum ManifestCommand {
    /// Validate a host manifest as `nixseal deploy` does before touching
    /// anything — names, paths, modes, units, templates, host keys, for the
    /// main and the `--users` run — but without the host: whether owners and
    /// groups exist is left to deploy. The NixOS module runs it when it
    /// builds the manifest.
    #[command(after_help = CHECK_EXIT_CODES)]
    Check {
        /// The host manifest (JSON, version 1).
        #[arg(value_name = "FILE")]
        manifest: PathBuf,
    },
}

/// Runs `nixseal manifest …`.
pub fn manifest(command: ManifestCommand) -> CmdResult {
    match command {
        ManifestCommand::Check { manifest } => {
            let m = nixseal::manifest::Manifest::load(&manifest)?;
            for w in m.check(&manifest)? {
                eprintln!("nixseal: warning: {w}");
            }
            println!(
                "nixseal manifest check: {} is a valid version-1 host manifest ({} secret(s), {} template(s))",
                manifest.display(),
                m.secrets.len(),
                m.templates.len()
            );
            Ok(Done::Ok)
        }
    }
}
