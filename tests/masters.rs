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

// ---------------------------------------------------------------------
// rekey-masters

/// Sets the profile's identities and their declared recipients.
fn set_identities(f: &Fleet, ids: &[(&str, &str)], extra: &[&str]) {
    let mut p: serde_json::Value =
        serde_json::from_slice(&std::fs::read(f.path("profile.json")).unwrap()).unwrap();
    p["identities"] = ids.iter().map(|(i, _)| *i).collect::<Vec<_>>().into();
    let decl: serde_json::Map<String, serde_json::Value> = ids
        .iter()
        .map(|(i, r)| (i.to_string(), serde_json::json!([r])))
        .collect();
    p["identityRecipients"] = decl.into();
    p["extraRecipients"] = extra.to_vec().into();
    std::fs::write(f.path("profile.json"), p.to_string()).unwrap();
}

fn masters(f: &Fleet, args: &[&str]) -> std::process::Output {
    let mut a = vec!["rekey-masters", "--profile", "profile.json"];
    a.extend(args);
    f.run(&a)
}

fn master_files(f: &Fleet) -> Vec<PathBuf> {
    ["db", "api", "tls"]
        .iter()
        .map(|s| f.path(&format!("secrets/{s}.age")))
        .collect()
}

/// Go age with `identity`: Ok(plaintext) or Err(stderr).
fn go_age_decrypt(file: &std::path::Path, identity: &std::path::Path) -> Result<Vec<u8>, String> {
    let o = Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(identity)
        .arg(file)
        .output()
        .unwrap();
    if o.status.success() {
        Ok(o.stdout)
    } else {
        Err(String::from_utf8_lossy(&o.stderr).into_owned())
    }
}

