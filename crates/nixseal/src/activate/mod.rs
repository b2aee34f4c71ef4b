//! `nixseal deploy`: turn a host manifest into decrypted secrets under /run.
//!
//! The eight steps of DESIGN.md's "Host side", in [`deploy`]:
//! validate → lock → mount → host keys → build `<n>.tmp` → rename + switch
//! the symlink + place custom paths → prune → restart/reload units.
//!
//! Invariant: whenever the process dies, `symlink` points to one complete
//! generation; every file is owned and moded before its plaintext is written;
//! nothing under the mount point is reached through a symlink.
//!
//! Where each step lives: [`deploy`] here runs them in order and owns the
//! errors; [`lock`], [`mount`] and [`paths`] (steps 2–3 and safe directory
//! walking), `contents` (step 5: read, decrypt, write, render), [`switch`]
//! and `place` (step 6), [`generation`] (numbering, creation, pruning: 7),
//! [`units`] (step 8), [`users`] (accounts), [`fault`] (test-only kill points).

mod contents;
pub mod fault;
pub mod generation;
pub mod lock;
pub mod mount;
pub mod paths;
mod place;
pub mod switch;
pub mod units;
pub mod users;

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use rustix::fs::{fchmod, mkdirat, renameat, Mode};

use crate::identity::host::HostKeyError;
use crate::manifest::{self, Manifest, ManifestError, Scope, Template};
use contents::{build, load_keys, read_source, Item};
use paths::{PathError, Trust};
use place::{place_paths, planned_placements, remove_stale, Metadata};
use users::{Accounts, AccountsError};

pub use generation::PRUNE_GRACE;
pub use place::METADATA;

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
    /// systemctl failed.
    #[error(transparent)]
    Units(#[from] units::UnitsError),
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
            | DeployError::HostKey(_) => ErrorClass::Environment,
            DeployError::Secrets { .. }
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
    let tmp_fd = paths::open_dir_at(&mount_fd, &tmp_name, &tmp_path).map_err(|e| {
        DeployError::Generation {
            op: "open",
            path: tmp_path.clone(),
            source: io::Error::other(e.to_string()),
        }
    })?;
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
        let placed = planned_placements(&items, &templates, &symlink);
        let meta = serde_json::to_vec(&Metadata {
            version: 1,
            placed: placed.clone(),
        })
        .map_err(|e| io::Error::other(e.to_string()))
        .and_then(|json| generation::write_new_file(&tmp_fd, METADATA, 0, 0, 0o600, &json))
        .map_err(|source| DeployError::Generation {
            op: "write",
            path: format!("{tmp_path}/{METADATA}"),
            source,
        });
        meta?;
        fchmod(&tmp_fd, Mode::from_raw_mode(0o751)).map_err(gen_err("chmod", &tmp_path))?;
        Ok::<_, DeployError>((built, placed))
    })();
    let (built, placed) = match built {
        Ok(b) => b,
        Err(e) => {
            drop(tmp_fd);
            let _ = generation::remove_tree(&mount_fd, &tmp_name);
            return Err(e);
        }
    };
    drop(tmp_fd);
    fault::point("after-tmp-complete");

    // 6. Rename, switch, place.
    let gen_name = n.to_string();
    let gen_path = format!("{mount_point}/{gen_name}");
    if let Err(e) = renameat(&mount_fd, tmp_name.as_str(), &mount_fd, gen_name.as_str()) {
        let _ = generation::remove_tree(&mount_fd, &tmp_name);
        return Err(gen_err("rename to", &gen_path)(e));
    }
    fault::point("after-rename");
    if let Err(source) = switch::replace_symlink(&link_dir, link_base, &gen_path, true) {
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
    place_paths(&items, &templates, &built, &symlink, &mut failures);
    if let Some(prev) = &prev_fd {
        remove_stale(prev, &placed, &mut failures);
    }
    drop(prev_fd);
    fault::point("after-paths");

    // Changes are known from the build (compared with the previous generation).
    let changed: Vec<&Item> = items
        .iter()
        .zip(&built.secrets)
        .filter(|(it, p)| it.install && p.changed)
        .map(|(it, _)| it)
        .collect();
    report.changed = changed.iter().map(|i| i.secret.name.clone()).collect();

    // 7. Prune.
    match generation::prune(&mount_fd, m.keep_generations, n, previous) {
        Ok(p) => report.pruned = p,
        Err(source) => failures.push(FinishFailure::Prune {
            mount_point: mount_point.clone(),
            source,
        }),
    }
    fault::point("after-prune");

    // 8. Units.
    let (restart, reload) = units::plan(
        changed.iter().flat_map(|i| &i.secret.restart_units),
        changed.iter().flat_map(|i| &i.secret.reload_units),
    );
    if restart.is_empty() && reload.is_empty() {
    } else if opts.no_restart {
        report.units_skipped = Some("--no-restart");
    } else if !units::systemd_running() {
        report.units_skipped = Some("systemd is not running");
    } else if units::early_boot() {
        report.units_skipped = Some("the system is still booting");
    } else {
        match units::systemctl("try-restart", &restart) {
            Ok(()) => report.restarted = restart,
            Err(e) => failures.push(e.into()),
        }
        match units::systemctl("try-reload-or-restart", &reload) {
            Ok(()) => report.reloaded = reload,
            Err(e) => failures.push(e.into()),
        }
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
