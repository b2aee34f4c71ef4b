//! Atomic replacement of the stable symlink and placement of custom paths.
//!
//! Both are "make the new thing under a temporary name in the same directory,
//! then `rename(2)` it over the old one": a reader sees the old or the new,
//! never nothing. Temporary names are fixed per target, so a temporary left
//! by a crash is removed by the next run instead of accumulating.

use std::io;
use std::os::fd::AsFd;

use rustix::fs::{readlinkat, renameat, statat, symlinkat, unlinkat, AtFlags, FileType};

use super::fault;
use super::generation::write_new_file;

fn tmp_name(base: &str, suffix: &str) -> String {
    format!(".{base}.nixseal-{suffix}")
}

fn unlink_if_present<Fd: AsFd>(dir: Fd, name: &str) -> io::Result<()> {
    match unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Points `dir/base` at `target` by renaming a fresh symlink over it.
pub fn replace_symlink<Fd: AsFd>(dir: Fd, base: &str, target: &str, main: bool) -> io::Result<()> {
    let tmp = tmp_name(base, "new");
    unlink_if_present(&dir, &tmp)?;
    symlinkat(target, &dir, tmp.as_str())?;
    if main {
        fault::point("after-temp-symlink");
    }
    renameat(&dir, tmp.as_str(), &dir, base).inspect_err(|_| {
        let _ = unlink_if_present(&dir, &tmp);
    })?;
    Ok(())
}

/// Writes `dir/base` as a new file (owner and mode set before the content)
/// and renames it over whatever was there.
pub fn replace_copy<Fd: AsFd>(
    dir: Fd,
    base: &str,
    uid: u32,
    gid: u32,
    mode: u32,
    content: &[u8],
) -> io::Result<()> {
    let tmp = tmp_name(base, "tmp");
    unlink_if_present(&dir, &tmp)?;
    let r = write_new_file(&dir, &tmp, uid, gid, mode, content)
        .and_then(|()| renameat(&dir, tmp.as_str(), &dir, base).map_err(Into::into));
    if r.is_err() {
        let _ = unlink_if_present(&dir, &tmp);
    }
    r
}

/// Removes `dir/base` if it is still what nixseal put there: a symlink to
/// `target` (symlink mode) or a regular file (copy mode).
pub fn remove_placed<Fd: AsFd>(dir: Fd, base: &str, target: Option<&str>) -> io::Result<()> {
    let st = match statat(&dir, base, AtFlags::SYMLINK_NOFOLLOW) {
        Err(rustix::io::Errno::NOENT) => return Ok(()),
        r => r?,
    };
    let ours = match (FileType::from_raw_mode(st.st_mode), target) {
        (FileType::Symlink, Some(t)) => readlinkat(&dir, base, Vec::new())
            .map(|l| l.as_bytes() == t.as_bytes())
            .unwrap_or(false),
        (FileType::RegularFile, None) => true,
        _ => false,
    };
    if ours {
        unlink_if_present(&dir, base)?;
    }
    Ok(())
}
