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
//! (`sources`); git's last answer sits beside them (`git`: [`GitAnswer`],
//! in `record/git_answer.rs`), and the fleet stamp of each flake root in
//! `renc-fleet/<key>/fleet` ([`FleetStamp`], in `record/fleet.rs`). It
//! holds sha256s of ciphertexts and stat fields only — nothing derived
//! from a plaintext — and is written atomically, with mode 0600 in
//! directories of mode 0700. A record that is not a regular file
//! owned by this user (a symlink, a FIFO, another user's), that is writable
//! by others, larger than [`MAX_RECORD`], of another version or another
//! directory, or that does not parse, is ignored as a whole: nothing in it is
//! trusted, and it is replaced by a good one.
//!
//! Racy stamps (as git's index has them): a file changed twice within one
//! tick of the file-system clock keeps its ctime, so a file whose ctime is
//! less than [`RACY_NS`] before the moment the record is made is not
//! recorded (the next run hashes it, then records it).

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::common::fsutil::{self, sha256_hex};

mod fleet;
mod git_answer;
pub use fleet::{FleetHost, FleetStamp};
pub use git_answer::{digest_query, query_item, GitAnswer};

/// First line of every record.
const MAGIC: &str = "nixseal renc stat record v2";

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
pub type Hex = [u8; 64];

/// A sha256 in hex as a [`Hex`] (`None` if it is not 64 hex digits).
pub fn hex(sha: &str) -> Option<Hex> {
    let h: Hex = sha.as_bytes().try_into().ok()?;
    h.iter().all(u8::is_ascii_hexdigit).then_some(h)
}

fn hex_str(h: &Hex) -> &str {
    // Only hex digits are ever stored (checked on parse and by `hex`).
    std::str::from_utf8(h).unwrap_or("")
}

/// What a record says of one file: its stat, the sha256 of its content
/// and, for a rekeyed output, the sha256 of the master file it was made
/// from (the one its host's cache names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    /// The file's stat when it was hashed.
    pub stat: Stat,
    /// sha256 (hex) of its content.
    pub sha: Hex,
    /// For an output: sha256 (hex) of its master file.
    pub source: Option<Hex>,
}

/// One entry of a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The file's name (a secret name; a flake-relative path for sources).
    pub name: Box<str>,
    /// What was verified.
    pub verified: Verified,
}

/// What a host record says of the host as a whole: when its directory and
/// its cache still have exactly these stats, the directory lists the same
/// entries (nothing nixseal would remove), the cache says what it said,
/// and the host key is this one, then the host is current if its secrets,
/// their master files' hashes and their outputs' stats give this digest
/// ([`digest`]) — checked with one `statat` per output, without reading
/// the cache or the record's entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostStamp {
    /// The host directory's stat, taken before it was listed.
    pub dir: Stat,
    /// The cache file's stat, taken before it was read.
    pub cache: Stat,
    /// [`digest`] of the record's entries.
    pub digest: Hex,
    /// The host key every entry of the cache named (`ssh-ed25519 <base64>`).
    pub recipient: String,
}

/// sha256 (hex) over each output's secret name, `lstat` fields and master
/// file hash, in name order: what a [`HostStamp`] vouches for.
pub fn digest<'a>(items: impl Iterator<Item = (&'a str, Stat, &'a [u8])>) -> Hex {
    use sha2::Digest;
    // Gathered, then hashed in one call (see digest_query).
    let mut all = Vec::with_capacity(1 << 14);
    for (name, s, source) in items {
        all.extend_from_slice(name.as_bytes());
        all.push(0);
        for field in [s.dev, s.ino, s.size] {
            all.extend_from_slice(&field.to_le_bytes());
        }
        for field in [s.mtime_ns, s.ctime_ns] {
            all.extend_from_slice(&field.to_le_bytes());
        }
        all.extend_from_slice(source);
    }
    hex_of(&sha2::Sha256::digest(&all))
}

