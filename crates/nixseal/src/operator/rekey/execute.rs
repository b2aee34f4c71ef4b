//! Execution: decrypt each needed master secret once, encrypt to every host in
//! parallel, put each host's outputs in place together, remove what left,
//! keep the caches true.
//!
//! Per host: every new output is first written to a temp file in the host
//! directory (in parallel); only when all of that host's temp files exist
//! are they renamed into place, and then the host's cache is written to
//! describe exactly the files present. A host whose directory cannot be
//! written, or whose cache cannot be, is reported as a [`HostFailure`] and
//! every other host is still served.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use rayon::prelude::*;

use super::record::{self, Record, RecordDir};
use super::{
    kind_of, ExecuteOptions, HostError, HostFailure, Outcome, Pair, PairError, PairFailure,
    PairState, Plan, RekeyError, Removal,
};
use crate::common::crypto::{self, EncryptFailure, Plaintext};
use crate::common::fsutil::{self, sha256_hex, MAX_FILE};
use crate::contract::cache::{self, CacheEntry, HostCache, CACHE_FILE};
use crate::contract::layout::output_name;
use crate::contract::names::{HostName, SecretName};
use crate::operator::identity::fast_recipient::FastRecipient;
use crate::operator::identity::MasterIdentities;

/// A new output written to a temp file in its host directory, not yet in
/// place, and the cache entry it will have.
type Staged = (tempfile::TempPath, CacheEntry);
type StagedPair = (Pair, Result<Staged, PairError>);

