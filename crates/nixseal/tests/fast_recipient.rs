//! Files encrypted with `FastRecipient` (renc's host recipient) open with
//! every age implementation there is: Go `age -d -i <ssh key>`, `rage -d -i
//! <ssh key>`, the age crate's own `age::ssh::Identity` and the deploy
//! side's `HostIdentity` — for keys made by `ssh-keygen` and in process, for
//! one recipient per file and for many at once — and not with another key.
//! Go `age` and `rage` must be installed (`scripts/setup`, `cargo install
//! rage`); the test fails, never skips, without them.

use std::io::{Read, Write};
use std::iter;
use std::path::{Path, PathBuf};
use std::process::Command;

use nixseal::identity::fast_recipient::FastRecipient;
use ssh_key::{rand_core::OsRng, rand_core::RngCore, Algorithm, LineEnding, PrivateKey};

/// A program on PATH or in ~/.cargo/bin (where `cargo install rage` puts it).
fn which(cmd: &str, hint: &str) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(Path::new(&home).join(".cargo/bin"));
    }
    dirs.into_iter()
        .map(|d| d.join(cmd))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{cmd} is needed for this test: {hint}"))
}

/// A host key: its private key file (OpenSSH format) and public line.
struct Key {
    path: PathBuf,
    pem: String,
    line: String,
}

fn ssh_keygen(dir: &Path, name: &str) -> Key {
    let path = dir.join(name);
    let st = Command::new(which("ssh-keygen", "apt-get install openssh-client"))
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "root@host", "-f"])
        .arg(&path)
        .status()
        .unwrap();
    assert!(st.success(), "ssh-keygen failed");
    Key {
        pem: std::fs::read_to_string(&path).unwrap(),
        line: std::fs::read_to_string(path.with_extension("pub")).unwrap(),
        path,
    }
}

fn in_process(dir: &Path, name: &str) -> Key {
    let key = PrivateKey::random(&mut OsRng, Algorithm::Ed25519).unwrap();
    let path = dir.join(name);
    key.write_openssh_file(&path, LineEnding::LF).unwrap();
    Key {
        pem: key.to_openssh(LineEnding::LF).unwrap().to_string(),
        line: key.public_key().to_openssh().unwrap(),
        path,
    }
}

fn encrypt(recipients: &[&FastRecipient], plaintext: &[u8]) -> Vec<u8> {
    let e = age::Encryptor::with_recipients(recipients.iter().map(|r| *r as &dyn age::Recipient))
        .unwrap();
    let mut out = Vec::new();
    let mut w = e.wrap_output(&mut out).unwrap();
    w.write_all(plaintext).unwrap();
    w.finish().unwrap();
    out
}

/// Decrypts with the age crate and `identity`; `None` if it does not open.
fn age_crate_decrypt(identity: &dyn age::Identity, file: &[u8]) -> Option<Vec<u8>> {
    let d = age::Decryptor::new_buffered(file).unwrap();
    let mut r = d.decrypt(iter::once(identity)).ok()?;
    let mut out = Vec::new();
    r.read_to_end(&mut out).unwrap();
    Some(out)
}

