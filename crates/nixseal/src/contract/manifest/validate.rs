//! Validation of a parsed manifest: every problem found, before anything on
//! the host is touched.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use super::{
    check_abs_path, check_normal_abs, is_default_path, lock_path, parse_mode, path_within,
    placeholders, temp_name, Manifest, ManifestError, Scope, Secret, Unterminated, TEMP_SUFFIXES,
};
use crate::contract::names::{self as name, NameError};
use crate::host::Accounts;

/// One problem in an otherwise parseable manifest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Problem {
    /// A secret or template name is unusable as a file name.
    #[error("{source}")]
    Name {
        /// `secret` or `template`.
        what: &'static str,
        /// Why.
        #[source]
        source: NameError,
    },
    /// Two entries share a name (secrets and templates share one directory).
    #[error("name {name:?} is used twice (secret and template names must be unique)")]
    DuplicateName {
        /// The name.
        name: String,
    },
    /// A path field is not an absolute, normalised path outside /nix/store.
    #[error("{field} {path:?} {why}")]
    Path {
        /// Which field, e.g. `secret db: path`.
        field: String,
        /// The value.
        path: String,
        /// What is wrong.
        why: &'static str,
    },
    /// Two fields name the same path, or one lies inside the other.
    #[error("{first} {first_path:?} and {second} {second_path:?} {why}")]
    PathConflict {
        /// The first field.
        first: String,
        /// Its path.
        first_path: String,
        /// The second field.
        second: String,
        /// Its path.
        second_path: String,
        /// `are the same path` or `is inside the other`.
        why: &'static str,
    },
    /// A mode is not 3 or 4 octal digits.
    #[error("{what} {name:?}: mode {mode:?} is not an octal mode like \"0400\" (3 or 4 octal digits, at most 0777)")]
    Mode {
        /// `secret` or `template`.
        what: &'static str,
        /// Its name.
        name: String,
        /// The value.
        mode: String,
    },
    /// An owner does not exist on this host.
    #[error("{what} {name:?}: user {user:?} does not exist on this host (not in /etc/passwd); create it, change the owner, or give a numeric uid")]
    UnknownUser {
        /// `secret` or `template`.
        what: &'static str,
        /// Its name.
        name: String,
        /// The missing user.
        user: String,
    },
    /// A group does not exist on this host.
    #[error("{what} {name:?}: group {group:?} does not exist on this host (not in /etc/group); create it, change the group, or give a numeric gid")]
    UnknownGroup {
        /// `secret` or `template`.
        what: &'static str,
        /// Its name.
        name: String,
        /// The missing group.
        group: String,
    },
    /// A template placeholder names no secret of the manifest.
    #[error("template {template:?}: placeholder {{{{nixseal:{secret}}}}} names no secret of this manifest")]
    TemplateRef {
        /// The template.
        template: String,
        /// The missing secret.
        secret: String,
    },
    /// A template has an unterminated placeholder.
    #[error("template {template:?}: `{{{{nixseal:` without a closing `}}}}`")]
    TemplateSyntax {
        /// The template.
        template: String,
    },
    /// A host key type other than ed25519.
    #[error("host key {path:?}: type {key_type:?} is not supported (only \"ed25519\")")]
    HostKeyType {
        /// The key path.
        path: String,
        /// The type given.
        key_type: String,
    },
    /// Secrets to decrypt but no host key.
    #[error("hostKeys is empty but there are secrets to decrypt; add the host's ssh ed25519 key")]
    NoHostKeys,
    /// A unit name that systemctl would misread.
    #[error("secret {secret:?}: unit name {unit:?} is not a systemd unit name")]
    Unit {
        /// The secret.
        secret: String,
        /// The unit.
        unit: String,
    },
    /// A path nixseal would write that is a system directory, lies in a
    /// kernel file system, or is too long for the file system.
    #[error("{field} {path:?} {why}")]
    Location {
        /// Which field, e.g. `mountPoint`.
        field: String,
        /// The value.
        path: String,
        /// What is wrong.
        why: String,
    },
    /// A `neededForUsers` secret whose path points into the main symlink.
    #[error("secret {secret:?} is neededForUsers, so it is installed under {expected:?}, but its path is {path:?}; set path to {expected:?}/{secret} or outside both symlinks")]
    UsersPath {
        /// The secret.
        secret: String,
        /// Its path.
        path: String,
        /// The users symlink.
        expected: String,
    },
}

