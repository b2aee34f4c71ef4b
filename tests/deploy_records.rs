//! What a deploy does after the switch and remembers across deploys and
//! reboots: restarts and reloads of the units of changed secrets (never
//! lost), copies and the records of custom paths in the state directory.
//!
//! Harness and conventions: tests/support/host.rs.

mod support;

use support::host::*;

#[test]
fn restarts_and_reloads_only_units_of_changed_secrets_once() {
    let h = Host::new();
    // Pretend systemd is PID 1, inside this test's mount namespace only.
    nix::mount::mount(
        Some("tmpfs"),
        "/run",
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .unwrap();
    fs::create_dir_all("/run/systemd/system").unwrap();
    let sec = |name: &str, content: &str, owner: &str, restart: &[&str], reload: &[&str]| {
        let mut s = h.secret(name, content, owner, "nxs-grp", "0400");
        s["restartUnits"] = json!(restart);
        s["reloadUnits"] = json!(reload);
        s
    };
    let m = |a: &str, b_owner: &str, c_mode: &str| {
        let mut c = sec("c", "c", "root", &["w.service"], &["z.service"]);
        c["mode"] = c_mode.into();
        h.manifest(
            vec![
                sec(
                    "a",
                    a,
                    "nxs-alice",
                    &["x.service", "y.service"],
                    &["z.service"],
                ),
                sec(
                    "b",
                    "b",
                    b_owner,
                    &["x.service"],
                    &["z.service", "r.service"],
                ),
                c,
                sec("d", "d", "root", &["never.service"], &[]),
            ],
            vec![],
            1,
        )
    };
    let out = h.deploy_ok(&m("a1", "nxs-alice", "0400"), &[]);
    // First deploy: everything is new (said once, not as a list of names).
    assert!(
        stderr(&out).contains("every secret is new") && !stderr(&out).contains("changed:"),
        "{}",
        stderr(&out)
    );
    let calls = h.systemctl_calls();
    assert_eq!(
        calls,
        [
            "try-restart --no-block -- x.service y.service w.service never.service",
            "try-reload-or-restart --no-block -- z.service r.service"
        ]
    );
    fs::remove_file(&h.systemctl_log).unwrap();

    // No change: nothing called.
    h.deploy_ok(&m("a1", "nxs-alice", "0400"), &[]);
    assert_eq!(h.systemctl_calls(), Vec::<String>::new());

    // a's content and b's owner change: x and y restarted once, z and r reloaded once.
    let out = h.deploy_ok(&m("a2", "nxs-bob", "0400"), &[]);
    assert_eq!(
        h.systemctl_calls(),
        [
            "try-restart --no-block -- x.service y.service",
            "try-reload-or-restart --no-block -- z.service r.service"
        ],
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("nixseal: changed: a b\n"),
        "{}",
        stderr(&out)
    );
    fs::remove_file(&h.systemctl_log).unwrap();

    // c's mode changes.
    h.deploy_ok(&m("a2", "nxs-bob", "0440"), &[]);
    assert_eq!(
        h.systemctl_calls(),
        [
            "try-restart --no-block -- w.service",
            "try-reload-or-restart --no-block -- z.service"
        ]
    );
    fs::remove_file(&h.systemctl_log).unwrap();

    // While the system is still booting, nothing is restarted: units that
    // use the secrets have not started yet.
    fs::write(h.dir.path().join("system-state"), "starting\n").unwrap();
    let out = h.deploy_ok(&m("a2b", "nxs-bob", "0440"), &[]);
    assert!(stderr(&out).contains("still booting"), "{}", stderr(&out));
    assert_eq!(h.systemctl_calls(), Vec::<String>::new());
    fs::remove_file(h.dir.path().join("system-state")).unwrap();

    // --no-restart and --dry-run call nothing.
    let out = h.deploy_ok(&m("a3", "nxs-bob", "0440"), &["--no-restart"]);
    assert!(stderr(&out).contains("--no-restart"), "{}", stderr(&out));
    h.deploy_ok(&m("a4", "nxs-bob", "0440"), &["--dry-run"]);
    assert_eq!(h.systemctl_calls(), Vec::<String>::new());

    // Without systemd as PID 1, nothing is called either.
    nix::mount::umount2("/run", nix::mount::MntFlags::MNT_DETACH).unwrap();
    if !Path::new("/run/systemd/system").exists() {
        let out = h.deploy_ok(&m("a5", "nxs-bob", "0440"), &[]);
        assert!(
            stderr(&out).contains("systemd is not running"),
            "{}",
            stderr(&out)
        );
        assert_eq!(h.systemctl_calls(), Vec::<String>::new());
    }
}

/// Issue 10.6: a restart is never lost — neither to a kill after the
/// switch nor to a failing systemctl.
#[test]
fn restarts_are_never_lost() {
    let h = Host::new();
    h.fake_systemd();
    let fbin = fault_bin();
    let m = |v: &str, units: &[&str]| {
        let mut a = h.secret("a", v, "root", "root", "0400");
        a["restartUnits"] = json!(units);
        let mut b = h.secret("b", "b", "root", "root", "0400");
        b["reloadUnits"] = json!(["r.service"]);
        h.manifest(vec![a, b], vec![], 1)
    };
    h.deploy_ok(&m("1", &["x.service"]), &[]);
    h.clear_systemctl_log();

    // Killed right after the switch: nothing restarted yet...
    let m2 = m("2", &["x.service"]);
    let out = h
        .command(&fbin, &m2, &[])
        .env("NIXSEAL_FAULT", "after-switch")
        .output()
        .unwrap();
    assert_eq!(out.status.signal(), Some(9), "{}", stderr(&out));
    assert_eq!(fs::read_to_string(h.s("run/nixseal/a")).unwrap(), "2");
    assert_eq!(h.systemctl_calls(), Vec::<String>::new());
    // ... and the next deploy of the same configuration (no change any
    // more) still restarts it.
    let out = h.deploy_ok(&m2, &[]);
    assert_eq!(
        h.systemctl_calls(),
        ["try-restart --no-block -- x.service"],
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("owed by an earlier deploy: x.service"),
        "{}",
        stderr(&out)
    );
    h.clear_systemctl_log();
    h.deploy_ok(&m2, &[]);
    assert_eq!(h.systemctl_calls(), Vec::<String>::new(), "restarted twice");

    // Killed before the switch, after the records: the next deploy restarts.
    let m3 = m("3", &["x.service"]);
    let out = h
        .command(&fbin, &m3, &[])
        .env("NIXSEAL_FAULT", "after-record")
        .output()
        .unwrap();
    assert_eq!(out.status.signal(), Some(9), "{}", stderr(&out));
    h.deploy_ok(&m3, &[]);
    assert_eq!(h.systemctl_calls(), ["try-restart --no-block -- x.service"]);
    h.clear_systemctl_log();

    // systemctl fails: exit 1, and the next deploy tries again.
    let fails = h.dir.path().join("systemctl-fails");
    fs::write(&fails, "").unwrap();
    let m4 = m("4", &["x.service", "y.service"]);
    let out = h.deploy(&m4, &[]);
    assert_eq!(code(&out), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("the next deploy tries again"),
        "{}",
        stderr(&out)
    );
    let out = h.deploy(&m4, &[]);
    assert_eq!(code(&out), Some(1), "still owed: {}", stderr(&out));
    fs::remove_file(&fails).unwrap();
    h.clear_systemctl_log();
    h.deploy_ok(&m4, &[]);
    assert_eq!(
        h.systemctl_calls(),
        ["try-restart --no-block -- x.service y.service"]
    );
    h.clear_systemctl_log();

    // A unit no secret names any more is not owed any more.
    fs::write(&fails, "").unwrap();
    let _ = h.deploy(&m("5", &["x.service", "gone.service"]), &[]);
    fs::remove_file(&fails).unwrap();
    h.clear_systemctl_log();
    h.deploy_ok(&m("5", &["x.service"]), &[]);
    assert_eq!(h.systemctl_calls(), ["try-restart --no-block -- x.service"]);
    h.clear_systemctl_log();

    // Owed restarts wait through --no-restart; at boot they are moot (units
    // start fresh and read the new generation).
    fs::write(&fails, "").unwrap();
    let _ = h.deploy(&m("6", &["x.service"]), &[]);
    fs::remove_file(&fails).unwrap();
    h.deploy_ok(&m("6", &["x.service"]), &["--no-restart"]);
    fs::write(h.dir.path().join("system-state"), "starting\n").unwrap();
    h.clear_systemctl_log();
    h.deploy_ok(&m("6", &["x.service"]), &[]);
    assert_eq!(h.systemctl_calls(), Vec::<String>::new());
    fs::remove_file(h.dir.path().join("system-state")).unwrap();
    h.deploy_ok(&m("6", &["x.service"]), &[]);
    assert_eq!(h.systemctl_calls(), Vec::<String>::new());
    umount("/run");
}

/// Issue 10.5: copies on disk need an opt-in, and leave with their secret —
/// also across a reboot.
#[test]
fn copies_need_an_opt_in_on_disk_and_leave_with_their_secret() {
    let h = Host::new();
    let s = h.secret("s", "plain", "root", "root", "0400");
    h.deploy_ok(&h.manifest(vec![s.clone()], vec![], 1), &[]);
    let before = h.active();

    // On a persistent file system (this /tmp is on disk), without opt-in.
    let mut c = h.secret("c", "copied-plaintext", "nxs-alice", "nxs-grp", "0400");
    c["path"] = h.s("disk/c").into();
    c["symlink"] = false.into();
    let out = h.deploy(&h.manifest(vec![s.clone(), c.clone()], vec![], 1), &[]);
    assert_eq!(code(&out), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("persistent file system"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("allowPlaintextOnDisk"),
        "{}",
        stderr(&out)
    );
    assert!(
        h.entries(&h.s("disk")).is_empty(),
        "{:?}",
        h.entries(&h.s("disk"))
    );
    assert_eq!(h.active(), before);

    // On a memory file system no opt-in is needed.
    fs::create_dir_all(h.p("mem")).unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        h.p("mem").as_path(),
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("mode=0755"),
    )
    .unwrap();
    let mut cm = c.clone();
    cm["name"] = "cm".into();
    cm["path"] = h.s("mem/cm").into();
    // With the opt-in, on disk; and a custom symlink next to it.
    c["allowPlaintextOnDisk"] = true.into();
    let mut l = h.secret("l", "linked", "root", "root", "0400");
    l["path"] = h.s("disk/l").into();
    h.deploy_ok(
        &h.manifest(vec![s.clone(), c.clone(), cm.clone(), l.clone()], vec![], 1),
        &[],
    );
    assert_file(
        &h.s("disk/c"),
        "copied-plaintext",
        "nxs-alice",
        "nxs-grp",
        0o400,
    );
    assert_file(
        &h.s("mem/cm"),
        "copied-plaintext",
        "nxs-alice",
        "nxs-grp",
        0o400,
    );
    assert_eq!(fs::read_to_string(h.p("disk/l")).unwrap(), "linked");

    // The records hold paths, never plaintext; the directory is root's.
    let state = h.state_dir();
    let md = fs::metadata(&state).unwrap();
    assert_eq!((md.uid(), md.mode() & 0o7777), (0, 0o700));
    let files = h.entries(&state);
    assert_eq!(files.len(), 1, "{files:?}");
    let record = fs::read_to_string(format!("{state}/{}", files[0])).unwrap();
    assert!(record.contains(&h.s("disk/c")), "{record}");
    assert!(
        !record.contains("copied-plaintext") && !record.contains("linked\""),
        "{record}"
    );

    // A reboot: the ramfs and /run are gone; the configuration no longer
    // has c, cm or l (`nixos-rebuild boot`, then boot).
    umount(&h.mount_point());
    fs::remove_file(h.symlink()).unwrap();
    let out = h.deploy_ok(&h.manifest(vec![s.clone()], vec![], 1), &[]);
    for p in ["disk/c", "mem/cm", "disk/l"] {
        assert!(
            h.p(p).symlink_metadata().is_err(),
            "{p} outlived its secret"
        );
        assert!(
            stderr(&out).contains(&format!("removed {}", h.s(p))),
            "{}",
            stderr(&out)
        );
    }
    assert!(h.entries(&h.s("disk")).is_empty());
    // The records are cleared too.
    let record = fs::read_to_string(format!("{state}/{}", files[0])).unwrap();
    assert!(!record.contains("disk/c"), "{record}");
}

/// Issue 10.5: without stateDir, records go to /var/lib/nixseal (here a
/// tmpfs over /var/lib inside the test's mount namespace).
#[test]
fn state_goes_to_var_lib_nixseal_by_default() {
    let h = Host::new();
    nix::mount::mount(
        Some("tmpfs"),
        "/var/lib",
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("mode=0755"),
    )
    .unwrap();
    let mut l = h.secret("l", "x", "root", "root", "0400");
    l["path"] = h.s("etc/l").into();
    let mut v = h.manifest_value(vec![l], vec![], 1);
    v.as_object_mut().unwrap().remove("stateDir");
    h.deploy_ok(&h.write_manifest(&v), &[]);
    let md = fs::metadata("/var/lib/nixseal").unwrap();
    assert_eq!((md.uid(), md.mode() & 0o7777), (0, 0o700));
    let files = h.entries("/var/lib/nixseal");
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].ends_with(".json"), "{files:?}");
    // A state directory others can write is refused.
    fs::set_permissions("/var/lib/nixseal", fs::Permissions::from_mode(0o777)).unwrap();
    let out = h.deploy(&h.write_manifest(&v), &[]);
    assert_eq!(code(&out), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("/var/lib/nixseal is writable by others"),
        "{}",
        stderr(&out)
    );
    fs::set_permissions("/var/lib/nixseal", fs::Permissions::from_mode(0o700)).unwrap();
    // A damaged record is refused, not ignored.
    fs::write(format!("/var/lib/nixseal/{}", files[0]), "{").unwrap();
    let out = h.deploy(&h.write_manifest(&v), &[]);
    assert_eq!(code(&out), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("is unusable"), "{}", stderr(&out));
    umount("/var/lib");

    // A damaged record stops a deploy before anything is mounted.
    let h2 = Host::new();
    let sd = h2.state_dir();
    fs::create_dir_all(&sd).unwrap();
    let name = nixseal::activate::state_file_name(&h2.mount_point());
    fs::write(
        format!("{sd}/{name}"),
        r#"{"version":1,"mountPoint":"/elsewhere"}"#,
    )
    .unwrap();
    let out = h2.deploy(
        &h2.manifest(vec![h2.secret("s", "x", "root", "root", "0400")], vec![], 1),
        &[],
    );
    assert_eq!(code(&out), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("belongs to mount point"),
        "{}",
        stderr(&out)
    );
    assert!(
        mount_line(&h2.mount_point()).is_empty(),
        "mounted despite the error"
    );
    assert!(!h2.p("run/nixseal").exists());
}
