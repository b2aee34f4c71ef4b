//! The master-file record, `<rekeyedDir>/.nixseal-masters.json`: for each
//! master ciphertext, its sha256 and the recipients it was encrypted to.
//!
//! Written by `nixseal rekey-masters` and `nixseal edit`, read by
//! `rekey-masters` to know, without any identity, which master files are
//! already encrypted to the wanted recipients. Nothing in it is derived from
//! a plaintext (a hash of a low-entropy secret could be guessed offline):
//! only ciphertext hashes and public recipients. Read by nothing on the Nix
//! side. Described in docs/design.md.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// File name of the record, directly inside the rekeyed directory.
pub const MASTERS_FILE: &str = ".nixseal-masters.json";

/// The only record version this build writes and reads.
pub const MASTERS_VERSION: u64 = 1;

/// The record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MastersRecord {
    /// Always 1.
    pub version: u64,
    /// By master file, relative to the flake root as the profile names it
    /// (normalised: `secrets/db.age`); a file named twice makes the record
    /// invalid.
    #[serde(deserialize_with = "crate::contract::json::unique_map")]
    pub files: BTreeMap<String, MasterEntry>,
}

/// What was true of one master file when nixseal wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MasterEntry {
    /// sha256 (hex) of the ciphertext as written.
    pub sha256: String,
    /// The recipients it was encrypted to, normalised (an SSH key without
    /// its comment) and sorted.
    pub recipients: Vec<String>,
}

/// Result of reading the record.
#[derive(Debug)]
pub enum MastersRead {
    /// Read and valid.
    Valid(MastersRecord),
    /// No record yet.
    Absent,
    /// Present but unusable (every master file counts as unknown).
    Invalid(String),
    /// Not a regular file (a directory, symlink, FIFO…): never read or
    /// written through.
    NotRegular(&'static str),
}

impl MastersRecord {
    /// Reads the record in `rekeyed_dir`: a regular file only, never through
    /// a symlink, at most [`crate::common::fsutil::MAX_FILE`] bytes.
    pub fn read(rekeyed_dir: &Path) -> MastersRead {
        let path = rekeyed_dir.join(MASTERS_FILE);
        match std::fs::symlink_metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return MastersRead::Absent,
            Err(e) => return MastersRead::Invalid(e.to_string()),
            Ok(m) if !m.is_file() => {
                return MastersRead::NotRegular(crate::common::fsutil::kind_name(m.file_type()))
            }
            Ok(_) => {}
        }
        let bytes = match crate::common::fsutil::read_regular_nofollow(
            &path,
            crate::common::fsutil::MAX_FILE,
        ) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return MastersRead::Absent,
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
                return MastersRead::NotRegular("a symlink")
            }
            Err(e) => return MastersRead::Invalid(e.to_string()),
        };
        match serde_json::from_slice::<MastersRecord>(&bytes) {
            Ok(r) if r.version == MASTERS_VERSION => MastersRead::Valid(r),
            Ok(r) => MastersRead::Invalid(format!("unknown record version {}", r.version)),
            Err(e) => MastersRead::Invalid(e.to_string()),
        }
    }

    /// Serialises the record (stable order, trailing newline: friendly to git).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("record serialises");
        v.push(b'\n');
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_json() {
        let d = tempfile::tempdir().unwrap();
        let write = |s: &str| std::fs::write(d.path().join(MASTERS_FILE), s).unwrap();
        write(r#"{"version":1,"files":{"a.age":{"sha256":"00","recipients":["age1x"]}}}"#);
        assert!(matches!(
            MastersRecord::read(d.path()),
            MastersRead::Valid(_)
        ));
        for bad in [
            r#"{"version":1,"files":{"a":{"sha256":"0","recipients":[]},"a":{"sha256":"1","recipients":[]}}}"#,
            r#"{"version":2,"files":{}}"#,
            r#"{"version":1,"files":{},"extra":1}"#,
            r#"{"version":1,"files":{"a":{"sha256":"0","recipients":[],"plain":"x"}}}"#,
        ] {
            write(bad);
            assert!(
                matches!(MastersRecord::read(d.path()), MastersRead::Invalid(_)),
                "{bad}"
            );
        }
        std::fs::remove_file(d.path().join(MASTERS_FILE)).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", d.path().join(MASTERS_FILE)).unwrap();
        assert!(matches!(
            MastersRecord::read(d.path()),
            MastersRead::NotRegular(_)
        ));
    }
}
