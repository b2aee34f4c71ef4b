#!/usr/bin/env bash
# Benchmark of `nixseal renc` (figures, not a test). For each fleet size
# (H hosts x S secrets of 64 bytes, every host uses every secret) it prints,
# inside a git repository with the outputs committed (as a flake has them)
# and outside any repository:
#   - the bare age-crate loop doing the same crypto renc does (decrypt each
#     master secret once, encrypt it to every host key, rayon on the same
#     cores, no files written) and, as a second baseline, the same loop plus a
#     plain create+write of every output file;
#   - full renc (outputs removed first) and its ratio to both loops;
#   - the first no-op after outputs were written (it hashes every output and
#     records their stat: see docs/benchmarks.md) and the settled no-op (it
#     trusts the stat record: one lstat per output), host by host (the fleet
#     stamp removed first, as after a profile change) and answered by the
#     fleet stamp (docs/operator.md);
#   - renc after one master secret changed (H outputs rewritten);
#   - peak RSS of the full renc and of the no-op (/usr/bin/time -v).
# Rounds are interleaved (bare, full outside git, full in git, ...), each
# figure is best / median.
#
#   bash bench/renc.sh                               # 50x50 and 200x100
#   RENC_SIZES="1000x100" RENC_ROUNDS=2 bash bench/renc.sh   # the scale fleet
#   BENCH_DIR=/path bash bench/renc.sh               # default /dev/shm (tmpfs)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v /usr/bin/time >/dev/null || { apt-get install -y -qq time >/dev/null; }
cargo build --release -q -p nixseal-cli -p nixseal-bench
N=$PWD/target/release/nixseal B=$PWD/target/release/renc-bench
SIZES=${RENC_SIZES:-50x50 200x100}
ROUNDS=${RENC_ROUNDS:-5}
work=$(mktemp -d -p "${BENCH_DIR:-/dev/shm}" renc.XXXXXX); trap 'rm -rf "$work"' EXIT
if git -C "$work" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  echo "BENCH_DIR is inside a git work tree: the outside-git runs would not be" >&2; exit 2
fi
# The stat record goes to a cache of the benchmark's own.
export XDG_CACHE_HOME=$work/xdg
git_() { git -c user.name=bench -c user.email=bench@invalid -c commit.gpgsign=false "$@"; }
renc() { "$N" renc --profile profile.json; }

# stats FILE: "best / median ms (n runs)"
stats() {
  sort -g "$1" | awk '{v[NR]=$1} END{m = NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2;
    printf "%9.1f / %9.1f ms (%d runs)", v[1]*1000, m*1000, NR}'
}
best() { sort -g "$1" | head -1; }
# The fleet stamp's directory of the flake at DIR (record.rs, RecordDir::fleet_of).
fleet_key() { printf %s "$(realpath "$1")" | sha256sum | cut -c1-32; }
med() { sort -g "$1" | awk '{v[NR]=$1} END{print NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
ratio() { awk -v a="$(best "$1")" -v b="$(best "$2")" -v c="$(med "$1")" -v d="$(med "$2")" \
  'BEGIN{printf "%.2fx best, %.2fx median", a/b, c/d}'; }
rss() { # DIR: peak RSS (MB) of one renc in DIR
  (cd "$1" && /usr/bin/time -v "$N" renc --profile profile.json 2>&1 >/dev/null |
    awk '/Maximum resident/{printf "%.1f", $NF/1024}')
}

echo "bench/renc.sh: $(nproc) cores, $(stat -f -c %T "$work"), load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "  nixseal $(git rev-parse --short HEAD)"
for size in $SIZES; do
  H=${size%x*} S=${size#*x} pairs=$((H * S)) r=$work/r$size
  mkdir -p "$r"
  $B gen "$H" "$S" "$work/plain"
  cp -a "$work/plain" "$work/git"
  (cd "$work/git" && git_ init -q && git_ add -A && git_ commit -q -m fleet)
  # Warm-up (untimed) and the outputs committed.
  (cd "$work/plain" && renc >/dev/null 2>&1)
  (cd "$work/git" && renc >/dev/null 2>&1 && git_ add -A && git_ commit -q -m rekeyed)
  n=$ROUNDS; ((pairs > 20000 && n > 2)) && n=2
  for ((i = 1; i <= n; i++)); do
    $B bare "$work/plain" >>"$r/bare"
    $B bare "$work/plain" --write >>"$r/barew"
    for v in plain git; do
      $B time "$work/$v" 'rm -rf rekeyed' -- "$N" renc --profile profile.json >>"$r/full-$v"
    done
    [[ $i == 1 ]] && for v in plain git; do rss "$work/$v" >"$r/rss-noop1-$v"; done
    for v in plain git; do
      $B time "$work/$v" true -- "$N" renc --profile profile.json >>"$r/noop1-$v"
    done
    # Racy stamps (files changed in the last 2 s) are not recorded: let them
    # settle, then one untimed no-op records what the first could not.
    sleep 2.1
    for v in plain git; do (cd "$work/$v" && renc >/dev/null); done
    for k in 1 2 3; do
      for v in plain git; do
        # Host by host (its fleet stamp removed; the run leaves it again),
        # then answered by the fleet stamp.
        $B time "$work/$v" "rm -f '$XDG_CACHE_HOME/nixseal/renc-fleet/$(fleet_key "$work/$v")/fleet'" \
          -- "$N" renc --profile profile.json >>"$r/noop-hosts-$v"
        $B time "$work/$v" true -- "$N" renc --profile profile.json >>"$r/noop-$v"
      done
    done
    for v in plain git; do
      $B change "$work/$v"
      $B time "$work/$v" true -- "$N" renc --profile profile.json >>"$r/changed-$v"
    done
    (cd "$work/git" && git_ add -A && git_ commit -q -m round)
  done
  for v in plain git; do
    (cd "$work/$v" && rm -rf rekeyed)
    rss "$work/$v" >"$r/rss-full-$v"
    sleep 2.1; (cd "$work/$v" && renc >/dev/null)
    rss "$work/$v" >"$r/rss-noop-$v"
  done
  printf '%d hosts x %d secrets (%d pairs)\n' "$H" "$S" "$pairs"
  printf '  bare age loop (rayon, %d cores):  %s\n' "$(nproc)" "$(stats "$r/bare")"
  printf '  bare loop + plain file writes:    %s\n' "$(stats "$r/barew")"
  for v in git plain; do
    [[ $v == git ]] && echo "  inside a git repository (outputs committed):" || echo "  outside git:"
    printf '    full renc:              %s   to bare: %s; to bare + writes: %s\n' \
      "$(stats "$r/full-$v")" "$(ratio "$r/full-$v" "$r/bare")" "$(ratio "$r/full-$v" "$r/barew")"
    printf '    per pair, full renc:    %9.1f us (best)\n' "$(echo "$(best "$r/full-$v") * 1000000 / $pairs" | bc -l)"
    printf '    first no-op (hashes):   %s\n' "$(stats "$r/noop1-$v")"
    printf '    no-op, host by host:    %s\n' "$(stats "$r/noop-hosts-$v")"
    printf '    no-op, fleet stamp:     %s\n' "$(stats "$r/noop-$v")"
    printf '    one secret changed:     %s   (%d outputs rewritten)\n' "$(stats "$r/changed-$v")" "$H"
    printf '    peak RSS: full %s MB, first no-op %s MB, no-op %s MB\n' \
      "$(cat "$r/rss-full-$v")" "$(cat "$r/rss-noop1-$v")" "$(cat "$r/rss-noop-$v")"
  done
  rm -rf "$work/plain" "$work/git" "$r"
done
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
