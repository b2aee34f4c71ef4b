//! Whose deploy this is: the system's (root, nixseal's own ramfs) or one
//! user's session (`nixseal deploy --user-session`, run by that user, from
//! the home-manager module).
//!
//! A user session has no mount and no chown. Its secrets live in a plain
//! 0700 directory (`mountPoint`, by default `%r/nixseal.d`) inside the
//! user's runtime directory (`$XDG_RUNTIME_DIR`, which `%r` stands for), a
//! memory file system that logind creates at login, owned by the user with
//! mode 0700, and removes at logout. Both are checked from the kernel
//! before anything is written: the runtime directory must be a tmpfs or
//! ramfs directory of the user's with mode 0700, reached without a
//! symlink; the mount point must be absent (it is created 0700) or exactly
//! such a directory of the user's (never a symlink, never another's, never
//! another mode). The lock, the records (`stateDir`) and the symlink's
//! directory must belong to the user or root and be writable by nobody
//! else ([`Trust::Owner`]). Everything else — generations, the switch,
//! pruning, custom paths, records, restarts — is the system deploy's own
//! code over the same [`InstallPlan`](super::plan::InstallPlan).

use std::io;
use std::os::fd::OwnedFd;

use rustix::fs::{fchmod, fstat, fstatfs, mkdirat, statat, AtFlags, FileType, Mode};

use std::path::Path;

use super::error::DeployError;
use super::mount::{RAMFS_MAGIC, TMPFS_MAGIC};
use super::paths::{self, PathError, Trust};
use crate::contract::manifest::{
    check_abs_path, Manifest, ManifestError, Problem, Session as ManifestSession,
};

/// The environment variable naming the user's runtime directory.
pub const RUNTIME_DIR_ENV: &str = "XDG_RUNTIME_DIR";

/// Why a user session cannot be deployed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// `--user-session` as root.
    #[error("--user-session deploys one user's secrets as that user, never as root; run it as the user (the home-manager module's systemd user unit does), or deploy root's secrets from the NixOS module")]
    Root,
    /// A user-session manifest given to the system deploy.
    #[error("manifest {path} is a user-session manifest (\"session\": \"user\", from the home-manager module); deploy it as its user with `nixseal deploy --manifest {path} --user-session`")]
    UserManifest {
        /// The manifest.
        path: String,
    },
    /// The runtime directory is missing or unfit.
    #[error("runtime directory {path}: {why}; nixseal keeps a user's secrets only in the runtime directory logind makes at login (a tmpfs at /run/user/<uid>, owned by the user, mode 0700) — run the deploy in the user's login session or systemd user manager")]
    RuntimeDir {
        /// The runtime directory (or `$XDG_RUNTIME_DIR` when unset).
        path: String,
        /// What is wrong.
        why: String,
    },
    /// The mount point directory is not the user's own 0700 directory.
    #[error("mount point {path} {why}; nixseal keeps a user's generations in a plain directory of its own (created with mode 0700) — move it away, or choose another mountPoint")]
    MountPoint {
        /// The mount point.
        path: String,
        /// What is wrong.
        why: String,
    },
    /// The user's key is protected by a passphrase.
    #[error("your key {path} is protected by a passphrase, which nixseal cannot ask for when it deploys at login; make a dedicated key without one (`ssh-keygen -t ed25519 -N '' -f ~/.ssh/nixseal_ed25519`), list it in nixseal.settings.userKeys, set nixseal.settings.userPubkey to its .pub and run `nix run .#renc`")]
    EncryptedKey {
        /// The key.
        path: String,
    },
    /// A directory on the way is unusable.
    #[error("{what} {path}: {source}")]
    Path {
        /// `runtime directory` or `mount point`.
        what: &'static str,
        /// The path.
        path: String,
        /// Why.
        #[source]
        source: PathError,
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

impl crate::common::error::Classify for SessionError {
    fn class(&self) -> crate::common::error::ErrorClass {
        use crate::common::error::ErrorClass;
        match self {
            SessionError::Root | SessionError::UserManifest { .. } => ErrorClass::BadInput,
            _ => ErrorClass::Environment,
        }
    }
}

/// The user a `--user-session` deploy runs as, and their runtime directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSession {
    /// The user's uid (the process's effective uid).
    pub uid: u32,
    /// The user's gid (the process's effective gid).
    pub gid: u32,
    /// `$XDG_RUNTIME_DIR`, checked.
    pub runtime_dir: String,
}

/// Whose deploy this is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Session {
    /// The system's: root, nixseal's own ramfs.
    System,
    /// One user's session.
    User(UserSession),
}

