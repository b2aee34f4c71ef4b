#!/usr/bin/env bash
# A real systemd boots nixseal: boot, reboot, rotation, failure, host key on
# its own mount — inside a systemd-nspawn container made by debootstrap.
#
# Usage: bash tests/systemd/run.sh      (as root)
#   NIXSEAL_BIN=path/to/nixseal   the binary under test (else: cargo build, debug,
#                                 which `cargo test` has mostly built already)
#   NIXSEAL_RENDERER=path         the unit renderer (default tests/nix/render-units.sh)
#   NIXSEAL_USER_RENDERER=path    the user unit renderer (default tests/nix/render-user-units.sh)
#   NIXSEAL_SYSTEMD_CACHE=DIR     where the Debian root is cached (default .cache/systemd)
#
# The nixseal units and the host manifest are rendered from the NixOS module by
# tests/nix/render-units.sh; the container runs those units verbatim, with the
# binary, manifest and rekeyed files placed at the store paths they name.
# Exits non-zero on any failed assertion; the last line is `N passed, N failed`.
# See docs/testing-systemd.md.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
# shellcheck source=tests/systemd/lib.sh
. "$HERE/lib.sh"

RENDERER=${NIXSEAL_RENDERER:-$REPO/tests/nix/render-units.sh}
USER_RENDERER=${NIXSEAL_USER_RENDERER:-$REPO/tests/nix/render-user-units.sh}
# The lingering user of the user-session scenarios (home-manager module):
# the renderer's fixture lists nixseal-test-user-a.service in api-token's
# restartUnits and nixseal-test-user-b.service in mail-password's.
HM_USER=nixseal-test
HM_UID=1500
HM_HOME=/home/$HM_USER
HM_RT=/run/user/$HM_UID
USER_A=nixseal-test-user-a
USER_B=nixseal-test-user-b
# Consumers of secrets, written by this test: the renderer's fixture lists
# nixseal-test-consumer.service in db-password's restartUnits; the tls service
# reads tls-key, whose restartUnits are empty.
CONSUMER=nixseal-test-consumer
TLS_SVC=nixseal-test-tls
T_START=$(date +%s.%N)

elapsed() { awk -v a="$T_START" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}'; }

# ---------------------------------------------------------------- setup ----

setup_tools() {
  need_root
  ensure_tool systemd-nspawn systemd-container
  ensure_tool nsenter util-linux
  ensure_tool pgrep procps
  ensure_tool jq jq
  ensure_tool age age
  ensure_tool zstd zstd
  ensure_tool nix-store nix-bin
  if [ ! -f "$USER_RENDERER" ]; then
    say "the user unit renderer $USER_RENDERER is missing" >&2
    exit 2
  fi
  if [ ! -f "$RENDERER" ]; then
    say "the unit renderer $RENDERER is missing (it comes with the NixOS module, branch nix)" >&2
    exit 2
  fi
}

nixseal_bin() {
  if [ -n "${NIXSEAL_BIN:-}" ]; then
    [ -x "$NIXSEAL_BIN" ] || { say "NIXSEAL_BIN=$NIXSEAL_BIN is not an executable file" >&2; exit 2; }
    BIN=$(realpath "$NIXSEAL_BIN")
  else
    say "building nixseal (cargo build -p nixseal-cli)"
    (cd "$REPO" && cargo build --quiet -p nixseal-cli)
    BIN=$(cd "$REPO" && realpath "${CARGO_TARGET_DIR:-target}/debug/nixseal")
  fi
  # The nixseal package cannot be built offline, so the rendered units name a
  # well-formed store path and the binary under test is placed there.
  local h
  h=$(sha256sum "$BIN" | cut -c1-32 | tr '0-9a-f' '0123456789abcdfg')
  BIN_STORE=/nix/store/$h-nixseal/bin/nixseal
}

# A store path of this machine's Nix store holding FILE under NAME.
store_add() { # store_add FILE NAME
  local d
  d=$(mktemp -d "$WORK/add.XXXXXX")
  cp "$1" "$d/$2"
  nix-store --add "$d/$2"
}

