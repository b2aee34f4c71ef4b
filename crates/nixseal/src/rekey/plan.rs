//! Planning: what is current, stale or left over — read from the profile, the
//! sources, the caches and the outputs, never from an identity.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::cache::{CacheEntry, CacheRead, HostCache, CACHE_FILE};
use super::{
    host_dir, kind_of, Pair, PairError, PairState, Plan, RekeyError, Removal, Staleness, Warning,
    OUTPUT_SUFFIX,
};
use crate::fsutil::{sha256_hex, TEMP_PREFIX};
use crate::profile::Profile;

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
