//! Step 1 of a deploy: the manifest, validated and resolved into what this
//! run installs — the `RawProfile` → `Profile` pattern of the operator side.
//!
//! [`InstallPlan::resolve`] checks the whole manifest (contract rules, see
//! `contract::manifest`) and the owners and groups against the host's
//! account databases, and reports every problem at once. What it returns is
//! everything the later steps need, derived once: which secrets this run
//! decrypts and which of them it installs, each installed file's uid, gid and
//! mode, each template split into text and secrets, and which entries have a
//! custom path to place. Nothing after it looks at a mode string, an owner
//! name or a placeholder again.

use std::path::Path;

use super::accounts::Accounts;
use crate::contract::manifest::{
    self, Manifest, ManifestError, Problem, Scope, Secret, Template, Warning,
};

/// Who owns an installed file and with which permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ownership {
    /// Owning user id.
    pub uid: u32,
    /// Owning group id.
    pub gid: u32,
    /// Permission bits (at most 0o777).
    pub mode: u32,
}

/// A secret installed into the generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Install<'m> {
    /// Its owner and mode.
    pub(crate) owner: Ownership,
    /// Where it is placed besides the generation (`None`: `<symlink>/<name>`).
    pub(crate) custom_path: Option<&'m str>,
}

/// One secret this run decrypts.
#[derive(Debug)]
pub(crate) struct SecretPlan<'m> {
    /// The manifest entry.
    pub(crate) secret: &'m Secret,
    /// How it is installed; `None`: only decrypted for a template.
    pub(crate) install: Option<Install<'m>>,
}

/// A piece of a template: literal text, or a secret of the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Piece<'m> {
    /// Literal text.
    Text(&'m str),
    /// The plaintext of `InstallPlan::secrets[i]`.
    Secret(usize),
}

/// One template this run renders.
#[derive(Debug)]
pub(crate) struct TemplatePlan<'m> {
    /// The manifest entry.
    pub(crate) template: &'m Template,
    /// Its owner and mode.
    pub(crate) owner: Ownership,
    /// Where it is placed besides the generation (`None`: `<symlink>/<name>`).
    pub(crate) custom_path: Option<&'m str>,
    /// Its text split at the placeholders.
    pub(crate) pieces: Vec<Piece<'m>>,
}

/// What one run of `nixseal deploy` installs, resolved from a valid manifest.
#[derive(Debug)]
pub struct InstallPlan<'m> {
    /// Main run or `--users`.
    pub scope: Scope,
    /// The ramfs of this run.
    pub mount_point: String,
    /// The stable symlink of this run.
    pub symlink: String,
    /// Every secret decrypted: installed ones first, in manifest order, then
    /// those only templates use.
    pub(crate) secrets: Vec<SecretPlan<'m>>,
    /// Every template rendered (none in a `--users` run).
    pub(crate) templates: Vec<TemplatePlan<'m>>,
    /// What deploy does as asked but the operator should know about.
    pub warnings: Vec<Warning>,
}

impl<'m> InstallPlan<'m> {
    /// Validates `manifest` (read from `path`, named in errors) for a run of
    /// `scope` and resolves it. Every problem is reported in one
    /// [`ManifestError::Invalid`]; owners and groups are looked up in
    /// `accounts` for what a main run installs (a `--users` run installs
    /// root-owned files and runs before the accounts exist).
    pub fn resolve(
        manifest: &'m Manifest,
        path: &Path,
        scope: Scope,
        accounts: &Accounts,
    ) -> Result<Self, ManifestError> {
        Self::resolve_with(manifest, path, scope, accounts, None)
    }

    /// [`InstallPlan::resolve`] for a user session: `manifest` has `%r`
    /// expanded ([`Manifest::in_session`]) and every file belongs to
    /// `uid`/`gid`, the user running the deploy.
    pub fn resolve_session(
        manifest: &'m Manifest,
        path: &Path,
        uid: u32,
        gid: u32,
    ) -> Result<Self, ManifestError> {
        Self::resolve_with(
            manifest,
            path,
            Scope::Session,
            &Accounts::default(),
            Some((uid, gid)),
        )
    }

