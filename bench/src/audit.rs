//! Benchmark of `nixseal audit` (figures, not a test), for `bench/audit.sh`.
//!
//! `audit-bench gen DIR [PATHS FILES HOSTS SECRETS]` writes a synthetic store
//! (`DIR/store`, used through `NIX_STORE_DIR`) of PATHS store paths holding
//! FILES regular files in all (NixOS-like sizes, nested directories, over a
//! thousand `.age` files, huge sparse files) and a fifth as many symlinks, its closureInfo (`DIR/closure-info`: store-paths, registration),
//! and a fleet (`DIR/fleet`: profile, HOSTS × SECRETS rekeyed files with
//! caches, master files) whose secrets are planted in the store three times:
//! a copy of the flake, a copy of another host's rekeyed file, and an age
//! secrets tree. Files in the closure have sizes in the range of the secret
//! files, so many must be hashed.
//!
//! `audit-bench run DIR NIXSEAL [RUNS]` times the library's `audit` and the
//! `nixseal audit` binary on it (after one warm-up run each) and prints the
//! best and median wall time.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use nixseal::audit::{audit, AuditRequest, ClosureSpec};
use nixseal::profile::Profile;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let num = |i: usize, d: usize| args.get(i).map_or(d, |s| s.parse().expect("a number"));
    match args.get(1).map(String::as_str) {
        Some("gen") => gen(
            Path::new(&args[2]),
            num(3, 2000),
            num(4, 50_000),
            num(5, 20),
            num(6, 20),
        ),
        Some("run") => run(Path::new(&args[2]), Path::new(&args[3]), num(4, 7)),
        _ => {
            eprintln!("usage: audit-bench gen DIR [PATHS FILES HOSTS SECRETS] | audit-bench run DIR NIXSEAL [RUNS]");
            std::process::exit(2);
        }
    }
}

/// A small deterministic generator (xorshift), so runs are comparable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

const ALPHABET: &[u8] = b"0123456789abcdfghijklmnpqrsvwxyz";

fn store_name(rng: &mut Rng, name: &str) -> String {
    let hash: String = (0..32)
        .map(|_| ALPHABET[rng.below(32) as usize] as char)
        .collect();
    format!("{hash}-{name}")
}

/// An age-looking file (a real header line, random body) of about `size` bytes.
fn age_bytes(rng: &mut Rng, size: usize) -> Vec<u8> {
    let mut b = b"age-encryption.org/v1\n-> ssh-ed25519 abc\n".to_vec();
    let body = size.saturating_sub(b.len());
    b.extend(rng.bytes(body));
    b
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::File::create(path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
}

/// A file size as in a NixOS closure: mostly small, some large.
fn size(rng: &mut Rng) -> u64 {
    match rng.below(10) {
        0..=2 => rng.below(200),
        3..=7 => 150 + rng.below(3000),
        8 => 4096 + rng.below(60_000),
        _ => 64_000 + rng.below(1_000_000),
    }
}

fn gen(dir: &Path, paths: usize, files: usize, hosts: usize, secrets: usize) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let fleet = dir.join("fleet");
    let store = dir.join("store");
    std::fs::create_dir_all(&store).unwrap();

    // The fleet: master files and every host's rekeyed files and cache.
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKz7ImoUTnDGygVAnHosv8eMZLvLwcpu36+ZXNI5mTf1";
    let mut host_json = serde_json::Map::new();
    for h in 0..hosts {
        let mut s_json = serde_json::Map::new();
        for s in 0..secrets {
            let name = format!("s{s}");
            s_json.insert(
                name.clone(),
                serde_json::json!({ "file": format!("./secrets/{name}.age") }),
            );
            let n = 200 + rng.below(1800) as usize;
            write(
                &fleet.join(format!("secrets/rekeyed/h{h}/{name}.age")),
                &age_bytes(&mut rng, n),
            );
        }
        let n = 300 + rng.below(2000) as usize;
        let cache = rng.bytes(n);
        write(
            &fleet.join(format!("secrets/rekeyed/h{h}/.nixseal-rekey.json")),
            &cache,
        );
        host_json.insert(
            format!("h{h}"),
            serde_json::json!({ "hostPubkey": key, "secrets": s_json }),
        );
    }
    for s in 0..secrets {
        let n = 250 + rng.below(1800) as usize;
        write(
            &fleet.join(format!("secrets/s{s}.age")),
            &age_bytes(&mut rng, n),
        );
    }
    write(&fleet.join("flake.nix"), b"{ outputs = _: { }; }\n");
    let profile = serde_json::json!({
        "version": 1, "identities": [], "extraRecipients": [],
        "rekeyedDir": "./secrets/rekeyed", "hosts": host_json,
    });
    write(&fleet.join("profile.json"), profile.to_string().as_bytes());

    // The store: path 0 is the system; each path refers to a few later ones.
    let mut names: Vec<PathBuf> = (0..paths)
        .map(|i| store.join(store_name(&mut rng, &format!("p{i}"))))
        .collect();
    names[0] = store.join(store_name(&mut rng, "nixos-system-h0"));
    let mut refs: Vec<Vec<usize>> = vec![Vec::new(); paths];
    for (i, r) in refs.iter_mut().enumerate().take(paths - 1) {
        let k = if i == 0 {
            50
        } else {
            1 + rng.below(4) as usize
        };
        for _ in 0..k {
            let j = i + 1 + rng.below((paths - i - 1) as u64) as usize;
            if !r.contains(&j) {
                r.push(j);
            }
        }
    }
    // Every path must be reachable: the system refers to orphans too.
    let mut reached = vec![false; paths];
    reached[0] = true;
    for i in 0..paths {
        if reached[i] {
            for &j in &refs[i] {
                reached[j] = true;
            }
        }
    }
    let orphans: Vec<usize> = (1..paths).filter(|&j| !reached[j]).collect();
    refs[0].extend(orphans);

    let per_path = files / paths;
    let mut written = 0;
    for (i, p) in names.iter().enumerate() {
        std::fs::create_dir_all(p).unwrap();
        let n = if i + 1 == paths {
            files - written
        } else {
            per_path
        };
        for f in 0..n {
            let sub = match rng.below(4) {
                0 => String::new(),
                1 => "bin/".into(),
                2 => "share/doc/".into(),
                _ => format!("lib/d{}/", rng.below(5)),
            };
            let path = p.join(format!("{sub}f{f}"));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            if rng.below(5) == 0 {
                // A symlink next to it, into another path or out of the store.
                let target = if rng.below(4) == 0 {
                    PathBuf::from("/run/current-system/sw/bin/sh")
                } else {
                    names[rng.below(paths as u64) as usize].join("bin/x")
                };
                std::os::unix::fs::symlink(target, path.with_extension("link")).unwrap();
            }
            match rng.below(30) {
                0 => {
                    // An age-named file that is not a secret (its header is read).
                    let n = size(&mut rng) as usize;
                    write(&path.with_extension("age"), &rng.bytes(n.min(4096)));
                }
                1 if rng.below(50) == 0 => {
                    // Huge and sparse: one stat, never read.
                    std::fs::File::create(&path)
                        .unwrap()
                        .set_len(1 << 36)
                        .unwrap();
                }
                _ => {
                    let n = size(&mut rng);
                    if n > 64_000 {
                        let file = std::fs::File::create(&path).unwrap();
                        file.set_len(n).unwrap();
                    } else {
                        write(&path, &rng.bytes(n as usize));
                    }
                }
            }
            written += 1;
        }
    }
    // Planted leaks: a copy of the flake, another host's rekeyed file, an age tree.
    copy_tree(&fleet, &names[paths / 2].join("share/src"));
    std::fs::copy(
        fleet.join("secrets/rekeyed/h1/s0.age"),
        names[paths / 3].join("etc-x"),
    )
    .unwrap();
    for k in 0..3 {
        write(
            &names[paths / 4].join(format!("secrets/k{k}.age")),
            &age_bytes(&mut rng, 400),
        );
    }

    // closureInfo, in nixpkgs' format (fake NAR hashes and sizes).
    let ci = dir.join("closure-info");
    std::fs::create_dir_all(&ci).unwrap();
    let mut sp = String::new();
    let mut reg = String::new();
    for (i, p) in names.iter().enumerate() {
        sp += &format!("{}\n", p.display());
        let hash = nixseal::store_path::nix_base32_encode(&rng.bytes(32));
        reg += &format!(
            "{}\nsha256:{hash}\n1000\n\n{}\n",
            p.display(),
            refs[i].len()
        );
        for &r in &refs[i] {
            reg += &format!("{}\n", names[r].display());
        }
    }
    std::fs::write(ci.join("store-paths"), sp).unwrap();
    std::fs::write(ci.join("registration"), reg).unwrap();
    println!(
        "generated {} store paths, {} regular files, fleet {} hosts x {} secrets in {}",
        paths,
        written,
        hosts,
        secrets,
        dir.display()
    );
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let t = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &t);
        } else {
            std::fs::copy(e.path(), t).unwrap();
        }
    }
}

