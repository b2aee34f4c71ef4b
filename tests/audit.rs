//! `nixseal audit` on systems built by a real Nix (offline, from a fixture
//! flake whose secrets are real age files rekeyed by `nixseal renc`), with
//! the closure from the store (`nix-store`) and from a closureInfo directory
//! made the way nixpkgs' `closureInfo` makes it (`exportReferencesGraph`);
//! and on hostile store contents in a private store directory.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

const NIX_CONFIG: &str =
    "experimental-features = nix-command flakes\nsandbox = false\nsubstituters =\nwarn-dirty = false";

/// The fixture flake: three "systems" for host web1 built from plain
/// derivations, as a NixOS system is: a toplevel linking `etc` and the
/// nixseal manifest, which references web1's own rekeyed files imported one
/// by one with `builtins.path` (as the NixOS module does).
/// - `clean`: nothing else;
/// - `leaky`: etc/nix/registry.json names `${self}`, as
///   `nix.registry.self.flake = self;` makes it;
/// - `copy`: etc/x is a copy of db1's rekeyed file, as
///   `environment.etc."x".source = ./secrets/rekeyed/db1/db.age;` makes it.
///
/// `closure-<name>` is the closureInfo of each, built like nixpkgs' closureInfo.
const FLAKE: &str = r#"{
  outputs = { self }:
    let
      system = "x86_64-linux";
      sh = name: script: env: derivation ({
        inherit name system;
        builder = "/bin/sh";
        PATH = "/usr/bin:/bin";
        args = [ "-c" script ];
      } // env);
      own = s: builtins.path { path = self + "/secrets/rekeyed/web1/${s}.age"; name = "web1-${s}.age"; };
      manifest = sh "nixseal-manifest.json" ''printf '%s' "$json" > $out'' {
        json = builtins.toJSON {
          version = 1;
          secrets = map (s: { name = s; source = "${own s}"; }) [ "db" "api" "tls" ];
        };
      };
      etc = extra: env: sh "etc" ''
        mkdir -p $out/nix
        ln -s ${manifest} $out/nixseal-manifest.json
        ${extra}
      '' env;
      toplevel = name: e: sh "nixos-system-${name}" ''
        mkdir $out
        ln -s ${e} $out/etc
        ln -s ${manifest} $out/manifest
      '' { };
      registry = builtins.toJSON {
        version = 2;
        flakes = [ { from = { id = "self"; type = "indirect"; }; to = { type = "path"; path = "${self}"; }; } ];
      };
      closureInfo = root: derivation {
        name = "closure-info";
        inherit system;
        builder = "/bin/bash";
        __structuredAttrs = true;
        exportReferencesGraph.closure = [ root ];
        PATH = "/usr/bin:/bin";
        args = [ "-c" ''
          . "''${NIX_ATTRS_SH_FILE:-.attrs.sh}"
          json="''${NIX_ATTRS_JSON_FILE:-.attrs.json}"
          out=''${outputs[out]}
          mkdir "$out"
          jq -r '.closure[] | (.path, .narHash, (.narSize | tostring), "", (.references | length | tostring), .references[])' < "$json" > "$out/registration"
          jq -r '.closure[].path' < "$json" > "$out/store-paths"
        '' ];
      };
      systems = {
        clean = toplevel "web1" (etc "" { });
        leaky = toplevel "web1" (etc ''printf '%s' "$registry" > $out/nix/registry.json'' { inherit registry; });
        copy = toplevel "web1" (etc ''ln -s ${builtins.path { path = self + "/secrets/rekeyed/db1/db.age"; name = "x"; }} $out/x'' { });
      };
      # What the per-host flake check does (built with --impure, so that the
      # binary under test comes from NIXSEAL_BIN): no nix-store, no git, the
      # flake root and profile in the store, the closure from closureInfo.
      check = name: derivation {
        name = "nixseal-closure-web1-${name}";
        inherit system;
        builder = "/bin/sh";
        PATH = "/nonexistent";
        args = [ "-c" "${builtins.getEnv "NIXSEAL_BIN"} audit --profile ${self}/profile.json --root ${self} --host web1 --closure-info ${closureInfo systems.${name}} ${systems.${name}} && : > $out" ];
      };
    in {
      packages.${system} = systems // {
        closure-clean = closureInfo systems.clean;
        closure-leaky = closureInfo systems.leaky;
        closure-copy = closureInfo systems.copy;
        check-clean = check "clean";
        check-leaky = check "leaky";
      };
    };
}
"#;