/// What the new cache of a host says about one of its secrets.
enum Fate {
    /// The old entry stays: the output is current, or was left untouched
    /// (an entry records the output's sha256, so it never vouches for a file
    /// that was changed or replaced since: readers compare it).
    Keep,
    /// The output was just written.
    New(CacheEntry),
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
        vouched,
        removals,
        layout,
        mut caches,
        recipients,
        host_errors,
        partial,
        records,
        ..
    } = plan;
    outcome.host_failures = host_errors;
    outcome.unchanged = vouched;
    let rekeyed_dir = layout.dir().to_owned();

    let mut fates: BTreeMap<HostName, Vec<(SecretName, Fate)>> = BTreeMap::new();
    // Hosts whose cache may need rewriting: any output not current, or any
    // file removed from their directory.
    let mut touched: BTreeSet<HostName> = BTreeSet::new();
    let mut todo: Vec<Pair> = Vec::new();
    for p in &pairs {
        if !matches!(
            p.state,
            PairState::Current | PairState::Blocked(PairError::HostBlocked { .. })
        ) {
            touched.insert(p.host.clone());
        }
    }
    for r in removals.iter().filter(|r| !r.departed) {
        if let Ok(h) = HostName::new(r.host.clone()) {
            touched.insert(h);
        }
    }
    for p in pairs {
        match p.state {
            PairState::Current => {
                outcome.unchanged += 1;
                // Only a touched host's cache is rewritten (a no-op keeps
                // no list of its pairs).
                if touched.contains(&p.host) {
                    fates
                        .entry(p.host)
                        .or_default()
                        .push((p.secret, Fate::Keep));
                }
            }
            // Reported once for the whole host.
            PairState::Blocked(PairError::HostBlocked { .. }) => {}
            PairState::Blocked(error) => {
                touched.insert(p.host.clone());
                fates
                    .entry(p.host.clone())
                    .or_default()
                    .push((p.secret.clone(), Fate::Keep));
                outcome.failed.push(PairFailure {
                    host: p.host,
                    secret: p.secret,
                    error,
                });
            }
            PairState::Stale(_) => {
                touched.insert(p.host.clone());
                todo.push(p);
            }
        }
    }

    if !todo.is_empty() {
        let identities = identities.ok_or(RekeyError::NoIdentity)?;
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
        let mut plaintexts: HashMap<std::sync::Arc<Path>, Result<(Plaintext, String), PairError>> =
            HashMap::new();
        for p in &todo {
            if plaintexts.contains_key(&p.source) {
                continue;
            }
            let r = match fsutil::read_regular(&p.source, MAX_FILE) {
                Err(e) => Err(PairError::SourceUnreadable {
                    path: p.source.to_path_buf(),
                    source: std::sync::Arc::new(e),
                }),
                Ok(ct) => crypto::decrypt(&ct, &ids)
                    .map(|pt| (pt, sha256_hex(&ct)))
                    .map_err(|e| PairError::Decrypt {
                        path: p.source.to_path_buf(),
                        reason: std::sync::Arc::new(e),
                    }),
            };
            plaintexts.insert(p.source.clone(), r);
        }

        // Host directories, made up front and checked for symlinks.
        let mut host_ok: BTreeMap<HostName, Result<(), HostError>> = BTreeMap::new();
        for p in &todo {
            host_ok.entry(p.host.clone()).or_insert_with(|| {
                let dir = layout.host_dir(p.host.as_str());
                match std::fs::create_dir(&dir) {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        match kind_of(&dir) {
                            Ok(Some(t)) if t.is_dir() => Ok(()),
                            Ok(Some(t)) => Err(HostError::DirNotPlain {
                                path: dir,
                                what: fsutil::kind_name(t),
                            }),
                            Ok(None) => Err(HostError::Stage {
                                path: dir,
                                source: e,
                            }),
                            Err(source) => Err(HostError::Read { path: dir, source }),
                        }
                    }
                    Err(source) => Err(HostError::Stage { path: dir, source }),
                }
            });
        }

        // `jobs` threads of their own, or the global pool (see init_threads).
        let pool = match options.jobs {
            Some(jobs) => Some(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(jobs.clamp(1, super::MAX_JOBS))
                    .build()
                    .map_err(|source| RekeyError::Threads { jobs, source })?,
            ),
            None => None,
        };

        // One FastRecipient per host with something to write, shared by
        // every worker: the host's constants are derived once, each wrap
        // is one variable-base multiplication (identity/fast_recipient.rs).
        // Hosts with nothing to write cost nothing (a no-op builds none).
        let fast: BTreeMap<HostName, FastRecipient> = in_pool(pool.as_ref(), || {
            host_ok
                .iter()
                .filter(|(_, ok)| ok.is_ok())
                .filter_map(|(h, _)| recipients.get(h).map(|r| (h, r)))
                .collect::<Vec<_>>()
                .into_par_iter()
                .map(|(h, r)| (h.clone(), FastRecipient::new(r)))
                .collect::<Vec<_>>()
        })
        .into_iter()
        .filter_map(|(h, r)| match r {
            Ok(r) => Some((h, r)),
            // Not reachable for a HostRecipient (it refused weak keys
            // already); the host fails as a whole if it ever is.
            Err(e) => {
                host_ok.insert(h.clone(), Err(HostError::Key(e)));
                None
            }
        })
        .collect();

        let results: Vec<(Pair, Result<Staged, PairError>)> = in_pool(pool.as_ref(), || {
            todo.into_par_iter()
                .map(|p| {
                    let r = stage_one(&p, &rekeyed_abs, &plaintexts, &host_ok, &fast);
                    progress();
                    (p, r)
                })
                .collect()
        });

        let mut by_host: BTreeMap<HostName, Vec<StagedPair>> = BTreeMap::new();
        for (p, r) in results {
            by_host.entry(p.host.clone()).or_default().push((p, r));
        }
        // Hosts whose directory could not be made fail as a whole.
        let mut ready = Vec::new();
        for (host, items) in by_host {
            match host_ok.remove(&host).unwrap_or(Ok(())) {
                Err(e) => block_host(&mut outcome, &mut caches, &host, e),
                Ok(()) => ready.push((host, items)),
            }
        }
        // Each host's staged outputs are put in place (hosts in parallel).
        let placed: Vec<(HostName, Placed)> = in_pool(pool.as_ref(), || {
            ready
                .into_par_iter()
                .map(|(host, items)| {
                    let dir = rekeyed_abs.join(host.as_str());
                    let placed = place_host(&dir, items);
                    (host, placed)
                })
                .collect()
        });
        for (host, placed) in placed {
            match placed {
                Placed::Blocked(e) => block_host(&mut outcome, &mut caches, &host, e),
                Placed::Done {
                    rekeyed,
                    failed,
                    fates: f,
                } => {
                    outcome.rekeyed.extend(rekeyed);
                    outcome.failed.extend(failed);
                    fates.entry(host).or_default().extend(f);
                }
            }
        }
    }

    remove_all(&removals, &caches, &mut outcome);
    store_records(records, &rekeyed_dir, &caches);

    // Caches that describe exactly what each host's directory holds.
    for (host, old) in caches {
        // A host whose every output was current and lost nothing keeps its
        // cache as it is (the no-op path: no stat per output, no re-read).
        if !touched.contains(&host) {
            continue;
        }
        let dir = layout.host_dir(host.as_str());
        if !kind_of(&dir).ok().flatten().is_some_and(|t| t.is_dir()) {
            continue;
        }
        let mut new = HostCache {
            version: cache::CACHE_VERSION,
            outputs: BTreeMap::new(),
        };
        let fates = fates.remove(&host).unwrap_or_default();
        if partial {
            // A run scoped to some secrets vouches for nothing about the
            // others: their entries stay as they were.
            for (secret, entry) in &old.outputs {
                if !fates.iter().any(|(s, _)| s.as_str() == secret) {
                    new.outputs.insert(secret.clone(), entry.clone());
                }
            }
        }
        for (secret, fate) in fates {
            let entry = match fate {
                Fate::Keep => old.outputs.get(secret.as_str()).cloned(),
                Fate::New(e) => Some(e),
            };
            if let Some(e) = entry {
                new.outputs.insert(secret.to_string(), e);
            }
        }
        if new == old {
            continue;
        }
        if let Err(source) = fsutil::atomic_write(&dir, CACHE_FILE, &new.to_bytes(), 0o644) {
            outcome.host_failures.push(HostFailure {
                host: host.to_string(),
                error: HostError::CacheWrite {
                    path: dir.join(CACHE_FILE),
                    source,
                },
            });
        }
    }
    outcome.rekeyed.sort();
    Ok(outcome)
}

