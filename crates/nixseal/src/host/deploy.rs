//! [`deploy`]: the eight steps in order, each a small function over the
//! [`InstallPlan`] that step 1 resolves.

use std::collections::{HashMap, HashSet};
use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{fchmod, mkdirat, renameat, Mode};

use super::accounts::Accounts;
use super::contents::{self, build, load_keys, Built};
use super::error::{DeployError, FinishFailure};
use super::paths::{self, PathError};
use super::place::{self, Departed, METADATA};
use super::plan::InstallPlan;
use super::session::Session;
use super::state::{self, Placed, State};
use super::switch::{self, There};
use super::{fault, generation, lock, mount, units};
use crate::contract::manifest::{self, Manifest, Scope, Warning};

/// What `nixseal deploy` was asked to do.
#[derive(Debug, Clone, Default)]
pub struct DeployOptions {
    /// Decrypt and render in memory only; touch nothing.
    pub dry_run: bool,
    /// Do not restart or reload units.
    pub no_restart: bool,
    /// Install only `neededForUsers` secrets (owned by root) into the users location.
    pub users: bool,
    /// Deploy a user-session manifest as its user (`--user-session`): no
    /// root, no mount, `%r` is `$XDG_RUNTIME_DIR`.
    pub user_session: bool,
}

/// What a deploy did.
#[derive(Debug, Clone, Default)]
pub struct DeployReport {
    /// The generation now active (`None` in a dry run).
    pub generation: Option<u64>,
    /// The generation active before (if any).
    pub previous: Option<u64>,
    /// The mount point used.
    pub mount_point: String,
    /// The symlink switched.
    pub symlink: String,
    /// Secret files installed (or that would be, in a dry run).
    pub secrets: usize,
    /// Templates rendered.
    pub templates: usize,
    /// Secrets whose content, owner or mode changed.
    pub changed: Vec<String>,
    /// Units restarted (`try-restart`).
    pub restarted: Vec<String>,
    /// Units reloaded (`try-reload-or-restart`).
    pub reloaded: Vec<String>,
    /// Why units were not touched, if they were not.
    pub units_skipped: Option<&'static str>,
    /// Generations removed.
    pub pruned: Vec<u64>,
    /// Whether this nixseal mounted the ramfs in this run.
    pub mounted: bool,
    /// Things done as asked that the operator should know about.
    pub warnings: Vec<Warning>,
    /// Custom paths of earlier deploys, no longer configured, removed.
    pub removed: Vec<String>,
    /// Custom paths of earlier deploys that now hold something nixseal did
    /// not put there: left alone (`path: what`).
    pub left_alone: Vec<String>,
    /// Units restarted or reloaded although their secrets did not change
    /// now: an earlier deploy owed them (killed, or systemctl failed).
    pub owed: Vec<String>,
}

impl DeployReport {
    /// What a run of `plan` is about to do, before it does anything.
    fn planned(plan: &InstallPlan) -> Self {
        DeployReport {
            mount_point: plan.mount_point.clone(),
            symlink: plan.symlink.clone(),
            secrets: plan.installed(),
            templates: plan.templates(),
            warnings: plan.warnings.clone(),
            ..DeployReport::default()
        }
    }
}

