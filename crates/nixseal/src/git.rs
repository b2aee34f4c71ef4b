//! Is it tracked by git? Flakes see tracked files only, so an untracked rekeyed
//! file is invisible to `nixos-rebuild` even though it exists on disk.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Of `paths` (files under `root`), those git does not track. `None` when
/// `root` is not inside a git work tree or git is not installed: no warning
/// can be given then.
pub fn untracked(root: &Path, paths: &[PathBuf]) -> Option<Vec<PathBuf>> {
    if paths.is_empty() {
        return Some(Vec::new());
    }
    // One git process: outside a work tree `ls-files` fails, and then no
    // warning can be given.
    let mut cmd = Command::new("git");
    cmd.arg("-C").arg(root).args(["ls-files", "-z", "--"]);
    let rel: Vec<PathBuf> = paths
        .iter()
        .map(|p| p.strip_prefix(root).unwrap_or(p).to_path_buf())
        .collect();
    cmd.args(&rel);
    let out = cmd.output().ok()?;
    if !out.status.success() {
        return None;
    }
    let tracked: BTreeSet<PathBuf> = out
        .stdout
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| normalize(Path::new(&*String::from_utf8_lossy(s))))
        .collect();
    Some(
        rel.into_iter()
            .filter(|p| !tracked.contains(&normalize(p)))
            .collect(),
    )
}

/// Drops `.` components so `./a/b` and `a/b` compare equal.
fn normalize(p: &Path) -> PathBuf {
    p.components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect()
}
