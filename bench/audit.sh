#!/usr/bin/env bash
# Benchmark of `nixseal audit` (figures, not a test). Generates a synthetic
# store of 2,000 store paths / 50,000 files with its closureInfo and a
# fleet whose secrets are planted three times (see bench/src/audit.rs), then
# prints the best and median wall time of the library's audit() and of the
# `nixseal audit` binary, warm page cache, on all cores. Target: < 2 s.
# BENCH_DIR=/path picks the filesystem (default: $TMPDIR or /tmp);
# AUDIT_BENCH_FLEETS="20 20 50 50" the fleets (hosts secrets pairs).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p nixseal-cli -p nixseal-bench
N=$PWD/target/release/nixseal B=$PWD/target/release/audit-bench
work=$(mktemp -d -p "${BENCH_DIR:-${TMPDIR:-/tmp}}"); trap 'rm -rf "$work"' EXIT
set -- ${AUDIT_BENCH_FLEETS:-20 20 50 50}
while [ $# -ge 2 ]; do
  d="$work/h$1-s$2"
  $B gen "$d" 2000 50000 "$1" "$2"
  printf 'fleet %s hosts x %s secrets (%s known files), %d cores, %s:\n' "$1" "$2" "$(( $1 * $2 + $1 + $2 ))" "$(nproc)" "$(stat -f -c %T "$work")"
  $B run "$d" "$N" 7
  rm -rf "$d"
  shift 2
done

# The store mode (`nix run .#audit` uses it): a real closure of ~2,000 store
# paths (one small file each) in this machine's Nix store, to show the cost of
# asking nix-store (one --query --requisites, a few --dump-db) on top of the walk.
if command -v nix-store >/dev/null && [ "${AUDIT_BENCH_NIX:-1}" = 1 ]; then
  export NIX_CONFIG=$'experimental-features = nix-command flakes\nsandbox = false\nsubstituters ='
  unset NIX_STORE_DIR
  r="$work/real"; mkdir -p "$r/files"
  for i in $(seq 2000); do echo "bench file $i" > "$r/files/f$i"; done
  (cd "$r/files" && nix-store --add f*) > "$r/list"
  {
    echo 'let system = "x86_64-linux"; mid = n: refs: derivation { name = "mid${toString n}"; inherit system refs; builder = "/bin/sh"; args = [ "-c" "echo $refs > $out" ]; }; in derivation { name = "nixos-system-h0"; inherit system; builder = "/bin/sh"; args = [ "-c" "echo $refs > $out" ]; refs = ['
    split -l 100 "$r/list" "$r/chunk."
    n=0
    for c in "$r"/chunk.*; do
      printf '(mid %d [' "$n"; sed 's/.*/(builtins.storePath "&")/' "$c" | tr '\n' ' '; echo '])'
      n=$((n + 1))
    done
    echo ']; }'
  } > "$r/root.nix"
  root=$(nix-build --no-out-link "$r/root.nix" 2>/dev/null)
  d="$work/fleet-only"; $B gen "$d" 2 2 20 20 >/dev/null
  paths=$(nix-store -qR "$root" | wc -l)
  times=$(for i in 1 2 3 4 5 6; do
    s=$(date +%s.%N)
    "$N" audit --profile "$d/fleet/profile.json" --root "$d/fleet" --host h0 --json "$root" >/dev/null
    e=$(date +%s.%N); echo "$e - $s" | bc -l
  done | tail -5 | sort -g)
  printf 'store mode (nix-store), real closure of %d store paths:\n' "$paths"
  printf '  nixseal audit --json SYSTEM: best %7.1f ms, median %7.1f ms (5 runs)\n' \
    "$(echo "$(echo "$times" | head -1) * 1000" | bc -l)" "$(echo "$(echo "$times" | sed -n 3p) * 1000" | bc -l)"
  q=$(s=$(date +%s.%N); nix-store -qR "$root" >/dev/null; nix-store --dump-db $(nix-store -qR "$root") >/dev/null; e=$(date +%s.%N); echo "($e - $s) * 1000" | bc -l)
  printf '  of which nix-store --query --requisites + --dump-db: %7.1f ms\n' "$q"
fi
