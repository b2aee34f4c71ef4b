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

/// The fleet profile as written in JSON. (`H`: how each host is read;
/// [`RawHost`], or its JSON text for hosts read one by one in parallel.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    bound(deserialize = "H: Deserialize<'de>")
)]
pub struct RawProfile<H = RawHost> {
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
    pub hosts: BTreeMap<String, H>,
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
    /// What the target is (for messages); `host` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<TargetKind>,
    /// For a home-manager user inside a NixOS node: that node's target name
    /// (an entry of kind `host`). `nixseal audit --host H` counts the
    /// rekeyed files of every home whose `host` is H as H's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

/// What a rekey target is: a NixOS host (decrypting with its SSH host key)
/// or a home-manager home (decrypting with the user's SSH key).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    /// A NixOS host (the default).
    #[default]
    Host,
    /// A home-manager home.
    Home,
}

impl TargetKind {
    /// `"host"` or `"home"`, as messages say it.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::Host => "host",
            TargetKind::Home => "home",
        }
    }
}

impl std::fmt::Display for TargetKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
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
