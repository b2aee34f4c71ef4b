#!/usr/bin/env bash
# Benchmark of `nixseal renc` (figures, not a test). Prints, for 50×50 and
# 200×100 fleets of 64-byte secrets: full renc vs. the bare age-crate loop
# doing the same crypto (same cores, rayon) as a ratio; the same loop plus a
# plain write of the same output files (the I/O any rekeyer must do); a no-op
# renc; and peak RSS. Each figure is the best of several runs. Run it on the
# disk you keep your flake on: BENCH_DIR=/path bash bench/renc.sh (default:
# $TMPDIR or /tmp). File creation cost differs by orders of magnitude between
# filesystems, so compare renc with the write baseline.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v /usr/bin/time >/dev/null || { apt-get install -y -qq time >/dev/null; }
cargo build --release -q -p nixseal-cli -p nixseal-bench
N=$PWD/target/release/nixseal B=$PWD/target/release/renc-bench
work=$(mktemp -d -p "${BENCH_DIR:-${TMPDIR:-/tmp}}"); trap 'rm -rf "$work"' EXIT

best() { sort -g | head -1; }

for size in "50 50" "200 100"; do
  set -- $size; H=$1 S=$2; d="$work/f$H-$S"
  $B gen "$H" "$S" "$d"
  bare=$(for i in 1 2 3 4 5; do $B bare "$d"; done | best)
  serial=$(for i in 1 2 3; do $B bare "$d" --serial; done | best)
  barew=$(for i in 1 2 3; do $B bare "$d" --write; done | best)
  # Timed by renc-bench itself (no shell or `date` in the measurement);
  # peak RSS from a separate run under /usr/bin/time.
  fullb=$(for i in 1 2 3 4 5; do $B time "$d" 'rm -rf rekeyed' -- "$N" renc --profile profile.json; done | best)
  rm -rf "$d/rekeyed"
  ( cd "$d" && /usr/bin/time -f %M -o "$work/rss" "$N" renc --profile profile.json >/dev/null )
  rssmax=$(cat "$work/rss")
  noop=$(for i in 1 2 3 4 5 6 7; do $B time "$d" true -- "$N" renc --profile profile.json; done | best)
  pairs=$((H * S))
  printf '%d hosts x %d secrets (%d pairs) on %s\n' "$H" "$S" "$pairs" "$(stat -f -c %T "$work")"
  printf '  bare age loop (rayon, %d cores): %8.1f ms\n' "$(nproc)" "$(echo "$bare * 1000" | bc -l)"
  printf '  bare age loop (serial):          %8.1f ms\n' "$(echo "$serial * 1000" | bc -l)"
  printf '  bare loop + plain file writes:   %8.1f ms\n' "$(echo "$barew * 1000" | bc -l)"
  printf '  nixseal renc, full:              %8.1f ms   ratio to bare loop: %.2fx, to bare loop + writes: %.2fx\n' \
    "$(echo "$fullb * 1000" | bc -l)" "$(echo "$fullb / $bare" | bc -l)" "$(echo "$fullb / $barew" | bc -l)"
  printf '  nixseal renc, no-op:             %8.1f ms\n' "$(echo "$noop * 1000" | bc -l)"
  printf '  peak RSS of full renc:           %8.1f MB\n' "$(echo "$rssmax / 1024" | bc -l)"
  printf '  per pair, full renc:             %8.1f us\n' "$(echo "$fullb * 1000000 / $pairs" | bc -l)"
done
