//! `nixseal rekey-masters` (alias `updatekeys`): re-encrypts every master
//! file to the profile's current master recipients — the declared public
//! half of each of its `identities` (`identityRecipients`) plus
//! `extraRecipients` — rewriting only the files whose recipients differ.
//!
//! Which files differ is known without any identity from the record
//! `<rekeyedDir>/.nixseal-masters.json` (contract::masters): each master
//! file's ciphertext sha256 and the recipients it was encrypted to. A file
//! whose hash is not the recorded one (edited by hand, added, or older than
//! the record) is *unknown* and rewritten. Nothing derived from a plaintext
//! is kept. A run with nothing to rewrite reads no identity at all.
//!
//! Each rewritten file is replaced on its own: decrypted in memory (in this
//! thread, once: a plugin may need a touch per file), encrypted to the
//! wanted set (armored stays armored, the mode is kept), written to a temp
//! file in its directory, fsynced and renamed over it, the directory
//! fsynced. A file that fails is named and left as it was, as is every
//! other file. The record is written (atomically) after the files: a crash
//! in between leaves rewritten files whose hash the record does not know,
//! and the next run rewrites them again.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rayon::prelude::*;

use super::identity::{self, IdentityError, Interaction, MasterIdentities};
use super::profile::{normalize, Profile};
use super::rekey::{self, lock, RekeyError};
use crate::common::crypto::{self, DecryptFailure, Plaintext};
use crate::common::fsutil::{self, sha256_hex, MAX_FILE};
use crate::contract::masters::{
    MasterEntry, MastersRead, MastersRecord, MASTERS_FILE, MASTERS_VERSION,
};

/// Why `rekey-masters` stopped before rewriting anything.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MastersError {
    /// The flake's operator lock could not be taken.
    #[error(transparent)]
    Lock(#[from] lock::LockError),
    /// The layout is unsafe.
    #[error(transparent)]
    Layout(#[from] RekeyError),
    /// A master identity's recipient is not declared, and cannot be known
    /// without reading the identity.
    #[error("the recipient of master identity {identity} cannot be known without reading it, and rekey-masters never reads an identity just to find out what to encrypt to; declare its public key in the profile's identityRecipients (the flake option nixseal.identityRecipients.\"{written}\"): `age-keygen -y {identity}` for an age key, the .pub file (`ssh-keygen -y -f {identity}`) for an SSH key, the `# Recipient:` line of a plugin identity")]
    UndeclaredRecipient {
        /// The identity file (resolved).
        identity: PathBuf,
        /// As the profile writes it.
        written: String,
    },
    /// The wanted set is empty.
    #[error("profile {profile} names no master identity and no extraRecipients: there is nothing to encrypt master files to")]
    NoRecipients {
        /// The profile file.
        profile: PathBuf,
    },
    /// The record is not a regular file.
    #[error("{path} is {what}; the master-file record must be a regular file: remove it (the next run rewrites every master file once and records them)")]
    RecordNotPlain {
        /// The record.
        path: PathBuf,
        /// What it is instead.
        what: &'static str,
    },
    /// A master identity could not be loaded.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// A wanted recipient cannot be encrypted to.
    #[error(transparent)]
    Recipient(#[from] identity::RecipientError),
    /// A declared public key does not belong to its identity file: the
    /// rewritten files would lock that identity out.
    #[error("identityRecipients of {identity} declares {declared}, but the identity file holds {actual}; fix the declaration (nothing was rewritten: encrypting to it would lock that identity out)")]
    DeclaredMismatch {
        /// The identity file.
        identity: PathBuf,
        /// What the profile declares.
        declared: String,
        /// What the file holds.
        actual: String,
    },
    /// The record could not be written after the files were.
    #[error("cannot write the master-file record {path}: {source}; the rewritten files are in place and the next run re-checks them")]
    RecordWrite {
        /// The record.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl crate::common::error::Classify for MastersError {
    fn class(&self) -> crate::common::error::ErrorClass {
        use crate::common::error::ErrorClass;
        match self {
            MastersError::Lock(_) => ErrorClass::Environment,
            MastersError::Layout(e) => e.class(),
            MastersError::RecordWrite { .. } => ErrorClass::Failed,
            _ => ErrorClass::BadInput,
        }
    }
}

/// What is to be done with one master file.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MasterState {
    /// Recorded, unchanged, encrypted to the wanted set.
    Current,
    /// Recorded and unchanged, but encrypted to another set.
    RecipientsChanged {
        /// Wanted, not in the file's set.
        added: Vec<String>,
        /// In the file's set, no longer wanted.
        removed: Vec<String>,
    },
    /// Not in the record: its recipients are unknown.
    NotRecorded,
    /// Its ciphertext is not the one recorded (edited or replaced since).
    ChangedSinceRecord,
    /// It does not exist; a generator will make it (encrypted to the
    /// current recipients) at the next `renc`.
    AwaitsGeneration,
    /// It cannot be rewritten.
    Failing {
        /// Why (names the file).
        reason: String,
    },
}

impl MasterState {
    /// Whether the file is to be rewritten.
    pub fn rewrite(&self) -> bool {
        matches!(
            self,
            Self::RecipientsChanged { .. } | Self::NotRecorded | Self::ChangedSinceRecord
        )
    }
}

impl std::fmt::Display for MasterState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Current => f.write_str("current"),
            Self::RecipientsChanged { added, removed } => {
                f.write_str("recipients changed")?;
                for a in added {
                    write!(f, "; add {a}")?;
                }
                for r in removed {
                    write!(f, "; remove {r}")?;
                }
                Ok(())
            }
            Self::NotRecorded => f.write_str("not in the record, its recipients are unknown"),
            Self::ChangedSinceRecord => f.write_str("changed since it was recorded"),
            Self::AwaitsGeneration => f.write_str("does not exist yet; renc generates it"),
            Self::Failing { reason } => f.write_str(reason),
        }
    }
}

