//! NAR serialisation and Nix store path computation.
//!
//! The NixOS module imports each rekeyed file with
//! `builtins.path { path = ...; name = "<host>-<secret>.age"; }`. This module computes,
//! without running Nix, the store path such an import gets, so that the operator side can
//! name it (for example in status output) and tests can check it.
//!
//! The computation, as Nix does it for a path added with "recursive" (NAR) ingestion and
//! SHA-256, which is what `builtins.path`, `nix store add-path` and `nix-store --add` use:
//!
//! 1. serialise the file or tree as a NAR (Nix ARchive, see [`write_nar`]);
//! 2. `h = sha256(NAR)` ([`nar_sha256`]);
//! 3. fingerprint `source:sha256:<hex h>:/nix/store:<name>`;
//! 4. sha256 of the fingerprint, xor-folded to 20 bytes;
//! 5. Nix base32 of those 20 bytes (32 characters) gives `/nix/store/<hash>-<name>`.
//!
//! The crate `nix-compat` in the Rust crate registry is an empty placeholder, so the few
//! functions needed live here; `crates/nixseal/tests/store_path_nix.rs` checks them
//! against a real `nix`.

use std::fmt;
use std::fs::{self, Metadata};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::{prelude::BASE64_STANDARD, Engine};
use sha2::{Digest, Sha256};

/// The store directory all computed store paths live in.
pub const STORE_DIR: &str = "/nix/store";

/// The longest store path name Nix accepts, in bytes.
pub const MAX_NAME_LEN: usize = 211;

/// Nix's base32 alphabet: digits and lowercase letters without `e`, `o`, `u` and `t`.
const NIX_BASE32_ALPHABET: &[u8; 32] = b"0123456789abcdfghijklmnpqrsvwxyz";

/// Magic string every NAR starts with.
const NAR_MAGIC: &[u8] = b"nix-archive-1";

/// Why a NAR could not be produced.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NarError {
    /// Reading a file, directory or symlink failed.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file, directory or symlink that could not be read.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: io::Error,
    },
    /// The path is a socket, FIFO or device node, which a NAR cannot hold.
    #[error(
        "{path} is a {kind}, which Nix cannot store; only regular files, directories and \
         symlinks can be added to the Nix store"
    )]
    UnsupportedFileType {
        /// The offending path.
        path: PathBuf,
        /// A human name of its type, e.g. "FIFO".
        kind: &'static str,
    },
    /// A regular file changed size while it was being serialised.
    #[error(
        "{path} changed while it was being read (expected {expected} bytes, read {actual}); \
         retry when nothing is writing to it"
    )]
    FileChanged {
        /// The file that changed.
        path: PathBuf,
        /// Its size when the serialisation started.
        expected: u64,
        /// How many bytes could be read.
        actual: u64,
    },
    /// A regular file was replaced by another file while it was being serialised.
    #[error("{path} was replaced while it was being read; retry when nothing is writing to it")]
    Replaced {
        /// The path whose file was replaced.
        path: PathBuf,
    },
    /// Writing the NAR to its destination failed.
    #[error("cannot write the NAR of {path}: {source}")]
    Write {
        /// The path being serialised.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: io::Error,
    },
}

/// Why a string is not a valid Nix store path name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreNameError {
    /// The name is empty.
    #[error("store path name is empty; give the path a non-empty name")]
    Empty,
    /// The name is longer than [`MAX_NAME_LEN`] bytes.
    #[error(
        "store path name {name:?} is {len} bytes long; Nix allows at most {max}, use a \
         shorter host or secret name",
        max = MAX_NAME_LEN
    )]
    TooLong {
        /// The rejected name.
        name: String,
        /// Its length in bytes.
        len: usize,
    },
    /// The name starts with `.`, which some Nix versions reject.
    #[error(
        "store path name {name:?} starts with '.', which some Nix versions reject; \
         rename it so that it starts with a letter, digit or one of + - _ ? ="
    )]
    LeadingPeriod {
        /// The rejected name.
        name: String,
    },
    /// The name holds a character outside `[A-Za-z0-9+-._?=]`.
    #[error(
        "store path name {name:?} contains {character:?} at byte {position}; Nix allows only \
         ASCII letters, digits and + - . _ ? ="
    )]
    InvalidCharacter {
        /// The rejected name.
        name: String,
        /// The first offending character.
        character: char,
        /// Its byte offset in `name`.
        position: usize,
    },
}

