#!/usr/bin/env bash
# A/B of the settled no-op renc (figures, not a test): two nixseal binaries
# on the same generated fleet (inside git, outputs committed, stat record
# settled), runs interleaved base/new, best / median wall ms and median
# user+sys CPU ms of each, and the ratio new/base. Also, interleaved with
# them, the floor: one lstat of every output on the same cores and nothing
# else (renc-bench floor), which no no-op that looks at each output can
# beat, and the ratio new/floor. The new binary is timed twice a round:
# `new` answered by the fleet stamp the run before it left, and `hosts`
# with that stamp removed first (the no-op planned host by host, as the
# first run after a profile change is; it leaves the stamp again).
#
#   BASE=/path/to/old/nixseal NEW=target/release/nixseal bash bench/noop-ab.sh
#   RENC_SIZES="1000x100" RENC_ROUNDS=5 ...      (default 50x50 200x100, 15 rounds)
set -euo pipefail
cd "$(dirname "$0")/.."
: "${BASE:?BASE=path of the baseline nixseal}" "${NEW:=$PWD/target/release/nixseal}"
[[ -x target/release/renc-bench ]] || cargo build --release -q -p nixseal-bench
B=$PWD/target/release/renc-bench
work=$(mktemp -d -p "${BENCH_DIR:-/dev/shm}" noop-ab.XXXXXX); trap 'rm -rf "$work"' EXIT
# Each binary keeps its stat record in a cache of its own (two record
# formats would otherwise overwrite each other every round).
xdg() { echo "$work/xdg-$1"; }
git_() { git -c user.name=bench -c user.email=bench@invalid -c commit.gpgsign=false "$@"; }
med() { sort -g | awk '{v[NR]=$1} END{print NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
echo "bench/noop-ab.sh: $(nproc) cores, $(stat -f -c %T "$work"), load at start: $(cut -d' ' -f1-3 /proc/loadavg)"
for size in ${RENC_SIZES:-50x50 200x100}; do
  H=${size%x*} S=${size#*x} f=$work/f$size
  $B gen "$H" "$S" "$f" >/dev/null
  (cd "$f" && git_ init -q && git_ add -A && git_ commit -q -m fleet &&
    "$BASE" renc --profile profile.json >/dev/null 2>&1 && git_ add -A && git_ commit -q -m rekeyed)
  # Let the stamps settle, then one untimed run of each records them.
  sleep 2.1
  (cd "$f" && XDG_CACHE_HOME=$(xdg base) "$BASE" renc --profile profile.json >/dev/null &&
    XDG_CACHE_HOME=$(xdg new) "$NEW" renc --profile profile.json >/dev/null)
  # (A second settled run: a record may vouch for a whole host only once
  # its directory's stamps have settled too.)
  sleep 2.1
  (cd "$f" && XDG_CACHE_HOME=$(xdg base) "$BASE" renc --profile profile.json >/dev/null &&
    XDG_CACHE_HOME=$(xdg new) "$NEW" renc --profile profile.json >/dev/null)
  [[ -z $(cd "$f" && git status --porcelain) ]] || { echo "fleet not clean" >&2; exit 1; }
  for ((i = 0; i < ${RENC_ROUNDS:-15}; i++)); do
    $B floor "$f" >>"$work/$size-floor"
    for v in base hosts new; do
      bin=$NEW x=new
      [[ $v == base ]] && bin=$BASE x=base
      [[ $v == hosts ]] && rm -rf "$(xdg new)/nixseal/renc-fleet"
      # bash's own `time`: milliseconds (wall, user, sys) of the one process.
      out=$(cd "$f" && export XDG_CACHE_HOME=$(xdg $x) && { TIMEFORMAT='%3R %3U %3S'; time "$bin" renc --profile profile.json >"$work/out" 2>"$work/err"; } 2>&1)
      if ! grep -q ' 0 rekeyed, [0-9]* unchanged, 0 removed, 0 failed' "$work/out" || [[ -s $work/err ]]; then
        echo "not a clean no-op:" >&2; head -3 "$work/out" "$work/err" >&2; exit 1
      fi
      read -r e u s <<<"$out"
      echo "$e" >>"$work/$size-$v-wall"
      echo "$u + $s" | bc -l >>"$work/$size-$v-cpu"
    done
  done
  printf '%s (%d pairs), %s rounds:\n' "$size" $((H * S)) "${RENC_ROUNDS:-15}"
  for v in base hosts new; do
    printf '  %-5s wall best %7.1f ms, median %7.1f ms; CPU (user+sys) median %7.1f ms\n' "$v" \
      "$(sort -g "$work/$size-$v-wall" | head -1 | awk '{print $1*1000}')" \
      "$(med <"$work/$size-$v-wall" | awk '{print $1*1000}')" \
      "$(med <"$work/$size-$v-cpu" | awk '{print $1*1000}')"
  done
  printf '  floor (an lstat of each output, in-process) best %7.1f ms, median %7.1f ms\n' \
    "$(sort -g "$work/$size-floor" | head -1 | awk '{print $1*1000}')" \
    "$(med <"$work/$size-floor" | awk '{print $1*1000}')"
  awk -v nb="$(sort -g "$work/$size-new-wall" | head -1)" -v fb="$(sort -g "$work/$size-floor" | head -1)" \
    'BEGIN{printf "  new/floor: %.2fx best\n", nb/fb}'
  awk -v bb="$(sort -g "$work/$size-base-wall" | head -1)" -v nb="$(sort -g "$work/$size-new-wall" | head -1)" \
    -v bm="$(med <"$work/$size-base-wall")" -v nm="$(med <"$work/$size-new-wall")" \
    -v bc="$(med <"$work/$size-base-cpu")" -v nc="$(med <"$work/$size-new-cpu")" \
    'BEGIN{printf "  new/base: wall %.2fx best, %.2fx median; CPU %.2fx median\n", nb/bb, nm/bm, nc/bc}'
  awk -v bb="$(sort -g "$work/$size-base-wall" | head -1)" -v nb="$(sort -g "$work/$size-hosts-wall" | head -1)" \
    -v bm="$(med <"$work/$size-base-wall")" -v nm="$(med <"$work/$size-hosts-wall")" \
    'BEGIN{printf "  hosts/base: wall %.2fx best, %.2fx median\n", nb/bb, nm/bm}'
  rm -rf "$f"
done
echo "load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
