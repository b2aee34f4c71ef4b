//! The fleet profile, validated: [`RawProfile`] (the JSON contract, in
//! `contract::profile`) turned into a [`Profile`] whose names are checked,
//! whose relative paths are resolved against the flake root and whose host
//! keys are parsed and checked when first used ([`HostEntry::recipient`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::contract::layout::RekeyedLayout;
use crate::contract::names::{HostName, NameError, SecretName};
use crate::contract::profile::{RawHost, RawProfile, TargetKind, PROFILE_VERSION};
use crate::operator::identity::{HostPubkeyError, HostRecipient};

/// Why a profile was refused. Every variant names the profile file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProfileError {
    /// The file could not be read.
    #[error("cannot read profile {path}: {source}")]
    Read {
        /// The profile file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid JSON or does not match the schema.
    #[error("profile {path} is not a valid nixseal profile: {source}")]
    Json {
        /// The profile file.
        path: PathBuf,
        /// The parse error (names the unknown field, if any).
        source: serde_json::Error,
    },
    /// The `version` field is missing or not 1.
    #[error("profile {path} has version {found}, but this nixseal understands only version {PROFILE_VERSION}; use the nixseal from the same flake that wrote the profile")]
    Version {
        /// The profile file.
        path: PathBuf,
        /// The version found (or "missing").
        found: String,
    },
    /// A host or secret name is not a safe path component.
    #[error("profile {path}: {source}")]
    Name {
        /// The profile file.
        path: PathBuf,
        /// What is wrong with the name.
        source: NameError,
    },
    /// A flake-relative path leaves the flake root (through `..`).
    #[error("profile {path}: {field} {value:?} resolves outside the flake root; nixseal reads and writes files inside the flake only")]
    OutsideRoot {
        /// The profile file.
        path: PathBuf,
        /// Which field.
        field: String,
        /// The value found.
        value: String,
    },
    /// `rekeyedDir` is the flake root itself.
    #[error("profile {path}: rekeyedDir {value:?} is the flake root itself, where renc would write and prune next to your master secrets; give rekeyed files a directory of their own, e.g. \"./secrets/rekeyed\"")]
    RekeyedDirIsRoot {
        /// The profile file.
        path: PathBuf,
        /// The value found.
        value: String,
    },
    /// A path field is empty or absolute where a flake-relative path is needed.
    #[error("profile {path}: {field} {value:?} must be a path relative to the flake root (e.g. \"./secrets/db.age\")")]
    BadPath {
        /// The profile file.
        path: PathBuf,
        /// Which field (e.g. `hosts.web1.secrets.db.file`).
        field: String,
        /// The value found.
        value: String,
    },
    /// A generator is not an absolute path.
    #[error("profile {path}: {field} {value:?} must be an absolute path to an executable (Nix gives a store path)")]
    BadGenerator {
        /// The profile file.
        path: PathBuf,
        /// Which field (e.g. `hosts.web1.secrets.db.generator`).
        field: String,
        /// The value found.
        value: String,
    },
    /// Two hosts give one master file different generators.
    #[error("profile {path}: {file} has different generators in {first} and {second}; give the secret one generator")]
    GeneratorConflict {
        /// The profile file.
        path: PathBuf,
        /// The master file, as written.
        file: String,
        /// `host/secret` of one use.
        first: String,
        /// `host/secret` of the other.
        second: String,
    },
    /// An `identityRecipients` entry names no identity of `identities`, or
    /// holds something that is not a recipient.
    #[error("profile {path}: identityRecipients entry {identity:?}: {reason}")]
    IdentityRecipient {
        /// The profile file.
        path: PathBuf,
        /// The key of the entry (an identity as written).
        identity: String,
        /// Why it was refused.
        reason: String,
    },
    /// A home's `host` names no target, or a home; or a host has a `host`.
    #[error("profile {path}: {kind} {entry} has \"host\": {host:?}, but {why}")]
    BadHostOfHome {
        /// The profile file.
        path: PathBuf,
        /// The kind of the entry with the `host` field.
        kind: TargetKind,
        /// The entry with the `host` field.
        entry: String,
        /// The value of its `host` field.
        host: String,
        /// Why it is refused.
        why: &'static str,
    },
    /// An `extraRecipients` entry is not an age recipient.
    #[error(
        "profile {path}: extraRecipients entry {recipient:?} is not an age recipient ({reason})"
    )]
    ExtraRecipient {
        /// The profile file.
        path: PathBuf,
        /// The entry.
        recipient: String,
        /// Why it was refused.
        reason: String,
    },
}

