//! Shared helpers for the CLI tests: a throwaway fleet made with real keys
//! (Go `age-keygen`, `ssh-keygen`) and real ciphertexts (Go `age`).
#![allow(dead_code)]

pub mod mutate;
pub mod namespace;

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
    pub master: String,
    pub hosts: BTreeMap<String, String>,
    pub secrets: BTreeMap<String, Vec<u8>>,
    /// host -> secret names
    pub uses: BTreeMap<String, Vec<String>>,
    pub identities: Vec<String>,
    pub extra_recipients: Vec<String>,
    /// secret -> generator (absolute path), written into the profile.
    pub generators: BTreeMap<String, PathBuf>,
}

impl Fleet {
    /// Hosts web1 (db, api, tls) and db1 (db); master key at keys/master.txt.
    pub fn new() -> Fleet {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("keys")).unwrap();
        std::fs::create_dir_all(dir.path().join("secrets")).unwrap();
        let master = age_keygen(&dir.path().join("keys/master.txt"));
        let mut f = Fleet {
            dir,
            master,
            hosts: BTreeMap::new(),
            secrets: BTreeMap::new(),
            uses: BTreeMap::new(),
            identities: vec!["./keys/master.txt".into()],
            extra_recipients: vec![],
            generators: BTreeMap::new(),
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
        self.dir.path().join(rel)
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
        nixseal(self.dir.path(), args)
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

/// A program on PATH or in ~/.cargo/bin (where `scripts/test` installs rage).
pub fn which(cmd: &str) -> Option<std::path::PathBuf> {
    let mut dirs: Vec<std::path::PathBuf> =
        std::env::split_paths(&std::env::var_os("PATH")?).collect();
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(std::path::Path::new(&home).join(".cargo/bin"));
    }
    dirs.into_iter().map(|d| d.join(cmd)).find(|p| p.is_file())
}