/// Why the store path of a file or tree could not be computed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorePathError {
    /// The name the path would get in the store is not valid.
    #[error("cannot compute the store path of {path}: {source}")]
    InvalidName {
        /// The path that was to be added.
        path: PathBuf,
        /// What is wrong with the name.
        #[source]
        source: StoreNameError,
    },
    /// The path has no final component to derive a name from (e.g. `/` or `..`).
    #[error("cannot derive a store path name from {path}; give an explicit name")]
    NoName {
        /// The path that was to be added.
        path: PathBuf,
    },
    /// Serialising the path as a NAR failed.
    #[error("cannot compute the store path of {path}: {source}")]
    Nar {
        /// The path that was to be added.
        path: PathBuf,
        /// The serialisation error (it names the exact file that failed).
        #[source]
        source: NarError,
    },
}

/// A SHA-256 digest of a NAR serialisation, as Nix records it for a store path.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct NarHash([u8; 32]);

impl NarHash {
    /// Wraps a raw SHA-256 digest of a NAR.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        NarHash(bytes)
    }

    /// The raw 32 digest bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hexadecimal, as used in store path fingerprints.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The SRI form `sha256-<base64>`, as `nix hash path` prints it.
    pub fn to_sri(&self) -> String {
        format!("sha256-{}", BASE64_STANDARD.encode(self.0))
    }

    /// Nix's base32 form (52 characters), as `nix hash path --base32` prints it.
    pub fn to_nix_base32(&self) -> String {
        nix_base32_encode(&self.0)
    }
}

impl fmt::Debug for NarHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NarHash({})", self.to_sri())
    }
}

impl fmt::Display for NarHash {
    /// Displays the SRI form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_sri())
    }
}

/// A Nix store path: a 20-byte digest and a validated name, under [`STORE_DIR`].
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct StorePath {
    digest: [u8; 20],
    name: String,
}

impl StorePath {
    /// The store path of a source (NAR-ingested, SHA-256) store object with the given NAR
    /// hash, name and no references: what `builtins.path`, `nix store add-path --name`
    /// and `nix-store --add` give for that content.
    pub fn source(nar_hash: &NarHash, name: &str) -> Result<Self, StoreNameError> {
        validate_store_name(name)?;
        let fingerprint = format!("source:sha256:{}:{STORE_DIR}:{name}", nar_hash.to_hex());
        let full: [u8; 32] = Sha256::digest(fingerprint.as_bytes()).into();
        Ok(StorePath {
            digest: compress_hash(&full),
            name: name.to_owned(),
        })
    }

    /// The 20-byte digest.
    pub fn digest(&self) -> &[u8; 20] {
        &self.digest
    }

    /// The 32-character Nix base32 hash part (the `<hash>` in `/nix/store/<hash>-<name>`).
    pub fn hash_part(&self) -> String {
        nix_base32_encode(&self.digest)
    }

    /// The name part.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The full path, e.g. `/nix/store/<hash>-<name>`.
    pub fn to_path_buf(&self) -> PathBuf {
        PathBuf::from(self.to_string())
    }
}

impl fmt::Display for StorePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{STORE_DIR}/{}-{}", self.hash_part(), self.name)
    }
}

impl fmt::Debug for StorePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StorePath({self})")
    }
}

