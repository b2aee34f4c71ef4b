//! Step 6's custom paths: each secret or template whose `path` is not the
//! default `<symlink>/<name>` is placed there (a symlink through the stable
//! symlink, or a copy), and what an earlier deploy placed but this one does
//! not is removed.
//!
//! Ownership is decided from the records in the state directory
//! ([`super::state`]), never from the kind of file found: an entry at a custom
//! path is nixseal's only if it is a symlink to a target nixseal recorded (or
//! exactly the symlink nixseal would create) or a regular file whose
//! identity nixseal recorded when it wrote it. Anything else is refused
//! before the switch, and never replaced or deleted.
//!
//! A copy is plaintext wherever it lands, so it is placed only on a memory
//! file system (tmpfs, ramfs) unless the secret says `allowPlaintextOnDisk`.
//! Copies are written under their temporary name before the switch, after
//! the records say they may exist, so a crash never leaves plaintext nixseal
//! has no record of.

use std::collections::HashMap;
use std::io::Write;
use std::os::fd::OwnedFd;

use rustix::fs::{fstat, fstatfs};
use serde::{Deserialize, Serialize};

use super::contents::Built;
use super::generation;
use super::mount::{RAMFS_MAGIC, TMPFS_MAGIC};
use super::paths::{self, Trust};
use super::plan::{InstallPlan, Ownership};
use super::state::{removable_temp, FileId, Placed};
use super::switch::{self, There};
use super::{FailureReason, FinishFailure, PlaceProblem, SecretFailure};
use crate::contract::manifest::{temp_name, TEMP_SUFFIXES};

/// The per-generation list of the custom paths it placed (informational;
/// the authoritative records are in the state directory). Not a valid
/// secret name, since names cannot start with `.`.
pub const METADATA: &str = ".nixseal.json";

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Metadata {
    pub(super) version: u32,
    pub(super) placed: Vec<MetaPlaced>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct MetaPlaced {
    pub(super) path: String,
    /// Symlink target in symlink mode; `None` for a copy.
    #[serde(default)]
    pub(super) target: Option<String>,
}

/// How a custom path is filled.
pub(super) enum How<'a> {
    /// A symlink to this target (through the stable symlink).
    Link(String),
    /// A copy of the plaintext, owned and moded like the secret.
    Copy {
        owner: Ownership,
        bytes: &'a [u8],
        allow_disk: bool,
    },
}

/// One custom path of this deploy.
pub(super) struct Plan<'a> {
    what: &'static str,
    pub(super) name: &'a str,
    pub(super) path: &'a str,
    how: How<'a>,
    /// The parent directory, opened by [`precheck`].
    dir: Option<OwnedFd>,
    /// The copy written under its temporary name by [`write_copies`].
    temp: Option<FileId>,
    /// Placed by [`place`].
    done: bool,
}

impl Plan<'_> {
    fn target(&self) -> Option<&str> {
        match &self.how {
            How::Link(t) => Some(t),
            How::Copy { .. } => None,
        }
    }

    fn base(&self) -> &str {
        paths::split(self.path).1
    }

    fn temp_name(&self) -> String {
        let suffix = match self.how {
            How::Link(_) => TEMP_SUFFIXES[0],
            How::Copy { .. } => TEMP_SUFFIXES[1],
        };
        temp_name(self.base(), suffix)
    }

    fn fail(&self, problem: PlaceProblem) -> SecretFailure {
        SecretFailure {
            what: self.what,
            name: self.name.to_owned(),
            reason: FailureReason::Place {
                path: self.path.to_owned(),
                problem,
            },
        }
    }

    /// What the records say about this path, for the state written before
    /// the switch: everything that may be at the path once this deploy ran.
    pub(super) fn record(&self, old: Option<&Placed>) -> Placed {
        let mut r = Placed {
            path: self.path.to_owned(),
            name: self.name.to_owned(),
            links: self.target().map(str::to_owned).into_iter().collect(),
            copies: self.temp.into_iter().collect(),
        };
        if let Some(o) = old {
            r.merge(o);
        }
        r
    }

    /// The record once this deploy is over: only what is there now (or,
    /// if placing failed, everything that may still be there).
    pub(super) fn final_record(&self, old: Option<&Placed>) -> Placed {
        if self.done {
            Placed {
                path: self.path.to_owned(),
                name: self.name.to_owned(),
                links: self.target().map(str::to_owned).into_iter().collect(),
                copies: self.temp.into_iter().collect(),
            }
        } else {
            self.record(old)
        }
    }
}

