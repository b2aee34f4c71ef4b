//! What the audit looks for: fingerprints (size + SHA-256) of every file the
//! profile makes secret — master ciphertexts, every host's rekeyed files and
//! caches, identity files — and the flake's own source.

use std::collections::{BTreeSet, HashMap};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::{display_rel, group_uses, AuditError, FlakeSource, Holding, NotChecked, SourceBasis};
use crate::common::fsutil;
use crate::contract::cache::CACHE_FILE;
use crate::contract::names::HostName;
use crate::operator::profile::Profile;
use crate::store_path::{self, NarHash, StorePath, STORE_DIR};

/// How many leading bytes of each known file are kept, so that a walked
/// file of the same size is read further only when it starts the same.
pub(crate) const HEAD: usize = 64;

/// One fingerprinted file.
#[derive(Debug)]
pub(crate) struct KnownFile {
    pub sha256: [u8; 32],
    /// Its first [`HEAD`] bytes (all of it when shorter); wiped on drop, as
    /// an identity file's may be key material.
    pub head: Zeroizing<Vec<u8>>,
    /// What it is; empty for the audited host's own files (allowed).
    pub holds: Vec<Holding>,
}

/// Every fingerprint, indexed by size so that a walked file is read only
/// when its size equals a known one.
#[derive(Debug, Default)]
pub(crate) struct Known {
    by_size: HashMap<u64, Vec<KnownFile>>,
    pub not_checked: Vec<NotChecked>,
}

/// The kinds of file fingerprinted, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Master,
    Rekeyed,
    Identity,
}

impl Kind {
    fn what(self) -> &'static str {
        match self {
            Kind::Master => "master ciphertext",
            Kind::Rekeyed => "rekeyed file",
            Kind::Identity => "identity file",
        }
    }

    fn json(self) -> &'static str {
        match self {
            Kind::Master => "masterCiphertext",
            Kind::Rekeyed => "rekeyedFile",
            Kind::Identity => "identity",
        }
    }
}

/// The result of comparing a walked file with the fingerprints.
pub(crate) enum Match<'a> {
    /// Not a known file.
    None,
    /// The audited host's own file.
    Own,
    /// A secret file that is not the host's own.
    Foreign(&'a [Holding]),
}

impl Known {
    /// Whether a file of this size may be a known one (then it must be read).
    pub fn size_known(&self, size: u64) -> bool {
        self.by_size.contains_key(&size)
    }

    /// Whether a file of this size starting with `head` may be a known one
    /// (then it must be hashed).
    pub fn head_known(&self, size: u64, head: &[u8]) -> bool {
        self.by_size
            .get(&size)
            .is_some_and(|v| v.iter().any(|k| k.head[..] == *head))
    }

