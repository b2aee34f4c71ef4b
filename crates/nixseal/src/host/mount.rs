//! The mount point: a ramfs that nixseal mounted itself, checked from the kernel.
//!
//! Another user must never be able to put a file where a service expects a
//! secret. So a mount found at `mountPoint` is reused only if it provably is
//! nixseal's: a `ramfs` whose mountinfo source is [`MOUNT_SOURCE`], mounted
//! at its own root (not a bind mount of a directory), `nosuid,nodev,noexec`,
//! its root owned by root with mode [`ROOT_MODE`], and every top-level entry
//! owned by root and not writable by anyone else. Anything else — a tmpfs, a
//! ramfs of mode 0777 or 1777, a bind mount of a user's directory, a disk — is
//! refused with an error naming the mount and what to do. nixseal never
//! mounts over a directory that is not empty or over an existing mount.
//!
//! Mounts are identified by mount ID (`statx` `STATX_MNT_ID`), so escaped or
//! stacked mount points in /proc/self/mountinfo cannot confuse the check.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use rustix::fs::{
    fstat, fstatfs, mkdirat, statat, statx, AtFlags, Dir, FileType, Mode, StatxFlags,
};
use rustix::mount::{mount, MountFlags};

use super::paths::{self, open_dir_at, PathError, Trust};

/// `RAMFS_MAGIC` from linux/magic.h.
pub const RAMFS_MAGIC: u64 = 0x8584_58f6;
/// `TMPFS_MAGIC` from linux/magic.h.
pub const TMPFS_MAGIC: u64 = 0x0102_1994;
/// The source nixseal gives its ramfs (the `source` column of mountinfo).
pub const MOUNT_SOURCE: &str = "nixseal";
/// The mode of the ramfs root nixseal mounts.
pub const ROOT_MODE: u32 = 0o751;

/// Why the mount point could not be made ready.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MountError {
    /// A directory on the way is unusable.
    #[error("mount point {path}: {source}")]
    Path {
        /// The mount point.
        path: String,
        /// Why.
        #[source]
        source: PathError,
    },
    /// The mount point is a symlink or not a directory.
    #[error(
        "mount point {path} is a {kind}, not a directory; remove it (nixseal mounts a ramfs there)"
    )]
    NotDirectory {
        /// The mount point.
        path: String,
        /// What it is.
        kind: &'static str,
    },
    /// Something nixseal did not mount is mounted there.
    #[error("mount point {path} already holds {what}, which nixseal did not mount; nixseal keeps secrets only on a ramfs it mounted itself (source `nixseal`, root-owned, mode 0751) — unmount it (`umount {path}`) and deploy again, or choose another mountPoint")]
    Foreign {
        /// The mount point.
        path: String,
        /// What is mounted, e.g. `a tmpfs mount (source "tmpfs")`.
        what: String,
    },
    /// A nixseal ramfs that someone else could have written to.
    #[error("mount point {path} is a ramfs, but {why}, so its contents cannot be trusted — unmount it (`umount -l {path}`) and deploy again")]
    Untrusted {
        /// The mount point.
        path: String,
        /// What is wrong with it.
        why: String,
    },
    /// A directory with entries, where a mount would hide them.
    #[error("mount point {path} is a directory that is not empty (it holds {entry:?}); nixseal never mounts over files — move them away or choose another mountPoint")]
    NotEmpty {
        /// The mount point.
        path: String,
        /// One of its entries.
        entry: String,
    },
    /// mount(2) failed.
    #[error("cannot mount a ramfs on {path}: {source}")]
    Mount {
        /// The mount point.
        path: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// After mounting, the kernel does not report nixseal's ramfs there.
    #[error(
        "{path} is not nixseal's ramfs after mounting ({why}); refusing to write secrets to it"
    )]
    Verify {
        /// The mount point.
        path: String,
        /// What was found instead.
        why: String,
    },
    /// Another I/O failure.
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

/// What [`ensure`] found or did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountState {
    /// nixseal's ramfs was already mounted there.
    Reused,
    /// nixseal mounted a fresh ramfs.
    Mounted,
}

