//! `nixseal status`: which hosts run stale ciphertexts and need a redeploy.
//!
//! The NixOS module imports each rekeyed file as
//! `builtins.path { path = <rekeyedDir>/<host>/<secret>.age; name = "<host>-<secret>.age"; }`
//! and lists the resulting store path as the secret's `source` in the host
//! manifest. So the store path the working tree *would* deploy can be computed
//! here with [`crate::store_path`], without Nix, and compared with the
//! `source`s of a host's running (or built) manifest.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::contract::layout::store_name;
use crate::contract::names::HostName;
use crate::contract::profile::TargetKind;
use crate::operator::profile::Profile;
use crate::store_path::{self, StorePath, StorePathError};

/// The part of a host manifest (version 1) that status compares. The full,
/// strict schema is validated by `nixseal deploy`; status only reads sources,
/// so a manifest from a newer nixseal can still be compared.
#[derive(Debug, Deserialize)]
struct ManifestSources {
    secrets: Vec<ManifestSecret>,
}

#[derive(Debug, Deserialize)]
struct ManifestSecret {
    name: String,
    source: String,
}

/// The unit file, inside a NixOS system, whose `ExecStart` names the manifest.
pub const UNIT_IN_SYSTEM: &str = "etc/systemd/system/nixseal-activate.service";

/// Why the status of a host could not be determined.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StatusError {
    /// The host is not in the profile.
    #[error("host {host} is not in the profile {profile} (hosts: {known})")]
    UnknownHost {
        /// The host asked for.
        host: String,
        /// The profile file.
        profile: PathBuf,
        /// The profile's hosts, comma-separated.
        known: String,
    },
    /// The manifest (or the system's unit file) could not be read.
    #[error("cannot read the manifest of {kind} {host} at {path}: {source}")]
    Read {
        /// Host or home.
        kind: TargetKind,
        /// The host.
        host: String,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The manifest is not JSON with `secrets[].name` and `.source`.
    #[error("{path} ({kind} {host}) is not a nixseal manifest: {source}")]
    Json {
        /// Host or home.
        kind: TargetKind,
        /// The host.
        host: String,
        /// The file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// A NixOS system without a nixseal unit naming a manifest.
    #[error("{path} ({kind} {host}) is a directory but not a NixOS system with nixseal: {UNIT_IN_SYSTEM} does not name a `--manifest`")]
    NoManifestInSystem {
        /// Host or home.
        kind: TargetKind,
        /// The host.
        host: String,
        /// The directory given.
        path: PathBuf,
    },
    /// The working tree's rekeyed file exists but its store path cannot be computed.
    #[error("{kind} {host}, secret {secret}: {source}")]
    StorePath {
        /// Host or home.
        kind: TargetKind,
        /// The host.
        host: String,
        /// The secret.
        secret: String,
        /// Why.
        #[source]
        source: StorePathError,
    },
}

impl StatusError {
    /// The same error, naming the target as a `kind` (host or home).
    fn of(mut self, of: TargetKind) -> Self {
        match &mut self {
            StatusError::Read { kind, .. }
            | StatusError::Json { kind, .. }
            | StatusError::NoManifestInSystem { kind, .. }
            | StatusError::StorePath { kind, .. } => *kind = of,
            StatusError::UnknownHost { .. } => {}
        }
        self
    }
}

/// How one secret of a host compares.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SecretState {
    /// The host runs exactly the working tree's rekeyed file.
    Current,
    /// The host runs another ciphertext than the working tree holds.
    Stale {
        /// The store path in the manifest.
        running: String,
        /// The store path of the working tree's file.
        expected: StorePath,
    },
    /// In the profile and rekeyed, but not in the host's manifest (added since).
    NotDeployed {
        /// The store path of the working tree's file.
        expected: StorePath,
    },
    /// In the profile, but the working tree has no rekeyed file (run renc).
    NotRekeyed {
        /// The working tree file that is missing.
        path: PathBuf,
    },
    /// In the manifest, but no longer in the profile (removed since).
    Removed {
        /// The store path in the manifest.
        running: String,
    },
}

impl SecretState {
    /// Whether a redeploy of the host changes this secret.
    pub fn needs_redeploy(&self) -> bool {
        !matches!(self, SecretState::Current | SecretState::NotRekeyed { .. })
    }
}

/// The comparison for one host.
#[derive(Debug, Clone)]
pub struct HostStatus {
    /// The host.
    pub host: HostName,
    /// The manifest compared with.
    pub manifest: PathBuf,
    /// Each secret of the profile or the manifest, by name.
    pub secrets: BTreeMap<String, SecretState>,
}

impl HostStatus {
    /// Whether the host runs anything other than the working tree would deploy.
    pub fn needs_redeploy(&self) -> bool {
        self.secrets.values().any(SecretState::needs_redeploy)
    }

    /// Whether the working tree lacks rekeyed files for this host.
    pub fn needs_renc(&self) -> bool {
        self.secrets
            .values()
            .any(|s| matches!(s, SecretState::NotRekeyed { .. }))
    }
}