/// Writes back the stat records (record.rs) of the sources and of every
/// host that was not blocked: what the plan verified of the outputs it
/// found current (written ones are recorded by the next run that hashes
/// them: just written, their stamps are racy). Only what changed is
/// rewritten, so a no-op writes nothing.
fn store_records(
    records: super::Records,
    rekeyed_dir: &Path,
    caches: &BTreeMap<HostName, HostCache>,
) {
    let dir = records.dir.or_else(|| RecordDir::of(rekeyed_dir, true));
    let Some(dir) = dir.as_ref() else { return };
    let (old, verified) = records.sources;
    Record::store(Some(dir), record::SOURCES_FILE, &old, verified, None);
    records
        .hosts
        .into_iter()
        .filter(|(h, r)| !r.unchanged && caches.contains_key(h))
        .collect::<Vec<_>>()
        .into_par_iter()
        .for_each(|(h, r)| {
            Record::store(
                Some(dir),
                &record::host_file(h.as_str()),
                &r.old,
                r.verified,
                r.stamp,
            )
        });
}

/// What putting one host's staged outputs in place did.
enum Placed {
    /// A temp file could not be written: all were removed, nothing moved.
    Blocked(HostError),
    /// The outputs that could be staged were renamed into place.
    Done {
        rekeyed: Vec<(HostName, SecretName)>,
        failed: Vec<PairFailure>,
        fates: Vec<(SecretName, Fate)>,
    },
}

/// Puts one host's staged outputs in place, all or none: a temp file that
/// could not be written fails the whole host (the temps already made are
/// dropped, which removes them) before anything is renamed.
fn place_host(dir: &Path, items: Vec<StagedPair>) -> Placed {
    let stage_error = items.iter().find_map(|(_, r)| match r {
        Err(PairError::Write { path, source }) => Some(HostError::Stage {
            path: path.clone(),
            source: std::io::Error::new(source.kind(), source.to_string()),
        }),
        _ => None,
    });
    if let Some(e) = stage_error {
        drop(items);
        return Placed::Blocked(e);
    }
    let mut rekeyed = Vec::new();
    let mut failed = Vec::new();
    let mut fates = Vec::new();
    for (p, r) in items {
        let fate = match r {
            Ok((tmp, entry)) => match tmp.persist(dir.join(output_name(p.secret.as_str()))) {
                Ok(()) => {
                    rekeyed.push((p.host.clone(), p.secret.clone()));
                    Fate::New(entry)
                }
                Err(e) => {
                    failed.push(PairFailure {
                        host: p.host.clone(),
                        secret: p.secret.clone(),
                        error: PairError::Write {
                            path: p.output.clone(),
                            source: e.error,
                        },
                    });
                    Fate::Keep
                }
            },
            Err(error) => {
                failed.push(PairFailure {
                    host: p.host.clone(),
                    secret: p.secret.clone(),
                    error,
                });
                Fate::Keep
            }
        };
        fates.push((p.secret, fate));
    }
    Placed::Done {
        rekeyed,
        failed,
        fates,
    }
}

