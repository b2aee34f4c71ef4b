//! Checks `nixseal::store_path` against a real Nix: `nix hash path`, `nix store
//! add-path --name`, `nix-store --add` and `builtins.path` must give exactly the NAR
//! hashes and store paths the library computes, for every kind of fixture.
//!
//! A contract with Nix (the NixOS module imports rekeyed files with
//! `builtins.path`): without `nix` on PATH these tests fail, never skip
//! (`scripts/setup` installs it).

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use nixseal::store_path::{added_store_path, nar_sha256, source_store_path, StorePath};

const NIX_CONFIG: &str =
    "experimental-features = nix-command flakes\nsandbox = false\nsubstituters =";

fn nix_available() -> bool {
    match Command::new("nix").arg("--version").output() {
        Ok(out) => out.status.success(),
        Err(_) => false,
    }
}

/// A contract test cannot pass without its other side.
fn skip(test: &str) -> ! {
    panic!("{test}: `nix` is not on PATH; install Nix (scripts/setup does) — this test never skips")
}

/// Runs a Nix command and returns its trimmed stdout; panics with stderr on failure.
fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .env("NIX_CONFIG", NIX_CONFIG)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn write(path: &Path, contents: &[u8], mode: u32) {
    fs::write(path, contents).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// Builds the fixtures; returns (fixture path, store name to add it under).
fn fixtures(root: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut add = |path: PathBuf, name: &str| out.push((path, name.to_owned()));

    let p = root.join("hello.txt");
    write(&p, b"hello", 0o644);
    add(p, "hello.txt");

    let p = root.join("script");
    write(&p, b"#!/bin/sh\necho hi\n", 0o755);
    add(p, "script");

    // Only the owner-execute bit makes a NAR file executable.
    let p = root.join("group-exec-only");
    write(&p, b"not executable for Nix", 0o654);
    add(p, "group-exec-only");

    let p = root.join("owner-exec-only");
    write(&p, b"executable for Nix", 0o700);
    add(p, "owner-exec-only");

    let p = root.join("empty");
    write(&p, b"", 0o644);
    add(p, "empty");

    // Larger than the 64 KiB read buffer and not a multiple of 8 bytes.
    let p = root.join("big.bin");
    let big: Vec<u8> = (0..200_003u32).map(|i| (i * 7 + i / 251) as u8).collect();
    write(&p, &big, 0o644);
    add(p, "big.bin");

    // Binary content with NUL bytes, as an age file has.
    let p = root.join("h1-db.age");
    write(&p, b"age-encryption.org/v1\n\0\x01\x02\xff-> X25519", 0o600);
    add(p.clone(), "h1-db.age");
    add(p, "A+b-c.d_e?f=g");

    let p = root.join("long-name-file");
    write(&p, b"x", 0o644);
    add(p, &"n".repeat(211));

    // A symlink at the top is stored as a symlink, not followed.
    let p = root.join("top-link");
    symlink("hello.txt", &p).unwrap();
    add(p, "top-link");

    let p = root.join("empty-dir");
    fs::create_dir(&p).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    add(p, "empty-dir");

    let tree = root.join("tree");
    fs::create_dir_all(tree.join("sub/deeper")).unwrap();
    fs::create_dir(tree.join("sub/empty")).unwrap();
    fs::create_dir(tree.join("B")).unwrap();
    write(&tree.join("a"), b"a\n", 0o644);
    write(&tree.join("b"), b"bb\n", 0o755);
    write(&tree.join("B/inside"), b"", 0o644);
    write(&tree.join("with space"), b"space", 0o644);
    write(&tree.join("ünïcödé"), "ü".as_bytes(), 0o644);
    write(&tree.join(".dotfile"), b"dot", 0o644);
    write(&tree.join("-dash"), b"dash", 0o644);
    write(&tree.join("a.b"), b"sorts after a", 0o644);
    write(&tree.join("sub/deeper/file"), b"deep\n", 0o640);
    symlink("../a", tree.join("sub/rel-link")).unwrap();
    symlink("/nonexistent/dangling", tree.join("sub/abs-link")).unwrap();
    symlink("deeper", tree.join("sub/dir-link")).unwrap();
    add(tree, "tree");

    out
}

#[test]
fn store_paths_match_real_nix() {
    if !nix_available() {
        skip("store_paths_match_real_nix");
    }
    let dir = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for (path, name) in fixtures(dir.path()) {
        let p = path.to_str().unwrap();
        let ours = nar_sha256(&path).unwrap();

        let sri = run("nix", &["hash", "path", p]);
        assert_eq!(ours.to_sri(), sri, "nix hash path {p}");
        let base32 = run("nix", &["hash", "path", "--base32", p]);
        assert_eq!(ours.to_nix_base32(), base32, "nix hash path --base32 {p}");
        let base16 = run("nix", &["hash", "path", "--base16", p]);
        assert_eq!(ours.to_hex(), base16, "nix hash path --base16 {p}");

        let expected = source_store_path(&path, &name).unwrap();
        assert_eq!(expected, StorePath::source(&ours, &name).unwrap());
        let added = run("nix", &["store", "add-path", "--name", &name, p]);
        assert_eq!(
            expected.to_string(),
            added,
            "nix store add-path --name {name} {p}"
        );

        // What the NixOS module does with a rekeyed file.
        let expr = format!(
            "builtins.path {{ path = {}; name = {}; }}",
            nix_string(p),
            nix_string(&name)
        );
        let evaluated = run("nix", &["eval", "--impure", "--raw", "--expr", &expr]);
        assert_eq!(expected.to_string(), evaluated, "{expr}");

        // The store holds exactly what we hashed.
        let info = run("nix", &["path-info", "--json", &added]);
        assert!(
            info.contains(&format!("\"narHash\":\"{}\"", ours.to_sri())),
            "nix path-info {added}: {info}"
        );

        // `nix-store --add` names the path after the file.
        let by_basename = run("nix-store", &["--add", p]);
        assert_eq!(
            added_store_path(&path).unwrap().to_string(),
            by_basename,
            "nix-store --add {p}"
        );
        checked += 1;
    }
    assert_eq!(checked, 12);
}

/// Nix rejects names the library rejects: the validation is not stricter than needed
/// for characters and length (leading periods are rejected on purpose, see the docs).
#[test]
fn nix_rejects_names_the_library_rejects() {
    if !nix_available() {
        skip("nix_rejects_names_the_library_rejects");
    }
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f");
    write(&p, b"x", 0o644);
    for bad in ["", "a b", "x~y", "é", &"n".repeat(212)] {
        assert!(
            source_store_path(&p, bad).is_err(),
            "library accepted {bad:?}"
        );
        let out = Command::new("nix")
            .args(["store", "add-path", "--name", bad, p.to_str().unwrap()])
            .env("NIX_CONFIG", NIX_CONFIG)
            .output()
            .unwrap();
        assert!(!out.status.success(), "nix accepted store name {bad:?}");
    }
}

/// A Nix string literal for `s` (paths here hold no `"`, `\` or `${`).
fn nix_string(s: &str) -> String {
    assert!(!s.contains(['"', '\\', '$']), "{s}");
    format!("\"{s}\"")
}
