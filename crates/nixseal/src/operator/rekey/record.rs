//! The stat record: what a no-op renc trusts without reading a file.
//!
//! For every rekeyed output (and master ciphertext) whose sha256 renc has
//! verified, the record keeps that hash together with the file's identity
//! and change stamps as `lstat`/`fstat` gave them: device, inode, size,
//! mtime and ctime (nanoseconds). The next run trusts the recorded hash only
//! when every one of those fields is equal; any difference — an edit (even
//! of the same size with the mtime put back by `touch -d`: the ctime still
//! moves, and no one but the kernel sets it), a file replaced by another
//! (inode), a fresh checkout (new inodes, new ctimes, a new record
//! directory) — or no record at all means the file is read and hashed as
//! before.
//!
//! It is local and untracked: `$XDG_CACHE_HOME/nixseal/renc-stat/<key>/`
//! (`~/.cache/...` without XDG_CACHE_HOME; none at all without either), one
//! directory per rekeyed directory (`<key>`: sha256 of its canonical path),
//! one file per host (`host-<name>`) and one for the master files
//! (`sources`). It holds sha256s of ciphertexts and stat fields only —
//! nothing derived from a plaintext — and is written atomically, with mode
//! 0600 in directories of mode 0700. A record that is not a regular file
//! owned by this user (a symlink, a FIFO, another user's), that is writable
//! by others, larger than [`MAX_RECORD`], of another version or another
//! directory, or that does not parse, is ignored as a whole: nothing in it is
//! trusted, and it is replaced by a good one.
//!
//! Racy stamps (as git's index has them): a file changed twice within one
//! tick of the file-system clock keeps its ctime, so a file whose ctime is
//! less than [`RACY_NS`] before the moment the record is made is not
//! recorded (the next run hashes it, then records it).

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::common::fsutil::{self, sha256_hex};

/// First line of every record.
const MAGIC: &str = "nixseal renc stat record v1";

/// The largest record read (larger ones are ignored).
pub const MAX_RECORD: u64 = 16 << 20;

/// Files whose ctime is this recent when a record is made are left out of it.
pub const RACY_NS: i128 = 2_000_000_000;

/// The fields of a file's stat that must all be equal for the record to be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl Stat {
    /// The size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The fields of a raw `stat` (as [`Stat::of`] has them from `Metadata`).
    // The field types of `struct stat` differ between targets.
    #[allow(clippy::unnecessary_cast)]
    pub fn of_raw(st: &rustix::fs::Stat) -> Self {
        let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
        Self {
            dev: st.st_dev as u64,
            ino: st.st_ino as u64,
            size: st.st_size as u64,
            mtime_ns: ns(st.st_mtime as i64, st.st_mtime_nsec as i64),
            ctime_ns: ns(st.st_ctime as i64, st.st_ctime_nsec as i64),
        }
    }

    /// The fields of `m`.
    pub fn of(m: &std::fs::Metadata) -> Self {
        Self {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
            ctime_ns: i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
        }
    }
}

/// A sha256 in hex (checked to be hex when read: no allocation per entry).
type Hex = [u8; 64];

/// What one record vouches for: name → (stat, sha256 hex of the content).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Record {
    entries: HashMap<String, (Stat, Hex)>,
}

impl Record {
    /// The recorded sha256 of `name`, if its stat is exactly `stat`.
    pub fn trusted(&self, name: &str, stat: &Stat) -> Option<&str> {
        match self.entries.get(name) {
            Some((s, sha)) if s == stat => std::str::from_utf8(sha).ok(),
            _ => None,
        }
    }

    /// The entry of `name` as it is recorded.
    pub fn entry(&self, name: &str) -> Option<(Stat, String)> {
        let (s, sha) = self.entries.get(name)?;
        Some((*s, std::str::from_utf8(sha).ok()?.to_owned()))
    }

    /// How many files it vouches for.
    pub fn vouches_for(&self) -> usize {
        self.entries.len()
    }

    /// Copies into `into` the entries whose name `outside` accepts and that
    /// `into` does not hold: a scoped run keeps what it did not look at
    /// (each entry is still believed only for the exact stat it records).
    pub fn carry_into(
        &self,
        into: &mut BTreeMap<String, (Stat, String)>,
        outside: impl Fn(&str) -> bool,
    ) {
        for (name, e) in &self.entries {
            if outside(name) && !into.contains_key(name) {
                if let Ok(sha) = std::str::from_utf8(&e.1) {
                    into.insert(name.clone(), (e.0, sha.to_owned()));
                }
            }
        }
    }

