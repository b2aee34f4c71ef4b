//! `nixseal renc` and `nixseal check`, each one library call that returns
//! everything the CLI prints: the CLI only renders.
//!
//! [`renc`] takes the flake's lock, proves the layout safe, generates missing
//! master files (validating every generator first), plans, loads the master
//! identities only if something must be decrypted, executes, and finds what
//! git does not track. [`check`] plans (never an identity) and lists every
//! problem. Both know which unreadable sources are only waiting for their
//! generator.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::generate::{self, GenerateError, Pending};
use super::identity::{self, IdentityError, Interaction, MasterIdentities};
use super::profile::{HostEntry, Profile};
use super::rekey::record::{FleetStamp, RecordDir, Stat};
use super::rekey::{
    self, lock, ExecuteOptions, HostFailure, Outcome, Pair, PairError, PairState, Plan, RekeyError,
    Removal, Scope, Staleness, Warning,
};
use crate::contract::names::{HostName, SecretName};

/// What `renc` is asked to do.
pub struct RencOptions<'a> {
    /// Identity files to decrypt with (`-i`) instead of the profile's
    /// `identities`; what is written is still encrypted to every master
    /// identity of the profile (plus `extraRecipients`).
    pub decrypt_with: &'a [PathBuf],
    /// How passphrases and plugin questions are asked.
    pub interaction: Arc<dyn Interaction>,
    /// Say what would be done; change nothing, run no generator, read no
    /// identity, take no lock.
    pub dry_run: bool,
    /// Which (host, secret) pairs to rekey (`--host`, `--secret`);
    /// [`Scope::all`] for the whole fleet.
    pub scope: &'a Scope,
}

impl RencOptions<'_> {
    /// Whether the run reads and leaves the fleet stamp (record/fleet.rs):
    /// the whole fleet, not a dry run, no `-i`.
    fn fleet_run(&self) -> bool {
        !self.dry_run && self.scope.is_all() && self.decrypt_with.is_empty()
    }
}

/// What `renc` tells its caller while it runs (all optional).
pub trait RencEvents: Sync {
    /// Another `renc` or `edit` of the flake holds its lock (`lock`): this
    /// one waits.
    fn waiting_for_lock(&self, _lock: &Path) {}
    /// `total` outputs are about to be encrypted.
    fn rekey_started(&self, _total: u64) {}
    /// One more output is done.
    fn rekeyed_one(&self) {}
    /// Encryption is over.
    fn rekey_finished(&self) {}
}

/// A [`RencEvents`] that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoEvents;
impl RencEvents for NoEvents {}

