//! What can go wrong in a deploy, and which exit class each failure is.

use std::io;
use std::path::PathBuf;

use super::accounts::AccountsError;
use super::identity::HostKeyError;
use super::paths::PathError;
use super::state::StateError;
use super::{lock, mount, units, DeployReport};
use crate::contract::manifest::ManifestError;

/// How a deploy error maps to the documented exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Exit 2: the manifest or a source is wrong; nothing was touched.
    BadInput,
    /// Exit 1: a secret could not be decrypted/installed, or a later step failed.
    Failed,
    /// Exit 3: mount, lock, host key or account database.
    Environment,
}

/// One secret (or template) that could not be produced.
#[derive(Debug, thiserror::Error)]
#[error("{what} {name:?}: {reason}")]
pub struct SecretFailure {
    /// `secret` or `template`.
    pub what: &'static str,
    /// Its name.
    pub name: String,
    /// Why.
    pub reason: String,
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
        reason: String,
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
    #[error("secret {secret:?}: source {}: {reason}", path.display())]
    Source {
        /// The secret.
        secret: String,
        /// The source path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// /etc/passwd or /etc/group unreadable.
    #[error(transparent)]
    Accounts(#[from] AccountsError),
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

impl DeployError {
    /// The exit-code class of this error.
    pub fn class(&self) -> ErrorClass {
        match self {
            DeployError::Manifest(ManifestError::Read { .. }) => ErrorClass::BadInput,
            DeployError::Manifest(_) | DeployError::Source { .. } => ErrorClass::BadInput,
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