/// Something deploy does as asked but the operator should know about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Warning {
    /// A mode with permissions for "other": every user on the host may read
    /// (or write) the plaintext.
    #[error("{what} {name:?} has mode {mode:?}: every user on this host can {access} it; if that is not intended, give it an owner or group and a mode without permissions for others (e.g. \"0440\")")]
    WorldAccessible {
        /// `secret` or `template`.
        what: &'static str,
        /// Its name.
        name: String,
        /// The mode as written.
        mode: String,
        /// `read`, `write`, `read and write`, or `execute`.
        access: &'static str,
    },
}

/// Paths under these are kernel file systems: nixseal never writes there.
const KERNEL_FS: [&str; 3] = ["/proc", "/sys", "/dev"];

/// Directories of the system itself: nixseal never mounts its ramfs over
/// one, replaces one by its symlink, keeps its state in one, or places a
/// secret at one.
const SYSTEM_DIRS: &[&str] = &[
    "/",
    "/bin",
    "/boot",
    "/efi",
    "/etc",
    "/home",
    "/lib",
    "/lib32",
    "/lib64",
    "/media",
    "/mnt",
    "/nix",
    "/opt",
    "/persist",
    "/root",
    "/run",
    "/sbin",
    "/srv",
    "/tmp",
    "/usr",
    "/var",
    "/etc/nixos",
    "/etc/ssh",
    "/etc/systemd",
    "/etc/static",
    "/nix/var",
    "/run/booted-system",
    "/run/current-system",
    "/run/keys",
    "/run/lock",
    "/run/systemd",
    "/run/udev",
    "/run/user",
    "/run/wrappers",
    "/usr/bin",
    "/usr/lib",
    "/usr/local",
    "/usr/sbin",
    "/usr/share",
    "/var/cache",
    "/var/db",
    "/var/empty",
    "/var/lib",
    "/var/lock",
    "/var/log",
    "/var/run",
    "/var/spool",
    "/var/tmp",
];

/// Longest file name (NAME_MAX) and path (PATH_MAX, with its NUL) on Linux.
const NAME_MAX: usize = 255;
const PATH_MAX: usize = 4096;

/// Bytes nixseal adds to a path's last component / to the whole path.
#[derive(Clone, Copy)]
struct Extra {
    last: usize,
    total: usize,
}

/// A temporary name `.<base>.nixseal-new` adds 13 bytes.
const TEMP_EXTRA: usize = 1 + 12;
/// `-for-users` (the `--users` locations derived from the manifest's).
const USERS_EXTRA: usize = 10;
/// The longest state file name plus its temporary name (see host::state).
const STATE_FILE_EXTRA: usize = 1 + 86 + TEMP_EXTRA;

/// Refuses a path nixseal writes that is a system directory, is inside a
/// kernel file system, or does not fit NAME_MAX/PATH_MAX with what nixseal
/// adds to it.
fn check_location(p: &str, extra: Extra) -> Result<(), String> {
    if SYSTEM_DIRS.contains(&p) {
        return Err("is a system directory; nixseal never mounts over, replaces or writes into it (use a directory of its own, e.g. under /run or /var/lib)".into());
    }
    if KERNEL_FS.iter().any(|k| p == *k || path_within(p, k)) {
        return Err("is inside a kernel file system (/proc, /sys, /dev)".into());
    }
    let comps: Vec<&str> = p.split('/').filter(|c| !c.is_empty()).collect();
    if let Some(c) = comps.iter().find(|c| c.len() > NAME_MAX) {
        return Err(format!(
            "has a component of {} bytes; file names are at most {NAME_MAX} bytes",
            c.len()
        ));
    }
    if let Some(last) = comps.last() {
        if last.len() + extra.last > NAME_MAX {
            return Err(format!(
                "has a last component of {} bytes; with the {} bytes nixseal adds for its own names next to it (temporary names, lock, `-for-users`) it exceeds the {NAME_MAX} bytes a file name may have — use a shorter name",
                last.len(),
                extra.last
            ));
        }
    }
    if p.len() + extra.total >= PATH_MAX {
        return Err(format!(
            "is {} bytes long; with the {} bytes nixseal adds below or next to it, it exceeds PATH_MAX ({PATH_MAX} bytes) — use a shorter path",
            p.len(),
            extra.total
        ));
    }
    Ok(())
}