/// Whether `there` is what nixseal put at a path: a recorded symlink
/// target (or the very symlink it would make now) or a recorded file.
fn ours(record: Option<&Placed>, want_link: Option<&str>, there: &There) -> bool {
    match there {
        There::Symlink(t) => {
            want_link == Some(t.as_str()) || record.is_some_and(|r| r.links.contains(t))
        }
        There::File { id, .. } => record.is_some_and(|r| r.copies.contains(id)),
        _ => false,
    }
}

/// The custom paths of this deploy: secrets, then templates, in manifest
/// order.
pub(super) fn plans<'a>(plan: &'a InstallPlan<'a>, built: &'a Built) -> Vec<Plan<'a>> {
    let symlink = &plan.symlink;
    let mut v = Vec::new();
    for (s, p) in plan.secrets.iter().zip(&built.secrets) {
        let Some(install) = &s.install else { continue };
        let Some(path) = install.custom_path else {
            continue;
        };
        let s = s.secret;
        let how = if s.symlink {
            How::Link(format!("{symlink}/{}", s.name))
        } else {
            How::Copy {
                owner: install.owner,
                bytes: p.bytes.as_slice(),
                allow_disk: s.allow_plaintext_on_disk,
            }
        };
        v.push(Plan {
            what: "secret",
            name: &s.name,
            path,
            how,
            dir: None,
            temp: None,
            done: false,
        });
    }
    for t in &plan.templates {
        if let Some(path) = t.custom_path {
            let name = &t.template.name;
            v.push(Plan {
                what: "template",
                name,
                path,
                how: How::Link(format!("{symlink}/{name}")),
                dir: None,
                temp: None,
                done: false,
            });
        }
    }
    v
}

/// The generation's informational record of its placements.
pub(super) fn metadata(plans: &[Plan]) -> Metadata {
    Metadata {
        version: 1,
        placed: plans
            .iter()
            .map(|p| MetaPlaced {
                path: p.path.to_owned(),
                target: p.target().map(str::to_owned),
            })
            .collect(),
    }
}

fn fs_name(f_type: u64) -> String {
    match f_type {
        0xEF53 => "ext2/3/4".into(),
        0x5846_5342 => "xfs".into(),
        0x9123_683E => "btrfs".into(),
        0x2FC1_2FC1 => "zfs".into(),
        0xF2F5_2010 => "f2fs".into(),
        0x794C_7630 => "overlayfs".into(),
        0x6969 => "nfs".into(),
        0x4d44 => "vfat".into(),
        t => format!("file system type {t:#x}"),
    }
}

/// Before anything is switched: opens (creating root-owned 0755 parents)
/// each custom path's directory, refuses what is there if it is not
/// nixseal's, and refuses copies onto a persistent file system without
/// `allowPlaintextOnDisk`. Every problem is reported.
pub(super) fn precheck(plans: &mut [Plan], records: &HashMap<&str, &Placed>) -> Vec<SecretFailure> {
    let mut failures = Vec::new();
    for plan in plans.iter_mut() {
        let (parent, base) = paths::split(plan.path);
        let dir = match paths::open_dir(parent, true, Trust::NotWorldWritable) {
            Ok(d) => d,
            Err(e) => {
                failures.push(plan.fail(PlaceProblem::Dir(e)));
                continue;
            }
        };
        if let How::Copy { allow_disk, .. } = plan.how {
            match fstatfs(&dir) {
                Ok(sfs) => {
                    let t = (sfs.f_type as u64) & 0xffff_ffff;
                    if t != TMPFS_MAGIC && t != RAMFS_MAGIC && !allow_disk {
                        failures.push(plan.fail(PlaceProblem::OnDisk {
                            fs: fs_name(t),
                            name: plan.name.to_owned(),
                        }));
                        continue;
                    }
                }
                Err(e) => {
                    failures.push(plan.fail(PlaceProblem::Statfs {
                        parent: parent.to_owned(),
                        source: e.into(),
                    }));
                    continue;
                }
            }
        }
        match switch::look(&dir, base) {
            Ok(There::Absent) => {}
            Ok(t) if ours(records.get(plan.path).copied(), plan.target(), &t) => {}
            Ok(t) => {
                failures.push(plan.fail(PlaceProblem::Install(switch::InstallError::Foreign(t))));
                continue;
            }
            Err(e) => {
                failures.push(plan.fail(PlaceProblem::Install(switch::InstallError::Io(e))));
                continue;
            }
        }
        plan.dir = Some(dir);
    }
    failures
}

