//! Planning: what is current, stale or left over — read from the profile, the
//! sources, the caches and the outputs, never from an identity.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use rustc_hash::FxHashMap;

use super::record::{self, open_dir, regular_at, Record, RecordDir, Stat};
use super::{
    check_layout, kind_of, HostError, HostFailure, Pair, PairError, PairState, Plan, RekeyError,
    Removal, Scope, Staleness, Warning,
};
use super::{HostRecord, Records};
use crate::common::fsutil::{kind_name, sha256_hex, MAX_FILE, TEMP_PREFIX};
use crate::contract::cache::{CacheEntry, CacheRead, HostCache, CACHE_FILE};
use crate::contract::layout::{self, RekeyedLayout};
use crate::operator::profile::Profile;

/// Reads the profile's sources and caches and decides what to do. The
/// layout is checked first ([`check_layout`]): a rekeyed directory that is
/// not nixseal's alone is an error before anything else is read.
pub fn plan(profile: &Profile) -> Result<Plan, RekeyError> {
    plan_scoped(profile, &Scope::all())
}

/// [`plan`] for the pairs of `scope` only: no other source is read, no
/// other host's directory or cache looked at. A scoped plan removes a
/// covered host's left-over outputs only when it covers all of that host's
/// secrets, and never touches the directories of hosts that left.
pub fn plan_scoped(profile: &Profile, scope: &Scope) -> Result<Plan, RekeyError> {
    let rd_exists = check_layout(profile)?;
    plan_checked(profile, scope, rd_exists)
}

