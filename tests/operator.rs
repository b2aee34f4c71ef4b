//! The operator side under careless input and a hostile local user
//! (issue 10, points 8–14; issue 11 points 5–6; issue 14 point 4): `renc`,
//! `check` and `edit` run as operators run them, with real keys and
//! ciphertexts from Go `age`, `age-keygen` and `ssh-keygen`.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

/// Shell snippet: `$p` becomes the PID of our own nixseal (an ancestor of
/// the editor or generator running it), never another test's.
const FIND_NIXSEAL: &str = r#"p=$PPID; while [ "$(cat /proc/$p/comm)" != nixseal ]; do p=$(cut -d' ' -f4 /proc/$p/stat); done"#;

fn profile_value(f: &Fleet) -> Value {
    serde_json::from_str(&f.profile_json()).unwrap()
}

fn write_profile_value(f: &Fleet, v: &Value) {
    std::fs::write(f.path("profile.json"), v.to_string()).unwrap();
}

/// nixseal in the fleet's root, stdin closed.
fn cmd(f: &Fleet, args: &[&str]) -> Command {
    let mut c = Command::new(nixseal_bin());
    c.current_dir(&f.root).args(args).stdin(Stdio::null());
    c
}

fn run(f: &Fleet, args: &[&str]) -> Output {
    run_timeout(&mut cmd(f, args), 60)
}