impl HostStamp {
    /// Whether the stamp holds for the host directory `dir_fd` and the
    /// host's `secrets` (name and master file hash, in name order): the
    /// directory and its cache have the stamp's stats, and the outputs'
    /// `lstat`s give its digest. One `fstat` and one `statat` per file; no
    /// file is read.
    pub fn holds<'a>(
        &self,
        dir_fd: &rustix::fd::OwnedFd,
        secrets: impl Iterator<Item = (&'a str, &'a [u8])>,
    ) -> bool {
        let dir_ok = rustix::fs::fstat(dir_fd).is_ok_and(|st| {
            rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory
                && Stat::of_raw(&st) == self.dir
        });
        let cache = crate::contract::cache::CACHE_FILE;
        if !dir_ok || regular_at(dir_fd, cache).ok().flatten() != Some(self.cache) {
            return false;
        }
        let mut items = Vec::with_capacity(secrets.size_hint().0);
        let mut name = String::new();
        for (secret, source) in secrets {
            name.clear();
            name.push_str(secret);
            name.push_str(crate::contract::layout::OUTPUT_SUFFIX);
            let Ok(Some(stat)) = regular_at(dir_fd, &name) else {
                return false;
            };
            items.push((secret, stat, source));
        }
        digest(items.into_iter()) == self.digest
    }
}

/// A directory opened as a handle for `statat` (never through a symlink);
/// `None` if it cannot be.
pub fn open_dir(dir: &Path) -> Option<rustix::fd::OwnedFd> {
    use rustix::fs::{Mode, OFlags};
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    rustix::fs::open(dir, flags, Mode::empty()).ok()
}