/// [`plan_scoped`] once [`check_layout`] has passed (`rd_exists`: what it
/// returned) and nothing ran since that could change the layout.
pub(crate) fn plan_checked(
    profile: &Profile,
    scope: &Scope,
    rd_exists: bool,
) -> Result<Plan, RekeyError> {
    let layout = profile.layout();
    let rekeyed_dir = layout.dir();
    // What earlier runs verified (see record.rs): nothing without a rekeyed
    // directory yet, or without a cache directory of this user's own.
    let record_dir = rd_exists
        .then(|| RecordDir::of(rekeyed_dir, false))
        .flatten();
    let source_record = Record::load(record_dir.as_ref(), record::SOURCES_FILE);

    // Hash each distinct source once, however many hosts use it. Only a
    // regular file of bounded size is read: a FIFO, a device or a huge
    // sparse file is that secret's error, not a hang.
    // Keyed by the path's bytes (hashing a `Path` walks its components:
    // two look-ups per pair).
    let mut source_hashes: FxHashMap<&OsStr, String> = Default::default();
    let mut source_errors: FxHashMap<&OsStr, std::sync::Arc<std::io::Error>> = Default::default();
    // Each distinct master file once (100,000 pairs may share 100).
    let sources = scope.sources(profile);
    // A source whose stat is the one recorded with its hash is not read.
    let hashed: Vec<(&Path, std::io::Result<(Stat, String)>)> = sources
        .into_par_iter()
        .map(|p| {
            let key = source_key(&profile.root, p);
            let trusted = std::fs::metadata(p).ok().and_then(|m| {
                let stat = Stat::of(&m);
                let sha = source_record.trusted(key?, &stat)?;
                Some((stat, sha.to_owned()))
            });
            let r = match trusted {
                Some(t) => Ok(t),
                None => record::hash_file(p, MAX_FILE),
            };
            (p, r)
        })
        .collect();
    let mut source_verified = BTreeMap::new();
    for (p, r) in hashed {
        match r {
            Ok((stat, h)) => {
                if let (Some(key), Some(sha)) = (source_key(&profile.root, p), record::hex(&h)) {
                    let v = record::Verified {
                        stat,
                        sha,
                        source: None,
                    };
                    source_verified.insert(key.to_owned(), v);
                }
                source_hashes.insert(p.as_os_str(), h);
            }
            Err(e) => {
                source_errors.insert(p.as_os_str(), std::sync::Arc::new(e));
            }
        }
    }
    // A scoped run read only its own sources: the others keep their entries.
    if !scope.is_all() {
        source_record.carry_into(&mut source_verified, |_| true);
    }

    let mut pairs = Vec::new();
    let mut vouched = 0;
    let mut removals = Vec::new();
    let mut warnings = Vec::new();
    let mut host_errors = Vec::new();
    let mut caches = BTreeMap::new();
    let mut recipients = BTreeMap::new();
    // Each host's outputs are verified (every file read and hashed) in
    // parallel across hosts: this is most of a no-op run.
    let hosts: Vec<_> = profile
        .hosts
        .values()
        .filter(|h| scope.has_host(h.name.as_str()))
        .collect();
    let planned: Vec<HostPlan> = hosts
        .par_iter()
        .map(|host| {
            // Its start first: a host its stamp vouches for needs no more.
            let file = record::host_file(host.name.as_str());
            let record = Record::load_head(record_dir.as_ref(), &file);
            let whole = || Record::load(record_dir.as_ref(), &file);
            plan_host(
                host,
                scope,
                &layout,
                &source_hashes,
                &source_errors,
                record,
                whole,
            )
        })
        .collect();
    let mut records = BTreeMap::new();
    for (host, hp) in hosts.iter().zip(planned) {
        // A host the record vouched for has nothing to encrypt (and its key
        // was not parsed again: see plan_host).
        if hp.vouched == 0 {
            if let Ok(r) = host.recipient() {
                recipients.insert(host.name.clone(), r.clone());
            }
        }
        records.insert(host.name.clone(), hp.record);
        vouched += hp.vouched;
        pairs.extend(hp.pairs);
        removals.extend(hp.removals);
        warnings.extend(hp.warnings);
        if let Some(error) = hp.error {
            host_errors.push(HostFailure {
                host: host.name.to_string(),
                error,
            });
        } else {
            caches.insert(host.name.clone(), hp.cache);
        }
    }
    for (key, hosts) in profile.shared_host_keys() {
        warnings.push(Warning::SharedHostKey { key, hosts });
    }

    // Host directories of hosts that left the profile: only ones nixseal made
    // (they hold a cache file) are cleared, and only when they hold nothing
    // but nixseal's files; anything else is left alone.
    if rd_exists && scope.is_all() {
        let entries = std::fs::read_dir(rekeyed_dir).map_err(|source| RekeyError::RekeyedDir {
            path: rekeyed_dir.to_owned(),
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
            let cache_is_file = kind_of(&path.join(CACHE_FILE))
                .ok()
                .flatten()
                .is_some_and(|t| t.is_file());
            if !cache_is_file {
                warnings.push(Warning::ForeignDir { path });
                continue;
            }
            match departed_host(&path, &name) {
                Ok(r) => removals.extend(r),
                Err(error) => host_errors.push(HostFailure { host: name, error }),
            }
        }
    }

    Ok(Plan {
        layout: layout.clone(),
        pairs,
        vouched,
        removals,
        warnings,
        host_errors,
        caches,
        recipients,
        partial: !scope.whole_hosts(),
        records: Records {
            dir: record_dir,
            sources: (source_record, source_verified),
            hosts: records,
        },
    })
}

impl super::Plan {
    /// The fleet stamp (record/fleet.rs) of this plan of every host of
    /// `profile`, should running it change nothing: `Some` only when it has
    /// nothing to do and nothing to say, every host's record kept the stamp
    /// this plan found true, and every master file was verified. `rekeyed`:
    /// the rekeyed directory's `lstat`, taken before the layout was checked.
    /// (git's part is the caller's: `None` here.)
    pub(crate) fn fleet_stamp(
        &self,
        profile: &Profile,
        rekeyed: Stat,
    ) -> Option<record::FleetStamp> {
        let quiet = !self.partial
            && self.removals.is_empty()
            && self.warnings.is_empty()
            && self.host_errors.is_empty()
            && self.records.hosts.len() == profile.hosts.len()
            && self
                .pairs
                .iter()
                .all(|p| matches!(p.state, super::PairState::Current));
        if !quiet {
            return None;
        }
        let mut index: FxHashMap<&OsStr, usize> = Default::default();
        let mut sources = Vec::with_capacity(profile.sources.len());
        for p in &profile.sources {
            let v = self.records.sources.1.get(source_key(&profile.root, p)?)?;
            index.insert(p.as_os_str(), sources.len());
            sources.push((std::path::absolute(p).ok()?, v.stat, v.sha));
        }
        let mut hosts = Vec::with_capacity(profile.hosts.len());
        for (name, h) in &profile.hosts {
            let r = self.records.hosts.get(name)?;
            let stamp = r.old.host_stamp().filter(|_| r.unchanged)?.clone();
            let mut secrets = String::with_capacity(h.secrets.len() * 16);
            for s in h.secrets.values() {
                use std::fmt::Write;
                let i = index.get(s.source.as_os_str())?;
                let _ = write!(
                    secrets,
                    "{}{}/{i}",
                    if secrets.is_empty() { "" } else { " " },
                    s.name
                );
            }
            hosts.push(record::FleetHost {
                name: name.to_string(),
                stamp,
                secrets,
            });
        }
        Some(record::FleetStamp {
            profile: std::fs::canonicalize(&profile.path).ok()?,
            profile_sha: record::hex(&profile.sha256)?,
            rekeyed_dir: std::fs::canonicalize(&profile.rekeyed_dir).ok()?,
            rekeyed,
            git: None,
            sources,
            hosts,
        })
    }
}

/// A source's name in the record: its path relative to the flake root.
fn source_key<'a>(root: &Path, source: &'a Path) -> Option<&'a str> {
    source.strip_prefix(root).unwrap_or(source).to_str()
}