/// One line of /proc/self/mountinfo (proc(5)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountLine {
    /// The mount ID.
    pub id: u64,
    /// The directory of the filesystem that forms this mount's root
    /// (`/` unless it is a bind mount of a subdirectory).
    pub root: String,
    /// Where it is mounted.
    pub mount_point: String,
    /// Per-mount options (`rw,nosuid,…`).
    pub options: String,
    /// Filesystem type.
    pub fstype: String,
    /// Mount source.
    pub source: String,
}

impl MountLine {
    /// Why this mount is not one nixseal made, if it is not.
    pub fn not_ours(&self) -> Option<String> {
        let opts: Vec<&str> = self.options.split(',').collect();
        let what = format!(
            "a {} mount (source {:?}{})",
            self.fstype,
            self.source,
            if self.root == "/" {
                String::new()
            } else {
                format!(", a bind mount of {}", self.root)
            }
        );
        let ours = self.fstype == "ramfs"
            && self.source == MOUNT_SOURCE
            && self.root == "/"
            && ["nosuid", "nodev", "noexec"]
                .iter()
                .all(|o| opts.contains(o));
        (!ours).then_some(what)
    }
}

/// Parses mountinfo text.
pub fn parse_mountinfo(text: &str) -> Vec<MountLine> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let pre: Vec<&str> = pre.split(' ').collect();
        let post: Vec<&str> = post.split(' ').collect();
        if pre.len() < 6 || post.len() < 2 {
            continue;
        }
        let Ok(id) = pre[0].parse() else { continue };
        out.push(MountLine {
            id,
            root: unescape(pre[3]),
            mount_point: unescape(pre[4]),
            options: pre[5].to_owned(),
            fstype: unescape(post[0]),
            source: unescape(post[1]),
        });
    }
    out
}

fn read_mountinfo() -> Result<Vec<MountLine>, MountError> {
    const PATH: &str = "/proc/self/mountinfo";
    let io = |source| MountError::Io {
        op: "read",
        path: PATH.into(),
        source,
    };
    // A proc file reports size 0: read it as a bounded stream.
    let f = std::fs::File::open(PATH).map_err(io)?;
    let bytes =
        crate::common::fsutil::read_stream(f, crate::common::fsutil::MAX_FILE).map_err(io)?;
    Ok(parse_mountinfo(&String::from_utf8_lossy(&bytes)))
}

fn mnt_id<Fd: AsFd>(fd: Fd) -> Option<u64> {
    let st = statx(fd, "", AtFlags::EMPTY_PATH, StatxFlags::MNT_ID).ok()?;
    (st.stx_mask & StatxFlags::MNT_ID.bits() != 0).then_some(st.stx_mnt_id)
}

/// The mount whose root `dir` is (`dir` being `path`, a child of `parent`),
/// or `None` if `dir` is an ordinary directory of its parent's filesystem.
fn mount_at(
    dir: &OwnedFd,
    parent: &OwnedFd,
    path: &str,
    table: &[MountLine],
) -> Result<Option<MountLine>, MountError> {
    let io = |op| {
        move |e: rustix::io::Errno| MountError::Io {
            op,
            path: path.to_owned(),
            source: e.into(),
        }
    };
    if let (Some(id), Some(pid)) = (mnt_id(dir), mnt_id(parent)) {
        if id == pid {
            return Ok(None);
        }
        return match table.iter().find(|l| l.id == id) {
            Some(l) => Ok(Some(l.clone())),
            None => Err(MountError::Verify {
                path: path.to_owned(),
                why: format!("mount {id} is not in /proc/self/mountinfo"),
            }),
        };
    }
    // Kernels before 5.8: the topmost mountinfo line for the path, or a
    // device differing from the parent's.
    if let Some(l) = table.iter().rev().find(|l| l.mount_point == path) {
        return Ok(Some(l.clone()));
    }
    if fstat(dir).map_err(io("stat"))?.st_dev != fstat(parent).map_err(io("stat"))?.st_dev {
        return Err(MountError::Verify {
            path: path.to_owned(),
            why: "a mount not listed in /proc/self/mountinfo".into(),
        });
    }
    Ok(None)
}

