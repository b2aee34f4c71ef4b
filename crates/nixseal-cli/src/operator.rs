//! `renc`, `check` and `edit`: the operator's subcommands.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;
use nixseal::edit::{EditError, EditOptions, EditOutcome, NewContent};
use nixseal::identity::{self, Interaction, MasterIdentities};
use nixseal::profile::{Profile, TargetKind};
use nixseal::rekey::{self, PairError, PairState, Plan};
use nixseal::renc::{CheckProblem, DryRun, RencError, RencEvents, RencOptions, RencOutcome};

use crate::hints;
use crate::ui::{self, CliError, CmdResult, Done};

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

/// `--host` / `--secret`: the pairs a run covers.
#[derive(Args, Debug)]
pub struct ScopeArgs {
    /// Only this host's secrets (repeatable; default: every host).
    #[arg(long = "host", value_name = "HOST")]
    pub hosts: Vec<String>,
    /// Only this secret, for every selected host that uses it (repeatable; default: every secret).
    #[arg(long = "secret", value_name = "SECRET")]
    pub secrets: Vec<String>,
}

impl ScopeArgs {
    fn scope(&self, profile: &Profile) -> Result<rekey::Scope, CliError> {
        Ok(rekey::Scope::new(profile, &self.hosts, &self.secrets)?)
    }
}

/// `nixseal renc`
#[derive(Args, Debug)]
pub struct RencArgs {
    #[command(flatten)]
    profile: ProfileArgs,
    #[command(flatten)]
    scope: ScopeArgs,
    #[command(flatten)]
    identity: IdentityArgs,
    /// Encrypt with this many threads, 1 to 1024 (default: one per core).
    #[arg(long, short = 'j', value_name = "N", value_parser = parse_jobs)]
    jobs: Option<usize>,
    /// Show what would be generated, rekeyed or removed; change nothing, run no generator, read no identity.
    #[arg(long)]
    dry_run: bool,
    /// With --dry-run: print the plan as JSON (docs/json.md) on stdout.
    #[arg(long, requires = "dry_run")]
    json: bool,
}

/// `nixseal check`
#[derive(Args, Debug)]
pub struct CheckArgs {
    #[command(flatten)]
    profile: ProfileArgs,
    #[command(flatten)]
    scope: ScopeArgs,
    /// Print the problems as JSON (docs/json.md) on stdout; same exit codes.
    #[arg(long)]
    json: bool,
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

/// The profile, for the rest of the process: it is never freed (the
/// command ends with the process; dropping a fleet's profile, allocations
/// per host and secret, would cost a no-op renc more than its plan). It
/// holds names, paths and public keys only.
fn load_profile(args: &ProfileArgs) -> Result<&'static Profile, CliError> {
    Ok(Box::leak(Box::new(Profile::load(
        &args.profile,
        &args.root,
    )?)))
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
) -> Result<MasterIdentities, CliError> {
    let prompt: Arc<dyn Interaction> = Arc::new(ui::Prompt::new(args.passphrase_file.clone()));
    Ok(MasterIdentities::load_split(master, decrypt_only, prompt)?)
}

/// Takes the flake's operator lock, saying so if another run holds it.
fn lock(root: &Path) -> Result<rekey::lock::OperatorLock, CliError> {
    Ok(rekey::lock::acquire(root, &|path| waiting_for_lock(path))?)
}

pub fn waiting_for_lock(path: &Path) {
    eprintln!(
        "nixseal: waiting for another nixseal renc or edit of this flake to finish (lock {})",
        path.display()
    )
}

/// Prints the pairs `show` selects (rekey or error), every blocked host and
/// every removal.
fn print_plan(profile: &Profile, plan: &Plan, show: impl Fn(&rekey::Pair) -> bool) {
    for h in &plan.host_errors {
        println!("error  {}", target_failure(profile, h));
    }
    for p in plan.pairs.iter().filter(|p| show(p)) {
        match &p.state {
            PairState::Current => {}
            PairState::Blocked(PairError::HostBlocked { .. }) => {}
            PairState::Stale(why) => println!("rekey  {}/{} ({why})", p.host, p.secret),
            PairState::Blocked(e) => {
                println!("error  {}/{}: {}", p.host, p.secret, hints::describe(e))
            }
        }
    }
    for r in &plan.removals {
        println!("remove {}", r.path.display());
    }
}

