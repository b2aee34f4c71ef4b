//! The deploy lock: `flock(2)` on `<parent>/.<mount point name>.lock`.
//!
//! Held for the whole run; a second deploy blocks until the first finishes,
//! then runs. The kernel drops the lock when the process dies (kill -9
//! included), so there is no stale lock to clean up.
//!
//! Nobody but root can take or plant it: its directory must be root-only
//! (not writable by others, not even with the sticky bit, so no one can
//! create the name first), and the file itself is root's with mode 0600 —
//! `flock` works on any descriptor, so a file others could open would let
//! them hold the lock forever. A lock file that is not exactly that is
//! refused, never used. Manifest validation keeps every path nixseal writes
//! away from the lock (see `manifest::lock_path`).

use std::io;
use std::os::fd::OwnedFd;

use rustix::fs::{flock, fstat, openat, FileType, FlockOperation, Mode, OFlags};

use super::paths::{self, PathError, Trust};

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// The directory holding the lock file is unusable.
    #[error("lock for {mount_point}: {source}")]
    Path {
        /// The mount point the lock guards.
        mount_point: String,
        /// Why.
        #[source]
        source: PathError,
    },
    /// The lock file could not be opened or locked.
    #[error("cannot {op} lock file {path}: {source}")]
    Io {
        /// What was attempted.
        op: &'static str,
        /// The lock file.
        path: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// Something other than a 0600 regular file of root's (of the user's, in
    /// a user session) is at the lock path.
    #[error("lock file {path} is {what}, not a regular file only root can open (owner root, mode 0600; in a user session: you, mode 0600); another user could hold the lock — remove it (`rm {path}`) and deploy again")]
    NotAFile {
        /// The lock file.
        path: String,
        /// What is there.
        what: String,
    },
}

/// A held lock; released on drop (or process death).
#[derive(Debug)]
pub struct DeployLock {
    _fd: OwnedFd,
    /// Where the lock file is.
    pub path: String,
}

/// The lock file path guarding `mount_point`.
pub fn lock_path(mount_point: &str) -> String {
    crate::contract::manifest::lock_path(mount_point)
}

/// Takes the lock for `mount_point`, waiting for a running deploy to finish.
/// In a user session (`trust` is [`Trust::Owner`]) the lock is that user's
/// (in the runtime directory), not root's.
pub fn acquire(mount_point: &str, trust: Trust) -> Result<DeployLock, LockError> {
    let owner = match trust {
        Trust::Owner(uid) => uid,
        _ => 0,
    };
    let (parent, base) = paths::split(mount_point);
    let path = lock_path(mount_point);
    let pfd = paths::open_dir(parent, true, trust).map_err(|source| LockError::Path {
        mount_point: mount_point.to_owned(),
        source,
    })?;
    let io = |op| {
        let path = path.clone();
        move |e: rustix::io::Errno| LockError::Io {
            op,
            path,
            source: e.into(),
        }
    };
    let fd = openat(
        &pfd,
        format!(".{base}.lock").as_str(),
        OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .map_err(io("open"))?;
    let st = fstat(&fd).map_err(io("stat"))?;
    let ft = FileType::from_raw_mode(st.st_mode);
    let mode = st.st_mode & 0o7777;
    if ft != FileType::RegularFile || st.st_uid != owner || mode & 0o077 != 0 {
        let what = if ft != FileType::RegularFile {
            "not a regular file".to_owned()
        } else {
            format!("owned by uid {} with mode {mode:04o}", st.st_uid)
        };
        return Err(LockError::NotAFile { path, what });
    }
    flock(&fd, FlockOperation::LockExclusive).map_err(io("lock"))?;
    Ok(DeployLock { _fd: fd, path })
}
