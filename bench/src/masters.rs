//! `masters-bench bare DIR [--write]`: the bare age-crate loop that
//! `nixseal rekey-masters` is compared with — read each `DIR/secrets/*.age`,
//! decrypt it with `DIR/keys/a.txt`, encrypt it to the recipients in
//! `DIR/recipients.txt`, in one thread, no output (`--write`: plus a temp
//! file, fsync and rename next to it, the I/O a safe rewrite must do).
//! Prints the wall seconds.

use std::io::{Read, Write};
use std::path::Path;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 || args[1] != "bare" {
        eprintln!("usage: masters-bench bare DIR [--write]");
        std::process::exit(2);
    }
    let dir = Path::new(&args[2]);
    let write = args.get(3).map(String::as_str) == Some("--write");
    let t = Instant::now();
    let ids = age::IdentityFile::from_file(dir.join("keys/a.txt").to_string_lossy().into_owned())
        .unwrap()
        .into_identities()
        .unwrap();
    let recipients: Vec<age::x25519::Recipient> =
        std::fs::read_to_string(dir.join("recipients.txt"))
            .unwrap()
            .lines()
            .map(|l| l.parse().unwrap())
            .collect();
    let mut files: Vec<_> = std::fs::read_dir(dir.join("secrets"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "age"))
        .collect();
    files.sort();
    for f in &files {
        let ct = std::fs::read(f).unwrap();
        let d = age::Decryptor::new_buffered(&ct[..]).unwrap();
        let mut pt = Vec::new();
        d.decrypt(ids.iter().map(|i| i.as_ref() as &dyn age::Identity))
            .unwrap()
            .read_to_end(&mut pt)
            .unwrap();
        let e =
            age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
                .unwrap();
        let mut out = Vec::new();
        let mut w = e.wrap_output(&mut out).unwrap();
        w.write_all(&pt).unwrap();
        w.finish().unwrap();
        if write {
            let tmp = f.with_extension("bench-tmp");
            let mut file = std::fs::File::create(&tmp).unwrap();
            file.write_all(&out).unwrap();
            file.sync_all().unwrap();
            std::fs::rename(&tmp, f.with_extension("bench-out")).unwrap();
        }
    }
    println!("{:.6}", t.elapsed().as_secs_f64());
}