fn warn_plan(profile: &Profile, warnings: &[rekey::Warning]) {
    for w in warnings {
        match w {
            rekey::Warning::InvalidCache { path, reason } => ui::warn(format_args!(
                "rekey cache {} is unreadable ({reason}); that host's outputs are rewritten",
                path.display()
            )),
            rekey::Warning::ForeignDir { path } => ui::warn(format_args!(
                "{} is not a host of the profile and was not made by nixseal; left alone",
                path.display()
            )),
            // A home's key is its user's (userPubkey), not a host key:
            // the targets are named as what they are.
            rekey::Warning::SharedHostKey { key, hosts } => {
                let homes = hosts.iter().any(|h| {
                    profile
                        .hosts
                        .get(h.as_str())
                        .is_some_and(|e| e.kind == TargetKind::Home)
                });
                if homes {
                    ui::warn(format_args!(
                        "{} have the same public key ({key}): each of them can decrypt the others' rekeyed secrets; give every host and user its own key",
                        hosts.iter().map(|h| profile.label(h.as_str())).collect::<Vec<_>>().join(", ")
                    ))
                } else {
                    ui::warn(format_args!(
                        "hosts {} have the same hostPubkey ({key}): each of them can decrypt the others' rekeyed secrets; give every host its own key (`ssh-keyscan -t ed25519 HOST`)",
                        hosts.iter().map(|h| h.as_str()).collect::<Vec<_>>().join(", ")
                    ))
                }
            }
            rekey::Warning::UnusableHostKey { host, error } => ui::warn(format_args!(
                "{} has no secrets yet, and its key is not usable: {}",
                profile.label(host.as_str()),
                hints::describe(error)
            )),
            _ => {}
        }
    }
}

/// The `git add` that makes `paths` (relative to the flake root) visible.
fn git_add(profile: &Profile, paths: &[PathBuf]) -> String {
    // Many files: the rekeyed directory as one (everything in it is
    // nixseal's), the others as they are.
    let mut list: Vec<String> = Vec::new();
    let rekeyed = Path::new(&profile.rekeyed_dir_rel);
    let rekeyed = rekeyed.strip_prefix(".").unwrap_or(rekeyed);
    for p in paths {
        if paths.len() > SHOWN_UNTRACKED && p.starts_with(rekeyed) {
            let dir = rekeyed.display().to_string();
            if !list.contains(&dir) {
                list.push(dir);
            }
        } else {
            list.push(p.display().to_string());
        }
    }
    let root = &profile.root;
    if root == Path::new(".") || root.as_os_str().is_empty() {
        format!("git add {}", list.join(" "))
    } else {
        format!("git -C {} add {}", root.display(), list.join(" "))
    }
}

/// How many untracked files a warning lists by name.
const SHOWN_UNTRACKED: usize = 20;

/// Warns about sources, outputs and caches git does not track (the first
/// [`SHOWN_UNTRACKED`] by name).
fn warn_untracked(profile: &Profile, untracked: &[PathBuf]) {
    if !untracked.is_empty() {
        let mut list: Vec<String> = untracked
            .iter()
            .take(SHOWN_UNTRACKED)
            .map(|p| p.display().to_string())
            .collect();
        if untracked.len() > SHOWN_UNTRACKED {
            list.push(format!(
                "… and {} more (`git status` lists them)",
                untracked.len() - SHOWN_UNTRACKED
            ));
        }
        ui::warn(format_args!(
            "{} file(s) are not tracked by git, and flakes see tracked files only:\n  {}\n  run: {}",
            untracked.len(),
            list.join("\n  "),
            git_add(profile, untracked)
        ));
    }
}

/// A target that cannot be served, as renc and check print it: `web1: why`;
/// a home is named as one (`web1.alice (home): why`), and its key is the
/// user's, not a host key.
fn target_failure(profile: &Profile, h: &rekey::HostFailure) -> String {
    let home = profile
        .hosts
        .get(h.host.as_str())
        .is_some_and(|e| e.kind == TargetKind::Home);
    if !home {
        return format!("{}: {}", h.host, hints::describe(&h.error));
    }
    match &h.error {
        rekey::HostError::Key(k) => format!(
            "{} (home): {k} — for a home this is the user's SSH key: set nixseal.settings.userPubkey to the content of the user's ~/.ssh/id_ed25519.pub (or make a dedicated key: ssh-keygen -t ed25519 -N '' -f ~/.ssh/nixseal_ed25519)",
            h.host
        ),
        e => format!("{} (home): {}", h.host, hints::describe(e)),
    }
}

/// Prints a failed run's host and pair failures.
fn report_failures(profile: &Profile, outcome: &rekey::Outcome) {
    for h in &outcome.host_failures {
        ui::error(format_args!("{}", target_failure(profile, h)));
    }
    for f in &outcome.failed {
        ui::error(format_args!(
            "{}/{}: {}",
            f.host,
            f.secret,
            hints::describe(&f.error)
        ));
    }
}