/// The `lstat` of `name` in `dir_fd` (`None`: not a regular file).
pub fn regular_at(dir_fd: &rustix::fd::OwnedFd, name: &str) -> std::io::Result<Option<Stat>> {
    let st = rustix::fs::statat(dir_fd, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(
        (rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::RegularFile)
            .then(|| Stat::of_raw(&st)),
    )
}

/// Whether `s` is old enough to key a record to: its ctime is more than
/// [`RACY_NS`] before now (see the module doc on racy stamps).
pub fn settled(s: &Stat) -> bool {
    s.ctime_ns < now_ns() - RACY_NS
}

/// What one record vouches for. The entries, sorted by name, are parsed
/// when first asked for: a host its stamp vouches for needs none.
#[derive(Debug, Default)]
pub struct Record {
    host: Option<HostStamp>,
    /// The record as read, its entry lines from `body` on.
    text: String,
    body: usize,
    entries: std::sync::OnceLock<Vec<Entry>>,
    /// Only its start was read (`load_head`): the stamp, no entry.
    partial: bool,
}

impl PartialEq for Record {
    fn eq(&self, other: &Self) -> bool {
        self.host == other.host && self.entries() == other.entries()
    }
}

impl Record {
    fn find(&self, name: &str) -> Option<&Verified> {
        let entries = self.entries();
        entries
            .binary_search_by(|e| (*e.name).cmp(name))
            .ok()
            .map(|i| &entries[i].verified)
    }

    /// The recorded sha256 of `name`, if its stat is exactly `stat`.
    pub fn trusted(&self, name: &str, stat: &Stat) -> Option<&str> {
        match self.find(name) {
            Some(v) if v.stat == *stat => Some(hex_str(&v.sha)),
            _ => None,
        }
    }

    /// The entry of `name` as it is recorded.
    pub fn entry(&self, name: &str) -> Option<Verified> {
        self.find(name).copied()
    }

    /// Every entry, by name (none when they do not parse: a record nixseal
    /// did not write vouches for nothing).
    pub fn entries(&self) -> &[Entry] {
        self.entries
            .get_or_init(|| parse_entries(&self.text[self.body..]).unwrap_or_default())
    }

    /// What it says of its host as a whole, if anything.
    pub fn host_stamp(&self) -> Option<&HostStamp> {
        self.host.as_ref()
    }

    /// How many files it vouches for.
    pub fn vouches_for(&self) -> usize {
        self.entries().len()
    }

    /// Copies into `into` the entries whose name `outside` accepts and that
    /// `into` does not hold: a scoped run keeps what it did not look at
    /// (each entry is still believed only for the exact stat it records).
    pub fn carry_into(
        &self,
        into: &mut BTreeMap<String, Verified>,
        outside: impl Fn(&str) -> bool,
    ) {
        for e in self.entries() {
            if outside(&e.name) && !into.contains_key(&*e.name) {
                into.insert(e.name.to_string(), e.verified);
            }
        }
    }

    /// Reads the record `file`. Empty on any problem.
    pub fn load(dir: Option<&RecordDir>, file: &str) -> Self {
        dir.and_then(|d| Self::parse(read_own(d, file, MAX_RECORD)?.0, &d.scope))
            .unwrap_or_default()
    }

    /// Reads the start of the record `file`, enough for its host stamp: a
    /// host the stamp vouches for needs nothing else (a record of 100
    /// entries is 20 KB). A record longer than that is [partial](Record::is_partial):
    /// its stamp only, no entry (it vouches for no single file);
    /// [`Record::load`] reads it whole.
    pub fn load_head(dir: Option<&RecordDir>, file: &str) -> Self {
        dir.and_then(|d| {
            // Magic, scope (its length known) and host lines: well under
            // `HEAD` past the scope.
            let head = HEAD + d.scope.as_os_str().len() as u64;
            let (bytes, whole) = read_own(d, file, head)?;
            match whole {
                true => Self::parse(bytes, &d.scope),
                false => {
                    // Cut at the last whole line (a line cut short is not parsed).
                    let end = bytes.iter().rposition(|b| *b == b'\n')? + 1;
                    let mut bytes = bytes;
                    bytes.truncate(end);
                    let mut head = Self::parse(bytes, &d.scope)?;
                    head.text = String::new();
                    head.body = 0;
                    head.partial = true;
                    Some(head)
                }
            }
        })
        .unwrap_or_default()
    }

    /// Read by [`Record::load_head`] from a longer record: its host stamp
    /// only.
    pub fn is_partial(&self) -> bool {
        self.partial
    }

    fn parse(bytes: Vec<u8>, scope: &Path) -> Option<Self> {
        let text = String::from_utf8(bytes).ok()?;
        let (magic, rest) = text.split_once('\n')?;
        let (scope_line, mut rest) = rest.split_once('\n')?;
        if magic != MAGIC || scope_line.strip_prefix("scope ") != Some(scope.to_str()?) {
            return None;
        }
        // `host DIR-STAT CACHE-STAT DIGEST RECIPIENT`, before the entries.
        let mut host = None;
        if let Some(h) = rest.strip_prefix("host ") {
            let (line, after) = h.split_once('\n')?;
            let mut f = line.splitn(12, ' ');
            let dir = parse_stat(&mut f)?;
            let cache = parse_stat(&mut f)?;
            let digest = hex(f.next()?)?;
            let recipient = f.next()?;
            if !recipient.starts_with("ssh-ed25519 ") {
                return None;
            }
            host = Some(HostStamp {
                dir,
                cache,
                digest,
                recipient: recipient.to_owned(),
            });
            rest = after;
        }
        let body = text.len() - rest.len();
        Some(Self {
            host,
            text,
            body,
            entries: std::sync::OnceLock::new(),
            partial: false,
        })
    }

    /// Writes `entries` (and `host`) as the record `file` (atomically),
    /// unless that is what `old` already holds. Racy entries (and a racy
    /// host stamp) are left out; a stamp is written only when its digest
    /// is that of the entries written.
    pub fn store(
        dir: Option<&RecordDir>,
        file: &str,
        old: &Record,
        entries: BTreeMap<String, Verified>,
        host: Option<HostStamp>,
    ) {
        let Some(dir) = dir else { return };
        let Some(scope) = dir.scope.to_str().filter(|s| !s.contains('\n')) else {
            return;
        };
        let entries: Vec<Entry> = entries
            .into_iter()
            .filter(|(name, v)| !name.contains('\n') && !name.is_empty() && settled(&v.stat))
            .map(|(name, verified)| Entry {
                name: name.into(),
                verified,
            })
            .collect();
        let host = host.filter(|h| {
            settled(&h.dir)
                && settled(&h.cache)
                && !h.recipient.contains('\n')
                && entries.iter().all(|e| e.verified.source.is_some())
                && h.digest
                    == digest(entries.iter().map(|e| {
                        let v = &e.verified;
                        let source = v.source.as_ref().map_or(&[][..], |x| &x[..]);
                        (&*e.name, v.stat, source)
                    }))
        });
        let new = Record {
            host,
            text: String::new(),
            body: 0,
            entries: entries.into(),
            partial: false,
        };
        if new == *old {
            return;
        }
        let mut out = String::with_capacity(64 + new.entries().len() * 200);
        use std::fmt::Write;
        let _ = writeln!(out, "{MAGIC}\nscope {scope}");
        if let Some(h) = &new.host {
            let _ = writeln!(
                out,
                "host {} {} {} {}",
                stat_fields(&h.dir),
                stat_fields(&h.cache),
                hex_str(&h.digest),
                h.recipient
            );
        }
        for e in new.entries() {
            let v = &e.verified;
            let source = v.source.as_ref().map_or("-", hex_str);
            let _ = writeln!(
                out,
                "{} {} {source} {}",
                stat_fields(&v.stat),
                hex_str(&v.sha),
                e.name
            );
        }
        // A record that cannot be written costs the next run time, nothing else.
        let _ = fsutil::atomic_write(&dir.dir, file, out.as_bytes(), 0o600);
    }
}

/// The entry lines of a record (`None`: not what nixseal writes).
fn parse_entries(body: &str) -> Option<Vec<Entry>> {
    let mut entries: Vec<Entry> = Vec::new();
    for line in body.split_terminator('\n') {
        let mut f = line.splitn(8, ' ');
        let stat = parse_stat(&mut f)?;
        let sha = hex(f.next()?)?;
        let source = match f.next()? {
            "-" => None,
            s => Some(hex(s)?),
        };
        let name = f.next()?;
        // Strictly sorted: a name twice, or out of order, is not a record
        // nixseal wrote.
        if entries.last().is_some_and(|l| *l.name >= *name) {
            return None;
        }
        entries.push(Entry {
            name: name.into(),
            verified: Verified { stat, sha, source },
        });
    }
    Some(entries)
}

fn stat_fields(s: &Stat) -> String {
    format!(
        "{} {} {} {} {}",
        s.dev, s.ino, s.size, s.mtime_ns, s.ctime_ns
    )
}

/// Five space-separated stat fields (dev ino size mtime ctime).
fn parse_stat<'a>(f: &mut impl Iterator<Item = &'a str>) -> Option<Stat> {
    let mut u = || f.next()?.parse::<u64>().ok();
    let (dev, ino, size) = (u()?, u()?, u()?);
    let mut ns = || f.next()?.parse::<i64>().ok().map(i128::from);
    Some(Stat {
        dev,
        ino,
        size,
        mtime_ns: ns()?,
        ctime_ns: ns()?,
    })
}

