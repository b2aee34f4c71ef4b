#!/usr/bin/env bash
# Make (or reuse) the minimal Debian bookworm root the systemd tests boot.
#
# Usage: tests/systemd/rootfs.sh             prints the path of the cached tarball
#        tests/systemd/rootfs.sh --unpacked  prints a pristine unpacked copy of it
#
# The root is made once with debootstrap and cached as a zstd tarball under
# .cache/systemd/ (gitignored). The tarball name carries a hash of the suite,
# package list and recipe version, so changing any of them rebuilds it; a
# missing tarball is rebuilt.
# Tests never write to the cache: run.sh boots an overlay (or a copy) of the
# unpacked root, which is kept next to the tarball because unpacking takes
# ~8 s here and an overlay mount takes milliseconds.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache_dir=${NIXSEAL_SYSTEMD_CACHE:-$repo/.cache/systemd}
suite=bookworm
# Only what booting systemd and the tests need: systemd as PID 1, dbus for
# systemctl, libpam-systemd for user@.service (pam_systemd.so registers the
# session with logind, which makes /run/user/<uid> and sets XDG_RUNTIME_DIR;
# without it a lingering user's manager exits with "$XDG_RUNTIME_DIR is not
# set"), and minbase's coreutils/util-linux (mount, findmnt, stat, sha256sum).
packages=systemd,systemd-sysv,dbus,libpam-systemd
# Bump when the build steps below change, so caches are rebuilt.
recipe=1

# shellcheck source=tests/systemd/lib.sh
. "$here/lib.sh"
log() { printf 'rootfs: %s\n' "$*" >&2; }

main() {
  need_root
  ensure_tool zstd zstd
  local key tarball
  key=$(printf '%s\n' "$suite" "$packages" "$recipe" | sha256sum | cut -c1-12)
  tarball=$cache_dir/$suite-$key.tar.zst
  mkdir -p "$cache_dir"
  # One builder at a time; the others wait and then reuse its result.
  exec 9>"$cache_dir/.lock"
  flock 9
  [ -s "$tarball" ] || build_tarball "$tarball"
  case "${1:-}" in
    "") printf '%s\n' "$tarball" ;;
    --unpacked) unpacked "$tarball" ;;
    *) log "unknown argument: $1 (usage: rootfs.sh [--unpacked])"; exit 2 ;;
  esac
}

# unpacked TARBALL: print TARBALL's unpacked dir, making it if absent. It is
# renamed into place only when complete, so a killed run leaves no half root.
unpacked() {
  local tarball=$1 dir=${1%.tar.zst}.root
  if [ ! -d "$dir" ]; then
    rm -rf "$dir.tmp"
    mkdir -p "$dir.tmp"
    zstd -q -dc "$tarball" | tar --numeric-owner --xattrs -xf - -C "$dir.tmp"
    mv "$dir.tmp" "$dir"
  fi
  printf '%s\n' "$dir"
}

build_tarball() {
  local tarball=$1

  ensure_tool debootstrap debootstrap
  local mirror
  mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  if [ -z "$mirror" ] && [ -r /etc/apt/sources.list ]; then
    mirror=$(awk '$1=="deb"{print $2; exit}' /etc/apt/sources.list)
  fi
  mirror=${mirror:-http://deb.debian.org/debian}

  # Leftovers of a build that was killed.
  rm -rf "$cache_dir"/build.*
  local work
  work=$(mktemp -d "$cache_dir/build.XXXXXX")
  # shellcheck disable=SC2064
  trap "rm -rf '$work'" EXIT

  log "debootstrap $suite from $mirror (once; cached as $tarball)"
  local t0=$SECONDS
  if ! debootstrap --variant=minbase --include="$packages" "$suite" "$work/root" "$mirror" \
      >"$work/debootstrap.log" 2>&1; then
    log "debootstrap failed; last lines of its log:"
    tail -n 30 "$work/debootstrap.log" >&2
    exit 3
  fi
  # Trim what a boot test never reads: apt lists/caches, docs, man pages.
  rm -rf "$work/root/var/cache/apt/archives/"*.deb "$work/root/var/lib/apt/lists/"* \
    "$work/root/usr/share/doc/"* "$work/root/usr/share/man/"* "$work/root/usr/share/locale/"*
  # An empty machine-id: every boot of a copy gets its own, as on first boot.
  : >"$work/root/etc/machine-id"
  tar --numeric-owner --xattrs -C "$work/root" -cf - . | zstd -q -T0 -3 -o "$work/root.tar.zst"
  # The build dir is already the unpacked root: keep it instead of unpacking again.
  rm -rf "${tarball%.tar.zst}.root"
  mv "$work/root" "${tarball%.tar.zst}.root"
  mv "$work/root.tar.zst" "$tarball"
  # Drop caches of older package lists.
  local old
  for old in "$cache_dir/$suite"-*.tar.zst "$cache_dir/$suite"-*.root; do
    case "$old" in "${tarball%.tar.zst}"*) ;; *) rm -rf "$old" ;; esac
  done
  log "made $tarball in $((SECONDS - t0)) s ($(du -h "$tarball" | cut -f1))"
}

main "$@"
