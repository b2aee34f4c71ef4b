#!/usr/bin/env bash
# Render the NixOS module's systemd units and host manifest, offline.
#
# Usage: tests/nix/render-units.sh OUTDIR [--nixseal BIN] [--manifest-path PATH]
#                                         [--host-key-path PATH]
#
# Evaluates modules/nixos.nix in the stand-in NixOS (tests/nix/lib) for a test
# host "web1" with systemd-sysusers enabled and these secrets:
#   db-password   owner nobody:nogroup 0400, restartUnits nixseal-test-consumer.service
#   root-password neededForUsers (root:root 0400)
#   tls-key       copied (symlink = false, allowPlaintextOnDisk) to
#                 /var/lib/nixseal-test/tls.key, 0440
#   app.env       template "PASSWORD=<db-password>\n", root 0400
# and writes into OUTDIR:
#   nixseal-activate.service        the unit, as NixOS renders it, plus an
#   nixseal-activate-users.service  [Install] section standing in for NixOS'
#                                   <target>.wants/ links
#   manifest.json                   the host manifest (version 1)
#   manifest-store-path             where the units expect it (its store path,
#                                   or --manifest-path)
#   store-paths                     closure of the manifest (bind or copy these
#                                   into a container: `source`s are store paths)
#   ssh_host_ed25519_key{,.pub}     the host key that decrypts the secrets;
#                                   the manifest expects it at --host-key-path
#                                   (default /etc/ssh/ssh_host_ed25519_key)
#   expected/<name>                 the plaintext each secret/template must have
# ExecStart uses BIN (default: the cargo-built target/debug/nixseal, absolute).
# Exit 0 on success, 2 on bad usage, 1 otherwise.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib/common.sh"

out=""
bin=""
manifest_path=""
host_key_path=/etc/ssh/ssh_host_ed25519_key
while [ $# -gt 0 ]; do
  case "$1" in
    --nixseal) bin="$2"; shift 2 ;;
    --manifest-path) manifest_path="$2"; shift 2 ;;
    --host-key-path) host_key_path="$2"; shift 2 ;;
    -*) echo "render-units: unknown option $1" >&2; exit 2 ;;
    *) [ -z "$out" ] || { echo "render-units: one OUTDIR only" >&2; exit 2; }; out="$1"; shift ;;
  esac
done
[ -n "$out" ] || { sed -n '2,4p' "$0" >&2; exit 2; }
[ -n "$bin" ] || bin=$(nixseal_bin)
mkdir -p "$out/expected"
out=$(cd "$out" && pwd)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fleet_keys "$work"
fleet_hostkey "$work" web1
printf 'db-secret-%s' "$RANDOM$RANDOM" | tee "$out/expected/db-password" | fleet_secret "$work" secrets/db-password.age
printf 'root:%s' "$RANDOM" | tee "$out/expected/root-password" | fleet_secret "$work" secrets/root-password.age
printf -- '-----BEGIN TEST KEY-----\n%s\n' "$RANDOM" | tee "$out/expected/tls-key" | fleet_secret "$work" secrets/tls-key.age
printf 'PASSWORD=%s\n' "$(cat "$out/expected/db-password")" >"$out/expected/app.env"
fleet_age_rekey "$work" web1 db-password=secrets/db-password.age root-password=secrets/root-password.age tls-key=secrets/tls-key.age
cp "$work/hostkeys/web1/ssh_host_ed25519_key" "$work/hostkeys/web1/ssh_host_ed25519_key.pub" "$out/"

cat >"$work/host.nix" <<NIX
{ config, ... }:
{
  networking.hostName = "web1";
  systemd.sysusers.enable = true;
  services.openssh.enable = true;
  services.openssh.hostKeys = [ { type = "ed25519"; path = "$host_key_path"; } ];
  nixseal.settings = {
    hostPubkey = "$(fleet_pubkey "$work" web1)";
    rekeyedDir = ./secrets/rekeyed;
  };
  nixseal.secrets.db-password = {
    file = ./secrets/db-password.age;
    owner = "nobody";
    group = "nogroup";
    restartUnits = [ "nixseal-test-consumer.service" ];
  };
  nixseal.secrets.root-password = { file = ./secrets/root-password.age; neededForUsers = true; };
  nixseal.secrets.tls-key = {
    file = ./secrets/tls-key.age;
    path = "/var/lib/nixseal-test/tls.key";
    symlink = false;
    # The container's /var/lib is on its disk.
    allowPlaintextOnDisk = true;
    mode = "0440";
  };
  nixseal.templates."app.env".content = "PASSWORD=\${config.nixseal.placeholder.db-password}\n";
  users.users.root.hashedPasswordFile = config.nixseal.secrets.root-password.path;
}
NIX

expr="let
  lib = import $SHARED_NIX/nixpkgs-lib/lib;
  os = import $here/lib/eval-host.nix { nixpkgsLib = $SHARED_NIX/nixpkgs-lib/lib; modules = [ $work/host.nix ]; };
in {
  manifest = os.config.nixseal.build.manifest;
  units = import $here/lib/render-units.nix { inherit lib; } {
    inherit (os.config.systemd.services) nixseal-activate nixseal-activate-users;
  };
}"
nix build --impure --expr "($expr).manifest" -o "$work/manifest" 
manifest=$(readlink "$work/manifest")
nix eval --impure --json --expr "($expr).units" >"$work/units.json"
cp "$manifest" "$out/manifest.json"
chmod 0644 "$out/manifest.json"
nix-store -qR "$manifest" >"$out/store-paths"
[ -n "$manifest_path" ] || manifest_path=$manifest
echo "$manifest_path" >"$out/manifest-store-path"
for unit in nixseal-activate nixseal-activate-users; do
  jq -r --arg u "$unit" '.[$u]' "$work/units.json" |
    sed -e "s|/nixseal-placeholder/bin/nixseal|$bin|g" -e "s|$manifest|$manifest_path|g" >"$out/$unit.service"
done
echo "render-units: wrote $out" >&2
