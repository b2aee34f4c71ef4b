//! Helper of `bench/peers.sh`: nixseal side by side with vaultix and with an
//! agenix(-rekey)-style loop of Go `age` processes, on the same fleet.
//!
//! - `peers-bench gen H S DIR KEYS` writes one fleet for every tool: a master
//!   X25519 identity (`master.txt`), S master secrets of 64 random bytes
//!   (`secrets/sNNNN.age`), H hosts with real ssh-ed25519 keys (private keys
//!   in KEYS, outside the flake, as on real hosts), nixseal's `profile.json`,
//!   one vaultix profile per host (`vaultix/hNNNN.json`, the JSON vaultix's
//!   flake module writes), a `flake.nix` (vaultix refuses to run without
//!   one) and `agenix-rekey.sh`, an unrolled per-pair rekey script shaped like
//!   the one agenix-rekey generates (decrypt | encrypt with two `age`
//!   processes per pair, temp dir + `mv`).
//! - `peers-bench time DIR LOG TIMEOUT -- CMD...` runs CMD in DIR (output to
//!   LOG) and prints its wall seconds, or `timeout` after TIMEOUT seconds
//!   (0: none).
//! - `peers-bench change SECRET DIR...` gives one secret a new plaintext
//!   and writes the same new master ciphertext into every fleet copy DIR.
//! - `peers-bench verify DIR KEYS TOOL...` decrypts every output of each TOOL
//!   (`named:SUBDIR`, outputs `SUBDIR/<host>/<secret>.age` as nixseal and the
//!   agenix loop write them, or `hashed:SUBDIR`, vaultix's
//!   `SUBDIR/<host>/<hash>`) with its host's key and compares it with the
//!   master secret; a few are also decrypted by Go `age`. Exit 1 on any
//!   mismatch, so a benchmark never compares tools doing different work.
//! - `peers-bench deploy-setup DIR KEYS OUT ROUNDS TAG...` writes, for a
//!   one-host fleet, per round: a nixseal manifest, a vaultix deploy profile
//!   per TAG (a vaultix build whose outputs are in `DIR/TAG-cache`) and an
//!   agenix-style activation script, each with its own mount point under OUT.
//! - `peers-bench check-deployed DIR LINK` checks that the directory LINK
//!   points to holds every secret of host h0000 with the right bytes, mode
//!   0400 and owner root.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use age::secrecy::ExposeSecret;
use rayon::prelude::*;
use serde_json::json;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let a = |i: usize| -> &str { args.get(i).map(String::as_str).unwrap_or_else(|| usage()) };
    match args.get(1).map(String::as_str) {
        Some("gen") => gen(
            a(2).parse().expect("H"),
            a(3).parse().expect("S"),
            Path::new(a(4)),
            Path::new(a(5)),
        ),
        Some("time") => {
            let sep = args
                .iter()
                .position(|x| x == "--")
                .unwrap_or_else(|| usage());
            if sep != 5 || args.len() < 7 {
                usage();
            }
            time(
                Path::new(a(2)),
                Path::new(a(3)),
                a(4).parse().expect("TIMEOUT"),
                &args[6..],
            )
        }
        Some("change") => change(a(2), &args[3..]),
        Some("verify") => {
            let tools: Vec<&str> = args[4..].iter().map(String::as_str).collect();
            if tools.is_empty() {
                usage();
            }
            verify(Path::new(a(2)), Path::new(a(3)), &tools)
        }
        Some("deploy-setup") => deploy_setup(
            Path::new(a(2)),
            Path::new(a(3)),
            Path::new(a(4)),
            a(5).parse().expect("ROUNDS"),
            &args[6..],
        ),
        Some("check-deployed") => check_deployed(Path::new(a(2)), Path::new(a(3))),
        _ => usage(),
    }
}

fn usage() -> ! {
    eprintln!(
        "usage: peers-bench gen H S DIR KEYS | time DIR LOG TIMEOUT -- CMD... | change SECRET DIR... \
         | verify DIR KEYS named:SUBDIR|hashed:SUBDIR... | deploy-setup DIR KEYS OUT ROUNDS TAG... \
         | check-deployed DIR LINK"
    );
    std::process::exit(2);
}

fn fail(msg: String) -> ! {
    eprintln!("peers-bench: {msg}");
    std::process::exit(1);
}

fn host_name(i: usize) -> String {
    format!("h{i:04}")
}

