//! nixseal's master identities work with age plugins: an `AGE-PLUGIN-…` identity file
//! is loaded, secrets are encrypted to its recipient and decrypted through the plugin
//! binary, interoperably with Go `age`. The plugin is the workspace's
//! `age-plugin-nixseal-test` (real X25519 cryptography behind the plugin protocol).
//!
//! One test only: it changes this process's PATH (age finds plugins through PATH).

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use nixseal::crypto::{self, DecryptFailure};
use nixseal::identity::{IdentityError, MasterIdentities, NoInteraction};

/// Returns the directory holding the plugin (`<target>/<profile>`, the parent of
/// this test's `deps/`). `cargo test --workspace` has built it there already;
/// otherwise (e.g. `cargo test -p nixseal`) it is built now.
fn build_plugin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap().to_owned();
    if profile_dir.join("age-plugin-nixseal-test").is_file() {
        return profile_dir;
    }
    let target_dir = profile_dir.parent().unwrap();
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args([
        "build",
        "--quiet",
        "-p",
        "age-plugin-nixseal-test",
        "--target-dir",
    ])
    .arg(target_dir)
    .current_dir(env!("CARGO_MANIFEST_DIR"));
    if profile_dir.file_name() == Some("release".as_ref()) {
        cmd.arg("--release");
    }
    let status = cmd.status().unwrap();
    assert!(
        status.success(),
        "cargo build -p age-plugin-nixseal-test failed"
    );
    let plugin = profile_dir.join("age-plugin-nixseal-test");
    assert!(
        plugin.is_file(),
        "{} was not built; run `cargo build -p age-plugin-nixseal-test`",
        plugin.display()
    );
    profile_dir
}

/// Writes a new plugin identity file; returns its recipient.
fn generate(plugin_dir: &Path, file: &Path) -> String {
    let out = Command::new(plugin_dir.join("age-plugin-nixseal-test"))
        .arg("--generate")
        .output()
        .unwrap();
    assert!(out.status.success());
    std::fs::write(file, &out.stdout).unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("# recipient: "))
        .unwrap()
        .to_owned()
}

fn go_age(path: &OsString, args: &[&str], stdin: &[u8]) -> Option<Output> {
    let mut child = match Command::new("age")
        .args(args)
        .env("PATH", path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => panic!("cannot run age: {e}"),
    };
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    Some(child.wait_with_output().unwrap())
}

#[test]
fn plugin_master_identity_encrypts_and_decrypts() {
    let plugin_dir = build_plugin();
    let original_path = std::env::var_os("PATH").unwrap_or_default();
    let dir = tempfile::tempdir().unwrap();
    let master = dir.path().join("master.txt");
    let recipient = generate(&plugin_dir, &master);
    let other = dir.path().join("other.txt");
    generate(&plugin_dir, &other);

    // Without the plugin on PATH, loading fails and names the file and the plugin.
    std::env::set_var("PATH", "/nonexistent");
    let err =
        MasterIdentities::load(std::slice::from_ref(&master), Arc::new(NoInteraction)).unwrap_err();
    assert!(
        matches!(&err, IdentityError::Plugin { path, .. } if path == &master),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains(&*master.to_string_lossy()), "{msg}");
    assert!(msg.contains("age-plugin-nixseal-test"), "{msg}");

    let mut dirs = vec![plugin_dir.clone()];
    dirs.extend(std::env::split_paths(&original_path));
    let path = std::env::join_paths(dirs).unwrap();
    std::env::set_var("PATH", &path);

    let ids =
        MasterIdentities::load(std::slice::from_ref(&master), Arc::new(NoInteraction)).unwrap();
    let recipients: Vec<&dyn age::Recipient> = ids.recipients().collect();
    assert_eq!(recipients.len(), 1);
    let plaintext = b"master secret\n";
    let ciphertext = crypto::encrypt(plaintext, &recipients, false).unwrap();
    let header = String::from_utf8_lossy(&ciphertext[..ciphertext.len().min(300)]).into_owned();
    assert!(header.contains("\n-> nixseal-test "), "{header}");
    assert!(!header.contains("\n-> X25519 "), "{header}");

    assert_eq!(
        &crypto::decrypt(&ciphertext, &ids.as_identities()).unwrap()[..],
        plaintext
    );
    let others =
        MasterIdentities::load(std::slice::from_ref(&other), Arc::new(NoInteraction)).unwrap();
    assert!(matches!(
        crypto::decrypt(&ciphertext, &others.as_identities()),
        Err(DecryptFailure::NoMatchingIdentity)
    ));

    // Interop with Go age on the same plugin keys.
    let ct_file = dir.path().join("secret.age");
    std::fs::write(&ct_file, &ciphertext).unwrap();
    let master_arg = master.to_str().unwrap();
    let Some(out) = go_age(
        &path,
        &["-d", "-i", master_arg, ct_file.to_str().unwrap()],
        b"",
    ) else {
        panic!("the Go age half of plugin_master_identity_encrypts_and_decrypts: Go `age` is not on PATH (apt-get install age; scripts/setup does) — this test never skips");
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, plaintext);

    let out = go_age(&path, &["-r", &recipient], b"from go\n").unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        &crypto::decrypt(&out.stdout, &ids.as_identities()).unwrap()[..],
        b"from go\n"
    );
}
