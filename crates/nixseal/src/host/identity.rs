//! Host SSH ed25519 private keys as age identities.
//!
//! A host decrypts every secret it has with the same key, at every boot and
//! switch. `age::ssh::Identity` re-derives the key's X25519 scalar, its public
//! point (a base-point multiplication), the key tag and the `ssh-ed25519`
//! tweak for every file it opens; [`HostIdentity`] derives them once at load
//! and then does per file only what the stanza needs: the two X25519
//! multiplications, HKDF and the ChaCha20-Poly1305 unwrap (with age-core's
//! own `hkdf`/`aead_decrypt` and x25519-dalek, the crates age itself uses).
//! It unwraps exactly the stanzas `age::ssh::Identity` unwraps (a unit test
//! compares the two on genuine and damaged stanzas; tests/deploy_install.rs decrypts
//! files made by Go `age` and `rage`); the age crate still parses the header,
//! checks its MAC and decrypts the payload.

use std::io;
use std::path::{Path, PathBuf};

use age::DecryptError;
use age_core::format::{FileKey, Stanza, FILE_KEY_BYTES};
use base64::{prelude::BASE64_STANDARD_NO_PAD, Engine};
use sha2::{Digest, Sha256, Sha512};
use ssh_key::{Algorithm, PrivateKey};
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::{Zeroize, Zeroizing};

/// The `ssh-ed25519` stanza tag and HKDF label (age spec, "ssh-ed25519").
const STANZA_TAG: &str = "ssh-ed25519";
const KEY_LABEL: &[u8] = b"age-encryption.org/v1/ssh-ed25519";

/// A host's ssh-ed25519 key as an age identity, with its per-key
/// derivations done once (see the module documentation).
pub struct HostIdentity {
    /// First 4 bytes of SHA-256 of the SSH wire public key.
    tag: [u8; 4],
    /// The X25519 scalar: SHA-512 of the ed25519 seed, first half.
    secret: StaticSecret,
    /// `secret`'s X25519 public point.
    public: [u8; 32],
    /// HKDF-SHA256(salt = SSH wire public key, info = label, ikm = "").
    tweak: StaticSecret,
}

impl std::fmt::Debug for HostIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostIdentity").finish_non_exhaustive()
    }
}

impl HostIdentity {
    fn from_parts(seed: &[u8; 32], ssh_public: &[u8]) -> Self {
        let mut scalar = Zeroizing::new([0u8; 32]);
        let mut digest = Sha512::digest(seed);
        scalar.copy_from_slice(&digest[..32]);
        digest.as_mut_slice().zeroize();
        let secret = StaticSecret::from(*scalar);
        let public = PublicKey::from(&secret).to_bytes();
        let mut tag = [0; 4];
        tag.copy_from_slice(&Sha256::digest(ssh_public)[..4]);
        let tweak = StaticSecret::from(age_core::primitives::hkdf(ssh_public, KEY_LABEL, &[]));
        Self {
            tag,
            secret,
            public,
            tweak,
        }
    }
}

/// A stanza argument: canonical unpadded base64 of exactly `N` bytes (as age
/// reads it; `B` is the decode buffer, at least `N`).
fn base64_arg<const N: usize, const B: usize>(arg: &str) -> Option<[u8; N]> {
    let mut buf = [0; B];
    match BASE64_STANDARD_NO_PAD.decode_slice(arg, &mut buf) {
        Ok(n) if n == N => buf[..N].try_into().ok(),
        _ => None,
    }
}

