#!/usr/bin/env bash
# Offline proof of nixseal's Nix side (flake, NixOS module, flake-parts module,
# plain-Nix apps) with Debian's nix-bin, ../shared/nix (nixpkgs lib +
# flake-parts), a stand-in NixOS option set and a stand-in nixpkgs whose
# nixseal package is the binary cargo built. No network.
#
# Usage: tests/nix/run.sh [FILTER]   (runs tests whose name contains FILTER)
# Env:   NIXSEAL_BIN=path  use this nixseal binary instead of `cargo build`
#        KEEP=1            keep the work directory
# Prints one line per test, then "N passed, N failed"; exit 1 if any failed.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib/common.sh"
. "$here/lib/setup.sh"

filter=${1:-}
passed=0
failed=0
W=$(mktemp -d /tmp/nixseal-nix-test.XXXXXX)
[ -n "${KEEP:-}" ] || trap 'rm -rf "$W"' EXIT
F=$W/fleet
SYSTEM=x86_64-linux
BIN=$(nixseal_bin) || { echo "cargo build failed" >&2; exit 1; }

# t NAME FUNCTION: run FUNCTION in a subshell with errexit (not inside an
# `if`, where bash would ignore errexit); its output is shown on failure.
t() {
  [[ -z "$filter" || "$1" == *"$filter"* ]] || return 0
  local log=$W/log.$passed.$failed rc
  (
    set -eE
    shopt -s inherit_errexit
    trap 'echo "failed (line $LINENO): $BASH_COMMAND" >&2' ERR
    cd "$F"
    "$2"
  ) >"$log" 2>&1
  rc=$?
  if [ "$rc" -eq 0 ]; then
    passed=$((passed + 1))
    echo "ok    $1"
  else
    failed=$((failed + 1))
    echo "FAIL  $1"
    sed 's/^/      /' "$log" | tail -40
  fi
}

# Helpers used inside tests.
fail() { echo "$*" >&2; return 1; }
contains() { # TEXT NEEDLE...
  local text=$1 n
  shift
  for n in "$@"; do
    grep -qF -- "$n" <<<"$text" || fail "expected to find: $n
in: $text"
  done
}
problems() { nix eval --json ".#nixosConfigurations.$1.config.nixseal.build.problems"; }
manifest() { nix build ".#nixosConfigurations.$1.config.nixseal.build.manifest" -o "$W/manifest-$1" && readlink "$W/manifest-$1"; }
# Build an app's program (Nix 2.8 cannot `nix build` a string) and print it.
app_program() {
  nix eval --json ".#apps.$SYSTEM.$1.program" --apply 'p: builtins.attrNames (builtins.getContext p)' |
    jq -r '.[]' | xargs nix-store -r >/dev/null
  nix eval --raw ".#apps.$SYSTEM.$1.program"
}
profile() { grep -o '/nix/store/[a-z0-9]*-nixseal-profile.json' "$(app_program renc)"; }
# Expect a command to fail; print its stderr.
fails() {
  local err
  if err=$("$@" 2>&1); then
    fail "expected failure: $*"
  fi
  printf '%s' "$err"
}
eval_host() { # NIX-MODULE-EXPR ATTR-PATH-EXPR -> JSON
  nix eval --impure --json --expr "let os = import $here/lib/eval-host.nix {
    nixpkgsLib = $SHARED_NIX/nixpkgs-lib/lib; modules = $1; }; in $2"
}

echo "setting up the fixture fleet in $W"
setup_world "$W" || { echo "setup failed" >&2; exit 1; }
setup_home_world "$W" || { echo "setup of the fleet with homes failed" >&2; exit 1; }

# ---------------------------------------------------------------- static
t_lock_pins() {
  local lock=$NIXSEAL_REPO/flake.lock
  [ "$(jq -r .nodes.nixpkgs.locked.rev "$lock")" = a799d3e3886da994fa307f817a6bc705ae538eeb ]
  [ "$(jq -r .nodes.nixpkgs.locked.narHash "$lock")" = sha256-3av0pIjlOWQ6rDbNOmpUSvbNnJkGORQKKjb4LtCZsIY= ]
  [ "$(jq -r '.nodes["flake-parts"].locked.rev' "$lock")" = f7c1a2d347e4c52d5fb8d10cb4d94b5884e546fb ]
  [ "$(jq -r '.nodes["flake-parts"].locked.narHash' "$lock")" = sha256-m1Yf0wZ8j1OHjTc2UwHwyQRSnNeSgLJOd7q5Y45hzi4= ]
  [ "$(jq -c '.nodes["flake-parts"].inputs["nixpkgs-lib"]' "$lock")" = '["nixpkgs"]' ]
  # The local flake-parts copy is the locked one.
  [ "$(nix hash path "$SHARED_NIX/flake-parts")" = sha256-m1Yf0wZ8j1OHjTc2UwHwyQRSnNeSgLJOd7q5Y45hzi4= ]
}
t "flake.lock pins nixpkgs and flake-parts (nixpkgs-lib follows nixpkgs)" t_lock_pins

t_parse() {
  local n=0
  while IFS= read -r f; do
    nix-instantiate --parse "$f" >/dev/null || fail "does not parse: $f"
    n=$((n + 1))
  done < <(cd "$NIXSEAL_REPO" && find "$NIXSEAL_REPO/checks" "$NIXSEAL_REPO/modules" "$NIXSEAL_REPO/flake-modules" "$NIXSEAL_REPO/tests/nix" "$NIXSEAL_REPO/flake.nix" -name '*.nix')
  [ "$(find "$NIXSEAL_REPO/checks" -name '*.nix' | wc -l)" -ge 2 ]
  echo "$n files parse"
}
t "every .nix file (checks/, modules/, flake-modules/, tests/nix) parses" t_parse

