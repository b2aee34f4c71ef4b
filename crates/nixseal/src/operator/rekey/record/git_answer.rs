//! git's last answer to renc's question "which of these files do you not
//! track?", kept beside the stat records (`git` in the record directory)
//! and given back while the index and the question are the same.

use std::path::{Path, PathBuf};

use super::{
    hex, hex_of, hex_str, parse_stat, read_own, settled, stat_fields, Hex, RecordDir, Stat, MAGIC,
    MAX_RECORD,
};
use crate::common::fsutil;

/// The record file of git's last answer ([`GitAnswer`]).
const GIT_FILE: &str = "git";

/// What git answered last time: which of the files asked about (their
/// list's [`digest_query`]) it does not track, while its index file had
/// this path and stat. Asked the same while the index is the same file
/// with the same stat — git replaces the index (lock file, rename) each
/// time it changes it — git answers the same, so renc need not run it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitAnswer {
    /// The index file.
    pub index: PathBuf,
    /// Its stat (following symlinks, as git opens it).
    pub stat: Stat,
    /// [`digest_query`] of what was asked.
    pub query: Hex,
    /// The files git does not track, relative to the flake root.
    pub untracked: Vec<PathBuf>,
}

/// One item of a question git is asked, described: its bytes and a NUL,
/// appended to `question` (as [`digest_query`] reads them).
pub fn query_item(question: &mut Vec<u8>, item: &[u8]) {
    question.extend_from_slice(item);
    question.push(0);
}

/// sha256 (hex) of a question: the parts, in order, each a run of
/// [`query_item`]s (built in parallel, hashed one after the other).
pub fn digest_query<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> Hex {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for p in parts {
        h.update(p);
    }
    hex_of(&h.finalize())
}

impl GitAnswer {
    /// The stat of `index` now (`None`: it cannot be read, or it changed
    /// too recently to key anything to).
    pub fn index_stat(index: &Path) -> Option<Stat> {
        let s = Stat::of(&std::fs::metadata(index).ok()?);
        settled(&s).then_some(s)
    }

    /// The remembered answer, if it is for exactly this question.
    pub fn load(dir: &RecordDir, index: &Path, stat: &Stat, query: &Hex) -> Option<Vec<PathBuf>> {
        let (bytes, _) = read_own(dir, GIT_FILE, MAX_RECORD)?;
        let text = std::str::from_utf8(&bytes).ok()?;
        let mut lines = text.split_terminator('\n');
        if lines.next()? != MAGIC
            || lines.next()?.strip_prefix("scope ") != Some(dir.scope.to_str()?)
            || lines.next()?.strip_prefix("index ") != Some(index.to_str()?)
            || parse_stat(&mut lines.next()?.strip_prefix("stat ")?.split(' '))? != *stat
            || hex(lines.next()?.strip_prefix("query ")?)? != *query
        {
            return None;
        }
        lines
            .map(|l| l.strip_prefix("untracked ").map(PathBuf::from))
            .collect()
    }

    /// Remembers `self` (nothing when a path cannot be written as a line).
    pub fn store(&self, dir: &RecordDir) {
        let (Some(scope), Some(index)) = (dir.scope.to_str(), self.index.to_str()) else {
            return;
        };
        let mut out = format!(
            "{MAGIC}\nscope {scope}\nindex {index}\nstat {}\nquery {}\n",
            stat_fields(&self.stat),
            hex_str(&self.query)
        );
        for p in &self.untracked {
            match p.to_str() {
                Some(p) if !p.contains('\n') => {
                    out.push_str("untracked ");
                    out.push_str(p);
                    out.push('\n');
                }
                _ => return,
            }
        }
        if [scope, index].iter().any(|s| s.contains('\n')) {
            return;
        }
        let _ = fsutil::atomic_write(&dir.dir, GIT_FILE, out.as_bytes(), 0o600);
    }
}