/// Runs `nixseal deploy` for the manifest at `manifest_path`.
pub fn deploy(manifest_path: &Path, opts: &DeployOptions) -> Result<DeployReport, DeployError> {
    // 1. Validate everything before touching anything: whose deploy this
    // is, the plan, then the sources it decrypts.
    let raw = Manifest::load(manifest_path)?;
    let (session, expanded) = Session::for_run(&raw, manifest_path, opts.user_session)?;
    let m = expanded.as_ref().unwrap_or(&raw);
    let plan = match &session {
        Session::User(u) => InstallPlan::resolve_session(m, manifest_path, u.uid, u.gid)?,
        Session::System => {
            let scope = if opts.users {
                Scope::Users
            } else {
                Scope::Main
            };
            let accounts = match scope {
                // `--users` installs root-owned files and runs before accounts exist.
                Scope::Users => Accounts::load_system().unwrap_or_default(),
                _ => Accounts::load_system()?,
            };
            InstallPlan::resolve(m, manifest_path, scope, &accounts)?
        }
    };
    let sources = contents::read_sources(&plan)?;
    fault::point("after-validate");
    let mut report = DeployReport::planned(&plan);

    // 4. Host keys (only needed when there is something to decrypt). Loaded
    // before the lock and the mount so that a missing key touches nothing.
    let ids = match &session {
        Session::System => load_keys(m, plan.decrypts())?,
        Session::User(_) => super::session::load_user_keys(m, plan.decrypts())?,
    };
    fault::point("after-keys");

    if opts.dry_run {
        build(&plan, &sources, &ids, None, None)?;
        return Ok(report);
    }

    // 2. Lock.
    let _lock = lock::acquire(&plan.mount_point, session.trust())?;
    fault::point("after-lock");

    // The records of earlier deploys (custom paths, restarts owed): a
    // damaged record stops the deploy before anything is mounted.
    let (mut store, old_state) =
        state::Store::open(m.state_dir(), &plan.mount_point, session.trust())?;

    // 3. Mount point (a user session's: its own 0700 directory in the
    // runtime directory) and the symlink's directory.
    let site = Site::prepare(&plan, &session)?;
    report.mounted = site.mounted;
    // What a crash may have left next to the paths the records name.
    place::clean_temps(&old_state.placed);
    fault::point("after-mount");

    // 5. Build <n>.tmp: removed again (when `staged` is dropped) on every
    // failure before the switch.
    let mut staged = Staged::create(&site)?;
    report.previous = staged.previous;
    fault::point("after-tmp-created");
    let built = staged.fill(&plan, &sources, &ids)?;
    let mut placements = place::plans(&plan, &built);
    staged.complete(&placements)?;
    fault::point("after-tmp-complete");

    // 6a. Before switching: every custom path must be placeable.
    let records: HashMap<&str, &Placed> = old_state
        .placed
        .iter()
        .map(|r| (r.path.as_str(), r))
        .collect();
    let failures = place::precheck(&mut placements, &records);
    if !failures.is_empty() {
        return Err(DeployError::Placement { failures });
    }

    // Changes are known from the build (compared with the previous
    // generation); restarts owed by earlier deploys are added.
    let units = Units::plan(&plan, &built, &old_state, opts.no_restart, &session);
    report.changed = units.changed.iter().map(|s| s.to_string()).collect();

    // 6b. Record, before the switch, everything that may exist after it:
    // the custom paths (with the copies about to be written) and the
    // restarts owed.
    let intent = |placements: &[place::Plan]| State {
        version: state::VERSION,
        mount_point: plan.mount_point.clone(),
        placed: {
            let planned: HashSet<&str> = placements.iter().map(|p| p.path).collect();
            let mut v: Vec<Placed> = old_state
                .placed
                .iter()
                .filter(|r| !planned.contains(r.path.as_str()))
                .cloned()
                .collect();
            v.extend(
                placements
                    .iter()
                    .map(|p| p.record(records.get(p.path).copied())),
            );
            v
        },
        pending_restart: units.pending_restart.clone(),
        pending_reload: units.pending_reload.clone(),
    };
    store.save(&intent(&placements))?;
    fault::point("after-record");
    let failures = place::write_copies(&mut placements);
    let recorded = if failures.is_empty() {
        store.save(&intent(&placements)).map_err(DeployError::from)
    } else {
        Err(DeployError::Placement { failures })
    };
    if let Err(e) = recorded {
        place::remove_copy_temps(&placements);
        return Err(e);
    }
    fault::point("after-copies");

    // 6c. Rename, switch, place.
    let n = match staged.switch() {
        Ok(n) => n,
        Err(e) => {
            place::remove_copy_temps(&placements);
            return Err(e);
        }
    };
    report.generation = Some(n);
    let mut failures = Vec::new();
    let kept = place_paths(
        &mut placements,
        &records,
        &old_state,
        &mut report,
        &mut failures,
    );
    drop(staged);
    fault::point("after-paths");

    // 7. Prune. A generation with nothing in it (the last secret and
    // template left the configuration) must not leave the plaintext of the
    // one it replaced in RAM until some later deploy: wait out the readers'
    // grace and prune that one too, in this run. keepGenerations = 0 still
    // keeps everything.
    let spared = if !plan.decrypts() && plan.templates() == 0 && m.keep_generations != 0 {
        if report.previous.is_some() {
            generation::wait_out_grace(&site.mount_fd, n);
        }
        None
    } else {
        report.previous
    };
    match generation::prune(&site.mount_fd, m.keep_generations, n, spared) {
        Ok(p) => report.pruned = p,
        Err(source) => failures.push(FinishFailure::Prune {
            mount_point: plan.mount_point.clone(),
            source,
        }),
    }
    fault::point("after-prune");

    // 8. Units.
    let (still_restart, still_reload) = units.run(&mut report, &mut failures);
    fault::point("after-units");

    // The records as they are now.
    let mut placed: Vec<Placed> = placements
        .iter()
        .map(|p| p.final_record(records.get(p.path).copied()))
        .collect();
    placed.extend(kept);
    let last = State {
        version: state::VERSION,
        mount_point: plan.mount_point.clone(),
        placed,
        pending_restart: still_restart,
        pending_reload: still_reload,
    };
    if let Err(e) = store.save(&last) {
        failures.push(FinishFailure::State(e));
    }

    if failures.is_empty() {
        Ok(report)
    } else {
        Err(DeployError::Finish {
            generation: n,
            failures,
            report: Box::new(report),
        })
    }
}

