//! A private mount namespace for the calling thread (and the processes it
//! spawns), so that ramfs mounts made by tests and benchmarks stay there.
//! Shared by the deploy tests (tests/support/host.rs) and bench/deploy.rs (`#[path]`-included).

/// `unshare(CLONE_NEWNS)`, then make every mount private (no propagation back
/// to the host's namespace). Needs root.
pub fn enter_private_mount_namespace() {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).expect("unshare(CLONE_NEWNS)");
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .expect("make / private");
}