    /// Reads the record `file`. Empty on any problem.
    pub fn load(dir: Option<&RecordDir>, file: &str) -> Self {
        dir.and_then(|d| Self::parse(&read_own(&d.dir.join(file))?, &d.scope))
            .unwrap_or_default()
    }

    fn parse(bytes: &[u8], scope: &Path) -> Option<Self> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut lines = text.split_terminator('\n');
        if lines.next()? != MAGIC || lines.next()? != format!("scope {}", scope.to_str()?) {
            return None;
        }
        let mut entries = HashMap::new();
        for line in lines {
            let mut f = line.splitn(7, ' ');
            let mut num = || f.next()?.parse::<i128>().ok();
            let (dev, ino, size, mtime_ns, ctime_ns) = (num()?, num()?, num()?, num()?, num()?);
            let sha = f.next()?;
            let name = f.next()?;
            if !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            let sha: Hex = sha.as_bytes().try_into().ok()?;
            let stat = Stat {
                dev: u64::try_from(dev).ok()?,
                ino: u64::try_from(ino).ok()?,
                size: u64::try_from(size).ok()?,
                mtime_ns,
                ctime_ns,
            };
            // A name twice: not a record nixseal wrote.
            if entries.insert(name.to_owned(), (stat, sha)).is_some() {
                return None;
            }
        }
        Some(Self { entries })
    }

    /// Writes `entries` as the record `file` (atomically), unless that is
    /// what `old` already holds. Racy entries are left out.
    pub fn store(
        dir: Option<&RecordDir>,
        file: &str,
        old: &Record,
        entries: BTreeMap<String, (Stat, String)>,
    ) {
        let Some(dir) = dir else { return };
        let Some(scope) = dir.scope.to_str().filter(|s| !s.contains('\n')) else {
            return;
        };
        let now = now_ns();
        let entries: BTreeMap<String, (Stat, String)> = entries
            .into_iter()
            .filter(|(name, (s, _))| {
                !name.contains('\n') && !name.is_empty() && s.ctime_ns < now - RACY_NS
            })
            .collect();
        if entries.len() == old.entries.len()
            && entries.iter().all(|(n, e)| {
                old.entries
                    .get(n)
                    .is_some_and(|o| o.0 == e.0 && o.1 == e.1.as_bytes())
            })
        {
            return;
        }
        let mut out = format!("{MAGIC}\nscope {scope}\n");
        for (name, (s, sha)) in &entries {
            use std::fmt::Write;
            let _ = writeln!(
                out,
                "{} {} {} {} {} {sha} {name}",
                s.dev, s.ino, s.size, s.mtime_ns, s.ctime_ns
            );
        }
        // A record that cannot be written costs the next run time, nothing else.
        let _ = fsutil::atomic_write(&dir.dir, file, out.as_bytes(), 0o600);
    }
}

/// The record file of a host.
pub fn host_file(host: &str) -> String {
    format!("host-{host}")
}

/// The record file of the master files.
pub const SOURCES_FILE: &str = "sources";

/// The directory holding the records of one rekeyed directory, checked to
/// be this user's own (mode 0700, no symlink) before anything is read from
/// or written to it.
#[derive(Debug, Clone)]
pub struct RecordDir {
    dir: PathBuf,
    /// The canonical rekeyed directory (each record names it).
    scope: PathBuf,
}

impl RecordDir {
    /// The record directory of `rekeyed_dir` under the user's cache
    /// directory, made if `create`. `None` when there is no cache
    /// directory, or it (or a directory of nixseal's in it) is not this
    /// user's own: then nothing is trusted and every file is hashed.
    pub fn of(rekeyed_dir: &Path, create: bool) -> Option<Self> {
        let base = cache_home()?;
        Self::under(&base, rekeyed_dir, create)
    }

    fn under(base: &Path, rekeyed_dir: &Path, create: bool) -> Option<Self> {
        let canonical = std::fs::canonicalize(rekeyed_dir).ok()?;
        let key = &sha256_hex(canonical.as_os_str().as_encoded_bytes())[..32];
        if create {
            let _ = std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(base);
        }
        let mut dir = base.to_owned();
        for part in ["nixseal", "renc-stat", key] {
            dir.push(part);
            if create {
                let _ = std::fs::DirBuilder::new().mode(0o700).create(&dir);
            }
            own_dir(&dir)?;
        }
        Some(Self {
            dir,
            scope: canonical,
        })
    }
}

