//! The harness of the deploy tests (tests/deploy_*.rs): `nixseal deploy` as
//! a host runs it — the real binary, as root, each test in
//! a private mount namespace (`unshare(CLONE_NEWNS)` of the test's thread,
//! inherited by the processes it spawns) with a real ramfs, real age
//! encryption to an ssh-ed25519 host key made by ssh-keygen, and real
//! accounts made by groupadd/useradd (all named `nxs-*`).
//!
//! The crash test needs a binary built with the `fault-injection` feature:
//! with `cargo test --features fault-injection` it is this package's binary;
//! otherwise the test builds one into `target/fault` first.

// A prelude for the deploy tests: each file uses part of it.
#![allow(unused_imports)]

pub use std::cell::Cell;
pub use std::fs;
pub use std::io::{Read, Write};
pub use std::os::unix::fs::{MetadataExt, PermissionsExt};
pub use std::os::unix::process::ExitStatusExt;
pub use std::path::{Path, PathBuf};
pub use std::process::{Command, Output, Stdio};
pub use std::str::FromStr;
pub use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
pub use std::sync::{Arc, Mutex, Once, OnceLock};
pub use std::time::Duration;

pub use serde_json::{json, Value};

pub const BIN: &str = env!("CARGO_BIN_EXE_nixseal");

/// The binary under test: this package's, or `NIXSEAL_TEST_DEPLOY_BIN` (to
/// show that a regression test fails with an older build; docs/testing.md).
pub fn bin() -> PathBuf {
    std::env::var_os("NIXSEAL_TEST_DEPLOY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(BIN))
}

/// A little more than `nixseal::activate::PRUNE_GRACE`: a generation replaced
/// less than that ago is not pruned yet.
pub const GRACE: Duration = Duration::from_millis(1100);

/// Every fault point the library has, in the order a deploy reaches them.
pub use nixseal::activate::FAULT_POINTS;

// ---------------------------------------------------------------- harness

pub fn setup_accounts() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        assert!(
            nix::unistd::Uid::effective().is_root(),
            "the deploy tests mount filesystems and chown files: run them as root"
        );
        for g in ["nxs-grp", "nxs-other"] {
            run_ok(Command::new("groupadd").args(["-f", g]));
        }
        for u in ["nxs-alice", "nxs-bob"] {
            let exists = Command::new("id")
                .args(["-u", u])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .unwrap()
                .success();
            if !exists {
                run_ok(Command::new("useradd").args([
                    "-M",
                    "-N",
                    "-g",
                    "nxs-grp",
                    "-d",
                    "/nonexistent",
                    "-s",
                    "/usr/sbin/nologin",
                    u,
                ]));
            }
        }
    });
}

pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn id_of(file: &str, name: &str) -> u32 {
    fs::read_to_string(file)
        .unwrap()
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() > 2 && f[0] == name).then(|| f[2].parse().unwrap())
        })
        .unwrap_or_else(|| panic!("{name} not in {file}"))
}
pub fn uid(name: &str) -> u32 {
    id_of("/etc/passwd", name)
}
pub fn gid(name: &str) -> u32 {
    id_of("/etc/group", name)
}

pub fn fault_bin() -> PathBuf {
    static BIN_PATH: OnceLock<PathBuf> = OnceLock::new();
    BIN_PATH
        .get_or_init(|| {
            if cfg!(feature = "fault-injection") {
                return bin();
            }
            let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
            let target = root.join("target/fault");
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            run_ok(
                Command::new(cargo)
                    .current_dir(&root)
                    .args(["build", "-q", "-p", "nixseal-cli", "--features"])
                    .arg("fault-injection")
                    .arg("--target-dir")
                    .arg(&target),
            );
            target.join("debug/nixseal")
        })
        .clone()
}

pub struct Host {
    pub dir: tempfile::TempDir,
    pub key: PathBuf,
    pub recipient: age::ssh::Recipient,
    pub fake_bin: PathBuf,
    pub systemctl_log: PathBuf,
    pub counter: Cell<u32>,
}