/// The manifest a path stands for: a manifest file itself, or a NixOS system
/// (e.g. `/run/current-system` or a `nixos-rebuild build` result) whose
/// `nixseal-activate.service` names it.
pub fn resolve_manifest(host: &str, path: &Path) -> Result<PathBuf, StatusError> {
    if !path.is_dir() {
        return Ok(path.to_owned());
    }
    let unit = path.join(UNIT_IN_SYSTEM);
    let bytes = crate::common::fsutil::read_regular(&unit, crate::common::fsutil::MAX_FILE)
        .map_err(|source| StatusError::Read {
            kind: TargetKind::Host,
            host: host.to_owned(),
            path: unit.clone(),
            source,
        })?;
    let text = String::from_utf8_lossy(&bytes);
    text.lines()
        .filter_map(|l| l.strip_prefix("ExecStart="))
        .find_map(|l| {
            let mut words = l.split_whitespace();
            words.find(|w| *w == "--manifest")?;
            words.next().map(PathBuf::from)
        })
        .ok_or_else(|| StatusError::NoManifestInSystem {
            kind: TargetKind::Host,
            host: host.to_owned(),
            path: path.to_owned(),
        })
}

/// Compares `host`'s manifest at `manifest` (a file or a NixOS system) with the
/// rekeyed files of the working tree named by `profile`.
pub fn host_status(
    profile: &Profile,
    host: &str,
    manifest: &Path,
) -> Result<HostStatus, StatusError> {
    let entry = profile
        .hosts
        .get(host)
        .ok_or_else(|| StatusError::UnknownHost {
            host: host.to_owned(),
            profile: profile.path.clone(),
            known: profile
                .hosts
                .keys()
                .map(HostName::as_str)
                .collect::<Vec<_>>()
                .join(", "),
        })?;
    let kind = entry.kind;
    let manifest = resolve_manifest(host, manifest).map_err(|e| e.of(kind))?;
    // A regular file of bounded size (a FIFO or device is refused, not read).
    let bytes = crate::common::fsutil::read_regular(&manifest, crate::common::fsutil::MAX_FILE)
        .map_err(|source| StatusError::Read {
            kind,
            host: host.to_owned(),
            path: manifest.clone(),
            source,
        })?;
    let running: ManifestSources =
        serde_json::from_slice(&bytes).map_err(|source| StatusError::Json {
            kind: entry.kind,
            host: host.to_owned(),
            path: manifest.clone(),
            source,
        })?;
    let mut running: BTreeMap<String, String> = running
        .secrets
        .into_iter()
        .map(|s| (s.name, s.source))
        .collect();

    let layout = profile.layout();
    let mut secrets = BTreeMap::new();
    for name in entry.secrets.keys() {
        let file = layout.output(host, name.as_str());
        let deployed = running.remove(name.as_str());
        let state = if !file.is_file() {
            SecretState::NotRekeyed { path: file }
        } else {
            let expected = store_path::source_store_path(&file, &store_name(host, name.as_str()))
                .map_err(|source| StatusError::StorePath {
                kind: entry.kind,
                host: host.to_owned(),
                secret: name.to_string(),
                source,
            })?;
            match deployed {
                Some(r) if r == expected.to_string() => SecretState::Current,
                Some(r) => SecretState::Stale {
                    running: r,
                    expected,
                },
                None => SecretState::NotDeployed { expected },
            }
        };
        secrets.insert(name.to_string(), state);
    }
    for (name, r) in running {
        secrets.insert(name, SecretState::Removed { running: r });
    }
    Ok(HostStatus {
        host: entry.name.clone(),
        manifest,
        secrets,
    })
}

