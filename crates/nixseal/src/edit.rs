//! `nixseal edit`: change a master secret without its plaintext ever touching
//! persistent disk.
//!
//! The plaintext goes to a 0600 file in a 0700 directory on a memory-backed
//! filesystem (tmpfs/ramfs, checked with statfs), the editor runs on it, and the
//! directory is wiped and removed on every path, SIGTERM and SIGHUP included.
//! Ctrl-C (SIGINT) and SIGQUIT belong to the editor while it runs, as with
//! git: nixseal neither dies nor discards the edit because of them.
//!
//! The directory is named `nixseal-plaintext-*` and held under `flock(2)` while
//! the edit runs; one left behind by a killed run (kill -9, power cut of a
//! ramfs-less tmpfs…) is found by the next `edit` — ours, unlocked — and
//! wiped ([`wipe_stale_temp_dirs`]).

use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use crate::crypto::{self, DecryptFailure, EncryptFailure, Plaintext};
use crate::fsutil;
use crate::identity::MasterIdentities;

/// Prefix of the private plaintext directories `edit` makes.
pub const EDIT_DIR_PREFIX: &str = "nixseal-plaintext-";

/// An editor that returns sooner than this without a change probably did
/// not wait for the file to be closed (a GUI editor without `--wait`).
pub const QUICK_EDITOR: Duration = Duration::from_secs(1);

const TMPFS_MAGIC: u64 = 0x0102_1994;
const RAMFS_MAGIC: u64 = 0x8584_58f6;

/// Why an edit failed. The file being edited is always left as it was.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EditError {
    /// The file exists but cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The secret file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The path is a symlink or not a regular file.
    #[error("{path} is not a regular file; nixseal edits only plain files (replace the symlink with the file it points to)")]
    NotPlain {
        /// The secret file.
        path: PathBuf,
    },
    /// The file exists, so an identity is needed to open it.
    #[error("{path} exists and must be decrypted first: pass --identity FILE or --profile with `identities`")]
    NeedIdentity {
        /// The secret file.
        path: PathBuf,
    },
    /// The existing file does not decrypt.
    #[error("cannot decrypt {path}: {source}")]
    Decrypt {
        /// The secret file.
        path: PathBuf,
        /// Why.
        source: DecryptFailure,
    },
    /// No recipient to encrypt to.
    #[error("no recipients for {path}: give --profile (its identities and extraRecipients) or --recipient")]
    NoRecipients {
        /// The secret file.
        path: PathBuf,
    },
    /// Encryption failed.
    #[error("cannot encrypt {path}: {source}")]
    Encrypt {
        /// The secret file.
        path: PathBuf,
        /// Why.
        source: EncryptFailure,
    },
    /// No memory-backed directory to hold the plaintext.
    #[error("no memory-backed directory for the plaintext (tried {tried}); nixseal never writes plaintext to persistent disk: mount a tmpfs at /dev/shm or set XDG_RUNTIME_DIR, or pipe the new content on stdin")]
    NoMemoryDir {
        /// The directories tried.
        tried: String,
    },
    /// Working with the temporary plaintext file failed.
    #[error("temporary plaintext file: {0}")]
    Temp(std::io::Error),
    /// The editor left something other than a regular file at the temp path.
    #[error("the editor left {what} instead of the temporary file; nothing is read through it and {path} is unchanged")]
    TempNotPlain {
        /// What is there.
        what: &'static str,
        /// The secret file.
        path: PathBuf,
    },
    /// The new content is empty and empty secrets were not allowed.
    #[error("the new content is empty{}; {path} is {}: pass --allow-empty to store an empty secret", if *stdin { " (did the command feeding stdin fail?)" } else { "" }, if *exists { "unchanged" } else { "not created" })]
    Empty {
        /// The secret file.
        path: PathBuf,
        /// Whether the file existed (and was left as it was).
        exists: bool,
        /// Whether the content came from stdin (not an editor).
        stdin: bool,
        /// Set when an editor returned this soon (see [`EditReport::quick_editor`]).
        quick_editor: Option<Duration>,
    },
    /// The new content or its encryption is larger than nixseal reads back.
    #[error("the new content of {path} is too large: {source}; {path} is unchanged")]
    TooLarge {
        /// The secret file.
        path: PathBuf,
        /// What the limit is.
        source: std::io::Error,
    },
    /// The editor could not be started.
    #[error("cannot run the editor {editor:?}: {source}; set $EDITOR")]
    EditorSpawn {
        /// The editor command.
        editor: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The editor exited with an error: the file is left as it was.
    #[error("the editor {editor:?} exited with {status}; {path} is unchanged")]
    EditorFailed {
        /// The editor command.
        editor: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// The secret file.
        path: PathBuf,
    },
    /// Interrupted by a signal: the file is left as it was.
    #[error("interrupted; {path} is unchanged and the temporary plaintext was removed")]
    Interrupted {
        /// The secret file.
        path: PathBuf,
    },
    /// Writing the new ciphertext failed.
    #[error("cannot write {path}: {source}; the old file is unchanged")]
    Write {
        /// The secret file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Where the new plaintext comes from.
pub enum NewContent {
    /// Given directly (e.g. read from stdin by the CLI).
    Given(Plaintext),
    /// Edited interactively with this editor command (a shell word list, like `$EDITOR`).
    Editor(String),
}

/// What an edit did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EditOutcome {
    /// A new file was written.
    Created,
    /// The file was re-encrypted with new content.
    Updated,
    /// The content did not change: the file was not rewritten.
    Unchanged,
}

/// How an edit behaves where the operator may choose.
#[derive(Debug, Clone, Copy, Default)]
pub struct EditOptions {
    /// Store empty content (otherwise empty content is refused: it is far
    /// more often a failed producer than a wanted empty secret).
    pub allow_empty: bool,
}

/// What an edit did, and what the operator may want to know about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EditReport {
    /// What happened to the file.
    pub outcome: EditOutcome,
    /// Set when the editor returned within [`QUICK_EDITOR`] without a change
    /// (how long it ran): likely a GUI editor that did not wait.
    pub quick_editor: Option<Duration>,
}

