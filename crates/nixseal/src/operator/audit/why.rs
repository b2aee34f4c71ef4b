//! Referrer chains, like `nix why-depends`: for each step from the system to
//! a finding, the entry of the referrer that mentions the next store path
//! (a symlink's target or a file's content holding its hash).

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::closure::Closure;
use super::scan::open_regular;
use super::ChainLink;

/// Reading stops after this many bytes per referrer (the chain then shows
/// the referrer without the entry).
const BUDGET: u64 = 32 << 20;

/// Finds and remembers which entry of a path mentions another.
pub(crate) struct Mentions<'a> {
    closure: &'a Closure,
    cache: HashMap<(usize, usize), Option<String>>,
}

impl<'a> Mentions<'a> {
    pub fn new(closure: &'a Closure) -> Self {
        Mentions {
            closure,
            cache: HashMap::new(),
        }
    }

    /// The chain from a root to `target` (`parents` from [`Closure::chains`]).
    pub fn chain(&mut self, parents: &[usize], target: usize) -> Vec<ChainLink> {
        let mut seq = vec![target];
        let mut p = target;
        while parents[p] != usize::MAX && seq.len() <= parents.len() {
            p = parents[p];
            seq.push(p);
        }
        seq.reverse();
        let mut out = Vec::with_capacity(seq.len());
        for (k, &i) in seq.iter().enumerate() {
            let via = seq.get(k + 1).and_then(|&next| self.find(i, next));
            out.push(ChainLink {
                store_path: self.closure.paths[i].display().to_string(),
                via,
            });
        }
        out
    }

    fn find(&mut self, from: usize, to: usize) -> Option<String> {
        if let Some(hit) = self.cache.get(&(from, to)) {
            return hit.clone();
        }
        let hash = hash_part(&self.closure.paths[to]);
        let hit = hash.and_then(|h| search(&self.closure.paths[from], h));
        self.cache.insert((from, to), hit.clone());
        hit
    }
}

/// The 32-character hash part of a store path's name.
fn hash_part(path: &Path) -> Option<&[u8]> {
    path.file_name()
        .map(|n| n.as_bytes())
        .filter(|n| n.len() > 32)
        .map(|n| &n[..32])
}

/// The first entry of `top` that mentions `needle` ("" when `top` itself is
/// the file or symlink): symlink targets first (cheap, and how most store
/// paths refer to each other), then file contents, each in name order,
/// depth first.
fn search(top: &Path, needle: &[u8]) -> Option<String> {
    let finder = Finder::new(needle);
    let mut budget = BUDGET;
    let mut files = Vec::new();
    let mut stack = vec![(top.to_owned(), PathBuf::new())];
    while let Some((abs, rel)) = stack.pop() {
        let Ok(meta) = fs::symlink_metadata(&abs) else {
            continue;
        };
        let ft = meta.file_type();
        if ft.is_symlink() {
            if fs::read_link(&abs)
                .ok()
                .is_some_and(|t| finder.find(t.as_os_str().as_bytes()))
            {
                return Some(rel.to_string_lossy().into_owned());
            }
        } else if ft.is_file() {
            files.push((abs, rel));
        } else if ft.is_dir() {
            let Ok(entries) = fs::read_dir(&abs) else {
                continue;
            };
            let mut names: Vec<_> = entries.flatten().map(|e| e.file_name()).collect();
            // Reversed, so that the stack pops them in name order.
            names.sort_by(|a, b| b.as_bytes().cmp(a.as_bytes()));
            for n in names {
                stack.push((abs.join(&n), rel.join(&n)));
            }
        }
    }
    for (abs, rel) in files {
        if budget == 0 {
            return None;
        }
        if file_contains(&abs, &finder, &mut budget).unwrap_or(false) {
            return Some(rel.to_string_lossy().into_owned());
        }
    }
    None
}

/// Boyer–Moore–Horspool search for one needle (a 32-byte hash part: most
/// positions are skipped a needle length at a time).
struct Finder<'a> {
    needle: &'a [u8],
    skip: [usize; 256],
}

impl<'a> Finder<'a> {
    fn new(needle: &'a [u8]) -> Self {
        let mut skip = [needle.len().max(1); 256];
        for (i, &b) in needle
            .iter()
            .enumerate()
            .take(needle.len().saturating_sub(1))
        {
            skip[b as usize] = needle.len() - 1 - i;
        }
        Finder { needle, skip }
    }

    fn find(&self, hay: &[u8]) -> bool {
        let n = self.needle.len();
        if n == 0 || hay.len() < n {
            return false;
        }
        let mut i = 0;
        while i + n <= hay.len() {
            let last = hay[i + n - 1];
            if last == self.needle[n - 1] && &hay[i..i + n] == self.needle {
                return true;
            }
            i += self.skip[last as usize];
        }
        false
    }
}

/// Whether a regular file holds `needle`, reading at most `budget` bytes.
fn file_contains(path: &Path, finder: &Finder<'_>, budget: &mut u64) -> io::Result<bool> {
    let mut file = open_regular(path)?;
    let keep = finder.needle.len().saturating_sub(1);
    let mut buf = vec![0u8; 64 * 1024 + keep];
    let mut filled = 0;
    loop {
        if *budget == 0 {
            return Ok(false);
        }
        let want = (buf.len() - filled).min(*budget as usize);
        let n = match file.read(&mut buf[filled..filled + want]) {
            Ok(0) => return Ok(false),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        *budget -= n as u64;
        filled += n;
        if finder.find(&buf[..filled]) {
            return Ok(true);
        }
        // Keep the tail, so a needle across two reads is found.
        let start = filled.saturating_sub(keep);
        buf.copy_within(start..filled, 0);
        filled -= start;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_entry_that_mentions_a_hash_even_across_reads() {
        let d = tempfile::tempdir().unwrap();
        let top = d.path().join("top");
        fs::create_dir_all(top.join("a/b")).unwrap();
        let needle = b"0123456789abcdfghijklmnpqrsvwxyz";
        fs::write(top.join("a/plain"), b"nothing here").unwrap();
        // Straddles the 64 KiB read boundary.
        let mut big = vec![b'x'; 64 * 1024 - 10];
        big.extend_from_slice(needle);
        big.extend_from_slice(&[b'y'; 100]);
        fs::write(top.join("a/b/big"), &big).unwrap();
        assert_eq!(search(&top, needle).as_deref(), Some("a/b/big"));
        // A symlink is read, not followed, and looked at before contents.
        std::os::unix::fs::symlink(
            format!("/nix/store/{}-x/bin", std::str::from_utf8(needle).unwrap()),
            top.join("z-link"),
        )
        .unwrap();
        assert_eq!(search(&top, needle).as_deref(), Some("z-link"));
        let f = Finder::new(b"abcab");
        for (hay, want) in [
            (&b"xxabcabxx"[..], true),
            (b"abcab", true),
            (b"abcaabcab", true),
            (b"abca", false),
            (b"ababcaxab", false),
        ] {
            assert_eq!(f.find(hay), want, "{hay:?}");
        }
        assert_eq!(search(&top, b"not-there-at-all-not-there-at-al"), None);
        // The store path itself is the file.
        assert_eq!(search(&top.join("a/b/big"), needle).as_deref(), Some(""));
    }
}
