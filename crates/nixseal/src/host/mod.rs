//! The host side, `nixseal deploy`: turn a host manifest into decrypted
//! secrets under /run.
//!
//! The eight steps of docs/host.md, in `deploy`:
//! validate → lock → mount → host keys → build `<n>.tmp` → rename + switch
//! the symlink + place custom paths → prune → restart/reload units.
//!
//! Invariant: whenever the process dies, `symlink` points to one complete
//! generation; every file is owned and moded before its plaintext is written;
//! nothing under the mount point is reached through a symlink; nothing
//! outside the ramfs that nixseal did not create is replaced or deleted; and
//! what must survive a crash or a reboot (custom paths placed, restarts
//! owed) is recorded in the state directory before it is needed.
//!
//! Where each step lives: `deploy` runs them in order and owns the
//! errors; `lock`, `mount` and `paths` (steps 2–3 and safe directory
//! walking), `identity` (the host keys, step 4), `contents` (step 5: read,
//! decrypt, write, render), `switch` and `place` (step 6), `state` (the
//! persistent records), `generation` (numbering, creation, pruning: 7),
//! `units` (step 8), `accounts` (users and groups), `fault` (test-only kill
//! points).

mod accounts;
mod contents;
mod deploy;
mod error;
pub(crate) mod fault;
mod generation;
mod identity;
mod lock;
mod mount;
mod paths;
mod place;
mod plan;
mod session;
mod state;
mod switch;
mod units;

pub use accounts::{Accounts, AccountsError, GROUP, PASSWD};
pub use deploy::{deploy, DeployOptions, DeployReport};
pub use error::{
    DeployError, ErrorClass, FailureReason, FinishFailure, PlaceProblem, SecretFailure,
    SourceProblem,
};
pub use plan::{InstallPlan, Ownership};
pub use session::{Session, SessionError, UserSession, RUNTIME_DIR_ENV};
// For the crash tests, which kill a `fault-injection` build at each point
// (tests/deploy_crash.rs): not an API.
#[doc(hidden)]
pub use fault::{ENV as FAULT_ENV, POINTS as FAULT_POINTS};
pub use generation::PRUNE_GRACE;
pub use identity::{load as load_host_key, parse as parse_host_key, HostIdentity, HostKeyError};
pub use lock::{DeployLock, LockError};
pub use mount::MountError;
pub use paths::PathError;
pub use place::METADATA;
pub use state::{file_name as state_file_name, StateError};
pub use switch::InstallError;
pub use units::UnitsError;
