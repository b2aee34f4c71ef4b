//! Shared helpers for the CLI tests: a throwaway fleet made with real keys
//! (Go `age-keygen`, `ssh-keygen`) and real ciphertexts (Go `age`).
#![allow(dead_code)]

pub mod fixtures;
pub mod host;
pub mod mutate;
pub mod namespace;
pub mod session;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub fn nixseal_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_nixseal"))
}

/// Runs nixseal in `dir` with stdin closed.
pub fn nixseal(dir: &Path, args: &[&str]) -> Output {
    Command::new(nixseal_bin())
        .current_dir(dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run nixseal")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[track_caller]
pub fn assert_code(o: &Output, code: i32) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "want exit {code}\nstdout:\n{}\nstderr:\n{}",
        stdout(o),
        stderr(o)
    );
}

/// Asserts the command's stdout contains `want`, showing it if not.
#[track_caller]
pub fn assert_stdout_has(o: &Output, want: &str) {
    assert!(
        stdout(o).contains(want),
        "want {want:?} in stdout:\n{}",
        stdout(o)
    );
}

/// Asserts the command's stderr contains `want`, showing it if not.
#[track_caller]
pub fn assert_stderr_has(o: &Output, want: &str) {
    assert!(
        stderr(o).contains(want),
        "want {want:?} in stderr:\n{}",
        stderr(o)
    );
}

#[track_caller]
pub fn run_ok(cmd: &mut Command) -> Output {
    let o = cmd.output().expect("spawn");
    assert!(
        o.status.success(),
        "{cmd:?} failed\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// Makes an age X25519 identity file with Go age-keygen; returns its recipient.
pub fn age_keygen(path: &Path) -> String {
    run_ok(Command::new("age-keygen").arg("-o").arg(path));
    let o = run_ok(Command::new("age-keygen").arg("-y").arg(path));
    String::from_utf8(o.stdout).unwrap().trim().to_owned()
}

/// Makes an ssh-ed25519 key pair; returns the public key line.
pub fn ssh_keygen(path: &Path, passphrase: &str) -> String {
    let _ = std::fs::remove_file(path);
    run_ok(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-C", "test", "-N", passphrase, "-f"])
            .arg(path),
    );
    std::fs::read_to_string(path.with_extension("pub"))
        .unwrap()
        .trim()
        .to_owned()
}

/// Encrypts `plaintext` with Go age to the recipients (`-r` each), armored or not.
/// The OpenSSH public key line of a raw 32-byte ed25519 point.
pub fn ssh_key_line(point: [u8; 32]) -> String {
    let mut blob = Vec::new();
    blob.extend_from_slice(&11u32.to_be_bytes());
    blob.extend_from_slice(b"ssh-ed25519");
    blob.extend_from_slice(&32u32.to_be_bytes());
    blob.extend_from_slice(&point);
    let o = Command::new("base64")
        .arg("-w0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(&blob)?;
            c.wait_with_output()
        })
        .unwrap();
    format!("ssh-ed25519 {} weak", String::from_utf8(o.stdout).unwrap())
}

pub fn age_encrypt(out: &Path, plaintext: &[u8], recipients: &[&str], armor: bool) {
    let mut cmd = Command::new("age");
    for r in recipients {
        cmd.arg("-r").arg(r);
    }
    if armor {
        cmd.arg("-a");
    }
    cmd.arg("-o").arg(out);
    let mut child = cmd.stdin(Stdio::piped()).spawn().expect("spawn age");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(plaintext).unwrap();
    assert!(child.wait().unwrap().success(), "age -r failed");
}

/// Decrypts with Go age and an identity (age key file or OpenSSH private key).
/// tests/support/with_tty.py: runs a command on a pseudo-terminal that
/// answers its prompts.
pub const WITH_TTY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/support/with_tty.py"
);

/// Writes `to`, the identity file `from` protected by `passphrase` with Go
/// `age -p` (answered on a terminal), both relative to the fleet root.
pub fn age_passphrase_protect(f: &Fleet, from: &str, to: &str, passphrase: &str) {
    run_ok(
        Command::new("python3")
            .arg(WITH_TTY)
            .arg(passphrase)
            .arg("--")
            .args(["age", "-p", "-o"])
            .arg(f.path(to))
            .arg(f.path(from)),
    );
}