impl Host {
    pub fn new() -> Host {
        setup_accounts();
        super::namespace::enter_private_mount_namespace();
        let dir = tempfile::Builder::new()
            .prefix("nxs-deploy-")
            .tempdir_in("/tmp")
            .unwrap();
        let key = dir.path().join("host_key");
        run_ok(
            Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", "nxs"])
                .arg("-f")
                .arg(&key),
        );
        let recipient = recipient_of(&key);
        let fake_bin = dir.path().join("bin");
        fs::create_dir(&fake_bin).unwrap();
        let systemctl_log = dir.path().join("systemctl.log");
        let script = fake_bin.join("systemctl");
        fs::write(
            &script,
            // Answers `is-system-running` from a state file (default
            // "running"; for `systemctl --user` too), runs a probe of its
            // caller if one is set, and
            // records every other call — or fails it while `systemctl-fails`
            // exists.
            format!(
                "#!/bin/sh\nu=; if [ \"$1\" = --user ]; then u='--user '; shift; fi\n\
                 if [ \"$1\" = is-system-running ]; then cat {state} 2>/dev/null || echo running; exit 0; fi\n\
                 if [ -f {probe} ]; then sh {probe} \"$PPID\" >> {probe}.out 2>&1; fi\n\
                 if [ -f {fails} ]; then echo \"FAILED $u$*\" >> {log}; exit 1; fi\n\
                 echo \"$u$*\" >> {log}\n",
                state = dir.path().join("system-state").display(),
                probe = dir.path().join("probe.sh").display(),
                fails = dir.path().join("systemctl-fails").display(),
                log = systemctl_log.display()
            ),
        )
        .unwrap();
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
        fs::create_dir(dir.path().join("src")).unwrap();
        Host {
            dir,
            key,
            recipient,
            fake_bin,
            systemctl_log,
            counter: Cell::new(0),
        }
    }

