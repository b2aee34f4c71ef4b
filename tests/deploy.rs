//! `nixseal deploy` as a host runs it: the real binary, as root, each test in
//! a private mount namespace (`unshare(CLONE_NEWNS)` of the test's thread,
//! inherited by the processes it spawns) with a real ramfs, real age
//! encryption to an ssh-ed25519 host key made by ssh-keygen, and real
//! accounts made by groupadd/useradd (all named `nxs-*`).
//!
//! The crash test needs a binary built with the `fault-injection` feature:
//! with `cargo test --features fault-injection` it is this package's binary;
//! otherwise the test builds one into `target/fault` first.

use std::cell::Cell;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once, OnceLock};
use std::time::Duration;

use serde_json::{json, Value};

mod support;

const BIN: &str = env!("CARGO_BIN_EXE_nixseal");

/// The binary under test: this package's, or `NIXSEAL_TEST_DEPLOY_BIN` (to
/// show that a regression test fails with an older build; docs/testing.md).
fn bin() -> PathBuf {
    std::env::var_os("NIXSEAL_TEST_DEPLOY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(BIN))
}

/// A little more than `nixseal::activate::PRUNE_GRACE`: a generation replaced
/// less than that ago is not pruned yet.
const GRACE: Duration = Duration::from_millis(1100);

/// Every fault point the library has, in the order a deploy reaches them.
use nixseal::activate::FAULT_POINTS;

// ---------------------------------------------------------------- harness

fn setup_accounts() {
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

fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn id_of(file: &str, name: &str) -> u32 {
    fs::read_to_string(file)
        .unwrap()
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() > 2 && f[0] == name).then(|| f[2].parse().unwrap())
        })
        .unwrap_or_else(|| panic!("{name} not in {file}"))
}
fn uid(name: &str) -> u32 {
    id_of("/etc/passwd", name)
}
fn gid(name: &str) -> u32 {
    id_of("/etc/group", name)
}