    /// The known file with this size and content, if any.
    pub fn lookup(&self, size: u64, sha256: &[u8; 32]) -> Match<'_> {
        match self
            .by_size
            .get(&size)
            .and_then(|v| v.iter().find(|k| &k.sha256 == sha256))
        {
            None => Match::None,
            Some(k) if k.holds.is_empty() => Match::Own,
            Some(k) => Match::Foreign(&k.holds),
        }
    }

    fn add(&mut self, bytes: &[u8], holding: Option<Holding>) {
        let sha256: [u8; 32] = Sha256::digest(bytes).into();
        let files = self.by_size.entry(bytes.len() as u64).or_default();
        let entry = match files.iter_mut().find(|k| k.sha256 == sha256) {
            Some(k) => k,
            None => {
                files.push(KnownFile {
                    sha256,
                    head: Zeroizing::new(bytes[..bytes.len().min(HEAD)].to_vec()),
                    holds: Vec::new(),
                });
                files.last_mut().expect("just pushed")
            }
        };
        // A file that is both the host's own and something else counts as
        // the something else: never hide a foreign secret behind an own one.
        if let Some(h) = holding {
            if !entry.holds.contains(&h) {
                entry.holds.push(h);
                entry.holds.sort();
            }
        }
    }

    /// Fingerprints a file; one that does not exist or is empty is noted in
    /// `not_checked` instead.
    fn fingerprint(
        &mut self,
        path: &Path,
        shown: String,
        kind: Kind,
        holding: Option<Holding>,
    ) -> Result<(), AuditError> {
        let read = if kind == Kind::Rekeyed {
            // The rekeyed tree is nixseal's own: a symlink there is not followed.
            fsutil::read_regular_nofollow(path, fsutil::MAX_FILE)
        } else if kind == Kind::Identity {
            fsutil::read_regular(path, fsutil::MAX_KEY_FILE)
        } else {
            fsutil::read_regular(path, fsutil::MAX_FILE)
        };
        let bytes = match read {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                self.not_checked.push(NotChecked {
                    file: shown,
                    what: kind.json().into(),
                    reason: "it does not exist here, so copies of it cannot be recognised".into(),
                });
                return Ok(());
            }
            Err(source) => {
                return Err(AuditError::KnownFile {
                    what: kind.what(),
                    path: path.to_owned(),
                    source,
                })
            }
        };
        if bytes.is_empty() {
            self.not_checked.push(NotChecked {
                file: shown,
                what: kind.json().into(),
                reason: "it is empty, so it cannot be told apart from other empty files".into(),
            });
            return Ok(());
        }
        self.add(&bytes, holding);
        Ok(())
    }

    /// Fingerprints everything the profile makes secret, from the working
    /// tree (or the flake's store path) at `profile.root`.
    pub fn build(profile: &Profile, host: &HostName) -> Result<Known, AuditError> {
        let mut known = Known::default();
        for (source, (file, uses)) in group_uses(profile) {
            known.fingerprint(
                &source,
                file.clone(),
                Kind::Master,
                Some(Holding::MasterCiphertext { file, uses }),
            )?;
        }
        known.rekeyed(profile, host)?;
        for id in &profile.identities {
            let shown = display_rel(&profile.root, id);
            known.fingerprint(
                id,
                shown.clone(),
                Kind::Identity,
                Some(Holding::Identity { file: shown }),
            )?;
        }
        Ok(known)
    }

    /// Every file in every host directory of the rekeyed tree, including
    /// hosts that left the profile (their files are still secret).
    fn rekeyed(&mut self, profile: &Profile, host: &HostName) -> Result<(), AuditError> {
        let dir = &profile.rekeyed_dir;
        let shown_dir = display_rel(&profile.root, dir);
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                self.not_checked.push(NotChecked {
                    file: shown_dir,
                    what: "rekeyedDir".into(),
                    reason: "it does not exist here, so no rekeyed file can be recognised".into(),
                });
                return Ok(());
            }
            Err(source) => {
                return Err(AuditError::KnownFile {
                    what: "rekeyed directory",
                    path: dir.clone(),
                    source,
                })
            }
        };
        let read_err = |path: &Path, source| AuditError::KnownFile {
            what: "rekeyed directory",
            path: path.to_owned(),
            source,
        };
        let mut host_dirs = Vec::new();
        for e in entries {
            let e = e.map_err(|s| read_err(dir, s))?;
            let ft = e.file_type().map_err(|s| read_err(&e.path(), s))?;
            if ft.is_dir() {
                host_dirs.push(e.file_name());
            }
        }
        host_dirs.sort();
        // The host's own files and those of the homes it carries
        // (home-manager as a NixOS module puts them into its closure).
        let carried = profile.carried_by(host.as_str());
        for h in host_dirs {
            let h_name = h.to_string_lossy().into_owned();
            let own = h_name == host.as_str() || carried.iter().any(|c| c.as_str() == h_name);
            let hdir = dir.join(&h);
            let mut files = Vec::new();
            for e in std::fs::read_dir(&hdir).map_err(|s| read_err(&hdir, s))? {
                let e = e.map_err(|s| read_err(&hdir, s))?;
                if e.file_type().map_err(|s| read_err(&e.path(), s))?.is_file() {
                    files.push(e.file_name());
                }
            }
            files.sort();
            for f in files {
                let name = f.to_string_lossy().into_owned();
                let path = hdir.join(&f);
                let shown = display_rel(&profile.root, &path);
                let holding = if name == CACHE_FILE {
                    Holding::RekeyCache {
                        host: h_name.clone(),
                        file: shown.clone(),
                    }
                } else if let Some(secret) = crate::contract::layout::secret_of(&name) {
                    Holding::RekeyedFile {
                        host: h_name.clone(),
                        secret: secret.to_owned(),
                        file: shown.clone(),
                    }
                } else {
                    // Leftover temp files and the like are not rekeyed outputs.
                    continue;
                };
                self.fingerprint(&path, shown, Kind::Rekeyed, (!own).then_some(holding))?;
            }
        }
        Ok(())
    }
}

/// Relative paths that identify a copy of this flake: a directory holding
/// `flake.nix` and the profile's rekeyed directory or one of its master files.
#[derive(Debug)]
pub(crate) struct Markers {
    /// The rekeyed directory, relative to the flake root.
    pub rekeyed_dir: PathBuf,
    /// Master files: (relative path, as the profile writes it).
    pub master_files: Vec<(PathBuf, String)>,
}

impl Markers {
    pub fn from_profile(profile: &Profile) -> Markers {
        let rel = |s: &str| -> PathBuf {
            Path::new(s)
                .components()
                .filter(|c| !matches!(c, std::path::Component::CurDir))
                .collect()
        };
        let mut master: BTreeSet<(PathBuf, String)> = BTreeSet::new();
        for h in profile.hosts.values() {
            for s in h.secrets.values() {
                let r = rel(&s.file);
                // Only paths inside the flake can be looked for in a copy.
                if r.components()
                    .all(|c| matches!(c, std::path::Component::Normal(_)))
                {
                    master.insert((r, s.file.clone()));
                }
            }
        }
        Markers {
            rekeyed_dir: rel(&profile.rekeyed_dir_rel),
            master_files: master.into_iter().collect(),
        }
    }
}