/// A validated secret of a host, with its source resolved against the root.
#[derive(Debug, Clone)]
pub struct SecretEntry {
    /// The secret's name.
    pub name: SecretName,
    /// The source as written in the profile (flake-relative).
    pub file: String,
    /// The source resolved against the flake root.
    pub source: std::sync::Arc<Path>,
    /// Run by `renc` to create `source` when it does not exist.
    pub generator: Option<PathBuf>,
}

/// A validated rekey target: a host or a home.
#[derive(Debug, Clone)]
pub struct HostEntry {
    /// The target's name.
    pub name: HostName,
    /// Host or home (profile `kind`; host when absent).
    pub kind: TargetKind,
    /// For a home of a NixOS node: that node's target (profile `host`).
    pub host: Option<HostName>,
    /// `hostPubkey` as written (`None`: the profile has none).
    pub host_pubkey: Option<String>,
    /// [`HostEntry::recipient`], once asked for.
    recipient: std::sync::OnceLock<Result<HostRecipient, HostPubkeyError>>,
    /// The host's secrets, by name.
    pub secrets: BTreeMap<SecretName, SecretEntry>,
}

/// A validated fleet profile, its relative paths resolved against a root.
#[derive(Debug, Clone)]
pub struct Profile {
    /// The file it was read from (for messages).
    pub path: PathBuf,
    /// The flake root every relative path is resolved against.
    pub root: PathBuf,
    /// Master identity files, resolved.
    pub identities: Vec<PathBuf>,
    /// Extra recipients, as written.
    pub extra_recipients: Vec<String>,
    /// The declared public half of master identities (`identityRecipients`),
    /// by resolved identity path; checked to be recipients.
    pub identity_recipients: BTreeMap<PathBuf, Vec<String>>,
    /// The rekeyed directory, resolved (lexically normalised: no `.` or
    /// `..`, never the root itself).
    pub rekeyed_dir: PathBuf,
    /// The rekeyed directory as written (for messages and `git add` hints).
    pub rekeyed_dir_rel: String,
    /// Hosts, by name.
    pub hosts: BTreeMap<HostName, HostEntry>,
    /// Every distinct master file the hosts' secrets name, resolved, in
    /// byte order of the path (each the `source` its secrets hold).
    pub sources: Vec<std::sync::Arc<Path>>,
    /// The master files that have a generator, and it (one per file).
    pub generators: BTreeMap<std::sync::Arc<Path>, PathBuf>,
    /// sha256 (hex) of the bytes it was read from (what the fleet stamp
    /// names: rekey/record/fleet.rs).
    pub sha256: String,
}

impl HostEntry {
    /// How messages name this target: `host web1`, `home web1.alice`.
    pub fn label(&self) -> String {
        format!("{} {}", self.kind, self.name)
    }

    /// The host's key, parsed and its point checked (decompression,
    /// torsion: tens of microseconds, done on first use), or why it cannot
    /// be used. A bad or missing key blocks this host only: the rest of the
    /// fleet is still served.
    pub fn recipient(&self) -> &Result<HostRecipient, HostPubkeyError> {
        self.recipient
            .get_or_init(|| match self.host_pubkey.as_deref() {
                None => Err(HostPubkeyError::Missing),
                Some(k) => HostRecipient::parse(k),
            })
    }

    /// The key as [`HostRecipient::as_str`] would have it, without any
    /// check of the key (`None` where [`HostEntry::recipient`] fails
    /// anyway): what a stat record's stamp is compared with, so a host it
    /// vouches for needs no point check (the stamp was written only for a
    /// key that passed it).
    pub fn unchecked_key(&self) -> Option<String> {
        crate::operator::identity::normalized_host_key(self.host_pubkey.as_deref()?)
    }
}

impl Profile {
    /// How messages name the target `name`: `host web1`, `home web1.alice`
    /// (`host` for a name the profile does not know, e.g. a directory left
    /// over in the rekeyed tree).
    pub fn label(&self, name: &str) -> String {
        match self.hosts.get(name) {
            Some(h) => h.label(),
            None => format!("host {name}"),
        }
    }

    /// The targets whose rekeyed files are part of `host`'s system: itself
    /// and every home whose `host` it is (home-manager as a NixOS module
    /// puts them into the host's closure).
    pub fn carried_by(&self, host: &str) -> Vec<&HostName> {
        self.hosts
            .values()
            .filter(|h| {
                h.name.as_str() == host || h.host.as_ref().is_some_and(|o| o.as_str() == host)
            })
            .map(|h| &h.name)
            .collect()
    }

