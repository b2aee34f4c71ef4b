//! The harness of the user-session deploy tests (tests/deploy_session.rs):
//! `nixseal deploy --user-session` as a home-manager user runs it — the real
//! binary, run by the unprivileged account `nxs-alice` (privileges dropped
//! with util-linux `setpriv --reuid --regid --clear-groups`), in the test's
//! private mount namespace (tests/support/namespace.rs) with a private tmpfs
//! as its runtime directory (`$XDG_RUNTIME_DIR`, owned by the user, 0700,
//! as logind makes it) and a home directory on the disk of /tmp.

#![allow(dead_code)]

use super::host::*;

pub const USER: &str = "nxs-alice";

/// A user session inside a [`Host`] test directory.
pub struct Session {
    pub h: Host,
    pub uid: u32,
    pub gid: u32,
    /// The runtime directory (a tmpfs of the user's, 0700).
    pub runtime: String,
    /// The user's home (on disk).
    pub home: String,
}

impl Session {
    pub fn new() -> Session {
        let h = Host::new();
        let (uid, gid) = (uid(USER), gid("nxs-grp"));
        // The test directory and what deploy reads (sources, manifests,
        // the fake systemctl) must be reachable by the user; what it writes
        // is the user's.
        fs::set_permissions(h.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(h.p("src"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::create_dir_all(h.p("run/user")).unwrap();
        let runtime = h.s(&format!("run/user/{uid}"));
        fs::create_dir(&runtime).unwrap();
        mount_tmpfs(&runtime, uid, gid, "0700");
        let home = h.s("home/alice");
        fs::create_dir_all(&home).unwrap();
        chown(&home, uid, gid);
        chown(h.key.to_str().unwrap(), uid, gid);
        fs::write(&h.systemctl_log, "").unwrap();
        chown(h.systemctl_log.to_str().unwrap(), uid, gid);
        Session {
            h,
            uid,
            gid,
            runtime,
            home,
        }
    }

    pub fn mount_point(&self) -> String {
        format!("{}/nixseal.d", self.runtime)
    }
    pub fn symlink(&self) -> String {
        format!("{}/nixseal", self.runtime)
    }
    pub fn state_dir(&self) -> String {
        format!("{}/.local/state/nixseal", self.home)
    }

    /// A secret of a user-session manifest (owner and group "", path under %r).
    pub fn secret(&self, name: &str, content: &str, mode: &str) -> Value {
        json!({"name": name, "source": self.h.encrypt(content.as_bytes()),
               "owner": "", "group": "", "mode": mode,
               "path": format!("%r/nixseal/{name}"), "symlink": true,
               "restartUnits": [], "reloadUnits": [], "neededForUsers": false,
               "allowPlaintextOnDisk": false})
    }
    pub fn template(&self, name: &str, content: &str) -> Value {
        json!({"name": name, "content": content, "owner": "", "group": "",
               "mode": "0400", "path": format!("%r/nixseal/{name}")})
    }
    /// A user-session manifest as the home-manager module writes it.
    pub fn manifest_value(&self, secrets: Vec<Value>, templates: Vec<Value>) -> Value {
        json!({"version": 1, "session": "user",
               "hostKeys": [{"path": self.h.key, "type": "ed25519"}],
               "mountPoint": "%r/nixseal.d", "symlink": "%r/nixseal",
               "stateDir": self.state_dir(),
               "keepGenerations": 1, "secrets": secrets, "templates": templates})
    }
    pub fn manifest(&self, secrets: Vec<Value>, templates: Vec<Value>) -> PathBuf {
        self.h
            .write_manifest(&self.manifest_value(secrets, templates))
    }

    /// `nixseal deploy --manifest M ARGS` run by the user, with
    /// `XDG_RUNTIME_DIR` set to the runtime directory.
    pub fn command(&self, bin: &Path, manifest: &Path, args: &[&str]) -> Command {
        let inner = self.h.command(bin, manifest, args);
        let mut c = Command::new("setpriv");
        c.arg(format!("--reuid={}", self.uid))
            .arg(format!("--regid={}", self.gid))
            .arg("--clear-groups")
            .arg("--")
            .arg(inner.get_program())
            .args(inner.get_args());
        for (k, v) in inner.get_envs() {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        c.env("XDG_RUNTIME_DIR", &self.runtime)
            .env("HOME", &self.home)
            .current_dir("/");
        c
    }
    pub fn deploy(&self, manifest: &Path, args: &[&str]) -> Output {
        self.command(&bin(), manifest, args).output().unwrap()
    }
    #[track_caller]
    pub fn deploy_ok(&self, manifest: &Path) -> Output {
        let out = self.deploy(manifest, &["--user-session"]);
        assert!(
            out.status.success(),
            "deploy --user-session failed ({:?}): {}",
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
    pub fn generations(&self) -> Vec<String> {
        self.h.entries(&self.mount_point())
    }
    /// Pretends the user's systemd manager runs (its private socket).
    pub fn fake_user_manager(&self) {
        let d = format!("{}/systemd", self.runtime);
        fs::create_dir_all(&d).unwrap();
        fs::write(format!("{d}/private"), "").unwrap();
        chown(&d, self.uid, self.gid);
    }
}

pub fn chown(path: &str, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).unwrap();
}

/// A tmpfs at `path` with the given owner and mode (the runtime directory
/// logind makes).
pub fn mount_tmpfs(path: &str, uid: u32, gid: u32, mode: &str) {
    nix::mount::mount(
        Some("tmpfs"),
        path,
        Some("tmpfs"),
        nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
        Some(format!("mode={mode},uid={uid},gid={gid},size=16m").as_str()),
    )
    .unwrap_or_else(|e| panic!("mount tmpfs on {path}: {e}"));
}