/// Checks that `name` is a store path name every Nix version accepts: 1 to
/// [`MAX_NAME_LEN`] bytes of `[A-Za-z0-9+-._?=]`, not starting with `.`.
///
/// Nix 2.4 to 2.19 accepted a leading `.` by accident, some versions rejected it and
/// newer ones accept most such names again; rejecting it keeps names portable.
pub fn validate_store_name(name: &str) -> Result<(), StoreNameError> {
    if name.is_empty() {
        return Err(StoreNameError::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(StoreNameError::TooLong {
            name: name.to_owned(),
            len: name.len(),
        });
    }
    if let Some((position, character)) = name
        .char_indices()
        .find(|&(_, c)| !(c.is_ascii_alphanumeric() || "+-._?=".contains(c)))
    {
        return Err(StoreNameError::InvalidCharacter {
            name: name.to_owned(),
            character,
            position,
        });
    }
    if name.starts_with('.') {
        return Err(StoreNameError::LeadingPeriod {
            name: name.to_owned(),
        });
    }
    Ok(())
}

/// Writes the NAR serialisation of `path` (a regular file, directory or symlink; a
/// symlink is stored as a symlink, never followed) to `out`.
///
/// Regular file contents are streamed, not held in memory. Directory entries are
/// written sorted by the bytes of their names, and a regular file is marked executable
/// when its owner-execute bit is set, both as Nix does.
pub fn write_nar<W: Write>(path: &Path, out: &mut W) -> Result<(), NarError> {
    let mut writer = NarWriter {
        out,
        root: path,
        filter: None,
    };
    writer.bytes(NAR_MAGIC)?;
    writer.node(path)
}

/// Decides which entries of a tree a NAR holds: called with each entry's path
/// relative to the root and whether it is a directory (not following symlinks).
pub type NarFilter<'a> = &'a (dyn Fn(&Path, bool) -> bool + Sync);

/// The SHA-256 of the NAR of `path` holding only the entries `include` accepts
/// (a refused directory is left out with everything below it), as Nix
/// serialises a filtered source such as a git flake's tracked files.
pub fn nar_sha256_filtered(path: &Path, include: NarFilter<'_>) -> Result<NarHash, NarError> {
    let mut hasher = HashWriter(Sha256::new());
    let mut writer = NarWriter {
        out: &mut hasher,
        root: path,
        filter: Some(include),
    };
    writer.bytes(NAR_MAGIC)?;
    writer.node(path)?;
    Ok(NarHash(hasher.0.finalize().into()))
}

/// The SHA-256 of the NAR serialisation of `path`, what `nix hash path` prints.
pub fn nar_sha256(path: &Path) -> Result<NarHash, NarError> {
    let mut hasher = HashWriter(Sha256::new());
    write_nar(path, &mut hasher)?;
    Ok(NarHash(hasher.0.finalize().into()))
}

/// The store path `path` gets when added to the store as source under `name`, as
/// `builtins.path { inherit path name; }` or `nix store add-path --name NAME PATH` do.
pub fn source_store_path(path: &Path, name: &str) -> Result<StorePath, StorePathError> {
    // Validate the name first: it is cheap and needs no I/O.
    validate_store_name(name).map_err(|source| StorePathError::InvalidName {
        path: path.to_owned(),
        source,
    })?;
    let hash = nar_sha256(path).map_err(|source| StorePathError::Nar {
        path: path.to_owned(),
        source,
    })?;
    StorePath::source(&hash, name).map_err(|source| StorePathError::InvalidName {
        path: path.to_owned(),
        source,
    })
}

/// The store path `nix-store --add PATH` gives: the name is the final component of
/// `path`.
pub fn added_store_path(path: &Path) -> Result<StorePath, StorePathError> {
    let name = path.file_name().ok_or_else(|| StorePathError::NoName {
        path: path.to_owned(),
    })?;
    // Bytes that are not UTF-8 become U+FFFD, which the name check rejects.
    source_store_path(path, &name.to_string_lossy())
}

/// Nix's base32 encoding: 5-bit groups taken from the end of the byte string, most
/// significant group first, over the alphabet `0123456789abcdfghijklmnpqrsvwxyz`.
pub fn nix_base32_encode(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return String::new();
    }
    let len = (bytes.len() * 8 - 1) / 5 + 1;
    let mut out = String::with_capacity(len);
    for n in (0..len).rev() {
        let bit = n * 5;
        let i = bit / 8;
        let j = bit % 8;
        let low = u16::from(bytes[i]) >> j;
        let high = bytes.get(i + 1).map_or(0, |&b| u16::from(b) << (8 - j));
        let group = ((low | high) & 0x1f) as usize;
        out.push(char::from(NIX_BASE32_ALPHABET[group]));
    }
    out
}

