//! The operator lock: `renc` and `edit` of one flake run one at a time.
//!
//! The lock is `flock(2)` on `nixseal.lock` inside the git directory of the
//! work tree that holds the flake root (`.git/nixseal.lock`; for a linked
//! work tree or submodule, the directory its `.git` file names): never in
//! the working tree, so it can never be committed, and one per work tree.
//! Outside a git repository the flake root directory itself is locked (no
//! file is created). The kernel drops the lock when the process exits,
//! however it exits, so there is no stale lock to clean up.

use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{flock, FlockOperation};

/// Name of the lock file inside the git directory.
pub const LOCK_FILE: &str = "nixseal.lock";

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// The lock file (or directory) could not be opened.
    #[error("cannot open the lock {path}: {source}")]
    Open {
        /// The lock path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Something that is not our own regular file sits at the lock path.
    #[error("the lock {path} is not a regular file owned by you; remove it (no nixseal is using it when none runs)")]
    NotOurs {
        /// The lock path.
        path: PathBuf,
    },
    /// flock failed.
    #[error("cannot lock {path}: {source}")]
    Lock {
        /// The lock path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// A held lock, released on drop (or when the process dies).
#[derive(Debug)]
pub struct OperatorLock {
    _file: std::fs::File,
    /// What is locked.
    pub path: PathBuf,
}

/// Where the lock of the flake at `root` is: the lock file in its git
/// directory, or (outside git) the root directory itself.
pub fn lock_path(root: &Path) -> std::io::Result<PathBuf> {
    let root = if root.as_os_str().is_empty() {
        Path::new(".")
    } else {
        root
    };
    let abs = std::fs::canonicalize(root)?;
    for dir in abs.ancestors() {
        let dot_git = dir.join(".git");
        let Ok(meta) = std::fs::metadata(&dot_git) else {
            continue;
        };
        if meta.is_dir() {
            return Ok(dot_git.join(LOCK_FILE));
        }
        if meta.is_file() {
            // `gitdir: <path>` (linked work trees, submodules).
            let text = crate::fsutil::read_regular(&dot_git, 64 << 10)?;
            let text = String::from_utf8_lossy(&text);
            if let Some(git_dir) = text
                .lines()
                .find_map(|l| l.strip_prefix("gitdir:"))
                .map(str::trim)
                .filter(|g| !g.is_empty())
            {
                let git_dir = dir.join(git_dir);
                if git_dir.is_dir() {
                    return Ok(git_dir.join(LOCK_FILE));
                }
            }
        }
    }
    Ok(abs)
}

/// Takes the lock of the flake at `root`, waiting for a running `renc` or
/// `edit` to finish; `waiting` is called once (with the lock path) before
/// blocking, so a wait is never silent.
pub fn acquire(root: &Path, waiting: &dyn Fn(&Path)) -> Result<OperatorLock, LockError> {
    let path = lock_path(root).map_err(|source| LockError::Open {
        path: root.to_owned(),
        source,
    })?;
    let open_err = |source| LockError::Open {
        path: path.clone(),
        source,
    };
    let nofollow = rustix::fs::OFlags::NOFOLLOW.bits() as i32;
    let file = if path.is_dir() {
        std::fs::File::open(&path).map_err(open_err)?
    } else {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .mode(0o600)
            .custom_flags(nofollow)
            .open(&path)
            .map_err(|e| {
                if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) {
                    LockError::NotOurs { path: path.clone() }
                } else {
                    open_err(e)
                }
            })?;
        let meta = file.metadata().map_err(open_err)?;
        if !meta.is_file() || meta.uid() != rustix::process::geteuid().as_raw() {
            return Err(LockError::NotOurs { path });
        }
        file
    };
    let lock_err = |e: rustix::io::Errno| LockError::Lock {
        path: path.clone(),
        source: e.into(),
    };
    match flock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(rustix::io::Errno::WOULDBLOCK) => {
            waiting(&path);
            flock(&file, FlockOperation::LockExclusive).map_err(lock_err)?;
        }
        Err(e) => return Err(lock_err(e)),
    }
    Ok(OperatorLock { _file: file, path })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_lives_in_the_git_dir_of_the_work_tree() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("infra");
        std::fs::create_dir_all(&root).unwrap();
        // No git: the root itself.
        assert_eq!(
            lock_path(&root).unwrap(),
            std::fs::canonicalize(&root).unwrap()
        );
        std::fs::create_dir(d.path().join(".git")).unwrap();
        let want = std::fs::canonicalize(d.path())
            .unwrap()
            .join(".git/nixseal.lock");
        assert_eq!(lock_path(&root).unwrap(), want);
        // A linked work tree: `.git` is a file naming its git dir.
        let wt = d.path().join("wt");
        std::fs::create_dir_all(wt.join("x")).unwrap();
        std::fs::create_dir_all(d.path().join(".git/worktrees/wt")).unwrap();
        std::fs::write(wt.join(".git"), "gitdir: ../.git/worktrees/wt\n").unwrap();
        let got = lock_path(&wt.join("x")).unwrap();
        assert!(got.ends_with(".git/worktrees/wt/nixseal.lock"), "{got:?}");
    }

    #[test]
    fn a_second_holder_waits_and_says_so() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join(".git")).unwrap();
        let first = acquire(d.path(), &|_| panic!("first must not wait")).unwrap();
        let waited = std::sync::atomic::AtomicBool::new(false);
        let root = d.path().to_owned();
        std::thread::scope(|s| {
            let h = s.spawn(|| {
                acquire(&root, &|p| {
                    assert!(p.ends_with(".git/nixseal.lock"));
                    waited.store(true, std::sync::atomic::Ordering::SeqCst);
                })
                .unwrap()
            });
            std::thread::sleep(std::time::Duration::from_millis(200));
            drop(first);
            drop(h.join().unwrap());
        });
        assert!(waited.load(std::sync::atomic::Ordering::SeqCst));
        // A symlink planted at the lock path is refused, never followed.
        let lock = d.path().join(".git/nixseal.lock");
        std::fs::remove_file(&lock).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", &lock).unwrap();
        let e = acquire(d.path(), &|_| {}).unwrap_err();
        assert!(matches!(e, LockError::NotOurs { .. }), "{e}");
    }
}
