//! The closure of a system: its store paths and their references, read from
//! the store with `nix-store` or from a closureInfo directory.
//!
//! Both end in the same format, Nix's *registration* (what
//! `nix-store --dump-db PATHS` prints, what `nix-store --load-db` reads and what
//! nixpkgs' `closureInfo` writes to `$out/registration`), one record per path:
//!
//! ```text
//! /nix/store/<hash>-<name>      the path
//! <narHash>                     hex, sha256:<base32|hex> or sha256-<base64>
//! <narSize>
//! <deriver>                     may be empty
//! <n>                           number of references
//! /nix/store/<hash>-<ref>       n lines
//! ```
//!
//! The shorter form `nix-store --register-validity` reads without
//! `--hash-given` (path, deriver, n, references) is accepted too.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::{prelude::BASE64_STANDARD, Engine};

use super::AuditError;
use crate::common::fsutil;
use crate::store_path::{nix_base32_decode, NarHash};

/// Where the closure of the audited system comes from.
#[derive(Debug, Clone)]
pub enum ClosureSpec {
    /// Ask the store: `nix-store --query --requisites SYSTEM`, then
    /// `nix-store --dump-db` for the references (a few processes in all).
    Store {
        /// The system: a store path or a symlink to one (`result`,
        /// `/run/current-system`).
        system: PathBuf,
    },
    /// Read `store-paths` and `registration` from the output of nixpkgs'
    /// `closureInfo { rootPaths = [ system ]; }` (inside a sandboxed build,
    /// where no store can be queried).
    ClosureInfo {
        /// The closureInfo output directory.
        dir: PathBuf,
        /// The system (a root of the chains); without it, every path that no
        /// other path refers to is a root.
        system: Option<PathBuf>,
    },
}

/// A closure: store paths, their references (indices) and NAR hashes.
#[derive(Debug)]
pub(crate) struct Closure {
    pub paths: Vec<PathBuf>,
    pub refs: Vec<Vec<usize>>,
    pub nar_hashes: Vec<Option<NarHash>>,
    pub roots: Vec<usize>,
}

/// At most this many bytes of store paths go on one `nix-store --dump-db`
/// command line (Linux allows about 2 MiB of arguments and environment).
const DUMP_DB_ARG_BYTES: usize = 256 * 1024;

pub(crate) fn load(spec: &ClosureSpec, store_dir: &Path) -> Result<Closure, AuditError> {
    match spec {
        ClosureSpec::Store { system } => from_store(system, store_dir),
        ClosureSpec::ClosureInfo { dir, system } => {
            from_closure_info(dir, system.as_deref(), store_dir)
        }
    }
}

impl Closure {
    /// For every path, the path it is first reached from by a breadth-first
    /// walk from the roots (`usize::MAX` for a root or an unreachable path),
    /// so following parents gives a shortest referrer chain.
    pub fn chains(&self) -> Vec<usize> {
        let mut parent = vec![usize::MAX; self.paths.len()];
        let mut seen = vec![false; self.paths.len()];
        let mut queue = VecDeque::new();
        for &r in &self.roots {
            seen[r] = true;
            queue.push_back(r);
        }
        while let Some(p) = queue.pop_front() {
            for &q in &self.refs[p] {
                if !seen[q] {
                    seen[q] = true;
                    parent[q] = p;
                    queue.push_back(q);
                }
            }
        }
        parent
    }

