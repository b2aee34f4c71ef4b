//! The host manifest (version 1): what `nixseal deploy` installs on one host.
//!
//! Keep in sync with `manifest` in `modules/nixos.nix` (and the user-session
//! manifest of `modules/home-manager.nix`), which emit it; the schema is
//! described in docs/design.md. Unknown fields and unknown versions are refused.
//!
//! [`Manifest::check`] (in `validate.rs`) checks the whole document without
//! the host and reports every problem it finds, not only the first; the host
//! side's `InstallPlan::resolve` adds the owners and groups and turns the
//! facts validation learned into what a deploy installs.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

mod paths;
mod template;
mod validate;

pub use paths::{check_abs_path, path_within};
pub use template::{pieces, placeholders, Piece, Unterminated};
pub(crate) use validate::{check, Part};
pub use validate::{Problem, Warning};

/// The only manifest version this build understands.
pub const VERSION: u64 = 1;

/// Where `{{nixseal:NAME}}` placeholders start in a template.
pub const PLACEHOLDER_OPEN: &str = "{{nixseal:";
/// Where a placeholder ends.
pub const PLACEHOLDER_CLOSE: &str = "}}";

/// Where nixseal keeps its persistent records unless `stateDir` says otherwise.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/nixseal";

/// The suffixes of the temporary names nixseal creates next to a path it
/// places (`.<name><suffix>`): a fresh symlink, a fresh copy.
pub const TEMP_SUFFIXES: [&str; 2] = [".nixseal-new", ".nixseal-tmp"];

/// The temporary name next to `base` for a suffix of [`TEMP_SUFFIXES`].
pub fn temp_name(base: &str, suffix: &str) -> String {
    format!(".{base}{suffix}")
}

/// The lock file guarding `mount_point`: `<parent>/.<name>.lock`.
pub fn lock_path(mount_point: &str) -> String {
    let i = mount_point.rfind('/').unwrap_or(0);
    let (parent, base) = (&mount_point[..i], &mount_point[i + 1..]);
    format!("{parent}/.{base}.lock")
}

/// What stands for `$XDG_RUNTIME_DIR` at the start of a path of a
/// user-session manifest.
pub const RUNTIME_DIR: &str = "%r";

/// The runtime directory `nixseal manifest check` assumes for a user-session
/// manifest (deploy uses the user's own).
pub const CHECK_RUNTIME_DIR: &str = "/run/user/1000";

/// Who a manifest is for: the system (`nixseal deploy` as root, from
/// `modules/nixos.nix`) or one user's session (`nixseal deploy
/// --user-session` as that user, from `modules/home-manager.nix`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Session {
    /// The system's manifest (the default).
    #[default]
    System,
    /// A user-session manifest: paths may start with `%r`, owner and group
    /// are `""`, no `neededForUsers`.
    User,
}

/// A host manifest, version 1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Manifest {
    /// Always 1.
    pub version: u64,
    /// Whose manifest this is; [`Session::System`] when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<Session>,
    /// Private keys the host decrypts with.
    pub host_keys: Vec<HostKey>,
    /// The ramfs holding the generations, e.g. `/run/nixseal.d`.
    pub mount_point: String,
    /// The stable symlink to the active generation, e.g. `/run/nixseal`.
    pub symlink: String,
    /// Generations kept, the active one included; 0 disables pruning.
    pub keep_generations: u32,
    /// Root-only directory for nixseal's records that must survive a reboot
    /// (custom paths it placed, restarts still owed); [`DEFAULT_STATE_DIR`]
    /// when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<String>,
    /// Secrets to decrypt.
    #[serde(default)]
    pub secrets: Vec<Secret>,
    /// Files rendered from secrets.
    #[serde(default)]
    pub templates: Vec<Template>,
}

/// One host private key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HostKey {
    /// Absolute path of the OpenSSH private key.
    pub path: String,
    /// Key type; only `ed25519` is supported.
    #[serde(rename = "type")]
    pub key_type: String,
}

