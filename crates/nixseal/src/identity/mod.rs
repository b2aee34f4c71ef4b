//! Identities and recipients: the operator's master identities (any number,
//! any of which may decrypt) and the hosts' `ssh-ed25519` keys.
//!
//! Passphrases and plugin prompts go through [`Interaction`], which the CLI
//! implements (terminal prompt or `--passphrase-file`); this crate never reads
//! the terminal or the environment for secrets.
//!
//! [`host`] loads a host's SSH ed25519 *private* key for `nixseal deploy`.

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use age::secrecy::SecretString;
use zeroize::Zeroizing;

use crate::crypto::{self, clean_age_message, DecryptFailure};

pub mod fast_recipient;
pub mod host;

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
        let bytes =
            crate::fsutil::read_regular(path, crate::fsutil::MAX_KEY_FILE).map_err(|source| {
                IdentityError::Read {
                    path: path.to_owned(),
                    source,
                }
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
                crate::fsutil::kind_name(ft)
            ),
        ));
    }
    let bytes = crate::fsutil::read_stream(file, MAX_PASSPHRASE_FILE)?;
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

/// Why a host's public key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HostKeyError {
    /// No key at all (`null`, absent or an empty string: a host added before
    /// its key is known).
    #[error("hostPubkey is not set (a new host without its key yet?); get it with `ssh-keyscan -t ed25519 HOST` (or from /etc/ssh/ssh_host_ed25519_key.pub on the host), set nixseal.settings.hostPubkey and run renc again")]
    Missing,
    /// A valid SSH key of another type (RSA, ECDSA, …).
    #[error("hostPubkey is an {found} key, but nixseal encrypts to the host's ssh-ed25519 key; get it with `ssh-keyscan -t ed25519 HOST` or from /etc/ssh/ssh_host_ed25519_key.pub")]
    NotEd25519 {
        /// The key type found.
        found: String,
    },
    /// Not a parseable public key.
    #[error("hostPubkey {key:?} is not a valid ssh-ed25519 public key ({reason}); copy the whole line of /etc/ssh/ssh_host_ed25519_key.pub (or `ssh-keyscan -t ed25519 HOST`)")]
    Malformed {
        /// The key as given (public, safe to show).
        key: String,
        /// Why.
        reason: String,
    },
    /// A well-formed key that protects nothing: a point of small order, with
    /// a torsion component, or a non-canonical encoding. Files encrypted to
    /// it could be opened by anyone.
    #[error("hostPubkey {key:?} is not a real host key: {reason}; anything encrypted to it could be decrypted without the host's private key. Use the host's own key (`ssh-keyscan -t ed25519 HOST`)")]
    Weak {
        /// The key as given.
        key: String,
        /// What is wrong with the point.
        reason: &'static str,
    },
}

/// A host's `ssh-ed25519` public key: the recipient of its rekeyed files.
#[derive(Debug, Clone)]
pub struct HostRecipient {
    normalized: String,
    recipient: age::ssh::Recipient,
}

const SSH_ED25519: &str = "ssh-ed25519";

