//! The contracts between nixseal's parts, in one place: the JSON documents
//! the Nix side writes and the Rust side reads, and the naming rules both
//! apply. Each file names its Nix counterpart ("keep in sync with …"), and
//! docs/design.md describes them for people.
//!
//! - [`profile`]: the fleet profile v1 (flake-module → `renc`, `check`,
//!   `edit`, `status`, `audit`);
//! - [`manifest`]: the host manifest v1 (NixOS module → `deploy`);
//! - [`cache`]: the rekey cache v1 (`renc` → the NixOS module's staleness
//!   check at evaluation);
//! - [`masters`]: the master-file record (`rekey-masters`, `edit`);
//! - [`names`]: host and secret names and their limits;
//! - [`layout`]: where rekeyed files live and what they are called in the
//!   store;
//! - [`json`]: strict JSON (no repeated keys) for every document above.

pub mod cache;
pub mod json;
pub mod layout;
pub mod manifest;
pub mod masters;
pub mod names;
pub mod profile;
