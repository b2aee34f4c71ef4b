//! The operator side: what runs on the operator's machine against the flake
//! (`renc`, `check`, `edit`, `status`, `audit`), never on a host.

pub mod audit;
pub mod edit;
pub mod generate;
pub mod git;
pub mod identity;
pub mod masters;
pub mod profile;
pub mod rekey;
pub mod renc;
pub mod report;
pub mod status;