/// `$XDG_CACHE_HOME`, or `$HOME/.cache` (absolute paths only, as the XDG
/// base directory specification has it).
fn cache_home() -> Option<PathBuf> {
    let abs = |v: std::ffi::OsString| Some(PathBuf::from(v)).filter(|p| p.is_absolute());
    std::env::var_os("XDG_CACHE_HOME")
        .and_then(abs)
        .or_else(|| {
            std::env::var_os("HOME")
                .and_then(abs)
                .map(|h| h.join(".cache"))
        })
}

/// `Some` when `dir` is a directory (not a symlink) owned by this user and
/// writable by no one else.
fn own_dir(dir: &Path) -> Option<()> {
    let m = std::fs::symlink_metadata(dir).ok()?;
    (m.is_dir() && m.uid() == rustix::process::geteuid().as_raw() && m.mode() & 0o022 == 0)
        .then_some(())
}

/// The bytes of a record: a regular file (never through a symlink, never a
/// FIFO), owned by this user, writable by no one else, at most [`MAX_RECORD`].
fn read_own(path: &Path) -> Option<Vec<u8>> {
    let flags = rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits() as i32)
        .open(path)
        .ok()?;
    let m = f.metadata().ok()?;
    if !m.is_file()
        || m.uid() != rustix::process::geteuid().as_raw()
        || m.permissions().mode() & 0o022 != 0
        || m.len() > MAX_RECORD
    {
        return None;
    }
    let mut bytes = Vec::with_capacity(m.len() as usize);
    f.take(MAX_RECORD + 1).read_to_end(&mut bytes).ok()?;
    (bytes.len() as u64 <= MAX_RECORD).then_some(bytes)
}

/// Now, in nanoseconds since the epoch (as file times are).
fn now_ns() -> i128 {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    }
}