fn check_read_path(p: &str) -> Result<(), String> {
    check_location(p, Extra { last: 0, total: 0 }).or_else(|e| {
        // Read-only paths may be anywhere but must fit the file system.
        if e.starts_with("is a system") || e.starts_with("is inside a kernel") {
            Ok(())
        } else {
            Err(e)
        }
    })
}

impl Manifest {
    /// What deploy will warn about for the entries it installs in `scope`
    /// (world-accessible modes; see docs/host.md for why these warn
    /// rather than fail).
    pub fn warnings(&self, scope: Scope) -> Vec<Warning> {
        let mut out = Vec::new();
        let mut check = |what, name: &str, mode: &str| {
            let Some(bits) = parse_mode(mode) else { return };
            let access = match (bits & 0o004 != 0, bits & 0o002 != 0) {
                (true, true) => "read and write",
                (true, false) => "read",
                (false, true) => "write",
                (false, false) if bits & 0o001 != 0 => "execute",
                _ => return,
            };
            out.push(Warning::WorldAccessible {
                what,
                name: name.to_owned(),
                mode: mode.to_owned(),
                access,
            });
        };
        for s in &self.secrets {
            if s.needed_for_users == (scope == Scope::Users) {
                check("secret", &s.name, &s.mode);
            }
        }
        if scope == Scope::Main {
            for t in &self.templates {
                check("template", &t.name, &t.mode);
            }
        }
        out
    }

    /// Checks everything that can be checked without touching the host.
    ///
    /// Owners and groups are checked for the entries the `scope` installs
    /// (`--users` runs before accounts exist and installs root-owned files).
    pub fn validate(
        &self,
        path: &Path,
        accounts: &Accounts,
        scope: Scope,
    ) -> Result<(), ManifestError> {
        let mut p = Vec::new();
        self.check(accounts, scope, &mut p);
        if p.is_empty() {
            Ok(())
        } else {
            Err(ManifestError::Invalid {
                path: path.to_owned(),
                problems: p,
            })
        }
    }

