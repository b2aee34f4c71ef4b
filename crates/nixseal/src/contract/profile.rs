//! The fleet profile (version 1): what the flake-module writes and the
//! operator side reads (`renc`, `check`, `edit`, `status`, `audit`).
//!
//! Keep in sync with `flake-modules/fleet.nix` (the Nix side that emits it,
//! `builtins.toJSON` of the same fields); `tests/nix/` evaluates the Nix side
//! and parses its output with these types. Described in docs/design.md.
//! Unknown fields, unknown versions and repeated keys are refused.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The only profile version this build understands.
pub const PROFILE_VERSION: u64 = 1;

/// The fleet profile as written in JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawProfile {
    /// Must be 1.
    pub version: u64,
    /// Master identity files, relative to the flake root.
    #[serde(default)]
    pub identities: Vec<String>,
    /// Recipients every master secret is also encrypted to (by `edit`).
    #[serde(default)]
    pub extra_recipients: Vec<String>,
    /// The public half of master identities, by identity as written in
    /// `identities`: what `rekey-masters` encrypts to without reading the
    /// identity. Optional (absent: no identity's recipient is declared).
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "crate::contract::json::unique_map"
    )]
    pub identity_recipients: BTreeMap<String, Vec<String>>,
    /// Where rekeyed files go, relative to the flake root.
    pub rekeyed_dir: String,
    /// Every host and the secrets it uses (a host named twice is an error).
    #[serde(default, deserialize_with = "crate::contract::json::unique_map")]
    pub hosts: BTreeMap<String, RawHost>,
}

/// One host in the profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawHost {
    /// The host's `ssh-ed25519` public key. `null`, absent or `""` means the
    /// key is not known yet: that host is reported and skipped, the rest of
    /// the fleet is served.
    #[serde(default)]
    pub host_pubkey: Option<String>,
    /// The secrets this host uses (a secret named twice is an error).
    #[serde(default, deserialize_with = "crate::contract::json::unique_map")]
    pub secrets: BTreeMap<String, RawSecret>,
}

/// One secret of a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawSecret {
    /// The master ciphertext, relative to the flake root.
    pub file: String,
    /// An executable (absolute: a store path from Nix) whose standard output
    /// becomes the secret when `file` does not exist yet (`renc` runs it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator: Option<String>,
}