fn nix(dir: &Path, args: &[&str]) -> Output {
    let o = Command::new(args[0])
        .args(&args[1..])
        .current_dir(dir)
        .env("NIX_CONFIG", NIX_CONFIG)
        .stdin(Stdio::null())
        .output()
        .expect("run nix");
    assert!(
        o.status.success(),
        "{args:?} failed\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// A fleet (web1: db, api, tls; db1: db) rekeyed by nixseal renc, in a git
/// repository with the fixture flake. The master identity is tracked too:
/// the bad practice the audit must catch when the source leaks.
struct Fixture {
    f: Fleet,
}

impl Fixture {
    fn new() -> Fixture {
        let f = Fleet::new();
        assert_code(&f.renc(), 0);
        std::fs::write(f.path("flake.nix"), FLAKE).unwrap();
        let git = |args: &[&str]| run_ok(Command::new("git").current_dir(f.dir.path()).args(args));
        git(&["init", "-q"]);
        git(&[
            "add",
            "flake.nix",
            "profile.json",
            "secrets",
            "keys/master.txt",
        ]);
        git(&[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t.invalid",
            "commit",
            "-qm",
            "fleet",
        ]);
        Fixture { f }
    }

    fn dir(&self) -> &Path {
        self.f.dir.path()
    }

    /// Builds `.#attr`; returns the store path (and leaves `result-attr`).
    fn build(&self, attr: &str) -> PathBuf {
        let link = format!("result-{attr}");
        nix(
            self.dir(),
            &[
                "nix",
                "build",
                "--no-write-lock-file",
                &format!(".#{attr}"),
                "-o",
                &link,
            ],
        );
        std::fs::read_link(self.dir().join(&link)).unwrap()
    }

    /// The flake's source as Nix copies it.
    fn nix_source(&self) -> PathBuf {
        let o = nix(
            self.dir(),
            &[
                "nix",
                "flake",
                "metadata",
                "--no-write-lock-file",
                "--json",
                ".",
            ],
        );
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        PathBuf::from(v["path"].as_str().unwrap())
    }

    fn requisites(&self, path: &Path) -> Vec<PathBuf> {
        let o = nix(self.dir(), &["nix-store", "-qR", path.to_str().unwrap()]);
        String::from_utf8(o.stdout)
            .unwrap()
            .lines()
            .map(PathBuf::from)
            .collect()
    }

    fn audit(&self, args: &[&str]) -> Output {
        let mut all = vec!["audit", "--profile", "profile.json", "--host", "web1"];
        all.extend_from_slice(args);
        self.f.run(&all)
    }
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}\n{}", stdout(o), stderr(o)))
}

fn finding<'a>(report: &'a Value, store_path: &Path) -> &'a Value {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["storePath"] == store_path.to_str().unwrap())
        .unwrap_or_else(|| panic!("no finding for {}: {report:#}", store_path.display()))
}

/// Every `holds` entry of a finding, flattened.
fn holdings(f: &Value) -> Vec<(String, Value)> {
    f["files"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|file| {
            file["holds"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| (file["path"].as_str().unwrap().to_owned(), h.clone()))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn chain(f: &Value) -> Vec<(String, Value)> {
    f["chain"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["storePath"].as_str().unwrap().to_owned(),
                l["via"].clone(),
            )
        })
        .collect()
}

fn named<'a>(paths: &'a [PathBuf], suffix: &str) -> &'a PathBuf {
    paths
        .iter()
        .find(|p| p.to_str().unwrap().ends_with(suffix))
        .unwrap_or_else(|| panic!("no *{suffix} in {paths:?}"))
}

