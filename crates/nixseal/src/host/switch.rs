//! Atomic replacement of the stable symlink and placement of custom paths.
//!
//! Both are "make the new thing under a temporary name in the same directory,
//! then `rename(2)` it over the old one": a reader sees the old or the new,
//! never nothing. Temporary names are fixed per target
//! (`manifest::temp_name`), so a temporary left by a crash is removed by the
//! next run instead of accumulating.
//!
//! Nothing nixseal did not put there is replaced: [`look`] says what is at a
//! path, the caller decides whether that is nixseal's (a recorded symlink
//! target or file identity), and [`install`] moves the new entry in only over
//! nothing (`RENAME_NOREPLACE`) or over what was judged nixseal's
//! (`RENAME_EXCHANGE`, then the entry swapped out is checked again and
//! swapped back if someone replaced it in the meantime).

use std::io;
use std::os::fd::AsFd;

use rustix::fs::{
    readlinkat, renameat, renameat_with, statat, symlinkat, unlinkat, AtFlags, FileType,
    RenameFlags,
};

use super::fault;
use super::state::FileId;
use crate::contract::manifest::{temp_name, TEMP_SUFFIXES};

/// What is at a path (never following a symlink there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum There {
    /// Nothing.
    Absent,
    /// A symlink with this target.
    Symlink(String),
    /// A regular file.
    File {
        /// Its identity.
        id: FileId,
        /// Its owner.
        uid: u32,
    },
    /// A directory or another kind of file.
    Other(&'static str),
}

impl std::fmt::Display for There {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            There::Absent => write!(f, "nothing"),
            There::Symlink(t) => write!(f, "a symlink to {t}"),
            There::File { id, uid } => {
                write!(f, "a regular file (owner uid {uid}, {} bytes)", id.size)
            }
            There::Other(k) => write!(f, "{k}"),
        }
    }
}

/// Looks at `dir/base`.
pub fn look<Fd: AsFd>(dir: Fd, base: &str) -> io::Result<There> {
    let st = match statat(&dir, base, AtFlags::SYMLINK_NOFOLLOW) {
        Err(rustix::io::Errno::NOENT) => return Ok(There::Absent),
        r => r?,
    };
    Ok(match FileType::from_raw_mode(st.st_mode) {
        FileType::Symlink => {
            let t = readlinkat(&dir, base, Vec::new())?;
            There::Symlink(t.to_string_lossy().into_owned())
        }
        FileType::RegularFile => There::File {
            id: FileId::of(&st),
            uid: st.st_uid,
        },
        FileType::Directory => There::Other("a directory"),
        _ => There::Other("a special file (FIFO, socket or device)"),
    })
}