    fn resolve_with(
        manifest: &'m Manifest,
        path: &Path,
        scope: Scope,
        accounts: &Accounts,
        session_ids: Option<(u32, u32)>,
    ) -> Result<Self, ManifestError> {
        let checked = manifest::check(manifest, scope);
        let mut problems = checked.problems;
        // Every entry without facts has a problem recorded; `complete`
        // makes that a checked fact rather than an assumption.
        let mut complete = true;
        let mut owner_of = |what: &'static str, name: &str, user: &str, group: &str| {
            match scope {
                Scope::Users => return Some((0, 0)),
                // Owner and group are "" (validation says so otherwise).
                Scope::Session => return session_ids,
                Scope::Main => {}
            }
            let (uid, gid) = (accounts.uid(user), accounts.gid(group));
            if uid.is_none() {
                problems.push(Problem::UnknownUser {
                    what,
                    name: name.to_owned(),
                    user: user.to_owned(),
                });
            }
            if gid.is_none() {
                problems.push(Problem::UnknownGroup {
                    what,
                    name: name.to_owned(),
                    group: group.to_owned(),
                });
            }
            uid.zip(gid)
        };

        let mut secrets = Vec::new();
        // Where each manifest secret is in `secrets`, once it is there.
        let mut slot: Vec<Option<usize>> = vec![None; manifest.secrets.len()];
        for (k, (s, facts)) in manifest.secrets.iter().zip(&checked.secrets).enumerate() {
            let installs = match scope {
                Scope::Main => !s.needed_for_users,
                Scope::Users => s.needed_for_users,
                Scope::Session => true,
            };
            if !installs {
                continue;
            }
            let owner = owner_of("secret", &s.name, &s.owner, &s.group);
            let (Some(facts), Some((uid, gid))) = (facts, owner) else {
                complete = false;
                continue;
            };
            slot[k] = Some(secrets.len());
            secrets.push(SecretPlan {
                secret: s,
                install: Some(Install {
                    owner: Ownership {
                        uid,
                        gid,
                        mode: facts.mode,
                    },
                    custom_path: facts.custom_path,
                }),
            });
        }

        let mut templates = Vec::new();
        if scope != Scope::Users {
            for (t, facts) in manifest.templates.iter().zip(&checked.templates) {
                let owner = owner_of("template", &t.name, &t.owner, &t.group);
                let (Some(facts), Some((uid, gid))) = (facts, owner) else {
                    complete = false;
                    continue;
                };
                let pieces = facts
                    .parts
                    .iter()
                    .map(|part| match *part {
                        manifest::Part::Text(text) => Piece::Text(text),
                        // A secret only templates use is decrypted, not installed.
                        manifest::Part::Secret(k) => {
                            Piece::Secret(*slot[k].get_or_insert_with(|| {
                                secrets.push(SecretPlan {
                                    secret: &manifest.secrets[k],
                                    install: None,
                                });
                                secrets.len() - 1
                            }))
                        }
                    })
                    .collect();
                templates.push(TemplatePlan {
                    template: t,
                    owner: Ownership {
                        uid,
                        gid,
                        mode: facts.entry.mode,
                    },
                    custom_path: facts.entry.custom_path,
                    pieces,
                });
            }
        }