    fn build(paths: Vec<PathBuf>, records: Vec<Record>, source: &Path) -> Result<Self, AuditError> {
        let index: HashMap<&Path, usize> = paths
            .iter()
            .enumerate()
            .map(|(i, p)| (p.as_path(), i))
            .collect();
        let mut refs = vec![Vec::new(); paths.len()];
        let mut nar_hashes = vec![None; paths.len()];
        let mut registered = vec![false; paths.len()];
        for rec in records {
            let bad = |reason: String| AuditError::ClosureInfo {
                path: source.to_owned(),
                line: rec.line,
                reason,
            };
            let Some(&i) = index.get(rec.path.as_path()) else {
                return Err(bad(format!(
                    "{} is registered but not in the list of store paths",
                    rec.path.display()
                )));
            };
            registered[i] = true;
            nar_hashes[i] = rec.nar_hash;
            for r in &rec.refs {
                let Some(&j) = index.get(r.as_path()) else {
                    return Err(bad(format!(
                        "{} refers to {}, which is not in the closure (the closure is not complete)",
                        rec.path.display(),
                        r.display()
                    )));
                };
                if j != i && !refs[i].contains(&j) {
                    refs[i].push(j);
                }
            }
        }
        if let Some(i) = registered.iter().position(|r| !r) {
            return Err(AuditError::ClosureInfo {
                path: source.to_owned(),
                line: 0,
                reason: format!("{} has no registration entry", paths[i].display()),
            });
        }
        Ok(Closure {
            paths,
            refs,
            nar_hashes,
            roots: Vec::new(),
        })
    }
}

/// One registration record.
#[derive(Debug)]
struct Record {
    line: usize,
    path: PathBuf,
    nar_hash: Option<NarHash>,
    refs: Vec<PathBuf>,
}

/// Checks that `line` is `<store_dir>/<32 base32 chars>-<name>`, nothing else.
fn store_path_line(line: &str, store_dir: &Path) -> Result<PathBuf, String> {
    let dir = store_dir.to_string_lossy();
    let Some(base) = line
        .strip_prefix(&*dir)
        .and_then(|rest| rest.strip_prefix('/'))
    else {
        return Err(format!("{line:?} is not in the store {dir}"));
    };
    let valid = base.len() > 33
        && base.as_bytes()[32] == b'-'
        && base[..32]
            .bytes()
            .all(|c| b"0123456789abcdfghijklmnpqrsvwxyz".contains(&c))
        && base[33..]
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"+-._?=".contains(&c))
        && &base[33..] != "."
        && &base[33..] != "..";
    if !valid {
        return Err(format!(
            "{line:?} is not a store path ({dir}/<32-character hash>-<name>)"
        ));
    }
    Ok(PathBuf::from(line))
}

/// Parses a NAR hash as Nix prints it in registrations and closureInfo:
/// 64 hex digits, `sha256:` + base32/hex/base64, or SRI `sha256-<base64>`.
fn parse_nar_hash(text: &str) -> Option<NarHash> {
    let body = text
        .strip_prefix("sha256:")
        .or_else(|| text.strip_prefix("sha256-"))
        .unwrap_or(text);
    let bytes = match body.len() {
        64 => hex::decode(body).ok()?,
        52 => nix_base32_decode(body, 32)?,
        44 => BASE64_STANDARD.decode(body).ok()?,
        _ => return None,
    };
    Some(NarHash::from_bytes(bytes.try_into().ok()?))
}

/// Parses a registration (see the module documentation).
fn parse_registration(
    text: &str,
    source: &Path,
    store_dir: &Path,
) -> Result<Vec<Record>, AuditError> {
    let lines: Vec<&str> = text.split('\n').collect();
    let mut i = 0;
    let mut out = Vec::new();
    let bad = |line: usize, reason: String| AuditError::ClosureInfo {
        path: source.to_owned(),
        line: line + 1,
        reason,
    };
    let get = |i: usize, what: &str| -> Result<&str, AuditError> {
        lines.get(i).copied().ok_or_else(|| {
            bad(
                i,
                format!("the file ends where the {what} of a record is expected"),
            )
        })
    };
    while i < lines.len() {
        // Blank lines at the very end (closureInfo trims one, dump-db leaves none).
        if lines[i..].iter().all(|l| l.is_empty()) {
            break;
        }
        let start = i;
        let path = store_path_line(lines[i], store_dir).map_err(|r| bad(i, r))?;
        i += 1;
        let second = get(i, "hash or deriver")?;
        let mut nar_hash = None;
        if !(second.is_empty() || second.starts_with('/')) {
            nar_hash = Some(
                parse_nar_hash(second)
                    .ok_or_else(|| bad(i, format!("{second:?} is not a NAR hash")))?,
            );
            i += 1;
            let size = get(i, "NAR size")?;
            size.parse::<u64>()
                .map_err(|_| bad(i, format!("{size:?} is not a NAR size")))?;
            i += 1;
            // The deriver.
            get(i, "deriver")?;
        }
        i += 1;
        let count = get(i, "reference count")?;
        let n: usize = count
            .parse()
            .map_err(|_| bad(i, format!("{count:?} is not a reference count")))?;
        if n > lines.len() - i - 1 {
            return Err(bad(
                i,
                format!("{n} references announced but fewer lines follow"),
            ));
        }
        i += 1;
        let mut refs = Vec::with_capacity(n);
        for _ in 0..n {
            refs.push(store_path_line(lines[i], store_dir).map_err(|r| bad(i, r))?);
            i += 1;
        }
        out.push(Record {
            line: start + 1,
            path,
            nar_hash,
            refs,
        });
    }
    Ok(out)
}

