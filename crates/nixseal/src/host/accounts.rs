//! User and group lookup from `/etc/passwd` and `/etc/group`.
//!
//! Parsed directly (no NSS, no `unsafe` `getpwnam`): on NixOS the accounts a
//! secret can be owned by are declared in the configuration and written to
//! these files by the `users` activation step, systemd-sysusers or userborn, so
//! the files are the source of truth at activation time. A name that is not
//! found is an error for the caller; it never falls back to uid 0. A decimal
//! number that is not an account name is taken as the id itself, as `chown`
//! does (files for a container's or another machine's uid).

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

/// Where the account databases are read from.
pub const PASSWD: &str = "/etc/passwd";
/// Where the group database is read from.
pub const GROUP: &str = "/etc/group";

/// Why the account databases could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AccountsError {
    /// A database file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}

/// Users and groups by name.
#[derive(Debug, Clone, Default)]
pub struct Accounts {
    users: HashMap<String, u32>,
    groups: HashMap<String, u32>,
}

impl Accounts {
    /// Reads `/etc/passwd` and `/etc/group`.
    pub fn load_system() -> Result<Self, AccountsError> {
        Self::load(Path::new(PASSWD), Path::new(GROUP))
    }

    /// Reads the given passwd and group files.
    pub fn load(passwd: &Path, group: &Path) -> Result<Self, AccountsError> {
        // Regular files of bounded size only (a FIFO or device here would
        // hang or exhaust memory at every boot).
        let read = |p: &Path| {
            crate::common::fsutil::read_regular(p, crate::common::fsutil::MAX_FILE)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .map_err(|source| AccountsError::Read {
                    path: p.to_owned(),
                    source,
                })
        };
        Ok(Self::parse(&read(passwd)?, &read(group)?))
    }

    /// Parses the text of a passwd and a group file. Malformed lines are
    /// skipped (as NSS does); the first entry of a name wins.
    pub fn parse(passwd: &str, group: &str) -> Self {
        Self {
            users: parse_db(passwd),
            groups: parse_db(group),
        }
    }

    /// The uid of a user name, or of a decimal uid that is not a user name
    /// (as `chown` reads an owner: a container's uid needs no account here).
    pub fn uid(&self, name: &str) -> Option<u32> {
        self.users.get(name).copied().or_else(|| numeric_id(name))
    }

    /// The gid of a group name, or of a decimal gid that is not a group name.
    pub fn gid(&self, name: &str) -> Option<u32> {
        self.groups.get(name).copied().or_else(|| numeric_id(name))
    }
}

/// A plain decimal id (digits only, no sign), never `u32::MAX` (`(uid_t)-1`
/// means "no change" to chown).
fn numeric_id(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u32>().ok().filter(|id| *id != u32::MAX)
}

/// `name:password:id:...` lines; the id is the third field in both files.
fn parse_db(text: &str) -> HashMap<String, u32> {
    let mut map = HashMap::new();
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split(':');
        let (Some(name), Some(_), Some(id)) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        // NIS compat entries (`+name`, `-name`) are not accounts.
        if name.is_empty() || name.starts_with(['+', '-']) {
            continue;
        }
        if let Ok(id) = id.parse::<u32>() {
            // u32::MAX is (uid_t)-1, "no change" for chown: never an owner.
            if id != u32::MAX {
                map.entry(name.to_owned()).or_insert(id);
            }
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_passwd_and_group() {
        let a = Accounts::parse(
            "root:x:0:0:root:/root:/bin/sh\n# comment\npostgres:x:71:71::/var/lib/postgresql:/bin/false\nbroken-line\n+nis::::\nneg:x:4294967295:1::/:/\n",
            "root:x:0:\npostgres:x:71:\nwheel:x:1:alice,bob\n",
        );
        assert_eq!(a.uid("root"), Some(0));
        assert_eq!(a.uid("postgres"), Some(71));
        assert_eq!(a.uid("broken-line"), None);
        assert_eq!(a.uid("+nis"), None);
        assert_eq!(a.uid("neg"), None);
        assert_eq!(a.uid("nobody-here"), None);
        assert_eq!(a.gid("wheel"), Some(1));
        assert_eq!(a.gid("postgres"), Some(71));
    }

    #[test]
    fn numeric_ids_when_not_names() {
        let a = Accounts::parse("root:x:0:0::/:/\n1000:x:5:5::/:/\n", "root:x:0:\n");
        assert_eq!(a.uid("999"), Some(999));
        assert_eq!(a.gid("0999"), Some(999));
        assert_eq!(a.uid("0"), Some(0));
        // A name made of digits is the account, not the number.
        assert_eq!(a.uid("1000"), Some(5));
        for bad in [
            "",
            "-1",
            "+5",
            " 5",
            "5 ",
            "1e3",
            "0x10",
            "4294967295",
            "99999999999",
        ] {
            assert_eq!(a.uid(bad), None, "{bad:?}");
            assert_eq!(a.gid(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn first_entry_wins() {
        let a = Accounts::parse("x:x:5:5::/:/\nx:x:0:0::/:/\n", "");
        assert_eq!(a.uid("x"), Some(5));
    }
}