/// One secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Secret {
    /// File name inside the generation.
    pub name: String,
    /// The rekeyed age file (a store path).
    pub source: String,
    /// Owning user.
    pub owner: String,
    /// Owning group.
    pub group: String,
    /// Octal mode, e.g. `"0400"`.
    pub mode: String,
    /// Where services find it; `<symlink>/<name>` needs no extra placement.
    pub path: String,
    /// For another `path`: a symlink through `symlink` (true) or a copy.
    #[serde(default = "default_true")]
    pub symlink: bool,
    /// Units restarted when the secret changes.
    #[serde(default)]
    pub restart_units: Vec<String>,
    /// Units reloaded when the secret changes.
    #[serde(default)]
    pub reload_units: Vec<String>,
    /// Installed by `deploy --users`, before user accounts exist.
    #[serde(default)]
    pub needed_for_users: bool,
    /// Copy mode only: allow the copy at `path` to live on a persistent file
    /// system (plaintext on disk until the secret leaves the configuration).
    /// Without it, a copy is placed only on a memory file system (tmpfs,
    /// ramfs). See docs/threat-model.md.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_plaintext_on_disk: bool,
}

fn default_true() -> bool {
    true
}

/// One template: text with `{{nixseal:NAME}}` placeholders.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Template {
    /// File name inside the generation.
    pub name: String,
    /// The text; placeholders are replaced by secret contents.
    pub content: String,
    /// Owning user.
    pub owner: String,
    /// Owning group.
    pub group: String,
    /// Octal mode.
    pub mode: String,
    /// Where services find it (a symlink through `symlink` when not the default).
    pub path: String,
}

/// Which part of the manifest a run installs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Everything but `neededForUsers` secrets.
    Main,
    /// Only `neededForUsers` secrets, owned by root (`deploy --users`).
    Users,
    /// A user-session manifest, `%r` expanded: everything, owned by the
    /// user who runs `deploy --user-session`.
    Session,
}

/// Why a manifest was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// The file could not be read.
    #[error("cannot read manifest {}: {source}", path.display())]
    Read {
        /// The manifest file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Not JSON, or not the version-1 schema (unknown or missing field, wrong type).
    #[error("manifest {} is not a valid version-1 host manifest: {source}", path.display())]
    Json {
        /// The manifest file.
        path: PathBuf,
        /// The parser's error (names the line and column).
        #[source]
        source: serde_json::Error,
    },
    /// The `version` field is missing or not 1.
    #[error("manifest {} has version {found}; this nixseal reads version {VERSION} (rebuild the host with a matching nixseal)", path.display())]
    Version {
        /// The manifest file.
        path: PathBuf,
        /// The version found, as JSON text.
        found: String,
    },
    /// Parsed, but the content is inconsistent.
    #[error("manifest {} is invalid:{}", path.display(), Bullets(problems))]
    Invalid {
        /// The manifest file.
        path: PathBuf,
        /// Every problem found.
        problems: Vec<Problem>,
    },
}

struct Bullets<'a>(&'a [Problem]);
impl fmt::Display for Bullets<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in self.0 {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

impl Manifest {
    /// Reads and parses a manifest file (no validation beyond the schema).
    /// Only a regular file of at most [`crate::common::fsutil::MAX_FILE`] bytes is
    /// read: a FIFO, a device or a sparse giant is refused before reading.
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        let bytes = crate::common::fsutil::read_regular(path, crate::common::fsutil::MAX_FILE)
            .map_err(|source| ManifestError::Read {
                path: path.to_owned(),
                source,
            })?;
        Self::parse(path, &bytes)
    }

    /// The state directory (`stateDir`, or [`DEFAULT_STATE_DIR`]).
    pub fn state_dir(&self) -> &str {
        self.state_dir.as_deref().unwrap_or(DEFAULT_STATE_DIR)
    }

    /// Whose manifest this is (`session`, [`Session::System`] when absent).
    pub fn session(&self) -> Session {
        self.session.unwrap_or_default()
    }

