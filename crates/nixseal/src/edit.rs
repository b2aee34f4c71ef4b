//! `nixseal edit`: change a master secret without its plaintext ever touching
//! persistent disk.
//!
//! The plaintext goes to a 0600 file in a 0700 directory on a memory-backed
//! filesystem (tmpfs/ramfs, checked with statfs), the editor runs on it, and the
//! directory is wiped and removed on every path, Ctrl-C included.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use zeroize::Zeroizing;

use crate::crypto::{self, DecryptFailure, EncryptFailure, Plaintext};
use crate::fsutil;
use crate::identity::MasterIdentities;

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
    /// A new file would have been empty: nothing was created.
    EmptyNotCreated,
}

/// Edits (or creates) the age file at `path`.
pub fn edit(
    path: &Path,
    identities: Option<&MasterIdentities>,
    recipients: &[&dyn age::Recipient],
    content: NewContent,
) -> Result<EditOutcome, EditError> {
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
            let ct = std::fs::read(path).map_err(|source| EditError::Read {
                path: path.to_owned(),
                source,
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

    let new = match content {
        NewContent::Given(p) => p,
        NewContent::Editor(editor) => {
            let empty = Zeroizing::new(Vec::new());
            run_editor(&editor, path, old.as_ref().unwrap_or(&empty))?
        }
    };

    match &old {
        Some(o) if o[..] == new[..] => return Ok(EditOutcome::Unchanged),
        None if new.is_empty() => return Ok(EditOutcome::EmptyNotCreated),
        _ => {}
    }
    let ct = crypto::encrypt(&new, recipients, armored).map_err(|source| EditError::Encrypt {
        path: path.to_owned(),
        source,
    })?;
    let write_err = |source| EditError::Write {
        path: path.to_owned(),
        source,
    };
    let (dir, name) = fsutil::prepare_parent(path).map_err(write_err)?;
    fsutil::atomic_write(&dir, &name, &ct, mode).map_err(write_err)?;
    Ok(if old.is_some() {
        EditOutcome::Updated
    } else {
        EditOutcome::Created
    })
}

/// The first memory-backed directory among the usual candidates.
pub fn memory_dir() -> Result<PathBuf, EditError> {
    let mut candidates = Vec::new();
    if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR") {
        candidates.push(PathBuf::from(d));
    }
    candidates.push(PathBuf::from("/dev/shm"));
    candidates.push(PathBuf::from(format!(
        "/run/user/{}",
        rustix::process::getuid().as_raw()
    )));
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

/// A private directory on a memory-backed filesystem, wiped on drop.
struct PlainDir {
    dir: tempfile::TempDir,
    file: PathBuf,
}

impl Drop for PlainDir {
    fn drop(&mut self) {
        // Overwrite before unlinking: on tmpfs this frees the pages holding
        // the plaintext with zeros in them rather than the secret.
        if let Ok(m) = std::fs::symlink_metadata(&self.file) {
            if m.is_file() {
                if let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(&self.file) {
                    let zeros = vec![0u8; m.len() as usize];
                    let _ = f.write_all(&zeros);
                    let _ = f.sync_all();
                }
            }
        }
        let _ = std::fs::remove_dir_all(self.dir.path());
    }
}

fn run_editor(editor: &str, path: &Path, old: &[u8]) -> Result<Plaintext, EditError> {
    let base = memory_dir()?;
    let dir = tempfile::Builder::new()
        .prefix("nixseal-edit-")
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir_in(&base)
        .map_err(EditError::Temp)?;
    // Keep the secret's name (and so the editor's syntax highlighting) without its .age.
    let shown = path
        .file_name()
        .map(|n| n.to_string_lossy().trim_end_matches(".age").to_owned())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "secret".into());
    let file = dir.path().join(shown);
    let guard = PlainDir { dir, file };
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&guard.file)
            .map_err(EditError::Temp)?;
        f.write_all(old).map_err(EditError::Temp)?;
    }

    // Catch SIGINT/SIGTERM/SIGHUP while the editor runs so the temp dir is
    // always cleaned; handlers (unlike ignored signals) are reset in the child.
    let interrupted = Arc::new(AtomicBool::new(false));
    let mut ids = Vec::new();
    for sig in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        if let Ok(id) = signal_hook::flag::register(sig, interrupted.clone()) {
            ids.push(id);
        }
    }
    let status = Command::new("/bin/sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("nixseal-edit")
        .arg(&guard.file)
        .status();
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
    // The editor may have replaced the file (write to new + rename): read by name.
    let new = std::fs::read(&guard.file).map_err(EditError::Temp)?;
    Ok(Zeroizing::new(new))
}
