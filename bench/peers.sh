#!/usr/bin/env bash
# nixseal side by side with vaultix (and an agenix-rekey-style loop of Go `age`
# processes): figures and ratios, not a test. A maintainer command; see
# docs/benchmarks.md, "Side by side: vaultix".
#
#   VAULTIX=/path/to/vaultix bash bench/peers.sh
#   VAULTIX_SRC=/path/to/vaultix-checkout bash bench/peers.sh   # builds it
#
# One generated fleet per size (default 50x50 and 200x100: 64-byte secrets,
# a master X25519 identity, real ssh-ed25519 host keys) is rekeyed by every
# tool, on the same filesystem (BENCH_DIR, default /dev/shm: tmpfs) and the
# same cores: once inside a git repository with the outputs committed (as a
# flake has them; one repository per tool, each holding only its own
# outputs) and once outside any git repository. Measured in interleaved
# rounds (the order of the tools alternates), printed as best / median and
# the ratio nixseal/tool: full rekey (outputs removed first), no-op rekey,
# rekey after one secret changed; then the host side: a deploy of 1000
# secrets on a fresh ramfs and a redeploy, in a private mount namespace (root).
# Every tool's outputs are decrypted with the host keys and compared with the
# master secrets (a few with Go age too) after the warm-up and after the last
# round, and each deploy's files are checked: the tools do the same work.
#
# Settings (environment):
#   VAULTIX           vaultix binary, as its flake builds it (its Cargo.toml
#                     release profile: opt-level "z", LTO, one codegen unit)
#   VAULTIX_SRC       a vaultix checkout to build instead (cargo build
#                     --release --locked; needs libclang: apt-get install
#                     libclang-dev); with VAULTIX_O3=1 also an opt-level 3 build
#   VAULTIX_O3        path of a second vaultix build (e.g. opt-level 3),
#                     measured beside as "vaultix-o3"
#   BENCH_DIR         where the fleets go (default /dev/shm); must not be
#                     inside a git work tree
#   PEERS_SIZES       default "50x50 200x100"
#   PEERS_ROUNDS      rounds per measure (default 5); a measure whose first
#                     run takes over PEERS_SLOW seconds (default 10) gets 3
#   PEERS_TIMEOUT     seconds after which a vaultix no-op or one-changed run is
#                     killed and reported as "> N s" (default 120); not retried
#                     at that size
#   PEERS_AGENIX      1 (default): the agenix-rekey-style loop at fleets of up
#                     to 2500 pairs (outside git only: it never asks git) and
#                     the agenix-style deploy loop; all: at every size; 0: off
#   PEERS_DEPLOY      1 (default): host side (needs root); 0: off
#   PEERS_DEPLOY_SECRETS  secrets deployed (default 1000)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
t_start=$(date +%s)