fn from_closure_info(
    dir: &Path,
    system: Option<&Path>,
    store_dir: &Path,
) -> Result<Closure, AuditError> {
    let read = |name: &str| -> Result<(PathBuf, String), AuditError> {
        let path = dir.join(name);
        let bytes = fsutil::read_regular(&path, fsutil::MAX_FILE).map_err(|source| {
            AuditError::ClosureInfoRead {
                path: path.clone(),
                source,
            }
        })?;
        let text = String::from_utf8(bytes.to_vec()).map_err(|_| AuditError::ClosureInfo {
            path: path.clone(),
            line: 0,
            reason: "it is not UTF-8 text".into(),
        })?;
        Ok((path, text))
    };
    let (sp_file, sp_text) = read("store-paths")?;
    let (reg_file, reg_text) = read("registration")?;
    let mut paths = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (n, line) in sp_text.lines().enumerate() {
        if line.is_empty() {
            continue;
        }
        let p = store_path_line(line, store_dir).map_err(|reason| AuditError::ClosureInfo {
            path: sp_file.clone(),
            line: n + 1,
            reason,
        })?;
        if seen.insert(p.clone()) {
            paths.push(p);
        }
    }
    let records = parse_registration(&reg_text, &reg_file, store_dir)?;
    let mut closure = Closure::build(paths, records, &reg_file)?;
    closure.roots = match system {
        Some(system) => {
            let top = system_store_path(system, store_dir)?;
            let root = closure
                .paths
                .iter()
                .position(|p| *p == top)
                .ok_or_else(|| AuditError::SystemNotInClosure {
                    system: top.clone(),
                    dir: dir.to_owned(),
                })?;
            vec![root]
        }
        None => {
            let mut referred = vec![false; closure.paths.len()];
            for r in closure.refs.iter().flatten() {
                referred[*r] = true;
            }
            (0..closure.paths.len()).filter(|&i| !referred[i]).collect()
        }
    };
    Ok(closure)
}

/// The top-level store path `system` leads to (following symlinks such as
/// `result` or `/run/current-system`).
fn system_store_path(system: &Path, store_dir: &Path) -> Result<PathBuf, AuditError> {
    let resolved =
        std::fs::canonicalize(system).map_err(|source| AuditError::SystemUnreadable {
            path: system.to_owned(),
            source,
        })?;
    let store = std::fs::canonicalize(store_dir).unwrap_or_else(|_| store_dir.to_owned());
    let not_in_store = || AuditError::SystemNotInStore {
        path: system.to_owned(),
        resolved: resolved.clone(),
        store_dir: store_dir.to_owned(),
    };
    let rest = resolved.strip_prefix(&store).map_err(|_| not_in_store())?;
    let first = rest.components().next().ok_or_else(not_in_store)?;
    Ok(store_dir.join(first.as_os_str()))
}

fn run_nix_store(args: &[&std::ffi::OsStr], shown: &str) -> Result<String, AuditError> {
    let out = Command::new("nix-store")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|source| AuditError::NixStoreMissing {
            system: PathBuf::from(shown),
            source,
        })?;
    let command = format!(
        "nix-store {}",
        args.first()
            .map_or(String::new(), |a| a.to_string_lossy().into_owned())
    ) + &format!(" … {shown}");
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        return Err(AuditError::NixStoreFailed {
            command,
            status: out.status.to_string(),
            stderr,
        });
    }
    String::from_utf8(out.stdout).map_err(|_| AuditError::NixStoreOutput {
        command,
        reason: "not UTF-8".into(),
    })
}