/// Step 3's result: nixseal's own ramfs at the mount point (a user
/// session's own directory), and the directory the stable symlink lives in.
struct Site<'p> {
    /// Who owns nixseal's own files in it.
    owner: (u32, u32),
    mount_point: &'p str,
    symlink: &'p str,
    mount_fd: OwnedFd,
    link_dir: OwnedFd,
    link_base: &'p str,
    /// Whether this run mounted the ramfs.
    mounted: bool,
}

impl<'p> Site<'p> {
    /// Mounts (or recognises) the ramfs, opens the symlink's directory and
    /// checks that what is at the symlink may be replaced.
    fn prepare(plan: &'p InstallPlan, session: &Session) -> Result<Self, DeployError> {
        let (mount_point, symlink) = (plan.mount_point.as_str(), plan.symlink.as_str());
        let (mount_fd, state) = match session {
            Session::System => mount::ensure(mount_point)?,
            Session::User(u) => (
                u.ensure_mount_point(mount_point)?,
                mount::MountState::Reused,
            ),
        };
        let (link_parent, link_base) = paths::split(symlink);
        let link_dir = paths::open_dir(link_parent, true, session.trust()).map_err(|source| {
            DeployError::Location {
                symlink: symlink.to_owned(),
                source,
            }
        })?;
        check_stable_link(&link_dir, link_base, symlink, mount_point, session)?;
        Ok(Site {
            owner: session.owner(),
            mount_point,
            symlink,
            mount_fd,
            link_dir,
            link_base,
            mounted: state == mount::MountState::Mounted,
        })
    }
}

/// Step 5's temporary generation `<n>.tmp`, removed when dropped unless it
/// became the active generation.
struct Staged<'s> {
    site: &'s Site<'s>,
    n: u64,
    /// What to remove on drop: `<n>.tmp`, then `<n>` once renamed; `None`
    /// once switched to.
    name: Option<String>,
    tmp_fd: Option<OwnedFd>,
    /// The generation active before, and a descriptor of it (for comparing).
    previous: Option<u64>,
    prev_fd: Option<OwnedFd>,
}

