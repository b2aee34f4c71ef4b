//! Rekeying: re-encrypting each master secret to each host that uses it.
//!
//! [`plan`] reads the profile, the sources and the per-host caches (never an
//! identity) and says what is current, what must be rekeyed and what must be
//! removed. [`execute`] decrypts each needed master secret once, encrypts it to
//! every host in parallel, writes each output atomically and keeps the caches
//! true for whatever succeeded.

pub mod cache;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::crypto::{self, DecryptFailure, EncryptFailure, Plaintext};
use crate::fsutil::{self, sha256_hex, TEMP_PREFIX};
use crate::identity::MasterIdentities;
use crate::name::{HostName, SecretName};
use crate::profile::Profile;
use cache::{CacheEntry, CacheRead, HostCache, CACHE_FILE};

/// Suffix of every rekeyed file.
pub const OUTPUT_SUFFIX: &str = ".age";

/// Errors that stop a rekey as a whole (before any output is touched).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RekeyError {
    /// `rekeyedDir` exists but is not a directory (or is a symlink).
    #[error("rekeyedDir {path} is {what}; it must be a plain directory (move it away or change rekeyedDir)")]
    RekeyedDirNotDir {
        /// The directory.
        path: PathBuf,
        /// What it is instead.
        what: &'static str,
    },
    /// `rekeyedDir` cannot be created or read.
    #[error("cannot use rekeyedDir {path}: {source}; check that it is a writable directory")]
    RekeyedDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A host's cache could not be written after its outputs were.
    #[error("cannot write rekey cache {path}: {source}")]
    CacheWrite {
        /// The cache file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// An orphaned output could not be removed.
    #[error("cannot remove {path} (its secret or host left the profile): {source}")]
    Remove {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
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
    #[error("cannot read master secret {path}: {source}; fix the `file` of this secret or run `nixseal edit {path}`")]
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
    pub source: PathBuf,
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
}

/// What a rekey would do. Made without any identity.
#[derive(Debug)]
pub struct Plan {
    /// Every (host, secret) pair in the profile, host then secret order.
    pub pairs: Vec<Pair>,
    /// Outputs, caches and directories of secrets or hosts that left the profile.
    pub removals: Vec<Removal>,
    /// Non-fatal findings.
    pub warnings: Vec<Warning>,
    rekeyed_dir: PathBuf,
    source_hashes: HashMap<PathBuf, String>,
    caches: BTreeMap<HostName, HostCache>,
    recipients: BTreeMap<HostName, crate::identity::HostRecipient>,
}

impl Plan {
    /// True when nothing at all is to be done (what `check` asserts).
    pub fn is_current(&self) -> bool {
        self.removals.is_empty()
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

    /// Whether running [`execute`] needs the master identity.
    pub fn needs_identity(&self) -> bool {
        self.stale().next().is_some()
    }
}

/// The directory of a host's rekeyed files.
pub fn host_dir(rekeyed_dir: &Path, host: &str) -> PathBuf {
    rekeyed_dir.join(host)
}

/// What sits at a path, without following symlinks.
fn kind_of(path: &Path) -> std::io::Result<Option<std::fs::FileType>> {
    match std::fs::symlink_metadata(path) {
        Ok(m) => Ok(Some(m.file_type())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Reads the profile's sources and caches and decides what to do.
pub fn plan(profile: &Profile) -> Result<Plan, RekeyError> {
    let rekeyed_dir = profile.rekeyed_dir.clone();
    let rd_kind = kind_of(&rekeyed_dir).map_err(|source| RekeyError::RekeyedDir {
        path: rekeyed_dir.clone(),
        source,
    })?;
    match rd_kind {
        Some(t) if t.is_symlink() => {
            return Err(RekeyError::RekeyedDirNotDir {
                path: rekeyed_dir,
                what: "a symlink",
            })
        }
        Some(t) if !t.is_dir() => {
            return Err(RekeyError::RekeyedDirNotDir {
                path: rekeyed_dir,
                what: "a file",
            })
        }
        _ => {}
    }

    // Hash each distinct source once, however many hosts use it.
    let mut source_hashes = HashMap::new();
    let mut source_errors: HashMap<PathBuf, std::sync::Arc<std::io::Error>> = HashMap::new();
    let sources: BTreeSet<&PathBuf> = profile
        .hosts
        .values()
        .flat_map(|h| h.secrets.values().map(|s| &s.source))
        .collect();
    let hashed: Vec<(PathBuf, std::io::Result<String>)> = sources
        .into_par_iter()
        .map(|p| (p.clone(), std::fs::read(p).map(|b| sha256_hex(&b))))
        .collect();
    for (p, r) in hashed {
        match r {
            Ok(h) => {
                source_hashes.insert(p, h);
            }
            Err(e) => {
                source_errors.insert(p, std::sync::Arc::new(e));
            }
        }
    }

    let mut pairs = Vec::new();
    let mut removals = Vec::new();
    let mut warnings = Vec::new();
    let mut caches = BTreeMap::new();
    let mut recipients = BTreeMap::new();
    // Each host's outputs are verified (every file read and hashed) in
    // parallel across hosts: this is most of a no-op run.
    let planned: Vec<HostPlan> = profile
        .hosts
        .values()
        .collect::<Vec<_>>()
        .par_iter()
        .map(|host| plan_host(host, &rekeyed_dir, &source_hashes, &source_errors))
        .collect();
    for (host, hp) in profile.hosts.values().zip(planned) {
        recipients.insert(host.name.clone(), host.recipient.clone());
        pairs.extend(hp.pairs);
        removals.extend(hp.removals);
        warnings.extend(hp.warning);
        caches.insert(host.name.clone(), hp.cache);
    }

    // Host directories of hosts that left the profile: only ones nixseal made
    // (they hold a cache file) are cleared; anything else is left alone.
    if rd_kind.is_some() {
        let entries = std::fs::read_dir(&rekeyed_dir).map_err(|source| RekeyError::RekeyedDir {
            path: rekeyed_dir.clone(),
            source,
        })?;
        let mut names: Vec<_> = entries.filter_map(|e| e.ok()).collect();
        names.sort_by_key(|e| e.file_name());
        for e in names {
            let name = e.file_name().to_string_lossy().into_owned();
            if profile.hosts.contains_key(name.as_str()) {
                continue;
            }
            let path = e.path();
            let is_dir = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
            if !is_dir {
                continue;
            }
            if path.join(CACHE_FILE).is_file() {
                removals.extend(orphans_in_host_dir(&path, &name, |_| false));
                removals.push(Removal {
                    path: path.join(CACHE_FILE),
                    host: name.clone(),
                    secret: None,
                });
                removals.push(Removal {
                    path,
                    host: name,
                    secret: None,
                });
            } else {
                warnings.push(Warning::ForeignDir { path });
            }
        }
    }

    Ok(Plan {
        pairs,
        removals,
        warnings,
        rekeyed_dir,
        source_hashes,
        caches,
        recipients,
    })
}

/// What planning found for one host.
struct HostPlan {
    pairs: Vec<Pair>,
    removals: Vec<Removal>,
    warning: Option<Warning>,
    cache: HostCache,
}

fn plan_host(
    host: &crate::profile::HostEntry,
    rekeyed_dir: &Path,
    source_hashes: &HashMap<PathBuf, String>,
    source_errors: &HashMap<PathBuf, std::sync::Arc<std::io::Error>>,
) -> HostPlan {
    let dir = host_dir(rekeyed_dir, host.name.as_str());
    let dir_kind = kind_of(&dir).ok().flatten();
    let dir_blocked = matches!(dir_kind, Some(t) if !t.is_dir());
    let mut warning = None;
    let cache = match (dir_blocked, dir_kind.is_some()) {
        (false, true) => match HostCache::read(&dir) {
            CacheRead::Valid(c) => Some(c),
            CacheRead::Absent => None,
            CacheRead::Invalid(reason) => {
                warning = Some(Warning::InvalidCache {
                    path: dir.join(CACHE_FILE),
                    reason,
                });
                None
            }
        },
        _ => None,
    };
    let pairs = host
        .secrets
        .values()
        .map(|s| {
            let output = dir.join(format!("{}{OUTPUT_SUFFIX}", s.name));
            let state = if dir_blocked {
                PairState::Blocked(PairError::NotPlain { path: dir.clone() })
            } else if let Some(e) = source_errors.get(&s.source) {
                PairState::Blocked(PairError::SourceUnreadable {
                    path: s.source.clone(),
                    source: e.clone(),
                })
            } else {
                pair_state(
                    &output,
                    cache.as_ref().and_then(|c| c.outputs.get(s.name.as_str())),
                    &source_hashes[&s.source],
                    host.recipient.as_str(),
                )
            };
            Pair {
                host: host.name.clone(),
                secret: s.name.clone(),
                source: s.source.clone(),
                output,
                state,
            }
        })
        .collect();
    let removals = if dir_kind.is_some_and(|t| t.is_dir()) {
        orphans_in_host_dir(&dir, host.name.as_str(), |n| host.secrets.contains_key(n))
    } else {
        Vec::new()
    };
    HostPlan {
        pairs,
        removals,
        warning,
        cache: cache.unwrap_or_default(),
    }
}

fn pair_state(
    output: &Path,
    entry: Option<&CacheEntry>,
    source_sha256: &str,
    recipient: &str,
) -> PairState {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    // One open that refuses symlinks (and never blocks on a FIFO), fstat, one
    // read, close: the no-op path does this for every output.
    let flags = rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK;
    let mut file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits() as i32)
        .open(output)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return PairState::Stale(Staleness::Missing)
        }
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
            return PairState::Blocked(PairError::NotPlain {
                path: output.to_owned(),
            })
        }
        Err(source) => {
            return PairState::Blocked(PairError::ReadOutput {
                path: output.to_owned(),
                source,
            })
        }
    };
    let len = match file.metadata() {
        Ok(m) if m.is_file() => m.len(),
        Ok(_) => {
            return PairState::Blocked(PairError::NotPlain {
                path: output.to_owned(),
            })
        }
        Err(source) => {
            return PairState::Blocked(PairError::ReadOutput {
                path: output.to_owned(),
                source,
            })
        }
    };
    let Some(entry) = entry else {
        return PairState::Stale(Staleness::NotInCache);
    };
    if entry.recipient != recipient {
        return PairState::Stale(Staleness::HostKeyChanged);
    }
    if entry.source_sha256 != source_sha256 {
        return PairState::Stale(Staleness::SourceChanged);
    }
    // fstat gave the size: one read, no second read to see EOF.
    let mut bytes = vec![0u8; len as usize];
    match file.read_exact(&mut bytes) {
        Ok(_) if sha256_hex(&bytes) == entry.output_sha256 => PairState::Current,
        Ok(_) => PairState::Stale(Staleness::OutputModified),
        // Shrunk since fstat: modified behind our back.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            PairState::Stale(Staleness::OutputModified)
        }
        Err(source) => PairState::Blocked(PairError::ReadOutput {
            path: output.to_owned(),
            source,
        }),
    }
}

