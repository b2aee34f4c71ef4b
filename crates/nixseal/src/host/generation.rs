//! Generation directories `<mountPoint>/<n>` and their temporaries `<n>.tmp`.
//!
//! Generation numbers come from the directory listing (the highest present,
//! temporaries included, plus one), never from a counter file. Only names
//! nixseal creates count: a decimal number without a leading zero of at most
//! [`GENERATION_MAX`] (12 digits — at ten deploys a second, 3000 years). A
//! foreign or absurd name such as `18446744073709551615` is another entry,
//! left alone; it never steers, wraps or blocks the numbering. If the highest
//! generation already is [`GENERATION_MAX`] (someone made it by hand), the
//! lowest free number is used instead, so a deploy is never blocked.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustix::fs::{
    fchmod, fchown, fstat, openat, readlinkat, statat, unlinkat, AtFlags, Dir, FileType, Gid, Mode,
    OFlags, Uid,
};
use zeroize::Zeroizing;

/// The highest generation number nixseal creates or recognises.
pub const GENERATION_MAX: u64 = 999_999_999_999;

/// An entry of the mount point's root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A finished generation.
    Generation(u64),
    /// A temporary generation being built (or left by a crash).
    Tmp(u64),
    /// Anything else (left alone).
    Other(String),
}

/// Classifies a name in the mount point's root.
pub fn classify(name: &str) -> Entry {
    let num = |s: &str| {
        (!s.is_empty()
            && s.len() <= 12
            && s.bytes().all(|b| b.is_ascii_digit())
            && !s.starts_with('0'))
        .then(|| s.parse::<u64>().ok())
        .flatten()
        .filter(|n| (1..=GENERATION_MAX).contains(n))
    };
    if let Some(n) = num(name) {
        return Entry::Generation(n);
    }
    if let Some(n) = name.strip_suffix(".tmp").and_then(num) {
        return Entry::Tmp(n);
    }
    Entry::Other(name.to_owned())
}

/// Lists the mount point's root.
pub fn list(dir: &OwnedFd) -> io::Result<Vec<Entry>> {
    let mut out = Vec::new();
    for e in Dir::read_from(dir)? {
        let e = e?;
        let name = e.file_name().to_string_lossy();
        if name == "." || name == ".." {
            continue;
        }
        out.push(classify(&name));
    }
    Ok(out)
}

/// The next generation number: one more than the highest in use, or — only
/// when that would pass [`GENERATION_MAX`] — the lowest free one.
pub fn next_number(entries: &[Entry]) -> u64 {
    let used: std::collections::HashSet<u64> = entries
        .iter()
        .filter_map(|e| match e {
            Entry::Generation(n) | Entry::Tmp(n) => Some(*n),
            Entry::Other(_) => None,
        })
        .collect();
    let max = used.iter().copied().max().unwrap_or(0);
    match max.checked_add(1) {
        Some(n) if n <= GENERATION_MAX => n,
        // At most `used.len()` numbers are taken, so one of the first
        // `used.len() + 1` is free.
        _ => (1..=GENERATION_MAX)
            .find(|n| !used.contains(n))
            .unwrap_or(1),
    }
}

/// The generation `symlink` points to, if it is `<mount_point>/<n>`.
pub fn active<Fd: AsFd>(link_parent: Fd, link_name: &str, mount_point: &str) -> Option<u64> {
    let target = readlinkat(link_parent, link_name, Vec::new()).ok()?;
    let target = target.to_str().ok()?;
    let rest = target.strip_prefix(mount_point)?.strip_prefix('/')?;
    match classify(rest) {
        Entry::Generation(n) => Some(n),
        _ => None,
    }
}