/// Writes each copy under its temporary name (owner and mode before the
/// content, then fsync) and notes its identity.
pub(super) fn write_copies(plans: &mut [Plan]) -> Vec<SecretFailure> {
    let mut failures = Vec::new();
    for plan in plans.iter_mut() {
        let How::Copy { owner, bytes, .. } = plan.how else {
            continue;
        };
        let Some(dir) = &plan.dir else { continue };
        let tmp = plan.temp_name();
        let r = switch::unlink_if_present(dir, &tmp).and_then(|()| {
            let mut f = generation::create_file(dir, &tmp, owner.uid, owner.gid, owner.mode)?;
            f.write_all(bytes)?;
            f.sync_all()?;
            Ok(FileId::of(&fstat(&f)?))
        });
        match r {
            Ok(id) => plan.temp = Some(id),
            Err(e) => {
                let _ = switch::unlink_if_present(dir, &tmp);
                failures.push(plan.fail(PlaceProblem::Copy(e)));
            }
        }
    }
    failures
}

/// Removes the copies [`write_copies`] made (a deploy that stops before the
/// switch).
pub(super) fn remove_copy_temps(plans: &[Plan]) {
    for plan in plans {
        if let (Some(dir), Some(_)) = (&plan.dir, plan.temp) {
            let _ = switch::unlink_if_present(dir, &plan.temp_name());
        }
    }
}

/// After the switch: moves each copy into place and makes each symlink.
pub(super) fn place(
    plans: &mut [Plan],
    records: &HashMap<&str, &Placed>,
    failures: &mut Vec<FinishFailure>,
) {
    for plan in plans.iter_mut() {
        let Some(dir) = &plan.dir else { continue };
        let tmp = plan.temp_name();
        let base = paths::split(plan.path).1;
        let record = records.get(plan.path).copied();
        let want = plan.target().map(str::to_owned);
        let r = match &plan.how {
            How::Link(target) => switch::unlink_if_present(dir, &tmp)
                .and_then(|()| {
                    rustix::fs::symlinkat(target.as_str(), dir, tmp.as_str()).map_err(Into::into)
                })
                .map_err(switch::InstallError::Io)
                .and_then(|()| {
                    switch::install(dir, &tmp, base, &|t| ours(record, want.as_deref(), t))
                }),
            How::Copy { .. } => {
                // Ours: what the records say, or a copy this very run wrote
                // (a concurrent placement of the same path cannot happen:
                // deploys are serialised by the lock).
                let mine = plan.temp;
                switch::install(dir, &tmp, base, &|t| {
                    ours(record, None, t)
                        || matches!(t, There::File { id, .. } if Some(*id) == mine)
                })
            }
        };
        match r {
            Ok(()) => plan.done = true,
            Err(e) => failures.push(FinishFailure::Place {
                path: plan.path.to_owned(),
                name: plan.name.to_owned(),
                reason: e,
            }),
        }
    }
}

/// Removes the temporary names nixseal may have left next to recorded
/// paths (a crash between writing a copy and placing it).
pub(super) fn clean_temps(records: &[Placed]) {
    for r in records {
        for (parent, name) in r.temps() {
            let Ok(dir) = paths::open_dir(&parent, false, Trust::NotWorldWritable) else {
                continue;
            };
            if rustix::fs::statat(&dir, name.as_str(), rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
                .is_ok_and(|st| removable_temp(&st))
            {
                let _ = switch::unlink_if_present(&dir, &name);
            }
        }
    }
}

/// What became of a path that left the configuration.
pub(super) enum Departed {
    /// Removed.
    Removed,
    /// Nothing was there any more.
    Gone,
    /// Something else is there now: left alone, record dropped.
    LeftAlone(There),
    /// Removing failed: the record is kept for the next deploy.
    Failed,
}

/// Removes what nixseal recorded at a path that is no longer configured, if
/// it is still what nixseal put there.
pub(super) fn remove_departed(record: &Placed, failures: &mut Vec<FinishFailure>) -> Departed {
    let (parent, base) = paths::split(&record.path);
    let dir = match paths::open_dir(parent, false, Trust::NotWorldWritable) {
        Ok(d) => d,
        // The directory is gone: so is what nixseal put in it.
        Err(paths::PathError::Io { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            return Departed::Gone
        }
        // Unusable now (a symlink, writable by others): keep the record
        // and say so; the next deploy tries again.
        Err(e) => {
            failures.push(FinishFailure::Stale {
                path: record.path.clone(),
                source: std::io::Error::other(e.to_string()),
            });
            return Departed::Failed;
        }
    };
    match switch::remove_if_ours(&dir, base, &|t| ours(Some(record), None, t)) {
        Ok(There::Absent) => Departed::Gone,
        Ok(t) if ours(Some(record), None, &t) => Departed::Removed,
        Ok(t) => Departed::LeftAlone(t),
        Err(source) => {
            failures.push(FinishFailure::Stale {
                path: record.path.clone(),
                source,
            });
            Departed::Failed
        }
    }
}
