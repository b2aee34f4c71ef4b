#!/usr/bin/env bash
# Benchmark of `nixseal renc` (figures, not a test). Prints, for 50×50 and
# 200×100 fleets of 64-byte secrets: full renc vs. the bare age-crate loop
# doing the same crypto (same cores, rayon) as a ratio, the serial loop too,
# a no-op renc, and peak RSS. Each figure is the best of several runs.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v /usr/bin/time >/dev/null || { apt-get install -y -qq time >/dev/null; }
cargo build --release -q -p nixseal-cli -p nixseal-bench
N=$PWD/target/release/nixseal B=$PWD/target/release/renc-bench
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT

best() { sort -g | head -1; }
now() { date +%s.%N; }

for size in "50 50" "200 100"; do
  set -- $size; H=$1 S=$2; d="$work/f$H-$S"
  $B gen "$H" "$S" "$d"
  bare=$(for i in 1 2 3 4 5; do $B bare "$d"; done | best)
  serial=$(for i in 1 2 3; do $B bare "$d" --serial; done | best)
  full=() rss=()
  for i in 1 2 3; do
    rm -rf "$d/rekeyed"
    t0=$(now)
    ( cd "$d" && /usr/bin/time -f %M -o "$work/rss" "$N" renc --profile profile.json >/dev/null )
    t1=$(now)
    full+=("$(echo "$t1 - $t0" | bc -l)"); rss+=("$(cat "$work/rss")")
  done
  fullb=$(printf '%s\n' "${full[@]}" | best)
  rssmax=$(printf '%s\n' "${rss[@]}" | sort -n | tail -1)
  noop=$(for i in 1 2 3 4 5; do
    t0=$(now); ( cd "$d" && "$N" renc --profile profile.json >/dev/null ); t1=$(now)
    echo "$t1 - $t0" | bc -l
  done | best)
  pairs=$((H * S))
  printf '%d hosts x %d secrets (%d pairs)\n' "$H" "$S" "$pairs"
  printf '  bare age loop (rayon, %d cores): %8.1f ms\n' "$(nproc)" "$(echo "$bare * 1000" | bc -l)"
  printf '  bare age loop (serial):          %8.1f ms\n' "$(echo "$serial * 1000" | bc -l)"
  printf '  nixseal renc, full:              %8.1f ms   ratio to bare rayon loop: %.2fx\n' \
    "$(echo "$fullb * 1000" | bc -l)" "$(echo "$fullb / $bare" | bc -l)"
  printf '  nixseal renc, no-op:             %8.1f ms\n' "$(echo "$noop * 1000" | bc -l)"
  printf '  peak RSS of full renc:           %8.1f MB\n' "$(echo "$rssmax / 1024" | bc -l)"
  printf '  per pair, full renc:             %8.1f us\n' "$(echo "$fullb * 1000000 / $pairs" | bc -l)"
done