/// What planning found for one host.
struct HostPlan {
    pairs: Vec<Pair>,
    removals: Vec<Removal>,
    warnings: Vec<Warning>,
    cache: HostCache,
    /// The host's stat record and what this plan verified of its outputs.
    record: HostRecord,
    /// Set when the host is blocked: its pairs are all `HostBlocked`.
    error: Option<HostError>,
    /// The record vouched for the host as a whole (`unchanged_host`): all
    /// current (this many pairs, not listed), nothing to remove, its key
    /// not checked again. 0 otherwise.
    vouched: usize,
}

fn plan_host(
    host: &crate::operator::profile::HostEntry,
    scope: &Scope,
    layout: &RekeyedLayout,
    source_hashes: &FxHashMap<&OsStr, String>,
    source_errors: &FxHashMap<&OsStr, std::sync::Arc<std::io::Error>>,
    record: Record,
    whole: impl FnOnce() -> Record,
) -> HostPlan {
    let dir = layout.host_dir(host.name.as_str());
    let output =
        |s: &crate::contract::names::SecretName| layout.output(host.name.as_str(), s.as_str());
    let selected = || {
        host.secrets
            .values()
            .filter(|s| scope.has_pair(host.name.as_str(), s.name.as_str()))
    };
    // Every selected pair in one state (a blocked host).
    let all = |state: &dyn Fn() -> PairState| -> Vec<Pair> {
        selected()
            .map(|s| Pair {
                host: host.name.clone(),
                secret: s.name.clone(),
                source: s.source.clone(),
                output: output(&s.name),
                state: state(),
            })
            .collect()
    };
    let blocked = |error: HostError| HostPlan {
        pairs: all(&|| {
            PairState::Blocked(PairError::HostBlocked {
                host: host.name.clone(),
            })
        }),
        removals: Vec::new(),
        warnings: Vec::new(),
        cache: HostCache::default(),
        record: HostRecord::default(),
        error: Some(error),
        vouched: 0,
    };
    let mut warnings = Vec::new();
    // A whole host whose stamp names exactly this key: the key passed its
    // point check when the stamp was written (only a usable key is ever
    // stamped), so the no-op path below needs no check (tens of
    // microseconds a host). Anything else checks it first.
    let stamped_key = (scope.whole_hosts() && !host.secrets.is_empty())
        .then(|| record.host_stamp())
        .flatten()
        .filter(|st| host.unchecked_key().as_deref() == Some(st.recipient.as_str()))
        .map(|st| st.recipient.clone());
    let key_unchecked = stamped_key.is_some();
    let recipient = match stamped_key.map_or_else(
        || match host.recipient() {
            Ok(r) => Ok(r.as_str().to_owned()),
            Err(e) => Err(e.clone()),
        },
        Ok,
    ) {
        Ok(r) => r,
        // Nothing is encrypted to a host without secrets: its key can wait
        // (its old outputs, if any, are still pruned).
        Err(e) if host.secrets.is_empty() => {
            warnings.push(Warning::UnusableHostKey {
                host: host.name.clone(),
                error: e,
            });
            String::new()
        }
        Err(e) => return blocked(HostError::Key(e)),
    };
    let recipient = recipient.as_str();
    let dir_kind = match kind_of(&dir) {
        Ok(k) => k,
        Err(source) => {
            return blocked(HostError::Read {
                path: dir.clone(),
                source,
            })
        }
    };
    if let Some(t) = dir_kind.filter(|t| !t.is_dir()) {
        return blocked(HostError::DirNotPlain {
            path: dir.clone(),
            what: kind_name(t),
        });
    }
    // One handle on the host directory (never through a symlink): each
    // output is lstat'ed by its name in it, one path component for the
    // kernel to walk instead of the whole path. Without it (it could not
    // be opened), by the whole path.
    let dir_fd = dir_kind.and_then(|_| open_dir(&dir));
    // The no-op path: the whole host vouched for by its record.
    if scope.whole_hosts() && !recipient.is_empty() {
        if let Some(fd) = &dir_fd {
            if unchanged_host(host, fd, recipient, source_hashes, &record) {
                return HostPlan {
                    pairs: Vec::new(),
                    removals: Vec::new(),
                    warnings,
                    cache: HostCache::default(),
                    record: HostRecord {
                        unchanged: true,
                        old: record,
                        verified: BTreeMap::new(),
                        stamp: None,
                    },
                    error: None,
                    vouched: selected().count(),
                };
            }
        }
    }
    // Planned file by file: with every entry of the record,
    let record = match record.is_partial() {
        true => whole(),
        false => record,
    };
    // and the key checked now if the stamp spared it (a stamped key is of
    // a host with secrets).
    if key_unchecked {
        if let Err(e) = host.recipient() {
            return blocked(HostError::Key(e.clone()));
        }
    }
    // Taken before the directory is listed and the cache read (a change
    // after them moves these stats, so a stamp never vouches for more
    // than was seen).
    let dir_stat = dir_fd.as_ref().and_then(|fd| {
        let st = rustix::fs::fstat(fd).ok()?;
        Some(Stat::of_raw(&st))
    });
    let cache_stat = dir_fd
        .as_ref()
        .and_then(|fd| regular_at(fd, CACHE_FILE).ok().flatten());
    let cache = match dir_kind.is_some() {
        true => match HostCache::read(&dir) {
            CacheRead::Valid(c) => Some(c),
            CacheRead::Absent => None,
            CacheRead::Invalid(reason) => {
                warnings.push(Warning::InvalidCache {
                    path: dir.join(CACHE_FILE),
                    reason,
                });
                None
            }
            CacheRead::NotRegular(what) => {
                return blocked(HostError::CacheNotPlain {
                    path: dir.join(CACHE_FILE),
                    what,
                })
            }
        },
        false => None,
    };
    let mut verified = BTreeMap::new();
    // Outputs the record vouched for as they are: when that is every entry
    // of the record, it needs no rewriting.
    // (Their entries are taken from the record only when it must be
    // rewritten: a no-op copies none.)
    let mut trusted: Vec<(&str, &str)> = Vec::new();
    let mut all_current = true;
    // Each current output's (name, stat, master hash), for the stamp.
    let mut stamped: Vec<(&str, Stat, &str)> = Vec::new();
    let pairs = selected()
        .map(|s| {
            let output = output(&s.name);
            let state = if let Some(e) = source_errors.get(s.source.as_os_str()) {
                PairState::Blocked(PairError::SourceUnreadable {
                    path: s.source.to_path_buf(),
                    source: e.clone(),
                })
            } else {
                let source_sha = &source_hashes[s.source.as_os_str()];
                let (state, seen) = pair_state(
                    &output,
                    dir_fd.as_ref(),
                    cache.as_ref().and_then(|c| c.outputs.get(s.name.as_str())),
                    source_sha,
                    recipient,
                    |stat| record.trusted(s.name.as_str(), stat),
                );
                match (&state, seen) {
                    (PairState::Current, Some(Seen::Trusted(stat))) => {
                        stamped.push((s.name.as_str(), stat, source_sha));
                        trusted.push((s.name.as_str(), source_sha))
                    }
                    (PairState::Current, Some(Seen::Hashed((stat, sha)))) => {
                        stamped.push((s.name.as_str(), stat, source_sha));
                        if let Some(sha) = record::hex(&sha) {
                            let source = record::hex(source_sha);
                            let v = record::Verified { stat, sha, source };
                            verified.insert(s.name.to_string(), v);
                        }
                    }
                    _ => {}
                }
                state
            };
            all_current &= matches!(state, PairState::Current);
            Pair {
                host: host.name.clone(),
                secret: s.name.clone(),
                source: s.source.clone(),
                output,
                state,
            }
        })
        .collect();
    let removals = if dir_kind.is_some() && scope.whole_hosts() {
        let mut r = Vec::new();
        for (path, secret) in nixseal_files(&dir).0 {
            let keep = secret
                .as_deref()
                .is_some_and(|s| host.secrets.contains_key(s));
            if !keep {
                r.push(Removal {
                    path,
                    host: host.name.to_string(),
                    secret,
                    departed: false,
                });
            }
        }
        r
    } else {
        Vec::new()
    };
    // All current, nothing to remove, a cache that was read: the next run
    // may vouch for the host as a whole (unchanged_host).
    // A scoped run keeps the stamp it found: any change it made moves a
    // stat the stamp names, and the digest is checked again when stored.
    let stamp = match (dir_stat, cache_stat, &cache) {
        _ if !scope.whole_hosts() => record.host_stamp().cloned(),
        (Some(dir), Some(cache), Some(_))
            if all_current && removals.is_empty() && !recipient.is_empty() =>
        {
            Some(record::HostStamp {
                dir,
                cache,
                digest: record::digest(stamped.iter().map(|(n, s, h)| (*n, *s, h.as_bytes()))),
                recipient: recipient.to_owned(),
            })
        }
        _ => None,
    };
    let unchanged = verified.is_empty()
        && trusted.len() == record.vouches_for()
        && stamp.as_ref() == record.host_stamp();
    if !unchanged {
        for (name, source_sha) in trusted {
            if let Some(mut e) = record.entry(name) {
                e.source = record::hex(source_sha);
                verified.insert(name.to_owned(), e);
            }
        }
    }
    // The outputs a scoped run did not look at keep their entries.
    if !scope.whole_hosts() {
        record.carry_into(&mut verified, |name| {
            !scope.has_pair(host.name.as_str(), name)
        });
    }
    HostPlan {
        pairs,
        removals,
        warnings,
        cache: cache.unwrap_or_default(),
        record: HostRecord {
            unchanged,
            old: record,
            verified,
            stamp,
        },
        error: None,
        vouched: 0,
    }
}

