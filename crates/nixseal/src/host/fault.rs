//! Fault points: in builds with the `fault-injection` feature, the process
//! SIGKILLs itself when `NIXSEAL_FAULT` names the point it reaches. In normal
//! builds `point` is an empty inline function and the variable is ignored.

/// Every fault point, in the order a deploy reaches them.
pub const POINTS: &[&str] = &[
    "after-validate",
    "after-keys",
    "after-lock",
    "after-mount",
    "after-tmp-created",
    "mid-decrypt",
    "after-tmp-complete",
    "after-record",
    "after-copies",
    "after-rename",
    "after-temp-symlink",
    "after-switch",
    "after-paths",
    "mid-prune",
    "after-prune",
    "after-units",
];

/// The environment variable naming the fault point to die at.
pub const ENV: &str = "NIXSEAL_FAULT";

#[cfg(feature = "fault-injection")]
pub(crate) fn point(name: &str) {
    debug_assert!(POINTS.contains(&name), "unknown fault point {name}");
    if std::env::var_os(ENV).is_some_and(|v| v == name) {
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
    }
}

#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub(crate) fn point(_name: &str) {}