impl crate::common::error::Classify for StatusError {
    fn class(&self) -> crate::common::error::ErrorClass {
        crate::common::error::ErrorClass::BadInput
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKz7ImoUTnDGygVAnHosv8eMZLvLwcpu36+ZXNI5mTf1";

    fn fixture() -> (tempfile::TempDir, Profile) {
        let dir = tempfile::tempdir().unwrap();
        let profile = format!(
            r#"{{"version":1,"identities":[],"extraRecipients":[],"rekeyedDir":"./rekeyed",
               "hosts":{{"web1":{{"hostPubkey":"{KEY}","secrets":{{
                 "a":{{"file":"./a.age"}},"b":{{"file":"./b.age"}},"c":{{"file":"./c.age"}},"d":{{"file":"./d.age"}}}}}}}}}}"#
        );
        std::fs::write(dir.path().join("profile.json"), profile).unwrap();
        let host = dir.path().join("rekeyed/web1");
        std::fs::create_dir_all(&host).unwrap();
        for s in ["a", "b", "c"] {
            std::fs::write(host.join(format!("{s}.age")), format!("ciphertext {s}")).unwrap();
        }
        let p = Profile::load(&dir.path().join("profile.json"), dir.path()).unwrap();
        (dir, p)
    }

    fn expected(p: &Profile, secret: &str) -> String {
        let file = p.rekeyed_dir.join("web1").join(format!("{secret}.age"));
        store_path::source_store_path(&file, &format!("web1-{secret}.age"))
            .unwrap()
            .to_string()
    }

    #[test]
    fn compares_each_secret_with_the_working_tree() {
        let (dir, p) = fixture();
        let manifest = dir.path().join("m.json");
        let json = serde_json::json!({"version": 1, "secrets": [
            {"name": "a", "source": expected(&p, "a")},
            {"name": "b", "source": "/nix/store/00000000000000000000000000000000-web1-b.age"},
            {"name": "gone", "source": "/nix/store/11111111111111111111111111111111-web1-gone.age"},
        ]});
        std::fs::write(&manifest, json.to_string()).unwrap();
        let st = host_status(&p, "web1", &manifest).unwrap();
        assert_eq!(st.secrets["a"], SecretState::Current);
        assert!(
            matches!(&st.secrets["b"], SecretState::Stale { running, expected: e }
            if running.ends_with("-web1-b.age") && e.to_string() == expected(&p, "b"))
        );
        assert!(matches!(&st.secrets["c"], SecretState::NotDeployed { .. }));
        assert!(
            matches!(&st.secrets["d"], SecretState::NotRekeyed { path } if path.ends_with("web1/d.age"))
        );
        assert!(matches!(&st.secrets["gone"], SecretState::Removed { .. }));
        assert!(st.needs_redeploy() && st.needs_renc());
    }

    #[test]
    fn current_host_needs_nothing() {
        let (dir, p) = fixture();
        let manifest = dir.path().join("m.json");
        let secrets: Vec<_> = ["a", "b", "c"]
            .iter()
            .map(|s| serde_json::json!({"name": s, "source": expected(&p, s)}))
            .collect();
        std::fs::write(
            &manifest,
            serde_json::json!({ "secrets": secrets }).to_string(),
        )
        .unwrap();
        let st = host_status(&p, "web1", &manifest).unwrap();
        assert!(!st.needs_redeploy());
        assert!(st.needs_renc()); // d is not rekeyed
    }

    #[test]
    fn a_system_directory_names_its_manifest() {
        let (dir, p) = fixture();
        let system = dir.path().join("system");
        let unit = system.join(UNIT_IN_SYSTEM);
        std::fs::create_dir_all(unit.parent().unwrap()).unwrap();
        let manifest = dir.path().join("m.json");
        std::fs::write(&manifest, r#"{"secrets":[]}"#).unwrap();
        std::fs::write(
            &unit,
            format!(
                "[Service]\nExecStart=/x/bin/nixseal deploy --manifest {}\n",
                manifest.display()
            ),
        )
        .unwrap();
        assert_eq!(resolve_manifest("web1", &system).unwrap(), manifest);
        assert_eq!(host_status(&p, "web1", &system).unwrap().manifest, manifest);

        std::fs::write(&unit, "[Service]\nExecStart=/bin/true\n").unwrap();
        let e = resolve_manifest("web1", &system).unwrap_err();
        assert!(matches!(e, StatusError::NoManifestInSystem { .. }), "{e}");
    }

    #[test]
    fn errors_name_the_host_and_file() {
        let (dir, p) = fixture();
        let e = host_status(&p, "web9", dir.path()).unwrap_err();
        assert!(
            e.to_string().contains("web9") && e.to_string().contains("web1"),
            "{e}"
        );
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "{").unwrap();
        let e = host_status(&p, "web1", &bad).unwrap_err();
        assert!(
            matches!(e, StatusError::Json { .. }) && e.to_string().contains("bad.json"),
            "{e}"
        );
        let e = host_status(&p, "web1", &dir.path().join("missing.json")).unwrap_err();
        assert!(matches!(e, StatusError::Read { .. }), "{e}");
        // A home is named as a home.
        let profile = format!(
            r#"{{"version":1,"rekeyedDir":"./rekeyed","hosts":{{
               "web1":{{"hostPubkey":"{KEY}"}},
               "web1.alice":{{"hostPubkey":"{KEY}","kind":"home","host":"web1"}}}}}}"#
        );
        std::fs::write(dir.path().join("homes.json"), profile).unwrap();
        let homes = Profile::load(&dir.path().join("homes.json"), dir.path()).unwrap();
        for (m, want) in [
            (
                dir.path().join("missing.json"),
                "cannot read the manifest of home web1.alice at",
            ),
            (bad.clone(), "(home web1.alice) is not a nixseal manifest"),
        ] {
            let e = host_status(&homes, "web1.alice", &m)
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{want}: {e}");
        }
        let e = host_status(&homes, "web1", &bad).unwrap_err().to_string();
        assert!(e.contains("(host web1)"), "{e}");
        // A device or FIFO as the manifest is refused, not read forever.
        let e = host_status(&p, "web1", Path::new("/dev/zero")).unwrap_err();
        assert!(e.to_string().contains("a character device"), "{e}");
    }
}