fn gen_err(op: &'static str, path: &str) -> impl FnOnce(rustix::io::Errno) -> DeployError {
    let path = path.to_owned();
    move |e| DeployError::Generation {
        op,
        path,
        source: e.into(),
    }
}

impl<'s> Staged<'s> {
    /// Removes leftover temporaries, numbers the new generation and creates
    /// its empty `<n>.tmp` (mode 0700).
    fn create(site: &'s Site<'s>) -> Result<Self, DeployError> {
        let mount_point = site.mount_point;
        let entries =
            generation::list(&site.mount_fd).map_err(|source| DeployError::Generation {
                op: "list",
                path: mount_point.to_owned(),
                source,
            })?;
        for e in &entries {
            if let generation::Entry::Tmp(n) = e {
                let name = format!("{n}.tmp");
                generation::remove_tree(&site.mount_fd, &name).map_err(|source| {
                    DeployError::Generation {
                        op: "remove leftover",
                        path: format!("{mount_point}/{name}"),
                        source,
                    }
                })?;
            }
        }
        let previous = generation::active(&site.link_dir, site.link_base, mount_point);
        let n = generation::next_number(&entries);
        let tmp_name = format!("{n}.tmp");
        let tmp_path = format!("{mount_point}/{tmp_name}");
        mkdirat(
            &site.mount_fd,
            tmp_name.as_str(),
            Mode::from_raw_mode(0o700),
        )
        .map_err(gen_err("create", &tmp_path))?;
        let mut staged = Staged {
            site,
            n,
            name: Some(tmp_name),
            tmp_fd: None,
            previous,
            prev_fd: None,
        };
        let name = format!("{n}.tmp");
        staged.tmp_fd = Some(
            paths::open_dir_at(&site.mount_fd, &name, &tmp_path).map_err(|e| {
                DeployError::Generation {
                    op: "open",
                    path: tmp_path.clone(),
                    source: io::Error::other(e.to_string()),
                }
            })?,
        );
        staged.prev_fd = previous.and_then(|p| {
            let name = p.to_string();
            paths::open_dir_at(&site.mount_fd, &name, &name).ok()
        });
        Ok(staged)
    }

    /// Decrypts and renders into `<n>.tmp` (compared with the previous
    /// generation).
    fn fill(
        &self,
        plan: &InstallPlan,
        sources: &[Vec<u8>],
        ids: &[super::identity::HostIdentity],
    ) -> Result<Built, DeployError> {
        build(
            plan,
            sources,
            ids,
            self.tmp_fd.as_ref(),
            self.prev_fd.as_ref(),
        )
    }

    /// Writes the generation's record of its custom paths and makes it
    /// readable (0751): a complete generation, not yet active.
    fn complete(&mut self, placements: &[place::Plan]) -> Result<(), DeployError> {
        let tmp_path = format!("{}/{}.tmp", self.site.mount_point, self.n);
        let Some(tmp_fd) = self.tmp_fd.take() else {
            return Err(DeployError::Generation {
                op: "complete",
                path: tmp_path,
                source: io::Error::other("the temporary generation was completed already"),
            });
        };
        serde_json::to_vec(&place::metadata(placements))
            .map_err(|e| io::Error::other(e.to_string()))
            .and_then(|json| {
                let (uid, gid) = self.site.owner;
                generation::write_new_file(&tmp_fd, METADATA, uid, gid, 0o600, &json)
            })
            .map_err(|source| DeployError::Generation {
                op: "write",
                path: format!("{tmp_path}/{METADATA}"),
                source,
            })?;
        fchmod(&tmp_fd, Mode::from_raw_mode(0o751)).map_err(gen_err("chmod", &tmp_path))
    }