#[test]
fn rotation_adds_an_admin_then_retires_the_old_key_and_go_age_agrees() {
    let f = Fleet::new();
    let admin2 = age_keygen(&f.path("keys/admin2.txt"));
    let backup = ssh_keygen(&f.path("keys/backup"), "");
    set_identities(
        &f,
        &[
            ("./keys/master.txt", &f.master),
            ("./keys/admin2.txt", &admin2),
        ],
        &[&backup],
    );
    // No record yet: every master file is unknown and listed, nothing changes.
    let before = tree(&f.root);
    let o = masters(&f, &["--dry-run"]);
    assert_code(&o, 0);
    for s in ["db", "api", "tls"] {
        assert_stdout_has(&o, &format!("rewrite secrets/{s}.age (not in the record"));
    }
    assert_stdout_has(&o, "dry run: 3 to rewrite, 0 current, 0 failing");
    assert_same_tree(&before, &tree(&f.root), "dry run");

    let o = masters(&f, &[]);
    assert_code(&o, 0);
    assert_stdout_has(&o, "3 rewritten, 0 unchanged, 0 failed");
    assert_stderr_has(&o, "nix run .#renc");
    for (file, s) in master_files(&f).iter().zip(["db", "api", "tls"]) {
        for id in ["keys/master.txt", "keys/admin2.txt", "keys/backup"] {
            assert_eq!(
                go_age_decrypt(file, &f.path(id)).unwrap(),
                f.secrets[s],
                "{} with {id}",
                file.display()
            );
        }
    }
    // Armored stays armored, binary stays binary.
    assert!(std::fs::read(f.path("secrets/api.age"))
        .unwrap()
        .starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----"));
    assert!(std::fs::read(f.path("secrets/db.age"))
        .unwrap()
        .starts_with(b"age-encryption.org/v1\n"));
    let record: serde_json::Value = serde_json::from_slice(
        &std::fs::read(f.path("secrets/rekeyed/.nixseal-masters.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(record["version"], 1);
    assert_eq!(record["files"].as_object().unwrap().len(), 3);

    // The old master key leaks: retire it.
    set_identities(&f, &[("./keys/admin2.txt", &admin2)], &[&backup]);
    let o = masters(&f, &["--dry-run"]);
    assert_code(&o, 0);
    assert_stdout_has(
        &o,
        &format!(
            "rewrite secrets/db.age (recipients changed; remove {})",
            f.master
        ),
    );
    assert_stdout_has(&o, "dry run: 3 to rewrite, 0 current");
    let o = masters(&f, &[]);
    assert_code(&o, 0);
    assert_stdout_has(&o, "3 rewritten, 0 unchanged, 0 failed");
    for (file, s) in master_files(&f).iter().zip(["db", "api", "tls"]) {
        assert_eq!(
            go_age_decrypt(file, &f.path("keys/admin2.txt")).unwrap(),
            f.secrets[s]
        );
        assert_eq!(
            go_age_decrypt(file, &f.path("keys/backup")).unwrap(),
            f.secrets[s]
        );
        let e = go_age_decrypt(file, &f.path("keys/master.txt")).unwrap_err();
        assert!(e.contains("no identity matched"), "{}: {e}", file.display());
    }

    // Nothing left to do: no identity is read. The identities do not exist
    // (or name a plugin that is not installed), and the run still succeeds.
    let stamp = stamped_files(&master_files(&f));
    std::fs::rename(f.path("keys/admin2.txt"), f.path("keys/admin2.moved")).unwrap();
    std::fs::write(
        f.path("keys/yubi.txt"),
        "AGE-PLUGIN-NIXSEALNOSUCH-1QYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGP5PKJNG\n",
    )
    .unwrap();
    let gone = f.path("keys/gone.txt");
    assert!(!gone.exists());
    for ids in [
        vec![("./keys/admin2.txt", admin2.as_str())],
        vec![("./keys/gone.txt", admin2.as_str())],
        vec![("./keys/yubi.txt", admin2.as_str())],
    ] {
        set_identities(&f, &ids, &[&backup]);
        let o = masters(&f, &[]);
        assert_code(&o, 0);
        assert_stdout_has(&o, "0 rewritten, 3 unchanged, 0 failed");
        assert_eq!(
            stamp,
            stamped_files(&master_files(&f)),
            "a no-op rewrote a file"
        );
    }
    std::fs::rename(f.path("keys/admin2.moved"), f.path("keys/admin2.txt")).unwrap();
    set_identities(&f, &[("./keys/admin2.txt", &admin2)], &[&backup]);

    // The hosts' copies follow with renc.
    let o = f.renc();
    assert_code(&o, 0);
    assert_stdout_has(&o, "4 rekeyed, 0 unchanged");
    f.assert_outputs_decrypt();
}

fn stamped_files(files: &[PathBuf]) -> Vec<(Vec<u8>, i64, i64)> {
    files
        .iter()
        .map(|p| {
            let m = std::fs::metadata(p).unwrap();
            (std::fs::read(p).unwrap(), m.mtime(), m.mtime_nsec())
        })
        .collect()
}

#[test]
fn an_undecryptable_master_file_is_named_and_left_intact_the_others_rewritten() {
    let mut f = Fleet::new();
    let stranger = age_keygen(&f.path("keys/stranger.txt"));
    age_encrypt(
        &f.path("secrets/alien.age"),
        b"not ours",
        &[&stranger],
        false,
    );
    f.secrets.insert("alien".into(), b"not ours".to_vec());
    f.uses.get_mut("db1").unwrap().push("alien".into());
    f.write_profile();
    let admin2 = age_keygen(&f.path("keys/admin2.txt"));
    set_identities(
        &f,
        &[
            ("./keys/master.txt", &f.master),
            ("./keys/admin2.txt", &admin2),
        ],
        &[],
    );
    let alien_before = std::fs::read(f.path("secrets/alien.age")).unwrap();
    // What a run killed between its temp file and the rename leaves behind.
    std::fs::write(
        f.path("secrets/.nixseal-tmp-AbC123"),
        b"age-encryption.org/v1\n",
    )
    .unwrap();
    let o = masters(&f, &[]);
    assert_code(&o, 1);
    assert_stderr_has(&o, "secrets/alien.age");
    assert_stderr_has(&o, "cannot decrypt master secret");
    assert_stderr_has(&o, "left as it was");
    assert_stdout_has(&o, "3 rewritten, 0 unchanged, 1 failed");
    assert_eq!(
        std::fs::read(f.path("secrets/alien.age")).unwrap(),
        alien_before
    );
    for (file, s) in master_files(&f).iter().zip(["db", "api", "tls"]) {
        assert_eq!(
            go_age_decrypt(file, &f.path("keys/admin2.txt")).unwrap(),
            f.secrets[s]
        );
    }
    // The failed file is still to do; the others are recorded.
    let o = masters(&f, &["--dry-run"]);
    assert_stdout_has(&o, "rewrite secrets/alien.age (not in the record");
    assert_stdout_has(&o, "dry run: 1 to rewrite, 3 current");
    // No temp file left next to it.
    let left: Vec<_> = std::fs::read_dir(f.path("secrets"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".nixseal-tmp"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn unknown_recipients_a_wrong_declaration_and_edits_are_handled() {
    let f = Fleet::new();
    let before = tree(&f.root);
    // The profile names the identity but not its public half.
    let o = masters(&f, &["--dry-run"]);
    assert_code(&o, 2);
    assert_stderr_has(&o, "keys/master.txt cannot be known without reading it");
    assert_stderr_has(&o, "identityRecipients");
    assert_stderr_has(&o, "age-keygen -y");
    assert_code(&masters(&f, &[]), 2);
    assert_same_tree(&before, &tree(&f.root), "undeclared recipient");
    // A declaration that is not the file's own key would lock it out.
    let other = age_keygen(&f.path("keys/other.txt"));
    set_identities(&f, &[("./keys/master.txt", &other)], &[]);
    let before = tree(&f.root);
    let o = masters(&f, &[]);
    assert_code(&o, 2);
    assert_stderr_has(&o, "identityRecipients of ");
    assert_stderr_has(&o, &f.master);
    assert_same_tree(&before, &tree(&f.root), "wrong declaration");
    // A declaration naming no identity of the profile is a profile error.
    let mut p: serde_json::Value =
        serde_json::from_slice(&std::fs::read(f.path("profile.json")).unwrap()).unwrap();
    p["identityRecipients"] = serde_json::json!({"./keys/nope.txt": [other]});
    std::fs::write(f.path("profile.json"), p.to_string()).unwrap();
    let o = masters(&f, &["--dry-run"]);
    assert_code(&o, 2);
    assert_stderr_has(&o, "identityRecipients entry \"./keys/nope.txt\"");

    // Rotated, then edited: edit records what it wrote, so nothing is to do.
    set_identities(&f, &[("./keys/master.txt", &f.master)], &[]);
    assert_code(&masters(&f, &[]), 0);
    let o = edit_stdin(&f, "secrets/db.age", b"edited", &[]);
    assert_code(&o, 0);
    let o = masters(&f, &["--dry-run"]);
    assert_stdout_has(&o, "dry run: 0 to rewrite, 3 current");
    // Replaced behind nixseal's back (Go age, to the master only): unknown.
    age_encrypt(&f.path("secrets/tls.age"), b"by hand", &[&f.master], false);
    let o = masters(&f, &["--dry-run"]);
    assert_stdout_has(
        &o,
        "rewrite secrets/tls.age (changed since it was recorded)",
    );
    assert_stdout_has(&o, "dry run: 1 to rewrite, 2 current");
    // The record is never followed through a symlink.
    let rec = f.path("secrets/rekeyed/.nixseal-masters.json");
    std::fs::rename(&rec, f.path("record.bak")).unwrap();
    std::os::unix::fs::symlink(f.path("record.bak"), &rec).unwrap();
    let o = masters(&f, &[]);
    assert_code(&o, 2);
    assert_stderr_has(&o, "is a symlink");
    // updatekeys is the same command.
    std::fs::remove_file(&rec).unwrap();
    let o = f.run(&["updatekeys", "--profile", "profile.json", "--dry-run"]);
    assert_code(&o, 0);
    assert_stdout_has(&o, "dry run: 3 to rewrite");
}

// ---------------------------------------------------------------------
// --json

/// The ```json block after `heading` in docs/json.md.
fn documented(heading: &str) -> serde_json::Value {
    let doc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/json.md"),
    )
    .unwrap();
    let at = doc
        .find(heading)
        .unwrap_or_else(|| panic!("{heading} in docs/json.md"));
    let start = at + doc[at..].find("```json\n").unwrap() + 8;
    let end = start + doc[start..].find("```").unwrap();
    serde_json::from_str(&doc[start..end]).expect("the example is JSON")
}

/// Same keys at every level (for arrays: their first elements).
fn assert_same_keys(doc: &serde_json::Value, real: &serde_json::Value, at: &str) {
    use serde_json::Value;
    match (doc, real) {
        (Value::Object(d), Value::Object(r)) => {
            let dk: Vec<_> = d.keys().collect();
            let rk: Vec<_> = r.keys().collect();
            assert_eq!(dk, rk, "keys at {at}");
            for k in d.keys() {
                assert_same_keys(&d[k], &r[k], &format!("{at}.{k}"));
            }
        }
        (Value::Array(d), Value::Array(r)) => {
            if let (Some(dd), Some(rr)) = (d.first(), r.first()) {
                assert_same_keys(dd, rr, &format!("{at}[0]"));
            }
        }
        _ => {}
    }
}

fn json_of(o: &std::process::Output) -> serde_json::Value {
    let text = stdout(o);
    assert_eq!(text.lines().count(), 1, "one line of JSON:\n{text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[test]
fn json_outputs_match_the_documented_schemas() {
    use nixseal::report::{CheckJson, DryRunJson, StatusJson};
    let mut f = Fleet::new();
    run_ok(Command::new("git").arg("init").arg("-q").arg(&f.root));
    // A generated secret, a host without a key yet, a left-over output.
    let gen = script(&f.path("gen.sh"), "printf generated");
    f.generators.insert("session".into(), gen);
    f.uses.get_mut("web1").unwrap().push("old".into());
    f.set_secret("old", b"old", false);
    f.write_profile();
    assert_code(&f.renc(), 0);
    f.uses.get_mut("web1").unwrap().retain(|s| s != "old");
    f.uses.get_mut("web1").unwrap().push("session".into());
    f.uses.insert("new".into(), vec!["db".into()]);
    f.hosts.insert("new".into(), String::new());
    f.set_secret("db", b"db-2", false);
    f.write_profile();

    // check
    let o = f.run(&["check", "--profile", "profile.json", "--json"]);
    assert_code(&o, 1);
    assert!(stderr(&o).is_empty(), "{}", stderr(&o));
    let real = json_of(&o);
    let doc = documented("### `check --json`");
    let _: CheckJson = serde_json::from_value(doc.clone()).expect("the example is a CheckJson");
    let parsed: CheckJson = serde_json::from_value(real.clone()).unwrap();
    assert_same_keys(&doc, &real, "check");
    assert_eq!(
        (parsed.version, parsed.command.as_str(), parsed.current),
        (1, "check", false)
    );
    let kinds: Vec<(&str, Option<&str>, Option<&str>)> = parsed
        .problems
        .iter()
        .map(|p| (p.kind.as_str(), p.host.as_deref(), p.secret.as_deref()))
        .collect();
    for want in [
        ("host", Some("new"), None),
        ("stale", Some("web1"), Some("db")),
        ("stale", Some("db1"), Some("db")),
        ("awaitsGeneration", Some("web1"), Some("session")),
        ("leftOver", Some("web1"), Some("old")),
        ("untracked", None, None),
    ] {
        assert!(kinds.contains(&want), "{want:?} in {kinds:?}");
    }
    assert!(parsed.problems[0]
        .message
        .contains("ssh-keyscan -t ed25519 HOST"));
    // Filters apply; a current scope is exit 0 and "current": true.
    let o = f.run(&[
        "check",
        "--profile",
        "profile.json",
        "--json",
        "--host",
        "web1",
        "--secret",
        "tls",
    ]);
    let untracked_only: CheckJson = serde_json::from_value(json_of(&o)).unwrap();
    assert!(
        untracked_only
            .problems
            .iter()
            .all(|p| p.kind == "untracked"),
        "{untracked_only:?}"
    );
    run_ok(
        Command::new("git")
            .arg("-C")
            .arg(&f.root)
            .args(["add", "-A"]),
    );
    let o = f.run(&[
        "check",
        "--profile",
        "profile.json",
        "--json",
        "--host",
        "web1",
        "--secret",
        "tls",
    ]);
    assert_code(&o, 0);
    let clean: CheckJson = serde_json::from_value(json_of(&o)).unwrap();
    assert!(clean.current && clean.problems.is_empty() && clean.outputs == 1);

    // renc --dry-run
    let before = tree(&f.root);
    let o = f.run(&["renc", "--profile", "profile.json", "--dry-run", "--json"]);
    assert_code(&o, 1); // host `new` is failing
    let real = json_of(&o);
    let doc = documented("### `renc --dry-run --json`");
    let _: DryRunJson = serde_json::from_value(doc.clone()).expect("the example is a DryRunJson");
    let parsed: DryRunJson = serde_json::from_value(real.clone()).unwrap();
    assert_same_keys(&doc, &real, "dry run");
    assert_eq!(parsed.command, "renc --dry-run");
    assert_eq!(parsed.generate.len(), 1);
    assert_eq!(parsed.generate[0].used_by, ["web1/session"]);
    assert_eq!(
        (
            parsed.counts.generate,
            parsed.counts.rekey,
            parsed.counts.remove,
            parsed.counts.failing,
            parsed.counts.current
        ),
        (1, 3, 1, 1, 2)
    );
    assert!(parsed
        .rekey
        .iter()
        .any(|r| r.secret == "session" && r.reason == "after generating its master file"));
    assert!(parsed.remove[0].path.ends_with("web1/old.age"));
    assert_eq!(parsed.failing[0].host.as_deref(), Some("new"));
    assert_same_tree(&before, &tree(&f.root), "dry run --json");
    // --json needs --dry-run.
    let o = f.run(&["renc", "--profile", "profile.json", "--json"]);
    assert_code(&o, 2);
    assert_same_tree(&before, &tree(&f.root), "renc --json");

    // status
    let m = f.path("manifest-web1.json");
    std::fs::write(
        &m,
        serde_json::json!({"secrets": [
            {"name": "db", "source": "/nix/store/00000000000000000000000000000000-web1-db.age"}
        ]})
        .to_string(),
    )
    .unwrap();
    let o = f.run(&[
        "status",
        "--profile",
        "profile.json",
        "--manifest",
        "web1=manifest-web1.json",
        "--json",
    ]);
    assert_code(&o, 1);
    let real = json_of(&o);
    let doc = documented("### `status --json`");
    let _: StatusJson = serde_json::from_value(doc.clone()).expect("the example is a StatusJson");
    let parsed: StatusJson = serde_json::from_value(real.clone()).unwrap();
    assert_same_keys(&doc, &real, "status");
    assert_eq!(parsed.redeploy, ["web1"]);
    let db = parsed.hosts[0]
        .secrets
        .iter()
        .find(|s| s.name == "db")
        .unwrap();
    assert_eq!(db.state, "stale");
    assert!(db.expected.as_deref().unwrap().ends_with("-web1-db.age"));
    let states: Vec<&str> = parsed.hosts[0]
        .secrets
        .iter()
        .map(|s| s.state.as_str())
        .collect();
    assert!(
        states.contains(&"notDeployed") && states.contains(&"notRekeyed"),
        "{states:?}"
    );
    // Unknown fields are refused by the schema types.
    let mut extra = real.clone();
    extra["surprise"] = 1.into();
    assert!(serde_json::from_value::<StatusJson>(extra).is_err());
    // The human output is unchanged.
    let o = f.run(&[
        "status",
        "--profile",
        "profile.json",
        "--manifest",
        "web1=manifest-web1.json",
    ]);
    assert_stdout_has(&o, "web1: runs stale secrets; redeploy web1");
}

// ---------------------------------------------------------------------
// a new host, one command away

#[test]
fn a_new_host_without_a_usable_key_is_named_the_rest_served_then_one_renc_adds_it() {
    let f = Fleet::new();
    assert_code(&f.renc(), 0);
    let before = stamped(&f);
    std::thread::sleep(std::time::Duration::from_millis(20));
    // Three new hosts: no key yet (null / ""), and a path where the key
    // line belongs (a .pub file the profile cannot carry).
    let mut p: serde_json::Value =
        serde_json::from_slice(&std::fs::read(f.path("profile.json")).unwrap()).unwrap();
    for (h, key) in [
        ("new1", serde_json::Value::Null),
        ("new2", "".into()),
        ("new3", "./keys/new3.pub".into()),
    ] {
        p["hosts"][h] =
            serde_json::json!({"hostPubkey": key, "secrets": {"db": {"file": "./secrets/db.age"}}});
    }
    std::fs::write(f.path("profile.json"), p.to_string()).unwrap();
    let o = f.renc();
    // Exit 1 (a host could not be served: "failed", docs/design.md); the
    // identity was not needed for the others, nothing of theirs changed.
    assert_code(&o, 1);
    for h in ["new1", "new2"] {
        assert_stderr_has(&o, &format!("{h}: hostPubkey is not set"));
    }
    assert_stderr_has(
        &o,
        "new3: hostPubkey \"./keys/new3.pub\" is not a valid ssh-ed25519 public key",
    );
    assert_stderr_has(&o, "ssh-keyscan -t ed25519 HOST");
    assert_stdout_has(&o, "0 rekeyed, 4 unchanged, 0 removed, 3 failed");
    assert!(stamped(&f) == before, "the other hosts' files changed");
    // Scoped to the existing hosts: nothing is failing.
    let o = f.run(&[
        "renc",
        "--profile",
        "profile.json",
        "--host",
        "web1",
        "--host",
        "db1",
    ]);
    assert_code(&o, 0);
    // The key arrives (what `ssh-keyscan -t ed25519 new1` prints): one renc
    // serves it and leaves every other file as it was.
    let key = ssh_keygen(&f.path("keys/new1"), "");
    p["hosts"]["new1"]["hostPubkey"] = key.into();
    p["hosts"].as_object_mut().unwrap().remove("new2");
    p["hosts"].as_object_mut().unwrap().remove("new3");
    std::fs::write(f.path("profile.json"), p.to_string()).unwrap();
    let o = f.renc();
    assert_code(&o, 0);
    assert_stdout_has(&o, "1 rekeyed, 4 unchanged, 0 removed, 0 failed");
    assert_eq!(
        age_decrypt(&f.output("new1", "db"), &f.path("keys/new1")),
        f.secrets["db"]
    );
    let after = stamped(&f);
    for (path, b) in &before {
        assert_eq!(&after[path], b, "{}", path.display());
    }
}

#[test]
fn generated_files_are_recorded_and_an_edit_under_a_wrong_declaration_is_not() {
    let mut f = Fleet::new();
    let gen = script(&f.path("gen.sh"), "printf generated");
    f.generators.insert("session".into(), gen);
    f.uses.get_mut("db1").unwrap().push("session".into());
    f.write_profile();
    set_identities(&f, &[("./keys/master.txt", &f.master)], &[]);
    assert_code(&f.renc(), 0);
    let o = masters(&f, &["--dry-run"]);
    assert_stdout_has(&o, "dry run: 3 to rewrite, 1 current");
    assert!(
        !stdout(&o).contains("rewrite secrets/session.age"),
        "{}",
        stdout(&o)
    );
    assert_code(&masters(&f, &[]), 0);
    // A declaration that is not the identity's key: the edit still writes
    // (to the identity file's own key), but the record does not vouch for it.
    let other = age_keygen(&f.path("keys/other.txt"));
    set_identities(&f, &[("./keys/master.txt", &other)], &[]);
    assert_code(&edit_stdin(&f, "secrets/db.age", b"edited", &[]), 0);
    set_identities(&f, &[("./keys/master.txt", &f.master)], &[]);
    let o = masters(&f, &["--dry-run"]);
    assert_stdout_has(&o, "rewrite secrets/db.age (not in the record");
    assert_stdout_has(&o, "dry run: 1 to rewrite, 3 current");
}

#[test]
fn a_plugin_master_identity_is_asked_once_per_file_and_never_on_a_no_op() {
    let f = Fleet::new();
    let (plugin, with_plugin) = plugin_identity(&f);
    // The master files are encrypted (by Go age) to the plugin only.
    encrypt_masters_to(&f, &plugin, &with_plugin);
    let admin2 = age_keygen(&f.path("keys/admin2.txt"));
    set_identities(
        &f,
        &[
            ("./keys/plugin.txt", &plugin),
            ("./keys/admin2.txt", &admin2),
        ],
        &[],
    );
    let log = f.path("unwraps.log");
    let run = |path: &str| {
        Command::new(nixseal_bin())
            .current_dir(&f.root)
            .env("PATH", path)
            .env("NIXSEAL_TEST_PLUGIN_LOG", &log)
            .args(["rekey-masters", "--profile", "profile.json"])
            .output()
            .unwrap()
    };
    let o = run(&with_plugin);
    assert_code(&o, 0);
    assert_stdout_has(&o, "3 rewritten, 0 unchanged, 0 failed");
    // One plugin decryption per master file.
    assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 3);
    for (file, s) in master_files(&f).iter().zip(["db", "api", "tls"]) {
        assert_eq!(
            go_age_decrypt(file, &f.path("keys/admin2.txt")).unwrap(),
            f.secrets[s]
        );
    }
    // Nothing to do: the plugin is not even on PATH, and is never called.
    let o = run("/usr/bin:/bin");
    assert_code(&o, 0);
    assert_stdout_has(&o, "0 rewritten, 3 unchanged, 0 failed");
    assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 3);
    // The plugin key is retired: the admin key decrypts, without the plugin.
    set_identities(&f, &[("./keys/admin2.txt", &admin2)], &[]);
    let o = run("/usr/bin:/bin");
    assert_code(&o, 0);
    assert_stdout_has(&o, "3 rewritten");
    for file in master_files(&f) {
        let e = Command::new("age")
            .env("PATH", &with_plugin)
            .arg("-d")
            .arg("-i")
            .arg(f.path("keys/plugin.txt"))
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            !e.status.success(),
            "the retired plugin key still opens {}",
            file.display()
        );
    }
}

#[test]
fn a_passphrase_protected_identity_is_asked_once_per_run_through_a_pipe() {
    let f = Fleet::new();
    age_passphrase_protect(&f, "keys/master.txt", "keys/master.age", "correct horse");
    std::fs::remove_file(f.path("keys/master.txt")).unwrap();
    let backup = age_keygen(&f.path("keys/backup.txt"));
    set_identities(&f, &[("./keys/master.age", &f.master)], &[&backup]);
    // The passphrase comes from a pipe, which can be read once: a second
    // prompt would get nothing and fail.
    let rotate = || {
        Command::new("bash")
            .current_dir(&f.root)
            .arg("-c")
            .arg(r#""$0" rekey-masters --profile profile.json --passphrase-file /dev/fd/3 3< <(printf '%s\n' "correct horse")"#)
            .arg(nixseal_bin())
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    let o = rotate();
    assert_code(&o, 0);
    assert_stdout_has(&o, "3 rewritten, 0 unchanged, 0 failed");
    assert!(!stdout(&o).contains("horse") && !stderr(&o).contains("horse"));
    for (file, s) in master_files(&f).iter().zip(["db", "api", "tls"]) {
        assert_eq!(
            go_age_decrypt(file, &f.path("keys/backup.txt")).unwrap(),
            f.secrets[s]
        );
    }
    // A declaration that is not the key inside the protected file is caught
    // after the passphrase opens it, before anything is written.
    let other = age_keygen(&f.path("keys/other.txt"));
    set_identities(&f, &[("./keys/master.age", &other)], &[&backup]);
    let before = tree(&f.root);
    let o = rotate();
    assert_code(&o, 2);
    assert_stderr_has(&o, "keys/master.age declares");
    assert_same_tree(&before, &tree(&f.root), "wrong declaration");
}
