//! nixseal: secrets for NixOS fleets.
//!
//! All behaviour lives here; the `nixseal` binary only parses arguments, calls
//! into this crate, prints and maps errors to exit codes. Nothing in this crate
//! prints.
//!
//! The source is laid out by side (docs/design.md, "Library layout"):
//! `contract/` holds the JSON documents and naming rules shared with the Nix
//! side, `operator/` what runs against the flake (renc, check, edit, status,
//! audit), `host/` what runs on a host (deploy), `common/` what both use,
//! [`store_path`] Nix store path computation (public as it is). The other
//! modules are private; the modules below are the public API, each
//! re-exporting what callers use.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod common;
mod contract;
mod host;
mod operator;
pub mod store_path;

pub use age;
/// Passphrases cross the library boundary in this type (wiped on drop).
pub use age::secrecy::SecretString;
pub use common::error::{Classify, ErrorClass};

/// Host and secret names (contract: `nameType` in modules/nixos.nix).
pub mod names {
    pub use crate::contract::names::{
        max_len, validate, HostName, NameError, SecretName, HOST_NAME_MAX, SECRET_NAME_MAX,
    };
}

/// Strict JSON for the contracts (no repeated keys).
pub mod json {
    pub use crate::contract::json::unique_map;
}

/// The fleet profile: the v1 schema ([`RawProfile`](profile::RawProfile)) and
/// its validated form ([`Profile`](profile::Profile)).
pub mod profile {
    pub use crate::contract::profile::{
        RawHost, RawProfile, RawSecret, TargetKind, PROFILE_VERSION,
    };
    pub use crate::operator::profile::{normalize, HostEntry, Profile, ProfileError, SecretEntry};
}

/// The host manifest v1.
pub mod manifest {
    pub use crate::contract::manifest::*;
}

/// The per-host rekey cache v1.
pub mod cache {
    pub use crate::contract::cache::{CacheEntry, CacheRead, HostCache, CACHE_FILE, CACHE_VERSION};
}

/// Master identities, host public keys and recipients (operator side).
pub mod identity {
    pub use crate::operator::identity::*;
}

/// Rekeying: plan, execute, the operator lock.
pub mod rekey {
    pub use crate::operator::rekey::*;
}

/// `nixseal renc` and `nixseal check`: one call each, returning what to print.
pub mod renc {
    pub use crate::operator::renc::*;
}

/// `nixseal rekey-masters`: master-key rotation, and its record.
pub mod masters {
    pub use crate::contract::masters::{
        MasterEntry, MastersRead, MastersRecord, MASTERS_FILE, MASTERS_VERSION,
    };
    pub use crate::operator::masters::*;
}

/// The `--json` documents of `check`, `status` and `renc --dry-run`.
pub mod report {
    pub use crate::operator::report::*;
}

/// `nixseal edit`.
pub mod edit {
    pub use crate::operator::edit::*;
}

/// Generated master secrets.
pub mod generate {
    pub use crate::operator::generate::*;
}

/// `nixseal status`.
pub mod status {
    pub use crate::operator::status::*;
}

/// `nixseal audit`.
pub mod audit {
    pub use crate::operator::audit::*;
}

/// Is it tracked by git?
pub mod git {
    pub use crate::operator::git::*;
}

/// The host side: `nixseal deploy`.
pub mod activate {
    pub use crate::host::*;
}

/// age decryption and encryption of whole files in memory.
pub mod crypto {
    pub use crate::common::crypto::*;
}

/// Bounded reads of regular files and atomic writes.
pub mod fsutil {
    pub use crate::common::fsutil::*;
}

/// Process hardening (no core dumps).
pub mod hardening {
    pub use crate::common::hardening::*;
}