/// Edits (or creates) the age file at `path`. The new file is encrypted to
/// `recipients` only; `identities` only open the old one.
pub fn edit(
    path: &Path,
    identities: Option<&MasterIdentities>,
    recipients: &[&dyn age::Recipient],
    content: NewContent,
    options: EditOptions,
) -> Result<EditReport, EditError> {
    let existing = match std::fs::symlink_metadata(path) {
        Ok(m) if !m.file_type().is_file() => {
            return Err(EditError::NotPlain {
                path: path.to_owned(),
            })
        }
        Ok(m) => Some(m),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(source) => {
            return Err(EditError::Read {
                path: path.to_owned(),
                source,
            })
        }
    };
    if recipients.is_empty() {
        return Err(EditError::NoRecipients {
            path: path.to_owned(),
        });
    }
    let (old, armored, mode) = match &existing {
        Some(meta) => {
            let ct = fsutil::read_regular_nofollow(path, fsutil::MAX_FILE).map_err(|source| {
                EditError::Read {
                    path: path.to_owned(),
                    source,
                }
            })?;
            let ids = identities.ok_or_else(|| EditError::NeedIdentity {
                path: path.to_owned(),
            })?;
            let pt = crypto::decrypt(&ct, &ids.as_identities()).map_err(|source| {
                EditError::Decrypt {
                    path: path.to_owned(),
                    source,
                }
            })?;
            (
                Some(pt),
                crypto::is_armored(&ct),
                meta.permissions().mode() & 0o7777,
            )
        }
        None => (None, false, 0o644),
    };

    let (new, ran) = match content {
        NewContent::Given(p) => (p, None),
        NewContent::Editor(editor) => {
            let empty = Zeroizing::new(Vec::new());
            let (new, ran) = run_editor(&editor, path, old.as_ref().unwrap_or(&empty))?;
            (new, Some(ran))
        }
    };
    let unchanged = old.as_ref().is_some_and(|o| o[..] == new[..]);
    let quick_editor =
        ran.filter(|d| *d < QUICK_EDITOR && (unchanged || old.is_none() && new.is_empty()));
    let report = |outcome| EditReport {
        outcome,
        quick_editor,
    };
    if unchanged {
        return Ok(report(EditOutcome::Unchanged));
    }
    // Empty content replaces or creates nothing unless asked for: it is far
    // more often `false | nixseal edit …` than a wanted empty secret.
    if new.is_empty() && !options.allow_empty {
        return Err(EditError::Empty {
            path: path.to_owned(),
            exists: old.is_some(),
            stdin: ran.is_none(),
            quick_editor,
        });
    }
    if new.len() as u64 > fsutil::MAX_FILE {
        return Err(EditError::TooLarge {
            path: path.to_owned(),
            source: std::io::Error::other(format!(
                "{} bytes, more than the {} bytes nixseal reads",
                new.len(),
                fsutil::MAX_FILE
            )),
        });
    }
    let ct = crypto::encrypt(&new, recipients, armored).map_err(|source| EditError::Encrypt {
        path: path.to_owned(),
        source,
    })?;
    drop(new);
    if ct.len() as u64 > fsutil::MAX_FILE {
        return Err(EditError::TooLarge {
            path: path.to_owned(),
            source: std::io::Error::other(format!(
                "encrypted it is {} bytes, more than the {} bytes nixseal reads",
                ct.len(),
                fsutil::MAX_FILE
            )),
        });
    }
    let write_err = |source| EditError::Write {
        path: path.to_owned(),
        source,
    };
    let (dir, name) = fsutil::prepare_parent(path).map_err(write_err)?;
    fsutil::atomic_write(&dir, &name, &ct, mode).map_err(write_err)?;
    Ok(report(if old.is_some() {
        EditOutcome::Updated
    } else {
        EditOutcome::Created
    }))
}