impl Session {
    /// Whose deploy a run of `manifest` (read from `path`) is: with
    /// `user_session` (`--user-session`) a user's — refused as root or for a
    /// system manifest (exit 2), then the runtime directory is checked
    /// (exit 3) and `%r` expanded, returned as the manifest to deploy;
    /// without it the system's — refused for a user-session manifest.
    pub(super) fn for_run(
        manifest: &Manifest,
        path: &Path,
        user_session: bool,
    ) -> Result<(Session, Option<Manifest>), DeployError> {
        let is_user = manifest.session() == ManifestSession::User;
        if !user_session {
            if is_user {
                return Err(SessionError::UserManifest {
                    path: path.display().to_string(),
                }
                .into());
            }
            return Ok((Session::System, None));
        }
        // Root, or a system manifest, is refused before the environment is
        // looked at: both are usage errors.
        if rustix::process::geteuid().is_root() {
            return Err(SessionError::Root.into());
        }
        if !is_user {
            return Err(DeployError::Manifest(ManifestError::Invalid {
                path: path.to_owned(),
                problems: vec![Problem::NotUserSession],
            }));
        }
        let user = UserSession::from_env()?;
        let m = manifest.in_session(path, &user.runtime_dir)?;
        Ok((Session::User(user), Some(m)))
    }

    /// How the directories nixseal writes in are checked.
    pub fn trust(&self) -> Trust {
        match self {
            Session::System => Trust::RootOnly,
            Session::User(u) => Trust::Owner(u.uid),
        }
    }

    /// Who owns nixseal's own files (the lock, records, a generation's
    /// metadata): root, or the user.
    pub fn owner(&self) -> (u32, u32) {
        match self {
            Session::System => (0, 0),
            Session::User(u) => (u.uid, u.gid),
        }
    }

    /// Whether this is a user session.
    pub fn is_user(&self) -> bool {
        matches!(self, Session::User(_))
    }
}

impl UserSession {
    /// The user running this process and their runtime directory,
    /// `$XDG_RUNTIME_DIR`: set, absolute and normalised, reached without a
    /// symlink through directories of root's or the user's, a directory on
    /// a tmpfs or ramfs, owned by the user, mode 0700. Refused as root.
    pub fn from_env() -> Result<Self, SessionError> {
        let uid = rustix::process::geteuid().as_raw();
        let gid = rustix::process::getegid().as_raw();
        if uid == 0 {
            return Err(SessionError::Root);
        }
        let unfit = |path: &str, why: String| SessionError::RuntimeDir {
            path: path.to_owned(),
            why,
        };
        let dir = match std::env::var_os(RUNTIME_DIR_ENV) {
            None => return Err(unfit("$XDG_RUNTIME_DIR", "it is not set".into())),
            Some(v) if v.is_empty() => return Err(unfit("$XDG_RUNTIME_DIR", "it is empty".into())),
            Some(v) => v
                .into_string()
                .map_err(|v| unfit(&v.to_string_lossy(), "it is not UTF-8".into()))?,
        };
        if let Err(why) = check_abs_path(&dir) {
            return Err(unfit(&dir, format!("$XDG_RUNTIME_DIR {why}")));
        }
        if dir == "/" {
            return Err(unfit(&dir, "it is the root directory".into()));
        }
        let fd =
            paths::open_dir(&dir, false, Trust::Owner(uid)).map_err(|source| match source {
                PathError::Io { ref source, .. } if source.kind() == io::ErrorKind::NotFound => {
                    unfit(&dir, "it does not exist".into())
                }
                PathError::Io { ref source, .. }
                    if source.kind() == io::ErrorKind::PermissionDenied =>
                {
                    unfit(&dir, denied(&dir))
                }
                source => SessionError::Path {
                    what: "runtime directory",
                    path: dir.clone(),
                    source,
                },
            })?;
        check_private_memory_dir(&fd, &dir, uid).map_err(|why| unfit(&dir, why))?;
        Ok(UserSession {
            uid,
            gid,
            runtime_dir: dir,
        })
    }