/// Asserts what the leaky system's flake-source finding says, whichever way
/// the closure was read.
fn assert_leaky_source_finding(report: &Value, system: &Path, source: &Path, closure: &[PathBuf]) {
    assert_eq!(report["clean"], false);
    let f = finding(report, source);
    let copies = f["flakeCopies"].as_array().unwrap();
    assert_eq!(copies.len(), 1, "{f:#}");
    assert_eq!(copies[0]["exact"], true, "{f:#}");
    assert_eq!(
        copies[0]["rekeyedHosts"],
        serde_json::json!(["db1", "web1"])
    );
    let h = holdings(f);
    let has = |path: &str, kind: &str, check: &dyn Fn(&Value) -> bool| {
        h.iter()
            .any(|(p, v)| p == path && v["kind"] == kind && check(v))
    };
    // Every master ciphertext, with every host using it.
    assert!(
        has("secrets/db.age", "masterCiphertext", &|v| {
            v["file"] == "./secrets/db.age"
                && v["uses"]
                    == serde_json::json!([{"host":"db1","secret":"db"},{"host":"web1","secret":"db"}])
        }),
        "{f:#}"
    );
    assert!(
        has("secrets/api.age", "masterCiphertext", &|_| true),
        "{f:#}"
    );
    assert!(
        has("secrets/tls.age", "masterCiphertext", &|_| true),
        "{f:#}"
    );
    // The other host's rekeyed file and cache.
    assert!(
        has("secrets/rekeyed/db1/db.age", "rekeyedFile", &|v| {
            v["host"] == "db1" && v["secret"] == "db"
        }),
        "{f:#}"
    );
    assert!(
        has(
            "secrets/rekeyed/db1/.nixseal-rekey.json",
            "rekeyCache",
            &|v| v["host"] == "db1"
        ),
        "{f:#}"
    );
    assert!(
        has("keys/master.txt", "identity", &|v| v["file"]
            == "./keys/master.txt"),
        "{f:#}"
    );
    // web1's own files are not reported.
    assert!(
        !h.iter()
            .any(|(p, _)| p.starts_with("secrets/rekeyed/web1/")),
        "{f:#}"
    );
    // The chain: system -(etc)-> etc -(nix/registry.json)-> source.
    let etc = named(closure, "-etc");
    assert_eq!(
        chain(f),
        vec![
            (system.display().to_string(), Value::from("etc")),
            (etc.display().to_string(), Value::from("nix/registry.json")),
            (source.display().to_string(), Value::Null),
        ]
    );
    // Nothing else in the closure is a finding: web1's own files, the
    // manifest, etc and the toplevel are fine.
    assert_eq!(
        report["findings"].as_array().unwrap().len(),
        1,
        "{report:#}"
    );
}

#[test]
fn flake_source_in_a_system_is_named_with_its_secrets_and_referrer_chain() {
    let fx = Fixture::new();
    let system = fx.build("leaky");
    let closure = fx.requisites(&system);
    let source = fx.nix_source();
    assert!(
        closure.contains(&source),
        "the fixture must leak the source"
    );

    let o = fx.audit(&["--json", "result-leaky"]);
    assert_code(&o, 1);
    let report = json(&o);
    // The store path computed from the working tree is the one Nix made.
    assert_eq!(report["flakeSource"]["storePath"], source.to_str().unwrap());
    assert_eq!(report["flakeSource"]["basis"], "gitTrackedFiles");
    assert_eq!(report["closure"]["from"], "store");
    assert_eq!(report["closure"]["storePaths"], closure.len());
    assert_eq!(
        report["roots"],
        serde_json::json!([system.to_str().unwrap()])
    );
    assert_leaky_source_finding(&report, &system, &source, &closure);

    // The text names the path, the other host, the chain and the fix.
    let o = fx.audit(&["result-leaky"]);
    assert_code(&o, 1);
    let out = stdout(&o);
    for want in [
        &format!("LEAK {}", source.display()),
        "is your flake's source",
        "secrets/rekeyed/db1/db.age: rekeyed file of host db1 (secret db",
        "master ciphertext ./secrets/db.age (db on db1, db on web1)",
        "master identity ./keys/master.txt",
        "(nix/registry.json)",
        "nix.registry.nixpkgs.flake = inputs.nixpkgs",
        "lib.fileset",
    ] {
        assert!(out.contains(want), "want {want:?} in:\n{out}");
    }
}