/// The progress bar of a renc on a terminal.
struct Progress(std::sync::Mutex<Option<indicatif::ProgressBar>>);

impl RencEvents for Progress {
    fn waiting_for_lock(&self, lock: &Path) {
        waiting_for_lock(lock)
    }
    fn rekey_started(&self, total: u64) {
        if total > 0 && std::io::stderr().is_terminal() {
            let b = indicatif::ProgressBar::new(total);
            b.set_style(
                indicatif::ProgressStyle::with_template("rekeying {bar:30} {pos}/{len} {elapsed}")
                    .expect("static template"),
            );
            *self.0.lock().unwrap() = Some(b);
        }
    }
    fn rekeyed_one(&self) {
        if let Some(b) = &*self.0.lock().unwrap() {
            b.inc(1);
        }
    }
    fn rekey_finished(&self) {
        if let Some(b) = self.0.lock().unwrap().take() {
            b.finish_and_clear();
        }
    }
}

pub fn renc(args: RencArgs) -> CmdResult {
    let interaction: Arc<dyn Interaction> =
        Arc::new(ui::Prompt::new(args.identity.passphrase_file.clone()));
    let events = Progress(Default::default());
    // The whole fleet, as the last clean run left it: the fleet stamp
    // answers without the profile being read (docs/operator.md).
    if args.scope.hosts.is_empty() && args.scope.secrets.is_empty() {
        let opts = RencOptions {
            decrypt_with: &args.identity.identities,
            interaction: interaction.clone(),
            dry_run: args.dry_run,
            scope: &rekey::Scope::all(),
        };
        let (path, root) = (&args.profile.profile, &args.profile.root);
        if let Some(report) = nixseal::renc::settled(path, root, &opts, &events)? {
            print_summary(&report.outcome);
            return Ok(Done::Ok);
        }
    }
    let profile = load_profile(&args.profile)?;
    let scope = args.scope.scope(profile)?;
    let opts = RencOptions {
        decrypt_with: &args.identity.identities,
        interaction,
        dry_run: args.dry_run,
        scope: &scope,
    };
    let outcome = match nixseal::renc::renc(profile, &opts, &events) {
        Ok(o) => o,
        Err(RencError::Generators { generators }) => {
            return Err(CliError::each(
                nixseal::ErrorClass::BadInput,
                generators.iter().map(|e| hints::describe(e)),
            ))
        }
        Err(e) => return Err(e.into()),
    };
    let report = match outcome {
        RencOutcome::DryRun(dry) if args.json => {
            let doc = dry.to_json();
            print_json(serde_json::to_string(&doc))?;
            return Ok(if doc.counts.failing > 0 {
                Done::Failed
            } else {
                Done::Ok
            });
        }
        RencOutcome::DryRun(dry) => return Ok(dry_run(profile, &dry)),
        RencOutcome::Done(report) => report,
    };
    for g in &report.generated {
        let p = &g.pending;
        match &g.result {
            Ok(()) => eprintln!(
                "nixseal renc: generated {} with {} (used by {}); commit it",
                p.file,
                p.generator.display(),
                p.used_by.join(", ")
            ),
            Err(e) => ui::error(format_args!(
                "{} (used by {})",
                hints::describe(e),
                p.used_by.join(", ")
            )),
        }
    }
    warn_plan(profile, &report.warnings);
    let outcome = &report.outcome;
    report_failures(profile, outcome);
    print_summary(outcome);
    if let Some(untracked) = &report.untracked {
        warn_untracked(profile, untracked);
    }
    Ok(if report.is_ok() {
        Done::Ok
    } else {
        Done::Failed
    })
}

/// The last line of a renc.
fn print_summary(outcome: &rekey::Outcome) {
    println!(
        "nixseal renc: {} rekeyed, {} unchanged, {} removed, {} failed",
        outcome.rekeyed.len(),
        outcome.unchanged,
        outcome.removed.len(),
        outcome.failed.len() + outcome.host_failures.len()
    );
}

/// Prints a `--json` document on stdout (one line).
/// (`serde_json::to_string` of a concrete report type).
pub fn print_json(text: serde_json::Result<String>) -> Result<(), CliError> {
    let text = text.map_err(|e| {
        CliError::with_class(
            nixseal::ErrorClass::Failed,
            format_args!("cannot write JSON: {e}"),
        )
    })?;
    println!("{text}");
    Ok(())
}

