//! Identities and recipients: the operator's master identities (any number,
//! any of which may decrypt) and the hosts' `ssh-ed25519` keys.
//!
//! Passphrases and plugin prompts go through [`Interaction`], which the CLI
//! implements (terminal prompt or `--passphrase-file`); this crate never reads
//! the terminal or the environment for secrets.

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use age::secrecy::SecretString;
use zeroize::Zeroizing;

use crate::crypto::{self, clean_age_message, DecryptFailure};

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
    #[error("no master identity given: pass --identity FILE, or list it in the profile's `identities` (nixseal.identities in the flake)")]
    NoIdentities,
    /// The file is missing or unreadable.
    #[error("cannot read identity file {path}: {source}; check the path (relative paths are taken from the flake root) or pass --identity")]
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
    #[error("identity file {path} is passphrase-protected and no passphrase was given: run on a terminal, or pass --passphrase-file FILE (e.g. /dev/fd/3)")]
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
    pub fn load(
        paths: &[PathBuf],
        interaction: Arc<dyn Interaction>,
    ) -> Result<Self, IdentityError> {
        if paths.is_empty() {
            return Err(IdentityError::NoIdentities);
        }
        let callbacks = AgeCallbacks::new(interaction);
        let mut me = MasterIdentities {
            identities: Vec::new(),
            recipients: Vec::new(),
            files: paths.to_vec(),
        };
        for path in paths {
            me.load_one(path, &callbacks)?;
        }
        Ok(me)
    }

    fn load_one(&mut self, path: &Path, callbacks: &AgeCallbacks) -> Result<(), IdentityError> {
        let bytes = Zeroizing::new(std::fs::read(path).map_err(|source| IdentityError::Read {
            path: path.to_owned(),
            source,
        })?);
        let parse = |reason: String| IdentityError::Parse {
            path: path.to_owned(),
            reason,
        };
        let text_start = String::from_utf8_lossy(&bytes[..bytes.len().min(64)]).into_owned();
        if text_start.trim_start().starts_with(SSH_PRIVATE_BEGIN) {
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
        let recipient = age::ssh::Recipient::try_from(identity.clone())
            .map_err(|e| parse(format!("cannot derive the public key ({e:?})")))?;
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

    /// The recipients matching the identities (what `edit` encrypts to).
    pub fn recipients(&self) -> impl Iterator<Item = &dyn age::Recipient> {
        self.recipients
            .iter()
            .map(|r| r.as_ref() as &dyn age::Recipient)
    }

    /// The files the identities came from.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }
}

struct ShowUnsupported(age::ssh::UnsupportedKey);
impl std::fmt::Display for ShowUnsupported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.display(f, None)
    }
}

/// Why a host's public key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HostKeyError {
    /// The key string is empty.
    #[error("hostPubkey is empty; set it to the host's key (ssh-keyscan -t ed25519 HOST)")]
    Empty,
    /// A valid SSH key of another type (RSA, ECDSA, …).
    #[error("hostPubkey is an {found} key, but nixseal encrypts to the host's ssh-ed25519 key; get it with `ssh-keyscan -t ed25519 HOST` or from /etc/ssh/ssh_host_ed25519_key.pub")]
    NotEd25519 {
        /// The key type found.
        found: String,
    },
    /// Not a parseable public key.
    #[error("hostPubkey {key:?} is not a valid ssh-ed25519 public key ({reason}); copy the whole line of /etc/ssh/ssh_host_ed25519_key.pub")]
    Malformed {
        /// The key as given (public, safe to show).
        key: String,
        /// Why.
        reason: String,
    },
}

/// A host's `ssh-ed25519` public key: the recipient of its rekeyed files.
#[derive(Debug, Clone)]
pub struct HostRecipient {
    normalized: String,
    recipient: age::ssh::Recipient,
}

impl HostRecipient {
    /// Parses `ssh-ed25519 <base64> [comment]`.
    pub fn parse(key: &str) -> Result<Self, HostKeyError> {
        let mut parts = key.split_whitespace();
        let (Some(kind), b64) = (parts.next(), parts.next()) else {
            return Err(HostKeyError::Empty);
        };
        if kind != "ssh-ed25519" {
            if kind.starts_with("ssh-") || kind.starts_with("ecdsa-") || kind.starts_with("sk-") {
                return Err(HostKeyError::NotEd25519 { found: kind.into() });
            }
            return Err(HostKeyError::Malformed {
                key: key.into(),
                reason: format!("unknown key type {kind:?}"),
            });
        }
        let Some(b64) = b64 else {
            return Err(HostKeyError::Malformed {
                key: key.into(),
                reason: "the base64 part is missing".into(),
            });
        };
        let normalized = format!("{kind} {b64}");
        let recipient: age::ssh::Recipient =
            normalized.parse().map_err(|e| HostKeyError::Malformed {
                key: key.into(),
                reason: format!("{e:?}"),
            })?;
        if !matches!(recipient, age::ssh::Recipient::SshEd25519(..)) {
            return Err(HostKeyError::NotEd25519 {
                found: "ssh-rsa".into(),
            });
        }
        Ok(Self {
            normalized,
            recipient,
        })
    }

