//! Is it tracked by git? Flakes see tracked files only, so an untracked rekeyed
//! file is invisible to `nixos-rebuild` even though it exists on disk.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

/// More distinct directories than this and `ls-files` lists everything
/// under `root` instead: git matches every index entry against every
/// pathspec, so a pathspec per file (or per host directory) is quadratic.
const MAX_PATHSPECS: usize = 16;

/// Of `paths` (files under `root`), those git does not track, relative to
/// `root`. `None` when `root` is not inside a git work tree or git is not
/// installed: no warning can be given then.
///
/// One git process whatever the fleet's size: `git ls-files -z` limited to
/// the few directories the paths are in (the rekeyed directory, the
/// secrets directories), its output matched here against a hash set, so
/// the cost grows with the number of files, not files × patterns.
/// Pathspecs are literal (a `*` or `[` in a name is not a glob) and names
/// are compared as bytes (spaces, newlines, non-UTF-8 are all exact).
pub fn untracked(root: &Path, paths: &[PathBuf]) -> Option<Vec<PathBuf>> {
    untracked_with(OsStr::new("git"), root, paths)
}

fn untracked_with(git: &OsStr, root: &Path, paths: &[PathBuf]) -> Option<Vec<PathBuf>> {
    if paths.is_empty() {
        return Some(Vec::new());
    }
    let rel: Vec<PathBuf> = paths
        .iter()
        .map(|p| normalize(strip_root(root, p)))
        .collect();
    untracked_rel(git, root, rel)
}

fn untracked_rel(git: &OsStr, root: &Path, rel: Vec<PathBuf>) -> Option<Vec<PathBuf>> {
    let mut cmd = Command::new(git);
    cmd.arg("--literal-pathspecs")
        .arg("-C")
        .arg(root)
        .args(["ls-files", "-z", "--"]);
    if let Some(dirs) = pathspecs(&rel) {
        cmd.args(dirs);
    }
    // Outside a work tree `ls-files` fails, and then no warning can be given.
    let out = cmd.stderr(std::process::Stdio::null()).output().ok()?;
    if !out.status.success() {
        return None;
    }
    // ls-files prints paths relative to the directory it runs in (`root`),
    // as raw bytes with -z; any `./` is dropped before comparing.
    let tracked: HashSet<&[u8]> = out
        .stdout
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .collect();
    Some(
        rel.into_iter()
            .filter(|p| !tracked.contains(p.as_os_str().as_bytes()))
            .collect(),
    )
}

/// A few directories holding every path in `rel`, none inside another:
/// the paths' own directories, or, while there are more than
/// [`MAX_PATHSPECS`], the deepest of them replaced by their parents (a
/// thousand host directories become the rekeyed directory). `None` (list
/// all of `root`) when that reaches the top.
fn pathspecs(rel: &[PathBuf]) -> Option<Vec<&Path>> {
    // Distinct directories first (hashing bytes is cheap; a sorted set of
    // paths compares components, which is not, for 100,000 files).
    // (Keyed by bytes: hashing a `Path` walks its components. `rel` is
    // normalised, so equal directories have equal bytes; the sorted set
    // below merges any that do not.)
    let mut distinct: HashMap<&[u8], &Path> = HashMap::new();
    for p in rel {
        let d = p.parent().filter(|d| !d.as_os_str().is_empty())?;
        distinct.insert(d.as_os_str().as_bytes(), d);
    }
    let mut dirs: BTreeSet<&Path> = distinct.into_values().collect();
    loop {
        // Shortest first: a directory is dropped when one it is in was kept.
        let mut by_depth: Vec<&Path> = dirs.iter().copied().collect();
        by_depth.sort_by_key(|d| d.components().count());
        let mut kept: Vec<&Path> = Vec::new();
        for d in by_depth {
            if !kept.iter().any(|k| d.starts_with(k)) {
                kept.push(d);
            }
        }
        if kept.len() <= MAX_PATHSPECS {
            return Some(kept);
        }
        let deepest = kept.iter().map(|d| d.components().count()).max()?;
        dirs = kept
            .into_iter()
            .map(|d| match d.components().count() == deepest {
                true => d.parent().filter(|p| !p.as_os_str().is_empty()),
                false => Some(d),
            })
            .collect::<Option<_>>()?;
    }
}