/// Prints what a dry run would do.
fn dry_run(profile: &Profile, dry: &DryRun) -> Done {
    for p in &dry.generate {
        println!("generate {} with {}", p.file, p.generator.display());
    }
    warn_plan(profile, &dry.plan.warnings);
    // A pair whose source a generator will make is rekeyed after it.
    for p in dry.plan.pairs.iter().filter(|p| dry.awaits_generation(p)) {
        println!(
            "rekey  {}/{} (after generating its master file)",
            p.host, p.secret
        );
    }
    print_plan(profile, &dry.plan, |p| !dry.awaits_generation(p));
    let c = dry.counts();
    println!(
        "dry run: {} to generate, {} to rekey, {} to remove, {} failing, {} current",
        c.generate, c.rekey, c.remove, c.failing, c.current,
    );
    if c.failing > 0 {
        Done::Failed
    } else {
        Done::Ok
    }
}

pub fn check(args: CheckArgs) -> CmdResult {
    let profile = load_profile(&args.profile)?;
    let scope = args.scope.scope(profile)?;
    let report = nixseal::renc::check(profile, &scope)?;
    if args.json {
        let doc = report.to_json();
        print_json(serde_json::to_string(&doc))?;
        return Ok(if doc.current { Done::Ok } else { Done::Failed });
    }
    warn_plan(profile, &report.plan.warnings);
    let hint = fix_hint(&args.profile.profile);
    let problems = report.problems();
    for problem in &problems {
        match problem {
            CheckProblem::Host(h) => println!("{}", target_failure(profile, h)),
            CheckProblem::Stale { pair: p, why } => {
                println!("{}/{}: {why}; {hint}", p.host, p.secret)
            }
            CheckProblem::AwaitsGeneration(p) => println!(
                "{}/{}: its master file {} does not exist yet and has a generator; {hint} (it generates and rekeys it)",
                p.host,
                p.secret,
                p.source.display()
            ),
            CheckProblem::Blocked { pair: p, error } => {
                println!("{}/{}: {}", p.host, p.secret, hints::describe(*error))
            }
            CheckProblem::LeftOver(r) => println!(
                "{}: left over (its host or secret left the profile); {hint}",
                r.path.display()
            ),
            CheckProblem::Untracked(u) => println!(
                "{}: exists but is not tracked by git, so the flake cannot see it",
                u.display()
            ),
            _ => {}
        }
    }
    if !report.untracked.is_empty() {
        println!("run: {}", git_add(profile, &report.untracked));
    }
    if problems.is_empty() {
        println!(
            "nixseal check: all {} rekeyed outputs are current",
            report.plan.outputs()
        );
        return Ok(Done::Ok);
    }
    Err(CliError::with_class(
        nixseal::ErrorClass::Failed,
        format_args!(
            "{} problem(s): rekeyed outputs not current or not visible to the flake",
            problems.len()
        ),
    ))
}

pub fn edit(args: EditArgs) -> CmdResult {
    // Plaintext directories a killed earlier edit left behind are wiped first.
    for d in nixseal::edit::wipe_stale_temp_dirs() {
        ui::warn(format_args!(
            "wiped {}, a plaintext directory left by an interrupted earlier edit",
            d.display()
        ));
    }
    let profile = match &args.profile {
        Some(p) => Some(Profile::load(p, &args.root)?),
        None => None,
    };
    let _lock = lock(profile.as_ref().map_or(&args.root, |p| &p.root))?;
    // The profile's identities are the master recipients (whatever `-i`
    // decrypts with); without a profile only `-r` says where to encrypt.
    let master: &[PathBuf] = match &profile {
        Some(p) => nixseal::renc::master_files(p, &args.identity.identities),
        None => &[],
    };
    let identities = if master.is_empty() && args.identity.identities.is_empty() {
        None
    } else {
        Some(load_identities(
            master,
            &args.identity.identities,
            &args.identity,
        )?)
    };
    let mut extra = args.recipients.clone();
    if let Some(p) = &profile {
        extra.extend(p.extra_recipients.iter().cloned());
    }
    let prompt: Arc<dyn Interaction> = Arc::new(ui::Prompt::new(None));
    let extra = identity::recipients_from(&extra, prompt)?;
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
                return Err(CliError::usage(format_args!(
                    "cannot read the new content from stdin: {e}; {} is unchanged",
                    args.file.display()
                )))
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
            if let (Some(p), EditOutcome::Created | EditOutcome::Updated) =
                (&profile, &report.outcome)
            {
                nixseal::masters::record_edit(
                    p,
                    &args.file,
                    &args.recipients,
                    identities.as_ref(),
                )?;
            }
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
            Ok(Done::Ok)
        }
        Err(e) => {
            if let EditError::Empty {
                quick_editor: Some(ran),
                ..
            } = &e
            {
                quick_hint(*ran);
            }
            Err(e.into())
        }
    }
}