/// Whether `record` vouches for the whole host as it is (the no-op path):
/// its stamp names this key, and holds ([`record::HostStamp::holds`]) for
/// the host's secrets with their master files' hashes. No file is read.
/// Any doubt is `false`: the host is planned file by file.
fn unchanged_host(
    host: &crate::operator::profile::HostEntry,
    dir_fd: &rustix::fd::OwnedFd,
    recipient: &str,
    source_hashes: &FxHashMap<&OsStr, String>,
    record: &Record,
) -> bool {
    let Some(stamp) = record.host_stamp() else {
        return false;
    };
    if stamp.recipient != recipient {
        return false;
    }
    let mut secrets = Vec::with_capacity(host.secrets.len());
    for s in host.secrets.values() {
        let Some(source) = source_hashes.get(s.source.as_os_str()) else {
            return false;
        };
        secrets.push((s.name.as_str(), source.as_bytes()));
    }
    stamp.holds(dir_fd, secrets.into_iter())
}

/// The state of one output, and — when it is current — its stat and
/// sha256 for the stat record. An output whose `lstat` is the one
/// `trusted` has a hash for is not opened; any other is read and hashed.
fn pair_state<'r>(
    output: &Path,
    dir_fd: Option<&rustix::fd::OwnedFd>,
    entry: Option<&CacheEntry>,
    source_sha256: &str,
    recipient: &str,
    mut trusted: impl FnMut(&Stat) -> Option<&'r str>,
) -> (PairState, Option<Seen>) {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let blocked = |e| (PairState::Blocked(e), None);
    let stale = |why| (PairState::Stale(why), None);
    let not_plain = || {
        blocked(PairError::NotPlain {
            path: output.to_owned(),
        })
    };
    // The no-op path: one lstat, and no read when the record vouches for
    // exactly this file (same device, inode, size, mtime and ctime).
    let stat = match lstat(output, dir_fd) {
        Ok(Some(s)) => s,
        Ok(None) => return not_plain(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return stale(Staleness::Missing),
        Err(source) => {
            return blocked(PairError::ReadOutput {
                path: output.to_owned(),
                source,
            })
        }
    };
    let Some(entry) = entry else {
        return stale(Staleness::NotInCache);
    };
    if entry.recipient != recipient {
        return stale(Staleness::HostKeyChanged);
    }
    if entry.source_sha256 != source_sha256 {
        return stale(Staleness::SourceChanged);
    }
    if let Some(sha) = trusted(&stat) {
        return match sha == entry.output_sha256 {
            true => (PairState::Current, Some(Seen::Trusted(stat))),
            false => stale(Staleness::OutputModified),
        };
    }
    // One open that refuses symlinks (and never blocks on a FIFO), fstat, one
    // read, close.
    let flags = rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK;
    let mut file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits() as i32)
        .open(output)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return stale(Staleness::Missing),
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
            return not_plain()
        }
        Err(source) => {
            return blocked(PairError::ReadOutput {
                path: output.to_owned(),
                source,
            })
        }
    };
    let stat = match file.metadata() {
        Ok(m) if m.is_file() => Stat::of(&m),
        Ok(_) => return not_plain(),
        Err(source) => {
            return blocked(PairError::ReadOutput {
                path: output.to_owned(),
                source,
            })
        }
    };
    let len = stat.size();
    // nixseal never writes an output larger than it reads: a bigger one
    // (a sparse 100 GB file, say) was not written by it. Nothing allocated.
    if len > MAX_FILE {
        return stale(Staleness::OutputModified);
    }
    // fstat gave the size: one read, no second read to see EOF.
    let mut bytes = vec![0u8; len as usize];
    match file.read_exact(&mut bytes) {
        Ok(_) => {
            let sha = sha256_hex(&bytes);
            match sha == entry.output_sha256 {
                true => (PairState::Current, Some(Seen::Hashed((stat, sha)))),
                false => stale(Staleness::OutputModified),
            }
        }
        // Shrunk since fstat: modified behind our back.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => stale(Staleness::OutputModified),
        Err(source) => blocked(PairError::ReadOutput {
            path: output.to_owned(),
            source,
        }),
    }
}

