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

/// Keeps this process's memory out of swap (`mlockall` with
/// `MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT`: pages are locked as they are
/// touched, nothing is pre-faulted). Deploy holds every secret of the host in
/// memory for a moment; the ramfs is never swapped, and with this neither are
/// the buffers. Only done with `CAP_IPC_LOCK` (root has it) or an unlimited
/// `RLIMIT_MEMLOCK`: under a finite limit, `MCL_FUTURE` would make later
/// allocations fail. Otherwise an error says why; the caller decides whether
/// that is fatal (the CLI warns and goes on).
pub fn lock_memory() -> std::io::Result<()> {
    use rustix::mm::{mlockall, MlockAllFlags};
    use rustix::process::{getrlimit, Resource};
    use rustix::thread::{capabilities, CapabilitySet};
    let capable = capabilities(None)
        .map(|c| c.effective.contains(CapabilitySet::IPC_LOCK))
        .unwrap_or(false);
    if !capable && getrlimit(Resource::Memlock).current.is_some() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            "no CAP_IPC_LOCK and a finite RLIMIT_MEMLOCK",
        ));
    }
    mlockall(MlockAllFlags::CURRENT | MlockAllFlags::FUTURE | MlockAllFlags::ONFAULT)
        .map_err(Into::into)
}