die2() { printf 'bench/peers.sh: %s\n' "$1" >&2; shift; (($#)) && printf '  %s\n' "$@" >&2; exit 2; }

# `bench/peers.sh --deploy-phase` is this script re-run by itself inside a
# private mount namespace (below); everything it needs comes in the environment.
inner=0; [[ ${1:-} == --deploy-phase ]] && inner=1
if ((inner == 0)); then
if [[ -z ${VAULTIX:-} && -z ${VAULTIX_SRC:-} ]]; then
  die2 "needs vaultix (nothing was measured). Either give a binary:" \
    "  VAULTIX=/path/to/vaultix bash bench/peers.sh" \
    "or a checkout to build (crates from crates.io; needs libclang: apt-get install libclang-dev):" \
    "  git clone https://github.com/milieuim/vaultix /path/vaultix" \
    "  VAULTIX_SRC=/path/vaultix bash bench/peers.sh   (VAULTIX_O3=1 also builds it with opt-level 3)"
fi
if [[ -n ${VAULTIX_SRC:-} ]]; then
  [[ -f $VAULTIX_SRC/Cargo.toml ]] || die2 "VAULTIX_SRC=$VAULTIX_SRC has no Cargo.toml"
  echo "building vaultix in $VAULTIX_SRC (its release profile)" >&2
  (cd "$VAULTIX_SRC" && cargo build --release --locked -q) ||
    die2 "building vaultix failed (libclang missing? apt-get install libclang-dev)"
  VAULTIX=$VAULTIX_SRC/target/release/vaultix
  if [[ ${VAULTIX_O3:-} == 1 ]]; then
    echo "building vaultix with opt-level 3 in $VAULTIX_SRC/target-o3" >&2
    (cd "$VAULTIX_SRC" && CARGO_PROFILE_RELEASE_OPT_LEVEL=3 cargo build --release --locked -q \
      --target-dir target-o3) || die2 "building vaultix (opt-level 3) failed"
    VAULTIX_O3=$VAULTIX_SRC/target-o3/release/vaultix
  fi
fi
[[ ${VAULTIX_O3:-} == 1 ]] && die2 "VAULTIX_O3=1 needs VAULTIX_SRC (or give VAULTIX_O3=/path/to/binary)"
[[ -x $VAULTIX ]] || die2 "VAULTIX=$VAULTIX is not an executable"
[[ -z ${VAULTIX_O3:-} || -x $VAULTIX_O3 ]] || die2 "VAULTIX_O3=$VAULTIX_O3 is not an executable"
VAULTIX=$(realpath "$VAULTIX")
[[ -n ${VAULTIX_O3:-} ]] && VAULTIX_O3=$(realpath "$VAULTIX_O3")
"$VAULTIX" --help 2>&1 | grep -q renc || die2 "$VAULTIX does not look like vaultix (no renc in --help)"

for c in git age mountpoint unshare; do
  command -v "$c" >/dev/null || die2 "$c not found (bash scripts/setup installs git, Go age, util-linux)"
done
ROUNDS=${PEERS_ROUNDS:-5} SLOW=${PEERS_SLOW:-10} TIMEOUT=${PEERS_TIMEOUT:-120}
AGENIX=${PEERS_AGENIX:-1} DEPLOY=${PEERS_DEPLOY:-1} DEPLOY_N=${PEERS_DEPLOY_SECRETS:-1000}
SIZES=${PEERS_SIZES-50x50 200x100}
if [[ $DEPLOY == 1 && $(id -u) != 0 ]]; then
  die2 "the host side mounts ramfs in a private mount namespace: run as root, or PEERS_DEPLOY=0"
fi

cargo build --release -q -p nixseal-cli -p nixseal-bench
N=$repo/target/release/nixseal B=$repo/target/release/peers-bench
BENCH_DIR=${BENCH_DIR:-/dev/shm}
work=$(mktemp -d -p "$BENCH_DIR" peers.XXXXXX); [[ -n ${PEERS_KEEP:-} ]] || trap 'rm -rf "$work"' EXIT
if git -C "$work" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  die2 "BENCH_DIR=$BENCH_DIR is inside a git work tree: the outside-git runs would not be"
fi
fstype=$(stat -f -c %T "$work")
[[ $fstype == tmpfs ]] || echo "note: BENCH_DIR is $fstype, not tmpfs" >&2
res=$work/results log=$work/log
mkdir -p "$res"
export N B VAULTIX VAULTIX_O3 ROUNDS AGENIX DEPLOY_N res log
fi

# Tools: name, output subdirectory, binary.
tools=(nixseal vaultix)
declare -A sub=([nixseal]=rekeyed [vaultix]=vaultix-cache [vaultix-o3]=vaultix-o3-cache [agenix]=agenix-out)
declare -A bin=([vaultix]=$VAULTIX)
if [[ -n ${VAULTIX_O3:-} ]]; then tools+=(vaultix-o3); bin[vaultix-o3]=$VAULTIX_O3; fi
layout() { case $1 in vaultix*) echo "hashed:${sub[$1]}" ;; *) echo "named:${sub[$1]}" ;; esac; }

git_() { git -c user.name=bench -c user.email=bench@invalid -c commit.gpgsign=false "$@"; }
commit() { for d in "$@"; do (cd "$d" && git_ add -A && git_ commit -q -m round --allow-empty); done; }

# The command line of one rekey by tool $1, to be run in the fleet directory $2.
rekey_cmd() {
  local p
  case $1 in
    nixseal) cmd=("$N" renc --profile profile.json) ;;
    agenix) cmd=(bash agenix-rekey.sh) ;;
    *) cmd=("${bin[$1]}")
       for p in "$2"/vaultix/h*.json; do cmd+=(-p "vaultix/${p##*/}"); done
       cmd+=(renc --identity ./master.txt --cache "./${sub[$1]}") ;;
  esac
}

