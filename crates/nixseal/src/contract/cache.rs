//! The per-host rekey cache, `<rekeyedDir>/<host>/.nixseal-rekey.json`.
//!
//! Keep in sync with `rekeyed` in `modules/lib/problems.nix`: the NixOS and
//! home-manager modules read this file at evaluation to refuse a stale or
//! untracked rekeyed file. Described in docs/design.md.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// File name of the cache inside each host's rekeyed directory.
pub const CACHE_FILE: &str = ".nixseal-rekey.json";

/// The only cache version this build writes and reads.
pub const CACHE_VERSION: u64 = 1;

/// What was true of each output when it was written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HostCache {
    /// Always 1.
    pub version: u64,
    /// By secret name (a secret named twice makes the cache invalid).
    #[serde(deserialize_with = "crate::contract::json::unique_map")]
    pub outputs: BTreeMap<String, CacheEntry>,
}

/// One output's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CacheEntry {
    /// sha256 (hex) of the master ciphertext the output was made from.
    pub source_sha256: String,
    /// The host key it was encrypted to, `ssh-ed25519 <base64>`.
    pub recipient: String,
    /// sha256 (hex) of the output file as written.
    pub output_sha256: String,
}

/// Result of reading a cache file.
#[derive(Debug)]
pub enum CacheRead {
    /// Read and valid.
    Valid(HostCache),
    /// No cache file yet.
    Absent,
    /// Present but unusable: every output of the host counts as stale.
    Invalid(String),
    /// Something other than a regular file is where the cache goes (a
    /// directory, symlink, FIFO…): the host is blocked, never written through.
    NotRegular(&'static str),
}

impl HostCache {
    /// Reads the cache of one host directory.
    /// Only a regular file is read (never through a symlink, never a FIFO
    /// that would block), at most [`crate::common::fsutil::MAX_FILE`] bytes.
    pub fn read(host_dir: &Path) -> CacheRead {
        let path = host_dir.join(CACHE_FILE);
        match std::fs::symlink_metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return CacheRead::Absent,
            Err(e) => return CacheRead::Invalid(e.to_string()),
            Ok(m) if !m.is_file() => {
                return CacheRead::NotRegular(crate::common::fsutil::kind_name(m.file_type()))
            }
            Ok(_) => {}
        }
        let bytes = match crate::common::fsutil::read_regular_nofollow(
            &path,
            crate::common::fsutil::MAX_FILE,
        ) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return CacheRead::Absent,
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
                return CacheRead::NotRegular("a symlink")
            }
            Err(e) => return CacheRead::Invalid(e.to_string()),
        };
        match serde_json::from_slice::<HostCache>(&bytes) {
            Ok(c) if c.version == CACHE_VERSION => CacheRead::Valid(c),
            Ok(c) => CacheRead::Invalid(format!("unknown cache version {}", c.version)),
            Err(e) => CacheRead::Invalid(e.to_string()),
        }
    }

    /// Serialises the cache (stable order, trailing newline: friendly to git).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("cache serialises");
        v.push(b'\n');
        v
    }
}
