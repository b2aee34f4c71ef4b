//! `nixseal status`: output and exit code for [`nixseal::status`].

use std::path::PathBuf;

use clap::Args;
use nixseal::profile::Profile;
use nixseal::status::{self, SecretState};

use crate::ui::{CliError, CmdResult, Done};

/// Arguments of `nixseal status`.
#[derive(Args, Debug)]
pub struct StatusArgs {
    /// The fleet profile (JSON, version 1), as made by the flake module.
    #[arg(long, value_name = "FILE")]
    profile: PathBuf,
    /// The flake root: relative paths in the profile are taken from here.
    #[arg(long, value_name = "DIR", default_value = ".")]
    root: PathBuf,
    /// A host and its running or built manifest: the manifest file, or a NixOS
    /// system such as /run/current-system or a `nixos-rebuild build` result
    /// (repeatable).
    #[arg(long = "manifest", value_name = "HOST=PATH", required = true)]
    manifests: Vec<String>,
    /// Print the comparison as JSON (docs/json.md) on stdout; same exit codes.
    #[arg(long)]
    json: bool,
}

pub fn status(args: StatusArgs) -> CmdResult {
    let profile = Profile::load(&args.profile, &args.root)?;
    let mut reports = Vec::new();
    for m in &args.manifests {
        let Some((host, path)) = m.split_once('=') else {
            return Err(CliError::usage(format!(
                "--manifest {m:?}: expected HOST=PATH, e.g. web1=/run/current-system"
            )));
        };
        reports.push(status::host_status(&profile, host, path.as_ref())?);
    }
    if args.json {
        let doc = nixseal::report::status_json(&reports);
        crate::operator::print_json(serde_json::to_string(&doc))?;
        return Ok(if doc.redeploy.is_empty() {
            Done::Ok
        } else {
            Done::Failed
        });
    }
    let mut stale = 0;
    for r in &reports {
        if r.needs_redeploy() {
            stale += 1;
            println!("{}: runs stale secrets; redeploy {}", r.host, r.host);
        } else {
            println!("{}: current", r.host);
        }
        for (name, state) in &r.secrets {
            match state {
                SecretState::Current => {}
                SecretState::Stale { running, expected } => {
                    println!("  {name}: runs {running}, the working tree has {expected}")
                }
                SecretState::NotDeployed { expected } => {
                    println!("  {name}: not deployed yet (would be {expected})")
                }
                SecretState::Removed { running } => {
                    println!("  {name}: still deployed ({running}) but no longer in the profile")
                }
                SecretState::NotRekeyed { path } => println!(
                    "  {name}: {} is missing; run `nix run .#renc` first",
                    path.display()
                ),
                _ => println!("  {name}: needs a redeploy"),
            }
        }
    }
    if stale > 0 {
        println!("{stale} of {} host(s) need a redeploy", reports.len());
        Ok(Done::Failed)
    } else {
        Ok(Done::Ok)
    }
}