/// Why `renc` stopped before rekeying anything.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RencError {
    /// The flake's operator lock could not be taken.
    #[error(transparent)]
    Lock(#[from] lock::LockError),
    /// The layout is unsafe or the plan could not be made.
    #[error(transparent)]
    Rekey(#[from] RekeyError),
    /// Generators that cannot run; nothing was generated.
    #[error("{}", generators.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
    Generators {
        /// Every problem found.
        generators: Vec<GenerateError>,
    },
    /// A master identity could not be loaded.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// An `extraRecipients` entry cannot be encrypted to.
    #[error(transparent)]
    Recipient(#[from] identity::RecipientError),
    /// Executing the plan failed as a whole.
    #[error("{0}")]
    Execute(#[source] RekeyError),
}

/// A master file a generator ran for, and how it went.
#[derive(Debug)]
pub struct Generated {
    /// The master file and its generator.
    pub pending: Pending,
    /// `Ok` when the file was written.
    pub result: Result<(), GenerateError>,
}

/// What a dry run would do.
#[derive(Debug)]
pub struct DryRun {
    /// Master files a generator would make.
    pub generate: Vec<Pending>,
    /// The plan as things are now (no generator ran).
    pub plan: Plan,
}

/// The counts a dry run prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DryRunCounts {
    /// Master files to generate.
    pub generate: usize,
    /// Outputs to (re)write, those of master files to generate included.
    pub rekey: usize,
    /// Files to remove.
    pub remove: usize,
    /// Outputs that cannot be rekeyed and blocked hosts.
    pub failing: usize,
    /// Outputs already current.
    pub current: usize,
}

impl DryRun {
    /// Whether `p` is blocked only because its master file does not exist
    /// yet and a generator will make it (it is rekeyed after that).
    pub fn awaits_generation(&self, p: &Pair) -> bool {
        awaits_generation(p, &self.generate)
    }

    /// What the dry run's summary says.
    pub fn counts(&self) -> DryRunCounts {
        let plan = &self.plan;
        let generated = plan
            .pairs
            .iter()
            .filter(|p| self.awaits_generation(p))
            .count();
        let host_blocked = plan
            .pairs
            .iter()
            .filter(|p| matches!(p.state, PairState::Blocked(PairError::HostBlocked { .. })))
            .count();
        let (stale, blocked) = (plan.stale().count(), plan.blocked().count());
        DryRunCounts {
            generate: self.generate.len(),
            rekey: stale + generated,
            remove: plan.removals.len(),
            failing: blocked - generated - host_blocked + plan.host_errors.len(),
            current: plan.outputs() - stale - blocked,
        }
    }
}

/// What a `renc` run did.
#[derive(Debug)]
pub struct RencReport {
    /// The generators that ran, in order.
    pub generated: Vec<Generated>,
    /// What planning found worth saying (not failures).
    pub warnings: Vec<Warning>,
    /// What rekeying did.
    pub outcome: Outcome,
    /// Sources, outputs and caches git does not track (relative to the flake
    /// root); `None` outside a git work tree.
    pub untracked: Option<Vec<PathBuf>>,
}

impl RencReport {
    /// Generators that failed.
    pub fn generate_failures(&self) -> usize {
        self.generated.iter().filter(|g| g.result.is_err()).count()
    }

    /// Whether everything was done.
    pub fn is_ok(&self) -> bool {
        self.outcome.is_ok() && self.generate_failures() == 0
    }
}

/// What a `renc` call returns.
#[derive(Debug)]
pub enum RencOutcome {
    /// `dry_run`: what would be done.
    DryRun(Box<DryRun>),
    /// What was done.
    Done(RencReport),
}

/// Runs `nixseal renc` on `profile`.
pub fn renc(
    profile: &Profile,
    opts: &RencOptions<'_>,
    events: &dyn RencEvents,
) -> Result<RencOutcome, RencError> {
    // One renc or edit of this flake at a time (a dry run changes nothing).
    let _lock = if opts.dry_run {
        None
    } else {
        Some(lock::acquire(&profile.root, &|p| {
            events.waiting_for_lock(p)
        })?)
    };
    // A run of the whole fleet may leave a fleet stamp for the next
    // (record/fleet.rs): the rekeyed directory's stat is taken before
    // anything looks into it.
    let fleet_run = opts.fleet_run();
    let rekeyed_stat = fleet_run
        .then(|| std::fs::symlink_metadata(&profile.rekeyed_dir).ok())
        .flatten()
        .filter(|m| m.is_dir())
        .map(|m| Stat::of(&m));
    // Everything that can be known up front is checked before the first
    // write, generators included.
    let rd_exists = rekey::check_layout_with(profile, opts.decrypt_with)?;
    let pending = scoped_pending(profile, opts.scope);
    if opts.dry_run {
        let plan = rekey::plan_scoped(profile, opts.scope)?;
        return Ok(RencOutcome::DryRun(Box::new(DryRun {
            generate: pending,
            plan,
        })));
    }
    let mut identities = None;
    let mut generated = Vec::new();
    if !pending.is_empty() {
        let problems = generate::validate(&pending);
        if !problems.is_empty() {
            return Err(RencError::Generators {
                generators: problems,
            });
        }
        // Generated master files are encrypted to the profile's master
        // identities (and extraRecipients), whatever `-i` decrypts with.
        let ids = MasterIdentities::load_split(
            master_files(profile, opts.decrypt_with),
            opts.decrypt_with,
            opts.interaction.clone(),
        )?;
        let extra = identity::recipients_from(&profile.extra_recipients, opts.interaction.clone())?;
        let mut recipients: Vec<&dyn age::Recipient> =
            extra.iter().map(|r| r.as_ref() as _).collect();
        recipients.extend(ids.recipients());
        for p in pending {
            let result = generate::generate(&p, &profile.root, &recipients);
            if result.is_ok() {
                // Known to the master-file record (rekey-masters), like an
                // edit; a record that cannot be written only means the next
                // rotation rewrites this file once more.
                let _ = super::masters::record_edit(profile, &p.source, &[], Some(&ids));
            }
            generated.push(Generated { pending: p, result });
        }
        identities = Some(ids);
    }
    // Checked again only if generators ran since.
    let plan = match generated.is_empty() {
        true => rekey::plan_checked(profile, opts.scope, rd_exists)?,
        false => rekey::plan_scoped(profile, opts.scope)?,
    };
    // No identity is read unless something must be decrypted or generated:
    // a no-op run never prompts for a passphrase or touches a YubiKey.
    if identities.is_none() && plan.needs_identity() {
        // `-i` replaces the profile's identities for decrypting.
        let (master, decrypt_only): (&[PathBuf], &[PathBuf]) = if opts.decrypt_with.is_empty() {
            (&profile.identities, &[])
        } else {
            (&[], opts.decrypt_with)
        };
        identities = Some(MasterIdentities::load_split(
            master,
            decrypt_only,
            opts.interaction.clone(),
        )?);
    }
    // What the fleet stamp would say, if the run changes nothing.
    let fleet = rekeyed_stat
        .filter(|_| generated.is_empty())
        .and_then(|st| plan.fleet_stamp(profile, st));
    // Outputs not known to exist after the run: neither current nor rekeyed.
    let mut absent = Absent::of(&plan, |p| matches!(p.state, PairState::Current));
    let warnings = plan.warnings.clone();
    let total = plan.stale().count() as u64;
    events.rekey_started(total);
    let outcome = rekey::execute(
        plan,
        identities.as_ref(),
        // The global pool has the threads asked for (rekey::init_threads).
        ExecuteOptions { jobs: None },
        &|| events.rekeyed_one(),
    );
    events.rekey_finished();
    let outcome = outcome.map_err(RencError::Execute)?;
    for (host, secret) in &outcome.rekeyed {
        absent.0.remove(&(host.clone(), secret.clone()));
    }
    let (untracked, git) = untracked(profile, opts.scope, &absent);
    if fleet_run {
        keep_fleet(profile, fleet, &outcome, untracked.as_deref(), git);
    }
    Ok(RencOutcome::Done(RencReport {
        generated,
        warnings,
        outcome,
        untracked,
    }))
}

/// A `renc` with `opts` answered by the fleet stamp of the flake at `root`
/// (record/fleet.rs), under the flake's lock: `Some` (nothing rekeyed,
/// every pair unchanged) when `opts` is a run that uses the stamp (the
/// whole fleet, not a dry run, no `-i`) and the stamp holds for `profile`,
/// without reading its hosts or any record; `None`: plan as usual
/// ([`renc`]).
pub fn settled(
    profile: &Path,
    root: &Path,
    opts: &RencOptions<'_>,
    events: &dyn RencEvents,
) -> Result<Option<RencReport>, RencError> {
    if !opts.fleet_run() {
        return Ok(None);
    }
    let Some(stamp) = RecordDir::fleet_of(root, false).and_then(|d| FleetStamp::load(&d)) else {
        return Ok(None);
    };
    let _lock = lock::acquire(root, &|p| events.waiting_for_lock(p))?;
    let Some(unchanged) = stamp.holds(profile, root) else {
        return Ok(None);
    };
    Ok(Some(RencReport {
        generated: Vec::new(),
        warnings: Vec::new(),
        outcome: Outcome {
            unchanged,
            ..Outcome::default()
        },
        untracked: stamp.git.as_ref().map(|_| Vec::new()),
    }))
}

/// After a run of the whole fleet: keeps `stamp` (the plan's
/// [`Plan::fleet_stamp`]) as the fleet stamp if the run changed nothing,
/// failed nowhere and git tracks every file (`git`: its index as it was
/// when it said so) or there is no git; otherwise forgets any fleet stamp.
fn keep_fleet(
    profile: &Profile,
    stamp: Option<FleetStamp>,
    outcome: &Outcome,
    untracked: Option<&[PathBuf]>,
    git: Option<(PathBuf, Stat)>,
) {
    let clean = outcome.rekeyed.is_empty()
        && outcome.removed.is_empty()
        && outcome.is_ok()
        && !super::git::redirected();
    let stamp = stamp.filter(|_| clean).and_then(|mut s| {
        s.git = match (untracked, git) {
            (Some([]), Some(git)) => Some(git),
            (None, _) if super::git::index_file(&profile.root).is_none() => None,
            _ => return None,
        };
        Some(s)
    });
    match stamp {
        Some(s) => {
            if let Some(dir) = RecordDir::fleet_of(&profile.root, true) {
                s.store(&dir);
            }
        }
        None => {
            if let Some(dir) = RecordDir::fleet_of(&profile.root, false) {
                FleetStamp::forget(&dir);
            }
        }
    }
}

/// The master identities of a profile: its `identities`, or the `-i` files
/// when it names none.
pub fn master_files<'a>(profile: &'a Profile, decrypt_with: &'a [PathBuf]) -> &'a [PathBuf] {
    if profile.identities.is_empty() {
        decrypt_with
    } else {
        &profile.identities
    }
}

/// The generators a run of `scope` runs: those of the master files its
/// pairs use.
fn scoped_pending(profile: &Profile, scope: &Scope) -> Vec<Pending> {
    let mut pending = generate::pending(profile);
    if !scope.is_all() {
        pending.retain(|g| {
            profile.hosts.values().any(|h| {
                h.secrets.values().any(|s| {
                    *s.source == *g.source && scope.has_pair(h.name.as_str(), s.name.as_str())
                })
            })
        });
    }
    pending
}

/// Whether `p` is blocked only because its master file does not exist yet
/// and one of `pending` will generate it.
fn awaits_generation(p: &Pair, pending: &[Pending]) -> bool {
    matches!(
        p.state,
        PairState::Blocked(PairError::SourceUnreadable { .. })
    ) && pending.iter().any(|g| *g.source == *p.source)
}

/// The (host, secret) pairs whose output is not known to exist, of a plan
/// whose pairs `exists` says exist; for a no-op, none.
struct Absent(HashSet<(HostName, SecretName)>);

impl Absent {
    fn of(plan: &Plan, exists: impl Fn(&Pair) -> bool) -> Self {
        Absent(
            plan.pairs
                .iter()
                .filter(|p| !exists(p))
                .map(|p| (p.host.clone(), p.secret.clone()))
                .collect(),
        )
    }

    fn has(&self, host: &HostName, secret: &SecretName) -> bool {
        !self.0.is_empty() && self.0.contains(&(host.clone(), secret.clone()))
    }
}

/// Sources, outputs and caches git does not track (flakes see tracked files
/// only), relative to the flake root; `None` outside git. The outputs asked
/// about are those of the pairs of `scope` not in `absent` (known to exist
/// from the plan and the outcome: no stat per output), with their hosts'
/// caches and their master files.
fn untracked(
    profile: &Profile,
    scope: &Scope,
    absent: &Absent,
) -> (Option<Vec<PathBuf>>, Option<(PathBuf, Stat)>) {
    use rayon::prelude::*;
    let layout = profile.layout();
    let hosts: Vec<&HostEntry> = profile
        .hosts
        .values()
        .filter(|h| scope.has_host(h.name.as_str()))
        .collect();
    let sources = || asked_sources(profile, scope);
    // The question as git's remembered answer is keyed: the rekeyed
    // directory, then each item as the names it is made of (the same
    // walk as the paths below, without making a path per output), each
    // host's part made in parallel.
    let query = || {
        use super::rekey::record::{digest_query, query_item};
        // (Each host's part starts with its name: its outputs and cache
        // are named by the secret alone, or not at all.)
        let item = |q: &mut Vec<u8>, a: Asked| match a {
            Asked::Output(_, s) => {
                query_item(q, b"o");
                query_item(q, s.as_bytes());
            }
            Asked::Cache(_) => query_item(q, b"c"),
            Asked::Source(p) => {
                query_item(q, b"s");
                query_item(q, p.as_os_str().as_encoded_bytes());
            }
        };
        let mut head = Vec::new();
        query_item(
            &mut head,
            profile.rekeyed_dir.as_os_str().as_encoded_bytes(),
        );
        let parts: Vec<Vec<u8>> = hosts
            .par_iter()
            .map(|h| {
                let mut q = Vec::with_capacity(64 + 32 * h.secrets.len());
                query_item(&mut q, b"h");
                query_item(&mut q, h.name.as_str().as_bytes());
                asked_host(&layout, scope, absent, h, &mut |a| item(&mut q, a));
                q
            })
            .collect();
        let mut tail = Vec::new();
        for s in sources() {
            item(&mut tail, Asked::Source(s));
        }
        let all = std::iter::once(&head)
            .chain(&parts)
            .chain(std::iter::once(&tail));
        digest_query(all.map(|p| p.as_slice()))
    };
    remembered(profile, query, || {
        let mut paths = Vec::new();
        let mut path = |a: Asked| {
            paths.push(match a {
                Asked::Output(h, s) => layout.output(h, s),
                Asked::Cache(h) => layout.cache_file(h),
                Asked::Source(p) => p.to_owned(),
            })
        };
        for h in &hosts {
            asked_host(&layout, scope, absent, h, &mut path);
        }
        for s in sources() {
            path(Asked::Source(s));
        }
        let mut untracked = super::git::untracked(&profile.root, &paths)?;
        // As bytes: a directory's files together, its cache first.
        untracked.sort_unstable_by(|a, b| a.as_os_str().cmp(b.as_os_str()));
        Some(untracked)
    })
}

/// One file [`untracked`] asks git about.
enum Asked<'a> {
    /// The output of (host, secret).
    Output(&'a str, &'a str),
    /// The cache of a host.
    Cache(&'a str),
    /// A master file.
    Source(&'a Path),
}

/// Calls `f` with each file of `h` that [`untracked`] asks about, always
/// in the same order: its outputs by secret, then its cache. (After every
/// host, each distinct master file: [`asked_sources`].)
fn asked_host<'p>(
    layout: &crate::contract::layout::RekeyedLayout,
    scope: &Scope,
    absent: &Absent,
    h: &'p HostEntry,
    f: &mut dyn FnMut(Asked<'p>),
) {
    for s in h
        .secrets
        .values()
        .filter(|s| scope.has_pair(h.name.as_str(), s.name.as_str()))
    {
        if !absent.has(&h.name, &s.name) {
            f(Asked::Output(h.name.as_str(), s.name.as_str()));
        }
    }
    // The NixOS module reads the cache at evaluation: it must be tracked too.
    if layout.cache_file(h.name.as_str()).is_file() {
        f(Asked::Cache(h.name.as_str()));
    }
}

/// The distinct master files of the pairs of `scope`, by path (bytes),
/// that exist (one that does not is not "untracked").
fn asked_sources<'p>(profile: &'p Profile, scope: &Scope) -> Vec<&'p Path> {
    let mut sources = scope.sources(profile);
    sources.retain(|s| s.is_file());
    sources
}

/// git's answer (`ask`), or the one it gave last time for the same
/// question (`query`) while its index file has not changed since (record/git_answer.rs,
/// [`GitAnswer`]): a no-op runs no git. With the answer, the index and
/// its stat from before the question, when the answer is known to be the
/// one for them.
fn remembered(
    profile: &Profile,
    query: impl FnOnce() -> super::rekey::record::Hex,
    ask: impl FnOnce() -> Option<Vec<PathBuf>>,
) -> (Option<Vec<PathBuf>>, Option<(PathBuf, Stat)>) {
    use super::rekey::record::GitAnswer;
    let Some((dir, index)) =
        RecordDir::of(&profile.rekeyed_dir, false).zip(super::git::index_file(&profile.root))
    else {
        return (ask(), None);
    };
    let Some(stat) = GitAnswer::index_stat(&index) else {
        return (ask(), None);
    };
    let query = query();
    if let Some(answer) = GitAnswer::load(&dir, &index, &stat, &query) {
        return (Some(answer), Some((index, stat)));
    }
    let Some(untracked) = ask() else {
        return (None, None);
    };
    // Remembered only if the index did not change while git read it.
    if GitAnswer::index_stat(&index) == Some(stat) {
        let answer = GitAnswer {
            index,
            stat,
            query,
            untracked,
        };
        answer.store(&dir);
        return (Some(answer.untracked), Some((answer.index, stat)));
    }
    (Some(untracked), None)
}

/// One thing `nixseal check` reports.
#[derive(Debug)]
#[non_exhaustive]
pub enum CheckProblem<'p> {
    /// A host that cannot be served.
    Host(&'p HostFailure),
    /// An output to (re)write.
    Stale {
        /// The pair.
        pair: &'p Pair,
        /// Why.
        why: &'p Staleness,
    },
    /// An output whose master file does not exist yet but has a generator
    /// (`renc` generates and rekeys it).
    AwaitsGeneration(&'p Pair),
    /// An output that cannot be rekeyed.
    Blocked {
        /// The pair.
        pair: &'p Pair,
        /// Why.
        error: &'p PairError,
    },
    /// A file of a host or secret that left the profile.
    LeftOver(&'p Removal),
    /// A file that exists but git does not track, so the flake cannot see it
    /// (relative to the flake root).
    Untracked(&'p Path),
}

/// What `nixseal check` found.
#[derive(Debug)]
pub struct CheckReport {
    /// The plan (made without any identity).
    pub plan: Plan,
    /// Master files a generator would make.
    pub pending: Vec<Pending>,
    /// Files that exist but git does not track (relative to the flake root).
    pub untracked: Vec<PathBuf>,
}

impl CheckReport {
    /// Every problem, in the order `check` lists them: blocked hosts, then
    /// pairs, then left-over files, then untracked files.
    pub fn problems(&self) -> Vec<CheckProblem<'_>> {
        let mut out: Vec<CheckProblem> = self
            .plan
            .host_errors
            .iter()
            .map(CheckProblem::Host)
            .collect();
        for p in &self.plan.pairs {
            match &p.state {
                PairState::Current => {}
                PairState::Blocked(PairError::HostBlocked { .. }) => {}
                PairState::Stale(why) => out.push(CheckProblem::Stale { pair: p, why }),
                PairState::Blocked(_) if awaits_generation(p, &self.pending) => {
                    out.push(CheckProblem::AwaitsGeneration(p))
                }
                PairState::Blocked(error) => out.push(CheckProblem::Blocked { pair: p, error }),
            }
        }
        out.extend(self.plan.removals.iter().map(CheckProblem::LeftOver));
        out.extend(self.untracked.iter().map(|u| CheckProblem::Untracked(u)));
        out
    }
}

/// Runs `nixseal check` on `profile` (the pairs of `scope`): reads no
/// identity, changes nothing.
pub fn check(profile: &Profile, scope: &Scope) -> Result<CheckReport, RekeyError> {
    let plan = rekey::plan_scoped(profile, scope)?;
    let pending = scoped_pending(profile, scope);
    // What exists but git does not track is invisible to the flake: the
    // hosts would not evaluate, so check fails as evaluation would.
    // A current output was just found to be a regular file; a missing one
    // was not there; any other is looked at.
    let absent = Absent::of(&plan, |p| match &p.state {
        PairState::Current => true,
        PairState::Stale(Staleness::Missing) => false,
        _ => p.output.is_file(),
    });
    let untracked = untracked(profile, scope, &absent).0.unwrap_or_default();
    Ok(CheckReport {
        plan,
        pending,
        untracked,
    })
}

impl crate::common::error::Classify for RencError {
    fn class(&self) -> crate::common::error::ErrorClass {
        use crate::common::error::ErrorClass;
        match self {
            RencError::Lock(_) => ErrorClass::Environment,
            RencError::Rekey(e) => e.class(),
            RencError::Execute(_) => ErrorClass::Failed,
            RencError::Generators { .. } | RencError::Identity(_) | RencError::Recipient(_) => {
                ErrorClass::BadInput
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::identity::NoInteraction;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKz7ImoUTnDGygVAnHosv8eMZLvLwcpu36+ZXNI5mTf1";

    /// web1 uses `a` (its master file exists) and `gen` (missing, with a
    /// generator); new has no key yet and uses `a`.
    fn fleet() -> (tempfile::TempDir, Profile) {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a.age"), b"age-encryption.org/v1\n...").unwrap();
        let profile = format!(
            r#"{{"version":1,"rekeyedDir":"./rekeyed","hosts":{{
              "web1":{{"hostPubkey":"{KEY}","secrets":{{"a":{{"file":"./a.age"}},
                 "gen":{{"file":"./gen.age","generator":"/bin/true"}}}}}},
              "new":{{"hostPubkey":null,"secrets":{{"a":{{"file":"./a.age"}}}}}}}}}}"#
        );
        std::fs::write(d.path().join("p.json"), profile).unwrap();
        let p = Profile::load(&d.path().join("p.json"), d.path()).unwrap();
        (d, p)
    }

    #[test]
    fn dry_run_counts_and_the_link_to_pending_generators() {
        let (d, p) = fleet();
        let before = std::fs::read_dir(d.path()).unwrap().count();
        let opts = RencOptions {
            decrypt_with: &[],
            interaction: Arc::new(NoInteraction),
            dry_run: true,
            scope: &Scope::all(),
        };
        let RencOutcome::DryRun(dry) = renc(&p, &opts, &NoEvents).unwrap() else {
            panic!("not a dry run")
        };
        assert_eq!(dry.generate.len(), 1);
        let gen = dry
            .plan
            .pairs
            .iter()
            .find(|p| p.secret.as_str() == "gen")
            .unwrap();
        assert!(dry.awaits_generation(gen));
        // web1/a and web1/gen to rekey; host `new` failing; nothing current.
        assert_eq!(
            dry.counts(),
            DryRunCounts {
                generate: 1,
                rekey: 2,
                remove: 0,
                failing: 1,
                current: 0
            }
        );
        // Nothing was written, no generator ran.
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), before);
    }

    #[test]
    fn check_lists_every_problem_in_order() {
        let (_d, p) = fleet();
        let report = check(&p, &Scope::all()).unwrap();
        let kinds: Vec<String> = report
            .problems()
            .iter()
            .map(|x| match x {
                CheckProblem::Host(h) => format!("host {}", h.host),
                CheckProblem::Stale { pair, .. } => format!("stale {}/{}", pair.host, pair.secret),
                CheckProblem::AwaitsGeneration(pair) => {
                    format!("generate {}/{}", pair.host, pair.secret)
                }
                CheckProblem::Blocked { pair, .. } => {
                    format!("blocked {}/{}", pair.host, pair.secret)
                }
                CheckProblem::LeftOver(r) => format!("left {}", r.path.display()),
                CheckProblem::Untracked(u) => format!("untracked {}", u.display()),
            })
            .collect();
        assert_eq!(kinds, ["host new", "stale web1/a", "generate web1/gen"]);
    }
}