/// Where plaintext temp directories may go, in order of preference.
fn candidates() -> Vec<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR") {
        candidates.push(PathBuf::from(d));
    }
    candidates.push(PathBuf::from("/dev/shm"));
    candidates.push(PathBuf::from(format!(
        "/run/user/{}",
        rustix::process::getuid().as_raw()
    )));
    candidates
}

/// The first memory-backed directory among the usual candidates.
pub fn memory_dir() -> Result<PathBuf, EditError> {
    let candidates = candidates();
    for c in &candidates {
        if is_memory_backed(c) {
            return Ok(c.clone());
        }
    }
    Err(EditError::NoMemoryDir {
        tried: candidates
            .iter()
            .map(|c| c.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// Whether `dir` is on tmpfs or ramfs (asked from the kernel).
pub fn is_memory_backed(dir: &Path) -> bool {
    match rustix::fs::statfs(dir) {
        Ok(s) => {
            let t = s.f_type as u64;
            t == TMPFS_MAGIC || t == RAMFS_MAGIC
        }
        Err(_) => false,
    }
}

/// Wipes and removes the plaintext directories that earlier `edit` runs of
/// this user left behind when they were killed: `nixseal-plaintext-*` in the
/// memory-backed candidates, owned by the current user, not locked by a
/// running edit. Returns the directories wiped. Anything else (another
/// user's directory, a symlink) is left alone.
pub fn wipe_stale_temp_dirs() -> Vec<PathBuf> {
    let uid = rustix::process::getuid().as_raw();
    let mut wiped = Vec::new();
    let mut seen = Vec::new();
    for base in candidates() {
        let Ok(canon) = std::fs::canonicalize(&base) else {
            continue;
        };
        if seen.contains(&canon) {
            continue;
        }
        seen.push(canon);
        let Ok(entries) = std::fs::read_dir(&base) else {
            continue;
        };
        for e in entries.filter_map(|e| e.ok()) {
            if !e.file_name().to_string_lossy().starts_with(EDIT_DIR_PREFIX) {
                continue;
            }
            let path = e.path();
            let flags = rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::NOFOLLOW;
            let Ok(dir) = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(flags.bits() as i32)
                .open(&path)
            else {
                continue;
            };
            let Ok(meta) = dir.metadata() else { continue };
            if !meta.is_dir() || meta.uid() != uid {
                continue;
            }
            // A running edit holds its directory's lock.
            if rustix::fs::flock(&dir, rustix::fs::FlockOperation::NonBlockingLockExclusive)
                .is_err()
            {
                continue;
            }
            // An empty directory just made by a starting edit (before it
            // takes its lock) holds no plaintext: leave young empty ones.
            let empty = std::fs::read_dir(&path).map_or(true, |mut d| d.next().is_none());
            let young = meta
                .modified()
                .ok()
                .and_then(|m| m.elapsed().ok())
                .is_none_or(|age| age < Duration::from_secs(10));
            if empty && young {
                continue;
            }
            wipe_dir(&path);
            if std::fs::remove_dir_all(&path).is_ok() {
                wiped.push(path);
            }
        }
    }
    wiped
}

/// Overwrites every regular file below `dir` with zeros (never following a
/// symlink, never blocking on a FIFO), so the memory holding plaintext is
/// freed with zeros in it.
fn wipe_dir(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.filter_map(|e| e.ok()) {
        let Ok(t) = e.file_type() else { continue };
        if t.is_dir() {
            wipe_dir(&e.path());
        } else if t.is_file() {
            wipe_file(&e.path());
        }
    }
}

fn wipe_file(path: &Path) {
    let flags = rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK;
    let Ok(mut f) = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(flags.bits() as i32)
        .open(path)
    else {
        return;
    };
    let Ok(m) = f.metadata() else { return };
    if !m.is_file() {
        return;
    }
    let zeros = [0u8; 64 << 10];
    let mut left = m.len();
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        if f.write_all(&zeros[..n]).is_err() {
            return;
        }
        left -= n as u64;
    }
    let _ = f.sync_all();
}

/// A private directory on a memory-backed filesystem, locked while in use,
/// wiped on drop.
struct PlainDir {
    dir: tempfile::TempDir,
    file: PathBuf,
    _lock: std::fs::File,
}

impl Drop for PlainDir {
    fn drop(&mut self) {
        // Overwrite before unlinking: on tmpfs this frees the pages holding
        // the plaintext with zeros in them rather than the secret. Swap and
        // backup files an editor made next to it are wiped too.
        wipe_dir(self.dir.path());
        let _ = std::fs::remove_dir_all(self.dir.path());
    }
}

fn run_editor(editor: &str, path: &Path, old: &[u8]) -> Result<(Plaintext, Duration), EditError> {
    let base = memory_dir()?;
    let dir = tempfile::Builder::new()
        .prefix(EDIT_DIR_PREFIX)
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir_in(&base)
        .map_err(EditError::Temp)?;
    let lock = std::fs::File::open(dir.path()).map_err(EditError::Temp)?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| EditError::Temp(e.into()))?;
    // Keep the secret's name (and so the editor's syntax highlighting) without its .age.
    let shown = path
        .file_name()
        .map(|n| n.to_string_lossy().trim_end_matches(".age").to_owned())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "secret".into());
    let file = dir.path().join(shown);
    let guard = PlainDir {
        dir,
        file,
        _lock: lock,
    };
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&guard.file)
            .map_err(EditError::Temp)?;
        f.write_all(old).map_err(EditError::Temp)?;
    }

    // SIGTERM/SIGHUP while the editor runs: stop, discard, clean up.
    // SIGINT/SIGQUIT (Ctrl-C, Ctrl-\ in the terminal) are the editor's: they
    // are caught here and ignored (a handler, unlike SIG_IGN, is reset to
    // the default in the child, so the editor decides what they do).
    let interrupted = Arc::new(AtomicBool::new(false));
    let ignored = Arc::new(AtomicBool::new(false));
    let mut ids = Vec::new();
    for (sig, flag) in [
        (signal_hook::consts::SIGTERM, &interrupted),
        (signal_hook::consts::SIGHUP, &interrupted),
        (signal_hook::consts::SIGINT, &ignored),
        (signal_hook::consts::SIGQUIT, &ignored),
    ] {
        if let Ok(id) = signal_hook::flag::register(sig, flag.clone()) {
            ids.push(id);
        }
    }
    let started = Instant::now();
    let status = Command::new("/bin/sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("nixseal-edit")
        .arg(&guard.file)
        .status();
    let ran = started.elapsed();
    for id in ids {
        signal_hook::low_level::unregister(id);
    }
    let status = status.map_err(|source| EditError::EditorSpawn {
        editor: editor.to_owned(),
        source,
    })?;
    if interrupted.load(Ordering::SeqCst) {
        return Err(EditError::Interrupted {
            path: path.to_owned(),
        });
    }
    if !status.success() {
        return Err(EditError::EditorFailed {
            editor: editor.to_owned(),
            status,
            path: path.to_owned(),
        });
    }
    // The editor may have replaced the file (write to new + rename): read
    // by name, but only a regular file, never through a symlink, never a
    // FIFO or device it left there.
    let not_plain = |what| EditError::TempNotPlain {
        what,
        path: path.to_owned(),
    };
    match std::fs::symlink_metadata(&guard.file) {
        Ok(m) if !m.is_file() => return Err(not_plain(fsutil::kind_name(m.file_type()))),
        Ok(_) => {}
        Err(e) => return Err(EditError::Temp(e)),
    }
    let new = fsutil::read_regular_nofollow(&guard.file, fsutil::MAX_FILE).map_err(|e| {
        if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) {
            not_plain("a symlink")
        } else {
            EditError::Temp(e)
        }
    })?;
    Ok((new, ran))
}
