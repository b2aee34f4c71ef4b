//! nixseal's persistent records: what must survive a reboot.
//!
//! The ramfs forgets everything at shutdown, but two things must not be
//! forgotten: which custom paths outside it nixseal placed (so that a copy
//! or symlink of a secret that left the configuration is removed by the next
//! deploy, even after a reboot or `nixos-rebuild boot`, and so that nothing
//! nixseal did not place is ever replaced or deleted), and which units still
//! owe a restart (recorded before the switch, cleared only once systemctl
//! succeeded).
//!
//! One JSON file per mount point in `stateDir` (default `/var/lib/nixseal`),
//! a root-owned directory nobody else can write. It holds paths, unit names
//! and file identities — never secret data or hashes of it. It is read as a
//! bounded regular file, written atomically (temporary file, fsync, rename,
//! fsync of the directory), and only when its content changes, so a host
//! without custom paths or restarts never creates it.

use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use rustix::fs::{fstat, fsync, mkdirat, openat, renameat, FileType, Mode, OFlags};
use serde::{Deserialize, Serialize};

use super::paths::{self, PathError, Trust};
use crate::contract::manifest::{temp_name, TEMP_SUFFIXES};

/// The state format this build reads and writes.
pub const VERSION: u32 = 1;

/// The largest state file nixseal reads.
pub const MAX_STATE_FILE: u64 = 16 << 20;

/// Everything nixseal remembers for one mount point.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct State {
    /// Always [`VERSION`].
    pub version: u32,
    /// The mount point these records belong to.
    pub mount_point: String,
    /// Custom paths placed (or about to be placed) by nixseal.
    #[serde(default)]
    pub placed: Vec<Placed>,
    /// Units whose `try-restart` has not succeeded yet.
    #[serde(default)]
    pub pending_restart: Vec<String>,
    /// Units whose `try-reload-or-restart` has not succeeded yet.
    #[serde(default)]
    pub pending_reload: Vec<String>,
}

/// A custom path and what nixseal put there: an entry at `path` is
/// nixseal's only if it is a symlink to one of `links` or a regular file
/// with one of the identities in `copies`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Placed {
    /// The custom path.
    pub path: String,
    /// The secret or template placed there (for messages).
    pub name: String,
    /// Symlink targets nixseal created at `path`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<String>,
    /// Copies nixseal wrote at `path`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub copies: Vec<FileId>,
}

/// The identity of a file nixseal wrote: inode, size and modification time
/// (nanoseconds). Not the device number, which may change across reboots.
/// A file someone else puts at the path later (even on a reused inode
/// number) has another modification time; a copy nixseal wrote keeps its
/// own through chown, chmod and rename.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FileId {
    /// Inode number.
    pub ino: u64,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, seconds.
    pub mtime: i64,
    /// Modification time, nanoseconds.
    pub mtime_nsec: u64,
}

impl FileId {
    /// The identity in a `stat` result.
    pub fn of(st: &rustix::fs::Stat) -> Self {
        FileId {
            ino: st.st_ino,
            size: st.st_size as u64,
            mtime: st.st_mtime,
            mtime_nsec: st.st_mtime_nsec,
        }
    }
}

impl Placed {
    /// Adds what `other` records for the same path.
    pub fn merge(&mut self, other: &Placed) {
        for l in &other.links {
            if !self.links.contains(l) {
                self.links.push(l.clone());
            }
        }
        for c in &other.copies {
            if !self.copies.contains(c) {
                self.copies.push(*c);
            }
        }
    }

    /// The temporary names nixseal may have left next to `path`.
    pub fn temps(&self) -> [(String, String); 2] {
        let (parent, base) = paths::split(&self.path);
        TEMP_SUFFIXES.map(|s| (parent.to_owned(), temp_name(base, s)))
    }
}

