//! Bounded, seeded mutational fuzzing of the operator side: the profile,
//! the rekey cache and the age inputs (master ciphertexts, identity files)
//! of `renc`, `check` and `edit`, running the real binary in a temporary
//! fleet made with Go `age`, `age-keygen` and `ssh-keygen`.
//!
//! Each case copies a rekeyed template fleet, mutates one input
//! (tests/support/mutate.rs) and runs one command. Asserted for every case:
//! no panic (no exit 101, no "panicked" on stderr), no hang (killed after
//! a timeout), only documented exit codes (0–3), and no state change after
//! an error: `check` and dry runs change nothing, `renc` writes only inside
//! the profile's rekeyedDir (and makes its missing parent directories; never
//! touches a master secret or identity) and leaves
//! every cache true, `edit` changes at most its target, and a command that
//! fails with exit 2 (bad input) changes nothing at all.
//!
//! The suite runs a few dozen cases per target with fixed seeds (well under
//! a minute); maintainers run more with `NIXSEAL_FUZZ_CASES=N
//! NIXSEAL_FUZZ_SEED=S cargo test -p nixseal-cli --test fuzz_operator`
//! (docs/testing.md). A failing case prints its seed, index and command,
//! and leaves its fleet in /tmp for inspection.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use support::mutate::{self, Rng};
use support::*;

/// A rekeyed fleet to copy: outputs current except tls (so renc needs the
/// identity), masters also encrypted to an OpenSSH key (keys/master_ssh).
fn template() -> Fleet {
    let mut f = Fleet::new();
    let ssh = ssh_keygen(&f.path("keys/master_ssh"), "");
    for (name, pt) in f.secrets.clone() {
        let armor = name == "api";
        age_encrypt(
            &f.path(&format!("secrets/{name}.age")),
            &pt,
            &[&f.master, &ssh],
            armor,
        );
    }
    f.write_profile();
    assert_code(&f.renc(), 0);
    f.set_secret("tls", b"rotated tls", false);
    f
}

/// A copy of the fleet at `from`, as `<tempdir>/fleet`.
fn copy_fleet(from: &Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    run_ok(
        Command::new("cp")
            .arg("-a")
            .arg(from)
            .arg(to.path().join("fleet")),
    );
    to
}

/// What a case runs.
#[derive(Debug, Clone, Copy)]
enum Step {
    Check,
    DryRun,
    Renc,
    RencSsh,
    Edit,
}

fn command(dir: &Path, run: Step) -> Command {
    let mut c = Command::new(nixseal_bin());
    c.current_dir(dir).stdin(Stdio::null());
    match run {
        Step::Check => c.args(["check", "--profile", "profile.json"]),
        Step::DryRun => c.args(["renc", "--profile", "profile.json", "--dry-run"]),
        Step::Renc => c.args(["renc", "--profile", "profile.json"]),
        Step::RencSsh => c.args(["renc", "--profile", "profile.json", "-i", "keys/master_ssh"]),
        Step::Edit => c.args(["edit", "secrets/api.age", "--profile", "profile.json"]),
    };
    c
}

/// Runs `run`, feeding `edit` a new value on stdin.
fn execute(dir: &Path, run: Step) -> Output {
    let mut c = command(dir, run);
    if let Step::Edit = run {
        // A file as stdin: no pipe to keep open, nothing to block on.
        let input = dir.join("../new-value");
        std::fs::write(&input, b"fuzzed new value").unwrap();
        c.stdin(std::fs::File::open(&input).unwrap());
    }
    run_timeout(&mut c, 30)
}

