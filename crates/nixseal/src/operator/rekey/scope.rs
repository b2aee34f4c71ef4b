//! Scoped runs: `renc --host H --secret S` and `check` with the same
//! filters rekey (or look at) only the selected (host, secret) pairs.

use std::collections::BTreeSet;

use crate::contract::names::{HostName, SecretName};
use crate::operator::profile::Profile;

/// Which (host, secret) pairs a run covers. Empty sets mean "every".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    hosts: BTreeSet<HostName>,
    secrets: BTreeSet<SecretName>,
}

/// A filter that names nothing in the profile.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScopeError {
    /// `--host` names no host of the profile.
    #[error(
        "no host named {name:?} in profile {profile}; hosts: {}",
        known_list(known)
    )]
    UnknownHost {
        /// The name given.
        name: String,
        /// The profile file.
        profile: std::path::PathBuf,
        /// The profile's hosts.
        known: Vec<String>,
    },
    /// `--secret` names no secret of any (selected) host.
    #[error("no secret named {name:?} in profile {profile}{}; secrets: {}", if *of_selected { " for the selected hosts" } else { "" }, known_list(known))]
    UnknownSecret {
        /// The name given.
        name: String,
        /// The profile file.
        profile: std::path::PathBuf,
        /// Whether only the hosts given with the host filter were searched.
        of_selected: bool,
        /// The secrets those hosts use.
        known: Vec<String>,
    },
}

fn known_list(known: &[String]) -> String {
    const SHOWN: usize = 30;
    if known.is_empty() {
        return "none".into();
    }
    let mut s = known[..known.len().min(SHOWN)].join(", ");
    if known.len() > SHOWN {
        s.push_str(&format!(", … ({} in all)", known.len()));
    }
    s
}

impl Scope {
    /// Every pair of the profile (an unscoped run).
    pub fn all() -> Self {
        Self::default()
    }

    /// The pairs of `hosts` (all when empty) and `secrets` (all when
    /// empty); both given: the pairs of those hosts that use those secrets.
    /// Every name must be in the profile (a secret: used by one of the
    /// selected hosts).
    pub fn new(
        profile: &Profile,
        hosts: &[String],
        secrets: &[String],
    ) -> Result<Self, ScopeError> {
        let mut scope = Scope::default();
        for h in hosts {
            match profile.hosts.get_key_value(h.as_str()) {
                Some((name, _)) => {
                    scope.hosts.insert(name.clone());
                }
                None => {
                    return Err(ScopeError::UnknownHost {
                        name: h.clone(),
                        profile: profile.path.clone(),
                        known: profile.hosts.keys().map(|k| k.to_string()).collect(),
                    })
                }
            }
        }
        if secrets.is_empty() {
            return Ok(scope);
        }
        let known: BTreeSet<&SecretName> = profile
            .hosts
            .values()
            .filter(|h| scope.hosts.is_empty() || scope.hosts.contains(&h.name))
            .flat_map(|h| h.secrets.keys())
            .collect();
        for s in secrets {
            match known.iter().find(|k| k.as_str() == s) {
                Some(name) => {
                    scope.secrets.insert((*name).clone());
                }
                None => {
                    return Err(ScopeError::UnknownSecret {
                        name: s.clone(),
                        profile: profile.path.clone(),
                        of_selected: !scope.hosts.is_empty(),
                        known: known.iter().map(|k| k.to_string()).collect(),
                    })
                }
            }
        }
        Ok(scope)
    }

    /// Whether this is every pair of the profile.
    pub fn is_all(&self) -> bool {
        self.hosts.is_empty() && self.secrets.is_empty()
    }

    /// Whether the run covers `host` (some of its pairs).
    pub fn has_host(&self, host: &str) -> bool {
        self.hosts.is_empty() || self.hosts.iter().any(|h| h.as_str() == host)
    }

    /// Whether the run covers the pair (`host`, `secret`).
    pub fn has_pair(&self, host: &str, secret: &str) -> bool {
        self.has_host(host)
            && (self.secrets.is_empty() || self.secrets.iter().any(|s| s.as_str() == secret))
    }

    /// Whether every secret of a covered host is covered (then that host's
    /// left-over outputs are removed, as in an unscoped run).
    pub fn whole_hosts(&self) -> bool {
        self.secrets.is_empty()
    }

    /// The distinct master files the pairs of this run use, in byte order
    /// of the path (unscoped: the profile's list).
    pub fn sources<'p>(&self, profile: &'p Profile) -> Vec<&'p std::path::Path> {
        if self.is_all() {
            return profile.sources.iter().map(|p| &**p).collect();
        }
        // (By bytes: hashing a `Path` walks its components.)
        let used: std::collections::HashSet<&std::ffi::OsStr> = profile
            .hosts
            .values()
            .flat_map(|h| {
                h.secrets
                    .values()
                    .filter(|s| self.has_pair(h.name.as_str(), s.name.as_str()))
                    .map(|s| s.source.as_os_str())
            })
            .collect();
        let mut used: Vec<&std::path::Path> = used.into_iter().map(std::path::Path::new).collect();
        used.sort_unstable_by(|a, b| a.as_os_str().cmp(b.as_os_str()));
        used
    }
}

impl crate::common::error::Classify for ScopeError {
    fn class(&self) -> crate::common::error::ErrorClass {
        crate::common::error::ErrorClass::BadInput
    }
}