    /// The key as `ssh-ed25519 <base64>`, without comment (what the cache records).
    pub fn as_str(&self) -> &str {
        &self.normalized
    }

    /// The age recipient.
    pub fn recipient(&self) -> &age::ssh::Recipient {
        &self.recipient
    }
}

/// Any recipient `edit` may encrypt to: native X25519, SSH, or a plugin.
pub enum AnyRecipient {
    /// `age1…`
    X25519(age::x25519::Recipient),
    /// `ssh-ed25519 …` / `ssh-rsa …`
    Ssh(age::ssh::Recipient),
    /// `age1<plugin>1…`
    Plugin(age::plugin::Recipient),
}

/// Parses one recipient string; the error says why, without a file name.
pub fn parse_recipient(s: &str) -> Result<AnyRecipient, String> {
    let s = s.trim();
    if let Ok(r) = s.parse::<age::x25519::Recipient>() {
        return Ok(AnyRecipient::X25519(r));
    }
    if s.starts_with("ssh-") {
        let norm: Vec<&str> = s.split_whitespace().take(2).collect();
        return norm
            .join(" ")
            .parse::<age::ssh::Recipient>()
            .map(AnyRecipient::Ssh)
            .map_err(|e| format!("invalid SSH public key ({e:?})"));
    }
    if let Ok(r) = s.parse::<age::plugin::Recipient>() {
        return Ok(AnyRecipient::Plugin(r));
    }
    Err("expected age1…, ssh-ed25519 … or a plugin recipient".into())
}

/// Builds boxed age recipients from parsed ones; plugin recipients are grouped
/// per plugin and need the plugin binary on PATH.
pub fn build_recipients(
    parsed: Vec<AnyRecipient>,
    interaction: Arc<dyn Interaction>,
) -> Result<Vec<Box<dyn age::Recipient + Send>>, String> {
    let mut out: Vec<Box<dyn age::Recipient + Send>> = Vec::new();
    let mut plugins: Vec<age::plugin::Recipient> = Vec::new();
    for r in parsed {
        match r {
            AnyRecipient::X25519(r) => out.push(Box::new(r)),
            AnyRecipient::Ssh(r) => out.push(Box::new(r)),
            AnyRecipient::Plugin(r) => plugins.push(r),
        }
    }
    let mut names: Vec<String> = plugins.iter().map(|p| p.plugin().to_owned()).collect();
    names.sort();
    names.dedup();
    for name in names {
        let r = age::plugin::RecipientPluginV1::new(
            &name,
            &plugins,
            &[],
            AgeCallbacks::new(interaction.clone()),
        )
        .map_err(|e| clean_age_message(&e.to_string()))?;
        out.push(Box::new(r));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_keys() {
        let id = age::ssh::Identity::from_buffer(TEST_SSH_KEY.as_bytes(), None).unwrap();
        let r = age::ssh::Recipient::try_from(id).unwrap().to_string();
        let with_comment = format!("{r} root@web1");
        let h = HostRecipient::parse(&with_comment).unwrap();
        assert_eq!(h.as_str(), r);
        assert!(matches!(
            HostRecipient::parse("ssh-rsa AAAA"),
            Err(HostKeyError::NotEd25519 { .. })
        ));
        assert!(matches!(
            HostRecipient::parse("ecdsa-sha2-nistp256 AAAA"),
            Err(HostKeyError::NotEd25519 { .. })
        ));
        assert!(matches!(
            HostRecipient::parse("ssh-ed25519 !!!"),
            Err(HostKeyError::Malformed { .. })
        ));
        assert!(matches!(
            HostRecipient::parse("  "),
            Err(HostKeyError::Empty)
        ));
    }

    /// A throwaway key made for this test with `ssh-keygen -t ed25519 -N ''`.
    pub(crate) const TEST_SSH_KEY: &str = "-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW
QyNTUxOQAAACDbVpuvYmExk8uYuXuxtMchPMwArOn0JOe8QgPQDroVfgAAAJBzzwvgc88L
4AAAAAtzc2gtZWQyNTUxOQAAACDbVpuvYmExk8uYuXuxtMchPMwArOn0JOe8QgPQDroVfg
AAAEB1V0RhcWdDf+7mccqa0DMTunDfX1nZ7VKxjZ4Psz3y+dtWm69iYTGTy5i5e7G0xyE8
zACs6fQk57xCA9AOuhV+AAAACnRlc3RAbG9jYWwBAgM=
-----END OPENSSH PRIVATE KEY-----
";
}