/// Reads a regular file (following a symlink, as sources are read) and
/// hashes it, with the stat of the very file read (one open, fstat, read).
pub fn hash_file(path: &Path, limit: u64) -> std::io::Result<(Stat, String)> {
    let flags = rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::NOCTTY;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits() as i32)
        .open(path)?;
    let m = f.metadata()?;
    if !m.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "it is {}, not a regular file",
                fsutil::kind_name(m.file_type())
            ),
        ));
    }
    let bytes = fsutil::read_bounded(&mut f, m.len(), limit)?;
    Ok((Stat::of(&m), sha256_hex(&bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn stat(path: &Path) -> Stat {
        Stat::of(&std::fs::symlink_metadata(path).unwrap())
    }

    /// A file made more than RACY_NS ago (its ctime cannot be set back, so
    /// the test records with a clock moved forward instead).
    fn entries(path: &Path) -> BTreeMap<String, (Stat, String)> {
        let mut s = stat(path);
        s.ctime_ns -= 2 * RACY_NS;
        BTreeMap::from([("a".to_owned(), (s, "ab".repeat(32)))])
    }

    fn setup() -> (tempfile::TempDir, RecordDir, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let rekeyed = t.path().join("rekeyed");
        std::fs::create_dir(&rekeyed).unwrap();
        let dir = RecordDir::under(&t.path().join("cache"), &rekeyed, true).unwrap();
        let file = t.path().join("rekeyed/a.age");
        std::fs::write(&file, b"x").unwrap();
        (t, dir, file)
    }

    /// The stat of a file by `statat` is the stat of it by `Metadata`: a
    /// record made by one is trusted by the other, and a change to any
    /// field is seen by both.
    #[test]
    fn raw_stat_is_metadata_stat() {
        let (_t, _dir, file) = setup();
        let raw = rustix::fs::lstat(&file).unwrap();
        assert_eq!(Stat::of_raw(&raw), stat(&file));
        std::fs::write(&file, b"yz").unwrap();
        let raw2 = rustix::fs::lstat(&file).unwrap();
        assert_eq!(Stat::of_raw(&raw2), stat(&file));
        assert_ne!(Stat::of_raw(&raw2), Stat::of_raw(&raw));
    }

    /// Stored and loaded back, an entry is trusted for exactly its stat:
    /// another size, inode, mtime or ctime is not trusted.
    #[test]
    fn trusted_only_when_every_field_matches() {
        let (t, dir, file) = setup();
        let e = entries(&file);
        let (s, _) = e["a"];
        Record::store(Some(&dir), "host-h", &Record::default(), e);
        let r = Record::load(Some(&dir), "host-h");
        assert_eq!(r.trusted("a", &s), Some("ab".repeat(32).as_str()));
        assert_eq!(r.trusted("b", &s), None);
        for change in [
            |s: &mut Stat| s.size += 1,
            |s: &mut Stat| s.ino += 1,
            |s: &mut Stat| s.dev += 1,
            |s: &mut Stat| s.mtime_ns += 1,
            |s: &mut Stat| s.ctime_ns += 1,
        ] {
            let mut other = s;
            change(&mut other);
            assert_eq!(r.trusted("a", &other), None, "{other:?}");
        }
        // A record of another rekeyed directory (copied here) is not trusted.
        let other = RecordDir {
            dir: dir.dir.clone(),
            scope: t.path().join("x"),
        };
        assert_eq!(Record::load(Some(&other), "host-h"), Record::default());
    }

    /// A file changed just now is not recorded (racy); nothing is written
    /// when nothing changed.
    #[test]
    fn racy_entries_are_left_out() {
        let (_t, dir, file) = setup();
        let s = stat(&file);
        let e = BTreeMap::from([("a".to_owned(), (s, "ab".repeat(32)))]);
        Record::store(Some(&dir), "host-h", &Record::default(), e);
        let r = Record::load(Some(&dir), "host-h");
        assert_eq!(r.trusted("a", &s), None);
    }

    /// Records that are corrupt, a symlink, a FIFO, huge, writable by
    /// others or of a repeated name are ignored as a whole.
    #[test]
    fn bad_records_are_ignored() {
        let (_t, dir, file) = setup();
        let e = entries(&file);
        let (s, _) = e["a"];
        Record::store(Some(&dir), "good", &Record::default(), e);
        let good = std::fs::read(dir.dir.join("good")).unwrap();
        let load = |name: &str| Record::load(Some(&dir), name);
        assert!(load("good").trusted("a", &s).is_some());
        let write = |name: &str, bytes: &[u8]| {
            std::fs::write(dir.dir.join(name), bytes).unwrap();
            std::fs::set_permissions(dir.dir.join(name), std::fs::Permissions::from_mode(0o600))
                .unwrap();
        };
        // Corrupt: cut, a bad hash, another version, a name twice.
        write("cut", &good[..good.len() - 10]);
        let text = String::from_utf8(good.clone()).unwrap();
        write(
            "badsha",
            text.replace(&"ab".repeat(32), &"zz".repeat(32)).as_bytes(),
        );
        write("version", text.replace("v1", "v2").as_bytes());
        let line = text.lines().last().unwrap();
        write("twice", format!("{text}{line}\n").as_bytes());
        for name in ["cut", "badsha", "version", "twice", "absent"] {
            assert_eq!(load(name), Record::default(), "{name}");
        }
        // A symlink to a good record.
        symlink(dir.dir.join("good"), dir.dir.join("link")).unwrap();
        assert_eq!(load("link"), Record::default());
        // Writable by others.
        write("open", &good);
        std::fs::set_permissions(dir.dir.join("open"), std::fs::Permissions::from_mode(0o666))
            .unwrap();
        assert_eq!(load("open"), Record::default());
        // A FIFO (never blocks).
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            dir.dir.join("fifo"),
            rustix::fs::Mode::RWXU,
        )
        .unwrap();
        assert_eq!(load("fifo"), Record::default());
        // Huge (sparse): not read.
        let f = std::fs::File::create(dir.dir.join("huge")).unwrap();
        f.set_len(MAX_RECORD + 1).unwrap();
        assert_eq!(load("huge"), Record::default());
        // Another user's record.
        write("foreign", &good);
        rustix::fs::chown(
            dir.dir.join("foreign"),
            Some(rustix::process::Uid::from_raw(65534)),
            None,
        )
        .unwrap();
        assert_eq!(load("foreign"), Record::default());
    }

    /// A record directory that is a symlink, another user's or open to
    /// others is not used at all.
    #[test]
    fn record_directory_must_be_our_own() {
        let t = tempfile::tempdir().unwrap();
        let rekeyed = t.path().join("rekeyed");
        std::fs::create_dir(&rekeyed).unwrap();
        let base = t.path().join("cache");
        let made = RecordDir::under(&base, &rekeyed, true).unwrap();
        assert!(RecordDir::under(&base, &rekeyed, false).is_some());
        std::fs::set_permissions(&made.dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(RecordDir::under(&base, &rekeyed, true).is_none());
        std::fs::set_permissions(&made.dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        rustix::fs::chown(&made.dir, Some(rustix::process::Uid::from_raw(65534)), None).unwrap();
        assert!(RecordDir::under(&base, &rekeyed, true).is_none());
        std::fs::remove_dir(&made.dir).unwrap();
        let elsewhere = t.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        symlink(&elsewhere, &made.dir).unwrap();
        assert!(RecordDir::under(&base, &rekeyed, true).is_none());
        // No cache directory at all: no record.
        assert!(RecordDir::under(&t.path().join("missing"), &rekeyed, false).is_none());
    }
}