/// Splits `paths` into runs whose command-line bytes stay within `max` (a
/// path longer than `max` gets a run of its own).
fn chunks(paths: &[PathBuf], max: usize) -> Vec<&[PathBuf]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, p) in paths.iter().enumerate() {
        let len = p.as_os_str().len() + 1;
        if i > start && bytes + len > max {
            out.push(&paths[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += len;
    }
    if start < paths.len() {
        out.push(&paths[start..]);
    }
    out
}

fn from_store(system: &Path, store_dir: &Path) -> Result<Closure, AuditError> {
    let top = system_store_path(system, store_dir)?;
    let shown = top.display().to_string();
    let requisites = run_nix_store(
        &["--query".as_ref(), "--requisites".as_ref(), top.as_os_str()],
        &shown,
    )?;
    let mut paths = Vec::new();
    for line in requisites.lines().filter(|l| !l.is_empty()) {
        paths.push(store_path_line(line, store_dir).map_err(|reason| {
            AuditError::NixStoreOutput {
                command: format!("nix-store --query --requisites {shown}"),
                reason,
            }
        })?);
    }
    // The references of every path, in as few processes as the argument
    // limit allows.
    let mut registration = String::new();
    for chunk in chunks(&paths, DUMP_DB_ARG_BYTES) {
        let mut args: Vec<&std::ffi::OsStr> = vec!["--dump-db".as_ref()];
        args.extend(chunk.iter().map(|p| p.as_os_str()));
        registration.push_str(&run_nix_store(&args, &shown)?);
    }
    let source = PathBuf::from("nix-store --dump-db");
    // The registration comes from nix-store here, not from a closureInfo file.
    let from_nix = |e: AuditError| match e {
        AuditError::ClosureInfo { line, reason, .. } => AuditError::NixStoreOutput {
            command: format!("nix-store --dump-db (closure of {shown})"),
            reason: format!("line {line}: {reason}"),
        },
        e => e,
    };
    let records = parse_registration(&registration, &source, store_dir).map_err(from_nix)?;
    let mut closure = Closure::build(paths, records, &source).map_err(from_nix)?;
    let root = closure
        .paths
        .iter()
        .position(|p| *p == top)
        .ok_or_else(|| AuditError::NixStoreOutput {
            command: format!("nix-store --query --requisites {shown}"),
            reason: format!("{shown} is not in its own closure"),
        })?;
    closure.roots = vec![root];
    Ok(closure)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "/nix/store/00000000000000000000000000000000-a";
    const B: &str = "/nix/store/11111111111111111111111111111111-b";
    const C: &str = "/nix/store/22222222222222222222222222222222-c";
    const HEX: &str = "d0ebcedc41204ce28f3ea2875a4ee4e38ff81b1f8294d69a65ceb3d4e51b7239";

    fn parse(text: &str) -> Result<Vec<Record>, AuditError> {
        parse_registration(text, Path::new("reg"), Path::new("/nix/store"))
    }

    #[test]
    fn reads_dump_db_and_closure_info_registrations() {
        // nix-store --dump-db: hex hash, deriver line, no trailing blank.
        let dump = format!("{A}\n{HEX}\n128\n/nix/store/33333333333333333333333333333333-a.drv\n1\n{B}\n{B}\n{HEX}\n64\n\n0\n");
        let recs = parse(&dump).unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].refs, vec![PathBuf::from(B)]);
        assert_eq!(recs[0].nar_hash.unwrap().to_hex(), HEX);
        // closureInfo: sha256:<base32>, empty deriver, trailing line trimmed.
        let b32 = crate::store_path::nix_base32_encode(&hex::decode(HEX).unwrap());
        let ci = format!("{A}\nsha256:{b32}\n128\n\n0");
        let recs = parse(&ci).unwrap();
        assert_eq!(recs[0].nar_hash.unwrap().to_hex(), HEX);
        // SRI, and the short form without hash (path, deriver, count).
        let sri = NarHash::from_bytes(hex::decode(HEX).unwrap().try_into().unwrap()).to_sri();
        assert_eq!(
            parse(&format!("{A}\n{sri}\n1\n\n0\n")).unwrap()[0]
                .nar_hash
                .unwrap()
                .to_hex(),
            HEX
        );
        let short = parse(&format!("{A}\n\n1\n{B}\n{B}\n\n0\n")).unwrap();
        assert!(short[0].nar_hash.is_none());
        assert_eq!(short[0].refs, vec![PathBuf::from(B)]);
        assert!(parse("").unwrap().is_empty());
    }

    #[test]
    fn hostile_registrations_are_refused_with_the_line() {
        let cases = [
            ("/etc/shadow\n\n0\n".to_string(), 1, "not in the store"),
            (
                "/nix/store/../../etc\n\n0\n".to_string(),
                1,
                "not a store path",
            ),
            (
                "/nix/store/0000-short\n\n0\n".to_string(),
                1,
                "not a store path",
            ),
            (format!("{A}/sub\n\n0\n"), 1, "not a store path"),
            (format!("{A}\n\n99\n{B}\n"), 3, "99 references"),
            (format!("{A}\n\nx\n"), 3, "not a reference count"),
            (format!("{A}\nnothash\n1\n\n0\n"), 2, "not a NAR hash"),
            (format!("{A}\n{HEX}\nbig\n\n0\n"), 3, "not a NAR size"),
            (format!("{A}\n{HEX}"), 3, "ends where"),
            (format!("{A}\n\n1\n/tmp/x\n"), 4, "not in the store"),
        ];
        for (text, line, want) in cases {
            match parse(&text) {
                Err(AuditError::ClosureInfo {
                    line: l, reason, ..
                }) => {
                    assert!(reason.contains(want), "{text:?}: {reason}");
                    assert_eq!(l, line, "{text:?}: {reason}");
                }
                other => panic!("{text:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn dump_db_arguments_are_split_below_the_limit() {
        let paths: Vec<PathBuf> = (0..10).map(|i| PathBuf::from(format!("{A}{i}"))).collect();
        let len = paths[0].as_os_str().len() + 1;
        for max in [1, len, 3 * len, 3 * len + 1, 1 << 20] {
            let chunks = chunks(&paths, max);
            assert_eq!(chunks.concat(), paths, "max {max}");
            for c in &chunks {
                // A chunk exceeds the limit only when one path alone does.
                let bytes: usize = c.iter().map(|p| p.as_os_str().len() + 1).sum();
                assert!(bytes <= max.max(len), "max {max}: {bytes}");
                assert!(!c.is_empty());
            }
        }
        assert_eq!(chunks(&paths, 1 << 20).len(), 1);
        assert_eq!(chunks(&paths, 1).len(), 10);
        assert!(chunks(&[], 10).is_empty());
    }

    #[test]
    fn closure_must_be_closed_and_registered() {
        let paths = vec![PathBuf::from(A), PathBuf::from(B)];
        let recs = parse(&format!("{A}\n\n1\n{C}\n{B}\n\n0\n")).unwrap();
        let e = Closure::build(paths.clone(), recs, Path::new("reg")).unwrap_err();
        assert!(e.to_string().contains("not in the closure"), "{e}");
        let recs = parse(&format!("{A}\n\n0\n")).unwrap();
        let e = Closure::build(paths.clone(), recs, Path::new("reg")).unwrap_err();
        assert!(e.to_string().contains("no registration entry"), "{e}");
        let recs = parse(&format!("{A}\n\n2\n{A}\n{B}\n{B}\n\n1\n{A}\n")).unwrap();
        let mut c = Closure::build(paths, recs, Path::new("reg")).unwrap();
        // Self references are dropped; cycles do not loop.
        assert_eq!(c.refs[0], vec![1]);
        c.roots = vec![0];
        assert_eq!(c.chains(), vec![usize::MAX, 0]);
    }
}
