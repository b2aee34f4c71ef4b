//! `nixseal deploy`: turn a host manifest into decrypted secrets under /run.
//!
//! The eight steps of DESIGN.md's "Host side", in [`deploy`]:
//! validate → lock → mount → host keys → build `<n>.tmp` → rename + switch
//! the symlink + place custom paths → prune → restart/reload units.
//!
//! Invariant: whenever the process dies, `symlink` points to one complete
//! generation; every file is owned and moded before its plaintext is written;
//! nothing under the mount point is reached through a symlink.

pub mod fault;
pub mod generation;
pub mod lock;
pub mod mount;
pub mod paths;
pub mod switch;
pub mod units;
pub mod users;

use std::collections::{HashMap, HashSet};
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rayon::prelude::*;
use rustix::fs::{fchmod, mkdirat, openat, renameat, statat, AtFlags, Mode, OFlags};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::identity::host::{self, HostIdentity, HostKeyError};
use crate::manifest::{self, Manifest, ManifestError, Scope, Secret, Template};
use paths::{PathError, Trust};
use users::{Accounts, AccountsError};

/// The per-generation record of placed custom paths (not a valid secret
/// name, since names cannot start with `.`).
pub const METADATA: &str = ".nixseal.json";

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

/// One secret to decrypt.
struct Item<'m> {
    secret: &'m Secret,
    install: bool,
    uid: u32,
    gid: u32,
    mode: u32,
    ciphertext: Vec<u8>,
}

