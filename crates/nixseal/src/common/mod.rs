//! What both sides share: the age operations, bounded file reads and atomic
//! writes, and process hardening.

pub mod crypto;
pub mod error;
pub mod fsutil;
pub mod hardening;
#[cfg(test)]
pub(crate) mod test_rng;