impl age::Identity for HostIdentity {
    fn unwrap_stanza(&self, stanza: &Stanza) -> Option<Result<FileKey, DecryptError>> {
        if stanza.tag != STANZA_TAG {
            return None;
        }
        let tag = base64_arg::<4, 6>(stanza.args.first()?)?;
        if tag != self.tag {
            return None;
        }
        if stanza.body.len() != FILE_KEY_BYTES + 16 {
            return Some(Err(DecryptError::InvalidHeader));
        }
        let epk = base64_arg::<32, 33>(stanza.args.get(1)?)?;
        let point = self.secret.diffie_hellman(&PublicKey::from(epk));
        let shared = self
            .tweak
            .diffie_hellman(&PublicKey::from(*point.as_bytes()));
        let mut salt = [0; 64];
        salt[..32].copy_from_slice(&epk);
        salt[32..].copy_from_slice(&self.public);
        let key = Zeroizing::new(age_core::primitives::hkdf(
            &salt,
            KEY_LABEL,
            shared.as_bytes(),
        ));
        // A tag match that does not open is fatal, as in age: 32-bit tag
        // collisions between a host's keys are not expected.
        Some(
            age_core::primitives::aead_decrypt(&key, FILE_KEY_BYTES, &stanza.body)
                .map_err(|_| DecryptError::DecryptionFailed)
                .map(|pt| {
                    let pt = Zeroizing::new(pt);
                    FileKey::init_with_mut(|k| k.copy_from_slice(&pt))
                }),
        )
    }
}

const LATE_MOUNT_HINT: &str = "if the key lives on a filesystem mounted late (e.g. /persist with impermanence), make sure it is mounted before nixseal runs, or point hostKeys at the persistent path";

/// Why a host key could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostKeyError {
    /// The file does not exist.
    #[error("host key {} does not exist; {LATE_MOUNT_HINT}", path.display())]
    Missing {
        /// The key path.
        path: PathBuf,
    },
    /// The file exists but cannot be read.
    #[error("cannot read host key {}: {source}; {LATE_MOUNT_HINT}", path.display())]
    Unreadable {
        /// The key path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// Not an OpenSSH private key.
    #[error("host key {} is not an OpenSSH private key ({reason})", path.display())]
    Invalid {
        /// The key path.
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },
    /// A private key, but not ssh-ed25519.
    #[error("host key {} is a {key_type} key; nixseal decrypts with ssh-ed25519 host keys only (ssh-keygen -t ed25519)", path.display())]
    WrongType {
        /// The key path.
        path: PathBuf,
        /// The type found.
        key_type: String,
    },
    /// Protected by a passphrase; a host key must decrypt unattended.
    #[error("host key {} is passphrase-protected; a host key must be usable at boot without a passphrase", path.display())]
    Encrypted {
        /// The key path.
        path: PathBuf,
    },
}

/// Loads an unencrypted OpenSSH ed25519 private key as an age identity.
///
/// The key may be a symlink (e.g. into /persist); what it names must be a
/// regular file of at most [`crate::common::fsutil::MAX_KEY_FILE`] bytes — a FIFO,
/// a device or a sparse giant is refused before anything is read.
pub fn load(path: &Path) -> Result<HostIdentity, HostKeyError> {
    let bytes = crate::common::fsutil::read_regular(path, crate::common::fsutil::MAX_KEY_FILE)
        .map_err(|source| {
            if source.kind() == io::ErrorKind::NotFound {
                HostKeyError::Missing {
                    path: path.to_owned(),
                }
            } else {
                HostKeyError::Unreadable {
                    path: path.to_owned(),
                    source,
                }
            }
        })?;
    parse(path, &bytes)
}

/// Parses the bytes of an OpenSSH private key; `path` names it in errors.
pub fn parse(path: &Path, bytes: &[u8]) -> Result<HostIdentity, HostKeyError> {
    let invalid = |reason: String| HostKeyError::Invalid {
        path: path.to_owned(),
        reason,
    };
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Err(invalid("not text".into()));
    };
    let key = PrivateKey::from_openssh(text).map_err(|e| invalid(e.to_string()))?;
    if key.is_encrypted() {
        return Err(HostKeyError::Encrypted {
            path: path.to_owned(),
        });
    }
    if key.algorithm() != Algorithm::Ed25519 {
        return Err(HostKeyError::WrongType {
            path: path.to_owned(),
            key_type: key.algorithm().as_str().to_owned(),
        });
    }
    let Some(pair) = key.key_data().ed25519() else {
        return Err(invalid("no ed25519 key pair".into()));
    };
    let seed = Zeroizing::new(pair.private.to_bytes());
    let public = key
        .public_key()
        .to_bytes()
        .map_err(|e| invalid(e.to_string()))?;
    Ok(HostIdentity::from_parts(&seed, &public))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Generated once with `ssh-keygen -t ed25519 -N ''` (test-only key).
    const ED25519: &str = "-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW
