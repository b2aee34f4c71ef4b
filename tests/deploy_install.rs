//! What a deploy installs: contents, owners, modes, templates, custom paths,
//! `--users`, dry runs, age and rage sources, pruning, warnings.
//!
//! Harness and conventions: tests/support/host.rs.

mod support;

use support::host::*;

#[test]
fn installs_content_owner_mode_templates_and_custom_paths() {
    let h = Host::new();
    let mut copy = h.secret("copied", "copy-secret\n", "nxs-bob", "nxs-other", "0440");
    copy["path"] = h.s("etc/app/copied").into();
    copy["symlink"] = false.into();
    // /tmp is on disk here: the copy needs the opt-in.
    copy["allowPlaintextOnDisk"] = true.into();
    let mut linked = h.secret("linked", "link-secret", "nxs-alice", "nxs-grp", "400");
    linked["path"] = h.s("etc/app/linked").into();
    let mut tpl = h.template(
        "app.env",
        "A={{nixseal:db}}\nB={{nixseal:copied}}{{nixseal:db}}\n",
        "nxs-alice",
        "nxs-grp",
        "0440",
    );
    tpl["path"] = h.s("etc/app.env").into();
    let m = h.manifest(
        vec![
            h.secret("db", "hunter2", "nxs-alice", "nxs-grp", "0400"),
            h.secret("root-only", "r00t", "root", "root", "0600"),
            // No such accounts: decimal ids are taken as they are (as chown does).
            h.secret("numeric", "for-a-container", "43210", "43211", "0400"),
            copy,
            linked,
        ],
        vec![tpl],
        1,
    );
    let out = h.deploy_ok(&m, &[]);
    assert!(stderr(&out).contains("generation 1"), "{}", stderr(&out));
    assert_eq!(
        file_state(&format!("{}/numeric", h.symlink())),
        (b"for-a-container".to_vec(), 43210, 43211, 0o400)
    );

    let sl = h.symlink();
    assert_eq!(h.active(), format!("{}/1", h.mount_point()));
    assert_file(
        &format!("{sl}/db"),
        "hunter2",
        "nxs-alice",
        "nxs-grp",
        0o400,
    );
    assert_file(&format!("{sl}/root-only"), "r00t", "root", "root", 0o600);
    assert_file(
        &format!("{sl}/copied"),
        "copy-secret\n",
        "nxs-bob",
        "nxs-other",
        0o440,
    );
    assert_file(
        &format!("{sl}/linked"),
        "link-secret",
        "nxs-alice",
        "nxs-grp",
        0o400,
    );
    let rendered = "A=hunter2\nB=copy-secret\nhunter2\n";
    assert_file(
        &format!("{sl}/app.env"),
        rendered,
        "nxs-alice",
        "nxs-grp",
        0o440,
    );

    // Custom paths: copy mode is a regular file, symlink mode points through the stable symlink.
    let copied = h.s("etc/app/copied");
    assert!(fs::symlink_metadata(&copied).unwrap().file_type().is_file());
    assert_file(&copied, "copy-secret\n", "nxs-bob", "nxs-other", 0o440);
    assert_eq!(
        fs::read_link(h.p("etc/app/linked")).unwrap(),
        PathBuf::from(format!("{sl}/linked"))
    );
    assert_eq!(
        fs::read_link(h.p("etc/app.env")).unwrap(),
        PathBuf::from(format!("{sl}/app.env"))
    );
    // Created parents are root-owned 0755.
    let md = fs::metadata(h.p("etc/app")).unwrap();
    assert_eq!((md.uid(), md.gid(), md.mode() & 0o7777), (0, 0, 0o755));

    // The mount point is a ramfs of its own with nosuid,nodev,noexec, mode 0751.
    let lines = mount_line(&h.mount_point());
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains(" - ramfs "), "{}", lines[0]);
    for opt in ["nosuid", "nodev", "noexec"] {
        assert!(lines[0].contains(opt), "{opt} missing: {}", lines[0]);
    }
    let md = fs::metadata(h.mount_point()).unwrap();
    assert_eq!(md.mode() & 0o7777, 0o751);
    // Generation directory: root, 0751, exactly the secrets plus the record.
    let gen = fs::metadata(format!("{}/1", h.mount_point())).unwrap();
    assert_eq!((gen.uid(), gen.mode() & 0o7777), (0, 0o751));
    assert_eq!(
        h.entries(&format!("{}/1", h.mount_point())),
        [
            ".nixseal.json",
            "app.env",
            "copied",
            "db",
            "linked",
            "numeric",
            "root-only"
        ]
    );

    // A second deploy reuses the mount (no second ramfs stacked on it); the
    // generation it replaced survives until the next deploy.
    h.deploy_ok(&m, &[]);
    assert_eq!(mount_line(&h.mount_point()).len(), 1);
    assert_eq!(h.generations(), ["1", "2"]);
    std::thread::sleep(GRACE);
    h.deploy_ok(&m, &[]);
    assert_eq!(h.generations(), ["2", "3"]);
}