    pub fn p(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
    pub fn s(&self, rel: &str) -> String {
        self.p(rel).to_str().unwrap().to_owned()
    }
    pub fn mount_point(&self) -> String {
        self.s("run/nixseal.d")
    }
    pub fn symlink(&self) -> String {
        self.s("run/nixseal")
    }
    /// The state directory: the test's own, never the machine's /var/lib.
    pub fn state_dir(&self) -> String {
        self.s("var/lib/nixseal")
    }
    pub fn next(&self) -> u32 {
        let n = self.counter.get() + 1;
        self.counter.set(n);
        n
    }

    pub fn encrypt_to(&self, r: &age::ssh::Recipient, content: &[u8]) -> String {
        let path = self.p(&format!("src/{}.age", self.next()));
        let enc =
            age::Encryptor::with_recipients(std::iter::once(r as &dyn age::Recipient)).unwrap();
        let mut out = Vec::new();
        let mut w = enc.wrap_output(&mut out).unwrap();
        w.write_all(content).unwrap();
        w.finish().unwrap();
        fs::write(&path, out).unwrap();
        path.to_str().unwrap().to_owned()
    }
    pub fn encrypt(&self, content: &[u8]) -> String {
        self.encrypt_to(&self.recipient, content)
    }

    pub fn secret(&self, name: &str, content: &str, owner: &str, group: &str, mode: &str) -> Value {
        json!({"name": name, "source": self.encrypt(content.as_bytes()),
               "owner": owner, "group": group, "mode": mode,
               "path": format!("{}/{name}", self.symlink()), "symlink": true,
               "restartUnits": [], "reloadUnits": [], "neededForUsers": false})
    }
    pub fn template(
        &self,
        name: &str,
        content: &str,
        owner: &str,
        group: &str,
        mode: &str,
    ) -> Value {
        json!({"name": name, "content": content, "owner": owner, "group": group,
               "mode": mode, "path": format!("{}/{name}", self.symlink())})
    }
    pub fn manifest_value(&self, secrets: Vec<Value>, templates: Vec<Value>, keep: u32) -> Value {
        json!({"version": 1,
               "hostKeys": [{"path": self.key, "type": "ed25519"}],
               "mountPoint": self.mount_point(), "symlink": self.symlink(),
               "stateDir": self.state_dir(),
               "keepGenerations": keep, "secrets": secrets, "templates": templates})
    }
    pub fn write_manifest(&self, v: &Value) -> PathBuf {
        let p = self.p(&format!("manifest-{}.json", self.next()));
        let mut v = v.clone();
        if std::env::var_os("NIXSEAL_TEST_OLD_SCHEMA").is_some() {
            // For NIXSEAL_TEST_DEPLOY_BIN builds from before these fields
            // existed (docs/testing.md).
            if let Some(o) = v.as_object_mut() {
                o.remove("stateDir");
            }
            for s in v["secrets"].as_array_mut().into_iter().flatten() {
                s.as_object_mut().unwrap().remove("allowPlaintextOnDisk");
            }
        }
        fs::write(&p, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
        p
    }
    pub fn manifest(&self, secrets: Vec<Value>, templates: Vec<Value>, keep: u32) -> PathBuf {
        self.write_manifest(&self.manifest_value(secrets, templates, keep))
    }

    pub fn command(&self, bin: &Path, manifest: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(bin);
        c.arg("deploy").arg("--manifest").arg(manifest).args(args);
        let path = std::env::var("PATH").unwrap_or_default();
        c.env("PATH", format!("{}:{path}", self.fake_bin.display()));
        c.env_remove("NIXSEAL_FAULT");
        c
    }
    pub fn deploy(&self, manifest: &Path, args: &[&str]) -> Output {
        self.command(&bin(), manifest, args).output().unwrap()
    }
    pub fn deploy_ok(&self, manifest: &Path, args: &[&str]) -> Output {
        let out = self.deploy(manifest, args);
        assert!(
            out.status.success(),
            "deploy failed ({:?}): {}",
            out.status,
            stderr(&out)
        );
        out
    }

    pub fn active(&self) -> String {
        fs::read_link(self.symlink())
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned()
    }
    pub fn entries(&self, dir: &str) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }
    pub fn generations(&self) -> Vec<String> {
        self.entries(&self.mount_point())
    }
    pub fn systemctl_calls(&self) -> Vec<String> {
        fs::read_to_string(&self.systemctl_log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        // Unmount what the test mounted so the temp dir can be removed.
        for _ in 0..4 {
            for m in mounts_under(self.dir.path().to_str().unwrap()) {
                let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
            }
        }
    }
}

pub fn recipient_of(key: &Path) -> age::ssh::Recipient {
    let pubkey = fs::read_to_string(key.with_extension("pub"))
        .or_else(|_| fs::read_to_string(format!("{}.pub", key.display())))
        .unwrap();
    let two: Vec<&str> = pubkey.split_whitespace().take(2).collect();
    age::ssh::Recipient::from_str(&two.join(" ")).unwrap()
}

pub fn mounts_under(prefix: &str) -> Vec<String> {
    let mut v: Vec<String> = fs::read_to_string("/proc/thread-self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_owned))
        .filter(|m| m.starts_with(prefix))
        .collect();
    v.reverse();
    v
}

pub fn mount_line(path: &str) -> Vec<String> {
    fs::read_to_string("/proc/thread-self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.split(' ').nth(4) == Some(path))
        .map(str::to_owned)
        .collect()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Content, owner, group and mode of a file, following symlinks.
pub fn file_state(path: &str) -> (Vec<u8>, u32, u32, u32) {
    let mut f = fs::File::open(path).unwrap_or_else(|e| panic!("open {path}: {e}"));
    let md = f.metadata().unwrap();
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).unwrap();
    (buf, md.uid(), md.gid(), md.mode() & 0o7777)
}

pub fn assert_file(path: &str, content: &str, owner: &str, group: &str, mode: u32) {
    let (c, u, g, m) = file_state(path);
    assert_eq!(String::from_utf8_lossy(&c), content, "content of {path}");
    assert_eq!((u, g), (uid(owner), gid(group)), "owner of {path}");
    assert_eq!(m, mode, "mode of {path}: {m:o}");
}

pub fn code(o: &Output) -> Option<i32> {
    o.status.code()
}

impl Host {
    /// Pretends systemd is PID 1, inside this test's mount namespace only.
    pub fn fake_systemd(&self) {
        nix::mount::mount(
            Some("tmpfs"),
            "/run",
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .unwrap();
        fs::create_dir_all("/run/systemd/system").unwrap();
    }
    pub fn clear_systemctl_log(&self) {
        let _ = fs::remove_file(&self.systemctl_log);
    }
    /// Runs deploy with a time limit; a hang is a failure.
    pub fn deploy_within(&self, manifest: &Path, args: &[&str], limit: Duration) -> Output {
        run_within(&mut self.command(&bin(), manifest, args), limit)
    }
}

/// Runs `cmd` (stdout/stderr into files, so a chatty child cannot block on
/// a full pipe) and kills it if it has not finished within `limit`.
pub fn run_within(cmd: &mut Command, limit: Duration) -> Output {
    let out = tempfile::tempfile().unwrap();
    let err = tempfile::tempfile().unwrap();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(err.try_clone().unwrap())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {limit:?} (a hang)");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let read = |mut f: fs::File| {
        use std::io::Seek;
        f.rewind().unwrap();
        let mut v = Vec::new();
        f.read_to_end(&mut v).unwrap();
        v
    };
    Output {
        status,
        stdout: read(out),
        stderr: read(err),
    }
}

pub fn mount_ramfs(path: &str, source: &str, data: &str) {
    fs::create_dir_all(path).unwrap();
    nix::mount::mount(
        Some(source),
        path,
        Some("ramfs"),
        nix::mount::MsFlags::MS_NOSUID
            | nix::mount::MsFlags::MS_NODEV
            | nix::mount::MsFlags::MS_NOEXEC,
        Some(data),
    )
    .unwrap();
}

pub fn umount(path: &str) {
    nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH).unwrap();
}

/// What must not change when a deploy fails: where the symlink points, and
/// every file reachable through it or at a custom path (content, owner,
/// group, mode).
pub type Snapshot = (String, Vec<(String, Vec<u8>, u32, u32, u32)>);

/// Whether every path `m` makes the binary write lies strictly under
/// `prefix` (normalised: no `.`/`..`/empty component), so that running the
/// binary on a fuzzed manifest can only touch the test's own tmpfs.
pub fn writes_only_under(m: &nixseal::manifest::Manifest, prefix: &str) -> bool {
    let under = |p: &str| {
        p.strip_prefix(prefix)
            .and_then(|r| r.strip_prefix('/'))
            .is_some_and(|r| {
                !r.is_empty()
                    && !r.contains('\0')
                    && r.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
            })
    };
    let scope_paths = [
        m.mount_point.clone(),
        m.symlink.clone(),
        m.users_mount_point(),
        m.users_symlink(),
        m.state_dir().to_owned(),
    ];
    scope_paths
        .iter()
        .all(|p| under(p) && under(paths_parent(p)))
        && m.secrets.iter().all(|s| under(&s.path))
        && m.templates.iter().all(|t| under(&t.path))
}

pub fn paths_parent(p: &str) -> &str {
    &p[..p.rfind('/').unwrap_or(0)]
}

/// Runs `work` on another thread and fails if it takes longer than `limit`
/// (an in-process hang), naming the phase.
pub fn within<T: Send + 'static>(
    what: &str,
    limit: Duration,
    work: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    let t = std::thread::spawn(move || {
        let _ = tx.send(work());
    });
    match rx.recv_timeout(limit) {
        Ok(v) => {
            t.join().unwrap();
            v
        }
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("{what}: no result within {limit:?} (a hang)")
        }
        Err(_) => match t.join() {
            Err(p) => std::panic::resume_unwind(p),
            Ok(()) => unreachable!(),
        },
    }
}

pub fn snapshot_dirs(dirs: &[&str]) -> Vec<(String, Vec<u8>, u32, u32, u32)> {
    let mut files = Vec::new();
    for dir in dirs {
        let mut names: Vec<String> = match fs::read_dir(dir) {
            Ok(rd) => rd
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect(),
            Err(_) => continue,
        };
        names.sort();
        for e in names {
            let p = format!("{dir}/{e}");
            let (c, u, g, m) = file_state(&p);
            files.push((p, c, u, g, m));
        }
    }
    files
}
