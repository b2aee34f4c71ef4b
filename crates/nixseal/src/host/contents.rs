//! Step 5's contents: read the sources, decrypt them (in parallel) with the
//! host identities, write each installed file into the new generation, and
//! render templates.

use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use rayon::prelude::*;
use zeroize::Zeroizing;

use super::identity::{self as host, HostIdentity, HostKeyError};
use super::plan::{InstallPlan, Piece};
use super::{fault, generation, DeployError, FailureReason, SecretFailure, SourceProblem};
use crate::contract::manifest::{Manifest, Secret};

/// What was decrypted for one secret of the plan.
pub(super) struct Plain {
    pub(super) bytes: Zeroizing<Vec<u8>>,
    /// Installed and different (content, owner or mode) from the previous
    /// generation's file.
    pub(super) changed: bool,
}

/// Reads every source of the plan (in parallel), in plan order.
pub(super) fn read_sources(plan: &InstallPlan) -> Result<Vec<Vec<u8>>, DeployError> {
    plan.secrets
        .par_iter()
        .map(|s| read_source(s.secret))
        .collect()
}

pub(super) fn read_source(s: &Secret) -> Result<Vec<u8>, DeployError> {
    let err = |problem| DeployError::Source {
        secret: s.name.clone(),
        path: PathBuf::from(&s.source),
        problem,
    };
    // A regular file of bounded size only: a FIFO, a device or a sparse
    // giant is refused before anything is read or allocated.
    let bytes =
        crate::common::fsutil::read_regular(Path::new(&s.source), crate::common::fsutil::MAX_FILE)
            .map_err(|e| {
                if e.kind() == io::ErrorKind::NotFound {
                    err(SourceProblem::Missing)
                } else {
                    err(SourceProblem::Unreadable(e))
                }
            })?;
    if !bytes.starts_with(b"age-encryption.org/v1\n") {
        return Err(err(SourceProblem::NotAge));
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
fn decrypt(ct: &[u8], ids: &[HostIdentity]) -> Result<Zeroizing<Vec<u8>>, FailureReason> {
    let ids: Vec<&dyn age::Identity> = ids.iter().map(|i| i as &dyn age::Identity).collect();
    crate::common::crypto::decrypt(ct, &ids).map_err(|e| match e {
        crate::common::crypto::DecryptFailure::NoMatchingIdentity => FailureReason::NotForThisHost,
        e => FailureReason::Decrypt(e),
    })
}

pub(super) struct Built {
    /// Parallel to the plan's secrets.
    pub(super) secrets: Vec<Plain>,
}

/// Decrypts every secret of the plan (in parallel) and renders every
/// template; with `dir`, writes installed files there and compares them
/// with `prev`.
pub(super) fn build(
    plan: &InstallPlan,
    sources: &[Vec<u8>],
    ids: &[HostIdentity],
    dir: Option<&OwnedFd>,
    prev: Option<&OwnedFd>,
) -> Result<Built, DeployError> {
    let first = AtomicBool::new(true);
    let results: Vec<Result<Plain, SecretFailure>> = plan
        .secrets
        .par_iter()
        .zip(sources)
        .map(|(s, ciphertext)| {
            let name = &s.secret.name;
            let fail = |reason| SecretFailure {
                what: "secret",
                name: name.clone(),
                reason,
            };
            let bytes = decrypt(ciphertext, ids).map_err(fail)?;
            let mut changed = false;
            if let (Some(dir), Some(install)) = (dir, &s.install) {
                let o = install.owner;
                generation::write_new_file(dir, name, o.uid, o.gid, o.mode, &bytes)
                    .map_err(|e| fail(FailureReason::Write(e)))?;
                if first.swap(false, Ordering::Relaxed) {
                    fault::point("mid-decrypt");
                }
                changed = !prev
                    .is_some_and(|p| generation::same_file(p, name, o.uid, o.gid, o.mode, &bytes));
            }
            Ok(Plain { bytes, changed })
        })
        .collect();
    let mut failures = Vec::new();
    let mut secrets = Vec::with_capacity(plan.secrets.len());
    for r in results {
        match r {
            Ok(p) => secrets.push(p),
            Err(f) => failures.push(f),
        }
    }
    if !failures.is_empty() {
        return Err(DeployError::Secrets { failures });
    }
    for t in &plan.templates {
        let fail = |reason| DeployError::Secrets {
            failures: vec![SecretFailure {
                what: "template",
                name: t.template.name.clone(),
                reason,
            }],
        };
        let out = render(&t.pieces, &secrets).map_err(fail)?;
        if let Some(dir) = dir {
            let o = t.owner;
            generation::write_new_file(dir, &t.template.name, o.uid, o.gid, o.mode, &out)
                .map_err(|e| fail(FailureReason::Write(e)))?;
        }
    }
    Ok(Built { secrets })
}

/// A template's text with each placeholder replaced by its secret's
/// plaintext. Sized first and allocated once: growing the buffer would leave
/// unwiped copies of the plaintext in freed memory.
pub(super) fn render(
    pieces: &[Piece],
    secrets: &[Plain],
) -> Result<Zeroizing<Vec<u8>>, FailureReason> {
    let bytes = |p: &Piece| -> usize {
        match *p {
            Piece::Text(t) => t.len(),
            Piece::Secret(i) => secrets[i].bytes.len(),
        }
    };
    let len: usize = pieces.iter().map(bytes).sum();
    if len as u64 > crate::common::fsutil::MAX_FILE {
        return Err(FailureReason::TooLarge { bytes: len });
    }
    let mut out = Zeroizing::new(Vec::with_capacity(len));
    for p in pieces {
        match *p {
            Piece::Text(t) => out.extend_from_slice(t.as_bytes()),
            Piece::Secret(i) => out.extend_from_slice(&secrets[i].bytes),
        }
    }
    debug_assert_eq!(out.len(), len);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_pieces_with_one_allocation() {
        let plain = |b: &[u8]| Plain {
            bytes: Zeroizing::new(b.to_vec()),
            changed: false,
        };
        let secrets = [plain(b"AAA"), plain(b"B\n")];
        let out = render(
            &[
                Piece::Text("x="),
                Piece::Secret(0),
                Piece::Text(";y="),
                Piece::Secret(1),
                Piece::Secret(0),
                Piece::Text("\n"),
            ],
            &secrets,
        )
        .unwrap();
        assert_eq!(out.as_slice(), b"x=AAA;y=B\nAAA\n");
        assert_eq!(out.capacity(), out.len());
        assert_eq!(render(&[], &secrets).unwrap().as_slice(), b"");
    }
}