#[test]
fn prunes_generations_and_leftover_tmp() {
    let h = Host::new();
    let m =
        |v: &str, keep| h.manifest(vec![h.secret("s", v, "root", "root", "0400")], vec![], keep);
    h.deploy_ok(&m("1", 3), &[]);
    h.deploy_ok(&m("2", 3), &[]);
    h.deploy_ok(&m("3", 3), &[]);
    h.deploy_ok(&m("4", 3), &[]);
    // Back to back: generations replaced less than a second ago are kept.
    assert_eq!(h.generations(), ["1", "2", "3", "4"]);
    std::thread::sleep(GRACE);
    h.deploy_ok(&m("4b", 3), &[]);
    assert_eq!(h.generations(), ["3", "4", "5"]);
    std::thread::sleep(GRACE);
    // A crash leftover, with content, and a stray empty one.
    fs::create_dir(format!("{}/7.tmp", h.mount_point())).unwrap();
    fs::write(format!("{}/7.tmp/s", h.mount_point()), "x").unwrap();
    fs::create_dir(format!("{}/6.tmp", h.mount_point())).unwrap();
    h.deploy_ok(&m("5", 2), &[]);
    // Numbers come from the directory: 7.tmp was the highest.
    assert_eq!(h.generations(), ["5", "8"]);
    assert_eq!(h.active(), format!("{}/8", h.mount_point()));
    assert_eq!(fs::read_to_string(h.s("run/nixseal/s")).unwrap(), "5");
    // keepGenerations 0 keeps everything.
    h.deploy_ok(&m("6", 0), &[]);
    h.deploy_ok(&m("7", 0), &[]);
    assert_eq!(h.generations(), ["10", "5", "8", "9"]);
}

#[test]
fn empty_manifest_deploys_an_empty_generation_and_removes_placed_paths() {
    let h = Host::new();
    let mut s = h.secret("s", "v", "root", "root", "0400");
    s["path"] = h.s("etc/s").into();
    let mut c = h.secret("c", "copy", "root", "root", "0400");
    c["path"] = h.s("etc/c").into();
    c["symlink"] = false.into();
    c["allowPlaintextOnDisk"] = true.into();
    h.deploy_ok(&h.manifest(vec![s, c], vec![], 1), &[]);
    assert!(h.p("etc/s").symlink_metadata().is_ok());
    assert!(h.p("etc/c").symlink_metadata().is_ok());
    // A file the user replaced at a formerly placed path is not ours: kept.
    let mut user = h.secret("u", "u", "root", "root", "0400");
    user["path"] = h.s("etc/u").into();
    h.deploy_ok(&h.manifest(vec![user], vec![], 1), &[]);
    fs::remove_file(h.p("etc/u")).unwrap();
    fs::write(h.p("etc/u"), "user's own").unwrap();
    assert!(
        h.p("etc/s").symlink_metadata().is_err(),
        "stale symlink kept"
    );
    assert!(h.p("etc/c").symlink_metadata().is_err(), "stale copy kept");

    let empty = h.write_manifest(&json!({"version": 1, "hostKeys": [],
        "mountPoint": h.mount_point(), "symlink": h.symlink(), "stateDir": h.state_dir(),
        "keepGenerations": 1}));
    h.deploy_ok(&empty, &[]);
    assert_eq!(h.active(), format!("{}/3", h.mount_point()));
    assert_eq!(h.entries(&h.symlink()), [".nixseal.json"]);
    assert_eq!(fs::read_to_string(h.p("etc/u")).unwrap(), "user's own");
}

