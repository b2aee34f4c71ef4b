# shellcheck shell=bash
# Helpers for the systemd-nspawn tests: a booted container, commands inside it,
# assertions that count, and cleanup that always runs. Sourced by run.sh.
#
# State (globals): ROOT (the container's root dir), NSPID (systemd-nspawn's pid),
# CPID (the container's PID 1 as seen from the host), BOOT_LOG, PASSED, FAILED;
# set for the caller: SYSTEM_STATE (after boot), NSPAWN_RC (after a shutdown).
# shellcheck disable=SC2034

PASSED=0
FAILED=0
NSPID=
CPID=
BOOT_N=0
# Failures counted when the current boot started: a boot with new failures
# dumps the nixseal journal before it is shut down.
FAILED_AT_BOOT=0

say() { printf '%s\n' "$*"; }

need_root() {
  if [ "$(id -u)" -ne 0 ]; then
    say "the systemd tests must run as root (debootstrap, systemd-nspawn and mounts need it)" >&2
    exit 3
  fi
}

# ensure_tool COMMAND PACKAGE: install PACKAGE through apt if COMMAND is
# missing; CI starts from a clean machine.
ensure_tool() {
  command -v "$1" >/dev/null 2>&1 && return 0
  say "installing $2 (for $1)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends "$2" >/dev/null 2>&1 || {
    apt-get update >/dev/null && apt-get install -y --no-install-recommends "$2" >/dev/null
  }
  command -v "$1" >/dev/null 2>&1 || { say "could not install $2 (for $1)" >&2; exit 3; }
}

note() { printf '   %s\n' "$*"; }

pass() {
  PASSED=$((PASSED + 1))
  say "ok   - $1"
}

fail() {
  FAILED=$((FAILED + 1))
  say "FAIL - $1"
  shift
  local line
  for line in "$@"; do note "$line"; done
}

# check DESCRIPTION COMMAND...: passes iff COMMAND succeeds (run on the host;
# use cexec for the container). Its output is shown on failure only.
check() {
  local desc=$1 out
  shift
  if out=$("$@" 2>&1); then
    pass "$desc"
  else
    fail "$desc" "command: $*" "${out:-<no output>}"
  fi
}

# check_eq DESCRIPTION EXPECTED ACTUAL
check_eq() {
  if [ "$2" = "$3" ]; then
    pass "$1"
  else
    fail "$1" "expected: $2" "actual:   $3"
  fi
}

# Run a command inside the booted container (all its namespaces, a clean env).
cexec() {
  nsenter -t "$CPID" -a env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 SYSTEMD_PAGER= "$@"
}

# cx COMMAND...: cexec for capturing a value: stderr included, never fails.
cx() {
  cexec "$@" 2>&1 || true
}

# A systemd property of a unit inside the container, e.g. cprop foo.service Result.
cprop() {
  cx systemctl show -P "$2" "$1"
}

container_running() {
  [ -n "$NSPID" ] && kill -0 "$NSPID" 2>/dev/null
}

# boot: start the container on $ROOT and wait for its PID 1 and for the boot to
# settle (running or degraded). Returns non-zero, with the console log, if
# systemd does not come up.
boot() {
  BOOT_N=$((BOOT_N + 1))
  BOOT_LOG=$WORK/boot-$BOOT_N.log
  FAILED_AT_BOOT=$FAILED
  systemd-nspawn -q -D "$ROOT" --boot --register=no --keep-unit --private-network \
    --console=read-only --machine="nixseal-test-$$" >"$BOOT_LOG" 2>&1 &
  NSPID=$!
  CPID=
  local i
  for i in $(seq 1 200); do
    CPID=$(pgrep -P "$NSPID" -x systemd || true)
    [ -n "$CPID" ] && break
    if ! kill -0 "$NSPID" 2>/dev/null; then break; fi
    sleep 0.05
  done
  if [ -z "$CPID" ]; then
    say "systemd-nspawn did not start systemd; its output:"
    sed 's/^/   | /' "$BOOT_LOG"
    NSPID=
    return 1
  fi
  # The bus socket appears a moment after PID 1 starts.
  for i in $(seq 1 200); do
    [ -S "/proc/$CPID/root/run/dbus/system_bus_socket" ] && break
    [ -S "/proc/$CPID/root/run/systemd/private" ] && break
    sleep 0.05
  done
  SYSTEM_STATE=$(timeout 60 nsenter -t "$CPID" -a env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    systemctl is-system-running --wait 2>/dev/null || true)
  return 0
}

