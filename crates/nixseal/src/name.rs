//! Names of hosts and secrets.
//!
//! Both end up as path components (`<rekeyedDir>/<host>/<secret>.age`,
//! `<mountPoint>/<n>/<secret>`), so the same rule guards both: a name is never
//! allowed to escape the directory it is joined to.

use std::fmt;

/// Why a host or secret name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// The name is the empty string.
    #[error("{kind} name is empty")]
    Empty {
        /// "host" or "secret" (what the name names).
        kind: &'static str,
    },
    /// The name contains a character or sequence that could escape a directory.
    #[error("{kind} name {name:?} {why}; use letters, digits, `-`, `_`, `.` or `@`, not starting with `.`")]
    Invalid {
        /// "host" or "secret" (what the name names).
        kind: &'static str,
        /// The name as given.
        name: String,
        /// What is wrong with it.
        why: &'static str,
    },
}

/// Checks that `name` is usable as a single path component.
///
/// Refused: empty names, `/`, `\0`, any `..`, a leading `.` (hidden files and
/// `.`/`..`), and control characters.
pub fn validate(kind: &'static str, name: &str) -> Result<(), NameError> {
    let invalid = |why| {
        Err(NameError::Invalid {
            kind,
            name: name.to_owned(),
            why,
        })
    };
    if name.is_empty() {
        return Err(NameError::Empty { kind });
    }
    if name.contains('/') {
        return invalid("contains `/`");
    }
    if name.contains('\0') {
        return invalid("contains a NUL byte");
    }
    if name.contains("..") {
        return invalid("contains `..`");
    }
    if name.starts_with('.') {
        return invalid("starts with `.`");
    }
    if name.chars().any(char::is_control) {
        return invalid("contains a control character");
    }
    Ok(())
}

/// A validated host name (see [`validate`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostName(String);

/// A validated secret name (see [`validate`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SecretName(String);

macro_rules! name_type {
    ($ty:ident, $kind:literal) => {
        impl $ty {
            /// Validates and wraps a name.
            pub fn new(name: impl Into<String>) -> Result<Self, NameError> {
                let name = name.into();
                validate($kind, &name)?;
                Ok(Self(name))
            }
            /// The name as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
        impl std::borrow::Borrow<str> for $ty {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
    };
}
name_type!(HostName, "host");
name_type!(SecretName, "secret");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for n in ["db-password", "web1", "app.env", "a_b@c", "x..y.txt"] {
            let ok = validate("secret", n).is_ok();
            assert_eq!(ok, !n.contains(".."), "{n}");
        }
    }

    #[test]
    fn refuses_escaping_names() {
        for n in ["", "a/b", "..", "../x", ".hidden", ".", "a\0b", "a\nb"] {
            assert!(validate("secret", n).is_err(), "{n:?} must be refused");
        }
    }

    #[test]
    fn error_names_the_kind_and_name() {
        let e = HostName::new("../etc").unwrap_err().to_string();
        assert!(e.contains("host name \"../etc\""), "{e}");
    }
}
