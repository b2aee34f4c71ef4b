//! The rules for paths in a manifest: absolute and normalised, outside the
//! store, never a system directory or a kernel file system, and short enough
//! for what nixseal adds next to them (temporary names, `-for-users`, the
//! lock, the state file).

/// `inner` is strictly below `outer`.
pub fn path_within(inner: &str, outer: &str) -> bool {
    inner
        .strip_prefix(outer)
        .is_some_and(|r| r.starts_with('/') || outer == "/")
        && inner != outer
}

/// An absolute, normalised path (no `.`/`..`/empty components, no trailing
/// `/`), outside the Nix store.
pub fn check_abs_path(p: &str) -> Result<(), &'static str> {
    check_normal_abs(p)?;
    if p == "/nix/store" || p.starts_with("/nix/store/") {
        return Err("is inside /nix/store (world-readable); use a path under /run or /var");
    }
    Ok(())
}

pub(crate) fn check_normal_abs(p: &str) -> Result<(), &'static str> {
    if !p.starts_with('/') {
        return Err("is not an absolute path");
    }
    if p.contains('\0') {
        return Err("contains a NUL byte");
    }
    if p.len() > 1 && p.ends_with('/') {
        return Err("ends with `/`");
    }
    if p.len() > 1
        && p[1..]
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err("is not normalised (empty, `.` or `..` component)");
    }
    Ok(())
}

/// Paths under these are kernel file systems: nixseal never writes there.
const KERNEL_FS: [&str; 3] = ["/proc", "/sys", "/dev"];

/// Directories of the system itself: nixseal never mounts its ramfs over
/// one, replaces one by its symlink, keeps its state in one, or places a
/// secret at one.
const SYSTEM_DIRS: &[&str] = &[
    "/",
    "/bin",
    "/boot",
    "/efi",
    "/etc",
    "/home",
    "/lib",
    "/lib32",
    "/lib64",
    "/media",
    "/mnt",
    "/nix",
    "/opt",
    "/persist",
    "/root",
    "/run",
    "/sbin",
    "/srv",
    "/tmp",
    "/usr",
    "/var",
    "/etc/nixos",
    "/etc/ssh",
    "/etc/systemd",
    "/etc/static",
    "/nix/var",
    "/run/booted-system",
    "/run/current-system",
    "/run/keys",
    "/run/lock",
    "/run/systemd",
    "/run/udev",
    "/run/user",
    "/run/wrappers",
    "/usr/bin",
    "/usr/lib",
    "/usr/local",
    "/usr/sbin",
    "/usr/share",
    "/var/cache",
    "/var/db",
    "/var/empty",
    "/var/lib",
    "/var/lock",
    "/var/log",
    "/var/run",
    "/var/spool",
    "/var/tmp",
];

/// Longest file name (NAME_MAX) and path (PATH_MAX, with its NUL) on Linux.
pub(crate) const NAME_MAX: usize = 255;
pub(crate) const PATH_MAX: usize = 4096;

/// Bytes nixseal adds to a path's last component / to the whole path.
#[derive(Clone, Copy)]
pub(crate) struct Extra {
    pub(crate) last: usize,
    pub(crate) total: usize,
}

/// A temporary name `.<base>.nixseal-new` adds 13 bytes.
pub(crate) const TEMP_EXTRA: usize = 1 + 12;
/// `-for-users` (the `--users` locations derived from the manifest's).
pub(crate) const USERS_EXTRA: usize = 10;
/// The longest state file name plus its temporary name (see host::state).
pub(crate) const STATE_FILE_EXTRA: usize = 1 + 86 + TEMP_EXTRA;

/// Refuses a path nixseal writes that is a system directory, is inside a
/// kernel file system, or does not fit NAME_MAX/PATH_MAX with what nixseal
/// adds to it.
pub(crate) fn check_location(p: &str, extra: Extra) -> Result<(), String> {
    if SYSTEM_DIRS.contains(&p) {
        return Err("is a system directory; nixseal never mounts over, replaces or writes into it (use a directory of its own, e.g. under /run or /var/lib)".into());
    }
    if KERNEL_FS.iter().any(|k| p == *k || path_within(p, k)) {
        return Err("is inside a kernel file system (/proc, /sys, /dev)".into());
    }
    let comps: Vec<&str> = p.split('/').filter(|c| !c.is_empty()).collect();
    if let Some(c) = comps.iter().find(|c| c.len() > NAME_MAX) {
        return Err(format!(
            "has a component of {} bytes; file names are at most {NAME_MAX} bytes",
            c.len()
        ));
    }
    if let Some(last) = comps.last() {
        if last.len() + extra.last > NAME_MAX {
            return Err(format!(
                "has a last component of {} bytes; with the {} bytes nixseal adds for its own names next to it (temporary names, lock, `-for-users`) it exceeds the {NAME_MAX} bytes a file name may have — use a shorter name",
                last.len(),
                extra.last
            ));
        }
    }
    if p.len() + extra.total >= PATH_MAX {
        return Err(format!(
            "is {} bytes long; with the {} bytes nixseal adds below or next to it, it exceeds PATH_MAX ({PATH_MAX} bytes) — use a shorter path",
            p.len(),
            extra.total
        ));
    }
    Ok(())
}

pub(crate) fn check_read_path(p: &str) -> Result<(), String> {
    check_location(p, Extra { last: 0, total: 0 }).or_else(|e| {
        // Read-only paths may be anywhere but must fit the file system.
        if e.starts_with("is a system") || e.starts_with("is inside a kernel") {
            Ok(())
        } else {
            Err(e)
        }
    })
}
