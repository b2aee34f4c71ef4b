//! Names of hosts and secrets: one rule for the profile, the manifest and
//! the rekeyed layout. Keep in sync with `nameType` in `modules/lib/types.nix`
//! (tests/nix checks both refuse the same names). Described in docs/design.md.
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
    #[error("{kind} name {name:?} {why}; use letters, digits and `-_.+=`, not starting with `.`")]
    Invalid {
        /// "host" or "secret" (what the name names).
        kind: &'static str,
        /// The name as given.
        name: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The name is longer than store path names and file names allow.
    #[error("{kind} name {name:?} is {} bytes long, more than the {max} nixseal allows (it becomes part of the store path name `<host>-<secret>.age`, at most 211 characters); use a shorter name", name.len())]
    TooLong {
        /// "host" or "secret".
        kind: &'static str,
        /// The name as given.
        name: String,
        /// The limit.
        max: usize,
    },
}

/// Longest host name, in bytes. Each rekeyed file becomes the store path
/// name `<host>-<secret>.age`, and Nix allows at most 211 characters there:
/// 96 + 1 + [`SECRET_NAME_MAX`] + 4 = 211. (96 leaves room for a home
/// target such as `<host>-<user>`.) Keep in sync with `nameType` in
/// modules/lib/types.nix.
pub const HOST_NAME_MAX: usize = 96;

/// Longest secret (or template) name, in bytes; see [`HOST_NAME_MAX`]. Far
/// below the 255 bytes a file name may have, with room for every suffix
/// nixseal adds (`.age`, temporary names).
pub const SECRET_NAME_MAX: usize = 110;

/// The longest name of a kind ("host" or anything else: secret, template).
pub fn max_len(kind: &str) -> usize {
    if kind == "host" {
        HOST_NAME_MAX
    } else {
        SECRET_NAME_MAX
    }
}

/// Checks that `name` is usable as a single path component.
///
/// Refused: empty names, `/`, `\0`, any `..`, a leading `.` (hidden files and
/// `.`/`..`), control characters, anything outside `[A-Za-z0-9_.+=-]` (the
/// characters of Nix store path names), and names longer than [`max_len`].
pub fn validate(kind: &'static str, name: &str) -> Result<(), NameError> {
    // The usual case in one pass over the bytes (a fleet's profile has one
    // name per host and secret pair); anything else gets the checks below,
    // which say what is wrong.
    if ordinary(name, max_len(kind)) {
        return Ok(());
    }
    checks(kind, name)
}

/// Each check of [`validate`] in turn, the first that fails named.
fn checks(kind: &'static str, name: &str) -> Result<(), NameError> {
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
    // The same characters Nix allows in store path names: each rekeyed file
    // becomes the store path `<host>-<secret>.age`.
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.+=".contains(c))
    {
        return invalid("contains a character Nix store names do not allow");
    }
    if name.len() > max_len(kind) {
        return Err(NameError::TooLong {
            kind,
            name: name.to_owned(),
            max: max_len(kind),
        });
    }
    Ok(())
}

/// Whether `name` passes every check of [`validate`]: 1 to `max` bytes
/// of `[A-Za-z0-9_.+=-]`, no leading `.`, no two `.` in a row.
fn ordinary(name: &str, max: usize) -> bool {
    let b = name.as_bytes();
    if b.is_empty() || b.len() > max || b[0] == b'.' {
        return false;
    }
    let mut dot = false;
    b.iter().all(|&c| {
        let ok = match c {
            b'.' => !dot,
            _ => c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'+' | b'='),
        };
        dot = c == b'.';
        ok
    })
}

// Shared strings: a plan names each host and secret once per pair (100,000
// pairs in a big fleet), and a clone is a reference count, not a copy.

/// A validated host name (see [`validate`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostName(std::sync::Arc<str>);

/// A validated secret name (see [`validate`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SecretName(std::sync::Arc<str>);

macro_rules! name_type {
    ($ty:ident, $kind:literal) => {
        impl $ty {
            /// Validates and wraps a name.
            pub fn new(name: impl Into<String>) -> Result<Self, NameError> {
                let name: String = name.into();
                validate($kind, &name)?;
                Ok(Self(name.into()))
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

    /// The one-pass check accepts exactly what the full checks accept:
    /// seeded random names over an alphabet of every class of character
    /// the checks look at (each length up to past the limit).
    #[test]
    fn the_quick_check_agrees_with_the_full_one() {
        let alphabet: Vec<char> = "aZ09-_.+=/\0\n é~ ".chars().collect();
        let mut next = crate::common::test_rng::xorshift(0x2545_f491_4f6c_dd1du64);
        for _ in 0..50_000 {
            let len = (next() % 14) as usize;
            let name: String = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            for kind in ["host", "secret"] {
                let max = max_len(kind);
                assert_eq!(
                    ordinary(&name, max),
                    checks(kind, &name).is_ok(),
                    "{name:?}"
                );
                // And at a limit the names reach.
                let long = name.repeat(max / len.max(1) + 1);
                assert_eq!(
                    ordinary(&long, max),
                    checks(kind, &long).is_ok(),
                    "{long:?}"
                );
            }
        }
        for name in ["a", "a.b", "a..b", ".a", "a.", "-", "a=b+c_d-e.f"] {
            assert_eq!(ordinary(name, 96), checks("host", name).is_ok(), "{name:?}");
        }
    }

    #[test]
    fn accepts_ordinary_names() {
        for n in ["db-password", "web1", "app.env", "a_b+c=d", "x..y.txt"] {
            let ok = validate("secret", n).is_ok();
            assert_eq!(ok, !n.contains(".."), "{n}");
        }
    }

    #[test]
    fn refuses_escaping_names() {
        for n in [
            "", "a/b", "..", "../x", ".hidden", ".", "a\0b", "a\nb", "a@b", "a b", "é",
        ] {
            assert!(validate("secret", n).is_err(), "{n:?} must be refused");
        }
    }

    #[test]
    fn long_names_are_refused_by_kind() {
        assert!(validate("host", &"h".repeat(HOST_NAME_MAX)).is_ok());
        assert!(validate("secret", &"s".repeat(SECRET_NAME_MAX)).is_ok());
        let e = validate("host", &"h".repeat(HOST_NAME_MAX + 1)).unwrap_err();
        assert!(matches!(e, NameError::TooLong { max: 96, .. }), "{e}");
        let e = validate("secret", &"s".repeat(SECRET_NAME_MAX + 1))
            .unwrap_err()
            .to_string();
        assert!(e.contains("111 bytes long") && e.contains("110"), "{e}");
        // The longest store name still fits Nix's 211 characters.
        assert_eq!(HOST_NAME_MAX + 1 + SECRET_NAME_MAX + ".age".len(), 211);
    }

    #[test]
    fn error_names_the_kind_and_name() {
        let e = HostName::new("../etc").unwrap_err().to_string();
        assert!(e.contains("host name \"../etc\""), "{e}");
    }
}
