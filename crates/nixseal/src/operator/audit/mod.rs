//! `nixseal audit`: does a host's system carry secret material that is not its own?
//!
//! A host's closure should hold its own rekeyed files and nothing else secret.
//! One line such as `nix.registry.self.flake = self;` breaks that silently: it
//! copies the whole flake source — every master ciphertext, every other host's
//! rekeyed files and caches — into every host's store. This module walks a
//! built system's closure and names every store path that holds such material:
//!
//! - the flake's own source: its store path (and NAR hash) computed from the
//!   working tree's tracked files with [`crate::store_path`], and older or
//!   filtered copies of it recognised by their layout (`flake.nix` next to the
//!   profile's rekeyed directory or master files);
//! - any file whose content equals a master ciphertext, another host's rekeyed
//!   file or rekey cache, or an identity file named in the profile (files are
//!   compared by size first, so almost none is read);
//! - (heuristic, can be turned off) directories of age files that look like a
//!   secrets tree, and rekey caches recognised by name.
//!
//! The closure comes from the store (`nix-store --query --requisites` and
//! `nix-store --dump-db`, see [`ClosureSpec::Store`]) or, inside a sandboxed
//! build, from a directory made by nixpkgs' `closureInfo`
//! ([`ClosureSpec::ClosureInfo`]). Each finding carries the referrer chain from
//! the system to the path, like `nix why-depends`. Symlinks are never followed;
//! FIFOs, devices and sockets are never opened; only files whose size equals a
//! known secret's are read whole, and `.age` files' first bytes for the
//! heuristic.
//!
//! The report is also the `--json` document (version [`AUDIT_JSON_VERSION`],
//! described in `docs/json.md`).

mod closure;
mod known;
mod report;
mod scan;
mod why;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::contract::names::{HostName, NameError};
use crate::operator::profile::Profile;

pub use closure::ClosureSpec;
pub use report::{
    ChainLink, ClosureFrom, ClosureStats, Finding, FlakeCopy, FlakeSource, Holding, LeakedFile,
    NotChecked, Report, SecretTree, SecretUse, Skipped, SourceBasis, Unreadable,
};

/// The version of the `nixseal audit --json` document this build writes.
pub const AUDIT_JSON_VERSION: u64 = 1;