/// Decodes Nix's base32 (the inverse of [`nix_base32_encode`]) into `len`
/// bytes; `None` when the text is not the base32 of exactly `len` bytes.
pub fn nix_base32_decode(text: &str, len: usize) -> Option<Vec<u8>> {
    if len == 0 || text.len() != (len * 8 - 1) / 5 + 1 {
        return None;
    }
    let mut out = vec![0u8; len];
    for (n, c) in text.bytes().rev().enumerate() {
        let digit = NIX_BASE32_ALPHABET.iter().position(|&a| a == c)? as u16;
        let bit = n * 5;
        let i = bit / 8;
        let j = bit % 8;
        out[i] |= (digit << j) as u8;
        let carry = digit >> (8 - j);
        if i + 1 < len {
            out[i + 1] |= carry as u8;
        } else if carry != 0 {
            return None;
        }
    }
    Some(out)
}

/// Folds a hash to 20 bytes by xor-ing byte `i` into position `i % 20`, as Nix
/// shortens store path digests.
fn compress_hash(full: &[u8; 32]) -> [u8; 20] {
    let mut out = [0u8; 20];
    for (i, b) in full.iter().enumerate() {
        out[i % 20] ^= b;
    }
    out
}

/// Feeds everything written into a SHA-256.
struct HashWriter(Sha256);

impl Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes NAR tokens for the tree rooted at `root`.
struct NarWriter<'a, W: Write> {
    out: &'a mut W,
    root: &'a Path,
    filter: Option<NarFilter<'a>>,
}

