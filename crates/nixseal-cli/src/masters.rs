//! `nixseal rekey-masters` (alias `updatekeys`): output and exit code for
//! [`nixseal::masters`].

use std::sync::Arc;

use clap::Args;
use nixseal::masters::{MasterState, MastersOptions, MastersOutcome};
use nixseal::profile::Profile;

use crate::operator::{IdentityArgs, ProfileArgs};
use crate::ui::{self, CmdResult, Done};

/// `nixseal rekey-masters`
#[derive(Args, Debug)]
pub struct MastersArgs {
    #[command(flatten)]
    profile: ProfileArgs,
    #[command(flatten)]
    identity: IdentityArgs,
    /// List the master files that would be rewritten and why; change nothing, read no identity.
    #[arg(long)]
    dry_run: bool,
}

pub fn run(args: MastersArgs) -> CmdResult {
    let profile = Profile::load(&args.profile.profile, &args.profile.root)?;
    let opts = MastersOptions {
        decrypt_with: &args.identity.identities,
        interaction: Arc::new(ui::Prompt::new(args.identity.passphrase_file.clone())),
        dry_run: args.dry_run,
    };
    let outcome = nixseal::masters::rekey_masters(&profile, &opts, &|p| {
        crate::operator::waiting_for_lock(p)
    })?;
    match outcome {
        MastersOutcome::DryRun(plan) => {
            if let Some(w) = &plan.record_warning {
                ui::warn(w);
            }
            let (mut rewrite, mut current, mut failing, mut waiting) = (0, 0, 0, 0);
            for f in &plan.files {
                match &f.state {
                    MasterState::Current => current += 1,
                    MasterState::AwaitsGeneration => {
                        waiting += 1;
                        println!("skip    {} ({})", f.file, f.state)
                    }
                    MasterState::Failing { .. } => {
                        failing += 1;
                        println!("error   {}: {}", f.file, f.state)
                    }
                    s => {
                        rewrite += 1;
                        println!("rewrite {} ({s})", f.file)
                    }
                }
            }
            println!("recipients: {}", plan.wanted.join(", "));
            println!(
                "dry run: {rewrite} to rewrite, {current} current, {failing} failing, {waiting} to generate"
            );
            Ok(if failing > 0 { Done::Failed } else { Done::Ok })
        }
        MastersOutcome::Done(report) => {
            if let Some(w) = &report.record_warning {
                ui::warn(w);
            }
            for t in &report.removed_temps {
                ui::warn(format_args!(
                    "removed {}, a temp file left by an interrupted earlier run",
                    t.display()
                ));
            }
            for (file, why) in &report.failed {
                ui::error(format_args!("{file}: {why}"));
            }
            println!(
                "nixseal rekey-masters: {} rewritten, {} unchanged, {} failed",
                report.rewritten.len(),
                report.unchanged,
                report.failed.len()
            );
            if !report.rewritten.is_empty() {
                eprintln!(
                    "nixseal rekey-masters: commit the rewritten files and {}/.nixseal-masters.json, then run `nix run .#renc` to rekey the hosts' copies. Old ciphertexts in git history are still readable by a removed key: rotate the secret values themselves if it leaked",
                    profile.rekeyed_dir_rel.trim_end_matches('/')
                );
            }
            Ok(if report.failed.is_empty() {
                Done::Ok
            } else {
                Done::Failed
            })
        }
    }
}
