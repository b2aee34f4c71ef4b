//! Path walking that never follows a symlink.
//!
//! Every directory on the way to a location nixseal writes is opened with
//! `O_NOFOLLOW | O_DIRECTORY` relative to its parent, starting at `/`, so a
//! symlink planted anywhere on the way is refused instead of followed. All
//! later operations are `*at` calls on those descriptors.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use rustix::fs::{fstat, mkdirat, openat, FileType, Mode, OFlags, CWD};

/// Why a directory on the way to a location was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    /// A component is a symlink.
    #[error("{path} is a symlink; nixseal does not follow symlinks here (use the real path)")]
    Symlink {
        /// The offending component (full path).
        path: String,
    },
    /// A component exists but is not a directory.
    #[error("{path} is not a directory")]
    NotDirectory {
        /// The offending component.
        path: String,
    },
    /// A directory others could rename entries in.
    #[error("{path} is writable by users other than root ({why}); nixseal refuses to keep secrets below it")]
    Unsafe {
        /// The directory.
        path: String,
        /// What makes it unsafe.
        why: String,
    },
    /// Any other failure.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was attempted.
        op: &'static str,
        /// The path.
        path: String,
        /// The error.
        #[source]
        source: io::Error,
    },
}

/// How strictly the directories on the way are checked.
///
/// Directories on the way may be sticky and world-writable (such as /tmp):
/// the sticky bit keeps others from renaming the root-owned entry below it.
/// The last directory — the one nixseal creates entries in — never may:
/// anyone could create names in it first (the lock, a temporary name, the
/// path itself), so it must be writable by nobody but the trusted owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// Every directory must be root-owned and not writable by others (sticky
    /// directories on the way excepted, never the last one): used for the
    /// mount point, the symlink, the lock and the state directory.
    RootOnly,
    /// As [`Trust::RootOnly`], but the directories may also belong to this
    /// uid: a user session's runtime and state directories (`nixseal
    /// deploy --user-session`, run by that user). Directories it creates
    /// are 0700.
    Owner(u32),
    /// World-writable directories are refused as the last directory (sticky
    /// or not) and on the way (unless sticky): used for custom paths, which
    /// may live in a service's own directory.
    NotWorldWritable,
}

/// `p` split into its parent and final component. `p` is absolute and normalised.
pub fn split(p: &str) -> (&str, &str) {
    let i = p.rfind('/').unwrap_or(0);
    let parent = if i == 0 { "/" } else { &p[..i] };
    (parent, &p[i + 1..])
}

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// Opens directory `name` under `dir` without following a symlink.
pub fn open_dir_at<Fd: AsFd>(dir: Fd, name: &str, full: &str) -> Result<OwnedFd, PathError> {
    openat(dir, name, DIR_FLAGS, Mode::empty()).map_err(|e| classify(e, "open directory", full))
}

fn classify(e: rustix::io::Errno, op: &'static str, full: &str) -> PathError {
    match e {
        rustix::io::Errno::LOOP => PathError::Symlink {
            path: full.to_owned(),
        },
        rustix::io::Errno::NOTDIR => {
            // O_NOFOLLOW|O_DIRECTORY on a symlink may give ENOTDIR: tell them apart.
            match rustix::fs::lstat(full) {
                Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Symlink => {
                    PathError::Symlink {
                        path: full.to_owned(),
                    }
                }
                _ => PathError::NotDirectory {
                    path: full.to_owned(),
                },
            }
        }
        e => PathError::Io {
            op,
            path: full.to_owned(),
            source: e.into(),
        },
    }
}

/// Opens (and with `create`, creates root-owned 0755) every directory of the
/// absolute path `p`, checking each against `trust`.
pub fn open_dir(p: &str, create: bool, trust: Trust) -> Result<OwnedFd, PathError> {
    let mut fd = openat(CWD, "/", DIR_FLAGS, Mode::empty()).map_err(|e| PathError::Io {
        op: "open",
        path: "/".into(),
        source: e.into(),
    })?;
    check_dir(&fd, "/", trust)?;
    let mut full = String::new();
    for comp in p.split('/').filter(|c| !c.is_empty()) {
        full.push('/');
        full.push_str(comp);
        let next = match openat(&fd, comp, DIR_FLAGS, Mode::empty()) {
            Err(rustix::io::Errno::NOENT) if create => {
                let mode = match trust {
                    Trust::Owner(_) => 0o700,
                    _ => 0o755,
                };
                match mkdirat(&fd, comp, Mode::from_raw_mode(mode)) {
                    Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                    Err(e) => {
                        return Err(PathError::Io {
                            op: "create directory",
                            path: full,
                            source: e.into(),
                        })
                    }
                }
                let d = open_dir_at(&fd, comp, &full)?;
                // umask may have narrowed the mode; parents are 0755 by
                // contract (a user's own, 0700).
                let _ = rustix::fs::fchmod(&d, Mode::from_raw_mode(mode));
                d
            }
            Err(e) => return Err(classify(e, "open directory", &full)),
            Ok(d) => d,
        };
        check_dir(&next, &full, trust)?;
        fd = next;
    }
    let last = if full.is_empty() { "/" } else { &full };
    check_last_dir(&fd, last, trust)?;
    Ok(fd)
}

/// The directory nixseal creates entries in: not even a sticky bit makes a
/// world-writable (or, for [`Trust::RootOnly`], a non-root) directory safe.
pub fn check_last_dir(fd: &OwnedFd, path: &str, trust: Trust) -> Result<(), PathError> {
    let st = fstat(fd).map_err(|e| PathError::Io {
        op: "stat",
        path: path.to_owned(),
        source: e.into(),
    })?;
    let mode = st.st_mode & 0o7777;
    let unsafe_ = |why: String| {
        Err(PathError::Unsafe {
            path: path.to_owned(),
            why,
        })
    };
    if mode & 0o002 != 0 {
        return unsafe_(format!(
            "mode {mode:04o}; the sticky bit does not keep others from creating names nixseal uses"
        ));
    }
    if let Some(why) = owner_problem(&st, mode, trust) {
        return unsafe_(why);
    }
    Ok(())
}

/// Refuses directories in which someone other than root could replace entries.
pub fn check_dir(fd: &OwnedFd, path: &str, trust: Trust) -> Result<(), PathError> {
    let st = fstat(fd).map_err(|e| PathError::Io {
        op: "stat",
        path: path.to_owned(),
        source: e.into(),
    })?;
    let mode = st.st_mode & 0o7777;
    let sticky = mode & 0o1000 != 0;
    let unsafe_ = |why: String| {
        Err(PathError::Unsafe {
            path: path.to_owned(),
            why,
        })
    };
    if mode & 0o002 != 0 && !sticky {
        return unsafe_(format!("mode {mode:04o}"));
    }
    if !sticky {
        if let Some(why) = owner_problem(&st, mode, trust) {
            return unsafe_(why);
        }
    }
    Ok(())
}

/// For [`Trust::RootOnly`] and [`Trust::Owner`]: a directory owned by
/// someone else, or writable by a group other than root's.
fn owner_problem(st: &rustix::fs::Stat, mode: u32, trust: Trust) -> Option<String> {
    let owner_ok = match trust {
        Trust::RootOnly => st.st_uid == 0,
        Trust::Owner(uid) => st.st_uid == 0 || st.st_uid == uid,
        Trust::NotWorldWritable => return None,
    };
    if !owner_ok {
        return Some(format!("owned by uid {}", st.st_uid));
    }
    if mode & 0o020 != 0 && st.st_gid != 0 {
        return Some(format!("group-writable by gid {}", st.st_gid));
    }
    None
}
