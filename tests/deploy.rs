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

/// A little more than `nixseal::activate::PRUNE_GRACE`: a generation replaced
/// less than that ago is not pruned yet.
const GRACE: Duration = Duration::from_millis(1100);

/// Every fault point the library has, in the order a deploy reaches them.
use nixseal::activate::fault::POINTS as FAULT_POINTS;

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
                return PathBuf::from(BIN);
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
            // "running") and records every other call.
            format!(
                "#!/bin/sh\nif [ \"$1\" = is-system-running ]; then cat {state} 2>/dev/null || echo running; exit 0; fi\necho \"$*\" >> {log}\n",
                state = dir.path().join("system-state").display(),
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
               "keepGenerations": keep, "secrets": secrets, "templates": templates})
    }
    fn write_manifest(&self, v: &Value) -> PathBuf {
        let p = self.p(&format!("manifest-{}.json", self.next()));
        fs::write(&p, serde_json::to_vec_pretty(v).unwrap()).unwrap();
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
        self.command(Path::new(BIN), manifest, args)
            .output()
            .unwrap()
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
        "mountPoint": h.mount_point(), "symlink": h.symlink(), "keepGenerations": 1}));
    h.deploy_ok(&empty, &[]);
    assert_eq!(h.active(), format!("{}/3", h.mount_point()));
    assert_eq!(h.entries(&h.symlink()), [".nixseal.json"]);
    assert_eq!(fs::read_to_string(h.p("etc/u")).unwrap(), "user's own");
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
/// host identity (identity/host.rs) unwraps what the reference tools wrap.
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
#[cfg(not(feature = "fault-injection"))]
#[test]
fn fault_points_are_compiled_out_of_normal_builds() {
    let h = Host::new();
    let m = h.manifest(vec![h.secret("s", "v", "root", "root", "0400")], vec![], 1);
    for point in FAULT_POINTS {
        let out = h
            .command(Path::new(BIN), &m, &[])
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

    // Symlinks planted at custom paths (copy and symlink mode) are replaced, not followed.
    fs::create_dir(h.p("etc")).unwrap();
    std::os::unix::fs::symlink(outside.join("victim"), h.p("etc/copy")).unwrap();
    std::os::unix::fs::symlink(outside.join("victim"), h.p("etc/link")).unwrap();
    let mut c = h.secret("c", "plaintext-c", "nxs-alice", "nxs-grp", "0400");
    c["path"] = h.s("etc/copy").into();
    c["symlink"] = false.into();
    let mut l = h.secret("l", "plaintext-l", "root", "root", "0400");
    l["path"] = h.s("etc/link").into();
    h.deploy_ok(&mk(vec![c.clone(), l]), &[]);
    assert_eq!(
        fs::read_to_string(outside.join("victim")).unwrap(),
        "victim"
    );
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

    // A tmpfs mounted there is reused.
    nix::mount::mount(
        Some("tmpfs"),
        h.mount_point().as_str(),
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("mode=0751"),
    )
    .unwrap();
    h.deploy_ok(&m, &[]);
    assert_eq!(mount_line(&h.mount_point()).len(), 1);
    assert!(mount_line(&h.mount_point())[0].contains(" - tmpfs "));
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

    // A directory where the symlink should be: refused, the new generation
    // removed, the directory untouched.
    let h4 = Host::new();
    let m4 = h4.manifest(
        vec![h4.secret("s", "plain", "root", "root", "0400")],
        vec![],
        1,
    );
    fs::create_dir_all(h4.p("run/nixseal/keep")).unwrap();
    let out = h4.deploy(&m4, &[]);
    assert_eq!(code(&out), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot switch symlink"),
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
            .command(Path::new(BIN), &one, &[])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let c2 = h
            .command(Path::new(BIN), &two, &[])
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
    let mut child = h.command(Path::new(BIN), &one, &[]).spawn().unwrap();
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
    let out = Command::new(BIN)
        .args(["deploy", "--bogus"])
        .output()
        .unwrap();
    assert_eq!(code(&out), Some(2));
    assert!(!h.p("run").exists());

    // The manifest itself was fine all along.
    h.deploy_ok(&h.write_manifest(&good), &[]);
}
