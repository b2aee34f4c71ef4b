//! The fleet stamp: what the last no-op `renc` of the whole fleet saw, so
//! that the next one, given the very same profile, need read neither the
//! profile's hosts nor any record (`renc-fleet/<key>/fleet`, `<key>`
//! naming the flake root; docs/operator.md, "The fleet stamp").
//!
//! It is written only by a run of the whole fleet in which every host's
//! own stamp ([`HostStamp`]) vouched for it, that found nothing to do and
//! nothing to say (no warning, no untracked file), and it is made of what
//! that run checked — the host stamps it believed, the master files' stats
//! that gave their hashes, the rekeyed directory's stat taken before the
//! run listed it, git's index as it was when git's answer was given — never
//! of a stat taken afterwards. It is believed only while the profile has
//! the same bytes at the same canonical path and every file it names has
//! exactly the stat it records: then the host-by-host no-op would come to
//! the same answer from the same facts. Anything else and the run plans
//! host by host, as without it.

use std::path::{Path, PathBuf};

use super::{
    hex, hex_str, open_dir, parse_stat, read_own, settled, stat_fields, GitAnswer, Hex, HostStamp,
    RecordDir, Stat, MAGIC, MAX_RECORD,
};
use crate::common::fsutil;

/// The file of the fleet stamp in its record directory.
const FLEET_FILE: &str = "fleet";

/// The build that wrote a stamp: another nixseal may plan differently, so
/// it does not believe this one's.
const BUILD: &str = env!("CARGO_PKG_VERSION");

/// What a clean no-op of the whole fleet saw (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetStamp {
    /// The profile's canonical path.
    pub profile: PathBuf,
    /// sha256 (hex) of the profile's bytes.
    pub profile_sha: Hex,
    /// The rekeyed directory's canonical path.
    pub rekeyed_dir: PathBuf,
    /// Its `lstat`, taken before the run listed it.
    pub rekeyed: Stat,
    /// git's index and its stat when git's answer (every file tracked)
    /// was given; `None` outside git.
    pub git: Option<(PathBuf, Stat)>,
    /// Every master file: its absolute path, its stat (following a
    /// symlink, as master files are read) and its sha256 (hex).
    pub sources: Vec<(PathBuf, Stat, Hex)>,
    /// Every target, in name order.
    pub hosts: Vec<FleetHost>,
}

/// One target of a [`FleetStamp`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetHost {
    /// Its name (its directory in the rekeyed directory).
    pub name: String,
    /// The stamp its record held, which the run believed.
    pub stamp: HostStamp,
    /// Its secrets in name order, each `name/N` (N: the index of its master
    /// file in `sources`), separated by spaces (names hold neither).
    pub secrets: String,
}

impl FleetHost {
    /// Each secret's name and master file index (`None`: not as written).
    fn secrets(&self) -> impl Iterator<Item = Option<(&str, usize)>> {
        self.secrets.split(' ').filter(|s| !s.is_empty()).map(|s| {
            // (No `/` in the name: a file of the host's directory.)
            let (name, i) = s.split_once('/')?;
            Some((name, i.parse().ok()?))
        })
    }
}