    /// Where this profile's rekeyed files are.
    pub fn layout(&self) -> RekeyedLayout {
        RekeyedLayout::new(self.rekeyed_dir.clone())
    }

    /// Reads and validates a profile file; relative paths are taken from `root`.
    pub fn load(path: &Path, root: &Path) -> Result<Self, ProfileError> {
        let bytes = crate::common::fsutil::read_regular(path, crate::common::fsutil::MAX_FILE)
            .map_err(|source| ProfileError::Read {
                path: path.to_owned(),
                source,
            })?;
        Self::parse(&bytes, path, root)
    }

    /// Hosts that share one public key (each group has two or more hosts):
    /// each of them can decrypt the others' rekeyed files.
    pub fn shared_host_keys(&self) -> Vec<(String, Vec<HostName>)> {
        let mut by_key: BTreeMap<&str, Vec<HostName>> = BTreeMap::new();
        let keys: Vec<(Option<String>, &HostEntry)> = self
            .hosts
            .values()
            .map(|h| (h.unchecked_key(), h))
            .collect();
        for (k, h) in &keys {
            if let Some(k) = k {
                by_key.entry(k.as_str()).or_default().push(h.name.clone());
            }
        }
        // Only a usable key is shared (a bad one is its hosts' error): the
        // point is checked for shared keys only.
        by_key
            .into_iter()
            .filter(|(_, hosts)| hosts.len() > 1 && self.hosts[&hosts[0]].recipient().is_ok())
            .map(|(k, hosts)| (k.to_owned(), hosts))
            .collect()
    }

    /// Validates profile bytes; `path` is used in messages only.
    pub fn parse(bytes: &[u8], path: &Path, root: &Path) -> Result<Self, ProfileError> {
        let json_err = |source| ProfileError::Json {
            path: path.to_owned(),
            source,
        };
        // A profile of another version says "version" rather than
        // "unknown field": on an error (only then: it is a second pass
        // over the whole fleet) the version is read on its own.
        let raw: RawProfile = match Self::parse_hosts_apart(bytes) {
            Some(raw) => raw,
            None => match serde_json::from_slice(bytes) {
                Ok(raw) => raw,
                Err(e) => {
                    #[derive(Deserialize)]
                    struct VersionOnly {
                        version: Option<serde_json::Value>,
                    }
                    if let Ok(v) = serde_json::from_slice::<VersionOnly>(bytes) {
                        version_is_ours(v.version.as_ref(), path)?;
                    }
                    return Err(json_err(e));
                }
            },
        };
        version_is_ours(Some(&serde_json::Value::from(raw.version)), path)?;
        Self::from_raw(raw, path, root, crate::common::fsutil::sha256_hex(bytes))
    }

    /// The profile read in two steps: the document with each host's JSON
    /// text set aside (its syntax and every other rule checked), then the
    /// hosts, each on its own, in parallel. `None` on any error: the
    /// profile is then read again in one piece, which says what is wrong
    /// and where (line and column of the whole file).
    fn parse_hosts_apart(bytes: &[u8]) -> Option<RawProfile> {
        use rayon::prelude::*;
        let apart: RawProfile<Box<serde_json::value::RawValue>> =
            serde_json::from_slice(bytes).ok()?;
        let hosts: Vec<(String, RawHost)> = apart
            .hosts
            .into_par_iter()
            .map(|(name, text)| Some((name, serde_json::from_str(text.get()).ok()?)))
            .collect::<Option<_>>()?;
        Some(RawProfile {
            version: apart.version,
            identities: apart.identities,
            extra_recipients: apart.extra_recipients,
            identity_recipients: apart.identity_recipients,
            rekeyed_dir: apart.rekeyed_dir,
            // In name order already (a map's order).
            hosts: hosts.into_iter().collect(),
        })
    }

