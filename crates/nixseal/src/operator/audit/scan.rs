//! Walking one store path of the closure.
//!
//! Never follows a symlink (a symlink's target is only classified as inside
//! or outside the store), never opens anything but a regular file (FIFOs,
//! sockets and devices are skipped and listed), opens with `O_NOFOLLOW |
//! O_NONBLOCK` and checks with `fstat` that it opened a regular file. A file
//! is opened only when its size equals a known secret file's or its name ends
//! in `.age`; its first 64 bytes are read, and the rest (streamed into a
//! SHA-256, at most the known size) only when those bytes are a known file's
//! of that size. So a huge sparse file costs one `stat`, and a file that
//! merely has a secret's size one short read.

use std::fs::{self, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::known::{Known, Markers, Match, HEAD};
use super::{FlakeCopy, LeakedFile, SecretTree, Skipped, Unreadable};
use crate::common::fsutil;
use crate::contract::cache::CACHE_FILE;

/// At most this many unreadable or skipped entries are listed per store path
/// (all are counted).
const LIST_CAP: usize = 100;

/// What a binary age file starts with.
const AGE_MAGIC: &[u8] = b"age-encryption.org/v1\n";

/// What an armored age file starts with.
const AGE_ARMOR: &[u8] = b"-----BEGIN AGE ENCRYPTED FILE-----";

/// What every walk needs.
#[derive(Clone, Copy)]
pub(crate) struct ScanConfig<'a> {
    pub known: &'a Known,
    pub markers: &'a Markers,
    pub store_dir: &'a Path,
    pub heuristics: bool,
}

/// What the walk of one store path found.
#[derive(Debug, Default)]
pub(crate) struct PathScan {
    pub files: u64,
    pub symlinks_out_of_store: u64,
    pub leaked: Vec<LeakedFile>,
    pub trees: Vec<SecretTree>,
    pub copies: Vec<FlakeCopy>,
    pub unreadable: Vec<Unreadable>,
    pub unreadable_total: u64,
    pub skipped: Vec<Skipped>,
    pub skipped_total: u64,
}

/// What one directory's entries add up to.
#[derive(Default)]
struct DirState {
    age_files: Vec<String>,
    rekey_caches: Vec<String>,
    flake_nix: bool,
}

/// Whether bytes start like an age file.
pub(crate) fn is_age(head: &[u8]) -> bool {
    head.starts_with(AGE_MAGIC) || head.starts_with(AGE_ARMOR)
}

/// Walks the store path `top`.
pub(crate) fn scan_path(top: &Path, cfg: &ScanConfig<'_>) -> PathScan {
    let mut s = PathScan::default();
    match fs::symlink_metadata(top) {
        Err(e) => s.unreadable(top, &e),
        Ok(meta) => {
            let ft = meta.file_type();
            if ft.is_symlink() {
                s.symlink(top, cfg);
            } else if ft.is_file() {
                // A store path that is a single file: no directory to judge.
                s.file(top, Path::new(""), "", &meta, cfg, &mut DirState::default());
            } else if ft.is_dir() {
                // Another flake's source (nixpkgs, agenix, … registered with
                // `nix.registry`): its age files are its own test vectors,
                // not this fleet's, so the heuristic does not judge it.
                // Copies of this fleet's files in it are still found by content.
                let foreign = fs::symlink_metadata(top.join("flake.nix"))
                    .is_ok_and(|m| m.is_file())
                    && flake_copy(top, Path::new(""), cfg.markers).is_none();
                if foreign && cfg.heuristics {
                    let cfg = ScanConfig {
                        heuristics: false,
                        ..*cfg
                    };
                    s.walk(top, &cfg);
                } else {
                    s.walk(top, cfg);
                }
            } else {
                s.skip(top, ft);
            }
        }
    }
    s.leaked.sort_by(|a, b| a.path.cmp(&b.path));
    s.trees.sort_by(|a, b| a.dir.cmp(&b.dir));
    s.copies.sort_by(|a, b| a.dir.cmp(&b.dir));
    s
}

fn rel_string(rel: &Path) -> String {
    rel.to_string_lossy().into_owned()
}

impl PathScan {
    fn unreadable(&mut self, path: &Path, e: &io::Error) {
        self.unreadable_total += 1;
        if self.unreadable.len() < LIST_CAP {
            self.unreadable.push(Unreadable {
                path: path.display().to_string(),
                error: e.to_string(),
            });
        }
    }

    fn skip(&mut self, path: &Path, ft: fs::FileType) {
        self.skipped_total += 1;
        if self.skipped.len() < LIST_CAP {
            self.skipped.push(Skipped {
                path: path.display().to_string(),
                kind: fsutil::kind_name(ft).trim_start_matches("a ").to_owned(),
            });
        }
    }

