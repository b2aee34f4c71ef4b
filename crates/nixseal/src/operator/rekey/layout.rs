//! The rekeyed directory belongs to nixseal alone: renc creates, replaces
//! and removes files in it, so nothing the operator keeps may be there.
//!
//! Checked before anything is read or written (and before any generator
//! runs): the directory is inside the flake root (the profile refuses `..`
//! and the root itself), no component below the root is a symlink, and no
//! master secret, identity file or the profile lies inside it — compared by
//! their physical locations (symlinks resolved) and by device and inode of
//! the directories above them (a bind mount), so a symlinked source
//! directory pointing into the rekeyed tree is caught as well.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::{kind_of, RekeyError};
use crate::common::fsutil::kind_name;
use crate::operator::profile::Profile;

/// Proves that `profile.rekeyed_dir` is safe to write and prune; returns
/// whether it exists yet.
pub fn check_layout(profile: &Profile) -> Result<bool, RekeyError> {
    check_layout_with(profile, &[])
}

/// [`check_layout`], with identity files given on the command line (`-i`)
/// checked like the profile's.
pub fn check_layout_with(profile: &Profile, identities: &[PathBuf]) -> Result<bool, RekeyError> {
    let root = &profile.root;
    let rel = relative_to_root(profile);
    let rd_err = |path: &Path| {
        let path = path.to_owned();
        move |source| RekeyError::RekeyedDir { path, source }
    };

    // Each component below the root, outermost first: a real directory, or
    // missing (renc creates it), never a symlink.
    let mut exists = true;
    let mut cur = PathBuf::new();
    for c in rel.components() {
        cur = if cur.as_os_str().is_empty() {
            join_root(root, Path::new(c.as_os_str()))
        } else {
            cur.join(c)
        };
        match kind_of(&cur).map_err(rd_err(&cur))? {
            None => {
                exists = false;
                break;
            }
            Some(t) if t.is_symlink() => {
                return Err(RekeyError::RekeyedDirSymlink {
                    path: profile.rekeyed_dir.clone(),
                    link: cur,
                })
            }
            Some(t) if !t.is_dir() => {
                return Err(RekeyError::RekeyedDirNotDir {
                    path: cur,
                    what: kind_name(t),
                })
            }
            Some(_) => {}
        }
    }

    // Physical locations: the root resolved once; the rekeyed dir is the
    // root plus `rel` (no symlink below the root, proven above).
    let root_dir = if root.as_os_str().is_empty() {
        Path::new(".")
    } else {
        root.as_path()
    };
    let root_phys = std::fs::canonicalize(root_dir).map_err(rd_err(root_dir))?;
    let rd_phys = root_phys.join(&rel);

    let mut resolver = Resolver::default();
    // Each distinct source once, in byte order (the profile's list).
    let sources = profile.sources.iter().map(|s| s.as_os_str());
    // The same directory reached another way (a bind mount) has the same
    // device and inode: compared too when the rekeyed dir exists.
    let rd_id = if exists {
        let m = std::fs::metadata(&profile.rekeyed_dir).map_err(rd_err(&profile.rekeyed_dir))?;
        Some((m.dev(), m.ino()))
    } else {
        None
    };
    for source in sources.map(Path::new) {
        let phys = resolver.physical(source).map_err(rd_err(source))?;
        if phys.starts_with(&rd_phys) || resolver.below(&phys, rd_id) {
            return Err(RekeyError::Overlap {
                what: "master secret",
                path: source.to_path_buf(),
                rekeyed_dir: profile.rekeyed_dir.clone(),
            });
        }
        if rd_phys.starts_with(&phys) {
            return Err(RekeyError::InsideSecret {
                path: source.to_path_buf(),
                rekeyed_dir: profile.rekeyed_dir.clone(),
            });
        }
    }
    let others = profile
        .identities
        .iter()
        .chain(identities)
        .map(|i| ("identity file", i))
        .chain(std::iter::once(("profile", &profile.path)));
    for (what, path) in others {
        let phys = resolver.physical(path).map_err(rd_err(path))?;
        if phys.starts_with(&rd_phys) || resolver.below(&phys, rd_id) {
            return Err(RekeyError::Overlap {
                what,
                path: path.clone(),
                rekeyed_dir: profile.rekeyed_dir.clone(),
            });
        }
    }
    Ok(exists)
}

/// `profile.rekeyed_dir` without the root (the profile made it `root/rel`).
fn relative_to_root(profile: &Profile) -> PathBuf {
    let root = &profile.root;
    if root == Path::new(".") || root.as_os_str().is_empty() {
        profile.rekeyed_dir.clone()
    } else {
        profile
            .rekeyed_dir
            .strip_prefix(root)
            .unwrap_or(&profile.rekeyed_dir)
            .to_owned()
    }
}

fn join_root(root: &Path, rel: &Path) -> PathBuf {
    if root == Path::new(".") || root.as_os_str().is_empty() {
        rel.to_owned()
    } else {
        root.join(rel)
    }
}

/// Resolves paths to where they physically are, following every symlink
/// of the part that exists (a path that does not exist yet is its deepest
/// existing ancestor, resolved, plus the rest). Parent directories are
/// resolved once however many files they hold.
#[derive(Default)]
struct Resolver {
    dirs: HashMap<PathBuf, PathBuf>,
    ids: HashMap<PathBuf, Option<(u64, u64)>>,
}

impl Resolver {
    /// Whether a directory above `phys` is the directory `id` (device, inode).
    fn below(&mut self, phys: &Path, id: Option<(u64, u64)>) -> bool {
        let Some(id) = id else { return false };
        phys.ancestors().skip(1).any(|a| {
            *self
                .ids
                .entry(a.to_owned())
                .or_insert_with(|| std::fs::metadata(a).ok().map(|m| (m.dev(), m.ino())))
                == Some(id)
        })
    }

    fn physical(&mut self, path: &Path) -> std::io::Result<PathBuf> {
        let abs = std::path::absolute(path)?;
        let (Some(parent), Some(name)) = (abs.parent(), abs.file_name()) else {
            return Ok(abs);
        };
        // The file itself: a symlink is followed (canonicalize), anything
        // else (or nothing yet) sits where its parent physically is.
        if kind_of(&abs)?.is_some_and(|t| t.is_symlink()) {
            if let Ok(target) = std::fs::canonicalize(&abs) {
                return Ok(target);
            }
        }
        let parent = self.dir(parent)?;
        Ok(parent.join(name))
    }

    fn dir(&mut self, dir: &Path) -> std::io::Result<PathBuf> {
        if let Some(d) = self.dirs.get(dir) {
            return Ok(d.clone());
        }
        let mut existing = dir.to_owned();
        let mut rest = Vec::new();
        let resolved = loop {
            match std::fs::canonicalize(&existing) {
                Ok(c) => break c,
                Err(e)
                    if e.kind() == std::io::ErrorKind::NotFound
                        || e.raw_os_error() == Some(rustix::io::Errno::NOTDIR.raw_os_error()) =>
                {
                    match (existing.file_name(), existing.parent()) {
                        (Some(n), Some(p)) => {
                            rest.push(n.to_owned());
                            existing = p.to_owned();
                        }
                        _ => break existing,
                    }
                }
                Err(e) => return Err(e),
            }
        };
        let mut out = resolved;
        for n in rest.iter().rev() {
            out.push(n);
        }
        self.dirs.insert(dir.to_owned(), out.clone());
        Ok(out)
    }
}
