//! Validation of a parsed manifest: every problem found, before anything on
//! the host is touched, and what was learned on the way (modes parsed,
//! templates split, default or custom paths) so that nobody derives it again.
//! Owners and groups are the one thing left to the host side: whether they
//! exist is a fact of the host's account databases (`host::plan`).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use super::paths::{
    check_abs_path, check_location, check_normal_abs, check_read_path, path_within, Extra,
    STATE_FILE_EXTRA, TEMP_EXTRA, USERS_EXTRA,
};
use super::template::{pieces, Piece, Unterminated};
use super::{
    is_default_path, lock_path, parse_mode, temp_name, Manifest, ManifestError, Scope,
    TEMP_SUFFIXES,
};
use crate::contract::names::{self as name, NameError};

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
    /// `nixseal deploy --user-session` was given a system manifest.
    #[error("this is not a user-session manifest (it has no \"session\": \"user\"); a system manifest is deployed by root, without --user-session")]
    NotUserSession,
    /// A user-session manifest's `mountPoint` is not in the runtime directory.
    #[error("mountPoint {path:?} must lie in the user's runtime directory (start with \"%r/\", e.g. \"%r/nixseal.d\"): decrypted secrets live only there")]
    SessionMountPoint {
        /// The value.
        path: String,
    },
    /// A user-session manifest without `stateDir`.
    #[error("a user-session manifest needs stateDir, the user's own directory for nixseal's records (the home-manager module sets it to ~/.local/state/nixseal)")]
    SessionStateDir,
    /// An owner or group in a user-session manifest.
    #[error("{what} {name:?}: {field} {value:?} must be \"\" in a user-session manifest: the files belong to the user who runs `nixseal deploy --user-session`")]
    SessionOwner {
        /// `secret` or `template`.
        what: &'static str,
        /// Its name.
        name: String,
        /// `owner` or `group`.
        field: &'static str,
        /// The value found.
        value: String,
    },
    /// `neededForUsers` in a user-session manifest.
    #[error("secret {secret:?} is neededForUsers, which a user-session manifest cannot be (there is no --users run for a user)")]
    SessionNeededForUsers {
        /// The secret.
        secret: String,
    },
    /// `%r` in a system manifest.
    #[error("{field} {path:?} starts with %r, which stands for the runtime directory only in a user-session manifest (\"session\": \"user\"); give an absolute path")]
    RuntimeDirInSystem {
        /// Which field.
        field: String,
        /// The value.
        path: String,
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

/// What validation learned about one secret or template, once: its mode,
/// parsed, and where it goes (`None`: the default `<symlink>/<name>`, which
/// needs no placing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EntryFacts<'m> {
    /// The mode bits (at most 0o777).
    pub(crate) mode: u32,
    /// A path other than the default, to be placed.
    pub(crate) custom_path: Option<&'m str>,
}

/// What validation learned about one template: its entry facts and its text
/// split at the placeholders, each naming a secret by its index in
/// [`Manifest::secrets`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TemplateFacts<'m> {
    /// Mode and path.
    pub(crate) entry: EntryFacts<'m>,
    /// Literal text and secrets, in order.
    pub(crate) parts: Vec<Part<'m>>,
}

/// A piece of a validated template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part<'m> {
    /// Literal text.
    Text(&'m str),
    /// The content of `Manifest::secrets[i]`.
    Secret(usize),
}

/// The outcome of validating a manifest for one scope: every problem, every
/// warning, and the facts of each entry that has no problem of its own
/// (`None` exactly where a problem was recorded for that entry).
#[derive(Debug)]
pub(crate) struct Checked<'m> {
    /// Every problem found.
    pub(crate) problems: Vec<Problem>,
    /// World-accessible modes of the entries this scope installs.
    pub(crate) warnings: Vec<Warning>,
    /// Parallel to [`Manifest::secrets`].
    pub(crate) secrets: Vec<Option<EntryFacts<'m>>>,
    /// Parallel to [`Manifest::templates`].
    pub(crate) templates: Vec<Option<TemplateFacts<'m>>>,
}

