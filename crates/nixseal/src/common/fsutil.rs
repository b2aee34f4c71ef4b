//! Small filesystem helpers shared by both sides: bounded reads of regular
//! files, and the operator side's atomic writes.

use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

/// The largest age file, plaintext, profile, manifest or rekey cache nixseal
/// reads (64 MiB). A secret bigger than that is not a secret but a disk
/// image; a file that claims to be bigger (a sparse file, a device) is
/// refused before anything is allocated.
pub const MAX_FILE: u64 = 64 << 20;

/// The largest identity file or host private key nixseal reads (1 MiB).
pub const MAX_KEY_FILE: u64 = 1 << 20;

/// Reads a whole regular file of at most `limit` bytes, following a symlink
/// at `path` (as `std::fs::read` does) but refusing anything that is not a
/// regular file — a FIFO (which would block), a device (`/dev/zero` would
/// never end), a socket or a directory — and any file larger than `limit`
/// (checked with `fstat` before reading, so a sparse 100 GB file allocates
/// nothing). The buffer is allocated once at the file's size and wiped on
/// drop, so it may hold plaintext. Errors carry no path: callers add it.
pub fn read_regular(path: &Path, limit: u64) -> std::io::Result<Zeroizing<Vec<u8>>> {
    read_opened(path, limit, false)
}

/// Like [`read_regular`], but a symlink at `path` itself is refused (ELOOP),
/// never followed.
pub fn read_regular_nofollow(path: &Path, limit: u64) -> std::io::Result<Zeroizing<Vec<u8>>> {
    read_opened(path, limit, true)
}

fn read_opened(path: &Path, limit: u64, nofollow: bool) -> std::io::Result<Zeroizing<Vec<u8>>> {
    let mut flags = rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::NOCTTY;
    if nofollow {
        flags |= rustix::fs::OFlags::NOFOLLOW;
    }
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits() as i32)
        .open(path)?;
    let meta = file.metadata()?;
    let ft = meta.file_type();
    if !ft.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("it is {}, not a regular file", kind_name(ft)),
        ));
    }
    read_bounded(&mut file, meta.len(), limit)
}

/// Reads exactly `size` bytes (the size fstat gave) and checks that nothing
/// follows; refuses `size > limit` before allocating.
pub(crate) fn read_bounded(
    file: &mut std::fs::File,
    size: u64,
    limit: u64,
) -> std::io::Result<Zeroizing<Vec<u8>>> {
    if size > limit {
        return Err(too_large(size, limit));
    }
    let mut buf = Zeroizing::new(vec![0u8; size as usize]);
    file.read_exact(&mut buf).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            std::io::Error::new(e.kind(), "the file shrank while it was read")
        } else {
            e
        }
    })?;
    let mut probe = Zeroizing::new([0u8; 1]);
    if file.read(&mut probe[..])? != 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the file grew while it was read",
        ));
    }
    Ok(buf)
}

fn too_large(size: u64, limit: u64) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        format!(
            "it is {size} bytes, more than the {limit} bytes nixseal reads (a sparse file, or not a secret?)"
        ),
    )
}

/// Reads at most `limit` bytes from a stream (stdin, a pipe, a generator's
/// output) into a wiped buffer; more than `limit` is an error, not a
/// truncation. The buffer grows by doubling into fresh wiped buffers, so no
/// freed allocation keeps a copy of the bytes.
pub fn read_stream(mut r: impl Read, limit: u64) -> std::io::Result<Zeroizing<Vec<u8>>> {
    let mut buf = Zeroizing::new(vec![0u8; 8192]);
    let mut len = 0usize;
    loop {
        if len == buf.len() {
            if len as u64 > limit {
                return Err(too_large(len as u64, limit));
            }
            let mut bigger = Zeroizing::new(vec![0u8; buf.len() * 2]);
            bigger[..len].copy_from_slice(&buf[..len]);
            buf = bigger;
        }
        match r.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    if len as u64 > limit {
        return Err(too_large(len as u64, limit));
    }
    let mut out = Zeroizing::new(vec![0u8; len]);
    out.copy_from_slice(&buf[..len]);
    Ok(out)
}

/// A human name for a non-regular file type ("a FIFO", "a directory", …).
pub fn kind_name(ft: std::fs::FileType) -> &'static str {
    if ft.is_dir() {
        "a directory"
    } else if ft.is_symlink() {
        "a symlink"
    } else if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_file() {
        "a regular file"
    } else {
        "not a regular file"
    }
}

/// Prefix of every temporary file nixseal creates next to an output; leftovers
/// (after a crash) are recognised by it and removed by the next run.
pub const TEMP_PREFIX: &str = ".nixseal-tmp-";