    /// Makes sure `path` (the mount point, in the runtime directory) is a
    /// plain directory of this user's with mode 0700 on a memory file
    /// system, creating it if absent; returns a descriptor of it. Never
    /// mounts; never uses a symlink, another user's directory or one with
    /// another mode.
    pub fn ensure_mount_point(&self, path: &str) -> Result<OwnedFd, SessionError> {
        let (parent, base) = paths::split(path);
        let pfd = paths::open_dir(parent, true, Trust::Owner(self.uid)).map_err(|source| {
            SessionError::Path {
                what: "mount point",
                path: path.to_owned(),
                source,
            }
        })?;
        let io = |op| {
            move |e: rustix::io::Errno| SessionError::Io {
                op,
                path: path.to_owned(),
                source: e.into(),
            }
        };
        let not_ours = |why: String| SessionError::MountPoint {
            path: path.to_owned(),
            why,
        };
        let created = match statat(&pfd, base, AtFlags::SYMLINK_NOFOLLOW) {
            Err(rustix::io::Errno::NOENT) => {
                match mkdirat(&pfd, base, Mode::from_raw_mode(0o700)) {
                    Ok(()) => true,
                    Err(rustix::io::Errno::EXIST) => false,
                    Err(e) => return Err(io("create")(e)),
                }
            }
            Err(e) => return Err(io("stat")(e)),
            Ok(st) => match FileType::from_raw_mode(st.st_mode) {
                FileType::Directory => false,
                FileType::Symlink => return Err(not_ours("is a symlink, not a directory".into())),
                FileType::Fifo => return Err(not_ours("is a FIFO, not a directory".into())),
                _ => return Err(not_ours("is not a directory".into())),
            },
        };
        let fd = paths::open_dir_at(&pfd, base, path).map_err(|source| match source {
            PathError::Symlink { .. } => not_ours("is a symlink, not a directory".into()),
            PathError::Io { ref source, .. }
                if source.kind() == io::ErrorKind::PermissionDenied =>
            {
                not_ours(denied(path))
            }
            source => SessionError::Path {
                what: "mount point",
                path: path.to_owned(),
                source,
            },
        })?;
        if created {
            // umask may have narrowed the mode; the directory is ours.
            fchmod(&fd, Mode::from_raw_mode(0o700)).map_err(io("chmod"))?;
        }
        check_private_memory_dir(&fd, path, self.uid).map_err(not_ours)?;
        Ok(fd)
    }
}

/// The user's keys (`hostKeys` of a user-session manifest), tried in
/// order: a key that does not exist is skipped while another one loads
/// (one home's list serves several machines); a passphrase-protected key is
/// refused, naming it.
pub(super) fn load_user_keys(
    m: &Manifest,
    needed: bool,
) -> Result<Vec<super::identity::HostIdentity>, DeployError> {
    use super::identity::{load, HostKeyError};
    if !needed {
        return Ok(Vec::new());
    }
    let mut ids = Vec::new();
    let mut missing = None;
    for k in &m.host_keys {
        match load(Path::new(&k.path)) {
            Ok(id) => ids.push(id),
            Err(e @ HostKeyError::Missing { .. }) => {
                missing.get_or_insert(e);
            }
            Err(HostKeyError::Encrypted { path }) => {
                return Err(SessionError::EncryptedKey {
                    path: path.display().to_string(),
                }
                .into())
            }
            Err(e) => return Err(e.into()),
        }
    }
    match missing {
        Some(e) if ids.is_empty() => Err(e.into()),
        _ => Ok(ids),
    }
}

/// Why a directory cannot be opened: whose it is.
fn denied(path: &str) -> String {
    match rustix::fs::lstat(path) {
        Ok(st) => format!(
            "cannot be opened by you: it is owned by uid {} with mode {:04o}",
            st.st_uid,
            st.st_mode & 0o7777
        ),
        Err(_) => "cannot be opened by you".into(),
    }
}

/// A directory on a tmpfs or ramfs, owned by `uid`, mode 0700: why not, if not.
fn check_private_memory_dir(fd: &OwnedFd, path: &str, uid: u32) -> Result<(), String> {
    let st = fstat(fd).map_err(|e| format!("cannot stat it: {e}"))?;
    let mode = st.st_mode & 0o7777;
    if st.st_uid != uid {
        return Err(format!(
            "is owned by uid {}, not by you (uid {uid})",
            st.st_uid
        ));
    }
    if mode != 0o700 {
        return Err(format!(
            "has mode {mode:04o}, not 0700, so others could reach what is in it"
        ));
    }
    let t = (fstatfs(fd)
        .map_err(|e| format!("cannot statfs {path}: {e}"))?
        .f_type as u64)
        & 0xffff_ffff;
    if t != TMPFS_MAGIC && t != RAMFS_MAGIC {
        return Err(format!(
            "is on a persistent file system (type {t:#x}), not a tmpfs or ramfs, so plaintext would reach the disk"
        ));
    }
    Ok(())
}
