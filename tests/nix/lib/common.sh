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
export NIX_CONFIG=$'experimental-features = nix-command flakes\nsandbox = false\nsubstituters =\nwarn-dirty = false'
for tool in nix nix-store age age-keygen ssh-keygen git jq; do
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
