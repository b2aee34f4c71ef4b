//! NAR (Nix ARchive) serialisation, streamed into a writer or a SHA-256.

use std::fs::{self, Metadata};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::{NarError, NarHash};

/// Magic string every NAR starts with.
pub(super) const NAR_MAGIC: &[u8] = b"nix-archive-1";

/// Writes the NAR serialisation of `path` (a regular file, directory or symlink; a
/// symlink is stored as a symlink, never followed) to `out`.
///
/// Regular file contents are streamed, not held in memory. Directory entries are
/// written sorted by the bytes of their names, and a regular file is marked executable
/// when its owner-execute bit is set, both as Nix does.
pub fn write_nar<W: Write>(path: &Path, out: &mut W) -> Result<(), NarError> {
    let mut writer = NarWriter {
        out,
        root: path,
        filter: None,
    };
    writer.bytes(NAR_MAGIC)?;
    writer.node(path)
}

/// Decides which entries of a tree a NAR holds: called with each entry's path
/// relative to the root and whether it is a directory (not following symlinks).
pub type NarFilter<'a> = &'a (dyn Fn(&Path, bool) -> bool + Sync);

/// The SHA-256 of the NAR of `path` holding only the entries `include` accepts
/// (a refused directory is left out with everything below it), as Nix
/// serialises a filtered source such as a git flake's tracked files.
pub fn nar_sha256_filtered(path: &Path, include: NarFilter<'_>) -> Result<NarHash, NarError> {
    let mut hasher = HashWriter(Sha256::new());
    let mut writer = NarWriter {
        out: &mut hasher,
        root: path,
        filter: Some(include),
    };
    writer.bytes(NAR_MAGIC)?;
    writer.node(path)?;
    Ok(NarHash(hasher.0.finalize().into()))
}

/// The SHA-256 of the NAR serialisation of `path`, what `nix hash path` prints.
pub fn nar_sha256(path: &Path) -> Result<NarHash, NarError> {
    let mut hasher = HashWriter(Sha256::new());
    write_nar(path, &mut hasher)?;
    Ok(NarHash(hasher.0.finalize().into()))
}

/// Feeds everything written into a SHA-256.
struct HashWriter(Sha256);

impl Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes NAR tokens for the tree rooted at `root`.
struct NarWriter<'a, W: Write> {
    out: &'a mut W,
    root: &'a Path,
    filter: Option<NarFilter<'a>>,
}

impl<W: Write> NarWriter<'_, W> {
    fn write_err(&self, source: io::Error) -> NarError {
        NarError::Write {
            path: self.root.to_owned(),
            source,
        }
    }

    /// A NAR string: little-endian u64 length, the bytes, zero padding to 8 bytes.
    fn bytes(&mut self, s: &[u8]) -> Result<(), NarError> {
        self.length(s.len() as u64)?;
        self.out.write_all(s).map_err(|e| self.write_err(e))?;
        self.padding(s.len() as u64)
    }

    fn length(&mut self, len: u64) -> Result<(), NarError> {
        self.out
            .write_all(&len.to_le_bytes())
            .map_err(|e| self.write_err(e))
    }

    fn padding(&mut self, len: u64) -> Result<(), NarError> {
        let pad = (8 - (len % 8) as usize) % 8;
        self.out
            .write_all(&[0u8; 8][..pad])
            .map_err(|e| self.write_err(e))
    }

    fn node(&mut self, path: &Path) -> Result<(), NarError> {
        let meta = fs::symlink_metadata(path).map_err(|source| NarError::Read {
            path: path.to_owned(),
            source,
        })?;
        self.bytes(b"(")?;
        self.bytes(b"type")?;
        let file_type = meta.file_type();
        if file_type.is_file() {
            self.regular(path, &meta)?;
        } else if file_type.is_dir() {
            self.directory(path)?;
        } else if file_type.is_symlink() {
            let target = fs::read_link(path).map_err(|source| NarError::Read {
                path: path.to_owned(),
                source,
            })?;
            self.bytes(b"symlink")?;
            self.bytes(b"target")?;
            self.bytes(target.as_os_str().as_bytes())?;
        } else {
            return Err(NarError::UnsupportedFileType {
                path: path.to_owned(),
                kind: unsupported_kind(&meta),
            });
        }
        self.bytes(b")")
    }

    fn regular(&mut self, path: &Path, meta: &Metadata) -> Result<(), NarError> {
        let read_err = |source| NarError::Read {
            path: path.to_owned(),
            source,
        };
        // Never follow a symlink or block on a FIFO swapped in since the lstat.
        let mut file = fs::OpenOptions::new()
            .read(true)
            .custom_flags(
                (rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32,
            )
            .open(path)
            .map_err(read_err)?;
        // Size and mode from the open file, so that they belong to what is read; it
        // must be the very file that was examined (not a symlink swapped in since).
        let meta_now = file.metadata().map_err(read_err)?;
        if !meta_now.is_file() || meta_now.dev() != meta.dev() || meta_now.ino() != meta.ino() {
            return Err(NarError::Replaced {
                path: path.to_owned(),
            });
        }
        self.bytes(b"regular")?;
        if meta_now.permissions().mode() & 0o100 != 0 {
            self.bytes(b"executable")?;
            self.bytes(b"")?;
        }
        self.bytes(b"contents")?;
        let expected = meta_now.len();
        self.length(expected)?;
        let mut buf = vec![0u8; 64 * 1024];
        let mut copied: u64 = 0;
        loop {
            let n = match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => return Err(read_err(source)),
            };
            copied += n as u64;
            if copied > expected {
                break;
            }
            self.out
                .write_all(&buf[..n])
                .map_err(|e| self.write_err(e))?;
        }
        if copied != expected {
            return Err(NarError::FileChanged {
                path: path.to_owned(),
                expected,
                actual: copied,
            });
        }
        self.padding(expected)
    }

    fn directory(&mut self, path: &Path) -> Result<(), NarError> {
        let read_err = |source| NarError::Read {
            path: path.to_owned(),
            source,
        };
        let mut names = Vec::new();
        for entry in fs::read_dir(path).map_err(read_err)? {
            let entry = entry.map_err(read_err)?;
            if let Some(include) = self.filter {
                let full = path.join(entry.file_name());
                let rel = full.strip_prefix(self.root).unwrap_or(&full);
                let is_dir = entry.file_type().map_err(read_err)?.is_dir();
                if !include(rel, is_dir) {
                    continue;
                }
            }
            names.push(entry.file_name());
        }
        // Nix sorts entries by the bytes of their names.
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        self.bytes(b"directory")?;
        for name in names {
            self.bytes(b"entry")?;
            self.bytes(b"(")?;
            self.bytes(b"name")?;
            self.bytes(name.as_bytes())?;
            self.bytes(b"node")?;
            self.node(&path.join(&name))?;
            self.bytes(b")")?;
        }
        Ok(())
    }
}

fn unsupported_kind(meta: &Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_fifo() {
        "FIFO"
    } else if t.is_socket() {
        "socket"
    } else if t.is_block_device() {
        "block device"
    } else if t.is_char_device() {
        "character device"
    } else {
        "special file"
    }
}