/// One master file of the profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterFile {
    /// Relative to the flake root, normalised (`secrets/db.age`).
    pub file: String,
    /// What is to be done.
    pub state: MasterState,
}

/// What `rekey-masters` would do. Made without any identity.
#[derive(Debug)]
pub struct MastersPlan {
    /// The wanted recipients, normalised and sorted.
    pub wanted: Vec<String>,
    /// Every master file, by name.
    pub files: Vec<MasterFile>,
    /// The record could not be read (every file counts as unknown).
    pub record_warning: Option<String>,
    record: MastersRecord,
    paths: BTreeMap<String, PathBuf>,
}

impl MastersPlan {
    /// Files to rewrite.
    pub fn to_rewrite(&self) -> impl Iterator<Item = &MasterFile> {
        self.files.iter().filter(|f| f.state.rewrite())
    }
    /// Whether an identity is needed.
    pub fn needs_identity(&self) -> bool {
        self.to_rewrite().next().is_some()
    }
    /// Files that cannot be rewritten.
    pub fn failing(&self) -> impl Iterator<Item = &MasterFile> {
        self.files
            .iter()
            .filter(|f| matches!(f.state, MasterState::Failing { .. }))
    }
}

/// What a `rekey-masters` run did.
#[derive(Debug, Default)]
pub struct MastersReport {
    /// Files rewritten.
    pub rewritten: Vec<String>,
    /// Files already current.
    pub unchanged: usize,
    /// Files awaiting generation (left to renc).
    pub awaiting: Vec<String>,
    /// Files that failed, each with why (each left as it was).
    pub failed: Vec<(String, String)>,
    /// The record could not be read before the run.
    pub record_warning: Option<String>,
    /// Temp files a killed earlier run (or edit) left next to the master
    /// files it rewrites, removed.
    pub removed_temps: Vec<PathBuf>,
}

/// What `rekey-masters` is asked to do.
pub struct MastersOptions<'a> {
    /// Identity files to decrypt with (`-i`) instead of the profile's.
    pub decrypt_with: &'a [PathBuf],
    /// How passphrases and plugin questions are asked.
    pub interaction: Arc<dyn Interaction>,
    /// Say what would change; change nothing, read no identity, take no lock.
    pub dry_run: bool,
}

