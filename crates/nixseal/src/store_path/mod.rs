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
use std::io;
use std::path::{Path, PathBuf};

use base64::{prelude::BASE64_STANDARD, Engine};
use sha2::{Digest, Sha256};

/// The store directory all computed store paths live in.
pub const STORE_DIR: &str = "/nix/store";

/// The longest store path name Nix accepts, in bytes.
pub const MAX_NAME_LEN: usize = 211;

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

/// Folds a hash to 20 bytes by xor-ing byte `i` into position `i % 20`, as Nix
/// shortens store path digests.
fn compress_hash(full: &[u8; 32]) -> [u8; 20] {
    let mut out = [0u8; 20];
    for (i, b) in full.iter().enumerate() {
        out[i % 20] ^= b;
    }
    out
}

mod base32;
mod nar;
#[cfg(test)]
mod tests;

pub use base32::{nix_base32_decode, nix_base32_encode};
pub use nar::{nar_sha256, nar_sha256_filtered, write_nar, NarFilter};