/// Whether `path` is the root of a ramfs nixseal mounted (for recognising
/// the targets of symlinks nixseal made into an earlier mount point).
pub fn is_ours(path: &str) -> bool {
    let (parent, base) = paths::split(path);
    let Ok(pfd) = paths::open_dir(parent, false, Trust::RootOnly) else {
        return false;
    };
    let Ok(dir) = open_dir_at(&pfd, base, path) else {
        return false;
    };
    let Ok(table) = read_mountinfo() else {
        return false;
    };
    matches!(mount_at(&dir, &pfd, path, &table), Ok(Some(l)) if l.not_ours().is_none())
}

/// Makes sure `path` is nixseal's own ramfs and returns a descriptor of its
/// root. Creates the directory (and root-owned 0755 parents) if absent.
pub fn ensure(path: &str) -> Result<(OwnedFd, MountState), MountError> {
    let (parent, base) = paths::split(path);
    let perr = |source| MountError::Path {
        path: path.to_owned(),
        source,
    };
    let io = |op| {
        move |e: rustix::io::Errno| MountError::Io {
            op,
            path: path.to_owned(),
            source: e.into(),
        }
    };
    let pfd = paths::open_dir(parent, true, Trust::RootOnly).map_err(perr)?;
    match statat(&pfd, base, AtFlags::SYMLINK_NOFOLLOW) {
        Err(rustix::io::Errno::NOENT) => {
            match mkdirat(&pfd, base, Mode::from_raw_mode(ROOT_MODE)) {
                Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                Err(e) => return Err(io("create")(e)),
            }
        }
        Err(e) => return Err(io("stat")(e)),
        Ok(st) => match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => {}
            FileType::Symlink => {
                return Err(MountError::NotDirectory {
                    path: path.to_owned(),
                    kind: "symlink",
                })
            }
            _ => {
                return Err(MountError::NotDirectory {
                    path: path.to_owned(),
                    kind: "file",
                })
            }
        },
    }

    let dir = open_dir_at(&pfd, base, path).map_err(perr)?;
    let state = match mount_at(&dir, &pfd, path, &read_mountinfo()?)? {
        Some(line) => {
            if let Some(what) = line.not_ours() {
                return Err(MountError::Foreign {
                    path: path.to_owned(),
                    what,
                });
            }
            check_contents(&dir, path)?;
            MountState::Reused
        }
        None => {
            if let Some(entry) = first_entry(&dir).map_err(io("read"))? {
                return Err(MountError::NotEmpty {
                    path: path.to_owned(),
                    entry,
                });
            }
            // Mount onto the directory we opened without following symlinks,
            // named through /proc/self/fd, so that nothing can be swapped in
            // between the checks above and mount(2) resolving the path.
            let by_fd = format!("/proc/self/fd/{}", dir.as_raw_fd());
            let target = if std::path::Path::new(&by_fd).exists() {
                by_fd.as_str()
            } else {
                path
            };
            mount(
                MOUNT_SOURCE,
                target,
                "ramfs",
                MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
                c"mode=0751",
            )
            .map_err(|e| MountError::Mount {
                path: path.to_owned(),
                source: e.into(),
            })?;
            MountState::Mounted
        }
    };
    drop(dir);

    // Trust the kernel, not the bookkeeping above: the directory we now open
    // must be the root of nixseal's ramfs.
    let fd = open_dir_at(&pfd, base, path).map_err(perr)?;
    let verify = |why: String| MountError::Verify {
        path: path.to_owned(),
        why,
    };
    match mount_at(&fd, &pfd, path, &read_mountinfo()?)? {
        None => return Err(verify("no mount there".into())),
        Some(l) => {
            if let Some(what) = l.not_ours() {
                return Err(verify(what));
            }
        }
    }
    let f_type = (fstatfs(&fd).map_err(io("statfs"))?.f_type as u64) & 0xffff_ffff;
    if f_type != RAMFS_MAGIC {
        return Err(verify(format!("statfs type {f_type:#x}")));
    }
    if state == MountState::Mounted {
        check_root(&fd, path)?;
    }
    Ok((fd, state))
}