#[test]
fn an_older_copy_of_the_flake_is_recognised_by_its_layout() {
    let mut fx = Fixture::new();
    let system = fx.build("leaky");
    let old_source = fx.nix_source();
    // Rotate db and commit: the working tree's source is another store path
    // now, and the old one in the system holds the old db ciphertexts.
    fx.f.set_secret("db", b"rotated", false);
    assert_code(&fx.f.renc(), 0);
    run_ok(
        Command::new("git")
            .current_dir(fx.dir())
            .args(["add", "secrets"]),
    );
    assert_ne!(fx.nix_source(), old_source);

    let o = fx.audit(&["--json", system.to_str().unwrap()]);
    assert_code(&o, 1);
    let report = json(&o);
    let f = finding(&report, &old_source);
    let copy = &f["flakeCopies"][0];
    assert_eq!(copy["exact"], false, "{f:#}");
    assert_eq!(copy["dir"], "");
    assert_eq!(copy["rekeyedHosts"], serde_json::json!(["db1", "web1"]));
    assert_eq!(
        copy["masterFiles"],
        serde_json::json!(["./secrets/api.age", "./secrets/db.age", "./secrets/tls.age"])
    );
    let h = holdings(f);
    // Unchanged files are still recognised by content; the rotated one is not
    // (it is named by the layout above).
    assert!(h
        .iter()
        .any(|(p, v)| p == "secrets/api.age" && v["kind"] == "masterCiphertext"));
    assert!(!h.iter().any(|(p, _)| p == "secrets/db.age"), "{f:#}");
    assert!(stdout(&fx.audit(&[system.to_str().unwrap()])).contains("holds a copy of your flake"));
}

#[test]
fn a_copy_of_another_hosts_rekeyed_file_is_found_by_content() {
    let fx = Fixture::new();
    let system = fx.build("copy");
    let closure = fx.requisites(&system);
    let copy = named(&closure, "-x");
    let o = fx.audit(&["--json", "result-copy"]);
    assert_code(&o, 1);
    let report = json(&o);
    assert_eq!(
        report["findings"].as_array().unwrap().len(),
        1,
        "{report:#}"
    );
    let f = finding(&report, copy);
    assert_eq!(f["flakeCopies"], serde_json::json!([]));
    let h = holdings(f);
    assert_eq!(h.len(), 1, "{f:#}");
    assert_eq!(h[0].0, "", "the store path itself is the copy");
    assert_eq!(h[0].1["kind"], "rekeyedFile");
    assert_eq!(h[0].1["host"], "db1");
    assert_eq!(h[0].1["secret"], "db");
    assert_eq!(h[0].1["file"], "./secrets/rekeyed/db1/db.age");
    let etc = named(&closure, "-etc");
    assert_eq!(
        chain(f),
        vec![
            (system.display().to_string(), Value::from("etc")),
            (etc.display().to_string(), Value::from("x")),
            (copy.display().to_string(), Value::Null),
        ]
    );
    let o = fx.audit(&["result-copy"]);
    let out = stdout(&o);
    assert!(out.contains(&format!("LEAK {}", copy.display())), "{out}");
    assert!(out.contains("rekeyed file of host db1 (secret db"), "{out}");
    assert!(out.contains("nixseal.secrets.<name>"), "{out}");
}