/// Removes `dir/name` if it is a file or symlink (nixseal's temporaries).
pub fn unlink_if_present<Fd: AsFd>(dir: Fd, name: &str) -> io::Result<()> {
    match unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Points `dir/base` at `target` by renaming a fresh symlink over it. The
/// caller has checked that what is at `dir/base` is nixseal's.
pub fn replace_symlink<Fd: AsFd>(dir: Fd, base: &str, target: &str, main: bool) -> io::Result<()> {
    let tmp = temp_name(base, TEMP_SUFFIXES[0]);
    unlink_if_present(&dir, &tmp)?;
    symlinkat(target, &dir, tmp.as_str())?;
    if main {
        fault::point("after-temp-symlink");
    }
    renameat(&dir, tmp.as_str(), &dir, base).inspect_err(|_| {
        let _ = unlink_if_present(&dir, &tmp);
    })?;
    Ok(())
}

/// Why `install` (this module's placing of one entry) did not place it.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// Something that is not nixseal's is at the path.
    #[error("it holds {0}, which nixseal did not place there; nixseal never replaces what it did not create — move it away, or choose another path")]
    Foreign(There),
    /// A system call failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Moves `dir/tmp` to `dir/base` if nothing is there or what is there is
/// nixseal's (`ours`). On any error `dir/tmp` is removed.
pub fn install<Fd: AsFd>(
    dir: Fd,
    tmp: &str,
    base: &str,
    ours: &dyn Fn(&There) -> bool,
) -> Result<(), InstallError> {
    let r = install_inner(&dir, tmp, base, ours);
    if r.is_err() {
        let _ = unlink_if_present(&dir, tmp);
    }
    r
}

fn install_inner<Fd: AsFd>(
    dir: Fd,
    tmp: &str,
    base: &str,
    ours: &dyn Fn(&There) -> bool,
) -> Result<(), InstallError> {
    let there = look(&dir, base)?;
    if there == There::Absent {
        return match renameat_with(&dir, tmp, &dir, base, RenameFlags::NOREPLACE) {
            Ok(()) => Ok(()),
            // Something appeared meanwhile: judge it like anything else.
            Err(rustix::io::Errno::EXIST) => install_inner(dir, tmp, base, ours),
            Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS) => {
                renameat(&dir, tmp, &dir, base).map_err(|e| InstallError::Io(e.into()))
            }
            Err(e) => Err(InstallError::Io(e.into())),
        };
    }
    if !ours(&there) {
        return Err(InstallError::Foreign(there));
    }
    match renameat_with(&dir, tmp, &dir, base, RenameFlags::EXCHANGE) {
        Ok(()) => {
            // `tmp` now holds what was at `base`: still what we judged ours?
            let swapped = look(&dir, tmp)?;
            if ours(&swapped) {
                unlink_if_present(&dir, tmp)?;
                Ok(())
            } else {
                renameat_with(&dir, tmp, &dir, base, RenameFlags::EXCHANGE)
                    .map_err(|e| InstallError::Io(e.into()))?;
                Err(InstallError::Foreign(swapped))
            }
        }
        // File systems without RENAME_EXCHANGE: a plain rename right after
        // the check.
        Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS) => {
            renameat(&dir, tmp, &dir, base).map_err(|e| InstallError::Io(e.into()))
        }
        Err(e) => Err(InstallError::Io(e.into())),
    }
}

/// Removes `dir/base` if it is nixseal's (`ours`); says what was there.
pub fn remove_if_ours<Fd: AsFd>(
    dir: Fd,
    base: &str,
    ours: &dyn Fn(&There) -> bool,
) -> io::Result<There> {
    let there = look(&dir, base)?;
    if matches!(there, There::Symlink(_) | There::File { .. }) && ours(&there) {
        unlink_if_present(&dir, base)?;
    }
    Ok(there)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::fs::{openat, Mode, OFlags, CWD};

    #[test]
    fn install_never_replaces_foreign_entries() {
        let d = tempfile::tempdir().unwrap();
        let fd = openat(
            CWD,
            d.path(),
            OFlags::RDONLY | OFlags::DIRECTORY,
            Mode::empty(),
        )
        .unwrap();
        let p = |n: &str| d.path().join(n);
        let never = |_: &There| false;
        // Absent: installed.
        std::fs::write(p(".a.nixseal-tmp"), "new").unwrap();
        install(&fd, ".a.nixseal-tmp", "a", &never).unwrap();
        assert_eq!(std::fs::read_to_string(p("a")).unwrap(), "new");
        // Foreign: refused, temporary removed, original intact.
        std::fs::write(p(".a.nixseal-tmp"), "newer").unwrap();
        let e = install(&fd, ".a.nixseal-tmp", "a", &never).unwrap_err();
        assert!(e.to_string().contains("a regular file"), "{e}");
        assert_eq!(std::fs::read_to_string(p("a")).unwrap(), "new");
        assert!(!p(".a.nixseal-tmp").exists());
        // Ours: replaced.
        let id = match look(&fd, "a").unwrap() {
            There::File { id, .. } => id,
            t => panic!("{t}"),
        };
        std::fs::write(p(".a.nixseal-tmp"), "newest").unwrap();
        install(
            &fd,
            ".a.nixseal-tmp",
            "a",
            &|t| matches!(t, There::File { id: i, .. } if *i == id),
        )
        .unwrap();
        assert_eq!(std::fs::read_to_string(p("a")).unwrap(), "newest");
        assert!(!p(".a.nixseal-tmp").exists());
        // A directory is never ours to remove.
        std::fs::create_dir(p("dir")).unwrap();
        assert_eq!(
            remove_if_ours(&fd, "dir", &|_| true).unwrap(),
            There::Other("a directory")
        );
        assert!(p("dir").is_dir());
    }
}
