//! Step 6's custom paths: each secret or template whose `path` is not the
//! default `<symlink>/<name>` is placed there (a symlink through the stable
//! symlink, or a copy), and what the previous generation placed but this one
//! does not is removed. Each generation records its placements in
//! [`METADATA`].

use std::collections::HashSet;
use std::io::Read;
use std::os::fd::OwnedFd;

use rustix::fs::{openat, Mode, OFlags};
use serde::{Deserialize, Serialize};

use super::contents::{Built, Item};
use super::paths::{self, Trust};
use super::{switch, FinishFailure};
use crate::manifest::{self, Template};

/// The per-generation record of placed custom paths (not a valid secret
/// name, since names cannot start with `.`).
pub const METADATA: &str = ".nixseal.json";

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Metadata {
    pub(super) version: u32,
    pub(super) placed: Vec<Placed>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Placed {
    pub(super) path: String,
    /// Symlink target in symlink mode; `None` for a copy.
    #[serde(default)]
    pub(super) target: Option<String>,
}

pub(super) fn planned_placements(
    items: &[Item],
    templates: &[&Template],
    symlink: &str,
) -> Vec<Placed> {
    let mut v = Vec::new();
    for it in items.iter().filter(|i| i.install) {
        let s = it.secret;
        if !manifest::is_default_path(&s.path, symlink, &s.name) {
            v.push(Placed {
                path: s.path.clone(),
                target: s.symlink.then(|| format!("{symlink}/{}", s.name)),
            });
        }
    }
    for t in templates {
        if !manifest::is_default_path(&t.path, symlink, &t.name) {
            v.push(Placed {
                path: t.path.clone(),
                target: Some(format!("{symlink}/{}", t.name)),
            });
        }
    }
    v
}

pub(super) fn place_paths(
    items: &[Item],
    templates: &[&Template],
    built: &Built,
    symlink: &str,
    failures: &mut Vec<FinishFailure>,
) {
    let mut place = |name: &str, path: &str, copy: Option<(&Item, &[u8])>| {
        let (parent, base) = paths::split(path);
        let r = paths::open_dir(parent, true, Trust::NotWorldWritable)
            .map_err(|e| e.to_string())
            .and_then(|dir| {
                match copy {
                    None => {
                        switch::replace_symlink(&dir, base, &format!("{symlink}/{name}"), false)
                    }
                    Some((it, bytes)) => {
                        switch::replace_copy(&dir, base, it.uid, it.gid, it.mode, bytes)
                    }
                }
                .map_err(|e| e.to_string())
            });
        if let Err(reason) = r {
            failures.push(FinishFailure::Place {
                path: path.to_owned(),
                name: name.to_owned(),
                reason,
            });
        }
    };
    for (it, p) in items.iter().zip(&built.secrets) {
        let s = it.secret;
        if !it.install || manifest::is_default_path(&s.path, symlink, &s.name) {
            continue;
        }
        let copy = (!s.symlink).then_some((it, p.bytes.as_slice()));
        place(&s.name, &s.path, copy);
    }
    for t in templates {
        if !manifest::is_default_path(&t.path, symlink, &t.name) {
            place(&t.name, &t.path, None);
        }
    }
}

/// Removes custom paths the previous generation placed and this one does not.
pub(super) fn remove_stale(prev: &OwnedFd, placed: &[Placed], failures: &mut Vec<FinishFailure>) {
    let Ok(fd) = openat(
        prev,
        METADATA,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        return;
    };
    let mut text = Vec::new();
    if std::fs::File::from(fd).read_to_end(&mut text).is_err() {
        return;
    }
    let Ok(old) = serde_json::from_slice::<Metadata>(&text) else {
        return;
    };
    let now: HashSet<&str> = placed.iter().map(|p| p.path.as_str()).collect();
    for p in old.placed.iter().filter(|p| !now.contains(p.path.as_str())) {
        if manifest::check_abs_path(&p.path).is_err() {
            continue;
        }
        let (parent, base) = paths::split(&p.path);
        let dir = match paths::open_dir(parent, false, Trust::NotWorldWritable) {
            Ok(d) => d,
            Err(_) => continue, // parent gone or unusable: nothing of ours to remove
        };
        if let Err(source) = switch::remove_placed(&dir, base, p.target.as_deref()) {
            failures.push(FinishFailure::Stale {
                path: p.path.clone(),
                source,
            });
        }
    }
}
