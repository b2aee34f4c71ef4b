//! Per-wrap cost of `nixseal::identity::fast_recipient::FastRecipient`
//! against age's own `age::ssh::Recipient` (issue 15 point 1).
//!
//! `wrap-bench [N [M [ROUNDS]]]` makes M ssh-ed25519 host keys (in process,
//! as `ssh-keygen -t ed25519` would) and N random file keys, then for ROUNDS
//! rounds wraps every file key to every host key with each recipient in turn
//! (age first in even rounds, ours first in odd ones), on one thread, and
//! prints µs per wrap for both (median over rounds) and their ratio. Each
//! recipient is built once per host outside the timed loops, as renc holds
//! them. Before timing, one stanza per host from ours is opened with
//! `age::ssh::Identity`, so the figures are for stanzas that work.
//! Defaults: N = 50, M = 50, ROUNDS = 15.

use std::hint::black_box;
use std::time::Instant;

use age::secrecy::ExposeSecret;
use age::Recipient as _;
use age_core::format::FileKey;
use nixseal::identity::fast_recipient::FastRecipient;
use ssh_key::rand_core::{OsRng, RngCore};
use ssh_key::{Algorithm, LineEnding, PrivateKey};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let num = |i: usize, d: usize| {
        args.get(i).map_or(d, |s| {
            s.parse().expect("usage: wrap-bench [N [M [ROUNDS]]]")
        })
    };
    let (n, m, rounds) = (num(1, 50), num(2, 50), num(3, 15));
    assert!(
        n > 0 && m > 0 && rounds > 0,
        "N, M and ROUNDS must be positive"
    );

    let mut age_rs = Vec::with_capacity(m);
    let mut fast_rs = Vec::with_capacity(m);
    let mut ids = Vec::with_capacity(m);
    let t = Instant::now();
    for _ in 0..m {
        let key = PrivateKey::random(&mut OsRng, Algorithm::Ed25519).unwrap();
        let line = key.public_key().to_openssh().unwrap();
        age_rs.push(line.parse::<age::ssh::Recipient>().unwrap());
        fast_rs.push(FastRecipient::parse(&line).unwrap());
        let pem = key.to_openssh(LineEnding::LF).unwrap();
        ids.push(age::ssh::Identity::from_buffer(pem.as_bytes(), None).unwrap());
    }
    let setup = t.elapsed();
    let file_keys: Vec<[u8; 16]> = (0..n)
        .map(|_| {
            let mut k = [0; 16];
            OsRng.fill_bytes(&mut k);
            k
        })
        .collect();

    // The stanzas being timed are real ones.
    for ((r, id), fk) in fast_rs.iter().zip(&ids).zip(file_keys.iter().cycle()) {
        let (stanzas, _) = r.wrap_file_key(&FileKey::new(Box::new(*fk))).unwrap();
        let got = age::Identity::unwrap_stanza(id, &stanzas[0])
            .expect("age recognises the stanza")
            .expect("age opens the stanza");
        assert_eq!(got.expose_secret(), fk, "age unwraps the file key");
    }

    let time = |wrap: &dyn Fn(usize, &FileKey)| {
        let t = Instant::now();
        for fk in &file_keys {
            let fk = FileKey::new(Box::new(*fk));
            for h in 0..m {
                wrap(h, &fk);
            }
        }
        t.elapsed().as_secs_f64() * 1e6 / (n * m) as f64
    };
    let age_wrap = |h: usize, fk: &FileKey| {
        black_box(age_rs[h].wrap_file_key(fk).unwrap());
    };
    let fast_wrap = |h: usize, fk: &FileKey| {
        black_box(fast_rs[h].wrap_file_key(fk).unwrap());
    };
    // One untimed round each, to warm caches and the allocator.
    time(&age_wrap);
    time(&fast_wrap);
    let (mut age_us, mut fast_us, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let (a, f) = if round % 2 == 0 {
            let a = time(&age_wrap);
            (a, time(&fast_wrap))
        } else {
            let f = time(&fast_wrap);
            (time(&age_wrap), f)
        };
        age_us.push(a);
        fast_us.push(f);
        ratios.push(f / a);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (a, f, r) = (
        median(&mut age_us),
        median(&mut fast_us),
        median(&mut ratios),
    );
    println!(
        "{n} file keys x {m} host keys, {rounds} interleaved rounds, one thread (setup of {m} keys: {:.1} ms)",
        setup.as_secs_f64() * 1e3
    );
    println!(
        "age::ssh::Recipient  {a:8.2} us/wrap (median; min {:.2}, max {:.2})",
        age_us[0],
        age_us[age_us.len() - 1]
    );
    println!(
        "FastRecipient        {f:8.2} us/wrap (median; min {:.2}, max {:.2})",
        fast_us[0],
        fast_us[fast_us.len() - 1]
    );
    println!(
        "ratio fast/age       {r:8.3}   (median of per-round ratios; min {:.3}, max {:.3})",
        ratios[0],
        ratios[ratios.len() - 1]
    );
}
