//! The `--json` documents of `check`, `status` and `renc --dry-run`
//! (docs/json.md, "Operator reports"): one schema family next to `audit
//! --json`, each document with `version` and `command`. These types are
//! the schema: they write it and, with serde, read it back (unknown fields
//! refused), so a test parses the documented example with them.
//!
//! Messages are the library's (what failed and why), without the CLI's
//! hints about flags and apps.

use serde::{Deserialize, Serialize};

use super::rekey::{PairError, PairState, Plan, Warning};
use super::renc::{CheckProblem, CheckReport, DryRun};
use super::status::{HostStatus, SecretState};

/// The version of every operator report.
pub const REPORT_VERSION: u64 = 1;

/// `nixseal check --json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CheckJson {
    /// `1`.
    pub version: u64,
    /// `"check"`.
    pub command: String,
    /// Nothing to report: `renc` would change nothing (exit 0).
    pub current: bool,
    /// (host, secret) pairs looked at (the scope's).
    pub outputs: usize,
    /// Every problem, in the order the human output lists them.
    pub problems: Vec<ProblemJson>,
    /// Non-fatal findings.
    pub warnings: Vec<String>,
}

/// One problem `check` (or a dry run) reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProblemJson {
    /// `host` (a blocked host), `stale`, `awaitsGeneration`, `blocked` (a
    /// pair that cannot be rekeyed), `leftOver`, `untracked`.
    pub kind: String,
    /// The host, when one is concerned.
    pub host: Option<String>,
    /// The secret, when one is concerned.
    pub secret: Option<String>,
    /// The file concerned, as nixseal names it.
    pub path: Option<String>,
    /// What is wrong, in words.
    pub message: String,
}

/// `nixseal renc --dry-run --json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DryRunJson {
    /// `1`.
    pub version: u64,
    /// `"renc --dry-run"`.
    pub command: String,
    /// Master files a generator would make.
    pub generate: Vec<GenerateJson>,
    /// Outputs to (re)write.
    pub rekey: Vec<RekeyJson>,
    /// Files to remove.
    pub remove: Vec<RemoveJson>,
    /// Blocked hosts and pairs that cannot be rekeyed.
    pub failing: Vec<ProblemJson>,
    /// The summary's counts.
    pub counts: CountsJson,
    /// Non-fatal findings.
    pub warnings: Vec<String>,
}

/// A master file a generator would make.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GenerateJson {
    /// The master file, as the profile writes it.
    pub file: String,
    /// The generator.
    pub generator: String,
    /// `host/secret` of each use.
    pub used_by: Vec<String>,
}

/// An output to (re)write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RekeyJson {
    /// The host.
    pub host: String,
    /// The secret.
    pub secret: String,
    /// Why (`missing`, `stale: the master secret changed`, …, `after
    /// generating its master file`).
    pub reason: String,
}

/// A file to remove.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RemoveJson {
    /// The file or directory.
    pub path: String,
    /// The host directory it is in.
    pub host: String,
    /// The secret it held, for an output.
    pub secret: Option<String>,
}

/// A dry run's counts (as its summary line).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CountsJson {
    /// Master files to generate.
    pub generate: usize,
    /// Outputs to (re)write.
    pub rekey: usize,
    /// Files to remove.
    pub remove: usize,
    /// Blocked hosts and pairs.
    pub failing: usize,
    /// Outputs already current.
    pub current: usize,
}

/// `nixseal status --json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StatusJson {
    /// `1`.
    pub version: u64,
    /// `"status"`.
    pub command: String,
    /// Hosts that need a redeploy.
    pub redeploy: Vec<String>,
    /// One per `--manifest`, in order.
    pub hosts: Vec<HostStatusJson>,
}

/// One host's comparison.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HostStatusJson {
    /// The host.
    pub host: String,
    /// The manifest compared with.
    pub manifest: String,
    /// Whether a redeploy changes anything.
    pub needs_redeploy: bool,
    /// Each secret of the profile or the manifest, by name.
    pub secrets: Vec<SecretStatusJson>,
}

/// One secret's comparison.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SecretStatusJson {
    /// The secret.
    pub name: String,
    /// `current`, `stale`, `notDeployed`, `notRekeyed`, `removed`.
    pub state: String,
    /// The store path the host runs (stale, removed).
    pub running: Option<String>,
    /// The store path the working tree would deploy (stale, notDeployed).
    pub expected: Option<String>,
    /// The rekeyed file that is missing (notRekeyed).
    pub path: Option<String>,
}

fn warning_text(w: &Warning) -> String {
    match w {
        Warning::InvalidCache { path, reason } => format!(
            "rekey cache {} is unreadable ({reason}); that host's outputs are rewritten",
            path.display()
        ),
        Warning::ForeignDir { path } => format!(
            "{} is not a host of the profile and was not made by nixseal; left alone",
            path.display()
        ),
        Warning::SharedHostKey { key, hosts } => format!(
            "hosts {} have the same hostPubkey ({key}): each of them can decrypt the others' rekeyed secrets",
            hosts.iter().map(|h| h.as_str()).collect::<Vec<_>>().join(", ")
        ),
        Warning::UnusableHostKey { host, error } => {
            format!("host {host} has no secrets yet, and its key is not usable: {error}")
        }
    }
}

fn problem(
    kind: &str,
    host: Option<String>,
    secret: Option<String>,
    path: Option<String>,
    message: String,
) -> ProblemJson {
    ProblemJson {
        kind: kind.into(),
        host,
        secret,
        path,
        message,
    }
}

