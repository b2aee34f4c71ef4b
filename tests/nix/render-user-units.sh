#!/usr/bin/env bash
# Render the home-manager module's systemd user unit and user-session
# manifest, offline (for a user-session test under a real systemd).
#
# Usage: tests/nix/render-user-units.sh OUTDIR [--nixseal BIN] [--manifest-path PATH]
#          [--user NAME] [--home DIR] [--key-path PATH] [--key FILE] [--values DIR]
#
# Evaluates modules/home-manager.nix in the stand-in home-manager
# (tests/nix/lib) for the standalone home of user NAME (default
# nixseal-test, home DIR default /home/NAME, target name test.NAME) with:
#   api-token      0400, restartUnits nixseal-test-user-a.service
#   mail-password  0400, restartUnits nixseal-test-user-b.service
#   netrc          0600, a symlink at DIR/.config/nixseal-test/netrc
#   app.env        template "TOKEN=<api-token>\n"
# and writes into OUTDIR:
#   nixseal.service        the user unit, as home-manager renders it
#                          (its [Install] WantedBy=default.target)
#   activation.sh          the home.activation entry `nixseal` (bash, as it
#                          appears in home-manager's activate script)
#   manifest.json          the user-session manifest ("session": "user")
#   manifest-store-path    where the unit expects it (its store path, or
#                          --manifest-path)
#   store-paths            closure of the manifest (its `source`s are store
#                          paths: bind or copy these into a container)
#   id_ed25519{,.pub}      the user's key that decrypts the secrets; the
#                          manifest expects it at --key-path (default
#                          DIR/.ssh/id_ed25519)
#   expected/<name>        the plaintext each secret/template must have
# --key FILE reuses that private key (FILE.pub next to it) instead of making
# one; --values DIR takes a secret's plaintext from DIR/<name> when that
# file exists (else a random one): render twice with the same key and one
# value changed to test a rotation.
# ExecStart uses BIN (default: the cargo-built target/debug/nixseal, absolute).
# Exit 0 on success, 2 on bad usage, 1 otherwise.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib/common.sh"

out=""
bin=""
manifest_path=""
user=nixseal-test
home=""
key_path=""
key=""
values=""
while [ $# -gt 0 ]; do
  case "$1" in
    --nixseal) bin="$2"; shift 2 ;;
    --manifest-path) manifest_path="$2"; shift 2 ;;
    --user) user="$2"; shift 2 ;;
    --home) home="$2"; shift 2 ;;
    --key-path) key_path="$2"; shift 2 ;;
    --key) key="$2"; shift 2 ;;
    --values) values="$2"; shift 2 ;;
    -*) echo "render-user-units: unknown option $1" >&2; exit 2 ;;
    *) [ -z "$out" ] || { echo "render-user-units: one OUTDIR only" >&2; exit 2; }; out="$1"; shift ;;
  esac
done
[ -n "$out" ] || { sed -n '2,5p' "$0" >&2; exit 2; }
[ -n "$home" ] || home=/home/$user
[ -n "$key_path" ] || key_path=$home/.ssh/id_ed25519
[ -n "$bin" ] || bin=$(nixseal_bin)
if [ -n "$key" ] && [ ! -f "$key" ]; then
  echo "render-user-units: --key $key does not exist" >&2
  exit 2
fi
mkdir -p "$out/expected"
out=$(cd "$out" && pwd)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fleet_keys "$work"
target=test.$user
mkdir -p "$work/hostkeys/$target"
if [ -n "$key" ]; then
  cp "$key" "$work/hostkeys/$target/ssh_host_ed25519_key"
  cp "$key.pub" "$work/hostkeys/$target/ssh_host_ed25519_key.pub"
else
  fleet_hostkey "$work" "$target"
fi
value() { # NAME DEFAULT: the plaintext of NAME
  if [ -n "$values" ] && [ -f "$values/$1" ]; then cat "$values/$1"; else printf '%s' "$2"; fi
}
value api-token "api-token-$RANDOM$RANDOM" >"$out/expected/api-token"
value mail-password "mail-$RANDOM$RANDOM" >"$out/expected/mail-password"
value netrc "machine example.org login $user password $RANDOM$RANDOM
" >"$out/expected/netrc"
for s in api-token mail-password netrc; do fleet_secret "$work" "secrets/$s.age" <"$out/expected/$s"; done
printf 'TOKEN=%s\n' "$(cat "$out/expected/api-token")" >"$out/expected/app.env"
fleet_age_rekey "$work" "$target" api-token=secrets/api-token.age mail-password=secrets/mail-password.age netrc=secrets/netrc.age
cp "$work/hostkeys/$target/ssh_host_ed25519_key" "$out/id_ed25519"
cp "$work/hostkeys/$target/ssh_host_ed25519_key.pub" "$out/id_ed25519.pub"

cat >"$work/home.nix" <<NIX
{ config, ... }:
{
  home.username = "$user";
  home.homeDirectory = "$home";
  home.stateVersion = "24.11";
  nixseal.settings = {
    targetName = "$target";
    userPubkey = "$(cat "$out/id_ed25519.pub")";
    userKeys = [ "$key_path" ];
    rekeyedDir = ./secrets/rekeyed;
  };
  nixseal.secrets.api-token = {
    file = ./secrets/api-token.age;
    restartUnits = [ "nixseal-test-user-a.service" ];
  };
  nixseal.secrets.mail-password = {
    file = ./secrets/mail-password.age;
    restartUnits = [ "nixseal-test-user-b.service" ];
  };
  nixseal.secrets.netrc = {
    file = ./secrets/netrc.age;
    mode = "0600";
    path = "\${config.home.homeDirectory}/.config/nixseal-test/netrc";
  };
  nixseal.templates."app.env".content = "TOKEN=\${config.nixseal.placeholder.api-token}\n";
}
NIX

expr="let
  h = import $here/lib/eval-home.nix { nixpkgsLib = $SHARED_NIX/nixpkgs-lib/lib; modules = [ $work/home.nix ]; };
in {
  manifest = h.config.nixseal.build.manifest;
  unit = h.config.xdg.configFile.\"systemd/user/nixseal.service\".source;
  activation = h.config.home.activation.nixseal.data;
}"
nix build --impure --expr "($expr).manifest" -o "$work/manifest"
nix build --impure --expr "($expr).unit" -o "$work/unit"
manifest=$(readlink "$work/manifest")
cp "$manifest" "$out/manifest.json"
chmod 0644 "$out/manifest.json"
nix-store -qR "$manifest" >"$out/store-paths"
[ -n "$manifest_path" ] || manifest_path=$manifest
echo "$manifest_path" >"$out/manifest-store-path"
sed -e "s|/nixseal-placeholder/bin/nixseal|$bin|g" -e "s|$manifest|$manifest_path|g" "$work/unit" >"$out/nixseal.service"
nix eval --impure --raw --expr "($expr).activation" |
  sed -e "s|/nixseal-placeholder/bin/nixseal|$bin|g" -e "s|$manifest|$manifest_path|g" >"$out/activation.sh"
echo "render-user-units: wrote $out" >&2