/// Why an audit could not be run at all. A leak is not an error: it is a
/// [`Finding`] in the [`Report`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The host name is not a valid nixseal host name.
    #[error("host name: {0}")]
    HostName(#[source] NameError),
    /// The system path does not exist or cannot be resolved.
    #[error("cannot resolve the system {path}: {source}; give a `nixos-rebuild build` result, /run/current-system or a store path")]
    SystemUnreadable {
        /// The path given.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The system path does not lead into the Nix store.
    #[error("the system {path} is not in the Nix store {store_dir} (it resolves to {resolved}); give a `nixos-rebuild build` result, /run/current-system or a store path")]
    SystemNotInStore {
        /// The path given.
        path: PathBuf,
        /// Where it leads.
        resolved: PathBuf,
        /// The store directory.
        store_dir: PathBuf,
    },
    /// `nix-store` could not be run.
    #[error("cannot run nix-store to read the closure of {system}: {source}; install Nix")]
    NixStoreMissing {
        /// The system whose closure was asked for.
        system: PathBuf,
        /// The spawn error.
        #[source]
        source: std::io::Error,
    },
    /// `nix-store` refused the query (e.g. the path is not valid in this store).
    #[error("`{command}` failed ({status}): {stderr}")]
    NixStoreFailed {
        /// The command line (store paths only, no secrets).
        command: String,
        /// Its exit status.
        status: String,
        /// What it printed on stderr (trimmed).
        stderr: String,
    },
    /// `nix-store` printed something this build cannot read.
    #[error("`{command}` printed output nixseal cannot read: {reason}")]
    NixStoreOutput {
        /// The command line.
        command: String,
        /// What is wrong.
        reason: String,
    },
    /// A closureInfo file cannot be read.
    #[error("cannot read {path}: {source}")]
    ClosureInfoRead {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A closureInfo file is malformed.
    #[error("{path}, line {line}: {reason}")]
    ClosureInfo {
        /// The file.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// The system given is not in the closure given.
    #[error("the system {system} is not in the closure {dir}; build the closureInfo with rootPaths = [ <that system> ]")]
    SystemNotInClosure {
        /// The system.
        system: PathBuf,
        /// The closureInfo directory.
        dir: PathBuf,
    },
    /// A file the profile names (master ciphertext, rekeyed file, identity)
    /// exists but cannot be read, so it cannot be looked for.
    #[error(
        "cannot read {what} {path}: {source}; nixseal audit must read it to recognise copies of it"
    )]
    KnownFile {
        /// What the file is ("master ciphertext", "identity file", ...).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// What to audit.
#[derive(Debug, Clone)]
pub struct AuditRequest<'a> {
    /// The fleet profile; its `root` is the flake root (working tree, or the
    /// flake's store path inside a build).
    pub profile: &'a Profile,
    /// The host whose system is audited: its own rekeyed files are allowed.
    pub host: &'a str,
    /// Where the closure comes from.
    pub closure: ClosureSpec,
    /// The Nix store directory (`/nix/store` unless `NIX_STORE_DIR` says otherwise).
    pub store_dir: PathBuf,
    /// Whether to run the heuristic checks (secrets trees, rekey caches by name).
    pub heuristics: bool,
}

/// Runs the audit.
pub fn audit(req: &AuditRequest<'_>) -> Result<Report, AuditError> {
    let host = HostName::new(req.host).map_err(AuditError::HostName)?;
    // `/nix/store/` and `/nix/store` are one store.
    let store_dir: PathBuf = req.store_dir.components().collect();
    let closure = closure::load(&req.closure, &store_dir)?;
    let known = known::Known::build(req.profile, &host)?;
    let markers = known::Markers::from_profile(req.profile);
    let cfg = scan::ScanConfig {
        known: &known,
        markers: &markers,
        store_dir: &store_dir,
        heuristics: req.heuristics,
    };
    // The flake source is hashed while the closure is walked.
    let (source, scans) = rayon::join(
        || known::flake_source(&req.profile.root, &store_dir),
        || {
            closure
                .paths
                .par_iter()
                .map(|p| scan::scan_path(p, &cfg))
                .collect::<Vec<_>>()
        },
    );

    let mut stats = ClosureStats {
        from: match req.closure {
            ClosureSpec::Store { .. } => ClosureFrom::Store,
            ClosureSpec::ClosureInfo { .. } => ClosureFrom::ClosureInfo,
        },
        closure_info: match &req.closure {
            ClosureSpec::ClosureInfo { dir, .. } => Some(dir.display().to_string()),
            ClosureSpec::Store { .. } => None,
        },
        store_paths: closure.paths.len() as u64,
        files: 0,
        symlinks_out_of_store: 0,
        heuristics: req.heuristics,
        unreadable: 0,
        skipped: 0,
    };
    let mut unreadable = Vec::new();
    let mut skipped = Vec::new();
    let chains = closure.chains();
    let mut mentions = why::Mentions::new(&closure);
    let mut findings = Vec::new();
    for (i, scan) in scans.into_iter().enumerate() {
        stats.files += scan.files;
        stats.symlinks_out_of_store += scan.symlinks_out_of_store;
        stats.unreadable += scan.unreadable_total;
        stats.skipped += scan.skipped_total;
        unreadable.extend(scan.unreadable);
        skipped.extend(scan.skipped);
        let mut copies = scan.copies;
        if source.matches(&closure.paths[i], closure.nar_hashes[i].as_ref()) {
            match copies.iter_mut().find(|c| c.dir.is_empty()) {
                Some(c) => c.exact = true,
                None => copies.insert(
                    0,
                    FlakeCopy {
                        exact: true,
                        dir: String::new(),
                        rekeyed_hosts: Vec::new(),
                        master_files: Vec::new(),
                    },
                ),
            }
        }
        if copies.is_empty() && scan.leaked.is_empty() && scan.trees.is_empty() {
            continue;
        }
        let chain = mentions.chain(&chains, i);
        findings.push(Finding {
            store_path: closure.paths[i].display().to_string(),
            flake_copies: copies,
            files: scan.leaked,
            secret_trees: scan.trees,
            chain,
        });
    }
    findings.sort_by(|a, b| a.store_path.cmp(&b.store_path));
    let complete = stats.unreadable == 0;

    Ok(Report {
        version: AUDIT_JSON_VERSION,
        host: host.to_string(),
        host_in_profile: req.profile.hosts.contains_key(host.as_str()),
        closure: stats,
        roots: closure
            .roots
            .iter()
            .map(|&r| closure.paths[r].display().to_string())
            .collect(),
        flake_source: source.report,
        clean: findings.is_empty(),
        complete,
        findings,
        not_checked: known.not_checked,
        unreadable,
        skipped,
    })
}

/// Groups `(host, secret)` uses of each master file (helper for [`known`]).
fn group_uses(profile: &Profile) -> BTreeMap<PathBuf, (String, Vec<SecretUse>)> {
    let mut by_file: BTreeMap<PathBuf, (String, Vec<SecretUse>)> = BTreeMap::new();
    for (host, h) in &profile.hosts {
        for (name, s) in &h.secrets {
            by_file
                .entry(s.source.to_path_buf())
                .or_insert_with(|| (s.file.clone(), Vec::new()))
                .1
                .push(SecretUse {
                    host: host.to_string(),
                    secret: name.to_string(),
                });
        }
    }
    by_file
}

/// `path` as the profile would write it: `./rel` when it is inside `root`
/// (or relative, as the profile resolves paths against the root `.`).
fn display_rel(root: &Path, path: &Path) -> String {
    let rel = if path.is_relative() {
        Some(path)
    } else {
        path.strip_prefix(root).ok()
    };
    match rel {
        Some(rel) if !rel.as_os_str().is_empty() => format!("./{}", rel.display()),
        _ => path.display().to_string(),
    }
}

impl crate::common::error::Classify for AuditError {
    fn class(&self) -> crate::common::error::ErrorClass {
        use crate::common::error::ErrorClass;
        match self {
            AuditError::NixStoreMissing { .. } | AuditError::NixStoreOutput { .. } => {
                ErrorClass::Environment
            }
            _ => ErrorClass::BadInput,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKz7ImoUTnDGygVAnHosv8eMZLvLwcpu36+ZXNI5mTf1";

    fn age_like(tag: u8, len: usize) -> Vec<u8> {
        let mut v = b"age-encryption.org/v1\n".to_vec();
        v.resize(len, tag);
        v
    }

    /// A fleet at `root` and a private store with closureInfo files.
    struct Setup {
        dir: tempfile::TempDir,
        profile: Profile,
    }

    impl Setup {
        fn new() -> Setup {
            let dir = tempfile::tempdir().unwrap();
            let root = dir.path().join("fleet");
            let w = |rel: &str, bytes: &[u8]| {
                let p = root.join(rel);
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(p, bytes).unwrap();
            };
            w("secrets/a.age", &age_like(b'm', 300));
            w("secrets/rekeyed/web1/a.age", &age_like(b'w', 310));
            w("secrets/rekeyed/db1/a.age", &age_like(b'd', 320));
            w("secrets/rekeyed/db1/.nixseal-rekey.json", b"{\"db1\":1}");
            let profile = format!(
                r#"{{"version":1,"rekeyedDir":"./secrets/rekeyed","hosts":{{
                  "web1":{{"hostPubkey":"{KEY}","secrets":{{"a":{{"file":"./secrets/a.age"}}}}}},
                  "db1":{{"hostPubkey":"{KEY}","secrets":{{"a":{{"file":"./secrets/a.age"}}}}}}}}}}"#
            );
            w("profile.json", profile.as_bytes());
            let profile = Profile::load(&root.join("profile.json"), &root).unwrap();
            std::fs::create_dir(dir.path().join("store")).unwrap();
            Setup { dir, profile }
        }

        fn store(&self) -> PathBuf {
            self.dir.path().join("store")
        }

        fn path(&self, n: u8, name: &str) -> PathBuf {
            self.store().join(format!(
                "{}-{name}",
                char::from(b'0' + n).to_string().repeat(32)
            ))
        }

        fn audit(&self, host: &str, heuristics: bool, paths: &[PathBuf]) -> Report {
            let ci = self.dir.path().join("ci");
            std::fs::create_dir_all(&ci).unwrap();
            let mut sp = String::new();
            let mut reg = String::new();
            for p in paths {
                sp += &format!("{}\n", p.display());
                reg += &format!("{}\n\n0\n", p.display());
            }
            std::fs::write(ci.join("store-paths"), sp).unwrap();
            std::fs::write(ci.join("registration"), reg).unwrap();
            audit(&AuditRequest {
                profile: &self.profile,
                host,
                closure: ClosureSpec::ClosureInfo {
                    dir: ci,
                    system: None,
                },
                store_dir: self.store(),
                heuristics,
            })
            .unwrap()
        }
    }

    #[test]
    fn size_filter_own_files_heuristics_and_layout() {
        let s = Setup::new();
        let root = s.profile.root.clone();
        // p1: the host's own file (allowed), a file of a master's size but
        // other content (not a copy), and an age tree of unknown files.
        let p1 = s.path(1, "misc");
        std::fs::create_dir_all(p1.join("tree")).unwrap();
        std::fs::copy(root.join("secrets/rekeyed/web1/a.age"), p1.join("own.age")).unwrap();
        std::fs::write(p1.join("same-size"), age_like(b'x', 300)).unwrap();
        std::fs::write(p1.join("tree/x.age"), age_like(b'1', 100)).unwrap();
        std::fs::write(p1.join("tree/y.age"), age_like(b'2', 100)).unwrap();
        std::fs::write(p1.join("tree/not-age.age"), b"plain text").unwrap();
        // p2: an older copy of the flake (only its layout is known).
        let p2 = s.path(2, "source");
        std::fs::create_dir_all(p2.join("secrets/rekeyed/db1")).unwrap();
        std::fs::create_dir_all(p2.join("secrets/rekeyed/web1")).unwrap();
        std::fs::write(p2.join("flake.nix"), b"{ }").unwrap();
        // p3: the own file as its own store path, as the module makes it.
        let p3 = s.path(3, "web1-a.age");
        std::fs::copy(root.join("secrets/rekeyed/web1/a.age"), &p3).unwrap();
        // p4: another flake's source with age test vectors (no heuristic
        // finding), holding a copy of db1's file (found by content).
        let p4 = s.path(4, "source");
        std::fs::create_dir_all(p4.join("test")).unwrap();
        std::fs::write(p4.join("flake.nix"), b"{ }").unwrap();
        std::fs::write(p4.join("test/x.age"), age_like(b'3', 100)).unwrap();
        std::fs::write(p4.join("test/y.age"), age_like(b'4', 100)).unwrap();
        let paths = [p1.clone(), p2.clone(), p3.clone(), p4.clone()];

        let r = s.audit("web1", true, &paths);
        assert!(r.host_in_profile);
        assert_eq!(r.findings.len(), 2, "{:#?}", r.findings);
        std::fs::copy(
            root.join("secrets/rekeyed/db1/a.age"),
            p4.join("test/z.age"),
        )
        .unwrap();
        let r4 = s.audit("web1", true, &paths);
        assert_eq!(r4.findings.len(), 3, "{:#?}", r4.findings);
        let f4 = &r4.findings[2];
        assert!(f4.secret_trees.is_empty() && f4.files.len() == 1, "{f4:#?}");
        assert_eq!(f4.files[0].path, "test/z.age");
        std::fs::remove_file(p4.join("test/z.age")).unwrap();
        let f1 = &r.findings[0];
        assert_eq!(f1.store_path, p1.display().to_string());
        assert!(f1.files.is_empty(), "{f1:#?}");
        assert_eq!(f1.secret_trees.len(), 1);
        let t = &f1.secret_trees[0];
        assert_eq!(
            (t.dir.as_str(), t.age_files, t.rekey_caches),
            ("tree", 2, 0)
        );
        assert_eq!(t.examples, ["x.age", "y.age"]);
        let f2 = &r.findings[1];
        assert_eq!(
            f2.flake_copies,
            [FlakeCopy {
                exact: false,
                dir: String::new(),
                rekeyed_hosts: vec!["db1".into(), "web1".into()],
                master_files: vec![],
            }]
        );
        assert_eq!(r.closure.files, 10);
        assert!(r.clean == r.findings.is_empty() && r.complete);

        // Without heuristics the tree is not reported; the layout still is.
        let r = s.audit("web1", false, &paths);
        assert_eq!(r.findings.len(), 1);
        assert_eq!(r.findings[0].store_path, p2.display().to_string());

        // As another host, web1's file is someone else's, wherever it is.
        let r = s.audit("web9", false, &paths);
        assert!(!r.host_in_profile);
        let holds: Vec<&Holding> = r
            .findings
            .iter()
            .flat_map(|f| &f.files)
            .flat_map(|l| &l.holds)
            .collect();
        assert_eq!(holds.len(), 2, "{:#?}", r.findings);
        assert!(holds
            .iter()
            .all(|h| matches!(h, Holding::RekeyedFile { host, .. } if host == "web1")));
    }

    #[test]
    fn a_host_owns_the_rekeyed_files_of_the_homes_it_carries() {
        let s = Setup::new();
        let root = s.profile.root.clone();
        std::fs::create_dir_all(root.join("secrets/rekeyed/web1.alice")).unwrap();
        std::fs::write(
            root.join("secrets/rekeyed/web1.alice/a.age"),
            age_like(b'h', 330),
        )
        .unwrap();
        let profile = format!(
            r#"{{"version":1,"rekeyedDir":"./secrets/rekeyed","hosts":{{
              "web1":{{"hostPubkey":"{KEY}","kind":"host","secrets":{{"a":{{"file":"./secrets/a.age"}}}}}},
              "web1.alice":{{"hostPubkey":"{KEY}","kind":"home","host":"web1","secrets":{{"a":{{"file":"./secrets/a.age"}}}}}},
              "db1":{{"hostPubkey":"{KEY}","secrets":{{"a":{{"file":"./secrets/a.age"}}}}}}}}}}"#
        );
        std::fs::write(root.join("profile.json"), profile).unwrap();
        let s = Setup {
            profile: Profile::load(&root.join("profile.json"), &root).unwrap(),
            ..s
        };
        // web1's system: its own file and its user alice's, as home-manager
        // as a NixOS module puts them there.
        let own = s.path(1, "web1-a.age");
        std::fs::copy(root.join("secrets/rekeyed/web1/a.age"), &own).unwrap();
        let home = s.path(2, "web1.alice-a.age");
        std::fs::copy(root.join("secrets/rekeyed/web1.alice/a.age"), &home).unwrap();
        let r = s.audit("web1", true, &[own.clone(), home.clone()]);
        assert!(r.clean && r.findings.is_empty(), "{:#?}", r.findings);
        // On db1 alice's file is another target's.
        let r = s.audit("db1", true, std::slice::from_ref(&home));
        assert_eq!(r.findings.len(), 1, "{:#?}", r.findings);
        assert!(matches!(
            &r.findings[0].files[0].holds[0],
            Holding::RekeyedFile { host, .. } if host == "web1.alice"
        ));
        // The home itself is no host: auditing it does not make web1's own.
        let r = s.audit("web1.alice", true, &[own]);
        assert_eq!(r.findings.len(), 1, "{:#?}", r.findings);
    }

    #[test]
    fn missing_and_empty_known_files_are_noted_not_fatal() {
        let s = Setup::new();
        let root = s.profile.root.clone();
        std::fs::remove_file(root.join("secrets/a.age")).unwrap();
        std::fs::write(root.join("secrets/rekeyed/db1/a.age"), b"").unwrap();
        let r = s.audit("web1", true, &[]);
        let noted: Vec<(&str, &str)> = r
            .not_checked
            .iter()
            .map(|n| (n.file.as_str(), n.what.as_str()))
            .collect();
        assert!(
            noted.contains(&("./secrets/a.age", "masterCiphertext")),
            "{noted:?}"
        );
        assert!(
            noted.contains(&("./secrets/rekeyed/db1/a.age", "rekeyedFile")),
            "{noted:?}"
        );
        assert!(r.clean);
        // A known file that exists but cannot be read is an error, named.
        std::fs::remove_file(root.join("secrets/rekeyed/db1/a.age")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", root.join("secrets/a.age")).unwrap();
        let e = audit(&AuditRequest {
            profile: &s.profile,
            host: "web1",
            closure: ClosureSpec::ClosureInfo {
                dir: s.dir.path().join("ci"),
                system: None,
            },
            store_dir: s.store(),
            heuristics: true,
        })
        .unwrap_err();
        assert!(
            matches!(
                &e,
                AuditError::KnownFile {
                    what: "master ciphertext",
                    ..
                }
            ) && e.to_string().contains("secrets/a.age")
                && e.to_string().contains("character device"),
            "{e}"
        );
    }
}