pub fn age_decrypt(file: &Path, identity: &Path) -> Vec<u8> {
    run_ok(
        Command::new("age")
            .arg("-d")
            .arg("-i")
            .arg(identity)
            .arg(file),
    )
    .stdout
}

/// A fleet in a temp dir: a master key, host keys, sources and a profile.
pub struct Fleet {
    pub dir: tempfile::TempDir,
    /// The flake root: `dir` itself, or a directory inside it (a flake in a
    /// subdirectory of a larger repository).
    pub root: PathBuf,
    pub master: String,
    pub hosts: BTreeMap<String, String>,
    pub secrets: BTreeMap<String, Vec<u8>>,
    /// host -> secret names
    pub uses: BTreeMap<String, Vec<String>>,
    pub identities: Vec<String>,
    pub extra_recipients: Vec<String>,
    /// secret -> generator (absolute path), written into the profile.
    pub generators: BTreeMap<String, PathBuf>,
    /// XDG_CACHE_HOME of the runs made through [`Fleet::run`]: renc's stat
    /// records stay with the fleet (and go with it), not in ~/.cache.
    pub cache: tempfile::TempDir,
}

impl Fleet {
    /// Hosts web1 (db, api, tls) and db1 (db); master key at keys/master.txt.
    pub fn new() -> Fleet {
        Self::new_in("")
    }

    /// Like [`Fleet::new`], with the flake root at `sub` inside the temp dir
    /// (e.g. "infra": a flake in a subdirectory of a repository).
    pub fn new_in(sub: &str) -> Fleet {
        let dir = tempfile::tempdir().unwrap();
        let root = if sub.is_empty() {
            dir.path().to_owned()
        } else {
            dir.path().join(sub)
        };
        std::fs::create_dir_all(root.join("keys")).unwrap();
        std::fs::create_dir_all(root.join("secrets")).unwrap();
        let master = age_keygen(&root.join("keys/master.txt"));
        let mut f = Fleet {
            dir,
            root,
            master,
            hosts: BTreeMap::new(),
            secrets: BTreeMap::new(),
            uses: BTreeMap::new(),
            identities: vec!["./keys/master.txt".into()],
            extra_recipients: vec![],
            generators: BTreeMap::new(),
            cache: tempfile::tempdir().unwrap(),
        };
        f.add_host("web1");
        f.add_host("db1");
        f.set_secret("db", b"hunter2\n", false);
        f.set_secret("api", b"api-token", true);
        let tls: Vec<u8> = (0..70_000u32).map(|i| (i * 7 % 251) as u8).collect();
        f.set_secret("tls", &tls, false);
        f.uses
            .insert("web1".into(), vec!["db".into(), "api".into(), "tls".into()]);
        f.uses.insert("db1".into(), vec!["db".into()]);
        f.write_profile();
        f
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    pub fn add_host(&mut self, host: &str) {
        let pubkey = ssh_keygen(&self.path(&format!("keys/{host}")), "");
        self.hosts.insert(host.into(), pubkey);
    }

    pub fn set_secret(&mut self, name: &str, plaintext: &[u8], armor: bool) {
        age_encrypt(
            &self.path(&format!("secrets/{name}.age")),
            plaintext,
            &[&self.master],
            armor,
        );
        self.secrets.insert(name.into(), plaintext.to_vec());
    }

    pub fn profile_json(&self) -> String {
        let hosts: serde_json::Map<String, serde_json::Value> = self
            .uses
            .iter()
            .map(|(h, secrets)| {
                let s: serde_json::Map<String, serde_json::Value> = secrets
                    .iter()
                    .map(|s| {
                        let mut v = serde_json::json!({ "file": format!("./secrets/{s}.age") });
                        if let Some(g) = self.generators.get(s) {
                            v["generator"] = g.to_str().unwrap().into();
                        }
                        (s.clone(), v)
                    })
                    .collect();
                (
                    h.clone(),
                    serde_json::json!({ "hostPubkey": self.hosts[h], "secrets": s }),
                )
            })
            .collect();
        serde_json::json!({
            "version": 1,
            "identities": self.identities,
            "extraRecipients": self.extra_recipients,
            "rekeyedDir": "./secrets/rekeyed",
            "hosts": hosts,
        })
        .to_string()
    }

    pub fn write_profile(&self) {
        std::fs::write(self.path("profile.json"), self.profile_json()).unwrap();
    }

    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(nixseal_bin())
            .current_dir(&self.root)
            .env("XDG_CACHE_HOME", self.cache.path())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run nixseal")
    }