t_flake_outputs() {
  # nixseal's own flake.nix, as the fleet's input (nixpkgs and flake-parts
  # follow the fleet's offline ones).
  local names
  names=$(nix eval --impure --json --expr "let f = (builtins.getFlake \"git+file://$F\").inputs.nixseal; in {
    pkg = f.packages.x86_64-linux.default.name;
    same = f.packages.x86_64-linux.default == f.packages.x86_64-linux.nixseal;
    module = f.nixosModules ? default;
    flakeModule = f.flakeModules.default._class;
    overlay = (f.overlays.default f.inputs.nixpkgs.legacyPackages.x86_64-linux { }).nixseal.name;
    mkApps = builtins.isFunction f.lib.mkApps;
    checks = builtins.attrNames f.checks.x86_64-linux;
    aarch64 = f.packages ? aarch64-linux;
    devShell = f.devShells ? x86_64-linux;
    hmModule = let m = f.homeManagerModules.default { lib = f.inputs.nixpkgs.lib; pkgs = f.inputs.nixpkgs.legacyPackages.x86_64-linux; }; in
      [ m.key (toString (builtins.head m.imports)) m.nixseal.settings.package._type ];
  }")
  echo "$names"
  [ "$(jq -r .pkg <<<"$names")" = nixseal-0.1.0 ]
  [ "$(jq -r .overlay <<<"$names")" = nixseal-0.1.0 ]
  [ "$(jq -r .flakeModule <<<"$names")" = flake ]
  [ "$(jq -c '[.same,.module,.mkApps,.aarch64,.devShell]' <<<"$names")" = '[true,true,true,true,true]' ]
  [ "$(jq -c .hmModule <<<"$names" | sed 's|"/nix/store/[^"]*-source/|"|')" = '["nixseal#homeManagerModules.default","modules/home-manager.nix","override"]' ]
}
t "nixseal's flake evaluates: package, overlay, nixosModules, homeManagerModules, flakeModules, lib.mkApps" t_flake_outputs

# Issue 11.1: the package builds from exactly the source the flake gives
# cargo (the stand-in buildRustPackage compiles `src`).
t_package_src() {
  local pkg="(builtins.getFlake \"git+file://$F\").inputs.nixseal.packages.x86_64-linux.nixseal"
  nix build --impure --expr "$pkg" -o "$W/pkg"
  "$W/pkg/bin/nixseal" --version
  [ "$("$W/pkg/bin/nixseal" --version)" = "$("$BIN" --version)" ]
  # cargo compiled it from the flake's source (the log of its build).
  contains "$(nix log "$(nix eval --impure --raw --expr "($pkg).drvPath")")" "Compiling nixseal-cli" "/source/crates/nixseal-cli"
  # The same flake with a fileset that lacks a workspace member, or
  # Cargo.lock: the build fails as it does on real nixpkgs.
  local c=$W/nixseal-fileset out
  build_copy() {
    nix build "path:$c#packages.x86_64-linux.nixseal" --no-link \
      --override-input nixpkgs "path:$W/standin-nixpkgs" --override-input flake-parts "path:$SHARED_NIX/flake-parts"
  }
  rm -rf "$c" && cp -r "$W/nixseal" "$c"
  build_copy
  grep -q '^ *\./bench$' "$c/flake.nix"
  sed -i '/^ *\.\/bench$/d' "$c/flake.nix"
  out=$(fails build_copy)
  contains "$out" "failed to load manifest for workspace member" "bench/Cargo.toml"
  cp "$W/nixseal/flake.nix" "$c/flake.nix"
  sed -i '/^ *\.\/Cargo\.lock$/d' "$c/flake.nix"
  out=$(fails build_copy)
  contains "$out" "Missing Cargo.lock from src"
}
t "the package builds from the flake's own source: cargo fails without bench/ or Cargo.lock in the fileset" t_package_src

# ---------------------------------------------------------------- before renc
t_missing() {
  local p
  p=$(problems web1)
  contains "$p" 'secrets/rekeyed/web1/db-password.age is missing or not tracked by git' \
    'run `nix run .#renc`, then `git add secrets/rekeyed`'
  p=$(fails nix eval --raw .#nixosConfigurations.web1.config.nixseal.build.manifest)
  contains "$p" 'secret `root-password` of host `web1`' 'nix run .#renc'
  p=$(fails nix build .#nixosConfigurations.web1.config.system.build.toplevel)
  contains "$p" 'Failed assertions' 'secrets/rekeyed/web1/db-password.age is missing'
}
t "missing rekeyed file: eval fails with the fix-it text" t_missing

t_profile_schema() {
  local p
  p=$(profile)
  jq . "$p"
  # Exactly the fields of fleet profile v1 (docs/design.md), nothing else.
  [ "$(jq -c 'keys' "$p")" = '["extraRecipients","hosts","identities","rekeyedDir","version"]' ]
  [ "$(jq -c '[.version, .identities, .extraRecipients, .rekeyedDir]' "$p")" = '[1,["./keys/master.age"],[],"./secrets/rekeyed"]' ]
  [ "$(jq -c '.hosts | keys' "$p")" = '["web1","web2"]' ] # builder has no secrets
  [ "$(jq -c '[.hosts[] | keys] | unique' "$p")" = '[["hostPubkey","kind","secrets"]]' ]
  [ "$(jq -c '[.hosts[].kind] | unique' "$p")" = '["host"]' ]
  [ "$(jq -c '[.hosts[].secrets[] | keys] | unique' "$p")" = '[["file"]]' ]
  [ "$(jq -c '.hosts.web1.secrets' "$p")" = '{"db-password":{"file":"./secrets/db-password.age"},"root-password":{"file":"./secrets/root-password.age"}}' ]
  [ "$(jq -r .hosts.web1.hostPubkey "$p")" = "$(cut -d' ' -f1,2 "$W/hostkeys/web1/ssh_host_ed25519_key.pub")" ]
  # No store path anywhere: the apps work on the working tree.
  if grep -q /nix/store "$p"; then fail "store path in the profile"; fi
  # The profile references nothing (not the flake source, not the secrets).
  [ "$(nix-store -qR "$p")" = "$p" ]
}
t "fleet profile: exact v1 schema, flake-relative paths, no store references" t_profile_schema

t_apps_root() {
  local out
  out=$(cd / && fails nix run "$F#renc")
  contains "$out" "run this from the root of your flake" "the current directory is /"
  out=$(cd "$F/secrets" && fails nix run "$F#edit" -- x.age)
  contains "$out" "run this from the root of your flake"
  out=$(fails nix run .#deploy)
  contains "$out" "usage: nix run .#deploy -- HOST" "hosts: web1 web2"
  out=$(fails nix run .#deploy -- nosuchhost)
  contains "$out" "no host named 'nosuchhost'" "hosts: web1 web2"
  # A host whose rekeys are missing explains itself instead of deploying.
  out=$(fails nix run .#deploy -- web1 --dry-run)
  contains "$out" "secrets/rekeyed/web1/db-password.age is missing"
}
t "apps refuse to run outside the flake root; deploy usage and unknown host" t_apps_root

t_plain_same() {
  # Inside the flake-parts fleet (lib.mkApps next to the module)...
  for a in renc check edit status deploy audit; do
    [ "$(nix eval --raw ".#apps.$SYSTEM.$a.program")" = "$(nix eval --raw ".#plainApps.$SYSTEM.$a.program")" ] ||
      fail "plain-Nix $a differs from the flake-parts one"
  done
  # ...and in a flake without flake-parts at all: the same profile and
  # checks (the apps differ only in the flake.nix they must run next to, and
  # the flake source deploy evaluates).
  local P=$W/fleet-plain
  # Its outputs use no flake-parts (the input exists only for nixseal's own flake).
  if sed -n '/outputs =/,$p' "$P/flake.nix" | grep flake-parts; then fail "the plain fleet uses flake-parts"; fi
  [ "$(profile)" = "$(cd "$P" && profile)" ]
  [ "$(nix eval --json ".#apps.$SYSTEM" --apply builtins.attrNames)" = "$(cd "$P" && nix eval --json ".#apps.$SYSTEM" --apply builtins.attrNames)" ]
  [ "$(nix eval --raw ".#checks.$SYSTEM.nixseal-rekeyed.drvPath")" = "$(cd "$P" && nix eval --raw ".#checks.$SYSTEM.nixseal-rekeyed.drvPath")" ]
  [ "$(nix eval --raw ".#nixseal-deploy.web1.drvPath")" = "$(cd "$P" && nix eval --raw ".#nixseal-deploy.web1.drvPath")" ]
  local out
  out=$(cd "$P" && fails nix run .#deploy)
  contains "$out" "usage: nix run .#deploy" "hosts: web1 web2"
  # Not rekeyed yet: check lists web1's secrets.
  contains "$(cd "$P" && fails nix run .#check)" "web1/db-password"
  contains "$(cd / && fails nix run "$P#renc")" "run this from the root of your flake"
  # Each fleet's apps refuse the other's directory (another flake.nix).
  contains "$(cd "$P" && fails nix run "$F#renc")" "run this from the root of your flake"
}
t "plain-Nix lib.mkFleet/mkApps (also in a flake without flake-parts) gives the same apps" t_plain_same

t_fleet_errors() {
  local base="let f = builtins.getFlake \"path:$F\"; ns = f.inputs.nixseal; pkgs = f.inputs.nixpkgs.legacyPackages.$SYSTEM; in"
  local out
  out=$(fails nix eval --impure --json --expr "$base (ns.lib.mkFleet { self = f; inherit pkgs;
      nodes = { a = f.nixosConfigurations.web1; b = f.nixosConfigurations.web1; }; }).profile")
  contains "$out" "several nodes share a host name" "web1 is used by a, b" "nixseal.settings.hostName"
  out=$(fails nix eval --impure --json --expr "$base (ns.lib.mkFleet { self = ns; inherit pkgs;
      nodes = { inherit (f.nixosConfigurations) web1; }; }).profile")
  contains "$out" "which is outside this flake" "relative to flake.nix"
  out=$(fails nix eval --impure --json --expr "$base (ns.lib.mkFleet { self = f; inherit pkgs;
      identities = [ $F/keys/master.age ]; }).profile")
  contains "$out" "is a Nix path" "never copied into the Nix store"
  out=$(fails nix eval --impure --json --expr "$base (ns.lib.mkFleet { self = f; inherit pkgs;
      rekeyedDir = f + \"/other\"; }).profile")
  contains "$out" "rekeyed directory differs" "./other" "./secrets/rekeyed"
}
t "fleet errors: duplicate host names, files outside the flake, identity as Nix path, rekeyedDir mismatch" t_fleet_errors

# ---------------------------------------------------------------- rekeyed (Go age)
# The rekeyed layout is a contract; here Go age writes it, so the Nix side is
# proven on its own. The renc flow below writes it with `nixseal renc`.
fleet_rekey_all_with_age "$W"

t_current() {
  [ "$(problems web1)" = '[]' ]
  [ "$(problems web2)" = '[]' ]
  nix build ".#checks.$SYSTEM.nixseal-rekeyed" -o "$W/check"
  nix build .#nixosConfigurations.web1.config.system.build.toplevel -o "$W/toplevel"
  nix flake check
}
t "rekeyed and tracked: no problems; checks, toplevel and nix flake check pass" t_current

t_manifest_schema() {
  local m
  m=$(manifest web1)
  jq . "$m"
  [ "$(jq -c keys "$m")" = '["hostKeys","keepGenerations","mountPoint","secrets","stateDir","symlink","templates","version"]' ]
  [ "$(jq -c '[.version,.hostKeys,.mountPoint,.symlink,.keepGenerations,.stateDir]' "$m")" = '[1,[{"path":"/etc/ssh/ssh_host_ed25519_key","type":"ed25519"}],"/run/nixseal.d","/run/nixseal",1,"/var/lib/nixseal"]' ]
  [ "$(jq -c '[.secrets[] | keys] | unique' "$m")" = '[["allowPlaintextOnDisk","group","mode","name","neededForUsers","owner","path","reloadUnits","restartUnits","source","symlink"]]' ]
  [ "$(jq -c '[.secrets[].allowPlaintextOnDisk] | unique' "$m")" = '[false]' ]
  [ "$(jq -c '[.templates[] | keys] | unique' "$m")" = '[["content","group","mode","name","owner","path"]]' ]
  [ "$(jq -c '.secrets[] | select(.name=="db-password") | [.owner,.group,.mode,.path,.symlink,.restartUnits,.neededForUsers]' "$m")" = '["nobody","nogroup","0400","/run/nixseal/db-password",true,["postgresql.service"],false]' ]
  [ "$(jq -c '.secrets[] | select(.name=="root-password") | [.owner,.group,.neededForUsers,.path]' "$m")" = '["root","root",true,"/run/nixseal-for-users/root-password"]' ]
  [ "$(jq -c '.templates[0] | [.name,.content,.owner,.group,.mode,.path]' "$m")" = '["app.env","DB_PASSWORD={{nixseal:db-password}}\n","nobody","nogroup","0440","/run/nixseal/app.env"]' ]
  # users.users.root.hashedPasswordFile points at the secret.
  [ "$(nix eval --raw .#nixosConfigurations.web1.config.users.users.root.hashedPasswordFile)" = /run/nixseal-for-users/root-password ]
  m=$(manifest web2)
  [ "$(jq -c '.secrets[] | select(.name=="api-token") | [.owner,.group,.path,.symlink]' "$m")" = '["root","root","/run/nixseal-test/api-token",false]' ]
  [ "$(jq -c .templates "$m")" = '[]' ]
}
t "host manifest: exact v1 schema and values" t_manifest_schema

t_apps_shellcheck() {
  # nixpkgs' writeShellApplication runs shellcheck on every app at build time:
  # the generated scripts must pass it (all severities), or the real build fails.
  command -v shellcheck >/dev/null || fail "shellcheck is not installed (apt-get install shellcheck)"
  local a
  for a in renc check edit status deploy audit; do
    shellcheck "$(app_program "$a")"
  done
  # Each host's deploy script, also one that prints its problems.
  for a in web1 web2; do
    shellcheck "$(nix build --no-link ".#nixseal-deploy.$a" --json | jq -r '.[0].outputs.out')/bin/nixseal-deploy-$a"
  done
  printf 'x' | fleet_secret "$F" secrets/db-password.age
  git add secrets/db-password.age
  local d
  d=$(nix build --no-link .#nixseal-deploy.web1 --json | jq -r '.[0].outputs.out')/bin/nixseal-deploy-web1
  shellcheck "$d"
  contains "$(fails "$d")" "web1/db-password.age is stale"
  git checkout -q HEAD -- secrets/db-password.age
}
t "generated app scripts pass shellcheck (as writeShellApplication requires)" t_apps_shellcheck

t_closure() {
  local m want
  for h in web1 web2; do
    m=$(manifest $h)
    want=$( (echo "$m"; jq -r '.secrets[].source' "$m") | sort)
    [ "$(nix-store -qR "$m" | sort)" = "$want" ] || fail "closure of $h's manifest: $(nix-store -qR "$m")"
    [ "$(nix-store -qR "$m" | wc -l)" = 3 ]
    # Each source is exactly that host's rekeyed file, named <host>-<secret>.age.
    for s in $(jq -r '.secrets[].name' "$m"); do
      src=$(jq -r --arg s "$s" '.secrets[] | select(.name==$s) | .source' "$m")
      [[ "$src" == */nix/store/*-$h-$s.age ]] || fail "source name $src"
      cmp "$src" "$F/secrets/rekeyed/$h/$s.age"
    done
    # Neither master ciphertexts nor the other host's files nor the flake source.
    if nix-store -qR "$m" | grep -E -- '-source$|/secrets/|web[12]-' | grep -v -- "-$h-"; then fail "foreign path in $h's closure"; fi
  done
  # The whole system closure: the manifest's, not more secrets.
  local top
  top=$(readlink "$W/toplevel" || true)
  if [ -n "$top" ]; then
    if nix-store -qR "$top" | grep -- '-web2-'; then fail "web2 file in web1's system"; fi
  fi
}
t "closure isolation: nix-store -qR of a manifest = manifest + that host's rekeyed files" t_closure

t_units() {
  local s
  s=$(nix eval --json .#nixosConfigurations.web1.config.systemd.services.nixseal-activate)
  [ "$(jq -c .wantedBy <<<"$s")" = '["sysinit.target"]' ]
  [ "$(jq -c .before <<<"$s")" = '["sysinit.target"]' ]
  [ "$(jq -c .after <<<"$s")" = '["local-fs.target","systemd-sysusers.service","userborn.service"]' ]
  [ "$(jq -c .unitConfig <<<"$s")" = '{"DefaultDependencies":false,"RequiresMountsFor":["/etc/ssh","/var/lib/nixseal"]}' ]
  [ "$(jq -c '[.serviceConfig.Type, .serviceConfig.RemainAfterExit, .stopIfChanged]' <<<"$s")" = '["oneshot",true,false]' ]
  local m
  m=$(manifest web1)
  [ "$(jq -c .restartTriggers <<<"$s")" = "[\"$m\"]" ]
  local exe
  exe="$(nix eval --raw .#nixosConfigurations.web1.config.nixseal.settings.package.outPath)/bin/nixseal"
  [ "$(jq -c .serviceConfig.ExecStart <<<"$s")" = "[\"$exe deploy --manifest $m\"]" ]
  # web1 has no sysusers/userborn: neededForUsers runs as an activation
  # script that the `users` step depends on, and comes first in the script.
  [ "$(nix eval --json .#nixosConfigurations.web1.config.systemd.services --apply 'builtins.hasAttr "nixseal-activate-users"')" = false ]
  [ "$(nix eval --json .#nixosConfigurations.web1.config.system.activationScripts.users.deps)" = '["nixsealForUsers"]' ]
  contains "$(nix eval --raw .#nixosConfigurations.web1.config.system.activationScripts.nixsealForUsers.text)" "deploy --manifest $m --users"
  local script
  script=$(nix eval --raw .#nixosConfigurations.web1.config.system.activationScripts.script)
  grep -n "snippet" <<<"$script"
  [ "$(grep -n 'snippet nixsealForUsers:' <<<"$script" | cut -d: -f1)" -lt "$(grep -n 'snippet users:' <<<"$script" | cut -d: -f1)" ]
  [ "$(grep -n 'snippet specialfs:' <<<"$script" | cut -d: -f1)" -lt "$(grep -n 'snippet nixsealForUsers:' <<<"$script" | cut -d: -f1)" ]
  # web2 (sysusers) has no neededForUsers secret: its early unit only runs to
  # remove a generation an earlier configuration left (see t_empty), and the
  # `users` snippet stays "" as NixOS requires.
  [ "$(nix eval --json .#nixosConfigurations.web2.config.systemd.services --apply 'builtins.attrNames')" = '["nixseal-activate","nixseal-activate-users"]' ]
  [ "$(nix eval --json .#nixosConfigurations.web2.config.systemd.services.nixseal-activate-users.unitConfig.ConditionPathIsSymbolicLink)" = '"/run/nixseal-for-users"' ]
  [ "$(nix eval --json .#nixosConfigurations.web2.config.system.activationScripts --apply 'a: [ (a ? nixsealForUsers) a.users ]')" = '[false,""]' ]
  # A host without secrets: the unit runs only when a generation is left.
  [ "$(nix eval --json .#nixosConfigurations.builder.config.systemd.services --apply 'builtins.attrNames')" = '["nixseal-activate","nixseal-activate-users"]' ]
  [ "$(nix eval --json .#nixosConfigurations.builder.config.systemd.services.nixseal-activate-users.unitConfig.ConditionPathIsSymbolicLink)" = '"/run/nixseal-for-users"' ]
  [ "$(nix eval --json .#nixosConfigurations.builder.config.system.activationScripts --apply 'a: a ? nixsealForUsers')" = false ]
  [ "$(nix eval --json .#nixosConfigurations.builder.config.systemd.services.nixseal-activate.unitConfig.ConditionPathIsSymbolicLink)" = '"/run/nixseal"' ]
}
t "nixseal-activate: ordering, triggers, RequiresMountsFor; early users step" t_units

t_rendered_units() {
  local o=$W/units
  bash "$here/render-units.sh" "$o" --nixseal /usr/bin/nixseal --host-key-path /persist/ssh/ssh_host_ed25519_key --manifest-path /etc/nixseal/manifest.json
  cat "$o/nixseal-activate.service"
  local a u
  a=$(cat "$o/nixseal-activate.service")
  u=$(cat "$o/nixseal-activate-users.service")
  contains "$a" "DefaultDependencies=false" "Before=sysinit.target" "WantedBy=sysinit.target" \
    "After=local-fs.target systemd-sysusers.service userborn.service nixseal-activate-users.service" \
    "RequiresMountsFor=/persist/ssh" "RequiresMountsFor=/var/lib/nixseal" "Type=oneshot" "RemainAfterExit=true" \
    "ExecStart=/usr/bin/nixseal deploy --manifest /etc/nixseal/manifest.json" "X-Restart-Triggers=/etc/nixseal/manifest.json"
  contains "$u" "Before=systemd-sysusers.service" "WantedBy=systemd-sysusers.service" "DefaultDependencies=false" \
    "After=systemd-remount-fs.service" "ExecStart=/usr/bin/nixseal deploy --manifest /etc/nixseal/manifest.json --users"
  # Waiting for file systems before sysusers would be an ordering cycle.
  if grep -e local-fs -e RequiresMountsFor <<<"$u"; then fail "early unit waits for file systems"; fi
  if grep -q nixseal-placeholder "$o"/*.service; then fail "placeholder left in a unit"; fi
  [ "$(jq -c .hostKeys "$o/manifest.json")" = '[{"path":"/persist/ssh/ssh_host_ed25519_key","type":"ed25519"}]' ]
  # The copy on the container's disk is allowed there (nixseal.secrets.tls-key.allowPlaintextOnDisk).
  [ "$(jq -c '[.secrets[] | [.name, .allowPlaintextOnDisk]]' "$o/manifest.json")" = '[["db-password",false],["root-password",false],["tls-key",true]]' ]
  [ "$(wc -l <"$o/store-paths")" = 4 ]
  # The rendered sources decrypt with the rendered host key to the expected text.
  for s in db-password root-password tls-key; do
    src=$(jq -r --arg s "$s" '.secrets[] | select(.name==$s) | .source' "$o/manifest.json")
    age -d -i "$o/ssh_host_ed25519_key" "$src" | cmp - "$o/expected/$s"
  done
  if command -v systemd-analyze >/dev/null; then
    cp "$o"/*.service "$W/"
    if systemd-analyze verify "$o/nixseal-activate.service" 2>&1 | grep -i 'unknown\|invalid'; then
      fail "systemd-analyze complains"
    fi
  fi
}
t "render-units.sh: unit files and manifest for the systemd tests" t_rendered_units

# ---------------------------------------------------------------- stale / untracked / bad key
t_stale() {
  printf 'rotated-%s' "$RANDOM" | fleet_secret "$F" secrets/db-password.age
  git add secrets/db-password.age
  local p
  p=$(problems web1)
  contains "$p" 'secrets/rekeyed/web1/db-password.age is stale: secrets/db-password.age changed since it was rekeyed' 'run `nix run .#renc`'
  contains "$(problems web2)" 'secrets/rekeyed/web2/db-password.age is stale'
  p=$(fails nix build ".#checks.$SYSTEM.nixseal-rekeyed" -L)
  contains "$p" 'is stale' 'nix run .#renc'
  contains "$(fails nix flake check)" 'is stale'
  p=$(fails nix run .#deploy -- web1 --dry-run)
  contains "$p" 'web1/db-password.age is stale'
  git checkout -q HEAD -- secrets/db-password.age
  [ "$(problems web1)" = '[]' ]
}
t "stale rekeyed file (master changed): eval, nix flake check and deploy app fail with the fix" t_stale

t_untracked() {
  git rm -q --cached secrets/rekeyed/web2/api-token.age
  [ -f secrets/rekeyed/web2/api-token.age ]
  contains "$(problems web2)" 'secrets/rekeyed/web2/api-token.age is missing or not tracked by git' 'git add secrets/rekeyed'
  [ "$(problems web1)" = '[]' ] # other hosts unaffected
  git add secrets/rekeyed/web2/api-token.age
  [ "$(problems web2)" = '[]' ]
}
t "untracked rekeyed file: eval fails naming git add" t_untracked

t_tampered() {
  cp secrets/rekeyed/web1/root-password.age "$W/rp"
  printf 'x' >>secrets/rekeyed/web1/root-password.age
  contains "$(problems web1)" 'root-password.age does not match its entry in secrets/rekeyed/web1/.nixseal-rekey.json'
  cp "$W/rp" secrets/rekeyed/web1/root-password.age
}
t "rekeyed file not matching its cache entry is refused" t_tampered

# Issue 11.5 / 10.9: host keys are read at evaluation as the operator side
# reads them; a bad key is named as such (not "stale"), and only its host is
# affected.
t_host_keys() {
  cp hosts/web2.nix "$W/web2.nix"
  trap 'cp "$W/web2.nix" hosts/web2.nix; git rm -q --cached -f hosts/web2.pub 2>/dev/null; rm -f hosts/web2.pub' EXIT
  setkey() { sed -i "s|hostPubkey = .*|hostPubkey = $1;|" hosts/web2.nix; }
  local good b64 p
  good=$(cut -d' ' -f1,2 "$W/hostkeys/web2/ssh_host_ed25519_key.pub")
  b64=${good#ssh-ed25519 }
  bad_key() { # KEY-EXPR WHY...
    local expr=$1
    shift
    setkey "$expr"
    echo "hostPubkey = $expr"
    p=$(problems web2)
    contains "$p" 'nixseal.settings.hostPubkey of host `web2`' "$@"
    if grep -q stale <<<"$p"; then fail "a bad key is reported as stale: $p"; fi
  }
  bad_key '"ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 root@web2"' 'is not an ssh-ed25519 key (got `ssh-rsa`)' 'ssh-keyscan -t ed25519'
  contains "$(fails nix build .#nixosConfigurations.web2.config.system.build.toplevel)" 'Failed assertions' 'not an ssh-ed25519 key'
  # The profile still carries every other host; this one with hostPubkey ""
  # so that renc and check report it.
  [ "$(jq -c '[.hosts.web1.hostPubkey, .hosts.web2.hostPubkey, (.hosts.web2.secrets | keys)]' "$(profile)")" = "[\"$(cut -d' ' -f1,2 "$W/hostkeys/web1/ssh_host_ed25519_key.pub")\",\"\",[\"api-token\",\"db-password\"]]" ]
  [ "$(problems web1)" = '[]' ]
  bad_key "\"ssh-ed25519 ${b64:0:20}!${b64:21} root@web2\"" 'is not valid base64'
  bad_key "\"ssh-ed25519 ${b64%?}\"" 'is not valid base64'
  bad_key "\"ssh-ed25519 ${b64:0:40}=${b64:41}\"" 'is not valid base64'
  bad_key '"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA=="' 'does not decode to an ssh-ed25519 public key (19 bytes'
  bad_key '"ssh-ed25519 AAAAB3NzaC1yc2EAAAADAQABAAABAQC7"' 'does not decode to an ssh-ed25519 public key'
  bad_key '"ssh-ed25519"' 'has no key after `ssh-ed25519`'
  # Non-canonical base64 (padding bits set) is refused: "IB==" is the byte
  # of "IA==" with a stray bit.
  bad_key '"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB=="' 'is not valid base64'
  # Small order: every encoding (both sign bits, non-canonical y too).
  local count=0
  while IFS= read -r k; do
    bad_key "\"$k root@web2\"" 'is an ed25519 point of small order'
    count=$((count + 1))
  done < <(python3 "$here/lib/ed25519-small-order.py" keys)
  [ "$count" = 14 ]
  # A .pub file in the flake works like the key line; a missing one is named.
  cp "$W/hostkeys/web2/ssh_host_ed25519_key.pub" hosts/web2.pub
  setkey ./web2.pub
  contains "$(problems web2)" 'is the file hosts/web2.pub, which does not exist (or is not tracked by git)'
  git add hosts/web2.pub
  [ "$(problems web2)" = '[]' ]
  [ "$(jq -r .hosts.web2.hostPubkey "$(profile)")" = "$good" ]
  # Another (valid) ed25519 key: the rekeys were made for the old one; and
  # two hosts with one key get a warning.
  setkey "\"$(cat "$W/hostkeys/web1/ssh_host_ed25519_key.pub")\""
  contains "$(problems web2)" 'it was encrypted to another host key than nixseal.settings.hostPubkey'
  contains "$(nix eval --raw ".#apps.$SYSTEM.renc.program" 2>&1 >/dev/null)" 'warning: nixseal: hosts web1, web2 have the same nixseal.settings.hostPubkey'
}
t "host keys: a .pub path works; bad base64, length, type and small-order keys are named (not stale); the profile keeps the other hosts; a shared key warns" t_host_keys

t_small_order_list() {
  # The list the module refuses is exactly the small-order encodings,
  # computed again here from the curve's arithmetic.
  diff <(python3 "$here/lib/ed25519-small-order.py" ys | sort) \
    <(nix-instantiate --eval --strict --json "$NIXSEAL_REPO/modules/lib/ed25519-small-order.nix" | jq -r '.[]' | sort)
  # A normal key passes the same parser.
  [ "$(nix-instantiate --eval --strict --json -E "(import $NIXSEAL_REPO/modules/lib/host-key.nix { lib = import $SHARED_NIX/nixpkgs-lib/lib; }).parse \"$(cat "$W/hostkeys/web1/ssh_host_ed25519_key.pub")\"" | jq -r .problem)" = null ]
}
t "the small-order ed25519 list equals the torsion points computed from the curve" t_small_order_list

# ---------------------------------------------------------------- option types
t_options() {
  local base='{ networking.hostName = "h"; nixseal.settings.hostPubkey = "ssh-ed25519 AAAA"; nixseal.secrets.s.file = /dev/null; }'
  local out
  out=$(fails eval_host "[ $base { nixseal.secrets.s.path = \"/nix/store/abc-x\"; } ]" 'os.config.nixseal.secrets.s.path')
  contains "$out" "absolute path outside the Nix store"
  out=$(fails eval_host "[ $base { nixseal.secrets.s.path = \"relative/x\"; } ]" 'os.config.nixseal.secrets.s.path')
  contains "$out" "absolute path outside the Nix store"
  out=$(fails eval_host "[ $base { nixseal.settings.symlink = \"/nix/store\"; } ]" 'os.config.nixseal.settings.symlink')
  contains "$out" "absolute path outside the Nix store"
  out=$(fails eval_host "[ $base { nixseal.secrets.s.mode = \"0999\"; } ]" 'os.config.nixseal.secrets.s.mode')
  contains "$out" "octal file mode"
  out=$(fails eval_host "[ $base { nixseal.secrets.s.name = \"../etc\"; } ]" 'os.config.nixseal.secrets.s.name')
  contains "$out" "not starting with \`.\`"
  out=$(fails eval_host "[ $base { nixseal.secrets.\".hidden\".file = /dev/null; } ]" 'os.config.nixseal.secrets.".hidden".name')
  contains "$out" "nixseal.secrets.\".hidden\".name"
  # Defaults: hostKeys from openssh's ed25519 keys when openssh runs (it
  # makes them then; as sops-nix and agenix), else none; group from the
  # owner's user.
  [ "$(eval_host "[ $base { services.openssh.enable = true; services.openssh.hostKeys = [ { type = \"rsa\"; path = \"/persist/rsa\"; } { type = \"ed25519\"; path = \"/persist/ssh/ed\"; } ]; } ]" 'os.config.nixseal.settings.hostKeys')" = '[{"path":"/persist/ssh/ed","type":"ed25519"}]' ]
  [ "$(eval_host "[ $base { services.openssh.enable = true; } ]" 'os.config.nixseal.settings.hostKeys')" = '[{"path":"/etc/ssh/ssh_host_ed25519_key","type":"ed25519"}]' ]
  [ "$(eval_host "[ $base ]" 'os.config.nixseal.settings.hostKeys')" = '[]' ]
  contains "$(eval_host "[ $base ]" 'os.config.nixseal.build.problems')" 'has no nixseal.settings.hostKeys; enable services.openssh'
  [ "$(eval_host "[ $base { users.users.pg.group = \"postgres\"; nixseal.secrets.s.owner = \"pg\"; } ]" 'os.config.nixseal.secrets.s.group')" = '"postgres"' ]
  [ "$(eval_host "[ $base { nixseal.secrets.s.owner = \"nobody2\"; } ]" 'os.config.nixseal.secrets.s.group')" = '"root"' ]
  [ "$(eval_host "[ $base { nixseal.secrets.s.name = \"db.key\"; } ]" 'os.config.nixseal.placeholder.s')" = '"{{nixseal:db.key}}"' ]
  # Problems reported as assertions: neededForUsers not owned by root,
  # duplicate paths, no hostPubkey / rekeyedDir, no ed25519 host key.
  out=$(eval_host "[ $base { nixseal.secrets.s.neededForUsers = true; nixseal.secrets.s.owner = \"nobody\"; nixseal.secrets.t = { file = /dev/null; path = \"/run/nixseal-for-users/s\"; }; nixseal.secrets.u = { file = /dev/null; neededForUsers = true; path = \"/run/nixseal/u\"; }; services.openssh.hostKeys = [ ]; } ]" 'map (a: a.message) os.config.assertions')
  contains "$out" 'has neededForUsers = true' 'must be \"root\" (got nobody:nogroup)' 'uses the secret or template path `/run/nixseal-for-users/s` more than once' \
    'secret `u` of host `h` has neededForUsers = true, but its path /run/nixseal/u is inside /run/nixseal' \
    'no nixseal.settings.rekeyedDir' 'no nixseal.settings.hostKeys'
  out=$(eval_host '[ { networking.hostName = "h"; nixseal.secrets.s.file = /dev/null; } ]' 'map (a: a.message) os.config.assertions')
  contains "$out" 'has secrets but no nixseal.settings.hostPubkey' 'ssh-keyscan -t ed25519'
}
t "option types refuse store/relative paths, bad modes and names; defaults; assertions" t_options

# Issue 10.10: the same name limits as crates/nixseal/src/contract/names.rs (host 96
# bytes, secret and template 110), in Nix and in Rust.
t_name_limits() {
  local h96 h97 s110 s111 out
  h96=$(printf 'h%.0s' $(seq 96)); h97=${h96}h
  s110=$(printf 's%.0s' $(seq 110)); s111=${s110}s
  local base='{ networking.hostName = "h"; }'
  [ "$(eval_host "[ $base { nixseal.settings.hostName = \"$h96\"; } ]" 'os.config.nixseal.settings.hostName')" = "\"$h96\"" ]
  contains "$(fails eval_host "[ $base { nixseal.settings.hostName = \"$h97\"; } ]" 'os.config.nixseal.settings.hostName')" 'host name of at most 96 bytes'
  [ "$(eval_host "[ $base { nixseal.secrets.\"$s110\".file = /dev/null; } ]" "os.config.nixseal.secrets.\"$s110\".name")" = "\"$s110\"" ]
  contains "$(fails eval_host "[ $base { nixseal.secrets.\"$s111\".file = /dev/null; } ]" "os.config.nixseal.secrets.\"$s111\".name")" 'secret name of at most 110 bytes'
  contains "$(fails eval_host "[ $base { nixseal.templates.\"$s111\".content = \"x\"; } ]" "os.config.nixseal.templates.\"$s111\".name")" 'secret name of at most 110 bytes'
  # The Rust side refuses the same names in the profile and the manifest...
  jq --arg h "$h97" '.hosts[$h] = .hosts.web1 | del(.hosts.web1)' "$(profile)" >"$W/long-host.json"
  out=$(fails "$BIN" check --profile "$W/long-host.json")
  contains "$out" "is 97 bytes long, more than the 96"
  jq --arg s "$s111" '.hosts.web1.secrets[$s] = .hosts.web1.secrets["db-password"]' "$(profile)" >"$W/long-secret.json"
  contains "$(fails "$BIN" check --profile "$W/long-secret.json")" "is 111 bytes long, more than the 110"
  jq --arg s "$s111" '.secrets[0].name = $s | .secrets[0].path = "/run/nixseal/" + $s' "$(manifest web1)" >"$W/long-manifest.json"
  local rc=0
  out=$("$BIN" deploy --manifest "$W/long-manifest.json" --dry-run 2>&1) || rc=$?
  echo "$out"
  [ "$rc" = 2 ]
  contains "$out" "is 111 bytes long, more than the 110"
  # ...and accepts the longest allowed ones (the profile parses; the
  # missing rekeys are what check reports).
  jq --arg h "$h96" --arg s "$s110" '.hosts[$h] = {hostPubkey: .hosts.web1.hostPubkey, secrets: {($s): .hosts.web1.secrets["db-password"]}} | del(.hosts.web1)' "$(profile)" >"$W/longest.json"
  rc=0
  out=$("$BIN" check --profile "$W/longest.json" 2>&1) || rc=$?
  echo "$out"
  [ "$rc" = 1 ]
  contains "$out" "$h96/$s110"
}
t "name limits: host 96 and secret/template 110 bytes, refused alike by the module and the Rust side" t_name_limits

# Issue 11.3: the stand-in NixOS behaves like NixOS where nixseal depends on
# it (each of these passed the old, lenient stand-in).
t_standin_faithful() {
  # (A host without secrets: its activation script holds nixseal's
  # clean-up snippet and can be rendered.)
  local base='{ networking.hostName = "h"; }'
  local out
  # Activation snippets: string or { deps; text; }, ordered by deps; a dep
  # that names no snippet fails as in NixOS.
  out=$(eval_host "[ $base { system.activationScripts.a = { deps = [ \"b\" ]; text = \"echo a\"; }; system.activationScripts.b = \"echo b\"; } ]" 'os.config.system.activationScripts.script')
  [ "$(grep -n 'echo b' <<<"$(jq -r . <<<"$out")" | cut -d: -f1)" -lt "$(grep -n 'echo a' <<<"$(jq -r . <<<"$out")" | cut -d: -f1)" ]
  contains "$(fails eval_host "[ $base { system.activationScripts.a = { deps = [ \"nosuch\" ]; text = \"x\"; }; } ]" 'os.config.system.activationScripts.script')" "attribute 'nosuch' missing"
  contains "$(fails eval_host "[ $base { system.activationScripts.a.deps = [ ]; } ]" 'os.config.system.activationScripts.script')" "system.activationScripts.a.text' was accessed but has no value defined"
  # The `users` snippet: a script for scripted users, "" under
  # systemd-sysusers or userborn (userborn asserts it, so nixseal must not
  # add deps to it there).
  [ "$(eval_host "[ $base ]" 'builtins.isAttrs os.config.system.activationScripts.users')" = true ]
  [ "$(eval_host "[ $base { systemd.sysusers.enable = true; } ]" 'os.config.system.activationScripts.users')" = '""' ]
  [ "$(eval_host "[ $base { services.userborn.enable = true; nixseal.secrets.s = { file = /dev/null; neededForUsers = true; }; } ]" 'os.config.system.activationScripts.users')" = '""' ]
  contains "$(fails eval_host "[ $base { services.userborn.enable = true; system.activationScripts.users.deps = [ ]; } ]" 'os.config.system.activationScripts.users')" "is not of type \`string or (submodule)'"
  # unitConfig merges as systemd-unit-options.nix does: a user's own
  # RequiresMountsFor next to the module's concatenates; scalars must agree.
  [ "$(eval_host "[ $base { nixseal.settings.hostKeys = [ { path = \"/etc/ssh/k\"; } ]; systemd.services.nixseal-activate.unitConfig.RequiresMountsFor = [ \"/persist\" ]; } ]" 'os.config.systemd.services.nixseal-activate.unitConfig.RequiresMountsFor')" = '["/etc/ssh","/var/lib/nixseal","/persist"]' ]
  contains "$(fails eval_host "[ $base { systemd.services.nixseal-activate.unitConfig.DefaultDependencies = true; } ]" 'os.config.systemd.services.nixseal-activate.unitConfig.DefaultDependencies')" 'conflicting definition values'
  # networking.hostName: a DNS label, default "nixos" (and so nixseal's
  # host name).
  contains "$(fails eval_host '[ { networking.hostName = "web1.example.com"; } ]' 'os.config.networking.hostName')" 'is not of type'
  [ "$(eval_host '[ { } ]' 'os.config.nixseal.settings.hostName')" = '"nixos"' ]
  # services.openssh.hostKeys: NixOS' default (rsa and ed25519).
  [ "$(eval_host '[ { } ]' 'map (k: k.type) os.config.services.openssh.hostKeys')" = '["rsa","ed25519"]' ]
}
t "stand-in NixOS: activation snippet deps/order, users snippet, unitConfig merging, hostName type, openssh defaults" t_standin_faithful

# Issue 11.7: template mistakes fail evaluation in nixseal's words.
t_templates() {
  local base='{ networking.hostName = "h"; services.openssh.enable = true; nixseal.settings.hostPubkey = "ssh-ed25519 AAAA"; nixseal.secrets.db-password.file = /dev/null; }'
  local out
  out=$(eval_host "[ $base { nixseal.templates.\"app.env\".content = \"A={{nixseal:db-pasword}}\nB={{nixseal:db-password}}\n\"; } ]" 'os.config.nixseal.build.problems')
  contains "$out" 'template `app.env` of host `h` uses the placeholder `{{nixseal:db-pasword}}`, but host `h` has no secret named `db-pasword`' 'its secrets are `db-password`' 'remove the placeholder if the secret was removed'
  [ "$(jq '[.[] | select(test("template"))] | length' <<<"$out")" = 1 ]
  # A secret removed from the host while a template still uses it.
  out=$(eval_host "[ { networking.hostName = \"h\"; nixseal.templates.t.content = \"{{nixseal:gone}}\"; } ]" 'os.config.nixseal.build.problems')
  contains "$out" 'template `t` of host `h` uses the placeholder `{{nixseal:gone}}`' 'it has no secrets'
  contains "$(eval_host "[ $base { nixseal.templates.t.content = \"x {{nixseal:db-password\"; } ]" 'os.config.nixseal.build.problems')" 'has a `{{nixseal:` without a closing `}}`'
  # At evaluation of the system, not at deploy.
  contains "$(fails eval_host "[ $base { nixseal.templates.t.content = \"{{nixseal:gone}}\"; } ]" 'os.config.nixseal.build.manifest.drvPath')" 'no secret named `gone`'
  # Good templates pass.
  [ "$(eval_host "[ $base ({ config, ... }: { nixseal.templates.t.content = \"\${config.nixseal.placeholder.db-password} {{nixseal:db-password}}\"; }) ]" 'builtins.filter (p: builtins.match ".*template.*" p != null) os.config.nixseal.build.problems')" = '[]' ]
}
t "templates: a placeholder naming no secret (typo, removed secret) or unclosed fails evaluation naming template and fix" t_templates

# Issue 10.7: world-readable modes are a decision: an evaluation warning.
t_mode_warnings() {
  local base='{ networking.hostName = "h"; services.openssh.enable = true; nixseal.settings.hostPubkey = "ssh-ed25519 AAAA"; nixseal.secrets.s.file = /dev/null; }'
  local m out
  for m in 0444 0666 0777 0004 444 0401; do
    out=$(eval_host "[ $base { nixseal.secrets.s.mode = \"$m\"; nixseal.templates.t = { content = \"x\"; mode = \"$m\"; }; } ]" 'os.config.warnings')
    contains "$out" "secret \`s\` of host \`h\` has mode $m, which gives every user" "template \`t\` of host \`h\` has mode $m"
  done
  for m in 0400 0440 0640 0600 0750; do
    [ "$(eval_host "[ $base { nixseal.secrets.s.mode = \"$m\"; } ]" 'os.config.warnings')" = '[]' ]
  done
  # Shown as NixOS shows warnings, when the system is built.
  contains "$(eval_host '[ { networking.hostName = "h"; nixseal.templates.t = { content = "x"; mode = "0644"; }; } ]' 'os.config.system.build.toplevel.drvPath' 2>&1 >/dev/null)" 'warning: nixseal: template `t` of host `h` has mode 0644'
}
t "world-readable modes (other bits) warn at evaluation, naming secret/template and host" t_mode_warnings

# Issue 11.10: what the early (neededForUsers) step cannot reach fails
# evaluation; systemd-sysusers' one-time passwords warn.
t_early_limits() {
  local base='{ networking.hostName = "h"; nixseal.settings.hostPubkey = "ssh-ed25519 AAAA"; nixseal.secrets.pw = { file = /dev/null; neededForUsers = true; }; nixseal.settings.hostKeys = [ { path = "/persist/ssh/key"; } ]; }'
  local fs='fileSystems."/persist" = { device = "/dev/vdb"; fsType = "ext4"; };'
  local out u
  for u in '' 'systemd.sysusers.enable = true;' 'services.userborn.enable = true;'; do
    out=$(eval_host "[ $base { $fs $u } ]" 'os.config.nixseal.build.problems')
    contains "$out" 'has neededForUsers secrets, which are decrypted before users exist' 'its host key /persist/ssh/key is on /persist, which the initrd does not mount' 'fileSystems.\"/persist\".neededForBoot = true'
    # neededForBoot, a path NixOS mounts in the initrd, or no separate file
    # system: fine.
    [ "$(eval_host "[ $base { $fs fileSystems.\"/persist\".neededForBoot = true; $u } ]" 'builtins.filter (p: builtins.match ".*initrd.*" p != null) os.config.nixseal.build.problems')" = '[]' ]
    [ "$(eval_host "[ $base { fileSystems.\"/var/lib\" = { device = \"x\"; }; nixseal.settings.hostKeys = [ { path = \"/var/lib/key\"; } ]; $u } ]" 'builtins.filter (p: builtins.match ".*initrd.*" p != null) os.config.nixseal.build.problems')" = '[]' ]
    [ "$(eval_host "[ $base { $u } ]" 'builtins.filter (p: builtins.match ".*initrd.*" p != null) os.config.nixseal.build.problems')" = '[]' ]
  done
  # Nested mounts: every one above the key must be mounted by the initrd.
  contains "$(eval_host "[ $base { $fs fileSystems.\"/persist/ssh\" = { device = \"y\"; neededForBoot = true; }; nixseal.settings.hostKeys = [ { path = \"/persist/ssh/key\"; } ]; } ]" 'os.config.nixseal.build.problems')" 'is on /persist, which the initrd does not mount'
  # Without neededForUsers secrets, /persist is fine (the main unit waits
  # for it with RequiresMountsFor).
  [ "$(eval_host "[ $base ({ lib, ... }: { $fs nixseal.secrets.pw.neededForUsers = lib.mkForce false; }) ]" 'builtins.filter (p: builtins.match ".*initrd.*" p != null) os.config.nixseal.build.problems')" = '[]' ]
  # systemd-sysusers applies a hashedPasswordFile only when it creates a user.
  out=$(eval_host "[ $base ({ config, ... }: { systemd.sysusers.enable = true; users.users.root.hashedPasswordFile = config.nixseal.secrets.pw.path; }) ]" 'os.config.warnings')
  contains "$out" 'host `h` creates users with systemd-sysusers, which sets a password only when it creates the user: users.users.root.hashedPasswordFile is the nixseal secret /run/nixseal-for-users/pw' 'services.userborn.enable = true'
  [ "$(eval_host "[ $base ({ config, ... }: { services.userborn.enable = true; users.users.root.hashedPasswordFile = config.nixseal.secrets.pw.path; }) ]" 'os.config.warnings')" = '[]' ]
}
t "neededForUsers: a host key on a file system the initrd does not mount fails evaluation; sysusers passwords warn" t_early_limits

# The host-side hardening's Nix side: stateDir (emitted, waited for, early
# limits) and allowPlaintextOnDisk (emitted, warned about where it does
# nothing).
t_state_dir() {
  local base='{ networking.hostName = "h"; nixseal.settings.hostPubkey = "ssh-ed25519 AAAA"; nixseal.secrets.s.file = /dev/null; nixseal.settings.hostKeys = [ { path = "/etc/ssh/key"; } ]; }'
  local m='builtins.fromJSON (builtins.unsafeDiscardStringContext (builtins.toJSON { inherit (os.config.systemd.services.nixseal-activate) unitConfig; units = builtins.attrNames os.config.systemd.services; early = os.config.systemd.services.nixseal-activate-users.unitConfig or null; }))'
  # Default /var/lib/nixseal; the main unit waits for it, the early unit
  # cannot (before sysusers; an ordering cycle).
  [ "$(eval_host "[ $base ]" 'os.config.nixseal.settings.stateDir')" = '"/var/lib/nixseal"' ]
  [ "$(eval_host "[ $base { systemd.sysusers.enable = true; } ]" "$m" | jq -c '[.unitConfig.RequiresMountsFor, .early.RequiresMountsFor]')" = '[["/etc/ssh","/var/lib/nixseal"],null]' ]
  # A user's own RequiresMountsFor concatenates with the module's.
  [ "$(eval_host "[ $base { nixseal.settings.stateDir = \"/persist/nixseal\"; systemd.services.nixseal-activate.unitConfig.RequiresMountsFor = [ \"/srv\" ]; } ]" "$m" | jq -c '.unitConfig.RequiresMountsFor | sort')" = '["/etc/ssh","/persist/nixseal","/srv"]' ]
  contains "$(fails eval_host "[ $base { nixseal.settings.stateDir = \"/nix/store/x\"; } ]" 'os.config.nixseal.settings.stateDir')" "absolute path outside the Nix store"
  contains "$(fails eval_host "[ $base { nixseal.settings.stateDir = \"var/lib/x\"; } ]" 'os.config.nixseal.settings.stateDir')" "absolute path outside the Nix store"
  # Before users exist (early unit or activation script) the records must be
  # on a file system the initrd mounts.
  local fs='fileSystems."/persist" = { device = "/dev/vdb"; fsType = "ext4"; };' u out
  local initrd='builtins.filter (p: builtins.match ".*initrd.*" p != null) os.config.nixseal.build.problems'
  for u in '' 'systemd.sysusers.enable = true;'; do
    out=$(eval_host "[ $base { $fs $u nixseal.secrets.s.neededForUsers = true; nixseal.settings.stateDir = \"/persist/nixseal\"; } ]" 'os.config.nixseal.build.problems')
    contains "$out" 'has neededForUsers secrets' 'nixseal.settings.stateDir /persist/nixseal is on /persist, which the initrd does not mount' 'fileSystems.\"/persist\".neededForBoot = true'
    [ "$(eval_host "[ $base { $fs $u nixseal.secrets.s.neededForUsers = true; fileSystems.\"/persist\".neededForBoot = true; nixseal.settings.stateDir = \"/persist/nixseal\"; } ]" "$initrd")" = '[]' ]
    [ "$(eval_host "[ $base { $fs $u nixseal.secrets.s.neededForUsers = true; } ]" "$initrd")" = '[]' ]
  done
  # Without neededForUsers secrets the main unit waits for /persist.
  [ "$(eval_host "[ $base { $fs nixseal.settings.stateDir = \"/persist/nixseal\"; } ]" "$initrd")" = '[]' ]
  # allowPlaintextOnDisk: false unless set; a warning where it changes nothing.
  [ "$(eval_host "[ $base ]" 'os.config.nixseal.secrets.s.allowPlaintextOnDisk')" = false ]
  [ "$(eval_host "[ $base { nixseal.secrets.s = { path = \"/var/lib/app/key\"; symlink = false; allowPlaintextOnDisk = true; }; } ]" 'os.config.warnings')" = '[]' ]
  contains "$(eval_host "[ $base { nixseal.secrets.s = { path = \"/var/lib/app/key\"; allowPlaintextOnDisk = true; }; } ]" 'os.config.warnings')" 'secret `s` of host `h` sets allowPlaintextOnDisk, which only matters for a copy (symlink = false)' '(symlink = true)'
  contains "$(eval_host "[ $base { nixseal.secrets.s = { symlink = false; allowPlaintextOnDisk = true; }; } ]" 'os.config.warnings')" '(its path is the default)'
}
t "stateDir: emitted, RequiresMountsFor in the main unit, on an initrd file system for neededForUsers; allowPlaintextOnDisk: emitted, warned about where it does nothing" t_state_dir


t_options_documented() {
  # Every visible option of the NixOS module is typed, described, and named in
  # docs/options.md.
  local opts
  opts=$(eval_host '[ { networking.hostName = "h"; } ]' "let lib = import $SHARED_NIX/nixpkgs-lib/lib; in
    map (o: { inherit (o) name; described = o.description or \"\" != \"\"; typed = o.type or \"\" != \"unspecified\"; })
      (lib.filter (o: o.visible && !o.internal) (lib.optionAttrSetToDocList os.options.nixseal))")
  [ "$(jq length <<<"$opts")" -ge 25 ]
  [ "$(jq -c '[.[] | select(.described and .typed | not) | .name]' <<<"$opts")" = '[]' ]
  local doc=$NIXSEAL_REPO/docs/options.md name
  for name in $(jq -r '.[].name' <<<"$opts"); do
    # In a table row as `leaf`, or by its full name (a heading).
    grep -qF "\`${name##*.}\`" "$doc" || grep -qF "\`$name" "$doc" || fail "option $name is not in docs/options.md"
  done
}
t "every NixOS option is typed, described and in docs/options.md" t_options_documented

# Issue 11.2: every VM check evaluates. The stand-in runNixOSTest evaluates
# each node of each check as the test framework does (networking.hostName =
# node name, virtualisation.fileSystems, specialisations) and checks each
# testScript as the driver does; building a check builds every node's system.
t_vm_checks() {
  local ns="(builtins.getFlake \"git+file://$F\").inputs.nixseal" names files n=0 c
  names=$(nix eval --impure --json --expr "builtins.attrNames $ns.checks.x86_64-linux")
  files=$(for c in "$NIXSEAL_REPO"/checks/*.nix; do
    c=$(basename "$c" .nix)
    case "$c" in default | common) ;; *) printf '"nixseal-%s"\n' "$c" ;; esac
  done | paste -sd, -)
  [ "$names" = "[$files]" ] || fail "checks $names are not the test files $files"
  for c in $(jq -r '.[]' <<<"$names"); do
    nix build --impure --expr "$ns.checks.x86_64-linux.$c" -o "$W/vm-$c"
    contains "$(cat "$W/vm-$c")" "$c: nodes" "testScript checked"
    n=$((n + 1))
  done
  [ "$n" -ge 6 ]
  # Each asserts something (a VM test without assertions proves nothing).
  for c in "$NIXSEAL_REPO"/checks/*.nix; do
    case "$(basename "$c")" in default.nix | common.nix) continue ;; esac
    nix eval --impure --raw --expr "(import $c { common = { }; }).testScript" | grep -q "assert\|\.fail(" || fail "$c asserts nothing"
  done
  # Node names become host names: users.nix's nodes are scripted and
  # userborn, and its fixtures were made for the host "machine".
  [ "$(nix eval --impure --json --expr "builtins.mapAttrs (_: n: [ n.config.networking.hostName n.config.nixseal.settings.hostName ]) $ns.checks.x86_64-linux.nixseal-users.nodes")" = '{"scripted":["scripted","machine"],"userborn":["userborn","machine"]}' ]
  # The fixture host key decrypts the v1 and v2 rekeys to the expected text.
  [ "$(age -d -i "$NIXSEAL_REPO/checks/fixtures/host/ssh_host_ed25519_key" "$NIXSEAL_REPO/checks/fixtures/rekeyed/machine/db-password.age")" = db-password-v1 ]
  [ "$(age -d -i "$NIXSEAL_REPO/checks/fixtures/host/ssh_host_ed25519_key" "$NIXSEAL_REPO/checks/fixtures/rekeyed-v2/machine/db-password.age")" = db-password-v2 ]
}
t "VM checks: every node of every check evaluates and builds; each testScript passes the driver's checks" t_vm_checks

# The stand-in test framework is strict where the real one is: each of
# these passed the old one.
t_vm_checks_strict() {
  local ns="(builtins.getFlake \"git+file://$F\").inputs.nixseal" pkgs="(builtins.getFlake \"git+file://$F\").inputs.nixpkgs.legacyPackages.x86_64-linux"
  local c=$W/checks-copy out
  rm -rf "$c" && cp -r "$NIXSEAL_REPO/checks" "$c"
  build_check() { nix build --impure --no-link --expr "(import $c { pkgs = $pkgs; nixseal = $ns; }).nixseal-$1"; }
  # Fixtures for "machine", nodes with other names (as users.nix was).
  sed -i '/hostName = "machine";/d' "$c/common.nix"
  contains "$(fails build_check users)" 'fixtures/rekeyed/scripted/db-password.age is missing'
  cp "$NIXSEAL_REPO/checks/common.nix" "$c/common.nix"
  build_check users
  # A testScript naming a node that does not exist, or a Machine method
  # that does not exist.
  sed -i 's/for m in \[scripted, userborn\]/for m in [scripted, machine]/' "$c/users.nix"
  contains "$(fails build_check users)" "undefined name 'machine' (nodes: scripted, userborn)"
  cp "$NIXSEAL_REPO/checks/users.nix" "$c/users.nix"
  sed -i 's/machine.wait_for_unit("multi-user.target")/machine.wait_for_units("multi-user.target")/' "$c/boot.nix"
  contains "$(fails build_check boot)" "Machine has no attribute 'wait_for_units'"
  sed -i 's/machine.wait_for_units(/machine.wait_for_unit((/' "$c/boot.nix"
  contains "$(fails build_check boot)" "testScript is not valid Python"
  cp "$NIXSEAL_REPO/checks/boot.nix" "$c/boot.nix"
  # A specialisation that does not evaluate fails its check.
  sed -i 's|nixseal.settings.rekeyedDir = lib.mkForce ./fixtures/rekeyed-corrupt;|nixseal.settings.rekeyedDir = lib.mkForce ./fixtures/nosuch;|' "$c/corrupt.nix"
  contains "$(fails build_check corrupt)" 'fixtures/nosuch/machine/db-password.age is missing'
  # Without a test framework the checks say so instead of being empty.
  out=$(fails nix eval --impure --expr "builtins.mapAttrs (_: c: c.drvPath) (import $NIXSEAL_REPO/checks { pkgs = { }; nixseal = $ns; })")
  contains "$out" "need pkgs.testers.runNixOSTest"
}
t "VM checks: wrong host names, unknown nodes or methods, broken specialisations fail; no runNixOSTest is an error" t_vm_checks_strict

# A copy of the (rekeyed, tracked) fixture fleet as a git repository of its
# own, for variants of its flake.nix: variant NAME -> its directory.
variant() {
  local d=$W/$1
  rm -rf "$d" && cp -r "$F" "$d" && rm -rf "$d/.git" "$d"/result*
  (cd "$d" && git init -q && git add -A && git -c user.name=t -c user.email=t@t commit -qm "$1")
  echo "$d"
}

# Issue 11.8: the apps keep their names by default, can be renamed or left
# out, and never collide with the flake's own apps.
t_apps_names() {
  local d out
  d=$(variant apps)
  cd "$d"
  [ "$(nix eval --json ".#apps.$SYSTEM" --apply builtins.attrNames)" = '["audit","check","deploy","edit","rekey-masters","renc","status"]' ]
  # The flake's own apps.deploy next to nixseal's: it evaluates, and the
  # flake's wins.
  sed -i 's|^      nixseal = fleetArgs;|      nixseal = fleetArgs;\n      perSystem = { pkgs, ... }: { apps.deploy = { type = "app"; program = "${pkgs.writeShellScriptBin "mine" "echo my own deploy"}/bin/mine"; }; };|' flake.nix
  git add flake.nix
  [ "$(nix eval --json ".#apps.$SYSTEM" --apply builtins.attrNames)" = '["audit","check","deploy","edit","rekey-masters","renc","status"]' ]
  [ "$(nix run .#deploy)" = "my own deploy" ]
  # Renamed and left out.
  sed -i 's|^      nixseal = fleetArgs;|      nixseal = fleetArgs // { apps.deploy = "nixseal-deploy"; apps.status = null; apps.audit = "nixseal-audit"; };|' flake.nix
  git add flake.nix
  [ "$(nix eval --json ".#apps.$SYSTEM" --apply builtins.attrNames)" = '["check","deploy","edit","nixseal-audit","nixseal-deploy","rekey-masters","renc"]' ]
  contains "$(fails nix run .#nixseal-audit)" "usage: nix run .#nixseal-audit -- HOST [SYSTEM]"
  [ "$(nix run .#deploy)" = "my own deploy" ]
  contains "$(fails nix run .#nixseal-deploy)" "usage: nix run .#nixseal-deploy -- HOST"
  # The same for lib.mkFleet / mkApps.
  local base="let f = builtins.getFlake \"path:$d\"; ns = f.inputs.nixseal; pkgs = f.inputs.nixpkgs.legacyPackages.$SYSTEM; in"
  [ "$(nix eval --impure --json --expr "$base builtins.attrNames (ns.lib.mkApps { self = f; inherit pkgs; apps = { deploy = \"ns-deploy\"; edit = null; audit = null; }; })")" = '["check","ns-deploy","rekey-masters","renc","status"]' ]
  out=$(fails nix eval --impure --json --expr "$base builtins.attrNames (ns.lib.mkApps { self = f; inherit pkgs; apps.rekey = \"x\"; })")
  contains "$out" "apps.rekey is not one of nixseal's apps (renc, check, edit, status, deploy, audit, rekey-masters)"
}
t "apps: default names, renamed or left out (flake-parts and mkFleet); the flake's own apps.deploy wins" t_apps_names

# Issue 11.12: a colmena hive's nodes as nixseal.nodes; deploy-rs and
# nixos-rebuild use the systems as they are.
t_colmena() {
  local d out
  d=$(variant colmena)
  cd "$d"
  sed -e "s|@NIXPKGS@|path:$W/standin-nixpkgs|" -e "s|@FLAKE_PARTS@|path:$SHARED_NIX/flake-parts|" \
    -e "s|@NIXSEAL@|path:$W/nixseal|" "$here/fixture-colmena/flake.nix" >flake.nix
  git add flake.nix
  [ "$(jq -c '.hosts | keys' "$(profile)")" = '["web1","web2"]' ]
  [ "$(jq -r .hosts.web1.hostPubkey "$(profile)")" = "$(cut -d' ' -f1,2 "$W/hostkeys/web1/ssh_host_ed25519_key.pub")" ]
  [ "$(nix eval --json .#colmenaHive.nodes.web1.config.nixseal.build.problems)" = '[]' ]
  nix run .#check
  [ "$(nix eval --raw .#colmenaHive.deploymentConfig.web2.targetHost)" = web2 ]
  nix build .#colmenaHive.toplevel.web1 -o "$W/colmena-web1"
  [ -f "$W/colmena-web1/etc/systemd/system/nixseal-activate.service" ]
  # Nodes that leave networking.hostName unset all become "nixos".
  local base="let f = builtins.getFlake \"path:$d\"; ns = f.inputs.nixseal; pkgs = f.inputs.nixpkgs.legacyPackages.$SYSTEM; in"
  out=$(fails nix eval --impure --json --expr "$base (ns.lib.mkFleet { self = f; inherit pkgs; nodes = f.unnamedHive.nodes; }).profile")
  contains "$out" "nixos is used by a, b" "\"nixos\" is NixOS' default networking.hostName" "colmena and deploy-rs do not set it from the node name" "Set networking.hostName in each node"
  # The hive itself instead of its nodes.
  contains "$(fails nix eval --impure --json --expr "$base (ns.lib.mkFleet { self = f; inherit pkgs; nodes = f.colmenaHive; }).profile")" "is a colmena hive" "self.colmenaHive.nodes"
  # deploy-rs: the profile path is the system, with nixseal's unit.
  nix build .#deploy.nodes.web1.profiles.system.path -o "$W/deploy-rs-web1"
  contains "$(cat "$W/deploy-rs-web1/etc/systemd/system/nixseal-activate.service")" "deploy --manifest"
  grep -q "nixseal.nodes = self.colmenaHive.nodes" "$NIXSEAL_REPO/docs/deploying.md"
}
t "colmena: a hive's nodes are nixseal.nodes; unset host names get a fix-it error; deploy-rs paths carry the unit" t_colmena

# Issue 11.13: names in the Nix files match the code; the flake module is
# exported as flake-parts exports modules.
t_module_export() {
  local d decl
  d=$(variant twice)
  cd "$d"
  sed -i 's|^      imports = \[ nixseal.flakeModules.default \];|      imports = [ nixseal.flakeModules.default nixseal.flakeModules.default ];\n      debug = true;|' flake.nix
  git add flake.nix
  # Imported twice: one module (its key), no "declared twice" error.
  [ "$(nix eval --json ".#apps.$SYSTEM" --apply builtins.attrNames)" = '["audit","check","deploy","edit","rekey-masters","renc","status"]' ]
  # Its options are declared in flake-modules/default.nix (importApply).
  decl=$(nix eval --json .#debug.options.nixseal.identities.declarations)
  echo "$decl"
  contains "$decl" "/flake-modules/default.nix"
  [ "$(nix eval --impure --json --expr "let m = (builtins.getFlake \"git+file://$F\").inputs.nixseal.flakeModules.default; in [ m._class (builtins.match \"${NIX_STORE_DIR:-/nix/store}/[^/]*-source/flake.nix#flakeModules.default\" m.key != null) (m._file == m.key) ]")" = '["flake",true,true]' ]
  # Every Rust type the Nix files name (nixseal::<module>::<Type>, in their
  # keep-in-sync notes) exists in that module.
  local n=0 ref mod ty files
  for ref in $(grep -rhoE 'nixseal::[a-z_]+::[A-Z][A-Za-z]*' "$NIXSEAL_REPO/modules" "$NIXSEAL_REPO/flake-modules" "$NIXSEAL_REPO/flake.nix" | sort -u); do
    mod=${ref#nixseal::}; ty=${mod#*::}; mod=${mod%%::*}
    # The module's file wherever the library keeps it (contract/, operator/, host/).
    mapfile -t files < <(find "$NIXSEAL_REPO/crates/nixseal/src" -path "*/$mod.rs" -o -path "*/$mod/mod.rs")
    # (A generic type too: `pub struct RawProfile<H = RawHost>`.)
    grep -qsE "pub struct $ty( |<)" "${files[@]}" ||
      fail "$ref: crates/nixseal/src has no $mod module defining struct $ty"
    n=$((n + 1))
  done
  [ "$n" -ge 2 ] || fail "only $n Rust type names found"
  if grep -rn 'HostManifest\|FleetProfile' "$NIXSEAL_REPO/modules" "$NIXSEAL_REPO/flake-modules" "$NIXSEAL_REPO/flake.nix"; then fail "stale type names"; fi
  # Lists of the apps name all six.
  local line
  while IFS= read -r line; do
    for a in renc check edit status deploy audit; do
      grep -q "$a" <<<"$line" || fail "app list without $a: $line"
    done
  done < <(grep -rh 'renc.*edit.*deploy\|renc.*deploy.*edit' "$NIXSEAL_REPO/flake.nix" "$NIXSEAL_REPO/modules" "$NIXSEAL_REPO/flake-modules" "$NIXSEAL_REPO/docs/getting-started.md" "$NIXSEAL_REPO/docs/options.md" "$NIXSEAL_REPO/docs/deploying.md")
}
t "flake module: importApply location, _class and key (importing twice works); Nix notes name existing Rust types; app lists complete" t_module_export

# ---------------------------------------------------------------- closure (issue 12)
# Findings of `nixseal audit --json` about one store path.
finding_of() { jq --arg s "$2" '.findings[] | select(.storePath == $s)' <<<"$1"; }
# The nixseal closure warnings among a host's warnings.
closure_warnings() { nix eval --json ".#nixosConfigurations.$1.config.warnings" | jq -c '[.[] | select(contains("system closure"))]'; }

# Issue 12.2/12.3, the fleet as it is: no closure warning, every host's
# closure check (built from nixpkgs' closureInfo) passes, and the audit app
# builds a host's system and finds it clean.
t_closure_clean() {
  local h out rc top ci
  for h in web1 web2 builder; do
    [ "$(closure_warnings $h)" = '[]' ] || fail "$h: $(closure_warnings $h)"
    nix build ".#checks.$SYSTEM.nixseal-closure-$h" -o "$W/closure-$h"
    contains "$(cat "$W/closure-$h")" "no store path in $h's closure"
  done
  # The check ran the audit on the closureInfo of the host's system.
  top=$(nix build --no-link --json .#nixosConfigurations.web1.config.system.build.toplevel | jq -r '.[0].outputs.out')
  contains "$(nix log ".#checks.$SYSTEM.nixseal-closure-web1")" "audit of web1: $top" "-closure-info)" "clean: no store path in web1's closure"
  # The stand-in closureInfo writes what nixpkgs' does, from
  # exportReferencesGraph: the closure's paths, its registration
  # (`nix-store --load-db` format) and total NAR size.
  ci=$(nix build --impure --no-link --json --expr "(builtins.getFlake \"git+file://$F\").inputs.nixpkgs.legacyPackages.$SYSTEM.closureInfo { rootPaths = [ (builtins.storePath \"$top\") ]; }" | jq -r '.[0].outputs.out')
  diff <(sort "$ci/store-paths") <(nix-store -qR "$top" | sort)
  [ "$(cat "$ci/total-nar-size")" = "$(nix path-info -rS --json "$top" | jq '[.[].narSize] | add')" ]
  while IFS= read -r p; do grep -qxF "$p" "$ci/registration" || fail "$p not in the registration"; done <"$ci/store-paths"
  # The audit app builds the host's system when no SYSTEM is given.
  rc=0
  out=$(nix run .#audit -- web1 2>&1) || rc=$?
  echo "$out"
  [ "$rc" = 0 ]
  contains "$out" "building host web1's system" "audit of web1: $top" "clean: no store path in web1's closure"
  # ...and audits a given one (as JSON).
  nix build .#nixosConfigurations.web2.config.system.build.toplevel -o "$W/system-web2"
  [ "$(nix run .#audit -- web2 "$W/system-web2" --json | jq -c '[.clean, .host, .roots]')" = "[true,\"web2\",[\"$(readlink "$W/system-web2")\"]]" ]
  contains "$(fails nix run .#audit)" "usage: nix run .#audit -- HOST [SYSTEM]" "hosts: builder web1 web2"
  contains "$(fails nix run .#audit -- nosuch)" "no host named 'nosuch'" "hosts: builder web1 web2"
  contains "$(cd / && fails nix run "$F#audit" -- web1)" "run this from the root of your flake"
  # Opt-in: without closureChecks only nixseal-rekeyed; a list picks hosts.
  local base="let f = builtins.getFlake \"path:$F\"; ns = f.inputs.nixseal; pkgs = f.inputs.nixpkgs.legacyPackages.$SYSTEM; in"
  [ "$(nix eval --impure --json --expr "$base builtins.attrNames (ns.lib.mkFleet { self = f; inherit pkgs; }).checks")" = '["nixseal-rekeyed"]' ]
  [ "$(nix eval --impure --json --expr "$base builtins.attrNames (ns.lib.mkFleet { self = f; inherit pkgs; closureChecks = [ \"builder\" ]; }).checks")" = '["nixseal-closure-builder","nixseal-rekeyed"]' ]
  contains "$(fails nix eval --impure --json --expr "$base builtins.attrNames (ns.lib.mkFleet { self = f; inherit pkgs; closureChecks = [ \"web9\" ]; }).checks")" "closureChecks names web9, which is not a host"
}
t "closure: a clean fleet has no closure warning; nixseal-closure-<host> checks pass; nix run .#audit -- HOST builds and audits" t_closure_clean

# Issue 12, the proof: web1 registers the fleet's own flake
# (`nix.registry.self.flake = self;`), the builder (no secrets) links it
# into /etc. Evaluation names the options; the checks fail; the audit app
# lists the source, the master ciphertexts and web2's files with the chain.
t_closure_registry_leak() {
  local d src w out rc f holds chain want
  d=$(variant leak)
  cd "$d"
  sed -i -e 's|^{ config, ... }:|{ config, self, ... }:|' \
    -e 's|^  networking.hostName = "web1";|&\n  nix.registry.self.flake = self;|' hosts/web1.nix
  sed -i 's|builder = node { networking.hostName = "builder"; };|builder = node ({ self, ... }: { networking.hostName = "builder"; environment.etc."src".source = self; });|' flake.nix
  git add -A
  grep -q 'nix.registry.self.flake = self;' hosts/web1.nix && grep -q 'etc."src".source = self' flake.nix
  src=$(nix flake metadata --json . | jq -r .path)
  # Evaluation: one warning per option, naming it, the source and the fix;
  # registry.json (made from nix.registry) and nixpkgs' own entry are not
  # reported; web2 is unaffected.
  w=$(closure_warnings web1)
  echo "$w"
  [ "$(jq length <<<"$w")" = 1 ]
  contains "$w" 'nixseal: host `web1`: nix.registry.self.flake puts '"$src"', the flake'"'"'s whole source' \
    'nix.registry.nixpkgs.flake = inputs.nixpkgs;' 'nix run .#audit -- web1' 'closureLeaks = \"ignore\"'
  w=$(closure_warnings builder)
  [ "$(jq length <<<"$w")" = 1 ]
  contains "$w" 'nixseal: host `builder`: environment.etc.src.source puts '"$src" 'lib.fileset.toSource'
  [ "$(closure_warnings web2)" = '[]' ]
  out=$(nix build .#nixosConfigurations.web1.config.system.build.toplevel -o "$W/leak-web1" 2>&1)
  contains "$out" 'warning: nixseal: host `web1`: nix.registry.self.flake puts'
  nix-store -qR "$W/leak-web1" | grep -qxF "$src" || fail "the leaky system does not hold $src"
  # The per-host checks fail on the leak; web2's passes.
  out=$(fails nix build ".#checks.$SYSTEM.nixseal-closure-web1" -L --no-link)
  contains "$out" "LEAK $src" "is your flake's source" "rekeyed file of host web2"
  contains "$(fails nix build ".#checks.$SYSTEM.nixseal-closure-builder" -L --no-link)" "LEAK $src"
  nix build ".#checks.$SYSTEM.nixseal-closure-web2" --no-link
  contains "$(fails nix flake check)" "nixseal-closure-"
  # The audit app (building web1's system itself).
  rc=0
  out=$(nix run .#audit -- web1 --json) || rc=$?
  [ "$rc" = 1 ]
  f=$(finding_of "$out" "$src")
  [ -n "$f" ] || fail "no finding for $src: $out"
  [ "$(jq -c '.flakeCopies[0] | [.exact, .rekeyedHosts]' <<<"$f")" = '[true,["web1","web2"]]' ]
  holds=$(jq -c '[.files[] | .path as $p | .holds[] | [$p, .kind, (.host // "")]]' <<<"$f")
  for want in '["secrets/db-password.age","masterCiphertext",""]' '["secrets/api-token.age","masterCiphertext",""]' \
    '["secrets/root-password.age","masterCiphertext",""]' '["secrets/rekeyed/web2/db-password.age","rekeyedFile","web2"]' \
    '["secrets/rekeyed/web2/api-token.age","rekeyedFile","web2"]' '["secrets/rekeyed/web2/.nixseal-rekey.json","rekeyCache","web2"]'; do
    contains "$holds" "$want"
  done
  if grep -q 'secrets/rekeyed/web1/' <<<"$holds"; then fail "web1's own files reported: $holds"; fi
  # The referrer chain: the system -> etc -> etc/nix/registry.json -> the source.
  chain=$(jq -r '.chain[].storePath' <<<"$f")
  echo "$chain"
  [ "$(head -1 <<<"$chain")" = "$(readlink "$W/leak-web1")" ]
  [ "$(tail -1 <<<"$chain")" = "$src" ]
  grep -q -- '-etc$' <<<"$chain" && grep -q -- '-etc-nix-registry.json$' <<<"$chain"
  rc=0
  out=$(nix run .#audit -- web1 "$W/leak-web1") || rc=$?
  echo "$out"
  [ "$rc" = 1 ]
  contains "$out" "LEAK $src" "is your flake's source" "secrets/rekeyed/web2/db-password.age: rekeyed file of host web2" \
    "master ciphertext ./secrets/api-token.age" "nix/registry.json"
  # "error" fails evaluation with the same text (the manifest is fine);
  # "ignore" says nothing.
  sed -i 's|^  nix.registry.self.flake = self;|&\n  nixseal.settings.closureLeaks = "error";|' hosts/web1.nix
  git add -A
  src=$(nix flake metadata --json . | jq -r .path)
  out=$(fails nix build .#nixosConfigurations.web1.config.system.build.toplevel --no-link)
  contains "$out" "Failed assertions" 'nix.registry.self.flake puts '"$src"
  [ "$(closure_warnings web1)" = '[]' ]
  [ "$(problems web1)" = '[]' ]
  sed -i 's|closureLeaks = "error"|closureLeaks = "ignore"|' hosts/web1.nix
  git add -A
  [ "$(closure_warnings web1)" = '[]' ]
  nix build .#nixosConfigurations.web1.config.system.build.toplevel --no-link
}
t "closure leak: nix.registry.self.flake = self warns naming the option; the host's check fails; audit lists source, masters, web2's files, chain; error mode fails" t_closure_registry_leak

# Issue 12, a copy of another host's rekeyed file in web1's /etc: named at
# evaluation, found by content in the built system.
t_closure_copy_leak() {
  local d w out rc f copy
  d=$(variant copyleak)
  cd "$d"
  sed -i 's|^  networking.hostName = "web1";|&\n  environment.etc."x".source = ../secrets/rekeyed/web2/db-password.age;|' hosts/web1.nix
  git add -A
  w=$(closure_warnings web1)
  [ "$(jq length <<<"$w")" = 1 ]
  contains "$w" 'environment.etc.x.source puts the path ./secrets/rekeyed/web2/db-password.age, host `web2`'"'"'s rekeyed secret,'
  contains "$(fails nix build ".#checks.$SYSTEM.nixseal-closure-web1" -L --no-link)" "rekeyed file of host web2 (secret db-password"
  rc=0
  out=$(nix run .#audit -- web1 --json) || rc=$?
  [ "$rc" = 1 ]
  [ "$(jq '.findings | length' <<<"$out")" = 1 ] || fail "$out"
  copy=$(jq -r '.findings[0].storePath' <<<"$out")
  [[ "$copy" == /nix/store/*-db-password.age ]] || fail "finding $copy"
  cmp "$copy" secrets/rekeyed/web2/db-password.age
  f=$(finding_of "$out" "$copy")
  [ "$(jq -c '[.files[] | .path as $p | .holds[] | [$p, .kind, .host, .secret, .file]]' <<<"$f")" = '[["","rekeyedFile","web2","db-password","./secrets/rekeyed/web2/db-password.age"]]' ]
  [ "$(jq -r '.chain[-1].storePath' <<<"$f")" = "$copy" ]
  contains "$(nix run .#audit -- web1 2>&1 || true)" "LEAK $copy" "rekeyed file of host web2 (secret db-password"
}
t "closure leak: a copy of web2's rekeyed file in web1's etc is named at evaluation and found by content" t_closure_copy_leak

# Issue 12.2: every option the evaluation reads, with their real NixOS
# types, in a host that gets no `self` argument (the source is known from
# its rekeyedDir); what does not carry the source is not reported.
t_closure_options() {
  local d w probe out rc opt
  d=$(variant options)
  cd "$d"
  # A node whose modules get no `self` argument: the probe module closes
  # over flake.nix's `self`.
  sed -i 's|^      flake = {|      flake = {\n        leakProbe = nixpkgs.lib.nixosSystem {\n          system = "x86_64-linux";\n          modules = [ nixseal.nixosModules.default ./hosts/web2.nix (import ./probe.nix { inherit self nixpkgs; }) ];\n        };\n        noSecrets = nixpkgs.lib.nixosSystem {\n          system = "x86_64-linux";\n          modules = [ nixseal.nixosModules.default { networking.hostName = "b"; nix.registry.self.flake = self; nixseal.settings.flakeSource = self; } ];\n        };|' flake.nix
  cat >probe.nix <<'NIX'
{ self, nixpkgs }:
{ lib, ... }:
{
  nix.registry.fleet.to = { type = "path"; path = self.outPath; };
  nix.registry.pkgs.flake = nixpkgs;
  nixpkgs.flake.source = lib.mkForce self.outPath;
  environment.etc."motd".text = "built from ${self}\n";
  environment.etc."src".source = ./.;
  environment.etc."secrets".source = ./secrets;
  environment.etc."db".source = ./secrets/db-password.age;
  environment.etc."own".source = ./secrets/rekeyed/web2/api-token.age;
  environment.etc."ok".source = ./hosts/web2.nix;
  environment.etc."off" = { enable = false; source = self; };
  system.extraDependencies = [ self ];
  nix.nixPath = [ "fleet=${self}" "nixpkgs=${nixpkgs}" ];
}
NIX
  git add -A
  w=$(nix eval --json .#leakProbe.config.warnings | jq -c '[.[] | select(contains("system closure"))]')
  echo "$w" | jq -r '.[]'
  for opt in nix.registry.fleet.to.path nixpkgs.flake.source environment.etc.motd.text environment.etc.src.source \
    environment.etc.secrets.source environment.etc.db.source system.extraDependencies nix.nixPath; do
    [ "$(jq --arg o "nixseal: host \`web2\`: $opt puts " '[.[] | select(startswith($o))] | length' <<<"$w")" = 1 ] || fail "$opt not reported once"
  done
  [ "$(jq length <<<"$w")" = 8 ]
  contains "$w" 'environment.etc.secrets.source puts the path ./secrets, which holds the rekeyed directory ./secrets/rekeyed' \
    'environment.etc.db.source puts the path ./secrets/db-password.age, which is the master ciphertext ./secrets/db-password.age' \
    'environment.etc.src.source puts the path ./., a copy of the flake'"'"'s whole source' \
    "leave it at nixpkgs' own source"
  # A host without secrets and without a `self` argument: known only from
  # nixseal.settings.flakeSource.
  contains "$(nix eval --json .#noSecrets.config.warnings)" 'nixseal: host `b`: nix.registry.self.flake puts'
  [ "$(nix eval --impure --json --expr "((builtins.getFlake \"git+file://$d\").noSecrets.extendModules { modules = [ { nixseal.settings.flakeSource = (builtins.getFlake \"git+file://$d\").inputs.nixpkgs.lib.mkForce null; } ]; }).config.warnings")" = '[]' ]
  # What the evaluation said is what the built system holds.
  probe=$(nix build --no-link --json .#leakProbe.config.system.build.toplevel | jq -r '.[0].outputs.out')
  rc=0
  out=$(nix run .#audit -- web2 "$probe" --json) || rc=$?
  [ "$rc" = 1 ]
  jq -r '.findings[].storePath' <<<"$out"
  [ -n "$(finding_of "$out" "$(nix flake metadata --json . | jq -r .path)")" ]
  [ "$(jq '.findings | length' <<<"$out")" -ge 4 ]
}
t "closure options: registry to.path, nixpkgs.flake.source, etc text context and sources, extraDependencies are read (with NixOS' types); harmless ones are not" t_closure_options

# The same through nixseal.lib.mkFleet (no flake-parts): the module warns
# and the fleet's checks catch the leak.
t_closure_plain() {
  local d src
  d=$(variant closureplain)
  cd "$d"
  sed -e "s|@NIXPKGS@|path:$W/standin-nixpkgs|" -e "s|@FLAKE_PARTS@|path:$SHARED_NIX/flake-parts|" \
    -e "s|@NIXSEAL@|path:$W/nixseal|" "$here/fixture-plain/flake.nix" >flake.nix
  git add -A
  nix build ".#checks.$SYSTEM.nixseal-closure-web1" --no-link
  sed -i -e 's|^{ config, ... }:|{ config, self, ... }:|' \
    -e 's|^  networking.hostName = "web1";|&\n  nix.registry.self.flake = self;|' hosts/web1.nix
  git add -A
  src=$(nix flake metadata --json . | jq -r .path)
  contains "$(closure_warnings web1)" "nix.registry.self.flake puts $src"
  contains "$(fails nix build ".#checks.$SYSTEM.nixseal-closure-web1" -L --no-link)" "LEAK $src"
  nix build ".#checks.$SYSTEM.nixseal-closure-web2" --no-link
  contains "$(fails nix run .#audit -- web1)" "LEAK $src"
  # Without the legacyPackages export the audit app says what is missing.
  sed -i '/legacyPackages.x86_64-linux = fleet.legacyPackages;/d' flake.nix
  git add -A
  contains "$(fails nix run .#audit -- web1)" "export it: legacyPackages.x86_64-linux = fleet.legacyPackages;"
}
t "closure (plain lib.mkFleet): the warning and the per-host checks work without flake-parts" t_closure_plain

# ---------------------------------------------------------------- the real flow
t_schema_profile() {
  # The Rust side parses the profile the Nix side made (deny_unknown_fields)...
  "$BIN" renc --profile "$(profile)" --dry-run
  "$BIN" check --profile "$(profile)"
  # ...and refuses one with an unknown field, naming it.
  jq '.hosts.web1.extra = 1' "$(profile)" >"$W/bad-profile.json"
  local rc=0 out
  out=$("$BIN" renc --profile "$W/bad-profile.json" --dry-run 2>&1) || rc=$?
  echo "$out"
  [ "$rc" = 2 ]
  contains "$out" "extra"
}
t "schema in sync: nixseal renc/check parse the Nix-made profile, reject unknown fields" t_schema_profile

t_schema_manifest() {
  local m rc=0 out
  for h in web1 web2; do
    m=$(manifest $h)
    # Parsing and validation come first (exit 2 on a schema error); the
    # dry run may then miss this machine's host key (exit 3), never exit 2.
    out=$("$BIN" deploy --manifest "$m" --dry-run 2>&1) || rc=$?
    echo "$h: rc=$rc $out"
    [ "$rc" != 2 ]
  done
  jq '.secrets[0].extra = 1' "$m" >"$W/bad-manifest.json"
  rc=0
  out=$("$BIN" deploy --manifest "$W/bad-manifest.json" --dry-run 2>&1) || rc=$?
  echo "$out"
  [ "$rc" = 2 ]
  contains "$out" "extra"
}
t "schema in sync: nixseal deploy parses the Nix-made manifests, rejects unknown fields" t_schema_manifest

# Issue 13.3: the manifest derivation checks the manifest with the nixseal
# that deploys it (`nixseal manifest check`): a path deploy refuses but
# evaluation does not judge (a system directory) fails the build with
# deploy's own message, instead of the boot.
t_manifest_checked_at_build() {
  local d out
  d=$(variant checked)
  cd "$d"
  # The fixture's own manifest passes the check.
  nix build ".#nixosConfigurations.web1.config.nixseal.build.manifest" -o "$d/ok"
  sed -i 's|      file = ../secrets/db-password.age;|      file = ../secrets/db-password.age;\n      path = "/etc";|' hosts/web1.nix
  git add -A
  grep -q 'path = "/etc";' hosts/web1.nix || fail "the fixture edit did not apply"
  out=$(fails nix build ".#nixosConfigurations.web1.config.nixseal.build.manifest" -o "$d/bad")
  contains "$out" '"/etc" is a system directory' "failed with exit code 2"
}
t "manifest checked at build time by nixseal manifest check (exit 2 fails the build)" t_manifest_checked_at_build

# A fresh fleet without rekeyed files: renc, check, a no-op renc, rotation via
# edit (stdin), stale check, renc again.
t_flow_renc() {
  rm -rf "$W/flow" && mkdir -p "$W/flow"
  setup_world "$W/flow"
  cd "$W/flow/fleet"
  nix run .#renc
  git add secrets/rekeyed
  [ -f secrets/rekeyed/web1/db-password.age ] && [ -f secrets/rekeyed/web2/api-token.age ]
  [ ! -e secrets/rekeyed/web1/api-token.age ] && [ ! -e secrets/rekeyed/builder ]
  # The Nix side agrees with the cache renc wrote.
  [ "$(problems web1)" = '[]' ] && [ "$(problems web2)" = '[]' ]
  nix build ".#checks.$SYSTEM.nixseal-rekeyed" -o "$W/flow/check"
  nix run .#check
  # status: the system just built runs what the working tree holds.
  nix build .#nixosConfigurations.web1.config.system.build.toplevel -o "$W/flow/web1-system-1"
  contains "$(nix run .#status -- --manifest "web1=$W/flow/web1-system-1")" "web1: current"
  # A second renc changes nothing (content and mtimes).
  local before after
  before=$(find secrets/rekeyed -type f -printf '%p %T@ ' -exec sha256sum {} \; | sort)
  nix run .#renc
  after=$(find secrets/rekeyed -type f -printf '%p %T@ ' -exec sha256sum {} \; | sort)
  [ "$before" = "$after" ]
  cp "$(manifest web1)" "$W/manifest-web1-old"
  # Rotate with edit, new content on stdin: the rekeys become stale.
  printf 'rotated-db-password' | nix run .#edit -- secrets/db-password.age
  [ "$(age -d -i keys/master.age secrets/db-password.age)" = rotated-db-password ]
  git add secrets/db-password.age
  contains "$(problems web1)" 'web1/db-password.age is stale'
  contains "$(fails nix build ".#checks.$SYSTEM.nixseal-rekeyed")" "is stale" "nix run .#renc"
  contains "$(fails nix run .#check)" "db-password"
  nix run .#renc
  git add secrets/rekeyed
  [ "$(problems web1)" = '[]' ] && [ "$(problems web2)" = '[]' ]
  nix build ".#checks.$SYSTEM.nixseal-rekeyed" -o "$W/flow/check"
  # status: web1 still runs the old system; the store path the Rust side
  # computes from the working tree is the one Nix gives the new manifest.
  local new out rc=0
  new=$(manifest web1)
  out=$(nix run .#status -- --manifest "web1=$W/flow/web1-system-1" --manifest "web2=$(manifest web2)") || rc=$?
  echo "$out"
  [ "$rc" = 1 ]
  contains "$out" "web1: runs stale secrets; redeploy web1" "web2: current" "1 of 2 host(s) need a redeploy" \
    "db-password: runs $(jq -r '.secrets[] | select(.name=="db-password") | .source' "$W/manifest-web1-old"), the working tree has $(jq -r '.secrets[] | select(.name=="db-password") | .source' "$new")"
  if grep -q root-password <<<"$out"; then fail "unchanged secret reported"; fi
  contains "$(fails nix run .#status -- --manifest web9=/nonexistent)" "host web9 is not in the profile"
  [ "$(age -d -i "$W/flow/hostkeys/web2/ssh_host_ed25519_key" secrets/rekeyed/web2/db-password.age)" = rotated-db-password ]
}
t "flow: nix run .#renc, .#check, no-op renc, .#edit (stdin), stale check, renc" t_flow_renc

# Issue 14.1: master-key rotation through `nix run .#rekey-masters`: a second
# admin is added, the first retired; Go age decrypts every rewritten master
# file with the wanted keys only; a no-op reads no identity; renc follows.
t_flow_rekey_masters() {
  rm -rf "$W/rm" && mkdir -p "$W/rm"
  setup_world "$W/rm"
  cd "$W/rm/fleet"
  nix run .#renc
  git add secrets/rekeyed
  age-keygen -o keys/admin2.age 2>/dev/null
  local m a f out
  m=$(cat keys/master.pub)
  a=$(age-keygen -y keys/admin2.age)
  # Without the declared public halves, the app says what to declare.
  contains "$(fails nix run .#rekey-masters -- --dry-run)" "cannot be known without reading it" "nixseal.identityRecipients"
  sed -i "s|^        identities = \[ \"./keys/master.age\" \];|        identities = [ \"./keys/master.age\" \"./keys/admin2.age\" ];\n        identityRecipients = { \"./keys/master.age\" = \"$m\"; \"./keys/admin2.age\" = [ \"$a\" ]; };|" flake.nix
  git add flake.nix
  [ "$(jq -c '.identityRecipients | keys' "$(profile)")" = '["./keys/admin2.age","./keys/master.age"]' ]
  local before
  before=$(find secrets -type f -printf '%p %T@ ' -exec sha256sum {} \; | sort)
  out=$(nix run .#rekey-masters -- --dry-run)
  contains "$out" "rewrite secrets/db-password.age (not in the record" "to rewrite, 0 current, 0 failing"
  [ "$before" = "$(find secrets -type f -printf '%p %T@ ' -exec sha256sum {} \; | sort)" ] || fail "the dry run changed files"
  contains "$(nix run .#rekey-masters)" "rewritten, 0 unchanged, 0 failed"
  for f in secrets/*.age; do
    age -d -i keys/master.age "$f" >/dev/null
    age -d -i keys/admin2.age "$f" >/dev/null
  done
  [ "$(age -d -i keys/admin2.age secrets/db-password.age)" = "$(age -d -i keys/master.age secrets/db-password.age)" ]
  # Retire the first key.
  sed -i "s|^        identities = \[ \"./keys/master.age\" \"./keys/admin2.age\" \];|        identities = [ \"./keys/admin2.age\" ];|; s|^        identityRecipients = { \"./keys/master.age\" = \"$m\"; |        identityRecipients = { |" flake.nix
  git add flake.nix
  contains "$(nix run .#rekey-masters -- --dry-run)" "remove $m"
  nix run .#rekey-masters
  for f in secrets/*.age; do
    age -d -i keys/admin2.age "$f" >/dev/null
    if age -d -i keys/master.age "$f" >/dev/null 2>&1; then fail "the retired key still opens $f"; fi
  done
  # Nothing to do: the identity is not even there.
  mv keys/admin2.age "$W/rm/admin2.age"
  contains "$(nix run .#rekey-masters)" "0 rewritten" "0 failed"
  mv "$W/rm/admin2.age" keys/admin2.age
  git add secrets
  contains "$(problems web1)" "is stale"
  nix run .#renc
  git add secrets/rekeyed
  [ "$(problems web1)" = '[]' ] && [ "$(problems web2)" = '[]' ]
  [ "$(age -d -i "$W/rm/hostkeys/web1/ssh_host_ed25519_key" secrets/rekeyed/web1/db-password.age)" = "$(age -d -i keys/admin2.age secrets/db-password.age)" ]
}
t "flow: nix run .#rekey-masters adds an admin key, retires the old one (Go age), a no-op reads no identity; renc follows" t_flow_rekey_masters

# A secret with a generator and no master file: eval names renc as the fix;
# the profile carries the generator's store path; `nix run .#renc` runs it
# once, writes the master file and rekeys it; a second renc does nothing.
t_flow_generator() {
  rm -rf "$W/gen" && mkdir -p "$W/gen"
  setup_world "$W/gen"
  cd "$W/gen/fleet"
  printf '#!/bin/sh\necho run >>"$NIXSEAL_GEN_RUNS"\nprintf "generated-%%s" "$(od -An -N6 -tx1 /dev/urandom | tr -d " \\n")"\n' >gen-session.sh
  chmod +x gen-session.sh
  sed -i 's|^  nixseal.secrets = {|  nixseal.secrets = {\n    session-key = {\n      file = ../secrets/session-key.age;\n      generator = ../gen-session.sh;\n    };|' hosts/web2.nix
  git add -A
  contains "$(problems web2)" "secrets/session-key.age does not exist" "run \`nix run .#renc\` (it runs the secret's generator"
  local gen
  gen=$(jq -r '.hosts.web2.secrets."session-key".generator' "$(profile)")
  case "$gen" in /nix/store/*) ;; *) fail "profile generator is $gen" ;; esac
  [ -x "$gen" ] && cmp -s "$gen" gen-session.sh || fail "profile generator $gen is not gen-session.sh"
  [ "$(jq -r '.hosts.web2.secrets."db-password" | has("generator")' "$(profile)")" = false ]
  export NIXSEAL_GEN_RUNS="$W/gen/runs"
  nix run .#renc
  [ "$(wc -l <"$NIXSEAL_GEN_RUNS")" = 1 ] || fail "generator ran $(wc -l <"$NIXSEAL_GEN_RUNS") times"
  local plain
  plain=$(age -d -i keys/master.age secrets/session-key.age)
  case "$plain" in generated-????????????) ;; *) fail "generated master file holds $plain" ;; esac
  [ "$(age -d -i "$W/gen/hostkeys/web2/ssh_host_ed25519_key" secrets/rekeyed/web2/session-key.age)" = "$plain" ]
  [ ! -e secrets/rekeyed/web1/session-key.age ]
  git add secrets
  [ "$(problems web2)" = '[]' ]
  nix run .#renc
  [ "$(wc -l <"$NIXSEAL_GEN_RUNS")" = 1 ] || fail "generator ran again"
  [ "$(age -d -i keys/master.age secrets/session-key.age)" = "$plain" ]
}
t "flow: a secret's generator makes its missing master file once (nix run .#renc)" t_flow_generator

# Deploy web1 on this machine in a private mount namespace (with web1's host
# key at the manifest's path), after the renc flow above.
t_flow_deploy() {
  [ -d "$W/flow/fleet" ] || t_flow_renc
  cd "$W/flow/fleet"
  unshare -m --propagation private bash -euc '
    mount -t tmpfs -o mode=0755 tmpfs /run
    mkdir -p /etc/ssh && mount -t tmpfs -o mode=0755 tmpfs /etc/ssh
    cp "$1" /etc/ssh/ssh_host_ed25519_key
    nix run .#deploy -- web1 --dry-run
    nix run .#deploy -- web1 --no-restart
    ls -l /run/nixseal/ /run/nixseal.d
    test "$(cat /run/nixseal/db-password)" = rotated-db-password
    test "$(stat -L -c "%U:%G %a" /run/nixseal/db-password)" = "nobody:nogroup 400"
    test "$(cat /run/nixseal/app.env)" = "DB_PASSWORD=rotated-db-password"
    test "$(stat -L -c "%U:%G %a" /run/nixseal/app.env)" = "nobody:nogroup 440"
    test "$(stat -L -c "%U:%G %a" /run/nixseal-for-users/root-password)" = "root:root 400"
    case "$(cat /run/nixseal-for-users/root-password)" in root:*) ;; *) exit 1 ;; esac
    test ! -e /run/nixseal/root-password
    test ! -e /run/nixseal/api-token
    case "$(findmnt -n -o FSTYPE /run/nixseal.d)" in ramfs|tmpfs) ;; *) exit 1 ;; esac
    # web2 cannot be deployed with web1'"'"'s key.
    if nix run .#deploy -- web2 --dry-run --no-restart; then exit 1; fi
  ' _ "$W/flow/hostkeys/web1/ssh_host_ed25519_key"
}
t "flow: nix run .#deploy -- web1 in a private mount namespace" t_flow_deploy

# Issue 11.9: `deploy HOST` brings only that host's files into the store and
# evaluates only that host.
t_deploy_isolation() {
  [ -d "$W/flow/fleet" ] || t_flow_renc
  cd "$W/flow/fleet"
  local d web1 x
  d=$(app_program deploy)
  if nix-store -qR "$d" | grep -e manifest -e '\.age$' -e -source; then fail "the deploy app's closure holds a manifest, a rekeyed file or the flake source"; fi
  web1=$(nix build --no-link --json .#nixseal-deploy.web1 | jq -r '.[0].outputs.out')
  nix-store -qR "$web1" | grep -q -- '-nixseal-manifest-web1.json$'
  nix-store -qR "$web1" | grep -q -- '-web1-db-password.age$'
  if nix-store -qR "$web1" | grep -e web2 -e -source; then fail "web1's deploy script holds another host's files"; fi
  # A rotated web2 secret: deploying web1 never adds web2's new file to the
  # store.
  printf 'rotated-api-token-%s' "$RANDOM" | nix run .#edit -- secrets/api-token.age
  git add secrets/api-token.age
  nix run .#renc
  git add secrets/rekeyed
  # A type error in web2 does not stop deploying web1.
  cp hosts/web2.nix "$W/web2-flow.nix"
  trap 'cp "$W/web2-flow.nix" hosts/web2.nix' EXIT
  sed -i 's|^  networking.hostName = "web2";|  networking.hostName = "web2";\n  imports = [ { nixseal.secrets.api-token.owner = 42; } ];|' hosts/web2.nix
  unshare -m --propagation private bash -euc '
    mount -t tmpfs -o mode=0755 tmpfs /run
    mkdir -p /etc/ssh && mount -t tmpfs -o mode=0755 tmpfs /etc/ssh
    cp "$1" /etc/ssh/ssh_host_ed25519_key
    nix run .#deploy -- web1 --no-restart
    test "$(cat /run/nixseal/db-password)" = rotated-db-password
  ' _ "$W/flow/hostkeys/web1/ssh_host_ed25519_key"
  for x in /nix/store/*-web2-api-token.age; do
    if cmp -s "$x" secrets/rekeyed/web2/api-token.age; then fail "deploying web1 added web2's rekeyed file $x"; fi
  done
  contains "$(fails nix run .#deploy -- web2 --dry-run)" "nixseal.secrets.api-token.owner" "is not of type"
}
t "deploy HOST: only that host's files in the closure and the store; a type error in another host does not matter" t_deploy_isolation

# Issue 11.11: removing a host's last secret (or last neededForUsers secret)
# removes its plaintext from RAM at the next switch.
t_empty_removes() {
  [ -d "$W/flow/fleet" ] || t_flow_renc
  cd "$W/flow/fleet"
  cp hosts/web1.nix "$W/web1-flow.nix"
  trap 'cp "$W/web1-flow.nix" hosts/web1.nix' EXIT
  # The configuration web1 switches to: no secrets, no templates.
  cat >"$W/web1-empty.nix" <<NIX
{
  networking.hostName = "web1";
  services.openssh.enable = true;
  nixseal.settings = {
    hostPubkey = "$(fleet_pubkey "$W/flow" web1)";
    rekeyedDir = ../secrets/rekeyed;
  };
}
NIX
  units() { # the commands the switch runs: the unit, the activation snippet
    nix build .#nixosConfigurations.web1.config.system.build.toplevel -o "$W/web1-system" >&2
    nix eval --json .#nixosConfigurations.web1.config.systemd.services.nixseal-activate.serviceConfig.ExecStart | jq -r '.[]'
  }
  local before after snippet
  before=$(units)
  cp "$W/web1-empty.nix" hosts/web1.nix
  after=$(units)
  # web1 creates users with the activation script: without neededForUsers
  # secrets, a unit (not a snippet, which would run at every switch)
  # removes the old ones.
  snippet=$(nix eval --json .#nixosConfigurations.web1.config.systemd.services.nixseal-activate-users.serviceConfig.ExecStart | jq -r '.[]')
  [ "$(nix eval --json .#nixosConfigurations.web1.config.systemd.services.nixseal-activate-users.unitConfig.ConditionPathIsSymbolicLink)" = '"/run/nixseal-for-users"' ]
  [ "$(nix eval --json .#nixosConfigurations.web1.config.system.activationScripts --apply 'a: a ? nixsealForUsers')" = false ]
  echo "$after"
  [ "$(nix eval --json .#nixosConfigurations.web1.config.systemd.services.nixseal-activate.unitConfig.ConditionPathIsSymbolicLink)" = '"/run/nixseal"' ]
  # One deploy: an empty generation removes the one it replaced itself.
  [ "$(grep -c ' deploy --manifest ' <<<"$after")" = 1 ]
  [ "$(grep -c ' deploy --manifest ' <<<"$snippet")" = 1 ]
  unshare -m --propagation private bash -euc '
    mount -t tmpfs -o mode=0755 tmpfs /run
    mkdir -p /etc/ssh && mount -t tmpfs -o mode=0755 tmpfs /etc/ssh
    cp "$1" /etc/ssh/ssh_host_ed25519_key
    # Booted with secrets (the old configuration).
    while IFS= read -r c; do $c --users --no-restart; $c --no-restart; done <<<"$2"
    test "$(cat /run/nixseal/db-password)" = rotated-db-password
    grep -rq root: /run/nixseal-for-users.d
    # The switch to the configuration without secrets.
    while IFS= read -r c; do $c; done <<<"$3"
    while IFS= read -r c; do $c; done <<<"$4"
    ls -laR /run/nixseal.d /run/nixseal-for-users.d
    if grep -rq rotated-db-password /run/nixseal.d; then echo "plaintext left in /run/nixseal.d" >&2; exit 1; fi
    if grep -rq root: /run/nixseal-for-users.d; then echo "plaintext left in /run/nixseal-for-users.d" >&2; exit 1; fi
    test ! -e /run/nixseal/db-password && test ! -e /run/nixseal/app.env
  ' _ "$W/flow/hostkeys/web1/ssh_host_ed25519_key" "$(head -1 <<<"$before")" "$after" "$snippet"
}
t "removing the last secret: the next switch removes its plaintext (main and neededForUsers generations)" t_empty_removes

# Issue 11.4: a flake in a subdirectory of a git repository (infra/flake.nix).
t_subdir_flake() {
  local m=$W/mono
  rm -rf "$W/sub" "$m" && mkdir -p "$W/sub" "$m/infra"
  setup_world "$W/sub"
  (cd "$W/sub/fleet" && tar --exclude=.git -cf - .) | (cd "$m/infra" && tar -xf -)
  echo "the rest of the repository" >"$m/README"
  (cd "$m" && git init -q && git add -A && git -c user.name=t -c user.email=t@t commit -qm mono)
  cd "$m/infra"
  local p out
  p=$(profile)
  [ "$(jq -c '[.rekeyedDir, .identities, .hosts.web1.secrets["db-password"].file]' "$p")" = '["./secrets/rekeyed",["./keys/master.age"],"./secrets/db-password.age"]' ]
  # Fix-it messages name paths as typed in infra/, and following them works.
  out=$(problems web1)
  contains "$out" 'the rekeyed file secrets/rekeyed/web1/db-password.age is missing' 'then `git add secrets/rekeyed`'
  if grep -q infra/ <<<"$out"; then fail "a message names a path from the repository root: $out"; fi
  # The apps run in infra/, not at the repository root.
  out=$(cd "$m" && fails nix run ./infra#renc)
  contains "$out" "run this from the root of your flake" "cd $m/infra"
  nix run .#renc
  git add secrets/rekeyed
  [ "$(problems web1)" = '[]' ] && [ "$(problems web2)" = '[]' ]
  nix run .#check
  [ -f secrets/rekeyed/web1/db-password.age ] && [ ! -e "$m/secrets" ] && [ ! -e "$m/infra/infra" ]
  # The closure check reads the flake at <source>/infra; the audit app
  # builds from here. Both clean; with web1 registering the flake, both fail.
  nix build ".#checks.$SYSTEM.nixseal-closure-web1" --no-link
  contains "$(nix run .#audit -- web1)" "clean: no store path in web1's closure"
  cp hosts/web1.nix "$W/web1-sub.nix"
  sed -i -e 's|^{ config, ... }:|{ config, self, ... }:|' \
    -e 's|^  networking.hostName = "web1";|&\n  nix.registry.self.flake = self;|' hosts/web1.nix
  git add hosts/web1.nix
  contains "$(closure_warnings web1)" "nix.registry.self.flake puts /nix/store/"
  contains "$(fails nix build ".#checks.$SYSTEM.nixseal-closure-web1" -L --no-link)" "LEAK /nix/store/" "rekeyed file of host web2"
  contains "$(fails nix run .#audit -- web1)" "LEAK /nix/store/" "rekeyed file of host web2"
  cp "$W/web1-sub.nix" hosts/web1.nix
  git add hosts/web1.nix
  # A master file that is not tracked: the message's `git add` fixes it.
  printf 'new' | nix run .#edit -- secrets/new.age
  sed -i 's|^  nixseal.secrets = {|  nixseal.secrets = {\n    new.file = ../secrets/new.age;|' hosts/web2.nix
  git add hosts/web2.nix
  out=$(problems web2)
  contains "$out" 'the master file secrets/new.age does not exist (or is not tracked by git)'
  git add secrets/new.age
  contains "$(problems web2)" 'secrets/rekeyed/web2/new.age is missing'
  nix run .#renc
  git add secrets/rekeyed
  [ "$(problems web2)" = '[]' ]
  # deploy evaluates the host from the subdirectory flake.
  unshare -m --propagation private bash -euc '
    mount -t tmpfs -o mode=0755 tmpfs /run
    mkdir -p /etc/ssh && mount -t tmpfs -o mode=0755 tmpfs /etc/ssh
    cp "$1" /etc/ssh/ssh_host_ed25519_key
    nix run .#deploy -- web2 --no-restart
    test "$(cat /run/nixseal/new)" = new
  ' _ "$W/sub/hostkeys/web2/ssh_host_ed25519_key"
}
t "a flake in a subdirectory of a git repository: profile paths, the flake-root check and fix-it messages are relative to it" t_subdir_flake

# ---------------------------------------------------------------- home-manager (issue 16)
# The fleet with homes ($W/fleet-home, tests/nix/fixture-home): host desk
# with the home-manager user alice (home desk.alice, home-manager's NixOS
# module) and the standalone homeConfigurations."bob@laptop" (home
# laptop.bob), in the stand-in home-manager (lib/standin-home-manager.nix).
H=$W/fleet-home
home_attr() { # TARGET -> the flake attribute of that home's config
  case "$1" in
    desk.alice) echo '.#nixosConfigurations.desk.config.home-manager.users.alice' ;;
    laptop.bob) echo '.#homeConfigurations."bob@laptop".config' ;;
    *) fail "no home $1" ;;
  esac
}
home_problems() { nix eval --json "$(home_attr "$1").nixseal.build.problems"; }
home_manifest() { nix build "$(home_attr "$1").nixseal.build.manifest" -o "$W/hm-manifest-$1" && readlink "$W/hm-manifest-$1"; }
bob_generation() { nix build '.#homeConfigurations."bob@laptop".activationPackage' -o "$W/bob-generation" && readlink "$W/bob-generation"; }
userkey() { echo "$W/hostkeys/$1/ssh_host_ed25519_key"; }
eval_home() { # MODULES EXPR: h is the standalone home (user alice)
  nix eval --impure --json --expr "let h = import $here/lib/eval-home.nix {
    nixpkgsLib = $SHARED_NIX/nixpkgs-lib/lib; modules = $1; }; in $2"
}
eval_home_os() { # HOST-MODULES HOME-MODULES EXPR: os is a NixOS system with the home-manager user alice
  nix eval --impure --json --expr "let os = import $here/lib/eval-home.nix {
    nixpkgsLib = $SHARED_NIX/nixpkgs-lib/lib; nixos = $1; modules = $2; }; in $3"
}
HOME_BASE='({ lib, ... }: { home.username = "alice"; home.homeDirectory = "/home/alice"; home.stateVersion = "24.11"; nixseal.settings = { targetName = lib.mkDefault "laptop.alice"; userPubkey = lib.mkDefault "ssh-ed25519 AAAA"; }; nixseal.secrets.s.file = /dev/null; })'

t_home_before_renc() {
  cd "$H"
  local p out
  p=$(home_problems desk.alice)
  contains "$p" 'nixseal: secret `api-token` of home `desk.alice` (user `alice` on host `desk`): the rekeyed file secrets/rekeyed/desk.alice/api-token.age is missing or not tracked by git' \
    'run `nix run .#renc`, then `git add secrets/rekeyed`' 'secret `netrc` of home `desk.alice`'
  contains "$(home_problems laptop.bob)" 'nixseal: secret `mail-password` of home `laptop.bob` (user `bob`): the rekeyed file secrets/rekeyed/laptop.bob/mail-password.age is missing'
  # What `nixos-rebuild switch` and `home-manager switch` build fails with the
  # same text (in NixOS as the system's assertions, next to the host's own).
  contains "$(fails nix build .#nixosConfigurations.desk.config.system.build.toplevel)" 'Failed assertions' \
    '- alice profile: nixseal: secret `api-token` of home `desk.alice` (user `alice` on host `desk`)' 'desk.alice/api-token.age is missing' \
    '- nixseal: secret `db-password` of host `desk`'
  contains "$(fails nix build '.#homeConfigurations."bob@laptop".activationPackage')" 'laptop.bob/mail-password.age is missing' 'nix run .#renc'
  # The profile: the host and both homes, each with its own key (bob's from
  # a .pub file), only the fields the Rust side reads.
  p=$(profile)
  jq . "$p"
  [ "$(jq -c '.hosts | keys' "$p")" = '["desk","desk.alice","laptop.bob"]' ]
  [ "$(jq -r '.hosts["desk.alice"].hostPubkey' "$p")" = "$(cut -d' ' -f1,2 "$(userkey alice).pub")" ]
  [ "$(jq -r '.hosts["laptop.bob"].hostPubkey' "$p")" = "$(cut -d' ' -f1,2 "$(userkey bob).pub")" ]
  [ "$(jq -c '.hosts["desk.alice"].secrets' "$p")" = '{"api-token":{"file":"./secrets/api-token.age"},"netrc":{"file":"./secrets/netrc.age"}}' ]
  [ "$(jq -c '.hosts["laptop.bob"].secrets' "$p")" = '{"mail-password":{"file":"./secrets/mail-password.age"}}' ]
  # "kind" and, for alice (a home of the NixOS host desk), "host"
  # (contract, docs/design.md); the binary reads them.
  [ "$(jq -c '[.hosts[] | keys] | unique' "$p")" = '[["host","hostPubkey","kind","secrets"],["hostPubkey","kind","secrets"]]' ]
  [ "$(jq -c '[.hosts[] | [.kind, .host]]' "$p")" = '[["host",null],["home","desk"],["home",null]]' ]
  "$BIN" check --profile "$p" >/dev/null 2>&1 || [ $? = 1 ] || fail "the binary refuses the profile"
  # Refusals name the entry (exit 2).
  local rc=0
  jq '.hosts["desk.alice"].host = "laptop.bob"' "$p" >"$W/kind-profile.json"
  out=$("$BIN" check --profile "$W/kind-profile.json" 2>&1) || rc=$?
  [ "$rc" = 2 ] && contains "$out" 'home desk.alice has "host": "laptop.bob", but that target is a home, not a host'
  rc=0
  jq '.hosts["desk.alice"].kind = "user"' "$p" >"$W/kind-profile.json"
  out=$("$BIN" check --profile "$W/kind-profile.json" 2>&1) || rc=$?
  [ "$rc" = 2 ] && contains "$out" 'unknown variant `user`'
  if grep -q /nix/store "$p"; then fail "store path in the profile"; fi
  # lib.mkFleet (no flake-parts) sees the same homes.
  [ "$(nix eval --json .#plainFleet.profile)" = "$(jq -c . "$p")" ]
  contains "$(fails nix run .#check)" "desk.alice/api-token" "laptop.bob/mail-password"
}
t "homes before renc: missing rekeys name home, user and host with the fix; desk's system and bob's generation fail with it; the profile lists both homes with the users' keys" t_home_before_renc

t_home_renc() {
  cd "$H"
  nix run .#renc
  git add secrets/rekeyed
  local s
  for s in desk/db-password desk.alice/api-token desk.alice/netrc laptop.bob/mail-password; do
    [ -f "secrets/rekeyed/$s.age" ] || fail "renc did not write secrets/rekeyed/$s.age"
  done
  # Each home's files decrypt with that user's key only.
  [ "$(age -d -i "$(userkey alice)" secrets/rekeyed/desk.alice/api-token.age)" = "$(age -d -i keys/master.age secrets/api-token.age)" ]
  [ "$(age -d -i "$(userkey bob)" secrets/rekeyed/laptop.bob/mail-password.age)" = "$(age -d -i keys/master.age secrets/mail-password.age)" ]
  if age -d -i "$(userkey alice)" secrets/rekeyed/laptop.bob/mail-password.age >/dev/null 2>&1; then fail "alice decrypts bob's secret"; fi
  if age -d -i "$(userkey desk)" secrets/rekeyed/desk.alice/api-token.age >/dev/null 2>&1; then fail "desk's host key decrypts alice's secret"; fi
  [ "$(home_problems desk.alice)" = '[]' ] && [ "$(home_problems laptop.bob)" = '[]' ]
  [ "$(nix eval --json .#nixosConfigurations.desk.config.nixseal.build.problems)" = '[]' ]
  nix run .#check
  nix build ".#checks.$SYSTEM.nixseal-rekeyed" -o "$W/hm-check"
  contains "$(nix run .#renc 2>&1)" "0 rekeyed"
  # status treats homes like hosts.
  local old out rc=0
  old=$(home_manifest laptop.bob)
  cp "$old" "$W/bob-manifest-old"
  contains "$(nix run .#status -- --manifest "desk.alice=$(home_manifest desk.alice)" --manifest "laptop.bob=$old")" "desk.alice: current" "laptop.bob: current"
  # Rotating bob's master secret makes his rekey stale (eval, check), and
  # renc rekeys only him.
  printf 'rotated-mail' | nix run .#edit -- secrets/mail-password.age
  git add secrets/mail-password.age
  contains "$(home_problems laptop.bob)" 'secrets/rekeyed/laptop.bob/mail-password.age is stale: secrets/mail-password.age changed since it was rekeyed'
  [ "$(home_problems desk.alice)" = '[]' ]
  contains "$(fails nix run .#check)" "laptop.bob/mail-password"
  contains "$(nix run .#renc 2>&1)" "1 rekeyed"
  git add secrets/rekeyed
  [ "$(home_problems laptop.bob)" = '[]' ]
  [ "$(age -d -i "$(userkey bob)" secrets/rekeyed/laptop.bob/mail-password.age)" = rotated-mail ]
  out=$(nix run .#status -- --manifest "laptop.bob=$W/bob-manifest-old") || rc=$?
  echo "$out"
  [ "$rc" = 1 ]
  contains "$out" "laptop.bob: runs stale secrets; redeploy laptop.bob"
}
t "nix run .#renc rekeys the host and both homes to their own keys; check, status, the rekeyed check and a rotation treat homes like hosts" t_home_renc

t_home_closure() {
  [ -f "$H/secrets/rekeyed/laptop.bob/mail-password.age" ] || t_home_renc
  cd "$H"
  local t m want src s top
  for t in desk.alice laptop.bob; do
    m=$(home_manifest $t)
    want=$( (echo "$m"; jq -r '.secrets[].source' "$m") | sort)
    [ "$(nix-store -qR "$m" | sort)" = "$want" ] || fail "closure of $t's manifest: $(nix-store -qR "$m")"
    for s in $(jq -r '.secrets[].name' "$m"); do
      src=$(jq -r --arg s "$s" '.secrets[] | select(.name==$s) | .source' "$m")
      [[ "$src" == */nix/store/*-$t-$s.age ]] || fail "source name $src"
      cmp "$src" "secrets/rekeyed/$t/$s.age"
    done
    if nix-store -qR "$m" | grep -E -- '-source$|/secrets/|-desk-|-(desk\.alice|laptop\.bob)-' | grep -v -- "-$t-"; then fail "foreign path in $t's closure"; fi
  done
  [ "$(nix-store -qR "$(home_manifest desk.alice)" | wc -l)" = 3 ]
  [ "$(nix-store -qR "$(home_manifest laptop.bob)" | wc -l)" = 2 ]
  # bob's whole generation: his manifest and file, nothing of the others,
  # not the flake source.
  local fleetsrc
  fleetsrc=$(nix flake metadata --json . | jq -r .path)
  top=$(bob_generation)
  nix-store -qR "$top" | grep -q -- '-laptop.bob-mail-password.age$'
  if nix-store -qR "$top" | grep -E -e "^$fleetsrc\$" -e '-desk-|-desk\.alice-|manifest-desk'; then fail "bob's generation holds another target's files"; fi
  # desk's system carries desk's and its user alice's, not bob's.
  nix build .#nixosConfigurations.desk.config.system.build.toplevel -o "$W/desk-system"
  nix-store -qR "$W/desk-system" | grep -q -- '-desk.alice-api-token.age$'
  nix-store -qR "$W/desk-system" | grep -q -- '-desk-db-password.age$'
  if nix-store -qR "$W/desk-system" | grep -E -e "^$fleetsrc\$" -e 'laptop\.bob'; then fail "desk's system holds bob's files or the flake source"; fi
}
t_home_audit() {
  [ -f "$H/secrets/rekeyed/laptop.bob/mail-password.age" ] || t_home_renc
  cd "$H"
  local out rc=0
  nix build .#nixosConfigurations.desk.config.system.build.toplevel -o "$W/desk-system"
  # desk's system carries alice's rekeyed files (home-manager as a NixOS
  # module): they are desk's own ("host": "desk"), not a leak.
  nix-store -qR "$W/desk-system" | grep -q -- '-desk.alice-api-token.age$'
  out=$(nix run .#audit -- desk "$W/desk-system" 2>&1) || rc=$?
  echo "$out"
  [ "$rc" = 0 ] || fail "audit of desk: rc=$rc"
  contains "$out" "clean: no store path in desk's closure"
  if grep -q LEAK <<<"$out"; then fail "false LEAK for desk.alice"; fi
  # Without "host" (an older profile) the same files are another target's.
  jq 'del(.hosts["desk.alice"].host)' "$(profile)" >"$W/nohost-profile.json"
  rc=0
  out=$("$BIN" audit --profile "$W/nohost-profile.json" --host desk "$W/desk-system" 2>&1) || rc=$?
  [ "$rc" = 1 ] && contains "$out" "LEAK" "rekeyed file of home desk.alice"
}
t "audit --host desk counts the rekeyed files of desk's home-manager user (profile \"host\": \"desk\") as desk's own: no false LEAK" t_home_audit

t_home_deploy() {
  [ -f "$H/secrets/rekeyed/laptop.bob/mail-password.age" ] || t_home_renc
  cd "$H"
  local out rc=0 script
  # The deploy app knows homes; run as root it is refused (exit 2): a home
  # is deployed by its user.
  contains "$(fails nix run .#deploy)" "hosts: desk; homes (run as the user): desk.alice laptop.bob"
  out=$(nix run .#deploy -- laptop.bob 2>&1) || rc=$?
  [ "$rc" = 2 ] || fail "deploy of a home as root: rc=$rc $out"
  contains "$out" "never as root"
  # As bob (uid 4242, in a private mount namespace with his home and a
  # runtime directory as logind makes it), the home's deploy script
  # decrypts his secret with his key into the runtime directory.
  nix build ".#legacyPackages.$SYSTEM.nixseal-deploy.\"laptop.bob\"" -o "$W/bob-deploy"
  script=$(readlink -f "$W"/bob-deploy/bin/*)
  grep -q -- '--user-session' "$script" || fail "the home's script does not use --user-session"
  rc=0
  unshare -m --propagation private bash -euc '
    mount -t tmpfs -o mode=0755 tmpfs /home
    mkdir -p /home/bob/.ssh /run/user/4242
    cp "$1" /home/bob/.ssh/id_ed25519
    chown -R 4242:4242 /home/bob
    mount -t tmpfs -o mode=0700,uid=4242,gid=4242 tmpfs /run/user/4242
    setpriv --reuid=4242 --regid=4242 --clear-groups env XDG_RUNTIME_DIR=/run/user/4242 HOME=/home/bob "$2" --no-restart
    stat -c "%u %a" /run/user/4242/nixseal/mail-password
    cat /run/user/4242/nixseal/mail-password; echo
    stat -c "%u %a %F" /run/user/4242/nixseal.d
  ' _ "$(userkey bob)" "$script" >"$W/bob-deploy.log" 2>&1 || rc=$?
  out=$(cat "$W/bob-deploy.log")
  echo "$out"
  [ "$rc" = 0 ] || fail "bob's deploy: rc=$rc"
  contains "$out" "4242 400" "$(age -d -i keys/master.age secrets/mail-password.age)" "4242 700 directory"
}
t "deploy of a home: legacyPackages nixseal-deploy.<home> runs nixseal deploy --user-session (bob's secret in his runtime dir, as bob); the deploy app lists homes and refuses root" t_home_deploy

t "closure isolation per home: nix-store -qR of a home's manifest = manifest + its own rekeyed files; bob's generation and desk's system hold no other target's" t_home_closure

t_home_manifest() {
  [ -f "$H/secrets/rekeyed/laptop.bob/mail-password.age" ] || t_home_renc
  cd "$H"
  local m
  m=$(home_manifest desk.alice)
  jq . "$m"
  [ "$(jq -c keys "$m")" = '["hostKeys","keepGenerations","mountPoint","secrets","session","stateDir","symlink","templates","version"]' ]
  [ "$(jq -c '[.version,.session,.hostKeys,.mountPoint,.symlink,.keepGenerations,.stateDir]' "$m")" = '[1,"user",[{"path":"/home/alice/.ssh/id_ed25519","type":"ed25519"}],"%r/nixseal.d","%r/nixseal",1,"/home/alice/.local/state/nixseal"]' ]
  [ "$(jq -c '[.secrets[] | keys] | unique' "$m")" = '[["allowPlaintextOnDisk","group","mode","name","neededForUsers","owner","path","reloadUnits","restartUnits","source","symlink"]]' ]
  [ "$(jq -c '[.secrets[] | [.name,.owner,.group,.mode,.path,.symlink,.restartUnits,.neededForUsers,.allowPlaintextOnDisk]]' "$m")" = '[["api-token","","","0400","%r/nixseal/api-token",true,["app.service"],false,false],["netrc","","","0400","/home/alice/.netrc",true,[],false,false]]' ]
  [ "$(jq -c '.templates' "$m")" = '[{"content":"TOKEN={{nixseal:api-token}}\n","group":"","mode":"0400","name":"app.env","owner":"","path":"%r/nixseal/app.env"}]' ]
  m=$(home_manifest laptop.bob)
  [ "$(jq -c '[.hostKeys, .stateDir, (.secrets[] | [.name, .reloadUnits])]' "$m")" = '[[{"path":"/home/bob/.ssh/id_ed25519","type":"ed25519"}],"/home/bob/.local/state/nixseal",["mail-password",["mbsync.service"]]]' ]
  # Settings: keys, xdg.stateHome, paths under %r.
  [ "$(eval_home "[ $HOME_BASE { nixseal.settings.userKeys = [ \"/persist/alice/ssh/k\" ]; xdg.stateHome = \"/home/alice/st\"; nixseal.settings.symlink = \"%r/s\"; } ]" '[ h.config.nixseal.settings.stateDir h.config.nixseal.secrets.s.path h.config.nixseal.settings.userKeys ]')" = '["/home/alice/st/nixseal","%r/s/s",["/persist/alice/ssh/k"]]' ]
}
t "user-session manifest: exact schema and values (session user, owner and group \"\", %r paths, absolute key paths from home.homeDirectory, xdg.stateHome)" t_home_manifest

# Issue 13.3 for homes: the user-session manifest is checked at build time
# by the nixseal that deploys it, as a host's is: a path evaluation lets
# through (absolute) but deploy --user-session refuses (a system
# directory) fails the build of the home's manifest and says why.
t_home_manifest_checked_at_build() {
  [ -f "$H/secrets/rekeyed/laptop.bob/mail-password.age" ] || t_home_renc
  local d=$W/fleet-home-checked out
  rm -rf "$d" && cp -r "$H" "$d" && rm -rf "$d"/result* "$d"/.git
  cd "$d"
  git init -q && git add -A && git -c user.name=t -c user.email=t@t commit -qm checked
  # The fixture's own manifests pass the check.
  nix build "$(home_attr desk.alice).nixseal.build.manifest" -o "$d/ok"
  sed -i 's|      path = "${config.home.homeDirectory}/.netrc";|      path = "/etc";|' homes/alice.nix
  grep -q 'path = "/etc";' homes/alice.nix || fail "the fixture edit did not apply"
  git add -A
  out=$(fails nix build "$(home_attr desk.alice).nixseal.build.manifest" -o "$d/bad")
  contains "$out" '"/etc" is a system directory' "failed with exit code 2"
  # Turned off, the same manifest builds (the option works both ways).
  sed -i 's|    rekeyedDir = ../secrets/rekeyed;|    rekeyedDir = ../secrets/rekeyed;\n    checkManifest = false;|' homes/alice.nix
  grep -q 'checkManifest = false;' homes/alice.nix || fail "the fixture edit did not apply"
  git add -A
  nix build "$(home_attr desk.alice).nixseal.build.manifest" -o "$d/unchecked"
}
t "home manifest checked at build time by nixseal manifest check (a system directory fails the build)" t_home_manifest_checked_at_build

t_home_units() {
  [ -f "$H/secrets/rekeyed/laptop.bob/mail-password.age" ] || t_home_renc
  cd "$H"
  local gen unit m exe act
  gen=$(bob_generation)
  m=$(home_manifest laptop.bob)
  exe="$(nix eval --raw '.#homeConfigurations."bob@laptop".config.nixseal.settings.package.outPath')/bin/nixseal"
  unit=$(cat "$gen/home-files/.config/systemd/user/nixseal.service")
  echo "$unit"
  # home-manager's rendering (lib.generators.toINI): sections in order,
  # list values as repeated keys.
  [ "$unit" = "[Install]
WantedBy=default.target

[Service]
ExecStart=$exe deploy --manifest $m --user-session
RemainAfterExit=true
Type=oneshot

[Unit]
Before=mbsync.service
Description=Decrypt nixseal secrets into %t/nixseal
RequiresMountsFor=/home/bob/.ssh
RequiresMountsFor=/home/bob/.local/state/nixseal
X-Restart-Triggers=$m
X-SwitchMethod=restart" ]
  [ "$(readlink "$gen/home-files/.config/systemd/user/default.target.wants/nixseal.service")" = "$(readlink "$gen/home-files/.config/systemd/user/nixseal.service")" ]
  # The activation entry follows writeBoundary and reloadSystemd (sd-switch,
  # the default): it restarts only a failed unit, deploys itself only
  # without a user systemd.
  act=$(cat "$gen/activate")
  local n
  for n in writeBoundary linkGeneration reloadSystemd; do
    [ "$(grep -n "Activating %s\" $n\$" <<<"$act" | cut -d: -f1)" -lt "$(grep -n 'Activating %s" nixseal$' <<<"$act" | cut -d: -f1)" ] || fail "$n is not before nixseal"
  done
  act=$(nix eval --raw '.#homeConfigurations."bob@laptop".config.home.activation.nixseal.data')
  contains "$act" 'systemctl --user is-failed --quiet nixseal.service' 'run systemctl --user restart nixseal.service' \
    "XDG_RUNTIME_DIR=\$nixsealRuntimeDir run $exe deploy --manifest $m --user-session"
  [ "$(grep -c ' deploy --manifest ' <<<"$act")" = 1 ]
  [ "$(nix eval --json '.#homeConfigurations."bob@laptop".config.home.activation.nixseal.after')" = '["writeBoundary","reloadSystemd"]' ]
  bash -n <<<"$act"
  # alice (in desk's system): her unit is ordered before the service that
  # reads the token; desk runs her activation as home-manager-alice.service.
  nix build .#nixosConfigurations.desk.config.system.build.toplevel -o "$W/desk-system"
  local hm
  hm=$(nix eval --raw .#nixosConfigurations.desk.config.home-manager.users.alice.home.activationPackage.outPath)
  contains "$(cat "$W/desk-system/etc/systemd/system/home-manager-alice.service")" "ExecStart=$hm/activate" "User=alice"
  contains "$(cat "$hm/home-files/.config/systemd/user/nixseal.service")" "Before=app.service" "RequiresMountsFor=/home/alice/.ssh" \
    "--manifest $(home_manifest desk.alice) --user-session"
  [ -e "$hm/home-files/.config/systemd/user/default.target.wants/app.service" ]
}
t "the user unit and the activation entry are rendered as home-manager renders them (standalone and inside desk's system)" t_home_units

# The activation entry run as home-manager runs it (the generation's
# `activate`), with the user's systemd answering through a script given as
# systemd.user.systemctlPath and a package whose `nixseal` records its
# arguments (the real `deploy --user-session` is not there yet): who
# deploys, once, in each situation.
t_home_activation_runs() {
  [ -f "$H/secrets/rekeyed/laptop.bob/mail-password.age" ] || t_home_renc
  local d=$W/activation
  rm -rf "$d" && mkdir -p "$d/home" "$d/run"
  cat >"$d/systemctl" <<'SH'
#!/bin/sh
echo "systemctl $*" >>"$LOG"
case "$*" in
  "--user is-system-running") if [ "$STATE" = offline ]; then echo "Failed to connect to bus: No such file or directory"; exit 1; fi; echo "$STATE"; [ "$STATE" = running ] ;;
  "--user is-failed --quiet nixseal.service") [ "$FAILED" = yes ] ;;
  *) exit 0 ;;
esac
SH
  chmod +x "$d/systemctl"
  cat >"$d/variant.nix" <<'NIX'
{ flake, systemctl, module }:
let
  f = builtins.getFlake flake;
  lib = f.inputs.nixpkgs.lib;
in
(f.homeConfigurations."bob@laptop".extendModules {
  modules = [
    ({ pkgs, ... }: {
      systemd.user.systemctlPath = systemctl;
      nixseal.settings.package = lib.mkForce (pkgs.writeShellScriptBin "nixseal" ''
        echo "nixseal $* XDG_RUNTIME_DIR=$XDG_RUNTIME_DIR" >>"$LOG"
        exit "''${DEPLOY_RC:-0}"
      '');
    })
    module
  ];
}).activationPackage
NIX
  generation() { # NAME MODULE-EXPR: build a variant of bob's home
    nix build --impure -o "$d/gen-$1" --expr "import $d/variant.nix { flake = \"git+file://$H\"; systemctl = \"$d/systemctl\"; module = $2; }" >&2
    readlink "$d/gen-$1"
  }
  activate() { # GENERATION STATE FAILED [RUNTIME-DIR]: run it, print the log
    : >"$d/log"
    env -i PATH=/usr/bin:/bin HOME="$d/home" USER=bob LOG="$d/log" STATE="$2" FAILED="$3" \
      ${4:+XDG_RUNTIME_DIR=$4} ${DRY_RUN:+DRY_RUN=1} ${DEPLOY_RC:+DEPLOY_RC=$DEPLOY_RC} "$1/activate" >"$d/out" 2>&1 || { cat "$d/out" >&2; return 1; }
    cat "$d/log"
  }
  local sd suggest nounit log
  sd=$(generation sd '{ }')
  [ ! -e "$d/home/.local/state/home-manager/gcroots/current-home" ]
  # A running user systemd, sd-switch: it reloads (and restarts a changed
  # nixseal.service); the entry does nothing more...
  log=$(activate "$sd" running no "$d/run")
  echo "$log"
  contains "$log" "systemctl --user daemon-reload" "systemctl --user is-failed --quiet nixseal.service"
  if grep -e restart -e '^nixseal' <<<"$log"; then fail "deployed twice"; fi
  # ...but retries a unit that failed (sd-switch leaves it), after the reload.
  log=$(activate "$sd" running yes "$d/run")
  [ "$(grep -c 'restart nixseal.service' <<<"$log")" = 1 ]
  [ "$(grep -n daemon-reload <<<"$log" | cut -d: -f1)" -lt "$(grep -n 'restart nixseal.service' <<<"$log" | cut -d: -f1)" ]
  if grep '^nixseal' <<<"$log"; then fail "deployed besides the unit"; fi
  # Degraded counts as running; a starting session runs the unit itself.
  contains "$(activate "$sd" degraded yes "$d/run")" "restart nixseal.service"
  log=$(activate "$sd" starting yes "$d/run")
  if grep -e restart -e '^nixseal' <<<"$log"; then fail "deployed while the session starts"; fi
  contains "$(cat "$d/out")" "nixseal.service deploys the secrets as part of default.target"
  # No user systemd, a runtime directory: the entry deploys, once, into it.
  log=$(activate "$sd" offline no "$d/run")
  [ "$(grep -c '^nixseal deploy --manifest /nix/store/[^ ]*-nixseal-manifest-laptop.bob.json --user-session XDG_RUNTIME_DIR='"$d/run"'$' <<<"$log")" = 1 ]
  # No runtime directory given: /run/user/<uid>, which this user has not.
  [ ! -d "/run/user/$(id -u)" ] || fail "this test needs a uid without /run/user/<uid>"
  log=$(activate "$sd" offline no)
  if grep '^nixseal' <<<"$log"; then fail "deployed without a runtime directory"; fi
  contains "$(cat "$d/out")" "no runtime directory /run/user/$(id -u) (the user is not logged in); nixseal.service deploys the secrets at the next login"
  # A failing deploy warns and lets the activation finish (its GC root).
  rm -f "$d/home/.local/state/home-manager/gcroots/current-home"
  DEPLOY_RC=1 activate "$sd" offline no "$d/run" >/dev/null
  contains "$(cat "$d/out")" "nixseal: deploying the secrets failed"
  [ "$(readlink "$d/home/.local/state/home-manager/gcroots/current-home")" = "$sd" ]
  # DRY_RUN: the restart is printed, not run.
  log=$(DRY_RUN=1 activate "$sd" running yes "$d/run")
  if grep 'restart nixseal.service' <<<"$log"; then fail "restarted in a dry run"; fi
  contains "$(cat "$d/out")" "systemctl --user restart nixseal.service"
  # startServices = "suggest": home-manager only reloads; the entry restarts
  # nixseal.service when its unit file changed since the previous generation
  # (or on the first one), not when it did not.
  suggest=$(generation suggest '{ systemd.user.startServices = "suggest"; }')
  rm -f "$d/home/.local/state/home-manager/gcroots/current-home"
  [ "$(activate "$suggest" running no "$d/run" | grep -c 'restart nixseal.service')" = 1 ]
  log=$(activate "$suggest" running no "$d/run")
  if grep 'restart nixseal.service' <<<"$log"; then fail "restarted although nothing changed"; fi
  local changed
  changed=$(generation changed '{ systemd.user.startServices = "suggest"; nixseal.secrets.mail-password.mode = "0440"; }')
  [ "$(activate "$changed" running no "$d/run" | grep -c 'restart nixseal.service')" = 1 ]
  # systemd.user.enable = false: no unit; the entry deploys at each switch.
  nounit=$(generation nounit '{ systemd.user.enable = false; }')
  [ ! -e "$nounit/home-files/.config/systemd/user/nixseal.service" ]
  log=$(activate "$nounit" running no "$d/run")
  if grep systemctl <<<"$log"; then fail "asked systemctl without a unit"; fi
  [ "$(grep -c '^nixseal deploy ' <<<"$log")" = 1 ]
}
t "the activation entry on a switch: sd-switch restarts the unit, the entry retries a failed one or deploys without a user systemd, once; suggest mode restarts on a changed unit (systemctl simulated)" t_home_activation_runs

t_home_errors() {
  local out
  # A standalone home needs its target name; inside NixOS it is <host>.<user>.
  out=$(eval_home '[ { home.username = "alice"; home.homeDirectory = "/home/alice"; home.stateVersion = "24.11"; nixseal.secrets.s.file = /dev/null; } ]' 'h.config.nixseal.build.problems')
  contains "$out" 'the home of user `alice` has secrets but no nixseal.settings.targetName' 'nixseal.settings.targetName = \"laptop.alice\"; for homeConfigurations.\"alice@laptop\"' \
    'has secrets but no nixseal.settings.userPubkey' 'ssh-keygen -t ed25519 -N '"''"' -f ~/.ssh/nixseal_ed25519' 'has secrets but no nixseal.settings.rekeyedDir'
  [ "$(eval_home_os '[ { networking.hostName = "desk"; } ]' '[ { home.stateVersion = "24.11"; } ]' 'os.config.home-manager.users.alice.nixseal.settings.targetName')" = '"desk.alice"' ]
  [ "$(eval_home_os '[ { networking.hostName = "desk"; nixseal.settings.hostName = "desk2"; } ]' '[ { home.stateVersion = "24.11"; } ]' 'os.config.home-manager.users.alice.nixseal.settings.targetName')" = '"desk2.alice"' ]
  contains "$(fails eval_home "[ $HOME_BASE { nixseal.settings.targetName = \"a..b\"; } ]" 'h.config.nixseal.settings.targetName')" 'target name of at most 96 bytes'
  # Bad keys are named as such, with the user's fix.
  contains "$(eval_home "[ $HOME_BASE { nixseal.settings.userPubkey = \"ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7\"; } ]" 'h.config.nixseal.build.problems')" \
    'nixseal.settings.userPubkey of home `laptop.alice` (user `alice`) is not an ssh-ed25519 key (got `ssh-rsa`)' 'use the content of ~/.ssh/id_ed25519.pub'
  local small
  small=$(python3 "$here/lib/ed25519-small-order.py" keys | sed -n 1p)
  contains "$(eval_home "[ $HOME_BASE { nixseal.settings.userPubkey = \"$small\"; } ]" 'h.config.nixseal.build.problems')" 'is an ed25519 point of small order'
  contains "$(eval_home "[ $HOME_BASE { nixseal.settings.userPubkey = /nonexistent/alice.pub; } ]" 'h.config.nixseal.build.problems')" 'is the file /nonexistent/alice.pub, which does not exist (or is not tracked by git)'
  contains "$(eval_home "[ $HOME_BASE { nixseal.settings.userKeys = [ ]; } ]" 'h.config.nixseal.build.problems')" 'has no nixseal.settings.userKeys'
  # Templates, duplicates, root.
  out=$(eval_home "[ $HOME_BASE { nixseal.templates.t.content = \"{{nixseal:tokn}}\"; nixseal.templates.u.content = \"{{nixseal:s\"; nixseal.secrets.s2 = { file = /dev/null; path = \"%r/nixseal/s\"; }; } ]" 'h.config.nixseal.build.problems')
  contains "$out" 'template `t` of home `laptop.alice` (user `alice`) uses the placeholder `{{nixseal:tokn}}`, but home `laptop.alice` has no secret named `tokn` (its secrets are `s`, `s2`)' \
    'template `u` of home `laptop.alice` (user `alice`) has a `{{nixseal:` without a closing `}}`' 'uses the secret or template path `%r/nixseal/s` more than once'
  contains "$(eval_home '[ { home.username = "root"; home.homeDirectory = "/root"; home.stateVersion = "24.11"; nixseal.templates.t.content = "x"; } ]' 'h.config.nixseal.build.problems')" \
    'refuses to run as root' 'Declare root'"'"'s secrets in the NixOS module'
  # Problems stop the manifest (and so the switch), not the configuration:
  # the fleet still reads a standalone home's config (no assertion fails).
  contains "$(fails eval_home "[ $HOME_BASE ]" 'h.config.nixseal.build.manifest.drvPath')" 'has secrets but no nixseal.settings.rekeyedDir'
  [ "$(eval_home "[ $HOME_BASE ]" '[ (h.config.nixseal.build.problems != [ ]) h.config.home.username ]')" = '[true,"alice"]' ]
  [ "$(eval_home "[ $HOME_BASE ]" 'builtins.filter (a: !a.assertion) h.config.assertions')" = '[]' ]
  # World-readable modes and allowPlaintextOnDisk where it does nothing warn.
  out=$(eval_home "[ $HOME_BASE { nixseal.secrets.s.mode = \"0444\"; nixseal.secrets.s.allowPlaintextOnDisk = true; } ]" 'h.config.warnings')
  contains "$out" 'secret `s` of home `laptop.alice` (user `alice`) has mode 0444, which gives every user on the host' 'sets allowPlaintextOnDisk, which only matters for a copy'
  # Path types: absolute or %r/..., never the store, a relative path or ..
  local p
  # ("~/x" too: nothing but a leading %r is expanded.)
  # shellcheck disable=SC2088
  for p in 'relative/x' '/nix/store/x' '%r/../x' '%rx' '~/x' '/a/../b'; do
    contains "$(fails eval_home "[ $HOME_BASE { nixseal.secrets.s.path = \"$p\"; } ]" 'h.config.nixseal.secrets.s.path')" 'or a path starting with `%r/`'
  done
  [ "$(eval_home "[ $HOME_BASE { nixseal.secrets.s.path = \"%r/x\"; nixseal.settings.mountPoint = \"/run/user/1000/g\"; } ]" '[ h.config.nixseal.secrets.s.path h.config.nixseal.settings.mountPoint ]')" = '["%r/x","/run/user/1000/g"]' ]
  contains "$(fails eval_home "[ $HOME_BASE { nixseal.settings.userKeys = [ \"%r/key\" ]; } ]" 'h.config.nixseal.settings.userKeys')" 'absolute path outside the Nix store'
  # In the fleet after renc: stale, untracked and wrong-key rekeys of a home.
  [ -f "$H/secrets/rekeyed/laptop.bob/mail-password.age" ] || t_home_renc
  cd "$H"
  git rm -q --cached secrets/rekeyed/desk.alice/netrc.age
  contains "$(home_problems desk.alice)" 'secret `netrc` of home `desk.alice` (user `alice` on host `desk`): the rekeyed file secrets/rekeyed/desk.alice/netrc.age is missing or not tracked by git' 'git add secrets/rekeyed'
  git add secrets/rekeyed/desk.alice/netrc.age
  cp homes/alice.nix "$W/alice.nix"
  trap 'cp "$W/alice.nix" homes/alice.nix; git add homes/alice.nix' EXIT
  sed -i "s|userPubkey = .*|userPubkey = \"$(cat "$(userkey bob).pub")\";|" homes/alice.nix
  git add homes/alice.nix
  contains "$(home_problems desk.alice)" 'desk.alice/api-token.age is stale: it was encrypted to another key than nixseal.settings.userPubkey'
  contains "$(nix eval --raw ".#apps.$SYSTEM.renc.program" 2>&1 >/dev/null)" 'nixseal: the rekey targets desk.alice (user alice), laptop.bob (user bob) have the same public key'
}
t "home eval errors: no targetName, bad or missing keys, template typos, duplicates, root, path types, untracked and wrong-key rekeys (fix-it text naming home, user, host); modes and a shared key warn" t_home_errors

t_home_targets() {
  cd "$H"
  local base="let f = builtins.getFlake \"git+file://$H\"; ns = f.inputs.nixseal; lib = f.inputs.nixpkgs.lib; pkgs = f.inputs.nixpkgs.legacyPackages.$SYSTEM;
    bob = f.homeConfigurations.\"bob@laptop\";
    named = n: bob.extendModules { modules = [ { nixseal.settings.targetName = lib.mkForce n; } ]; };
    fleet = homes: ns.lib.mkFleet { self = f; inherit pkgs homes; }; in"
  # Without targetName a standalone home is named after its attribute, host
  # first; its own evaluation says to set it.
  [ "$(nix eval --impure --json --expr "$base builtins.attrNames (fleet { \"bob@tower\" = named null; alice = named null; }).profile.hosts")" = '["alice","desk","desk.alice","tower.bob"]' ]
  contains "$(nix eval --impure --json --expr "$base (named null).config.nixseal.build.problems")" 'no nixseal.settings.targetName'
  # One name, one target: a home against the node's home, against a host.
  contains "$(fails nix eval --impure --json --expr "$base (fleet { \"alice@desk\" = named null; }).profile")" \
    'several rekey targets share a name' "desk.alice is the home-manager user alice of node desk and homeConfigurations.\"alice@desk\"" 'nixseal.settings.targetName in a home'
  contains "$(fails nix eval --impure --json --expr "$base (fleet { \"bob@laptop\" = named \"desk\"; }).profile")" "desk is the NixOS node desk and homeConfigurations.\"bob@laptop\""
  contains "$(fails nix eval --impure --json --expr "$base (fleet { \"bob at laptop\" = named null; }).profile")" "homeConfigurations.\"bob at laptop\" would be the rekey target \`bob at laptop\`" 'set nixseal.settings.targetName in it'
  # A home's rekeyedDir must be the fleet's.
  contains "$(fails nix eval --impure --json --expr "$base (fleet { \"bob@laptop\" = bob.extendModules { modules = [ { nixseal.settings.rekeyedDir = lib.mkForce (f + \"/other\"); } ]; }; }).profile")" 'rekeyed directory differs' "nodes' or homes'"
  # Homes without nixseal secrets are not targets; the flake-parts option
  # takes self.homeConfigurations.
  [ "$(nix eval --impure --json --expr "$base builtins.attrNames (fleet { }).profile.hosts")" = '["desk","desk.alice"]' ]
  [ "$(nix eval --impure --json --expr "$base builtins.attrNames (fleet { plain = bob.extendModules { modules = [ { nixseal.secrets = lib.mkForce { }; } ]; }; }).profile.hosts")" = '["desk","desk.alice"]' ]
}
t "rekey targets: standalone homes named host first (or by targetName), unique across hosts and homes (the error names both), valid names, one rekeyedDir" t_home_targets

t_home_options_documented() {
  # Every visible option of the home-manager module is typed, described,
  # and in the home-manager section of docs/options.md.
  local opts section name
  opts=$(eval_home '[ { home.username = "alice"; home.homeDirectory = "/home/alice"; home.stateVersion = "24.11"; } ]' "let lib = import $SHARED_NIX/nixpkgs-lib/lib; in
    map (o: { inherit (o) name; described = o.description or \"\" != \"\"; typed = o.type or \"\" != \"unspecified\"; })
      (lib.filter (o: o.visible && !o.internal) (lib.optionAttrSetToDocList h.options.nixseal))")
  [ "$(jq length <<<"$opts")" -ge 20 ]
  [ "$(jq -c '[.[] | select(.described and .typed | not) | .name]' <<<"$opts")" = '[]' ]
  section=$(sed -n '/^## home-manager module/,/^## [^h]/p' "$NIXSEAL_REPO/docs/options.md")
  [ -n "$section" ] || fail "docs/options.md has no home-manager module section"
  for name in $(jq -r '.[].name' <<<"$opts"); do
    grep -qF "\`${name##*.}\`" <<<"$section" || grep -qF "\`$name" <<<"$section" || fail "option $name is not in the home-manager section of docs/options.md"
  done
  # The home-manager docs exist where the issue asks for them.
  grep -q '^## .*home-manager' "$NIXSEAL_REPO/docs/getting-started.md"
  grep -q '^## .*home-manager' "$NIXSEAL_REPO/docs/migrating.md"
}
t "every home-manager option is typed, described and in docs/options.md; getting-started and migrating have home-manager sections" t_home_options_documented

# Issue 16: the stand-in home-manager behaves like home-manager where the
# module depends on it.
t_standin_home_manager() {
  local out hm="let hm = import $here/lib/standin-home-manager.nix { lib = import $here/lib/standin-lib.nix (import $SHARED_NIX/nixpkgs-lib/lib); pkgs = import $here/lib/standin-pkgs.nix { lib = import $SHARED_NIX/nixpkgs-lib/lib; system = \"x86_64-linux\"; }; }; d = hm.hm.dag; in"
  # The DAG: after/before, names not in it order nothing, a cycle is refused.
  [ "$(nix eval --impure --json --expr "$hm map (e: e.name) (d.topoSort { a = d.entryAnywhere 1; b = d.entryAfter [ \"a\" \"c\" \"nosuch\" ] 2; c = d.entryBefore [ \"d\" ] 3; d = d.entryBefore [ \"e\" ] 4; e = d.entryAnywhere 5; }).result")" = '["a","c","b","d","e"]' ]
  [ "$(nix eval --impure --json --expr "$hm (d.topoSort { a = d.entryAfter [ \"b\" ] 1; b = d.entryAfter [ \"a\" ] 2; }) ? cycle")" = true ]
  contains "$(fails eval_home "[ $HOME_BASE { home.activation.x = { after = [ \"y\" ]; before = [ ]; data = \"\"; }; home.activation.y = { after = [ \"x\" ]; before = [ ]; data = \"\"; }; } ]" 'h.activationPackage.drvPath')" 'Dependency cycle in activation script'
  # Strict: an option home-manager does not declare fails.
  contains "$(fails eval_home "[ $HOME_BASE { services.nosuch.enable = true; } ]" 'h.config.home.username')" "The option \`services' does not exist"
  # A failed assertion hides a standalone home's config (why nixseal's
  # problems are no assertions); inside NixOS it becomes the system's,
  # prefixed with the user.
  contains "$(fails eval_home "[ $HOME_BASE { assertions = [ { assertion = false; message = \"no\"; } ]; } ]" 'h.config.home.username')" 'Failed assertions' '- no'
  contains "$(eval_home_os '[ { networking.hostName = "desk"; } ]' '[ { home.stateVersion = "24.11"; assertions = [ { assertion = false; message = "no"; } ]; warnings = [ "w" ]; } ]' '[ (map (a: a.message) os.config.assertions) os.config.warnings ]')" '"alice profile: no"' '"alice profile: w"'
  # NixOS: username and home from users.users, osConfig is the system,
  # sharedModules reach every user.
  [ "$(eval_home_os '[ { networking.hostName = "desk"; users.users.alice.home = "/srv/alice"; home-manager.sharedModules = [ ({ osConfig, ... }: { home.file.x.text = osConfig.networking.hostName; }) ]; } ]' '[ { home.stateVersion = "24.11"; } ]' 'let u = os.config.home-manager.users.alice; in [ u.home.username u.home.homeDirectory u.home.file.x.text u.xdg.stateHome ]')" = '["alice","/srv/alice","desk","/srv/alice/.local/state"]' ]
  # Standalone: osConfig is null.
  [ "$(eval_home "[ $HOME_BASE ({ osConfig, ... }: { home.file.x.text = builtins.toJSON osConfig; }) ]" 'h.config.home.file.x.text')" = '"null"' ]
  # xdg.configFile becomes home.file relative to the home; units: section
  # rendering with repeated keys, nothing for root; startServices.
  [ "$(eval_home "[ $HOME_BASE { xdg.configFile.\"a/b\".text = \"x\"; } ]" 'h.config.home.file."/home/alice/.config/a/b".target')" = '".config/a/b"' ]
  [ "$(eval_home "[ $HOME_BASE ]" '[ (h.config.systemd.user.startServices) ((h.extendModules { modules = [ { systemd.user.startServices = "suggest"; } ]; }).config.systemd.user.startServices) ]')" = '[true,false]' ]
  [ "$(eval_home '[ { home.username = "root"; home.homeDirectory = "/root"; home.stateVersion = "24.11"; } ]' 'h.config.xdg.configFile ? "systemd/user/nixseal.service"')" = false ]
  [ "$(eval_home "[ $HOME_BASE ]" 'h.config.xdg.configFile ? "systemd/user/nixseal.service"')" = true ]
  contains "$(fails eval_home "[ $HOME_BASE { systemd.user.services.nixseal.Unit.X-SwitchMethod = \"sometimes\"; } ]" 'h.config.systemd.user.services.nixseal.Unit.X-SwitchMethod')" 'is not of type'
}
t "stand-in home-manager: DAG order and cycles, strict options, assertions hide a standalone config, NixOS integration (users, osConfig, sharedModules, prefixes), xdg files, units" t_standin_home_manager

t_rendered_user_units() {
  local o=$W/user-units o2=$W/user-units-2 v=$W/user-values
  bash "$here/render-user-units.sh" "$o" --nixseal /usr/bin/nixseal --manifest-path /etc/nixseal/user.json --user tester --key-path /persist/tester/id_ed25519
  local u
  u=$(cat "$o/nixseal.service")
  contains "$u" "ExecStart=/usr/bin/nixseal deploy --manifest /etc/nixseal/user.json --user-session" "X-Restart-Triggers=/etc/nixseal/user.json" \
    "WantedBy=default.target" "Before=nixseal-test-user-a.service" "Before=nixseal-test-user-b.service" "Type=oneshot" "RemainAfterExit=true" \
    "RequiresMountsFor=/persist/tester" "Description=Decrypt nixseal secrets into %t/nixseal"
  if grep -q nixseal-placeholder "$o/nixseal.service" "$o/activation.sh"; then fail "placeholder left"; fi
  bash -n "$o/activation.sh"
  contains "$(cat "$o/activation.sh")" "/usr/bin/nixseal deploy --manifest /etc/nixseal/user.json --user-session"
  [ "$(jq -c '[.session, .hostKeys, .stateDir, ([.secrets[].name]), ([.templates[].name])]' "$o/manifest.json")" = '["user",[{"path":"/persist/tester/id_ed25519","type":"ed25519"}],"/home/tester/.local/state/nixseal",["api-token","mail-password","netrc"],["app.env"]]' ]
  [ "$(jq -r '.secrets[] | select(.name=="netrc") | .path' "$o/manifest.json")" = /home/tester/.config/nixseal-test/netrc ]
  [ "$(wc -l <"$o/store-paths")" = 4 ]
  local s src
  for s in api-token mail-password netrc; do
    src=$(jq -r --arg s "$s" '.secrets[] | select(.name==$s) | .source' "$o/manifest.json")
    age -d -i "$o/id_ed25519" "$src" | cmp - "$o/expected/$s"
  done
  [ "$(cat "$o/expected/app.env")" = "TOKEN=$(cat "$o/expected/api-token")" ]
  # A rotation: the same key, one value changed; only that source differs.
  rm -rf "$v" && cp -r "$o/expected" "$v" && printf 'rotated' >"$v/mail-password"
  bash "$here/render-user-units.sh" "$o2" --nixseal /usr/bin/nixseal --user tester --key "$o/id_ed25519" --values "$v"
  cmp "$o/id_ed25519.pub" "$o2/id_ed25519.pub"
  [ "$(cat "$o2/expected/mail-password")" = rotated ]
  cmp "$o/expected/api-token" "$o2/expected/api-token"
  [ "$(jq -c '[.secrets[].source]' "$o/manifest.json" | jq -r '.[1]')" != "$(jq -c '[.secrets[].source]' "$o2/manifest.json" | jq -r '.[1]')" ]
  contains "$(cat "$o2/nixseal.service")" "--manifest $(cat "$o2/manifest-store-path") --user-session"
  if command -v systemd-analyze >/dev/null; then
    if systemd-analyze verify "$o/nixseal.service" 2>&1 | grep -i 'unknown\|invalid'; then
      fail "systemd-analyze complains about the user unit"
    fi
  fi
}
t "render-user-units.sh: the user unit, activation entry, user manifest and key for the user-session systemd test (also a rotation)" t_rendered_user_units

echo
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
