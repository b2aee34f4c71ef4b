# shellcheck shell=bash
# Common setup for the offline Nix test scripts (sourced).
# Sets: NIXSEAL_REPO, SHARED_NIX, NIX_CONFIG; needs nix, age, ssh-keygen.
NIXSEAL_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
SHARED_NIX=${NIXSEAL_SHARED_NIX:-$NIXSEAL_REPO/../shared/nix}
[ -d "$SHARED_NIX/nixpkgs-lib/lib" ] || SHARED_NIX=/work/shared/nix
if [ ! -d "$SHARED_NIX/nixpkgs-lib/lib" ]; then
  echo "error: nixpkgs lib not found; set NIXSEAL_SHARED_NIX to the directory holding nixpkgs-lib/ and flake-parts/" >&2
  exit 2
fi
SHARED_NIX=$(cd "$SHARED_NIX" && pwd)
# Builds run as this user (build-users-group empty), so that the stand-in
# buildRustPackage can use this user's cargo and crate cache.
export NIX_CONFIG=$'experimental-features = nix-command flakes\nsandbox = false\nsubstituters =\nwarn-dirty = false\nbuild-users-group ='
# The Rust toolchain the stand-in buildRustPackage builds nixseal with, and
# where it keeps compiled dependencies between runs (gitignored target/);
# setup.sh writes them into the stand-in nixpkgs flake.
# shellcheck disable=SC2034
STANDIN_RUST_BIN=$(rustc --print sysroot 2>/dev/null)/bin
# shellcheck disable=SC2034
STANDIN_CARGO_HOME=${CARGO_HOME:-$HOME/.cargo}
# shellcheck disable=SC2034
STANDIN_CARGO_TARGET=${NIXSEAL_STANDIN_CARGO_TARGET:-$NIXSEAL_REPO/target/nix-standin-cargo}
[ -x "$STANDIN_RUST_BIN/cargo" ] || { echo "error: no cargo next to rustc (rustc --print sysroot); install Rust with rustup" >&2; exit 2; }
for tool in nix nix-store age age-keygen ssh-keygen git jq python3; do
  command -v "$tool" >/dev/null || { echo "error: $tool is not installed (apt-get install nix-bin age openssh-client git jq)" >&2; exit 2; }
done
# shellcheck source=fleet.sh
. "$NIXSEAL_REPO/tests/nix/lib/fleet.sh"

# The nixseal binary under test: $NIXSEAL_BIN, else built by cargo.
nixseal_bin() {
  if [ -n "${NIXSEAL_BIN:-}" ]; then
    echo "$NIXSEAL_BIN"
    return
  fi
  (cd "$NIXSEAL_REPO" && cargo build -q -p nixseal-cli >&2) || return 1
  echo "$NIXSEAL_REPO/target/debug/nixseal"
}
