//! `renc`, `check` and `edit`: the operator's subcommands.

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;
use nixseal::edit::{EditOutcome, NewContent};
use nixseal::identity::{self, Interaction, MasterIdentities};
use nixseal::profile::Profile;
use nixseal::rekey::{self, PairState, Plan};

use crate::ui::{self, BAD_INPUT, FAILED, OK};

/// Options shared by the subcommands that read a profile.
#[derive(Args, Debug)]
pub struct ProfileArgs {
    /// The fleet profile (JSON, version 1), as made by the flake module.
    #[arg(long, value_name = "FILE")]
    pub profile: PathBuf,
    /// The flake root: relative paths in the profile are taken from here.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub root: PathBuf,
}

/// Options for the master identity.
#[derive(Args, Debug)]
pub struct IdentityArgs {
    /// A master identity file (repeatable); replaces the profile's `identities`.
    #[arg(long = "identity", short = 'i', value_name = "FILE")]
    pub identities: Vec<PathBuf>,
    /// Read the passphrase of protected identities from this file's first line
    /// (works with /dev/fd/N). Never give a passphrase on the command line.
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
}

/// `nixseal renc`
#[derive(Args, Debug)]
pub struct RencArgs {
    #[command(flatten)]
    profile: ProfileArgs,
    #[command(flatten)]
    identity: IdentityArgs,
    /// Encrypt with this many threads (default: one per core).
    #[arg(long, short = 'j', value_name = "N")]
    jobs: Option<usize>,
    /// Show what would be generated, rekeyed or removed; change nothing, run no generator, read no identity.
    #[arg(long)]
    dry_run: bool,
}

/// `nixseal check`
#[derive(Args, Debug)]
pub struct CheckArgs {
    #[command(flatten)]
    profile: ProfileArgs,
}

/// `nixseal edit`
#[derive(Args, Debug)]
pub struct EditArgs {
    /// The age file to edit or create.
    file: PathBuf,
    /// Encrypt to the profile's master identities and extraRecipients.
    #[arg(long, value_name = "FILE", required_unless_present = "recipients")]
    profile: Option<PathBuf>,
    /// The flake root for the profile's relative paths.
    #[arg(long, value_name = "DIR", default_value = ".")]
    root: PathBuf,
    /// Encrypt to this recipient (repeatable): age1…, ssh-ed25519 …, or a plugin recipient.
    #[arg(long = "recipient", short = 'r', value_name = "RECIPIENT")]
    recipients: Vec<String>,
    #[command(flatten)]
    identity: IdentityArgs,
}

fn load_profile(args: &ProfileArgs) -> Result<Profile, ExitCode> {
    Profile::load(&args.profile, &args.root).map_err(|e| ui::fail(BAD_INPUT, e))
}

fn fix_hint(profile: &Path) -> String {
    format!(
        "run `nix run .#renc` (or `nixseal renc --profile {}`)",
        profile.display()
    )
}

fn load_identities(
    profile: Option<&Profile>,
    args: &IdentityArgs,
) -> Result<MasterIdentities, ExitCode> {
    let paths = if args.identities.is_empty() {
        profile.map(|p| p.identities.clone()).unwrap_or_default()
    } else {
        args.identities.clone()
    };
    let prompt: Arc<dyn Interaction> = Arc::new(ui::Prompt::new(args.passphrase_file.clone()));
    MasterIdentities::load(&paths, prompt).map_err(|e| ui::fail(BAD_INPUT, e))
}

/// Parses and builds recipients given as strings (`extraRecipients`,
/// `--recipient`), naming the first unusable one.
fn extra_recipients(
    list: &[String],
) -> Result<Vec<Box<dyn nixseal::age::Recipient + Send>>, ExitCode> {
    let mut parsed = Vec::new();
    for r in list {
        match identity::parse_recipient(r) {
            Ok(p) => parsed.push(p),
            Err(why) => {
                return Err(ui::fail(
                    BAD_INPUT,
                    format_args!("recipient {r:?} is not usable: {why}"),
                ))
            }
        }
    }
    let prompt: Arc<dyn Interaction> = Arc::new(ui::Prompt::new(None));
    identity::build_recipients(parsed, prompt).map_err(|e| ui::fail(BAD_INPUT, e))
}