    /// Renames `<n>.tmp` to `<n>` and switches the stable symlink to it by
    /// `rename(2)` of a fresh symlink; returns `n`.
    fn switch(&mut self) -> Result<u64, DeployError> {
        let site = self.site;
        let n = self.n;
        let gen_name = n.to_string();
        let gen_path = format!("{}/{gen_name}", site.mount_point);
        let tmp_name = format!("{n}.tmp");
        renameat(
            &site.mount_fd,
            tmp_name.as_str(),
            &site.mount_fd,
            gen_name.as_str(),
        )
        .map_err(gen_err("rename to", &gen_path))?;
        self.name = Some(gen_name);
        fault::point("after-rename");
        switch::replace_symlink(&site.link_dir, site.link_base, &gen_path, true).map_err(
            |source| DeployError::Generation {
                op: "switch symlink",
                path: site.symlink.to_owned(),
                source,
            },
        )?;
        self.name = None;
        fault::point("after-switch");
        Ok(n)
    }
}

impl Drop for Staged<'_> {
    fn drop(&mut self) {
        drop(self.tmp_fd.take());
        if let Some(name) = self.name.take() {
            let _ = generation::remove_tree(&self.site.mount_fd, &name);
        }
    }
}

/// After the switch: places every custom path and removes what earlier
/// deploys placed that is no longer configured. Returns the records of
/// paths that could not be removed (kept for the next deploy).
fn place_paths(
    placements: &mut [place::Plan],
    records: &HashMap<&str, &Placed>,
    old_state: &State,
    report: &mut DeployReport,
    failures: &mut Vec<FinishFailure>,
) -> Vec<Placed> {
    place::place(placements, records, failures);
    let planned: HashSet<&str> = placements.iter().map(|p| p.path).collect();
    let mut kept = Vec::new();
    for r in old_state
        .placed
        .iter()
        .filter(|r| !planned.contains(r.path.as_str()))
    {
        match place::remove_departed(r, failures) {
            Departed::Removed => report.removed.push(r.path.clone()),
            Departed::Gone => {}
            Departed::LeftAlone(t) => report.left_alone.push(format!("{}: {t}", r.path)),
            Departed::Failed => kept.push(r.clone()),
        }
    }
    kept
}

/// Step 8, planned before the switch: which units to restart and reload,
/// and what the records must say is owed if it does not happen.
struct Units<'m> {
    /// Installed secrets whose content, owner or mode changed.
    changed: Vec<&'m str>,
    /// Units of the changed secrets.
    changed_units: HashSet<&'m str>,
    restart: Vec<String>,
    reload: Vec<String>,
    /// Why units are not touched now, if they are not.
    skip: Option<&'static str>,
    /// What the records say is owed until systemctl succeeded.
    pending_restart: Vec<String>,
    pending_reload: Vec<String>,
    /// `systemctl --user` (a user session).
    user: bool,
}

impl<'m> Units<'m> {
    fn plan(
        plan: &InstallPlan<'m>,
        built: &Built,
        old: &State,
        no_restart: bool,
        session: &Session,
    ) -> Self {
        let user = session.is_user();
        let changed: Vec<&'m manifest::Secret> = plan
            .secrets
            .iter()
            .zip(&built.secrets)
            .filter(|(s, p)| s.install.is_some() && p.changed)
            .map(|(s, _)| s.secret)
            .collect();
        // Restarts owed by earlier deploys, as long as a secret of this
        // manifest still names the unit.
        let listed: HashSet<&str> = plan
            .installs()
            .flat_map(|(s, _)| s.secret.restart_units.iter().chain(&s.secret.reload_units))
            .map(String::as_str)
            .collect();
        let owed = |v: &[String]| -> Vec<String> {
            v.iter()
                .filter(|u| listed.contains(u.as_str()))
                .cloned()
                .collect()
        };
        let (owed_restart, owed_reload) = (owed(&old.pending_restart), owed(&old.pending_reload));
        let (restart, reload) = units::plan(
            owed_restart
                .iter()
                .chain(changed.iter().flat_map(|s| &s.restart_units)),
            owed_reload
                .iter()
                .chain(changed.iter().flat_map(|s| &s.reload_units)),
        );
        let skip = if restart.is_empty() && reload.is_empty() {
            None
        } else if no_restart {
            Some("--no-restart")
        } else if !units::systemd_running(match session {
            Session::User(u) => Some(u.runtime_dir.as_str()),
            Session::System => None,
        }) {
            Some(if user {
                "the user's systemd manager is not running"
            } else {
                "systemd is not running"
            })
        } else if units::early_boot(user) {
            Some(if user { SESSION_STARTING } else { EARLY_BOOT })
        } else {
            None
        };
        let (pending_restart, pending_reload) = match skip {
            None => (restart.clone(), reload.clone()),
            // Units that have not started yet read the new generation when
            // they start: nothing is owed any more.
            Some(EARLY_BOOT) | Some(SESSION_STARTING) => (Vec::new(), Vec::new()),
            Some(_) => (owed_restart, owed_reload),
        };
        let changed_units = changed
            .iter()
            .flat_map(|s| s.restart_units.iter().chain(&s.reload_units))
            .map(String::as_str)
            .collect();
        Units {
            changed: changed.iter().map(|s| s.name.as_str()).collect(),
            changed_units,
            restart,
            reload,
            skip,
            pending_restart,
            pending_reload,
            user,
        }
    }

