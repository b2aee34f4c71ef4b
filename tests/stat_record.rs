//! The stat record (crates/nixseal/src/operator/rekey/record.rs): a no-op
//! renc trusts an output or master file without reading it only when its
//! device, inode, size, mtime and ctime are the ones recorded with its hash.
//! Each test runs the real binary with its own XDG_CACHE_HOME and proves
//! both halves: the record is used (a no-op opens no output, and a record
//! whose hash is doctored is believed), and a file changed behind nixseal's
//! back is still caught (same size with the mtime put back, replaced, a
//! fresh copy at the same path), while a record that is not a good one of
//! this user's is ignored.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use support::*;

/// Runs nixseal in the fleet with `cache` as XDG_CACHE_HOME.
fn run(f: &Fleet, cache: &Path, args: &[&str]) -> Output {
    Command::new(nixseal_bin())
        .current_dir(&f.root)
        .env("XDG_CACHE_HOME", cache)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn renc(f: &Fleet, cache: &Path) -> Output {
    run(f, cache, &["renc", "--profile", "profile.json"])
}

/// A fleet rekeyed, then (after the racy window: files changed in the last
/// two seconds are not recorded) a no-op that hashes everything and writes
/// the records. Returns the fleet, its cache home and the record directory.
fn recorded() -> (Fleet, tempfile::TempDir, PathBuf) {
    let f = Fleet::new();
    let cache = tempfile::tempdir().unwrap();
    assert_code(&renc(&f, cache.path()), 0);
    std::thread::sleep(Duration::from_millis(2200));
    let o = renc(&f, cache.path());
    assert_code(&o, 0);
    assert_stdout_has(&o, "0 rekeyed, 4 unchanged");
    let base = cache.path().join("nixseal/renc-stat");
    let dirs: Vec<PathBuf> = std::fs::read_dir(&base)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(dirs.len(), 1, "one record directory per rekeyed directory");
    let dir = dirs.into_iter().next().unwrap();
    for name in ["host-web1", "host-db1", "sources"] {
        assert!(dir.join(name).is_file(), "{name} recorded");
    }
    for host in ["web1", "db1"] {
        assert!(stamp_of(&dir, host).is_some(), "{host} stamped as a whole");
    }
    (f, cache, dir)
}

/// The record of `host` with the recorded sha256 of `secret` replaced by
/// another well-formed one, and without its host stamp (which vouches for
/// the host as a whole, so that the entries are what the no-op reads).
fn doctored(dir: &Path, host: &str, secret: &str) -> String {
    let text = std::fs::read_to_string(dir.join(format!("host-{host}"))).unwrap();
    let mut hit = false;
    let out: Vec<String> = text
        .lines()
        .filter(|l| !l.starts_with("host "))
        .map(|l| {
            // dev ino size mtime ctime output-sha source-sha name
            let f: Vec<&str> = l.splitn(8, ' ').collect();
            if f.len() == 8 && f[7] == secret {
                hit = true;
                let other = if f[5].starts_with('0') { "1" } else { "0" };
                format!(
                    "{} {} {} {secret}",
                    f[..5].join(" "),
                    other.repeat(64),
                    f[6]
                )
            } else {
                l.to_owned()
            }
        })
        .collect();
    assert!(hit, "{secret} is in the record of {host}:\n{text}");
    out.join("\n") + "\n"
}

/// The host stamp line of `host`'s record (a no-op that settled writes one).
fn stamp_of(dir: &Path, host: &str) -> Option<String> {
    std::fs::read_to_string(dir.join(format!("host-{host}")))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("host "))
        .map(str::to_owned)
}

/// A renc that rewrites exactly (`host`, `secret`), which then decrypts
/// with the host's key to `want`.
fn rewrites_one(f: &Fleet, cache: &Path, host: &str, secret: &str, want: &[u8]) {
    let o = renc(f, cache);
    assert_code(&o, 0);
    assert_stdout_has(&o, "1 rekeyed, 3 unchanged");
    let got = age_decrypt(&f.output(host, secret), &f.path(&format!("keys/{host}")));
    assert_eq!(got, want, "{host}/{secret}");
}