/// What a `rekey-masters` call returns.
#[derive(Debug)]
pub enum MastersOutcome {
    /// `dry_run`: what would be done.
    DryRun(MastersPlan),
    /// What was done.
    Done(MastersReport),
}

/// A recipient as the record keeps it: an SSH key without its comment,
/// everything else trimmed.
pub fn normalize_recipient(r: &str) -> String {
    let r = r.trim();
    if r.starts_with("ssh-") {
        r.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
    } else {
        r.to_owned()
    }
}

fn normalized_set<'a>(list: impl IntoIterator<Item = &'a String>) -> Vec<String> {
    let set: BTreeSet<String> = list.into_iter().map(|r| normalize_recipient(r)).collect();
    set.into_iter().collect()
}

/// The recipients master files are to be encrypted to: the declared public
/// half of every identity of the profile, plus `extraRecipients`. Needs no
/// identity; an identity whose recipient is not declared is an error.
pub fn wanted(profile: &Profile) -> Result<Vec<String>, MastersError> {
    let mut all: Vec<&String> = Vec::new();
    for id in &profile.identities {
        match profile.identity_recipients.get(id) {
            Some(list) => all.extend(list),
            None => {
                return Err(MastersError::UndeclaredRecipient {
                    identity: id.clone(),
                    written: written_identity(profile, id),
                })
            }
        }
    }
    all.extend(&profile.extra_recipients);
    if all.is_empty() {
        return Err(MastersError::NoRecipients {
            profile: profile.path.clone(),
        });
    }
    Ok(normalized_set(all))
}

/// The identity as the profile (and the flake option) would write it.
fn written_identity(profile: &Profile, id: &Path) -> String {
    match id.strip_prefix(&profile.root) {
        Ok(rel) if !profile.root.as_os_str().is_empty() && profile.root != Path::new(".") => {
            format!("./{}", rel.display())
        }
        _ if id.is_relative() => format!("./{}", id.display()),
        _ => id.display().to_string(),
    }
}

/// The record key of a master file as the profile writes it.
fn record_key(file: &str) -> String {
    normalize(file).map_or_else(|| file.to_owned(), |p| p.display().to_string())
}

/// Plans a rotation: reads the record and hashes each master file; never
/// an identity.
pub fn plan(profile: &Profile) -> Result<MastersPlan, MastersError> {
    let wanted = wanted(profile)?;
    let record_path = profile.rekeyed_dir.join(MASTERS_FILE);
    let (record, record_warning) = match MastersRecord::read(&profile.rekeyed_dir) {
        MastersRead::Valid(r) => (r, None),
        MastersRead::Absent => (MastersRecord::default(), None),
        MastersRead::Invalid(why) => (
            MastersRecord::default(),
            Some(format!(
                "the master-file record {} is unreadable ({why}); every master file counts as unknown and is rewritten",
                record_path.display()
            )),
        ),
        MastersRead::NotRegular(what) => {
            return Err(MastersError::RecordNotPlain {
                path: record_path,
                what,
            })
        }
    };
    // Each distinct master file once, with whether a generator makes it.
    let mut paths: BTreeMap<String, (PathBuf, bool)> = BTreeMap::new();
    for h in profile.hosts.values() {
        for s in h.secrets.values() {
            let e = paths
                .entry(record_key(&s.file))
                .or_insert((s.source.to_path_buf(), false));
            e.1 |= s.generator.is_some();
        }
    }
    let list: Vec<(String, PathBuf, bool)> =
        paths.into_iter().map(|(k, (p, g))| (k, p, g)).collect();
    let files: Vec<MasterFile> = list
        .par_iter()
        .map(|(key, path, generated)| MasterFile {
            file: key.clone(),
            state: state_of(path, record.files.get(key), &wanted, *generated),
        })
        .collect();
    Ok(MastersPlan {
        wanted,
        files,
        record_warning,
        record,
        paths: list.into_iter().map(|(k, p, _)| (k, p)).collect(),
    })
}