/// Why the state could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// A directory on the way to the state directory is unusable.
    #[error("state directory {dir}: {source}")]
    Path {
        /// The state directory.
        dir: String,
        /// Why.
        #[source]
        source: PathError,
    },
    /// The state directory is not root's alone.
    #[error("state directory {dir} is {why}; nixseal keeps its records only in a directory of root's that nobody else can write (`chown root:root {dir}; chmod 0700 {dir}`, or set stateDir; in a user session: a directory of your own, `chmod 0700 {dir}`)")]
    Unsafe {
        /// The state directory.
        dir: String,
        /// What is wrong.
        why: String,
    },
    /// The state file is damaged.
    #[error("state file {file} is unusable ({reason}); nixseal needs it to know which custom paths it placed — restore it, or move it away (nixseal then treats every existing custom path as someone else's and refuses to replace it)")]
    Corrupt {
        /// The state file.
        file: String,
        /// Why.
        reason: String,
    },
    /// Another I/O failure.
    #[error("cannot {op} {path}: {source}")]
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

/// The state file of `mount_point`: readable name, then a hash that keeps
/// different mount points apart (at most 86 bytes; see the manifest's
/// length checks).
pub fn file_name(mount_point: &str) -> String {
    use sha2::Digest;
    let readable: String = mount_point
        .trim_start_matches('/')
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    let hash = hex::encode(&sha2::Sha256::digest(mount_point.as_bytes())[..8]);
    format!("{readable}-{hash}.json")
}

/// The state of one mount point and where it lives.
#[derive(Debug)]
pub struct Store {
    /// Whose directory it must be.
    trust: Trust,
    dir_path: String,
    file: String,
    /// The bytes last read or written (`None`: no file).
    on_disk: Option<Vec<u8>>,
}

impl Store {
    /// Where the state file is.
    pub fn file_path(&self) -> String {
        format!("{}/{}", self.dir_path, self.file)
    }

    /// Reads the state of `mount_point` from `state_dir` (empty if there is
    /// none yet). Creates nothing.
    /// In a user session (`trust` is [`Trust::Owner`]) the directory is the
    /// user's own.
    pub fn open(
        state_dir: &str,
        mount_point: &str,
        trust: Trust,
    ) -> Result<(Store, State), StateError> {
        let mut store = Store {
            trust,
            dir_path: state_dir.to_owned(),
            file: file_name(mount_point),
            on_disk: None,
        };
        let empty = State {
            version: VERSION,
            mount_point: mount_point.to_owned(),
            ..State::default()
        };
        let Some(dir) = store.open_dir(false)? else {
            return Ok((store, empty));
        };
        let file = store.file_path();
        let by_fd = format!("/proc/self/fd/{}/{}", raw(&dir), store.file);
        let bytes =
            match crate::common::fsutil::read_regular_nofollow(Path::new(&by_fd), MAX_STATE_FILE) {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((store, empty)),
                Err(e) => {
                    return Err(StateError::Corrupt {
                        file,
                        reason: e.to_string(),
                    })
                }
            };
        let state: State = serde_json::from_slice(&bytes).map_err(|e| StateError::Corrupt {
            file: file.clone(),
            reason: e.to_string(),
        })?;
        if state.version != VERSION {
            return Err(StateError::Corrupt {
                file,
                reason: format!("version {} (this nixseal writes {VERSION})", state.version),
            });
        }
        if state.mount_point != mount_point {
            return Err(StateError::Corrupt {
                file,
                reason: format!("it belongs to mount point {:?}", state.mount_point),
            });
        }
        store.on_disk = Some(bytes.to_vec());
        Ok((store, state))
    }

    /// Opens (with `create`, creates root-owned 0700) the state directory;
    /// `None` if it does not exist and `create` is false.
    fn open_dir(&self, create: bool) -> Result<Option<OwnedFd>, StateError> {
        let dir = &self.dir_path;
        let (parent, base) = paths::split(dir);
        let perr = |source| StateError::Path {
            dir: dir.clone(),
            source,
        };
        let pfd = match paths::open_dir(parent, create, self.trust) {
            Ok(fd) => fd,
            Err(PathError::Io { source, .. })
                if !create && source.kind() == io::ErrorKind::NotFound =>
            {
                return Ok(None)
            }
            Err(e) => return Err(perr(e)),
        };
        let fd = match paths::open_dir_at(&pfd, base, dir) {
            Ok(fd) => fd,
            Err(PathError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                if !create {
                    return Ok(None);
                }
                match mkdirat(&pfd, base, Mode::from_raw_mode(0o700)) {
                    Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                    Err(e) => {
                        return Err(StateError::Io {
                            op: "create",
                            path: dir.clone(),
                            source: e.into(),
                        })
                    }
                }
                paths::open_dir_at(&pfd, base, dir).map_err(perr)?
            }
            Err(e) => return Err(perr(e)),
        };
        let st = fstat(&fd).map_err(|e| StateError::Io {
            op: "stat",
            path: dir.clone(),
            source: e.into(),
        })?;
        let mode = st.st_mode & 0o7777;
        let owner = match self.trust {
            Trust::Owner(uid) => uid,
            _ => 0,
        };
        if st.st_uid != owner {
            return Err(StateError::Unsafe {
                dir: dir.clone(),
                why: format!("owned by uid {}", st.st_uid),
            });
        }
        if mode & 0o022 != 0 {
            return Err(StateError::Unsafe {
                dir: dir.clone(),
                why: format!("writable by others (mode {mode:04o})"),
            });
        }
        Ok(Some(fd))
    }