        if !problems.is_empty() || !complete {
            return Err(ManifestError::Invalid {
                path: path.to_owned(),
                problems,
            });
        }
        let (mount_point, symlink) = manifest.locations(scope);
        Ok(InstallPlan {
            scope,
            mount_point,
            symlink,
            secrets,
            templates,
            warnings: checked.warnings,
        })
    }

    /// Secret files this run installs.
    pub fn installed(&self) -> usize {
        self.secrets.iter().filter(|s| s.install.is_some()).count()
    }

    /// Templates this run renders.
    pub fn templates(&self) -> usize {
        self.templates.len()
    }

    /// Whether anything is decrypted (and the host keys are needed).
    pub fn decrypts(&self) -> bool {
        !self.secrets.is_empty()
    }

    /// The installed secrets with how they are installed.
    pub(crate) fn installs(&self) -> impl Iterator<Item = (&SecretPlan<'m>, &Install<'m>)> {
        self.secrets
            .iter()
            .filter_map(|s| s.install.as_ref().map(|i| (s, i)))
    }
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
                "neededForUsers":false},
              {"name":"only-in-template","source":"/nix/store/x-t.age",
                "owner":"root","group":"root","mode":"0400",
                "path":"/run/nixseal-for-users/only-in-template","symlink":true,
                "neededForUsers":true}],
            "templates":[{"name":"app.env","content":"A={{nixseal:only-in-template}};B={{nixseal:db-password}}\n",
                "owner":"root","group":"root","mode":"0440","path":"/etc/app.env"}]}"#,
        )
        .unwrap()
    }

    fn problems(m: &Manifest, scope: Scope) -> Vec<String> {
        match InstallPlan::resolve(m, Path::new("m.json"), scope, &accounts()) {
            Ok(_) => vec![],
            Err(ManifestError::Invalid { problems, .. }) => {
                problems.iter().map(|p| p.to_string()).collect()
            }
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn owners_modes_templates_and_paths_are_resolved_once() {
        let m = good();
        let plan = InstallPlan::resolve(&m, Path::new("m.json"), Scope::Main, &accounts()).unwrap();
        assert_eq!(
            (plan.mount_point.as_str(), plan.symlink.as_str()),
            ("/run/nixseal.d", "/run/nixseal")
        );
        // The installed secret, with ids and mode; then the one the template
        // needs, decrypted but not installed (it is a --users secret).
        assert_eq!(plan.secrets.len(), 2);
        assert_eq!(plan.secrets[0].secret.name, "db-password");
        assert_eq!(
            plan.secrets[0].install,
            Some(Install {
                owner: Ownership {
                    uid: 71,
                    gid: 71,
                    mode: 0o400
                },
                custom_path: None
            })
        );
        assert_eq!(plan.secrets[1].secret.name, "only-in-template");
        assert_eq!(plan.secrets[1].install, None);
        assert_eq!((plan.installed(), plan.templates()), (1, 1));
        let t = &plan.templates[0];
        assert_eq!(
            t.owner,
            Ownership {
                uid: 0,
                gid: 0,
                mode: 0o440
            }
        );
        assert_eq!(t.custom_path, Some("/etc/app.env"));
        assert_eq!(
            t.pieces,
            [
                Piece::Text("A="),
                Piece::Secret(1),
                Piece::Text(";B="),
                Piece::Secret(0),
                Piece::Text("\n")
            ]
        );
        // The --users run: only the neededForUsers secret, owned by root,
        // no template.
        let users =
            InstallPlan::resolve(&m, Path::new("m.json"), Scope::Users, &accounts()).unwrap();
        assert_eq!(users.secrets.len(), 1);
        assert_eq!(users.secrets[0].secret.name, "only-in-template");
        assert_eq!(
            users.secrets[0].install.unwrap().owner,
            Ownership {
                uid: 0,
                gid: 0,
                mode: 0o400
            }
        );
        assert_eq!(users.templates(), 0);
        assert_eq!(users.symlink, "/run/nixseal-for-users");
    }

    #[test]
    fn unknown_owners_are_problems_with_every_other_problem() {
        let mut m = good();
        m.secrets[0].owner = "nobody-such".into();
        m.secrets[0].group = "nogroup-such".into();
        m.secrets[0].mode = "999".into();
        m.templates[0].owner = "ghost".into();
        let ps = problems(&m, Scope::Main);
        let has =
            |needle: &str| assert!(ps.iter().any(|t| t.contains(needle)), "{needle}: {ps:#?}");
        has("user \"nobody-such\" does not exist");
        has("group \"nogroup-such\" does not exist");
        has("template \"app.env\": user \"ghost\" does not exist");
        has("mode \"999\"");
        // A numeric id that is no account name is taken as the id.
        let mut m = good();
        m.secrets[0].owner = "4000".into();
        let plan = InstallPlan::resolve(&m, Path::new("m.json"), Scope::Main, &accounts()).unwrap();
        assert_eq!(plan.secrets[0].install.unwrap().owner.uid, 4000);
    }

    #[test]
    fn users_scope_skips_account_checks_of_others() {
        let mut m = good();
        m.secrets[0].owner = "not-yet".into();
        assert!(!problems(&m, Scope::Main).is_empty());
        // The --users run installs root-owned files: owners are not looked up.
        m.secrets[1].owner = "not-yet-either".into();
        assert_eq!(problems(&m, Scope::Users), Vec::<String>::new());
    }
}