# measure KEY DIR TIMEOUT TOOL: one timed run, appended to $res/KEY
# (KEY = size@variant/measure/tool); returns 1 without running when the same
# measure timed out before at this size (in either variant: it is not
# retried). A run over $SLOW s in round 1 marks the tool slow for this size
# and variant (it then takes part in rounds 1-3 only).
measure() {
  local d=$2 to=$3 t=$4 f=$res/$1 tkey=${1//@git/}; tkey=${tkey//@plain/}
  mkdir -p "$(dirname "$res/$tkey")"
  if [[ -e $res/$tkey.timedout ]]; then
    grep -q timeout "$f" 2>/dev/null || echo timeout >>"$f"
    return 1
  fi
  rekey_cmd "$t" "$d"
  local v; v=$("$B" time "$d" "$log" "$to" -- "${cmd[@]}")
  echo "$v" >>"$f"
  if [[ $v == timeout ]]; then touch "$res/$tkey.timedout"; return 1; fi
  if ((r == 1)) && awk -v v="$v" -v s="$SLOW" 'BEGIN{exit !(v > s)}'; then
    touch "$res/${1%%/*}/slow-$t"
  fi
}

# Best and median (ms) of a result file; "> T s" if a run timed out.
summary() {
  local f=$1
  if grep -q timeout "$f"; then printf '%s' "> $TIMEOUT s (timed out, killed)"; return; fi
  sort -g "$f" | awk '{v[NR]=$1} END{m = NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2;
    printf "%9.1f / %9.1f ms  (%d runs)", v[1]*1000, m*1000, NR}'
}
ratio() { # nixseal file, other file
  grep -q timeout "$2" && { printf 'nixseal/%s < %s' "$3" "$(sort -g "$1" | awk -v t="$TIMEOUT" 'NR==1{printf "%.4f", $1/t}')"; return; }
  awk -v n="$(med "$1")" -v o="$(med "$2")" -v nb="$(sort -g "$1" | head -1)" \
      -v ob="$(sort -g "$2" | head -1)" -v t="$3" \
      'BEGIN{printf "nixseal/%s: %.3f best, %.3f median", t, nb/ob, n/o}'
}
med() { sort -g "$1" | awk '{v[NR]=$1} END{print NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
row() { # label, key, tool
  local f=$res/$2/$3; [[ -s $f ]] || return 0
  printf '    %-12s %s' "$3" "$(summary "$f")"
  [[ $3 != nixseal && -s $res/$2/nixseal ]] && printf '   %s' "$(ratio "$res/$2/nixseal" "$f" "$3")"
  printf '\n'
}

if ((inner == 1)); then
  fd=$DD
  mount -t tmpfs -o mode=0700 peers-deploy "$fd"
  "$B" gen 1 "$DEPLOY_N" "$fd/fleet" "$fd/keys"
  dt=("${tools[@]}"); [[ $AGENIX != 0 ]] && dt+=(agenix)
  for t in "${dt[@]}"; do
    rekey_cmd "$t" "$fd/fleet"
    (cd "$fd/fleet" && "${cmd[@]}" >>"$log" 2>&1) || { echo "rekey by $t failed; see $log" >&2; exit 1; }
  done
  for t in "${dt[@]}"; do "$B" verify "$fd/fleet" "$fd/keys" "$(layout "$t")"; done
  "$B" deploy-setup "$fd/fleet" "$fd/keys" "$fd/run" "$ROUNDS" "${tools[@]:1}"
  dcmd() { # tool round
    case $1 in
      nixseal) cmd=("$N" deploy --no-restart --manifest "$fd/run/nixseal-$2.json") ;;
      agenix) cmd=(bash "$fd/run/agenix-$2.sh") ;;
      *) cmd=("${bin[$1]}" -p "$fd/run/$1-$2.json" deploy) ;;
    esac
  }
  mkdir -p "$res/dep-first" "$res/dep-again"
  for ((r = 1; r <= ROUNDS; r++)); do
    order=("${dt[@]}"); ((r % 2 == 0)) && mapfile -t order < <(printf '%s\n' "${dt[@]}" | tac)
    for t in "${order[@]}"; do
      # The agenix loop takes seconds per deploy: 3 rounds, first deploy only.
      [[ $t == agenix ]] && ((r > 3)) && continue
      dcmd "$t" "$r"; "$B" time "$fd/fleet" "$log" 0 -- "${cmd[@]}" >>"$res/dep-first/$t"
    done
    for t in "${order[@]}"; do
      [[ $t == agenix ]] && continue
      dcmd "$t" "$r"; "$B" time "$fd/fleet" "$log" 0 -- "${cmd[@]}" >>"$res/dep-again/$t"
    done
    if ((r == 1)); then
      for t in "${dt[@]}"; do "$B" check-deployed "$fd/fleet" "$fd/run/run1/$t"; done
    fi
  done
  exit 0