    fn symlink(&mut self, path: &Path, cfg: &ScanConfig<'_>) {
        match fs::read_link(path) {
            Err(e) => self.unreadable(path, &e),
            Ok(target) => {
                let resolved = if target.is_absolute() {
                    normalize(&target)
                } else {
                    normalize(&path.parent().unwrap_or(Path::new("/")).join(&target))
                };
                if !resolved.starts_with(cfg.store_dir) {
                    self.symlinks_out_of_store += 1;
                }
            }
        }
    }

    fn walk(&mut self, top: &Path, cfg: &ScanConfig<'_>) {
        let mut stack: Vec<(PathBuf, PathBuf)> = vec![(top.to_owned(), PathBuf::new())];
        while let Some((abs, rel)) = stack.pop() {
            let entries = match fs::read_dir(&abs) {
                Ok(e) => e,
                Err(e) => {
                    self.unreadable(&abs, &e);
                    continue;
                }
            };
            let mut st = DirState::default();
            for entry in entries {
                let entry = match entry {
                    Ok(e) => e,
                    Err(e) => {
                        self.unreadable(&abs, &e);
                        break;
                    }
                };
                let name = entry.file_name();
                let child = abs.join(&name);
                let ft = match entry.file_type() {
                    Ok(t) => t,
                    Err(e) => {
                        self.unreadable(&child, &e);
                        continue;
                    }
                };
                if ft.is_dir() {
                    stack.push((child, rel.join(&name)));
                } else if ft.is_symlink() {
                    self.symlink(&child, cfg);
                } else if ft.is_file() {
                    let name = name.to_string_lossy();
                    if name == "flake.nix" {
                        st.flake_nix = true;
                    }
                    match entry.metadata() {
                        Ok(meta) => {
                            self.file(&child, &rel.join(&*name), &name, &meta, cfg, &mut st)
                        }
                        Err(e) => self.unreadable(&child, &e),
                    }
                } else {
                    self.skip(&child, ft);
                }
            }
            self.finish_dir(&abs, &rel, st, cfg);
        }
    }

    fn file(
        &mut self,
        abs: &Path,
        rel: &Path,
        name: &str,
        meta: &Metadata,
        cfg: &ScanConfig<'_>,
        st: &mut DirState,
    ) {
        self.files += 1;
        let size = meta.len();
        let age_name = cfg.heuristics && name.ends_with(".age");
        let mut head: Option<Zeroizing<Vec<u8>>> = None;
        let mut own = false;
        if cfg.known.size_known(size) || age_name {
            match self.compare(abs, size, cfg.known) {
                Ok((h, m)) => {
                    match m {
                        Some(Match::Own) => own = true,
                        Some(Match::Foreign(holds)) => self.leaked.push(LeakedFile {
                            path: rel_string(rel),
                            size,
                            holds: holds.to_vec(),
                        }),
                        Some(Match::None) | None => {}
                    }
                    head = Some(h);
                }
                Err(e) => {
                    self.unreadable(abs, &e);
                    return;
                }
            }
        }
        if own {
            return;
        }
        if head.as_ref().is_some_and(|h| is_age(h)) {
            st.age_files.push(name.to_owned());
        }
        if cfg.heuristics && name == CACHE_FILE {
            st.rekey_caches.push(name.to_owned());
        }
    }

    /// Reads a file's first bytes and, when its size and those bytes are a
    /// known file's, the rest into a SHA-256 (streamed: nothing is kept),
    /// checking that exactly `size` bytes were read.
    fn compare<'k>(
        &self,
        abs: &Path,
        size: u64,
        known: &'k Known,
    ) -> io::Result<(Zeroizing<Vec<u8>>, Option<Match<'k>>)> {
        let mut file = open_regular(abs)?;
        let head = read_up_to(&mut file, HEAD)?;
        if !known.head_known(size, &head) {
            return Ok((head, None));
        }
        let mut hasher = Sha256::new();
        hasher.update(&head);
        let mut total = head.len() as u64;
        // Wiped: the file may be a copy of an identity.
        let mut buf = Zeroizing::new(vec![0u8; 64 * 1024]);
        loop {
            match file.read(&mut buf[..]) {
                Ok(0) => break,
                Ok(n) => {
                    total += n as u64;
                    if total > size {
                        break;
                    }
                    hasher.update(&buf[..n]);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if total != size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the file changed size while it was read",
            ));
        }
        let sha: [u8; 32] = hasher.finalize().into();
        Ok((head, Some(known.lookup(size, &sha))))
    }

    fn finish_dir(&mut self, abs: &Path, rel: &Path, st: DirState, cfg: &ScanConfig<'_>) {
        if cfg.heuristics && (st.age_files.len() >= 2 || !st.rekey_caches.is_empty()) {
            let mut examples: Vec<String> = st
                .rekey_caches
                .iter()
                .chain(st.age_files.iter())
                .cloned()
                .collect();
            examples.sort();
            examples.truncate(5);
            self.trees.push(SecretTree {
                dir: rel_string(rel),
                age_files: st.age_files.len() as u64,
                rekey_caches: st.rekey_caches.len() as u64,
                examples,
                heuristic: true,
            });
        }
        if st.flake_nix {
            if let Some(copy) = flake_copy(abs, rel, cfg.markers) {
                self.copies.push(copy);
            }
        }
    }
}