/// `*.age` files of secrets that left, and temp files left by a crash.
fn orphans_in_host_dir(dir: &Path, host: &str, keep: impl Fn(&str) -> bool) -> Vec<Removal> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.filter_map(|e| e.ok()) {
        let name = e.file_name().to_string_lossy().into_owned();
        let is_file_or_link = e
            .file_type()
            .map(|t| t.is_file() || t.is_symlink())
            .unwrap_or(false);
        if !is_file_or_link {
            continue;
        }
        if name.starts_with(TEMP_PREFIX) {
            out.push(Removal {
                path: e.path(),
                host: host.to_owned(),
                secret: None,
            });
        } else if let Some(secret) = name.strip_suffix(OUTPUT_SUFFIX) {
            if !keep(secret) {
                out.push(Removal {
                    path: e.path(),
                    host: host.to_owned(),
                    secret: Some(secret.to_owned()),
                });
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
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
    /// Outputs written.
    pub rekeyed: Vec<(HostName, SecretName)>,
    /// Outputs left as they were because they were current.
    pub unchanged: usize,
    /// Files and directories removed.
    pub removed: Vec<PathBuf>,
    /// Pairs that failed, each with its reason.
    pub failed: Vec<PairFailure>,
}

/// Options for [`execute`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ExecuteOptions {
    /// Worker threads for encryption (None: one per core).
    pub jobs: Option<usize>,
}

/// Carries out a plan. `identities` may be `None` only when the plan needs none
/// ([`Plan::needs_identity`] is false). `progress` is called once per pair done.
pub fn execute(
    plan: Plan,
    identities: Option<&MasterIdentities>,
    options: ExecuteOptions,
    progress: &(dyn Fn() + Sync),
) -> Result<Outcome, RekeyError> {
    let mut outcome = Outcome::default();
    let Plan {
        pairs,
        removals,
        rekeyed_dir,
        source_hashes,
        mut caches,
        recipients,
        ..
    } = plan;

    // Hosts whose cache may need rewriting: any output not current, or any
    // file removed from their directory.
    let touched: BTreeSet<HostName> = pairs
        .iter()
        .filter(|p| !matches!(p.state, PairState::Current))
        .map(|p| p.host.clone())
        .chain(
            removals
                .iter()
                .filter_map(|r| HostName::new(r.host.clone()).ok()),
        )
        .collect();
    let mut todo: Vec<Pair> = Vec::new();
    for p in pairs {
        match p.state {
            PairState::Current => outcome.unchanged += 1,
            PairState::Blocked(error) => outcome.failed.push(PairFailure {
                host: p.host,
                secret: p.secret,
                error,
            }),
            PairState::Stale(_) => todo.push(p),
        }
    }

    if !todo.is_empty() {
        let identities = identities.expect("execute: the plan needs an identity");
        std::fs::create_dir_all(&rekeyed_dir).map_err(|source| RekeyError::RekeyedDir {
            path: rekeyed_dir.clone(),
            source,
        })?;
        // Written through an absolute path (a relative one costs tempfile a
        // getcwd per file); messages keep the path as the profile gave it.
        let rekeyed_abs =
            std::path::absolute(&rekeyed_dir).map_err(|source| RekeyError::RekeyedDir {
                path: rekeyed_dir.clone(),
                source,
            })?;

        // Each master secret is decrypted once, in this thread (a plugin such
        // as a YubiKey may need a touch per decryption).
        let ids = identities.as_identities();
        let mut plaintexts: HashMap<PathBuf, Result<(Plaintext, String), PairError>> =
            HashMap::new();
        for p in &todo {
            if plaintexts.contains_key(&p.source) {
                continue;
            }
            let r = match std::fs::read(&p.source) {
                Err(e) => Err(PairError::SourceUnreadable {
                    path: p.source.clone(),
                    source: std::sync::Arc::new(e),
                }),
                Ok(ct) => crypto::decrypt(&ct, &ids)
                    .map(|pt| (pt, sha256_hex(&ct)))
                    .map_err(|e| PairError::Decrypt {
                        path: p.source.clone(),
                        reason: std::sync::Arc::new(e),
                    }),
            };
            plaintexts.insert(p.source.clone(), r);
        }

        // Host directories, made up front and checked for symlinks.
        let mut host_ok: BTreeMap<HostName, Result<(), PairError>> = BTreeMap::new();
        for p in &todo {
            host_ok.entry(p.host.clone()).or_insert_with(|| {
                let dir = host_dir(&rekeyed_dir, p.host.as_str());
                match std::fs::create_dir(&dir) {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        match kind_of(&dir) {
                            Ok(Some(t)) if t.is_dir() => Ok(()),
                            _ => Err(PairError::NotPlain { path: dir }),
                        }
                    }
                    Err(source) => Err(PairError::Write { path: dir, source }),
                }
            });
        }

        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(options.jobs.unwrap_or(0))
            .build()
            .expect("rayon pool");
        let results: Vec<(Pair, Result<CacheEntry, PairError>)> = pool.install(|| {
            todo.into_par_iter()
                .map(|p| {
                    let r = rekey_one(&p, &rekeyed_abs, &plaintexts, &host_ok, &recipients);
                    progress();
                    (p, r)
                })
                .collect()
        });

        for (p, r) in results {
            match r {
                Ok(entry) => {
                    caches
                        .get_mut(&p.host)
                        .expect("cache per host")
                        .outputs
                        .insert(p.secret.to_string(), entry);
                    outcome.rekeyed.push((p.host, p.secret));
                }
                Err(error) => outcome.failed.push(PairFailure {
                    host: p.host,
                    secret: p.secret,
                    error,
                }),
            }
        }
    }
    let _ = source_hashes;

    // Remove what left the profile, then write caches that describe exactly
    // the files present.
    for r in &removals {
        let res = if r.path.is_dir() && !r.path.is_symlink() {
            std::fs::remove_dir(&r.path)
        } else {
            std::fs::remove_file(&r.path)
        };
        match res {
            Ok(()) => outcome.removed.push(r.path.clone()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(RekeyError::Remove {
                    path: r.path.clone(),
                    source,
                })
            }
        }
    }
    for (host, mut cache) in caches {
        // A host whose every output was current and lost nothing keeps its
        // cache as it is (the no-op path: no stat per output, no re-read).
        if !touched.contains(&host) {
            continue;
        }
        let dir = host_dir(&rekeyed_dir, host.as_str());
        if !dir.is_dir() || dir.is_symlink() {
            continue;
        }
        let before = HostCache::read(&dir);
        cache.version = cache::CACHE_VERSION;
        cache
            .outputs
            .retain(|secret, _| dir.join(format!("{secret}{OUTPUT_SUFFIX}")).is_file());
        if let CacheRead::Valid(old) = &before {
            if *old == cache {
                continue;
            }
        }
        fsutil::atomic_write(&dir, CACHE_FILE, &cache.to_bytes(), 0o644).map_err(|source| {
            RekeyError::CacheWrite {
                path: dir.join(CACHE_FILE),
                source,
            }
        })?;
    }
    outcome.rekeyed.sort();
    Ok(outcome)
}

