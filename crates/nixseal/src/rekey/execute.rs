//! Execution: decrypt each needed master secret once, encrypt to every host in
//! parallel, write atomically, remove what left, keep the caches true.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::cache::{self, CacheEntry, CacheRead, HostCache, CACHE_FILE};
use super::{
    host_dir, kind_of, ExecuteOptions, Outcome, Pair, PairError, PairFailure, PairState, Plan,
    RekeyError, OUTPUT_SUFFIX,
};
use crate::crypto::{self, EncryptFailure, Plaintext};
use crate::fsutil::{self, sha256_hex};
use crate::identity::MasterIdentities;
use crate::name::HostName;

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