fi

echo "bench/peers.sh: $(nproc) cores, BENCH_DIR on $fstype, load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "  nixseal $("$N" --version 2>/dev/null | head -1) ($(git -C "$repo" rev-parse --short HEAD)); vaultix $VAULTIX${VAULTIX_O3:+, vaultix-o3 $VAULTIX_O3}"

for size in $SIZES; do
  H=${size%x*} S=${size#*x} fd=$work/f$size pairs=$((${size%x*} * ${size#*x}))
  mkdir -p "$fd"
  "$B" gen "$H" "$S" "$fd/src" "$fd/keys"
  # One repository per tool (each holds only its own outputs, like a flake),
  # and one directory outside git for all of them.
  declare -A dirs=()
  for t in "${tools[@]}"; do
    case $t in vaultix*) g=git-vaultix ;; *) g=git-$t ;; esac
    dirs[$t@git]=$fd/$g dirs[$t@plain]=$fd/plain
  done
  use_agenix=0
  if [[ $AGENIX == all || ($AGENIX == 1 && $pairs -le 2500) ]]; then use_agenix=1; dirs[agenix@plain]=$fd/plain; fi
  for d in git-nixseal git-vaultix plain; do cp -a "$fd/src" "$fd/$d"; done
  rm -rf "$fd/src"
  for d in git-nixseal git-vaultix; do (cd "$fd/$d" && git_ init -q && git_ add -A && git_ commit -q -m fleet); done

  for variant in git plain; do
    vt=("${tools[@]}"); [[ $variant == plain && $use_agenix == 1 ]] && vt+=(agenix)
    vdirs=(); for t in "${vt[@]}"; do vdirs+=("${dirs[$t@$variant]}"); done
    mapfile -t vdirs < <(printf '%s\n' "${vdirs[@]}" | sort -u)
    # Warm-up: an untimed full rekey by each tool, checked.
    for t in "${vt[@]}"; do
      d=${dirs[$t@$variant]}; rekey_cmd "$t" "$d"
      (cd "$d" && "${cmd[@]}" >>"$log" 2>&1) || { echo "warm-up of $t failed; see $log" >&2; tail -20 "$log" >&2; exit 1; }
    done
    for t in "${vt[@]}"; do "$B" verify "${dirs[$t@$variant]}" "$fd/keys" "$(layout "$t")"; done
    [[ $variant == git ]] && commit "${vdirs[@]}"
    for ((r = 1; r <= ROUNDS; r++)); do
      # Tools in this round: all, but a slow one only in rounds 1-3.
      order=()
      for t in "${vt[@]}"; do
        ((r > 3)) && [[ -e $res/$size@$variant/slow-$t ]] && continue
        order+=("$t")
      done
      ((${#order[@]})) || continue
      ((r % 2 == 0)) && mapfile -t order < <(printf '%s\n' "${order[@]}" | tac)
      mkdir -p "$res/$size@$variant/full" "$res/$size@$variant/noop" "$res/$size@$variant/changed"
      for t in "${order[@]}"; do
        d=${dirs[$t@$variant]}; rm -rf "${d:?}/${sub[$t]}"
        measure "$size@$variant/full/$t" "$d" 0 "$t" || true
        # The agenix loop has no change detection of its own (agenix-rekey
        # puts a hash of the source, computed by Nix, into each output's
        # name), so only its full rekey is measured, and checked here.
        [[ $t == agenix ]] && "$B" verify "$d" "$fd/keys" "$(layout agenix)" >/dev/null
      done
      [[ $variant == git ]] && commit "${vdirs[@]}"
      for t in "${order[@]}"; do
        [[ $t == agenix ]] && continue # its no-op is Nix evaluation: not measurable here
        to=0; [[ $t == vaultix* ]] && to=$TIMEOUT
        measure "$size@$variant/noop/$t" "${dirs[$t@$variant]}" "$to" "$t" || true
      done
      "$B" change s0000 "${vdirs[@]}"
      for t in "${order[@]}"; do
        [[ $t == agenix ]] && continue
        to=0; [[ $t == vaultix* ]] && to=$TIMEOUT
        # Every rekey after a change is checked (all outputs, the changed
        # secret's included). A killed run leaves this tool's outputs stale:
        # the next round's full rekey rewrites them.
        if measure "$size@$variant/changed/$t" "${dirs[$t@$variant]}" "$to" "$t"; then
          "$B" verify "${dirs[$t@$variant]}" "$fd/keys" "$(layout "$t")" >/dev/null
        fi
      done
      [[ $variant == git ]] && commit "${vdirs[@]}"
    done
    for t in "${vt[@]}"; do
      [[ -e $res/$size@$variant/slow-$t ]] && ((ROUNDS > 3)) &&
        echo "  ($t took over $SLOW s in a run of round 1 at $size $variant: rounds 1-3 only)"
    done
    echo "  (every output checked after each timed rekey of a changed secret, and the agenix loop's after each full run)"
  done

  for variant in git plain; do
    if [[ $variant == git ]]; then where="in a git repository (outputs committed)"; else where="outside git"; fi
    printf '%d hosts x %d secrets (%d pairs), %s, %s\n' "$H" "$S" "$pairs" "$where" "$fstype"
    for m in full noop changed; do
      case $m in full) l="full rekey (outputs removed first)" ;; noop) l="no-op rekey" ;; changed) l="one secret changed (rekey of $H outputs)" ;; esac
      echo "  $l  best / median"
      for t in nixseal "${tools[@]:1}" agenix; do row "$l" "$size@$variant/$m" "$t"; done
    done
  done
  if [[ $use_agenix == 0 && $AGENIX != 0 ]]; then
    echo "  (agenix-style loop not run at $pairs pairs: PEERS_AGENIX=all runs it)"
  fi
  rm -rf "$fd"
done

if [[ $DEPLOY == 1 ]]; then
  # The host side runs in a private mount namespace on a tmpfs of its own
  # (nixseal refuses paths under /dev, so not in BENCH_DIR): the fleet, every
  # tool's ramfs and the files deployed there vanish with the namespace.
  dd=$(mktemp -d /tmp/peers-deploy.XXXXXX)
  DD=$dd unshare -m --propagation private bash "$0" --deploy-phase || { rmdir "$dd"; exit 1; }
  rmdir "$dd"
  dt=("${tools[@]}"); [[ $AGENIX != 0 ]] && dt+=(agenix)
  echo "host side: $DEPLOY_N secrets of 64 bytes, one ssh-ed25519 host key, fresh ramfs per round, private mount namespace"
  echo "  first deploy (mount + every secret)  best / median"
  for t in "${dt[@]}"; do row x dep-first "$t"; done
  echo "  redeploy of the same secrets  best / median"
  for t in "${dt[@]}"; do row x dep-again "$t"; done
fi

echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg); took $(( $(date +%s) - t_start )) s"