fn secret_name(i: usize) -> String {
    format!("s{i:04}")
}

/// 64 random bytes: every secret differs, so a decrypted output names the
/// secret it belongs to.
fn random_secret() -> Vec<u8> {
    let mut b = vec![0u8; 64];
    let mut f = std::fs::File::open("/dev/urandom").unwrap();
    std::io::Read::read_exact(&mut f, &mut b).unwrap();
    b
}

fn master_recipient(dir: &Path) -> age::x25519::Recipient {
    master_identity(dir).to_public()
}

fn master_identity(dir: &Path) -> age::x25519::Identity {
    let text = std::fs::read_to_string(dir.join("master.txt")).unwrap();
    text.trim().parse().unwrap()
}

/// `(name, ssh-ed25519 public key line)` of every host, from nixseal's profile.
fn hosts(dir: &Path) -> Vec<(String, String)> {
    let p: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("profile.json")).unwrap()).unwrap();
    p["hosts"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(n, h)| (n.clone(), h["hostPubkey"].as_str().unwrap().to_owned()))
        .collect()
}

/// Every secret's name and plaintext, decrypted from the master ciphertexts.
fn plaintexts(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let id = master_identity(dir);
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir.join("secrets")).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().into_string().unwrap();
        let Some(stem) = name.strip_suffix(".age") else {
            continue;
        };
        let pt = nixseal::crypto::decrypt(&std::fs::read(e.path()).unwrap(), &[&id])
            .unwrap_or_else(|e| fail(format!("master secret {name}: {e}")));
        out.insert(stem.to_owned(), pt.to_vec());
    }
    out
}

