#!/usr/bin/env bash
# TEMPORARY — delete once tests/nix/render-units.sh (branch `nix`) exists.
#
# Stands in for the NixOS module's renderer so the container harness can be
# built and proven before the module lands: writes a hand-made
# nixseal-activate.service and host manifest for a test configuration.
# run.sh uses it only when tests/nix/render-units.sh is absent and says so.
#
# Usage: TEMPORARY-handwritten-units.sh SPEC.json REKEYED_HOST_DIR OUTDIR STORE
#   SPEC: {"hostKeys":[...],"secrets":[{"name","owner","group","mode",
#          "restartUnits","neededForUsers"}]}
#   Writes OUTDIR/nixseal-activate.service, OUTDIR/manifest.json; puts the
#   manifest and rekeyed files under STORE/<hash>-<name> (copied into the
#   container's /nix/store by run.sh).
set -euo pipefail
spec=$1 rekeyed=$2 out=$3 store=$4
mkdir -p "$out" "$store"

# A fake but well-formed store path: 32 chars of Nix's base32 alphabet.
store_name() { # store_name FILE NAME
  local h
  h=$(sha256sum "$1" | cut -c1-32 | tr '0-9a-f' '0123456789abcdfg')
  printf '%s-%s' "$h" "$2"
}

secrets='[]'
for name in $(jq -r '.secrets[].name' "$spec"); do
  sn=$(store_name "$rekeyed/$name.age" "box-$name.age")
  cp "$rekeyed/$name.age" "$store/$sn"
  secrets=$(jq --arg n "$name" --arg src "/nix/store/$sn" --argjson s "$(jq --arg n "$name" '.secrets[] | select(.name == $n)' "$spec")" \
    '. + [{name: $n, source: $src, owner: $s.owner, group: $s.group, mode: $s.mode,
           path: ("/run/nixseal/" + $n), symlink: true, restartUnits: $s.restartUnits,
           reloadUnits: [], neededForUsers: $s.neededForUsers}]' <<<"$secrets")
done
jq -n --argjson secrets "$secrets" --argjson keys "$(jq '.hostKeys' "$spec")" \
  '{version: 1, hostKeys: $keys, mountPoint: "/run/nixseal.d", symlink: "/run/nixseal",
    keepGenerations: 1, secrets: $secrets, templates: []}' >"$out/manifest.json"
mn=$(store_name "$out/manifest.json" "box-nixseal-manifest.json")
cp "$out/manifest.json" "$store/$mn"

mounts=$(jq -r '[.hostKeys[].path] | join(" ")' "$spec")
cat >"$out/nixseal-activate.service" <<UNIT
[Unit]
Description=nixseal: decrypt secrets (TEMPORARY hand-written unit)
DefaultDependencies=no
After=local-fs.target systemd-sysusers.service
Before=sysinit.target
RequiresMountsFor=$mounts

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/nix/store/00000000000000000000000000000000-nixseal-TEMPORARY/bin/nixseal deploy --manifest /nix/store/$mn

[Install]
WantedBy=sysinit.target
UNIT