/// `p` relative to `root` (`p` itself when it is not under `root`), as
/// `Path::strip_prefix` has it; a plain byte prefix `root/` first, which
/// is that answer without walking both paths' components per file.
fn strip_root<'a>(root: &Path, p: &'a Path) -> &'a Path {
    let (r, b) = (root.as_os_str().as_bytes(), p.as_os_str().as_bytes());
    let plain = |s: &[u8]| {
        !s.is_empty()
            && !s.ends_with(b"/")
            && !s.windows(2).any(|w| w == b"//")
            && !s.split(|c| *c == b'/').any(|c| c == b"." || c == b"..")
    };
    if plain(r) && b.len() > r.len() + 1 && b.starts_with(r) && b[r.len()] == b'/' {
        let rest = &b[r.len() + 1..];
        if !rest.starts_with(b"/") && plain(rest) {
            return Path::new(OsStr::from_bytes(rest));
        }
    }
    p.strip_prefix(root).unwrap_or(p)
}

/// Drops `.` components so `./a/b` and `a/b` compare equal.
fn normalize(p: &Path) -> PathBuf {
    let b = p.as_os_str().as_bytes();
    let has_dot = b == b"." || b.starts_with(b"./") || b.ends_with(b"/.") || b.ends_with(b"/");
    if !has_dot && !b.windows(3).any(|w| w == b"/./") && !b.windows(2).any(|w| w == b"//") {
        return p.to_owned();
    }
    p.components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect()
}

/// Whether the environment may point git at another repository or index,
/// or change how it matches (one of [`REPO_VARS`], any `GIT_CONFIG*` or
/// `GIT_*_PATHSPECS` variable): then no answer of git's is remembered.
pub fn redirected() -> bool {
    std::env::vars_os().any(|(k, _)| {
        let k = k.as_bytes();
        REPO_VARS.contains(&k) || k.starts_with(b"GIT_CONFIG") || k.ends_with(b"_PATHSPECS")
    })
}

/// The index file git reads for a work tree holding `dir` (the first
/// `.git` directory, or `.git` file of a linked work tree or submodule, at
/// or above `dir`), for keying a remembered answer of git to the index's
/// stat. `None` whenever git could be reading another one or matching
/// differently — one of [`REPO_VARS`] in the environment, a `.git` that is
/// neither, or no `.git` at all — then git is asked.
pub fn index_file(dir: &Path) -> Option<PathBuf> {
    if redirected() {
        return None;
    }
    let dir = std::fs::canonicalize(dir).ok()?;
    for d in dir.ancestors() {
        let dot = d.join(".git");
        let Ok(m) = std::fs::symlink_metadata(&dot) else {
            continue;
        };
        if m.is_dir() {
            return Some(dot.join("index"));
        }
        if !m.is_file() || m.len() > 4096 {
            return None;
        }
        // `gitdir: <path>` (relative to the directory of the `.git` file);
        // read as a bounded regular file (never a FIFO put there meanwhile).
        let bytes = crate::common::fsutil::read_regular_nofollow(&dot, 4096).ok()?;
        let text = std::str::from_utf8(&bytes).ok()?;
        let git_dir = text.strip_prefix("gitdir: ")?.trim_end_matches('\n');
        if git_dir.is_empty() || git_dir.contains('\n') {
            return None;
        }
        return Some(d.join(git_dir).join("index"));
    }
    None
}

/// Environment variables that change which repository, work tree or index
/// git reads (with every `GIT_CONFIG*` and `GIT_*_PATHSPECS`).
pub const REPO_VARS: &[&[u8]] = &[
    b"GIT_DIR",
    b"GIT_WORK_TREE",
    b"GIT_INDEX_FILE",
    b"GIT_COMMON_DIR",
    b"GIT_CEILING_DIRECTORIES",
    b"GIT_DISCOVERY_ACROSS_FILESYSTEM",
    b"GIT_NAMESPACE",
];