fn stats(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (v[0], v[v.len() / 2])
}

fn run(dir: &Path, nixseal: &Path, runs: usize) {
    let fleet = dir.join("fleet");
    let store = dir.join("store");
    let ci = dir.join("closure-info");
    let profile = Profile::load(&fleet.join("profile.json"), &fleet).expect("profile");
    let req = AuditRequest {
        profile: &profile,
        host: "h0",
        closure: ClosureSpec::ClosureInfo {
            dir: ci.clone(),
            system: None,
        },
        store_dir: store.clone(),
        heuristics: true,
    };
    let mut lib = Vec::new();
    let mut report = None;
    for i in 0..=runs {
        let t = Instant::now();
        let r = audit(&req).expect("audit");
        if i > 0 {
            lib.push(t.elapsed().as_secs_f64());
        }
        report = Some(r);
    }
    let r = report.unwrap();
    assert_eq!(
        r.findings.len(),
        3,
        "the three planted leaks: {:#?}",
        r.findings
    );
    let mut cli = Vec::new();
    for i in 0..=runs {
        let t = Instant::now();
        let o = std::process::Command::new(nixseal)
            .args(["audit", "--profile"])
            .arg(fleet.join("profile.json"))
            .arg("--root")
            .arg(&fleet)
            .args(["--host", "h0", "--json", "--closure-info"])
            .arg(&ci)
            .env("NIX_STORE_DIR", &store)
            .output()
            .unwrap();
        if i > 0 {
            cli.push(t.elapsed().as_secs_f64());
        }
        assert_eq!(
            o.status.code(),
            Some(1),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let (lb, lm) = stats(lib);
    let (cb, cm) = stats(cli);
    println!(
        "closure: {} store paths, {} regular files, {} symlinks out of the store; {} findings",
        r.closure.store_paths,
        r.closure.files,
        r.closure.symlinks_out_of_store,
        r.findings.len()
    );
    println!(
        "  library audit():      best {:7.1} ms, median {:7.1} ms ({runs} runs)",
        lb * 1e3,
        lm * 1e3
    );
    println!(
        "  nixseal audit --json: best {:7.1} ms, median {:7.1} ms ({runs} runs)",
        cb * 1e3,
        cm * 1e3
    );
}