    pub fn renc(&self) -> Output {
        self.run(&["renc", "--profile", "profile.json"])
    }

    pub fn check(&self) -> Output {
        self.run(&["check", "--profile", "profile.json"])
    }

    pub fn output(&self, host: &str, secret: &str) -> PathBuf {
        self.path(&format!("secrets/rekeyed/{host}/{secret}.age"))
    }

    /// Every file under the rekeyed dir with its bytes.
    pub fn snapshot(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        let mut out = BTreeMap::new();
        let root = self.path("secrets/rekeyed");
        fn walk(d: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
            let Ok(rd) = std::fs::read_dir(d) else { return };
            for e in rd.flatten() {
                let p = e.path();
                let t = e.file_type().unwrap();
                if t.is_dir() {
                    walk(&p, out);
                } else if t.is_file() {
                    out.insert(p.clone(), std::fs::read(&p).unwrap());
                } else {
                    out.insert(p.clone(), b"<symlink>".to_vec());
                }
            }
        }
        walk(&root, &mut out);
        out
    }

    /// Asserts every output decrypts with Go age and the host's SSH key.
    #[track_caller]
    pub fn assert_outputs_decrypt(&self) {
        for (host, secrets) in &self.uses {
            for s in secrets {
                let got = age_decrypt(&self.output(host, s), &self.path(&format!("keys/{host}")));
                assert_eq!(got, self.secrets[s], "{host}/{s}");
            }
        }
    }
}

/// Every regular file and symlink under `dir` with its bytes (symlinks as
/// `-> target`), for "nothing changed" assertions over a whole fleet.
pub fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    fn walk(d: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        let Ok(rd) = std::fs::read_dir(d) else { return };
        for e in rd.flatten() {
            let p = e.path();
            let t = e.file_type().unwrap();
            if t.is_symlink() {
                let target = std::fs::read_link(&p).unwrap();
                out.insert(p, format!("-> {}", target.display()).into_bytes());
            } else if t.is_dir() {
                out.insert(p.clone(), b"<dir>".to_vec());
                walk(&p, out);
            } else if t.is_file() {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            } else {
                out.insert(p, b"<special>".to_vec());
            }
        }
    }
    walk(dir, &mut out);
    out
}

/// Asserts two [`tree`]s are equal, naming the first difference.
#[track_caller]
pub fn assert_same_tree(
    before: &BTreeMap<PathBuf, Vec<u8>>,
    after: &BTreeMap<PathBuf, Vec<u8>>,
    what: &str,
) {
    for (p, b) in before {
        match after.get(p) {
            None => panic!("{what}: {} was removed", p.display()),
            Some(a) if a != b => panic!("{what}: {} changed", p.display()),
            _ => {}
        }
    }
    for p in after.keys() {
        assert!(before.contains_key(p), "{what}: {} appeared", p.display());
    }
}

/// Runs a command, killing it (and failing the test) if it takes longer
/// than `secs`: a hang is a bug, never a slow test.
#[track_caller]
pub fn run_timeout(cmd: &mut Command, secs: u64) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(std::time::Duration::from_secs(secs)) {
        Ok(o) => o.expect("wait"),
        Err(_) => {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .status();
            panic!("{cmd:?} hung for more than {secs} s (killed)");
        }
    }
}

/// Writes an executable shell script.
pub fn script(path: &Path, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.to_owned()
}

/// sha256 of some bytes, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let o = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(bytes)?;
            c.wait_with_output()
        })
        .expect("sha256sum");
    String::from_utf8(o.stdout).unwrap()[..64].to_owned()
}

