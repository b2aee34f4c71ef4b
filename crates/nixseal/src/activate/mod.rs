//! `nixseal deploy`: turn a host manifest into decrypted secrets under /run.
//!
//! The eight steps of DESIGN.md's "Host side", in [`deploy`]:
//! validate → lock → mount → host keys → build `<n>.tmp` → rename + switch
//! the symlink + place custom paths → prune → restart/reload units.
//!
//! Invariant: whenever the process dies, `symlink` points to one complete
//! generation; every file is owned and moded before its plaintext is written;
//! nothing under the mount point is reached through a symlink; nothing
//! outside the ramfs that nixseal did not create is replaced or deleted; and
//! what must survive a crash or a reboot (custom paths placed, restarts
//! owed) is recorded in the state directory before it is needed.
//!
//! Where each step lives: [`deploy`] here runs them in order and owns the
//! errors; [`lock`], [`mount`] and [`paths`] (steps 2–3 and safe directory
//! walking), `contents` (step 5: read, decrypt, write, render), [`switch`]
//! and `place` (step 6), [`state`] (the persistent records), [`generation`]
//! (numbering, creation, pruning: 7), [`units`] (step 8), [`users`]
//! (accounts), [`fault`] (test-only kill points).

mod contents;
pub mod fault;
pub mod generation;
pub mod lock;
pub mod mount;
pub mod paths;
mod place;
pub mod state;
pub mod switch;
pub mod units;
pub mod users;

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use rustix::fs::{fchmod, mkdirat, renameat, Mode};

use crate::identity::host::HostKeyError;
use crate::manifest::{self, Manifest, ManifestError, Scope, Template, Warning};
use contents::{build, load_keys, read_source, Item};
use paths::{PathError, Trust};
use place::Departed;
use state::{Placed, State, StateError};
use switch::There;
use users::{Accounts, AccountsError};

pub use generation::PRUNE_GRACE;
pub use place::METADATA;

/// Keeps this process's memory out of swap (`mlockall` with
/// `MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT`: pages are locked as they are
/// touched, nothing is pre-faulted). Deploy holds every secret of the host in
/// memory for a moment; the ramfs is never swapped, and with this neither are
/// the buffers. Only done with `CAP_IPC_LOCK` (root has it) or an unlimited
/// `RLIMIT_MEMLOCK`: under a finite limit, `MCL_FUTURE` would make later
/// allocations fail. Otherwise an error says why; the caller decides whether
/// that is fatal (the CLI warns and goes on).
pub fn lock_memory() -> io::Result<()> {
    use rustix::mm::{mlockall, MlockAllFlags};
    use rustix::process::{getrlimit, Resource};
    use rustix::thread::{capabilities, CapabilitySet};
    let capable = capabilities(None)
        .map(|c| c.effective.contains(CapabilitySet::IPC_LOCK))
        .unwrap_or(false);
    if !capable && getrlimit(Resource::Memlock).current.is_some() {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "no CAP_IPC_LOCK and a finite RLIMIT_MEMLOCK",
        ));
    }
    mlockall(MlockAllFlags::CURRENT | MlockAllFlags::FUTURE | MlockAllFlags::ONFAULT)
        .map_err(Into::into)
}

/// What `nixseal deploy` was asked to do.
#[derive(Debug, Clone, Default)]
pub struct DeployOptions {
    /// Decrypt and render in memory only; touch nothing.
    pub dry_run: bool,
    /// Do not restart or reload units.
    pub no_restart: bool,
    /// Install only `neededForUsers` secrets (owned by root) into the users location.
    pub users: bool,
}