/// The rekeyedDir a (possibly mutated) profile names, normalised, if it
/// names a usable one.
fn rekeyed_dir_of(profile: &[u8]) -> Option<PathBuf> {
    let v: serde_json::Value = serde_json::from_slice(profile).ok()?;
    let rd = v.get("rekeyedDir")?.as_str()?;
    let mut out = PathBuf::new();
    for c in Path::new(rd).components() {
        match c {
            std::path::Component::Normal(n) => out.push(n),
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            _ => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

/// Asserts the invariants of one case; returns a description of what broke.
fn check_case(
    dir: &Path,
    run: Step,
    before: &BTreeMap<PathBuf, Vec<u8>>,
    o: &Output,
) -> Result<(), String> {
    let err = stderr(o);
    let code = o.status.code();
    if err.contains("panicked") || code == Some(101) {
        return Err(format!("panic (exit {code:?})"));
    }
    if !matches!(code, Some(0..=3)) {
        return Err(format!("undocumented exit {code:?}"));
    }
    let after = tree(dir);
    let changed: Vec<&PathBuf> = before
        .keys()
        .chain(after.keys())
        .filter(|p| before.get(*p) != after.get(*p))
        .collect();
    let read_only = matches!(run, Step::Check | Step::DryRun) || code == Some(2);
    if read_only && !changed.is_empty() {
        return Err(format!("exit {code:?} but changed {changed:?}"));
    }
    match run {
        Step::Renc | Step::RencSsh => {
            let profile = std::fs::read(dir.join("profile.json")).unwrap_or_default();
            let rd = rekeyed_dir_of(&profile).map(|rd| dir.join(rd));
            for p in &changed {
                let inside = rd.as_ref().is_some_and(|rd| p.starts_with(rd));
                // Missing parents of rekeyedDir are made, as `mkdir -p` would.
                let new_parent = rd.as_ref().is_some_and(|rd| rd.starts_with(p))
                    && !before.contains_key(*p)
                    && after.get(*p).is_some_and(|v| v == b"<dir>");
                if !inside && !new_parent {
                    return Err(format!("renc changed {} outside rekeyedDir", p.display()));
                }
            }
            if let Some(rd) = rd {
                caches_true(&rd)?;
            }
        }
        Step::Edit => {
            let target = dir.join("secrets/api.age");
            if let Some(p) = changed.iter().find(|p| **p != &target) {
                return Err(format!("edit changed {}", p.display()));
            }
            if code != Some(0) && !changed.is_empty() {
                return Err(format!(
                    "edit failed (exit {code:?}) but changed its target"
                ));
            }
        }
        Step::Check | Step::DryRun => {}
    }
    Ok(())
}

/// Every cache entry under `rd` describes a regular file with its sha256.
fn caches_true(rd: &Path) -> Result<(), String> {
    let Ok(hosts) = std::fs::read_dir(rd) else {
        return Ok(());
    };
    for h in hosts.flatten() {
        let cache = h.path().join(".nixseal-rekey.json");
        if !std::fs::symlink_metadata(&cache).is_ok_and(|m| m.is_file()) {
            continue;
        }
        let Ok(json) = serde_json::from_slice::<serde_json::Value>(&std::fs::read(&cache).unwrap())
        else {
            continue; // a cache nixseal did not write (e.g. the mutated one, after exit 2)
        };
        let Some(outputs) = json["outputs"].as_object() else {
            continue;
        };
        for (secret, entry) in outputs {
            let out = h.path().join(format!("{secret}.age"));
            let bytes = std::fs::read(&out)
                .map_err(|e| format!("{} lists {secret}: {e}", cache.display()))?;
            if Some(sha256_hex(&bytes).as_str()) != entry["outputSha256"].as_str() {
                return Err(format!(
                    "{} does not match {}",
                    out.display(),
                    cache.display()
                ));
            }
        }
    }
    Ok(())
}

/// Runs `cases` mutations of the file `target` (relative to the fleet root)
/// from `seed`, each with a command `pick`ed for it.
fn fuzz(name: &str, target: &str, default_cases: usize, default_seed: u64, pick: &[Step]) {
    let t = template();
    let base = std::fs::read(t.path(target)).unwrap();
    let cases = mutate::cases(default_cases);
    let seed = mutate::seed(default_seed);
    let mut rng = Rng::new(seed);
    let mut codes: BTreeMap<i32, usize> = BTreeMap::new();
    for i in 0..cases {
        let input = mutate::mutate(&mut rng, &base);
        let run = *rng.pick(pick);
        let work = copy_fleet(&t.root);
        let fleet = work.path().join("fleet");
        std::fs::write(fleet.join(target), &input).unwrap();
        let before = tree(&fleet);
        let o = execute(&fleet, run);
        *codes.entry(o.status.code().unwrap_or(-1)).or_default() += 1;
        if let Err(why) = check_case(&fleet, run, &before, &o) {
            let kept = work.keep();
            panic!(
                "fuzz {name}: case {i} (NIXSEAL_FUZZ_SEED={seed} NIXSEAL_FUZZ_CASES={}) {run:?} on mutated {target}: {why}\nfleet kept at {}\nstderr:\n{}",
                i + 1,
                kept.display(),
                stderr(&o)
            );
        }
    }
    eprintln!("fuzz {name}: {cases} cases from seed {seed}, exit codes {codes:?}");
}

#[test]
fn fuzz_profile() {
    fuzz(
        "profile",
        "profile.json",
        60,
        0x5eed_0001,
        &[
            Step::Check,
            Step::DryRun,
            Step::Renc,
            Step::Renc,
            Step::Edit,
        ],
    );
}

#[test]
fn fuzz_rekey_cache() {
    fuzz(
        "cache",
        "secrets/rekeyed/web1/.nixseal-rekey.json",
        50,
        0x5eed_0002,
        &[Step::Check, Step::Renc, Step::Renc, Step::DryRun],
    );
}

#[test]
fn fuzz_master_ciphertexts() {
    fuzz(
        "master binary",
        "secrets/tls.age",
        30,
        0x5eed_0003,
        &[Step::Renc, Step::Check, Step::RencSsh],
    );
    fuzz(
        "master armored",
        "secrets/api.age",
        30,
        0x5eed_0004,
        &[Step::Renc, Step::Edit, Step::RencSsh],
    );
}

#[test]
fn fuzz_identity_files() {
    fuzz(
        "identity age",
        "keys/master.txt",
        40,
        0x5eed_0005,
        &[Step::Renc, Step::Edit],
    );
    fuzz(
        "identity ssh",
        "keys/master_ssh",
        40,
        0x5eed_0006,
        &[Step::RencSsh],
    );
}