impl<W: Write> NarWriter<'_, W> {
    fn write_err(&self, source: io::Error) -> NarError {
        NarError::Write {
            path: self.root.to_owned(),
            source,
        }
    }

    /// A NAR string: little-endian u64 length, the bytes, zero padding to 8 bytes.
    fn bytes(&mut self, s: &[u8]) -> Result<(), NarError> {
        self.length(s.len() as u64)?;
        self.out.write_all(s).map_err(|e| self.write_err(e))?;
        self.padding(s.len() as u64)
    }

    fn length(&mut self, len: u64) -> Result<(), NarError> {
        self.out
            .write_all(&len.to_le_bytes())
            .map_err(|e| self.write_err(e))
    }

    fn padding(&mut self, len: u64) -> Result<(), NarError> {
        let pad = (8 - (len % 8) as usize) % 8;
        self.out
            .write_all(&[0u8; 8][..pad])
            .map_err(|e| self.write_err(e))
    }

    fn node(&mut self, path: &Path) -> Result<(), NarError> {
        let meta = fs::symlink_metadata(path).map_err(|source| NarError::Read {
            path: path.to_owned(),
            source,
        })?;
        self.bytes(b"(")?;
        self.bytes(b"type")?;
        let file_type = meta.file_type();
        if file_type.is_file() {
            self.regular(path, &meta)?;
        } else if file_type.is_dir() {
            self.directory(path)?;
        } else if file_type.is_symlink() {
            let target = fs::read_link(path).map_err(|source| NarError::Read {
                path: path.to_owned(),
                source,
            })?;
            self.bytes(b"symlink")?;
            self.bytes(b"target")?;
            self.bytes(target.as_os_str().as_bytes())?;
        } else {
            return Err(NarError::UnsupportedFileType {
                path: path.to_owned(),
                kind: unsupported_kind(&meta),
            });
        }
        self.bytes(b")")
    }

    fn regular(&mut self, path: &Path, meta: &Metadata) -> Result<(), NarError> {
        let read_err = |source| NarError::Read {
            path: path.to_owned(),
            source,
        };
        // Never follow a symlink or block on a FIFO swapped in since the lstat.
        let mut file = fs::OpenOptions::new()
            .read(true)
            .custom_flags(
                (rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32,
            )
            .open(path)
            .map_err(read_err)?;
        // Size and mode from the open file, so that they belong to what is read; it
        // must be the very file that was examined (not a symlink swapped in since).
        let meta_now = file.metadata().map_err(read_err)?;
        if !meta_now.is_file() || meta_now.dev() != meta.dev() || meta_now.ino() != meta.ino() {
            return Err(NarError::Replaced {
                path: path.to_owned(),
            });
        }
        self.bytes(b"regular")?;
        if meta_now.permissions().mode() & 0o100 != 0 {
            self.bytes(b"executable")?;
            self.bytes(b"")?;
        }
        self.bytes(b"contents")?;
        let expected = meta_now.len();
        self.length(expected)?;
        let mut buf = vec![0u8; 64 * 1024];
        let mut copied: u64 = 0;
        loop {
            let n = match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => return Err(read_err(source)),
            };
            copied += n as u64;
            if copied > expected {
                break;
            }
            self.out
                .write_all(&buf[..n])
                .map_err(|e| self.write_err(e))?;
        }
        if copied != expected {
            return Err(NarError::FileChanged {
                path: path.to_owned(),
                expected,
                actual: copied,
            });
        }
        self.padding(expected)
    }

    fn directory(&mut self, path: &Path) -> Result<(), NarError> {
        let read_err = |source| NarError::Read {
            path: path.to_owned(),
            source,
        };
        let mut names = Vec::new();
        for entry in fs::read_dir(path).map_err(read_err)? {
            let entry = entry.map_err(read_err)?;
            if let Some(include) = self.filter {
                let full = path.join(entry.file_name());
                let rel = full.strip_prefix(self.root).unwrap_or(&full);
                let is_dir = entry.file_type().map_err(read_err)?.is_dir();
                if !include(rel, is_dir) {
                    continue;
                }
            }
            names.push(entry.file_name());
        }
        // Nix sorts entries by the bytes of their names.
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        self.bytes(b"directory")?;
        for name in names {
            self.bytes(b"entry")?;
            self.bytes(b"(")?;
            self.bytes(b"name")?;
            self.bytes(name.as_bytes())?;
            self.bytes(b"node")?;
            self.node(&path.join(&name))?;
            self.bytes(b")")?;
        }
        Ok(())
    }
}

