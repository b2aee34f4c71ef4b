//! Identities: the keys that decrypt.
//!
//! `host` loads a host's SSH ed25519 private key for `nixseal deploy`.

pub mod host;
