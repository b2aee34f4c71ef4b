//! Identities and recipients on the operator side: the master identities
//! (any number, any of which may decrypt) here, and the hosts' `ssh-ed25519`
//! public keys and every other recipient nixseal encrypts to in `recipient`.
//! (A host's *private* key, for `nixseal deploy`, is the host side's.)
//!
//! Passphrases and plugin prompts go through [`Interaction`], which the CLI
//! implements (terminal prompt or `--passphrase-file`); this crate never reads
//! the terminal or the environment for secrets.

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use age::secrecy::SecretString;
use zeroize::Zeroizing;

use crate::common::crypto::{self, clean_age_message, DecryptFailure};

pub mod fast_recipient;
mod recipient;
pub use recipient::{
    build_recipients, normalized_host_key, parse_recipient, recipients_from, AnyRecipient,
    HostPubkeyError, HostRecipient, RecipientError,
};

/// How the library asks the operator for passphrases and plugin input.
pub trait Interaction: Send + Sync {
    /// Asks for a passphrase; `None` if none can be had (no terminal, no file).
    fn passphrase(&self, prompt: &str) -> Option<SecretString>;
    /// Shows a message from an age plugin (e.g. "touch your YubiKey").
    fn message(&self, _message: &str) {}
    /// Asks a yes/no question for an age plugin.
    fn confirm(&self, _message: &str, _yes: &str, _no: Option<&str>) -> Option<bool> {
        None
    }
    /// Asks for a non-secret string for an age plugin.
    fn public_string(&self, _description: &str) -> Option<String> {
        None
    }
}

/// An [`Interaction`] that can answer nothing (for non-interactive use).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoInteraction;

impl Interaction for NoInteraction {
    fn passphrase(&self, _prompt: &str) -> Option<SecretString> {
        None
    }
}

/// Adapter from [`Interaction`] to age's callback trait.
#[derive(Clone)]
pub struct AgeCallbacks(Arc<dyn Interaction>);

impl AgeCallbacks {
    /// Wraps an interaction.
    pub fn new(interaction: Arc<dyn Interaction>) -> Self {
        Self(interaction)
    }
}

impl age::Callbacks for AgeCallbacks {
    fn display_message(&self, message: &str) {
        self.0.message(&clean_age_message(message));
    }
    fn confirm(&self, message: &str, yes: &str, no: Option<&str>) -> Option<bool> {
        self.0.confirm(&clean_age_message(message), yes, no)
    }
    fn request_public_string(&self, description: &str) -> Option<String> {
        self.0.public_string(&clean_age_message(description))
    }
    fn request_passphrase(&self, description: &str) -> Option<SecretString> {
        self.0.passphrase(&clean_age_message(description))
    }
}