fn state_of(
    path: &Path,
    entry: Option<&MasterEntry>,
    wanted: &[String],
    generated: bool,
) -> MasterState {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && generated => {
            return MasterState::AwaitsGeneration
        }
        Ok(m) if m.file_type().is_symlink() => {
            return MasterState::Failing {
                reason: format!(
                    "{} is a symlink; rekey-masters replaces master files in place and never writes through a symlink: rewrite its target with nixseal edit, or make it a regular file",
                    path.display()
                ),
            }
        }
        _ => {}
    }
    let bytes = match fsutil::read_regular(path, MAX_FILE) {
        Ok(b) => b,
        Err(e) => {
            return MasterState::Failing {
                reason: format!("cannot read master secret {}: {e}", path.display()),
            }
        }
    };
    let Some(entry) = entry else {
        return MasterState::NotRecorded;
    };
    if sha256_hex(&bytes) != entry.sha256 {
        return MasterState::ChangedSinceRecord;
    }
    let have: BTreeSet<&String> = entry.recipients.iter().collect();
    let want: BTreeSet<&String> = wanted.iter().collect();
    if have == want {
        return MasterState::Current;
    }
    MasterState::RecipientsChanged {
        added: want.difference(&have).map(|s| (*s).clone()).collect(),
        removed: have.difference(&want).map(|s| (*s).clone()).collect(),
    }
}

/// Runs `nixseal rekey-masters`.
pub fn rekey_masters(
    profile: &Profile,
    opts: &MastersOptions<'_>,
    waiting_for_lock: &dyn Fn(&Path),
) -> Result<MastersOutcome, MastersError> {
    let _lock = if opts.dry_run {
        None
    } else {
        Some(lock::acquire(&profile.root, waiting_for_lock)?)
    };
    rekey::check_layout_with(profile, opts.decrypt_with)?;
    let plan = plan(profile)?;
    if opts.dry_run {
        return Ok(MastersOutcome::DryRun(plan));
    }
    let mut report = MastersReport {
        record_warning: plan.record_warning.clone(),
        ..Default::default()
    };
    for f in &plan.files {
        match &f.state {
            MasterState::Current => report.unchanged += 1,
            MasterState::AwaitsGeneration => report.awaiting.push(f.file.clone()),
            MasterState::Failing { reason } => report.failed.push((f.file.clone(), reason.clone())),
            _ => {}
        }
    }
    // Nothing to rewrite: no identity is read, nothing is written.
    if !plan.needs_identity() {
        return Ok(MastersOutcome::Done(report));
    }
    let (master, decrypt_only): (&[PathBuf], &[PathBuf]) = if opts.decrypt_with.is_empty() {
        (&profile.identities, &[])
    } else {
        (&[], opts.decrypt_with)
    };
    let ids = MasterIdentities::load_split(master, decrypt_only, opts.interaction.clone())?;
    // A declared public key that is not its file's own would lock that
    // identity out of every rewritten file: refuse before writing.
    declarations_hold(profile, &ids)?;
    let recipients = identity::recipients_from(&plan.wanted, opts.interaction.clone())?;
    let recipients: Vec<&dyn age::Recipient> = recipients.iter().map(|r| r.as_ref() as _).collect();

    // A killed earlier rewrite leaves `.nixseal-tmp-*` next to the master
    // files (ciphertext only); under the lock, nothing else writes them.
    let dirs: BTreeSet<PathBuf> = plan
        .to_rewrite()
        .map(|f| parent_of(&plan.paths[&f.file]))
        .collect();
    for d in &dirs {
        report.removed_temps.extend(remove_temps(d));
    }

    // Decrypt each file once, here (a plugin may need a touch per file).
    let idents = ids.as_identities();
    let mut opened: Vec<(String, PathBuf, Plaintext, bool, u32)> = Vec::new();
    for f in plan.to_rewrite() {
        let path = &plan.paths[&f.file];
        match open_one(path, &idents) {
            Ok((pt, armored, mode)) => {
                opened.push((f.file.clone(), path.clone(), pt, armored, mode))
            }
            Err(reason) => report.failed.push((f.file.clone(), reason)),
        }
    }
    // Encrypt here (age's recipients are not Sync; this is cheap), then
    // write, fsync and rename each file on its own, in parallel (the slow part).
    let mut sealed: Vec<Sealed> = Vec::new();
    for (key, path, pt, armored, mode) in &opened {
        sealed.push((
            key.clone(),
            path.clone(),
            seal(path, pt, *armored, &recipients),
            *mode,
        ));
    }
    let written: Vec<(String, Result<String, String>)> = sealed
        .into_par_iter()
        .map(|(key, path, ct, mode)| (key, ct.and_then(|ct| replace_one(&path, &ct, mode))))
        .collect();
    drop(opened);
    let mut record = MastersRecord {
        version: MASTERS_VERSION,
        files: BTreeMap::new(),
    };
    // Entries of files still in the profile stay (a failed file keeps its
    // old one, which no longer matches if the file changed: unknown again).
    for key in plan.paths.keys() {
        if let Some(e) = plan.record.files.get(key) {
            record.files.insert(key.clone(), e.clone());
        }
    }
    let mut dirs: BTreeSet<PathBuf> = BTreeSet::new();
    for (key, r) in written {
        match r {
            Ok(sha256) => {
                dirs.insert(parent_of(&plan.paths[&key]));
                record.files.insert(
                    key.clone(),
                    MasterEntry {
                        sha256,
                        recipients: plan.wanted.clone(),
                    },
                );
                report.rewritten.push(key);
            }
            Err(reason) => report.failed.push((key, reason)),
        }
    }
    // The renames are durable before the record vouches for them.
    for d in &dirs {
        let _ = std::fs::File::open(d).and_then(|f| f.sync_all());
    }
    write_record(&profile.rekeyed_dir, &record)?;
    report.rewritten.sort();
    report.failed.sort();
    Ok(MastersOutcome::Done(report))
}

