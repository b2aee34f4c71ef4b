//! The mount point: a ramfs (or tmpfs) of its own, checked from the kernel.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use rustix::fs::{fstat, fstatfs, mkdirat, statat, AtFlags, FileType, Mode};
use rustix::mount::{mount, MountFlags};

use super::paths::{self, open_dir_at, PathError, Trust};

/// `RAMFS_MAGIC` from linux/magic.h.
pub const RAMFS_MAGIC: u64 = 0x8584_58f6;
/// `TMPFS_MAGIC` from linux/magic.h.
pub const TMPFS_MAGIC: u64 = 0x0102_1994;

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
    /// Another filesystem is mounted there.
    #[error("mount point {path} already holds a {fstype} mount; nixseal keeps secrets only on its own ramfs or tmpfs (unmount it or choose another mountPoint)")]
    Foreign {
        /// The mount point.
        path: String,
        /// Its filesystem type.
        fstype: String,
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
    /// After mounting, the kernel does not report a memory filesystem there.
    #[error("{path} is not a ramfs/tmpfs of its own after mounting (statfs type {f_type:#x}); refusing to write secrets to it")]
    Verify {
        /// The mount point.
        path: String,
        /// The statfs type found.
        f_type: u64,
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
    /// A ramfs/tmpfs was already mounted there.
    Reused,
    /// nixseal mounted a fresh ramfs.
    Mounted,
}

/// Makes sure `path` is a ramfs/tmpfs of its own and returns a descriptor of
/// its root. Creates the directory (and root-owned 0755 parents) if absent.
pub fn ensure(path: &str) -> Result<(OwnedFd, MountState), MountError> {
    let (parent, base) = paths::split(path);
    let perr = |source| MountError::Path {
        path: path.to_owned(),
        source,
    };
    let pfd = paths::open_dir(parent, true, Trust::RootOnly).map_err(perr)?;
    match statat(&pfd, base, AtFlags::SYMLINK_NOFOLLOW) {
        Err(rustix::io::Errno::NOENT) => match mkdirat(&pfd, base, Mode::from_raw_mode(0o751)) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => {
                return Err(MountError::Io {
                    op: "create",
                    path: path.to_owned(),
                    source: e.into(),
                })
            }
        },
        Err(e) => {
            return Err(MountError::Io {
                op: "stat",
                path: path.to_owned(),
                source: e.into(),
            })
        }
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

    let state = match mounted_fstype(path)? {
        Some(t) if t == "ramfs" || t == "tmpfs" => MountState::Reused,
        Some(other) => {
            return Err(MountError::Foreign {
                path: path.to_owned(),
                fstype: other,
            })
        }
        None => {
            // Mount onto the directory we opened without following symlinks,
            // named through /proc/self/fd, so that nothing can be swapped in
            // between the checks above and mount(2) resolving the path.
            let dir = open_dir_at(&pfd, base, path).map_err(perr)?;
            let by_fd = format!("/proc/self/fd/{}", dir.as_raw_fd());
            let target = if std::path::Path::new(&by_fd).exists() {
                by_fd.as_str()
            } else {
                path
            };
            mount(
                "nixseal",
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

    // Trust the kernel, not the bookkeeping above: the directory we now open
    // must be a memory filesystem on a device other than its parent's.
    let fd = open_dir_at(&pfd, base, path).map_err(perr)?;
    let io = |op| {
        move |e: rustix::io::Errno| MountError::Io {
            op,
            path: path.to_owned(),
            source: e.into(),
        }
    };
    let sfs = fstatfs(&fd).map_err(io("statfs"))?;
    let f_type = (sfs.f_type as u64) & 0xffff_ffff;
    let own = fstat(&fd).map_err(io("stat"))?.st_dev != fstat(&pfd).map_err(io("stat"))?.st_dev;
    if !own || (f_type != RAMFS_MAGIC && f_type != TMPFS_MAGIC) {
        return Err(MountError::Verify {
            path: path.to_owned(),
            f_type,
        });
    }
    Ok((fd, state))
}

/// The filesystem type of the topmost mount whose mount point is exactly
/// `path`, from /proc/self/mountinfo.
fn mounted_fstype(path: &str) -> Result<Option<String>, MountError> {
    let text =
        std::fs::read_to_string("/proc/self/mountinfo").map_err(|source| MountError::Io {
            op: "read",
            path: "/proc/self/mountinfo".into(),
            source,
        })?;
    Ok(fstype_in(&text, path))
}

/// Parses mountinfo text; the last matching line is the visible mount.
pub fn fstype_in(mountinfo: &str, path: &str) -> Option<String> {
    let mut found = None;
    for line in mountinfo.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let Some(mp) = pre.split(' ').nth(4) else {
            continue;
        };
        if unescape(mp) == path {
            found = post.split(' ').next().map(str::to_owned);
        }
    }
    found
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8) {
                out.push(v);
                i += 4;
                continue;
            }
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
                  31 30 0:31 / /run/nixseal.d rw - ramfs nixseal rw,mode=751\n\
                  32 30 0:32 / /run/with\\040space rw - ext4 /dev/x rw\n\
                  33 30 0:33 / /run/nixseal.d rw - ext4 /dev/y rw\n";
        assert_eq!(fstype_in(mi, "/run").as_deref(), Some("tmpfs"));
        assert_eq!(fstype_in(mi, "/run/nixseal.d").as_deref(), Some("ext4"));
        assert_eq!(fstype_in(mi, "/run/with space").as_deref(), Some("ext4"));
        assert_eq!(fstype_in(mi, "/run/other"), None);
    }
}