#[test]
fn the_same_system_without_those_is_clean() {
    let fx = Fixture::new();
    let system = fx.build("clean");
    let closure = fx.requisites(&system);
    // web1's own rekeyed files are in it, and allowed.
    assert!(closure
        .iter()
        .any(|p| p.to_str().unwrap().ends_with("-web1-db.age")));
    let o = fx.audit(&["--json", "result-clean"]);
    assert_code(&o, 0);
    let report = json(&o);
    assert_eq!(report["clean"], true);
    assert_eq!(report["complete"], true);
    assert_eq!(report["findings"], serde_json::json!([]));
    assert_eq!(report["notChecked"], serde_json::json!([]), "{report:#}");
    let o = fx.audit(&["result-clean"]);
    assert_code(&o, 0);
    assert_stdout_has(&o, "clean: no store path in web1's closure");
    // Audited as db1, web1's files are someone else's: the same system leaks.
    let o = fx.f.run(&[
        "audit",
        "--profile",
        "profile.json",
        "--host",
        "db1",
        "--json",
        "result-clean",
    ]);
    assert_code(&o, 1);
    let report = json(&o);
    let own = named(&closure, "-web1-db.age");
    let h = holdings(finding(&report, own));
    assert_eq!(h[0].1["kind"], "rekeyedFile");
    assert_eq!(h[0].1["host"], "web1");
}

/// Mode (b): the closure from a closureInfo directory and the flake root in
/// the store, as the per-host flake check runs it inside a build (no
/// nix-store, no git, no working tree).
#[test]
fn closure_info_mode_finds_the_same_and_passes_the_clean_system() {
    let fx = Fixture::new();
    let source = fx.nix_source();
    let root = source.to_str().unwrap();
    for (name, want) in [("leaky", 1), ("copy", 1), ("clean", 0)] {
        let system = fx.build(name);
        let info = fx.build(&format!("closure-{name}"));
        // The closureInfo made by exportReferencesGraph holds hashes and
        // references, in nixpkgs' format.
        let reg = std::fs::read_to_string(info.join("registration")).unwrap();
        assert!(reg.contains("sha256:"), "{reg}");
        let with_system = fx.audit(&[
            "--root",
            root,
            "--closure-info",
            info.to_str().unwrap(),
            "--json",
            system.to_str().unwrap(),
        ]);
        // Without SYSTEM the roots are the paths nothing refers to.
        let without = fx.audit(&[
            "--root",
            root,
            "--closure-info",
            info.to_str().unwrap(),
            "--json",
        ]);
        for o in [&with_system, &without] {
            assert_code(o, want);
            let report = json(o);
            assert_eq!(report["closure"]["from"], "closureInfo");
            assert_eq!(report["flakeSource"]["basis"], "store");
            assert_eq!(report["flakeSource"]["storePath"], root);
            assert_eq!(
                report["roots"],
                serde_json::json!([system.to_str().unwrap()])
            );
            if name == "leaky" {
                let closure = fx.requisites(&system);
                assert_leaky_source_finding(&report, &system, &source, &closure);
            }
            if name == "copy" {
                let closure = fx.requisites(&system);
                let h = holdings(finding(&report, named(&closure, "-x")));
                assert_eq!(h[0].1["host"], "db1");
            }
        }
    }
}

/// The per-host flake check's way: `nixseal audit` inside a Nix build, with
/// neither nix-store nor git nor a working tree, fails the build on a leak
/// and prints the finding in the build log; passes the clean system.
#[test]
fn inside_a_nix_build_the_audit_fails_the_leaky_system_only() {
    let fx = Fixture::new();
    let build = |attr: &str| {
        Command::new("nix")
            .args([
                "build",
                "--impure",
                "-L",
                "--no-link",
                "--no-write-lock-file",
            ])
            .arg(format!(".#{attr}"))
            .current_dir(fx.dir())
            .env("NIX_CONFIG", NIX_CONFIG)
            .env("NIXSEAL_BIN", nixseal_bin())
            .output()
            .unwrap()
    };
    let o = build("check-clean");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = build("check-leaky");
    assert!(!o.status.success());
    let log = String::from_utf8_lossy(&o.stderr);
    let source = fx.nix_source();
    assert!(log.contains(&format!("LEAK {}", source.display())), "{log}");
    assert!(log.contains("is your flake's source"), "{log}");
    assert!(log.contains("rekeyed file of host db1"), "{log}");
}