/// The git work tree `dir` is in and every path git tracks there (relative to
/// the work tree's top, as bytes), which is what a git flake's `source`
/// holds. `None` when `dir` is not inside a git work tree or git is not
/// installed. Two git processes.
pub fn tracked_files(dir: &Path) -> Option<(PathBuf, BTreeSet<Vec<u8>>)> {
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
    let top = PathBuf::from(OsStr::from_bytes(&top));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn git(dir: &Path, args: &[&OsStr]) {
        let st = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .status()
            .expect("git is installed");
        assert!(st.success(), "git {args:?}");
    }

    fn os(s: &str) -> &OsStr {
        OsStr::new(s)
    }

    /// The index of a work tree is found from any directory in it: a
    /// `.git` directory's `index`, or the one a `.git` file (linked work
    /// tree, submodule) points to; a `.git` that is a FIFO or a symlink
    /// gives no answer (git is asked) and never blocks.
    #[test]
    fn the_index_file_of_a_work_tree() {
        let t = tempfile::tempdir().unwrap();
        let top = std::fs::canonicalize(t.path()).unwrap();
        std::fs::create_dir_all(top.join("a/.git")).unwrap();
        std::fs::create_dir_all(top.join("a/flake/sub")).unwrap();
        assert_eq!(
            index_file(&top.join("a/flake/sub")),
            Some(top.join("a/.git/index"))
        );
        std::fs::create_dir_all(top.join("b/w")).unwrap();
        std::fs::write(top.join("b/.git"), "gitdir: ../a/.git/worktrees/b\n").unwrap();
        assert_eq!(
            index_file(&top.join("b/w")),
            Some(top.join("b/../a/.git/worktrees/b/index"))
        );
        std::fs::create_dir_all(top.join("c")).unwrap();
        rustix::fs::mkfifoat(rustix::fs::CWD, top.join("c/.git"), rustix::fs::Mode::RWXU).unwrap();
        assert_eq!(index_file(&top.join("c")), None);
        std::fs::create_dir_all(top.join("d")).unwrap();
        std::os::unix::fs::symlink(top.join("b/.git"), top.join("d/.git")).unwrap();
        assert_eq!(index_file(&top.join("d")), None);
    }

    /// A repository at `top` holding `flake` (a directory below it, or the top).
    fn repo(top: &Path) {
        git(top, &[os("init"), os("-q")]);
    }

    fn write(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"x").unwrap();
    }

    /// Names with spaces, newlines, glob characters and bytes that are not
    /// UTF-8 are matched exactly: a tracked one is never reported, an
    /// untracked one always is, whatever its neighbours are called. (The
    /// old per-file pathspec took `a*` as a glob matching the tracked
    /// `ab`, and read non-UTF-8 names lossily.)
    #[test]
    fn odd_names_are_matched_exactly() {
        let t = tempfile::tempdir().unwrap();
        let top = t.path();
        repo(top);
        let names: Vec<PathBuf> = [
            &b"secrets/with space.age"[..],
            b"secrets/new\nline.age",
            b"secrets/ab",
            b"secrets/[ab]",
            b"secrets/\xff\xfe.age",
            b"rekeyed/h1/s.age",
            b"rekeyed/h1/.nixseal-rekey.json",
            b"rekeyed/h2/s.age",
        ]
        .iter()
        .map(|b| PathBuf::from(OsStr::from_bytes(b)))
        .collect();
        for n in &names {
            write(&top.join(n));
        }
        let tracked = [0, 1, 2, 4, 5];
        for i in tracked {
            git(top, &[os("add"), os("--"), names[i].as_os_str()]);
        }
        // Untracked, and each one a glob (or a prefix) of a tracked name.
        let extra: Vec<PathBuf> = ["secrets/a*", "secrets/a?", "secrets/a"]
            .iter()
            .map(PathBuf::from)
            .collect();
        for n in &extra {
            write(&top.join(n));
        }
        let all: Vec<PathBuf> = names.iter().chain(&extra).map(|n| top.join(n)).collect();
        let got = untracked(top, &all).expect("inside git");
        let want: Vec<PathBuf> = names
            .iter()
            .enumerate()
            .filter(|(i, _)| !tracked.contains(i))
            .map(|(_, n)| n.clone())
            .chain(extra.iter().cloned())
            .collect();
        assert_eq!(got, want);
    }

    /// The flake in a subdirectory of the repository: paths are given and
    /// reported relative to the flake, and files elsewhere in the
    /// repository with the same relative names do not count.
    #[test]
    fn repository_root_above_the_flake() {
        let t = tempfile::tempdir().unwrap();
        let top = t.path();
        repo(top);
        let flake = top.join("infra");
        for n in [
            "infra/secrets/a.age",
            "infra/secrets/b.age",
            "secrets/b.age",
        ] {
            write(&top.join(n));
        }
        git(
            top,
            &[os("add"), os("infra/secrets/a.age"), os("secrets/b.age")],
        );
        let paths = [flake.join("secrets/a.age"), flake.join("secrets/b.age")];
        assert_eq!(
            untracked(&flake, &paths),
            Some(vec![PathBuf::from("secrets/b.age")])
        );
        // `./` components give the same answer.
        let dotted = [flake.join("./secrets/a.age"), flake.join("secrets/./b.age")];
        assert_eq!(
            untracked(&flake, &dotted),
            Some(vec![PathBuf::from("secrets/b.age")])
        );
    }

    /// Outside a work tree, and without git, there is no answer (no
    /// warning), not an error and not "everything is untracked".
    #[test]
    fn not_a_repository_or_no_git() {
        let t = tempfile::tempdir().unwrap();
        write(&t.path().join("secrets/a.age"));
        let paths = [t.path().join("secrets/a.age")];
        // GIT_CEILING_DIRECTORIES keeps git from finding a repository above /tmp.
        let out = Command::new("git")
            .env("GIT_CEILING_DIRECTORIES", t.path().parent().unwrap())
            .arg("-C")
            .arg(t.path())
            .args(["rev-parse", "--git-dir"])
            .output()
            .unwrap();
        assert!(!out.status.success(), "the temp dir is not in a repository");
        assert_eq!(untracked(t.path(), &paths), None);
        repo(t.path());
        assert_eq!(
            untracked(t.path(), &paths),
            Some(vec![PathBuf::from("secrets/a.age")])
        );
        let missing = t.path().join("no-such-git");
        assert_eq!(untracked_with(missing.as_os_str(), t.path(), &paths), None);
        assert_eq!(untracked(t.path(), &[]), Some(vec![]));
    }

    /// The byte fast path of `strip_root` answers as `strip_prefix` does.
    #[test]
    fn strip_root_is_strip_prefix() {
        let roots = ["/a/b", "/a/b/", "a", ".", "/", "/a/./b", "/a//b", ""];
        let paths = [
            "/a/b/c",
            "/a/b/c/d.age",
            "/a/bc/d",
            "/a/b",
            "/a/b/",
            "/a/b//c",
            "/a/b/./c",
            "/a/b/../c",
            "a/c",
            "a",
            "./a/c",
            "c",
            "/c",
            "/a/./b/c",
            "/a//b/c",
        ];
        for r in roots {
            for p in paths {
                let (r, p) = (Path::new(r), Path::new(p));
                // Byte for byte: the result is matched as bytes later.
                assert_eq!(
                    strip_root(r, p).as_os_str(),
                    p.strip_prefix(r).unwrap_or(p).as_os_str(),
                    "{r:?} {p:?}"
                );
            }
        }
    }

    /// However many files and host directories, one git process with a
    /// handful of pathspecs: the directories holding the files, none
    /// inside another, or none at all (everything under the root).
    #[test]
    fn pathspecs_are_few_directories() {
        let mut rel = Vec::new();
        for h in 0..1000 {
            for s in 0..3 {
                rel.push(PathBuf::from(format!("secrets/rekeyed/h{h}/s{s}.age")));
            }
            rel.push(PathBuf::from(format!(
                "secrets/rekeyed/h{h}/.nixseal-rekey.json"
            )));
        }
        rel.push(PathBuf::from("secrets/master/db.age"));
        rel.push(PathBuf::from("other/x.age"));
        let got = pathspecs(&rel).unwrap();
        assert_eq!(
            got,
            ["other", "secrets/master", "secrets/rekeyed"].map(Path::new)
        );
        // A few host directories stay as they are.
        let few = ["r/h1/a", "r/h1/b", "r/h2/a", "s/x"].map(PathBuf::from);
        assert_eq!(
            pathspecs(&few).unwrap(),
            ["s", "r/h1", "r/h2"].map(Path::new)
        );
        // Many unrelated directories: everything under the root instead.
        let spread: Vec<PathBuf> = (0..100).map(|i| PathBuf::from(format!("d{i}/x"))).collect();
        assert_eq!(pathspecs(&spread), None);
        // A file at the top: everything under the root.
        assert_eq!(pathspecs(&[PathBuf::from("x.age")]), None);
        // A directory inside another kept one is dropped.
        let nested = ["a/b/c/x", "a/y", "a/b/z"].map(PathBuf::from);
        assert_eq!(pathspecs(&nested).unwrap(), vec![Path::new("a")]);
    }
}