/// Issue 11.11, in deploy itself: when the last secret and template leave
/// the configuration, one deploy removes the generation it replaced (after
/// the readers' grace), so no plaintext stays in RAM; for the main and the
/// `--users` generations alike. Non-empty deploys still keep it.
#[test]
fn an_empty_generation_removes_the_one_it_replaced_in_the_same_run() {
    let h = Host::new();
    let mut pw = h.secret("pw", "users-plaintext", "root", "root", "0400");
    pw["neededForUsers"] = true.into();
    pw["path"] = h.s("run/nixseal-for-users/pw").into();
    let full = h.manifest(
        vec![pw, h.secret("db", "main-plaintext", "root", "root", "0400")],
        vec![h.template("t", "T={{nixseal:db}}", "root", "root", "0400")],
        1,
    );
    h.deploy_ok(&full, &["--users"]);
    h.deploy_ok(&full, &[]);
    h.deploy_ok(&full, &[]);
    // Not empty: the replaced generation is kept for readers.
    assert_eq!(h.generations(), ["1", "2"]);
    let users_mp = h.s("run/nixseal-for-users.d");

    let empty = h.manifest(vec![], vec![], 1);
    let started = std::time::Instant::now();
    let out = h.deploy_ok(&empty, &[]);
    // Only the new, empty generation is left; the grace was waited out.
    assert_eq!(h.generations(), ["3"], "{}", stderr(&out));
    assert_eq!(h.entries(&h.symlink()), [".nixseal.json"]);
    assert!(started.elapsed() >= Duration::from_millis(1000));
    let out = h.deploy_ok(&empty, &["--users"]);
    assert_eq!(h.entries(&users_mp), ["2"], "{}", stderr(&out));
    for dir in [h.mount_point(), users_mp.clone()] {
        let found = Command::new("grep")
            .args(["-rl", "plaintext"])
            .arg(&dir)
            .output()
            .unwrap();
        assert!(
            found.stdout.is_empty(),
            "plaintext left in {dir}: {}",
            String::from_utf8_lossy(&found.stdout)
        );
    }
    // Empty again: the empty one it replaced goes as well.
    h.deploy_ok(&empty, &[]);
    assert_eq!(h.generations(), ["4"]);

    // keepGenerations = 0 keeps every generation, also when empty.
    let keep_all = h.manifest(
        vec![h.secret("db", "kept", "root", "root", "0400")],
        vec![],
        0,
    );
    h.deploy_ok(&keep_all, &[]);
    h.deploy_ok(&h.manifest(vec![], vec![], 0), &[]);
    assert_eq!(h.generations(), ["4", "5", "6"]);
}

#[test]
fn users_mode_installs_only_needed_for_users_secrets_owned_by_root() {
    let h = Host::new();
    let mut pw = h.secret("alice-pw", "$6$hash", "nxs-not-yet", "nxs-not-yet", "0400");
    pw["neededForUsers"] = true.into();
    pw["path"] = h.s("run/nixseal-for-users/alice-pw").into();
    let m = h.manifest(
        vec![pw, h.secret("normal", "n", "nxs-alice", "nxs-grp", "0400")],
        vec![h.template("t", "{{nixseal:alice-pw}}", "root", "root", "0400")],
        1,
    );
    h.deploy_ok(&m, &["--users"]);
    let users_link = h.s("run/nixseal-for-users");
    assert_eq!(
        fs::read_link(&users_link).unwrap(),
        PathBuf::from(h.s("run/nixseal-for-users.d/1"))
    );
    assert_file(
        &format!("{users_link}/alice-pw"),
        "$6$hash",
        "root",
        "root",
        0o400,
    );
    assert_eq!(h.entries(&users_link), [".nixseal.json", "alice-pw"]);
    assert!(mount_line(&h.s("run/nixseal-for-users.d"))[0].contains(" - ramfs "));
    assert!(
        !h.p("run/nixseal").exists(),
        "--users must not touch the main symlink"
    );

    // The main run leaves users secrets out but can render them into templates.
    h.deploy_ok(&m, &[]);
    assert_eq!(h.entries(&h.symlink()), [".nixseal.json", "normal", "t"]);
    assert_file(&h.s("run/nixseal/t"), "$6$hash", "root", "root", 0o400);
}

#[test]
fn dry_run_proves_decryption_and_writes_nothing() {
    let h = Host::new();
    let m = h.manifest(
        vec![h.secret("a", "x", "nxs-alice", "nxs-grp", "0400")],
        vec![h.template("t", "{{nixseal:a}}", "root", "root", "0400")],
        1,
    );
    let out = h.deploy_ok(&m, &["--dry-run"]);
    assert!(stderr(&out).contains("dry run"), "{}", stderr(&out));
    assert!(!h.p("run").exists(), "dry run created {:?}", h.p("run"));

    let other = tempfile::tempdir().unwrap();
    let k = other.path().join("k");
    run_ok(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", ""])
            .arg("-f")
            .arg(&k),
    );
    let mut bad = h.secret("b", "x", "root", "root", "0400");
    bad["source"] = h.encrypt_to(&recipient_of(&k), b"x").into();
    let m = h.manifest(vec![bad], vec![], 1);
    let out = h.deploy(&m, &["--dry-run"]);
    assert_eq!(code(&out), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("secret \"b\""), "{}", stderr(&out));
    assert!(!h.p("run").exists());
}

