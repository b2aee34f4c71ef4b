//! Secrets that generate themselves: a secret's `generator` (an executable
//! from the Nix side) is run by `renc` when the secret's master file does not
//! exist yet; its standard output, read into memory through a pipe, becomes
//! the secret, encrypted to the master recipients like `edit` does. An
//! existing master file is never regenerated (delete it to rotate).
//!
//! Before any generator runs, every one is checked ([`validate`]): it must
//! be an executable regular file and its master file's directory must be
//! creatable, so a bad generator never leaves some secrets generated and
//! others not because of a mistake that was visible up front.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use zeroize::Zeroizing;

use crate::common::{crypto, fsutil};
use crate::operator::profile::Profile;

/// A master file to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// The master file as written in the profile (flake-relative).
    pub file: String,
    /// The master file, resolved.
    pub source: PathBuf,
    /// The executable to run.
    pub generator: PathBuf,
    /// `host/secret` entries that use it (for messages).
    pub used_by: Vec<String>,
}

/// Why a secret could not be generated. Every variant names the master file
/// and the generator.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GenerateError {
    /// The generator could not be started or read.
    #[error("cannot run the generator {} of {file}: {source}", generator.display())]
    Run {
        /// The master file.
        file: String,
        /// The generator.
        generator: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The generator exited unsuccessfully.
    #[error("the generator {} of {file} failed ({status}); nothing was written", generator.display())]
    Failed {
        /// The master file.
        file: String,
        /// The generator.
        generator: PathBuf,
        /// Its exit status.
        status: std::process::ExitStatus,
    },
    /// The generator is not an executable regular file.
    #[error("the generator {} of {file} is not usable: {why}; nothing was generated", generator.display())]
    NotExecutable {
        /// The master file.
        file: String,
        /// The generator.
        generator: PathBuf,
        /// Why.
        why: String,
    },
    /// The master file cannot be created where the profile says.
    #[error("the generated {file} cannot be created: {} is not a directory; nothing was generated", path.display())]
    BadParent {
        /// The master file.
        file: String,
        /// The path on the way that is not a directory.
        path: PathBuf,
    },
    /// The generator printed more than nixseal reads.
    #[error("the generator {} of {file} printed more than {} bytes; it was stopped and nothing was written", generator.display(), fsutil::MAX_FILE)]
    TooLarge {
        /// The master file.
        file: String,
        /// The generator.
        generator: PathBuf,
    },
    /// The generator printed nothing.
    #[error("the generator {} of {file} printed nothing; a secret cannot be empty (nothing was written)", generator.display())]
    Empty {
        /// The master file.
        file: String,
        /// The generator.
        generator: PathBuf,
    },
    /// Encryption to the master recipients failed.
    #[error("cannot encrypt the generated {file}: {source}")]
    Encrypt {
        /// The master file.
        file: String,
        /// Why.
        #[source]
        source: crypto::EncryptFailure,
    },
    /// The master file could not be written (or appeared meanwhile).
    #[error("cannot write the generated {file}: {source}")]
    Write {
        /// The master file.
        file: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// The master files that are missing and have a generator, one entry per
/// file (several hosts may use it). No generator is run.
pub fn pending(profile: &Profile) -> Vec<Pending> {
    // Only a master file with a generator can be pending: each is looked
    // at once, and the secrets are gone through only if one is missing.
    let missing: std::collections::BTreeSet<&Path> = profile
        .generators
        .keys()
        .map(|p| &**p)
        .filter(|p| {
            matches!(
                std::fs::symlink_metadata(p),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound
            )
        })
        .collect();
    if missing.is_empty() {
        return Vec::new();
    }
    let mut by_source: BTreeMap<&Path, Pending> = BTreeMap::new();
    for h in profile.hosts.values() {
        for s in h.secrets.values() {
            let Some(generator) = &s.generator else {
                continue;
            };
            if !missing.contains(&*s.source) {
                continue;
            }
            by_source
                .entry(&s.source)
                .or_insert_with(|| Pending {
                    file: s.file.clone(),
                    source: s.source.to_path_buf(),
                    generator: generator.clone(),
                    used_by: Vec::new(),
                })
                .used_by
                .push(format!("{}/{}", h.name, s.name));
        }
    }
    by_source.into_values().collect()
}

/// Checks every pending generator before any runs: an executable regular
/// file, and a master file whose directory exists or can be created.
/// Returns every problem found.
pub fn validate(pending: &[Pending]) -> Vec<GenerateError> {
    use std::os::unix::fs::PermissionsExt;
    let mut problems = Vec::new();
    for p in pending {
        let bad = |why: String| GenerateError::NotExecutable {
            file: p.file.clone(),
            generator: p.generator.clone(),
            why,
        };
        match std::fs::metadata(&p.generator) {
            Err(e) => problems.push(bad(e.to_string())),
            Ok(m) if !m.is_file() => problems.push(bad(format!(
                "it is {}, not an executable file",
                fsutil::kind_name(m.file_type())
            ))),
            Ok(m)
                if m.permissions().mode() & 0o111 == 0
                    || rustix::fs::access(&p.generator, rustix::fs::Access::EXEC_OK).is_err() =>
            {
                problems.push(bad("it is not executable".into()))
            }
            Ok(_) => {}
        }
        // The first existing directory on the way must be a directory.
        let parent = p.source.parent().unwrap_or(Path::new("."));
        let existing = parent
            .ancestors()
            .filter(|a| !a.as_os_str().is_empty())
            .find(|a| std::fs::symlink_metadata(a).is_ok());
        if let Some(a) = existing {
            if !a.is_dir() {
                problems.push(GenerateError::BadParent {
                    file: p.file.clone(),
                    path: a.to_owned(),
                });
            }
        }
    }
    problems
}

/// Runs `p`'s generator (in `root`, stdin closed, stderr passed through) and
/// writes its output, encrypted to `recipients`, as a new master file (mode
/// 0644, like `edit`). The plaintext only ever lives in this process's
/// memory, in wiped buffers, at most [`fsutil::MAX_FILE`] bytes (a generator
/// that prints more is killed).
pub fn generate(
    p: &Pending,
    root: &Path,
    recipients: &[&dyn age::Recipient],
) -> Result<(), GenerateError> {
    let run_err = |source| GenerateError::Run {
        file: p.file.clone(),
        generator: p.generator.clone(),
        source,
    };
    let mut child = Command::new(&p.generator)
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(run_err)?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let read = fsutil::read_stream(stdout, fsutil::MAX_FILE);
    if read.is_err() {
        // Too much (or unreadable): stop it rather than wait for it.
        let _ = child.kill();
    }
    let status = child.wait().map_err(run_err)?;
    let out: Zeroizing<Vec<u8>> = match read {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
            return Err(GenerateError::TooLarge {
                file: p.file.clone(),
                generator: p.generator.clone(),
            })
        }
        Err(e) => return Err(run_err(e)),
    };
    if !status.success() {
        return Err(GenerateError::Failed {
            file: p.file.clone(),
            generator: p.generator.clone(),
            status,
        });
    }
    if out.is_empty() {
        return Err(GenerateError::Empty {
            file: p.file.clone(),
            generator: p.generator.clone(),
        });
    }
    let ct = crypto::encrypt(&out, recipients, false).map_err(|source| GenerateError::Encrypt {
        file: p.file.clone(),
        source,
    })?;
    drop(out);
    if ct.len() as u64 > fsutil::MAX_FILE {
        return Err(GenerateError::TooLarge {
            file: p.file.clone(),
            generator: p.generator.clone(),
        });
    }
    let write_err = |source| GenerateError::Write {
        file: p.file.clone(),
        source,
    };
    let (dir, name) = fsutil::prepare_parent(&p.source).map_err(write_err)?;
    fsutil::atomic_create(&dir, &name, &ct, 0o644).map_err(write_err)
}