/// What a deploy did.
#[derive(Debug, Clone, Default)]
pub struct DeployReport {
    /// The generation now active (`None` in a dry run).
    pub generation: Option<u64>,
    /// The generation active before (if any).
    pub previous: Option<u64>,
    /// The mount point used.
    pub mount_point: String,
    /// The symlink switched.
    pub symlink: String,
    /// Secret files installed (or that would be, in a dry run).
    pub secrets: usize,
    /// Templates rendered.
    pub templates: usize,
    /// Secrets whose content, owner or mode changed.
    pub changed: Vec<String>,
    /// Units restarted (`try-restart`).
    pub restarted: Vec<String>,
    /// Units reloaded (`try-reload-or-restart`).
    pub reloaded: Vec<String>,
    /// Why units were not touched, if they were not.
    pub units_skipped: Option<&'static str>,
    /// Generations removed.
    pub pruned: Vec<u64>,
    /// Whether this nixseal mounted the ramfs in this run.
    pub mounted: bool,
    /// Things done as asked that the operator should know about.
    pub warnings: Vec<Warning>,
    /// Custom paths of earlier deploys, no longer configured, removed.
    pub removed: Vec<String>,
    /// Custom paths of earlier deploys that now hold something nixseal did
    /// not put there: left alone (`path: what`).
    pub left_alone: Vec<String>,
    /// Units restarted or reloaded although their secrets did not change
    /// now: an earlier deploy owed them (killed, or systemctl failed).
    pub owed: Vec<String>,
}

/// How a deploy error maps to the documented exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Exit 2: the manifest or a source is wrong; nothing was touched.
    BadInput,
    /// Exit 1: a secret could not be decrypted/installed, or a later step failed.
    Failed,
    /// Exit 3: mount, lock, host key or account database.
    Environment,
}

/// One secret (or template) that could not be produced.
#[derive(Debug, thiserror::Error)]
#[error("{what} {name:?}: {reason}")]
pub struct SecretFailure {
    /// `secret` or `template`.
    pub what: &'static str,
    /// Its name.
    pub name: String,
    /// Why.
    pub reason: String,
}