/// Removes `name` under `dir` recursively, never following a symlink (a
/// symlink is removed itself, its target untouched).
pub fn remove_tree<Fd: AsFd>(dir: Fd, name: &str) -> io::Result<()> {
    let st = match statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Err(rustix::io::Errno::NOENT) => return Ok(()),
        r => r?,
    };
    if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
        let sub = openat(
            &dir,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let mut names = Vec::new();
        for e in Dir::read_from(&sub)? {
            let e = e?;
            let n = e.file_name().to_string_lossy().into_owned();
            if n != "." && n != ".." {
                names.push(n);
            }
        }
        for n in names {
            remove_tree(&sub, &n)?;
        }
        match unlinkat(&dir, name, AtFlags::REMOVEDIR) {
            Err(rustix::io::Errno::NOENT) => Ok(()),
            r => Ok(r?),
        }
    } else {
        match unlinkat(&dir, name, AtFlags::empty()) {
            Err(rustix::io::Errno::NOENT) => Ok(()),
            r => Ok(r?),
        }
    }
}

/// Creates a file exclusively under `dir` with no access for anyone, sets its
/// owner and mode, and only then writes `content`.
pub fn write_new_file<Fd: AsFd>(
    dir: Fd,
    name: &str,
    uid: u32,
    gid: u32,
    mode: u32,
    content: &[u8],
) -> io::Result<()> {
    let mut f = create_file(dir, name, uid, gid, mode)?;
    f.write_all(content)?;
    Ok(())
}

/// Creates `dir/name` exclusively (never through a symlink) with no access
/// for anyone, then sets its owner and mode: ready for plaintext.
pub fn create_file<Fd: AsFd>(
    dir: Fd,
    name: &str,
    uid: u32,
    gid: u32,
    mode: u32,
) -> io::Result<std::fs::File> {
    let fd = openat(
        dir,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    fchown(&fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))?;
    fchmod(&fd, Mode::from_raw_mode(mode))?;
    Ok(std::fs::File::from(fd))
}

/// A previous file: owner, group, mode and whether its bytes equal `content`.
/// Compared in small wiped chunks: no copy of the old plaintext outlives the
/// call, and a file that grows meanwhile is simply "changed".
pub fn same_file<Fd: AsFd>(
    dir: Fd,
    name: &str,
    uid: u32,
    gid: u32,
    mode: u32,
    content: &[u8],
) -> bool {
    let Ok(fd) = openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        return false;
    };
    let Ok(st) = fstat(&fd) else { return false };
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile
        || st.st_uid != uid
        || st.st_gid != gid
        || st.st_mode & 0o7777 != mode
        || st.st_size as u64 != content.len() as u64
    {
        return false;
    }
    let mut f = std::fs::File::from(fd);
    // No bigger than the secret: most are a few bytes, and the buffer is
    // wiped when dropped.
    let mut chunk = Zeroizing::new(vec![0u8; (content.len() + 1).min(8192)]);
    let mut at = 0;
    loop {
        let n = match f.read(&mut chunk[..]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return false,
        };
        if n == 0 {
            return at == content.len();
        }
        if at + n > content.len() || chunk[..n] != content[at..at + n] {
            return false;
        }
        at += n;
    }
}

/// How long a replaced generation survives at least: a reader that resolved
/// the symlink just before a switch may still be walking into the old
/// generation. Only back-to-back deploys ever meet it.
pub const PRUNE_GRACE: Duration = Duration::from_secs(1);

/// When generation `g` was finished: its ctime, set by the chmod and rename
/// that completed it.
fn finished_at(mount_fd: &OwnedFd, g: u64) -> Option<SystemTime> {
    let st = statat(mount_fd, g.to_string().as_str(), AtFlags::SYMLINK_NOFOLLOW).ok()?;
    let secs = u64::try_from(st.st_ctime).ok()?;
    let nanos = u32::try_from(st.st_ctime_nsec).ok()?;
    Some(UNIX_EPOCH + Duration::new(secs, nanos))
}

/// Sleeps until generation `active` was finished [`PRUNE_GRACE`] ago (its
/// ctime, as [`prune`] reads it), so that the generation it replaced is no
/// longer spared by the grace. Sleeps at most `PRUNE_GRACE` (and a little),
/// whatever the clock says.
pub fn wait_out_grace(mount_fd: &OwnedFd, active: u64) {
    let age = finished_at(mount_fd, active)
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .unwrap_or(Duration::ZERO);
    // The margin covers the coarse clock file times are taken from.
    std::thread::sleep(PRUNE_GRACE.saturating_sub(age) + Duration::from_millis(20));
}