/// Runs the generators of missing master files (before planning, so the new
/// files are rekeyed in the same run). Returns the number that failed.
fn generate_missing(
    profile: &Profile,
    pending: &[nixseal::generate::Pending],
    identities: &MasterIdentities,
) -> Result<usize, ExitCode> {
    let extra = extra_recipients(&profile.extra_recipients)?;
    let mut recipients: Vec<&dyn nixseal::age::Recipient> =
        extra.iter().map(|r| r.as_ref() as _).collect();
    recipients.extend(identities.recipients());
    let mut failed = 0;
    for p in pending {
        match nixseal::generate::generate(p, &profile.root, &recipients) {
            Ok(()) => eprintln!(
                "nixseal renc: generated {} with {} (used by {}); commit it",
                p.file,
                p.generator.display(),
                p.used_by.join(", ")
            ),
            Err(e) => {
                ui::error(format_args!("{e} (used by {})", p.used_by.join(", ")));
                failed += 1;
            }
        }
    }
    Ok(failed)
}

/// Whether a pair is blocked only because its master file does not exist yet
/// and a generator will make it.
fn awaits_generation(p: &rekey::Pair, pending: &[nixseal::generate::Pending]) -> bool {
    matches!(
        p.state,
        PairState::Blocked(rekey::PairError::SourceUnreadable { .. })
    ) && pending.iter().any(|g| g.source == p.source)
}

/// Prints the pairs `show` selects (rekey or error) and every removal.
fn print_plan(plan: &Plan, show: impl Fn(&rekey::Pair) -> bool) {
    for p in plan.pairs.iter().filter(|p| show(p)) {
        match &p.state {
            PairState::Current => {}
            PairState::Stale(why) => println!("rekey  {}/{} ({why})", p.host, p.secret),
            PairState::Blocked(e) => println!("error  {}/{}: {e}", p.host, p.secret),
        }
    }
    for r in &plan.removals {
        println!("remove {}", r.path.display());
    }
}

fn warn_plan(plan: &Plan) {
    for w in &plan.warnings {
        match w {
            rekey::Warning::InvalidCache { path, reason } => ui::warn(format_args!(
                "rekey cache {} is unreadable ({reason}); that host's outputs are rewritten",
                path.display()
            )),
            rekey::Warning::ForeignDir { path } => ui::warn(format_args!(
                "{} is not a host of the profile and was not made by nixseal; left alone",
                path.display()
            )),
            _ => {}
        }
    }
}

/// Warns about sources, outputs and caches git does not track. `outputs` are
/// the rekeyed files known to exist (from the plan and the outcome: no stat).
fn warn_untracked(profile: &Profile, outputs: Vec<PathBuf>) {
    let mut paths: Vec<PathBuf> = outputs;
    for h in profile.hosts.values() {
        // The NixOS module reads the cache at evaluation: it must be tracked too.
        let cache =
            rekey::host_dir(&profile.rekeyed_dir, h.name.as_str()).join(rekey::cache::CACHE_FILE);
        if cache.exists() {
            paths.push(cache);
        }
        paths.extend(h.secrets.values().map(|s| s.source.clone()));
    }
    paths.sort();
    paths.dedup();
    if let Some(untracked) = nixseal::git::untracked(&profile.root, &paths) {
        if !untracked.is_empty() {
            let list: Vec<String> = untracked.iter().map(|p| p.display().to_string()).collect();
            ui::warn(format_args!(
                "{} file(s) are not tracked by git, and flakes see tracked files only:\n  {}\n  run: git add {}",
                list.len(),
                list.join("\n  "),
                list.join(" ")
            ));
        }
    }
}

/// Loads the profile and plans the rekey (no identity), printing plan warnings.
fn profile_and_plan(args: &ProfileArgs) -> Result<(Profile, Plan), ExitCode> {
    let profile = load_profile(args)?;
    let plan = rekey::plan(&profile).map_err(|e| ui::fail(BAD_INPUT, e))?;
    warn_plan(&plan);
    Ok((profile, plan))
}