fn hex_of(sha256: &[u8]) -> Hex {
    let mut out = [0u8; 64];
    // 32 bytes are exactly 64 hex digits: encode_to_slice cannot fail.
    let _ = hex::encode_to_slice(sha256, &mut out);
    out
}

/// The record file of a host.
pub fn host_file(host: &str) -> String {
    format!("host-{host}")
}

/// What [`Record::load_head`] reads past the scope line: the magic and the
/// host line (two stats, a digest and a key: about 300 bytes).
const HEAD: u64 = 1 << 10;

/// The record file of the master files.
pub const SOURCES_FILE: &str = "sources";

/// The directory holding the records of one rekeyed directory, checked to
/// be this user's own (mode 0700, no symlink) before anything is read from
/// or written to it.
#[derive(Debug, Clone)]
pub struct RecordDir {
    dir: PathBuf,
    /// The directory, opened once it was checked (records are opened by
    /// their name in it: one path component, not the whole path, per host).
    fd: std::sync::Arc<rustix::fd::OwnedFd>,
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

    /// The directory of the fleet stamp of the flake at `root`
    /// ([`FleetStamp`]): `renc-fleet/<key>` beside `renc-stat` (read
    /// before the profile, which names the rekeyed directory, is).
    pub fn fleet_of(root: &Path, create: bool) -> Option<Self> {
        let base = cache_home()?;
        Self::kept_in(&base, "renc-fleet", root, create)
    }

    fn under(base: &Path, rekeyed_dir: &Path, create: bool) -> Option<Self> {
        Self::kept_in(base, "renc-stat", rekeyed_dir, create)
    }