fn first_entry(dir: &OwnedFd) -> rustix::io::Result<Option<String>> {
    for e in Dir::read_from(dir)? {
        let e = e?;
        let n = e.file_name().to_string_lossy();
        if n != "." && n != ".." {
            return Ok(Some(n.into_owned()));
        }
    }
    Ok(None)
}

fn check_root(fd: &OwnedFd, path: &str) -> Result<(), MountError> {
    let st = fstat(fd).map_err(|e| MountError::Io {
        op: "stat",
        path: path.to_owned(),
        source: e.into(),
    })?;
    let mode = st.st_mode & 0o7777;
    if st.st_uid != 0 || st.st_gid != 0 || mode != ROOT_MODE {
        return Err(MountError::Untrusted {
            path: path.to_owned(),
            why: format!(
                "its root is {}:{} mode {mode:04o}, not root:root {ROOT_MODE:04o} as nixseal mounts it",
                st.st_uid, st.st_gid
            ),
        });
    }
    Ok(())
}

/// A reused mount: root as nixseal made it, and nothing at the top that
/// anyone but root created or could change.
fn check_contents(fd: &OwnedFd, path: &str) -> Result<(), MountError> {
    check_root(fd, path)?;
    let io = |e: rustix::io::Errno| MountError::Io {
        op: "read",
        path: path.to_owned(),
        source: e.into(),
    };
    for e in Dir::read_from(fd).map_err(io)? {
        let e = e.map_err(io)?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name == "." || name == ".." {
            continue;
        }
        let st = match statat(fd, name.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
            Err(rustix::io::Errno::NOENT) => continue,
            r => r.map_err(io)?,
        };
        let untrusted = |why: String| {
            Err(MountError::Untrusted {
                path: path.to_owned(),
                why,
            })
        };
        if st.st_uid != 0 {
            return untrusted(format!(
                "it holds {name:?}, owned by uid {}, which nixseal did not create",
                st.st_uid
            ));
        }
        let mode = st.st_mode & 0o7777;
        if FileType::from_raw_mode(st.st_mode) == FileType::Directory && mode & 0o022 != 0 {
            return untrusted(format!(
                "its entry {name:?} has mode {mode:04o}: others could add files to it"
            ));
        }
    }
    Ok(())
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 4 <= b.len()
            && b[i + 1..i + 4]
                .iter()
                .all(|c| (b'0'..=b'3').contains(&b[i + 1]) && (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_parsing() {
        let mi = "22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n\
                  30 22 0:30 / /run rw,nosuid shared:5 - tmpfs tmpfs rw\n\
                  31 30 0:31 / /run/nixseal.d rw,nosuid,nodev,noexec - ramfs nixseal rw,mode=751\n\
                  32 30 0:32 / /run/with\\040space rw - ext4 /dev/x rw\n\
                  33 30 0:33 /home/u /run/bound rw,nosuid,nodev,noexec - ramfs nixseal rw\n\
                  34 30 0:34 / /run/t rw,nosuid,nodev,noexec - tmpfs nixseal rw\n\
                  35 30 0:35 / /run/e rw,nosuid - ramfs nixseal rw\n\
                  garbage line\n";
        let t = parse_mountinfo(mi);
        assert_eq!(t.len(), 7);
        assert_eq!(t[2].mount_point, "/run/nixseal.d");
        assert_eq!(t[2].not_ours(), None);
        assert_eq!(t[3].mount_point, "/run/with space");
        assert!(t[1].not_ours().unwrap().contains("a tmpfs mount"));
        assert!(t[4].not_ours().unwrap().contains("bind mount of /home/u"));
        assert!(t[5].not_ours().is_some(), "tmpfs is never ours");
        assert!(t[6].not_ours().is_some(), "missing nodev,noexec");
    }
}