impl Manifest {
    /// Checks everything that can be checked without the host: the whole
    /// document, for both a main and a `--users` run, but not whether owners
    /// and groups exist (the host's account databases decide that when
    /// `nixseal deploy` runs). What `nixseal manifest check` runs at build
    /// time; returns the warnings deploy would print (world-accessible
    /// modes).
    pub fn check(&self, path: &Path) -> Result<Vec<Warning>, ManifestError> {
        let mut problems = Vec::new();
        let mut warnings = Vec::new();
        // A user-session manifest: with `%r` as a typical runtime directory.
        let expanded;
        let (m, scopes): (&Manifest, &[Scope]) = if self.session() == super::Session::User {
            expanded = self.in_session(path, super::CHECK_RUNTIME_DIR)?;
            (&expanded, &[Scope::Session])
        } else {
            (self, &[Scope::Main, Scope::Users])
        };
        for &scope in scopes {
            let c = check(m, scope);
            for p in c.problems {
                if !problems.contains(&p) {
                    problems.push(p);
                }
            }
            warnings.extend(c.warnings);
        }
        if problems.is_empty() {
            Ok(warnings)
        } else {
            Err(ManifestError::Invalid {
                path: path.to_owned(),
                problems,
            })
        }
    }
}

/// Which warning a mode deserves, if any: permissions for "other" mean every
/// user on the host may read (or write) the plaintext. They warn rather than
/// fail (docs/host.md).
fn world_access(bits: u32) -> Option<&'static str> {
    match (bits & 0o004 != 0, bits & 0o002 != 0) {
        (true, true) => Some("read and write"),
        (true, false) => Some("read"),
        (false, true) => Some("write"),
        (false, false) if bits & 0o001 != 0 => Some("execute"),
        _ => None,
    }
}

/// Validates `m` for a run of `scope`, without touching the host and without
/// the account databases (owners and groups are the host side's to resolve).
pub(crate) fn check(m: &Manifest, scope: Scope) -> Checked<'_> {
    let mut c = Checker {
        m,
        scope,
        p: Vec::new(),
        warnings: Vec::new(),
        custom: Vec::new(),
    };
    let (secrets, templates) = c.run();
    Checked {
        problems: c.p,
        warnings: c.warnings,
        secrets,
        templates,
    }
}

struct Checker<'m> {
    m: &'m Manifest,
    scope: Scope,
    p: Vec<Problem>,
    warnings: Vec<Warning>,
    /// Custom paths seen so far (field, path).
    custom: Vec<(String, String)>,
}

/// The per-entry facts of [`check`].
type Facts<'m> = (Vec<Option<EntryFacts<'m>>>, Vec<Option<TemplateFacts<'m>>>);