/// What was decrypted for one item.
struct Plain {
    bytes: Zeroizing<Vec<u8>>,
    changed: bool,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Metadata {
    version: u32,
    placed: Vec<Placed>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Placed {
    path: String,
    /// Symlink target in symlink mode; `None` for a copy.
    #[serde(default)]
    target: Option<String>,
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
    match prune(&mount_fd, m.keep_generations, n, previous) {
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

fn read_source(s: &Secret) -> Result<Vec<u8>, DeployError> {
    let err = |reason: String| DeployError::Source {
        secret: s.name.clone(),
        path: PathBuf::from(&s.source),
        reason,
    };
    let bytes = std::fs::read(&s.source).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            err("does not exist (rebuild the host; if the rekeyed file is missing, run `nix run .#renc`)".into())
        } else {
            err(e.to_string())
        }
    })?;
    if !bytes.starts_with(b"age-encryption.org/v1\n") {
        return Err(err(
            "is not a binary age file (expected the `age-encryption.org/v1` header written by `nixseal renc`)".into(),
        ));
    }
    Ok(bytes)
}

fn load_keys(m: &Manifest, needed: bool) -> Result<Vec<HostIdentity>, HostKeyError> {
    if !needed {
        return Ok(Vec::new());
    }
    m.host_keys
        .iter()
        .map(|k| host::load(Path::new(&k.path)))
        .collect()
}

/// Decrypts with the host keys through the one shared age path
/// ([`crate::crypto::decrypt`]), phrasing the failures for a host.
fn decrypt(ct: &[u8], ids: &[HostIdentity]) -> Result<Zeroizing<Vec<u8>>, String> {
    let ids: Vec<&dyn age::Identity> = ids.iter().map(|i| i as &dyn age::Identity).collect();
    crate::crypto::decrypt(ct, &ids).map_err(|e| match e {
        crate::crypto::DecryptFailure::NoMatchingIdentity => {
            "not encrypted to this host's key (wrong host key, or stale rekey: run `nix run .#renc` and redeploy)".to_owned()
        }
        e => format!("cannot decrypt: {e}"),
    })
}

struct Built {
    /// Parallel to `items`.
    secrets: Vec<Plain>,
}

/// Decrypts every item (in parallel) and renders every template; with `dir`,
/// writes installed files there and compares them with `prev`.
fn build(
    items: &[Item],
    templates: &[&Template],
    ids: &[HostIdentity],
    accounts: &Accounts,
    dir: Option<&OwnedFd>,
    prev: Option<&OwnedFd>,
) -> Result<Built, DeployError> {
    let first = AtomicBool::new(true);
    let results: Vec<Result<Plain, SecretFailure>> = items
        .par_iter()
        .map(|it| {
            let fail = |reason| SecretFailure {
                what: "secret",
                name: it.secret.name.clone(),
                reason,
            };
            let bytes = decrypt(&it.ciphertext, ids).map_err(fail)?;
            let mut changed = false;
            if let (Some(dir), true) = (dir, it.install) {
                generation::write_new_file(dir, &it.secret.name, it.uid, it.gid, it.mode, &bytes)
                    .map_err(|e| fail(format!("cannot write: {e}")))?;
                if first.swap(false, Ordering::Relaxed) {
                    fault::point("mid-decrypt");
                }
                changed = !prev.is_some_and(|p| {
                    generation::same_file(p, &it.secret.name, it.uid, it.gid, it.mode, &bytes)
                });
            }
            Ok(Plain { bytes, changed })
        })
        .collect();
    let mut failures = Vec::new();
    let mut secrets = Vec::with_capacity(items.len());
    for r in results {
        match r {
            Ok(p) => secrets.push(p),
            Err(f) => failures.push(f),
        }
    }
    if !failures.is_empty() {
        return Err(DeployError::Secrets { failures });
    }
    let by_name: HashMap<&str, &[u8]> = items
        .iter()
        .zip(&secrets)
        .map(|(it, p)| (it.secret.name.as_str(), p.bytes.as_slice()))
        .collect();
    for t in templates {
        let fail = |reason| SecretFailure {
            what: "template",
            name: t.name.clone(),
            reason,
        };
        let out = render(&t.content, &by_name).map_err(|r| DeployError::Secrets {
            failures: vec![fail(r)],
        })?;
        if let Some(dir) = dir {
            let uid = accounts.uid(&t.owner).unwrap_or(u32::MAX);
            let gid = accounts.gid(&t.group).unwrap_or(u32::MAX);
            let mode = manifest::parse_mode(&t.mode).unwrap_or(0);
            if uid == u32::MAX || gid == u32::MAX {
                unreachable!("validated owner of template {} has no id", t.name);
            }
            generation::write_new_file(dir, &t.name, uid, gid, mode, &out).map_err(|e| {
                DeployError::Secrets {
                    failures: vec![fail(format!("cannot write: {e}"))],
                }
            })?;
        }
    }
    Ok(Built { secrets })
}

/// Replaces `{{nixseal:NAME}}` placeholders with secret contents.
pub fn render(content: &str, secrets: &HashMap<&str, &[u8]>) -> Result<Zeroizing<Vec<u8>>, String> {
    let mut out = Zeroizing::new(Vec::with_capacity(content.len()));
    let mut rest = content;
    while let Some(i) = rest.find(manifest::PLACEHOLDER_OPEN) {
        out.extend_from_slice(&rest.as_bytes()[..i]);
        let after = &rest[i + manifest::PLACEHOLDER_OPEN.len()..];
        let end = after
            .find(manifest::PLACEHOLDER_CLOSE)
            .ok_or("unterminated placeholder")?;
        let name = &after[..end];
        let value = secrets
            .get(name)
            .ok_or_else(|| format!("placeholder names unknown secret {name:?}"))?;
        out.extend_from_slice(value);
        rest = &after[end + manifest::PLACEHOLDER_CLOSE.len()..];
    }
    out.extend_from_slice(rest.as_bytes());
    Ok(out)
}

fn planned_placements(items: &[Item], templates: &[&Template], symlink: &str) -> Vec<Placed> {
    let mut v = Vec::new();
    for it in items.iter().filter(|i| i.install) {
        let s = it.secret;
        if !manifest::is_default_path(&s.path, symlink, &s.name) {
            v.push(Placed {
                path: s.path.clone(),
                target: s.symlink.then(|| format!("{symlink}/{}", s.name)),
            });
        }
    }
    for t in templates {
        if !manifest::is_default_path(&t.path, symlink, &t.name) {
            v.push(Placed {
                path: t.path.clone(),
                target: Some(format!("{symlink}/{}", t.name)),
            });
        }
    }
    v
}

fn place_paths(
    items: &[Item],
    templates: &[&Template],
    built: &Built,
    symlink: &str,
    failures: &mut Vec<FinishFailure>,
) {
    let mut place = |name: &str, path: &str, copy: Option<(&Item, &[u8])>| {
        let (parent, base) = paths::split(path);
        let r = paths::open_dir(parent, true, Trust::NotWorldWritable)
            .map_err(|e| e.to_string())
            .and_then(|dir| {
                match copy {
                    None => {
                        switch::replace_symlink(&dir, base, &format!("{symlink}/{name}"), false)
                    }
                    Some((it, bytes)) => {
                        switch::replace_copy(&dir, base, it.uid, it.gid, it.mode, bytes)
                    }
                }
                .map_err(|e| e.to_string())
            });
        if let Err(reason) = r {
            failures.push(FinishFailure::Place {
                path: path.to_owned(),
                name: name.to_owned(),
                reason,
            });
        }
    };
    for (it, p) in items.iter().zip(&built.secrets) {
        let s = it.secret;
        if !it.install || manifest::is_default_path(&s.path, symlink, &s.name) {
            continue;
        }
        let copy = (!s.symlink).then_some((it, p.bytes.as_slice()));
        place(&s.name, &s.path, copy);
    }
    for t in templates {
        if !manifest::is_default_path(&t.path, symlink, &t.name) {
            place(&t.name, &t.path, None);
        }
    }
}

/// Removes custom paths the previous generation placed and this one does not.
fn remove_stale(prev: &OwnedFd, placed: &[Placed], failures: &mut Vec<FinishFailure>) {
    let Ok(fd) = openat(
        prev,
        METADATA,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        return;
    };
    let mut text = Vec::new();
    if std::fs::File::from(fd).read_to_end(&mut text).is_err() {
        return;
    }
    let Ok(old) = serde_json::from_slice::<Metadata>(&text) else {
        return;
    };
    let now: HashSet<&str> = placed.iter().map(|p| p.path.as_str()).collect();
    for p in old.placed.iter().filter(|p| !now.contains(p.path.as_str())) {
        if manifest::check_abs_path(&p.path).is_err() {
            continue;
        }
        let (parent, base) = paths::split(&p.path);
        let dir = match paths::open_dir(parent, false, Trust::NotWorldWritable) {
            Ok(d) => d,
            Err(_) => continue, // parent gone or unusable: nothing of ours to remove
        };
        if let Err(source) = switch::remove_placed(&dir, base, p.target.as_deref()) {
            failures.push(FinishFailure::Stale {
                path: p.path.clone(),
                source,
            });
        }
    }
}

/// How long a replaced generation survives at least: a reader that resolved
/// the symlink just before a switch may still be walking into the old
/// generation. Only back-to-back deploys ever meet it.
pub const PRUNE_GRACE: Duration = Duration::from_secs(1);

/// Removes leftover temporaries and generations beyond `keep` (0 keeps
/// everything). Kept regardless: the active generation, `previous` (the one
/// this run switched away from), and any generation replaced less than
/// [`PRUNE_GRACE`] ago. A later run removes them.
fn prune(
    mount_fd: &OwnedFd,
    keep: u32,
    active: u64,
    previous: Option<u64>,
) -> io::Result<Vec<u64>> {
    let entries = generation::list(mount_fd)?;
    let mut first = true;
    let mut removed = Vec::new();
    for e in &entries {
        if let generation::Entry::Tmp(n) = e {
            generation::remove_tree(mount_fd, &format!("{n}.tmp"))?;
        }
    }
    if keep == 0 {
        return Ok(removed);
    }
    let mut all: Vec<u64> = entries
        .iter()
        .filter_map(|e| match e {
            generation::Entry::Generation(n) => Some(*n),
            _ => None,
        })
        .collect();
    all.sort_unstable();
    // A generation was replaced when the next one was finished (its ctime:
    // set by the chmod and rename that completed it). Looked up before
    // anything is removed.
    let finished: HashMap<u64, Option<SystemTime>> = all
        .iter()
        .map(|g| {
            let t = statat(mount_fd, g.to_string().as_str(), AtFlags::SYMLINK_NOFOLLOW)
                .ok()
                .and_then(|st| {
                    let secs = u64::try_from(st.st_ctime).ok()?;
                    let nanos = u32::try_from(st.st_ctime_nsec).ok()?;
                    Some(UNIX_EPOCH + Duration::new(secs, nanos))
                });
            (*g, t)
        })
        .collect();
    let now = SystemTime::now();
    let recently_replaced = |g: u64| {
        let Some(next) = all.iter().find(|h| **h > g) else {
            return true;
        };
        // A clock that went backwards must not pin generations forever.
        finished[next]
            .and_then(|t| now.duration_since(t).ok())
            .is_some_and(|age| age < PRUNE_GRACE)
    };
    let candidates: Vec<u64> = all
        .iter()
        .rev()
        .filter(|g| **g != active)
        .skip(keep as usize - 1)
        .copied()
        .filter(|g| Some(*g) != previous)
        .collect();
    for g in candidates {
        if recently_replaced(g) {
            continue;
        }
        generation::remove_tree(mount_fd, &g.to_string())?;
        removed.push(g);
        if first {
            first = false;
            fault::point("mid-prune");
        }
    }
    removed.sort_unstable();
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_placeholders() {
        let mut m: HashMap<&str, &[u8]> = HashMap::new();
        m.insert("a", b"AAA");
        m.insert("b", b"B\n");
        let out = render("x={{nixseal:a}};y={{nixseal:b}}{{nixseal:a}}\n", &m).unwrap();
        assert_eq!(out.as_slice(), b"x=AAA;y=B\nAAA\n");
        assert!(render("{{nixseal:zz}}", &m).is_err());
        assert_eq!(
            render("plain {{x}}", &m).unwrap().as_slice(),
            b"plain {{x}}"
        );
    }
}