    fn check(&self, accounts: &Accounts, scope: Scope, p: &mut Vec<Problem>) {
        // Locations.
        let users_mp = self.users_mount_point();
        let users_sl = self.users_symlink();
        let mut fixed: Vec<(String, String)> = Vec::new();
        for (field, value) in [
            ("mountPoint", &self.mount_point),
            ("symlink", &self.symlink),
        ] {
            if let Err(why) = check_abs_path(value) {
                p.push(Problem::Path {
                    field: field.into(),
                    path: value.clone(),
                    why,
                });
            } else if value == "/" {
                p.push(Problem::Path {
                    field: field.into(),
                    path: value.clone(),
                    why: "is the root directory",
                });
            } else {
                fixed.push((field.into(), value.clone()));
            }
        }
        for (field, value, extra) in [
            (
                "mountPoint",
                &self.mount_point,
                // `-for-users` and `.lock`; below: `/<12 digits>.tmp/<name>`.
                Extra {
                    last: USERS_EXTRA + 6,
                    total: USERS_EXTRA + 1 + 16 + 1 + crate::contract::names::SECRET_NAME_MAX,
                },
            ),
            (
                "symlink",
                &self.symlink,
                Extra {
                    last: USERS_EXTRA + TEMP_EXTRA,
                    total: USERS_EXTRA + 1 + crate::contract::names::SECRET_NAME_MAX + TEMP_EXTRA,
                },
            ),
        ] {
            if check_abs_path(value).is_ok() {
                if let Err(why) = check_location(value, extra) {
                    p.push(Problem::Location {
                        field: field.into(),
                        path: value.clone(),
                        why,
                    });
                }
            }
        }
        if fixed.len() == 2 {
            fixed.push(("users mount point (derived)".into(), users_mp.clone()));
            fixed.push(("users symlink (derived)".into(), users_sl.clone()));
        }
        let state_dir = self.state_dir().to_owned();
        match check_abs_path(&state_dir) {
            Err(why) => p.push(Problem::Path {
                field: "stateDir".into(),
                path: state_dir.clone(),
                why,
            }),
            Ok(()) => {
                match check_location(
                    &state_dir,
                    Extra {
                        last: 0,
                        total: STATE_FILE_EXTRA,
                    },
                ) {
                    Err(why) => p.push(Problem::Location {
                        field: "stateDir".into(),
                        path: state_dir.clone(),
                        why,
                    }),
                    Ok(()) => fixed.push(("stateDir".into(), state_dir.clone())),
                }
            }
        }
        conflicts(&fixed, p, true);

        // Host keys.
        for k in &self.host_keys {
            if let Err(why) = check_abs_path(&k.path) {
                p.push(Problem::Path {
                    field: "hostKeys: path".into(),
                    path: k.path.clone(),
                    why,
                });
            } else if let Err(why) = check_read_path(&k.path) {
                p.push(Problem::Location {
                    field: "hostKeys: path".into(),
                    path: k.path.clone(),
                    why,
                });
            }
            if k.key_type != "ed25519" {
                p.push(Problem::HostKeyType {
                    path: k.path.clone(),
                    key_type: k.key_type.clone(),
                });
            }
        }

        // Names.
        let mut names: HashMap<&str, u32> = HashMap::new();
        for (what, n) in self
            .secrets
            .iter()
            .map(|s| ("secret", &s.name))
            .chain(self.templates.iter().map(|t| ("template", &t.name)))
        {
            if let Err(source) = name::validate(what, n) {
                p.push(Problem::Name { what, source });
            }
            *names.entry(n).or_default() += 1;
        }
        let mut dups: Vec<_> = names.iter().filter(|(_, c)| **c > 1).collect();
        dups.sort();
        for (n, _) in dups {
            p.push(Problem::DuplicateName {
                name: (*n).to_owned(),
            });
        }

        // Entries: modes, owners, paths, units.
        let mut custom: Vec<(String, String)> = Vec::new();
        let secret_names: HashMap<&str, &Secret> =
            self.secrets.iter().map(|s| (s.name.as_str(), s)).collect();
        let installs = |users: bool| match scope {
            Scope::Main => !users,
            Scope::Users => users,
        };
        for s in &self.secrets {
            let field = format!("secret {:?}: source", s.name);
            if let Err(why) = check_source(&s.source) {
                p.push(Problem::Path {
                    field,
                    path: s.source.clone(),
                    why,
                });
            } else if let Err(why) = check_read_path(&s.source) {
                p.push(Problem::Location {
                    field,
                    path: s.source.clone(),
                    why,
                });
            }
            self.check_entry(
                "secret",
                &s.name,
                &s.mode,
                &s.owner,
                &s.group,
                &s.path,
                installs(s.needed_for_users) && scope == Scope::Main,
                accounts,
                s.needed_for_users,
                &mut custom,
                p,
            );
            if s.needed_for_users && path_within(&s.path, &self.symlink) {
                p.push(Problem::UsersPath {
                    secret: s.name.clone(),
                    path: s.path.clone(),
                    expected: users_sl.clone(),
                });
            }
            for u in s.restart_units.iter().chain(&s.reload_units) {
                if !valid_unit(u) {
                    p.push(Problem::Unit {
                        secret: s.name.clone(),
                        unit: u.clone(),
                    });
                }
            }
        }
        for t in &self.templates {
            self.check_entry(
                "template",
                &t.name,
                &t.mode,
                &t.owner,
                &t.group,
                &t.path,
                scope == Scope::Main,
                accounts,
                false,
                &mut custom,
                p,
            );
            match placeholders(&t.content) {
                Err(Unterminated) => p.push(Problem::TemplateSyntax {
                    template: t.name.clone(),
                }),
                Ok(refs) => {
                    for r in refs {
                        if !secret_names.contains_key(r) {
                            p.push(Problem::TemplateRef {
                                template: t.name.clone(),
                                secret: r.to_owned(),
                            });
                        }
                    }
                }
            }
        }
        // Custom paths against each other and against the fixed locations.
        conflicts(&custom, p, true);
        for (cf, cp) in &custom {
            for (ff, fp) in &fixed {
                if cp == fp || path_within(cp, fp) || path_within(fp, cp) {
                    p.push(Problem::PathConflict {
                        first: cf.clone(),
                        first_path: cp.clone(),
                        second: ff.clone(),
                        second_path: fp.clone(),
                        why:
                            "overlap (a custom path must lie outside the mount point and symlinks)",
                    });
                }
            }
        }

        // Names nixseal itself uses: the locks and the temporary names next
        // to the symlinks and custom paths. No path may be one of them.
        let mut reserved: Vec<(String, String)> = Vec::new();
        if check_abs_path(&self.mount_point).is_ok() && self.mount_point != "/" {
            reserved.push((
                "the lock of mountPoint".into(),
                lock_path(&self.mount_point),
            ));
            reserved.push((
                "the lock of the users mount point".into(),
                lock_path(&users_mp),
            ));
        }
        let mut beside: Vec<(String, String)> = custom.clone();
        if check_abs_path(&self.symlink).is_ok() && self.symlink != "/" {
            beside.push(("symlink".into(), self.symlink.clone()));
            beside.push(("users symlink (derived)".into(), users_sl.clone()));
        }
        for (f, v) in &beside {
            let i = v.rfind('/').unwrap_or(0);
            for suffix in TEMP_SUFFIXES {
                reserved.push((
                    format!("the temporary name of {f}"),
                    format!("{}/{}", &v[..i], temp_name(&v[i + 1..], suffix)),
                ));
            }
        }
        let mut written: Vec<(String, String)> = custom.clone();
        written.extend(fixed.iter().cloned());
        for (wf, wp) in &written {
            for (rf, rp) in &reserved {
                if wp == rp || path_within(rp, wp) {
                    p.push(Problem::PathConflict {
                        first: wf.clone(),
                        first_path: wp.clone(),
                        second: rf.clone(),
                        second_path: rp.clone(),
                        why: "collide (nixseal creates that name itself; choose another path)",
                    });
                }
            }
        }

        let decrypts = match scope {
            Scope::Main => !self.secrets.is_empty(),
            Scope::Users => self.secrets.iter().any(|s| s.needed_for_users),
        };
        if decrypts && self.host_keys.is_empty() {
            p.push(Problem::NoHostKeys);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn check_entry(
        &self,
        what: &'static str,
        name: &str,
        mode: &str,
        owner: &str,
        group: &str,
        path: &str,
        check_accounts: bool,
        accounts: &Accounts,
        users: bool,
        custom: &mut Vec<(String, String)>,
        p: &mut Vec<Problem>,
    ) {
        if parse_mode(mode).is_none() {
            p.push(Problem::Mode {
                what,
                name: name.to_owned(),
                mode: mode.to_owned(),
            });
        }
        if check_accounts {
            if accounts.uid(owner).is_none() {
                p.push(Problem::UnknownUser {
                    what,
                    name: name.to_owned(),
                    user: owner.to_owned(),
                });
            }
            if accounts.gid(group).is_none() {
                p.push(Problem::UnknownGroup {
                    what,
                    name: name.to_owned(),
                    group: group.to_owned(),
                });
            }
        }
        let field = format!("{what} {name:?}: path");
        if let Err(why) = check_abs_path(path) {
            p.push(Problem::Path {
                field,
                path: path.to_owned(),
                why,
            });
            return;
        }
        let link = if users {
            self.users_symlink()
        } else {
            self.symlink.clone()
        };
        if !is_default_path(path, &link, name) {
            if let Err(why) = check_location(
                path,
                Extra {
                    last: TEMP_EXTRA,
                    total: TEMP_EXTRA,
                },
            ) {
                p.push(Problem::Location {
                    field,
                    path: path.to_owned(),
                    why,
                });
                return;
            }
            custom.push((field, path.to_owned()));
        }
    }
}

fn conflicts(list: &[(String, String)], p: &mut Vec<Problem>, nested: bool) {
    // Sorted so that a path is followed by what lies inside it.
    let mut sorted: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (f, v) in list {
        sorted.entry(v).or_default().push(f);
    }
    for (v, fields) in &sorted {
        for f in fields.iter().skip(1) {
            p.push(Problem::PathConflict {
                first: fields[0].to_owned(),
                first_path: (*v).to_owned(),
                second: (*f).to_owned(),
                second_path: (*v).to_owned(),
                why: "are the same path",
            });
        }
    }
    if nested {
        let keys: Vec<(&str, &str)> = sorted.iter().map(|(v, f)| (*v, f[0])).collect();
        for (i, (outer, of)) in keys.iter().enumerate() {
            for (inner, inf) in &keys[i + 1..] {
                if path_within(inner, outer) {
                    p.push(Problem::PathConflict {
                        first: (*inf).to_owned(),
                        first_path: (*inner).to_owned(),
                        second: (*of).to_owned(),
                        second_path: (*outer).to_owned(),
                        why: "lie inside one another",
                    });
                }
            }
        }
    }
}

fn check_source(p: &str) -> Result<(), &'static str> {
    check_normal_abs(p)
}

fn valid_unit(u: &str) -> bool {
    !u.is_empty()
        && !u.starts_with('-')
        && u.contains('.')
        && u.len() <= 256
        && u.chars()
            .all(|c| c.is_ascii_alphanumeric() || ":-_.\\@".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accounts() -> Accounts {
        Accounts::parse(
            "root:x:0:0::/:/\npostgres:x:71:71::/:/\n",
            "root:x:0:\npostgres:x:71:\n",
        )
    }

    fn good() -> Manifest {
        serde_json::from_str(
            r#"{"version":1,
            "hostKeys":[{"path":"/etc/ssh/ssh_host_ed25519_key","type":"ed25519"}],
            "mountPoint":"/run/nixseal.d","symlink":"/run/nixseal","keepGenerations":1,
            "secrets":[{"name":"db-password","source":"/nix/store/x-db.age",
                "owner":"postgres","group":"postgres","mode":"0400",
                "path":"/run/nixseal/db-password","symlink":true,
                "restartUnits":["postgresql.service"],"reloadUnits":[],
                "neededForUsers":false}],
            "templates":[{"name":"app.env","content":"PASSWORD={{nixseal:db-password}}\n",
                "owner":"root","group":"root","mode":"0400","path":"/run/nixseal/app.env"}]}"#,
        )
        .unwrap()
    }

    fn problems(m: &Manifest, scope: Scope) -> Vec<Problem> {
        match m.validate(Path::new("m.json"), &accounts(), scope) {
            Ok(()) => vec![],
            Err(ManifestError::Invalid { problems, .. }) => problems,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn design_example_is_valid() {
        assert_eq!(problems(&good(), Scope::Main), vec![]);
        assert_eq!(problems(&good(), Scope::Users), vec![]);
    }

    #[test]
    fn version_and_unknown_fields_refused() {
        let p = Path::new("m.json");
        let e = Manifest::parse(p, br#"{"version":2,"x":1}"#).unwrap_err();
        assert!(
            matches!(e, ManifestError::Version { ref found, .. } if found == "2"),
            "{e}"
        );
        let e = Manifest::parse(p, br#"{"hostKeys":[]}"#).unwrap_err();
        assert!(e.to_string().contains("(missing)"), "{e}");
        let mut v = serde_json::to_value(good()).unwrap();
        v["surprise"] = 1.into();
        let e = Manifest::parse(p, v.to_string().as_bytes()).unwrap_err();
        assert!(e.to_string().contains("unknown field `surprise`"), "{e}");
        v = serde_json::to_value(good()).unwrap();
        v["secrets"][0]["sourse"] = "x".into();
        let e = Manifest::parse(p, v.to_string().as_bytes()).unwrap_err();
        assert!(e.to_string().contains("sourse"), "{e}");
        assert!(matches!(
            Manifest::parse(p, b"not json"),
            Err(ManifestError::Json { .. })
        ));
    }

    #[test]
    fn modes() {
        assert_eq!(parse_mode("0400"), Some(0o400));
        assert_eq!(parse_mode("440"), Some(0o440));
        assert_eq!(parse_mode("0777"), Some(0o777));
        for bad in [
            "999", "0o400", "-1", "4755", "04000", "", "40", "0x40", "04OO",
        ] {
            assert_eq!(parse_mode(bad), None, "{bad}");
        }
    }

    #[test]
    fn paths() {
        assert!(check_abs_path("/run/x").is_ok());
        for bad in [
            "run/x",
            "/run/../etc",
            "/run//x",
            "/run/x/",
            "/run/./x",
            "/nix/store/abc",
            "/nix/store",
        ] {
            assert!(check_abs_path(bad).is_err(), "{bad}");
        }
        assert!(path_within("/a/b", "/a"));
        assert!(!path_within("/ab", "/a"));
        assert!(!path_within("/a", "/a"));
    }

    #[test]
    fn every_problem_is_reported() {
        let mut m = good();
        let mut s2 = m.secrets[0].clone();
        s2.mode = "999".into();
        s2.owner = "nobody-such".into();
        s2.group = "nogroup-such".into();
        s2.path = "relative".into();
        m.secrets.push(s2);
        let mut s3 = m.secrets[0].clone();
        s3.name = "a..b".into();
        s3.path = "/nix/store/y".into();
        s3.restart_units = vec!["--now".into()];
        m.secrets.push(s3);
        m.templates[0].content = "{{nixseal:missing}} {{nixseal:db-password}}".into();
        m.host_keys[0].key_type = "rsa".into();
        let ps = problems(&m, Scope::Main);
        let text: Vec<String> = ps.iter().map(|p| p.to_string()).collect();
        let has = |needle: &str| {
            assert!(
                text.iter().any(|t| t.contains(needle)),
                "{needle} not in {text:#?}"
            )
        };
        has("used twice");
        has("mode \"999\"");
        has("user \"nobody-such\" does not exist");
        has("group \"nogroup-such\" does not exist");
        has("\"relative\" is not an absolute path");
        has("contains `..`");
        has("inside /nix/store");
        has("{{nixseal:missing}}");
        has("type \"rsa\"");
        has("unit name \"--now\"");
    }

    #[test]
    fn custom_path_conflicts() {
        let mut m = good();
        m.secrets[0].path = "/etc/app/pw".into();
        m.templates[0].path = "/etc/app/pw".into();
        assert!(problems(&m, Scope::Main)
            .iter()
            .any(|p| p.to_string().contains("same path")));
        m.templates[0].path = "/etc/app/pw/inner".into();
        assert!(problems(&m, Scope::Main)
            .iter()
            .any(|p| p.to_string().contains("inside one another")));
        m.templates[0].path = "/run/nixseal.d/3/x".into();
        assert!(problems(&m, Scope::Main)
            .iter()
            .any(|p| p.to_string().contains("overlap")));
        m.templates[0].path = "/run/nixseal/other-name".into();
        assert!(problems(&m, Scope::Main)
            .iter()
            .any(|p| p.to_string().contains("overlap")));
    }

    #[test]
    fn users_scope_skips_account_checks_of_others() {
        let mut m = good();
        m.secrets[0].owner = "not-yet".into();
        assert!(!problems(&m, Scope::Main).is_empty());
        assert_eq!(problems(&m, Scope::Users), vec![]);
        m.secrets[0].needed_for_users = true;
        // Default path under the main symlink is refused for users secrets.
        assert!(problems(&m, Scope::Users)
            .iter()
            .any(|p| matches!(p, Problem::UsersPath { .. })));
        m.secrets[0].path = "/run/nixseal-for-users/db-password".into();
        assert_eq!(problems(&m, Scope::Users), vec![]);
        assert_eq!(problems(&m, Scope::Main), vec![]);
        assert_eq!(m.users_mount_point(), "/run/nixseal-for-users.d");
    }

    #[test]
    fn world_accessible_modes_warn() {
        let mut m = good();
        assert_eq!(m.warnings(Scope::Main), vec![]);
        m.secrets[0].mode = "0444".into();
        m.templates[0].mode = "0602".into();
        let w: Vec<String> = m
            .warnings(Scope::Main)
            .iter()
            .map(|w| w.to_string())
            .collect();
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].contains("secret \"db-password\" has mode \"0444\"")
                && w[0].contains("can read it"),
            "{w:?}"
        );
        assert!(
            w[1].contains("template \"app.env\"") && w[1].contains("can write it"),
            "{w:?}"
        );
        // The users run installs only neededForUsers secrets, no templates.
        assert_eq!(m.warnings(Scope::Users), vec![]);
        for (mode, warns) in [
            ("0004", true),
            ("0001", true),
            ("0777", true),
            ("0440", false),
            ("0070", false),
        ] {
            m.secrets[0].mode = mode.into();
            m.templates[0].mode = "0400".into();
            assert_eq!(!m.warnings(Scope::Main).is_empty(), warns, "{mode}");
        }
    }

    #[test]
    fn locations_system_dirs_and_lengths() {
        let e = Extra {
            last: TEMP_EXTRA,
            total: TEMP_EXTRA,
        };
        assert!(check_location("/etc/app/pw", e).is_ok());
        for bad in [
            "/",
            "/run",
            "/etc",
            "/var/lib",
            "/home",
            "/proc/1",
            "/sys/x",
            "/dev/shm/x",
        ] {
            assert!(check_location(bad, e).is_err(), "{bad}");
        }
        let ok = format!("/etc/{}", "x".repeat(NAME_MAX - TEMP_EXTRA));
        assert!(check_location(&ok, e).is_ok());
        let long = format!("/etc/{}", "x".repeat(NAME_MAX - TEMP_EXTRA + 1));
        assert!(check_location(&long, e).unwrap_err().contains("255 bytes"));
        let comp = format!("/etc/{}/x", "x".repeat(NAME_MAX + 1));
        assert!(check_location(&comp, e)
            .unwrap_err()
            .contains("component of 256 bytes"));
        let deep = "/a".repeat(PATH_MAX / 2);
        assert!(check_location(&deep, e).unwrap_err().contains("PATH_MAX"));
    }

    #[test]
    fn nixseal_own_names_are_reserved() {
        let collide = |m: &Manifest| {
            problems(m, Scope::Main)
                .iter()
                .any(|p| p.to_string().contains("collide"))
        };
        let mut m = good();
        assert!(!collide(&m));
        m.secrets[0].path = "/run/.nixseal.d.lock".into();
        assert!(collide(&m));
        m.secrets[0].path = "/run/.nixseal-for-users.d.lock".into();
        assert!(collide(&m));
        m.secrets[0].path = "/run/.nixseal.nixseal-new".into();
        assert!(collide(&m));
        m.secrets[0].path = "/etc/a".into();
        m.templates[0].path = "/etc/.a.nixseal-tmp".into();
        assert!(collide(&m));
        m.templates[0].path = "/run/nixseal/app.env".into();
        m.state_dir = Some("/run/.nixseal.d.lock".into());
        assert!(collide(&m));
        m.state_dir = Some("/var/lib/nixseal".into());
        m.secrets[0].path = "/var/lib/nixseal/x".into();
        assert!(problems(&m, Scope::Main)
            .iter()
            .any(|p| p.to_string().contains("overlap")));
    }

    #[test]
    fn template_placeholders() {
        assert_eq!(
            placeholders("a{{nixseal:x}}b{{nixseal:y}}").unwrap(),
            ["x", "y"]
        );
        assert!(placeholders("a{{nixseal:x").is_err());
        assert_eq!(placeholders("{{other}}").unwrap(), Vec::<&str>::new());
    }
}