fn fault_bin() -> PathBuf {
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

struct Host {
    dir: tempfile::TempDir,
    key: PathBuf,
    recipient: age::ssh::Recipient,
    fake_bin: PathBuf,
    systemctl_log: PathBuf,
    counter: Cell<u32>,
}

impl Host {
    fn new() -> Host {
        setup_accounts();
        support::namespace::enter_private_mount_namespace();
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
            // "running"), runs a probe of its caller if one is set, and
            // records every other call — or fails it while `systemctl-fails`
            // exists.
            format!(
                "#!/bin/sh\nif [ \"$1\" = is-system-running ]; then cat {state} 2>/dev/null || echo running; exit 0; fi\n\
                 if [ -f {probe} ]; then sh {probe} \"$PPID\" >> {probe}.out 2>&1; fi\n\
                 if [ -f {fails} ]; then echo \"FAILED $*\" >> {log}; exit 1; fi\n\
                 echo \"$*\" >> {log}\n",
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

    fn p(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
    fn s(&self, rel: &str) -> String {
        self.p(rel).to_str().unwrap().to_owned()
    }
    fn mount_point(&self) -> String {
        self.s("run/nixseal.d")
    }
    fn symlink(&self) -> String {
        self.s("run/nixseal")
    }
    /// The state directory: the test's own, never the machine's /var/lib.
    fn state_dir(&self) -> String {
        self.s("var/lib/nixseal")
    }
    fn next(&self) -> u32 {
        let n = self.counter.get() + 1;
        self.counter.set(n);
        n
    }

    fn encrypt_to(&self, r: &age::ssh::Recipient, content: &[u8]) -> String {
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
    fn encrypt(&self, content: &[u8]) -> String {
        self.encrypt_to(&self.recipient, content)
    }

    fn secret(&self, name: &str, content: &str, owner: &str, group: &str, mode: &str) -> Value {
        json!({"name": name, "source": self.encrypt(content.as_bytes()),
               "owner": owner, "group": group, "mode": mode,
               "path": format!("{}/{name}", self.symlink()), "symlink": true,
               "restartUnits": [], "reloadUnits": [], "neededForUsers": false})
    }
    fn template(&self, name: &str, content: &str, owner: &str, group: &str, mode: &str) -> Value {
        json!({"name": name, "content": content, "owner": owner, "group": group,
               "mode": mode, "path": format!("{}/{name}", self.symlink())})
    }
    fn manifest_value(&self, secrets: Vec<Value>, templates: Vec<Value>, keep: u32) -> Value {
        json!({"version": 1,
               "hostKeys": [{"path": self.key, "type": "ed25519"}],
               "mountPoint": self.mount_point(), "symlink": self.symlink(),
               "stateDir": self.state_dir(),
               "keepGenerations": keep, "secrets": secrets, "templates": templates})
    }
    fn write_manifest(&self, v: &Value) -> PathBuf {
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
    fn manifest(&self, secrets: Vec<Value>, templates: Vec<Value>, keep: u32) -> PathBuf {
        self.write_manifest(&self.manifest_value(secrets, templates, keep))
    }

    fn command(&self, bin: &Path, manifest: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(bin);
        c.arg("deploy").arg("--manifest").arg(manifest).args(args);
        let path = std::env::var("PATH").unwrap_or_default();
        c.env("PATH", format!("{}:{path}", self.fake_bin.display()));
        c.env_remove("NIXSEAL_FAULT");
        c
    }
    fn deploy(&self, manifest: &Path, args: &[&str]) -> Output {
        self.command(&bin(), manifest, args).output().unwrap()
    }
    fn deploy_ok(&self, manifest: &Path, args: &[&str]) -> Output {
        let out = self.deploy(manifest, args);
        assert!(
            out.status.success(),
            "deploy failed ({:?}): {}",
            out.status,
            stderr(&out)
        );
        out
    }

    fn active(&self) -> String {
        fs::read_link(self.symlink())
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned()
    }
    fn entries(&self, dir: &str) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }
    fn generations(&self) -> Vec<String> {
        self.entries(&self.mount_point())
    }
    fn systemctl_calls(&self) -> Vec<String> {
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

fn recipient_of(key: &Path) -> age::ssh::Recipient {
    let pubkey = fs::read_to_string(key.with_extension("pub"))
        .or_else(|_| fs::read_to_string(format!("{}.pub", key.display())))
        .unwrap();
    let two: Vec<&str> = pubkey.split_whitespace().take(2).collect();
    age::ssh::Recipient::from_str(&two.join(" ")).unwrap()
}

fn mounts_under(prefix: &str) -> Vec<String> {
    let mut v: Vec<String> = fs::read_to_string("/proc/thread-self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_owned))
        .filter(|m| m.starts_with(prefix))
        .collect();
    v.reverse();
    v
}

fn mount_line(path: &str) -> Vec<String> {
    fs::read_to_string("/proc/thread-self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.split(' ').nth(4) == Some(path))
        .map(str::to_owned)
        .collect()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Content, owner, group and mode of a file, following symlinks.
fn file_state(path: &str) -> (Vec<u8>, u32, u32, u32) {
    let mut f = fs::File::open(path).unwrap_or_else(|e| panic!("open {path}: {e}"));
    let md = f.metadata().unwrap();
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).unwrap();
    (buf, md.uid(), md.gid(), md.mode() & 0o7777)
}

fn assert_file(path: &str, content: &str, owner: &str, group: &str, mode: u32) {
    let (c, u, g, m) = file_state(path);
    assert_eq!(String::from_utf8_lossy(&c), content, "content of {path}");
    assert_eq!((u, g), (uid(owner), gid(group)), "owner of {path}");
    assert_eq!(m, mode, "mode of {path}: {m:o}");
}

fn code(o: &Output) -> Option<i32> {
    o.status.code()
}

// ---------------------------------------------------------------- tests

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

#[test]
fn atomic_switch_under_a_reader_loop() {
    let h = Host::new();
    let body = "x".repeat(3000);
    let content = |name: &str, k: usize| format!("{name}:{k:04}:{body}:end");
    let versions: Vec<PathBuf> = (0..200)
        .map(|k| {
            h.manifest(
                vec![
                    h.secret("s1", &content("s1", k), "nxs-alice", "nxs-grp", "0400"),
                    h.secret("s2", &content("s2", k), "nxs-bob", "nxs-other", "0440"),
                ],
                vec![h.template("t", "{{nixseal:s1}}|{{nixseal:s2}}", "root", "root", "0400")],
                1,
            )
        })
        .collect();
    h.deploy_ok(&versions[0], &[]);

    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let expect = [
        ("s1", uid("nxs-alice"), gid("nxs-grp"), 0o400),
        ("s2", uid("nxs-bob"), gid("nxs-other"), 0o440),
        ("t", 0, 0, 0o400),
    ];
    let sl = h.symlink();
    let well_formed = move |name: &str, text: &str| {
        let len = name.len() + 6 + body.len() + 4;
        text.len() == len && text.starts_with(&format!("{name}:")) && text.ends_with(":end")
    };
    let reader = {
        let (stop, reads, errors) = (stop.clone(), reads.clone(), errors.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                for (name, u, g, mode) in expect {
                    let path = format!("{sl}/{name}");
                    let mut f = match fs::File::open(&path) {
                        Ok(f) => f,
                        Err(e) => {
                            let now = fs::read_link(&sl);
                            let gens: Vec<_> = fs::read_dir(format!("{sl}.d"))
                                .map(|d| d.map(|e| e.unwrap().file_name()).collect())
                                .unwrap_or_default();
                            errors
                                .lock()
                                .unwrap()
                                .push(format!("open {path}: {e} (now -> {now:?}, {gens:?})"));
                            return;
                        }
                    };
                    let md = f.metadata().unwrap();
                    let mut text = String::new();
                    f.read_to_string(&mut text).unwrap();
                    let ok = if name == "t" {
                        text.split_once('|')
                            .is_some_and(|(a, b)| well_formed("s1", a) && well_formed("s2", b))
                    } else {
                        well_formed(name, &text)
                    };
                    if !ok {
                        errors
                            .lock()
                            .unwrap()
                            .push(format!("partial {path}: {} bytes", text.len()));
                    }
                    if (md.uid(), md.gid(), md.mode() & 0o7777) != (u, g, mode) {
                        errors.lock().unwrap().push(format!(
                            "{path}: {}:{} {:o}",
                            md.uid(),
                            md.gid(),
                            md.mode()
                        ));
                    }
                    reads.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    for m in versions.iter().skip(1).chain(std::iter::once(&versions[0])) {
        h.deploy_ok(m, &[]);
    }
    stop.store(true, Ordering::Relaxed);
    reader.join().unwrap();
    let errors = errors.lock().unwrap();
    assert!(
        errors.is_empty(),
        "reader saw: {:?}",
        &errors[..errors.len().min(5)]
    );
    let n = reads.load(Ordering::Relaxed);
    assert!(n >= 600, "reader only completed {n} reads");
    assert_eq!(h.active(), format!("{}/201", h.mount_point()));
    std::thread::sleep(GRACE);
    h.deploy_ok(&versions[1], &[]);
    assert_eq!(h.generations(), ["201", "202"]);
}

#[test]
fn kill_9_at_every_step_leaves_one_complete_generation() {
    let h = Host::new();
    let bin = fault_bin();
    let make = |v: &str| {
        let mut c = h.secret("c", &format!("c-{v}"), "nxs-bob", "nxs-grp", "0440");
        c["path"] = h.s("etc/c").into();
        c["symlink"] = false.into();
        c["allowPlaintextOnDisk"] = true.into();
        let mut l = h.secret("l", &format!("l-{v}"), "root", "root", "0400");
        l["path"] = h.s("etc/l").into();
        h.manifest(
            vec![
                h.secret("a", &format!("a-{v}"), "nxs-alice", "nxs-grp", "0400"),
                c,
                l,
            ],
            vec![h.template("t", "{{nixseal:a}}+{{nixseal:c}}", "root", "root", "0400")],
            1,
        )
    };
    let (old, new) = (make("old"), make("new"));
    let state = |v: &str| {
        vec![
            (format!("a-{v}"), uid("nxs-alice"), gid("nxs-grp"), 0o400),
            (format!("c-{v}"), uid("nxs-bob"), gid("nxs-grp"), 0o440),
            (format!("l-{v}"), 0, 0, 0o400),
            (format!("a-{v}+c-{v}"), 0, 0, 0o400),
        ]
    };
    let read_all = || -> Vec<(String, u32, u32, u32)> {
        ["a", "c", "l", "t"]
            .iter()
            .map(|n| {
                let (c, u, g, m) = file_state(&format!("{}/{n}", h.symlink()));
                (String::from_utf8(c).unwrap(), u, g, m)
            })
            .collect()
    };
    let no_leftovers = |ctx: &str| {
        let mut max = 0;
        for e in h.generations() {
            assert!(!e.ends_with(".tmp"), "{ctx}: leftover {e}");
            max = max.max(e.parse::<u64>().unwrap());
        }
        assert_eq!(h.active(), format!("{}/{max}", h.mount_point()), "{ctx}");
        for d in ["run", "etc"] {
            for e in h.entries(&h.s(d)) {
                assert!(!e.contains(".nixseal-"), "{ctx}: leftover {d}/{e}");
            }
        }
    };
    for point in FAULT_POINTS {
        h.deploy_ok(&old, &[]);
        if *point == "mid-prune" {
            // Let the older generations leave the prune grace period.
            std::thread::sleep(GRACE);
        }
        let out = h
            .command(&bin, &new, &[])
            .env("NIXSEAL_FAULT", point)
            .output()
            .unwrap();
        assert_eq!(
            out.status.signal(),
            Some(9),
            "fault point {point} not reached: {:?} {}",
            out.status,
            stderr(&out)
        );
        let seen = read_all();
        assert!(
            seen == state("old") || seen == state("new"),
            "after kill at {point}: {seen:?}"
        );
        // The copy is replaced atomically: old or new, complete, right owner.
        let (c, u, g, m) = file_state(&h.s("etc/c"));
        let c = String::from_utf8(c).unwrap();
        assert!(c == "c-old" || c == "c-new", "{point}: etc/c = {c}");
        assert_eq!(
            (u, g, m),
            (uid("nxs-bob"), gid("nxs-grp"), 0o440),
            "{point}"
        );
        // The next deploy succeeds and cleans up.
        h.deploy_ok(&new, &[]);
        assert_eq!(read_all(), state("new"), "{point}");
        assert_eq!(fs::read_to_string(h.p("etc/c")).unwrap(), "c-new");
        assert_eq!(
            fs::read_link(h.p("etc/l")).unwrap(),
            PathBuf::from(format!("{}/l", h.symlink()))
        );
        no_leftovers(point);
    }
    std::thread::sleep(GRACE);
    h.deploy_ok(&old, &[]);
    assert_eq!(h.generations().len(), 2, "{:?}", h.generations());
}

/// Only meaningful for a normal build: the fault variable must do nothing.
/// The suite runs with `fault-injection`, so `scripts/test` runs this test
/// once more without the feature (and fails if it did not run).
#[cfg(not(feature = "fault-injection"))]
#[test]
fn fault_points_are_compiled_out_of_normal_builds() {
    let h = Host::new();
    let m = h.manifest(vec![h.secret("s", "v", "root", "root", "0400")], vec![], 1);
    for point in FAULT_POINTS {
        let out = h
            .command(&bin(), &m, &[])
            .env("NIXSEAL_FAULT", point)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{point}: {:?} {}",
            out.status,
            stderr(&out)
        );
    }
}

#[test]
fn failures_keep_the_previous_generation() {
    let h = Host::new();
    let good = h.manifest_value(
        vec![
            h.secret("a", "alpha", "nxs-alice", "nxs-grp", "0400"),
            h.secret("b", "beta", "root", "root", "0400"),
        ],
        vec![],
        1,
    );
    h.deploy_ok(&h.write_manifest(&good), &[]);
    let before = h.active();
    let check_intact = |ctx: &str| {
        assert_eq!(h.active(), before, "{ctx}");
        assert_eq!(h.generations(), ["1"], "{ctx}: leftovers");
        assert_file(
            &h.s("run/nixseal/a"),
            "alpha",
            "nxs-alice",
            "nxs-grp",
            0o400,
        );
        assert_file(&h.s("run/nixseal/b"), "beta", "root", "root", 0o400);
    };

    // A corrupt rekeyed file: valid header, damaged payload.
    let mut v = good.clone();
    let src = h.encrypt(b"new-beta-content");
    let mut bytes = fs::read(&src).unwrap();
    let last = bytes.len() - 3;
    bytes[last] ^= 0xff;
    fs::write(&src, bytes).unwrap();
    v["secrets"][1]["source"] = src.into();
    let out = h.deploy(&h.write_manifest(&v), &[]);
    assert_eq!(code(&out), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("secret \"b\""), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("previous generation kept"),
        "{}",
        stderr(&out)
    );
    check_intact("corrupt");

    // A truncated file (header only).
    let mut v = good.clone();
    let src = h.encrypt(b"x");
    let bytes = fs::read(&src).unwrap();
    fs::write(&src, &bytes[..bytes.len() - 20]).unwrap();
    v["secrets"][0]["source"] = src.into();
    let out = h.deploy(&h.write_manifest(&v), &[]);
    assert_eq!(code(&out), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("secret \"a\""), "{}", stderr(&out));
    check_intact("truncated");

    // The wrong host key: every secret fails and says why.
    let other = h.p("other_key");
    run_ok(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", ""])
            .arg("-f")
            .arg(&other),
    );
    let mut v = good.clone();
    v["hostKeys"][0]["path"] = other.to_str().unwrap().into();
    let out = h.deploy(&h.write_manifest(&v), &[]);
    assert_eq!(code(&out), Some(1), "{}", stderr(&out));
    let e = stderr(&out);
    assert!(
        e.contains("secret \"a\"") && e.contains("secret \"b\""),
        "{e}"
    );
    assert!(e.contains("not encrypted to this host's key"), "{e}");
    check_intact("wrong key");

    // A missing host key: environment error naming the path.
    let mut v = good.clone();
    v["hostKeys"][0]["path"] = h.s("persist/etc/ssh/ssh_host_ed25519_key").into();
    let out = h.deploy(&h.write_manifest(&v), &[]);
    assert_eq!(code(&out), Some(3), "{}", stderr(&out));
    let e = stderr(&out);
    assert!(
        e.contains("persist/etc/ssh/ssh_host_ed25519_key") && e.contains("/persist"),
        "{e}"
    );
    check_intact("missing key");

    // An unreadable key (a directory) is also named.
    let mut v = good.clone();
    v["hostKeys"][0]["path"] = h.s("src").into();
    let out = h.deploy(&h.write_manifest(&v), &[]);
    assert_eq!(code(&out), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains(&h.s("src")), "{}", stderr(&out));
    check_intact("unreadable key");
}

#[test]
fn restarts_and_reloads_only_units_of_changed_secrets_once() {
    let h = Host::new();
    // Pretend systemd is PID 1, inside this test's mount namespace only.
    nix::mount::mount(
        Some("tmpfs"),
        "/run",
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .unwrap();
    fs::create_dir_all("/run/systemd/system").unwrap();
    let sec = |name: &str, content: &str, owner: &str, restart: &[&str], reload: &[&str]| {
        let mut s = h.secret(name, content, owner, "nxs-grp", "0400");
        s["restartUnits"] = json!(restart);
        s["reloadUnits"] = json!(reload);
        s
    };
    let m = |a: &str, b_owner: &str, c_mode: &str| {
        let mut c = sec("c", "c", "root", &["w.service"], &["z.service"]);
        c["mode"] = c_mode.into();
        h.manifest(
            vec![
                sec(
                    "a",
                    a,
                    "nxs-alice",
                    &["x.service", "y.service"],
                    &["z.service"],
                ),
                sec(
                    "b",
                    "b",
                    b_owner,
                    &["x.service"],
                    &["z.service", "r.service"],
                ),
                c,
                sec("d", "d", "root", &["never.service"], &[]),
            ],
            vec![],
            1,
        )
    };
    let out = h.deploy_ok(&m("a1", "nxs-alice", "0400"), &[]);
    // First deploy: everything is new (said once, not as a list of names).
    assert!(
        stderr(&out).contains("every secret is new") && !stderr(&out).contains("changed:"),
        "{}",
        stderr(&out)
    );
    let calls = h.systemctl_calls();
    assert_eq!(
        calls,
        [
            "try-restart --no-block -- x.service y.service w.service never.service",
            "try-reload-or-restart --no-block -- z.service r.service"
        ]
    );
    fs::remove_file(&h.systemctl_log).unwrap();

    // No change: nothing called.
    h.deploy_ok(&m("a1", "nxs-alice", "0400"), &[]);
    assert_eq!(h.systemctl_calls(), Vec::<String>::new());

    // a's content and b's owner change: x and y restarted once, z and r reloaded once.
    let out = h.deploy_ok(&m("a2", "nxs-bob", "0400"), &[]);
    assert_eq!(
        h.systemctl_calls(),
        [
            "try-restart --no-block -- x.service y.service",
            "try-reload-or-restart --no-block -- z.service r.service"
        ],
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("nixseal: changed: a b\n"),
        "{}",
        stderr(&out)
    );
    fs::remove_file(&h.systemctl_log).unwrap();

    // c's mode changes.
    h.deploy_ok(&m("a2", "nxs-bob", "0440"), &[]);
    assert_eq!(
        h.systemctl_calls(),
        [
            "try-restart --no-block -- w.service",
            "try-reload-or-restart --no-block -- z.service"
        ]
    );
    fs::remove_file(&h.systemctl_log).unwrap();

    // While the system is still booting, nothing is restarted: units that
    // use the secrets have not started yet.
    fs::write(h.dir.path().join("system-state"), "starting\n").unwrap();
    let out = h.deploy_ok(&m("a2b", "nxs-bob", "0440"), &[]);
    assert!(stderr(&out).contains("still booting"), "{}", stderr(&out));
    assert_eq!(h.systemctl_calls(), Vec::<String>::new());
    fs::remove_file(h.dir.path().join("system-state")).unwrap();

    // --no-restart and --dry-run call nothing.
    let out = h.deploy_ok(&m("a3", "nxs-bob", "0440"), &["--no-restart"]);
    assert!(stderr(&out).contains("--no-restart"), "{}", stderr(&out));
    h.deploy_ok(&m("a4", "nxs-bob", "0440"), &["--dry-run"]);
    assert_eq!(h.systemctl_calls(), Vec::<String>::new());

    // Without systemd as PID 1, nothing is called either.
    nix::mount::umount2("/run", nix::mount::MntFlags::MNT_DETACH).unwrap();
    if !Path::new("/run/systemd/system").exists() {
        let out = h.deploy_ok(&m("a5", "nxs-bob", "0440"), &[]);
        assert!(
            stderr(&out).contains("systemd is not running"),
            "{}",
            stderr(&out)
        );
        assert_eq!(h.systemctl_calls(), Vec::<String>::new());
    }
}

#[test]
fn hostile_filesystem_is_refused_or_handled_without_following_links() {
    let h = Host::new();
    let outside = h.p("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("victim"), "victim").unwrap();
    let mk = |extra: Vec<Value>| {
        let mut v = vec![h.secret("s", "plaintext-s", "nxs-alice", "nxs-grp", "0400")];
        v.extend(extra);
        h.manifest(v, vec![], 1)
    };
    h.deploy_ok(&mk(vec![]), &[]);

    // A symlink planted at the next <n>.tmp.
    std::os::unix::fs::symlink(&outside, format!("{}/2.tmp", h.mount_point())).unwrap();
    h.deploy_ok(&mk(vec![]), &[]);
    assert_eq!(h.entries(outside.to_str().unwrap()), ["victim"]);
    assert_eq!(h.generations(), ["1", "3"]);

    // Symlinks planted at custom paths (copy and symlink mode) are neither
    // followed nor replaced: nixseal did not create them. Refused before the
    // switch, so the previous generation stays active.
    fs::create_dir(h.p("etc")).unwrap();
    std::os::unix::fs::symlink(outside.join("victim"), h.p("etc/copy")).unwrap();
    std::os::unix::fs::symlink(outside.join("victim"), h.p("etc/link")).unwrap();
    let mut c = h.secret("c", "plaintext-c", "nxs-alice", "nxs-grp", "0400");
    c["path"] = h.s("etc/copy").into();
    c["symlink"] = false.into();
    c["allowPlaintextOnDisk"] = true.into();
    let mut l = h.secret("l", "plaintext-l", "root", "root", "0400");
    l["path"] = h.s("etc/link").into();
    let before = h.active();
    let out = h.deploy(&mk(vec![c.clone(), l.clone()]), &[]);
    assert_eq!(code(&out), Some(1), "{}", stderr(&out));
    for p in ["etc/copy", "etc/link"] {
        assert!(
            stderr(&out).contains(&format!("{}: it holds a symlink to", h.s(p))),
            "{}",
            stderr(&out)
        );
        assert_eq!(fs::read_link(h.p(p)).unwrap(), outside.join("victim"));
    }
    assert!(stderr(&out).contains("previous generation kept"));
    assert_eq!(h.active(), before);
    assert_eq!(
        fs::read_to_string(outside.join("victim")).unwrap(),
        "victim"
    );
    assert_eq!(
        h.entries(&h.s("etc")),
        ["copy", "link"],
        "no temporaries left"
    );
    // Once the admin moves them away, nixseal places its own.
    fs::remove_file(h.p("etc/copy")).unwrap();
    fs::remove_file(h.p("etc/link")).unwrap();
    h.deploy_ok(&mk(vec![c.clone(), l]), &[]);
    assert!(fs::symlink_metadata(h.p("etc/copy")).unwrap().is_file());
    assert_file(
        &h.s("etc/copy"),
        "plaintext-c",
        "nxs-alice",
        "nxs-grp",
        0o400,
    );
    assert_eq!(
        fs::read_link(h.p("etc/link")).unwrap(),
        PathBuf::from(format!("{}/l", h.symlink()))
    );

    // A symlinked parent of a custom path is refused; nothing lands behind it.
    std::os::unix::fs::symlink(&outside, h.p("etc2")).unwrap();
    let mut c2 = c.clone();
    c2["path"] = h.s("etc2/copy").into();
    let out = h.deploy(&mk(vec![c2]), &[]);
    assert_eq!(code(&out), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("etc2 is a symlink"),
        "{}",
        stderr(&out)
    );
    assert_eq!(h.entries(outside.to_str().unwrap()), ["victim"]);

    // A world-writable (non-sticky) directory on the way to a custom path.
    fs::create_dir(h.p("open")).unwrap();
    fs::set_permissions(h.p("open"), fs::Permissions::from_mode(0o777)).unwrap();
    let mut c3 = c.clone();
    c3["path"] = h.s("open/copy").into();
    let out = h.deploy(&mk(vec![c3]), &[]);
    assert_eq!(code(&out), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("writable by users other than root"),
        "{}",
        stderr(&out)
    );
    assert!(!h.p("open/copy").exists());
}

#[test]
fn unusable_mount_points_are_refused() {
    let h = Host::new();
    let m = h.manifest(
        vec![h.secret("s", "plain", "root", "root", "0400")],
        vec![],
        1,
    );

    // Another filesystem mounted there (a bind mount of a disk directory).
    let disk = h.p("disk");
    fs::create_dir(&disk).unwrap();
    fs::create_dir_all(h.mount_point()).unwrap();
    nix::mount::mount(
        Some(&disk),
        h.mount_point().as_str(),
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .unwrap();
    let out = h.deploy(&m, &[]);
    assert_eq!(code(&out), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("already holds a"), "{}", stderr(&out));
    assert!(h.entries(disk.to_str().unwrap()).is_empty());
    assert!(!h.p("run/nixseal").exists());
    nix::mount::umount2(h.mount_point().as_str(), nix::mount::MntFlags::MNT_DETACH).unwrap();

    // A tmpfs mounted there is not nixseal's, even root-owned 0751.
    nix::mount::mount(
        Some("tmpfs"),
        h.mount_point().as_str(),
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("mode=0751"),
    )
    .unwrap();
    let out = h.deploy(&m, &[]);
    assert_eq!(code(&out), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("already holds a tmpfs mount"),
        "{}",
        stderr(&out)
    );
    assert!(h.generations().is_empty());
    assert!(!h.p("run/nixseal").exists());
    nix::mount::umount2(h.mount_point().as_str(), nix::mount::MntFlags::MNT_DETACH).unwrap();

    // A symlink at the mount point.
    let h2 = Host::new();
    let m2 = h2.manifest(
        vec![h2.secret("s", "plain", "root", "root", "0400")],
        vec![],
        1,
    );
    fs::create_dir(h2.p("run")).unwrap();
    std::os::unix::fs::symlink(h2.p("disk"), h2.mount_point()).unwrap();
    fs::create_dir(h2.p("disk")).unwrap();
    let out = h2.deploy(&m2, &[]);
    assert_eq!(code(&out), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("is a symlink"), "{}", stderr(&out));
    assert!(mount_line(&h2.mount_point()).is_empty());
    assert!(h2.entries(&h2.s("disk")).is_empty());

    // A directory where the symlink should be: refused before any
    // generation is made, the directory untouched.
    let h4 = Host::new();
    let m4 = h4.manifest(
        vec![h4.secret("s", "plain", "root", "root", "0400")],
        vec![],
        1,
    );
    fs::create_dir_all(h4.p("run/nixseal/keep")).unwrap();
    let out = h4.deploy(&m4, &[]);
    assert_eq!(code(&out), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("holds a directory, which nixseal did not create"),
        "{}",
        stderr(&out)
    );
    assert!(h4.generations().is_empty(), "{:?}", h4.generations());
    assert_eq!(h4.entries(&h4.s("run/nixseal")), ["keep"]);

    // A world-writable parent of the mount point.
    let h3 = Host::new();
    let m3 = h3.manifest(
        vec![h3.secret("s", "plain", "root", "root", "0400")],
        vec![],
        1,
    );
    fs::create_dir(h3.p("run")).unwrap();
    fs::set_permissions(h3.p("run"), fs::Permissions::from_mode(0o777)).unwrap();
    let out = h3.deploy(&m3, &[]);
    assert_eq!(code(&out), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("writable by users other than root"),
        "{}",
        stderr(&out)
    );
    assert!(h3.entries(&h3.s("run")).is_empty());
    assert!(mount_line(&h3.mount_point()).is_empty());
}

#[test]
fn concurrent_deploys_serialise() {
    let h = Host::new();
    let m = |v: &str| {
        h.manifest(
            vec![
                h.secret("a", &format!("a-{v}"), "nxs-alice", "nxs-grp", "0400"),
                h.secret("b", &format!("b-{v}"), "root", "root", "0400"),
            ],
            vec![],
            1,
        )
    };
    let (one, two) = (m("one"), m("two"));
    for _ in 0..5 {
        let c1 = h
            .command(&bin(), &one, &[])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let c2 = h
            .command(&bin(), &two, &[])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (o1, o2) = (
            c1.wait_with_output().unwrap(),
            c2.wait_with_output().unwrap(),
        );
        assert!(o1.status.success(), "{}", stderr(&o1));
        assert!(o2.status.success(), "{}", stderr(&o2));
        let a = fs::read_to_string(h.s("run/nixseal/a")).unwrap();
        let b = fs::read_to_string(h.s("run/nixseal/b")).unwrap();
        assert!(
            (a == "a-one" && b == "b-one") || (a == "a-two" && b == "b-two"),
            "{a} {b}"
        );
        let newest = h
            .generations()
            .iter()
            .map(|g| g.parse::<u64>().unwrap())
            .max();
        assert_eq!(
            h.active(),
            format!("{}/{}", h.mount_point(), newest.unwrap())
        );
    }

    // The second waits for the lock, then runs.
    let lock = fs::File::open(h.s("run/.nixseal.d.lock")).unwrap();
    let held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive).unwrap();
    let mut child = h.command(&bin(), &one, &[]).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "deploy ran while locked"
    );
    drop(held);
    assert!(child.wait().unwrap().success());
    assert_eq!(fs::read_to_string(h.s("run/nixseal/a")).unwrap(), "a-one");
}

#[test]
fn bad_input_is_refused_before_touching_anything() {
    let h = Host::new();
    let good = h.manifest_value(
        vec![
            h.secret("a", "x", "nxs-alice", "nxs-grp", "0400"),
            h.secret("b", "y", "root", "root", "0400"),
        ],
        vec![h.template("t", "{{nixseal:a}}", "root", "root", "0400")],
        1,
    );
    let ecdsa = h.p("ecdsa_key");
    run_ok(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ecdsa", "-N", ""])
            .arg("-f")
            .arg(&ecdsa),
    );
    let locked = h.p("locked_key");
    run_ok(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "a passphrase"])
            .arg("-f")
            .arg(&locked),
    );
    let not_age = h.p("src/not-age");
    fs::write(&not_age, "just text").unwrap();

    type Edit = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Edit, i32, String)> = vec![
        (
            "unknown version",
            Box::new(|v| v["version"] = 2.into()),
            2,
            "has version 2".into(),
        ),
        (
            "unknown field",
            Box::new(|v| v["extra"] = 1.into()),
            2,
            "unknown field `extra`".into(),
        ),
        (
            "unknown secret field",
            Box::new(|v| v["secrets"][0]["owners"] = "x".into()),
            2,
            "unknown field `owners`".into(),
        ),
        (
            "duplicate name",
            Box::new(|v| v["secrets"][1]["name"] = "a".into()),
            2,
            "\"a\" is used twice".into(),
        ),
        (
            "secret/template name clash",
            Box::new(|v| v["templates"][0]["name"] = "b".into()),
            2,
            "\"b\" is used twice".into(),
        ),
        (
            "duplicate path",
            Box::new(|v| {
                v["secrets"][0]["path"] = "/etc/nxs-dup".into();
                v["secrets"][1]["path"] = "/etc/nxs-dup".into();
            }),
            2,
            "are the same path".into(),
        ),
        (
            "slash in name",
            Box::new(|v| v["secrets"][0]["name"] = "a/b".into()),
            2,
            "contains `/`".into(),
        ),
        (
            "dotdot in name",
            Box::new(|v| v["secrets"][0]["name"] = "..".into()),
            2,
            "contains `..`".into(),
        ),
        (
            "relative path",
            Box::new(|v| v["secrets"][0]["path"] = "run/x".into()),
            2,
            "is not an absolute path".into(),
        ),
        (
            "store path",
            Box::new(|v| v["secrets"][0]["path"] = "/nix/store/abc-x".into()),
            2,
            "inside /nix/store".into(),
        ),
        (
            "store mount point",
            Box::new(|v| v["mountPoint"] = "/nix/store/nxs".into()),
            2,
            "inside /nix/store".into(),
        ),
        (
            "dotdot path",
            Box::new(|v| v["symlink"] = "/run/../etc/nxs".into()),
            2,
            "not normalised".into(),
        ),
        (
            "symlink inside mount point",
            Box::new(|v| v["symlink"] = format!("{}/x", v["mountPoint"].as_str().unwrap()).into()),
            2,
            "inside one another".into(),
        ),
        (
            "mode 999",
            Box::new(|v| v["secrets"][0]["mode"] = "999".into()),
            2,
            "mode \"999\"".into(),
        ),
        (
            "mode 0o400",
            Box::new(|v| v["secrets"][0]["mode"] = "0o400".into()),
            2,
            "mode \"0o400\"".into(),
        ),
        (
            "mode -1",
            Box::new(|v| v["templates"][0]["mode"] = "-1".into()),
            2,
            "mode \"-1\"".into(),
        ),
        (
            "mode as number",
            Box::new(|v| v["secrets"][0]["mode"] = 400.into()),
            2,
            "invalid type".into(),
        ),
        (
            "negative keep",
            Box::new(|v| v["keepGenerations"] = (-1).into()),
            2,
            "expected u32".into(),
        ),
        (
            "unknown user",
            Box::new(|v| v["secrets"][0]["owner"] = "nxs-nobody-such".into()),
            2,
            "user \"nxs-nobody-such\" does not exist".into(),
        ),
        (
            "unknown group",
            Box::new(|v| v["templates"][0]["group"] = "nxs-nogroup-such".into()),
            2,
            "group \"nxs-nogroup-such\" does not exist".into(),
        ),
        (
            "template names missing secret",
            Box::new(|v| v["templates"][0]["content"] = "{{nixseal:zz}}".into()),
            2,
            "{{nixseal:zz}} names no secret".into(),
        ),
        (
            "unterminated placeholder",
            Box::new(|v| v["templates"][0]["content"] = "{{nixseal:a".into()),
            2,
            "without a closing".into(),
        ),
        (
            "source missing",
            Box::new(|v| v["secrets"][1]["source"] = "/nonexistent/nxs.age".into()),
            2,
            "/nonexistent/nxs.age: does not exist".into(),
        ),
        (
            "source not age",
            {
                let p = not_age.clone();
                Box::new(move |v| v["secrets"][1]["source"] = p.to_str().unwrap().into())
            },
            2,
            "is not a binary age file".into(),
        ),
        (
            "host key type in manifest",
            Box::new(|v| v["hostKeys"][0]["type"] = "rsa".into()),
            2,
            "only \"ed25519\"".into(),
        ),
        (
            "no host keys",
            Box::new(|v| v["hostKeys"] = json!([])),
            2,
            "hostKeys is empty".into(),
        ),
        (
            "unit that looks like an option",
            Box::new(|v| v["secrets"][0]["restartUnits"] = json!(["--all"])),
            2,
            "unit name \"--all\"".into(),
        ),
        (
            "users secret under the main symlink",
            Box::new(|v| v["secrets"][0]["neededForUsers"] = true.into()),
            2,
            "neededForUsers".into(),
        ),
        (
            "host key of the wrong type",
            {
                let p = ecdsa.clone();
                Box::new(move |v| v["hostKeys"][0]["path"] = p.to_str().unwrap().into())
            },
            3,
            "ecdsa".into(),
        ),
        (
            "passphrase-protected host key",
            {
                let p = locked.clone();
                Box::new(move |v| v["hostKeys"][0]["path"] = p.to_str().unwrap().into())
            },
            3,
            "passphrase-protected".into(),
        ),
        (
            "host key is a directory",
            {
                let p = h.s("src");
                Box::new(move |v| v["hostKeys"][0]["path"] = p.clone().into())
            },
            3,
            "cannot read host key".into(),
        ),
        (
            "missing host key",
            Box::new(|v| v["hostKeys"][0]["path"] = "/persist/nxs/ssh_host_ed25519_key".into()),
            3,
            "/persist/nxs/ssh_host_ed25519_key does not exist".into(),
        ),
    ];
    // Issue 10.1 and 10.10: system directories, and names or paths that do
    // not fit the file system once nixseal adds its own suffixes.
    let etc = h.s("etc");
    let long = |n: usize| "x".repeat(n);
    let more: Vec<(&str, Edit, i32, String)> = vec![
        (
            "mountPoint /run",
            Box::new(|v| v["mountPoint"] = "/run".into()),
            2,
            "is a system directory".into(),
        ),
        (
            "mountPoint /etc",
            Box::new(|v| v["mountPoint"] = "/etc".into()),
            2,
            "is a system directory".into(),
        ),
        (
            "mountPoint /var/lib",
            Box::new(|v| v["mountPoint"] = "/var/lib".into()),
            2,
            "is a system directory".into(),
        ),
        (
            "symlink /etc",
            Box::new(|v| v["symlink"] = "/etc".into()),
            2,
            "is a system directory".into(),
        ),
        (
            "symlink /",
            Box::new(|v| v["symlink"] = "/".into()),
            2,
            "is the root directory".into(),
        ),
        (
            "stateDir /var/lib",
            Box::new(|v| v["stateDir"] = "/var/lib".into()),
            2,
            "is a system directory".into(),
        ),
        (
            "stateDir relative",
            Box::new(|v| v["stateDir"] = "var/lib/x".into()),
            2,
            "is not an absolute path".into(),
        ),
        (
            "custom path in /proc",
            Box::new(|v| v["secrets"][0]["path"] = "/proc/nxs".into()),
            2,
            "kernel file system".into(),
        ),
        (
            "custom path /home",
            Box::new(|v| v["secrets"][0]["path"] = "/home".into()),
            2,
            "is a system directory".into(),
        ),
        (
            "stateDir inside the mount point",
            Box::new(|v| {
                v["stateDir"] = format!("{}/state", v["mountPoint"].as_str().unwrap()).into()
            }),
            2,
            "inside one another".into(),
        ),
        (
            "custom path inside stateDir",
            Box::new(|v| {
                v["secrets"][0]["path"] = format!("{}/x", v["stateDir"].as_str().unwrap()).into()
            }),
            2,
            "overlap".into(),
        ),
        (
            "custom path whose temporary name is too long",
            Box::new({
                let p = format!("{etc}/{}", long(245));
                move |v| v["secrets"][0]["path"] = p.clone().into()
            }),
            2,
            "exceeds the 255 bytes a file name may have".into(),
        ),
        (
            "custom path with a 256-byte component",
            Box::new({
                let p = format!("{etc}/{}/x", long(256));
                move |v| v["secrets"][0]["path"] = p.clone().into()
            }),
            2,
            "has a component of 256 bytes".into(),
        ),
        (
            "custom path longer than PATH_MAX",
            Box::new({
                let p = format!("{etc}{}", format!("/{}", long(200)).repeat(21));
                move |v| v["secrets"][0]["path"] = p.clone().into()
            }),
            2,
            "exceeds PATH_MAX".into(),
        ),
        (
            "symlink too long with its temporary name",
            Box::new({
                let p = format!("{etc}/{}", long(240));
                move |v| v["symlink"] = p.clone().into()
            }),
            2,
            "exceeds the 255 bytes".into(),
        ),
        (
            "mount point too long with -for-users and .lock",
            Box::new({
                let p = format!("{etc}/{}", long(245));
                move |v| v["mountPoint"] = p.clone().into()
            }),
            2,
            "exceeds the 255 bytes".into(),
        ),
        (
            "secret name of 111 bytes",
            Box::new({
                let n = long(111);
                move |v| v["secrets"][0]["name"] = n.clone().into()
            }),
            2,
            "is 111 bytes long".into(),
        ),
        (
            "template name of 111 bytes",
            Box::new({
                let n = long(111);
                move |v| v["templates"][0]["name"] = n.clone().into()
            }),
            2,
            "template name".into(),
        ),
    ];
    let cases: Vec<_> = cases.into_iter().chain(more).collect();
    for (what, edit, want, needle) in &cases {
        let mut v = good.clone();
        edit(&mut v);
        let out = h.deploy(&h.write_manifest(&v), &[]);
        let e = stderr(&out);
        assert_eq!(code(&out), Some(*want), "{what}: {e}");
        assert!(e.contains(needle.as_str()), "{what}: {needle:?} not in {e}");
        assert!(!h.p("run").exists(), "{what}: touched {:?}", h.p("run"));
    }
    // Not JSON, not a manifest file at all, and a usage error.
    for (what, bytes) in [
        ("not json", &b"{\"version\":1,"[..]),
        ("array", b"[]"),
        ("empty file", b""),
    ] {
        let p = h.p("raw.json");
        fs::write(&p, bytes).unwrap();
        let out = h.deploy(&p, &[]);
        assert_eq!(code(&out), Some(2), "{what}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("raw.json"),
            "{what}: {}",
            stderr(&out)
        );
    }
    let out = h.deploy(&h.p("src"), &[]);
    assert_eq!(code(&out), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot read manifest"),
        "{}",
        stderr(&out)
    );
    let out = h.deploy(&h.p("nonexistent.json"), &[]);
    assert_eq!(code(&out), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("nonexistent.json"),
        "{}",
        stderr(&out)
    );
    let out = Command::new(bin())
        .args(["deploy", "--bogus"])
        .output()
        .unwrap();
    assert_eq!(code(&out), Some(2));
    assert!(!h.p("run").exists());

    // The manifest itself was fine all along.
    h.deploy_ok(&h.write_manifest(&good), &[]);
}

// ------------------------------------------- hardening (issue 10, host side)

impl Host {
    /// Pretends systemd is PID 1, inside this test's mount namespace only.
    fn fake_systemd(&self) {
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
    fn clear_systemctl_log(&self) {
        let _ = fs::remove_file(&self.systemctl_log);
    }
    /// Runs deploy with a time limit; a hang is a failure.
    fn deploy_within(&self, manifest: &Path, args: &[&str], limit: Duration) -> Output {
        run_within(&mut self.command(&bin(), manifest, args), limit)
    }
}

/// Runs `cmd` (stdout/stderr into files, so a chatty child cannot block on
/// a full pipe) and kills it if it has not finished within `limit`.
fn run_within(cmd: &mut Command, limit: Duration) -> Output {
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

fn mount_ramfs(path: &str, source: &str, data: &str) {
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

fn umount(path: &str) {
    nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH).unwrap();
}

/// Issue 10.1: a mount at mountPoint is reused only if nixseal made it.
#[test]
fn mount_point_is_trusted_only_if_nixseal_mounted_it() {
    let h = Host::new();
    let m = h.manifest(
        vec![h.secret("s", "plain", "root", "root", "0400")],
        vec![],
        1,
    );
    let mp = h.mount_point();
    let refused = |what: &str, needle: &str| {
        let out = h.deploy(&m, &[]);
        assert_eq!(code(&out), Some(3), "{what}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(needle),
            "{what}: {needle:?} not in {}",
            stderr(&out)
        );
        assert!(
            stderr(&out).contains(&mp),
            "{what}: mount not named: {}",
            stderr(&out)
        );
        assert!(!h.p("run/nixseal").exists(), "{what}: symlink made");
    };

    // A world-writable tmpfs (what a careless unit or user setup leaves).
    fs::create_dir_all(&mp).unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        mp.as_str(),
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("mode=1777"),
    )
    .unwrap();
    refused("tmpfs 1777", "already holds a tmpfs mount");
    assert!(h.generations().is_empty(), "wrote into the tmpfs");
    umount(&mp);

    // A ramfs of mode 0777, even with nixseal's source name and flags.
    mount_ramfs(&mp, "nixseal", "mode=0777");
    refused("ramfs 0777", "mode 0777, not root:root 0751");
    assert!(h.generations().is_empty());
    umount(&mp);

    // nixseal's ramfs, but holding an entry someone else created (as a
    // user could while it was 0777).
    mount_ramfs(&mp, "nixseal", "mode=0751");
    fs::create_dir(format!("{mp}/5")).unwrap();
    nix::unistd::chown(
        format!("{mp}/5").as_str(),
        Some(nix::unistd::Uid::from_raw(uid("nxs-alice"))),
        None,
    )
    .unwrap();
    refused(
        "foreign entry",
        &format!("owned by uid {}", uid("nxs-alice")),
    );
    fs::remove_dir(format!("{mp}/5")).unwrap();
    // ... or a generation others can write to.
    fs::create_dir(format!("{mp}/5")).unwrap();
    fs::set_permissions(format!("{mp}/5"), fs::Permissions::from_mode(0o777)).unwrap();
    refused("writable entry", "others could add files to it");
    fs::remove_dir(format!("{mp}/5")).unwrap();
    umount(&mp);

    // A ramfs without noexec (not mounted by nixseal).
    fs::create_dir_all(&mp).unwrap();
    nix::mount::mount(
        Some("nixseal"),
        mp.as_str(),
        Some("ramfs"),
        nix::mount::MsFlags::empty(),
        Some("mode=0751"),
    )
    .unwrap();
    refused(
        "ramfs without nosuid,nodev,noexec",
        "already holds a ramfs mount",
    );
    umount(&mp);

    // A bind mount of a directory a user owns.
    let user_dir = h.p("home-alice");
    fs::create_dir(&user_dir).unwrap();
    nix::unistd::chown(
        &user_dir,
        Some(nix::unistd::Uid::from_raw(uid("nxs-alice"))),
        None,
    )
    .unwrap();
    nix::mount::mount(
        Some(&user_dir),
        mp.as_str(),
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .unwrap();
    refused(
        "bind mount of a user's directory",
        "which nixseal did not mount",
    );
    assert!(h.entries(user_dir.to_str().unwrap()).is_empty());
    umount(&mp);

    // A bind mount of a directory inside a real nixseal ramfs.
    let other = h.s("other.d");
    mount_ramfs(&other, "nixseal", "mode=0751");
    fs::create_dir(format!("{other}/sub")).unwrap();
    nix::mount::mount(
        Some(other.as_str()),
        mp.as_str(),
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .unwrap();
    let _ = fs::remove_dir(format!("{other}/sub"));
    umount(&mp);
    fs::create_dir(format!("{other}/sub")).unwrap();
    nix::mount::mount(
        Some(format!("{other}/sub").as_str()),
        mp.as_str(),
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .unwrap();
    refused("bind mount of a subdirectory", "a bind mount of /sub");
    umount(&mp);
    umount(&other);

    // A directory that is not empty: never mounted over.
    fs::write(format!("{mp}/admin-file"), "keep").unwrap();
    refused("non-empty directory", "is a directory that is not empty");
    assert!(mount_line(&mp).is_empty(), "mounted over files");
    assert_eq!(
        fs::read_to_string(format!("{mp}/admin-file")).unwrap(),
        "keep"
    );
    fs::remove_file(format!("{mp}/admin-file")).unwrap();

    // What nixseal mounted itself is reused.
    h.deploy_ok(&m, &[]);
    h.deploy_ok(&m, &[]);
    assert_eq!(mount_line(&mp).len(), 1);
    assert!(
        mount_line(&mp)[0].contains(" - ramfs nixseal "),
        "{:?}",
        mount_line(&mp)
    );
}

/// Issue 10.1: the directories nixseal creates names in must be root's
/// alone — a sticky world-writable directory such as /tmp is not.
#[test]
fn sticky_world_writable_parents_are_refused() {
    let h = Host::new();
    let sticky = h.p("sticky");
    fs::create_dir(&sticky).unwrap();
    fs::set_permissions(&sticky, fs::Permissions::from_mode(0o1777)).unwrap();
    let s = h.secret("s", "plain", "root", "root", "0400");
    for (field, value) in [
        ("mountPoint", h.s("sticky/nixseal.d")),
        ("symlink", h.s("sticky/nixseal")),
    ] {
        let mut v = h.manifest_value(vec![s.clone()], vec![], 1);
        v[field] = value.clone().into();
        let out = h.deploy(&h.write_manifest(&v), &[]);
        assert_eq!(code(&out), Some(3), "{field}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("the sticky bit does not keep others from creating names"),
            "{field}: {}",
            stderr(&out)
        );
        assert!(
            h.entries(sticky.to_str().unwrap()).is_empty(),
            "{field}: created something"
        );
    }
    // A custom path in a sticky world-writable directory: refused too.
    let mut c = s.clone();
    c["name"] = "c".into();
    c["path"] = h.s("sticky/c").into();
    let out = h.deploy(&h.manifest(vec![s, c], vec![], 1), &[]);
    assert_eq!(code(&out), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("sticky bit"), "{}", stderr(&out));
    assert!(h.entries(sticky.to_str().unwrap()).is_empty());
    assert!(!h.p("run/nixseal").exists(), "switched despite the refusal");
}

/// Issue 10.2: only names nixseal creates count as generations.
#[test]
fn absurd_generation_names_never_steer_the_counter() {
    let h = Host::new();
    let m = |v: &str| h.manifest(vec![h.secret("s", v, "root", "root", "0400")], vec![], 1);
    h.deploy_ok(&m("one"), &[]);
    let mp = h.mount_point();
    let absurd = [
        "18446744073709551615",
        "18446744073709551616",
        "99999999999999999999999",
        "1000000000000",
        "0",
        "007",
        "1e3",
        "18446744073709551615.tmp",
    ];
    for a in absurd {
        fs::create_dir(format!("{mp}/{a}")).unwrap();
    }
    let out = h.deploy(&m("two"), &[]);
    assert!(out.status.success(), "{:?} {}", out.status, stderr(&out));
    assert_eq!(h.active(), format!("{mp}/2"));
    assert_eq!(fs::read_to_string(h.s("run/nixseal/s")).unwrap(), "two");
    std::thread::sleep(GRACE);
    h.deploy_ok(&m("three"), &[]);
    assert_eq!(h.active(), format!("{mp}/3"));
    // Foreign entries are left alone, never pruned or counted.
    for a in absurd {
        assert!(Path::new(&format!("{mp}/{a}")).is_dir(), "{a} removed");
    }
    // The highest number nixseal would make, planted by hand: the next
    // deploy takes the lowest free number instead of wrapping or failing.
    fs::create_dir(format!("{mp}/999999999999")).unwrap();
    h.deploy_ok(&m("four"), &[]);
    assert_eq!(fs::read_to_string(h.s("run/nixseal/s")).unwrap(), "four");
    assert_eq!(h.active(), format!("{mp}/1"));
    h.deploy_ok(&m("five"), &[]);
    assert_eq!(fs::read_to_string(h.s("run/nixseal/s")).unwrap(), "five");
}

/// Issue 10.3: nobody else can plant or hold the lock, and nothing nixseal
/// writes may be the lock.
#[test]
fn the_lock_cannot_be_planted_or_held_by_others() {
    let h = Host::new();
    let m = h.manifest(
        vec![h.secret("s", "plain", "root", "root", "0400")],
        vec![],
        1,
    );
    h.deploy_ok(&m, &[]);
    let lock = h.s("run/.nixseal.d.lock");
    let md = fs::symlink_metadata(&lock).unwrap();
    assert_eq!((md.uid(), md.mode() & 0o7777), (0, 0o600));
    // Another user cannot even open it, so cannot flock it.
    let out = Command::new("setpriv")
        .args([
            "--reuid",
            "nxs-alice",
            "--regid",
            "nxs-grp",
            "--clear-groups",
            "flock",
            "-n",
        ])
        .arg(&lock)
        .arg("true")
        .output()
        .unwrap();
    assert!(!out.status.success(), "a user could flock the lock");
    assert!(
        stderr(&out).contains("Permission denied"),
        "{}",
        stderr(&out)
    );

    // A lock file others could open (root's, but 0644: a user could hold
    // it forever) or one a user owns is refused, not waited on.
    for (mode, owner) in [(0o644, 0), (0o600, uid("nxs-alice"))] {
        fs::remove_file(&lock).unwrap();
        fs::write(&lock, "").unwrap();
        fs::set_permissions(&lock, fs::Permissions::from_mode(mode)).unwrap();
        nix::unistd::chown(lock.as_str(), Some(nix::unistd::Uid::from_raw(owner)), None).unwrap();
        let out = h.deploy_within(&m, &[], Duration::from_secs(20));
        assert_eq!(code(&out), Some(3), "{mode:o} {owner}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("not a regular file only root can open"),
            "{}",
            stderr(&out)
        );
    }
    fs::remove_file(&lock).unwrap();
    h.deploy_ok(&m, &[]);

    // No secret path, symlink, copy or state directory may be a lock.
    let base = h.manifest_value(
        vec![h.secret("s", "plain", "root", "root", "0400")],
        vec![],
        1,
    );
    let users_lock = h.s("run/.nixseal-for-users.d.lock");
    type Edit = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Edit)> = vec![
        (
            "secret path",
            Box::new({
                let l = lock.clone();
                move |v| v["secrets"][0]["path"] = l.clone().into()
            }),
        ),
        (
            "copy path",
            Box::new({
                let l = users_lock.clone();
                move |v| {
                    v["secrets"][0]["path"] = l.clone().into();
                    v["secrets"][0]["symlink"] = false.into();
                }
            }),
        ),
        (
            "symlink",
            Box::new({
                let l = lock.clone();
                move |v| v["symlink"] = l.clone().into()
            }),
        ),
        (
            "stateDir",
            Box::new({
                let l = lock.clone();
                move |v| v["stateDir"] = l.clone().into()
            }),
        ),
        (
            "template path",
            Box::new({
                let l = lock.clone();
                move |v| {
                    v["templates"] = json!([{"name": "t", "content": "x", "owner": "root",
                "group": "root", "mode": "0400", "path": l.clone()}])
                }
            }),
        ),
        (
            "a temporary name of the symlink",
            Box::new({
                let p = h.s("run/.nixseal.nixseal-new");
                move |v| v["secrets"][0]["path"] = p.clone().into()
            }),
        ),
        (
            "a temporary name of another path",
            Box::new({
                let (a, b) = (h.s("etc/app"), h.s("etc/.app.nixseal-tmp"));
                move |v| {
                    let mut t = v["secrets"][0].clone();
                    t["name"] = "t".into();
                    t["path"] = b.clone().into();
                    v["secrets"][0]["path"] = a.clone().into();
                    v["secrets"].as_array_mut().unwrap().push(t);
                }
            }),
        ),
    ];
    let lock_before = fs::metadata(&lock).unwrap().ino();
    for (what, edit) in &cases {
        let mut v = base.clone();
        edit(&mut v);
        let out = h.deploy(&h.write_manifest(&v), &[]);
        assert_eq!(code(&out), Some(2), "{what}: {}", stderr(&out));
        assert!(stderr(&out).contains("collide"), "{what}: {}", stderr(&out));
    }
    assert_eq!(fs::metadata(&lock).unwrap().ino(), lock_before);
    assert!(fs::symlink_metadata(&lock).unwrap().is_file());
    assert!(!h.p("etc").exists());
}

/// Issue 10.4: nothing nixseal did not create is replaced or deleted.
#[test]
fn nothing_nixseal_did_not_create_is_replaced_or_deleted() {
    let h = Host::new();
    let s = h.secret("s", "plain", "root", "root", "0400");

    // The stable symlink's place holds an admin's file, directory or
    // symlink: refused before anything is switched.
    fs::create_dir_all(h.p("run")).unwrap();
    let link = h.symlink();
    let m = h.manifest(vec![s.clone()], vec![], 1);
    fs::write(&link, "admin's file").unwrap();
    let out = h.deploy(&m, &[]);
    assert_eq!(code(&out), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("holds a regular file"),
        "{}",
        stderr(&out)
    );
    assert_eq!(fs::read_to_string(&link).unwrap(), "admin's file");
    assert!(h.generations().is_empty());
    fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink(h.p("elsewhere"), &link).unwrap();
    let out = h.deploy(&m, &[]);
    assert_eq!(code(&out), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("holds a symlink to"),
        "{}",
        stderr(&out)
    );
    assert_eq!(fs::read_link(&link).unwrap(), h.p("elsewhere"));
    fs::remove_file(&link).unwrap();
    h.deploy_ok(&m, &[]);

    // Custom paths over an admin's files, in symlink and copy mode.
    fs::create_dir_all(h.p("etc")).unwrap();
    fs::write(h.p("etc/linked"), "admin linked").unwrap();
    fs::write(h.p("etc/copied"), "admin copied").unwrap();
    let mut l = h.secret("l", "L", "root", "root", "0400");
    l["path"] = h.s("etc/linked").into();
    let mut c = h.secret("c", "C", "root", "root", "0400");
    c["path"] = h.s("etc/copied").into();
    c["symlink"] = false.into();
    c["allowPlaintextOnDisk"] = true.into();
    let mut t = h.template("t", "T", "root", "root", "0400");
    t["path"] = h.s("etc/linked").into();
    let before = h.active();
    let out = h.deploy(
        &h.manifest(vec![s.clone(), l.clone(), c.clone()], vec![], 1),
        &[],
    );
    assert_eq!(code(&out), Some(1), "{}", stderr(&out));
    let e = stderr(&out);
    assert!(e.contains("2 custom paths cannot be placed"), "{e}");
    assert!(
        e.contains("secret \"l\"") && e.contains("secret \"c\""),
        "{e}"
    );
    assert!(e.contains("nixseal did not place there"), "{e}");
    assert_eq!(
        fs::read_to_string(h.p("etc/linked")).unwrap(),
        "admin linked"
    );
    assert_eq!(
        fs::read_to_string(h.p("etc/copied")).unwrap(),
        "admin copied"
    );
    assert_eq!(h.entries(&h.s("etc")), ["copied", "linked"]);
    assert_eq!(h.active(), before, "switched despite the refusal");
    let out = h.deploy(&h.manifest(vec![s.clone()], vec![t], 1), &[]);
    assert_eq!(code(&out), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("template \"t\""), "{}", stderr(&out));

    // Placed by nixseal, then replaced by the admin (same name, new file —
    // on ext4 often the same inode number): never deleted when the secret
    // leaves the configuration.
    fs::remove_file(h.p("etc/linked")).unwrap();
    fs::remove_file(h.p("etc/copied")).unwrap();
    h.deploy_ok(
        &h.manifest(vec![s.clone(), l.clone(), c.clone()], vec![], 1),
        &[],
    );
    assert_eq!(fs::read_to_string(h.p("etc/copied")).unwrap(), "C");
    fs::remove_file(h.p("etc/copied")).unwrap();
    fs::write(h.p("etc/copied"), "admin's own copy").unwrap();
    fs::remove_file(h.p("etc/linked")).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", h.p("etc/linked")).unwrap();
    let out = h.deploy_ok(&h.manifest(vec![s.clone()], vec![], 1), &[]);
    assert!(stderr(&out).contains("left alone"), "{}", stderr(&out));
    assert_eq!(
        fs::read_to_string(h.p("etc/copied")).unwrap(),
        "admin's own copy"
    );
    assert_eq!(
        fs::read_link(h.p("etc/linked")).unwrap(),
        PathBuf::from("/etc/hostname")
    );

    // A copy modified in place is no longer what nixseal wrote either.
    fs::remove_file(h.p("etc/copied")).unwrap();
    h.deploy_ok(&h.manifest(vec![s.clone(), c.clone()], vec![], 1), &[]);
    fs::OpenOptions::new()
        .append(true)
        .open(h.p("etc/copied"))
        .unwrap()
        .write_all(b" + admin's note")
        .unwrap();
    h.deploy_ok(&h.manifest(vec![s.clone()], vec![], 1), &[]);
    assert_eq!(
        fs::read_to_string(h.p("etc/copied")).unwrap(),
        "C + admin's note"
    );

    // What nixseal placed and nobody touched is removed, and replaced on
    // the next change (chmod by the admin does not make it foreign).
    fs::remove_file(h.p("etc/copied")).unwrap();
    h.deploy_ok(&h.manifest(vec![s.clone(), c.clone()], vec![], 1), &[]);
    fs::set_permissions(h.p("etc/copied"), fs::Permissions::from_mode(0o440)).unwrap();
    let mut c2 = c.clone();
    c2["source"] = h.encrypt(b"C2").into();
    h.deploy_ok(&h.manifest(vec![s.clone(), c2], vec![], 1), &[]);
    assert_file(&h.s("etc/copied"), "C2", "root", "root", 0o400);
    let out = h.deploy_ok(&h.manifest(vec![s], vec![], 1), &[]);
    assert!(
        stderr(&out).contains(&format!("removed {}", h.s("etc/copied"))),
        "{}",
        stderr(&out)
    );
    assert!(!h.p("etc/copied").exists());
    assert_eq!(h.entries(&h.s("etc")), ["linked"]);
}

/// Issue 10.5: copies on disk need an opt-in, and leave with their secret —
/// also across a reboot.
#[test]
fn copies_need_an_opt_in_on_disk_and_leave_with_their_secret() {
    let h = Host::new();
    let s = h.secret("s", "plain", "root", "root", "0400");
    h.deploy_ok(&h.manifest(vec![s.clone()], vec![], 1), &[]);
    let before = h.active();

    // On a persistent file system (this /tmp is on disk), without opt-in.
    let mut c = h.secret("c", "copied-plaintext", "nxs-alice", "nxs-grp", "0400");
    c["path"] = h.s("disk/c").into();
    c["symlink"] = false.into();
    let out = h.deploy(&h.manifest(vec![s.clone(), c.clone()], vec![], 1), &[]);
    assert_eq!(code(&out), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("persistent file system"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("allowPlaintextOnDisk"),
        "{}",
        stderr(&out)
    );
    assert!(
        h.entries(&h.s("disk")).is_empty(),
        "{:?}",
        h.entries(&h.s("disk"))
    );
    assert_eq!(h.active(), before);

    // On a memory file system no opt-in is needed.
    fs::create_dir_all(h.p("mem")).unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        h.p("mem").as_path(),
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("mode=0755"),
    )
    .unwrap();
    let mut cm = c.clone();
    cm["name"] = "cm".into();
    cm["path"] = h.s("mem/cm").into();
    // With the opt-in, on disk; and a custom symlink next to it.
    c["allowPlaintextOnDisk"] = true.into();
    let mut l = h.secret("l", "linked", "root", "root", "0400");
    l["path"] = h.s("disk/l").into();
    h.deploy_ok(
        &h.manifest(vec![s.clone(), c.clone(), cm.clone(), l.clone()], vec![], 1),
        &[],
    );
    assert_file(
        &h.s("disk/c"),
        "copied-plaintext",
        "nxs-alice",
        "nxs-grp",
        0o400,
    );
    assert_file(
        &h.s("mem/cm"),
        "copied-plaintext",
        "nxs-alice",
        "nxs-grp",
        0o400,
    );
    assert_eq!(fs::read_to_string(h.p("disk/l")).unwrap(), "linked");

    // The records hold paths, never plaintext; the directory is root's.
    let state = h.state_dir();
    let md = fs::metadata(&state).unwrap();
    assert_eq!((md.uid(), md.mode() & 0o7777), (0, 0o700));
    let files = h.entries(&state);
    assert_eq!(files.len(), 1, "{files:?}");
    let record = fs::read_to_string(format!("{state}/{}", files[0])).unwrap();
    assert!(record.contains(&h.s("disk/c")), "{record}");
    assert!(
        !record.contains("copied-plaintext") && !record.contains("linked\""),
        "{record}"
    );

    // A reboot: the ramfs and /run are gone; the configuration no longer
    // has c, cm or l (`nixos-rebuild boot`, then boot).
    umount(&h.mount_point());
    fs::remove_file(h.symlink()).unwrap();
    let out = h.deploy_ok(&h.manifest(vec![s.clone()], vec![], 1), &[]);
    for p in ["disk/c", "mem/cm", "disk/l"] {
        assert!(
            h.p(p).symlink_metadata().is_err(),
            "{p} outlived its secret"
        );
        assert!(
            stderr(&out).contains(&format!("removed {}", h.s(p))),
            "{}",
            stderr(&out)
        );
    }
    assert!(h.entries(&h.s("disk")).is_empty());
    // The records are cleared too.
    let record = fs::read_to_string(format!("{state}/{}", files[0])).unwrap();
    assert!(!record.contains("disk/c"), "{record}");
}

/// Issue 10.5: without stateDir, records go to /var/lib/nixseal (here a
/// tmpfs over /var/lib inside the test's mount namespace).
#[test]
fn state_goes_to_var_lib_nixseal_by_default() {
    let h = Host::new();
    nix::mount::mount(
        Some("tmpfs"),
        "/var/lib",
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("mode=0755"),
    )
    .unwrap();
    let mut l = h.secret("l", "x", "root", "root", "0400");
    l["path"] = h.s("etc/l").into();
    let mut v = h.manifest_value(vec![l], vec![], 1);
    v.as_object_mut().unwrap().remove("stateDir");
    h.deploy_ok(&h.write_manifest(&v), &[]);
    let md = fs::metadata("/var/lib/nixseal").unwrap();
    assert_eq!((md.uid(), md.mode() & 0o7777), (0, 0o700));
    let files = h.entries("/var/lib/nixseal");
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].ends_with(".json"), "{files:?}");
    // A state directory others can write is refused.
    fs::set_permissions("/var/lib/nixseal", fs::Permissions::from_mode(0o777)).unwrap();
    let out = h.deploy(&h.write_manifest(&v), &[]);
    assert_eq!(code(&out), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("/var/lib/nixseal is writable by others"),
        "{}",
        stderr(&out)
    );
    fs::set_permissions("/var/lib/nixseal", fs::Permissions::from_mode(0o700)).unwrap();
    // A damaged record is refused, not ignored.
    fs::write(format!("/var/lib/nixseal/{}", files[0]), "{").unwrap();
    let out = h.deploy(&h.write_manifest(&v), &[]);
    assert_eq!(code(&out), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("is unusable"), "{}", stderr(&out));
    umount("/var/lib");

    // A damaged record stops a deploy before anything is mounted.
    let h2 = Host::new();
    let sd = h2.state_dir();
    fs::create_dir_all(&sd).unwrap();
    let name = nixseal::activate::state_file_name(&h2.mount_point());
    fs::write(
        format!("{sd}/{name}"),
        r#"{"version":1,"mountPoint":"/elsewhere"}"#,
    )
    .unwrap();
    let out = h2.deploy(
        &h2.manifest(vec![h2.secret("s", "x", "root", "root", "0400")], vec![], 1),
        &[],
    );
    assert_eq!(code(&out), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("belongs to mount point"),
        "{}",
        stderr(&out)
    );
    assert!(
        mount_line(&h2.mount_point()).is_empty(),
        "mounted despite the error"
    );
    assert!(!h2.p("run/nixseal").exists());
}

/// Issue 10.6: a restart is never lost — neither to a kill after the
/// switch nor to a failing systemctl.
#[test]
fn restarts_are_never_lost() {
    let h = Host::new();
    h.fake_systemd();
    let fbin = fault_bin();
    let m = |v: &str, units: &[&str]| {
        let mut a = h.secret("a", v, "root", "root", "0400");
        a["restartUnits"] = json!(units);
        let mut b = h.secret("b", "b", "root", "root", "0400");
        b["reloadUnits"] = json!(["r.service"]);
        h.manifest(vec![a, b], vec![], 1)
    };
    h.deploy_ok(&m("1", &["x.service"]), &[]);
    h.clear_systemctl_log();

    // Killed right after the switch: nothing restarted yet...
    let m2 = m("2", &["x.service"]);
    let out = h
        .command(&fbin, &m2, &[])
        .env("NIXSEAL_FAULT", "after-switch")
        .output()
        .unwrap();
    assert_eq!(out.status.signal(), Some(9), "{}", stderr(&out));
    assert_eq!(fs::read_to_string(h.s("run/nixseal/a")).unwrap(), "2");
    assert_eq!(h.systemctl_calls(), Vec::<String>::new());
    // ... and the next deploy of the same configuration (no change any
    // more) still restarts it.
    let out = h.deploy_ok(&m2, &[]);
    assert_eq!(
        h.systemctl_calls(),
        ["try-restart --no-block -- x.service"],
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("owed by an earlier deploy: x.service"),
        "{}",
        stderr(&out)
    );
    h.clear_systemctl_log();
    h.deploy_ok(&m2, &[]);
    assert_eq!(h.systemctl_calls(), Vec::<String>::new(), "restarted twice");

    // Killed before the switch, after the records: the next deploy restarts.
    let m3 = m("3", &["x.service"]);
    let out = h
        .command(&fbin, &m3, &[])
        .env("NIXSEAL_FAULT", "after-record")
        .output()
        .unwrap();
    assert_eq!(out.status.signal(), Some(9), "{}", stderr(&out));
    h.deploy_ok(&m3, &[]);
    assert_eq!(h.systemctl_calls(), ["try-restart --no-block -- x.service"]);
    h.clear_systemctl_log();

    // systemctl fails: exit 1, and the next deploy tries again.
    let fails = h.dir.path().join("systemctl-fails");
    fs::write(&fails, "").unwrap();
    let m4 = m("4", &["x.service", "y.service"]);
    let out = h.deploy(&m4, &[]);
    assert_eq!(code(&out), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("the next deploy tries again"),
        "{}",
        stderr(&out)
    );
    let out = h.deploy(&m4, &[]);
    assert_eq!(code(&out), Some(1), "still owed: {}", stderr(&out));
    fs::remove_file(&fails).unwrap();
    h.clear_systemctl_log();
    h.deploy_ok(&m4, &[]);
    assert_eq!(
        h.systemctl_calls(),
        ["try-restart --no-block -- x.service y.service"]
    );
    h.clear_systemctl_log();

    // A unit no secret names any more is not owed any more.
    fs::write(&fails, "").unwrap();
    let _ = h.deploy(&m("5", &["x.service", "gone.service"]), &[]);
    fs::remove_file(&fails).unwrap();
    h.clear_systemctl_log();
    h.deploy_ok(&m("5", &["x.service"]), &[]);
    assert_eq!(h.systemctl_calls(), ["try-restart --no-block -- x.service"]);
    h.clear_systemctl_log();

    // Owed restarts wait through --no-restart; at boot they are moot (units
    // start fresh and read the new generation).
    fs::write(&fails, "").unwrap();
    let _ = h.deploy(&m("6", &["x.service"]), &[]);
    fs::remove_file(&fails).unwrap();
    h.deploy_ok(&m("6", &["x.service"]), &["--no-restart"]);
    fs::write(h.dir.path().join("system-state"), "starting\n").unwrap();
    h.clear_systemctl_log();
    h.deploy_ok(&m("6", &["x.service"]), &[]);
    assert_eq!(h.systemctl_calls(), Vec::<String>::new());
    fs::remove_file(h.dir.path().join("system-state")).unwrap();
    h.deploy_ok(&m("6", &["x.service"]), &[]);
    assert_eq!(h.systemctl_calls(), Vec::<String>::new());
    umount("/run");
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

/// Issue 10.10 and 10.13: lengths, and files that are not bounded regular
/// files, are refused before anything is touched.
#[test]
fn inputs_that_are_not_bounded_regular_files_are_refused() {
    let h = Host::new();
    let limit = Duration::from_secs(20);
    let good = h.manifest_value(vec![h.secret("s", "x", "root", "root", "0400")], vec![], 1);
    let fifo = |name: &str| {
        let p = h.p(name);
        nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        p
    };
    let sparse = |name: &str, len: u64| {
        let p = h.p(name);
        fs::File::create(&p).unwrap().set_len(len).unwrap();
        p
    };
    // The manifest: FIFO (would block), sparse 100 GB, a device.
    for (what, p, needle) in [
        ("FIFO manifest", fifo("m.fifo"), "a FIFO"),
        (
            "sparse manifest",
            sparse("m.big", 100 << 30),
            "107374182400 bytes",
        ),
        (
            "device manifest",
            PathBuf::from("/dev/null"),
            "a character device",
        ),
    ] {
        let out = h.deploy_within(&p, &[], limit);
        assert_eq!(code(&out), Some(2), "{what}: {}", stderr(&out));
        assert!(stderr(&out).contains(needle), "{what}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(p.to_str().unwrap()),
            "{what}: {}",
            stderr(&out)
        );
    }
    // Sources and host keys.
    type Edit = Box<dyn Fn(&mut Value)>;
    let src = |p: PathBuf| -> Edit {
        Box::new(move |v| v["secrets"][0]["source"] = p.to_str().unwrap().into())
    };
    let key = |p: PathBuf| -> Edit {
        Box::new(move |v| v["hostKeys"][0]["path"] = p.to_str().unwrap().into())
    };
    let cases: Vec<(&str, Edit, i32, &str)> = vec![
        ("FIFO source", src(fifo("s.fifo")), 2, "a FIFO"),
        (
            "urandom source",
            src(PathBuf::from("/dev/urandom")),
            2,
            "a character device",
        ),
        (
            "sparse source",
            src(sparse("s.big", 100 << 30)),
            2,
            "more than the",
        ),
        ("directory source", src(h.p("src")), 2, "a directory"),
        ("FIFO host key", key(fifo("k.fifo")), 3, "a FIFO"),
        (
            "zero host key",
            key(PathBuf::from("/dev/zero")),
            3,
            "a character device",
        ),
        (
            "2 MiB host key",
            key(sparse("k.big", 2 << 20)),
            3,
            "more than the 1048576 bytes",
        ),
    ];
    for (what, edit, want, needle) in &cases {
        let mut v = good.clone();
        edit(&mut v);
        let out = h.deploy_within(&h.write_manifest(&v), &[], limit);
        assert_eq!(code(&out), Some(*want), "{what}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(needle),
            "{what}: {needle:?} not in {}",
            stderr(&out)
        );
        assert!(!h.p("run").exists(), "{what}: touched run/");
    }
    // /etc/passwd as a FIFO (bind-mounted in this test's namespace only).
    let pw = fifo("passwd.fifo");
    nix::mount::mount(
        Some(&pw),
        "/etc/passwd",
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .unwrap();
    let out = h.deploy_within(&h.write_manifest(&good), &[], limit);
    umount("/etc/passwd");
    assert_eq!(code(&out), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot read /etc/passwd: it is a FIFO"),
        "{}",
        stderr(&out)
    );
    // The state file as a FIFO, and as a sparse giant.
    h.deploy_ok(&h.write_manifest(&good), &[]);
    let state = h.state_dir();
    fs::create_dir_all(&state).unwrap();
    let name = nixseal::activate::state_file_name(&h.mount_point());
    nix::unistd::mkfifo(
        format!("{state}/{name}").as_str(),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    let out = h.deploy_within(&h.write_manifest(&good), &[], limit);
    assert_eq!(code(&out), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("a FIFO"), "{}", stderr(&out));
    fs::remove_file(format!("{state}/{name}")).unwrap();
    fs::File::create(format!("{state}/{name}"))
        .unwrap()
        .set_len(100 << 30)
        .unwrap();
    let out = h.deploy_within(&h.write_manifest(&good), &[], limit);
    assert_eq!(code(&out), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("more than the"), "{}", stderr(&out));
}

/// Issue 10.14: a running deploy is not dumpable (no core file; its memory
/// and /proc/PID/exe closed to a process with the same uid and capabilities
/// that could read a dumpable one), has RLIMIT_CORE 0, and locks its memory.
#[test]
fn a_running_deploy_is_not_dumpable_and_locks_its_memory() {
    let h = Host::new();
    h.fake_systemd();
    // The fake systemctl runs this with the deploy process's pid while
    // deploy waits for it. Deploy runs without CAP_SYS_PTRACE in its
    // bounding set, so the probe (its child) has exactly its capabilities:
    // then only the dumpable flag decides. The control line looks at a
    // dumpable process (the probe's own shell) the same way.
    fs::write(
        h.dir.path().join("probe.sh"),
        "grep -i 'max core file size' /proc/$1/limits\n\
         grep VmLck /proc/$1/status\n\
         if readlink /proc/$1/exe >/dev/null 2>&1; then echo deploy-readable; else echo deploy-denied; fi\n\
         if readlink /proc/$$/exe >/dev/null 2>&1; then echo control-readable; else echo control-denied; fi\n",
    )
    .unwrap();
    let mut a = h.secret("a", "x", "root", "root", "0400");
    a["restartUnits"] = json!(["x.service"]);
    let m = h.manifest(vec![a], vec![], 1);
    let inner = h.command(&bin(), &m, &[]);
    let mut cmd = Command::new("setpriv");
    cmd.args(["--bounding-set=-sys_ptrace", "--"])
        .arg(inner.get_program())
        .args(inner.get_args());
    for (k, v) in inner.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let probe = fs::read_to_string(h.dir.path().join("probe.sh.out")).unwrap();
    assert!(
        probe.contains("control-readable"),
        "the probe cannot read anything: {probe}"
    );
    assert!(
        probe.contains("deploy-denied"),
        "deploy is dumpable: {probe}"
    );
    let core = probe
        .lines()
        .find(|l| l.contains("core file size"))
        .unwrap();
    assert_eq!(core.split_whitespace().nth(4), Some("0"), "{core}");
    assert_eq!(core.split_whitespace().nth(5), Some("0"), "{core}");
    let locked: u64 = probe
        .lines()
        .find_map(|l| l.strip_prefix("VmLck:"))
        .and_then(|l| l.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmLck in {probe}"));
    assert!(locked > 0, "no memory locked: {probe}");
    umount("/run");
}

// ------------------------------------------------------------------ fuzz

/// What must not change when a deploy fails: where the symlink points, and
/// every file reachable through it or at a custom path (content, owner,
/// group, mode).
type Snapshot = (String, Vec<(String, Vec<u8>, u32, u32, u32)>);

/// Whether every path `m` makes the binary write lies strictly under
/// `prefix` (normalised: no `.`/`..`/empty component), so that running the
/// binary on a fuzzed manifest can only touch the test's own tmpfs.
fn writes_only_under(m: &nixseal::manifest::Manifest, prefix: &str) -> bool {
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

fn paths_parent(p: &str) -> &str {
    &p[..p.rfind('/').unwrap_or(0)]
}

/// Runs `work` on another thread and fails if it takes longer than `limit`
/// (an in-process hang), naming the phase.
fn within<T: Send + 'static>(
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

/// A bounded, seeded mutational fuzz of what deploy reads: the manifest
/// (every case through `Manifest::parse` + `validate` in-process; a share
/// through the binary, when every path it could write lies under this
/// test's private tmpfs) and the age sources (every case through the host
/// identity in-process; a share through the binary). Asserted: no panic, no
/// hang, only the documented exit codes 0–3, and after an error the
/// previous generation and symlink — and every file — unchanged.
/// `NIXSEAL_FUZZ_CASES` / `NIXSEAL_FUZZ_SEED` run more (docs/testing.md).
#[test]
fn fuzz_manifest_and_age_sources() {
    use nixseal::activate::InstallPlan;
    use nixseal::manifest::{Manifest, Scope};
    use support::mutate::{self, Rng};
    let h = Host::new();
    let n = mutate::cases(10_000);
    let seed = mutate::seed(0x6e78_735f_6675_7a7a);
    let bin_runs = (n / 20).max(1);
    let started = std::time::Instant::now();

    // Everything the binary may write lives on this tmpfs.
    let fz = h.s("fz");
    fs::create_dir(&fz).unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        fz.as_str(),
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("mode=0755"),
    )
    .unwrap();
    let custom_dir = format!("{fz}/etc");
    let mut c = h.secret("copied", "copied-plain", "nxs-alice", "nxs-grp", "0400");
    c["path"] = format!("{custom_dir}/copied").into();
    c["symlink"] = false.into();
    let mut l = h.secret("linked", "linked-plain", "root", "root", "0400");
    l["path"] = format!("{custom_dir}/linked").into();
    let mut u = h.secret("users-pw", "$6$x", "root", "root", "0400");
    u["neededForUsers"] = true.into();
    u["path"] = format!("{fz}/run/nixseal-for-users/users-pw").into();
    let mut plain = h.secret("plain", "plain-text", "nxs-bob", "nxs-other", "0440");
    plain["restartUnits"] = json!(["x.service"]);
    let mut t = h.template(
        "t",
        "A={{nixseal:plain}} B={{nixseal:copied}}\n",
        "root",
        "root",
        "0400",
    );
    t["path"] = format!("{custom_dir}/t").into();
    let mut base = h.manifest_value(vec![plain.clone(), c, l, u], vec![t], 2);
    base["mountPoint"] = format!("{fz}/run/nixseal.d").into();
    base["symlink"] = format!("{fz}/run/nixseal").into();
    base["stateDir"] = format!("{fz}/var/lib/nixseal").into();
    let base_bytes = serde_json::to_vec_pretty(&base).unwrap();
    let base_path = h.write_manifest(&base);
    let sl = format!("{fz}/run/nixseal");
    let deploy_base = |h: &Host| {
        let out = h.deploy_within(&base_path, &[], Duration::from_secs(60));
        assert!(out.status.success(), "baseline: {}", stderr(&out));
    };
    deploy_base(&h);
    let snap = |_: &Host| -> Snapshot {
        let active = fs::read_link(&sl).unwrap().to_str().unwrap().to_owned();
        (active, snapshot_dirs(&[&sl, &custom_dir]))
    };
    let mut before = snap(&h);

    // 1. Manifests in-process: parse + validate (both scopes) + warnings.
    let accounts = nixseal::activate::Accounts::load_system().unwrap();
    let parsed = {
        let (bytes, accounts) = (base_bytes.clone(), accounts.clone());
        within(
            "manifest parse/validate",
            Duration::from_secs(120),
            move || {
                let mut ok = 0usize;
                for i in 0..n {
                    let mut rng = Rng::new(seed.wrapping_add(i as u64));
                    let case = mutate::mutate(&mut rng, &bytes);
                    let r = std::panic::catch_unwind(|| {
                        let p = Path::new("fuzzed.json");
                        let m = Manifest::parse(p, &case).ok()?;
                        let valid = InstallPlan::resolve(&m, p, Scope::Main, &accounts).is_ok();
                        let _ = InstallPlan::resolve(&m, p, Scope::Users, &accounts);
                        let _ = m.check(p);
                        valid.then_some(())
                    });
                    match r {
                        Ok(valid) => ok += usize::from(valid.is_some()),
                        Err(_) => panic!(
                            "manifest case {i} (seed {seed}) panicked: {}",
                            String::from_utf8_lossy(&case)
                        ),
                    }
                }
                ok
            },
        )
    };

    // 2. Manifests through the binary.
    let (mut ran, mut skipped) = (0, 0);
    for i in 0..bin_runs {
        let mut rng = Rng::new(seed.wrapping_add(1 << 32).wrapping_add(i as u64));
        let case = mutate::mutate(&mut rng, &base_bytes);
        match Manifest::parse(Path::new("x"), &case) {
            Ok(m) if !writes_only_under(&m, &fz) => {
                skipped += 1;
                continue;
            }
            _ => {}
        }
        let p = h.p(&format!("fuzz-{i}.json"));
        fs::write(&p, &case).unwrap();
        let args: &[&str] = match rng.below(4) {
            0 => &["--users"],
            1 => &["--dry-run"],
            2 => &["--no-restart"],
            _ => &[],
        };
        let out = h.deploy_within(&p, args, Duration::from_secs(60));
        ran += 1;
        let code = out.status.code();
        let ctx = || {
            format!(
                "manifest case {i} (seed {seed}, {args:?}): {:?}\n{}\n--- input:\n{}",
                out.status,
                stderr(&out),
                String::from_utf8_lossy(&case)
            )
        };
        assert!(matches!(code, Some(0..=3)), "undocumented exit: {}", ctx());
        let switched = code == Some(0) || stderr(&out).contains("is active, but");
        if switched {
            deploy_base(&h);
            before = snap(&h);
        } else {
            assert_eq!(snap(&h), before, "state changed after an error: {}", ctx());
        }
    }

    // 3. Age sources: in-process through the host identity, then a share
    // through the binary.
    let src = base["secrets"][0]["source"].as_str().unwrap().to_owned();
    let good_age = fs::read(&src).unwrap();
    let key = h.key.clone();
    {
        let good_age = good_age.clone();
        within("age decrypt", Duration::from_secs(120), move || {
            let id = nixseal::activate::load_host_key(&key).unwrap();
            for i in 0..n {
                let mut rng = Rng::new(seed.wrapping_add(2 << 32).wrapping_add(i as u64));
                let case = mutate::mutate(&mut rng, &good_age);
                let r = std::panic::catch_unwind(|| {
                    let _ = nixseal::crypto::decrypt(&case, &[&id as &dyn nixseal::age::Identity]);
                });
                assert!(r.is_ok(), "age case {i} (seed {seed}) panicked");
            }
        });
    }
    for i in 0..bin_runs {
        let mut rng = Rng::new(seed.wrapping_add(3 << 32).wrapping_add(i as u64));
        let case = mutate::mutate(&mut rng, &good_age);
        let fsrc = h.p(&format!("src/fuzz-{i}.age"));
        fs::write(&fsrc, &case).unwrap();
        let mut v = base.clone();
        v["secrets"][0]["source"] = fsrc.to_str().unwrap().into();
        let p = h.write_manifest(&v);
        let out = h.deploy_within(&p, &[], Duration::from_secs(60));
        let code = out.status.code();
        assert!(
            matches!(code, Some(0..=3)),
            "age case {i} (seed {seed}): {:?} {}",
            out.status,
            stderr(&out)
        );
        if code == Some(0) {
            deploy_base(&h);
            before = snap(&h);
        } else {
            assert_eq!(
                snap(&h),
                before,
                "age case {i} (seed {seed}) changed state: {}",
                stderr(&out)
            );
        }
    }
    eprintln!(
        "fuzz: {n} manifests in-process ({parsed} valid), {ran} through the binary ({skipped} skipped: a path outside the sandbox), {n} age files in-process, {bin_runs} through the binary; seed {seed}; {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

fn snapshot_dirs(dirs: &[&str]) -> Vec<(String, Vec<u8>, u32, u32, u32)> {
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
