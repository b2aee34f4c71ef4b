//! Bad input is refused before anything is touched: the manifest (every
//! rule, exit 2), files that are not bounded regular files, and a bounded
//! fuzz of the manifest and the age sources.
//!
//! Harness and conventions: tests/support/host.rs.

mod support;

use support::host::*;

#[test]
fn bad_input_is_refused_before_touching_anything() {
    let h = Host::new();
    let good = h.manifest_value(
        vec![
            h.secret("a", "x", "nxs-alice", "nxs-grp", "0400"),
            h.secret("b", "y", "root", "root", "0400"),
        ],
        vec![h.template("t", "{{nixseal:a}}", "root", "root", "0400")],
        1,
    );
    let ecdsa = h.p("ecdsa_key");
    run_ok(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ecdsa", "-N", ""])
            .arg("-f")
            .arg(&ecdsa),
    );
    let locked = h.p("locked_key");
    run_ok(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "a passphrase"])
            .arg("-f")
            .arg(&locked),
    );
    let not_age = h.p("src/not-age");
    fs::write(&not_age, "just text").unwrap();

    type Edit = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Edit, i32, String)> = vec![
        (
            "unknown version",
            Box::new(|v| v["version"] = 2.into()),
            2,
            "has version 2".into(),
        ),
        (
            "unknown field",
            Box::new(|v| v["extra"] = 1.into()),
            2,
            "unknown field `extra`".into(),
        ),
        (
            "unknown secret field",
            Box::new(|v| v["secrets"][0]["owners"] = "x".into()),
            2,
            "unknown field `owners`".into(),
        ),
        (
            "duplicate name",
            Box::new(|v| v["secrets"][1]["name"] = "a".into()),
            2,
            "\"a\" is used twice".into(),
        ),
        (
            "secret/template name clash",
            Box::new(|v| v["templates"][0]["name"] = "b".into()),
            2,
            "\"b\" is used twice".into(),
        ),
        (
            "duplicate path",
            Box::new(|v| {
                v["secrets"][0]["path"] = "/etc/nxs-dup".into();
                v["secrets"][1]["path"] = "/etc/nxs-dup".into();
            }),
            2,
            "are the same path".into(),
        ),
        (
            "slash in name",
            Box::new(|v| v["secrets"][0]["name"] = "a/b".into()),
            2,
            "contains `/`".into(),
        ),
        (
            "dotdot in name",
            Box::new(|v| v["secrets"][0]["name"] = "..".into()),
            2,
            "contains `..`".into(),
        ),
        (
            "relative path",
            Box::new(|v| v["secrets"][0]["path"] = "run/x".into()),
            2,
            "is not an absolute path".into(),
        ),
        (
            "store path",
            Box::new(|v| v["secrets"][0]["path"] = "/nix/store/abc-x".into()),
            2,
            "inside /nix/store".into(),
        ),
        (
            "store mount point",
            Box::new(|v| v["mountPoint"] = "/nix/store/nxs".into()),
            2,
            "inside /nix/store".into(),
        ),
        (
            "dotdot path",
            Box::new(|v| v["symlink"] = "/run/../etc/nxs".into()),
            2,
            "not normalised".into(),
        ),
        (
            "symlink inside mount point",
            Box::new(|v| v["symlink"] = format!("{}/x", v["mountPoint"].as_str().unwrap()).into()),
            2,
            "inside one another".into(),
        ),
        (
            "mode 999",
            Box::new(|v| v["secrets"][0]["mode"] = "999".into()),
            2,
            "mode \"999\"".into(),
        ),
        (
            "mode 0o400",
            Box::new(|v| v["secrets"][0]["mode"] = "0o400".into()),
            2,
            "mode \"0o400\"".into(),
        ),
        (
            "mode -1",
            Box::new(|v| v["templates"][0]["mode"] = "-1".into()),
            2,
            "mode \"-1\"".into(),
        ),
        (
            "mode as number",
            Box::new(|v| v["secrets"][0]["mode"] = 400.into()),
            2,
            "invalid type".into(),
        ),
        (
            "negative keep",
            Box::new(|v| v["keepGenerations"] = (-1).into()),
            2,
            "expected u32".into(),
        ),
        (
            "unknown user",
            Box::new(|v| v["secrets"][0]["owner"] = "nxs-nobody-such".into()),
            2,
            "user \"nxs-nobody-such\" does not exist".into(),
        ),
        (
            "unknown group",
            Box::new(|v| v["templates"][0]["group"] = "nxs-nogroup-such".into()),
            2,
            "group \"nxs-nogroup-such\" does not exist".into(),
        ),
        (
            "template names missing secret",
            Box::new(|v| v["templates"][0]["content"] = "{{nixseal:zz}}".into()),
            2,
            "{{nixseal:zz}} names no secret".into(),
        ),
        (
            "unterminated placeholder",
            Box::new(|v| v["templates"][0]["content"] = "{{nixseal:a".into()),
            2,
            "without a closing".into(),
        ),
        (
            "source missing",
            Box::new(|v| v["secrets"][1]["source"] = "/nonexistent/nxs.age".into()),
            2,
            "/nonexistent/nxs.age: does not exist".into(),
        ),
        (
            "source not age",
            {
                let p = not_age.clone();
                Box::new(move |v| v["secrets"][1]["source"] = p.to_str().unwrap().into())
            },
            2,
            "is not a binary age file".into(),
        ),
        (
            "host key type in manifest",
            Box::new(|v| v["hostKeys"][0]["type"] = "rsa".into()),
            2,
            "only \"ed25519\"".into(),
        ),
        (
            "no host keys",
            Box::new(|v| v["hostKeys"] = json!([])),
            2,
            "hostKeys is empty".into(),
        ),
        (
            "unit that looks like an option",
            Box::new(|v| v["secrets"][0]["restartUnits"] = json!(["--all"])),
            2,
            "unit name \"--all\"".into(),
        ),
        (
            "users secret under the main symlink",
            Box::new(|v| v["secrets"][0]["neededForUsers"] = true.into()),
            2,
            "neededForUsers".into(),
        ),
        (
            "host key of the wrong type",
            {
                let p = ecdsa.clone();
                Box::new(move |v| v["hostKeys"][0]["path"] = p.to_str().unwrap().into())
            },
            3,
            "ecdsa".into(),
        ),
        (
            "passphrase-protected host key",
            {
                let p = locked.clone();
                Box::new(move |v| v["hostKeys"][0]["path"] = p.to_str().unwrap().into())
            },
            3,
            "passphrase-protected".into(),
        ),
        (
            "host key is a directory",
            {
                let p = h.s("src");
                Box::new(move |v| v["hostKeys"][0]["path"] = p.clone().into())
            },
            3,
            "cannot read host key".into(),
        ),
        (
            "missing host key",
            Box::new(|v| v["hostKeys"][0]["path"] = "/persist/nxs/ssh_host_ed25519_key".into()),
            3,
            "/persist/nxs/ssh_host_ed25519_key does not exist".into(),
        ),
    ];
    // Issue 10.1 and 10.10: system directories, and names or paths that do
    // not fit the file system once nixseal adds its own suffixes.
    let etc = h.s("etc");
    let long = |n: usize| "x".repeat(n);
    let more: Vec<(&str, Edit, i32, String)> = vec![
        (
            "mountPoint /run",
            Box::new(|v| v["mountPoint"] = "/run".into()),
            2,
            "is a system directory".into(),
        ),
        (
            "mountPoint /etc",
            Box::new(|v| v["mountPoint"] = "/etc".into()),
            2,
            "is a system directory".into(),
        ),
        (
            "mountPoint /var/lib",
            Box::new(|v| v["mountPoint"] = "/var/lib".into()),
            2,
            "is a system directory".into(),
        ),
        (
            "symlink /etc",
            Box::new(|v| v["symlink"] = "/etc".into()),
            2,
            "is a system directory".into(),
        ),
        (
            "symlink /",
            Box::new(|v| v["symlink"] = "/".into()),
            2,
            "is the root directory".into(),
        ),
        (
            "stateDir /var/lib",
            Box::new(|v| v["stateDir"] = "/var/lib".into()),
            2,
            "is a system directory".into(),
        ),
        (
            "stateDir relative",
            Box::new(|v| v["stateDir"] = "var/lib/x".into()),
            2,
            "is not an absolute path".into(),
        ),
        (
            "custom path in /proc",
            Box::new(|v| v["secrets"][0]["path"] = "/proc/nxs".into()),
            2,
            "kernel file system".into(),
        ),
        (
            "custom path /home",
            Box::new(|v| v["secrets"][0]["path"] = "/home".into()),
            2,
            "is a system directory".into(),
        ),
        (
            "stateDir inside the mount point",
            Box::new(|v| {
                v["stateDir"] = format!("{}/state", v["mountPoint"].as_str().unwrap()).into()
            }),
            2,
            "inside one another".into(),
        ),
        (
            "custom path inside stateDir",
            Box::new(|v| {
                v["secrets"][0]["path"] = format!("{}/x", v["stateDir"].as_str().unwrap()).into()
            }),
            2,
            "overlap".into(),
        ),
        (
            "custom path whose temporary name is too long",
            Box::new({
                let p = format!("{etc}/{}", long(245));
                move |v| v["secrets"][0]["path"] = p.clone().into()
            }),
            2,
            "exceeds the 255 bytes a file name may have".into(),
        ),
        (
            "custom path with a 256-byte component",
            Box::new({
                let p = format!("{etc}/{}/x", long(256));
                move |v| v["secrets"][0]["path"] = p.clone().into()
            }),
            2,
            "has a component of 256 bytes".into(),
        ),
        (
            "custom path longer than PATH_MAX",
            Box::new({
                let p = format!("{etc}{}", format!("/{}", long(200)).repeat(21));
                move |v| v["secrets"][0]["path"] = p.clone().into()
            }),
            2,
            "exceeds PATH_MAX".into(),
        ),
        (
            "symlink too long with its temporary name",
            Box::new({
                let p = format!("{etc}/{}", long(240));
                move |v| v["symlink"] = p.clone().into()
            }),
            2,
            "exceeds the 255 bytes".into(),
        ),
        (
            "mount point too long with -for-users and .lock",
            Box::new({
                let p = format!("{etc}/{}", long(245));
                move |v| v["mountPoint"] = p.clone().into()
            }),
            2,
            "exceeds the 255 bytes".into(),
        ),
        (
            "secret name of 111 bytes",
            Box::new({
                let n = long(111);
                move |v| v["secrets"][0]["name"] = n.clone().into()
            }),
            2,
            "is 111 bytes long".into(),
        ),
        (
            "template name of 111 bytes",
            Box::new({
                let n = long(111);
                move |v| v["templates"][0]["name"] = n.clone().into()
            }),
            2,
            "template name".into(),
        ),
    ];
    let cases: Vec<_> = cases.into_iter().chain(more).collect();
    for (what, edit, want, needle) in &cases {
        let mut v = good.clone();
        edit(&mut v);
        let out = h.deploy(&h.write_manifest(&v), &[]);
        let e = stderr(&out);
        assert_eq!(code(&out), Some(*want), "{what}: {e}");
        assert!(e.contains(needle.as_str()), "{what}: {needle:?} not in {e}");
        assert!(!h.p("run").exists(), "{what}: touched {:?}", h.p("run"));
    }
    // Not JSON, not a manifest file at all, and a usage error.
    for (what, bytes) in [
        ("not json", &b"{\"version\":1,"[..]),
        ("array", b"[]"),
        ("empty file", b""),
    ] {
        let p = h.p("raw.json");
        fs::write(&p, bytes).unwrap();
        let out = h.deploy(&p, &[]);
        assert_eq!(code(&out), Some(2), "{what}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("raw.json"),
            "{what}: {}",
            stderr(&out)
        );
    }
    let out = h.deploy(&h.p("src"), &[]);
    assert_eq!(code(&out), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot read manifest"),
        "{}",
        stderr(&out)
    );
    let out = h.deploy(&h.p("nonexistent.json"), &[]);
    assert_eq!(code(&out), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("nonexistent.json"),
        "{}",
        stderr(&out)
    );
    let out = Command::new(bin())
        .args(["deploy", "--bogus"])
        .output()
        .unwrap();
    assert_eq!(code(&out), Some(2));
    assert!(!h.p("run").exists());

    // The manifest itself was fine all along.
    h.deploy_ok(&h.write_manifest(&good), &[]);
}