/// Writes `bytes` to `dir/name` atomically: a temp file in the same directory,
/// flushed, moded, then renamed over the target. A reader sees the old file or
/// the new one, never a partial one; on error the target is untouched.
///
/// A symlink at the target is replaced, never followed (rename(2) semantics);
/// callers that must refuse symlinks check before.
pub fn atomic_write(dir: &Path, name: &str, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    filled_temp(dir, bytes, mode)?
        .persist(dir.join(name))
        .map_err(|e| e.error)?;
    Ok(())
}

/// Where a file at `path` is written: its directory (created if missing;
/// `.` for a bare name) and its file name, for [`atomic_write`] and
/// [`atomic_create`].
pub fn prepare_parent(path: &Path) -> std::io::Result<(PathBuf, String)> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir)?;
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("no file name"))?;
    Ok((dir, name.to_string_lossy().into_owned()))
}

/// A temp file in `dir` (removed if dropped) holding `bytes`, moded `mode`:
/// what [`atomic_write`] renames into place. Callers that must put several
/// files in place together stage each with this first, then persist them.
pub fn filled_temp(
    dir: &Path,
    bytes: &[u8],
    mode: u32,
) -> std::io::Result<tempfile::NamedTempFile> {
    let mut tmp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.flush()?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))?;
    Ok(tmp)
}

/// Like [`atomic_write`], but only creates: fails with `AlreadyExists` when
/// `dir/name` exists (rename with RENAME_NOREPLACE, or link(2) where that is
/// missing), so a file that appeared meanwhile is never replaced.
pub fn atomic_create(dir: &Path, name: &str, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    filled_temp(dir, bytes, mode)?
        .persist_noclobber(dir.join(name))
        .map_err(|e| e.error)?;
    Ok(())
}

/// Lowercase hex sha256 of some bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn replaces_symlink_instead_of_following_it() {
        let d = tempfile::tempdir().unwrap();
        let victim = d.path().join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        std::os::unix::fs::symlink(&victim, d.path().join("out")).unwrap();
        atomic_write(d.path(), "out", b"new", 0o644).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        assert_eq!(std::fs::read(d.path().join("out")).unwrap(), b"new");
        let md = std::fs::symlink_metadata(d.path().join("out")).unwrap();
        assert!(md.is_file());
        assert_eq!(md.mode() & 0o777, 0o644);
        assert_eq!(
            std::fs::read_dir(d.path()).unwrap().count(),
            2,
            "no temp left"
        );
    }

    #[test]
    fn reads_only_bounded_regular_files() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("f");
        std::fs::write(&f, b"hello").unwrap();
        assert_eq!(&read_regular(&f, 5).unwrap()[..], b"hello");
        let e = read_regular(&f, 4).unwrap_err().to_string();
        assert!(e.contains("5 bytes, more than the 4"), "{e}");
        // A sparse file far larger than the limit allocates nothing.
        let sparse = d.path().join("sparse");
        std::fs::File::create(&sparse)
            .unwrap()
            .set_len(100 << 30)
            .unwrap();
        let e = read_regular(&sparse, MAX_FILE).unwrap_err().to_string();
        assert!(e.contains("107374182400 bytes"), "{e}");
        // A directory, a device and a FIFO (which would block) are refused.
        let e = read_regular(d.path(), MAX_FILE).unwrap_err().to_string();
        assert!(e.contains("a directory"), "{e}");
        let e = read_regular(Path::new("/dev/zero"), MAX_FILE)
            .unwrap_err()
            .to_string();
        assert!(e.contains("a character device"), "{e}");
        let fifo = d.path().join("fifo");
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
        )
        .unwrap();
        let e = read_regular(&fifo, MAX_FILE).unwrap_err().to_string();
        assert!(e.contains("a FIFO"), "{e}");
        // Symlinks: followed by read_regular, refused by the nofollow form.
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&f, &link).unwrap();
        assert_eq!(&read_regular(&link, 5).unwrap()[..], b"hello");
        let e = read_regular_nofollow(&link, 5).unwrap_err();
        assert_eq!(
            e.raw_os_error(),
            Some(rustix::io::Errno::LOOP.raw_os_error())
        );
    }

    #[test]
    fn streams_are_bounded_too() {
        let big = vec![7u8; 20000];
        assert_eq!(&read_stream(&big[..], 20000).unwrap()[..], &big[..]);
        let e = read_stream(&big[..], 19999).unwrap_err().to_string();
        assert!(e.contains("more than the 19999 bytes"), "{e}");
        assert!(read_stream(std::io::empty(), 10).unwrap().is_empty());
        // Endless input stops at the limit instead of filling memory.
        assert!(read_stream(std::io::repeat(1), 1 << 16).is_err());
    }

    #[test]
    fn sha256_of_empty() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