/// A step after the switch that failed (the new generation is active).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FinishFailure {
    /// A custom path could not be placed.
    #[error("cannot place {path} for {name:?}: {reason}")]
    Place {
        /// The custom path.
        path: String,
        /// The secret or template.
        name: String,
        /// Why.
        reason: String,
    },
    /// A path placed by the previous generation could not be removed.
    #[error("cannot remove stale {path}: {source}")]
    Stale {
        /// The path.
        path: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Pruning old generations failed.
    #[error("cannot prune old generations in {mount_point}: {source}")]
    Prune {
        /// The mount point.
        mount_point: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// systemctl failed; the units are retried by the next deploy.
    #[error("{0} (the next deploy tries again)")]
    Units(#[from] units::UnitsError),
    /// The final records could not be written.
    #[error(transparent)]
    State(#[from] StateError),
}

/// Why a deploy failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeployError {
    /// The manifest is unreadable or invalid.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// A secret's source file is missing or not an age file.
    #[error("secret {secret:?}: source {}: {reason}", path.display())]
    Source {
        /// The secret.
        secret: String,
        /// The source path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// /etc/passwd or /etc/group unreadable.
    #[error(transparent)]
    Accounts(#[from] AccountsError),
    /// The lock could not be taken.
    #[error(transparent)]
    Lock(#[from] lock::LockError),
    /// The mount point is unusable.
    #[error(transparent)]
    Mount(#[from] mount::MountError),
    /// The symlink's directory is unusable.
    #[error("symlink {symlink}: {source}")]
    Location {
        /// The symlink.
        symlink: String,
        /// Why.
        #[source]
        source: PathError,
    },
    /// A host key could not be loaded.
    #[error(transparent)]
    HostKey(#[from] HostKeyError),
    /// The state directory or file is unusable.
    #[error(transparent)]
    State(#[from] StateError),
    /// Something nixseal did not create is where the stable symlink goes.
    #[error("symlink {path} holds {what}, which nixseal did not create; nixseal never replaces it — move it away, or choose another symlink")]
    Occupied {
        /// The symlink path.
        path: String,
        /// What is there.
        what: String,
    },
    /// Custom paths that cannot be placed; found before the switch, so the
    /// previous generation is still active.
    #[error("{} cannot be placed; nothing was switched, previous generation kept:{}", count(failures.len(), "custom path"), bullets(failures))]
    Placement {
        /// Every failure.
        failures: Vec<SecretFailure>,
    },
    /// One or more secrets failed; the temporary generation was removed and
    /// the previous generation is still active.
    #[error("{} failed; previous generation kept:{}", count(failures.len(), "secret"), bullets(failures))]
    Secrets {
        /// Every failure.
        failures: Vec<SecretFailure>,
    },
    /// The generation directory could not be created or switched to.
    #[error("cannot {op} {path}: {source}; previous generation kept")]
    Generation {
        /// What was attempted.
        op: &'static str,
        /// The path.
        path: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The new generation is active but a later step failed.
    #[error("generation {generation} is active, but {}:{}", count(failures.len(), "step"), bullets(failures))]
    Finish {
        /// The active generation.
        generation: u64,
        /// Every failure.
        failures: Vec<FinishFailure>,
        /// What was done.
        report: Box<DeployReport>,
    },
}

fn count(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

fn bullets<T: std::fmt::Display>(v: &[T]) -> String {
    v.iter().map(|x| format!("\n  - {x}")).collect()
}

impl DeployError {
    /// The exit-code class of this error.
    pub fn class(&self) -> ErrorClass {
        match self {
            DeployError::Manifest(ManifestError::Read { .. }) => ErrorClass::BadInput,
            DeployError::Manifest(_) | DeployError::Source { .. } => ErrorClass::BadInput,
            DeployError::Accounts(_)
            | DeployError::Lock(_)
            | DeployError::Mount(_)
            | DeployError::Location { .. }
            | DeployError::HostKey(_)
            | DeployError::State(_)
            | DeployError::Occupied { .. } => ErrorClass::Environment,
            DeployError::Secrets { .. }
            | DeployError::Placement { .. }
            | DeployError::Generation { .. }
            | DeployError::Finish { .. } => ErrorClass::Failed,
        }
    }
}

/// Runs `nixseal deploy` for the manifest at `manifest_path`.
pub fn deploy(manifest_path: &Path, opts: &DeployOptions) -> Result<DeployReport, DeployError> {
    // 1. Validate everything before touching anything.
    let m = Manifest::load(manifest_path)?;
    let scope = if opts.users {
        Scope::Users
    } else {
        Scope::Main
    };
    let accounts = if scope == Scope::Main {
        Accounts::load_system()?
    } else {
        // `--users` installs root-owned files and runs before accounts exist.
        Accounts::load_system().unwrap_or_default()
    };
    m.validate(manifest_path, &accounts, scope)?;
    let (mount_point, symlink) = m.locations(scope);
    let templates: Vec<&Template> = match scope {
        Scope::Main => m.templates.iter().collect(),
        Scope::Users => Vec::new(),
    };
    let referenced: HashSet<&str> = templates
        .iter()
        .flat_map(|t| manifest::placeholders(&t.content).unwrap_or_default())
        .collect();
    let mut items = Vec::new();
    for s in &m.secrets {
        let install = match scope {
            Scope::Main => !s.needed_for_users,
            Scope::Users => s.needed_for_users,
        };
        if !install && !referenced.contains(s.name.as_str()) {
            continue;
        }
        let (uid, gid) = match scope {
            Scope::Main if install => (
                accounts.uid(&s.owner).unwrap_or(u32::MAX),
                accounts.gid(&s.group).unwrap_or(u32::MAX),
            ),
            _ => (0, 0),
        };
        if uid == u32::MAX || gid == u32::MAX {
            // validate() refused unknown accounts; never fall back to root.
            unreachable!("validated owner of {} has no id", s.name);
        }
        items.push(Item {
            secret: s,
            install,
            uid,
            gid,
            mode: manifest::parse_mode(&s.mode).unwrap_or(0),
            ciphertext: Vec::new(),
        });
    }
    items
        .par_iter_mut()
        .try_for_each(|it| -> Result<(), DeployError> {
            it.ciphertext = read_source(it.secret)?;
            Ok(())
        })?;
    fault::point("after-validate");

    let mut report = DeployReport {
        mount_point: mount_point.clone(),
        symlink: symlink.clone(),
        secrets: items.iter().filter(|i| i.install).count(),
        templates: templates.len(),
        warnings: m.warnings(scope),
        ..DeployReport::default()
    };

    // 4. Host keys (only needed when there is something to decrypt). Loaded
    // before the lock and the mount so that a missing key touches nothing.
    let ids = load_keys(&m, !items.is_empty())?;
    fault::point("after-keys");

    if opts.dry_run {
        build(&items, &templates, &ids, &accounts, None, None)?;
        return Ok(report);
    }

    // 2. Lock.
    let _lock = lock::acquire(&mount_point)?;
    fault::point("after-lock");

    // The records of earlier deploys (custom paths, restarts owed): a
    // damaged record stops the deploy before anything is mounted.
    let (mut store, old_state) = state::Store::open(m.state_dir(), &mount_point)?;

    // 3. Mount point and the symlink's directory.
    let (mount_fd, state) = mount::ensure(&mount_point)?;
    report.mounted = state == mount::MountState::Mounted;
    let (link_parent, link_base) = paths::split(&symlink);
    let link_dir = paths::open_dir(link_parent, true, Trust::RootOnly).map_err(|source| {
        DeployError::Location {
            symlink: symlink.clone(),
            source,
        }
    })?;
    check_stable_link(&link_dir, link_base, &symlink, &mount_point)?;

    // What a crash may have left next to the paths the records name.
    place::clean_temps(&old_state.placed);
    fault::point("after-mount");

    // 5. Build <n>.tmp.
    let gen_err = |op, path: &str| {
        let path = path.to_owned();
        move |e: rustix::io::Errno| DeployError::Generation {
            op,
            path,
            source: e.into(),
        }
    };
    let entries = generation::list(&mount_fd).map_err(|source| DeployError::Generation {
        op: "list",
        path: mount_point.clone(),
        source,
    })?;
    for e in &entries {
        if let generation::Entry::Tmp(n) = e {
            let name = format!("{n}.tmp");
            generation::remove_tree(&mount_fd, &name).map_err(|source| {
                DeployError::Generation {
                    op: "remove leftover",
                    path: format!("{mount_point}/{name}"),
                    source,
                }
            })?;
        }
    }
    let previous = generation::active(&link_dir, link_base, &mount_point);
    report.previous = previous;
    let n = generation::next_number(&entries);
    let tmp_name = format!("{n}.tmp");
    let tmp_path = format!("{mount_point}/{tmp_name}");
    mkdirat(&mount_fd, tmp_name.as_str(), Mode::from_raw_mode(0o700))
        .map_err(gen_err("create", &tmp_path))?;
    let remove_tmp = || {
        let _ = generation::remove_tree(&mount_fd, &tmp_name);
    };
    let tmp_fd = match paths::open_dir_at(&mount_fd, &tmp_name, &tmp_path) {
        Ok(fd) => fd,
        Err(e) => {
            remove_tmp();
            return Err(DeployError::Generation {
                op: "open",
                path: tmp_path.clone(),
                source: io::Error::other(e.to_string()),
            });
        }
    };
    fault::point("after-tmp-created");
    let prev_fd = previous.and_then(|p| {
        let name = p.to_string();
        paths::open_dir_at(&mount_fd, &name, &name).ok()
    });

    let built = (|| {
        let built = build(
            &items,
            &templates,
            &ids,
            &accounts,
            Some(&tmp_fd),
            prev_fd.as_ref(),
        )?;
        Ok::<_, DeployError>(built)
    })();
    let built = match built {
        Ok(b) => b,
        Err(e) => {
            drop(tmp_fd);
            remove_tmp();
            return Err(e);
        }
    };
    let mut plans = place::plans(&items, &templates, &built, &symlink);
    let finished = serde_json::to_vec(&place::metadata(&plans))
        .map_err(|e| io::Error::other(e.to_string()))
        .and_then(|json| generation::write_new_file(&tmp_fd, METADATA, 0, 0, 0o600, &json))
        .map_err(|source| DeployError::Generation {
            op: "write",
            path: format!("{tmp_path}/{METADATA}"),
            source,
        })
        .and_then(|()| {
            fchmod(&tmp_fd, Mode::from_raw_mode(0o751)).map_err(gen_err("chmod", &tmp_path))
        });
    drop(tmp_fd);
    if let Err(e) = finished {
        remove_tmp();
        return Err(e);
    }
    fault::point("after-tmp-complete");

    // 6a. Before switching: every custom path must be placeable.
    let records: HashMap<&str, &Placed> = old_state
        .placed
        .iter()
        .map(|r| (r.path.as_str(), r))
        .collect();
    let failures = place::precheck(&mut plans, &records);
    if !failures.is_empty() {
        remove_tmp();
        return Err(DeployError::Placement { failures });
    }

    // Changes are known from the build (compared with the previous
    // generation); restarts owed by earlier deploys are added, as long as
    // a secret of this manifest still names the unit.
    let changed: Vec<&Item> = items
        .iter()
        .zip(&built.secrets)
        .filter(|(it, p)| it.install && p.changed)
        .map(|(it, _)| it)
        .collect();
    report.changed = changed.iter().map(|i| i.secret.name.clone()).collect();
    let listed: HashSet<&str> = items
        .iter()
        .filter(|i| i.install)
        .flat_map(|i| i.secret.restart_units.iter().chain(&i.secret.reload_units))
        .map(String::as_str)
        .collect();
    let owed = |v: &[String]| -> Vec<String> {
        v.iter()
            .filter(|u| listed.contains(u.as_str()))
            .cloned()
            .collect()
    };
    let (owed_restart, owed_reload) = (
        owed(&old_state.pending_restart),
        owed(&old_state.pending_reload),
    );
    let (restart, reload) = units::plan(
        owed_restart
            .iter()
            .chain(changed.iter().flat_map(|i| &i.secret.restart_units)),
        owed_reload
            .iter()
            .chain(changed.iter().flat_map(|i| &i.secret.reload_units)),
    );
    let skip = if restart.is_empty() && reload.is_empty() {
        None
    } else if opts.no_restart {
        Some("--no-restart")
    } else if !units::systemd_running() {
        Some("systemd is not running")
    } else if units::early_boot() {
        Some("the system is still booting")
    } else {
        None
    };
    let (pending_restart, pending_reload) = match skip {
        None => (restart.clone(), reload.clone()),
        // Units that have not started yet read the new generation when
        // they start: nothing is owed any more.
        Some("the system is still booting") => (Vec::new(), Vec::new()),
        Some(_) => (owed_restart.clone(), owed_reload.clone()),
    };

    // 6b. Record, before the switch, everything that may exist after it:
    // the custom paths (with the copies about to be written) and the
    // restarts owed.
    let intent = |plans: &[place::Plan]| State {
        version: state::VERSION,
        mount_point: mount_point.clone(),
        placed: {
            let planned: HashSet<&str> = plans.iter().map(|p| p.path).collect();
            let mut v: Vec<Placed> = old_state
                .placed
                .iter()
                .filter(|r| !planned.contains(r.path.as_str()))
                .cloned()
                .collect();
            v.extend(plans.iter().map(|p| p.record(records.get(p.path).copied())));
            v
        },
        pending_restart: pending_restart.clone(),
        pending_reload: pending_reload.clone(),
    };
    if let Err(e) = store.save(&intent(&plans)) {
        remove_tmp();
        return Err(e.into());
    }
    fault::point("after-record");
    let failures = place::write_copies(&mut plans);
    let recorded = if failures.is_empty() {
        store.save(&intent(&plans)).map_err(DeployError::from)
    } else {
        Err(DeployError::Placement { failures })
    };
    if let Err(e) = recorded {
        place::remove_copy_temps(&plans);
        remove_tmp();
        return Err(e);
    }
    fault::point("after-copies");

    // 6c. Rename, switch, place.
    let gen_name = n.to_string();
    let gen_path = format!("{mount_point}/{gen_name}");
    if let Err(e) = renameat(&mount_fd, tmp_name.as_str(), &mount_fd, gen_name.as_str()) {
        place::remove_copy_temps(&plans);
        remove_tmp();
        return Err(gen_err("rename to", &gen_path)(e));
    }
    fault::point("after-rename");
    if let Err(source) = switch::replace_symlink(&link_dir, link_base, &gen_path, true) {
        place::remove_copy_temps(&plans);
        let _ = generation::remove_tree(&mount_fd, &gen_name);
        return Err(DeployError::Generation {
            op: "switch symlink",
            path: symlink.clone(),
            source,
        });
    }
    fault::point("after-switch");
    report.generation = Some(n);

    let mut failures = Vec::new();
    place::place(&mut plans, &records, &mut failures);
    // Paths earlier deploys placed that are no longer configured.
    let planned: HashSet<&str> = plans.iter().map(|p| p.path).collect();
    let mut kept = Vec::new();
    for r in old_state
        .placed
        .iter()
        .filter(|r| !planned.contains(r.path.as_str()))
    {
        match place::remove_departed(r, &mut failures) {
            Departed::Removed => report.removed.push(r.path.clone()),
            Departed::Gone => {}
            Departed::LeftAlone(t) => report.left_alone.push(format!("{}: {t}", r.path)),
            Departed::Failed => kept.push(r.clone()),
        }
    }
    drop(prev_fd);
    fault::point("after-paths");

    // 7. Prune. A generation with nothing in it (the last secret and
    // template left the configuration) must not leave the plaintext of the
    // one it replaced in RAM until some later deploy: wait out the readers'
    // grace and prune that one too, in this run. keepGenerations = 0 still
    // keeps everything.
    let spared = if items.is_empty() && templates.is_empty() && m.keep_generations != 0 {
        if previous.is_some() {
            generation::wait_out_grace(&mount_fd, n);
        }
        None
    } else {
        previous
    };
    match generation::prune(&mount_fd, m.keep_generations, n, spared) {
        Ok(p) => report.pruned = p,
        Err(source) => failures.push(FinishFailure::Prune {
            mount_point: mount_point.clone(),
            source,
        }),
    }
    fault::point("after-prune");

    // 8. Units.
    let (mut still_restart, mut still_reload) = (pending_restart, pending_reload);
    if let Some(why) = skip {
        report.units_skipped = Some(why);
    } else if !restart.is_empty() || !reload.is_empty() {
        let now: HashSet<&str> = changed
            .iter()
            .flat_map(|i| i.secret.restart_units.iter().chain(&i.secret.reload_units))
            .map(String::as_str)
            .collect();
        report.owed = restart
            .iter()
            .chain(&reload)
            .filter(|u| !now.contains(u.as_str()))
            .cloned()
            .collect();
        match units::systemctl("try-restart", &restart) {
            Ok(()) => {
                report.restarted = restart;
                still_restart.clear();
            }
            Err(e) => failures.push(e.into()),
        }
        match units::systemctl("try-reload-or-restart", &reload) {
            Ok(()) => {
                report.reloaded = reload;
                still_reload.clear();
            }
            Err(e) => failures.push(e.into()),
        }
    }
    fault::point("after-units");

    // The records as they are now.
    let mut placed: Vec<Placed> = plans
        .iter()
        .map(|p| p.final_record(records.get(p.path).copied()))
        .collect();
    placed.extend(kept);
    let last = State {
        version: state::VERSION,
        mount_point: mount_point.clone(),
        placed,
        pending_restart: still_restart,
        pending_reload: still_reload,
    };
    if let Err(e) = store.save(&last) {
        failures.push(FinishFailure::State(e));
    }

    if failures.is_empty() {
        Ok(report)
    } else {
        Err(DeployError::Finish {
            generation: n,
            failures,
            report: Box::new(report),
        })
    }
}

/// The stable symlink may only replace nothing or a symlink nixseal made: one
/// into `mount_point`, or into another ramfs nixseal mounted (the mount
/// point was changed).
fn check_stable_link(
    dir: &rustix::fd::OwnedFd,
    base: &str,
    symlink: &str,
    mount_point: &str,
) -> Result<(), DeployError> {
    let there = switch::look(dir, base).map_err(|e| DeployError::Location {
        symlink: symlink.to_owned(),
        source: PathError::Io {
            op: "stat",
            path: symlink.to_owned(),
            source: e,
        },
    })?;
    let ours = match &there {
        There::Absent => true,
        There::Symlink(t) => {
            let (tp, tb) = paths::split(t);
            t.strip_prefix(mount_point)
                .is_some_and(|r| r.starts_with('/'))
                || (t.starts_with('/')
                    && manifest::check_abs_path(t).is_ok()
                    && matches!(generation::classify(tb), generation::Entry::Generation(_))
                    && mount::is_ours(tp))
        }
        _ => false,
    };
    if ours {
        Ok(())
    } else {
        Err(DeployError::Occupied {
            path: symlink.to_owned(),
            what: there.to_string(),
        })
    }
}