impl Fleet {
    /// Asserts that every rekey cache under the rekeyed dir tells the truth:
    /// each entry's output exists as a regular file with the recorded
    /// sha256. (A false entry would let the NixOS module accept a file
    /// nixseal did not write.)
    #[track_caller]
    pub fn assert_caches_true(&self) {
        let rd = self.path("secrets/rekeyed");
        let Ok(hosts) = std::fs::read_dir(&rd) else {
            return;
        };
        for h in hosts.flatten() {
            let cache = h.path().join(".nixseal-rekey.json");
            if !std::fs::symlink_metadata(&cache).is_ok_and(|m| m.is_file()) {
                continue;
            }
            let json: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&cache).unwrap()).unwrap();
            for (secret, entry) in json["outputs"].as_object().unwrap() {
                let out = h.path().join(format!("{secret}.age"));
                let meta = std::fs::symlink_metadata(&out).unwrap_or_else(|_| {
                    panic!("{} lists {secret}, which is missing", cache.display())
                });
                assert!(meta.is_file(), "{} is not a regular file", out.display());
                assert_eq!(
                    sha256_hex(&std::fs::read(&out).unwrap()),
                    entry["outputSha256"].as_str().unwrap(),
                    "{} does not match its cache entry",
                    out.display()
                );
            }
        }
    }
}

/// A program on PATH or in ~/.cargo/bin (where `scripts/test` installs rage).
pub fn which(cmd: &str) -> Option<std::path::PathBuf> {
    let mut dirs: Vec<std::path::PathBuf> =
        std::env::split_paths(&std::env::var_os("PATH")?).collect();
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(std::path::Path::new(&home).join(".cargo/bin"));
    }
    dirs.into_iter().map(|d| d.join(cmd)).find(|p| p.is_file())
}

/// The directory holding the test plugin (crates/age-plugin-nixseal-test),
/// built next to nixseal by `cargo test --workspace`.
pub fn plugin_dir() -> PathBuf {
    let d = nixseal_bin().parent().unwrap().to_path_buf();
    assert!(
        d.join("age-plugin-nixseal-test").exists(),
        "age-plugin-nixseal-test not built next to nixseal: run `cargo test --workspace`"
    );
    d
}

/// A new identity of the test plugin, written to `keys/plugin.txt` of `f`;
/// returns its recipient and a PATH on which age and nixseal find the plugin.
pub fn plugin_identity(f: &Fleet) -> (String, String) {
    let dir = plugin_dir();
    let gen = run_ok(Command::new(dir.join("age-plugin-nixseal-test")).arg("--generate"));
    let text = String::from_utf8(gen.stdout).unwrap();
    std::fs::write(f.path("keys/plugin.txt"), &text).unwrap();
    let recipient = text
        .lines()
        .find_map(|l| l.split("recipient: ").nth(1))
        .expect("recipient line")
        .trim()
        .to_owned();
    let path = format!("{}:{}", dir.display(), std::env::var("PATH").unwrap());
    (recipient, path)
}

/// Encrypts every master secret of `f` with Go `age` to `recipient` alone,
/// with `path` as PATH (so a plugin recipient finds its plugin).
pub fn encrypt_masters_to(f: &Fleet, recipient: &str, path: &str) {
    use std::io::Write;
    for (name, pt) in &f.secrets {
        let mut child = Command::new("age")
            .env("PATH", path)
            .args(["-r", recipient, "-o"])
            .arg(f.path(&format!("secrets/{name}.age")))
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(pt).unwrap();
        assert!(child.wait().unwrap().success());
    }
}

/// `nixseal edit FILE --profile profile.json EXTRA…` in `f` with `input` on
/// stdin. A pipe nixseal closed before reading it (it refused early) is not
/// an error here: the caller judges the output.
pub fn edit_stdin(f: &Fleet, file: &str, input: &[u8], extra: &[&str]) -> Output {
    use std::io::Write;
    let mut child = Command::new(nixseal_bin())
        .current_dir(&f.root)
        .args(["edit", file, "--profile", "profile.json"])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    match child.stdin.take().unwrap().write_all(input) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        r => r.unwrap(),
    }
    child.wait_with_output().unwrap()
}