/// Sources made by Go `age` and by `rage` for the host's ssh key (alone, and
/// among X25519 and other ssh-ed25519 stanzas) install byte for byte: the
/// host identity (crates/nixseal/src/host/identity.rs) unwraps what the reference tools wrap.
#[test]
fn sources_from_go_age_and_rage_deploy() {
    let Some(rage) = support::which("rage") else {
        panic!("rage not found on PATH: run `bash scripts/test` (it runs `cargo install rage`)");
    };
    let h = Host::new();
    let pubkey = format!("{}.pub", h.key.display());
    let other = h.p("other_key");
    run_ok(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&other),
    );
    let other_pub = format!("{}.pub", other.display());
    let x25519 = h.p("x25519_key");
    run_ok(Command::new("age-keygen").arg("-o").arg(&x25519));
    let x25519_recipient =
        String::from_utf8(run_ok(Command::new("age-keygen").arg("-y").arg(&x25519)).stdout)
            .unwrap();
    let encrypt = |tool: &Path, args: &[&str], content: &[u8]| {
        let out = h.p(&format!("src/{}.age", h.next()));
        let mut child = Command::new(tool)
            .args(args)
            .arg("-o")
            .arg(&out)
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(content).unwrap();
        assert!(
            child.wait().unwrap().success(),
            "{} {args:?}",
            tool.display()
        );
        out.to_str().unwrap().to_owned()
    };
    let age = Path::new("age");
    let big: Vec<u8> = (0..200_000).map(|i| (i * 7 % 251) as u8).collect();
    let sources = [
        ("go-age", encrypt(age, &["-R", &pubkey], b"from Go age\n")),
        ("rage", encrypt(&rage, &["-R", &pubkey], b"from rage\n")),
        (
            "go-age-many",
            encrypt(
                age,
                &[
                    "-r",
                    x25519_recipient.trim(),
                    "-R",
                    &other_pub,
                    "-R",
                    &pubkey,
                ],
                b"one of three stanzas\n",
            ),
        ),
        ("rage-big", encrypt(&rage, &["-R", &pubkey], &big)),
    ];
    let secrets = sources
        .iter()
        .map(|(name, src)| {
            let mut v = h.secret(name, "unused", "root", "root", "0400");
            v["source"] = src.as_str().into();
            v
        })
        .collect();
    h.deploy_ok(&h.manifest(secrets, vec![], 1), &[]);
    let link = h.symlink();
    let root_file = |name: &str, content: &str| {
        assert_file(&format!("{link}/{name}"), content, "root", "root", 0o400)
    };
    root_file("go-age", "from Go age\n");
    root_file("rage", "from rage\n");
    root_file("go-age-many", "one of three stanzas\n");
    assert!(
        file_state(&format!("{link}/rage-big")).0 == big,
        "200 kB from rage differ"
    );

    // Encrypted by Go age to the other ssh key only: no stanza is ours.
    let mut wrong = h.secret("wrong", "unused", "root", "root", "0400");
    wrong["source"] = encrypt(age, &["-R", &other_pub], b"x").into();
    let out = h.deploy(&h.manifest(vec![wrong], vec![], 1), &[]);
    assert_eq!(code(&out), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("secret \"wrong\"")
            && stderr(&out).contains("not encrypted to this host's key"),
        "{}",
        stderr(&out)
    );
    root_file("rage", "from rage\n");
}

/// Issue 10.7: permissions for "other" are a decision: deploy warns.
#[test]
fn world_accessible_modes_get_a_warning() {
    let h = Host::new();
    let m = h.manifest(
        vec![
            h.secret("r444", "x", "root", "root", "0444"),
            h.secret("r004", "x", "root", "root", "004"),
            h.secret("w666", "x", "root", "root", "0666"),
            h.secret("x001", "x", "root", "root", "0001"),
            h.secret("fine", "x", "nxs-alice", "nxs-grp", "0440"),
        ],
        vec![h.template("t777", "{{nixseal:fine}}", "root", "root", "0777")],
        1,
    );
    for args in [&[][..], &["--dry-run"][..]] {
        let out = h.deploy_ok(&m, args);
        let e = stderr(&out);
        for (what, name, access) in [
            ("secret", "r444", "read"),
            ("secret", "r004", "read"),
            ("secret", "w666", "read and write"),
            ("secret", "x001", "execute"),
            ("template", "t777", "read and write"),
        ] {
            let needle = format!("warning: {what} \"{name}\" has mode");
            assert!(e.contains(&needle), "{args:?}: {needle:?} not in {e}");
            assert!(
                e.contains(&format!("every user on this host can {access} it")),
                "{e}"
            );
        }
        assert!(!e.contains("\"fine\" has mode"), "{e}");
    }
    assert_file(&h.s("run/nixseal/r444"), "x", "root", "root", 0o444);
}
