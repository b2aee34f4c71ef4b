//! Process hardening for every command that may hold plaintext.
//!
//! A core dump of a process that holds decrypted secrets would write them to
//! persistent disk (systemd-coredump keeps dumps in /var/lib/systemd/coredump).
//! [`no_core_dumps`] marks the process non-dumpable (`PR_SET_DUMPABLE` 0: no
//! core file, and other processes of the same user can no longer ptrace it or
//! read its /proc/PID/mem) and sets `RLIMIT_CORE` to 0, which children
//! (editor, generator) inherit. See docs/threat-model.md.

/// Disables core dumps for this process (and, through `RLIMIT_CORE`, its
/// children). Call it first thing in `main`.
pub fn no_core_dumps() -> std::io::Result<()> {
    use rustix::process::{setrlimit, Resource, Rlimit};
    setrlimit(
        Resource::Core,
        Rlimit {
            current: Some(0),
            maximum: Some(0),
        },
    )?;
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)?;
    Ok(())
}

/// Whether this process is currently dumpable (for tests and `--version`-style checks).
pub fn is_dumpable() -> bool {
    !matches!(
        rustix::process::dumpable_behavior(),
        Ok(rustix::process::DumpableBehavior::NotDumpable)
    )
}