    /// Restarts and reloads (or says why not); returns what is still owed.
    fn run(
        self,
        report: &mut DeployReport,
        failures: &mut Vec<FinishFailure>,
    ) -> (Vec<String>, Vec<String>) {
        let (mut still_restart, mut still_reload) = (self.pending_restart, self.pending_reload);
        if let Some(why) = self.skip {
            report.units_skipped = Some(why);
        } else if !self.restart.is_empty() || !self.reload.is_empty() {
            report.owed = self
                .restart
                .iter()
                .chain(&self.reload)
                .filter(|u| !self.changed_units.contains(u.as_str()))
                .cloned()
                .collect();
            match units::systemctl("try-restart", &self.restart, self.user) {
                Ok(()) => {
                    report.restarted = self.restart;
                    still_restart.clear();
                }
                Err(e) => failures.push(e.into()),
            }
            match units::systemctl("try-reload-or-restart", &self.reload, self.user) {
                Ok(()) => {
                    report.reloaded = self.reload;
                    still_reload.clear();
                }
                Err(e) => failures.push(e.into()),
            }
        }
        (still_restart, still_reload)
    }
}

/// Why units are not restarted while the system boots.
const EARLY_BOOT: &str = "the system is still booting";
/// Why user units are not restarted while the user's manager starts (login).
const SESSION_STARTING: &str = "the user session is still starting";

/// The stable symlink may only replace nothing or a symlink nixseal made: one
/// into `mount_point`, or into another ramfs nixseal mounted (the mount
/// point was changed).
fn check_stable_link(
    dir: &rustix::fd::OwnedFd,
    base: &str,
    symlink: &str,
    mount_point: &str,
    session: &Session,
) -> Result<(), DeployError> {
    let there = switch::look(dir, base).map_err(|e| DeployError::Location {
        symlink: symlink.to_owned(),
        source: PathError::Io {
            op: "stat",
            path: symlink.to_owned(),
            source: e,
        },
    })?;
    let ours = match &there {
        There::Absent => true,
        There::Symlink(t) => {
            let (tp, tb) = paths::split(t);
            t.strip_prefix(mount_point)
                .is_some_and(|r| r.starts_with('/'))
                || (t.starts_with('/')
                    && manifest::check_abs_path(t).is_ok()
                    && matches!(generation::classify(tb), generation::Entry::Generation(_))
                    && match session {
                        Session::System => mount::is_ours(tp),
                        // An earlier mount point of this user's, in the
                        // runtime directory.
                        Session::User(u) => manifest::path_within(tp, &u.runtime_dir),
                    })
        }
        _ => false,
    };
    if ours {
        Ok(())
    } else {
        Err(DeployError::Occupied {
            path: symlink.to_owned(),
            what: there.to_string(),
        })
    }
}