/// The flake's source as computed from the flake root, for exact matching.
#[derive(Debug)]
pub(crate) struct Source {
    path: Option<PathBuf>,
    nar: Option<NarHash>,
    pub report: FlakeSource,
}

impl Source {
    /// Whether a closure path is exactly this source (same store path, or the
    /// same NAR hash under another name).
    pub fn matches(&self, path: &Path, nar: Option<&NarHash>) -> bool {
        self.path.as_deref() == Some(path)
            || matches!((self.nar.as_ref(), nar), (Some(a), Some(b)) if a == b)
    }
}

/// Computes the flake source at `root`: inside the store it is the store path
/// holding `root`; in a git work tree the tracked files (as Nix copies a git
/// flake, uncommitted changes to tracked files included); otherwise the whole
/// directory (a `path:` flake).
pub(crate) fn flake_source(root: &Path, store_dir: &Path) -> Source {
    let mut report = FlakeSource {
        root: root.display().to_string(),
        store_path: None,
        nar_hash: None,
        basis: SourceBasis::Unknown,
        error: None,
    };
    let root = match std::fs::canonicalize(root) {
        Ok(r) => r,
        Err(e) => {
            report.error = Some(format!("cannot resolve {}: {e}", root.display()));
            return Source {
                path: None,
                nar: None,
                report,
            };
        }
    };
    let store = std::fs::canonicalize(store_dir).unwrap_or_else(|_| store_dir.to_owned());
    if let Ok(rest) = root.strip_prefix(&store) {
        if let Some(first) = rest.components().next() {
            let path = store_dir.join(first.as_os_str());
            report.store_path = Some(path.display().to_string());
            report.basis = SourceBasis::Store;
            return Source {
                path: Some(path),
                nar: None,
                report,
            };
        }
    }
    let (top, hash) = match crate::operator::git::tracked_files(&root) {
        Some((top, tracked)) => {
            report.basis = SourceBasis::GitTrackedFiles;
            let include = |rel: &Path, is_dir: bool| tracked_filter(&tracked, rel, is_dir);
            let h = store_path::nar_sha256_filtered(&top, &include);
            (top, h)
        }
        None => {
            report.basis = SourceBasis::Directory;
            (root.clone(), store_path::nar_sha256(&root))
        }
    };
    match hash {
        Ok(h) => {
            report.nar_hash = Some(h.to_sri());
            let path = (store_dir == Path::new(STORE_DIR))
                .then(|| StorePath::source(&h, "source").ok())
                .flatten()
                .map(|p| p.to_path_buf());
            report.store_path = path.as_ref().map(|p| p.display().to_string());
            Source {
                path,
                nar: Some(h),
                report,
            }
        }
        Err(e) => {
            report.error = Some(format!(
                "cannot serialise {} as Nix would: {e}",
                top.display()
            ));
            report.basis = SourceBasis::Unknown;
            Source {
                path: None,
                nar: None,
                report,
            }
        }
    }
}

/// Nix's rule for a git flake's source: a file is in it when git tracks it,
/// a directory when git tracks something below it.
fn tracked_filter(tracked: &BTreeSet<Vec<u8>>, rel: &Path, is_dir: bool) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let rel = rel.as_os_str().as_bytes();
    if is_dir {
        let mut prefix = rel.to_vec();
        prefix.push(b'/');
        tracked
            .range(prefix.clone()..)
            .next()
            .is_some_and(|t| t.starts_with(&prefix))
    } else {
        tracked.contains(rel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracked_filter_is_nix_s_rule() {
        let tracked: BTreeSet<Vec<u8>> = ["a/b/c", "sub", "top", "x-y/z"]
            .iter()
            .map(|s| s.as_bytes().to_vec())
            .collect();
        assert!(tracked_filter(&tracked, Path::new("a"), true));
        assert!(tracked_filter(&tracked, Path::new("a/b"), true));
        assert!(tracked_filter(&tracked, Path::new("a/b/c"), false));
        assert!(!tracked_filter(&tracked, Path::new("a/b/d"), false));
        assert!(tracked_filter(&tracked, Path::new("top"), false));
        // A submodule (a tracked gitlink that is a directory) is left out, as
        // Nix does without `?submodules=1`.
        assert!(!tracked_filter(&tracked, Path::new("sub"), true));
        // "x" is not a prefix directory of "x-y/z".
        assert!(!tracked_filter(&tracked, Path::new("x"), true));
        assert!(tracked_filter(&tracked, Path::new("x-y"), true));
    }
}
