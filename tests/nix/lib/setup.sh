# shellcheck shell=bash
# Builds the offline test world under $1 (sourced by run.sh after common.sh):
#   $1/standin-nixpkgs  stand-in nixpkgs flake; its buildRustPackage builds
#                       nixseal from the flake's source with this machine's
#                       cargo (see standin_rust in common.sh)
#   $1/nixseal          this checkout's git-visible files (tracked + new,
#                       as `git ls-files` shows them; no target/)
#   $1/fleet            the fixture fleet: a git repo with keys, master
#                       secrets and a locked flake.lock (not yet rekeyed)
#   $1/fleet-plain      the same fleet with a flake without flake-parts
#                       (nixseal.lib.mkFleet)
#   $1/hostkeys         the hosts' private keys (outside the fleet)
setup_world() {
  local w="$1"
  mkdir -p "$w/standin-nixpkgs" "$w/nixseal"
  cp "$NIXSEAL_REPO/tests/nix/standin-nixpkgs/flake.nix" "$NIXSEAL_REPO"/tests/nix/lib/*.nix \
    "$NIXSEAL_REPO"/tests/nix/lib/*.py "$w/standin-nixpkgs/"
  sed -i -e "s|@NIXPKGS_LIB@|path:$SHARED_NIX/nixpkgs-lib|" -e "s|@RUST_TOOLCHAIN_BIN@|$STANDIN_RUST_BIN|" \
    -e "s|@CARGO_HOME@|$STANDIN_CARGO_HOME|" -e "s|@CARGO_TARGET_CACHE@|$STANDIN_CARGO_TARGET|" \
    "$w/standin-nixpkgs/flake.nix"
  (cd "$NIXSEAL_REPO" && git ls-files -co --exclude-standard -z | xargs -0 cp --parents -t "$w/nixseal" 2>/dev/null) || true

  local f="$w/fleet"
  mkdir -p "$f"
  cp -r "$NIXSEAL_REPO/tests/nix/fixture/." "$f/"
  fleet_keys "$w/keys-tmp" && mkdir -p "$f/keys" && mv "$w/keys-tmp/keys/"* "$f/keys/" && rm -rf "$w/keys-tmp"
  fleet_hostkey "$w" web1
  fleet_hostkey "$w" web2
  sed -i -e "s|@NIXPKGS@|path:$w/standin-nixpkgs|" -e "s|@FLAKE_PARTS@|path:$SHARED_NIX/flake-parts|" \
    -e "s|@NIXSEAL@|path:$w/nixseal|" "$f/flake.nix"
  sed -i "s|@WEB1_PUBKEY@|$(fleet_pubkey "$w" web1)|" "$f/hosts/web1.nix"
  sed -i "s|@WEB2_PUBKEY@|$(fleet_pubkey "$w" web2)|" "$f/hosts/web2.nix"
  printf 'db-password-%s' "$RANDOM$RANDOM" | fleet_secret "$f" secrets/db-password.age
  printf 'root:%s' "$RANDOM" | fleet_secret "$f" secrets/root-password.age
  printf 'api-token-%s' "$RANDOM$RANDOM" | fleet_secret "$f" secrets/api-token.age
  printf '/keys/master.age\n/result*\n' >"$f/.gitignore"
  # The same fleet without flake-parts, next to it.
  local p="$w/fleet-plain"
  cp -r "$f" "$p"
  cp "$NIXSEAL_REPO/tests/nix/fixture-plain/flake.nix" "$p/flake.nix"
  sed -i -e "s|@NIXPKGS@|path:$w/standin-nixpkgs|" -e "s|@FLAKE_PARTS@|path:$SHARED_NIX/flake-parts|" \
    -e "s|@NIXSEAL@|path:$w/nixseal|" "$p/flake.nix"
  local d
  for d in "$f" "$p"; do
    (
      cd "$d" && git init -q && git add -A &&
        git -c user.name=t -c user.email=t@t commit -qm fixture &&
        nix flake lock 2>/dev/null && git add flake.lock
    )
  done
}

# Rekeys the fixture fleet with Go age (contract layout), tracked by git.
fleet_rekey_all_with_age() {
  local f="$1/fleet"
  # fleet_age_rekey looks for host keys under DIR/hostkeys.
  ln -sfn "$1/hostkeys" "$f/hostkeys"
  fleet_age_rekey "$f" web1 db-password=secrets/db-password.age root-password=secrets/root-password.age
  fleet_age_rekey "$f" web2 db-password=secrets/db-password.age api-token=secrets/api-token.age
  rm "$f/hostkeys"
  (cd "$f" && git add secrets/rekeyed)
}

# Builds the home-manager part of the test world under $1, after
# setup_world (sourced by run.sh):
#   $1/standin-home-manager  stand-in home-manager flake (lib/standin-home-manager.nix)
#   $1/fleet-home            the fixture fleet with homes (tests/nix/fixture-home):
#                            host desk with the home-manager user alice, and the
#                            standalone homeConfigurations."bob@laptop"; keys,
#                            master secrets, locked, not yet rekeyed
#   $1/hostkeys/{desk,alice,bob}  their private keys (users' keys too, same layout)
setup_home_world() {
  local w="$1" f="$1/fleet-home"
  mkdir -p "$w/standin-home-manager"
  cp "$NIXSEAL_REPO/tests/nix/standin-home-manager/flake.nix" "$NIXSEAL_REPO/tests/nix/lib/standin-home-manager.nix" \
    "$w/standin-home-manager/"
  sed -i "s|@NIXPKGS@|path:$w/standin-nixpkgs|" "$w/standin-home-manager/flake.nix"
  mkdir -p "$f"
  cp -r "$NIXSEAL_REPO/tests/nix/fixture-home/." "$f/"
  mkdir -p "$f/keys" && cp "$w/fleet/keys/master.age" "$w/fleet/keys/master.pub" "$f/keys/"
  local k
  for k in desk alice bob; do fleet_hostkey "$w" "$k"; done
  sed -i -e "s|@NIXPKGS@|path:$w/standin-nixpkgs|" -e "s|@FLAKE_PARTS@|path:$SHARED_NIX/flake-parts|" \
    -e "s|@NIXSEAL@|path:$w/nixseal|" -e "s|@HOME_MANAGER@|path:$w/standin-home-manager|" "$f/flake.nix"
  sed -i "s|@DESK_PUBKEY@|$(fleet_pubkey "$w" desk)|" "$f/hosts/desk.nix"
  sed -i "s|@ALICE_PUBKEY@|$(fleet_pubkey "$w" alice)|" "$f/homes/alice.nix"
  cp "$w/hostkeys/bob/ssh_host_ed25519_key.pub" "$f/homes/bob.pub"
  printf 'db-password-%s' "$RANDOM$RANDOM" | fleet_secret "$f" secrets/db-password.age
  printf 'alice-token-%s' "$RANDOM$RANDOM" | fleet_secret "$f" secrets/api-token.age
  printf 'machine example.org login alice password %s\n' "$RANDOM" | fleet_secret "$f" secrets/netrc.age
  printf 'bob-mail-%s' "$RANDOM$RANDOM" | fleet_secret "$f" secrets/mail-password.age
  printf '/keys/master.age\n/result*\n' >"$f/.gitignore"
  (
    cd "$f" && git init -q && git add -A &&
      git -c user.name=t -c user.email=t@t commit -qm fixture-home &&
      nix flake lock 2>/dev/null && git add flake.lock
  )
}
