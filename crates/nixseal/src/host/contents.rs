//! Step 5's contents: read the sources, decrypt them (in parallel) with the
//! host identities, write each installed file into the new generation, and
//! render templates.

use std::collections::HashMap;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;
use zeroize::Zeroizing;

use super::accounts::Accounts;
use super::identity::{self as host, HostIdentity, HostKeyError};
use super::{fault, generation, DeployError, SecretFailure};
use crate::contract::manifest::{self, Manifest, Secret, Template};

/// One secret to decrypt.
pub(super) struct Item<'m> {
    pub(super) secret: &'m Secret,
    pub(super) install: bool,
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) mode: u32,
    pub(super) ciphertext: Vec<u8>,
}

/// What was decrypted for one item.
pub(super) struct Plain {
    pub(super) bytes: Zeroizing<Vec<u8>>,
    pub(super) changed: bool,
}

pub(super) fn read_source(s: &Secret) -> Result<Vec<u8>, DeployError> {
    let err = |reason: String| DeployError::Source {
        secret: s.name.clone(),
        path: PathBuf::from(&s.source),
        reason,
    };
    // A regular file of bounded size only: a FIFO, a device or a sparse
    // giant is refused before anything is read or allocated.
    let bytes = crate::common::fsutil::read_regular(Path::new(&s.source), crate::common::fsutil::MAX_FILE)
        .map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                err("does not exist (rebuild the host; if the rekeyed file is missing, run `nix run .#renc`)".into())
            } else {
                err(e.to_string())
            }
        })?;
    if !bytes.starts_with(b"age-encryption.org/v1\n") {
        return Err(err(
            "is not a binary age file (expected the `age-encryption.org/v1` header written by `nixseal renc`)".into(),
        ));
    }
    // Ciphertext is not secret: take the buffer out rather than copy it.
    let mut bytes = bytes;
    Ok(std::mem::take(&mut *bytes))
}

pub(super) fn load_keys(m: &Manifest, needed: bool) -> Result<Vec<HostIdentity>, HostKeyError> {
    if !needed {
        return Ok(Vec::new());
    }
    m.host_keys
        .iter()
        .map(|k| host::load(Path::new(&k.path)))
        .collect()
}

/// Decrypts with the host keys through the one shared age path
/// ([`crate::common::crypto::decrypt`]), phrasing the failures for a host.
fn decrypt(ct: &[u8], ids: &[HostIdentity]) -> Result<Zeroizing<Vec<u8>>, String> {
    let ids: Vec<&dyn age::Identity> = ids.iter().map(|i| i as &dyn age::Identity).collect();
    crate::common::crypto::decrypt(ct, &ids).map_err(|e| match e {
        crate::common::crypto::DecryptFailure::NoMatchingIdentity => {
            "not encrypted to this host's key (wrong host key, or stale rekey: run `nix run .#renc` and redeploy)".to_owned()
        }
        e => format!("cannot decrypt: {e}"),
    })
}

pub(super) struct Built {
    /// Parallel to `items`.
    pub(super) secrets: Vec<Plain>,
}

