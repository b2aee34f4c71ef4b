#!/usr/bin/env bash
# The whole Nix flow on the example fleet (tests/nix/fixture: web1, web2, a
# template, a neededForUsers secret), offline, showing each command:
#   set up the fleet (git repo, master key, host keys, master secrets)
#   nix run .#renc; git add secrets/rekeyed; nix run .#check
#   nix run .#deploy -- web1, in a private mount namespace with web1's host key
#   show /run/nixseal as web1 would see it
# Needs root (mount namespace), nix-bin, age, and ../shared/nix. Env:
# NIXSEAL_BIN to use a given binary, KEEP=1 to keep the work directory.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib/common.sh"
. "$here/lib/setup.sh"

BIN=$(nixseal_bin)
if ! "$BIN" deploy --help >/dev/null 2>&1; then
  echo "demo: this nixseal has no \`deploy\` yet (merge the deploy branch first)" >&2
  exit 2
fi
W=$(mktemp -d /tmp/nixseal-demo.XXXXXX)
[ -n "${KEEP:-}" ] || trap 'rm -rf "$W"' EXIT
show() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

echo "Setting up the example fleet in $W/fleet (web1, web2; master key keys/master.age)"
setup_world "$W" 2>/dev/null
cd "$W/fleet"
show git ls-files
show nix run .#renc
show git add secrets/rekeyed
show nix run .#check

echo
echo "Deploying web1 on this machine, inside a private mount namespace (with web1's host key):"
unshare -m --propagation private bash -euc '
  show() { printf "\n\033[1m$ %s\033[0m\n" "$*"; "$@"; }
  mount -t tmpfs -o mode=0755 tmpfs /run
  mkdir -p /etc/ssh && mount -t tmpfs -o mode=0755 tmpfs /etc/ssh
  install -m 0600 "$1" /etc/ssh/ssh_host_ed25519_key
  show nix run .#deploy -- web1 --no-restart
  show ls -l /run/nixseal/ /run/nixseal-for-users/
  show cat /run/nixseal/app.env
  show findmnt /run/nixseal.d
' _ "$W/hostkeys/web1/ssh_host_ed25519_key"
echo
echo "Done: web1 got db-password (nobody:nogroup 0400), app.env rendered from it, and"
echo "root-password (neededForUsers) under /run/nixseal-for-users; web2's api-token is not there."