pub fn renc(args: RencArgs) -> ExitCode {
    let profile = match load_profile(&args.profile) {
        Ok(p) => p,
        Err(c) => return c,
    };
    // Missing master files with a generator are made first (needs the
    // identities, for the master recipients), then everything is planned.
    let pending = nixseal::generate::pending(&profile);
    let mut identities = None;
    let mut generate_failed = 0;
    if !pending.is_empty() {
        if args.dry_run {
            for p in &pending {
                println!("generate {} with {}", p.file, p.generator.display());
            }
        } else {
            let ids = match load_identities(Some(&profile), &args.identity) {
                Ok(i) => i,
                Err(c) => return c,
            };
            generate_failed = match generate_missing(&profile, &pending, &ids) {
                Ok(n) => n,
                Err(c) => return c,
            };
            identities = Some(ids);
        }
    }
    let plan = match rekey::plan(&profile) {
        Ok(p) => p,
        Err(e) => return ui::fail(BAD_INPUT, e),
    };
    warn_plan(&plan);
    if args.dry_run {
        // A pair whose source a generator will make is rekeyed after it.
        let later = |p: &rekey::Pair| awaits_generation(p, &pending);
        for p in plan.pairs.iter().filter(|p| later(p)) {
            println!(
                "rekey  {}/{} (after generating its master file)",
                p.host, p.secret
            );
        }
        print_plan(&plan, |p| !later(p));
        let generated = plan.pairs.iter().filter(|p| later(p)).count();
        let stale = plan.stale().count() + generated;
        let blocked = plan.blocked().count() - generated;
        println!(
            "dry run: {} to generate, {stale} to rekey, {} to remove, {blocked} failing, {} current",
            pending.len(),
            plan.removals.len(),
            plan.pairs.len() - stale - blocked
        );
        return ExitCode::from(if blocked > 0 { FAILED } else { OK });
    }
    // No identity is read unless something must be decrypted or generated:
    // a no-op run never prompts for a passphrase or touches a YubiKey.
    if identities.is_none() && plan.needs_identity() {
        match load_identities(Some(&profile), &args.identity) {
            Ok(i) => identities = Some(i),
            Err(c) => return c,
        }
    }
    let mut present: Vec<PathBuf> = plan
        .pairs
        .iter()
        .filter(|p| matches!(p.state, PairState::Current))
        .map(|p| p.output.clone())
        .collect();
    let total = plan.stale().count() as u64;
    let bar = (total > 0 && std::io::stderr().is_terminal()).then(|| {
        let b = indicatif::ProgressBar::new(total);
        b.set_style(
            indicatif::ProgressStyle::with_template("rekeying {bar:30} {pos}/{len} {elapsed}")
                .expect("static template"),
        );
        b
    });
    let tick = || {
        if let Some(b) = &bar {
            b.inc(1);
        }
    };
    let outcome = rekey::execute(
        plan,
        identities.as_ref(),
        rekey::ExecuteOptions { jobs: args.jobs },
        &tick,
    );
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => return ui::fail(FAILED, e),
    };
    for f in &outcome.failed {
        ui::error(format_args!("{}/{}: {}", f.host, f.secret, f.error));
    }
    println!(
        "nixseal renc: {} rekeyed, {} unchanged, {} removed, {} failed",
        outcome.rekeyed.len(),
        outcome.unchanged,
        outcome.removed.len(),
        outcome.failed.len()
    );
    present.extend(outcome.rekeyed.iter().map(|(host, secret)| {
        rekey::host_dir(&profile.rekeyed_dir, host.as_str())
            .join(format!("{secret}{}", rekey::OUTPUT_SUFFIX))
    }));
    warn_untracked(&profile, present);
    if outcome.failed.is_empty() && generate_failed == 0 {
        ExitCode::from(OK)
    } else {
        ExitCode::from(FAILED)
    }
}

