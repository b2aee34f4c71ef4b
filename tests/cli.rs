//! The `nixseal` binary as operators run it: renc, check and edit, with real
//! keys and ciphertexts from Go `age`, `age-keygen` and `ssh-keygen`.

mod support;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};

use support::*;

#[test]
fn renc_rekeys_go_age_sources_so_go_age_decrypts_them_with_host_keys() {
    let mut f = Fleet::new();
    // Several recipients (the master plus another key), binary.
    let other = age_keygen(&f.path("keys/other.txt"));
    age_encrypt(
        &f.path("secrets/multi.age"),
        b"\0binary\xff",
        &[&other, &f.master],
        false,
    );
    f.secrets.insert("multi".into(), b"\0binary\xff".to_vec());
    f.uses.get_mut("db1").unwrap().push("multi".into());
    f.write_profile();

    let o = f.renc();
    assert_code(&o, 0);
    assert_stdout_has(&o, "5 rekeyed, 0 unchanged, 0 removed, 0 failed");
    f.assert_outputs_decrypt();
    // Outputs are binary age to the host key: another host's key cannot open them.
    let wrong = Command::new("age")
        .args(["-d", "-i"])
        .arg(f.path("keys/db1"))
        .arg(f.output("web1", "api"))
        .output()
        .unwrap();
    assert!(!wrong.status.success());
    assert!(std::fs::read(f.output("web1", "api"))
        .unwrap()
        .starts_with(b"age-encryption.org/v1\n"));
    assert_code(&f.check(), 0);
}

#[test]
fn noop_renc_reads_no_identity_and_changes_nothing() {
    let f = Fleet::new();
    assert_code(&f.renc(), 0);
    let before = f.snapshot();
    let mtimes: Vec<i64> = before
        .keys()
        .map(|p| std::fs::metadata(p).unwrap().mtime_nsec())
        .collect();
    // The identity is gone: a no-op run must not need it.
    std::fs::remove_file(f.path("keys/master.txt")).unwrap();
    let o = f.renc();
    assert_code(&o, 0);
    assert_stdout_has(&o, "0 rekeyed, 4 unchanged, 0 removed, 0 failed");
    assert!(f.snapshot() == before, "outputs changed");
    let after: Vec<i64> = before
        .keys()
        .map(|p| std::fs::metadata(p).unwrap().mtime_nsec())
        .collect();
    assert_eq!(mtimes, after, "no file rewritten");
}

#[test]
fn changed_source_rewrites_exactly_that_secrets_outputs() {
    let mut f = Fleet::new();
    assert_code(&f.renc(), 0);
    let before = f.snapshot();
    f.set_secret("db", b"new password", false);
    let o = f.renc();
    assert_code(&o, 0);
    assert_stdout_has(&o, "2 rekeyed, 2 unchanged");
    let after = f.snapshot();
    for (p, bytes) in &before {
        let name = p.file_name().unwrap().to_string_lossy();
        if name == "db.age" || name == ".nixseal-rekey.json" {
            assert_ne!(&after[p], bytes, "{} must change", p.display());
        } else {
            assert_eq!(&after[p], bytes, "{} must be byte-identical", p.display());
        }
    }
    f.assert_outputs_decrypt();
}

#[test]
fn changed_host_key_rewrites_that_hosts_outputs_only() {
    let mut f = Fleet::new();
    assert_code(&f.renc(), 0);
    let before = f.snapshot();
    f.add_host("db1"); // a new key for db1
    f.write_profile();
    let o = f.renc();
    assert_code(&o, 0);
    assert_stdout_has(&o, "1 rekeyed, 3 unchanged");
    let after = f.snapshot();
    for (p, bytes) in &before {
        let in_db1 = p.parent().unwrap().ends_with("db1");
        assert_eq!(&after[p] == bytes, !in_db1, "{}", p.display());
    }
    f.assert_outputs_decrypt();
}

#[test]
fn secrets_and_hosts_that_leave_the_profile_lose_their_outputs() {
    let mut f = Fleet::new();
    assert_code(&f.renc(), 0);
    // A directory nixseal did not make is never touched.
    std::fs::create_dir_all(f.path("secrets/rekeyed/notes")).unwrap();
    std::fs::write(f.path("secrets/rekeyed/notes/readme.txt"), "keep").unwrap();
    f.uses.get_mut("web1").unwrap().retain(|s| s != "api");
    f.uses.remove("db1");
    f.write_profile();
    let o = f.check();
    assert_code(&o, 1);
    assert_stdout_has(&o, "db1/db.age: left over");
    let o = f.renc();
    assert_code(&o, 0);
    assert_stdout_has(&o, "0 rekeyed, 2 unchanged, 4 removed, 0 failed");
    assert!(!f.output("web1", "api").exists());
    assert!(!f.path("secrets/rekeyed/db1").exists());
    assert!(f.path("secrets/rekeyed/notes/readme.txt").exists());
    let cache =
        std::fs::read_to_string(f.path("secrets/rekeyed/web1/.nixseal-rekey.json")).unwrap();
    assert!(!cache.contains("\"api\""), "{cache}");
    assert_code(&f.check(), 0);
}