/// Decrypts every item (in parallel) and renders every template; with `dir`,
/// writes installed files there and compares them with `prev`.
pub(super) fn build(
    items: &[Item],
    templates: &[&Template],
    ids: &[HostIdentity],
    accounts: &Accounts,
    dir: Option<&OwnedFd>,
    prev: Option<&OwnedFd>,
) -> Result<Built, DeployError> {
    let first = AtomicBool::new(true);
    let results: Vec<Result<Plain, SecretFailure>> = items
        .par_iter()
        .map(|it| {
            let fail = |reason| SecretFailure {
                what: "secret",
                name: it.secret.name.clone(),
                reason,
            };
            let bytes = decrypt(&it.ciphertext, ids).map_err(fail)?;
            let mut changed = false;
            if let (Some(dir), true) = (dir, it.install) {
                generation::write_new_file(dir, &it.secret.name, it.uid, it.gid, it.mode, &bytes)
                    .map_err(|e| fail(format!("cannot write: {e}")))?;
                if first.swap(false, Ordering::Relaxed) {
                    fault::point("mid-decrypt");
                }
                changed = !prev.is_some_and(|p| {
                    generation::same_file(p, &it.secret.name, it.uid, it.gid, it.mode, &bytes)
                });
            }
            Ok(Plain { bytes, changed })
        })
        .collect();
    let mut failures = Vec::new();
    let mut secrets = Vec::with_capacity(items.len());
    for r in results {
        match r {
            Ok(p) => secrets.push(p),
            Err(f) => failures.push(f),
        }
    }
    if !failures.is_empty() {
        return Err(DeployError::Secrets { failures });
    }
    let by_name: HashMap<&str, &[u8]> = items
        .iter()
        .zip(&secrets)
        .map(|(it, p)| (it.secret.name.as_str(), p.bytes.as_slice()))
        .collect();
    for t in templates {
        let fail = |reason| SecretFailure {
            what: "template",
            name: t.name.clone(),
            reason,
        };
        let out = render(&t.content, &by_name).map_err(|r| DeployError::Secrets {
            failures: vec![fail(r)],
        })?;
        if let Some(dir) = dir {
            let uid = accounts.uid(&t.owner).unwrap_or(u32::MAX);
            let gid = accounts.gid(&t.group).unwrap_or(u32::MAX);
            let mode = manifest::parse_mode(&t.mode).unwrap_or(0);
            if uid == u32::MAX || gid == u32::MAX {
                unreachable!("validated owner of template {} has no id", t.name);
            }
            generation::write_new_file(dir, &t.name, uid, gid, mode, &out).map_err(|e| {
                DeployError::Secrets {
                    failures: vec![fail(format!("cannot write: {e}"))],
                }
            })?;
        }
    }
    Ok(Built { secrets })
}

/// Replaces `{{nixseal:NAME}}` placeholders with secret contents.
pub(super) fn render(
    content: &str,
    secrets: &HashMap<&str, &[u8]>,
) -> Result<Zeroizing<Vec<u8>>, String> {
    // Sized first and allocated once: growing the buffer would leave
    // unwiped copies of the plaintext in freed memory.
    let mut len = 0usize;
    let mut rest = content;
    while let Some(i) = rest.find(manifest::PLACEHOLDER_OPEN) {
        let after = &rest[i + manifest::PLACEHOLDER_OPEN.len()..];
        let end = after
            .find(manifest::PLACEHOLDER_CLOSE)
            .ok_or("unterminated placeholder")?;
        let name = &after[..end];
        let value = secrets
            .get(name)
            .ok_or_else(|| format!("placeholder names unknown secret {name:?}"))?;
        len += i + value.len();
        rest = &after[end + manifest::PLACEHOLDER_CLOSE.len()..];
    }
    len += rest.len();
    if len as u64 > crate::common::fsutil::MAX_FILE {
        return Err(format!(
            "renders to {len} bytes, more than the {} bytes nixseal writes",
            crate::common::fsutil::MAX_FILE
        ));
    }
    let mut out = Zeroizing::new(Vec::with_capacity(len));
    let mut rest = content;
    while let Some(i) = rest.find(manifest::PLACEHOLDER_OPEN) {
        out.extend_from_slice(&rest.as_bytes()[..i]);
        let after = &rest[i + manifest::PLACEHOLDER_OPEN.len()..];
        let end = after
            .find(manifest::PLACEHOLDER_CLOSE)
            .ok_or("unterminated placeholder")?;
        let name = &after[..end];
        let value = secrets
            .get(name)
            .ok_or_else(|| format!("placeholder names unknown secret {name:?}"))?;
        out.extend_from_slice(value);
        rest = &after[end + manifest::PLACEHOLDER_CLOSE.len()..];
    }
    out.extend_from_slice(rest.as_bytes());
    debug_assert_eq!(out.len(), len);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_placeholders() {
        let mut m: HashMap<&str, &[u8]> = HashMap::new();
        m.insert("a", b"AAA");
        m.insert("b", b"B\n");
        let out = render("x={{nixseal:a}};y={{nixseal:b}}{{nixseal:a}}\n", &m).unwrap();
        assert_eq!(out.as_slice(), b"x=AAA;y=B\nAAA\n");
        assert!(render("{{nixseal:zz}}", &m).is_err());
        assert_eq!(
            render("plain {{x}}", &m).unwrap().as_slice(),
            b"plain {{x}}"
        );
    }
}
