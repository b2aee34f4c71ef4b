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

/// The git work tree `dir` is in and every path git tracks there (relative to
/// the work tree's top, as bytes), which is what a git flake's `source`
/// holds. `None` when `dir` is not inside a git work tree or git is not
/// installed. Two git processes.
pub fn tracked_files(dir: &Path) -> Option<(PathBuf, BTreeSet<Vec<u8>>)> {
    use std::os::unix::ffi::OsStrExt;
    let top = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["rev-parse", "--show-toplevel"])
        .output()
        .ok()?;
    if !top.status.success() {
        return None;
    }
    let mut top = top.stdout;
    while top.last() == Some(&b'\n') {
        top.pop();
    }
    let top = PathBuf::from(std::ffi::OsStr::from_bytes(&top));
    let out = Command::new("git")
        .arg("-C")
        .arg(&top)
        .args(["ls-files", "-z"])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let files = out
        .stdout
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    Some((top, files))
}
