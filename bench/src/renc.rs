//! Fleet generator and the bare age-crate baseline for `bench/renc.sh`.
//!
//! `renc-bench gen H S DIR` writes a fleet of H hosts × S secrets (64-byte
//! secrets, every host uses every secret) with a master X25519 key and a
//! profile. `renc-bench bare DIR [--serial]` does the same crypto renc does —
//! decrypt each master secret once, encrypt it to every host key — with the
//! age crate and no file output, and prints the seconds it took.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("gen") => {
            let h: usize = args[2].parse().expect("H");
            let s: usize = args[3].parse().expect("S");
            gen(h, s, Path::new(&args[4]));
        }
        Some("bare") => {
            let serial = args.iter().any(|a| a == "--serial");
            let write = args.iter().any(|a| a == "--write");
            let secs = bare(Path::new(&args[2]), serial, write);
            println!("{secs:.6}");
        }
        Some("change") => {
            // renc-bench change DIR: a new master ciphertext (new plaintext)
            // for secret s0000, so one secret's outputs are stale.
            let dir = Path::new(&args[2]);
            let text = std::fs::read_to_string(dir.join("master.txt")).unwrap();
            let identity: age::x25519::Identity = text.trim().parse().unwrap();
            let nonce = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos();
            let pt = format!("{nonce:064}");
            let ct =
                nixseal::crypto::encrypt(pt.as_bytes(), &[&identity.to_public()], false).unwrap();
            let path = dir.join("secrets/s0000.age");
            let tmp = dir.join("secrets/.s0000.age.new");
            std::fs::write(&tmp, ct).unwrap();
            std::fs::rename(tmp, path).unwrap();
        }
        Some("time") => {
            // renc-bench time DIR PREP -- CMD...: runs PREP (a shell command,
            // e.g. removing the outputs) untimed, then CMD timed, in DIR;
            // prints the wall seconds of CMD alone.
            let dir = Path::new(&args[2]);
            let prep = &args[3];
            let cmd = &args[5..];
            std::process::Command::new("sh")
                .args(["-c", prep])
                .current_dir(dir)
                .status()
                .unwrap();
            let t = Instant::now();
            let st = std::process::Command::new(&cmd[0])
                .args(&cmd[1..])
                .current_dir(dir)
                .stdout(std::process::Stdio::null())
                .status()
                .unwrap();
            let secs = t.elapsed().as_secs_f64();
            assert!(st.success(), "{cmd:?} failed");
            println!("{secs:.6}");
        }
        Some("floor") => println!("{:.6}", floor(Path::new(&args[2]))),
        Some("phases") => phases(
            Path::new(&args[2]),
            args.get(3).map_or(5, |n| n.parse().expect("N")),
        ),
        _ => {
            eprintln!("usage: renc-bench gen H S DIR | renc-bench bare DIR [--serial] [--write] | renc-bench change DIR | renc-bench time DIR PREP -- CMD... | renc-bench floor DIR | renc-bench phases DIR [N]");
            std::process::exit(2);
        }
    }
}

/// renc-bench floor DIR: the least a no-op that looks at every output can
/// cost here: one `lstat` (statat, by name in its host directory, as renc
/// does) of each file under DIR/rekeyed, host directories spread over the
/// same rayon pool, nothing else. Seconds.
fn floor(dir: &Path) -> f64 {
    let rekeyed = dir.join("rekeyed");
    let mut hosts: Vec<(PathBuf, Vec<PathBuf>)> = std::fs::read_dir(&rekeyed)
        .unwrap()
        .map(|e| {
            let d = e.unwrap().path();
            let names = std::fs::read_dir(&d)
                .unwrap()
                .map(|e| PathBuf::from(e.unwrap().file_name()))
                .collect();
            (d, names)
        })
        .collect();
    hosts.sort();
    let t = Instant::now();
    let n: usize = hosts
        .par_iter()
        .map(|(d, names)| {
            use rustix::fs::{Mode, OFlags};
            let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let fd = rustix::fs::open(d, flags, Mode::empty()).unwrap();
            names
                .iter()
                .filter(|n| {
                    rustix::fs::statat(&fd, n.as_path(), rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
                        .is_ok()
                })
                .count()
        })
        .sum();
    let secs = t.elapsed().as_secs_f64();
    assert!(n > 0, "nothing under {}", rekeyed.display());
    secs
}

/// renc-bench phases DIR [N]: where a no-op's time goes, in this process
/// (no process start): the best of N runs of each library step on the
/// fleet in DIR (its profile.json), in milliseconds.
fn phases(dir: &Path, n: usize) {
    use nixseal::profile::Profile;
    let best = |f: &mut dyn FnMut()| {
        (0..n)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64() * 1e3
            })
            .fold(f64::INFINITY, f64::min)
    };
    let path = dir.join("profile.json");
    let bytes = std::fs::read(&path).unwrap();
    let json =
        best(&mut || drop(serde_json::from_slice::<nixseal::profile::RawProfile>(&bytes).unwrap()));
    let value = best(&mut || drop(serde_json::from_slice::<serde_json::Value>(&bytes).unwrap()));
    let load = best(&mut || drop(Profile::load(&path, dir).unwrap()));
    let raw: nixseal::profile::RawProfile = serde_json::from_slice(&bytes).unwrap();
    let keys: Vec<&str> = raw
        .hosts
        .values()
        .filter_map(|h| h.host_pubkey.as_deref())
        .collect();
    let key_checks = best(&mut || {
        for k in &keys {
            drop(nixseal::identity::HostRecipient::parse(k).unwrap());
        }
    });
    let profile = Profile::load(&path, dir).unwrap();
    let plan = best(&mut || drop(nixseal::rekey::plan(&profile).unwrap()));
    let all = nixseal::rekey::Scope::all();
    let check = best(&mut || drop(nixseal::renc::check(&profile, &all).unwrap()));
    let opts = nixseal::renc::RencOptions {
        decrypt_with: &[],
        interaction: std::sync::Arc::new(nixseal::identity::NoInteraction),
        dry_run: false,
        scope: &all,
    };
    let renc =
        best(&mut || drop(nixseal::renc::renc(&profile, &opts, &nixseal::renc::NoEvents).unwrap()));
    println!(
        "profile JSON {json:.1} ms (as a Value {value:.1} ms), profile load {load:.1} ms ({} host keys checked in {key_checks:.1} ms on one thread), plan {plan:.1} ms, check (plan + git) {check:.1} ms, renc (library) {renc:.1} ms",
        keys.len()
    );
}