impl FleetStamp {
    /// How many (host, secret) pairs the stamp vouches for, if it holds
    /// for `profile` (as given to renc) in the flake at `root`: the same
    /// canonical path and bytes, the rekeyed directory reached without a
    /// symlink with its stat, git's index with its stat (or still no git),
    /// each master file with its stat, and each host's stamp holding for
    /// its secrets ([`HostStamp::holds`]). `None` at the first doubt.
    pub fn holds(&self, profile: &Path, root: &Path) -> Option<usize> {
        use rayon::prelude::*;
        if std::fs::canonicalize(profile).ok()? != self.profile {
            return None;
        }
        // Read and hashed as the profile is (Profile::load, Profile.sha256).
        let bytes = fsutil::read_regular(profile, fsutil::MAX_FILE).ok()?;
        if hex(&fsutil::sha256_hex(&bytes))? != self.profile_sha {
            return None;
        }
        if std::fs::canonicalize(&self.rekeyed_dir).ok()? != self.rekeyed_dir {
            return None;
        }
        let m = std::fs::symlink_metadata(&self.rekeyed_dir).ok()?;
        if !m.is_dir() || Stat::of(&m) != self.rekeyed {
            return None;
        }
        // (git, told by the environment to look elsewhere, could answer
        // otherwise: not believed then.)
        if crate::operator::git::redirected() {
            return None;
        }
        match (&self.git, crate::operator::git::index_file(root)) {
            (None, None) => {}
            (Some((index, stat)), Some(now))
                if *index == now && GitAnswer::index_stat(&now).as_ref() == Some(stat) => {}
            _ => return None,
        }
        let sources_hold = self.sources.par_iter().all(|(path, stat, _)| {
            std::fs::metadata(path).is_ok_and(|m| m.is_file() && Stat::of(&m) == *stat)
        });
        if !sources_hold {
            return None;
        }
        self.hosts
            .par_iter()
            .map(|h| {
                let secrets = h
                    .secrets()
                    .map(|s| {
                        let (name, i) = s?;
                        Some((name, &self.sources.get(i)?.2[..]))
                    })
                    .collect::<Option<Vec<_>>>()?;
                let fd = open_dir(&self.rekeyed_dir.join(&h.name))?;
                let n = secrets.len();
                h.stamp.holds(&fd, secrets.into_iter()).then_some(n)
            })
            .sum()
    }

    /// The stamp kept in `dir`, if it is one this build wrote for it.
    pub fn load(dir: &RecordDir) -> Option<Self> {
        let (bytes, _) = read_own(dir, FLEET_FILE, MAX_RECORD)?;
        let text = std::str::from_utf8(&bytes).ok()?;
        let mut lines = text.split_terminator('\n');
        if lines.next()? != MAGIC
            || lines.next()?.strip_prefix("scope ") != Some(dir.scope.to_str()?)
            || lines.next()?.strip_prefix("fleet ") != Some(BUILD)
        {
            return None;
        }
        let (sha, profile) = lines.next()?.strip_prefix("profile ")?.split_once(' ')?;
        let mut f = lines.next()?.strip_prefix("rekeyed ")?.splitn(6, ' ');
        let rekeyed = parse_stat(&mut f)?;
        let rekeyed_dir = PathBuf::from(f.next()?);
        let git = match lines.next()?.strip_prefix("git ")? {
            "-" => None,
            g => {
                let mut f = g.splitn(6, ' ');
                let stat = parse_stat(&mut f)?;
                Some((PathBuf::from(f.next()?), stat))
            }
        };
        let mut sources = Vec::new();
        let mut hosts = Vec::new();
        while let Some(line) = lines.next() {
            if let Some(s) = line.strip_prefix("source ") {
                let mut f = s.splitn(7, ' ');
                let stat = parse_stat(&mut f)?;
                let sha = hex(f.next()?)?;
                sources.push((PathBuf::from(f.next()?), stat, sha));
                continue;
            }
            let mut f = line.strip_prefix("host ")?.splitn(13, ' ');
            // A host's directory is its name, in the rekeyed directory.
            let name = f.next()?;
            crate::contract::names::validate("host", name).ok()?;
            let name = name.to_owned();
            let dir = parse_stat(&mut f)?;
            let cache = parse_stat(&mut f)?;
            let digest = hex(f.next()?)?;
            let recipient = f.next()?.to_owned();
            let secrets = lines.next()?.strip_prefix("secrets")?;
            let secrets = secrets.strip_prefix(' ').unwrap_or(secrets).to_owned();
            hosts.push(FleetHost {
                name,
                stamp: HostStamp {
                    dir,
                    cache,
                    digest,
                    recipient,
                },
                secrets,
            });
        }
        Some(Self {
            profile: PathBuf::from(profile),
            profile_sha: hex(sha)?,
            rekeyed_dir,
            rekeyed,
            git,
            sources,
            hosts,
        })
    }