/// `nixseal edit` on a pseudo-terminal (so it runs $EDITOR) via script(1).
fn edit_with_editor(f: &Fleet, file: &str, editor_body: &str, env: &[(&str, &Path)]) -> Output {
    let editor = script(&f.path("editor.sh"), editor_body);
    let mut c = Command::new("script");
    c.current_dir(&f.root)
        .env("EDITOR", &editor)
        .args(["-qec"])
        .arg(format!(
            "{} edit {file} --profile profile.json",
            nixseal_bin().display()
        ))
        .arg("/dev/null")
        .stdin(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    // On the pseudo-terminal nixseal's stderr arrives on script's stdout.
    let mut o = run_timeout(&mut c, 60);
    o.stderr.splice(0..0, std::mem::take(&mut o.stdout));
    o
}

fn decrypt_with(f: &Fleet, file: &Path, key: &str) -> Vec<u8> {
    age_decrypt(file, &f.path(key))
}

fn git(dir: &Path, args: &[&str]) -> Output {
    run_ok(Command::new("git").current_dir(dir).args(args))
}

// ---------------------------------------------------------------- point 8

/// Every layout in which renc could overwrite or delete a master secret,
/// an identity or the profile is refused (exit 2) by renc, check and a dry
/// run, before anything is written and before any generator runs.
#[test]
fn rekeyed_dir_that_could_touch_master_secrets_is_refused_before_anything_is_written() {
    type Setup = fn(&mut Fleet, &mut Value);
    let cases: Vec<(&str, Setup, &str)> = vec![
        (
            "agenix layout secrets/<host>/<name>.age with rekeyedDir = ./secrets",
            |f, v| {
                for (host, secrets) in f.uses.clone() {
                    std::fs::create_dir_all(f.path(&format!("secrets/{host}"))).unwrap();
                    for s in secrets {
                        std::fs::copy(
                            f.path(&format!("secrets/{s}.age")),
                            f.path(&format!("secrets/{host}/{s}.age")),
                        )
                        .unwrap();
                        v["hosts"][&host]["secrets"][&s]["file"] =
                            format!("./secrets/{host}/{s}.age").into();
                    }
                }
                v["rekeyedDir"] = "./secrets".into();
            },
            "lies inside rekeyedDir secrets, where renc writes and removes files",
        ),
        (
            "rekeyedDir = \".\" with a host named like the source directory",
            |_, v| {
                let db1 = v["hosts"]["db1"].clone();
                v["hosts"].as_object_mut().unwrap().remove("db1");
                v["hosts"]["secrets"] = db1;
                v["rekeyedDir"] = ".".into();
            },
            "is the flake root itself",
        ),
        (
            "master secrets directly in rekeyedDir",
            |_, v| v["rekeyedDir"] = "./secrets".into(),
            "master secret secrets/",
        ),
        (
            "rekeyedDir that normalises to the source directory",
            |_, v| v["rekeyedDir"] = "./secrets/rekeyed/..".into(),
            "lies inside rekeyedDir secrets",
        ),
        (
            "rekeyedDir outside the root",
            |_, v| v["rekeyedDir"] = "../elsewhere".into(),
            "resolves outside the flake root",
        ),
        (
            "rekeyedDir through a symlinked directory",
            |f, v| {
                std::fs::create_dir(f.path("real")).unwrap();
                std::os::unix::fs::symlink("real", f.path("out")).unwrap();
                v["rekeyedDir"] = "./out/rekeyed".into();
            },
            "passes through the symlink out",
        ),
        (
            "rekeyedDir is itself a symlink",
            |f, _| {
                std::fs::create_dir(f.path("real")).unwrap();
                std::os::unix::fs::symlink("../real", f.path("secrets/rekeyed")).unwrap();
            },
            "passes through the symlink secrets/rekeyed",
        ),
        (
            "a source reached through a symlink into a host directory",
            |f, v| {
                std::fs::create_dir_all(f.path("secrets/rekeyed/db1")).unwrap();
                std::fs::copy(
                    f.path("secrets/db.age"),
                    f.path("secrets/rekeyed/db1/db.age"),
                )
                .unwrap();
                std::os::unix::fs::symlink("rekeyed/db1", f.path("secrets/linked")).unwrap();
                v["hosts"]["db1"]["secrets"]["db"]["file"] = "./secrets/linked/db.age".into();
            },
            "master secret secrets/linked/db.age lies inside rekeyedDir",
        ),
        (
            "a source that is itself inside a host directory",
            |f, v| {
                std::fs::create_dir_all(f.path("secrets/rekeyed/web1")).unwrap();
                let master = f.master.clone();
                age_encrypt(
                    &f.path("secrets/rekeyed/web1/extra.age"),
                    b"extra",
                    &[&master],
                    false,
                );
                v["hosts"]["web1"]["secrets"]["extra"] =
                    serde_json::json!({"file": "./secrets/rekeyed/web1/extra.age"});
            },
            "master secret secrets/rekeyed/web1/extra.age lies inside",
        ),
        (
            "an identity inside a host directory (named like an output)",
            |f, v| {
                std::fs::create_dir_all(f.path("secrets/rekeyed/web1")).unwrap();
                std::fs::copy(
                    f.path("keys/master.txt"),
                    f.path("secrets/rekeyed/web1/backup.age"),
                )
                .unwrap();
                v["identities"] = serde_json::json!(["./secrets/rekeyed/web1/backup.age"]);
            },
            "identity file secrets/rekeyed/web1/backup.age lies inside",
        ),
        (
            "rekeyedDir inside the path of a master secret a generator would make",
            |f, v| {
                let gen = script(
                    &f.path("gen.sh"),
                    &format!("echo run >> {}; echo value", f.path("gen-runs").display()),
                );
                v["hosts"]["db1"]["secrets"]["made"] = serde_json::json!({
                    "file": "./secrets/made", "generator": gen.to_str().unwrap()
                });
                v["rekeyedDir"] = "./secrets/made/rekeyed".into();
            },
            "lies inside the master secret path secrets/made",
        ),
    ];
    for (what, setup, want) in cases {
        let mut f = Fleet::new();
        let mut v = profile_value(&f);
        setup(&mut f, &mut v);
        write_profile_value(&f, &v);
        let before = tree(f.dir.path());
        for args in [
            &["renc", "--profile", "profile.json"][..],
            &["renc", "--profile", "profile.json", "--dry-run"],
            &["check", "--profile", "profile.json"],
        ] {
            let o = run(&f, args);
            assert_eq!(o.status.code(), Some(2), "{what}: {args:?}\n{}", stderr(&o));
            assert!(
                stderr(&o).contains(want),
                "{what}: {args:?}: want {want:?} in\n{}",
                stderr(&o)
            );
            assert_same_tree(&before, &tree(f.dir.path()), what);
        }
        assert!(!f.path("gen-runs").exists(), "{what}: a generator ran");
    }
    // The source directory bind-mounted as the rekeyed directory: the same
    // directory by device and inode, whatever its path says.
    let mut f = Fleet::new();
    let mut v = profile_value(&f);
    for (host, secrets) in f.uses.clone() {
        std::fs::create_dir_all(f.path(&format!("secrets/{host}"))).unwrap();
        for s in secrets {
            std::fs::copy(
                f.path(&format!("secrets/{s}.age")),
                f.path(&format!("secrets/{host}/{s}.age")),
            )
            .unwrap();
            v["hosts"][&host]["secrets"][&s]["file"] = format!("./secrets/{host}/{s}.age").into();
        }
    }
    v["rekeyedDir"] = "./rk".into();
    write_profile_value(&f, &v);
    std::fs::create_dir(f.path("rk")).unwrap();
    f.uses.clear();
    let before = tree(&f.path("secrets"));
    let o = run_timeout(
        Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c"])
            .arg(r#"mount --bind secrets rk && exec "$0" renc --profile profile.json"#)
            .arg(nixseal_bin())
            .current_dir(&f.root)
            .stdin(Stdio::null()),
        60,
    );
    assert_code(&o, 2);
    assert_stderr_has(&o, "lies inside rekeyedDir rk");
    assert_same_tree(
        &before,
        &tree(&f.path("secrets")),
        "bind-mounted rekeyedDir",
    );

    // An identity given with -i is held to the same rule.
    let f = Fleet::new();
    assert_code(&f.renc(), 0);
    std::fs::copy(
        f.path("keys/master.txt"),
        f.path("secrets/rekeyed/web1/key.age"),
    )
    .unwrap();
    let before = tree(f.dir.path());
    let o = run(
        &f,
        &[
            "renc",
            "--profile",
            "profile.json",
            "-i",
            "secrets/rekeyed/web1/key.age",
        ],
    );
    assert_code(&o, 2);
    assert_stderr_has(&o, "identity file secrets/rekeyed/web1/key.age lies inside");
    assert_same_tree(&before, &tree(f.dir.path()), "-i inside rekeyedDir");
}

// ---------------------------------------------------------------- point 9

fn hex32(s: &str) -> [u8; 32] {
    let v: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    v.try_into().unwrap()
}

/// A host key that protects nothing (identity point, order 2, order 8, not
/// on the curve, mixed order) blocks that host with a clear error; every
/// other host is still rekeyed.
#[test]
fn weak_host_keys_are_refused_for_their_host_while_the_rest_is_served() {
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let mut two = [0u8; 32];
    two[0] = 2;
    let weak = [
        (identity, "small order"),
        (
            hex32("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
            "small order",
        ),
        (
            hex32("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),
            "small order",
        ),
        (two, "not a point on the ed25519 curve"),
    ];
    for (point, why) in weak {
        let mut f = Fleet::new();
        f.hosts.insert("web1".into(), ssh_key_line(point));
        f.write_profile();
        let o = f.renc();
        assert_code(&o, 1);
        assert_stderr_has(&o, "web1: hostPubkey \"ssh-ed25519 ");
        assert_stderr_has(&o, "is not a real host key");
        assert_stderr_has(&o, why);
        assert_stdout_has(&o, "1 rekeyed, 0 unchanged, 0 removed, 1 failed");
        assert!(!f.path("secrets/rekeyed/web1").exists(), "nothing for web1");
        assert_eq!(
            decrypt_with(&f, &f.output("db1", "db"), "keys/db1"),
            b"hunter2\n"
        );
        let o = f.check();
        assert_code(&o, 1);
        assert_stdout_has(&o, "web1: hostPubkey");
        assert!(!stdout(&o).contains("db1"), "{}", stdout(&o));
    }
}

/// The same for every other key nixseal encrypts to: an X25519 recipient of
/// small order (age itself panics on it; Go age says "low order point") or
/// a weak ssh-ed25519 key, as `-r` or in extraRecipients, is refused.
#[test]
fn recipients_that_protect_nothing_are_refused_not_a_panic() {
    const ZERO_POINT: &str = "age1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq5cu47z";
    let mut f = Fleet::new();
    let o = run_timeout(
        Command::new(nixseal_bin())
            .current_dir(&f.root)
            .args(["edit", "secrets/new.age", "-r", ZERO_POINT])
            .stdin(std::fs::File::open(f.path("keys/master.txt")).unwrap()),
        60,
    );
    assert_code(&o, 2);
    assert_stderr_has(&o, "is not usable: it is a point of small order");
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
    assert!(!f.path("secrets/new.age").exists());
    let mut identity = [0u8; 32];
    identity[0] = 1;
    for weak in [ZERO_POINT.to_owned(), ssh_key_line(identity)] {
        f.extra_recipients = vec![weak];
        f.write_profile();
        let before = tree(f.dir.path());
        for o in [f.renc(), edit_stdin(&f, "secrets/db.age", b"x", &[])] {
            assert_code(&o, 2);
            assert_stderr_has(&o, "profile profile.json: extraRecipients entry");
            assert_stderr_has(&o, "small order");
        }
        assert_same_tree(&before, &tree(f.dir.path()), "weak extra recipient");
    }
}

#[test]
fn two_hosts_with_one_key_get_a_warning_from_renc_and_check() {
    let mut f = Fleet::new();
    let web1 = f.hosts["web1"].clone();
    f.hosts.insert("db1".into(), web1);
    f.write_profile();
    let o = f.renc();
    assert_code(&o, 0);
    assert_stderr_has(&o, "warning: hosts db1, web1 have the same hostPubkey");
    assert_stderr_has(&o, "can decrypt the others' rekeyed secrets");
    let o = f.check();
    assert_code(&o, 0);
    assert_stderr_has(&o, "hosts db1, web1 have the same hostPubkey");
}

/// A home (its key is its user's) that shares a key with a host is named
/// as a home in the warning, and a home with no secrets and a bad key is
/// named as a home too.
#[test]
fn shared_and_unusable_keys_of_homes_are_named_as_homes() {
    let f = Fleet::new();
    let mut v: serde_json::Value = serde_json::from_str(&f.profile_json()).unwrap();
    let web1 = f.hosts["web1"].clone();
    v["hosts"]["web1.alice"] = serde_json::json!({
        "kind": "home", "host": "web1", "hostPubkey": web1,
        "secrets": { "db": { "file": "./secrets/db.age" } }
    });
    v["hosts"]["db1.bob"] = serde_json::json!({
        "kind": "home", "host": "db1", "hostPubkey": "ssh-ed25519 AAAA", "secrets": {}
    });
    write_profile_value(&f, &v);
    let o = f.renc();
    assert_code(&o, 0);
    assert_stderr_has(&o, "host web1, home web1.alice have the same public key");
    assert_stderr_has(
        &o,
        "home db1.bob has no secrets yet, and its key is not usable",
    );
    assert!(!stderr(&o).contains("hosts web1"), "{}", stderr(&o));
}

// ------------------------------------------- issue 11 point 5, issue 14 point 4

/// A new host without its key yet (null, or the empty string) is reported
/// by name with `ssh-keyscan` as the fix; renc and check still serve every
/// other host (exit 1, the rest done). A host with no secrets and no key is
/// no failure.
#[test]
fn a_host_without_a_key_yet_is_reported_and_every_other_host_is_served() {
    let f = Fleet::new();
    let mut v = profile_value(&f);
    v["hosts"]["web2"] =
        serde_json::json!({"hostPubkey": null, "secrets": {"db": {"file": "./secrets/db.age"}}});
    v["hosts"]["web3"] =
        serde_json::json!({"hostPubkey": "", "secrets": {"api": {"file": "./secrets/api.age"}}});
    v["hosts"]["spare"] = serde_json::json!({"hostPubkey": null, "secrets": {}});
    write_profile_value(&f, &v);
    let o = f.renc();
    assert_code(&o, 1);
    for h in ["web2", "web3"] {
        assert_stderr_has(&o, &format!("{h}: hostPubkey is not set"));
    }
    assert_stderr_has(&o, "ssh-keyscan -t ed25519 HOST");
    assert!(!stderr(&o).contains("error: spare"), "{}", stderr(&o));
    assert_stdout_has(&o, "4 rekeyed, 0 unchanged, 0 removed, 2 failed");
    f.assert_outputs_decrypt();
    f.assert_caches_true();
    assert!(!f.path("secrets/rekeyed/web2").exists());
    let o = f.check();
    assert_code(&o, 1);
    let out = stdout(&o);
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(
        out.contains("web2: hostPubkey is not set") && out.contains("web3:"),
        "{out}"
    );
    // Once the new hosts are gone only the key-less spare is left: fine.
    v["hosts"].as_object_mut().unwrap().remove("web2");
    v["hosts"].as_object_mut().unwrap().remove("web3");
    write_profile_value(&f, &v);
    let o = f.check();
    assert_code(&o, 0);
    assert_stderr_has(
        &o,
        "host spare has no secrets yet, and its key is not usable",
    );
}

// ---------------------------------------------------------------- point 10

#[test]
fn a_profile_that_names_a_host_or_secret_twice_is_refused_by_every_command() {
    let f = Fleet::new();
    assert_code(&f.renc(), 0);
    let json = f.profile_json();
    let twice_host = json.replacen(
        "\"hosts\":{",
        &format!(
            "\"hosts\":{{\"web1\":{{\"hostPubkey\":\"{}\",\"secrets\":{{}}}},",
            f.hosts["web1"]
        ),
        1,
    );
    let twice_secret = json.replacen(
        "\"secrets\":{",
        "\"secrets\":{\"db\":{\"file\":\"./secrets/api.age\"},",
        1,
    );
    for (doc, key) in [(twice_host, "\"web1\""), (twice_secret, "\"db\"")] {
        std::fs::write(f.path("profile.json"), &doc).unwrap();
        let before = tree(f.dir.path());
        let edits = edit_stdin(&f, "secrets/db.age", b"new value", &[]);
        for o in [f.renc(), f.check(), edits] {
            assert_code(&o, 2);
            assert_stderr_has(&o, "profile.json");
            assert_stderr_has(&o, &format!("duplicate key {key}"));
            assert_same_tree(&before, &tree(f.dir.path()), key);
        }
    }
}

#[test]
fn a_cache_that_names_an_output_twice_is_invalid_and_that_host_is_rewritten() {
    let f = Fleet::new();
    assert_code(&f.renc(), 0);
    let cache = f.path("secrets/rekeyed/web1/.nixseal-rekey.json");
    let text = std::fs::read_to_string(&cache).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    let db = v["outputs"]["db"].to_string();
    let doubled = text.replacen(
        "\"outputs\": {",
        &format!("\"outputs\": {{\"db\": {db},"),
        1,
    );
    assert_ne!(doubled, text);
    std::fs::write(&cache, doubled).unwrap();
    let o = f.check();
    assert_code(&o, 1);
    assert_stderr_has(
        &o,
        "rekey cache secrets/rekeyed/web1/.nixseal-rekey.json is unreadable",
    );
    assert_stderr_has(&o, "duplicate key \"db\"");
    assert_stdout_has(&o, "web1/db: stale: not recorded in the rekey cache");
    let o = f.renc();
    assert_code(&o, 0);
    assert_stdout_has(&o, "3 rekeyed, 1 unchanged");
    f.assert_caches_true();
    assert_code(&f.check(), 0);
}

#[test]
fn names_too_long_for_store_paths_are_refused_through_the_cli() {
    let f = Fleet::new();
    let mut v = profile_value(&f);
    let web1 = v["hosts"]["web1"].clone();
    v["hosts"][&"h".repeat(97)] = web1;
    write_profile_value(&f, &v);
    for o in [
        f.renc(),
        f.check(),
        edit_stdin(&f, "secrets/x.age", b"x", &[]),
    ] {
        assert_code(&o, 2);
        assert_stderr_has(&o, "is 97 bytes long, more than the 96 nixseal allows");
    }
    let mut v = profile_value(&f);
    v["hosts"]["db1"]["secrets"][&"s".repeat(111)] =
        serde_json::json!({"file": "./secrets/db.age"});
    write_profile_value(&f, &v);
    let o = f.renc();
    assert_code(&o, 2);
    assert_stderr_has(&o, "is 111 bytes long, more than the 110 nixseal allows");
    assert!(!f.path("secrets/rekeyed").exists());
}

#[test]
fn jobs_out_of_range_is_a_usage_error_not_a_panic() {
    let f = Fleet::new();
    for bad in ["0", "100000", "-1", "many"] {
        let o = run(&f, &["renc", "--profile", "profile.json", "--jobs", bad]);
        assert_code(&o, 2);
        if bad != "-1" {
            assert_stderr_has(&o, "invalid value");
            assert_stderr_has(&o, "--jobs");
        }
        assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
        assert!(
            !f.path("secrets/rekeyed").exists(),
            "{bad}: wrote something"
        );
    }
    let o = run(&f, &["renc", "--profile", "profile.json", "--jobs", "0"]);
    assert_stderr_has(&o, "give 1 to 1024");
    let o = run(&f, &["renc", "--profile", "profile.json", "-j", "1"]);
    assert_code(&o, 0);
    f.assert_outputs_decrypt();
    // Nor can the environment ask for an absurd pool (rayon would obey it).
    touch_tls(&f);
    for cmd_line in [
        &["renc", "--profile", "profile.json"][..],
        &["check", "--profile", "profile.json"],
    ] {
        let o = run_timeout(cmd(&f, cmd_line).env("RAYON_NUM_THREADS", "100000"), 30);
        assert!(matches!(o.status.code(), Some(0 | 1)), "{}", stderr(&o));
        assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
    }
    assert!(decrypt_with(&f, &f.output("web1", "tls"), "keys/web1") == b"new tls");
}

/// Generators are checked (executable, master file creatable) and the whole
/// layout is validated before the first generator runs: a bad generator or
/// profile never leaves some secrets generated and the rest not.
#[test]
fn every_generator_and_the_layout_are_validated_before_anything_is_generated() {
    type Setup = fn(&mut Fleet, &Path);
    let cases: Vec<(&str, Setup, &str)> = vec![
        (
            "second generator missing",
            |f, good| {
                f.generators.insert("a-good".into(), good.to_owned());
                f.generators
                    .insert("b-bad".into(), f.path("no-such-generator"));
            },
            "is not usable",
        ),
        (
            "second generator not executable",
            |f, good| {
                f.generators.insert("a-good".into(), good.to_owned());
                let p = f.path("not-exec.sh");
                std::fs::write(&p, "#!/bin/sh\necho x\n").unwrap();
                f.generators.insert("b-bad".into(), p);
            },
            "is not executable",
        ),
        (
            "rekeyedDir is a file",
            |f, good| {
                f.generators.insert("a-good".into(), good.to_owned());
                std::fs::write(f.path("secrets/rekeyed"), "x").unwrap();
            },
            "rekeyedDir secrets/rekeyed is a regular file",
        ),
        (
            "second master file's directory cannot be made",
            |f, good| {
                f.generators.insert("a-good".into(), good.to_owned());
                f.generators.insert("b-bad".into(), good.to_owned());
                // b-bad's master file goes below a dangling symlink.
                std::os::unix::fs::symlink("nowhere", f.path("secrets/b-bad.age.d")).unwrap();
            },
            "is not a directory; nothing was generated",
        ),
    ];
    for (what, setup, want) in cases {
        let mut f = Fleet::new();
        let runs = f.path("gen-runs");
        let good = script(
            &f.path("good.sh"),
            &format!("echo run >> {}; echo generated", runs.display()),
        );
        setup(&mut f, &good);
        for s in f.generators.keys().cloned().collect::<Vec<_>>() {
            f.uses.get_mut("web1").unwrap().push(s);
        }
        f.write_profile();
        if f.path("secrets/b-bad.age.d").is_symlink() {
            let mut v = profile_value(&f);
            v["hosts"]["web1"]["secrets"]["b-bad"]["file"] = "./secrets/b-bad.age.d/x.age".into();
            write_profile_value(&f, &v);
        }
        let before = tree(f.dir.path());
        let o = f.renc();
        assert_code(&o, 2);
        assert!(stderr(&o).contains(want), "{what}: {}", stderr(&o));
        assert!(!runs.exists(), "{what}: a generator ran");
        assert_same_tree(&before, &tree(f.dir.path()), what);
    }
}

// ---------------------------------------------------------------- point 11

/// Breaks one host in a three-host fleet whose every host has work to do:
/// renc reports that host (exit 1), leaves it exactly as it was, and every
/// other host's outputs and caches are new and true.
#[test]
fn one_broken_host_is_reported_while_every_other_host_stays_true() {
    type Setup = fn(&Fleet);
    let cases: Vec<(&str, &str, Setup, &str)> = vec![
        (
            "cache is a directory",
            "web1",
            |f| {
                let c = f.path("secrets/rekeyed/web1/.nixseal-rekey.json");
                std::fs::remove_file(&c).unwrap();
                std::fs::create_dir(&c).unwrap();
            },
            "web1: rekey cache secrets/rekeyed/web1/.nixseal-rekey.json is a directory",
        ),
        (
            "cache is a symlink to another host's cache",
            "web1",
            |f| {
                let c = f.path("secrets/rekeyed/web1/.nixseal-rekey.json");
                std::fs::remove_file(&c).unwrap();
                std::os::unix::fs::symlink("../db1/.nixseal-rekey.json", &c).unwrap();
            },
            "web1: rekey cache secrets/rekeyed/web1/.nixseal-rekey.json is a symlink",
        ),
        (
            "cache is a FIFO",
            "web1",
            |f| {
                let c = f.path("secrets/rekeyed/web1/.nixseal-rekey.json");
                std::fs::remove_file(&c).unwrap();
                run_ok(Command::new("mkfifo").arg(&c));
            },
            "is a FIFO",
        ),
        (
            "host directory is a file",
            "web1",
            |f| {
                std::fs::remove_dir_all(f.path("secrets/rekeyed/web1")).unwrap();
                std::fs::write(f.path("secrets/rekeyed/web1"), "x").unwrap();
            },
            "web1: secrets/rekeyed/web1 is a regular file",
        ),
        (
            "foreign file in a departed host's directory",
            "app1",
            |f| {
                std::fs::write(f.path("secrets/rekeyed/app1/notes.txt"), "mine").unwrap();
                leave(f, "app1");
            },
            "app1: secrets/rekeyed/app1 belonged to a host that left the profile but also holds an entry that nixseal did not make (secrets/rekeyed/app1/notes.txt)",
        ),
        (
            "directory in a departed host's directory",
            "app1",
            |f| {
                std::fs::create_dir(f.path("secrets/rekeyed/app1/old")).unwrap();
                leave(f, "app1");
            },
            "nothing in it was removed",
        ),
    ];
    fn leave(f: &Fleet, host: &str) {
        let mut v = profile_value(f);
        v["hosts"].as_object_mut().unwrap().remove(host);
        write_profile_value(f, &v);
    }
    for (what, broken, setup, want) in cases {
        let mut f = Fleet::new();
        f.add_host("app1");
        f.uses
            .insert("app1".into(), vec!["db".into(), "api".into()]);
        f.write_profile();
        assert_code(&f.renc(), 0);
        // Every host has work: db and api change.
        f.set_secret("db", b"rotated db", false);
        f.set_secret("api", b"rotated api", true);
        f.write_profile();
        setup(&f);
        let broken_dir = f.path(&format!("secrets/rekeyed/{broken}"));
        let of_broken = |t: std::collections::BTreeMap<PathBuf, Vec<u8>>| {
            t.into_iter()
                .filter(|(p, _)| p.starts_with(&broken_dir))
                .collect::<std::collections::BTreeMap<_, _>>()
        };
        let broken_before = of_broken(tree(&f.path("secrets/rekeyed")));
        let o = run(&f, &["renc", "--profile", "profile.json"]);
        assert_eq!(o.status.code(), Some(1), "{what}: {}", stderr(&o));
        assert!(
            stderr(&o).contains(want),
            "{what}: want {want:?} in\n{}",
            stderr(&o)
        );
        assert!(!stderr(&o).contains("panicked"), "{what}");
        assert_same_tree(
            &broken_before,
            &of_broken(tree(&f.path("secrets/rekeyed"))),
            what,
        );
        // Every other host: new outputs, true caches, nothing stale.
        let profile: Value =
            serde_json::from_slice(&std::fs::read(f.path("profile.json")).unwrap()).unwrap();
        for (host, secrets) in &f.uses {
            if host == broken || profile["hosts"].get(host).is_none() {
                continue;
            }
            for s in secrets {
                assert_eq!(
                    decrypt_with(&f, &f.output(host, s), &format!("keys/{host}")),
                    f.secrets[s],
                    "{what}: {host}/{s}"
                );
            }
        }
        f.assert_caches_true();
        let o = run(&f, &["check", "--profile", "profile.json"]);
        assert_code(&o, 1);
        for line in stdout(&o).lines() {
            assert!(
                line.starts_with(broken),
                "{what}: only {broken} may be named: {line}"
            );
        }
    }
}

/// renc and edit of one flake serialise on a lock in the git directory
/// (never in the working tree, so never committed): a renc started while
/// another holder has the lock says it waits, and runs once it is free.
#[test]
fn renc_waits_for_the_lock_in_the_git_directory() {
    let f = Fleet::new();
    git(&f.root, &["init", "-q"]);
    let held = f.path("held");
    let mut holder = Command::new("flock")
        .current_dir(&f.root)
        .args([".git/nixseal.lock", "sh", "-c"])
        .arg(format!("touch {}; sleep 2", held.display()))
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !held.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "flock never held"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let t = Instant::now();
    let o = f.renc();
    let waited = t.elapsed();
    holder.wait().unwrap();
    assert_code(&o, 0);
    assert_stderr_has(
        &o,
        "waiting for another nixseal renc or edit of this flake to finish",
    );
    assert_stderr_has(&o, ".git/nixseal.lock");
    assert!(
        waited > Duration::from_millis(1000),
        "did not wait: {waited:?}"
    );
    f.assert_outputs_decrypt();
    let status = git(&f.root, &["status", "--porcelain", "--ignored"]);
    assert!(
        !String::from_utf8_lossy(&status.stdout).contains("nixseal.lock"),
        "the lock is in the working tree"
    );
}

/// An edit in progress holds the lock: a renc started meanwhile waits for
/// it and then rekeys the edited content (not the old one).
#[test]
fn renc_started_during_an_edit_waits_and_rekeys_the_edited_secret() {
    let f = Fleet::new();
    let editing = f.path("editing");
    let root = f.root.clone();
    let editor_body = format!(
        "touch {}; sleep 2; printf 'edited-db' > \"$1\"",
        editing.display()
    );
    let t = std::thread::spawn(move || {
        let f2 = FleetRef(root);
        f2.edit_with_editor(&editor_body)
    });
    let start = Instant::now();
    while !editing.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "editor never ran"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = f.renc();
    let edit = t.join().unwrap();
    assert_code(&edit, 0);
    assert_code(&o, 0);
    assert_stderr_has(&o, "waiting for another nixseal renc or edit");
    assert_eq!(
        decrypt_with(&f, &f.output("web1", "db"), "keys/web1"),
        b"edited-db"
    );
    assert_code(&f.check(), 0);
}

/// What the edit thread needs of a fleet (the fleet itself stays with the test).
struct FleetRef(PathBuf);
impl FleetRef {
    fn edit_with_editor(&self, body: &str) -> Output {
        let editor = script(&self.0.join("editor-lock.sh"), body);
        run_timeout(
            Command::new("script")
                .current_dir(&self.0)
                .env("EDITOR", &editor)
                .args(["-qec"])
                .arg(format!(
                    "{} edit secrets/db.age --profile profile.json",
                    nixseal_bin().display()
                ))
                .arg("/dev/null")
                .stdin(Stdio::null()),
            60,
        )
    }
}

/// Two renc at once: the second waits, then finds the generated master
/// file and does not generate it again.
#[test]
fn two_renc_at_once_generate_a_secret_once() {
    let mut f = Fleet::new();
    let runs = f.path("gen-runs");
    let gen = script(
        &f.path("slow-gen.sh"),
        &format!("echo run >> {}; sleep 1.5; echo generated", runs.display()),
    );
    f.generators.insert("session".into(), gen);
    f.uses.get_mut("web1").unwrap().push("session".into());
    f.write_profile();
    let first = cmd(&f, &["renc", "--profile", "profile.json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !runs.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "generator never ran"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let second = f.renc();
    let first = first.wait_with_output().unwrap();
    assert_code(&first, 0);
    assert_code(&second, 0);
    assert_stderr_has(&second, "waiting for another nixseal renc or edit");
    assert_eq!(std::fs::read_to_string(&runs).unwrap().lines().count(), 1);
    assert_eq!(
        decrypt_with(&f, &f.output("web1", "session"), "keys/web1"),
        b"generated\n"
    );
}

// ---------------------------------------------------------------- point 12

#[test]
fn empty_input_never_replaces_a_secret_unless_allowed() {
    let f = Fleet::new();
    let before = std::fs::read(f.path("secrets/db.age")).unwrap();
    let o = edit_stdin(&f, "secrets/db.age", b"", &[]);
    assert_code(&o, 2);
    assert_stderr_has(
        &o,
        "the new content is empty (did the command feeding stdin fail?); secrets/db.age is unchanged: pass --allow-empty",
    );
    assert_eq!(std::fs::read(f.path("secrets/db.age")).unwrap(), before);
    // A failed producer: `false | nixseal edit …`.
    let o = run_timeout(
        Command::new("sh")
            .current_dir(&f.root)
            .arg("-c")
            .arg(r#"false | "$0" edit secrets/db.age --profile profile.json"#)
            .arg(nixseal_bin()),
        60,
    );
    assert_code(&o, 2);
    assert_eq!(std::fs::read(f.path("secrets/db.age")).unwrap(), before);
    // Asked for: an empty secret is stored (and Go age opens it).
    let o = edit_stdin(&f, "secrets/db.age", b"", &["--allow-empty"]);
    assert_code(&o, 0);
    assert_eq!(
        decrypt_with(&f, &f.path("secrets/db.age"), "keys/master.txt"),
        b""
    );
    let o = edit_stdin(&f, "secrets/new.age", b"", &[]);
    assert_code(&o, 2);
    assert_stderr_has(&o, "secrets/new.age is not created");
    assert!(!f.path("secrets/new.age").exists());
}

/// `-i` only chooses how to decrypt: what edit (and a generator run by
/// renc) writes is encrypted to every identity of the profile plus
/// extraRecipients, each checked with Go age.
#[test]
fn identity_flag_never_narrows_the_recipients() {
    let mut f = Fleet::new();
    age_keygen(&f.path("keys/second.txt"));
    let backup = age_keygen(&f.path("keys/backup.txt"));
    f.identities = vec!["./keys/master.txt".into(), "./keys/second.txt".into()];
    f.extra_recipients = vec![backup];
    let runs = f.path("gen-runs");
    let gen = script(
        &f.path("gen.sh"),
        &format!("echo run >> {}; printf generated", runs.display()),
    );
    f.generators.insert("session".into(), gen);
    f.uses.get_mut("db1").unwrap().push("session".into());
    f.write_profile();
    let o = edit_stdin(&f, "secrets/db.age", b"via -i", &["-i", "keys/master.txt"]);
    assert_code(&o, 0);
    let o = run(
        &f,
        &["renc", "--profile", "profile.json", "-i", "keys/master.txt"],
    );
    assert_code(&o, 0);
    for key in ["keys/master.txt", "keys/second.txt", "keys/backup.txt"] {
        assert_eq!(
            decrypt_with(&f, &f.path("secrets/db.age"), key),
            b"via -i",
            "{key}"
        );
        assert_eq!(
            decrypt_with(&f, &f.path("secrets/session.age"), key),
            b"generated",
            "{key}"
        );
    }
}

#[test]
fn an_editor_that_returns_at_once_gets_a_hint() {
    let f = Fleet::new();
    let o = edit_with_editor(&f, "secrets/db.age", "true", &[]);
    assert_code(&o, 0);
    assert_stderr_has(&o, "unchanged");
    assert_stderr_has(&o, "hint: the editor returned after");
    assert_stderr_has(&o, "code --wait");
    let o = edit_with_editor(&f, "secrets/new.age", "true", &[]);
    assert_code(&o, 2);
    assert_stderr_has(&o, "hint: the editor returned after");
    assert!(!f.path("secrets/new.age").exists());
    // A real edit that takes its time gets no hint.
    let o = edit_with_editor(
        &f,
        "secrets/db.age",
        "sleep 1.2; printf changed > \"$1\"",
        &[],
    );
    assert_code(&o, 0);
    assert!(!stderr(&o).contains("hint"), "{}", stderr(&o));
}

#[test]
fn a_temp_file_the_editor_replaced_by_a_symlink_fifo_or_device_is_refused() {
    let cases = [
        (
            "symlink",
            "rm \"$1\"; ln -s \"$VICTIM\" \"$1\"",
            "left a symlink",
        ),
        ("FIFO", "rm \"$1\"; mkfifo \"$1\"", "left a FIFO"),
        (
            "device",
            "rm \"$1\"; mknod \"$1\" c 1 5",
            "left a character device",
        ),
    ];
    for (what, body, want) in cases {
        let f = Fleet::new();
        let victim = f.path("victim");
        std::fs::write(&victim, "not a secret").unwrap();
        let before = std::fs::read(f.path("secrets/db.age")).unwrap();
        let o = edit_with_editor(&f, "secrets/db.age", body, &[("VICTIM", &victim)]);
        assert_code(&o, 1);
        assert!(stderr(&o).contains(want), "{what}: {}", stderr(&o));
        assert_eq!(
            std::fs::read(f.path("secrets/db.age")).unwrap(),
            before,
            "{what}"
        );
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "not a secret");
    }
}

/// Ctrl-C while the editor runs belongs to the editor (vi uses it to leave
/// insert mode): nixseal neither dies nor discards the edit.
#[test]
fn sigint_and_sigquit_while_editing_are_left_to_the_editor() {
    for sig in ["INT", "QUIT"] {
        let f = Fleet::new();
        let o = edit_with_editor(
            &f,
            "secrets/db.age",
            &format!("{FIND_NIXSEAL}; kill -{sig} $p; sleep 0.3; printf 'after-{sig}' > \"$1\""),
            &[],
        );
        assert_code(&o, 0);
        assert_eq!(
            decrypt_with(&f, &f.path("secrets/db.age"), "keys/master.txt"),
            format!("after-{sig}").as_bytes()
        );
    }
}

/// A killed edit leaves its plaintext directory behind; the next edit finds
/// it (named `nixseal-plaintext-*`, ours, not locked) and wipes it — but never
/// a running edit's directory, another user's, or anything through a symlink.
#[test]
fn plaintext_left_by_a_killed_edit_is_wiped_by_the_next_one() {
    let f = Fleet::new();
    let shm = tempfile::Builder::new()
        .prefix("nixseal-test-run-")
        .tempdir_in("/dev/shm")
        .unwrap();
    let runtime = shm.path().to_owned();
    let log = f.path("temp-path");
    let o = edit_with_editor(
        &f,
        "secrets/db.age",
        &format!(
            "echo \"$1\" > {}; {FIND_NIXSEAL}; kill -KILL $p",
            log.display()
        ),
        &[("XDG_RUNTIME_DIR", &runtime)],
    );
    assert_ne!(o.status.code(), Some(0));
    let left = PathBuf::from(std::fs::read_to_string(&log).unwrap().trim());
    assert!(left.starts_with(&runtime), "{left:?}");
    assert_eq!(
        std::fs::read(&left).unwrap(),
        b"hunter2\n",
        "the leftover holds plaintext"
    );
    let left_dir = left.parent().unwrap().to_owned();
    // What must survive: a running edit's (locked) directory, another
    // user's, and a symlink named like one.
    let live = runtime.join("nixseal-plaintext-live");
    std::fs::create_dir(&live).unwrap();
    std::fs::write(live.join("secret"), "in use").unwrap();
    let mut holder = Command::new("flock")
        .arg(&live)
        .args(["sleep", "10"])
        .spawn()
        .unwrap();
    let other = runtime.join("nixseal-plaintext-other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("secret"), "theirs").unwrap();
    run_ok(
        Command::new("chown")
            .args(["-R", "65534:65534"])
            .arg(&other),
    );
    let target = f.path("target");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("keep"), "keep").unwrap();
    std::os::unix::fs::symlink(&target, runtime.join("nixseal-plaintext-link")).unwrap();
    std::thread::sleep(Duration::from_millis(300));

    let mut c = Command::new(nixseal_bin());
    c.current_dir(&f.root)
        .env("XDG_RUNTIME_DIR", &runtime)
        .args(["edit", "secrets/api.age", "--profile", "profile.json"])
        .stdin(Stdio::piped());
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(b"new api").unwrap();
    }
    let o = child.wait_with_output().unwrap();
    let _ = holder.kill();
    let _ = holder.wait();
    assert_code(&o, 0);
    assert_stderr_has(&o, &format!("wiped {}", left_dir.display()));
    assert!(!left_dir.exists(), "the leftover is gone");
    assert_eq!(
        std::fs::read_to_string(live.join("secret")).unwrap(),
        "in use"
    );
    assert_eq!(
        std::fs::read_to_string(other.join("secret")).unwrap(),
        "theirs"
    );
    assert_eq!(
        std::fs::read_to_string(target.join("keep")).unwrap(),
        "keep"
    );
    assert!(runtime.join("nixseal-plaintext-link").is_symlink());
}

// ---------------------------------------------------------------- point 13

/// Whatever sits where nixseal reads — a FIFO, a device, a directory, a
/// sparse 100 GB file — is refused with a clear error and never hangs or
/// fills memory.
#[test]
fn special_and_huge_files_are_refused_instead_of_read() {
    type Setup = fn(&Fleet);
    let cases: Vec<(&str, Setup, &[&str], i32, &str)> = vec![
        (
            "source is a FIFO",
            |f| fifo_at(&f.path("secrets/api.age")),
            &["renc", "--profile", "profile.json"],
            1,
            "web1/api: cannot read master secret secrets/api.age: it is a FIFO",
        ),
        (
            "source is /dev/zero",
            |f| link_at(&f.path("secrets/api.age"), "/dev/zero"),
            &["check", "--profile", "profile.json"],
            1,
            "cannot read master secret secrets/api.age: it is a character device",
        ),
        (
            "source is a directory",
            |f| {
                std::fs::remove_file(f.path("secrets/api.age")).unwrap();
                std::fs::create_dir(f.path("secrets/api.age")).unwrap();
            },
            &["renc", "--profile", "profile.json"],
            1,
            "secrets/api.age: it is a directory",
        ),
        (
            "source is a sparse 100 GB file",
            |f| sparse_at(&f.path("secrets/api.age")),
            &["renc", "--profile", "profile.json"],
            1,
            "it is 107374182400 bytes, more than the 67108864 bytes nixseal reads",
        ),
        (
            "identity is /dev/zero",
            |f| {
                set_identity(f, "/dev/zero");
                touch_tls(f);
            },
            &["renc", "--profile", "profile.json"],
            2,
            "cannot read identity file /dev/zero: it is a character device",
        ),
        (
            "identity is a FIFO",
            |f| {
                fifo_at(&f.path("keys/master.txt"));
                touch_tls(f);
            },
            &["renc", "--profile", "profile.json"],
            2,
            "cannot read identity file keys/master.txt: it is a FIFO",
        ),
        (
            "profile is /dev/zero",
            |_| {},
            &["check", "--profile", "/dev/zero"],
            2,
            "cannot read profile /dev/zero: it is a character device",
        ),
        (
            "profile is a FIFO",
            |f| fifo_at(&f.path("profile.json")),
            &["renc", "--profile", "profile.json"],
            2,
            "cannot read profile profile.json: it is a FIFO",
        ),
        (
            "passphrase file is /dev/zero",
            |f| set_identity_with_passphrase(f),
            &[
                "renc",
                "--profile",
                "profile.json",
                "--passphrase-file",
                "/dev/zero",
            ],
            2,
            "cannot read --passphrase-file /dev/zero: it is a character device",
        ),
        (
            "passphrase file is a directory",
            |f| set_identity_with_passphrase(f),
            &[
                "renc",
                "--profile",
                "profile.json",
                "--passphrase-file",
                "keys",
            ],
            2,
            "cannot read --passphrase-file keys: it is a directory",
        ),
    ];
    for (what, setup, args, code, want) in cases {
        let f = Fleet::new();
        assert_code(&f.renc(), 0);
        setup(&f);
        let before = f.snapshot();
        let o = run_timeout(&mut cmd(&f, args), 60);
        assert_eq!(o.status.code(), Some(code), "{what}: {}", stderr(&o));
        let all = stdout(&o) + &stderr(&o);
        assert!(all.contains(want), "{what}: want {want:?} in\n{all}");
        assert!(f.snapshot() == before, "{what}: outputs changed");
    }
}

fn fifo_at(p: &Path) {
    let _ = std::fs::remove_file(p);
    run_ok(Command::new("mkfifo").arg(p));
}
fn link_at(p: &Path, target: &str) {
    std::fs::remove_file(p).unwrap();
    std::os::unix::fs::symlink(target, p).unwrap();
}
fn sparse_at(p: &Path) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(p)
        .unwrap()
        .set_len(100 << 30)
        .unwrap();
}
fn set_identity(f: &Fleet, path: &str) {
    let mut v = profile_value(f);
    v["identities"] = serde_json::json!([path]);
    write_profile_value(f, &v);
}
/// Makes the tls output stale so that renc needs the identity.
fn touch_tls(f: &Fleet) {
    age_encrypt(&f.path("secrets/tls.age"), b"new tls", &[&f.master], false);
}
/// Makes the master identity an `age -p` file and one output stale.
fn set_identity_with_passphrase(f: &Fleet) {
    age_passphrase_protect(f, "keys/master.txt", "keys/master.age", "correct horse");
    set_identity(f, "./keys/master.age");
    touch_tls(f);
}

#[test]
fn a_sparse_100_gb_output_is_reported_and_rewritten_not_allocated() {
    let f = Fleet::new();
    assert_code(&f.renc(), 0);
    sparse_at(&f.output("web1", "tls"));
    let o = run(&f, &["check", "--profile", "profile.json"]);
    assert_code(&o, 1);
    assert_stdout_has(&o, "web1/tls: stale: the rekeyed file was modified");
    let o = run(&f, &["renc", "--profile", "profile.json"]);
    assert_code(&o, 0);
    assert_stdout_has(&o, "1 rekeyed, 3 unchanged");
    f.assert_outputs_decrypt();
}

#[test]
fn streams_are_bounded_passphrase_pipe_stdin_and_generator_output() {
    let mut f = Fleet::new();
    set_identity_with_passphrase(&f);
    // An endless pipe as the passphrase file stops at the limit.
    let o = run_timeout(
        Command::new("bash")
            .current_dir(&f.root)
            .arg("-c")
            .arg(r#""$0" renc --profile profile.json --passphrase-file /dev/fd/3 3< <(yes)"#)
            .arg(nixseal_bin())
            .stdin(Stdio::null()),
        60,
    );
    assert_code(&o, 2);
    assert_stderr_has(&o, "cannot read --passphrase-file /dev/fd/3");
    assert_stderr_has(&o, "more than the 65536 bytes");
    // A pipe with the passphrase still works.
    let o = run_timeout(
        Command::new("bash")
            .current_dir(&f.root)
            .arg("-c")
            .arg(r#""$0" renc --profile profile.json --passphrase-file /dev/fd/3 3< <(echo 'correct horse')"#)
            .arg(nixseal_bin())
            .stdin(Stdio::null()),
        60,
    );
    assert_code(&o, 0);
    set_identity(&f, "./keys/master.txt");

    // More than 64 MiB on stdin: refused, nothing written.
    let before = std::fs::read(f.path("secrets/db.age")).unwrap();
    let o = run_timeout(
        Command::new("sh")
            .current_dir(&f.root)
            .arg("-c")
            .arg(r#"head -c 70000000 /dev/zero | "$0" edit secrets/db.age --profile profile.json"#)
            .arg(nixseal_bin()),
        120,
    );
    assert_code(&o, 2);
    assert_stderr_has(&o, "more than the 67108864 bytes");
    assert_eq!(std::fs::read(f.path("secrets/db.age")).unwrap(), before);

    // A generator that never stops printing is stopped.
    let gen = script(&f.path("endless.sh"), "exec cat /dev/zero");
    f.generators.insert("endless".into(), gen);
    f.uses.get_mut("web1").unwrap().push("endless".into());
    f.write_profile();
    let o = run_timeout(&mut cmd(&f, &["renc", "--profile", "profile.json"]), 120);
    assert_code(&o, 1);
    assert_stderr_has(&o, "printed more than 67108864 bytes; it was stopped");
    assert!(!f.path("secrets/endless.age").exists());
}

// ---------------------------------------------------------------- point 14

/// A running edit and renc are not dumpable (no core file, no ptrace or
/// /proc/PID/mem for the user's other processes) and have a core limit of
/// 0. Run as an unprivileged user, whose dumpable processes own the files
/// in their /proc/PID: a non-dumpable one's are owned by root instead.
#[test]
fn running_edit_and_renc_are_not_dumpable() {
    let mut f = Fleet::new();
    let probe = format!(
        r#"{{ stat -c %u /proc/$p/status; grep 'Max core file size' /proc/$p/limits; stat -c %u /proc/$$/status; }} > {}"#,
        f.path("probe.log").display()
    );
    let gen = script(
        &f.path("gen.sh"),
        &format!("p=$PPID; {probe}; echo generated"),
    );
    f.generators.insert("session".into(), gen);
    f.uses.get_mut("db1").unwrap().push("session".into());
    f.write_profile();
    script(
        &f.path("editor.sh"),
        &format!("{FIND_NIXSEAL}; {probe}; printf edited > \"$1\""),
    );
    run_ok(
        Command::new("chown")
            .args(["-R", "65534:65534"])
            .arg(f.dir.path()),
    );
    let as_nobody = |inner: &str| {
        run_timeout(
            Command::new("setpriv")
                .current_dir(&f.root)
                .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                .env_remove("XDG_RUNTIME_DIR")
                .env("EDITOR", f.path("editor.sh"))
                .args(["sh", "-c", inner])
                .stdin(Stdio::null()),
            60,
        )
    };
    let check_probe = |what: &str| {
        let log = std::fs::read_to_string(f.path("probe.log")).unwrap();
        let lines: Vec<&str> = log.lines().collect();
        assert_eq!(
            lines[0], "0",
            "{what}: nixseal's /proc entry is root's (not dumpable): {log}"
        );
        let core: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(&core[4..6], ["0", "0"], "{what}: core limit: {log}");
        assert_eq!(
            lines[2], "65534",
            "{what}: control: a dumpable process: {log}"
        );
        std::fs::remove_file(f.path("probe.log")).unwrap();
    };
    let o = as_nobody(&format!(
        "{} renc --profile profile.json",
        nixseal_bin().display()
    ));
    assert_code(&o, 0);
    check_probe("renc");
    let o = as_nobody(&format!(
        "script -qec '{} edit secrets/db.age --profile profile.json' /dev/null",
        nixseal_bin().display()
    ));
    assert_code(&o, 0);
    check_probe("edit");
}

// ---------------------------------------------------------- issue 11 point 6

/// check exits 1 when rekeyed files, caches or sources exist but git does
/// not track them (the flake cannot see them), naming each and the
/// `git add` to run; running exactly that makes check pass.
#[test]
fn check_fails_on_files_git_does_not_track() {
    let f = Fleet::new();
    git(&f.root, &["init", "-q"]);
    git(&f.root, &["add", "secrets/db.age", "secrets/api.age"]);
    assert_code(&f.renc(), 0);
    let o = f.check();
    assert_code(&o, 1);
    let out = stdout(&o);
    for p in [
        "secrets/rekeyed/web1/db.age",
        "secrets/rekeyed/db1/.nixseal-rekey.json",
        "secrets/tls.age",
    ] {
        assert!(
            out.contains(&format!("{p}: exists but is not tracked by git")),
            "{p}: {out}"
        );
    }
    run_git_add_from(&f.root, &out);
    assert_code(&f.check(), 0);
}

/// The same with the flake in a subdirectory of the repository
/// (`infra/flake.nix`): paths and the `git add` are relative to the flake.
#[test]
fn check_names_untracked_files_relative_to_a_flake_in_a_subdirectory() {
    let f = Fleet::new_in("infra");
    git(f.dir.path(), &["init", "-q"]);
    git(f.dir.path(), &["add", "infra/secrets"]);
    let o = f.renc();
    assert_code(&o, 0);
    assert_stderr_has(&o, "run: git add secrets/rekeyed/");
    let o = f.check();
    assert_code(&o, 1);
    let out = stdout(&o);
    assert!(
        out.contains("secrets/rekeyed/web1/db.age: exists but is not tracked by git"),
        "{out}"
    );
    assert!(
        !out.contains("infra/"),
        "paths relative to the flake: {out}"
    );
    assert!(out.contains("run: git add secrets/rekeyed/"), "{out}");
    run_git_add_from(&f.root, &out);
    assert_code(&f.check(), 0);
}

/// Runs the `run: git add …` line of `out` in `dir`, as the operator would.
fn run_git_add_from(dir: &Path, out: &str) {
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix("run: git add "))
        .unwrap_or_else(|| panic!("no git add in {out}"));
    let mut c = Command::new("git");
    c.current_dir(dir).arg("add").args(line.split_whitespace());
    run_ok(&mut c);
}

#[test]
fn a_host_directory_with_a_foreign_file_keeps_it_and_is_served() {
    // Files nixseal did not make in a current host's directory are left
    // alone and do not block the host.
    let f = Fleet::new();
    assert_code(&f.renc(), 0);
    std::fs::write(f.path("secrets/rekeyed/web1/README"), "notes").unwrap();
    touch_tls(&f);
    let o = f.renc();
    assert_code(&o, 0);
    assert_eq!(
        std::fs::read_to_string(f.path("secrets/rekeyed/web1/README")).unwrap(),
        "notes"
    );
    f.assert_caches_true();
}

/// A host's outputs are staged before they are put in place, but never one
/// open file per output: a fleet far larger than the open-file limit rekeys.
#[test]
fn staging_a_host_never_holds_a_file_open_per_output() {
    let f = Fleet::new();
    let mut v = profile_value(&f);
    for i in 0..100 {
        v["hosts"]["web1"]["secrets"][format!("s{i:03}")] =
            serde_json::json!({"file": "./secrets/db.age"});
    }
    write_profile_value(&f, &v);
    let o = run_timeout(
        Command::new("sh")
            .current_dir(&f.root)
            .arg("-c")
            .arg(r#"ulimit -n 40 && exec "$0" renc --profile profile.json -j 2"#)
            .arg(nixseal_bin())
            .stdin(Stdio::null()),
        120,
    );
    assert_code(&o, 0);
    assert_stdout_has(&o, "104 rekeyed");
    assert_eq!(
        decrypt_with(&f, &f.output("web1", "s099"), "keys/web1"),
        b"hunter2\n"
    );
    f.assert_caches_true();
}

/// A home is a rekey target named as a home: a home without a usable key is
/// reported by renc and check as `<target> (home)`, with the user's key
/// (userPubkey) as the fix, and every other target is still served.
#[test]
fn a_home_without_a_key_is_named_as_a_home_with_the_users_key_as_fix() {
    let f = Fleet::new();
    let mut profile: Value = serde_json::from_str(&f.profile_json()).unwrap();
    profile["hosts"]["web1"]["kind"] = "host".into();
    profile["hosts"]["web1.alice"] = serde_json::json!({
        "kind": "home", "host": "web1", "hostPubkey": null,
        "secrets": {"db": {"file": "./secrets/db.age"}}});
    std::fs::write(f.path("profile.json"), profile.to_string()).unwrap();
    let o = f.renc();
    assert_code(&o, 1);
    assert_stderr_has(&o, "web1.alice (home): hostPubkey is not set");
    assert_stderr_has(&o, "set nixseal.settings.userPubkey");
    f.assert_outputs_decrypt();
    let o = f.check();
    assert_code(&o, 1);
    assert_stdout_has(&o, "web1.alice (home): ");
    assert_stdout_has(&o, "nixseal.settings.userPubkey");
    // A host with the same problem is still named as before.
    profile["hosts"]["web1.alice"]["kind"] = "host".into();
    profile["hosts"]["web1.alice"]
        .as_object_mut()
        .unwrap()
        .remove("host");
    std::fs::write(f.path("profile.json"), profile.to_string()).unwrap();
    let o = f.check();
    assert_code(&o, 1);
    assert_stdout_has(&o, "web1.alice: hostPubkey is not set");
    assert!(!stdout(&o).contains("userPubkey"), "{}", stdout(&o));
}
