//! Host manifests and fleet profiles for the tests, built from the
//! library's own serde types (`nixseal::manifest`, `nixseal::profile`) and
//! serialised by serde: a field the schema gains or renames is changed here,
//! not in every test that writes JSON by hand. Tests that need a document
//! the schema refuses (unknown fields, wrong types) start from
//! [`to_value`] of a valid one and break it.

use std::collections::BTreeMap;
use std::path::Path;

use nixseal::manifest::{HostKey, Manifest, Secret, Template, VERSION as MANIFEST_VERSION};
use nixseal::profile::{RawHost, RawProfile, RawSecret, PROFILE_VERSION};
use serde::Serialize;

/// A manifest with one ed25519 host key and the given locations.
pub fn manifest(
    host_key: &Path,
    mount_point: &str,
    symlink: &str,
    keep_generations: u32,
    secrets: Vec<Secret>,
    templates: Vec<Template>,
) -> Manifest {
    Manifest {
        version: MANIFEST_VERSION,
        session: None,
        host_keys: vec![HostKey {
            path: host_key.to_str().expect("UTF-8 key path").to_owned(),
            key_type: "ed25519".into(),
        }],
        mount_point: mount_point.into(),
        symlink: symlink.into(),
        keep_generations,
        state_dir: None,
        secrets,
        templates,
    }
}

/// A secret at its default path `<symlink>/<name>`, no units.
pub fn secret(
    name: &str,
    source: &str,
    owner: &str,
    group: &str,
    mode: &str,
    symlink: &str,
) -> Secret {
    Secret {
        name: name.into(),
        source: source.into(),
        owner: owner.into(),
        group: group.into(),
        mode: mode.into(),
        path: format!("{symlink}/{name}"),
        symlink: true,
        restart_units: Vec::new(),
        reload_units: Vec::new(),
        needed_for_users: false,
        allow_plaintext_on_disk: false,
    }
}

/// A template at its default path `<symlink>/<name>`.
pub fn template(
    name: &str,
    content: &str,
    owner: &str,
    group: &str,
    mode: &str,
    symlink: &str,
) -> Template {
    Template {
        name: name.into(),
        content: content.into(),
        owner: owner.into(),
        group: group.into(),
        mode: mode.into(),
        path: format!("{symlink}/{name}"),
    }
}

/// A profile: `hosts` maps each host to its public key (`None`: not known
/// yet) and its secrets (name → master file, generator).
pub fn profile(
    identities: &[String],
    extra_recipients: &[String],
    rekeyed_dir: &str,
    hosts: impl IntoIterator<
        Item = (
            String,
            Option<String>,
            Vec<(String, String, Option<String>)>,
        ),
    >,
) -> RawProfile {
    RawProfile {
        version: PROFILE_VERSION,
        identities: identities.to_vec(),
        extra_recipients: extra_recipients.to_vec(),
        identity_recipients: BTreeMap::new(),
        rekeyed_dir: rekeyed_dir.into(),
        hosts: hosts
            .into_iter()
            .map(|(host, key, secrets)| {
                let secrets: BTreeMap<String, RawSecret> = secrets
                    .into_iter()
                    .map(|(name, file, generator)| (name, RawSecret { file, generator }))
                    .collect();
                (
                    host,
                    RawHost {
                        host_pubkey: key,
                        secrets,
                        kind: None,
                        host: None,
                    },
                )
            })
            .collect(),
    }
}

/// The JSON of a document, to break on purpose.
pub fn to_value(doc: &impl Serialize) -> serde_json::Value {
    serde_json::to_value(doc).expect("serialises")
}

/// Writes a document as pretty JSON.
pub fn write_json(path: &Path, doc: &impl Serialize) {
    std::fs::write(path, serde_json::to_vec_pretty(doc).expect("serialises")).unwrap();
}