/// A master file encrypted anew (or why not), with its mode: key, path,
/// ciphertext, mode.
type Sealed = (String, PathBuf, Result<Vec<u8>, String>, u32);

/// Removes the regular files named `.nixseal-tmp-*` in `dir`.
fn remove_temps(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name();
        let ours = name
            .to_str()
            .is_some_and(|n| n.starts_with(fsutil::TEMP_PREFIX));
        if ours
            && e.file_type().is_ok_and(|t| t.is_file())
            && std::fs::remove_file(e.path()).is_ok()
        {
            out.push(e.path());
        }
    }
    out.sort();
    out
}

/// Checks each declared public half against the keys its (loaded)
/// identity file holds, where they can be derived (age X25519, SSH).
fn declarations_hold(profile: &Profile, ids: &MasterIdentities) -> Result<(), MastersError> {
    for id in &profile.identities {
        if let (Some(actual), Some(declared)) = (
            ids.derived_recipients(id),
            profile.identity_recipients.get(id),
        ) {
            let declared = normalized_set(declared);
            if let Some(missing) = actual
                .iter()
                .find(|a| !declared.contains(&normalize_recipient(a)))
            {
                return Err(MastersError::DeclaredMismatch {
                    identity: id.clone(),
                    declared: declared.join(", "),
                    actual: missing.clone(),
                });
            }
        }
    }
    Ok(())
}

fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// Reads and decrypts one master file: its plaintext, whether it is
/// armored, its mode.
fn open_one(path: &Path, ids: &[&dyn age::Identity]) -> Result<(Plaintext, bool, u32), String> {
    use std::os::unix::fs::PermissionsExt;
    let ct = fsutil::read_regular(path, MAX_FILE)
        .map_err(|e| format!("cannot read master secret {}: {e}", path.display()))?;
    let mode = std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or(0o644);
    let pt = crypto::decrypt(&ct, ids).map_err(|e: DecryptFailure| {
        format!(
            "cannot decrypt master secret {} with the identities given: {e}; it was left as it was",
            path.display()
        )
    })?;
    Ok((pt, crypto::is_armored(&ct), mode))
}

fn rewrite_failure(path: &Path, why: impl std::fmt::Display) -> String {
    format!(
        "cannot rewrite {}: {why}; it was left as it was",
        path.display()
    )
}