impl<'m> Checker<'m> {
    fn run(&mut self) -> Facts<'m> {
        let m = self.m;
        let scope = self.scope;
        // Locations.
        let users_mp = m.users_mount_point();
        let users_sl = m.users_symlink();
        let mut fixed: Vec<(String, String)> = Vec::new();
        for (field, value) in [("mountPoint", &m.mount_point), ("symlink", &m.symlink)] {
            if self.runtime_dir_in_system(field, value) {
            } else if let Err(why) = check_abs_path(value) {
                self.p.push(Problem::Path {
                    field: field.into(),
                    path: value.clone(),
                    why,
                });
            } else if value == "/" {
                self.p.push(Problem::Path {
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
                &m.mount_point,
                // `-for-users` and `.lock`; below: `/<12 digits>.tmp/<name>`.
                Extra {
                    last: USERS_EXTRA + 6,
                    total: USERS_EXTRA + 1 + 16 + 1 + crate::contract::names::SECRET_NAME_MAX,
                },
            ),
            (
                "symlink",
                &m.symlink,
                Extra {
                    last: USERS_EXTRA + TEMP_EXTRA,
                    total: USERS_EXTRA + 1 + crate::contract::names::SECRET_NAME_MAX + TEMP_EXTRA,
                },
            ),
        ] {
            if check_abs_path(value).is_ok() {
                if let Err(why) = check_location(value, extra) {
                    self.p.push(Problem::Location {
                        field: field.into(),
                        path: value.clone(),
                        why,
                    });
                }
            }
        }
        if fixed.len() == 2 && scope != Scope::Session {
            fixed.push(("users mount point (derived)".into(), users_mp.clone()));
            fixed.push(("users symlink (derived)".into(), users_sl.clone()));
        }
        let state_dir = m.state_dir().to_owned();
        match check_abs_path(&state_dir) {
            Err(_) if self.runtime_dir_in_system("stateDir", &state_dir) => {}
            Err(why) => self.p.push(Problem::Path {
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
                    Err(why) => self.p.push(Problem::Location {
                        field: "stateDir".into(),
                        path: state_dir.clone(),
                        why,
                    }),
                    Ok(()) => fixed.push(("stateDir".into(), state_dir.clone())),
                }
            }
        }
        conflicts(&fixed, &mut self.p, true);

        // Host keys.
        for k in &m.host_keys {
            if let Err(why) = check_abs_path(&k.path) {
                self.p.push(Problem::Path {
                    field: "hostKeys: path".into(),
                    path: k.path.clone(),
                    why,
                });
            } else if let Err(why) = check_read_path(&k.path) {
                self.p.push(Problem::Location {
                    field: "hostKeys: path".into(),
                    path: k.path.clone(),
                    why,
                });
            }
            if k.key_type != "ed25519" {
                self.p.push(Problem::HostKeyType {
                    path: k.path.clone(),
                    key_type: k.key_type.clone(),
                });
            }
        }

        // Names.
        let mut names: HashMap<&str, u32> = HashMap::new();
        let mut named = Vec::with_capacity(m.secrets.len() + m.templates.len());
        for (what, n) in m
            .secrets
            .iter()
            .map(|s| ("secret", &s.name))
            .chain(m.templates.iter().map(|t| ("template", &t.name)))
        {
            let ok = match name::validate(what, n) {
                Ok(()) => true,
                Err(source) => {
                    self.p.push(Problem::Name { what, source });
                    false
                }
            };
            named.push(ok);
            *names.entry(n).or_default() += 1;
        }
        let mut dups: Vec<_> = names.iter().filter(|(_, c)| **c > 1).collect();
        dups.sort();
        for (n, _) in dups {
            self.p.push(Problem::DuplicateName {
                name: (*n).to_owned(),
            });
        }
        let unique = |n: &str| names.get(n) == Some(&1);

        // Entries: modes, paths, units.
        let secret_index: HashMap<&str, usize> = m
            .secrets
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.as_str(), i))
            .collect();
        let mut secrets = Vec::with_capacity(m.secrets.len());
        for (i, s) in m.secrets.iter().enumerate() {
            let field = format!("secret {:?}: source", s.name);
            let mut ok = named[i] && unique(&s.name);
            if let Err(why) = check_source(&s.source) {
                self.p.push(Problem::Path {
                    field,
                    path: s.source.clone(),
                    why,
                });
                ok = false;
            } else if let Err(why) = check_read_path(&s.source) {
                self.p.push(Problem::Location {
                    field,
                    path: s.source.clone(),
                    why,
                });
                ok = false;
            }
            let installs = match scope {
                Scope::Main => !s.needed_for_users,
                Scope::Users => s.needed_for_users,
                Scope::Session => true,
            };
            if scope == Scope::Session {
                ok &= self.session_owner("secret", &s.name, &s.owner, &s.group);
                if s.needed_for_users {
                    self.p.push(Problem::SessionNeededForUsers {
                        secret: s.name.clone(),
                    });
                    ok = false;
                }
            }
            let entry = self.check_entry(
                "secret",
                &s.name,
                &s.mode,
                &s.path,
                installs,
                s.needed_for_users,
            );
            if s.needed_for_users && path_within(&s.path, &m.symlink) {
                self.p.push(Problem::UsersPath {
                    secret: s.name.clone(),
                    path: s.path.clone(),
                    expected: users_sl.clone(),
                });
                ok = false;
            }
            for u in s.restart_units.iter().chain(&s.reload_units) {
                if !valid_unit(u) {
                    self.p.push(Problem::Unit {
                        secret: s.name.clone(),
                        unit: u.clone(),
                    });
                    ok = false;
                }
            }
            secrets.push(entry.filter(|_| ok));
        }
        let mut templates = Vec::with_capacity(m.templates.len());
        for (i, t) in m.templates.iter().enumerate() {
            let mut ok = named[m.secrets.len() + i] && unique(&t.name);
            if scope == Scope::Session {
                ok &= self.session_owner("template", &t.name, &t.owner, &t.group);
            }
            let entry = self.check_entry(
                "template",
                &t.name,
                &t.mode,
                &t.path,
                scope != Scope::Users,
                false,
            );
            let parts = match pieces(&t.content) {
                Err(Unterminated) => {
                    self.p.push(Problem::TemplateSyntax {
                        template: t.name.clone(),
                    });
                    None
                }
                Ok(pieces) => {
                    let mut parts = Vec::with_capacity(pieces.len());
                    let mut all = true;
                    for piece in pieces {
                        match piece {
                            Piece::Text(text) => parts.push(Part::Text(text)),
                            Piece::Placeholder(r) => match secret_index.get(r) {
                                Some(&k) => parts.push(Part::Secret(k)),
                                None => {
                                    self.p.push(Problem::TemplateRef {
                                        template: t.name.clone(),
                                        secret: r.to_owned(),
                                    });
                                    all = false;
                                }
                            },
                        }
                    }
                    all.then_some(parts)
                }
            };
            templates.push(match (entry, parts) {
                (Some(entry), Some(parts)) if ok => Some(TemplateFacts { entry, parts }),
                _ => None,
            });
        }
        // Custom paths against each other and against the fixed locations.
        let custom = std::mem::take(&mut self.custom);
        conflicts(&custom, &mut self.p, true);
        for (cf, cp) in &custom {
            for (ff, fp) in &fixed {
                if cp == fp || path_within(cp, fp) || path_within(fp, cp) {
                    self.p.push(Problem::PathConflict {
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
        if check_abs_path(&m.mount_point).is_ok() && m.mount_point != "/" {
            reserved.push(("the lock of mountPoint".into(), lock_path(&m.mount_point)));
            if scope != Scope::Session {
                reserved.push((
                    "the lock of the users mount point".into(),
                    lock_path(&users_mp),
                ));
            }
        }
        let mut beside: Vec<(String, String)> = custom.clone();
        if check_abs_path(&m.symlink).is_ok() && m.symlink != "/" {
            beside.push(("symlink".into(), m.symlink.clone()));
            if scope != Scope::Session {
                beside.push(("users symlink (derived)".into(), users_sl.clone()));
            }
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
        let mut written: Vec<(String, String)> = custom;
        written.extend(fixed.iter().cloned());
        for (wf, wp) in &written {
            for (rf, rp) in &reserved {
                if wp == rp || path_within(rp, wp) {
                    self.p.push(Problem::PathConflict {
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
            Scope::Main | Scope::Session => !m.secrets.is_empty(),
            Scope::Users => m.secrets.iter().any(|s| s.needed_for_users),
        };
        if decrypts && m.host_keys.is_empty() {
            self.p.push(Problem::NoHostKeys);
        }
        (secrets, templates)
    }

    /// Owner and group of an entry of a user-session manifest: both `""`.
    fn session_owner(&mut self, what: &'static str, name: &str, owner: &str, group: &str) -> bool {
        let mut ok = true;
        for (field, value) in [("owner", owner), ("group", group)] {
            if !value.is_empty() {
                self.p.push(Problem::SessionOwner {
                    what,
                    name: name.to_owned(),
                    field,
                    value: value.to_owned(),
                });
                ok = false;
            }
        }
        ok
    }

    /// `%r` where only a user-session manifest may have it.
    fn runtime_dir_in_system(&mut self, field: &str, path: &str) -> bool {
        if self.scope != Scope::Session && path.starts_with(super::RUNTIME_DIR) {
            self.p.push(Problem::RuntimeDirInSystem {
                field: field.to_owned(),
                path: path.to_owned(),
            });
            return true;
        }
        false
    }

    /// Mode and path of one entry; `installed`: this scope installs it (its
    /// mode is then judged for a warning); `users`: its default location is
    /// under the users symlink.
    fn check_entry(
        &mut self,
        what: &'static str,
        name: &str,
        mode: &str,
        path: &'m str,
        installed: bool,
        users: bool,
    ) -> Option<EntryFacts<'m>> {
        let bits = parse_mode(mode);
        match bits {
            None => self.p.push(Problem::Mode {
                what,
                name: name.to_owned(),
                mode: mode.to_owned(),
            }),
            Some(bits) if installed => {
                if let Some(access) = world_access(bits) {
                    self.warnings.push(Warning::WorldAccessible {
                        what,
                        name: name.to_owned(),
                        mode: mode.to_owned(),
                        access,
                    });
                }
            }
            Some(_) => {}
        }
        let field = format!("{what} {name:?}: path");
        if self.runtime_dir_in_system(&field, path) {
            return None;
        }
        if let Err(why) = check_abs_path(path) {
            self.p.push(Problem::Path {
                field,
                path: path.to_owned(),
                why,
            });
            return None;
        }
        let link = if users {
            self.m.users_symlink()
        } else {
            self.m.symlink.clone()
        };
        let custom_path = if is_default_path(path, &link, name) {
            None
        } else {
            if let Err(why) = check_location(
                path,
                Extra {
                    last: TEMP_EXTRA,
                    total: TEMP_EXTRA,
                },
            ) {
                self.p.push(Problem::Location {
                    field,
                    path: path.to_owned(),
                    why,
                });
                return None;
            }
            self.custom.push((field, path.to_owned()));
            Some(path)
        };
        Some(EntryFacts {
            mode: bits?,
            custom_path,
        })
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
