//! `nixseal deploy --user-session` (issue 16): a home-manager user's secrets,
//! deployed by that user (never root) into their runtime directory, with
//! the system deploy's guarantees — install, rotation with `systemctl
//! --user` restarts of only the changed secret's units, custom paths under
//! $HOME, refusals (exit 2 / 3, nothing touched), hostile runtime
//! directories, and kill -9 at every fault point.
//!
//! Harness: tests/support/session.rs (a real unprivileged user via setpriv,
//! a private tmpfs as XDG_RUNTIME_DIR in the test's mount namespace).

mod support;

use support::host::*;
use support::session::*;

fn meta(p: &str) -> fs::Metadata {
    fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

#[test]
fn installs_into_the_runtime_dir_as_the_user_and_restarts_only_changed_user_units() {
    let s = Session::new();
    s.fake_user_manager();
    let make = |a: &str, b: &str| {
        let mut sa = s.secret("api-token", a, "0400");
        sa["restartUnits"] = json!(["app-a.service"]);
        let mut sb = s.secret("mail-password", b, "0600");
        sb["restartUnits"] = json!(["app-b.service"]);
        sb["reloadUnits"] = json!(["mail-sync.service"]);
        let mut netrc = s.secret("netrc", "machine x", "0400");
        netrc["path"] = format!("{}/.config/t/netrc", s.home).into();
        s.manifest(
            vec![sa, sb, netrc],
            vec![s.template("app.env", "TOKEN={{nixseal:api-token}}\n")],
        )
    };
    let m1 = make("tok-1", "mail-1");
    let out = s.deploy_ok(&m1);
    let err = stderr(&out);
    assert!(!err.contains("ramfs mounted"), "{err}");
    // Files belong to the user, with their modes, in a generation of the
    // user's own 0700 directory in the runtime directory; no mount.
    let link = s.active();
    assert_eq!(link, format!("{}/1", s.mount_point()));
    for (name, content, mode) in [
        ("api-token", "tok-1", 0o400),
        ("mail-password", "mail-1", 0o600),
        ("netrc", "machine x", 0o400),
        ("app.env", "TOKEN=tok-1\n", 0o400),
    ] {
        let p = format!("{}/{name}", s.symlink());
        let (c, u, g, m) = file_state(&p);
        assert_eq!(
            (String::from_utf8(c).unwrap().as_str(), u, g, m),
            (content, s.uid, s.gid, mode),
            "{name}"
        );
    }
    let mp = meta(&s.mount_point());
    assert!(mp.is_dir());
    assert_eq!(
        (mp.uid(), mp.mode() & 0o7777),
        (s.uid, 0o700),
        "mount point"
    );
    assert!(
        mounts_under(&s.runtime).iter().all(|m| m == &s.runtime),
        "{:?}",
        mounts_under(&s.runtime)
    );
    // The lock is in the runtime directory, the user's, 0600; the records
    // in the user's 0700 state directory.
    let lock = meta(&format!("{}/.nixseal.d.lock", s.runtime));
    assert_eq!((lock.uid(), lock.mode() & 0o777), (s.uid, 0o600));
    let st = meta(&s.state_dir());
    assert_eq!((st.uid(), st.mode() & 0o7777), (s.uid, 0o700));
    // The custom path under $HOME is a symlink through the stable symlink
    // (its new parent the user's).
    assert_eq!(
        fs::read_link(format!("{}/.config/t/netrc", s.home)).unwrap(),
        PathBuf::from(format!("{}/netrc", s.symlink()))
    );
    assert_eq!(meta(&format!("{}/.config/t", s.home)).uid(), s.uid);
    // A first deploy while the user manager runs: the units were not
    // running yet (try-restart), with --user.
    let calls = s.h.systemctl_calls();
    assert_eq!(
        calls,
        [
            "--user try-restart --no-block -- app-a.service app-b.service",
            "--user try-reload-or-restart --no-block -- mail-sync.service"
        ],
        "{calls:?}"
    );

    // Rotation of one secret restarts only its unit.
    s.h.clear_systemctl_log();
    fs::write(&s.h.systemctl_log, "").unwrap();
    chown(s.h.systemctl_log.to_str().unwrap(), s.uid, s.gid);
    let m2 = make("tok-1", "mail-2");
    std::thread::sleep(GRACE);
    let out = s.deploy_ok(&m2);
    assert!(
        stderr(&out).contains("changed: mail-password"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        s.h.systemctl_calls(),
        [
            "--user try-restart --no-block -- app-b.service",
            "--user try-reload-or-restart --no-block -- mail-sync.service"
        ]
    );
    assert_eq!(
        fs::read_to_string(format!("{}/mail-password", s.symlink())).unwrap(),
        "mail-2"
    );
    assert_eq!(s.active(), format!("{}/2", s.mount_point()));
    // keepGenerations 1: older generations are pruned once out of the
    // readers' grace.
    std::thread::sleep(GRACE);
    s.deploy_ok(&m2);
    assert_eq!(s.generations(), ["2", "3"]);

    // While the user manager starts (login), nothing is restarted or owed.
    fs::write(s.h.p("system-state"), "starting\n").unwrap();
    s.h.clear_systemctl_log();
    let out = s.deploy_ok(&make("tok-3", "mail-3"));
    assert!(
        stderr(&out).contains("the user session is still starting"),
        "{}",
        stderr(&out)
    );
    assert!(s.h.systemctl_calls().is_empty());
}

#[test]
fn a_copy_under_home_needs_allow_plaintext_on_disk_and_a_departed_path_is_removed() {
    let s = Session::new();
    let path = format!("{}/.netrc", s.home);
    let copy = |allow: bool| {
        let mut c = s.secret("netrc", "machine y", "0600");
        c["path"] = path.clone().into();
        c["symlink"] = false.into();
        c["allowPlaintextOnDisk"] = allow.into();
        s.manifest(vec![c, s.secret("t", "x", "0400")], vec![])
    };
    let out = s.deploy(&copy(false), &["--user-session"]);
    assert_eq!(code(&out), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("allowPlaintextOnDisk"),
        "{}",
        stderr(&out)
    );
    assert!(fs::symlink_metadata(&path).is_err());
    assert!(fs::symlink_metadata(s.symlink()).is_err(), "switched");
    s.deploy_ok(&copy(true));
    let (c, u, g, m) = file_state(&path);
    assert_eq!((c, u, g, m), (b"machine y".to_vec(), s.uid, s.gid, 0o600));
    assert!(!meta(&path).file_type().is_symlink());
    // Not configured any more: nixseal removes its own copy...
    s.deploy_ok(&s.manifest(vec![s.secret("t", "x", "0400")], vec![]));
    assert!(fs::symlink_metadata(&path).is_err(), "copy not removed");
    // ...and leaves a file someone else put at a path it once placed.
    s.deploy_ok(&copy(true));
    fs::remove_file(&path).unwrap();
    fs::write(&path, "the user's own").unwrap();
    let out = s.deploy_ok(&s.manifest(vec![s.secret("t", "x", "0400")], vec![]));
    assert!(stderr(&out).contains("left alone"), "{}", stderr(&out));
    assert_eq!(fs::read_to_string(&path).unwrap(), "the user's own");
}

/// Runs `f` and asserts that the runtime directory, the home and the
/// state directory are exactly as before (nothing touched).
#[track_caller]
fn untouched(s: &Session, what: &str, out: Output, code_want: i32, needle: &str) {
    assert_eq!(code(&out), Some(code_want), "{what}: {}", stderr(&out));
    assert!(
        stderr(&out).contains(needle),
        "{what}: want {needle:?} in {}",
        stderr(&out)
    );
    assert!(
        fs::symlink_metadata(s.symlink()).is_err(),
        "{what}: switched"
    );
}

#[test]
fn refusals_name_the_problem_and_touch_nothing() {
    let s = Session::new();
    let good = s.manifest(vec![s.secret("a", "1", "0400")], vec![]);
    // As root: exit 2 (usage), before anything else.
    let out = s.h.deploy(&good, &["--user-session"]);
    untouched(&s, "root", out, 2, "never as root");
    // A user manifest without --user-session, as root or as the user.
    let out = s.h.deploy(&good, &[]);
    untouched(&s, "no flag, root", out, 2, "--user-session");
    let out = s.deploy(&good, &[]);
    untouched(&s, "no flag, user", out, 2, "is a user-session manifest");
    // --users and --user-session together.
    let out = s.deploy(&good, &["--user-session", "--users"]);
    untouched(&s, "--users", out, 2, "cannot be used with");
    // A system manifest with --user-session.
    let mut v = s.manifest_value(vec![s.secret("a", "1", "0400")], vec![]);
    v.as_object_mut().unwrap().remove("session");
    let out = s.deploy(&s.h.write_manifest(&v), &["--user-session"]);
    untouched(&s, "system manifest", out, 2, "not a user-session manifest");
    v["session"] = "system".into();
    let out = s.deploy(&s.h.write_manifest(&v), &["--user-session"]);
    untouched(&s, "session system", out, 2, "not a user-session manifest");
    // Manifest problems (exit 2), each named.
    let bad = |f: &dyn Fn(&mut Value), needle: &str| {
        let mut v = s.manifest_value(
            vec![s.secret("a", "1", "0400")],
            vec![s.template("t", "{{nixseal:a}}")],
        );
        f(&mut v);
        let out = s.deploy(&s.h.write_manifest(&v), &["--user-session"]);
        untouched(&s, needle, out, 2, needle);
    };
    bad(
        &|v| v["secrets"][0]["owner"] = "nxs-alice".into(),
        "secret \"a\": owner \"nxs-alice\" must be \"\"",
    );
    bad(
        &|v| v["templates"][0]["group"] = "nxs-grp".into(),
        "template \"t\": group \"nxs-grp\" must be \"\"",
    );
    bad(
        &|v| v["secrets"][0]["neededForUsers"] = true.into(),
        "secret \"a\" is neededForUsers",
    );
    bad(
        &|v| v["mountPoint"] = format!("{}/.secrets.d", s.home).into(),
        "must lie in the user's runtime directory",
    );
    bad(
        &|v| {
            v.as_object_mut().unwrap().remove("stateDir");
        },
        "needs stateDir",
    );
    bad(&|v| v["session"] = "root".into(), "unknown variant `root`");
    bad(
        &|v| v["secrets"][0]["path"] = "%rx/a".into(),
        "secret \"a\": path \"%rx/a\"",
    );
    // %r in a system manifest (deployed by root): exit 2, named.
    let mut v = s.h.manifest_value(
        vec![s.h.secret("a", "1", "root", "root", "0400")],
        vec![],
        1,
    );
    v["symlink"] = "%r/nixseal".into();
    let out = s.h.deploy(&s.h.write_manifest(&v), &[]);
    assert_eq!(code(&out), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("symlink \"%r/nixseal\" starts with %r"),
        "{}",
        stderr(&out)
    );
    assert!(fs::symlink_metadata(s.h.symlink()).is_err());
    // `nixseal manifest check` judges a user manifest by the same rules.
    let out = Command::new(bin())
        .args(["manifest", "check"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let mut v = s.manifest_value(vec![s.secret("a", "1", "0400")], vec![]);
    v["secrets"][0]["owner"] = "root".into();
    let out = Command::new(bin())
        .args(["manifest", "check"])
        .arg(s.h.write_manifest(&v))
        .output()
        .unwrap();
    assert_eq!(code(&out), Some(2));
    assert!(
        stderr(&out).contains("owner \"root\" must be \"\""),
        "{}",
        stderr(&out)
    );
}

#[test]
fn unfit_runtime_directories_are_refused_with_exit_3() {
    let s = Session::new();
    let m = s.manifest(vec![s.secret("a", "1", "0400")], vec![]);
    let with_rd = |rd: Option<&str>| {
        let mut c = s.command(&bin(), &m, &["--user-session"]);
        match rd {
            Some(rd) => c.env("XDG_RUNTIME_DIR", rd),
            None => c.env_remove("XDG_RUNTIME_DIR"),
        };
        c.output().unwrap()
    };
    let check = |rd: Option<&str>, needle: &str| {
        let out = with_rd(rd);
        assert_eq!(code(&out), Some(3), "{rd:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(needle),
            "{rd:?}: want {needle:?} in {}",
            stderr(&out)
        );
        assert!(
            stderr(&out).contains("runtime directory"),
            "{}",
            stderr(&out)
        );
    };
    check(None, "it is not set");
    check(Some(""), "it is empty");
    check(Some("run/user/1001"), "$XDG_RUNTIME_DIR");
    check(Some(&format!("{}/../x", s.runtime)), "$XDG_RUNTIME_DIR");
    check(Some(&s.h.s("nosuch")), "it does not exist");
    // A directory of the user's on disk, mode 0700: not a memory file system.
    let disk = s.h.s("home/alice/rt");
    fs::create_dir(&disk).unwrap();
    fs::set_permissions(&disk, fs::Permissions::from_mode(0o700)).unwrap();
    chown(&disk, s.uid, s.gid);
    check(Some(&disk), "persistent file system");
    // tmpfs, but 0755 / another user's / a symlink to the real one.
    let wide = s.h.s("run/user/wide");
    fs::create_dir(&wide).unwrap();
    mount_tmpfs(&wide, s.uid, s.gid, "0755");
    check(Some(&wide), "has mode 0755");
    let other = s.h.s("run/user/other");
    fs::create_dir(&other).unwrap();
    mount_tmpfs(&other, uid("nxs-bob"), s.gid, "0700");
    check(Some(&other), "owned by uid");
    let link = s.h.s("run/user/link");
    std::os::unix::fs::symlink(&s.runtime, &link).unwrap();
    check(Some(&link), "symlink");
    // Nothing was made in the real one.
    assert!(
        s.h.entries(&s.runtime).is_empty(),
        "{:?}",
        s.h.entries(&s.runtime)
    );
}

#[test]
fn hostile_entries_in_the_runtime_dir_are_refused_never_used() {
    let s = Session::new();
    let m = s.manifest(vec![s.secret("a", "1", "0400")], vec![]);
    let refused = |what: &str, needle: &str, code_want: i32| {
        let out = s.deploy(&m, &["--user-session"]);
        assert_eq!(code(&out), Some(code_want), "{what}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(needle),
            "{what}: want {needle:?} in {}",
            stderr(&out)
        );
    };
    let mp = s.mount_point();
    let elsewhere = s.h.s("home/alice/elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    fs::set_permissions(&elsewhere, fs::Permissions::from_mode(0o700)).unwrap();
    chown(&elsewhere, s.uid, s.gid);
    // mountPoint: a symlink (even to a directory of the user's), a FIFO,
    // another user's directory, a directory of another mode.
    std::os::unix::fs::symlink(&elsewhere, &mp).unwrap();
    refused("symlink", "is a symlink", 3);
    fs::remove_file(&mp).unwrap();
    nix::unistd::mkfifo(mp.as_str(), nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    chown(&mp, s.uid, s.gid);
    refused("fifo", "is a FIFO", 3);
    fs::remove_file(&mp).unwrap();
    fs::create_dir(&mp).unwrap();
    fs::set_permissions(&mp, fs::Permissions::from_mode(0o700)).unwrap();
    chown(&mp, uid("nxs-bob"), s.gid);
    refused("other owner", "owned by uid", 3);
    chown(&mp, s.uid, s.gid);
    fs::set_permissions(&mp, fs::Permissions::from_mode(0o755)).unwrap();
    refused("mode", "has mode 0755", 3);
    fs::remove_dir(&mp).unwrap();
    assert!(fs::read_dir(&elsewhere).unwrap().next().is_none());
    // The lock: a symlink, or another's file.
    let lock = format!("{}/.nixseal.d.lock", s.runtime);
    let _ = fs::remove_file(&lock);
    std::os::unix::fs::symlink(s.h.s("home/alice/elsewhere/l"), &lock).unwrap();
    refused("lock symlink", "lock file", 3);
    assert!(fs::symlink_metadata(s.h.s("home/alice/elsewhere/l")).is_err());
    fs::remove_file(&lock).unwrap();
    fs::write(&lock, "").unwrap();
    chown(&lock, uid("nxs-bob"), s.gid);
    fs::set_permissions(&lock, fs::Permissions::from_mode(0o600)).unwrap();
    refused("lock of another", "lock file", 3);
    fs::remove_file(&lock).unwrap();
    // The stable symlink: a file or a link nixseal did not make.
    std::os::unix::fs::symlink(&elsewhere, s.symlink()).unwrap();
    refused("foreign link", "which nixseal did not create", 3);
    assert_eq!(
        fs::read_link(s.symlink()).unwrap(),
        PathBuf::from(&elsewhere)
    );
    fs::remove_file(s.symlink()).unwrap();
    // The state directory: another user's.
    let st = s.state_dir();
    fs::create_dir_all(&st).unwrap();
    for d in [
        format!("{}/.local", s.home),
        format!("{}/.local/state", s.home),
    ] {
        chown(&d, s.uid, s.gid);
    }
    chown(&st, uid("nxs-bob"), s.gid);
    refused("state dir", "state directory", 3);
    chown(&st, s.uid, s.gid);
    fs::set_permissions(&st, fs::Permissions::from_mode(0o700)).unwrap();
    // A passphrase-protected key: exit 3, named, with the dedicated-key hint.
    let enc = s.h.s("home/alice/id_enc");
    run_ok(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "secret-pass", "-f"])
            .arg(&enc),
    );
    chown(&enc, s.uid, s.gid);
    let mut v = s.manifest_value(vec![s.secret("a", "1", "0400")], vec![]);
    v["hostKeys"] = json!([{"path": enc, "type": "ed25519"}]);
    let out = s.deploy(&s.h.write_manifest(&v), &["--user-session"]);
    assert_eq!(code(&out), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("your key {enc} is protected by a passphrase"))
            && stderr(&out).contains("ssh-keygen -t ed25519 -N '' -f ~/.ssh/nixseal_ed25519"),
        "{}",
        stderr(&out)
    );
    // A missing key before a present one is skipped (keys are tried).
    let mut v = s.manifest_value(vec![s.secret("a", "1", "0400")], vec![]);
    v["hostKeys"] = json!([{"path": s.h.s("home/alice/nosuch"), "type": "ed25519"},
                           {"path": s.h.key, "type": "ed25519"}]);
    s.deploy_ok(&s.h.write_manifest(&v));
    // ...and the whole runtime directory after all this holds only ours.
    assert_eq!(
        s.h.entries(&s.runtime),
        [".nixseal.d.lock", "nixseal", "nixseal.d"]
    );
}

#[test]
fn kill_9_at_every_step_of_a_user_session_leaves_one_complete_generation() {
    let s = Session::new();
    s.fake_user_manager();
    let bin = fault_bin();
    let copy_path = format!("{}/.netrc", s.home);
    let link_path = format!("{}/.config/l", s.home);
    let make = |v: &str| {
        let mut a = s.secret("a", &format!("a-{v}"), "0400");
        a["restartUnits"] = json!(["a.service"]);
        let mut c = s.secret("c", &format!("c-{v}"), "0600");
        c["path"] = copy_path.clone().into();
        c["symlink"] = false.into();
        c["allowPlaintextOnDisk"] = true.into();
        let mut l = s.secret("l", &format!("l-{v}"), "0400");
        l["path"] = link_path.clone().into();
        s.manifest(
            vec![a, c, l],
            vec![s.template("t", "{{nixseal:a}}+{{nixseal:c}}")],
        )
    };
    let (old, new) = (make("old"), make("new"));
    let read_all = || -> Vec<String> {
        ["a", "c", "l", "t"]
            .iter()
            .map(|n| {
                let (c, u, g, _) = file_state(&format!("{}/{n}", s.symlink()));
                assert_eq!((u, g), (s.uid, s.gid));
                String::from_utf8(c).unwrap()
            })
            .collect()
    };
    let state = |v: &str| {
        vec![
            format!("a-{v}"),
            format!("c-{v}"),
            format!("l-{v}"),
            format!("a-{v}+c-{v}"),
        ]
    };
    for point in FAULT_POINTS {
        s.deploy_ok(&old);
        if *point == "mid-prune" {
            std::thread::sleep(GRACE);
        }
        let out = s
            .command(&bin, &new, &["--user-session"])
            .env("NIXSEAL_FAULT", point)
            .output()
            .unwrap();
        assert_eq!(
            out.status.signal(),
            Some(9),
            "fault point {point} not reached: {:?} {}",
            out.status,
            stderr(&out)
        );
        let seen = read_all();
        assert!(
            seen == state("old") || seen == state("new"),
            "after kill at {point}: {seen:?}"
        );
        let c = fs::read_to_string(&copy_path).unwrap();
        assert!(c == "c-old" || c == "c-new", "{point}: copy = {c}");
        // The next deploy succeeds and cleans up; the restart owed by the
        // killed run is done.
        s.h.clear_systemctl_log();
        fs::write(&s.h.systemctl_log, "").unwrap();
        chown(s.h.systemctl_log.to_str().unwrap(), s.uid, s.gid);
        s.deploy_ok(&new);
        assert_eq!(read_all(), state("new"), "{point}");
        assert_eq!(fs::read_to_string(&copy_path).unwrap(), "c-new");
        let calls = s.h.systemctl_calls();
        assert!(
            calls.is_empty() || calls == ["--user try-restart --no-block -- a.service"],
            "{point}: {calls:?}"
        );
        let mut max = 0;
        for e in s.generations() {
            assert!(!e.ends_with(".tmp"), "{point}: leftover {e}");
            max = max.max(e.parse::<u64>().unwrap());
        }
        assert_eq!(s.active(), format!("{}/{max}", s.mount_point()), "{point}");
        for d in [s.runtime.clone(), s.home.clone()] {
            for e in s.h.entries(&d) {
                assert!(!e.contains(".nixseal-"), "{point}: leftover {d}/{e}");
            }
        }
    }
}
