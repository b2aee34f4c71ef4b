//! Rekeying: re-encrypting each master secret to each host that uses it.
//!
//! [`plan`] reads the profile, the sources and the per-host caches (never an
//! identity) and says what is current, what must be rekeyed and what must be
//! removed. [`execute`] decrypts each needed master secret once, encrypts it to
//! every host in parallel, writes each output atomically and keeps the caches
//! true for whatever succeeded.
//!
//! Before anything is read or written, [`check_layout`] proves that the
//! rekeyed directory is nixseal's alone: inside the flake root, reached
//! without a symlink, and holding no master secret, identity or profile.
//! Problems of one host (a missing or weak key, a host directory or cache
//! that is not what nixseal made) block that host only, as data in the plan
//! ([`HostFailure`]); every other host is still served.

mod execute;
mod layout;
pub mod lock;
mod plan;
pub(crate) mod record;
mod scope;

pub use execute::execute;
pub use layout::{check_layout, check_layout_with};
pub(crate) use plan::plan_checked;
pub use plan::{plan, plan_scoped};
pub use scope::{Scope, ScopeError};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::common::crypto::{DecryptFailure, EncryptFailure};
use crate::contract::cache::HostCache;
use crate::contract::layout::RekeyedLayout;
use crate::contract::names::{HostName, SecretName};
use crate::operator::identity::HostPubkeyError;

/// Errors that stop a rekey as a whole (before any output is touched).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RekeyError {
    /// `rekeyedDir` (or a directory on the way to it) exists but is not a directory.
    #[error("rekeyedDir {path} is {what}; it must be a plain directory (move it away or change rekeyedDir)")]
    RekeyedDirNotDir {
        /// The directory.
        path: PathBuf,
        /// What it is instead.
        what: &'static str,
    },
    /// A component of `rekeyedDir` below the flake root is a symlink.
    #[error("rekeyedDir {path} passes through the symlink {link}; renc writes and prunes only inside the flake, never through a symlink: make {link} a real directory or change rekeyedDir")]
    RekeyedDirSymlink {
        /// The rekeyed directory.
        path: PathBuf,
        /// The symlink on the way.
        link: PathBuf,
    },
    /// A master secret, identity or the profile lies inside `rekeyedDir`,
    /// where renc writes and removes files.
    #[error("{what} {path} lies inside rekeyedDir {rekeyed_dir}, where renc writes and removes files: it could be overwritten or deleted. Give rekeyed files a directory of their own (e.g. rekeyedDir = \"./secrets/rekeyed\", with master secrets outside it); nothing was written")]
    Overlap {
        /// "master secret", "identity file" or "profile".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The rekeyed directory.
        rekeyed_dir: PathBuf,
    },
    /// `rekeyedDir` lies inside the path of a master secret.
    #[error("rekeyedDir {rekeyed_dir} lies inside the master secret path {path}; give rekeyed files a directory of their own; nothing was written")]
    InsideSecret {
        /// The master secret path.
        path: PathBuf,
        /// The rekeyed directory.
        rekeyed_dir: PathBuf,
    },
    /// `rekeyedDir` cannot be created or read.
    #[error("cannot use rekeyedDir {path}: {source}; check that it is a writable directory")]
    RekeyedDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The worker threads could not be started.
    #[error("cannot start {jobs} worker threads: {source}")]
    Threads {
        /// The number asked for (0: one per core).
        jobs: usize,
        /// Why.
        source: rayon::ThreadPoolBuildError,
    },
    /// The plan needs the master identity and none was given.
    #[error("the master identity is needed to rekey, and none was loaded")]
    NoIdentity,
}

/// A problem that blocks one host: nothing of that host is written or
/// removed, and every other host is still served.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// The host's key is missing or unusable.
    #[error("{0}")]
    Key(HostPubkeyError),
    /// The host directory is not a plain directory.
    #[error("{path} is {what}; a host directory must be a plain directory that nixseal made: move it away")]
    DirNotPlain {
        /// The host directory.
        path: PathBuf,
        /// What it is instead.
        what: &'static str,
    },
    /// The host's rekey cache is not a regular file.
    #[error("rekey cache {path} is {what}; it must be a regular file (without it, that host's outputs are rewritten): remove it")]
    CacheNotPlain {
        /// The cache path.
        path: PathBuf,
        /// What it is instead.
        what: &'static str,
    },
    /// The directory of a host that left the profile holds files nixseal
    /// did not make.
    #[error("{dir} belonged to a host that left the profile but also holds {} that nixseal did not make ({}); nothing in it was removed: move those away", if entries.len() == 1 { "an entry" } else { "entries" }, entries.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    Foreign {
        /// The host directory.
        dir: PathBuf,
        /// What is not nixseal's.
        entries: Vec<PathBuf>,
    },
    /// The host directory could not be inspected.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Writing the host's new outputs failed before any was put in place.
    #[error("cannot write {path}: {source}; none of this host's files were changed")]
    Stage {
        /// The file that could not be written.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The host's cache could not be written after its outputs were.
    #[error("cannot write rekey cache {path}: {source}")]
    CacheWrite {
        /// The cache file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file that left the profile could not be removed.
    #[error("cannot remove {path} (its secret or host left the profile): {source}")]
    Remove {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// A host that could not be (fully) served, and why.
#[derive(Debug)]
pub struct HostFailure {
    /// The host (a profile host, or the directory name of one that left).
    pub host: String,
    /// Why.
    pub error: HostError,
}

/// Why one (host, secret) output is not current.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Staleness {
    /// No output file yet.
    Missing,
    /// The master ciphertext changed since the output was made.
    SourceChanged,
    /// The host key changed since the output was made.
    HostKeyChanged,
    /// The output file differs from what nixseal wrote (edited, truncated, replaced).
    OutputModified,
    /// The host's cache is absent or unreadable, so the output cannot be vouched for.
    NotInCache,
}

impl std::fmt::Display for Staleness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Missing => "missing",
            Self::SourceChanged => "stale: the master secret changed",
            Self::HostKeyChanged => "stale: the host key changed",
            Self::OutputModified => "stale: the rekeyed file was modified",
            Self::NotInCache => "stale: not recorded in the rekey cache",
        })
    }
}