fn unsupported_kind(meta: &Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_fifo() {
        "FIFO"
    } else if t.is_socket() {
        "socket"
    } else if t.is_block_device() {
        "block device"
    } else if t.is_char_device() {
        "character device"
    } else {
        "special file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::symlink;

    fn nar_of(path: &Path) -> Vec<u8> {
        let mut out = Vec::new();
        write_nar(path, &mut out).unwrap();
        out
    }

    /// Builds the expected NAR token stream by hand.
    fn tokens(parts: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in parts {
            out.extend_from_slice(&(p.len() as u64).to_le_bytes());
            out.extend_from_slice(p);
            out.resize(out.len().div_ceil(8) * 8, 0);
        }
        out
    }

    #[test]
    fn nix_base32_known_vectors() {
        assert_eq!(nix_base32_encode(&[]), "");
        assert_eq!(nix_base32_encode(&[0x1f]), "0z");
        assert_eq!(nix_base32_encode(&[0xff]), "7z");
        // sha256("") in Nix base32, as `nix hash to-base32` prints it.
        let empty: [u8; 32] = Sha256::digest(b"").into();
        assert_eq!(
            nix_base32_encode(&empty),
            "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73"
        );
    }

    #[test]
    fn regular_file_nar_layout() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        fs::write(&f, b"hello").unwrap();
        fs::set_permissions(&f, fs::Permissions::from_mode(0o644)).unwrap();
        let expected = tokens(&[
            b"nix-archive-1",
            b"(",
            b"type",
            b"regular",
            b"contents",
            b"hello",
            b")",
        ]);
        assert_eq!(nar_of(&f), expected);

        fs::set_permissions(&f, fs::Permissions::from_mode(0o755)).unwrap();
        let expected = tokens(&[
            b"nix-archive-1",
            b"(",
            b"type",
            b"regular",
            b"executable",
            b"",
            b"contents",
            b"hello",
            b")",
        ]);
        assert_eq!(nar_of(&f), expected);
    }

    #[test]
    fn directory_entries_sorted_by_bytes_and_symlink_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        fs::create_dir(&root).unwrap();
        fs::write(root.join("b"), b"").unwrap();
        fs::set_permissions(root.join("b"), fs::Permissions::from_mode(0o644)).unwrap();
        fs::create_dir(root.join("B")).unwrap();
        symlink("/nonexistent/target", root.join("a")).unwrap();
        let expected = tokens(&[
            b"nix-archive-1",
            b"(",
            b"type",
            b"directory",
            // "B" (0x42) sorts before "a" (0x61) and "b".
            b"entry",
            b"(",
            b"name",
            b"B",
            b"node",
            b"(",
            b"type",
            b"directory",
            b")",
            b")",
            b"entry",
            b"(",
            b"name",
            b"a",
            b"node",
            b"(",
            b"type",
            b"symlink",
            b"target",
            b"/nonexistent/target",
            b")",
            b")",
            b"entry",
            b"(",
            b"name",
            b"b",
            b"node",
            b"(",
            b"type",
            b"regular",
            b"contents",
            b"",
            b")",
            b")",
            b")",
        ]);
        assert_eq!(nar_of(&root), expected);
    }

    /// Vector computed with Nix 2.8: `printf hello > f; nix hash path f` and
    /// `nix store add-path --name hello.txt f`.
    #[test]
    fn known_nix_vector_for_hello_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        fs::write(&f, b"hello").unwrap();
        fs::set_permissions(&f, fs::Permissions::from_mode(0o644)).unwrap();
        let hash = nar_sha256(&f).unwrap();
        assert_eq!(hash.to_sri(), HELLO_SRI);
        assert_eq!(hash.to_nix_base32(), HELLO_BASE32);
        let sp = source_store_path(&f, "hello.txt").unwrap();
        assert_eq!(sp.to_string(), HELLO_STORE_PATH);
        assert_eq!(sp.name(), "hello.txt");
        assert_eq!(sp.hash_part().len(), 32);
    }

    const HELLO_SRI: &str = "sha256-CkMIecJm+LV/QJKg+TXPP6zUi7zN5XYNR0jKQFFx6Wk=";
    const HELLO_BASE32: &str = "0sg9f58l1jj88w6pdrfdpj5x9b1zrwszk84j81zvby36q9whhhqa";
    const HELLO_STORE_PATH: &str = "/nix/store/xfp2hphvk98rkk9ywlqpp587rjdcgnc2-hello.txt";

    #[test]
    fn store_names_validated() {
        for ok in ["a", "h1-db.age", "A+b-c.d_e?f=g", "x.", &"a".repeat(211)] {
            assert_eq!(validate_store_name(ok), Ok(()), "{ok}");
        }
        assert_eq!(validate_store_name(""), Err(StoreNameError::Empty));
        assert!(matches!(
            validate_store_name(&"a".repeat(212)),
            Err(StoreNameError::TooLong { len: 212, .. })
        ));
        assert!(matches!(
            validate_store_name(".hidden"),
            Err(StoreNameError::LeadingPeriod { .. })
        ));
        for (bad, ch, pos) in [
            ("a b", ' ', 1),
            ("a/b", '/', 1),
            ("é", 'é', 0),
            ("x~", '~', 1),
            ("a\0", '\0', 1),
        ] {
            assert_eq!(
                validate_store_name(bad),
                Err(StoreNameError::InvalidCharacter {
                    name: bad.to_owned(),
                    character: ch,
                    position: pos,
                }),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn errors_name_the_failing_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let err = source_store_path(&missing, "x").unwrap_err();
        assert!(
            matches!(&err, StorePathError::Nar { path, source: NarError::Read { path: inner, .. } }
            if path == &missing && inner == &missing)
        );
        assert!(err.to_string().contains(&*missing.to_string_lossy()));

        let err = source_store_path(&missing, "bad name").unwrap_err();
        assert!(matches!(
            err,
            StorePathError::InvalidName {
                source: StoreNameError::InvalidCharacter { character: ' ', .. },
                ..
            }
        ));

        let socket = dir.path().join("socket");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let err = nar_sha256(dir.path()).unwrap_err();
        assert!(
            matches!(&err, NarError::UnsupportedFileType { path, kind: "socket" } if path == &socket),
            "{err:?}"
        );

        assert!(matches!(
            added_store_path(Path::new("/")),
            Err(StorePathError::NoName { .. })
        ));
        let non_utf8 = dir.path().join(std::ffi::OsStr::from_bytes(b"a\xffb"));
        fs::write(&non_utf8, b"").unwrap();
        assert!(matches!(
            added_store_path(&non_utf8),
            Err(StorePathError::InvalidName {
                source: StoreNameError::InvalidCharacter { position: 1, .. },
                ..
            })
        ));
    }

    #[test]
    fn nix_base32_decode_inverts_encode() {
        let empty: [u8; 32] = Sha256::digest(b"").into();
        let text = nix_base32_encode(&empty);
        assert_eq!(nix_base32_decode(&text, 32).unwrap(), empty);
        for len in [1usize, 5, 20, 32, 64] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(
                nix_base32_decode(&nix_base32_encode(&bytes), len).unwrap(),
                bytes
            );
        }
        // Wrong length, a letter outside the alphabet, bits beyond the bytes.
        assert_eq!(nix_base32_decode(&text[1..], 32), None);
        assert_eq!(nix_base32_decode(&text.replacen('0', "e", 1), 32), None);
        assert_eq!(nix_base32_decode("zz", 1), None);
        assert_eq!(nix_base32_decode("7z", 1), Some(vec![0xff]));
    }

    #[test]
    fn filtered_nar_leaves_out_refused_entries() {
        let dir = tempfile::tempdir().unwrap();
        let full = dir.path().join("full");
        let part = dir.path().join("part");
        for root in [&full, &part] {
            fs::create_dir_all(root.join("a/b")).unwrap();
            fs::write(root.join("a/b/kept"), b"k").unwrap();
            fs::write(root.join("top"), b"t").unwrap();
        }
        // Only in `full`: what the filter refuses.
        fs::write(full.join("a/dropped"), b"d").unwrap();
        fs::create_dir_all(full.join("gone/deep")).unwrap();
        fs::write(full.join("gone/deep/x"), b"x").unwrap();
        let include = |rel: &Path, is_dir: bool| {
            if is_dir {
                rel == Path::new("a") || rel == Path::new("a/b")
            } else {
                rel == Path::new("a/b/kept") || rel == Path::new("top")
            }
        };
        assert_eq!(
            nar_sha256_filtered(&full, &include).unwrap(),
            nar_sha256(&part).unwrap()
        );
        assert_ne!(nar_sha256(&full).unwrap(), nar_sha256(&part).unwrap());
    }

    #[test]
    fn compress_hash_xor_folds() {
        let mut full = [0u8; 32];
        full[0] = 0x0f;
        full[20] = 0xf0;
        full[31] = 0x01;
        let c = compress_hash(&full);
        assert_eq!(c[0], 0xff);
        assert_eq!(c[11], 0x01);
        assert_eq!(c.iter().filter(|&&b| b != 0).count(), 2);
    }
}