/// Removes leftover temporaries and generations beyond `keep` (0 keeps
/// everything). Kept regardless: the active generation, `previous` (the one
/// this run switched away from), and any generation replaced less than
/// [`PRUNE_GRACE`] ago. A later run removes them.
pub fn prune(
    mount_fd: &OwnedFd,
    keep: u32,
    active: u64,
    previous: Option<u64>,
) -> io::Result<Vec<u64>> {
    let entries = list(mount_fd)?;
    let mut first = true;
    let mut removed = Vec::new();
    for e in &entries {
        if let Entry::Tmp(n) = e {
            remove_tree(mount_fd, &format!("{n}.tmp"))?;
        }
    }
    if keep == 0 {
        return Ok(removed);
    }
    let mut all: Vec<u64> = entries
        .iter()
        .filter_map(|e| match e {
            Entry::Generation(n) => Some(*n),
            _ => None,
        })
        .collect();
    all.sort_unstable();
    // A generation was replaced when the next one was finished (its ctime:
    // set by the chmod and rename that completed it). Looked up before
    // anything is removed.
    let finished: HashMap<u64, Option<SystemTime>> = all
        .iter()
        .map(|g| (*g, finished_at(mount_fd, *g)))
        .collect();
    let now = SystemTime::now();
    let recently_replaced = |g: u64| {
        let Some(next) = all.iter().find(|h| **h > g) else {
            return true;
        };
        // A clock that went backwards must not pin generations forever.
        finished[next]
            .and_then(|t| now.duration_since(t).ok())
            .is_some_and(|age| age < PRUNE_GRACE)
    };
    let candidates: Vec<u64> = all
        .iter()
        .rev()
        .filter(|g| **g != active)
        .skip(keep as usize - 1)
        .copied()
        .filter(|g| Some(*g) != previous)
        .collect();
    for g in candidates {
        if recently_replaced(g) {
            continue;
        }
        remove_tree(mount_fd, &g.to_string())?;
        removed.push(g);
        if first {
            first = false;
            super::fault::point("mid-prune");
        }
    }
    removed.sort_unstable();
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_names() {
        assert_eq!(classify("12"), Entry::Generation(12));
        // Absurd numbers are not generations: they never wrap the counter.
        for absurd in [
            "18446744073709551615",
            "18446744073709551616",
            "1000000000000",
            "0",
            "0.tmp",
        ] {
            assert_eq!(classify(absurd), Entry::Other(absurd.into()), "{absurd}");
        }
        assert_eq!(classify("999999999999"), Entry::Generation(GENERATION_MAX));
        assert_eq!(
            next_number(&[
                Entry::Generation(GENERATION_MAX),
                Entry::Generation(1),
                Entry::Tmp(2)
            ]),
            3
        );
        assert_eq!(
            next_number(&[Entry::Other("18446744073709551615".into())]),
            1
        );
        assert_eq!(classify("12.tmp"), Entry::Tmp(12));
        assert_eq!(classify("012"), Entry::Other("012".into()));
        assert_eq!(classify(".tmp"), Entry::Other(".tmp".into()));
        assert_eq!(classify("x"), Entry::Other("x".into()));
        assert_eq!(
            next_number(&[
                Entry::Generation(3),
                Entry::Tmp(7),
                Entry::Other("9".into())
            ]),
            8
        );
        assert_eq!(next_number(&[]), 1);
    }

    #[test]
    fn remove_tree_does_not_follow_symlinks() {
        let d = tempfile::tempdir().unwrap();
        let outside = d.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("keep"), "x").unwrap();
        let inside = d.path().join("gen");
        std::fs::create_dir_all(inside.join("sub")).unwrap();
        std::fs::write(inside.join("sub/f"), "y").unwrap();
        std::os::unix::fs::symlink(&outside, inside.join("link")).unwrap();
        let fd = openat(
            rustix::fs::CWD,
            d.path(),
            OFlags::RDONLY | OFlags::DIRECTORY,
            Mode::empty(),
        )
        .unwrap();
        remove_tree(&fd, "gen").unwrap();
        assert!(!inside.exists());
        assert!(outside.join("keep").exists());
        remove_tree(&fd, "gen").unwrap();
    }
}