#[test]
fn a_failing_secret_is_named_and_the_rest_still_lands_with_a_true_cache() {
    let mut f = Fleet::new();
    assert_code(&f.renc(), 0);
    // db changes (good), api gets truncated (bad).
    f.set_secret("db", b"rotated", false);
    let api = std::fs::read(f.path("secrets/api.age")).unwrap();
    std::fs::write(f.path("secrets/api.age"), &api[..api.len() / 2]).unwrap();
    let api_out_before = std::fs::read(f.output("web1", "api")).unwrap();
    let o = f.renc();
    assert_code(&o, 1);
    let err = stderr(&o);
    assert!(
        err.contains("web1/api") && err.contains("secrets/api.age"),
        "{err}"
    );
    assert_stdout_has(&o, "2 rekeyed, 1 unchanged, 0 removed, 1 failed");
    assert_eq!(
        std::fs::read(f.output("web1", "api")).unwrap(),
        api_out_before,
        "failed output untouched"
    );
    assert_eq!(
        age_decrypt(&f.output("db1", "db"), &f.path("keys/db1")),
        b"rotated"
    );
    // check now names exactly the one stale pair.
    let o = f.check();
    assert_code(&o, 1);
    let out = stdout(&o);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(
        out.contains("web1/api: stale: the master secret changed"),
        "{out}"
    );
    assert!(out.contains("nix run .#renc"), "{out}");
}

#[test]
fn output_modified_behind_nixseals_back_is_stale_and_rewritten() {
    let f = Fleet::new();
    assert_code(&f.renc(), 0);
    std::fs::write(f.output("web1", "tls"), b"").unwrap();
    let o = f.check();
    assert_code(&o, 1);
    assert_stdout_has(&o, "web1/tls: stale: the rekeyed file was modified");
    assert_code(&f.renc(), 0);
    f.assert_outputs_decrypt();
}

#[test]
fn dry_run_changes_nothing_and_needs_no_identity() {
    let f = Fleet::new();
    std::fs::remove_file(f.path("keys/master.txt")).unwrap();
    let o = f.run(&["renc", "--profile", "profile.json", "--dry-run"]);
    assert_code(&o, 0);
    assert_stdout_has(&o, "rekey  web1/db (missing)");
    assert_stdout_has(&o, "4 to rekey");
    assert!(!f.path("secrets/rekeyed").exists());
}

