//! Issue 14, the operator's lifecycle, as operators run it with real keys
//! and ciphertexts (Go `age`, `age-keygen`, `ssh-keygen`): scoped runs
//! (`--host`, `--secret`), master-key rotation (`rekey-masters`), `--json`
//! output and a fleet with a host whose key is not known yet.

mod support;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::Command;

use support::*;

/// Every file under the rekeyed dir with its bytes and mtime.
fn stamped(f: &Fleet) -> BTreeMap<PathBuf, (Vec<u8>, i64, i64)> {
    f.snapshot()
        .into_iter()
        .map(|(p, b)| {
            let m = std::fs::metadata(&p).unwrap();
            (p, (b, m.mtime(), m.mtime_nsec()))
        })
        .collect()
}

/// web1 (db, api, tls), db1 (db), all rekeyed; then every master file is
/// changed so that every output is stale.
fn stale_fleet() -> Fleet {
    let mut f = Fleet::new();
    assert_code(&f.renc(), 0);
    for (s, v) in [
        ("db", b"db-2".as_slice()),
        ("api", b"api-2"),
        ("tls", b"tls-2"),
    ] {
        f.set_secret(s, v, false);
    }
    f
}

#[test]
fn renc_host_filter_rekeys_only_that_host_and_leaves_the_rest_untouched() {
    let f = stale_fleet();
    let before = stamped(&f);
    std::thread::sleep(std::time::Duration::from_millis(20));
    let o = f.run(&["renc", "--profile", "profile.json", "--host", "db1"]);
    assert_code(&o, 0);
    assert_stdout_has(&o, "1 rekeyed, 0 unchanged, 0 removed, 0 failed");
    let after = stamped(&f);
    for (p, b) in &before {
        let in_db1 = p.parent().unwrap().ends_with("db1");
        assert_eq!(after[p] == *b, !in_db1, "{}", p.display());
    }
    assert_eq!(
        age_decrypt(&f.output("db1", "db"), &f.path("keys/db1")),
        b"db-2"
    );
    f.assert_caches_true();
    // check with the same filter is clean, the whole fleet is not.
    assert_code(
        &f.run(&["check", "--profile", "profile.json", "--host", "db1"]),
        0,
    );
    let o = f.check();
    assert_code(&o, 1);
    assert_stdout_has(&o, "web1/api");
    assert!(!stdout(&o).contains("db1/db"), "{}", stdout(&o));
}

#[test]
fn renc_secret_filter_is_repeatable_and_keeps_the_other_cache_entries() {
    let f = stale_fleet();
    let before = stamped(&f);
    std::thread::sleep(std::time::Duration::from_millis(20));
    let o = f.run(&[
        "renc",
        "--profile",
        "profile.json",
        "--secret",
        "db",
        "--secret",
        "api",
    ]);
    assert_code(&o, 0);
    assert_stdout_has(&o, "3 rekeyed, 0 unchanged, 0 removed, 0 failed");
    let after = stamped(&f);
    for (p, b) in &before {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let touched = name == "db.age" || name == "api.age" || name == ".nixseal-rekey.json";
        assert_eq!(after[p] == *b, !touched, "{}", p.display());
    }
    // web1's cache still vouches for tls (its old, stale output), which
    // an unscoped check reports and an unscoped renc rewrites.
    let cache: serde_json::Value = serde_json::from_slice(
        &std::fs::read(f.path("secrets/rekeyed/web1/.nixseal-rekey.json")).unwrap(),
    )
    .unwrap();
    assert!(cache["outputs"]["tls"].is_object(), "{cache}");
    f.assert_caches_true();
    let o = f.check();
    assert_code(&o, 1);
    assert_stdout_has(&o, "web1/tls: stale: the master secret changed");
    assert_code(
        &f.run(&[
            "check",
            "--profile",
            "profile.json",
            "--secret",
            "db",
            "--secret",
            "api",
        ]),
        0,
    );
    // Both filters: the pairs of those hosts using those secrets.
    let o = f.run(&[
        "renc",
        "--profile",
        "profile.json",
        "--host",
        "web1",
        "--secret",
        "tls",
        "--dry-run",
    ]);
    assert_code(&o, 0);
    assert_stdout_has(&o, "rekey  web1/tls");
    assert_stdout_has(&o, "1 to rekey, 0 to remove, 0 failing, 0 current");
    assert_code(&f.renc(), 0);
    f.assert_outputs_decrypt();
}

#[test]
fn unknown_filter_names_exit_2_with_the_known_names_and_change_nothing() {
    let f = stale_fleet();
    let before = stamped(&f);
    for (cmd, args, want) in [
        ("renc", vec!["--host", "web9"], r#"no host named "web9""#),
        ("check", vec!["--host", "web9"], r#"no host named "web9""#),
        (
            "renc",
            vec!["--secret", "nope"],
            r#"no secret named "nope""#,
        ),
        (
            "check",
            vec!["--secret", "nope"],
            r#"no secret named "nope""#,
        ),
        // db1 does not use tls.
        (
            "renc",
            vec!["--host", "db1", "--secret", "tls"],
            "for the selected hosts; secrets: db",
        ),
    ] {
        let mut a = vec![cmd, "--profile", "profile.json"];
        a.extend(args);
        let o = f.run(&a);
        assert_code(&o, 2);
        assert_stderr_has(&o, want);
        assert_stderr_has(&o, "profile.json");
        if want.contains("host named") {
            assert_stderr_has(&o, "hosts: db1, web1");
        }
    }
    assert!(stamped(&f) == before, "a refused run changed files");
}

#[test]
fn scoped_runs_never_remove_other_hosts_files() {
    let mut f = Fleet::new();
    assert_code(&f.renc(), 0);
    // db1 leaves the profile, web1 drops tls: an unscoped run would remove
    // db1's directory and web1/tls.age.
    f.uses.remove("db1");
    f.uses.get_mut("web1").unwrap().retain(|s| s != "tls");
    f.write_profile();
    let before = stamped(&f);
    let o = f.run(&["renc", "--profile", "profile.json", "--secret", "db"]);
    assert_code(&o, 0);
    assert_stdout_has(&o, "0 rekeyed, 1 unchanged, 0 removed, 0 failed");
    assert!(stamped(&f) == before);
    let o = f.run(&["check", "--profile", "profile.json", "--host", "web1"]);
    // A whole host is covered: its left-over output is reported.
    assert_code(&o, 1);
    assert_stdout_has(&o, "web1/tls.age: left over");
    assert!(!stdout(&o).contains("db1"), "{}", stdout(&o));
    let o = f.run(&["renc", "--profile", "profile.json", "--host", "web1"]);
    assert_code(&o, 0);
    assert_stdout_has(&o, "1 removed");
    assert!(f.path("secrets/rekeyed/db1/db.age").is_file());
    assert!(!f.path("secrets/rekeyed/web1/tls.age").exists());
}

#[test]
fn untracked_report_of_a_scoped_run_covers_only_its_files() {
    let f = Fleet::new();
    run_ok(Command::new("git").arg("init").arg("-q").arg(&f.root));
    let o = f.run(&["renc", "--profile", "profile.json", "--host", "db1"]);
    assert_code(&o, 0);
    let err = stderr(&o);
    assert!(err.contains("secrets/rekeyed/db1/db.age"), "{err}");
    assert!(err.contains("secrets/db.age"), "{err}");
    assert!(!err.contains("web1"), "{err}");
    assert!(!err.contains("api.age"), "{err}");
}
