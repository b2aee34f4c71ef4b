//! The rekeyed layout: where `renc` writes each host's files and what they
//! are called in a host's closure.
//!
//! ```text
//! <rekeyedDir>/<host>/<secret>.age          one output per (host, secret)
//! <rekeyedDir>/<host>/.nixseal-rekey.json   the host's rekey cache
//! /nix/store/<hash>-<host>-<secret>.age     the output in the host's closure
//! ```
//!
//! Keep in sync with `modules/nixos.nix` (`hostDir`, `rekeyedFile`,
//! `cacheFile`, and the `builtins.path { name = "${host}-${s.name}.age"; }`
//! that imports each output), which reads exactly these paths at evaluation.
//! Described in docs/design.md. Every part of nixseal that names a rekeyed
//! file (rekey, status, audit, the CLI) goes through [`RekeyedLayout`].

use std::path::{Path, PathBuf};

use super::cache::CACHE_FILE;

/// Suffix of every rekeyed output.
pub const OUTPUT_SUFFIX: &str = ".age";

/// The rekeyed directory and the names inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RekeyedLayout {
    dir: PathBuf,
}

impl RekeyedLayout {
    /// The layout under `dir` (the profile's `rekeyedDir`, resolved).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        RekeyedLayout { dir: dir.into() }
    }

    /// The rekeyed directory itself.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `<rekeyedDir>/<host>`: one host's outputs and cache.
    pub fn host_dir(&self, host: &str) -> PathBuf {
        self.dir.join(host)
    }

    /// `<rekeyedDir>/<host>/<secret>.age`.
    pub fn output(&self, host: &str, secret: &str) -> PathBuf {
        // One allocation (a plan makes one per pair).
        let mut p = PathBuf::with_capacity(
            self.dir.as_os_str().len() + host.len() + secret.len() + OUTPUT_SUFFIX.len() + 2,
        );
        p.push(&self.dir);
        p.push(host);
        p.push(secret);
        p.as_mut_os_string().push(OUTPUT_SUFFIX);
        p
    }

    /// `<rekeyedDir>/<host>/.nixseal-rekey.json`.
    pub fn cache_file(&self, host: &str) -> PathBuf {
        self.host_dir(host).join(CACHE_FILE)
    }
}

/// The file name of a secret's output in its host directory: `<secret>.age`.
pub fn output_name(secret: &str) -> String {
    format!("{secret}{OUTPUT_SUFFIX}")
}

/// The secret an output file name stands for (`db.age` → `db`); `None` for
/// any other name in a host directory.
pub fn secret_of(file_name: &str) -> Option<&str> {
    file_name.strip_suffix(OUTPUT_SUFFIX)
}

/// The store path name the NixOS module imports an output under:
/// `<host>-<secret>.age` (at most 211 bytes by the name limits).
pub fn store_name(host: &str, secret: &str) -> String {
    format!("{host}-{secret}{OUTPUT_SUFFIX}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_the_layout() {
        let l = RekeyedLayout::new("./secrets/rekeyed");
        assert_eq!(l.host_dir("web1"), Path::new("./secrets/rekeyed/web1"));
        assert_eq!(
            l.output("web1", "db"),
            Path::new("./secrets/rekeyed/web1/db.age")
        );
        assert_eq!(
            l.cache_file("web1"),
            Path::new("./secrets/rekeyed/web1/.nixseal-rekey.json")
        );
        assert_eq!(store_name("web1", "db"), "web1-db.age");
        assert_eq!(secret_of(&output_name("x.y")), Some("x.y"));
        assert_eq!(secret_of(CACHE_FILE), None);
    }
}