/// Why a master identity could not be loaded. Every variant names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// No identity file was given at all.
    #[error("no master identity given")]
    NoIdentities,
    /// The file is missing or unreadable.
    #[error("cannot read identity file {path}: {source}; check the path (relative paths are taken from the flake root)")]
    Read {
        /// The identity file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not an identity file nixseal understands.
    #[error("identity file {path} is not usable: {reason}; nixseal reads age-keygen files, `age -p` encrypted identity files, OpenSSH ed25519 keys and AGE-PLUGIN-… identities")]
    Parse {
        /// The identity file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The passphrase was wrong.
    #[error("wrong passphrase for identity file {path}; nothing was changed, try again")]
    WrongPassphrase {
        /// The identity file.
        path: PathBuf,
    },
    /// A passphrase is needed and none could be had.
    #[error("identity file {path} is passphrase-protected and no passphrase was given")]
    NoPassphrase {
        /// The identity file.
        path: PathBuf,
    },
    /// The age plugin the identity names cannot be used.
    #[error("identity file {path}: {reason}; install the plugin (age-plugin-NAME on PATH)")]
    Plugin {
        /// The identity file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

/// A loaded master identity file: the identities it holds and the recipients
/// they correspond to.
pub struct MasterIdentities {
    identities: Vec<Box<dyn age::Identity + Send + Sync>>,
    recipients: Vec<Box<dyn age::Recipient + Send>>,
    files: Vec<PathBuf>,
    /// The public keys that could be derived (native X25519 and SSH keys;
    /// not plugins), by file.
    derived: Vec<(PathBuf, Vec<String>)>,
}

impl std::fmt::Debug for MasterIdentities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterIdentities")
            .field("files", &self.files)
            .field("identities", &self.identities.len())
            .finish()
    }
}

/// Highest scrypt work factor accepted for passphrase-protected identity files.
const MAX_WORK_FACTOR: u8 = 22;

const SSH_PRIVATE_BEGIN: &str = "-----BEGIN OPENSSH PRIVATE KEY-----";

impl MasterIdentities {
    /// Loads every identity file; a passphrase is asked at most once per file.
    /// Every file is a master identity: its recipients are what master files
    /// are encrypted to ([`MasterIdentities::recipients`]).
    pub fn load(
        paths: &[PathBuf],
        interaction: Arc<dyn Interaction>,
    ) -> Result<Self, IdentityError> {
        Self::load_split(paths, &[], interaction)
    }

    /// Loads the profile's master identities (`master`: they decrypt, and
    /// their recipients are what master files are encrypted to) and identity
    /// files given only to decrypt (`decrypt_only`, e.g. `-i`): those never
    /// add or replace a recipient, so a file written with them stays
    /// readable by every master identity. A file in both lists is a master.
    pub fn load_split(
        master: &[PathBuf],
        decrypt_only: &[PathBuf],
        interaction: Arc<dyn Interaction>,
    ) -> Result<Self, IdentityError> {
        if master.is_empty() && decrypt_only.is_empty() {
            return Err(IdentityError::NoIdentities);
        }
        let callbacks = AgeCallbacks::new(interaction);
        let mut me = MasterIdentities {
            identities: Vec::new(),
            recipients: Vec::new(),
            files: Vec::new(),
            derived: Vec::new(),
        };
        for path in master {
            if !me.files.contains(path) {
                me.load_one(path, &callbacks)?;
                me.files.push(path.clone());
            }
        }
        for path in decrypt_only {
            if !me.files.contains(path) {
                let keep = me.recipients.len();
                me.load_one(path, &callbacks)?;
                me.recipients.truncate(keep);
                me.files.push(path.clone());
            }
        }
        Ok(me)
    }

    fn load_one(&mut self, path: &Path, callbacks: &AgeCallbacks) -> Result<(), IdentityError> {
        // Bounded, regular files only: a FIFO or /dev/zero named as an
        // identity is refused instead of hanging or filling memory.
        let bytes = crate::common::fsutil::read_regular(path, crate::common::fsutil::MAX_KEY_FILE)
            .map_err(|source| IdentityError::Read {
                path: path.to_owned(),
                source,
            })?;
        let parse = |reason: String| IdentityError::Parse {
            path: path.to_owned(),
            reason,
        };
        // Judged on the bytes in place: no copy of a key's first bytes.
        let start = bytes
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .unwrap_or(bytes.len());
        if bytes[start..].starts_with(SSH_PRIVATE_BEGIN.as_bytes()) {
            return self.load_ssh(path, &bytes, callbacks);
        }
        if crypto::looks_like_age(&bytes) {
            if !crypto::is_passphrase_encrypted(&bytes) {
                return Err(parse(
                    "it is an age file encrypted to recipients, not to a passphrase".into(),
                ));
            }
            let prompt = format!("Passphrase for identity file {}", path.display());
            let passphrase =
                callbacks
                    .0
                    .passphrase(&prompt)
                    .ok_or_else(|| IdentityError::NoPassphrase {
                        path: path.to_owned(),
                    })?;
            let mut scrypt = age::scrypt::Identity::new(passphrase);
            // The operator's own file: accept any work factor age itself
            // writes (18 by default) without age's speed guess refusing it.
            scrypt.set_max_work_factor(MAX_WORK_FACTOR);
            let inner = crypto::decrypt(&bytes, &[&scrypt]).map_err(|e| match e {
                DecryptFailure::NoMatchingIdentity | DecryptFailure::WrongPassphrase => {
                    IdentityError::WrongPassphrase {
                        path: path.to_owned(),
                    }
                }
                other => parse(other.to_string()),
            })?;
            return self.load_identity_file(path, &inner, callbacks);
        }
        self.load_identity_file(path, &bytes, callbacks)
    }

    fn load_identity_file(
        &mut self,
        path: &Path,
        text: &[u8],
        callbacks: &AgeCallbacks,
    ) -> Result<(), IdentityError> {
        let parse = |reason: String| IdentityError::Parse {
            path: path.to_owned(),
            reason,
        };
        let file = |t: &[u8]| {
            age::IdentityFile::from_buffer(BufReader::new(t))
                .map(|f| f.with_callbacks(callbacks.clone()))
                // age's message names no file: ours wraps it.
                .map_err(|e| parse(clean_age_message(&e.to_string())))
        };
        let recipients = file(text)?
            .to_recipients()
            .map_err(|e| IdentityError::Plugin {
                path: path.to_owned(),
                reason: clean_age_message(&e.to_string()),
            })?;
        let identities = file(text)?
            .into_identities()
            .map_err(|e| IdentityError::Plugin {
                path: path.to_owned(),
                reason: clean_age_message(&e.to_string()),
            })?;
        if identities.is_empty() {
            return Err(parse("it contains no identities".into()));
        }
        // The public half of native keys, for checking a declared one.
        let derived: Vec<String> = std::str::from_utf8(text)
            .unwrap_or_default()
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("AGE-SECRET-KEY-1"))
            .filter_map(|l| l.parse::<age::x25519::Identity>().ok())
            .map(|i| i.to_public().to_string())
            .collect();
        self.derived.push((path.to_owned(), derived));
        self.identities.extend(identities);
        self.recipients.extend(recipients);
        Ok(())
    }

    fn load_ssh(
        &mut self,
        path: &Path,
        bytes: &[u8],
        callbacks: &AgeCallbacks,
    ) -> Result<(), IdentityError> {
        let parse = |reason: String| IdentityError::Parse {
            path: path.to_owned(),
            reason,
        };
        let id = age::ssh::Identity::from_buffer(bytes, Some(path.display().to_string()))
            .map_err(|e| parse(format!("invalid OpenSSH private key ({e})")))?;
        let key =
            match id {
                age::ssh::Identity::Unencrypted(k) => k,
                age::ssh::Identity::Encrypted(enc) => {
                    let prompt = format!("Passphrase for SSH key {}", path.display());
                    let passphrase = callbacks.0.passphrase(&prompt).ok_or_else(|| {
                        IdentityError::NoPassphrase {
                            path: path.to_owned(),
                        }
                    })?;
                    enc.decrypt(passphrase)
                        .map_err(|_| IdentityError::WrongPassphrase {
                            path: path.to_owned(),
                        })?
                }
                age::ssh::Identity::Unsupported(k) => {
                    let shown = ShowUnsupported(k).to_string();
                    return Err(parse(format!(
                        "unsupported SSH key ({})",
                        shown.split_whitespace().collect::<Vec<_>>().join(" ")
                    )));
                }
            };
        let identity = age::ssh::Identity::from(key);
        let recipient = age::ssh::Recipient::try_from(identity.clone()).map_err(|e| {
            parse(format!(
                "cannot derive the public key ({})",
                recipient::ssh_key_problem(&e)
            ))
        })?;
        self.derived
            .push((path.to_owned(), vec![recipient.to_string()]));
        self.identities.push(Box::new(identity));
        self.recipients.push(Box::new(recipient));
        Ok(())
    }

    /// The identities, for [`crypto::decrypt`].
    pub fn as_identities(&self) -> Vec<&dyn age::Identity> {
        self.identities
            .iter()
            .map(|i| i.as_ref() as &dyn age::Identity)
            .collect()
    }

    /// The recipients of the master identities (what `edit` and generators
    /// encrypt to); identities loaded to decrypt only contribute none.
    pub fn recipients(&self) -> impl Iterator<Item = &dyn age::Recipient> {
        self.recipients
            .iter()
            .map(|r| r.as_ref() as &dyn age::Recipient)
    }

    /// The files the identities came from.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// The public keys of `file`'s native X25519 and SSH identities (a
    /// plugin identity's recipient cannot be derived without its plugin);
    /// `None` if `file` was not loaded.
    pub fn derived_recipients(&self, file: &Path) -> Option<&[String]> {
        self.derived
            .iter()
            .find(|(p, _)| p == file)
            .map(|(_, r)| r.as_slice())
    }
}