QyNTUxOQAAACCEO8cK+ORsvyru0JPq+uyWpFglnLrHK6u7mPSDM4LVfwAAAJCY3rn+mN65
/gAAAAtzc2gtZWQyNTUxOQAAACCEO8cK+ORsvyru0JPq+uyWpFglnLrHK6u7mPSDM4LVfw
AAAED101hHUDVSZgilcyFde7wt6I5AB+tIaUMWtgHqYkjFNIQ7xwr45Gy/Ku7Qk+r67Jak
WCWcuscrq7uY9IMzgtV/AAAACm54cy10ZXN0LTEBAgM=
-----END OPENSSH PRIVATE KEY-----
";
    const ECDSA: &str = "-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAaAAAABNlY2RzYS
1zaGEyLW5pc3RwMjU2AAAACG5pc3RwMjU2AAAAQQRdXK1oxJ6A9v0XZoyCSAJKMo3QL1AF
g31gJnyHwX6rD8OOtI3AYb3CvenwfZjAiT00VcjX6EtG1DmTG716+X8TAAAAoGhbNAloWz
QJAAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBF1crWjEnoD2/Rdm
jIJIAkoyjdAvUAWDfWAmfIfBfqsPw460jcBhvcK96fB9mMCJPTRVyNfoS0bUOZMbvXr5fx
MAAAAhAIeDkOQdjAKmcQSG8MlVIN3BzWkD1sass5JlRGknKioXAAAAA254cwECAwQ=
-----END OPENSSH PRIVATE KEY-----
";

    #[test]
    fn loads_ed25519() {
        assert!(parse(Path::new("/k"), ED25519.as_bytes()).is_ok());
    }

    /// What an identity made of a stanza: no match, an error, or a file key.
    #[derive(Debug, PartialEq)]
    enum Outcome {
        NoMatch,
        Error,
        Key([u8; FILE_KEY_BYTES]),
    }

    fn outcome(id: &dyn age::Identity, stanza: &Stanza) -> Outcome {
        use age::secrecy::ExposeSecret;
        match id.unwrap_stanza(stanza) {
            None => Outcome::NoMatch,
            Some(Err(_)) => Outcome::Error,
            Some(Ok(k)) => Outcome::Key(*k.expose_secret()),
        }
    }

    fn recipient_of(key_text: &str) -> age::ssh::Recipient {
        let key = PrivateKey::from_openssh(key_text).unwrap();
        let line = key.public_key().to_openssh().unwrap();
        line.parse().unwrap()
    }

    fn wrap(r: &age::ssh::Recipient, file_key: [u8; FILE_KEY_BYTES]) -> Stanza {
        let (mut stanzas, _) =
            age::Recipient::wrap_file_key(r, &FileKey::new(Box::new(file_key))).unwrap();
        assert_eq!(stanzas.len(), 1);
        stanzas.remove(0)
    }

    /// `HostIdentity` answers every stanza exactly as `age::ssh::Identity`
    /// does: the real stanza, stanzas for other keys and types, and every
    /// kind of damage to tag, arguments and body.
    #[test]
    fn unwraps_exactly_like_age_ssh_identity() {
        let ours = parse(Path::new("/k"), ED25519.as_bytes()).unwrap();
        let age_id = age::ssh::Identity::from_buffer(ED25519.as_bytes(), None).unwrap();
        let r = recipient_of(ED25519);
        let other = {
            let k = PrivateKey::random(&mut ssh_key::rand_core::OsRng, Algorithm::Ed25519).unwrap();
            recipient_of(&k.to_openssh(ssh_key::LineEnding::LF).unwrap())
        };
        let mut cases: Vec<(&str, Stanza)> = Vec::new();
        for i in 0..8u8 {
            cases.push(("genuine", wrap(&r, [i.wrapping_mul(37); FILE_KEY_BYTES])));
        }
        let base = wrap(&r, [7; FILE_KEY_BYTES]);
        let with = |f: &dyn Fn(&mut Stanza)| {
            let mut s = Stanza {
                tag: base.tag.clone(),
                args: base.args.clone(),
                body: base.body.clone(),
            };
            f(&mut s);
            s
        };
        cases.push(("other key", wrap(&other, [7; FILE_KEY_BYTES])));
        cases.push(("other type", with(&|s| s.tag = "X25519".into())));
        cases.push(("body bit flipped", with(&|s| s.body[3] ^= 1)));
        cases.push(("body tag flipped", with(&|s| s.body[31] ^= 0x80)));
        cases.push(("body short", with(&|s| s.body.truncate(31))));
        cases.push(("body long", with(&|s| s.body.push(0))));
        cases.push(("body empty", with(&|s| s.body.clear())));
        cases.push(("key tag changed", with(&|s| s.args[0] = "AAAAAA".into())));
        cases.push(("key tag not base64", with(&|s| s.args[0] = "!!!!!!".into())));
        cases.push(("key tag too long", with(&|s| s.args[0].push('A'))));
        cases.push((
            "key tag non-canonical",
            with(&|s| {
                // 6 chars carry 36 bits for 32: set a trailing (unused) bit.
                let mut c: Vec<char> = s.args[0].chars().collect();
                let last = c[5];
                let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
                let idx = alphabet.find(last).unwrap();
                c[5] = alphabet.chars().nth(idx ^ 1).unwrap();
                s.args[0] = c.into_iter().collect();
            }),
        ));
        cases.push((
            "share changed",
            with(&|s| {
                let other_share = wrap(&r, [9; FILE_KEY_BYTES]).args[1].clone();
                s.args[1] = other_share;
            }),
        ));
        cases.push((
            "share all zero (low order)",
            with(&|s| {
                s.args[1] = BASE64_STANDARD_NO_PAD.encode([0u8; 32]);
            }),
        ));
        cases.push(("share short", with(&|s| s.args[1].truncate(42))));
        cases.push(("share padded", with(&|s| s.args[1].push('='))));
        cases.push(("share missing", with(&|s| s.args.truncate(1))));
        cases.push(("no args", with(&|s| s.args.clear())));
        cases.push(("extra arg", with(&|s| s.args.push("AAAA".into()))));

        let mut keys = 0;
        for (what, stanza) in &cases {
            let expected = outcome(&age_id, stanza);
            assert_eq!(outcome(&ours, stanza), expected, "{what}");
            if matches!(expected, Outcome::Key(_)) {
                keys += 1;
            }
        }
        // The genuine stanzas (and the harmless extra argument) opened.
        assert_eq!(keys, 9, "genuine stanzas must unwrap");
        assert_eq!(
            outcome(&ours, &base),
            Outcome::Key([7; FILE_KEY_BYTES]),
            "the file key that was wrapped"
        );
    }

    #[test]
    fn missing_key_names_path_and_hints() {
        let e = load(Path::new("/nonexistent/nixseal/key")).err().unwrap();
        let t = e.to_string();
        assert!(
            t.contains("/nonexistent/nixseal/key") && t.contains("/persist"),
            "{t}"
        );
        assert!(matches!(e, HostKeyError::Missing { .. }));
    }

    #[test]
    fn other_key_types_are_refused() {
        let e = parse(Path::new("/k"), ECDSA.as_bytes()).err().unwrap();
        assert!(matches!(e, HostKeyError::WrongType { .. }), "{e}");
        assert!(e.to_string().contains("ecdsa"), "{e}");
    }

    #[test]
    fn garbage_is_invalid() {
        let e = parse(Path::new("/k"), b"hello\n").err().unwrap();
        assert!(matches!(e, HostKeyError::Invalid { .. }), "{e}");
        let e = parse(Path::new("/k"), &[0xff, 0xfe]).err().unwrap();
        assert!(matches!(e, HostKeyError::Invalid { .. }), "{e}");
    }
}