/// The documented schema (docs/json.md) is the one written: the example
/// document there has exactly the keys of a real report, at every level, and
/// parses as the library's report type.
#[test]
fn json_output_matches_the_documented_schema() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/json.md"))
            .unwrap();
    let start = doc
        .find("```json\n")
        .expect("a ```json block in docs/json.md")
        + 8;
    let end = start + doc[start..].find("```").unwrap();
    let example: Value = serde_json::from_str(&doc[start..end]).expect("the example is JSON");
    let _: nixseal_report::Report =
        serde_json::from_value(example.clone()).expect("the example is a report");

    let fx = Fixture::new();
    fx.build("leaky");
    let report = json(&fx.audit(&["--json", "result-leaky"]));
    let _: nixseal_report::Report = serde_json::from_value(report.clone()).unwrap();
    assert_eq!(report["version"], 1);
    assert_same_keys(&example, &report, "$");
}

/// The library's types, as a user of the JSON would deserialise it.
mod nixseal_report {
    pub use nixseal::audit::Report;
}

fn assert_same_keys(doc: &Value, real: &Value, at: &str) {
    match (doc, real) {
        (Value::Object(d), Value::Object(r)) => {
            let dk: Vec<_> = d.keys().collect();
            let rk: Vec<_> = r.keys().collect();
            assert_eq!(dk, rk, "keys at {at}");
            for k in d.keys() {
                assert_same_keys(&d[k], &r[k], &format!("{at}.{k}"));
            }
        }
        (Value::Array(d), Value::Array(r)) => {
            // Objects of the same kind share keys: compare the first of each kind.
            if let (Some(dd), Some(rr)) = (d.first(), r.first()) {
                if dd.get("kind").is_none() {
                    assert_same_keys(dd, rr, &format!("{at}[0]"));
                }
            }
        }
        _ => {}
    }
}

// ---- hostile input, in a private store directory ----

/// A store directory of our own (NIX_STORE_DIR), with closureInfo files
/// written by hand.
struct FakeStore {
    dir: tempfile::TempDir,
    paths: Vec<(PathBuf, Vec<PathBuf>)>,
}

impl FakeStore {
    fn new() -> FakeStore {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("store")).unwrap();
        FakeStore {
            dir,
            paths: Vec::new(),
        }
    }

    fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// A store path name with a valid hash part.
    fn add(&mut self, n: usize, name: &str, refs: &[usize]) -> PathBuf {
        let hash = format!("{n:032}");
        let p = self.store().join(format!("{hash}-{name}"));
        let refs = refs.iter().map(|&r| self.paths[r].0.clone()).collect();
        self.paths.push((p.clone(), refs));
        p
    }

    fn closure_info(&self) -> PathBuf {
        let ci = self.dir.path().join("closure-info");
        std::fs::create_dir_all(&ci).unwrap();
        let mut sp = String::new();
        let mut reg = String::new();
        for (p, refs) in &self.paths {
            sp += &format!("{}\n", p.display());
            reg += &format!("{}\n\n{}\n", p.display(), refs.len());
            for r in refs {
                reg += &format!("{}\n", r.display());
            }
        }
        std::fs::write(ci.join("store-paths"), sp).unwrap();
        std::fs::write(ci.join("registration"), reg).unwrap();
        ci
    }
}

fn mkfifo(path: &Path) {
    run_ok(Command::new("mkfifo").arg(path));
}

/// Runs nixseal, killing it (and failing) if it takes longer than a minute:
/// a hostile closure must never make it hang.
fn run_bounded(mut cmd: Command) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let start = Instant::now();
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(o) => o.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            panic!("nixseal audit hung ({:?})", start.elapsed());
        }
    }
}

