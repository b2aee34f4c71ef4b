//! Benchmark (figures printed, not asserted): `nixseal deploy` of 1000 small
//! secrets against a bare loop that only decrypts the same 1000 files with
//! the age crate.
//!
//! Run as root: `bash bench/deploy.sh` (= `cargo bench -p nixseal-cli --bench deploy`)
//! (`NIXSEAL_BENCH_SECRETS` and `NIXSEAL_BENCH_RUNS` override 1000 and 7).
//! Everything happens in a private mount namespace on a fresh ramfs.

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::str::FromStr;
use std::time::{Duration, Instant};

use rayon::prelude::*;
use serde_json::json;

#[path = "../tests/support/namespace.rs"]
mod namespace;

const BIN: &str = env!("CARGO_BIN_EXE_nixseal");

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs bench
    // targets without it, where a minutes-long debug-build benchmark would
    // only slow the test suite down.
    if !std::env::args().any(|a| a == "--bench") {
        println!("bench/deploy.rs: run with `cargo bench -p nixseal-cli --bench deploy` (as root)");
        return;
    }
    let n = env_or("NIXSEAL_BENCH_SECRETS", 1000);
    let runs = env_or("NIXSEAL_BENCH_RUNS", 7);
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "the deploy benchmark mounts a ramfs: run it as root"
    );
    namespace::enter_private_mount_namespace();

    let dir = tempfile::Builder::new()
        .prefix("nxs-bench-")
        .tempdir_in("/tmp")
        .unwrap();
    let d = dir.path();
    let key = d.join("host_key");
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(st.success());
    let pubkey = std::fs::read_to_string(d.join("host_key.pub")).unwrap();
    let two: Vec<&str> = pubkey.split_whitespace().take(2).collect();
    let recipient = age::ssh::Recipient::from_str(&two.join(" ")).unwrap();

    // 1000 small secrets (16–80 bytes), encrypted like `nixseal renc` does.
    std::fs::create_dir(d.join("src")).unwrap();
    let sources: Vec<String> = (0..n)
        .into_par_iter()
        .map(|i| {
            let content = format!("secret-{i:05}-{}", "p".repeat(i % 64));
            let enc =
                age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))
                    .unwrap();
            let mut out = Vec::new();
            let mut w = enc.wrap_output(&mut out).unwrap();
            w.write_all(content.as_bytes()).unwrap();
            w.finish().unwrap();
            let p = d.join(format!("src/s{i:05}.age"));
            std::fs::write(&p, out).unwrap();
            p.to_str().unwrap().to_owned()
        })
        .collect();

    let manifest = |mp: &str, link: &str| {
        let secrets: Vec<_> = sources
            .iter()
            .enumerate()
            .map(|(i, src)| {
                let name = format!("s{i:05}");
                json!({"name": name, "source": src, "owner": "root", "group": "root",
                       "mode": "0400", "path": format!("{link}/{name}"), "symlink": true,
                       "restartUnits": [format!("u{}.service", i % 10)], "reloadUnits": [],
                       "neededForUsers": false})
            })
            .collect();
        let v = json!({"version": 1, "hostKeys": [{"path": key, "type": "ed25519"}],
                       "mountPoint": mp, "symlink": link, "keepGenerations": 1,
                       "secrets": secrets, "templates": []});
        let p = d.join(format!("manifest-{}.json", mp.replace('/', "_")));
        std::fs::write(&p, serde_json::to_vec(&v).unwrap()).unwrap();
        p
    };

    // Bare loop: read each file and decrypt it with the age crate, one thread.
    let key_text = std::fs::read(&key).unwrap();
    let identity = age::ssh::Identity::from_buffer(&key_text[..], None).unwrap();
    // The same loop with nixseal's host identity (per-key work done once):
    // shows what `deploy` gains in the cryptography alone.
    let host_identity = nixseal::activate::load_host_key(&key).unwrap();
    let read_and_decrypt = |id: &dyn age::Identity, src: &String| {
        let ct = std::fs::read(src).unwrap();
        let dec = age::Decryptor::new_buffered(&ct[..]).unwrap();
        let mut r = dec.decrypt(std::iter::once(id)).unwrap();
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert!(out.starts_with(b"secret-"));
    };
    let bare_once = || {
        let t = Instant::now();
        sources.iter().for_each(|s| read_and_decrypt(&identity, s));
        t.elapsed()
    };
    let par_once = |id: &(dyn age::Identity + Sync)| {
        let t = Instant::now();
        sources.par_iter().for_each(|s| read_and_decrypt(id, s));
        t.elapsed()
    };
    let deploy = |m: &Path| {
        let t = Instant::now();
        let out = Command::new(BIN)
            .args(["deploy", "--no-restart", "--manifest"])
            .arg(m)
            .output()
            .unwrap();
        let e = t.elapsed();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        e
    };
    let dry = |m: &Path| {
        let t = Instant::now();
        let st = Command::new(BIN)
            .args(["deploy", "--dry-run", "--manifest"])
            .arg(m)
            .output()
            .unwrap();
        assert!(st.status.success());
        t.elapsed()
    };
    let manifests: Vec<_> = (0..runs)
        .map(|r| {
            let mp = d.join(format!("run{r}/nixseal.d"));
            let link = d.join(format!("run{r}/nixseal"));
            manifest(mp.to_str().unwrap(), link.to_str().unwrap())
        })
        .collect();

    // Interleaved rounds, so that load from other processes on the machine
    // hits every variant alike. Per round: the bare loops; a first deploy on a
    // fresh mount point (mount + every secret new); a no-change redeploy of
    // the same manifest (new generation compared with the previous one, one
    // pruned); a dry run.
    bare_once(); // warm the page cache
    let (mut bare, mut bare_par, mut host_par, mut first, mut again, mut dry_v) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for m in &manifests {
        bare.push(bare_once());
        bare_par.push(par_once(&identity));
        host_par.push(par_once(&host_identity));
        first.push(deploy(m));
        again.push(deploy(m));
        dry_v.push(dry(m));
    }

    for r in 0..runs {
        let p = d.join(format!("run{r}/nixseal.d"));
        let _ = nix::mount::umount2(&p, nix::mount::MntFlags::MNT_DETACH);
    }

    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    println!("nixseal deploy benchmark: {n} secrets, {runs} interleaved rounds, {cores} cores");
    println!("  (median / min in ms)");
    let row = |label: &str, v: &[Duration]| {
        println!(
            "  {label:<44} {:>7.1} / {:>7.1}",
            median(v.to_vec()).as_secs_f64() * 1000.0,
            v.iter().min().unwrap().as_secs_f64() * 1000.0
        );
    };
    row("bare age loop, 1 thread (read + decrypt)", &bare);
    row(
        &format!("bare age loop, rayon on {cores} threads"),
        &bare_par,
    );
    row(
        &format!("same with nixseal's HostIdentity, {cores} threads"),
        &host_par,
    );
    row("nixseal deploy, first (mount + install)", &first);
    row("nixseal deploy, no-change redeploy", &again);
    row("nixseal deploy --dry-run", &dry_v);
    let ratio = |a: &[Duration], b: &[Duration]| {
        (
            median(a.to_vec()).as_secs_f64() / median(b.to_vec()).as_secs_f64(),
            a.iter().min().unwrap().as_secs_f64() / b.iter().min().unwrap().as_secs_f64(),
        )
    };
    let (m1, n1) = ratio(&first, &bare);
    let (m2, n2) = ratio(&again, &bare);
    println!(
        "  ratio first deploy / bare loop (median, min):  {m1:.2}x, {n1:.2}x  (target <= 1.3x)"
    );
    println!("  ratio redeploy / bare loop (median, min):      {m2:.2}x, {n2:.2}x");
    let (m3, n3) = ratio(&first, &bare_par);
    println!(
        "  ratio first deploy / bare loop on {cores} threads (median, min): {m3:.2}x, {n3:.2}x"
    );
    println!(
        "  first deploy, min: {} (target <= 100 ms on 2 idle cores)",
        ms(*first.iter().min().unwrap())
    );
}
