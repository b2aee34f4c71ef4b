//! A hostile local user or file system: symlinks, mounts nixseal did not
//! make, world-writable parents, absurd generation names, the lock, and
//! anything at a path nixseal did not create.
//!
//! Harness and conventions: tests/support/host.rs.

mod support;

use support::host::*;

#[test]
fn hostile_filesystem_is_refused_or_handled_without_following_links() {
    let h = Host::new();
    let outside = h.p("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("victim"), "victim").unwrap();
    let mk = |extra: Vec<Value>| {
        let mut v = vec![h.secret("s", "plaintext-s", "nxs-alice", "nxs-grp", "0400")];
        v.extend(extra);
        h.manifest(v, vec![], 1)
    };
    h.deploy_ok(&mk(vec![]), &[]);

    // A symlink planted at the next <n>.tmp.
    std::os::unix::fs::symlink(&outside, format!("{}/2.tmp", h.mount_point())).unwrap();
    h.deploy_ok(&mk(vec![]), &[]);
    assert_eq!(h.entries(outside.to_str().unwrap()), ["victim"]);
    assert_eq!(h.generations(), ["1", "3"]);

    // Symlinks planted at custom paths (copy and symlink mode) are neither
    // followed nor replaced: nixseal did not create them. Refused before the
    // switch, so the previous generation stays active.
    fs::create_dir(h.p("etc")).unwrap();
    std::os::unix::fs::symlink(outside.join("victim"), h.p("etc/copy")).unwrap();
    std::os::unix::fs::symlink(outside.join("victim"), h.p("etc/link")).unwrap();
    let mut c = h.secret("c", "plaintext-c", "nxs-alice", "nxs-grp", "0400");
    c["path"] = h.s("etc/copy").into();
    c["symlink"] = false.into();
    c["allowPlaintextOnDisk"] = true.into();
    let mut l = h.secret("l", "plaintext-l", "root", "root", "0400");
    l["path"] = h.s("etc/link").into();
    let before = h.active();
    let out = h.deploy(&mk(vec![c.clone(), l.clone()]), &[]);
    assert_eq!(code(&out), Some(1), "{}", stderr(&out));
    for p in ["etc/copy", "etc/link"] {
        assert!(
            stderr(&out).contains(&format!("{}: it holds a symlink to", h.s(p))),
            "{}",
            stderr(&out)
        );
        assert_eq!(fs::read_link(h.p(p)).unwrap(), outside.join("victim"));
    }
    assert!(stderr(&out).contains("previous generation kept"));
    assert_eq!(h.active(), before);
    assert_eq!(
        fs::read_to_string(outside.join("victim")).unwrap(),
        "victim"
    );
    assert_eq!(
        h.entries(&h.s("etc")),
        ["copy", "link"],
        "no temporaries left"
    );
    // Once the admin moves them away, nixseal places its own.
    fs::remove_file(h.p("etc/copy")).unwrap();
    fs::remove_file(h.p("etc/link")).unwrap();
    h.deploy_ok(&mk(vec![c.clone(), l]), &[]);
    assert!(fs::symlink_metadata(h.p("etc/copy")).unwrap().is_file());
    assert_file(
        &h.s("etc/copy"),
        "plaintext-c",
        "nxs-alice",
        "nxs-grp",
        0o400,
    );
    assert_eq!(
        fs::read_link(h.p("etc/link")).unwrap(),
        PathBuf::from(format!("{}/l", h.symlink()))
    );

    // A symlinked parent of a custom path is refused; nothing lands behind it.
    std::os::unix::fs::symlink(&outside, h.p("etc2")).unwrap();
    let mut c2 = c.clone();
    c2["path"] = h.s("etc2/copy").into();
    let out = h.deploy(&mk(vec![c2]), &[]);
    assert_eq!(code(&out), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("etc2 is a symlink"),
        "{}",
        stderr(&out)
    );
    assert_eq!(h.entries(outside.to_str().unwrap()), ["victim"]);

    // A world-writable (non-sticky) directory on the way to a custom path.
    fs::create_dir(h.p("open")).unwrap();
    fs::set_permissions(h.p("open"), fs::Permissions::from_mode(0o777)).unwrap();
    let mut c3 = c.clone();
    c3["path"] = h.s("open/copy").into();
    let out = h.deploy(&mk(vec![c3]), &[]);
    assert_eq!(code(&out), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("writable by users other than root"),
        "{}",
        stderr(&out)
    );
    assert!(!h.p("open/copy").exists());
}

#[test]
fn unusable_mount_points_are_refused() {
    let h = Host::new();
    let m = h.manifest(
        vec![h.secret("s", "plain", "root", "root", "0400")],
        vec![],
        1,
    );

    // Another filesystem mounted there (a bind mount of a disk directory).
    let disk = h.p("disk");
    fs::create_dir(&disk).unwrap();
    fs::create_dir_all(h.mount_point()).unwrap();
    nix::mount::mount(
        Some(&disk),
        h.mount_point().as_str(),
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .unwrap();
    let out = h.deploy(&m, &[]);
    assert_eq!(code(&out), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("already holds a"), "{}", stderr(&out));
    assert!(h.entries(disk.to_str().unwrap()).is_empty());
    assert!(!h.p("run/nixseal").exists());
    nix::mount::umount2(h.mount_point().as_str(), nix::mount::MntFlags::MNT_DETACH).unwrap();

    // A tmpfs mounted there is not nixseal's, even root-owned 0751.
    nix::mount::mount(
        Some("tmpfs"),
        h.mount_point().as_str(),
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("mode=0751"),
    )
    .unwrap();
    let out = h.deploy(&m, &[]);
    assert_eq!(code(&out), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("already holds a tmpfs mount"),
        "{}",
        stderr(&out)
    );
    assert!(h.generations().is_empty());
    assert!(!h.p("run/nixseal").exists());
    nix::mount::umount2(h.mount_point().as_str(), nix::mount::MntFlags::MNT_DETACH).unwrap();

    // A symlink at the mount point.
    let h2 = Host::new();
    let m2 = h2.manifest(
        vec![h2.secret("s", "plain", "root", "root", "0400")],
        vec![],
        1,
    );
    fs::create_dir(h2.p("run")).unwrap();
    std::os::unix::fs::symlink(h2.p("disk"), h2.mount_point()).unwrap();
    fs::create_dir(h2.p("disk")).unwrap();
    let out = h2.deploy(&m2, &[]);
    assert_eq!(code(&out), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("is a symlink"), "{}", stderr(&out));
    assert!(mount_line(&h2.mount_point()).is_empty());
    assert!(h2.entries(&h2.s("disk")).is_empty());

    // A directory where the symlink should be: refused before any
    // generation is made, the directory untouched.
    let h4 = Host::new();
    let m4 = h4.manifest(
        vec![h4.secret("s", "plain", "root", "root", "0400")],
        vec![],
        1,
    );
    fs::create_dir_all(h4.p("run/nixseal/keep")).unwrap();
    let out = h4.deploy(&m4, &[]);
    assert_eq!(code(&out), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("holds a directory, which nixseal did not create"),
        "{}",
        stderr(&out)
    );
    assert!(h4.generations().is_empty(), "{:?}", h4.generations());
    assert_eq!(h4.entries(&h4.s("run/nixseal")), ["keep"]);

    // A world-writable parent of the mount point.
    let h3 = Host::new();
    let m3 = h3.manifest(
        vec![h3.secret("s", "plain", "root", "root", "0400")],
        vec![],
        1,
    );
    fs::create_dir(h3.p("run")).unwrap();
    fs::set_permissions(h3.p("run"), fs::Permissions::from_mode(0o777)).unwrap();
    let out = h3.deploy(&m3, &[]);
    assert_eq!(code(&out), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("writable by users other than root"),
        "{}",
        stderr(&out)
    );
    assert!(h3.entries(&h3.s("run")).is_empty());
    assert!(mount_line(&h3.mount_point()).is_empty());
}

/// Issue 10.1: a mount at mountPoint is reused only if nixseal made it.
#[test]
fn mount_point_is_trusted_only_if_nixseal_mounted_it() {
    let h = Host::new();
    let m = h.manifest(
        vec![h.secret("s", "plain", "root", "root", "0400")],
        vec![],
        1,
    );
    let mp = h.mount_point();
    let refused = |what: &str, needle: &str| {
        let out = h.deploy(&m, &[]);
        assert_eq!(code(&out), Some(3), "{what}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(needle),
            "{what}: {needle:?} not in {}",
            stderr(&out)
        );
        assert!(
            stderr(&out).contains(&mp),
            "{what}: mount not named: {}",
            stderr(&out)
        );
        assert!(!h.p("run/nixseal").exists(), "{what}: symlink made");
    };

    // A world-writable tmpfs (what a careless unit or user setup leaves).
    fs::create_dir_all(&mp).unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        mp.as_str(),
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("mode=1777"),
    )
    .unwrap();
    refused("tmpfs 1777", "already holds a tmpfs mount");
    assert!(h.generations().is_empty(), "wrote into the tmpfs");
    umount(&mp);

    // A ramfs of mode 0777, even with nixseal's source name and flags.
    mount_ramfs(&mp, "nixseal", "mode=0777");
    refused("ramfs 0777", "mode 0777, not root:root 0751");
    assert!(h.generations().is_empty());
    umount(&mp);

    // nixseal's ramfs, but holding an entry someone else created (as a
    // user could while it was 0777).
    mount_ramfs(&mp, "nixseal", "mode=0751");
    fs::create_dir(format!("{mp}/5")).unwrap();
    nix::unistd::chown(
        format!("{mp}/5").as_str(),
        Some(nix::unistd::Uid::from_raw(uid("nxs-alice"))),
        None,
    )
    .unwrap();
    refused(
        "foreign entry",
        &format!("owned by uid {}", uid("nxs-alice")),
    );
    fs::remove_dir(format!("{mp}/5")).unwrap();
    // ... or a generation others can write to.
    fs::create_dir(format!("{mp}/5")).unwrap();
    fs::set_permissions(format!("{mp}/5"), fs::Permissions::from_mode(0o777)).unwrap();
    refused("writable entry", "others could add files to it");
    fs::remove_dir(format!("{mp}/5")).unwrap();
    umount(&mp);

    // A ramfs without noexec (not mounted by nixseal).
    fs::create_dir_all(&mp).unwrap();
    nix::mount::mount(
        Some("nixseal"),
        mp.as_str(),
        Some("ramfs"),
        nix::mount::MsFlags::empty(),
        Some("mode=0751"),
    )
    .unwrap();
    refused(
        "ramfs without nosuid,nodev,noexec",
        "already holds a ramfs mount",
    );
    umount(&mp);

    // A bind mount of a directory a user owns.
    let user_dir = h.p("home-alice");
    fs::create_dir(&user_dir).unwrap();
    nix::unistd::chown(
        &user_dir,
        Some(nix::unistd::Uid::from_raw(uid("nxs-alice"))),
        None,
    )
    .unwrap();
    nix::mount::mount(
        Some(&user_dir),
        mp.as_str(),
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .unwrap();
    refused(
        "bind mount of a user's directory",
        "which nixseal did not mount",
    );
    assert!(h.entries(user_dir.to_str().unwrap()).is_empty());
    umount(&mp);

    // A bind mount of a directory inside a real nixseal ramfs.
    let other = h.s("other.d");
    mount_ramfs(&other, "nixseal", "mode=0751");
    fs::create_dir(format!("{other}/sub")).unwrap();
    nix::mount::mount(
        Some(other.as_str()),
        mp.as_str(),
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .unwrap();
    let _ = fs::remove_dir(format!("{other}/sub"));
    umount(&mp);
    fs::create_dir(format!("{other}/sub")).unwrap();
    nix::mount::mount(
        Some(format!("{other}/sub").as_str()),
        mp.as_str(),
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .unwrap();
    refused("bind mount of a subdirectory", "a bind mount of /sub");
    umount(&mp);
    umount(&other);

    // A directory that is not empty: never mounted over.
    fs::write(format!("{mp}/admin-file"), "keep").unwrap();
    refused("non-empty directory", "is a directory that is not empty");
    assert!(mount_line(&mp).is_empty(), "mounted over files");
    assert_eq!(
        fs::read_to_string(format!("{mp}/admin-file")).unwrap(),
        "keep"
    );
    fs::remove_file(format!("{mp}/admin-file")).unwrap();

    // What nixseal mounted itself is reused.
    h.deploy_ok(&m, &[]);
    h.deploy_ok(&m, &[]);
    assert_eq!(mount_line(&mp).len(), 1);
    assert!(
        mount_line(&mp)[0].contains(" - ramfs nixseal "),
        "{:?}",
        mount_line(&mp)
    );
}

/// Issue 10.1: the directories nixseal creates names in must be root's
/// alone — a sticky world-writable directory such as /tmp is not.
#[test]
fn sticky_world_writable_parents_are_refused() {
    let h = Host::new();
    let sticky = h.p("sticky");
    fs::create_dir(&sticky).unwrap();
    fs::set_permissions(&sticky, fs::Permissions::from_mode(0o1777)).unwrap();
    let s = h.secret("s", "plain", "root", "root", "0400");
    for (field, value) in [
        ("mountPoint", h.s("sticky/nixseal.d")),
        ("symlink", h.s("sticky/nixseal")),
    ] {
        let mut v = h.manifest_value(vec![s.clone()], vec![], 1);
        v[field] = value.clone().into();
        let out = h.deploy(&h.write_manifest(&v), &[]);
        assert_eq!(code(&out), Some(3), "{field}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("the sticky bit does not keep others from creating names"),
            "{field}: {}",
            stderr(&out)
        );
        assert!(
            h.entries(sticky.to_str().unwrap()).is_empty(),
            "{field}: created something"
        );
    }
    // A custom path in a sticky world-writable directory: refused too.
    let mut c = s.clone();
    c["name"] = "c".into();
    c["path"] = h.s("sticky/c").into();
    let out = h.deploy(&h.manifest(vec![s, c], vec![], 1), &[]);
    assert_eq!(code(&out), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("sticky bit"), "{}", stderr(&out));
    assert!(h.entries(sticky.to_str().unwrap()).is_empty());
    assert!(!h.p("run/nixseal").exists(), "switched despite the refusal");
}

/// Issue 10.2: only names nixseal creates count as generations.
#[test]
fn absurd_generation_names_never_steer_the_counter() {
    let h = Host::new();
    let m = |v: &str| h.manifest(vec![h.secret("s", v, "root", "root", "0400")], vec![], 1);
    h.deploy_ok(&m("one"), &[]);
    let mp = h.mount_point();
    let absurd = [
        "18446744073709551615",
        "18446744073709551616",
        "99999999999999999999999",
        "1000000000000",
        "0",
        "007",
        "1e3",
        "18446744073709551615.tmp",
    ];
    for a in absurd {
        fs::create_dir(format!("{mp}/{a}")).unwrap();
    }
    let out = h.deploy(&m("two"), &[]);
    assert!(out.status.success(), "{:?} {}", out.status, stderr(&out));
    assert_eq!(h.active(), format!("{mp}/2"));
    assert_eq!(fs::read_to_string(h.s("run/nixseal/s")).unwrap(), "two");
    std::thread::sleep(GRACE);
    h.deploy_ok(&m("three"), &[]);
    assert_eq!(h.active(), format!("{mp}/3"));
    // Foreign entries are left alone, never pruned or counted.
    for a in absurd {
        assert!(Path::new(&format!("{mp}/{a}")).is_dir(), "{a} removed");
    }
    // The highest number nixseal would make, planted by hand: the next
    // deploy takes the lowest free number instead of wrapping or failing.
    fs::create_dir(format!("{mp}/999999999999")).unwrap();
    h.deploy_ok(&m("four"), &[]);
    assert_eq!(fs::read_to_string(h.s("run/nixseal/s")).unwrap(), "four");
    assert_eq!(h.active(), format!("{mp}/1"));
    h.deploy_ok(&m("five"), &[]);
    assert_eq!(fs::read_to_string(h.s("run/nixseal/s")).unwrap(), "five");
}

/// Issue 10.3: nobody else can plant or hold the lock, and nothing nixseal
/// writes may be the lock.
#[test]
fn the_lock_cannot_be_planted_or_held_by_others() {
    let h = Host::new();
    let m = h.manifest(
        vec![h.secret("s", "plain", "root", "root", "0400")],
        vec![],
        1,
    );
    h.deploy_ok(&m, &[]);
    let lock = h.s("run/.nixseal.d.lock");
    let md = fs::symlink_metadata(&lock).unwrap();
    assert_eq!((md.uid(), md.mode() & 0o7777), (0, 0o600));
    // Another user cannot even open it, so cannot flock it.
    let out = Command::new("setpriv")
        .args([
            "--reuid",
            "nxs-alice",
            "--regid",
            "nxs-grp",
            "--clear-groups",
            "flock",
            "-n",
        ])
        .arg(&lock)
        .arg("true")
        .output()
        .unwrap();
    assert!(!out.status.success(), "a user could flock the lock");
    assert!(
        stderr(&out).contains("Permission denied"),
        "{}",
        stderr(&out)
    );

    // A lock file others could open (root's, but 0644: a user could hold
    // it forever) or one a user owns is refused, not waited on.
    for (mode, owner) in [(0o644, 0), (0o600, uid("nxs-alice"))] {
        fs::remove_file(&lock).unwrap();
        fs::write(&lock, "").unwrap();
        fs::set_permissions(&lock, fs::Permissions::from_mode(mode)).unwrap();
        nix::unistd::chown(lock.as_str(), Some(nix::unistd::Uid::from_raw(owner)), None).unwrap();
        let out = h.deploy_within(&m, &[], Duration::from_secs(20));
        assert_eq!(code(&out), Some(3), "{mode:o} {owner}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("not a regular file only root can open"),
            "{}",
            stderr(&out)
        );
    }
    fs::remove_file(&lock).unwrap();
    h.deploy_ok(&m, &[]);

    // No secret path, symlink, copy or state directory may be a lock.
    let base = h.manifest_value(
        vec![h.secret("s", "plain", "root", "root", "0400")],
        vec![],
        1,
    );
    let users_lock = h.s("run/.nixseal-for-users.d.lock");
    type Edit = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Edit)> = vec![
        (
            "secret path",
            Box::new({
                let l = lock.clone();
                move |v| v["secrets"][0]["path"] = l.clone().into()
            }),
        ),
        (
            "copy path",
            Box::new({
                let l = users_lock.clone();
                move |v| {
                    v["secrets"][0]["path"] = l.clone().into();
                    v["secrets"][0]["symlink"] = false.into();
                }
            }),
        ),
        (
            "symlink",
            Box::new({
                let l = lock.clone();
                move |v| v["symlink"] = l.clone().into()
            }),
        ),
        (
            "stateDir",
            Box::new({
                let l = lock.clone();
                move |v| v["stateDir"] = l.clone().into()
            }),
        ),
        (
            "template path",
            Box::new({
                let l = lock.clone();
                move |v| {
                    v["templates"] = json!([{"name": "t", "content": "x", "owner": "root",
                "group": "root", "mode": "0400", "path": l.clone()}])
                }
            }),
        ),
        (
            "a temporary name of the symlink",
            Box::new({
                let p = h.s("run/.nixseal.nixseal-new");
                move |v| v["secrets"][0]["path"] = p.clone().into()
            }),
        ),
        (
            "a temporary name of another path",
            Box::new({
                let (a, b) = (h.s("etc/app"), h.s("etc/.app.nixseal-tmp"));
                move |v| {
                    let mut t = v["secrets"][0].clone();
                    t["name"] = "t".into();
                    t["path"] = b.clone().into();
                    v["secrets"][0]["path"] = a.clone().into();
                    v["secrets"].as_array_mut().unwrap().push(t);
                }
            }),
        ),
    ];
    let lock_before = fs::metadata(&lock).unwrap().ino();
    for (what, edit) in &cases {
        let mut v = base.clone();
        edit(&mut v);
        let out = h.deploy(&h.write_manifest(&v), &[]);
        assert_eq!(code(&out), Some(2), "{what}: {}", stderr(&out));
        assert!(stderr(&out).contains("collide"), "{what}: {}", stderr(&out));
    }
    assert_eq!(fs::metadata(&lock).unwrap().ino(), lock_before);
    assert!(fs::symlink_metadata(&lock).unwrap().is_file());
    assert!(!h.p("etc").exists());
}

/// Issue 10.4: nothing nixseal did not create is replaced or deleted.
#[test]
fn nothing_nixseal_did_not_create_is_replaced_or_deleted() {
    let h = Host::new();
    let s = h.secret("s", "plain", "root", "root", "0400");

    // The stable symlink's place holds an admin's file, directory or
    // symlink: refused before anything is switched.
    fs::create_dir_all(h.p("run")).unwrap();
    let link = h.symlink();
    let m = h.manifest(vec![s.clone()], vec![], 1);
    fs::write(&link, "admin's file").unwrap();
    let out = h.deploy(&m, &[]);
    assert_eq!(code(&out), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("holds a regular file"),
        "{}",
        stderr(&out)
    );
    assert_eq!(fs::read_to_string(&link).unwrap(), "admin's file");
    assert!(h.generations().is_empty());
    fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink(h.p("elsewhere"), &link).unwrap();
    let out = h.deploy(&m, &[]);
    assert_eq!(code(&out), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("holds a symlink to"),
        "{}",
        stderr(&out)
    );
    assert_eq!(fs::read_link(&link).unwrap(), h.p("elsewhere"));
    fs::remove_file(&link).unwrap();
    h.deploy_ok(&m, &[]);

    // Custom paths over an admin's files, in symlink and copy mode.
    fs::create_dir_all(h.p("etc")).unwrap();
    fs::write(h.p("etc/linked"), "admin linked").unwrap();
    fs::write(h.p("etc/copied"), "admin copied").unwrap();
    let mut l = h.secret("l", "L", "root", "root", "0400");
    l["path"] = h.s("etc/linked").into();
    let mut c = h.secret("c", "C", "root", "root", "0400");
    c["path"] = h.s("etc/copied").into();
    c["symlink"] = false.into();
    c["allowPlaintextOnDisk"] = true.into();
    let mut t = h.template("t", "T", "root", "root", "0400");
    t["path"] = h.s("etc/linked").into();
    let before = h.active();
    let out = h.deploy(
        &h.manifest(vec![s.clone(), l.clone(), c.clone()], vec![], 1),
        &[],
    );
    assert_eq!(code(&out), Some(1), "{}", stderr(&out));
    let e = stderr(&out);
    assert!(e.contains("2 custom paths cannot be placed"), "{e}");
    assert!(
        e.contains("secret \"l\"") && e.contains("secret \"c\""),
        "{e}"
    );
    assert!(e.contains("nixseal did not place there"), "{e}");
    assert_eq!(
        fs::read_to_string(h.p("etc/linked")).unwrap(),
        "admin linked"
    );
    assert_eq!(
        fs::read_to_string(h.p("etc/copied")).unwrap(),
        "admin copied"
    );
    assert_eq!(h.entries(&h.s("etc")), ["copied", "linked"]);
    assert_eq!(h.active(), before, "switched despite the refusal");
    let out = h.deploy(&h.manifest(vec![s.clone()], vec![t], 1), &[]);
    assert_eq!(code(&out), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("template \"t\""), "{}", stderr(&out));

    // Placed by nixseal, then replaced by the admin (same name, new file —
    // on ext4 often the same inode number): never deleted when the secret
    // leaves the configuration.
    fs::remove_file(h.p("etc/linked")).unwrap();
    fs::remove_file(h.p("etc/copied")).unwrap();
    h.deploy_ok(
        &h.manifest(vec![s.clone(), l.clone(), c.clone()], vec![], 1),
        &[],
    );
    assert_eq!(fs::read_to_string(h.p("etc/copied")).unwrap(), "C");
    fs::remove_file(h.p("etc/copied")).unwrap();
    fs::write(h.p("etc/copied"), "admin's own copy").unwrap();
    fs::remove_file(h.p("etc/linked")).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", h.p("etc/linked")).unwrap();
    let out = h.deploy_ok(&h.manifest(vec![s.clone()], vec![], 1), &[]);
    assert!(stderr(&out).contains("left alone"), "{}", stderr(&out));
    assert_eq!(
        fs::read_to_string(h.p("etc/copied")).unwrap(),
        "admin's own copy"
    );
    assert_eq!(
        fs::read_link(h.p("etc/linked")).unwrap(),
        PathBuf::from("/etc/hostname")
    );

    // A copy modified in place is no longer what nixseal wrote either.
    fs::remove_file(h.p("etc/copied")).unwrap();
    h.deploy_ok(&h.manifest(vec![s.clone(), c.clone()], vec![], 1), &[]);
    fs::OpenOptions::new()
        .append(true)
        .open(h.p("etc/copied"))
        .unwrap()
        .write_all(b" + admin's note")
        .unwrap();
    h.deploy_ok(&h.manifest(vec![s.clone()], vec![], 1), &[]);
    assert_eq!(
        fs::read_to_string(h.p("etc/copied")).unwrap(),
        "C + admin's note"
    );

    // What nixseal placed and nobody touched is removed, and replaced on
    // the next change (chmod by the admin does not make it foreign).
    fs::remove_file(h.p("etc/copied")).unwrap();
    h.deploy_ok(&h.manifest(vec![s.clone(), c.clone()], vec![], 1), &[]);
    fs::set_permissions(h.p("etc/copied"), fs::Permissions::from_mode(0o440)).unwrap();
    let mut c2 = c.clone();
    c2["source"] = h.encrypt(b"C2").into();
    h.deploy_ok(&h.manifest(vec![s.clone(), c2], vec![], 1), &[]);
    assert_file(&h.s("etc/copied"), "C2", "root", "root", 0o400);
    let out = h.deploy_ok(&h.manifest(vec![s], vec![], 1), &[]);
    assert!(
        stderr(&out).contains(&format!("removed {}", h.s("etc/copied"))),
        "{}",
        stderr(&out)
    );
    assert!(!h.p("etc/copied").exists());
    assert_eq!(h.entries(&h.s("etc")), ["linked"]);
}
