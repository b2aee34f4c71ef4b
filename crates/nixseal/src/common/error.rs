//! One exit-code rule for every error family: each says its class through
//! [`Classify`], and the CLI maps the class to the documented exit code
//! (2 bad input or usage, 1 the operation failed, 3 the environment is not
//! fit; docs/design.md).

/// What kind of failure an error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Exit 2: bad input or usage (arguments, profile, manifest, identity
    /// files, a wrong passphrase); nothing was changed.
    BadInput,
    /// Exit 1: the operation failed (a secret could not be rekeyed,
    /// decrypted or written; a step after a deploy's switch).
    Failed,
    /// Exit 3: the environment is not fit (a lock, the mount point, a host
    /// key, the account databases, no `nix-store`).
    Environment,
}

/// An error that knows its [`ErrorClass`].
pub trait Classify {
    /// The class of this error.
    fn class(&self) -> ErrorClass;
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use crate::common::crypto::encrypt;
    use crate::host::{DeployError, FailureReason, SourceProblem};
    use crate::operator::edit::EditError;
    use crate::operator::generate::GenerateError;
    use crate::operator::identity::IdentityError;
    use crate::operator::rekey::PairError;

    /// Flags and app commands are the CLI's to suggest (its hints); the
    /// library says what failed and why.
    #[test]
    fn library_messages_name_no_cli_flags_or_apps() {
        let p = || PathBuf::from("secrets/db.age");
        let io = || std::io::Error::from(std::io::ErrorKind::NotFound);
        let messages = [
            IdentityError::NoIdentities.to_string(),
            IdentityError::NoPassphrase { path: p() }.to_string(),
            IdentityError::Read {
                path: p(),
                source: io(),
            }
            .to_string(),
            EditError::NeedIdentity { path: p() }.to_string(),
            EditError::NoRecipients { path: p() }.to_string(),
            EditError::Empty {
                path: p(),
                exists: true,
                stdin: true,
                quick_editor: None,
            }
            .to_string(),
            PairError::SourceUnreadable {
                path: p(),
                source: std::sync::Arc::new(io()),
            }
            .to_string(),
            DeployError::Source {
                secret: "db".into(),
                path: p(),
                problem: SourceProblem::Missing,
            }
            .to_string(),
            FailureReason::NotForThisHost.to_string(),
        ];
        for m in messages {
            assert!(
                !m.contains("--") && !m.contains("nix run") && !m.contains(" renc"),
                "{m}"
            );
        }
    }

    /// Regression: "cannot encrypt …: cannot encrypt: …".
    #[test]
    fn encrypt_failures_say_cannot_encrypt_once() {
        let e = || encrypt(b"x", &[], false).unwrap_err();
        let messages = [
            PairError::Encrypt(e()).to_string(),
            EditError::Encrypt {
                path: "s.age".into(),
                source: e(),
            }
            .to_string(),
            GenerateError::Encrypt {
                file: "s.age".into(),
                source: e(),
            }
            .to_string(),
        ];
        for m in messages {
            assert_eq!(m.matches("cannot encrypt").count(), 1, "{m}");
        }
    }
}