fn write_atomic(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("peers-tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn vaultix_secret(name: &str, file: &str, link: &str) -> serde_json::Value {
    json!({
        "id": name, "name": name, "file": file,
        "owner": "root", "group": "root", "mode": "0400",
        "path": format!("{link}/{name}"),
        "insert": {}, "cleanPlaceholder": false,
    })
}

/// The JSON vaultix's NixOS module writes for one host (`settings`, `secrets`,
/// `templates`, `beforeUserborn`, `placeholder`).
fn vaultix_profile(
    host: &str,
    pubkey: &str,
    key: &Path,
    cache: &str,
    mount: &str,
    link: &str,
    secrets: serde_json::Map<String, serde_json::Value>,
) -> serde_json::Value {
    json!({
        "settings": {
            "decryptedDir": link,
            "decryptedDirForUser": format!("{link}-for-user"),
            "decryptedMountPoint": mount,
            "hostIdentifier": host,
            "hostPubkey": pubkey,
            "hostKeys": [{ "path": key, "type": "ed25519" }],
            "cacheInStore": cache,
        },
        "secrets": secrets,
        "templates": {},
        "beforeUserborn": [],
        "placeholder": {},
    })
}

fn gen(h: usize, s: usize, dir: &Path, keys: &Path) {
    for d in ["secrets", "vaultix"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::create_dir_all(keys).unwrap();
    std::fs::write(
        dir.join("flake.nix"),
        "# benchmark fleet of bench/peers.sh; vaultix wants a flake root\n{ outputs = _: { }; }\n",
    )
    .unwrap();
    let master = age::x25519::Identity::generate();
    let mut f = std::fs::File::create(dir.join("master.txt")).unwrap();
    writeln!(f, "{}", master.to_string().expose_secret()).unwrap();
    let recipient = master.to_public();

    let names: Vec<String> = (0..s).map(secret_name).collect();
    names.par_iter().for_each(|name| {
        let ct = nixseal::crypto::encrypt(&random_secret(), &[&recipient], false).unwrap();
        std::fs::write(dir.join(format!("secrets/{name}.age")), ct).unwrap();
    });

    let host_keys: Vec<(String, String)> = (0..h)
        .into_par_iter()
        .map(|i| {
            let name = host_name(i);
            let mut rng = ssh_key::rand_core::OsRng;
            let key = ssh_key::PrivateKey::random(&mut rng, ssh_key::Algorithm::Ed25519).unwrap();
            let path = keys.join(&name);
            std::fs::write(
                &path,
                key.to_openssh(ssh_key::LineEnding::LF).unwrap().as_bytes(),
            )
            .unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            (name, key.public_key().to_openssh().unwrap())
        })
        .collect();

    let mut nixseal_secrets = serde_json::Map::new();
    let mut vaultix_secrets = serde_json::Map::new();
    for name in &names {
        let file = format!("./secrets/{name}.age");
        nixseal_secrets.insert(name.clone(), json!({ "file": file }));
        vaultix_secrets.insert(name.clone(), vaultix_secret(name, &file, "/run/vaultix"));
    }
    let mut host_map = serde_json::Map::new();
    let mut agenix = String::from(AGENIX_REKEY_HEAD);
    for (name, pubkey) in &host_keys {
        host_map.insert(
            name.clone(),
            json!({ "hostPubkey": pubkey, "secrets": nixseal_secrets }),
        );
        let v = vaultix_profile(
            name,
            pubkey,
            &keys.join(name),
            &format!("./vaultix-cache/{name}"),
            "/run/vaultix.d",
            "/run/vaultix",
            vaultix_secrets.clone(),
        );
        std::fs::write(dir.join(format!("vaultix/{name}.json")), v.to_string()).unwrap();
        for s in &names {
            let out = format!("agenix-out/{name}/{s}.age");
            writeln!(
                agenix,
                "if [[ -e {out} ]]; then echo 'skip {name}:{s}'; else echo 'rekey {name}:{s}'; \
                 reencrypt {out} ./secrets/{s}.age {} || fail {name}:{s}; fi",
                sh_quote(pubkey)
            )
            .unwrap();
        }
    }
    agenix.push_str("exit \"$failed\"\n");
    std::fs::write(dir.join("agenix-rekey.sh"), agenix).unwrap();
    let profile = json!({
        "version": 1,
        "identities": ["./master.txt"],
        "rekeyedDir": "./rekeyed",
        "hosts": host_map,
    });
    std::fs::write(dir.join("profile.json"), profile.to_string()).unwrap();
}

/// The per-pair step of agenix-rekey's rekey app (its `reencrypt`), written
/// for this benchmark: a temp dir beside the output, `age -d` of the master
/// secret piped into `age -e` to the host key, `mv -f`, `rmdir`.
const AGENIX_REKEY_HEAD: &str = r#"#!/usr/bin/env bash
# agenix-rekey-style rekey loop (generated by peers-bench gen): two Go age
# processes per (host, secret) pair, one after the other, as agenix-rekey's
# generated script runs them (without its Nix evaluation).
set -uo pipefail
failed=0
fail() { echo "failed: $1" >&2; failed=1; }
reencrypt() {
  local out=$1 src=$2 pub=$3 dir tmpdir
  dir=$(dirname "$out")
  mkdir -p "$dir" || return
  tmpdir=$(mktemp -d "$dir/.tmp.rekey.XXXXXXXXXX") || return
  if ! age -d -i ./master.txt "$src" | age -e -r "$pub" -o "$tmpdir/$(basename "$out")"; then
    rm -rf "$tmpdir"; return 1
  fi
  mv -f "$tmpdir/$(basename "$out")" "$out" && rmdir "$tmpdir"
}
"#;

fn time(dir: &Path, log: &Path, timeout: u64, cmd: &[String]) {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap_or_else(|e| fail(format!("{}: {e}", log.display())));
    let t = Instant::now();
    let mut child = Command::new(&cmd[0])
        .args(&cmd[1..])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| fail(format!("{}: {e}", cmd[0])));
    let done = Arc::new(AtomicBool::new(false));
    let timed_out = Arc::new(AtomicBool::new(false));
    if timeout > 0 {
        // One sleeping thread: nothing polls while the command runs.
        let (done, timed_out, pid) = (done.clone(), timed_out.clone(), child.id());
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(timeout));
            if !done.load(Ordering::SeqCst) {
                timed_out.store(true, Ordering::SeqCst);
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &format!("-{pid}")])
                    .status();
            }
        });
    }
    let st = child.wait().unwrap();
    let secs = t.elapsed().as_secs_f64();
    done.store(true, Ordering::SeqCst);
    if timed_out.load(Ordering::SeqCst) {
        println!("timeout");
        return;
    }
    if !st.success() {
        fail(format!("{cmd:?} failed ({st}) in {}", dir.display()));
    }
    println!("{secs:.6}");
}

fn change(secret: &str, dirs: &[String]) {
    let first = Path::new(dirs.first().unwrap_or_else(|| usage()));
    let ct =
        nixseal::crypto::encrypt(&random_secret(), &[&master_recipient(first)], false).unwrap();
    for d in dirs {
        write_atomic(&Path::new(d).join(format!("secrets/{secret}.age")), &ct);
    }
}