/// The longest passphrase file (or pipe) read: its first line is the
/// passphrase; an endless stream stops here instead of filling memory.
pub const MAX_PASSPHRASE_FILE: u64 = 64 << 10;

/// Reads the passphrase from the first line of `path` (a trailing `\r\n`
/// or `\n` is dropped). A regular file or a pipe (`/dev/fd/3`,
/// `3< <(pass show …)`) is read, at most [`MAX_PASSPHRASE_FILE`] bytes,
/// into wiped buffers; a directory, device or socket is refused. Errors
/// carry no path: callers add it.
pub fn read_passphrase_file(path: &Path) -> std::io::Result<Zeroizing<String>> {
    use std::os::unix::fs::FileTypeExt;
    let file = std::fs::File::open(path)?;
    let ft = file.metadata()?.file_type();
    if !(ft.is_file() || ft.is_fifo()) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "it is {}; give a file or a pipe such as /dev/fd/3",
                crate::common::fsutil::kind_name(ft)
            ),
        ));
    }
    let bytes = crate::common::fsutil::read_stream(file, MAX_PASSPHRASE_FILE)?;
    let line = bytes.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let text = std::str::from_utf8(line).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the passphrase is not UTF-8",
        )
    })?;
    let mut out = Zeroizing::new(String::with_capacity(text.len()));
    out.push_str(text);
    Ok(out)
}

struct ShowUnsupported(age::ssh::UnsupportedKey);
impl std::fmt::Display for ShowUnsupported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.display(f, None)
    }
}

impl crate::common::error::Classify for IdentityError {
    fn class(&self) -> crate::common::error::ErrorClass {
        crate::common::error::ErrorClass::BadInput
    }
}
