//! Host SSH ed25519 private keys as age identities.

use std::io;
use std::path::{Path, PathBuf};

use age::ssh::Identity;
use ssh_key::{Algorithm, PrivateKey};
use zeroize::Zeroizing;

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
pub fn load(path: &Path) -> Result<Identity, HostKeyError> {
    let bytes = Zeroizing::new(std::fs::read(path).map_err(|source| {
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
    })?);
    parse(path, &bytes)
}

/// Parses the bytes of an OpenSSH private key; `path` names it in errors.
pub fn parse(path: &Path, bytes: &[u8]) -> Result<Identity, HostKeyError> {
    let invalid = |reason: String| HostKeyError::Invalid {
        path: path.to_owned(),
        reason,
    };
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Err(invalid("not text".into()));
    };
    // ssh-key tells the type and encryption apart; age then does the decrypting.
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
    drop(key);
    match Identity::from_buffer(bytes, Some(path.display().to_string())) {
        Ok(id @ Identity::Unencrypted(_)) => Ok(id),
        Ok(_) => Err(invalid("not usable by age".into())),
        Err(e) => Err(invalid(e.to_string())),
    }
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