    /// Writes `state` if it differs from what is on disk (an empty state is
    /// not written where there is no file yet).
    pub fn save(&mut self, state: &State) -> Result<(), StateError> {
        let mut json = serde_json::to_vec_pretty(state).map_err(|e| StateError::Io {
            op: "serialise",
            path: self.file_path(),
            source: io::Error::other(e.to_string()),
        })?;
        json.push(b'\n');
        let nothing = state.placed.is_empty()
            && state.pending_restart.is_empty()
            && state.pending_reload.is_empty();
        match &self.on_disk {
            Some(old) if *old == json => return Ok(()),
            None if nothing => return Ok(()),
            _ => {}
        }
        let dir = self.open_dir(true)?.expect("created");
        let path = self.file_path();
        let io = |op| {
            let path = path.clone();
            move |e: io::Error| StateError::Io {
                op,
                path,
                source: e,
            }
        };
        let tmp = temp_name(&self.file, TEMP_SUFFIXES[1]);
        super::switch::unlink_if_present(&dir, &tmp).map_err(io("remove old temporary of"))?;
        let fd = openat(
            &dir,
            tmp.as_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| io("create temporary for")(e.into()))?;
        let mut f = std::fs::File::from(fd);
        let written = f
            .write_all(&json)
            .and_then(|()| f.sync_all())
            .and_then(|()| {
                renameat(&dir, tmp.as_str(), &dir, self.file.as_str()).map_err(Into::into)
            });
        if let Err(e) = written {
            let _ = super::switch::unlink_if_present(&dir, &tmp);
            return Err(io("write")(e));
        }
        fsync(&dir).map_err(|e| io("sync")(e.into()))?;
        self.on_disk = Some(json);
        Ok(())
    }
}

fn raw<Fd: AsFd>(fd: Fd) -> i32 {
    use std::os::fd::AsRawFd;
    fd.as_fd().as_raw_fd()
}

/// Whether `st` is a regular file nixseal may remove as its own temporary
/// (never a directory or anything else).
pub fn removable_temp(st: &rustix::fs::Stat) -> bool {
    matches!(
        FileType::from_raw_mode(st.st_mode),
        FileType::RegularFile | FileType::Symlink
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_short_and_distinct() {
        let a = file_name("/run/nixseal.d");
        assert!(
            a.starts_with("run-nixseal.d-") && a.ends_with(".json"),
            "{a}"
        );
        assert_ne!(a, file_name("/run/nixseal-d"));
        let long = format!("/{}", "x".repeat(4000));
        assert!(file_name(&long).len() <= 86);
        assert!(file_name("/é/ü").is_ascii());
    }

    #[test]
    fn state_roundtrip_refuses_unknown_fields() {
        let s = State {
            version: VERSION,
            mount_point: "/run/x.d".into(),
            placed: vec![Placed {
                path: "/etc/a".into(),
                name: "a".into(),
                links: vec!["/run/x/a".into()],
                copies: vec![],
            }],
            pending_restart: vec!["a.service".into()],
            pending_reload: vec![],
        };
        let j = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<State>(&j).unwrap(), s);
        let bad = j.replace("\"version\"", "\"surprise\":1,\"version\"");
        assert!(serde_json::from_str::<State>(&bad).is_err());
        let twice = j.replace("\"version\":1", "\"version\":1,\"version\":1");
        assert!(serde_json::from_str::<State>(&twice).is_err());
    }
}