/// Why one (host, secret) pair cannot be rekeyed. Each names the file involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PairError {
    /// The master ciphertext cannot be read.
    #[error("cannot read master secret {path}: {source}")]
    SourceUnreadable {
        /// The source file.
        path: PathBuf,
        /// The I/O error (kept as text: shared by every host of the secret).
        source: std::sync::Arc<std::io::Error>,
    },
    /// The master ciphertext does not decrypt.
    #[error("cannot decrypt master secret {path}: {reason}")]
    Decrypt {
        /// The source file.
        path: PathBuf,
        /// Why.
        reason: std::sync::Arc<DecryptFailure>,
    },
    /// Encrypting to the host key failed.
    #[error("cannot encrypt to the host key: {0}")]
    Encrypt(#[from] EncryptFailure),
    /// Something other than a plain file or directory is where nixseal writes.
    #[error("{path} is a symlink or special file; nixseal never writes through it: remove it and run again")]
    NotPlain {
        /// The offending path.
        path: PathBuf,
    },
    /// An existing output could not be read to verify it.
    #[error("cannot read {path}: {source}")]
    ReadOutput {
        /// The output file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Writing the output failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The output file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The encrypted output would be larger than nixseal reads back.
    #[error("the rekeyed file would be {size} bytes, more than the {} bytes nixseal reads; keep secrets smaller", crate::common::fsutil::MAX_FILE)]
    TooLarge {
        /// Its size.
        size: usize,
    },
    /// Not attempted: the host has a problem of its own (reported once, as a [`HostFailure`]).
    #[error("not rekeyed: host {host} has a problem (see its error)")]
    HostBlocked {
        /// The host.
        host: HostName,
    },
}

/// The state of one (host, secret) pair.
#[derive(Debug)]
pub enum PairState {
    /// Current: nothing to do.
    Current,
    /// Must be (re)written.
    Stale(Staleness),
    /// Cannot be rekeyed, whatever identity is given.
    Blocked(PairError),
}

/// One (host, secret) pair of the profile.
#[derive(Debug)]
pub struct Pair {
    /// The host.
    pub host: HostName,
    /// The secret.
    pub secret: SecretName,
    /// The master ciphertext.
    pub source: std::sync::Arc<Path>,
    /// The output file.
    pub output: PathBuf,
    /// Its state.
    pub state: PairState,
}

/// A file that no longer belongs to the profile.
#[derive(Debug, Clone)]
pub struct Removal {
    /// The file (or empty directory) to remove.
    pub path: PathBuf,
    /// The host directory it is in.
    pub host: String,
    /// The secret it held, if an output (None for caches, temp files, directories).
    pub secret: Option<String>,
    /// Whether the host left the profile (its whole directory goes).
    pub departed: bool,
}

/// Something worth telling the operator that does not fail the run.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Warning {
    /// A host's cache could not be read; its outputs will be rewritten.
    InvalidCache {
        /// The cache file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A directory under rekeyedDir that nixseal did not make is left alone.
    ForeignDir {
        /// The directory.
        path: PathBuf,
    },
    /// Several hosts have the same public key: each can read the others'
    /// rekeyed files.
    SharedHostKey {
        /// The key (`ssh-ed25519 <base64>`).
        key: String,
        /// The hosts.
        hosts: Vec<HostName>,
    },
    /// A host without secrets has an unusable key (nothing is encrypted to it yet).
    UnusableHostKey {
        /// The host.
        host: HostName,
        /// Why.
        error: HostPubkeyError,
    },
}

/// What a rekey would do. Made without any identity.
#[derive(Debug)]
pub struct Plan {
    /// Every (host, secret) pair in the profile, host then secret order,
    /// but those of hosts the stat record vouched for as a whole (all
    /// current: counted in `vouched`, not listed, so a no-op makes no
    /// list of its outputs).
    pub pairs: Vec<Pair>,
    /// How many current pairs `pairs` leaves out.
    pub vouched: usize,
    /// Outputs, caches and directories of secrets or hosts that left the profile.
    pub removals: Vec<Removal>,
    /// Non-fatal findings.
    pub warnings: Vec<Warning>,
    /// Hosts that cannot be served, each with why (their pairs are
    /// [`PairError::HostBlocked`]).
    pub host_errors: Vec<HostFailure>,
    layout: RekeyedLayout,
    caches: BTreeMap<HostName, HostCache>,
    recipients: BTreeMap<HostName, crate::operator::identity::HostRecipient>,
    /// Scoped to some secrets: a host's cache keeps the entries of the
    /// secrets the plan does not cover.
    partial: bool,
    records: Records,
}

/// The stat records a plan read (record.rs), and what it verified: renc
/// writes them back after executing, so the next no-op reads less.
#[derive(Debug, Default)]
struct Records {
    dir: Option<record::RecordDir>,
    /// The master files' record, and each source verified (by path).
    sources: (record::Record, BTreeMap<String, record::Verified>),
    hosts: BTreeMap<HostName, HostRecord>,
}

/// One host's stat record and the outputs this plan found current, by
/// secret name, each with its stat and sha256.
#[derive(Debug, Default)]
struct HostRecord {
    /// The record needs no rewriting: it vouched for everything this plan
    /// found current, and nothing else.
    unchanged: bool,
    old: record::Record,
    verified: BTreeMap<String, record::Verified>,
    /// What can be said of the host as a whole (all current, nothing to
    /// remove), for the next run.
    stamp: Option<record::HostStamp>,
}

impl Plan {
    /// True when nothing at all is to be done (what `check` asserts).
    pub fn is_current(&self) -> bool {
        self.removals.is_empty()
            && self.host_errors.is_empty()
            && self
                .pairs
                .iter()
                .all(|p| matches!(p.state, PairState::Current))
    }

    /// Pairs that need (re)writing.
    pub fn stale(&self) -> impl Iterator<Item = &Pair> {
        self.pairs
            .iter()
            .filter(|p| matches!(p.state, PairState::Stale(_)))
    }

    /// Pairs that cannot be rekeyed.
    pub fn blocked(&self) -> impl Iterator<Item = &Pair> {
        self.pairs
            .iter()
            .filter(|p| matches!(p.state, PairState::Blocked(_)))
    }

    /// How many (host, secret) pairs the plan covers (listed or vouched for).
    pub fn outputs(&self) -> usize {
        self.pairs.len() + self.vouched
    }

    /// Whether running [`execute`] needs the master identity.
    pub fn needs_identity(&self) -> bool {
        self.stale().next().is_some()
    }
}

/// What sits at a path, without following symlinks.
fn kind_of(path: &Path) -> std::io::Result<Option<std::fs::FileType>> {
    match std::fs::symlink_metadata(path) {
        Ok(m) => Ok(Some(m.file_type())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// A pair that failed, and why.
#[derive(Debug)]
pub struct PairFailure {
    /// The host.
    pub host: HostName,
    /// The secret.
    pub secret: SecretName,
    /// Why.
    pub error: PairError,
}

/// What a rekey did.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Hosts that could not be (fully) served, each with why.
    pub host_failures: Vec<HostFailure>,
    /// Outputs written.
    pub rekeyed: Vec<(HostName, SecretName)>,
    /// Outputs left as they were because they were current.
    pub unchanged: usize,
    /// Files and directories removed.
    pub removed: Vec<PathBuf>,
    /// Pairs that failed, each with its reason (pairs of a failed host are
    /// not listed one by one: see `host_failures`).
    pub failed: Vec<PairFailure>,
}

impl Outcome {
    /// Whether anything failed.
    pub fn is_ok(&self) -> bool {
        self.failed.is_empty() && self.host_failures.is_empty()
    }
}

/// Options for [`execute`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ExecuteOptions {
    /// Worker threads for encryption (None: one per core).
    pub jobs: Option<usize>,
}

/// The most worker threads `--jobs` may ask for.
pub const MAX_JOBS: usize = 1024;

/// Starts the worker threads that plan and encrypt: `jobs`, or one per core
/// (at most [`MAX_JOBS`]). Given explicitly, so `RAYON_NUM_THREADS` cannot
/// ask for an absurd number. The calling thread is one of them (parallel
/// work it starts begins on it, with no hand-over to another thread and
/// back): call once, from the thread that runs the command, before the
/// profile is read; later calls (or a pool someone else started) leave
/// the pool as it is.
pub fn init_threads(jobs: Option<usize>) -> Result<(), RekeyError> {
    static STARTED: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    if STARTED.get().is_some() {
        return Ok(());
    }
    let n = jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, MAX_JOBS);
    let r = rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .use_current_thread()
        .build_global();
    let _ = STARTED.set(());
    r.map_err(|source| RekeyError::Threads { jobs: n, source })
}

impl crate::common::error::Classify for RekeyError {
    fn class(&self) -> crate::common::error::ErrorClass {
        use crate::common::error::ErrorClass;
        match self {
            RekeyError::Threads { .. } => ErrorClass::Environment,
            _ => ErrorClass::BadInput,
        }
    }
}
