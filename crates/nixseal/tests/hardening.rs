//! `hardening::no_core_dumps` makes the process non-dumpable and sets
//! RLIMIT_CORE to 0 (its own test binary: the flags stay for the process).

#[test]
fn no_core_dumps_makes_the_process_non_dumpable() {
    assert!(
        nixseal::hardening::is_dumpable(),
        "a fresh test process should be dumpable"
    );
    nixseal::hardening::no_core_dumps().unwrap();
    assert!(!nixseal::hardening::is_dumpable());
    let core = rustix::process::getrlimit(rustix::process::Resource::Core);
    assert_eq!((core.current, core.maximum), (Some(0), Some(0)));
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    assert_eq!(line.split_whitespace().nth(4), Some("0"), "{line}");
}