fn pair_problem(plan_pair: &super::rekey::Pair, e: &PairError) -> ProblemJson {
    problem(
        "blocked",
        Some(plan_pair.host.to_string()),
        Some(plan_pair.secret.to_string()),
        Some(plan_pair.output.display().to_string()),
        e.to_string(),
    )
}

fn host_problems(plan: &Plan) -> impl Iterator<Item = ProblemJson> + '_ {
    plan.host_errors.iter().map(|h| {
        problem(
            "host",
            Some(h.host.clone()),
            None,
            None,
            h.error.to_string(),
        )
    })
}

impl CheckReport {
    /// The `--json` document.
    pub fn to_json(&self) -> CheckJson {
        let problems: Vec<ProblemJson> = self
            .problems()
            .into_iter()
            .map(|p| match p {
                CheckProblem::Host(h) => {
                    problem("host", Some(h.host.clone()), None, None, h.error.to_string())
                }
                CheckProblem::Stale { pair, why } => problem(
                    "stale",
                    Some(pair.host.to_string()),
                    Some(pair.secret.to_string()),
                    Some(pair.output.display().to_string()),
                    why.to_string(),
                ),
                CheckProblem::AwaitsGeneration(pair) => problem(
                    "awaitsGeneration",
                    Some(pair.host.to_string()),
                    Some(pair.secret.to_string()),
                    Some(pair.source.display().to_string()),
                    format!(
                        "its master file {} does not exist yet and has a generator; renc generates and rekeys it",
                        pair.source.display()
                    ),
                ),
                CheckProblem::Blocked { pair, error } => pair_problem(pair, error),
                CheckProblem::LeftOver(r) => problem(
                    "leftOver",
                    Some(r.host.clone()),
                    r.secret.clone(),
                    Some(r.path.display().to_string()),
                    "left over (its host or secret left the profile)".into(),
                ),
                CheckProblem::Untracked(u) => problem(
                    "untracked",
                    None,
                    None,
                    Some(u.display().to_string()),
                    "exists but is not tracked by git, so the flake cannot see it".into(),
                ),
            })
            .collect();
        CheckJson {
            version: REPORT_VERSION,
            command: "check".into(),
            current: problems.is_empty(),
            outputs: self.plan.outputs(),
            problems,
            warnings: self.plan.warnings.iter().map(warning_text).collect(),
        }
    }
}

impl DryRun {
    /// The `--json` document.
    pub fn to_json(&self) -> DryRunJson {
        let c = self.counts();
        let mut rekey = Vec::new();
        let mut failing: Vec<ProblemJson> = host_problems(&self.plan).collect();
        for p in &self.plan.pairs {
            if self.awaits_generation(p) {
                rekey.push(RekeyJson {
                    host: p.host.to_string(),
                    secret: p.secret.to_string(),
                    reason: "after generating its master file".into(),
                });
                continue;
            }
            match &p.state {
                PairState::Current | PairState::Blocked(PairError::HostBlocked { .. }) => {}
                PairState::Stale(why) => rekey.push(RekeyJson {
                    host: p.host.to_string(),
                    secret: p.secret.to_string(),
                    reason: why.to_string(),
                }),
                PairState::Blocked(e) => failing.push(pair_problem(p, e)),
            }
        }
        DryRunJson {
            version: REPORT_VERSION,
            command: "renc --dry-run".into(),
            generate: self
                .generate
                .iter()
                .map(|g| GenerateJson {
                    file: g.file.clone(),
                    generator: g.generator.display().to_string(),
                    used_by: g.used_by.clone(),
                })
                .collect(),
            rekey,
            remove: self
                .plan
                .removals
                .iter()
                .map(|r| RemoveJson {
                    path: r.path.display().to_string(),
                    host: r.host.clone(),
                    secret: r.secret.clone(),
                })
                .collect(),
            failing,
            counts: CountsJson {
                generate: c.generate,
                rekey: c.rekey,
                remove: c.remove,
                failing: c.failing,
                current: c.current,
            },
            warnings: self.plan.warnings.iter().map(warning_text).collect(),
        }
    }
}

/// The `status --json` document of some hosts' comparisons.
pub fn status_json(hosts: &[HostStatus]) -> StatusJson {
    StatusJson {
        version: REPORT_VERSION,
        command: "status".into(),
        redeploy: hosts
            .iter()
            .filter(|h| h.needs_redeploy())
            .map(|h| h.host.to_string())
            .collect(),
        hosts: hosts
            .iter()
            .map(|h| HostStatusJson {
                host: h.host.to_string(),
                manifest: h.manifest.display().to_string(),
                needs_redeploy: h.needs_redeploy(),
                secrets: h
                    .secrets
                    .iter()
                    .map(|(name, s)| {
                        let (state, running, expected, path) = match s {
                            SecretState::Current => ("current", None, None, None),
                            SecretState::Stale { running, expected } => (
                                "stale",
                                Some(running.clone()),
                                Some(expected.to_string()),
                                None,
                            ),
                            SecretState::NotDeployed { expected } => {
                                ("notDeployed", None, Some(expected.to_string()), None)
                            }
                            SecretState::NotRekeyed { path } => {
                                ("notRekeyed", None, None, Some(path.display().to_string()))
                            }
                            SecretState::Removed { running } => {
                                ("removed", Some(running.clone()), None, None)
                            }
                        };
                        SecretStatusJson {
                            name: name.clone(),
                            state: state.into(),
                            running,
                            expected,
                            path,
                        }
                    })
                    .collect(),
            })
            .collect(),
    }
}