/// Runs `tool -d -i key file`; stdout if it succeeded.
fn tool_decrypt(tool: &Path, key: &Path, file: &Path) -> Result<Vec<u8>, String> {
    let out = Command::new(tool)
        .arg("-d")
        .arg("-i")
        .arg(key)
        .arg(file)
        .output()
        .unwrap();
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn every_output_opens_with_go_age_rage_age_crate_and_host_identity() {
    let go_age = which("age", "apt-get install age (scripts/setup)");
    let rage = which("rage", "cargo install rage");
    let dir = tempfile::tempdir().unwrap();
    let mut keys = vec![
        ssh_keygen(dir.path(), "keygen1"),
        ssh_keygen(dir.path(), "keygen2"),
    ];
    for i in 0..6 {
        keys.push(in_process(dir.path(), &format!("inproc{i}")));
    }
    let recipients: Vec<FastRecipient> = keys
        .iter()
        .map(|k| FastRecipient::parse(&k.line).expect("a real host key is accepted"))
        .collect();

    let mut big = vec![0u8; 70_000];
    OsRng.fill_bytes(&mut big);
    let payloads: [&[u8]; 3] = [b"", b"db-password\n", &big];

    // (file, the keys it is encrypted to, plaintext)
    let mut files: Vec<(PathBuf, Vec<usize>, Vec<u8>)> = Vec::new();
    for (k, r) in recipients.iter().enumerate() {
        for (p, payload) in payloads.iter().enumerate() {
            let path = dir.path().join(format!("k{k}-p{p}.age"));
            std::fs::write(&path, encrypt(&[r], payload)).unwrap();
            files.push((path, vec![k], payload.to_vec()));
        }
    }
    let all: Vec<&FastRecipient> = recipients.iter().collect();
    let path = dir.path().join("all.age");
    std::fs::write(&path, encrypt(&all, b"to every host")).unwrap();
    files.push((path, (0..keys.len()).collect(), b"to every host".to_vec()));
    let path = dir.path().join("two.age");
    std::fs::write(&path, encrypt(&all[3..5], b"to hosts 3 and 4")).unwrap();
    files.push((path, vec![3, 4], b"to hosts 3 and 4".to_vec()));

    let mut opened = 0;
    for (path, to, plaintext) in &files {
        let bytes = std::fs::read(path).unwrap();
        for (k, key) in keys.iter().enumerate() {
            let age_id = age::ssh::Identity::from_buffer(key.pem.as_bytes(), None).unwrap();
            let host_id = nixseal::activate::load_host_key(&key.path).unwrap();
            let what = format!("{} with key {k}", path.display());
            if to.contains(&k) {
                assert_eq!(
                    tool_decrypt(&go_age, &key.path, path).as_deref(),
                    Ok(&plaintext[..]),
                    "Go age: {what}"
                );
                assert_eq!(
                    tool_decrypt(&rage, &key.path, path).as_deref(),
                    Ok(&plaintext[..]),
                    "rage: {what}"
                );
                assert_eq!(
                    age_crate_decrypt(&age_id, &bytes).as_deref(),
                    Some(&plaintext[..]),
                    "age::ssh::Identity: {what}"
                );
                assert_eq!(
                    age_crate_decrypt(&host_id, &bytes).as_deref(),
                    Some(&plaintext[..]),
                    "HostIdentity: {what}"
                );
                opened += 1;
            } else {
                // Another host's key opens nothing: the decryptors do check.
                assert!(tool_decrypt(&go_age, &key.path, path).is_err(), "{what}");
                assert!(tool_decrypt(&rage, &key.path, path).is_err(), "{what}");
                assert_eq!(age_crate_decrypt(&age_id, &bytes), None, "{what}");
                assert_eq!(age_crate_decrypt(&host_id, &bytes), None, "{what}");
            }
        }
    }
    assert_eq!(opened, keys.len() * payloads.len() + keys.len() + 2);
}

/// Go `age` and `rage` encrypting to the same key write a stanza whose tag
/// (first argument) is the one `FastRecipient` writes: the tag is derived
/// from the key as every implementation derives it.
#[test]
fn stanza_tag_matches_go_age_and_rage() {
    let go_age = which("age", "apt-get install age (scripts/setup)");
    let rage = which("rage", "cargo install rage");
    let dir = tempfile::tempdir().unwrap();
    let key = ssh_keygen(dir.path(), "host");
    let ours = encrypt(&[&FastRecipient::parse(&key.line).unwrap()], b"x");
    let header_line = |file: &[u8]| -> Vec<String> {
        let text = String::from_utf8_lossy(file);
        let line = text
            .lines()
            .find(|l| l.starts_with("-> ssh-ed25519 "))
            .unwrap_or_else(|| panic!("no ssh-ed25519 stanza in {text:?}"))
            .to_owned();
        line.split(' ').map(str::to_owned).collect()
    };
    let ours = header_line(&ours);
    assert_eq!(ours.len(), 4, "-> ssh-ed25519 <tag> <share>: {ours:?}");
    assert_eq!(ours[3].len(), 43, "32-byte share, unpadded base64");
    for tool in [&go_age, &rage] {
        let out = Command::new(tool)
            .args(["-r", key.line.trim()])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let theirs = header_line(&out.stdout);
        assert_eq!(theirs[..3], ours[..3], "{}", tool.display());
    }
}