/// Issue 10.10 and 10.13: lengths, and files that are not bounded regular
/// files, are refused before anything is touched.
#[test]
fn inputs_that_are_not_bounded_regular_files_are_refused() {
    let h = Host::new();
    let limit = Duration::from_secs(20);
    let good = h.manifest_value(vec![h.secret("s", "x", "root", "root", "0400")], vec![], 1);
    let fifo = |name: &str| {
        let p = h.p(name);
        nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        p
    };
    let sparse = |name: &str, len: u64| {
        let p = h.p(name);
        fs::File::create(&p).unwrap().set_len(len).unwrap();
        p
    };
    // The manifest: FIFO (would block), sparse 100 GB, a device.
    for (what, p, needle) in [
        ("FIFO manifest", fifo("m.fifo"), "a FIFO"),
        (
            "sparse manifest",
            sparse("m.big", 100 << 30),
            "107374182400 bytes",
        ),
        (
            "device manifest",
            PathBuf::from("/dev/null"),
            "a character device",
        ),
    ] {
        let out = h.deploy_within(&p, &[], limit);
        assert_eq!(code(&out), Some(2), "{what}: {}", stderr(&out));
        assert!(stderr(&out).contains(needle), "{what}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(p.to_str().unwrap()),
            "{what}: {}",
            stderr(&out)
        );
    }
    // Sources and host keys.
    type Edit = Box<dyn Fn(&mut Value)>;
    let src = |p: PathBuf| -> Edit {
        Box::new(move |v| v["secrets"][0]["source"] = p.to_str().unwrap().into())
    };
    let key = |p: PathBuf| -> Edit {
        Box::new(move |v| v["hostKeys"][0]["path"] = p.to_str().unwrap().into())
    };
    let cases: Vec<(&str, Edit, i32, &str)> = vec![
        ("FIFO source", src(fifo("s.fifo")), 2, "a FIFO"),
        (
            "urandom source",
            src(PathBuf::from("/dev/urandom")),
            2,
            "a character device",
        ),
        (
            "sparse source",
            src(sparse("s.big", 100 << 30)),
            2,
            "more than the",
        ),
        ("directory source", src(h.p("src")), 2, "a directory"),
        ("FIFO host key", key(fifo("k.fifo")), 3, "a FIFO"),
        (
            "zero host key",
            key(PathBuf::from("/dev/zero")),
            3,
            "a character device",
        ),
        (
            "2 MiB host key",
            key(sparse("k.big", 2 << 20)),
            3,
            "more than the 1048576 bytes",
        ),
    ];
    for (what, edit, want, needle) in &cases {
        let mut v = good.clone();
        edit(&mut v);
        let out = h.deploy_within(&h.write_manifest(&v), &[], limit);
        assert_eq!(code(&out), Some(*want), "{what}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(needle),
            "{what}: {needle:?} not in {}",
            stderr(&out)
        );
        assert!(!h.p("run").exists(), "{what}: touched run/");
    }
    // /etc/passwd as a FIFO (bind-mounted in this test's namespace only).
    let pw = fifo("passwd.fifo");
    nix::mount::mount(
        Some(&pw),
        "/etc/passwd",
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .unwrap();
    let out = h.deploy_within(&h.write_manifest(&good), &[], limit);
    umount("/etc/passwd");
    assert_eq!(code(&out), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot read /etc/passwd: it is a FIFO"),
        "{}",
        stderr(&out)
    );
    // The state file as a FIFO, and as a sparse giant.
    h.deploy_ok(&h.write_manifest(&good), &[]);
    let state = h.state_dir();
    fs::create_dir_all(&state).unwrap();
    let name = nixseal::activate::state_file_name(&h.mount_point());
    nix::unistd::mkfifo(
        format!("{state}/{name}").as_str(),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    let out = h.deploy_within(&h.write_manifest(&good), &[], limit);
    assert_eq!(code(&out), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("a FIFO"), "{}", stderr(&out));
    fs::remove_file(format!("{state}/{name}")).unwrap();
    fs::File::create(format!("{state}/{name}"))
        .unwrap()
        .set_len(100 << 30)
        .unwrap();
    let out = h.deploy_within(&h.write_manifest(&good), &[], limit);
    assert_eq!(code(&out), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("more than the"), "{}", stderr(&out));
}

/// A bounded, seeded mutational fuzz of what deploy reads: the manifest
/// (every case through `Manifest::parse` + `validate` in-process; a share
/// through the binary, when every path it could write lies under this
/// test's private tmpfs) and the age sources (every case through the host
/// identity in-process; a share through the binary). Asserted: no panic, no
/// hang, only the documented exit codes 0–3, and after an error the
/// previous generation and symlink — and every file — unchanged.
/// `NIXSEAL_FUZZ_CASES` / `NIXSEAL_FUZZ_SEED` run more (docs/testing.md).
#[test]
fn fuzz_manifest_and_age_sources() {
    use nixseal::activate::InstallPlan;
    use nixseal::manifest::{Manifest, Scope};
    use support::mutate::{self, Rng};
    let h = Host::new();
    let n = mutate::cases(10_000);
    let seed = mutate::seed(0x6e78_735f_6675_7a7a);
    let bin_runs = (n / 20).max(1);
    let started = std::time::Instant::now();

    // Everything the binary may write lives on this tmpfs.
    let fz = h.s("fz");
    fs::create_dir(&fz).unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        fz.as_str(),
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("mode=0755"),
    )
    .unwrap();
    let custom_dir = format!("{fz}/etc");
    let mut c = h.secret("copied", "copied-plain", "nxs-alice", "nxs-grp", "0400");
    c["path"] = format!("{custom_dir}/copied").into();
    c["symlink"] = false.into();
    let mut l = h.secret("linked", "linked-plain", "root", "root", "0400");
    l["path"] = format!("{custom_dir}/linked").into();
    let mut u = h.secret("users-pw", "$6$x", "root", "root", "0400");
    u["neededForUsers"] = true.into();
    u["path"] = format!("{fz}/run/nixseal-for-users/users-pw").into();
    let mut plain = h.secret("plain", "plain-text", "nxs-bob", "nxs-other", "0440");
    plain["restartUnits"] = json!(["x.service"]);
    let mut t = h.template(
        "t",
        "A={{nixseal:plain}} B={{nixseal:copied}}\n",
        "root",
        "root",
        "0400",
    );
    t["path"] = format!("{custom_dir}/t").into();
    let mut base = h.manifest_value(vec![plain.clone(), c, l, u], vec![t], 2);
    base["mountPoint"] = format!("{fz}/run/nixseal.d").into();
    base["symlink"] = format!("{fz}/run/nixseal").into();
    base["stateDir"] = format!("{fz}/var/lib/nixseal").into();
    let base_bytes = serde_json::to_vec_pretty(&base).unwrap();
    let base_path = h.write_manifest(&base);
    let sl = format!("{fz}/run/nixseal");
    let deploy_base = |h: &Host| {
        let out = h.deploy_within(&base_path, &[], Duration::from_secs(60));
        assert!(out.status.success(), "baseline: {}", stderr(&out));
    };
    deploy_base(&h);
    let snap = |_: &Host| -> Snapshot {
        let active = fs::read_link(&sl).unwrap().to_str().unwrap().to_owned();
        (active, snapshot_dirs(&[&sl, &custom_dir]))
    };
    let mut before = snap(&h);

    // 1. Manifests in-process: parse + validate (both scopes) + warnings.
    let accounts = nixseal::activate::Accounts::load_system().unwrap();
    let parsed = {
        let (bytes, accounts) = (base_bytes.clone(), accounts.clone());
        within(
            "manifest parse/validate",
            Duration::from_secs(120),
            move || {
                let mut ok = 0usize;
                for i in 0..n {
                    let mut rng = Rng::new(seed.wrapping_add(i as u64));
                    let case = mutate::mutate(&mut rng, &bytes);
                    let r = std::panic::catch_unwind(|| {
                        let p = Path::new("fuzzed.json");
                        let m = Manifest::parse(p, &case).ok()?;
                        let valid = InstallPlan::resolve(&m, p, Scope::Main, &accounts).is_ok();
                        let _ = InstallPlan::resolve(&m, p, Scope::Users, &accounts);
                        let _ = m.check(p);
                        valid.then_some(())
                    });
                    match r {
                        Ok(valid) => ok += usize::from(valid.is_some()),
                        Err(_) => panic!(
                            "manifest case {i} (seed {seed}) panicked: {}",
                            String::from_utf8_lossy(&case)
                        ),
                    }
                }
                ok
            },
        )
    };

    // 2. Manifests through the binary.
    let (mut ran, mut skipped) = (0, 0);
    for i in 0..bin_runs {
        let mut rng = Rng::new(seed.wrapping_add(1 << 32).wrapping_add(i as u64));
        let case = mutate::mutate(&mut rng, &base_bytes);
        match Manifest::parse(Path::new("x"), &case) {
            Ok(m) if !writes_only_under(&m, &fz) => {
                skipped += 1;
                continue;
            }
            _ => {}
        }
        let p = h.p(&format!("fuzz-{i}.json"));
        fs::write(&p, &case).unwrap();
        let args: &[&str] = match rng.below(4) {
            0 => &["--users"],
            1 => &["--dry-run"],
            2 => &["--no-restart"],
            _ => &[],
        };
        let out = h.deploy_within(&p, args, Duration::from_secs(60));
        ran += 1;
        let code = out.status.code();
        let ctx = || {
            format!(
                "manifest case {i} (seed {seed}, {args:?}): {:?}\n{}\n--- input:\n{}",
                out.status,
                stderr(&out),
                String::from_utf8_lossy(&case)
            )
        };
        assert!(matches!(code, Some(0..=3)), "undocumented exit: {}", ctx());
        let switched = code == Some(0) || stderr(&out).contains("is active, but");
        if switched {
            deploy_base(&h);
            before = snap(&h);
        } else {
            assert_eq!(snap(&h), before, "state changed after an error: {}", ctx());
        }
    }

    // 3. Age sources: in-process through the host identity, then a share
    // through the binary.
    let src = base["secrets"][0]["source"].as_str().unwrap().to_owned();
    let good_age = fs::read(&src).unwrap();
    let key = h.key.clone();
    {
        let good_age = good_age.clone();
        within("age decrypt", Duration::from_secs(120), move || {
            let id = nixseal::activate::load_host_key(&key).unwrap();
            for i in 0..n {
                let mut rng = Rng::new(seed.wrapping_add(2 << 32).wrapping_add(i as u64));
                let case = mutate::mutate(&mut rng, &good_age);
                let r = std::panic::catch_unwind(|| {
                    let _ = nixseal::crypto::decrypt(&case, &[&id as &dyn nixseal::age::Identity]);
                });
                assert!(r.is_ok(), "age case {i} (seed {seed}) panicked");
            }
        });
    }
    for i in 0..bin_runs {
        let mut rng = Rng::new(seed.wrapping_add(3 << 32).wrapping_add(i as u64));
        let case = mutate::mutate(&mut rng, &good_age);
        let fsrc = h.p(&format!("src/fuzz-{i}.age"));
        fs::write(&fsrc, &case).unwrap();
        let mut v = base.clone();
        v["secrets"][0]["source"] = fsrc.to_str().unwrap().into();
        let p = h.write_manifest(&v);
        let out = h.deploy_within(&p, &[], Duration::from_secs(60));
        let code = out.status.code();
        assert!(
            matches!(code, Some(0..=3)),
            "age case {i} (seed {seed}): {:?} {}",
            out.status,
            stderr(&out)
        );
        if code == Some(0) {
            deploy_base(&h);
            before = snap(&h);
        } else {
            assert_eq!(
                snap(&h),
                before,
                "age case {i} (seed {seed}) changed state: {}",
                stderr(&out)
            );
        }
    }
    eprintln!(
        "fuzz: {n} manifests in-process ({parsed} valid), {ran} through the binary ({skipped} skipped: a path outside the sandbox), {n} age files in-process, {bin_runs} through the binary; seed {seed}; {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
