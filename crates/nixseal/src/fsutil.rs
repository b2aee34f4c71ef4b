//! Small filesystem helpers shared by the operator side.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

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

/// A temp file in `dir` (removed if dropped) holding `bytes`, moded `mode`.
fn filled_temp(dir: &Path, bytes: &[u8], mode: u32) -> std::io::Result<tempfile::NamedTempFile> {
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
    fn sha256_of_empty() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