fn host_identity(keys: &Path, host: &str) -> age::ssh::Identity {
    let text = std::fs::read(keys.join(host)).unwrap();
    age::ssh::Identity::from_buffer(&text[..], Some(host.to_owned())).unwrap()
}

fn decrypt_with(id: &age::ssh::Identity, path: &Path) -> Vec<u8> {
    let ct = std::fs::read(path).unwrap_or_else(|e| fail(format!("{}: {e}", path.display())));
    nixseal::crypto::decrypt(&ct, &[id])
        .unwrap_or_else(|e| fail(format!("{}: {e}", path.display())))
        .to_vec()
}

fn go_age_decrypt(key: &Path, path: &Path) -> Vec<u8> {
    let out = Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(key)
        .arg(path)
        .output()
        .unwrap_or_else(|e| fail(format!("Go age: {e}")));
    if !out.status.success() {
        fail(format!(
            "Go age cannot decrypt {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    out.stdout
}

/// Every output file of `tool` for `host`, with the secret it must hold.
/// nixseal and the agenix loop name outputs by secret; vaultix names them by
/// a hash, so its files are matched to secrets by their plaintext (every
/// secret differs) and there must be exactly one per secret.
fn verify(dir: &Path, keys: &Path, tools: &[&str]) {
    let plain = plaintexts(dir);
    let by_plain: HashMap<&[u8], &str> = plain
        .iter()
        .map(|(n, p)| (p.as_slice(), n.as_str()))
        .collect();
    assert_eq!(by_plain.len(), plain.len(), "two secrets share a plaintext");
    let hosts = hosts(dir);
    for tool in tools {
        let Some((kind, sub)) = tool.split_once(':') else {
            usage()
        };
        let hashed = match kind {
            "named" => false,
            "hashed" => true,
            k => fail(format!("unknown layout {k} (named or hashed)")),
        };
        let checked: usize = hosts
            .par_iter()
            .map(|(host, _)| {
                let id = host_identity(keys, host);
                let hd = dir.join(sub).join(host);
                if hashed {
                    let mut seen = BTreeMap::new();
                    for e in std::fs::read_dir(&hd)
                        .unwrap_or_else(|e| fail(format!("{}: {e}", hd.display())))
                    {
                        let p = e.unwrap().path();
                        let pt = decrypt_with(&id, &p);
                        let Some(name) = by_plain.get(pt.as_slice()) else {
                            fail(format!("{}: not any current secret", p.display()))
                        };
                        if let Some(other) = seen.insert(*name, p.clone()) {
                            fail(format!(
                                "{} and {} both hold {name}",
                                other.display(),
                                p.display()
                            ));
                        }
                    }
                    if seen.len() != plain.len() {
                        fail(format!(
                            "{}: {} outputs for {} secrets",
                            hd.display(),
                            seen.len(),
                            plain.len()
                        ));
                    }
                } else {
                    for (name, pt) in &plain {
                        let p = hd.join(format!("{name}.age"));
                        if decrypt_with(&id, &p) != *pt {
                            fail(format!("{}: not the master secret {name}", p.display()));
                        }
                    }
                }
                plain.len()
            })
            .sum();
        // Go age on three outputs of the first and the last host.
        let mut go = 0;
        for (host, _) in [hosts.first().unwrap(), hosts.last().unwrap()] {
            let hd = dir.join(sub).join(host);
            let mut files: Vec<PathBuf> = std::fs::read_dir(&hd)
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
                .collect();
            files.sort();
            for p in files.iter().take(3) {
                let pt = go_age_decrypt(&keys.join(host), p);
                if !by_plain.contains_key(pt.as_slice()) {
                    fail(format!("Go age: {} holds no current secret", p.display()));
                }
                go += 1;
            }
        }
        println!(
            "  verified {sub}/: {checked} outputs decrypt with their host's key to the right \
             secret ({go} also with Go age)"
        );
    }
}

fn deploy_setup(dir: &Path, keys: &Path, out: &Path, rounds: usize, vaultix_tags: &[String]) {
    let dir = std::fs::canonicalize(dir).unwrap();
    std::fs::create_dir_all(out).unwrap();
    let out = std::fs::canonicalize(out).unwrap();
    let (host, pubkey) = hosts(&dir).into_iter().next().unwrap();
    let key = std::fs::canonicalize(keys.join(&host)).unwrap();
    let names: Vec<String> = plaintexts(&dir).into_keys().collect();
    for r in 1..=rounds {
        let run = out.join(format!("run{r}"));
        std::fs::create_dir_all(&run).unwrap();
        let p = |s: &str| run.join(s).to_str().unwrap().to_owned();

        let link = p("nixseal");
        let secrets: Vec<_> = names
            .iter()
            .map(|n| {
                json!({"name": n, "source": dir.join(format!("rekeyed/{host}/{n}.age")),
                       "owner": "root", "group": "root", "mode": "0400",
                       "path": format!("{link}/{n}"), "symlink": true,
                       "restartUnits": [], "reloadUnits": [], "neededForUsers": false})
            })
            .collect();
        let m = json!({"version": 1, "hostKeys": [{"path": key, "type": "ed25519"}],
                       "mountPoint": p("nixseal.d"), "symlink": link, "keepGenerations": 1,
                       "stateDir": p("nixseal-state"), "secrets": secrets, "templates": []});
        std::fs::write(out.join(format!("nixseal-{r}.json")), m.to_string()).unwrap();

        for tag in vaultix_tags {
            let link = p(tag);
            let mut vs = serde_json::Map::new();
            for n in &names {
                let file = dir.join(format!("secrets/{n}.age"));
                vs.insert(n.clone(), vaultix_secret(n, file.to_str().unwrap(), &link));
            }
            let v = vaultix_profile(
                &host,
                &pubkey,
                &key,
                dir.join(format!("{tag}-cache/{host}")).to_str().unwrap(),
                &p(&format!("{tag}.d")),
                &link,
                vs,
            );
            std::fs::write(out.join(format!("{tag}-{r}.json")), v.to_string()).unwrap();
        }

        // agenix's activation, one secret after the other: a generation dir
        // on a ramfs, per secret `age --decrypt` to a temp file under umask
        // 0377, chmod, mv; then chown each; then the symlink.
        let (mp, link) = (p("agenix.d"), p("agenix"));
        let mut s = format!(
            "#!/usr/bin/env bash\nset -euo pipefail\nmp={}\nlink={}\n\
             if ! mountpoint -q \"$mp\"; then mkdir -p \"$mp\"; \
             mount -t ramfs none \"$mp\" -o nodev,nosuid,mode=0751; fi\n\
             if [[ -L $link ]]; then gen=$(basename \"$(readlink \"$link\")\"); else gen=0; fi; gen=$((gen + 1))\n\
             mkdir -p \"$mp/$gen\"; chmod 0751 \"$mp/$gen\"\n",
            sh_quote(&mp),
            sh_quote(&link)
        );
        for n in &names {
            let src = dir.join(format!("agenix-out/{host}/{n}.age"));
            writeln!(
                s,
                "p=\"$mp/$gen/{n}\"; mkdir -p \"$(dirname \"$p\")\"; \
                 (umask u=r,g=,o=; age --decrypt -i {} -o \"$p.tmp\" {}); \
                 chmod 0400 \"$p.tmp\"; mv -f \"$p.tmp\" \"$p\"",
                sh_quote(key.to_str().unwrap()),
                sh_quote(src.to_str().unwrap())
            )
            .unwrap();
        }
        for n in &names {
            writeln!(s, "chown root:root \"$mp/$gen/{n}\"").unwrap();
        }
        s.push_str("ln -sfT \"$mp/$gen\" \"$link\"\n");
        std::fs::write(out.join(format!("agenix-{r}.sh")), s).unwrap();
    }
}

fn check_deployed(dir: &Path, link: &Path) {
    let plain = plaintexts(dir);
    for (name, pt) in &plain {
        let p = link.join(name);
        let md = std::fs::metadata(&p).unwrap_or_else(|e| fail(format!("{}: {e}", p.display())));
        if md.permissions().mode() & 0o7777 != 0o400 || md.uid() != 0 || md.gid() != 0 {
            fail(format!(
                "{}: mode {:o} owner {}:{}",
                p.display(),
                md.permissions().mode(),
                md.uid(),
                md.gid()
            ));
        }
        if std::fs::read(&p).unwrap() != *pt {
            fail(format!("{}: not the secret {name}", p.display()));
        }
    }
    println!(
        "  verified {}: {} secrets, right bytes, mode 0400, root:root",
        link.display(),
        plain.len()
    );
}