# The expected content of every template of MANIFEST, from the expected
# plaintexts in DIR/expected (placeholders {{nixseal:<name>}}).
expect_templates() { # expect_templates MANIFEST DIR
  local n i t name content
  n=$(jq '.templates | length' "$1")
  for i in $(seq 0 $((n - 1))); do
    t=$(jq -r ".templates[$i].name" "$1")
    content=$(jq -r ".templates[$i].content" "$1"; echo x)
    content=${content%x}
    content=${content%$'\n'}
    for name in $(jq -r '.secrets[].name' "$1"); do
      content=${content//"{{nixseal:$name}}"/"$(cat "$2/expected/$name")"}
    done
    printf '%s' "$content" >"$2/expected/$t"
  done
}

# derive FROM TO SECRET PLAINTEXT [corrupt]: configuration TO is FROM with
# SECRET re-encrypted (Go age, to the host key) from PLAINTEXT — what a rotated
# secret plus `nix run .#renc` plus a rebuild gives: a new rekeyed store path,
# hence a new manifest store path, hence a unit whose ExecStart and
# X-Restart-Triggers name the new manifest. With `corrupt`, the new rekeyed
# file has its last byte (the payload's tag) flipped.
derive() {
  local from=$WORK/out/$1 to=$WORK/out/$2 secret=$3 plaintext=$4 how=${5:-}
  rm -rf "$to"
  cp -a "$from" "$to"
  printf '%s' "$plaintext" >"$to/expected/$secret"
  local old_src name enc new_src old_manifest new_manifest
  old_src=$(jq -r --arg s "$secret" '.secrets[] | select(.name == $s) | .source' "$from/manifest.json")
  name=${old_src#/nix/store/*-}
  enc=$WORK/$2-$secret.age
  age -r "$(cut -d' ' -f1,2 "$from/ssh_host_ed25519_key.pub")" -o "$enc" "$to/expected/$secret"
  if [ "$how" = corrupt ]; then
    local last
    last=$(tail -c1 "$enc" | od -An -tu1 | tr -d ' ')
    # shellcheck disable=SC2059 # the format is the escape of one byte
    printf "\\$(printf '%03o' $(((last + 1) % 256)))" |
      dd of="$enc" bs=1 seek=$(($(stat -c %s "$enc") - 1)) conv=notrunc status=none
  fi
  new_src=$(store_add "$enc" "$name")
  jq --arg s "$secret" --arg src "$new_src" \
    '(.secrets[] | select(.name == $s) | .source) = $src' "$from/manifest.json" >"$to/manifest.json"
  old_manifest=$(cat "$from/manifest-store-path")
  new_manifest=$(store_add "$to/manifest.json" "${old_manifest#/nix/store/*-}")
  echo "$new_manifest" >"$to/manifest-store-path"
  sed -i "s|$old_manifest|$new_manifest|g" "$to"/*.service
  sed -e "s|$old_manifest|$new_manifest|" -e "s|$old_src|$new_src|" "$from/store-paths" >"$to/store-paths"
  expect_templates "$to/manifest.json" "$to"
}

# Configurations:
#   A   the renderer's host, as rendered from the module
#   R   A with tls-key rotated (no restartUnits)
#   B   R with db-password rotated (restartUnits: the consumer)
#   C   B with a corrupt rekeyed tls-key
#   P   rendered from the module with the host key at /persist/etc/ssh/...
render_all() {
  "$RENDERER" "$WORK/out/A" --nixseal "$BIN_STORE" 2>"$WORK/render-A.log" ||
    { cat "$WORK/render-A.log"; return 1; }
  "$RENDERER" "$WORK/out/P" --nixseal "$BIN_STORE" \
    --host-key-path /persist/etc/ssh/ssh_host_ed25519_key 2>"$WORK/render-P.log" ||
    { cat "$WORK/render-P.log"; return 1; }
  # The home-manager user's unit and user-session manifest (U), and as a
  # `home-manager switch` after a rotation gives them: U2 = U with
  # mail-password rotated, U3 = U2 with a corrupt rekeyed api-token.
  "$USER_RENDERER" "$WORK/out/U" --nixseal "$BIN_STORE" --user "$HM_USER" --home "$HM_HOME" \
    2>"$WORK/render-U.log" || { cat "$WORK/render-U.log"; return 1; }
  cp "$WORK/out/U/id_ed25519.pub" "$WORK/out/U/ssh_host_ed25519_key.pub"
  expect_templates "$WORK/out/U/manifest.json" "$WORK/out/U"
  derive U U2 mail-password "rotated-mail-$RANDOM$RANDOM"
  derive U2 U3 api-token "never deployed" corrupt
  derive A R tls-key "$(printf -- '-----BEGIN TEST KEY-----\nrotated %s\n' "$RANDOM")"
  derive R B db-password "rotated-db-$RANDOM$RANDOM"
  derive B C tls-key "never deployed" corrupt
}

# install_config CFG: put CFG's rendered units into the root, enable them as
# their [Install] section says, place every store path they and the manifest
# reference (binary, manifest, rekeyed files) at that path, and the host key
# where the manifest expects it (/persist/... lives under /srv/persist, the
# source of the /persist mount).
install_config() {
  local cfg=$1 out=$WORK/out/$1 unit wanted p key
  for unit in "$out"/*.service; do
    cp "$unit" "$ROOT/etc/systemd/system/"
    # WantedBy= lists units separated by spaces: split into words.
    # shellcheck disable=SC2013
    for wanted in $(sed -n 's/^WantedBy=//p' "$unit"); do
      mkdir -p "$ROOT/etc/systemd/system/$wanted.wants"
      ln -sfn "../$(basename "$unit")" "$ROOT/etc/systemd/system/$wanted.wants/"
    done
  done
  CUR_MANIFEST_PATH=$(cat "$out/manifest-store-path")
  grep -qF -- "--manifest $CUR_MANIFEST_PATH" "$out/nixseal-activate.service" || {
    say "install_config $cfg: ExecStart does not name the manifest $CUR_MANIFEST_PATH" >&2
    return 1
  }
  mkdir -p "$ROOT/nix/store"
  while read -r p; do
    [ -e "$ROOT$p" ] || cp -a "$p" "$ROOT$p"
  done <"$out/store-paths"
  [ -x "$ROOT$BIN_STORE" ] || install -D -m 0555 "$BIN" "$ROOT$BIN_STORE"
  key=$(jq -r '.hostKeys[0].path' "$out/manifest.json")
  case "$key" in /persist/*) key=/srv$key ;; esac
  install -D -m 0600 "$out/ssh_host_ed25519_key" "$ROOT$key"
  install -m 0644 "$out/ssh_host_ed25519_key.pub" "$ROOT$key.pub"
  CUR_MANIFEST=$ROOT$CUR_MANIFEST_PATH
  CUR_MP=$(jq -r .mountPoint "$CUR_MANIFEST")
}

# The test's own units: two consumers of secrets. Each start appends a line
# to starts; seen holds the hash of what it read.
install_base() {
  local db_path tls_path
  db_path=$(jq -r '.secrets[] | select(.name == "db-password") | .path' "$WORK/out/A/manifest.json")
  tls_path=$(jq -r '.secrets[] | select(.name == "tls-key") | .path' "$WORK/out/A/manifest.json")
  consumer_unit "$CONSUMER" nobody "$db_path" >"$ROOT/etc/systemd/system/$CONSUMER.service"
  consumer_unit "$TLS_SVC" root "$tls_path" >"$ROOT/etc/systemd/system/$TLS_SVC.service"
  mkdir -p "$ROOT/etc/systemd/system/multi-user.target.wants"
  ln -sfn "../$CONSUMER.service" "$ROOT/etc/systemd/system/multi-user.target.wants/"
  ln -sfn "../$TLS_SVC.service" "$ROOT/etc/systemd/system/multi-user.target.wants/"
}

consumer_unit() { # consumer_unit NAME USER SECRET_PATH
  cat <<UNIT
[Unit]
Description=nixseal test: a service that reads $3

[Service]
User=$2
StateDirectory=$1
ExecStart=/bin/sh -c 'echo start >>/var/lib/$1/starts; { sha256sum <$3 || echo unreadable; } >/var/lib/$1/seen; exec sleep infinity'

[Install]
WantedBy=multi-user.target
UNIT
}

# The lingering user: an account with a home, linger enabled (what
# `loginctl enable-linger` writes), so logind starts user@$HM_UID.service and
# its runtime directory at boot; two user services that read secrets, wanted
# by default.target as home-manager links them.
install_user_base() {
  echo "$HM_USER:x:$HM_UID:$HM_UID:nixseal test user:$HM_HOME:/bin/sh" >>"$ROOT/etc/passwd"
  echo "$HM_USER:x:$HM_UID:" >>"$ROOT/etc/group"
  echo "$HM_USER:!:19000:0:99999:7:::" >>"$ROOT/etc/shadow"
  mkdir -p "$ROOT/var/lib/systemd/linger"
  touch "$ROOT/var/lib/systemd/linger/$HM_USER"
  local ud=$ROOT$HM_HOME/.config/systemd/user
  mkdir -p "$ud/default.target.wants" "$ROOT$HM_HOME/.local/state" "$ROOT$HM_HOME/.ssh"
  user_consumer_unit "$USER_A" api-token >"$ud/$USER_A.service"
  user_consumer_unit "$USER_B" mail-password >"$ud/$USER_B.service"
  ln -sfn "../$USER_A.service" "$ud/default.target.wants/"
  ln -sfn "../$USER_B.service" "$ud/default.target.wants/"
  chown -R "$HM_UID:$HM_UID" "$ROOT$HM_HOME"
  chmod 0755 "$ROOT$HM_HOME"
  chmod 0700 "$ROOT$HM_HOME/.ssh"
}

user_consumer_unit() { # user_consumer_unit NAME SECRET
  cat <<UNIT
[Unit]
Description=nixseal test: a user service that reads %t/nixseal/$2

[Service]
ExecStart=/bin/sh -c 'echo start >>%h/.local/state/$1.starts; { sha256sum <%t/nixseal/$2 || echo unreadable; } >%h/.local/state/$1.seen; exec sleep infinity'

[Install]
WantedBy=default.target
UNIT
}

# install_user_config CFG: the user unit rendered from the home-manager
# module, where home-manager puts it (~/.config/systemd/user, linked from
# default.target.wants as its [Install] says), the store paths it names, and
# the user's key.
install_user_config() {
  local out=$WORK/out/$1 ud=$ROOT$HM_HOME/.config/systemd/user p
  install -o "$HM_UID" -g "$HM_UID" -m 0644 "$out/nixseal.service" "$ud/nixseal.service"
  check "user config $1: the unit is wanted by default.target" grep -qx 'WantedBy=default.target' "$ud/nixseal.service"
  ln -sfn ../nixseal.service "$ud/default.target.wants/nixseal.service"
  chown -h "$HM_UID:$HM_UID" "$ud/default.target.wants/nixseal.service"
  mkdir -p "$ROOT/nix/store"
  while read -r p; do
    [ -e "$ROOT$p" ] || cp -a "$p" "$ROOT$p"
  done <"$out/store-paths"
  [ -x "$ROOT$BIN_STORE" ] || install -D -m 0555 "$BIN" "$ROOT$BIN_STORE"
  install -o "$HM_UID" -g "$HM_UID" -m 0600 "$out/id_ed25519" "$ROOT$HM_HOME/.ssh/id_ed25519"
  CUR_USER_MANIFEST=$ROOT$(cat "$out/manifest-store-path")
}

# ucx COMMAND...: as the user, in their session's environment.
ucx() {
  cx setpriv --reuid="$HM_UID" --regid="$HM_UID" --clear-groups \
    env XDG_RUNTIME_DIR="$HM_RT" HOME="$HM_HOME" "$@"
}
uprop() { ucx systemctl --user show -P "$2" "$1"; }
ustarts() { cx sh -c "cat $HM_HOME/.local/state/$1.starts 2>/dev/null | wc -l"; }
useen() { cx sh -c "cut -d' ' -f1 $HM_HOME/.local/state/$1.seen 2>/dev/null"; }
usettle() {
  local i
  for i in $(seq 1 100); do
    [ -z "$(ucx systemctl --user list-jobs --no-legend)" ] && return 0
    sleep 0.05
  done
}

# check_user_secrets LABEL CFG: every secret and template of the user's
# manifest is at its path (%r = the runtime directory) owned by the user
# with its mode and CFG's content, and resolves into the runtime directory.
check_user_secrets() {
  local label=$1 cfg=$2 name path mode want got real
  while IFS=$'\t' read -r name path mode; do
    path=${path/#%r/$HM_RT}
    want="$HM_USER $HM_USER $(printf '%o' "$((8#$mode))") $(sha "$(expected "$cfg" "$name")")"
    got="$(cx stat -L -c '%U %G %a' "$path") $(cx sha256sum "$path" | cut -d' ' -f1)"
    check_eq "$label: $path has the user as owner, its mode and the content of $cfg" "$want" "$got"
    real=$(cx realpath "$path")
    check "$label: $path resolves into the runtime directory ($real)" grep -q "^$HM_RT/nixseal.d/[0-9]*/$name\$" <<<"$real"
  done < <(jq -r '(.secrets[], .templates[]) | [.name, .path, .mode] | @tsv' "$CUR_USER_MANIFEST")
}

# ------------------------------------------------------------ assertions ----

sha() { sha256sum "$1" | cut -d' ' -f1; }
expected() { printf '%s/out/%s/expected/%s' "$WORK" "$1" "$2"; }

# Number of starts of a test service so far, and the hash it last read.
starts() { cx sh -c "cat /var/lib/$1/starts 2>/dev/null | wc -l"; }
seen() { cx sh -c "cut -d' ' -f1 /var/lib/$1/seen 2>/dev/null"; }

# Wait until the container's job queue is empty (restarts are --no-block).
settle() {
  local i
  for i in $(seq 1 100); do
    [ -z "$(cx systemctl list-jobs --no-legend)" ] && return 0
    sleep 0.05
  done
}

# check_secrets LABEL CFG [MANIFEST]: every secret and template of the
# manifest is at its path with its owner, group, mode and CFG's content;
# those reached through a symlink resolve onto a ramfs (copies, symlink =
# false, live where their path says). With SKIP_USERS=1, neededForUsers
# secrets are not judged.
check_secrets() {
  local label=$1 cfg=$2 m=${3:-$CUR_MANIFEST} name path owner group mode symlink users want got real fs
  # One jq for the whole manifest: jq starts slowly.
  while IFS=$'\t' read -r name path owner group mode symlink users; do
    [ "${SKIP_USERS:-}" = 1 ] && [ "$users" = true ] && continue
    want="$owner $group $(printf '%o' "$((8#$mode))") $(sha "$(expected "$cfg" "$name")")"
    got="$(cx stat -L -c '%U %G %a' "$path") $(cx sha256sum "$path" | cut -d' ' -f1)"
    check_eq "$label: $path has owner, group, mode and content of $cfg" "$want" "$got"
    if [ "$symlink" = true ]; then
      real=$(cx realpath "$path")
      fs=$(cx findmnt -n -o FSTYPE --target "$real")
      check_eq "$label: $path resolves onto a ramfs ($real)" ramfs "$fs"
    fi
  done < <(jq -r '(.secrets[], .templates[]) | [.name, .path, .owner, .group, .mode,
    (.symlink != false), (.neededForUsers == true)] | @tsv' "$m")
}

check_ramfs() {
  local label=$1 mp fs opt
  mp=$CUR_MP
  fs=$(cx findmnt -n -o FSTYPE,VFS-OPTIONS --mountpoint "$mp")
  check_eq "$label: $mp is a ramfs of its own" ramfs "${fs%% *}"
  for opt in nosuid nodev noexec; do
    check "$label: $mp is mounted $opt ($fs)" grep -qE "(^|[ ,])$opt(,|$)" <<<"${fs#* }"
  done
}

# The activation units succeeded; the main one before sysinit.target and after
# the users one, the users one before systemd-sysusers.
check_units() {
  local label=$1 u=nixseal-activate.service finished sysinit
  check_eq "$label: $u succeeded" "success active 0" \
    "$(cprop $u Result) $(cprop $u ActiveState) $(cprop $u ExecMainStatus)"
  finished=$(cprop $u ActiveEnterTimestampMonotonic)
  sysinit=$(cprop sysinit.target ActiveEnterTimestampMonotonic)
  check "$label: $u finished (${finished} µs) before sysinit.target (${sysinit} µs)" \
    test "${finished:-0}" -gt 0 -a "${finished:-0}" -le "${sysinit:-0}"
  # The timestamps could be in order by luck: the ordering itself must be there.
  check "$label: systemd orders $u before sysinit.target and sysinit.target wants it" \
    test -n "$(cprop $u Before | grep -w sysinit.target)" -a -n "$(cprop $u WantedBy | grep -w sysinit.target)"
  [ "${2:-}" = main-only ] || check_users_unit "$label"
}

check_users_unit() {
  local label=$1 u=nixseal-activate.service uu=nixseal-activate-users.service udone uready
  check_eq "$label: $uu succeeded" "success active 0" \
    "$(cprop $uu Result) $(cprop $uu ActiveState) $(cprop $uu ExecMainStatus)"
  udone=$(cprop $uu ActiveEnterTimestampMonotonic)
  # systemd-sysusers runs only when /etc needs an update (first boot); its
  # start job is judged (ConditionTimestamp) either way.
  uready=$(cprop systemd-sysusers.service ConditionTimestampMonotonic)
  check "$label: $uu finished (${udone} µs) before systemd-sysusers (${uready} µs)" \
    test "${udone:-0}" -gt 0 -a "${udone:-0}" -le "${uready:-0}"
  check "$label: $u started after $uu finished" \
    test "$(cprop $u ExecMainStartTimestampMonotonic)" -ge "${udone:-0}"
}

# A consumer started after the activation and read CFG's secret.
check_consumer() {
  local label=$1 svc=$2 secret=$3 cfg=$4 started finished
  started=$(cprop "$svc.service" ExecMainStartTimestampMonotonic)
  finished=$(cprop nixseal-activate.service ActiveEnterTimestampMonotonic)
  check "$label: $svc started (${started} µs) after nixseal-activate finished (${finished} µs)" \
    test "${started:-0}" -gt "${finished:-0}" -a "${finished:-0}" -gt 0
  check_eq "$label: $svc read $secret of $cfg" "$(sha "$(expected "$cfg" "$secret")")" "$(seen "$svc")"
}

no_tmp_left() {
  local mp
  mp=$CUR_MP
  check_eq "$1: no *.tmp generation left in $mp" "" "$(cx find "$mp" -maxdepth 1 -name '*.tmp')"
}

# switch_to CFG: install CFG in the running container and restart the
# activation, as a NixOS switch does when the unit's manifest changed.
# Sets RESTART_RC.
switch_to() {
  install_config "$1"
  cexec systemctl daemon-reload
  RESTART_RC=0
  cexec systemctl restart nixseal-activate.service >/dev/null 2>&1 || RESTART_RC=$?
}

# log_of_last_run PATTERN [boot]: the journal of the last run of the
# activation unit (with `boot`: of all its runs in this boot), once it holds
# PATTERN (journald reads the unit's output asynchronously: wait up to 5 s).
log_of_last_run() {
  local id i log filter
  id=$(cprop nixseal-activate.service InvocationID)
  filter=("_SYSTEMD_INVOCATION_ID=$id" + "INVOCATION_ID=$id")
  [ "${2:-}" = boot ] && filter=(-b -u nixseal-activate.service)
  for i in $(seq 1 50); do
    log=$(cx journalctl --no-pager -o cat "${filter[@]}")
    grep -q -- "$1" <<<"$log" && break
    sleep 0.1
  done
  printf '%s\n' "$log"
}

# ------------------------------------------------------------- scenarios ----

boot_or_die() {
  if ! boot; then
    fail "$1: the container boots"
    exit 1
  fi
  check "$1: the system reaches running or degraded (is: $SYSTEM_STATE)" \
    grep -qxE 'running|degraded' <<<"$SYSTEM_STATE"
  check_eq "$1: systemd found no ordering cycle" "" \
    "$(cx journalctl -b --no-pager -o cat | grep -iE 'ordering cycle|job .* deleted to break')"
}

scenario_first_boot() {
  local L="boot 1"
  boot_or_die "$L"
  check_eq "$L: the system is running (nothing failed)" running "$SYSTEM_STATE"
  check_units "$L"
  check_eq "$L: $CONSUMER started once (no restart during early boot)" 1 "$(starts $CONSUMER)"
  check_ramfs "$L"
  check_eq "$L: the ramfs root is mode 751, root-owned" "751 root root" \
    "$(cx stat -c '%a %U %G' "$CUR_MP")"
  check_secrets "$L" A
  check_consumer "$L" "$CONSUMER" db-password A
  check_consumer "$L" "$TLS_SVC" tls-key A
  check_eq "$L: another user cannot read db-password" denied \
    "$(cexec setpriv --reuid=daemon --regid=daemon --clear-groups cat /run/nixseal/db-password >/dev/null 2>&1 && echo readable || echo denied)"
}

# At boot the lingering user's manager starts (logind, user@$HM_UID) and
# runs the module's nixseal.service at its default.target: the secrets are
# decrypted into the runtime directory before the user services that read
# them start.
scenario_user_login() {
  local L="user session (login)" i st fin a_start b_start
  for i in $(seq 1 200); do
    st=$(ucx systemctl --user is-system-running)
    grep -qxE 'running|degraded' <<<"$st" && break
    sleep 0.1
  done
  check_eq "$L: user@$HM_UID.service (lingering) is active" active "$(cprop "user@$HM_UID.service" ActiveState)"
  check_eq "$L: the user's manager is running" running "$st"
  check_eq "$L: $HM_RT is a tmpfs of the user's, mode 700" "tmpfs $HM_USER 700" \
    "$(cx findmnt -n -o FSTYPE --mountpoint "$HM_RT") $(cx stat -c '%U %a' "$HM_RT")"
  check_eq "$L: the user's nixseal.service succeeded" "success active 0" \
    "$(uprop nixseal.service Result) $(uprop nixseal.service ActiveState) $(uprop nixseal.service ExecMainStatus)"
  check_eq "$L: its generations are a plain 0700 directory of the user's in the runtime directory, no mount" \
    "directory $HM_USER 700 tmpfs" \
    "$(cx stat -c '%F %U %a' "$HM_RT/nixseal.d") $(cx findmnt -n -o FSTYPE --target "$HM_RT/nixseal.d")"
  check_secrets_user_fs "$L"
  check_user_secrets "$L" U
  check_eq "$L: the custom path under \$HOME is a symlink through the stable symlink" "$HM_RT/nixseal/netrc" \
    "$(cx readlink "$HM_HOME/.config/nixseal-test/netrc")"
  fin=$(uprop nixseal.service ActiveEnterTimestampMonotonic)
  a_start=$(uprop "$USER_A.service" ExecMainStartTimestampMonotonic)
  b_start=$(uprop "$USER_B.service" ExecMainStartTimestampMonotonic)
  check "$L: $USER_A and $USER_B started ($a_start, $b_start µs) after nixseal.service finished ($fin µs)" \
    test "${fin:-0}" -gt 0 -a "${a_start:-0}" -gt "${fin:-0}" -a "${b_start:-0}" -gt "${fin:-0}"
  check_eq "$L: $USER_A read api-token" "$(sha "$(expected U api-token)")" "$(useen $USER_A)"
  check_eq "$L: $USER_B read mail-password" "$(sha "$(expected U mail-password)")" "$(useen $USER_B)"
  check_eq "$L: each user service started once (no restart while the session starts)" "1 1" \
    "$(ustarts $USER_A) $(ustarts $USER_B)"
  check_eq "$L: another user cannot read the user's secrets" denied \
    "$(cexec setpriv --reuid=daemon --regid=daemon --clear-groups cat "$HM_RT/nixseal/api-token" >/dev/null 2>&1 && echo readable || echo denied)"
  check_eq "$L: the records are in the user's 0700 state directory" "$HM_USER 700" \
    "$(cx stat -c '%U %a' "$HM_HOME/.local/state/nixseal")"
}

check_secrets_user_fs() {
  check_eq "$1: the lock is the user's, in the runtime directory" "$HM_USER 600" \
    "$(cx stat -c '%U %a' "$HM_RT/.nixseal.d.lock")"
}

# user_switch_to CFG: what `home-manager switch` does when the manifest
# changed: the new unit file, daemon-reload, restart (sd-switch). Sets
# RESTART_RC.
user_switch_to() {
  install_user_config "$1"
  ucx systemctl --user daemon-reload >/dev/null
  RESTART_RC=0
  cexec setpriv --reuid="$HM_UID" --regid="$HM_UID" --clear-groups \
    env XDG_RUNTIME_DIR="$HM_RT" HOME="$HM_HOME" systemctl --user restart nixseal.service >/dev/null 2>&1 || RESTART_RC=$?
}

scenario_user_rotation() {
  local L="user session: rotation of mail-password" a0 b0 gen0 gen1 i
  usettle
  a0=$(ustarts $USER_A)
  b0=$(ustarts $USER_B)
  gen0=$(cx readlink "$HM_RT/nixseal")
  user_switch_to U2
  check_eq "$L: systemctl --user restart nixseal succeeds" 0 "$RESTART_RC"
  gen1=$(cx readlink "$HM_RT/nixseal")
  check "$L: a new generation is active ($gen0 -> $gen1)" test -n "$gen1" -a "$gen1" != "$gen0"
  check_user_secrets "$L" U2
  for i in $(seq 1 100); do [ "$(ustarts $USER_B)" -gt "$b0" ] && break; sleep 0.05; done
  usettle
  check_eq "$L: $USER_B (lists mail-password) was restarted once" $((b0 + 1)) "$(ustarts $USER_B)"
  check_eq "$L: $USER_A (unchanged api-token) was not restarted" "$a0" "$(ustarts $USER_A)"
  check_eq "$L: the restarted $USER_B read the new mail-password" "$(sha "$(expected U2 mail-password)")" "$(useen $USER_B)"
  check_eq "$L: no *.tmp generation left" "" "$(cx find "$HM_RT/nixseal.d" -maxdepth 1 -name '*.tmp')"

  L="user session: corrupt api-token"
  a0=$(ustarts $USER_A)
  b0=$(ustarts $USER_B)
  user_switch_to U3
  check "$L: the restart fails" test "$RESTART_RC" -ne 0
  check_eq "$L: the unit's result is exit-code" exit-code "$(uprop nixseal.service Result)"
  check "$L: its log names the secret api-token" grep -q 'api-token' \
    <<<"$(cx journalctl --no-pager -o cat _UID="$HM_UID" USER_UNIT=nixseal.service + _UID="$HM_UID" _SYSTEMD_USER_UNIT=nixseal.service)"
  check_eq "$L: the previous generation stays active" "$gen1" "$(cx readlink "$HM_RT/nixseal")"
  CUR_USER_MANIFEST=$ROOT$(cat "$WORK/out/U2/manifest-store-path")
  check_user_secrets "$L (U2 still in place)" U2
  check_eq "$L: no *.tmp generation left" "" "$(cx find "$HM_RT/nixseal.d" -maxdepth 1 -name '*.tmp')"
  usettle
  check_eq "$L: no user service was restarted" "$a0 $b0" "$(ustarts $USER_A) $(ustarts $USER_B)"
  # Back to U2 for the boots that follow.
  install_user_config U2
}

# rotate LABEL CFG: switch to CFG; a new generation must become active.
rotate() {
  local L=$1 gen0 gen1
  gen0=$(cx readlink /run/nixseal)
  switch_to "$2"
  check_eq "$L: systemctl restart nixseal-activate succeeds" 0 "$RESTART_RC"
  gen1=$(cx readlink /run/nixseal)
  check "$L: a new generation is active ($gen0 -> $gen1)" test -n "$gen1" -a "$gen1" != "$gen0"
  check_secrets "$L" "$2"
  no_tmp_left "$L"
}

wait_starts() { # wait_starts SERVICE MORE_THAN
  local i
  for i in $(seq 1 100); do
    [ "$(starts "$1")" -gt "$2" ] && return 0
    sleep 0.05
  done
}

scenario_rotation() {
  local c0 t0
  settle
  c0=$(starts $CONSUMER)
  t0=$(starts $TLS_SVC)
  rotate "rotation of tls-key" R
  settle
  check_eq "rotation of tls-key: $CONSUMER (lists only the unchanged db-password) was not restarted" \
    "$c0" "$(starts $CONSUMER)"
  check_eq "rotation of tls-key: $TLS_SVC (lists nothing) was not restarted" "$t0" "$(starts $TLS_SVC)"

  rotate "rotation of db-password" B
  wait_starts $CONSUMER "$c0"
  settle
  check_eq "rotation of db-password: $CONSUMER (lists db-password) was restarted once" \
    $((c0 + 1)) "$(starts $CONSUMER)"
  check_eq "rotation of db-password: $TLS_SVC (unchanged secret) was not restarted" \
    "$t0" "$(starts $TLS_SVC)"
  check_eq "rotation of db-password: the restarted $CONSUMER read the new db-password" \
    "$(sha "$(expected B db-password)")" "$(seen $CONSUMER)"
  GEN_B=$(cx readlink /run/nixseal)
}

scenario_runtime_failure() {
  local L="failure at runtime" c0 t0 log
  settle
  c0=$(starts $CONSUMER)
  t0=$(starts $TLS_SVC)
  switch_to C
  check "$L: restarting with a corrupt rekeyed tls-key fails" test "$RESTART_RC" -ne 0
  check_eq "$L: the unit's result is exit-code" exit-code "$(cprop nixseal-activate.service Result)"
  log=$(log_of_last_run 'tls-key')
  check "$L: the failure message names the secret tls-key" grep -q 'tls-key' <<<"$log"
  check_eq "$L: the previous generation stays active" "$GEN_B" "$(cx readlink /run/nixseal)"
  check_secrets "$L (B still in place)" B "$ROOT$(cat "$WORK/out/B/manifest-store-path")"
  check_eq "$L: nobody (its owner) can still read db-password" "$(sha "$(expected B db-password)")" \
    "$(cx setpriv --reuid=nobody --regid=nogroup --clear-groups sha256sum /run/nixseal/db-password | cut -d' ' -f1)"
  no_tmp_left "$L"
  settle
  check_eq "$L: no service was restarted" "$c0 $t0" "$(starts $CONSUMER) $(starts $TLS_SVC)"
  check "$L: the system is degraded or running, not stuck" \
    grep -qxE 'running|degraded' <<<"$(cx systemctl is-system-running)"
  if [ "$FAILED" -gt "$FAILED_AT_BOOT" ]; then
    say "   the failed run's log:"
    printf '   | %s\n' "${log//$'\n'/$'\n'   | }"
  fi
}

scenario_reboot() {
  local L="boot 2 (reboot)" mp boot1 boot2
  mp=$CUR_MP
  # Back to the good configuration (a rollback); a marker shows whether the
  # ramfs after the reboot is a fresh one.
  install_config B
  cexec systemctl daemon-reload
  check "boot 1: a marker file can be left in the ramfs" cexec touch "$mp/marker-from-boot-1"
  boot1=$(cx cat /proc/sys/kernel/random/boot_id)
  shutdown_container reboot
  check_eq "boot 1: systemctl reboot shuts the container down cleanly (nspawn exit 133)" 133 "$NSPAWN_RC"
  boot_or_die "$L"
  boot2=$(cx cat /proc/sys/kernel/random/boot_id)
  check "$L: a new boot ($boot1 -> $boot2)" test "$boot1" != "$boot2"
  check_units "$L"
  check_ramfs "$L"
  check_eq "$L: the ramfs is fresh (boot 1's marker is gone)" absent \
    "$(cexec test -e "$mp/marker-from-boot-1" && echo present || echo absent)"
  check_secrets "$L" B
  check_consumer "$L" "$CONSUMER" db-password B
  check_consumer "$L" "$TLS_SVC" tls-key B
}

scenario_boot_failure() {
  local L="boot 3 (corrupt file at boot)" log
  install_config C
  shutdown_container reboot
  boot_or_die "$L"
  check_eq "$L: nixseal-activate failed" "failed exit-code" \
    "$(cprop nixseal-activate.service ActiveState) $(cprop nixseal-activate.service Result)"
  check_eq "$L: multi-user.target was still reached" active "$(cprop multi-user.target ActiveState)"
  log=$(log_of_last_run 'tls-key' boot)
  check "$L: the failure message names the secret tls-key" grep -q 'tls-key' <<<"$log"
  check_eq "$L: no generation of the failed run is visible" "" \
    "$(cx find "$CUR_MP" -mindepth 1 -maxdepth 1 ! -name '*.lock')"
}

# The host key lives on /persist, mounted by a unit that nothing but the
# activation's RequiresMountsFor= pulls in, and only after a slow dependency:
# without that dependency the key would not be there yet.
scenario_persist_mount() {
  local L="boot 4 (host key on a mount)" mounted started
  rm -f "$ROOT/etc/ssh/ssh_host_ed25519_key" "$ROOT/etc/ssh/ssh_host_ed25519_key.pub"
  install_config P
  install -d -m 0755 "$ROOT/persist"
  cat >"$ROOT/etc/systemd/system/slow-persist.service" <<'UNIT'
[Unit]
Description=a slow device behind /persist
DefaultDependencies=no

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sleep 1
UNIT
  cat >"$ROOT/etc/systemd/system/persist.mount" <<'UNIT'
[Unit]
Description=/persist (holds the host key)
Requires=slow-persist.service
After=slow-persist.service

[Mount]
What=/srv/persist
Where=/persist
Type=none
Options=bind
UNIT
  check "$L: the unit asks for the key's mount" \
    grep -qx 'RequiresMountsFor=/persist/etc/ssh' "$ROOT/etc/systemd/system/nixseal-activate.service"
  check "$L: and for the state directory's (stateDir)" \
    grep -qx 'RequiresMountsFor=/var/lib/nixseal' "$ROOT/etc/systemd/system/nixseal-activate.service"
  shutdown_container reboot
  boot_or_die "$L"
  check_units "$L" main-only
  check_eq "$L: persist.mount is active" active "$(cprop persist.mount ActiveState)"
  mounted=$(cprop persist.mount ActiveEnterTimestampMonotonic)
  started=$(cprop nixseal-activate.service ExecMainStartTimestampMonotonic)
  check "$L: nixseal-activate started (${started} µs) after /persist was mounted (${mounted} µs)" \
    test "${mounted:-0}" -gt 0 -a "${started:-0}" -gt "${mounted:-0}"
  SKIP_USERS=1 check_secrets "$L" P
  check_consumer "$L" "$CONSUMER" db-password P
  # The users unit runs before systemd-sysusers, earlier than any late mount
  # can be ordered (a mount after local-fs-pre.target would be a cycle): a key
  # it needs must be mounted by the initrd (neededForBoot). Here it is not, so
  # it must fail and say which key is missing and what to do.
  check_eq "$L: nixseal-activate-users (not ordered after late mounts) failed" "failed exit-code" \
    "$(cprop nixseal-activate-users.service ActiveState) $(cprop nixseal-activate-users.service Result)"
  check "$L: its message names the missing key /persist/etc/ssh/ssh_host_ed25519_key and the fix" \
    grep -q '/persist/etc/ssh/ssh_host_ed25519_key.*mounted' \
    <<<"$(cx journalctl -b --no-pager -o cat -u nixseal-activate-users.service)"
}

main() {
  SUMMARY=1
  trap cleanup EXIT
  trap 'exit 130' INT TERM
  set -E
  trap 'ABORT_AT="${BASH_SOURCE[0]##*/}:$LINENO: $BASH_COMMAND"' ERR
  setup_tools
  nixseal_bin
  WORK=$(mktemp -d /tmp/nixseal-systemd.XXXXXX)
  JOURNAL_EXTRA=("$CONSUMER.service" "$TLS_SVC.service" persist.mount slow-persist.service "user@$HM_UID.service")
  render_all
  make_root
  say "rendered and root ready after $(elapsed) s"
  install_base
  install_user_base
  install_config A
  install_user_config U

  scenario_first_boot
  scenario_user_login
  scenario_user_rotation
  scenario_rotation
  scenario_runtime_failure
  scenario_reboot
  scenario_boot_failure
  scenario_persist_mount

  shutdown_container poweroff
  check_eq "poweroff: the container shuts down cleanly (nspawn exit 0)" 0 "$NSPAWN_RC"
  say "systemd tests took $(elapsed) s ($BOOT_N boots)"
}

main "$@"