/// How a current output was found current.
enum Seen {
    /// By the stat record (its entry is unchanged), with the stat.
    Trusted(Stat),
    /// By reading and hashing it: its stat and sha256 for the record.
    Hashed((Stat, String)),
}

/// The `lstat` of `output` (`None`: not a regular file), by its name in
/// `dir_fd` (its directory) when there is one.
fn lstat(output: &Path, dir_fd: Option<&rustix::fd::OwnedFd>) -> std::io::Result<Option<Stat>> {
    match (dir_fd, output.file_name().and_then(|n| n.to_str())) {
        (Some(fd), Some(name)) => regular_at(fd, name),
        _ => {
            let m = std::fs::symlink_metadata(output)?;
            Ok(m.is_file().then(|| Stat::of(&m)))
        }
    }
}

/// The files in a host directory that nixseal made — `*.age` outputs (with
/// their secret name) and temp files left by a crash (`None`) — and the
/// entries it did not make (the cache is neither).
fn nixseal_files(dir: &Path) -> (Vec<(PathBuf, Option<String>)>, Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (Vec::new(), Vec::new());
    };
    let mut ours = Vec::new();
    let mut foreign = Vec::new();
    for e in entries.filter_map(|e| e.ok()) {
        let name = e.file_name().to_string_lossy().into_owned();
        if name == CACHE_FILE {
            continue;
        }
        let is_file_or_link = e
            .file_type()
            .map(|t| t.is_file() || t.is_symlink())
            .unwrap_or(false);
        if is_file_or_link && name.starts_with(TEMP_PREFIX) {
            ours.push((e.path(), None));
        } else if let (true, Some(secret)) = (is_file_or_link, layout::secret_of(&name)) {
            ours.push((e.path(), Some(secret.to_owned())));
        } else {
            foreign.push(e.path());
        }
    }
    // One directory: byte order of the whole path is the order of the names
    // (and far cheaper than comparing components).
    ours.sort_unstable_by(|a, b| a.0.as_os_str().cmp(b.0.as_os_str()));
    foreign.sort_unstable_by(|a, b| a.as_os_str().cmp(b.as_os_str()));
    (ours, foreign)
}

/// Everything to remove for a host that left the profile: its outputs and
/// temp files, then its cache, then the directory — or, when the directory
/// holds anything nixseal did not make, an error and nothing at all.
fn departed_host(dir: &Path, host: &str) -> Result<Vec<Removal>, HostError> {
    let (ours, foreign) = nixseal_files(dir);
    if !foreign.is_empty() {
        return Err(HostError::Foreign {
            dir: dir.to_owned(),
            entries: foreign,
        });
    }
    let removal = |path: PathBuf, secret: Option<String>| Removal {
        path,
        host: host.to_owned(),
        secret,
        departed: true,
    };
    let mut out: Vec<Removal> = ours.into_iter().map(|(p, s)| removal(p, s)).collect();
    out.push(removal(dir.join(CACHE_FILE), None));
    out.push(removal(dir.to_owned(), None));
    Ok(out)
}