impl HostRecipient {
    /// Parses `ssh-ed25519 <base64> [comment]`, refusing keys that are not
    /// a prime-order curve point (see [`HostKeyError::Weak`]).
    pub fn parse(key: &str) -> Result<Self, HostKeyError> {
        let mut parts = key.split_whitespace();
        let (Some(kind), b64) = (parts.next(), parts.next()) else {
            return Err(HostKeyError::Missing);
        };
        let malformed = |reason: String| HostKeyError::Malformed {
            key: key.into(),
            reason,
        };
        if kind != SSH_ED25519 {
            if kind.starts_with("ssh-") || kind.starts_with("ecdsa-") || kind.starts_with("sk-") {
                return Err(HostKeyError::NotEd25519 { found: kind.into() });
            }
            return Err(malformed(format!("unknown key type {kind:?}")));
        }
        let Some(b64) = b64 else {
            return Err(malformed("the base64 part is missing".into()));
        };
        let point = ed25519_point(b64).map_err(malformed)?;
        check_point(&point).map_err(|reason| HostKeyError::Weak {
            key: key.into(),
            reason,
        })?;
        let normalized = format!("{kind} {b64}");
        let recipient: age::ssh::Recipient = normalized
            .parse()
            .map_err(|e| malformed(format!("{e:?}")))?;
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

/// The 32-byte point of an OpenSSH `ssh-ed25519` public key blob
/// (`string "ssh-ed25519"`, `string key`), base64 as in `.pub` files.
fn ed25519_point(b64: &str) -> Result<[u8; 32], String> {
    use base64::Engine;
    let blob = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| format!("not base64: {e}"))?;
    let mut rest = &blob[..];
    let mut field = |what: &str| -> Result<Vec<u8>, String> {
        let len = rest
            .get(..4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or_else(|| format!("the key blob ends before its {what}"))?;
        let v = rest
            .get(4..4 + len)
            .ok_or_else(|| format!("the key blob ends inside its {what}"))?
            .to_vec();
        rest = &rest[4 + len..];
        Ok(v)
    };
    let kind = field("key type")?;
    if kind != SSH_ED25519.as_bytes() {
        return Err(format!(
            "the key blob says {:?}, not ssh-ed25519",
            String::from_utf8_lossy(&kind)
        ));
    }
    let point = field("point")?;
    if !rest.is_empty() {
        return Err("extra bytes after the key".into());
    }
    point
        .try_into()
        .map_err(|p: Vec<u8>| format!("the point is {} bytes, not 32", p.len()))
}

/// Refuses every encoding that is not a canonical, prime-order Edwards
/// point: age converts the key to X25519 with a clamped scalar, and for a
/// small-order point the shared secret is one of a handful of values anyone
/// can try.
fn check_point(bytes: &[u8; 32]) -> Result<(), &'static str> {
    let compressed = curve25519_dalek::edwards::CompressedEdwardsY(*bytes);
    let Some(point) = compressed.decompress() else {
        return Err("it is not a point on the ed25519 curve");
    };
    if point.compress().as_bytes() != bytes {
        return Err("it is a non-canonical encoding of a curve point");
    }
    if point.is_small_order() {
        return Err("it is a point of small order (such as the identity point)");
    }
    if !point.is_torsion_free() {
        return Err("it has a small-order (torsion) component");
    }
    Ok(())
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
/// A key that protects nothing (an X25519 or ed25519 point of small order,
/// see [`HostKeyError::Weak`]) is refused like a host key: everything
/// encrypted to it could be opened by anyone.
pub fn parse_recipient(s: &str) -> Result<AnyRecipient, String> {
    let s = s.trim();
    if let Ok(r) = s.parse::<age::x25519::Recipient>() {
        if x25519_small_order(s) {
            return Err(
                "it is a point of small order: anything encrypted to it could be decrypted by anyone"
                    .into(),
            );
        }
        return Ok(AnyRecipient::X25519(r));
    }
    if s.starts_with("ssh-") {
        let norm: Vec<&str> = s.split_whitespace().take(2).collect();
        if let [SSH_ED25519, b64] = norm[..] {
            let point = ed25519_point(b64).map_err(|e| format!("invalid SSH public key ({e})"))?;
            check_point(&point).map_err(|why| {
                format!("{why}: anything encrypted to it could be decrypted by anyone")
            })?;
        }
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

/// Whether an `age1…` recipient (already parsed by age, so its checksum is
/// good) is a Montgomery point of small order: multiplied by any clamped
/// scalar (a multiple of 8) it gives zero — age itself would panic on it.
fn x25519_small_order(bech32: &str) -> bool {
    const CHARSET: &[u8] = b"qpzry9x8gf2tvdw0s3jn54khce6mua7l";
    let Some((_, data)) = bech32
        .to_ascii_lowercase()
        .rsplit_once('1')
        .map(|(h, d)| (h.to_owned(), d.to_owned()))
    else {
        return false;
    };
    let Some(data) = data.len().checked_sub(6).map(|n| &data.as_bytes()[..n]) else {
        return false;
    };
    let mut bytes = Vec::with_capacity(32);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in data {
        let Some(v) = CHARSET.iter().position(|x| x == c) else {
            return false;
        };
        acc = (acc << 5) | v as u32;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            bytes.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    let Ok(u) = <[u8; 32]>::try_from(&bytes[..]) else {
        return false;
    };
    let product = curve25519_dalek::montgomery::MontgomeryPoint(u).mul_clamped([0x55; 32]);
    product.to_bytes() == [0u8; 32]
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
            Err(HostKeyError::Missing)
        ));
    }

    /// The `age1…` recipient of a raw 32-byte Montgomery u-coordinate.
    fn age_recipient(u: [u8; 32]) -> String {
        // bech32 with the "age" prefix, encoded by hand for the test.
        const CHARSET: &[u8] = b"qpzry9x8gf2tvdw0s3jn54khce6mua7l";
        let mut data = Vec::new();
        let (mut acc, mut bits) = (0u32, 0u32);
        for b in u {
            acc = (acc << 8) | b as u32;
            bits += 8;
            while bits >= 5 {
                bits -= 5;
                data.push(((acc >> bits) & 31) as u8);
            }
            acc &= (1 << bits) - 1;
        }
        if bits > 0 {
            data.push(((acc << (5 - bits)) & 31) as u8);
        }
        let polymod = |values: &[u8]| {
            let gen = [
                0x3b6a57b2u32,
                0x26508e6d,
                0x1ea119fa,
                0x3d4233dd,
                0x2a1462b3,
            ];
            let mut chk = 1u32;
            for v in values {
                let b = chk >> 25;
                chk = ((chk & 0x1ffffff) << 5) ^ *v as u32;
                for (i, g) in gen.iter().enumerate() {
                    if (b >> i) & 1 == 1 {
                        chk ^= g;
                    }
                }
            }
            chk
        };
        let hrp = b"age";
        let mut values: Vec<u8> = hrp.iter().map(|c| c >> 5).collect();
        values.push(0);
        values.extend(hrp.iter().map(|c| c & 31));
        values.extend(&data);
        values.extend([0; 6]);
        let pm = polymod(&values) ^ 1;
        let checksum: Vec<u8> = (0..6).map(|i| ((pm >> (5 * (5 - i))) & 31) as u8).collect();
        let mut out = String::from("age1");
        for v in data.iter().chain(&checksum) {
            out.push(CHARSET[*v as usize] as char);
        }
        out
    }

    #[test]
    fn recipients_that_protect_nothing_are_refused() {
        // A real age recipient still parses, and so does its re-encoding.
        let real = age::x25519::Identity::generate().to_public().to_string();
        assert!(parse_recipient(&real).is_ok());
        // Small-order u-coordinates (0, 1, the order-8 points, p - 1):
        // age would panic encrypting to them.
        let low = [
            [0u8; 32],
            {
                let mut b = [0u8; 32];
                b[0] = 1;
                b
            },
            hex32("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
            hex32("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
            hex32("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
        ];
        for u in low {
            let r = age_recipient(u);
            assert!(
                r.parse::<age::x25519::Recipient>().is_ok(),
                "{r} is valid bech32"
            );
            let e = parse_recipient(&r)
                .err()
                .unwrap_or_else(|| panic!("{r} accepted"));
            assert!(e.contains("small order"), "{e}");
        }
        // A weak ssh-ed25519 key as a recipient (extraRecipients, -r).
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let e = parse_recipient(&key_line(identity)).err().unwrap();
        assert!(e.contains("small order"), "{e}");
    }

    /// The OpenSSH public key line for a raw 32-byte point.
    fn key_line(point: [u8; 32]) -> String {
        use base64::Engine;
        let mut blob = Vec::new();
        blob.extend_from_slice(&11u32.to_be_bytes());
        blob.extend_from_slice(b"ssh-ed25519");
        blob.extend_from_slice(&32u32.to_be_bytes());
        blob.extend_from_slice(&point);
        format!(
            "ssh-ed25519 {}",
            base64::engine::general_purpose::STANDARD.encode(blob)
        )
    }

    fn hex32(s: &str) -> [u8; 32] {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    #[test]
    fn keys_that_protect_nothing_are_refused() {
        use curve25519_dalek::constants::ED25519_BASEPOINT_POINT as B;
        use curve25519_dalek::edwards::CompressedEdwardsY;
        let weak = |point: [u8; 32]| {
            let e = HostRecipient::parse(&key_line(point)).unwrap_err();
            assert!(matches!(e, HostKeyError::Weak { .. }), "{e}");
            e.to_string()
        };
        // The identity point (y = 1) and its "negative zero" twin.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert!(weak(identity).contains("small order"));
        let mut neg_zero = identity;
        neg_zero[31] |= 0x80;
        assert!(weak(neg_zero).contains("non-canonical"));
        // The point of order 2 (y = -1 = p - 1).
        let order2 = hex32("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f");
        assert!(weak(order2).contains("small order"));
        // A point of order 4 (y = 0) and one of order 8.
        assert!(weak([0u8; 32]).contains("small order"));
        let order8 = hex32("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05");
        assert!(weak(order8).contains("small order"));
        // Every small-order point: the multiples of an order-8 point.
        let t = CompressedEdwardsY(order8).decompress().unwrap();
        let mut m = curve25519_dalek::edwards::EdwardsPoint::default();
        for _ in 0..8 {
            weak(m.compress().to_bytes());
            m += t;
        }
        // A genuine key plus an order-2 point: mixed order.
        let order2_point = CompressedEdwardsY(order2).decompress().unwrap();
        let mixed = (B + order2_point).compress().to_bytes();
        assert!(weak(mixed).contains("torsion"));
        // y = p + 1 encodes the identity point non-canonically.
        let p_plus_1 = hex32("eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f");
        let e = weak(p_plus_1);
        assert!(
            e.contains("non-canonical") || e.contains("small order"),
            "{e}"
        );
        // Not on the curve at all (y = 2 has no x).
        let mut two = [0u8; 32];
        two[0] = 2;
        assert!(weak(two).contains("not a point on the ed25519 curve"));
        // A genuine point (the base point) is accepted, and so is a real key.
        HostRecipient::parse(&key_line(B.compress().to_bytes())).unwrap();
        // Wrong sizes and blobs are malformed, not weak.
        for bad in [
            "ssh-ed25519 AAAA",
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAAQA=",
        ] {
            assert!(
                matches!(
                    HostRecipient::parse(bad),
                    Err(HostKeyError::Malformed { .. })
                ),
                "{bad}"
            );
        }
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