fn gen(hosts: usize, secrets: usize, dir: &Path) {
    std::fs::create_dir_all(dir.join("secrets")).unwrap();
    let master = age::x25519::Identity::generate();
    let mut f = std::fs::File::create(dir.join("master.txt")).unwrap();
    use age::secrecy::ExposeSecret;
    writeln!(f, "{}", master.to_string().expose_secret()).unwrap();
    let recipient = master.to_public();
    let mut secret_map = serde_json::Map::new();
    for i in 0..secrets {
        let pt: Vec<u8> = (0..64).map(|j| ((i * 31 + j * 7) % 251) as u8).collect();
        let ct = nixseal::crypto::encrypt(&pt, &[&recipient], false).unwrap();
        let name = format!("s{i:04}");
        std::fs::write(dir.join(format!("secrets/{name}.age")), ct).unwrap();
        secret_map.insert(
            name.clone(),
            serde_json::json!({ "file": format!("./secrets/{name}.age") }),
        );
    }
    let mut host_map = serde_json::Map::new();
    let mut rng = ssh_key::rand_core::OsRng;
    for i in 0..hosts {
        let key = ssh_key::PrivateKey::random(&mut rng, ssh_key::Algorithm::Ed25519).unwrap();
        let pubkey = key.public_key().to_openssh().unwrap();
        host_map.insert(
            format!("h{i:04}"),
            serde_json::json!({ "hostPubkey": pubkey, "secrets": secret_map }),
        );
    }
    let profile = serde_json::json!({
        "version": 1,
        "identities": ["./master.txt"],
        "rekeyedDir": "./rekeyed",
        "hosts": host_map,
    });
    std::fs::write(dir.join("profile.json"), profile.to_string()).unwrap();
}

/// The crypto renc does, with the age crate; with `write`, each ciphertext is
/// also written to `DIR/bare-out/<host>/<secret>.age` with a plain
/// create+write (the same number of files as renc, without its atomicity).
fn bare(dir: &Path, serial: bool, write: bool) -> f64 {
    let profile: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("profile.json")).unwrap()).unwrap();
    let hosts: Vec<age::ssh::Recipient> = profile["hosts"]
        .as_object()
        .unwrap()
        .values()
        .map(|h| h["hostPubkey"].as_str().unwrap().parse().unwrap())
        .collect();
    let first = profile["hosts"]
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap();
    let sources: Vec<PathBuf> = first["secrets"]
        .as_object()
        .unwrap()
        .values()
        .map(|s| dir.join(s["file"].as_str().unwrap()))
        .collect();
    let text = std::fs::read_to_string(dir.join("master.txt")).unwrap();
    let identity: age::x25519::Identity = text.trim().parse().unwrap();

    let out = dir.join("bare-out");
    let _ = std::fs::remove_dir_all(&out);
    let t = Instant::now();
    if write {
        for h in 0..hosts.len() {
            std::fs::create_dir_all(out.join(format!("h{h:04}"))).unwrap();
        }
    }
    // Decrypt each master secret once (reading the ciphertexts is part of it).
    let plaintexts: Vec<_> = sources
        .iter()
        .map(|p| nixseal::crypto::decrypt(&std::fs::read(p).unwrap(), &[&identity]).unwrap())
        .collect();
    let pairs: Vec<(usize, usize)> = (0..hosts.len())
        .flat_map(|h| (0..plaintexts.len()).map(move |s| (h, s)))
        .collect();
    let encrypt = |&(h, s): &(usize, usize)| {
        let ct = nixseal::crypto::encrypt(&plaintexts[s], &[&hosts[h]], false).unwrap();
        if write {
            std::fs::write(out.join(format!("h{h:04}/s{s:04}.age")), &ct).unwrap();
        }
        ct.len()
    };
    let total: usize = if serial {
        pairs.iter().map(encrypt).sum()
    } else {
        pairs.par_iter().map(encrypt).sum()
    };
    let secs = t.elapsed().as_secs_f64();
    assert!(total > 0);
    let _ = std::fs::remove_dir_all(&out);
    secs
}
