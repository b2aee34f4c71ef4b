//! The audit report: what [`super::audit`] returns and `nixseal audit
//! --json` prints (version [`super::AUDIT_JSON_VERSION`], described in
//! docs/json.md; a test checks the example there against these types).

use serde::{Deserialize, Serialize};

/// The result of an audit; also the `--json` document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Report {
    /// Always [`AUDIT_JSON_VERSION`](super::AUDIT_JSON_VERSION).
    pub version: u64,
    /// The audited host.
    pub host: String,
    /// Whether the host has secrets in the profile (if not, every rekeyed
    /// file counts as another host's).
    pub host_in_profile: bool,
    /// The store paths the closure was walked from (the system).
    pub roots: Vec<String>,
    /// Facts about the walk.
    pub closure: ClosureStats,
    /// The flake's source as computed from the flake root.
    pub flake_source: FlakeSource,
    /// No finding.
    pub clean: bool,
    /// Every part of the closure could be read.
    pub complete: bool,
    /// Store paths carrying secret material that is not the host's own.
    pub findings: Vec<Finding>,
    /// Files the profile names that could not be fingerprinted (so copies of
    /// them cannot be recognised).
    pub not_checked: Vec<NotChecked>,
    /// Parts of the closure that could not be read (at most 100 per store path).
    pub unreadable: Vec<Unreadable>,
    /// Entries that were not examined: FIFOs, sockets, devices (at most 100 per store path).
    pub skipped: Vec<Skipped>,
}

impl Report {
    /// Whether any finding was made.
    pub fn leaks(&self) -> bool {
        !self.findings.is_empty()
    }
}

/// Where the closure came from and how much was walked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClosureStats {
    /// `store` (queried with nix-store) or `closureInfo`.
    pub from: ClosureFrom,
    /// The closureInfo directory, when `from` is `closureInfo`.
    pub closure_info: Option<String>,
    /// Store paths in the closure.
    pub store_paths: u64,
    /// Regular files walked.
    pub files: u64,
    /// Symlinks whose target is outside the store (never followed).
    pub symlinks_out_of_store: u64,
    /// Whether the heuristic checks ran.
    pub heuristics: bool,
    /// Entries that could not be read, in all (the list is capped).
    pub unreadable: u64,
    /// Entries skipped as FIFO, socket or device, in all (the list is capped).
    pub skipped: u64,
}

/// Where the closure came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ClosureFrom {
    /// `nix-store --query --requisites` and `--dump-db`.
    Store,
    /// A closureInfo directory.
    ClosureInfo,
}

/// The flake's own source tree as the store would hold it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FlakeSource {
    /// The flake root it was computed from.
    pub root: String,
    /// Its store path (`/nix/store/<hash>-source`), when known.
    pub store_path: Option<String>,
    /// The SHA-256 of its NAR (`sha256-…`), when computed.
    pub nar_hash: Option<String>,
    /// How it was computed.
    pub basis: SourceBasis,
    /// Why it could not be computed, if so.
    pub error: Option<String>,
}

/// How the flake source was determined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SourceBasis {
    /// The files git tracks in the work tree (what a git flake's source holds).
    GitTrackedFiles,
    /// The whole directory (a `path:` flake, not in a git work tree).
    Directory,
    /// The root is itself in the store (inside a build: `--root ${self}`).
    Store,
    /// It could not be computed (see `error`).
    Unknown,
}

/// One store path of the closure that holds secret material not the host's own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Finding {
    /// The store path.
    pub store_path: String,
    /// Copies of the flake's source it is or holds (usually none or one).
    pub flake_copies: Vec<FlakeCopy>,
    /// Files in it whose content equals a known secret file.
    pub files: Vec<LeakedFile>,
    /// Directories in it that look like secrets trees (heuristic).
    pub secret_trees: Vec<SecretTree>,
    /// From the system to this path, each with the entry that refers to the
    /// next; empty when the references are not known.
    pub chain: Vec<ChainLink>,
}

/// A copy of the flake's source inside a store path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FlakeCopy {
    /// The store path is exactly the working tree's source (same store path
    /// or same NAR hash); otherwise it was recognised by its layout (an older
    /// or filtered copy).
    pub exact: bool,
    /// Where in the store path the flake's root is ("" = the store path itself).
    pub dir: String,
    /// Host directories found under the profile's rekeyed directory in it.
    pub rekeyed_hosts: Vec<String>,
    /// Master files of the profile found in it (as the profile writes them).
    pub master_files: Vec<String>,
}

/// A file whose content equals a known secret file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LeakedFile {
    /// Its path inside the store path ("" = the store path itself is the file).
    pub path: String,
    /// Its size in bytes.
    pub size: u64,
    /// What it is a copy of (usually one thing).
    pub holds: Vec<Holding>,
}

/// A known secret file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "camelCase",
    rename_all_fields = "camelCase",
    deny_unknown_fields
)]
pub enum Holding {
    /// A master ciphertext (encrypted to the master identities).
    MasterCiphertext {
        /// The file as the profile names it.
        file: String,
        /// Every (host, secret) that uses it.
        uses: Vec<SecretUse>,
    },
    /// Another host's rekeyed file.
    RekeyedFile {
        /// The host it was rekeyed for.
        host: String,
        /// The secret.
        secret: String,
        /// The file in the working tree.
        file: String,
    },
    /// Another host's rekey cache.
    RekeyCache {
        /// The host.
        host: String,
        /// The file in the working tree.
        file: String,
    },
    /// A master identity file named in the profile.
    Identity {
        /// The file.
        file: String,
    },
}

/// A (host, secret) pair.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SecretUse {
    /// The host.
    pub host: String,
    /// The secret's name on that host.
    pub secret: String,
}

/// A directory that looks like a secrets tree (heuristic).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SecretTree {
    /// The directory inside the store path ("" = the store path itself).
    pub dir: String,
    /// `.age` files in it that start with an age header (not the host's own).
    pub age_files: u64,
    /// Files named `.nixseal-rekey.json` in it that are not the host's own cache.
    pub rekey_caches: u64,
    /// Up to five of those file names.
    pub examples: Vec<String>,
    /// Always true: this is a guess from names and headers.
    pub heuristic: bool,
}

/// One step of a referrer chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ChainLink {
    /// A store path.
    pub store_path: String,
    /// The entry in it that mentions the next store path of the chain ("" =
    /// the store path itself); null for the last link or when not found.
    pub via: Option<String>,
}

/// A file the profile names that could not be fingerprinted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NotChecked {
    /// The file.
    pub file: String,
    /// What it is (`masterCiphertext`, `rekeyedDir`, `identity`, ...).
    pub what: String,
    /// Why it was not fingerprinted.
    pub reason: String,
}

/// A part of the closure that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Unreadable {
    /// The path.
    pub path: String,
    /// The error.
    pub error: String,
}

/// An entry that was not examined.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Skipped {
    /// The path.
    pub path: String,
    /// Its kind ("a FIFO", "a socket", ...).
    pub kind: String,
}