/// A directory holding `flake.nix` is a copy of this flake when it also holds
/// the profile's rekeyed directory or one of its master files.
fn flake_copy(abs: &Path, rel: &Path, markers: &Markers) -> Option<FlakeCopy> {
    let mut rekeyed_hosts = Vec::new();
    let mut found_rekeyed = false;
    if lstat_within(abs, &markers.rekeyed_dir).is_some_and(|m| m.is_dir()) {
        found_rekeyed = true;
        if let Ok(entries) = fs::read_dir(abs.join(&markers.rekeyed_dir)) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    rekeyed_hosts.push(e.file_name().to_string_lossy().into_owned());
                }
            }
        }
        rekeyed_hosts.sort();
        rekeyed_hosts.truncate(LIST_CAP);
    }
    let master_files: Vec<String> = markers
        .master_files
        .iter()
        .filter(|(r, _)| lstat_within(abs, r).is_some())
        .map(|(_, shown)| shown.clone())
        .collect();
    (found_rekeyed || !master_files.is_empty()).then(|| FlakeCopy {
        exact: false,
        dir: rel_string(rel),
        rekeyed_hosts,
        master_files,
    })
}

/// `lstat` of `base/rel` where every directory on the way is a real
/// directory (no symlink is followed out of the store path); `None` if
/// anything is missing or `rel` is not a plain relative path.
fn lstat_within(base: &Path, rel: &Path) -> Option<Metadata> {
    let mut p = base.to_owned();
    let mut meta = None;
    for c in rel.components() {
        let Component::Normal(c) = c else { return None };
        if let Some(m) = &meta {
            if !Metadata::is_dir(m) {
                return None;
            }
        }
        p.push(c);
        meta = Some(fs::symlink_metadata(&p).ok()?);
    }
    meta
}

/// Up to `n` bytes from the start of an open file.
fn read_up_to(file: &mut fs::File, n: usize) -> io::Result<Zeroizing<Vec<u8>>> {
    let mut buf = Zeroizing::new(vec![0u8; n]);
    let mut len = 0;
    while len < n {
        match file.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(k) => len += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(len);
    Ok(buf)
}

/// Opens a regular file without following a symlink or blocking on a FIFO,
/// and checks with `fstat` that it is one.
pub(crate) fn open_regular(path: &Path) -> io::Result<fs::File> {
    let flags =
        rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::NOCTTY;
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits() as i32)
        .open(path)?;
    let ft = file.metadata()?.file_type();
    if !ft.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("it is {}, not a regular file", fsutil::kind_name(ft)),
        ));
    }
    Ok(file)
}

/// Removes `.` and resolves `..` lexically.
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_resolves_dot_dot_lexically() {
        assert_eq!(
            normalize(Path::new("/nix/store/a/../../etc")),
            Path::new("/nix/etc")
        );
        assert_eq!(normalize(Path::new("/../../x/./y")), Path::new("/x/y"));
    }

    #[test]
    fn lstat_within_does_not_follow_symlinks_on_the_way() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("out/secrets")).unwrap();
        fs::create_dir_all(d.path().join("in/real")).unwrap();
        fs::write(d.path().join("in/real/f"), b"x").unwrap();
        std::os::unix::fs::symlink(d.path().join("out"), d.path().join("in/link")).unwrap();
        let base = d.path().join("in");
        assert!(lstat_within(&base, Path::new("real/f")).is_some());
        assert!(lstat_within(&base, Path::new("link/secrets")).is_none());
        // The symlink itself is seen, not its target.
        assert!(lstat_within(&base, Path::new("link"))
            .unwrap()
            .file_type()
            .is_symlink());
        assert!(lstat_within(&base, Path::new("../in/real")).is_none());
        assert!(lstat_within(&base, Path::new("real/f/x")).is_none());
    }

    #[test]
    fn age_headers() {
        assert!(is_age(b"age-encryption.org/v1\n-> X25519 abc"));
        assert!(is_age(b"-----BEGIN AGE ENCRYPTED FILE-----\nYWdl"));
        assert!(!is_age(b"age-encryption.org/v2\n"));
        assert!(!is_age(b""));
    }
}
