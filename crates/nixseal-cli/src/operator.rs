//! `renc`, `check` and `edit`: the operator's subcommands.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;
use nixseal::edit::{EditError, EditOptions, EditOutcome, NewContent};
use nixseal::identity::{self, Interaction, MasterIdentities};
use nixseal::profile::Profile;
use nixseal::rekey::{self, PairError, PairState, Plan};

use crate::ui::{self, BAD_INPUT, ENVIRONMENT, FAILED, OK};

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
    /// An identity file to decrypt with (repeatable), instead of the
    /// profile's `identities`; what is written is still encrypted to every
    /// identity of the profile (plus extraRecipients).
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
    /// Encrypt with this many threads, 1 to 1024 (default: one per core).
    #[arg(long, short = 'j', value_name = "N", value_parser = parse_jobs)]
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
    /// Store empty content (by default empty content, e.g. from a failed
    /// `producer | nixseal edit`, is refused and nothing is written).
    #[arg(long)]
    allow_empty: bool,
    #[command(flatten)]
    identity: IdentityArgs,
}

impl RencArgs {
    /// `--jobs`, if given.
    pub fn jobs(&self) -> Option<usize> {
        self.jobs
    }
}

fn parse_jobs(s: &str) -> Result<usize, String> {
    let n: usize = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of threads"))?;
    if n == 0 || n > rekey::MAX_JOBS {
        return Err(format!(
            "{n} threads: give 1 to {} (leave --jobs out for one per core)",
            rekey::MAX_JOBS
        ));
    }
    Ok(n)
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

/// Loads identity files: `master` ones (their recipients are what master
/// files are encrypted to) and `decrypt_only` ones (`-i`).
fn load_identities(
    master: &[PathBuf],
    decrypt_only: &[PathBuf],
    args: &IdentityArgs,
) -> Result<MasterIdentities, ExitCode> {
    let prompt: Arc<dyn Interaction> = Arc::new(ui::Prompt::new(args.passphrase_file.clone()));
    MasterIdentities::load_split(master, decrypt_only, prompt).map_err(|e| ui::fail(BAD_INPUT, e))
}

/// The master identities of a profile: its `identities`, or the `-i` files
/// when it names none.
fn master_files<'a>(profile: &'a Profile, args: &'a IdentityArgs) -> &'a [PathBuf] {
    if profile.identities.is_empty() {
        &args.identities
    } else {
        &profile.identities
    }
}

/// Takes the flake's operator lock, saying so if another run holds it.
fn lock(root: &Path) -> Result<rekey::lock::OperatorLock, ExitCode> {
    rekey::lock::acquire(root, &|path| {
        eprintln!(
            "nixseal: waiting for another nixseal renc or edit of this flake to finish (lock {})",
            path.display()
        )
    })
    .map_err(|e| ui::fail(ENVIRONMENT, e))
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

/// Prints the pairs `show` selects (rekey or error), every blocked host and
/// every removal.
fn print_plan(plan: &Plan, show: impl Fn(&rekey::Pair) -> bool) {
    for h in &plan.host_errors {
        println!("error  {}: {}", h.host, h.error);
    }
    for p in plan.pairs.iter().filter(|p| show(p)) {
        match &p.state {
            PairState::Current => {}
            PairState::Blocked(PairError::HostBlocked { .. }) => {}
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
            rekey::Warning::SharedHostKey { key, hosts } => ui::warn(format_args!(
                "hosts {} have the same hostPubkey ({key}): each of them can decrypt the others' rekeyed secrets; give every host its own key (`ssh-keyscan -t ed25519 HOST`)",
                hosts.iter().map(|h| h.as_str()).collect::<Vec<_>>().join(", ")
            )),
            rekey::Warning::UnusableHostKey { host, error } => ui::warn(format_args!(
                "host {host} has no secrets yet, and its key is not usable: {error}"
            )),
            _ => {}
        }
    }
}

/// Sources, outputs and caches git does not track (flakes see tracked files
/// only), relative to the flake root. `outputs` are the rekeyed files known
/// to exist (from the plan and the outcome: no stat). `None` outside git.
fn untracked(profile: &Profile, outputs: Vec<PathBuf>) -> Option<Vec<PathBuf>> {
    let mut paths: Vec<PathBuf> = outputs;
    let mut sources: Vec<&PathBuf> = Vec::new();
    for h in profile.hosts.values() {
        // The NixOS module reads the cache at evaluation: it must be tracked too.
        let cache =
            rekey::host_dir(&profile.rekeyed_dir, h.name.as_str()).join(rekey::cache::CACHE_FILE);
        if cache.is_file() {
            paths.push(cache);
        }
        sources.extend(h.secrets.values().map(|s| &s.source));
    }
    // Each distinct source once; one that does not exist is not "untracked".
    // (Sorted as bytes, not path components: cheap for big fleets.)
    sources.sort_unstable_by(|a, b| a.as_os_str().cmp(b.as_os_str()));
    sources.dedup();
    paths.extend(sources.into_iter().filter(|s| s.is_file()).cloned());
    paths.sort_unstable_by(|a, b| a.as_os_str().cmp(b.as_os_str()));
    paths.dedup();
    nixseal::git::untracked(&profile.root, &paths)
}

/// The `git add` that makes `paths` (relative to the flake root) visible.
fn git_add(profile: &Profile, paths: &[PathBuf]) -> String {
    let list: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    let root = &profile.root;
    if root == Path::new(".") || root.as_os_str().is_empty() {
        format!("git add {}", list.join(" "))
    } else {
        format!("git -C {} add {}", root.display(), list.join(" "))
    }
}

/// Warns about sources, outputs and caches git does not track.
fn warn_untracked(profile: &Profile, outputs: Vec<PathBuf>) {
    if let Some(untracked) = untracked(profile, outputs) {
        if !untracked.is_empty() {
            let list: Vec<String> = untracked.iter().map(|p| p.display().to_string()).collect();
            ui::warn(format_args!(
                "{} file(s) are not tracked by git, and flakes see tracked files only:\n  {}\n  run: {}",
                list.len(),
                list.join("\n  "),
                git_add(profile, &untracked)
            ));
        }
    }
}

/// Prints a failed run's host and pair failures.
fn report_failures(outcome: &rekey::Outcome) {
    for h in &outcome.host_failures {
        ui::error(format_args!("{}: {}", h.host, h.error));
    }
    for f in &outcome.failed {
        ui::error(format_args!("{}/{}: {}", f.host, f.secret, f.error));
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
    // One renc or edit of this flake at a time (a dry run changes nothing).
    let _lock = if args.dry_run {
        None
    } else {
        match lock(&profile.root) {
            Ok(l) => Some(l),
            Err(c) => return c,
        }
    };
    // Everything that can be known up front is checked before the first
    // write, generators included.
    if let Err(e) = rekey::check_layout_with(&profile, &args.identity.identities) {
        return ui::fail(BAD_INPUT, e);
    }
    let pending = nixseal::generate::pending(&profile);
    let mut identities = None;
    let mut generate_failed = 0;
    if !pending.is_empty() {
        if args.dry_run {
            for p in &pending {
                println!("generate {} with {}", p.file, p.generator.display());
            }
        } else {
            let problems = nixseal::generate::validate(&pending);
            if !problems.is_empty() {
                for e in &problems {
                    ui::error(e);
                }
                return ExitCode::from(BAD_INPUT);
            }
            // Generated master files are encrypted to the profile's master
            // identities (and extraRecipients), whatever `-i` decrypts with.
            let ids = match load_identities(
                master_files(&profile, &args.identity),
                &args.identity.identities,
                &args.identity,
            ) {
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
        let host_blocked = plan
            .pairs
            .iter()
            .filter(|p| matches!(p.state, PairState::Blocked(PairError::HostBlocked { .. })))
            .count();
        let current = plan.pairs.len() - plan.stale().count() - plan.blocked().count();
        let stale = plan.stale().count() + generated;
        let blocked = plan.blocked().count() - generated - host_blocked + plan.host_errors.len();
        println!(
            "dry run: {} to generate, {stale} to rekey, {} to remove, {blocked} failing, {current} current",
            pending.len(),
            plan.removals.len(),
        );
        return ExitCode::from(if blocked > 0 { FAILED } else { OK });
    }
    // No identity is read unless something must be decrypted or generated:
    // a no-op run never prompts for a passphrase or touches a YubiKey.
    if identities.is_none() && plan.needs_identity() {
        // `-i` replaces the profile's identities for decrypting.
        let (master, decrypt_only): (&[PathBuf], &[PathBuf]) =
            if args.identity.identities.is_empty() {
                (&profile.identities, &[])
            } else {
                (&[], &args.identity.identities)
            };
        match load_identities(master, decrypt_only, &args.identity) {
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
        // The global pool already has `--jobs` threads (main: init_threads).
        rekey::ExecuteOptions { jobs: None },
        &tick,
    );
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => return ui::fail(FAILED, e),
    };
    report_failures(&outcome);
    println!(
        "nixseal renc: {} rekeyed, {} unchanged, {} removed, {} failed",
        outcome.rekeyed.len(),
        outcome.unchanged,
        outcome.removed.len(),
        outcome.failed.len() + outcome.host_failures.len()
    );
    present.extend(outcome.rekeyed.iter().map(|(host, secret)| {
        rekey::host_dir(&profile.rekeyed_dir, host.as_str())
            .join(format!("{secret}{}", rekey::OUTPUT_SUFFIX))
    }));
    warn_untracked(&profile, present);
    if outcome.is_ok() && generate_failed == 0 {
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
    let hint = fix_hint(&args.profile.profile);
    let pending = nixseal::generate::pending(&profile);
    let mut n = 0;
    for h in &plan.host_errors {
        n += 1;
        println!("{}: {}", h.host, h.error);
    }
    for p in &plan.pairs {
        match &p.state {
            PairState::Current => {}
            PairState::Blocked(PairError::HostBlocked { .. }) => {}
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
    // What exists but git does not track is invisible to the flake: the
    // hosts would not evaluate, so check fails as evaluation would.
    let present: Vec<PathBuf> = plan
        .pairs
        .iter()
        .filter(|p| p.output.is_file())
        .map(|p| p.output.clone())
        .collect();
    let untracked = untracked(&profile, present).unwrap_or_default();
    for u in &untracked {
        n += 1;
        println!(
            "{}: exists but is not tracked by git, so the flake cannot see it",
            u.display()
        );
    }
    if !untracked.is_empty() {
        println!("run: {}", git_add(&profile, &untracked));
    }
    if n == 0 {
        println!(
            "nixseal check: all {} rekeyed outputs are current",
            plan.pairs.len()
        );
        return ExitCode::from(OK);
    }
    ui::error(format_args!(
        "{n} problem(s): rekeyed outputs not current or not visible to the flake"
    ));
    ExitCode::from(FAILED)
}

pub fn edit(args: EditArgs) -> ExitCode {
    // Plaintext directories a killed earlier edit left behind are wiped first.
    for d in nixseal::edit::wipe_stale_temp_dirs() {
        ui::warn(format_args!(
            "wiped {}, a plaintext directory left by an interrupted earlier edit",
            d.display()
        ));
    }
    let profile = match &args.profile {
        Some(p) => match Profile::load(p, &args.root) {
            Ok(p) => Some(p),
            Err(e) => return ui::fail(BAD_INPUT, e),
        },
        None => None,
    };
    let _lock = match lock(profile.as_ref().map_or(&args.root, |p| &p.root)) {
        Ok(l) => l,
        Err(c) => return c,
    };
    // The profile's identities are the master recipients (whatever `-i`
    // decrypts with); without a profile only `-r` says where to encrypt.
    let master: &[PathBuf] = match &profile {
        Some(p) => master_files(p, &args.identity),
        None => &[],
    };
    let identities = if master.is_empty() && args.identity.identities.is_empty() {
        None
    } else {
        match load_identities(master, &args.identity.identities, &args.identity) {
            Ok(i) => Some(i),
            Err(c) => return c,
        }
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
    if let Some(ids) = &identities {
        recipients.extend(ids.recipients());
    }
    let content = if std::io::stdin().is_terminal() {
        let editor = std::env::var("EDITOR")
            .or_else(|_| std::env::var("VISUAL"))
            .unwrap_or_else(|_| "vi".into());
        NewContent::Editor(editor)
    } else {
        match nixseal::fsutil::read_stream(std::io::stdin().lock(), nixseal::fsutil::MAX_FILE) {
            Ok(buf) => NewContent::Given(buf),
            Err(e) => {
                return ui::fail(
                    BAD_INPUT,
                    format_args!(
                        "cannot read the new content from stdin: {e}; {} is unchanged",
                        args.file.display()
                    ),
                )
            }
        }
    };
    let options = EditOptions {
        allow_empty: args.allow_empty,
    };
    let quick_hint = |ran: std::time::Duration| {
        eprintln!(
            "nixseal edit: hint: the editor returned after {:.1} s without a change; if it is a graphical editor, make it wait until the file is closed (e.g. EDITOR=\"code --wait\", \"subl -w\", \"gedit -s\", \"emacsclient\")",
            ran.as_secs_f64()
        )
    };
    match nixseal::edit::edit(
        &args.file,
        identities.as_ref(),
        &recipients,
        content,
        options,
    ) {
        Ok(report) => {
            let f = args.file.display();
            match report.outcome {
                EditOutcome::Created => eprintln!("nixseal edit: created {f}"),
                EditOutcome::Updated => {
                    eprintln!("nixseal edit: updated {f}; run `nix run .#renc` to rekey it")
                }
                EditOutcome::Unchanged => eprintln!("nixseal edit: {f} unchanged, not rewritten"),
            }
            if let Some(ran) = report.quick_editor {
                quick_hint(ran);
            }
            ExitCode::from(OK)
        }
        Err(e) => {
            if let EditError::Empty {
                quick_editor: Some(ran),
                ..
            } = &e
            {
                quick_hint(*ran);
            }
            let code = match e {
                EditError::NoRecipients { .. }
                | EditError::NeedIdentity { .. }
                | EditError::NotPlain { .. }
                | EditError::Empty { .. }
                | EditError::TooLarge { .. } => BAD_INPUT,
                _ => FAILED,
            };
            ui::fail(code, e)
        }
    }
}
