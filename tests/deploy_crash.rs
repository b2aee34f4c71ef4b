//! Atomicity: readers during switches, `kill -9` at every fault point (a
//! `fault-injection` build), failures that keep the previous generation,
//! concurrent deploys, a deploy's process hardening.
//!
//! Harness and conventions: tests/support/host.rs.

mod support;

use support::host::*;

#[test]
fn atomic_switch_under_a_reader_loop() {
    let h = Host::new();
    let body = "x".repeat(3000);
    let content = |name: &str, k: usize| format!("{name}:{k:04}:{body}:end");
    let versions: Vec<PathBuf> = (0..200)
        .map(|k| {
            h.manifest(
                vec![
                    h.secret("s1", &content("s1", k), "nxs-alice", "nxs-grp", "0400"),
                    h.secret("s2", &content("s2", k), "nxs-bob", "nxs-other", "0440"),
                ],
                vec![h.template("t", "{{nixseal:s1}}|{{nixseal:s2}}", "root", "root", "0400")],
                1,
            )
        })
        .collect();
    h.deploy_ok(&versions[0], &[]);

    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let expect = [
        ("s1", uid("nxs-alice"), gid("nxs-grp"), 0o400),
        ("s2", uid("nxs-bob"), gid("nxs-other"), 0o440),
        ("t", 0, 0, 0o400),
    ];
    let sl = h.symlink();
    let well_formed = move |name: &str, text: &str| {
        let len = name.len() + 6 + body.len() + 4;
        text.len() == len && text.starts_with(&format!("{name}:")) && text.ends_with(":end")
    };
    let reader = {
        let (stop, reads, errors) = (stop.clone(), reads.clone(), errors.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                for (name, u, g, mode) in expect {
                    let path = format!("{sl}/{name}");
                    let mut f = match fs::File::open(&path) {
                        Ok(f) => f,
                        Err(e) => {
                            let now = fs::read_link(&sl);
                            let gens: Vec<_> = fs::read_dir(format!("{sl}.d"))
                                .map(|d| d.map(|e| e.unwrap().file_name()).collect())
                                .unwrap_or_default();
                            errors
                                .lock()
                                .unwrap()
                                .push(format!("open {path}: {e} (now -> {now:?}, {gens:?})"));
                            return;
                        }
                    };
                    let md = f.metadata().unwrap();
                    let mut text = String::new();
                    f.read_to_string(&mut text).unwrap();
                    let ok = if name == "t" {
                        text.split_once('|')
                            .is_some_and(|(a, b)| well_formed("s1", a) && well_formed("s2", b))
                    } else {
                        well_formed(name, &text)
                    };
                    if !ok {
                        errors
                            .lock()
                            .unwrap()
                            .push(format!("partial {path}: {} bytes", text.len()));
                    }
                    if (md.uid(), md.gid(), md.mode() & 0o7777) != (u, g, mode) {
                        errors.lock().unwrap().push(format!(
                            "{path}: {}:{} {:o}",
                            md.uid(),
                            md.gid(),
                            md.mode()
                        ));
                    }
                    reads.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    for m in versions.iter().skip(1).chain(std::iter::once(&versions[0])) {
        h.deploy_ok(m, &[]);
    }
    stop.store(true, Ordering::Relaxed);
    reader.join().unwrap();
    let errors = errors.lock().unwrap();
    assert!(
        errors.is_empty(),
        "reader saw: {:?}",
        &errors[..errors.len().min(5)]
    );
    let n = reads.load(Ordering::Relaxed);
    assert!(n >= 600, "reader only completed {n} reads");
    assert_eq!(h.active(), format!("{}/201", h.mount_point()));
    std::thread::sleep(GRACE);
    h.deploy_ok(&versions[1], &[]);
    assert_eq!(h.generations(), ["201", "202"]);
}

#[test]
fn kill_9_at_every_step_leaves_one_complete_generation() {
    let h = Host::new();
    let bin = fault_bin();
    let make = |v: &str| {
        let mut c = h.secret("c", &format!("c-{v}"), "nxs-bob", "nxs-grp", "0440");
        c["path"] = h.s("etc/c").into();
        c["symlink"] = false.into();
        c["allowPlaintextOnDisk"] = true.into();
        let mut l = h.secret("l", &format!("l-{v}"), "root", "root", "0400");
        l["path"] = h.s("etc/l").into();
        h.manifest(
            vec![
                h.secret("a", &format!("a-{v}"), "nxs-alice", "nxs-grp", "0400"),
                c,
                l,
            ],
            vec![h.template("t", "{{nixseal:a}}+{{nixseal:c}}", "root", "root", "0400")],
            1,
        )
    };
    let (old, new) = (make("old"), make("new"));
    let state = |v: &str| {
        vec![
            (format!("a-{v}"), uid("nxs-alice"), gid("nxs-grp"), 0o400),
            (format!("c-{v}"), uid("nxs-bob"), gid("nxs-grp"), 0o440),
            (format!("l-{v}"), 0, 0, 0o400),
            (format!("a-{v}+c-{v}"), 0, 0, 0o400),
        ]
    };
    let read_all = || -> Vec<(String, u32, u32, u32)> {
        ["a", "c", "l", "t"]
            .iter()
            .map(|n| {
                let (c, u, g, m) = file_state(&format!("{}/{n}", h.symlink()));
                (String::from_utf8(c).unwrap(), u, g, m)
            })
            .collect()
    };
    let no_leftovers = |ctx: &str| {
        let mut max = 0;
        for e in h.generations() {
            assert!(!e.ends_with(".tmp"), "{ctx}: leftover {e}");
            max = max.max(e.parse::<u64>().unwrap());
        }
        assert_eq!(h.active(), format!("{}/{max}", h.mount_point()), "{ctx}");
        for d in ["run", "etc"] {
            for e in h.entries(&h.s(d)) {
                assert!(!e.contains(".nixseal-"), "{ctx}: leftover {d}/{e}");
            }
        }
    };
    for point in FAULT_POINTS {
        h.deploy_ok(&old, &[]);
        if *point == "mid-prune" {
            // Let the older generations leave the prune grace period.
            std::thread::sleep(GRACE);
        }
        let out = h
            .command(&bin, &new, &[])
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
        // The copy is replaced atomically: old or new, complete, right owner.
        let (c, u, g, m) = file_state(&h.s("etc/c"));
        let c = String::from_utf8(c).unwrap();
        assert!(c == "c-old" || c == "c-new", "{point}: etc/c = {c}");
        assert_eq!(
            (u, g, m),
            (uid("nxs-bob"), gid("nxs-grp"), 0o440),
            "{point}"
        );
        // The next deploy succeeds and cleans up.
        h.deploy_ok(&new, &[]);
        assert_eq!(read_all(), state("new"), "{point}");
        assert_eq!(fs::read_to_string(h.p("etc/c")).unwrap(), "c-new");
        assert_eq!(
            fs::read_link(h.p("etc/l")).unwrap(),
            PathBuf::from(format!("{}/l", h.symlink()))
        );
        no_leftovers(point);
    }
    std::thread::sleep(GRACE);
    h.deploy_ok(&old, &[]);
    assert_eq!(h.generations().len(), 2, "{:?}", h.generations());
}

/// Only meaningful for a normal build: the fault variable must do nothing.
/// The suite runs with `fault-injection`, so `scripts/test` runs this test
/// once more without the feature (and fails if it did not run).
#[cfg(not(feature = "fault-injection"))]
#[test]
fn fault_points_are_compiled_out_of_normal_builds() {
    let h = Host::new();
    let m = h.manifest(vec![h.secret("s", "v", "root", "root", "0400")], vec![], 1);
    for point in FAULT_POINTS {
        let out = h
            .command(&bin(), &m, &[])
            .env("NIXSEAL_FAULT", point)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{point}: {:?} {}",
            out.status,
            stderr(&out)
        );
    }
}

#[test]
fn failures_keep_the_previous_generation() {
    let h = Host::new();
    let good = h.manifest_value(
        vec![
            h.secret("a", "alpha", "nxs-alice", "nxs-grp", "0400"),
            h.secret("b", "beta", "root", "root", "0400"),
        ],
        vec![],
        1,
    );
    h.deploy_ok(&h.write_manifest(&good), &[]);
    let before = h.active();
    let check_intact = |ctx: &str| {
        assert_eq!(h.active(), before, "{ctx}");
        assert_eq!(h.generations(), ["1"], "{ctx}: leftovers");
        assert_file(
            &h.s("run/nixseal/a"),
            "alpha",
            "nxs-alice",
            "nxs-grp",
            0o400,
        );
        assert_file(&h.s("run/nixseal/b"), "beta", "root", "root", 0o400);
    };

    // A corrupt rekeyed file: valid header, damaged payload.
    let mut v = good.clone();
    let src = h.encrypt(b"new-beta-content");
    let mut bytes = fs::read(&src).unwrap();
    let last = bytes.len() - 3;
    bytes[last] ^= 0xff;
    fs::write(&src, bytes).unwrap();
    v["secrets"][1]["source"] = src.into();
    let out = h.deploy(&h.write_manifest(&v), &[]);
    assert_eq!(code(&out), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("secret \"b\""), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("previous generation kept"),
        "{}",
        stderr(&out)
    );
    check_intact("corrupt");

    // A truncated file (header only).
    let mut v = good.clone();
    let src = h.encrypt(b"x");
    let bytes = fs::read(&src).unwrap();
    fs::write(&src, &bytes[..bytes.len() - 20]).unwrap();
    v["secrets"][0]["source"] = src.into();
    let out = h.deploy(&h.write_manifest(&v), &[]);
    assert_eq!(code(&out), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("secret \"a\""), "{}", stderr(&out));
    check_intact("truncated");

    // The wrong host key: every secret fails and says why.
    let other = h.p("other_key");
    run_ok(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", ""])
            .arg("-f")
            .arg(&other),
    );
    let mut v = good.clone();
    v["hostKeys"][0]["path"] = other.to_str().unwrap().into();
    let out = h.deploy(&h.write_manifest(&v), &[]);
    assert_eq!(code(&out), Some(1), "{}", stderr(&out));
    let e = stderr(&out);
    assert!(
        e.contains("secret \"a\"") && e.contains("secret \"b\""),
        "{e}"
    );
    assert!(e.contains("not encrypted to this host's key"), "{e}");
    check_intact("wrong key");

    // A missing host key: environment error naming the path.
    let mut v = good.clone();
    v["hostKeys"][0]["path"] = h.s("persist/etc/ssh/ssh_host_ed25519_key").into();
    let out = h.deploy(&h.write_manifest(&v), &[]);
    assert_eq!(code(&out), Some(3), "{}", stderr(&out));
    let e = stderr(&out);
    assert!(
        e.contains("persist/etc/ssh/ssh_host_ed25519_key") && e.contains("/persist"),
        "{e}"
    );
    check_intact("missing key");

    // An unreadable key (a directory) is also named.
    let mut v = good.clone();
    v["hostKeys"][0]["path"] = h.s("src").into();
    let out = h.deploy(&h.write_manifest(&v), &[]);
    assert_eq!(code(&out), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains(&h.s("src")), "{}", stderr(&out));
    check_intact("unreadable key");
}

#[test]
fn concurrent_deploys_serialise() {
    let h = Host::new();
    let m = |v: &str| {
        h.manifest(
            vec![
                h.secret("a", &format!("a-{v}"), "nxs-alice", "nxs-grp", "0400"),
                h.secret("b", &format!("b-{v}"), "root", "root", "0400"),
            ],
            vec![],
            1,
        )
    };
    let (one, two) = (m("one"), m("two"));
    for _ in 0..5 {
        let c1 = h
            .command(&bin(), &one, &[])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let c2 = h
            .command(&bin(), &two, &[])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (o1, o2) = (
            c1.wait_with_output().unwrap(),
            c2.wait_with_output().unwrap(),
        );
        assert!(o1.status.success(), "{}", stderr(&o1));
        assert!(o2.status.success(), "{}", stderr(&o2));
        let a = fs::read_to_string(h.s("run/nixseal/a")).unwrap();
        let b = fs::read_to_string(h.s("run/nixseal/b")).unwrap();
        assert!(
            (a == "a-one" && b == "b-one") || (a == "a-two" && b == "b-two"),
            "{a} {b}"
        );
        let newest = h
            .generations()
            .iter()
            .map(|g| g.parse::<u64>().unwrap())
            .max();
        assert_eq!(
            h.active(),
            format!("{}/{}", h.mount_point(), newest.unwrap())
        );
    }

    // The second waits for the lock, then runs.
    let lock = fs::File::open(h.s("run/.nixseal.d.lock")).unwrap();
    let held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive).unwrap();
    let mut child = h.command(&bin(), &one, &[]).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "deploy ran while locked"
    );
    drop(held);
    assert!(child.wait().unwrap().success());
    assert_eq!(fs::read_to_string(h.s("run/nixseal/a")).unwrap(), "a-one");
}