fn rekey_one(
    p: &Pair,
    rekeyed_abs: &Path,
    plaintexts: &HashMap<PathBuf, Result<(Plaintext, String), PairError>>,
    host_ok: &BTreeMap<HostName, Result<(), PairError>>,
    recipients: &BTreeMap<HostName, crate::identity::HostRecipient>,
) -> Result<CacheEntry, PairError> {
    if let Err(e) = &host_ok[&p.host] {
        return Err(clone_pair_error(e));
    }
    let (plaintext, source_sha256) = match &plaintexts[&p.source] {
        Ok(v) => v,
        Err(e) => return Err(clone_pair_error(e)),
    };
    let recipient = &recipients[&p.host];
    let ct = crypto::encrypt(plaintext, &[recipient.recipient()], false)?;
    let dir = rekeyed_abs.join(p.host.as_str());
    let name = format!("{}{OUTPUT_SUFFIX}", p.secret);
    // Symlinks at outputs were refused while planning; one planted since is
    // replaced by the rename below, never followed.
    fsutil::atomic_write(&dir, &name, &ct, 0o644).map_err(|source| PairError::Write {
        path: p.output.clone(),
        source,
    })?;
    Ok(CacheEntry {
        source_sha256: source_sha256.clone(),
        recipient: recipient.as_str().to_owned(),
        output_sha256: sha256_hex(&ct),
    })
}

fn clone_pair_error(e: &PairError) -> PairError {
    match e {
        PairError::SourceUnreadable { path, source } => PairError::SourceUnreadable {
            path: path.clone(),
            source: source.clone(),
        },
        PairError::Decrypt { path, reason } => PairError::Decrypt {
            path: path.clone(),
            reason: reason.clone(),
        },
        PairError::NotPlain { path } => PairError::NotPlain { path: path.clone() },
        PairError::Write { path, source } => PairError::Write {
            path: path.clone(),
            source: std::io::Error::new(source.kind(), source.to_string()),
        },
        PairError::ReadOutput { path, source } => PairError::ReadOutput {
            path: path.clone(),
            source: std::io::Error::new(source.kind(), source.to_string()),
        },
        PairError::Encrypt(e) => PairError::Encrypt(EncryptFailure::Recipients(e.to_string())),
    }
}
