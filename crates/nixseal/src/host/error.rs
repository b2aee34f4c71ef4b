//! What can go wrong in a deploy, and which exit class each failure is.

use std::io;
use std::path::PathBuf;

use super::accounts::AccountsError;
use super::identity::HostKeyError;
use super::paths::PathError;
use super::state::StateError;
use super::switch::InstallError;
use super::{lock, mount, units, DeployReport};
use crate::common::crypto::DecryptFailure;
use crate::common::error::Classify;
pub use crate::common::error::ErrorClass;
use crate::contract::manifest::ManifestError;

/// One secret (or template) that could not be produced.
#[derive(Debug, thiserror::Error)]
#[error("{what} {name:?}: {reason}")]
pub struct SecretFailure {
    /// `secret` or `template`.
    pub what: &'static str,
    /// Its name.
    pub name: String,
    /// Why.
    pub reason: FailureReason,
}

/// Why a secret or template could not be produced or placed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FailureReason {
    /// None of the host keys can open it.
    #[error("not encrypted to this host's key (wrong host key, or a stale rekey)")]
    NotForThisHost,
    /// The ciphertext does not decrypt.
    #[error("cannot decrypt: {0}")]
    Decrypt(DecryptFailure),
    /// The file could not be written into the generation.
    #[error("cannot write: {0}")]
    Write(io::Error),
    /// A template renders to more than nixseal writes.
    #[error(
        "renders to {bytes} bytes, more than the {} bytes nixseal writes",
        crate::common::fsutil::MAX_FILE
    )]
    TooLarge {
        /// Its size.
        bytes: usize,
    },
    /// Its custom path cannot be placed.
    #[error("path {path}: {problem}")]
    Place {
        /// The custom path.
        path: String,
        /// Why.
        problem: PlaceProblem,
    },
}

/// Why a custom path cannot be placed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlaceProblem {
    /// Its directory is unusable.
    #[error(transparent)]
    Dir(PathError),
    /// A copy would be plaintext on a persistent file system.
    #[error("a copy there would be plaintext on a persistent file system ({fs}), left on disk after the secret is gone; use symlink mode (the default), a path on a memory file system such as /run, or allow it for this secret with allowPlaintextOnDisk (nixseal.secrets.{name}.allowPlaintextOnDisk = true)")]
    OnDisk {
        /// The file system found.
        fs: String,
        /// The secret.
        name: String,
    },
    /// The file system of its directory could not be asked.
    #[error("cannot statfs {parent}: {source}")]
    Statfs {
        /// The directory.
        parent: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Something that is not nixseal's is there, or a system call failed.
    #[error(transparent)]
    Install(InstallError),
    /// The copy could not be written under its temporary name.
    #[error("cannot write the copy: {0}")]
    Copy(io::Error),
}

/// Why a secret's source file cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceProblem {
    /// There is no file.
    #[error("does not exist")]
    Missing,
    /// It is not what `nixseal renc` writes.
    #[error("is not a binary age file (expected the `age-encryption.org/v1` header written by `nixseal renc`)")]
    NotAge,
    /// It cannot be read (not a regular file, too large, I/O).
    #[error("{0}")]
    Unreadable(io::Error),
}

/// A step after the switch that failed (the new generation is active).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FinishFailure {
    /// A custom path could not be placed.
    #[error("cannot place {path} for {name:?}: {reason}")]
    Place {
        /// The custom path.
        path: String,
        /// The secret or template.
        name: String,
        /// Why.
        reason: InstallError,
    },
    /// A path placed by the previous generation could not be removed.
    #[error("cannot remove stale {path}: {source}")]
    Stale {
        /// The path.
        path: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Pruning old generations failed.
    #[error("cannot prune old generations in {mount_point}: {source}")]
    Prune {
        /// The mount point.
        mount_point: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// systemctl failed; the units are retried by the next deploy.
    #[error("{0} (the next deploy tries again)")]
    Units(#[from] units::UnitsError),
    /// The final records could not be written.
    #[error(transparent)]
    State(#[from] StateError),
}

/// Why a deploy failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeployError {
    /// The manifest is unreadable or invalid.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// A secret's source file is missing or not an age file.
    #[error("secret {secret:?}: source {}: {problem}", path.display())]
    Source {
        /// The secret.
        secret: String,
        /// The source path.
        path: PathBuf,
        /// Why.
        problem: SourceProblem,
    },
    /// /etc/passwd or /etc/group unreadable.
    #[error(transparent)]
    Accounts(#[from] AccountsError),
    /// A user session cannot be deployed (root, the wrong manifest, the
    /// runtime directory or the mount point directory).
    #[error(transparent)]
    Session(#[from] super::session::SessionError),
    /// The lock could not be taken.
    #[error(transparent)]
    Lock(#[from] lock::LockError),
    /// The mount point is unusable.
    #[error(transparent)]
    Mount(#[from] mount::MountError),
    /// The symlink's directory is unusable.
    #[error("symlink {symlink}: {source}")]
    Location {
        /// The symlink.
        symlink: String,
        /// Why.
        #[source]
        source: PathError,
    },
    /// A host key could not be loaded.
    #[error(transparent)]
    HostKey(#[from] HostKeyError),
    /// The state directory or file is unusable.
    #[error(transparent)]
    State(#[from] StateError),
    /// Something nixseal did not create is where the stable symlink goes.
    #[error("symlink {path} holds {what}, which nixseal did not create; nixseal never replaces it — move it away, or choose another symlink")]
    Occupied {
        /// The symlink path.
        path: String,
        /// What is there.
        what: String,
    },
    /// Custom paths that cannot be placed; found before the switch, so the
    /// previous generation is still active.
    #[error("{} cannot be placed; nothing was switched, previous generation kept:{}", count(failures.len(), "custom path"), bullets(failures))]
    Placement {
        /// Every failure.
        failures: Vec<SecretFailure>,
    },
    /// One or more secrets failed; the temporary generation was removed and
    /// the previous generation is still active.
    #[error("{} failed; previous generation kept:{}", count(failures.len(), "secret"), bullets(failures))]
    Secrets {
        /// Every failure.
        failures: Vec<SecretFailure>,
    },
    /// The generation directory could not be created or switched to.
    #[error("cannot {op} {path}: {source}; previous generation kept")]
    Generation {
        /// What was attempted.
        op: &'static str,
        /// The path.
        path: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The new generation is active but a later step failed.
    #[error("generation {generation} is active, but {}:{}", count(failures.len(), "step"), bullets(failures))]
    Finish {
        /// The active generation.
        generation: u64,
        /// Every failure.
        failures: Vec<FinishFailure>,
        /// What was done.
        report: Box<DeployReport>,
    },
}

fn count(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

fn bullets<T: std::fmt::Display>(v: &[T]) -> String {
    v.iter().map(|x| format!("\n  - {x}")).collect()
}

impl Classify for DeployError {
    fn class(&self) -> ErrorClass {
        match self {
            DeployError::Manifest(e) => e.class(),
            DeployError::Session(e) => e.class(),
            DeployError::Source { .. } => ErrorClass::BadInput,
            DeployError::Accounts(_)
            | DeployError::Lock(_)
            | DeployError::Mount(_)
            | DeployError::Location { .. }
            | DeployError::HostKey(_)
            | DeployError::State(_)
            | DeployError::Occupied { .. } => ErrorClass::Environment,
            DeployError::Secrets { .. }
            | DeployError::Placement { .. }
            | DeployError::Generation { .. }
            | DeployError::Finish { .. } => ErrorClass::Failed,
        }
    }
}