# Print the journal of the nixseal units (and the test services) of this boot.
dump_journal() {
  container_running || return 0
  say "---- journal of this boot (nixseal units and test services) ----"
  cexec journalctl -b --no-pager -o short-monotonic \
    -u nixseal-activate -u nixseal-activate-users "$@" 2>&1 | sed 's/^/   | /' || true
  say "---- failed units ----"
  cexec systemctl --failed --no-pager --no-legend 2>&1 | sed 's/^/   | /' || true
  say "-----------------------------------------------------------------"
}

# wait_nspawn SECONDS: wait for nspawn to exit; sets NSPAWN_RC to its exit
# status, or returns 1 if it still runs after SECONDS.
wait_nspawn() {
  local _
  for _ in $(seq 1 $(($1 * 20))); do
    kill -0 "$NSPID" 2>/dev/null || break
    sleep 0.05
  done
  kill -0 "$NSPID" 2>/dev/null && return 1
  NSPAWN_RC=0
  wait "$NSPID" 2>/dev/null || NSPAWN_RC=$?
}

# Journal units to dump on failure, beyond the nixseal ones (set by run.sh).
JOURNAL_EXTRA=()

# shutdown_container [poweroff|reboot]: ask systemd to stop and wait for nspawn
# to exit (0 after poweroff, 133 after reboot); kill it if it hangs.
# Sets NSPAWN_RC. Dumps the journal first if this boot saw failures.
shutdown_container() {
  local how=${1:-poweroff}
  NSPAWN_RC=
  container_running || { NSPID=; return 0; }
  if [ "$FAILED" -gt "$FAILED_AT_BOOT" ]; then
    local extra=() u
    for u in "${JOURNAL_EXTRA[@]}"; do extra+=(-u "$u"); done
    dump_journal "${extra[@]}"
  fi
  cexec systemctl "$how" --no-block >/dev/null 2>&1 || kill -TERM "$NSPID" 2>/dev/null || true
  wait_nspawn 30 || {
    say "container did not stop within 30 s; killing it"
    [ -n "$CPID" ] && kill -KILL "$CPID" 2>/dev/null
    kill -KILL "$NSPID" 2>/dev/null
    wait "$NSPID" 2>/dev/null || true
  }
  NSPID=
  CPID=
}

# The EXIT trap: always stop the container and remove the work dir, also when
# an assertion or a command aborts the run; then print the summary line.
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ "$rc" -ne 0 ]; then
    FAILED=$((FAILED + 1))
    say "FAIL - the run aborted (exit $rc${ABORT_AT:+ at $ABORT_AT}) before its assertions finished"
  fi
  if container_running; then
    shutdown_container poweroff
  fi
  if [ -n "${WORK:-}" ] && [ -d "$WORK" ]; then
    if mountpoint -q "$WORK/root"; then umount "$WORK/root" || umount -l "$WORK/root"; fi
    rm -rf --one-file-system "$WORK"
  fi
  if [ -n "${SUMMARY:-}" ]; then
    say "$PASSED passed, $FAILED failed"
  fi
  [ "$rc" -ne 0 ] && exit "$rc"
  [ "$FAILED" -eq 0 ] || exit 1
  exit 0
}

# make_root: $ROOT becomes a private, writable view of the cached Debian root:
# an overlay over the pristine unpacked cache (a copy if overlayfs is missing).
make_root() {
  local lower
  lower=$("$HERE/rootfs.sh" --unpacked)
  ROOT=$WORK/root
  mkdir -p "$ROOT" "$WORK/upper" "$WORK/ovwork"
  if ! mount -t overlay overlay \
      -o "lowerdir=$lower,upperdir=$WORK/upper,workdir=$WORK/ovwork" "$ROOT" 2>/dev/null; then
    cp -a "$lower/." "$ROOT/"
  fi
}