    /// `base/nixseal/<kind>/<key>`, `<key>` naming `scope`'s canonical path.
    fn kept_in(base: &Path, kind: &str, scope: &Path, create: bool) -> Option<Self> {
        let canonical = std::fs::canonicalize(scope).ok()?;
        let key = &sha256_hex(canonical.as_os_str().as_encoded_bytes())[..32];
        if create {
            let _ = std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(base);
        }
        let mut dir = base.to_owned();
        for part in ["nixseal", kind, key] {
            dir.push(part);
            if create {
                let _ = std::fs::DirBuilder::new().mode(0o700).create(&dir);
            }
            own_dir(&dir)?;
        }
        use rustix::fs::{Mode, OFlags};
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::open(&dir, flags, Mode::empty()).ok()?;
        // The directory opened is the one checked: still this user's own.
        let st = rustix::fs::fstat(&fd).ok()?;
        own(st.st_uid, st.st_mode).then_some(())?;
        Some(Self {
            dir,
            fd: std::sync::Arc::new(fd),
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
    (m.is_dir() && own(m.uid(), m.mode())).then_some(())
}

/// Whether a file of owner `uid` and mode `mode` is this user's own and
/// writable by no one else.
fn own(uid: u32, mode: u32) -> bool {
    uid == euid() && mode & 0o022 == 0
}

/// This process's effective uid (it never changes it: asked once).
fn euid() -> u32 {
    static EUID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *EUID.get_or_init(|| rustix::process::geteuid().as_raw())
}

/// The bytes of record `file` in `dir` — at most `max` of them, and
/// whether that is the whole file: a regular file (never through a symlink,
/// never a FIFO), owned by this user, writable by no one else, at most
/// [`MAX_RECORD`]. (Records are replaced by a rename, never written in
/// place: the size fstat gives is the file's, read in one call.)
fn read_own(dir: &RecordDir, file: &str, max: u64) -> Option<(Vec<u8>, bool)> {
    use rustix::fs::{Mode, OFlags};
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let fd = rustix::fs::openat(&*dir.fd, file, flags, Mode::empty()).ok()?;
    let st = rustix::fs::fstat(&fd).ok()?;
    let len = u64::try_from(st.st_size).ok()?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile
        || !own(st.st_uid, st.st_mode)
        || len > MAX_RECORD
    {
        return None;
    }
    let mut bytes = vec![0u8; len.min(max) as usize];
    std::fs::File::from(fd).read_exact(&mut bytes).ok()?;
    Some((bytes, len <= max))
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
    use std::os::unix::fs::{symlink, PermissionsExt};

    fn stat(path: &Path) -> Stat {
        Stat::of(&std::fs::symlink_metadata(path).unwrap())
    }

    /// A file made more than RACY_NS ago (its ctime cannot be set back, so
    /// the test records with a clock moved forward instead).
    fn entries(path: &Path) -> BTreeMap<String, Verified> {
        let mut s = stat(path);
        s.ctime_ns -= 2 * RACY_NS;
        BTreeMap::from([("a".to_owned(), verified(s))])
    }

    fn verified(stat: Stat) -> Verified {
        Verified {
            stat,
            sha: hex(&"ab".repeat(32)).unwrap(),
            source: hex(&"cd".repeat(32)),
        }
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
        let s = e["a"].stat;
        Record::store(Some(&dir), "host-h", &Record::default(), e, None);
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
            scope: t.path().join("x"),
            ..dir.clone()
        };
        assert_eq!(Record::load(Some(&other), "host-h"), Record::default());
    }

    /// A file changed just now is not recorded (racy); nothing is written
    /// when nothing changed.
    #[test]
    fn racy_entries_are_left_out() {
        let (_t, dir, file) = setup();
        let s = stat(&file);
        let e = BTreeMap::from([("a".to_owned(), verified(s))]);
        Record::store(Some(&dir), "host-h", &Record::default(), e, None);
        let r = Record::load(Some(&dir), "host-h");
        assert_eq!(r.trusted("a", &s), None);
    }

    /// Records that are corrupt, a symlink, a FIFO, huge, writable by
    /// others or of a repeated name are ignored as a whole.
    #[test]
    fn bad_records_are_ignored() {
        let (_t, dir, file) = setup();
        let e = entries(&file);
        let s = e["a"].stat;
        Record::store(Some(&dir), "good", &Record::default(), e, None);
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
        write("version", text.replace(" v2", " v1").as_bytes());
        let line = text.lines().last().unwrap();
        write("twice", format!("{text}{line}\n").as_bytes());
        // Out of order.
        let mut sorted = text.clone();
        sorted.push_str(&line.replace(" a", " 0"));
        sorted.push('\n');
        write("unsorted", sorted.as_bytes());
        for name in ["cut", "badsha", "version", "twice", "unsorted", "absent"] {
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

    /// The entries of `file` and a settled stamp whose digest is theirs.
    fn stamped(file: &Path) -> (BTreeMap<String, Verified>, HostStamp) {
        let e = entries(file);
        let v = e["a"];
        let mut old = stat(file);
        old.ctime_ns -= 2 * RACY_NS;
        let stamp = HostStamp {
            dir: old,
            cache: old,
            digest: digest([("a", v.stat, &v.source.unwrap()[..])].into_iter()),
            recipient: "ssh-ed25519 AAAA".into(),
        };
        (e, stamp)
    }

    /// A host stamp is written only with the entries its digest is of, and
    /// when every stat in it has settled; it is read back as written.
    #[test]
    fn a_host_stamp_is_kept_only_with_its_entries() {
        let (_t, dir, file) = setup();
        let (e, stamp) = stamped(&file);
        let v = e["a"];
        let src = &v.source.unwrap()[..];
        Record::store(
            Some(&dir),
            "h",
            &Record::default(),
            e.clone(),
            Some(stamp.clone()),
        );
        let r = Record::load(Some(&dir), "h");
        assert_eq!(r.host_stamp(), Some(&stamp));
        assert_eq!(r.entry("a"), Some(v));
        // A digest of other entries: no stamp.
        let wrong = HostStamp {
            digest: digest([("b", v.stat, src)].into_iter()),
            ..stamp.clone()
        };
        Record::store(Some(&dir), "h2", &Record::default(), e.clone(), Some(wrong));
        assert_eq!(Record::load(Some(&dir), "h2").host_stamp(), None);
        // A directory changed just now: no stamp (the entries stay).
        let racy = HostStamp {
            dir: stat(&file),
            ..stamp.clone()
        };
        Record::store(Some(&dir), "h3", &Record::default(), e, Some(racy));
        let r = Record::load(Some(&dir), "h3");
        assert_eq!((r.host_stamp(), r.vouches_for()), (None, 1));
        // The digest sees every field and the order.
        let mut moved = v.stat;
        moved.ctime_ns += 1;
        assert_ne!(digest([("a", moved, src)].into_iter()), stamp.digest);
        assert_ne!(
            digest([("a", v.stat, src), ("b", v.stat, src)].into_iter()),
            digest([("b", v.stat, src), ("a", v.stat, src)].into_iter())
        );
    }

    /// The head of a long record is its stamp and nothing else: no entry
    /// of a record read in part is believed; read whole, all are. A short
    /// record's head is the whole record.
    #[test]
    fn the_head_of_a_record_vouches_for_its_host_only() {
        let (_t, dir, file) = setup();
        let (one, _) = stamped(&file);
        let v = one["a"];
        let src = v.source.unwrap();
        let many: BTreeMap<String, Verified> = (0..200).map(|i| (format!("s{i:04}"), v)).collect();
        let (_, stamp) = stamped(&file);
        let stamp = HostStamp {
            digest: digest(many.keys().map(|n| (n.as_str(), v.stat, &src[..]))),
            ..stamp
        };
        Record::store(
            Some(&dir),
            "h",
            &Record::default(),
            many,
            Some(stamp.clone()),
        );
        let head = HEAD + dir.scope.as_os_str().len() as u64;
        assert!(std::fs::metadata(dir.dir.join("h")).unwrap().len() > head);
        let head = Record::load_head(Some(&dir), "h");
        assert!(head.is_partial());
        assert_eq!(head.host_stamp(), Some(&stamp));
        assert_eq!(head.vouches_for(), 0);
        assert_eq!(head.trusted("s0000", &v.stat), None);
        let whole = Record::load(Some(&dir), "h");
        assert!(!whole.is_partial());
        assert_eq!(
            (whole.host_stamp(), whole.vouches_for()),
            (Some(&stamp), 200)
        );
        assert!(whole.trusted("s0199", &v.stat).is_some());
        // Short: read whole at once.
        let (e, stamp) = stamped(&file);
        Record::store(Some(&dir), "s", &Record::default(), e, Some(stamp));
        let head = Record::load_head(Some(&dir), "s");
        assert!(!head.is_partial());
        assert_eq!(head, Record::load(Some(&dir), "s"));
        assert!(head.trusted("a", &v.stat).is_some());
        // No record, or not a record: nothing.
        assert_eq!(Record::load_head(Some(&dir), "absent"), Record::default());
    }

    /// Mutated records (bytes flipped, cut, lines repeated or swapped: a
    /// seeded run) never panic: each is either parsed or ignored, and
    /// whatever parses answers every question without panicking.
    #[test]
    fn mutated_records_never_panic() {
        let (_t, dir, file) = setup();
        let (e, stamp) = stamped(&file);
        let v = e["a"];
        Record::store(Some(&dir), "h", &Record::default(), e, Some(stamp));
        let good = std::fs::read(dir.dir.join("h")).unwrap();
        assert!(Record::parse(good.clone(), &dir.scope).is_some());
        let mut next = crate::common::test_rng::xorshift(0x9e37_79b9_7f4a_7c15u64);
        for _ in 0..5000 {
            let mut b = good.clone();
            for _ in 0..1 + next() % 4 {
                if b.is_empty() {
                    break;
                }
                let i = (next() as usize) % b.len();
                match next() % 5 {
                    0 => b[i] = next() as u8,
                    1 => b.truncate(i),
                    2 => b.insert(i, b" \n-0123456789abcdef"[(next() % 19) as usize]),
                    3 => {
                        let line: Vec<u8> = b[i..]
                            .iter()
                            .take_while(|c| **c != b'\n')
                            .copied()
                            .collect();
                        b.extend_from_slice(&line);
                        b.push(b'\n');
                    }
                    _ => {
                        b.remove(i);
                    }
                }
            }
            if let Some(r) = Record::parse(b, &dir.scope) {
                let _ = (
                    r.host_stamp(),
                    r.vouches_for(),
                    r.trusted("a", &v.stat),
                    r.entry("a"),
                );
                let mut into = BTreeMap::new();
                r.carry_into(&mut into, |_| true);
            }
        }
    }

    /// git's answer is given back only for the same question while the
    /// index has the same path and stat.
    #[test]
    fn a_git_answer_is_only_for_the_same_index_and_question() {
        let (t, dir, file) = setup();
        let index = t.path().join("index");
        std::fs::write(&index, b"DIRC").unwrap();
        let mut s = stat(&index);
        s.ctime_ns -= 2 * RACY_NS;
        let question = |items: &[&[u8]]| {
            let mut q = Vec::new();
            for i in items {
                query_item(&mut q, i);
            }
            q
        };
        let q = digest_query([&question(&[b"a"])[..]]);
        let answer = GitAnswer {
            index: index.clone(),
            stat: s,
            query: q,
            untracked: vec![PathBuf::from("rekeyed/a.age")],
        };
        answer.store(&dir);
        assert_eq!(
            GitAnswer::load(&dir, &index, &s, &q),
            Some(vec![PathBuf::from("rekeyed/a.age")])
        );
        let other_q = digest_query([&question(&[b"a", b"b"])[..]]);
        assert_ne!(digest_query([&question(&[b"ab"])[..]]), other_q);
        // Parts are one question, however it was split.
        assert_eq!(
            digest_query([&question(&[b"a"])[..], &question(&[b"b"])[..]]),
            other_q
        );
        assert_eq!(GitAnswer::load(&dir, &index, &s, &other_q), None);
        let mut moved = s;
        moved.mtime_ns += 1;
        assert_eq!(GitAnswer::load(&dir, &index, &moved, &q), None);
        assert_eq!(GitAnswer::load(&dir, &file, &s, &q), None);
        // An index changed just now keys nothing.
        assert_eq!(GitAnswer::index_stat(&index), None);
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