fn write_private(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::remove_file(path);
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// Overwrites one byte of `path` in place (same size, same inode) and puts
/// its mtime back, as `touch -d` would.
fn edit_in_place_keeping_mtime(path: &Path) {
    use std::io::{Seek, SeekFrom, Write};
    let before = std::fs::metadata(path).unwrap();
    let mtime = before.modified().unwrap();
    let mut bytes = std::fs::read(path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    let mut file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.seek(SeekFrom::Start(last as u64)).unwrap();
    file.write_all(&bytes[last..]).unwrap();
    file.set_modified(mtime).unwrap();
    drop(file);
    let after = std::fs::metadata(path).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        (after.len(), after.modified().unwrap(), after.ino()),
        (before.len(), mtime, before.ino()),
        "same size, mtime and inode"
    );
}

/// Replaces `path` by a copy with its last byte changed and its mtime put
/// back: same size and mtime, a new inode (and ctime).
fn replace_keeping_mtime(path: &Path) {
    let meta = std::fs::metadata(path).unwrap();
    let mut bytes = std::fs::read(path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let tmp = path.with_extension("swap");
    std::fs::write(&tmp, &bytes).unwrap();
    let t = std::fs::File::options().write(true).open(&tmp).unwrap();
    t.set_modified(meta.modified().unwrap()).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// The rekeyed directory as a fresh copy at the same path (`cp -a`: sizes
/// and mtimes kept, new inodes and ctimes), `altered` (a path inside it)
/// edited in place first.
fn fresh_copy_of_rekeyed(f: &Fleet, altered: &str) {
    let rekeyed = f.path("secrets/rekeyed");
    let old = f.path("rekeyed.old");
    std::fs::rename(&rekeyed, &old).unwrap();
    edit_in_place_keeping_mtime(&old.join(altered));
    run_ok(Command::new("cp").arg("-a").arg(&old).arg(&rekeyed));
    std::fs::remove_dir_all(&old).unwrap();
}

/// The cache of `host` with the output hash of `secret` changed by one
/// digit in place, its mtime put back (same size, inode and mtime).
fn edit_cache_keeping_mtime(f: &Fleet, host: &str, secret: &str) {
    let path = f.path(&format!("secrets/rekeyed/{host}/.nixseal-rekey.json"));
    let meta = std::fs::metadata(&path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let sha = doc["outputs"][secret]["outputSha256"].as_str().unwrap();
    let other = if sha.starts_with('0') { "1" } else { "0" };
    let edited = text.replacen(sha, &format!("{other}{}", &sha[1..]), 1);
    assert_eq!(edited.len(), text.len());
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.seek(SeekFrom::Start(0)).unwrap();
        file.write_all(edited.as_bytes()).unwrap();
        file.set_modified(meta.modified().unwrap()).unwrap();
    }
    use std::os::unix::fs::MetadataExt;
    let after = std::fs::metadata(&path).unwrap();
    assert_eq!(
        (after.len(), after.mtime(), after.mtime_nsec(), after.ino()),
        (meta.len(), meta.mtime(), meta.mtime_nsec(), meta.ino())
    );
}

/// renc with its cache in `cache`, under strace: its output and each file
/// it opened (open, openat, openat2), as strace lists them.
fn traced_renc(f: &Fleet, cache: &Path) -> (Output, String) {
    let log = tempfile::NamedTempFile::new().unwrap();
    let o = Command::new("strace")
        .args(["-f", "-qq", "-e", "trace=open,openat,openat2", "-o"])
        .arg(log.path())
        .arg(nixseal_bin())
        .args(["renc", "--profile", "profile.json"])
        .current_dir(&f.root)
        .env("XDG_CACHE_HOME", cache)
        .stdin(Stdio::null())
        .output()
        .expect("strace is installed (apt-get install strace)");
    (o, std::fs::read_to_string(log.path()).unwrap())
}

/// The no-op after the records exist opens no rekeyed file and no master
/// file (strace), and the record is what it believes: with the recorded
/// hash of one output doctored, that output — untouched on disk — is taken
/// for modified and rewritten.
#[test]
fn noop_opens_no_output_and_believes_the_record() {
    let (f, cache, dir) = recorded();
    let (o, trace) = traced_renc(&f, cache.path());
    assert_code(&o, 0);
    assert_stdout_has(&o, "0 rekeyed, 4 unchanged");
    let opened_age: Vec<&str> = trace.lines().filter(|l| l.contains(".age\"")).collect();
    assert!(
        opened_age.is_empty(),
        "a no-op opened rekeyed or master files:\n{}",
        opened_age.join("\n")
    );
    // Sanity of the probe: without a record every output is opened.
    let (o, trace) = traced_renc(&f, &cache.path().join("elsewhere"));
    assert_code(&o, 0);
    assert!(
        trace.contains("secrets/rekeyed/web1/db.age\""),
        "the probe sees opens:\n{trace}"
    );

    let before = std::fs::read(f.output("web1", "db")).unwrap();
    // (The fleet stamp the no-op above left would answer before any host
    // record is read: out of the way, so that the record is asked.)
    forget_fleet(cache.path());
    write_private(&dir.join("host-web1"), &doctored(&dir, "web1", "db"));
    rewrites_one(&f, cache.path(), "web1", "db", &f.secrets["db"]);
    assert_ne!(std::fs::read(f.output("web1", "db")).unwrap(), before);
}

/// The fleet stamps of `cache` (one per flake root).
fn fleet_stamps(cache: &Path) -> Vec<PathBuf> {
    let base = cache.join("nixseal/renc-fleet");
    let Ok(dirs) = std::fs::read_dir(&base) else {
        return Vec::new();
    };
    dirs.map(|e| e.unwrap().path().join("fleet"))
        .filter(|p| p.is_file())
        .collect()
}

fn forget_fleet(cache: &Path) {
    for p in fleet_stamps(cache) {
        std::fs::remove_file(p).unwrap();
    }
}

/// [`recorded`], then the no-op whose every host its stamp vouched for,
/// which leaves the fleet stamp.
fn fleet_stamped() -> (Fleet, tempfile::TempDir, PathBuf) {
    let (f, cache, dir) = recorded();
    assert!(fleet_stamps(cache.path()).is_empty(), "no fleet stamp yet");
    let o = renc(&f, cache.path());
    assert_code(&o, 0);
    assert_stdout_has(&o, "0 rekeyed, 4 unchanged, 0 removed, 0 failed");
    assert_eq!(
        fleet_stamps(cache.path()).len(),
        1,
        "the fleet stamp is left"
    );
    (f, cache, dir)
}

/// With the fleet stamp, a no-op reads no record and no rekeyed or master
/// file (strace), writes nothing, and says what the host-by-host no-op
/// says; and it is the stamp that answers: a host record removed is not
/// even missed (the host-by-host no-op writes it again).
#[test]
fn the_fleet_stamp_answers_a_settled_noop() {
    let (f, cache, dir) = fleet_stamped();
    let stamp = std::fs::read(&fleet_stamps(cache.path())[0]).unwrap();
    let (o, trace) = traced_renc(&f, cache.path());
    assert_code(&o, 0);
    assert_eq!(
        stdout(&o),
        "nixseal renc: 0 rekeyed, 4 unchanged, 0 removed, 0 failed\n"
    );
    assert_eq!(stderr(&o), "");
    let opened: Vec<&str> = trace
        .lines()
        .filter(|l| {
            l.contains(".age\"") || l.contains("renc-stat/") || l.contains(".nixseal-rekey.json")
        })
        .collect();
    assert!(
        opened.is_empty(),
        "the fleet stamp no-op opened:\n{}",
        opened.join("\n")
    );
    assert!(
        trace.contains("renc-fleet/"),
        "the probe sees the stamp opened:\n{trace}"
    );
    std::fs::remove_file(dir.join("host-web1")).unwrap();
    let o = renc(&f, cache.path());
    assert_stdout_has(&o, "0 rekeyed, 4 unchanged, 0 removed, 0 failed");
    assert!(
        !dir.join("host-web1").exists(),
        "the stamp answered, no record was written"
    );
    assert_eq!(
        std::fs::read(&fleet_stamps(cache.path())[0]).unwrap(),
        stamp
    );
    // Without it, the host-by-host no-op: the record is written again.
    forget_fleet(cache.path());
    let o = renc(&f, cache.path());
    assert_stdout_has(&o, "0 rekeyed, 4 unchanged, 0 removed, 0 failed");
    assert!(dir.join("host-web1").is_file());
}

/// The fleet stamp is believed only while everything it covers is as it
/// was: each change below, made after a no-op left the stamp, is seen and
/// handled exactly as without a stamp — outputs and master files edited
/// with their mtimes put back, replaced, copied afresh; a host's cache
/// edited; a file left in a host directory; a host that left; a new host
/// key; the profile rewritten with the same meaning; a symlink put in the
/// rekeyed directory's path; a fleet stamp open to others.
#[test]
fn the_fleet_stamp_is_not_believed_once_anything_it_covers_changed() {
    type Case = (&'static str, fn(&mut Fleet, &Path));
    let cases: Vec<Case> = vec![
        ("output edited, mtime put back", |f, cache| {
            edit_in_place_keeping_mtime(&f.output("web1", "tls"));
            rewrites_one(f, cache, "web1", "tls", &f.secrets["tls"]);
        }),
        ("output replaced", |f, cache| {
            replace_keeping_mtime(&f.output("db1", "db"));
            rewrites_one(f, cache, "db1", "db", &f.secrets["db"]);
        }),
        ("master file edited, mtime put back", |f, cache| {
            let src = f.path("secrets/api.age");
            let meta = std::fs::metadata(&src).unwrap();
            f.set_secret("api", b"new-tokeN", false);
            let t = std::fs::File::options().write(true).open(&src).unwrap();
            t.set_modified(meta.modified().unwrap()).unwrap();
            rewrites_one(f, cache, "web1", "api", b"new-tokeN");
        }),
        ("fresh copy of the rekeyed directory", |f, cache| {
            fresh_copy_of_rekeyed(f, "db1/db.age");
            rewrites_one(f, cache, "db1", "db", &f.secrets["db"]);
        }),
        ("host cache edited, mtime put back", |f, cache| {
            edit_cache_keeping_mtime(f, "db1", "db");
            let o = renc(f, cache);
            assert_code(&o, 0);
            assert_stdout_has(&o, "1 rekeyed, 3 unchanged");
            f.assert_caches_true();
        }),
        ("a file left in a host directory", |f, cache| {
            let gone = f.path("secrets/rekeyed/web1/gone.age");
            std::fs::copy(f.output("web1", "db"), &gone).unwrap();
            let o = renc(f, cache);
            assert_code(&o, 0);
            assert_stdout_has(&o, "0 rekeyed, 4 unchanged, 1 removed");
            assert!(!gone.exists());
        }),
        ("a host that left", |f, cache| {
            run_ok(
                Command::new("cp")
                    .arg("-a")
                    .arg(f.path("secrets/rekeyed/db1"))
                    .arg(f.path("secrets/rekeyed/old1")),
            );
            let o = renc(f, cache);
            assert_code(&o, 0);
            assert_stdout_has(&o, "0 rekeyed, 4 unchanged, 3 removed");
            assert!(!f.path("secrets/rekeyed/old1").exists());
        }),
        ("a new host key", |f, cache| {
            f.add_host("web1");
            f.write_profile();
            let o = renc(f, cache);
            assert_code(&o, 0);
            assert_stdout_has(&o, "3 rekeyed, 1 unchanged");
            f.assert_outputs_decrypt();
        }),
        ("the profile rewritten, same meaning", |f, cache| {
            let p = f.path("profile.json");
            let text = std::fs::read_to_string(&p).unwrap();
            std::fs::write(&p, format!("{text}\n")).unwrap();
            let (o, trace) = traced_renc(f, cache);
            assert_code(&o, 0);
            assert_stdout_has(&o, "0 rekeyed, 4 unchanged, 0 removed, 0 failed");
            assert!(
                trace.contains("renc-stat/"),
                "planned host by host:\n{trace}"
            );
        }),
        ("a symlink in the rekeyed directory's path", |f, cache| {
            std::fs::rename(f.path("secrets"), f.path("secrets.real")).unwrap();
            std::os::unix::fs::symlink("secrets.real", f.path("secrets")).unwrap();
            let o = renc(f, cache);
            assert_code(&o, 2);
            assert_stderr_has(&o, "symlink");
        }),
        ("a fleet stamp open to others", |f, cache| {
            use std::os::unix::fs::PermissionsExt;
            let stamp = &fleet_stamps(cache)[0];
            std::fs::set_permissions(stamp, std::fs::Permissions::from_mode(0o622)).unwrap();
            // Ignored: the host-by-host no-op (it reads the records).
            let (o, trace) = traced_renc(f, cache);
            assert_code(&o, 0);
            assert_stdout_has(&o, "0 rekeyed, 4 unchanged, 0 removed, 0 failed");
            assert!(trace.contains("renc-stat/"), "{trace}");
        }),
    ];
    std::thread::scope(|s| {
        for (what, case) in cases {
            s.spawn(move || {
                let (mut f, cache, _dir) = fleet_stamped();
                eprintln!("case: {what}");
                case(&mut f, cache.path());
            });
        }
    });
}

/// The stamp vouches for a host as a whole only while its cache, its
/// directory, its key and its master files are as they were: the cache
/// edited in place with its mtime put back (the ctime moves), a file
/// added to the directory, a new host key, a new master file — each is
/// seen, and the host is planned file by file.
#[test]
fn a_host_stamp_is_not_believed_once_anything_it_covers_changed() {
    // The cache: one entry's output hash changed (same size), mtime put
    // back. Trusted by mtime and size, the no-op would keep an output the
    // cache no longer vouches for; the ctime shows the edit.
    {
        let (f, cache, _dir) = recorded();
        edit_cache_keeping_mtime(&f, "web1", "api");
        let o = renc(&f, cache.path());
        assert_code(&o, 0);
        assert_stdout_has(&o, "1 rekeyed, 3 unchanged");
        f.assert_caches_true();
    }
    // The directory: a left-over output of a secret the host no longer has.
    {
        let (f, cache, _dir) = recorded();
        let gone = f.path("secrets/rekeyed/web1/gone.age");
        std::fs::copy(f.output("web1", "db"), &gone).unwrap();
        let o = renc(&f, cache.path());
        assert_code(&o, 0);
        assert_stdout_has(&o, "0 rekeyed, 4 unchanged, 1 removed");
        assert!(!gone.exists());
        // The cache still vouches for every output (a host whose only
        // change was a removal keeps its entries).
        f.assert_caches_true();
        let o = renc(&f, cache.path());
        assert_stdout_has(&o, "0 rekeyed, 4 unchanged, 0 removed");
    }
    // The host key.
    {
        let (mut f, cache, _dir) = recorded();
        f.add_host("web1");
        f.write_profile();
        let o = renc(&f, cache.path());
        assert_code(&o, 0);
        assert_stdout_has(&o, "3 rekeyed, 1 unchanged");
        f.assert_outputs_decrypt();
    }
    // The host key, replaced by a point that protects nothing: the stamp
    // names another key, so this one is checked (and refused) before
    // anything is believed or written.
    {
        let (mut f, cache, _dir) = recorded();
        let mut order2 = [0u8; 32];
        order2[0] = 0xec;
        order2[1..31].fill(0xff);
        order2[31] = 0x7f;
        f.hosts.insert("web1".into(), ssh_key_line(order2));
        f.write_profile();
        let before = tree(&f.path("secrets/rekeyed"));
        let o = renc(&f, cache.path());
        assert_code(&o, 1);
        assert_stderr_has(&o, "web1: hostPubkey \"ssh-ed25519 ");
        assert_stderr_has(&o, "is not a real host key");
        assert_stdout_has(&o, "0 rekeyed, 1 unchanged, 0 removed, 1 failed");
        assert_same_tree(&before, &tree(&f.path("secrets/rekeyed")), "weak key");
    }
    // A master file, replaced by a new one (as `edit` does).
    {
        let (mut f, cache, _dir) = recorded();
        f.set_secret("api", b"new-token", true);
        rewrites_one(&f, cache.path(), "web1", "api", b"new-token");
    }
}

/// The stamp is of the key itself (`ssh-ed25519 <base64>`): another
/// comment on the same key leaves the host vouched for, without a read.
#[test]
fn a_new_comment_on_the_host_key_changes_nothing() {
    let (mut f, cache, dir) = recorded();
    let key = f.hosts["web1"]
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    f.hosts
        .insert("web1".into(), format!("{key} root@web1-renamed"));
    f.write_profile();
    let stamp = stamp_of(&dir, "web1");
    let (o, trace) = traced_renc(&f, cache.path());
    assert_code(&o, 0);
    assert_stdout_has(&o, "0 rekeyed, 4 unchanged, 0 removed, 0 failed");
    // Vouched for: its cache is not even read.
    assert!(
        !trace.contains("rekeyed/web1/.nixseal-rekey.json\""),
        "web1 was planned file by file:\n{trace}"
    );
    assert_eq!(
        stamp_of(&dir, "web1"),
        stamp,
        "the stamp still vouches for web1"
    );
    // (The probe: a key of another host is a new key.)
    f.hosts.insert("web1".into(), f.hosts["db1"].clone());
    f.write_profile();
    let (o, trace) = traced_renc(&f, cache.path());
    assert_code(&o, 0);
    assert_stdout_has(&o, "3 rekeyed, 1 unchanged");
    assert!(
        trace.contains("rekeyed/web1/.nixseal-rekey.json\""),
        "{trace}"
    );
}

/// Inside git, the no-op that follows a settled one runs no git at all
/// (its answer is remembered with the index's stat), and the moment the
/// index changes — an output no longer tracked — git is asked again and
/// the warning is back.
#[test]
fn a_noop_runs_no_git_until_the_index_changes() {
    let (f, cache, _dir) = recorded();
    let git = |args: &[&str]| {
        run_ok(
            Command::new("git")
                .args(["-c", "user.name=t", "-c", "user.email=t@t", "-C"])
                .arg(&f.root)
                .args(args),
        )
    };
    git(&["init", "-q"]);
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "fleet"]);
    // The index settles; this no-op asks git and remembers its answer.
    std::thread::sleep(Duration::from_millis(2200));
    let o = renc(&f, cache.path());
    assert_code(&o, 0);
    assert!(!stderr(&o).contains("not tracked"), "{}", stderr(&o));
    // (So did that run leave the fleet stamp, with the index: the next
    // no-op is the stamp's, the one after the index changed is not.)
    assert_eq!(fleet_stamps(cache.path()).len(), 1);
    let traced_with = |log: &Path, env: &[(&str, &str)]| {
        let o = Command::new("strace")
            .args(["-f", "-qq", "-e", "trace=execve", "-o"])
            .arg(log)
            .arg(nixseal_bin())
            .args(["renc", "--profile", "profile.json"])
            .current_dir(&f.root)
            .env("XDG_CACHE_HOME", cache.path())
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .output()
            .expect("strace is installed");
        let git_runs = std::fs::read_to_string(log)
            .unwrap()
            .lines()
            .filter(|l| l.contains("execve(") && l.contains("git"))
            .count();
        (o, git_runs)
    };
    let traced = |log: &Path| traced_with(log, &[]);
    let log = cache.path().join("exec.log");
    let (o, git_runs) = traced(&log);
    assert_code(&o, 0);
    assert_stdout_has(&o, "0 rekeyed, 4 unchanged");
    assert_eq!(git_runs, 0, "{}", std::fs::read_to_string(&log).unwrap());
    // git told by the environment to look elsewhere could answer otherwise:
    // neither the fleet stamp nor git's remembered answer is believed.
    let (o, git_runs) = traced_with(&log, &[("GIT_CEILING_DIRECTORIES", "/nonexistent")]);
    assert_code(&o, 0);
    assert_stdout_has(&o, "0 rekeyed, 4 unchanged");
    assert!(git_runs >= 1, "git was asked");
    assert_eq!(
        fleet_stamps(cache.path()).len(),
        0,
        "and no fleet stamp is left"
    );
    // (The next plain run plans host by host and leaves it again.)
    let (o, git_runs) = traced(&log);
    assert_stdout_has(&o, "0 rekeyed, 4 unchanged");
    assert_eq!(git_runs, 0);
    assert_eq!(fleet_stamps(cache.path()).len(), 1);
    // The index changes: git is asked, and says so.
    git(&["rm", "-q", "--cached", "secrets/rekeyed/db1/db.age"]);
    let (o, git_runs) = traced(&log);
    assert_code(&o, 0);
    assert!(git_runs >= 1, "git was asked again");
    assert_stderr_has(&o, "secrets/rekeyed/db1/db.age");
    assert_stderr_has(&o, "not tracked by git");
}

/// Same size, same inode, mtime put back: the ctime moved, so the output
/// is hashed, found modified and rewritten; `check` says so first.
#[test]
fn same_size_edit_with_mtime_put_back_is_caught() {
    let (f, cache, _dir) = recorded();
    edit_in_place_keeping_mtime(&f.output("web1", "tls"));
    let o = run(&f, cache.path(), &["check", "--profile", "profile.json"]);
    assert_code(&o, 1);
    assert_stdout_has(&o, "modified");
    rewrites_one(&f, cache.path(), "web1", "tls", &f.secrets["tls"]);
}

/// A master file edited the same way is hashed again and its outputs
/// rewritten (a changed source is never taken for the recorded one).
#[test]
fn master_file_edited_with_mtime_put_back_is_caught() {
    let (mut f, cache, _dir) = recorded();
    let src = f.path("secrets/db.age");
    let mtime = std::fs::metadata(&src).unwrap().modified().unwrap();
    let old_len = std::fs::metadata(&src).unwrap().len();
    // A new ciphertext of the same length (same plaintext length, same recipient).
    f.set_secret("db", b"hunter3\n", false);
    assert_eq!(std::fs::metadata(&src).unwrap().len(), old_len);
    std::fs::File::options()
        .write(true)
        .open(&src)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let o = renc(&f, cache.path());
    assert_code(&o, 0);
    assert_stdout_has(&o, "2 rekeyed, 2 unchanged");
    assert_eq!(
        age_decrypt(&f.output("db1", "db"), &f.path("keys/db1")),
        b"hunter3\n"
    );
}

/// A file replaced by another of the same size and mtime (a new inode) is
/// hashed again.
#[test]
fn replaced_output_is_caught() {
    let (f, cache, _dir) = recorded();
    replace_keeping_mtime(&f.output("web1", "api"));
    rewrites_one(&f, cache.path(), "web1", "api", &f.secrets["api"]);
}

/// A fresh copy of the rekeyed files at the same path (a new checkout, a
/// restore with `cp -a`: sizes and mtimes kept, one file altered) is
/// hashed again: new inodes and ctimes.
#[test]
fn fresh_copy_at_the_same_path_is_caught() {
    let (f, cache, _dir) = recorded();
    fresh_copy_of_rekeyed(&f, "db1/db.age");
    rewrites_one(&f, cache.path(), "db1", "db", &f.secrets["db"]);
}

/// A doctored record is believed only when it is a regular file of this
/// user's, not writable by others: as a symlink, another user's, open to
/// all, corrupt or huge it is ignored (the no-op hashes and rewrites
/// nothing) and replaced by a good one.
#[test]
fn records_that_are_not_our_own_are_ignored() {
    let (f, cache, dir) = recorded();
    let record = dir.join("host-web1");
    let bad = doctored(&dir, "web1", "db");
    let elsewhere = cache.path().join("doctored");
    type Spoil = Box<dyn Fn()>;
    let cases: Vec<(&str, Spoil)> = vec![
        ("a symlink to a doctored record", {
            let (record, elsewhere, bad) = (record.clone(), elsewhere.clone(), bad.clone());
            Box::new(move || {
                write_private(&elsewhere, &bad);
                std::fs::remove_file(&record).unwrap();
                std::os::unix::fs::symlink(&elsewhere, &record).unwrap();
            })
        }),
        ("another user's", {
            let (record, bad) = (record.clone(), bad.clone());
            Box::new(move || {
                write_private(&record, &bad);
                run_ok(Command::new("chown").arg("65534").arg(&record));
            })
        }),
        ("writable by all", {
            let (record, bad) = (record.clone(), bad.clone());
            Box::new(move || {
                use std::os::unix::fs::PermissionsExt;
                write_private(&record, &bad);
                std::fs::set_permissions(&record, std::fs::Permissions::from_mode(0o666)).unwrap();
            })
        }),
        ("corrupt (a line cut short)", {
            let (record, bad) = (record.clone(), bad.clone());
            Box::new(move || write_private(&record, &bad[..bad.len() - 70]))
        }),
        ("huge", {
            let (record, bad) = (record.clone(), bad.clone());
            Box::new(move || {
                write_private(&record, &bad);
                let f = std::fs::File::options().write(true).open(&record).unwrap();
                f.set_len(64 << 20).unwrap();
            })
        }),
    ];
    for (what, spoil) in cases {
        spoil();
        let o = renc(&f, cache.path());
        assert_code(&o, 0);
        assert!(
            stdout(&o).contains("0 rekeyed, 4 unchanged"),
            "{what}: the record was trusted\n{}",
            stdout(&o)
        );
        // Replaced by a good one, which is believed again.
        let meta = std::fs::symlink_metadata(&record).unwrap();
        assert!(meta.is_file(), "{what}: a regular file again");
        write_private(&record, &doctored(&dir, "web1", "db"));
        let o = renc(&f, cache.path());
        assert_stdout_has(&o, "1 rekeyed, 3 unchanged");
        // The rewritten output is fresh (racy): the next runs hash it, then record it.
        std::thread::sleep(Duration::from_millis(2200));
        let o = renc(&f, cache.path());
        assert_stdout_has(&o, "0 rekeyed, 4 unchanged");
        assert!(
            std::fs::read_to_string(&record)
                .unwrap()
                .lines()
                .any(|l| l.ends_with(" db")),
            "{what}: db recorded again"
        );
    }
}

/// Without any cache directory (no HOME, no XDG_CACHE_HOME) renc works as
/// before: everything is hashed.
#[test]
fn no_cache_directory_means_no_record() {
    let f = Fleet::new();
    for _ in 0..2 {
        let o = Command::new(nixseal_bin())
            .current_dir(&f.root)
            .env_remove("HOME")
            .env_remove("XDG_CACHE_HOME")
            .args(["renc", "--profile", "profile.json"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_code(&o, 0);
    }
    let o = f.check();
    assert_code(&o, 0);
}

/// A scoped run (`--host`/`--secret`) looks at some outputs and sources
/// only: the record entries of the others are kept, so the next whole
/// no-op still trusts them instead of hashing everything again.
#[test]
fn a_scoped_run_keeps_the_entries_it_did_not_look_at() {
    let (f, cache, dir) = recorded();
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
    let before: Vec<String> = ["host-web1", "host-db1", "sources"]
        .iter()
        .map(|n| read(n))
        .collect();
    assert!(
        before[0].lines().any(|l| l.ends_with(" tls")),
        "{}",
        before[0]
    );
    let o = run(
        &f,
        cache.path(),
        &[
            "renc",
            "--profile",
            "profile.json",
            "--host",
            "web1",
            "--secret",
            "db",
        ],
    );
    assert_code(&o, 0);
    let after: Vec<String> = ["host-web1", "host-db1", "sources"]
        .iter()
        .map(|n| read(n))
        .collect();
    assert_eq!(
        before, after,
        "a scoped no-op leaves every record (and host stamp) as it was"
    );
}

/// With the record in place (the no-op's `lstat` by name in the host
/// directory), an output replaced by a symlink to an identical copy is
/// refused, not followed: a `stat` that followed it would find the copy's
/// bytes equal to the cache's hash and call the output current.
#[test]
fn output_replaced_by_a_symlink_is_refused() {
    let (f, cache, _dir) = recorded();
    let out = f.output("web1", "api");
    let copy = f.path("copy.age");
    std::fs::copy(&out, &copy).unwrap();
    std::fs::remove_file(&out).unwrap();
    std::os::unix::fs::symlink(&copy, &out).unwrap();
    let o = renc(&f, cache.path());
    assert_code(&o, 1);
    assert_stderr_has(&o, "is a symlink or special file");
    assert!(out.is_symlink(), "the symlink was left alone");
    // The others are still trusted and current.
    assert_stdout_has(&o, "0 rekeyed, 3 unchanged");
}
