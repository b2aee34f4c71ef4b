//! nixseal: secrets for NixOS fleets.
//!
//! All behaviour lives here; the `nixseal` binary only parses arguments, calls
//! into this crate, prints and maps errors to exit codes. Nothing in this crate
//! prints.
#![deny(missing_docs)]

pub mod name;
pub mod crypto;
pub mod identity;
pub mod profile;