#[test]
fn hostile_store_contents_are_skipped_or_reported_never_followed_or_hung_on() {
    let f = Fleet::new();
    assert_code(&f.renc(), 0);
    let mut st = FakeStore::new();
    let outside = st.dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    // Outside the store: a FIFO and a copy of db1's rekeyed file. Following a
    // symlink to the first would hang, to the second would be a false finding.
    mkfifo(&outside.join("fifo"));
    std::fs::copy(f.output("db1", "db"), outside.join("db1-db.age")).unwrap();

    let hostile = st.add(1, "hostile", &[]);
    std::fs::create_dir_all(hostile.join("d")).unwrap();
    let link =
        |target: &Path, name: &str| std::os::unix::fs::symlink(target, hostile.join(name)).unwrap();
    link(&outside.join("fifo"), "d/fifo-link.age");
    link(&outside.join("db1-db.age"), "d/copy-link.age");
    link(Path::new("/dev/zero"), "d/zero.age");
    link(Path::new("../../../outside/db1-db.age"), "d/relative.age");
    link(Path::new("/etc/shadow"), "shadow");
    // Inside: a FIFO, a socket, a huge sparse file (named to be looked at,
    // and one with a size nothing known has).
    mkfifo(&hostile.join("d/pipe.age"));
    let _sock = std::os::unix::net::UnixListener::bind(hostile.join("sock")).unwrap();
    for name in ["huge.age", "huge"] {
        std::fs::File::create(hostile.join(name))
            .unwrap()
            .set_len(1 << 40)
            .unwrap();
    }
    // A real leak next to all that: db1's file in the store.
    let leak = st.add(2, "leak", &[]);
    std::fs::copy(f.output("db1", "db"), &leak).unwrap();
    let system = st.add(3, "nixos-system-web1", &[0, 1]);
    std::fs::create_dir(&system).unwrap();
    let ci = st.closure_info();

    let mut cmd = Command::new(nixseal_bin());
    // A trailing slash names the same store.
    cmd.current_dir(f.dir.path())
        .env("NIX_STORE_DIR", format!("{}/", st.store().display()))
        .args([
            "audit",
            "--profile",
            "profile.json",
            "--host",
            "web1",
            "--json",
            "--closure-info",
        ])
        .arg(&ci);
    let o = run_bounded(cmd);
    assert_code(&o, 1);
    let report = json(&o);
    // Only the real leak: nothing reached through a symlink.
    assert_eq!(
        report["findings"].as_array().unwrap().len(),
        1,
        "{report:#}"
    );
    let h = holdings(finding(&report, &leak));
    assert_eq!(h[0].1["host"], "db1");
    assert_eq!(
        chain(finding(&report, &leak)),
        vec![
            (system.display().to_string(), Value::Null),
            (leak.display().to_string(), Value::Null)
        ]
    );
    // Five symlinks out of the store (the relative one included), not followed.
    assert_eq!(report["closure"]["symlinksOutOfStore"], 5, "{report:#}");
    // The FIFO and the socket are listed as skipped, never opened.
    let skipped: Vec<(String, String)> = report["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["path"].as_str().unwrap().to_owned(),
                s["kind"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let mut want = vec![
        (
            hostile.join("d/pipe.age").display().to_string(),
            "FIFO".to_owned(),
        ),
        (
            hostile.join("sock").display().to_string(),
            "socket".to_owned(),
        ),
    ];
    let mut got = skipped.clone();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    assert_eq!(report["complete"], true, "{report:#}");
    // Both huge files were counted, neither read whole (the run is bounded).
    assert!(report["closure"]["files"].as_u64().unwrap() >= 2);
}

#[test]
fn unreadable_parts_make_the_audit_incomplete_and_are_named() {
    let f = Fleet::new();
    assert_code(&f.renc(), 0);
    let mut st = FakeStore::new();
    // A store path nobody may read (run as nobody: root reads everything),
    // one listed but missing.
    let locked = st.add(1, "locked", &[]);
    std::fs::create_dir_all(locked.join("inner")).unwrap();
    std::fs::write(locked.join("inner/f"), b"x").unwrap();
    let missing = st.add(2, "missing", &[]);
    let system = st.add(3, "nixos-system-web1", &[0, 1]);
    std::fs::create_dir(&system).unwrap();
    let ci = st.closure_info();
    // Everything else readable by nobody.
    for p in [st.dir.path(), f.dir.path()] {
        run_ok(Command::new("chmod").args(["-R", "a+rX"]).arg(p));
    }
    std::fs::set_permissions(
        locked.join("inner"),
        std::os::unix::fs::PermissionsExt::from_mode(0o000),
    )
    .unwrap();

    let audit = |extra: &[&str]| {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(nixseal_bin())
            .current_dir(f.dir.path())
            .env("NIX_STORE_DIR", st.store())
            .args([
                "audit",
                "--profile",
                "profile.json",
                "--host",
                "web1",
                "--closure-info",
            ])
            .arg(&ci)
            .args(extra);
        run_bounded(cmd)
    };
    let o = audit(&["--json"]);
    assert_code(&o, 3);
    let report = json(&o);
    assert_eq!(report["clean"], true);
    assert_eq!(report["complete"], false);
    let unreadable: Vec<&str> = report["unreadable"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["path"].as_str().unwrap())
        .collect();
    assert!(
        unreadable.contains(&locked.join("inner").to_str().unwrap()),
        "{report:#}"
    );
    assert!(
        unreadable.contains(&missing.to_str().unwrap()),
        "{report:#}"
    );
    let o = audit(&[]);
    assert_code(&o, 3);
    assert_stdout_has(&o, "incomplete: 2 entries");
    assert_stderr_has(
        &o,
        &format!("cannot read {}", locked.join("inner").display()),
    );
    let _ = system;
}

#[test]
fn bad_input_and_a_missing_nix_store_are_refused_clearly() {
    let f = Fleet::new();
    assert_code(&f.renc(), 0);
    let run = |args: &[&str], path: Option<&str>| {
        let mut all = vec!["audit", "--profile", "profile.json", "--host", "web1"];
        all.extend_from_slice(args);
        let mut cmd = Command::new(nixseal_bin());
        cmd.current_dir(f.dir.path())
            .args(&all)
            .stdin(Stdio::null());
        if let Some(p) = path {
            cmd.env("PATH", p);
        }
        cmd.output().unwrap()
    };
    // No SYSTEM.
    let o = run(&[], None);
    assert_code(&o, 2);
    assert_stderr_has(&o, "SYSTEM");
    // Not in the store.
    let o = run(&[f.dir.path().to_str().unwrap()], None);
    assert_code(&o, 2);
    assert_stderr_has(&o, "is not in the Nix store");
    let o = run(&["/nonexistent/result"], None);
    assert_code(&o, 2);
    assert_stderr_has(&o, "cannot resolve the system /nonexistent/result");
    // Bad host name.
    let o = f.run(&[
        "audit",
        "--profile",
        "profile.json",
        "--host",
        "../x",
        "/nix/store",
    ]);
    assert_code(&o, 2);
    // A real store path (one file, nothing secret): clean through nix-store,
    // and an environment error when nix-store is not installed.
    std::fs::write(f.path("plain"), b"nothing secret").unwrap();
    let added = nix(f.dir.path(), &["nix-store", "--add", "plain"]);
    let added = String::from_utf8(added.stdout).unwrap().trim().to_owned();
    let o = run(&[&added], None);
    assert_code(&o, 0);
    assert_stdout_has(&o, "(1 store paths, 1 files; closure from the store)");
    let o = run(&[&added], Some("/nonexistent"));
    assert_code(&o, 3);
    assert_stderr_has(&o, "cannot run nix-store");
    assert_stderr_has(&o, "--closure-info");
    // Hostile closureInfo: a line outside the store, named with its line.
    let ci = f.path("ci");
    std::fs::create_dir(&ci).unwrap();
    std::fs::write(ci.join("store-paths"), "/etc/shadow\n").unwrap();
    std::fs::write(ci.join("registration"), "/etc/shadow\n\n0\n").unwrap();
    let o = run(&["--closure-info", "ci"], None);
    assert_code(&o, 2);
    assert_stderr_has(&o, "ci/store-paths, line 1");
    assert_stderr_has(&o, "is not in the store /nix/store");
    // A directory that is not a closureInfo.
    let o = run(&["--closure-info", "secrets"], None);
    assert_code(&o, 2);
    assert_stderr_has(&o, "secrets/store-paths");
}