    /// `raw` validated; `sha256`: of the bytes it was read from.
    fn from_raw(
        raw: RawProfile,
        path: &Path,
        root: &Path,
        sha256: String,
    ) -> Result<Self, ProfileError> {
        // Flake-relative paths, normalised without touching the file system;
        // one that climbs out of the root is refused.
        // `field` is only formatted for an error (a profile names 100,000
        // secret files).
        let rel = |field: &dyn Fn() -> String, value: &str| -> Result<PathBuf, ProfileError> {
            if value.is_empty() || Path::new(value).is_absolute() {
                return Err(ProfileError::BadPath {
                    path: path.to_owned(),
                    field: field(),
                    value: value.to_owned(),
                });
            }
            let Some(inside) = normalize(value) else {
                return Err(ProfileError::OutsideRoot {
                    path: path.to_owned(),
                    field: field(),
                    value: value.to_owned(),
                });
            };
            Ok(join_root(root, &inside))
        };
        let name_err = |source| ProfileError::Name {
            path: path.to_owned(),
            source,
        };
        let identities = raw
            .identities
            .iter()
            .enumerate()
            .map(|(i, id)| {
                // Identities may be absolute (e.g. ~/.config/nixseal/master.age):
                // they never enter the store, so only relative ones are rooted.
                if id.is_empty() {
                    return Err(ProfileError::BadPath {
                        path: path.to_owned(),
                        field: format!("identities[{i}]"),
                        value: id.clone(),
                    });
                }
                Ok(resolve(root, id))
            })
            .collect::<Result<Vec<_>, _>>()?;
        for r in &raw.extra_recipients {
            crate::operator::identity::parse_recipient(r).map_err(|reason| {
                ProfileError::ExtraRecipient {
                    path: path.to_owned(),
                    recipient: r.clone(),
                    reason,
                }
            })?;
        }
        let mut identity_recipients = BTreeMap::new();
        for (id, list) in &raw.identity_recipients {
            let bad = |reason: String| ProfileError::IdentityRecipient {
                path: path.to_owned(),
                identity: id.clone(),
                reason,
            };
            let resolved = if id.is_empty() {
                return Err(bad("an empty identity path".into()));
            } else {
                resolve(root, id)
            };
            if !identities.contains(&resolved) {
                return Err(bad(format!(
                    "it is not one of the profile's identities ({})",
                    raw.identities.join(", ")
                )));
            }
            if list.is_empty() {
                return Err(bad("it lists no recipient".into()));
            }
            for r in list {
                crate::operator::identity::parse_recipient(r)
                    .map_err(|reason| bad(format!("{r:?} is not an age recipient ({reason})")))?;
            }
            identity_recipients.insert(resolved, list.clone());
        }
        let rekeyed_dir = rel(&|| "rekeyedDir".into(), &raw.rekeyed_dir)?;
        if normalize(&raw.rekeyed_dir).is_some_and(|p| p.as_os_str().is_empty()) {
            return Err(ProfileError::RekeyedDirIsRoot {
                path: path.to_owned(),
                value: raw.rekeyed_dir.clone(),
            });
        }
        use rayon::prelude::*;
        // `host` of a home must name an entry of kind host.
        for (entry, h) in &raw.hosts {
            let Some(on) = &h.host else { continue };
            let kind = h.kind.unwrap_or_default();
            let why = if kind == TargetKind::Host {
                Some("only a home (\"kind\": \"home\") is carried by a host; remove the field or set the kind")
            } else {
                match raw.hosts.get(on) {
                    None => Some("the profile has no target of that name; set it to the target name of the NixOS host the home belongs to"),
                    Some(o) if o.kind.unwrap_or_default() != TargetKind::Host => {
                        Some("that target is a home, not a host")
                    }
                    Some(_) => None,
                }
            };
            if let Some(why) = why {
                return Err(ProfileError::BadHostOfHome {
                    path: path.to_owned(),
                    kind,
                    entry: entry.clone(),
                    host: on.clone(),
                    why,
                });
            }
        }
        // Each distinct `file` resolved once (hosts share master files):
        // every secret that names it holds the same path. Each master file
        // has at most one generator, whichever hosts use it. (One pass.)
        let mut resolved: rustc_hash::FxHashMap<String, std::sync::Arc<Path>> = Default::default();
        let mut generators: BTreeMap<std::sync::Arc<Path>, (&str, String)> = BTreeMap::new();
        for (host, h) in &raw.hosts {
            for (secret, s) in &h.secrets {
                if !resolved.contains_key(s.file.as_str()) {
                    let p = rel(&|| format!("hosts.{host}.secrets.{secret}.file"), &s.file)?;
                    resolved.insert(s.file.clone(), p.into());
                }
                let Some(g) = &s.generator else { continue };
                if !Path::new(g).is_absolute() {
                    return Err(ProfileError::BadGenerator {
                        path: path.to_owned(),
                        field: format!("hosts.{host}.secrets.{secret}.generator"),
                        value: g.clone(),
                    });
                }
                let here = format!("{host}/{secret}");
                let source = &resolved[s.file.as_str()];
                match generators.get(source) {
                    Some((other, at)) if *other != g.as_str() => {
                        return Err(ProfileError::GeneratorConflict {
                            path: path.to_owned(),
                            file: s.file.clone(),
                            first: at.clone(),
                            second: here,
                        })
                    }
                    Some(_) => {}
                    None => {
                        generators.insert(source.clone(), (g, here));
                    }
                }
            }
        }
        let generators: BTreeMap<std::sync::Arc<Path>, PathBuf> = generators
            .into_iter()
            .map(|(source, (g, _))| (source, PathBuf::from(g)))
            .collect();
        // Then each host on its own, in parallel: its names checked, its
        // secrets mapped in name order (one pass); its key is checked when
        // first used (HostEntry::recipient). The
        // first error in host order is the one reported. The raw profile
        // is consumed: its strings move, none is copied.
        let hosts: Vec<HostEntry> = raw
            .hosts
            .into_par_iter()
            // (Collected in order, then the first error taken.)
            .map(|(host, h)| -> Result<HostEntry, ProfileError> {
                let name = HostName::new(host).map_err(name_err)?;
                let on_host = h
                    .host
                    .map(|o| HostName::new(o).map_err(name_err))
                    .transpose()?;
                let secrets = h
                    .secrets
                    .into_iter()
                    .map(|(secret, s)| {
                        let sname = SecretName::new(secret).map_err(name_err)?;
                        let entry = SecretEntry {
                            name: sname.clone(),
                            source: resolved[s.file.as_str()].clone(),
                            file: s.file,
                            generator: s.generator.map(PathBuf::from),
                        };
                        Ok((sname, entry))
                    })
                    .collect::<Result<BTreeMap<_, _>, ProfileError>>()?;
                Ok(HostEntry {
                    name,
                    kind: h.kind.unwrap_or_default(),
                    host: on_host,
                    host_pubkey: h.host_pubkey,
                    recipient: std::sync::OnceLock::new(),
                    secrets,
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .collect::<Result<_, _>>()?;
        let hosts: BTreeMap<HostName, HostEntry> =
            hosts.into_iter().map(|h| (h.name.clone(), h)).collect();
        let mut sources: Vec<std::sync::Arc<Path>> = resolved.into_values().collect();
        sources.sort_unstable_by(|a, b| a.as_os_str().cmp(b.as_os_str()));
        // Two spellings of one file (`./a.age`, `a.age`): listed once.
        sources.dedup();
        Ok(Profile {
            path: path.to_owned(),
            root: root.to_owned(),
            identities,
            extra_recipients: raw.extra_recipients,
            identity_recipients,
            rekeyed_dir,
            rekeyed_dir_rel: raw.rekeyed_dir,
            hosts,
            sources,
            generators,
            sha256,
        })
    }
}

/// `Ok` when `version` is the profile version this build reads.
fn version_is_ours(version: Option<&serde_json::Value>, path: &Path) -> Result<(), ProfileError> {
    match version {
        Some(serde_json::Value::Number(n)) if n.as_u64() == Some(PROFILE_VERSION) => Ok(()),
        other => Err(ProfileError::Version {
            path: path.to_owned(),
            found: other.map_or("missing".into(), |v| v.to_string()),
        }),
    }
}

/// Joins a flake-relative path to the root, dropping `.` components so that
/// messages show `secrets/db.age`, not `./secrets/db.age`.
fn resolve(root: &Path, rel: &str) -> PathBuf {
    let rel: PathBuf = Path::new(rel)
        .components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect();
    join_root(root, &rel)
}

fn join_root(root: &Path, rel: &Path) -> PathBuf {
    if root == Path::new(".") || root.as_os_str().is_empty() {
        rel.to_owned()
    } else {
        root.join(rel)
    }
}

/// A relative path with `.` dropped and `..` applied lexically; `None` when
/// it climbs above its start (or is absolute). The empty path is the start.
pub fn normalize(rel: &str) -> Option<PathBuf> {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in Path::new(rel).components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

impl crate::common::error::Classify for ProfileError {
    fn class(&self) -> crate::common::error::ErrorClass {
        crate::common::error::ErrorClass::BadInput
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINtWm69iYTGTy5i5e7G0xyE8zACs6fQk57xCA9AOuhV+ web1";

    fn parse(json: &str) -> Result<Profile, ProfileError> {
        Profile::parse(json.as_bytes(), Path::new("p.json"), Path::new("/flake"))
    }

    /// Hosts read apart (in parallel) give exactly what the whole document
    /// gives, and nothing where it fails (then the whole document is read
    /// again for the error): valid profiles, escapes, out-of-order and
    /// repeated keys, unknown fields, wrong types, deep nesting, truncation
    /// at every byte.
    #[test]
    fn hosts_read_apart_are_the_hosts_read_whole() {
        let whole = |doc: &str| serde_json::from_str::<RawProfile>(doc).ok();
        let docs = [
            format!(r#"{{"version":1,"rekeyedDir":"./r","hosts":{{"a":{{"hostPubkey":"{KEY}","secrets":{{"s":{{"file":"./s.age"}},"t":{{"file":"./t.age","generator":"/g"}}}}}},"b\u0030":{{"kind":"home","host":"a","secrets":{{}}}}}}}}"#),
            r#"{"version":1,"rekeyedDir":"./r","hosts":{"b":{},"a":{"secrets":{"z":{"file":"z"},"y":{"file":"y"}}}}}"#.into(),
            r#"{"version":1,"rekeyedDir":"./r","hosts":{"a":{},"a":{}}}"#.into(),
            r#"{"version":1,"rekeyedDir":"./r","hosts":{"a":{"secrets":{"s":{"file":"x"},"s":{"file":"y"}}}}}"#.into(),
            r#"{"version":1,"rekeyedDir":"./r","hosts":{"a":{"secret":{}}}}"#.into(),
            r#"{"version":1,"rekeyedDir":"./r","hosts":{"a":{"secrets":{"s":{"file":1}}}}}"#.into(),
            r#"{"version":1,"rekeyedDir":"./r","hosts":{"a":[]}}"#.into(),
            r#"{"version":1,"rekeyedDir":"./r","hosts":{},"hosts":{}}"#.into(),
            r#"{"version":2,"rekeyedDir":"./r","hosts":{"a":{}}}"#.into(),
            format!(r#"{{"version":1,"rekeyedDir":"./r","hosts":{{"a":{{"x":{}{}}}}}}}"#, "[".repeat(200), "]".repeat(200)),
        ];
        for doc in &docs {
            assert_eq!(
                Profile::parse_hosts_apart(doc.as_bytes()),
                whole(doc),
                "{doc}"
            );
            for cut in 0..doc.len() {
                let Some(part) = doc.get(..cut) else { continue };
                assert_eq!(Profile::parse_hosts_apart(part.as_bytes()), None, "{part}");
            }
        }
        assert!(whole(&docs[0]).is_some() && whole(&docs[1]).is_some());
        // An error is the one reading the whole file gives (its position).
        let e = parse(&docs[3]).unwrap_err().to_string();
        assert!(
            e.contains("duplicate key \"s\"") && e.contains(" at line 1 column "),
            "{e}"
        );
    }

    fn with_host(host: &str, key: &str, secret: &str, file: &str) -> String {
        format!(
            r#"{{"version":1,"identities":["./k"],"rekeyedDir":"./r","hosts":{{"{host}":{{"hostPubkey":"{key}","secrets":{{"{secret}":{{"file":"{file}"}}}}}}}}}}"#
        )
    }

    #[test]
    fn parses_the_design_example() {
        let p = parse(&with_host("web1", KEY, "db-password", "./secrets/db.age")).unwrap();
        let h = p.hosts.values().next().unwrap();
        assert_eq!(h.name.as_str(), "web1");
        let s = h.secrets.values().next().unwrap();
        assert_eq!(&*s.source, Path::new("/flake/secrets/db.age"));
        assert_eq!(p.rekeyed_dir, Path::new("/flake/r"));
    }

    #[test]
    fn refuses_bad_documents() {
        let cases = [
            ("not json", "not a valid nixseal profile"),
            (r#"{"version":2,"rekeyedDir":"r"}"#, "version 2"),
            (r#"{"rekeyedDir":"r"}"#, "version missing"),
            (
                r#"{"version":1,"rekeyedDir":"r","extra":1}"#,
                "unknown field `extra`",
            ),
            (
                r#"{"version":1,"rekeyedDir":"/abs"}"#,
                "rekeyedDir \"/abs\"",
            ),
            (
                r#"{"version":1,"rekeyedDir":"r","extraRecipients":["nope"]}"#,
                "extraRecipients entry \"nope\"",
            ),
        ];
        for (json, want) in cases {
            let e = parse(json).unwrap_err().to_string();
            assert!(e.contains(want), "{json}: {e}");
            assert!(e.contains("p.json"), "{e}");
        }
    }

    #[test]
    fn generators_are_absolute_and_one_per_file() {
        let two = |g1: &str, g2: &str| {
            format!(
                r#"{{"version":1,"rekeyedDir":"r","hosts":{{
                  "a":{{"hostPubkey":"{KEY}","secrets":{{"s":{{"file":"s.age","generator":"{g1}"}}}}}},
                  "b":{{"hostPubkey":"{KEY}","secrets":{{"t":{{"file":"./s.age","generator":"{g2}"}}}}}}}}}}"#
            )
        };
        // The generator of host `h`'s only secret.
        let g = |p: &Profile, h: &str| {
            let host = p.hosts.values().find(|e| e.name.as_str() == h).unwrap();
            host.secrets.values().next().unwrap().generator.clone()
        };
        let p = parse(&two("/nix/store/x-gen", "/nix/store/x-gen")).unwrap();
        assert_eq!(g(&p, "a"), Some(PathBuf::from("/nix/store/x-gen")));
        assert_eq!(g(&p, "b"), Some(PathBuf::from("/nix/store/x-gen")));
        let e = parse(&two("/nix/store/x-gen", "/nix/store/y-gen"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("p.json")
                && e.contains("different generators")
                && e.contains("a/s")
                && e.contains("b/t"),
            "{e}"
        );
        let e = parse(&two("gen.sh", "gen.sh")).unwrap_err().to_string();
        assert!(
            e.contains("hosts.a.secrets.s.generator \"gen.sh\"") && e.contains("absolute"),
            "{e}"
        );
        // No generator: none.
        let p = parse(&with_host("h", KEY, "s", "s.age")).unwrap();
        assert_eq!(g(&p, "h"), None);
    }

    #[test]
    fn a_host_or_secret_named_twice_is_an_error() {
        let twice_host = format!(
            r#"{{"version":1,"rekeyedDir":"r","hosts":{{"h":{{"hostPubkey":"{KEY}"}},"h":{{"hostPubkey":"{KEY}"}}}}}}"#
        );
        let e = parse(&twice_host).unwrap_err().to_string();
        assert!(
            e.contains("p.json") && e.contains("duplicate key \"h\""),
            "{e}"
        );
        let twice_secret = format!(
            r#"{{"version":1,"rekeyedDir":"r","hosts":{{"h":{{"hostPubkey":"{KEY}","secrets":{{"s":{{"file":"a"}},"s":{{"file":"b"}}}}}}}}}}"#
        );
        let e = parse(&twice_secret).unwrap_err().to_string();
        assert!(e.contains("duplicate key \"s\""), "{e}");
        let twice_field = r#"{"version":1,"rekeyedDir":"r","rekeyedDir":"s"}"#;
        let e = parse(twice_field).unwrap_err().to_string();
        assert!(e.contains("duplicate field `rekeyedDir`"), "{e}");
    }

    #[test]
    fn refuses_bad_names_and_keys() {
        for host in ["", "../x", ".h", "a/b"] {
            let e = parse(&with_host(host, KEY, "s", "s.age")).unwrap_err();
            assert!(matches!(e, ProfileError::Name { .. }), "{host}: {e}");
        }
        let e = parse(&with_host("h", KEY, "..", "s.age")).unwrap_err();
        assert!(matches!(e, ProfileError::Name { .. }), "{e}");
        // A bad host key is that host's problem, kept as data: the profile
        // (and the rest of the fleet) is still usable.
        let p = parse(&with_host("h", "ssh-rsa AAAAB3NzaC1yc2E", "s", "s.age")).unwrap();
        let e = p.hosts["h"].recipient().as_ref().unwrap_err().to_string();
        assert!(e.contains("ssh-rsa"), "{e}");
    }

    #[test]
    fn a_missing_host_key_is_null_absent_or_empty() {
        for key in [
            r#""hostPubkey":null,"#,
            "",
            r#""hostPubkey":"","#,
            r#""hostPubkey":"  ","#,
        ] {
            let json = format!(
                r#"{{"version":1,"rekeyedDir":"r","hosts":{{"new":{{{key}"secrets":{{}}}},"old":{{"hostPubkey":"{KEY}"}}}}}}"#
            );
            let p = parse(&json).unwrap_or_else(|e| panic!("{json}: {e}"));
            assert_eq!(
                p.hosts["new"].recipient().as_ref().unwrap_err(),
                &HostPubkeyError::Missing
            );
            assert!(p.hosts["old"].recipient().is_ok());
        }
    }

    #[test]
    fn kind_and_host_of_homes() {
        let doc =
            |entries: &str| format!(r#"{{"version":1,"rekeyedDir":"r","hosts":{{{entries}}}}}"#);
        let p = parse(&doc(&format!(
            r#""web1":{{"hostPubkey":"{KEY}","kind":"host"}},
               "web1.alice":{{"hostPubkey":"{KEY}","kind":"home","host":"web1"}},
               "laptop.bob":{{"hostPubkey":"{KEY}","kind":"home"}},
               "old":{{"hostPubkey":"{KEY}"}}"#
        )))
        .unwrap();
        assert_eq!(p.hosts["web1"].kind, TargetKind::Host);
        assert_eq!(p.hosts["old"].kind, TargetKind::Host);
        assert_eq!(p.hosts["web1.alice"].kind, TargetKind::Home);
        assert_eq!(
            p.hosts["web1.alice"].host.as_ref().unwrap().as_str(),
            "web1"
        );
        assert_eq!(p.label("web1.alice"), "home web1.alice");
        assert_eq!(p.label("laptop.bob"), "home laptop.bob");
        assert_eq!(p.label("web1"), "host web1");
        let carried: Vec<&str> = p.carried_by("web1").iter().map(|h| h.as_str()).collect();
        assert_eq!(carried, ["web1", "web1.alice"]);
        // Refused, naming the entry: an unknown kind, a host that is not
        // there or is a home, a host with a host, a repeated field.
        for (entries, want) in [
            (
                format!(r#""h":{{"hostPubkey":"{KEY}","kind":"vm"}}"#),
                "in \"h\": unknown variant `vm`, expected `host` or `home`",
            ),
            (
                format!(r#""h.a":{{"hostPubkey":"{KEY}","kind":"home","host":"nosuch"}}"#),
                "home h.a has \"host\": \"nosuch\", but the profile has no target of that name",
            ),
            (
                format!(
                    r#""l.b":{{"hostPubkey":"{KEY}","kind":"home"}},
                       "h.a":{{"hostPubkey":"{KEY}","kind":"home","host":"l.b"}}"#
                ),
                "home h.a has \"host\": \"l.b\", but that target is a home, not a host",
            ),
            (
                format!(r#""w":{{"hostPubkey":"{KEY}"}},"v":{{"hostPubkey":"{KEY}","host":"w"}}"#),
                "host v has \"host\": \"w\", but only a home",
            ),
            (
                format!(r#""h":{{"hostPubkey":"{KEY}","kind":"home","kind":"host"}}"#),
                "in \"h\": duplicate field `kind`",
            ),
        ] {
            let e = parse(&doc(&entries)).unwrap_err();
            assert!(
                matches!(
                    e,
                    ProfileError::BadHostOfHome { .. } | ProfileError::Json { .. }
                ),
                "{e}"
            );
            assert!(
                crate::common::error::Classify::class(&e)
                    == crate::common::error::ErrorClass::BadInput
            );
            let e = e.to_string();
            assert!(e.contains(want) && e.contains("p.json"), "{want}: {e}");
        }
    }

    #[test]
    fn shared_keys_are_found() {
        let json = format!(
            r#"{{"version":1,"rekeyedDir":"r","hosts":{{"a":{{"hostPubkey":"{KEY}"}},"b":{{"hostPubkey":"{KEY} other comment"}},"c":{{"hostPubkey":null}}}}}}"#
        );
        let shared = parse(&json).unwrap().shared_host_keys();
        assert_eq!(shared.len(), 1);
        let names: Vec<&str> = shared[0].1.iter().map(|h| h.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
    }

    #[test]
    fn paths_stay_inside_the_root_and_rekeyed_dir_is_not_the_root() {
        let doc = |rd: &str, file: &str| {
            format!(
                r#"{{"version":1,"rekeyedDir":"{rd}","hosts":{{"h":{{"hostPubkey":"{KEY}","secrets":{{"s":{{"file":"{file}"}}}}}}}}}}"#
            )
        };
        let p = parse(&doc("./a/../r/./x", "./s/../t.age")).unwrap();
        assert_eq!(p.rekeyed_dir, Path::new("/flake/r/x"));
        assert_eq!(
            &*p.hosts["h"].secrets["s"].source,
            Path::new("/flake/t.age")
        );
        for rd in [".", "./", "a/..", ""] {
            let e = parse(&doc(rd, "s.age")).unwrap_err().to_string();
            assert!(
                e.contains("flake root itself") || e.contains("must be a path relative"),
                "{rd}: {e}"
            );
        }
        for rd in ["..", "../r", "a/../../r"] {
            let e = parse(&doc(rd, "s.age")).unwrap_err().to_string();
            assert!(e.contains("resolves outside the flake root"), "{rd}: {e}");
        }
        let e = parse(&doc("r", "../s.age")).unwrap_err().to_string();
        assert!(
            e.contains("hosts.h.secrets.s.file") && e.contains("outside"),
            "{e}"
        );
    }
}