    /// Keeps `self` in `dir` (atomically), if every stat in it has settled
    /// (see the record's racy stamps) and every path can be written as a
    /// line; otherwise, and on any error, whatever stamp `dir` held is
    /// forgotten.
    pub fn store(&self, dir: &RecordDir) {
        match self.text(dir) {
            Some(text) => {
                if fsutil::atomic_write(&dir.dir, FLEET_FILE, text.as_bytes(), 0o600).is_err() {
                    Self::forget(dir);
                }
            }
            None => Self::forget(dir),
        }
    }

    /// Removes the stamp kept in `dir`, if any: a run that could not write
    /// a good one leaves none that no longer holds.
    pub fn forget(dir: &RecordDir) {
        let _ = rustix::fs::unlinkat(&*dir.fd, FLEET_FILE, rustix::fs::AtFlags::empty());
    }

    fn text(&self, dir: &RecordDir) -> Option<String> {
        fn line(p: &Path) -> Option<&str> {
            p.to_str().filter(|s| !s.contains('\n'))
        }
        use std::fmt::Write;
        let stats_settled = settled(&self.rekeyed)
            && self.git.iter().all(|(_, s)| settled(s))
            && self.sources.iter().all(|(_, s, _)| settled(s))
            && self
                .hosts
                .iter()
                .all(|h| settled(&h.stamp.dir) && settled(&h.stamp.cache));
        if !stats_settled {
            return None;
        }
        let mut out = String::with_capacity(1024 + self.hosts.len() * 256);
        let _ = writeln!(out, "{MAGIC}\nscope {}\nfleet {BUILD}", line(&dir.scope)?);
        let _ = writeln!(
            out,
            "profile {} {}",
            hex_str(&self.profile_sha),
            line(&self.profile)?
        );
        let _ = writeln!(
            out,
            "rekeyed {} {}",
            stat_fields(&self.rekeyed),
            line(&self.rekeyed_dir)?
        );
        match &self.git {
            None => out.push_str("git -\n"),
            Some((index, stat)) => {
                let _ = writeln!(out, "git {} {}", stat_fields(stat), line(index)?);
            }
        }
        for (path, stat, sha) in &self.sources {
            let _ = writeln!(
                out,
                "source {} {} {}",
                stat_fields(stat),
                hex_str(sha),
                line(path)?
            );
        }
        for h in &self.hosts {
            let fields = [h.name.as_str(), &h.stamp.recipient, &h.secrets];
            if fields.iter().any(|f| f.contains('\n')) || h.name.contains(' ') {
                return None;
            }
            let _ = writeln!(
                out,
                "host {} {} {} {} {}\nsecrets {}",
                h.name,
                stat_fields(&h.stamp.dir),
                stat_fields(&h.stamp.cache),
                hex_str(&h.stamp.digest),
                h.stamp.recipient,
                h.secrets
            );
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stat well out of the racy window.
    fn old(mut s: Stat) -> Stat {
        s.ctime_ns -= 2 * super::super::RACY_NS;
        s
    }

    fn stamp(t: &Path) -> (RecordDir, FleetStamp) {
        let root = t.join("flake");
        std::fs::create_dir_all(root.join("rekeyed/web1")).unwrap();
        std::fs::write(root.join("profile.json"), b"{}").unwrap();
        std::fs::write(root.join("a b.age"), b"x").unwrap();
        let dir = RecordDir::kept_in(&t.join("cache"), "renc-fleet", &root, true).unwrap();
        let st = |p: &str| old(Stat::of(&std::fs::metadata(root.join(p)).unwrap()));
        let stamp = FleetStamp {
            profile: root.join("profile.json"),
            profile_sha: hex(&"ab".repeat(32)).unwrap(),
            rekeyed_dir: root.join("rekeyed"),
            rekeyed: st("rekeyed"),
            git: Some((root.join(".git/index"), st("profile.json"))),
            sources: vec![(
                root.join("a b.age"),
                st("a b.age"),
                hex(&"cd".repeat(32)).unwrap(),
            )],
            hosts: vec![
                FleetHost {
                    name: "web1".into(),
                    stamp: HostStamp {
                        dir: st("rekeyed/web1"),
                        cache: st("a b.age"),
                        digest: hex(&"ef".repeat(32)).unwrap(),
                        recipient: "ssh-ed25519 AAAA".into(),
                    },
                    secrets: "db/0 tls/0".into(),
                },
                FleetHost {
                    name: "empty".into(),
                    stamp: HostStamp {
                        dir: st("rekeyed"),
                        cache: st("rekeyed"),
                        digest: hex(&"01".repeat(32)).unwrap(),
                        recipient: "ssh-ed25519 BBBB".into(),
                    },
                    secrets: String::new(),
                },
            ],
        };
        (dir, stamp)
    }

    /// Kept and read back, a stamp is what was kept (paths with spaces, a
    /// host without secrets, with git or without); its secrets read back
    /// as written.
    #[test]
    fn kept_and_read_back() {
        let t = tempfile::tempdir().unwrap();
        let (dir, mut s) = stamp(t.path());
        s.store(&dir);
        assert_eq!(FleetStamp::load(&dir).as_ref(), Some(&s));
        let secrets: Vec<_> = s.hosts[0].secrets().collect();
        assert_eq!(secrets, [Some(("db", 0)), Some(("tls", 0))]);
        assert_eq!(s.hosts[1].secrets().count(), 0);
        s.git = None;
        s.store(&dir);
        assert_eq!(FleetStamp::load(&dir).as_ref(), Some(&s));
    }

    /// Nothing is believed of a stamp of another build, another root, or
    /// one not this user's own or not as written; and a stamp with a stat
    /// still in the racy window, or a path that is not one line, is not
    /// kept: the one before it is forgotten.
    #[test]
    fn refused_and_not_kept() {
        let t = tempfile::tempdir().unwrap();
        let (dir, s) = stamp(t.path());
        let file = dir.dir.join(FLEET_FILE);
        let good = || {
            s.store(&dir);
            std::fs::read_to_string(&file).unwrap()
        };
        let spoil = |text: String| {
            std::fs::remove_file(&file).unwrap();
            std::fs::write(&file, text).unwrap();
            FleetStamp::load(&dir)
        };
        assert!(spoil(good()).is_some(), "the probe: rewritten as it was");
        let other_build = good().replacen(&format!("fleet {BUILD}\n"), "fleet 0.0.0-other\n", 1);
        assert!(spoil(other_build).is_none());
        let other_root = good().replacen("scope /", "scope /x/", 1);
        assert!(spoil(other_root).is_none());
        let bad_name = good().replacen("host web1 ", "host ../web1 ", 1);
        assert!(spoil(bad_name).is_none());
        let short = good();
        let lines: Vec<&str> = short.lines().collect();
        assert!(
            spoil(lines[..lines.len() - 1].join("\n")).is_none(),
            "a host without its secrets line"
        );
        {
            use std::os::unix::fs::PermissionsExt;
            good();
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o622)).unwrap();
            assert!(FleetStamp::load(&dir).is_none(), "open to others");
        }
        good();
        let mut racy = s.clone();
        racy.rekeyed.ctime_ns = super::super::now_ns();
        racy.store(&dir);
        assert!(
            !file.exists(),
            "a racy stamp is not kept, the old one is forgotten"
        );
        good();
        let mut two_lines = s.clone();
        two_lines.sources[0].0 = t.path().join("a\nb.age");
        two_lines.store(&dir);
        assert!(!file.exists());
    }
}
