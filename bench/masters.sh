#!/usr/bin/env bash
# Benchmark of `nixseal rekey-masters` (figures, not a test): 500 master
# secrets of 64 bytes, encrypted by Go age to one X25519 key, rotated to 3
# recipients (the profile's 3 identities, declared in identityRecipients).
# Prints the full rotation against the bare age-crate loop doing the same
# crypto (one thread, no output) and the same loop plus a fsynced temp file
# and rename per file; the no-op rotation (everything recorded) with the
# identity files moved away (it must not read them); the dry run; peak RSS.
# Best of several runs each. BENCH_DIR=/dev/shm bash bench/masters.sh for
# tmpfs (default: $TMPDIR or /tmp).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v /usr/bin/time >/dev/null || { apt-get install -y -qq time >/dev/null; }
cargo build --release -q -p nixseal-cli -p nixseal-bench
N=$PWD/target/release/nixseal B=$PWD/target/release/renc-bench M=$PWD/target/release/masters-bench
work=$(mktemp -d -p "${BENCH_DIR:-${TMPDIR:-/tmp}}"); trap 'rm -rf "$work"' EXIT
COUNT=${COUNT:-500}
best() { sort -g | head -1; }

d=$work/fleet
mkdir -p "$d/keys" "$d/secrets" "$d/pristine"
for k in a b c; do age-keygen -o "$d/keys/$k.txt" 2>/dev/null; age-keygen -y "$d/keys/$k.txt"; done >"$d/recipients.txt"
ssh-keygen -q -t ed25519 -N '' -f "$d/keys/host"
a=$(sed -n 1p "$d/recipients.txt")
for i in $(seq -w 1 "$COUNT"); do
  head -c 48 /dev/urandom | base64 -w0 | head -c 64 | age -r "$a" -o "$d/pristine/s$i.age"
done
cp "$d"/pristine/*.age "$d/secrets/"
python3 - "$d" "$COUNT" <<'PY'
import json, sys
d, n = sys.argv[1], int(sys.argv[2])
rec = open(f"{d}/recipients.txt").read().split()
host = " ".join(open(f"{d}/keys/host.pub").read().split()[:2])
w = len(str(n))
json.dump({"version": 1,
           "identities": [f"./keys/{k}.txt" for k in "abc"],
           "identityRecipients": {f"./keys/{k}.txt": [r] for k, r in zip("abc", rec)},
           "rekeyedDir": "./rekeyed",
           "hosts": {"h": {"hostPubkey": host,
                           "secrets": {f"s{i:0{w}d}": {"file": f"./secrets/s{i:0{w}d}.age"} for i in range(1, n + 1)}}}},
          open(f"{d}/profile.json", "w"))
PY
reset='cp pristine/*.age secrets/ && rm -f rekeyed/.nixseal-masters.json secrets/*.bench-*'
bare=$(for i in 1 2 3 4 5; do $M bare "$d"; done | best)
barew=$(for i in 1 2 3; do $M bare "$d" --write; rm -f "$d"/secrets/*.bench-*; done | best)
full=$(for i in 1 2 3 4 5; do $B time "$d" "$reset" -- "$N" rekey-masters --profile profile.json 2>/dev/null; done | best)
( cd "$d" && sh -c "$reset" && /usr/bin/time -f %M -o "$work/rss" "$N" rekey-masters --profile profile.json >/dev/null )
rss=$(cat "$work/rss")
# Everything is recorded now: a no-op must not read the identities.
mkdir -p "$d/away" && mv "$d"/keys/[abc].txt "$d/away/"
noop=$(for i in 1 2 3 4 5 6 7; do $B time "$d" true -- "$N" rekey-masters --profile profile.json; done | best)
dry=$(for i in 1 2 3 4 5; do $B time "$d" true -- "$N" rekey-masters --profile profile.json --dry-run; done | best)
( cd "$d" && "$N" rekey-masters --profile profile.json | grep -q "0 rewritten, $COUNT unchanged, 0 failed" ) || { echo "the no-op was not a no-op" >&2; exit 1; }
mv "$d"/away/*.txt "$d/keys/"
printf '%d master secrets x 64 B to 3 recipients on %s\n' "$COUNT" "$(stat -f -c %T "$work")"
printf '  bare age loop (1 thread, no output): %8.1f ms\n' "$(echo "$bare * 1000" | bc -l)"
printf '  bare loop + temp, fsync, rename:     %8.1f ms\n' "$(echo "$barew * 1000" | bc -l)"
printf '  rekey-masters, full:                 %8.1f ms   ratio to bare loop: %.2fx, to bare loop + writes: %.2fx\n' \
  "$(echo "$full * 1000" | bc -l)" "$(echo "$full / $bare" | bc -l)" "$(echo "$full / $barew" | bc -l)"
printf '  rekey-masters, no-op (no identity):  %8.1f ms\n' "$(echo "$noop * 1000" | bc -l)"
printf '  rekey-masters --dry-run:             %8.1f ms\n' "$(echo "$dry * 1000" | bc -l)"
printf '  peak RSS of full rotation:           %8.1f MB\n' "$(echo "$rss / 1024" | bc -l)"