/// Encrypts one master file's plaintext to the wanted recipients.
fn seal(
    path: &Path,
    plaintext: &[u8],
    armored: bool,
    recipients: &[&dyn age::Recipient],
) -> Result<Vec<u8>, String> {
    let ct =
        crypto::encrypt(plaintext, recipients, armored).map_err(|e| rewrite_failure(path, e))?;
    if ct.len() as u64 > MAX_FILE {
        return Err(rewrite_failure(
            path,
            format!(
                "the new file would be {} bytes, more than nixseal reads",
                ct.len()
            ),
        ));
    }
    Ok(ct)
}

/// Atomically replaces one master file (temp in its directory, fsync,
/// rename); the new ciphertext's sha256.
fn replace_one(path: &Path, ct: &[u8], mode: u32) -> Result<String, String> {
    let fail = |e: std::io::Error| rewrite_failure(path, e);
    let tmp = fsutil::filled_temp(&parent_of(path), ct, mode).map_err(fail)?;
    tmp.as_file().sync_all().map_err(fail)?;
    tmp.persist(path).map_err(|e| fail(e.error))?;
    Ok(sha256_hex(ct))
}

/// Writes the record atomically (temp, fsync, rename, fsync of the directory).
fn write_record(rekeyed_dir: &Path, record: &MastersRecord) -> Result<(), MastersError> {
    let path = rekeyed_dir.join(MASTERS_FILE);
    let err = |source| MastersError::RecordWrite {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(rekeyed_dir).map_err(err)?;
    let tmp = fsutil::filled_temp(rekeyed_dir, &record.to_bytes(), 0o644).map_err(err)?;
    tmp.as_file().sync_all().map_err(err)?;
    tmp.persist(&path).map_err(|e| err(e.error))?;
    std::fs::File::open(rekeyed_dir)
        .and_then(|f| f.sync_all())
        .map_err(err)?;
    Ok(())
}

/// After `edit` wrote `file` (encrypted to the profile's master recipients
/// plus `extra`): records its new hash and recipients, when the profile's
/// wanted set is known; otherwise forgets it (it is then unknown to the next
/// rotation, which rewrites it). No record yet and the set unknown: nothing
/// is written.
///
/// `ids` are the identities the writer loaded: when one of the profile's
/// identity files holds a key its declaration does not list, the file was
/// not encrypted to the declared set, and its entry is forgotten instead.
pub fn record_edit(
    profile: &Profile,
    file: &Path,
    extra: &[String],
    ids: Option<&MasterIdentities>,
) -> Result<(), MastersError> {
    // The edited file as the profile names it (relative to the root).
    let rel = file.strip_prefix(&profile.root).unwrap_or(file);
    let key = record_key(&rel.to_string_lossy());
    let mut record = match MastersRecord::read(&profile.rekeyed_dir) {
        MastersRead::Valid(r) => r,
        MastersRead::Absent | MastersRead::Invalid(_) => MastersRecord {
            version: MASTERS_VERSION,
            files: BTreeMap::new(),
        },
        MastersRead::NotRegular(what) => {
            return Err(MastersError::RecordNotPlain {
                path: profile.rekeyed_dir.join(MASTERS_FILE),
                what,
            })
        }
    };
    let known = profile
        .hosts
        .values()
        .any(|h| h.secrets.values().any(|s| record_key(&s.file) == key));
    let before = record.clone();
    let declared_true = ids.is_none_or(|ids| declarations_hold(profile, ids).is_ok());
    match (known && declared_true, wanted(profile)) {
        (true, Ok(mut set)) => {
            let bytes = fsutil::read_regular(file, MAX_FILE).map_err(|source| {
                MastersError::RecordWrite {
                    path: file.to_owned(),
                    source,
                }
            })?;
            set.extend(extra.iter().map(|r| normalize_recipient(r)));
            record.files.insert(
                key,
                MasterEntry {
                    sha256: sha256_hex(&bytes),
                    recipients: normalized_set(&set),
                },
            );
        }
        _ => {
            record.files.remove(&key);
        }
    }
    if record == before || (before.files.is_empty() && record.files.is_empty()) {
        return Ok(());
    }
    write_record(&profile.rekeyed_dir, &record)
}
