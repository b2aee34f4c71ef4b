//! nixseal: secrets for NixOS fleets.
//!
//! All behaviour lives here; the `nixseal` binary only parses arguments, calls
//! into this crate, prints and maps errors to exit codes. Nothing in this crate
//! prints.
#![deny(missing_docs)]

pub mod activate;
pub mod audit;
pub mod crypto;
pub mod edit;
pub mod fsutil;
pub mod generate;
pub mod git;
pub mod hardening;
pub mod identity;
pub mod json;
pub mod manifest;
pub mod name;
pub mod profile;
pub mod rekey;
pub mod status;
pub mod store_path;

pub use age;
/// Passphrases cross the library boundary in this type (wiped on drop).
pub use age::secrecy::SecretString;