/// Runs `f` in `pool`, or in the current (global) pool.
fn in_pool<R: Send>(pool: Option<&rayon::ThreadPool>, f: impl FnOnce() -> R + Send) -> R {
    match pool {
        Some(p) => p.install(f),
        None => f(),
    }
}

/// Records a host that failed as a whole; its cache is left as it was.
fn block_host(
    outcome: &mut Outcome,
    caches: &mut BTreeMap<HostName, HostCache>,
    host: &HostName,
    error: HostError,
) {
    caches.remove(host);
    outcome.host_failures.push(HostFailure {
        host: host.to_string(),
        error,
    });
}

/// Removes what left the profile. A profile host's failed removal is
/// reported and the rest goes on; a departed host's directory is emptied in
/// order (outputs, cache, directory) and left at its first failure, its
/// cache still marking it as nixseal's for the next run.
fn remove_all(removals: &[Removal], caches: &BTreeMap<HostName, HostCache>, outcome: &mut Outcome) {
    let mut failed_hosts: BTreeSet<&str> = BTreeSet::new();
    for r in removals {
        // A blocked profile host is left alone entirely.
        if !r.departed && !caches.contains_key(r.host.as_str()) {
            continue;
        }
        if r.departed && failed_hosts.contains(r.host.as_str()) {
            continue;
        }
        let res = match kind_of(&r.path) {
            Ok(Some(t)) if t.is_dir() => std::fs::remove_dir(&r.path),
            Ok(Some(_)) => std::fs::remove_file(&r.path),
            Ok(None) => Ok(()),
            Err(e) => Err(e),
        };
        match res {
            Ok(()) => outcome.removed.push(r.path.clone()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                failed_hosts.insert(&r.host);
                outcome.host_failures.push(HostFailure {
                    host: r.host.clone(),
                    error: HostError::Remove {
                        path: r.path.clone(),
                        source,
                    },
                });
            }
        }
    }
}

/// Encrypts one pair and writes it to a temp file in its host directory
/// (not yet in place).
fn stage_one(
    p: &Pair,
    rekeyed_abs: &Path,
    plaintexts: &HashMap<std::sync::Arc<Path>, Result<(Plaintext, String), PairError>>,
    host_ok: &BTreeMap<HostName, Result<(), HostError>>,
    recipients: &BTreeMap<HostName, FastRecipient>,
) -> Result<Staged, PairError> {
    if !matches!(host_ok.get(&p.host), Some(Ok(()))) {
        return Err(PairError::HostBlocked {
            host: p.host.clone(),
        });
    }
    let (plaintext, source_sha256) = match &plaintexts[&p.source] {
        Ok(v) => v,
        Err(e) => return Err(clone_pair_error(e)),
    };
    let Some(recipient) = recipients.get(&p.host) else {
        return Err(PairError::HostBlocked {
            host: p.host.clone(),
        });
    };
    let ct = crypto::encrypt(plaintext, &[recipient as &dyn age::Recipient], false)?;
    // Never write what nixseal (or the NixOS module's reader) would refuse
    // to read back.
    if ct.len() as u64 > MAX_FILE {
        return Err(PairError::TooLarge { size: ct.len() });
    }
    let dir = rekeyed_abs.join(p.host.as_str());
    // Closed at once (only its path is kept, removed if dropped): a fleet
    // stages thousands of outputs, far more than a process may hold open.
    let tmp = fsutil::filled_temp(&dir, &ct, 0o644)
        .map_err(|source| PairError::Write {
            path: p.output.clone(),
            source: without_temp_path(source),
        })?
        .into_temp_path();
    Ok((
        tmp,
        CacheEntry {
            source_sha256: source_sha256.clone(),
            recipient: recipient.as_str().to_owned(),
            output_sha256: sha256_hex(&ct),
        },
    ))
}

/// tempfile's errors end with "at path <random temp name>"; the message
/// names the output instead, so keep only the OS error's text.
fn without_temp_path(e: std::io::Error) -> std::io::Error {
    let text = e.to_string();
    match text.split_once(" at path ") {
        Some((why, _)) => std::io::Error::new(e.kind(), why.to_owned()),
        None => e,
    }
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
        PairError::TooLarge { size } => PairError::TooLarge { size: *size },
        PairError::HostBlocked { host } => PairError::HostBlocked { host: host.clone() },
    }
}