/// Issue 10.14: a running deploy is not dumpable (no core file; its memory
/// and /proc/PID/exe closed to a process with the same uid and capabilities
/// that could read a dumpable one), has RLIMIT_CORE 0, and locks its memory.
#[test]
fn a_running_deploy_is_not_dumpable_and_locks_its_memory() {
    let h = Host::new();
    h.fake_systemd();
    // The fake systemctl runs this with the deploy process's pid while
    // deploy waits for it. Deploy runs without CAP_SYS_PTRACE in its
    // bounding set, so the probe (its child) has exactly its capabilities:
    // then only the dumpable flag decides. The control line looks at a
    // dumpable process (the probe's own shell) the same way.
    fs::write(
        h.dir.path().join("probe.sh"),
        "grep -i 'max core file size' /proc/$1/limits\n\
         grep VmLck /proc/$1/status\n\
         if readlink /proc/$1/exe >/dev/null 2>&1; then echo deploy-readable; else echo deploy-denied; fi\n\
         if readlink /proc/$$/exe >/dev/null 2>&1; then echo control-readable; else echo control-denied; fi\n",
    )
    .unwrap();
    let mut a = h.secret("a", "x", "root", "root", "0400");
    a["restartUnits"] = json!(["x.service"]);
    let m = h.manifest(vec![a], vec![], 1);
    let inner = h.command(&bin(), &m, &[]);
    let mut cmd = Command::new("setpriv");
    cmd.args(["--bounding-set=-sys_ptrace", "--"])
        .arg(inner.get_program())
        .args(inner.get_args());
    for (k, v) in inner.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let probe = fs::read_to_string(h.dir.path().join("probe.sh.out")).unwrap();
    assert!(
        probe.contains("control-readable"),
        "the probe cannot read anything: {probe}"
    );
    assert!(
        probe.contains("deploy-denied"),
        "deploy is dumpable: {probe}"
    );
    let core = probe
        .lines()
        .find(|l| l.contains("core file size"))
        .unwrap();
    assert_eq!(core.split_whitespace().nth(4), Some("0"), "{core}");
    assert_eq!(core.split_whitespace().nth(5), Some("0"), "{core}");
    let locked: u64 = probe
        .lines()
        .find_map(|l| l.strip_prefix("VmLck:"))
        .and_then(|l| l.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmLck in {probe}"));
    assert!(locked > 0, "no memory locked: {probe}");
    umount("/run");
}