/// Each case: a change to a fresh, rekeyed fleet; the exit code and a piece of
/// the message; and nothing under rekeyedDir may change.
#[test]
fn bad_input_is_refused_with_a_clear_error_and_nothing_changes() {
    type Setup = fn(&Fleet);
    let cases: Vec<(&str, Setup, i32, &str)> = vec![
        ("profile not json", |f| std::fs::write(f.path("profile.json"), "{oops").unwrap(), 2, "profile.json is not a valid nixseal profile"),
        ("unknown version", |f| std::fs::write(f.path("profile.json"), r#"{"version":7,"rekeyedDir":"x"}"#).unwrap(), 2, "has version 7"),
        ("unknown field", |f| {
            let p = f.profile_json().replacen("\"version\":1", "\"version\":1,\"colour\":\"red\"", 1);
            std::fs::write(f.path("profile.json"), p).unwrap()
        }, 2, "unknown field `colour`"),
        ("host name with slash", |f| rename_host(f, "a/b"), 2, "host name \"a/b\" contains `/`"),
        ("host name with dotdot", |f| rename_host(f, ".."), 2, "host name \"..\""),
        ("empty host name", |f| rename_host(f, ""), 2, "host name is empty"),
        ("leading dot", |f| rename_host(f, ".web"), 2, "starts with `.`"),
        ("secret name with NUL", |f| {
            let p = f.profile_json().replace("\"api\":", "\"a\\u0000pi\":");
            std::fs::write(f.path("profile.json"), p).unwrap()
        }, 2, "contains a NUL byte"),
        // A bad host key blocks that host only (exit 1, the rest is served).
        ("rsa host key", |f| {
            let p = f.profile_json().replace(&f.hosts["web1"], "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 web1");
            std::fs::write(f.path("profile.json"), p).unwrap()
        }, 1, "web1: hostPubkey is an ssh-rsa key"),
        ("malformed host key", |f| {
            let p = f.profile_json().replace(&f.hosts["web1"], "ssh-ed25519 AAAAnotbase64!!");
            std::fs::write(f.path("profile.json"), p).unwrap()
        }, 1, "web1: hostPubkey \"ssh-ed25519 AAAAnotbase64!!\" is not a valid ssh-ed25519 public key"),
        ("missing source", |f| {
            std::fs::remove_file(f.path("secrets/api.age")).unwrap();
        }, 1, "web1/api: cannot read master secret secrets/api.age"),
        ("source not age", |f| {
            std::fs::write(f.path("secrets/api.age"), "plain text secret").unwrap();
        }, 1, "web1/api: cannot decrypt master secret secrets/api.age: not an age file"),
        ("corrupted source", |f| {
            let mut b = std::fs::read(f.path("secrets/db.age")).unwrap();
            let n = b.len();
            b[n - 3] ^= 0x40;
            std::fs::write(f.path("secrets/db.age"), b).unwrap();
        }, 1, "db1/db: cannot decrypt master secret secrets/db.age: the file is corrupted"),
        ("source for another identity", |f| {
            let other = age_keygen(&f.path("keys/other.txt"));
            age_encrypt(&f.path("secrets/db.age"), b"x", &[&other], false);
        }, 1, "none of the given identities can decrypt it"),
        ("missing identity", |f| {
            touch_master(f);
            std::fs::remove_file(f.path("keys/master.txt")).unwrap();
        }, 2, "cannot read identity file keys/master.txt"),
        ("identity not a key", |f| {
            touch_master(f);
            std::fs::write(f.path("keys/master.txt"), "hello\n").unwrap();
        }, 2, "identity file keys/master.txt is not usable"),
        ("rekeyedDir is a file", |f| {
            std::fs::remove_dir_all(f.path("secrets/rekeyed")).unwrap();
            std::fs::write(f.path("secrets/rekeyed"), "x").unwrap();
        }, 2, "rekeyedDir secrets/rekeyed is a regular file"),
        ("symlink at an output", |f| {
            std::fs::write(f.path("victim"), "do not touch").unwrap();
            std::fs::remove_file(f.output("web1", "db")).unwrap();
            std::os::unix::fs::symlink(f.path("victim"), f.output("web1", "db")).unwrap();
        }, 1, "web1/db: "),
        ("symlinked host dir", |f| {
            std::fs::create_dir(f.path("elsewhere")).unwrap();
            std::fs::remove_dir_all(f.path("secrets/rekeyed/db1")).unwrap();
            std::os::unix::fs::symlink(f.path("elsewhere"), f.path("secrets/rekeyed/db1")).unwrap();
        }, 1, "db1: secrets/rekeyed/db1 is a symlink; a host directory must be a plain directory"),
    ];
    for (what, setup, code, want) in cases {
        let f = Fleet::new();
        assert_code(&f.renc(), 0);
        setup(&f);
        let before = f.snapshot();
        let victim = std::fs::read(f.path("victim")).ok();
        let o = f.renc();
        assert_eq!(o.status.code(), Some(code), "{what}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains(want), "{what}: want {want:?} in:\n{err}");
        assert!(!err.contains("panicked"), "{what}: {err}");
        assert!(f.snapshot() == before, "{what}: rekeyed outputs changed");
        assert_eq!(
            std::fs::read(f.path("victim")).ok(),
            victim,
            "{what}: symlink followed"
        );
        assert!(
            f.path("elsewhere")
                .read_dir()
                .map(|mut d| d.next().is_none())
                .unwrap_or(true),
            "{what}: wrote through a symlinked dir"
        );
    }
}

fn rename_host(f: &Fleet, to: &str) {
    let p = f.profile_json().replace("\"web1\":", &format!("{:?}:", to));
    std::fs::write(f.path("profile.json"), p).unwrap();
}

/// Makes one output stale so that renc needs the identity.
fn touch_master(f: &Fleet) {
    age_encrypt(&f.path("secrets/tls.age"), b"new tls", &[&f.master], false);
}

#[test]
fn unwritable_rekeyed_dir_fails_cleanly() {
    let f = Fleet::new();
    assert_code(&f.renc(), 0);
    touch_master(&f);
    let before = f.snapshot();
    // As root, only a read-only mount makes a directory unwritable.
    let o = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c"])
        .arg(r#"mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && cd "$2" && exec "$3" renc --profile profile.json"#)
        .arg("sh")
        .arg(f.path("secrets/rekeyed"))
        .arg(f.dir.path())
        .arg(nixseal_bin())
        .output()
        .unwrap();
    assert_code(&o, 1);
    assert_stderr_has(&o, "web1: cannot write secrets/rekeyed/web1/tls.age");
    assert_stderr_has(&o, "Read-only file system");
    assert_stderr_has(&o, "none of this host's files were changed");
    assert!(f.snapshot() == before, "outputs changed");
}

#[test]
fn passphrase_protected_age_identity_from_go_age_p() {
    let mut f = Fleet::new();
    age_passphrase_protect(&f, "keys/master.txt", "keys/master.age", "correct horse");
    std::fs::remove_file(f.path("keys/master.txt")).unwrap();
    f.identities = vec!["./keys/master.age".into()];
    f.write_profile();

    // Without a terminal or a passphrase file: a clear error, nothing written.
    let o = f.renc();
    assert_code(&o, 2);
    assert_stderr_has(
        &o,
        "keys/master.age is passphrase-protected and no passphrase was given",
    );
    assert!(!f.path("secrets/rekeyed").exists());

    // A wrong passphrase through /dev/fd/3.
    let sh = |pass: &str| {
        Command::new("bash")
            .current_dir(f.dir.path())
            .arg("-c")
            .arg(r#""$0" renc --profile profile.json --passphrase-file /dev/fd/3 3<<<"$1""#)
            .arg(nixseal_bin())
            .arg(pass)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let o = sh("wrong horse");
    assert_code(&o, 2);
    assert_stderr_has(&o, "wrong passphrase for identity file keys/master.age");
    assert!(!f.path("secrets/rekeyed").exists());

    let o = sh("correct horse");
    assert_code(&o, 0);
    f.assert_outputs_decrypt();
    // The passphrase never shows up in output.
    assert!(!stdout(&o).contains("horse") && !stderr(&o).contains("horse"));
}

#[test]
fn ssh_ed25519_master_identity_with_passphrase() {
    let mut f = Fleet::new();
    let pubkey = ssh_keygen(&f.path("keys/master_ssh"), "s3cret pass");
    for (name, pt) in f.secrets.clone() {
        age_encrypt(
            &f.path(&format!("secrets/{name}.age")),
            &pt,
            &[&pubkey],
            false,
        );
    }
    f.identities = vec!["./keys/master_ssh".into()];
    f.write_profile();
    std::fs::write(f.path("pass"), "s3cret pass\n").unwrap();
    let o = f.run(&[
        "renc",
        "--profile",
        "profile.json",
        "--passphrase-file",
        "pass",
    ]);
    assert_code(&o, 0);
    f.assert_outputs_decrypt();
    std::fs::write(f.path("pass"), "nope\n").unwrap();
    age_encrypt(&f.path("secrets/db.age"), b"z", &[&pubkey], false);
    let o = f.run(&[
        "renc",
        "--profile",
        "profile.json",
        "--passphrase-file",
        "pass",
    ]);
    assert_code(&o, 2);
    assert_stderr_has(&o, "wrong passphrase for identity file keys/master_ssh");
}

#[test]
fn several_identities_any_may_decrypt_and_identity_flag_overrides_profile() {
    let f = Fleet::new();
    let other = age_keygen(&f.path("keys/other.txt"));
    age_encrypt(&f.path("secrets/api.age"), b"api-token", &[&other], true);
    // Profile's identity alone cannot open api.
    let o = f.renc();
    assert_code(&o, 1);
    assert_stderr_has(&o, "web1/api");
    let o = f.run(&[
        "renc",
        "--profile",
        "profile.json",
        "-i",
        "keys/master.txt",
        "-i",
        "keys/other.txt",
    ]);
    assert_code(&o, 0);
    f.assert_outputs_decrypt();
}

#[test]
fn plugin_master_identity_through_age_plugin_protocol() {
    let f = Fleet::new();
    let (recipient, path) = plugin_identity(&f);
    encrypt_masters_to(&f, &recipient, &path);
    let log = f.path("unwraps.log");
    let renc_with_plugin = |path: &str| {
        Command::new(nixseal_bin())
            .current_dir(f.dir.path())
            .env("PATH", path)
            .env("NIXSEAL_TEST_PLUGIN_LOG", &log)
            .args(["renc", "--profile", "profile.json", "-i", "keys/plugin.txt"])
            .output()
            .unwrap()
    };
    let o = renc_with_plugin(&path);
    assert_code(&o, 0);
    f.assert_outputs_decrypt();
    // 3 secrets, 4 (host, secret) pairs: each master secret decrypted once.
    let unwraps = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        unwraps.lines().count(),
        3,
        "one plugin decryption per master secret"
    );
    // A no-op run does not call the plugin at all.
    let o = renc_with_plugin(&path);
    assert_code(&o, 0);
    assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 3);
    // Without the plugin on PATH: a clear error naming the file.
    age_encrypt(&f.path("secrets/db.age"), b"x", &[&f.master], false);
    let o = renc_with_plugin("/usr/bin:/bin");
    assert_ne!(o.status.code(), Some(0));
    assert_stderr_has(&o, "keys/plugin.txt");
}

/// A plugin's public question (age's `request-public`) is asked on the
/// terminal and the answer is shown as it is typed: it is not a secret, and
/// hiding it (as a passphrase is) would only make typos invisible.
#[test]
fn plugin_public_questions_echo_the_answer() {
    let f = Fleet::new();
    assert_code(&f.renc(), 0);
    let (recipient, path) = plugin_identity(&f);
    let mut child = Command::new("age")
        .env("PATH", &path)
        .args(["-r", &recipient, "-o"])
        .arg(f.path("secrets/db.age"))
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"from the plugin")
        .unwrap();
    assert!(child.wait().unwrap().success());
    let o = Command::new("python3")
        .current_dir(f.dir.path())
        .env("PATH", &path)
        .env("NIXSEAL_TEST_PLUGIN_ASK", "Which slot")
        .args([WITH_TTY, "--show", "visible", "--"])
        .arg(nixseal_bin())
        .args(["renc", "--profile", "profile.json", "-i", "keys/plugin.txt"])
        .output()
        .unwrap();
    let shown = stdout(&o);
    assert_code(&o, 0);
    assert!(
        shown.contains("Which slot: visible"),
        "the answer is echoed after the question:\n{shown}"
    );
    assert_eq!(
        age_decrypt(&f.output("web1", "db"), &f.path("keys/web1")),
        b"from the plugin"
    );
}

#[test]
fn untracked_outputs_and_sources_are_warned_about_with_the_git_add_to_run() {
    let f = Fleet::new();
    let git = |args: &[&str]| run_ok(Command::new("git").current_dir(f.dir.path()).args(args));
    git(&["init", "-q"]);
    git(&[
        "add",
        "secrets/db.age",
        "secrets/api.age",
        "secrets/tls.age",
    ]);
    let o = f.renc();
    assert_code(&o, 0);
    let err = stderr(&o);
    assert!(err.contains("not tracked by git"), "{err}");
    assert!(
        err.contains("git add secrets/rekeyed/db1/.nixseal-rekey.json"),
        "{err}"
    );
    assert!(err.contains("secrets/rekeyed/db1/db.age"), "{err}");
    assert!(!err.contains("git add secrets/api.age"), "{err}");
    git(&["add", "secrets/rekeyed"]);
    let o = f.renc();
    assert!(!stderr(&o).contains("not tracked"), "{}", stderr(&o));
}

/// A fleet whose files are all untracked gets a warning of bounded length:
/// the first files by name, how many more, and one `git add` of the
/// rekeyed directory rather than a command line per file.
#[test]
fn a_long_untracked_list_is_cut_and_the_git_add_names_the_directory() {
    let mut f = Fleet::new();
    for i in 0..10 {
        let h = format!("h{i}");
        f.add_host(&h);
        f.uses.insert(h, vec!["db".into(), "api".into()]);
    }
    f.write_profile();
    run_ok(
        Command::new("git")
            .current_dir(f.dir.path())
            .args(["init", "-q"]),
    );
    let o = f.renc();
    assert_code(&o, 0);
    let err = stderr(&o);
    // 24 outputs, 12 caches, 3 sources.
    assert!(err.contains("39 file(s) are not tracked by git"), "{err}");
    assert!(err.contains("… and 19 more"), "{err}");
    assert!(err.lines().count() < 30, "{err}");
    assert!(
        err.contains("run: git add secrets/api.age secrets/db.age secrets/rekeyed secrets/tls.age"),
        "{err}"
    );
}

// ---- edit ----

#[test]
fn edit_from_stdin_creates_updates_and_skips_unchanged() {
    let mut f = Fleet::new();
    let extra = age_keygen(&f.path("keys/backup.txt"));
    f.extra_recipients = vec![extra];
    f.write_profile();

    let o = edit_stdin(&f, "secrets/new.age", b"brand new", &[]);
    assert_code(&o, 0);
    assert_eq!(
        age_decrypt(&f.path("secrets/new.age"), &f.path("keys/master.txt")),
        b"brand new"
    );
    assert_eq!(
        age_decrypt(&f.path("secrets/new.age"), &f.path("keys/backup.txt")),
        b"brand new"
    );

    let ino = std::fs::metadata(f.path("secrets/new.age")).unwrap().ino();
    let o = edit_stdin(&f, "secrets/new.age", b"brand new", &[]);
    assert_code(&o, 0);
    assert_stderr_has(&o, "unchanged");
    assert_eq!(
        std::fs::metadata(f.path("secrets/new.age")).unwrap().ino(),
        ino,
        "not rewritten"
    );

    // Armored sources stay armored.
    let o = edit_stdin(&f, "secrets/api.age", b"rotated token", &[]);
    assert_code(&o, 0);
    let ct = std::fs::read(f.path("secrets/api.age")).unwrap();
    assert!(ct.starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----"));
    assert_eq!(
        age_decrypt(&f.path("secrets/api.age"), &f.path("keys/backup.txt")),
        b"rotated token"
    );
    // And renc picks exactly that change up.
    assert_code(&f.renc(), 0);
    assert_eq!(
        age_decrypt(&f.output("web1", "api"), &f.path("keys/web1")),
        b"rotated token"
    );
}

#[test]
fn edit_with_recipient_only_and_bad_recipients() {
    let f = Fleet::new();
    let o = Command::new(nixseal_bin())
        .current_dir(f.dir.path())
        .args(["edit", "secrets/x.age", "-r", &f.master])
        .stdin(Stdio::piped())
        .output()
        .unwrap();
    // Empty stdin for a new file: refused, nothing created.
    assert_code(&o, 2);
    assert_stderr_has(
        &o,
        "the new content is empty (did the command feeding stdin fail?)",
    );
    assert!(!f.path("secrets/x.age").exists());
    let o = Command::new(nixseal_bin())
        .current_dir(f.dir.path())
        .args(["edit", "secrets/x.age", "-r", "age1notarecipient"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_code(&o, 2);
    assert_stderr_has(&o, "recipient \"age1notarecipient\" is not usable");
    // An existing file needs an identity to be opened.
    let o = Command::new(nixseal_bin())
        .current_dir(f.dir.path())
        .args(["edit", "secrets/db.age", "-r", &f.master])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_code(&o, 2);
    assert_stderr_has(&o, "secrets/db.age exists and must be decrypted first");
}

/// Runs `nixseal edit` on a pseudo-terminal (so it uses $EDITOR) via script(1).
fn edit_with_editor(f: &Fleet, file: &str, editor_script: &str) -> std::process::Output {
    let editor = f.path("editor.sh");
    std::fs::write(&editor, format!("#!/bin/sh\n{editor_script}\n")).unwrap();
    std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    Command::new("script")
        .current_dir(f.dir.path())
        .env("EDITOR", &editor)
        .args(["-qec"])
        .arg(format!(
            "{} edit {file} --profile profile.json",
            nixseal_bin().display()
        ))
        .arg("/dev/null")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn edit_with_editor_uses_a_private_memory_backed_temp_file_and_cleans_up() {
    let f = Fleet::new();
    let log = f.path("editor.log");
    // The editor records where the plaintext is and how it is protected.
    let o = edit_with_editor(
        &f,
        "secrets/db.age",
        &format!(
            r#"f="$1"; d=$(dirname "$f"); {{ echo "$f"; stat -f -c %T "$d"; stat -c %a "$d"; stat -c %a "$f"; cat "$f"; }} > {log}; printf 'edited' > "$f""#,
            log = log.display()
        ),
    );
    assert_code(&o, 0);
    let rec = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = rec.lines().collect();
    assert!(matches!(lines[1], "tmpfs" | "ramfs"), "{rec}");
    assert_eq!(lines[2], "700", "{rec}");
    assert_eq!(lines[3], "600", "{rec}");
    assert_eq!(lines[4], "hunter2", "the editor saw the old plaintext");
    assert!(!Path::new(lines[0]).exists(), "temp file removed");
    assert!(
        !Path::new(lines[0]).parent().unwrap().exists(),
        "temp dir removed"
    );
    assert_eq!(
        age_decrypt(&f.path("secrets/db.age"), &f.path("keys/master.txt")),
        b"edited"
    );

    // An editor that fails leaves the file untouched.
    let before = std::fs::read(f.path("secrets/db.age")).unwrap();
    let o = edit_with_editor(&f, "secrets/db.age", r#"printf 'half' > "$1"; exit 3"#);
    assert_ne!(o.status.code(), Some(0));
    assert_eq!(std::fs::read(f.path("secrets/db.age")).unwrap(), before);

    // Killed with SIGTERM while editing: untouched, temp gone.
    let o = edit_with_editor(
        &f,
        "secrets/db.age",
        &format!(
            // Only our own nixseal (an ancestor of this editor), never another
            // test's: walk up the process tree to it.
            r#"echo "$1" > {log}; printf 'evil' > "$1"; p=$PPID; while [ "$(cat /proc/$p/comm)" != nixseal ]; do p=$(cut -d' ' -f4 /proc/$p/stat); done; kill -TERM $p; sleep 0.2"#,
            log = log.display()
        ),
    );
    assert_ne!(o.status.code(), Some(0));
    assert_eq!(std::fs::read(f.path("secrets/db.age")).unwrap(), before);
    let tmp = std::fs::read_to_string(&log).unwrap();
    assert!(
        !Path::new(tmp.trim()).parent().unwrap().exists(),
        "temp dir removed after SIGTERM"
    );
}

#[test]
fn help_documents_exit_codes() {
    let o = nixseal(Path::new("."), &["--help"]);
    assert_code(&o, 0);
    let out = stdout(&o);
    assert!(out.contains("2  bad input or usage"), "{out}");
    let o = nixseal(Path::new("."), &["renc"]);
    assert_code(&o, 2);
}

/// A secret whose master file does not exist but which has a generator:
/// renc runs the generator once, writes the master file (encrypted to the
/// master key and the extraRecipients, checked with Go age) and rekeys it for
/// every host in the same run; later runs never regenerate. A failing or
/// silent generator is an error naming the file, the generator and its users,
/// and writes nothing; the rest of the fleet is still rekeyed.
#[test]
fn generators_create_missing_master_files_once() {
    use std::os::unix::fs::PermissionsExt;
    let mut f = Fleet::new();
    let extra_key = f.path("keys/extra.txt");
    f.extra_recipients = vec![age_keygen(&extra_key)];
    let runs = f.path("generator-runs");
    let root = f.dir.path().to_owned();
    let script = |name: &str, body: &str| {
        let p = root.join(name);
        std::fs::write(
            &p,
            format!("#!/bin/sh\necho run >> {}\n{body}\n", runs.display()),
        )
        .unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    };
    let gen = script(
        "gen-session.sh",
        r#"printf 'session-%s' "$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')""#,
    );
    f.generators.insert("session".into(), gen.clone());
    for h in ["web1", "db1"] {
        f.uses.get_mut(h).unwrap().push("session".into());
    }
    f.write_profile();
    let master_file = f.path("secrets/session.age");
    let run_count = || {
        std::fs::read_to_string(&runs)
            .map(|s| s.lines().count())
            .unwrap_or(0)
    };

    // Dry run: says what it would do, runs and writes nothing.
    let o = f.run(&["renc", "--profile", "profile.json", "--dry-run"]);
    assert_code(&o, 0);
    assert_stdout_has(&o, "generate ./secrets/session.age with");
    assert_stdout_has(&o, "web1/session (after generating its master file)");
    assert_stdout_has(&o, "dry run: 1 to generate");
    assert!(!master_file.exists() && run_count() == 0);
    let o = f.check();
    assert_code(&o, 1);
    assert_stdout_has(
        &o,
        "web1/session: its master file secrets/session.age does not exist yet and has a generator; run `nix run .#renc`",
    );
    assert_eq!(run_count(), 0);

    let o = f.renc();
    assert_code(&o, 0);
    assert_stderr_has(&o, "generated ./secrets/session.age");
    assert_stderr_has(&o, "db1/session, web1/session");
    assert_eq!(run_count(), 1);
    let plain = age_decrypt(&master_file, &f.path("keys/master.txt"));
    assert!(
        plain.starts_with(b"session-") && plain.len() == 24,
        "{plain:?}"
    );
    assert_eq!(age_decrypt(&master_file, &extra_key), plain);
    for h in ["web1", "db1"] {
        let out = f.output(h, "session");
        assert_eq!(
            age_decrypt(&out, &f.path(&format!("keys/{h}"))),
            plain,
            "{h}"
        );
    }
    assert_code(&f.check(), 0);

    // Never regenerated once the file exists.
    let o = f.renc();
    assert_code(&o, 0);
    assert!(!stderr(&o).contains("generated"), "{}", stderr(&o));
    assert_eq!(run_count(), 1);
    assert_eq!(age_decrypt(&master_file, &f.path("keys/master.txt")), plain);

    // A failing and a silent generator: errors, nothing written; the
    // other hosts' secrets are still handled (tls changes and is rekeyed).
    let failing = script("gen-failing.sh", "echo 'generator: no entropy' >&2; exit 3");
    let silent = script("gen-silent.sh", "true");
    f.generators.insert("broken".into(), failing.clone());
    f.generators.insert("quiet".into(), silent.clone());
    f.uses.get_mut("web1").unwrap().push("broken".into());
    f.uses.get_mut("db1").unwrap().push("quiet".into());
    f.set_secret("tls", b"new tls", false);
    f.write_profile();
    let o = f.renc();
    assert_code(&o, 1);
    assert_stderr_has(&o, "generator: no entropy");
    assert_stderr_has(
        &o,
        &format!(
            "the generator {} of ./secrets/broken.age failed",
            failing.display()
        ),
    );
    assert_stderr_has(&o, "(used by web1/broken)");
    assert_stderr_has(&o, "./secrets/quiet.age printed nothing");
    assert!(!f.path("secrets/broken.age").exists() && !f.path("secrets/quiet.age").exists());
    assert_eq!(
        age_decrypt(&f.output("web1", "tls"), &f.path("keys/web1")),
        b"new tls"
    );
}

/// rage (the Rust reference CLI) on both ends: sources made by `rage -r`, every
/// rekeyed output opened by `rage -d -i <host ssh key>`. scripts/setup installs
/// rage; the test says so loudly when it is missing instead of passing silently.
#[test]
fn rage_interop_sources_and_outputs() {
    let Some(rage) = which("rage") else {
        panic!("rage not found on PATH: run `bash scripts/test` (it runs `cargo install rage`)");
    };
    let f = Fleet::new();
    for (name, pt) in &f.secrets {
        let mut child = Command::new(&rage)
            .args(["-r", &f.master])
            .args(if name == "api" { &["-a"][..] } else { &[][..] })
            .arg("-o")
            .arg(f.path(&format!("secrets/{name}.age")))
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(pt).unwrap();
        assert!(child.wait().unwrap().success());
    }
    assert_code(&f.renc(), 0);
    for (host, secrets) in &f.uses {
        for s in secrets {
            let o = run_ok(
                Command::new(&rage)
                    .arg("-d")
                    .arg("-i")
                    .arg(f.path(&format!("keys/{host}")))
                    .arg(f.output(host, s)),
            );
            assert_eq!(o.stdout, f.secrets[s], "{host}/{s}");
        }
    }
    // What `edit` writes opens with rage and the master key.
    let o = edit_stdin(&f, "secrets/db.age", b"from nixseal", &[]);
    assert_code(&o, 0);
    let o = run_ok(
        Command::new(&rage)
            .arg("-d")
            .arg("-i")
            .arg(f.path("keys/master.txt"))
            .arg(f.path("secrets/db.age")),
    );
    assert_eq!(o.stdout, b"from nixseal");
}

#[test]
fn man_page_and_completions_are_generated_from_the_cli() {
    let o = nixseal(Path::new("."), &["man"]);
    assert_code(&o, 0);
    assert_stdout_has(&o, ".TH nixseal");
    assert_stdout_has(&o, "renc");
    let o = nixseal(Path::new("."), &["completions", "bash"]);
    assert_code(&o, 0);
    assert_stdout_has(&o, "_nixseal()");
    assert_stdout_has(&o, "--passphrase-file");
}

/// `examples/fleet` works as its README says: `nixseal renc --profile
/// profile.json` from that directory rekeys every host's secrets (each
/// output opens with that host's example key, with Go age, and with no other
/// host's), and `check` then passes. Run on a copy: the repository's example
/// stays as committed.
/// A key age refuses is described in words, not as a Rust `Debug` value,
/// and "cannot encrypt" is said once.
#[test]
fn refused_recipients_are_described_in_words() {
    let f = Fleet::new();
    let key = f.path("keys/rsa1024");
    run_ok(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "rsa", "-b", "1024", "-N", "", "-f"])
            .arg(&key),
    );
    let rsa = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let o = edit_stdin(&f, "secrets/new.age", b"x", &["-r", rsa.trim()]);
    assert_code(&o, 2);
    assert_stderr_has(&o, "fewer than 2048 bits");
    assert!(!stderr(&o).contains("RsaModulus"), "{}", stderr(&o));
}

#[test]
fn the_example_fleet_rekeys_as_its_readme_says() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/fleet");
    let readme = std::fs::read_to_string(example.join("README.md")).unwrap();
    assert!(
        readme.contains("nixseal renc --profile profile.json"),
        "{readme}"
    );
    let dir = tempfile::tempdir().unwrap();
    run_ok(Command::new("cp").arg("-a").arg(&example).arg(dir.path()));
    let fleet = dir.path().join("fleet");
    let o = nixseal(&fleet, &["renc", "--profile", "profile.json"]);
    assert_code(&o, 0);
    assert_stdout_has(&o, "4 rekeyed, 0 unchanged, 0 removed, 0 failed");
    let profile: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fleet.join("profile.json")).unwrap()).unwrap();
    let master = fleet.join("keys/master.txt");
    for (host, h) in profile["hosts"].as_object().unwrap() {
        let key = fleet.join(format!("keys/ssh_host_ed25519_key-{host}"));
        for (secret, s) in h["secrets"].as_object().unwrap() {
            let source = fleet.join(s["file"].as_str().unwrap());
            let output = fleet.join(format!("secrets/rekeyed/{host}/{secret}.age"));
            assert_eq!(
                age_decrypt(&output, &key),
                age_decrypt(&source, &master),
                "{host}/{secret}"
            );
            for other in profile["hosts"].as_object().unwrap().keys() {
                if other != host {
                    let wrong = Command::new("age")
                        .arg("-d")
                        .arg("-i")
                        .arg(fleet.join(format!("keys/ssh_host_ed25519_key-{other}")))
                        .arg(&output)
                        .output()
                        .unwrap();
                    assert!(!wrong.status.success(), "{other} opens {host}/{secret}");
                }
            }
        }
    }
    assert_code(&nixseal(&fleet, &["check", "--profile", "profile.json"]), 0);
}

/// `nixseal manifest check` (what the NixOS module runs when it builds a
/// host's manifest): exit 0 for a manifest deploy accepts, whatever the
/// accounts of the machine it runs on; exit 2 naming every problem deploy
/// would refuse, for the main and the `--users` run; nothing is read but
/// the manifest.
#[test]
fn manifest_check_validates_without_the_host() {
    use support::fixtures;
    let d = tempfile::tempdir().unwrap();
    let key = d.path().join("no-such-key");
    let mut users = fixtures::secret(
        "pw",
        "/nix/store/00000000000000000000000000000000-h-pw.age",
        "root",
        "root",
        "0400",
        "/run/nixseal-for-users",
    );
    users.needed_for_users = true;
    let good = fixtures::manifest(
        &key,
        "/run/nixseal.d",
        "/run/nixseal",
        1,
        vec![
            // An owner this machine does not have: the host's business.
            fixtures::secret(
                "db",
                "/nix/store/00000000000000000000000000000000-h-db.age",
                "nobody-on-this-machine",
                "nobody-on-this-machine",
                "0444",
                "/run/nixseal",
            ),
            users,
        ],
        vec![fixtures::template(
            "app.env",
            "DB={{nixseal:db}}",
            "root",
            "root",
            "0400",
            "/run/nixseal",
        )],
    );
    let path = d.path().join("m.json");
    fixtures::write_json(&path, &good);
    let check = |p: &Path| nixseal(d.path(), &["manifest", "check", p.to_str().unwrap()]);
    let o = check(&path);
    assert_code(&o, 0);
    assert_stdout_has(
        &o,
        "is a valid version-1 host manifest (2 secret(s), 1 template(s))",
    );
    // The world-readable mode is a warning, as deploy gives it.
    assert_stderr_has(&o, "secret \"db\" has mode \"0444\"");

    let mut bad = good.clone();
    bad.secrets[0].path = "/etc".into();
    bad.secrets[0].mode = "0999".into();
    bad.secrets[1].path = "/run/nixseal/pw".into();
    bad.templates[0].content = "{{nixseal:nope}}".into();
    fixtures::write_json(&path, &bad);
    let o = check(&path);
    assert_code(&o, 2);
    for want in [
        "m.json is invalid",
        "\"/etc\" is a system directory",
        "mode \"0999\"",
        "neededForUsers",
        "{{nixseal:nope}}",
    ] {
        assert_stderr_has(&o, want);
    }
    // Not JSON, a repeated field, a FIFO: refused without hanging.
    std::fs::write(&path, "{").unwrap();
    assert_code(&check(&path), 2);
    let mut v = fixtures::to_value(&good);
    v["extra"] = 1.into();
    std::fs::write(&path, v.to_string()).unwrap();
    assert_stderr_has(&check(&path), "unknown field `extra`");
    let fifo = d.path().join("fifo");
    run_ok(Command::new("mkfifo").arg(&fifo));
    let o = check(&fifo);
    assert_code(&o, 2);
    assert_stderr_has(&o, "a FIFO");
}