pub fn check(args: CheckArgs) -> ExitCode {
    let (profile, plan) = match profile_and_plan(&args.profile) {
        Ok(v) => v,
        Err(c) => return c,
    };
    if plan.is_current() {
        println!(
            "nixseal check: all {} rekeyed outputs are current",
            plan.pairs.len()
        );
        warn_untracked(
            &profile,
            plan.pairs.iter().map(|p| p.output.clone()).collect(),
        );
        return ExitCode::from(OK);
    }
    let hint = fix_hint(&args.profile.profile);
    let pending = nixseal::generate::pending(&profile);
    let mut n = 0;
    for p in &plan.pairs {
        match &p.state {
            PairState::Current => {}
            PairState::Stale(why) => {
                n += 1;
                println!("{}/{}: {why}; {hint}", p.host, p.secret);
            }
            PairState::Blocked(_) if awaits_generation(p, &pending) => {
                n += 1;
                println!(
                    "{}/{}: its master file {} does not exist yet and has a generator; {hint} (it generates and rekeys it)",
                    p.host,
                    p.secret,
                    p.source.display()
                );
            }
            PairState::Blocked(e) => {
                n += 1;
                println!("{}/{}: {e}", p.host, p.secret);
            }
        }
    }
    for r in &plan.removals {
        n += 1;
        println!(
            "{}: left over (its host or secret left the profile); {hint}",
            r.path.display()
        );
    }
    ui::error(format_args!("{n} rekeyed output(s) are not current"));
    ExitCode::from(FAILED)
}

pub fn edit(args: EditArgs) -> ExitCode {
    let profile = match &args.profile {
        Some(p) => match Profile::load(p, &args.root) {
            Ok(p) => Some(p),
            Err(e) => return ui::fail(BAD_INPUT, e),
        },
        None => None,
    };
    let have_ids = !args.identity.identities.is_empty()
        || profile.as_ref().is_some_and(|p| !p.identities.is_empty());
    // Identities are needed to open an existing file, and (with a profile)
    // to know the master recipients.
    let identities = if have_ids {
        match load_identities(profile.as_ref(), &args.identity) {
            Ok(i) => Some(i),
            Err(c) => return c,
        }
    } else {
        None
    };
    let mut extra = args.recipients.clone();
    if let Some(p) = &profile {
        extra.extend(p.extra_recipients.iter().cloned());
    }
    let extra = match extra_recipients(&extra) {
        Ok(r) => r,
        Err(c) => return c,
    };
    let mut recipients: Vec<&dyn nixseal::age::Recipient> =
        extra.iter().map(|r| r.as_ref() as _).collect();
    if profile.is_some() {
        if let Some(ids) = &identities {
            recipients.extend(ids.recipients());
        }
    }
    let content = if std::io::stdin().is_terminal() {
        let editor = std::env::var("EDITOR")
            .or_else(|_| std::env::var("VISUAL"))
            .unwrap_or_else(|_| "vi".into());
        NewContent::Editor(editor)
    } else {
        let mut buf = zeroize::Zeroizing::new(Vec::new());
        if let Err(e) = std::io::stdin().read_to_end(&mut buf) {
            return ui::fail(
                FAILED,
                format_args!("cannot read the new content from stdin: {e}"),
            );
        }
        NewContent::Given(buf)
    };
    match nixseal::edit::edit(&args.file, identities.as_ref(), &recipients, content) {
        Ok(outcome) => {
            let f = args.file.display();
            match outcome {
                EditOutcome::Created => eprintln!("nixseal edit: created {f}"),
                EditOutcome::Updated => {
                    eprintln!("nixseal edit: updated {f}; run `nix run .#renc` to rekey it")
                }
                EditOutcome::Unchanged => eprintln!("nixseal edit: {f} unchanged, not rewritten"),
                EditOutcome::EmptyNotCreated => {
                    eprintln!("nixseal edit: empty content, {f} not created")
                }
            }
            ExitCode::from(OK)
        }
        Err(e) => {
            let code = match e {
                nixseal::edit::EditError::NoRecipients { .. }
                | nixseal::edit::EditError::NeedIdentity { .. }
                | nixseal::edit::EditError::NotPlain { .. } => BAD_INPUT,
                _ => FAILED,
            };
            ui::fail(code, e)
        }
    }
}