    /// This user-session manifest with `%r` at the start of `mountPoint`,
    /// `symlink`, `stateDir` and every `path` replaced by `runtime_dir` (an
    /// absolute path), ready for [`Scope::Session`]. What must hold before
    /// the expansion is checked here: the manifest is a user-session one,
    /// `mountPoint` lies in the runtime directory and `stateDir` is given
    /// (the module sets it to `~/.local/state/nixseal`).
    pub fn in_session(&self, path: &Path, runtime_dir: &str) -> Result<Manifest, ManifestError> {
        let mut problems = Vec::new();
        if self.session() != Session::User {
            problems.push(Problem::NotUserSession);
        }
        let under = |p: &str| {
            p.strip_prefix(RUNTIME_DIR)
                .is_some_and(|r| r.starts_with('/'))
        };
        if !under(&self.mount_point) {
            problems.push(Problem::SessionMountPoint {
                path: self.mount_point.clone(),
            });
        }
        if self.state_dir.is_none() {
            problems.push(Problem::SessionStateDir);
        }
        if !problems.is_empty() {
            return Err(ManifestError::Invalid {
                path: path.to_owned(),
                problems,
            });
        }
        let expand = |p: &str| -> String {
            match p.strip_prefix(RUNTIME_DIR) {
                Some(rest) if rest.is_empty() || rest.starts_with('/') => {
                    format!("{runtime_dir}{rest}")
                }
                _ => p.to_owned(),
            }
        };
        let mut m = self.clone();
        m.mount_point = expand(&m.mount_point);
        m.symlink = expand(&m.symlink);
        m.state_dir = m.state_dir.as_deref().map(expand);
        for s in &mut m.secrets {
            s.path = expand(&s.path);
        }
        for t in &mut m.templates {
            t.path = expand(&t.path);
        }
        Ok(m)
    }

    /// Parses manifest bytes; `path` is only used in errors.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Self, ManifestError> {
        let json = |source| ManifestError::Json {
            path: path.to_owned(),
            source,
        };
        // A valid manifest parses in one pass (1000 secrets: a JSON tree
        // first would double the parsing at every boot).
        let direct = serde_json::from_slice::<Self>(bytes);
        match direct {
            Ok(m) if m.version == VERSION => return Ok(m),
            _ => {}
        }
        // Anything else: check the version first so that a future manifest
        // is reported as such, not as "unknown field".
        let value: serde_json::Value = serde_json::from_slice(bytes).map_err(json)?;
        match value.get("version") {
            Some(v) if v.as_u64() == Some(VERSION) => {}
            Some(v) if value.is_object() => {
                return Err(ManifestError::Version {
                    path: path.to_owned(),
                    found: v.to_string(),
                })
            }
            None if value.is_object() => {
                return Err(ManifestError::Version {
                    path: path.to_owned(),
                    found: "(missing)".into(),
                })
            }
            _ => {}
        }
        // Only for the error message: a document that failed the direct parse
        // must never be accepted through the tree (serde_json's `Value` keeps
        // the last of two equal keys, hiding a repeated field).
        Err(match direct {
            Err(e) => json(e),
            Ok(m) => ManifestError::Version {
                path: path.to_owned(),
                found: m.version.to_string(),
            },
        })
    }

    /// The ramfs of `deploy --users`: `/run/nixseal.d` → `/run/nixseal-for-users.d`.
    pub fn users_mount_point(&self) -> String {
        for_users(&self.mount_point)
    }

    /// The symlink of `deploy --users`: `/run/nixseal` → `/run/nixseal-for-users`.
    pub fn users_symlink(&self) -> String {
        for_users(&self.symlink)
    }

    /// The mount point and symlink used by a run of the given scope.
    pub fn locations(&self, scope: Scope) -> (String, String) {
        match scope {
            Scope::Main | Scope::Session => (self.mount_point.clone(), self.symlink.clone()),
            Scope::Users => (self.users_mount_point(), self.users_symlink()),
        }
    }
}

/// `path` is exactly `<symlink>/<name>`: nothing to place.
pub fn is_default_path(path: &str, symlink: &str, name: &str) -> bool {
    path.strip_prefix(symlink)
        .and_then(|r| r.strip_prefix('/'))
        .is_some_and(|r| r == name)
}

pub(crate) fn for_users(p: &str) -> String {
    match p.strip_suffix(".d") {
        Some(stem) => format!("{stem}-for-users.d"),
        None => format!("{p}-for-users"),
    }
}

/// Parses `"0400"`/`"400"`: 3 or 4 octal digits (a 4-digit mode starts with 0), ≤ 0o777.
pub fn parse_mode(m: &str) -> Option<u32> {
    let digits = match m.len() {
        3 => m,
        4 => m.strip_prefix('0')?,
        _ => return None,
    };
    if !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return None;
    }
    u32::from_str_radix(digits, 8).ok()
}

impl crate::common::error::Classify for ManifestError {
    fn class(&self) -> crate::common::error::ErrorClass {
        crate::common::error::ErrorClass::BadInput
    }
}

#[cfg(test)]
mod tests;
