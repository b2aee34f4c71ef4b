# Where a path of the flake is, for messages and for the fleet profile. A
# flake's files are evaluated from its store copy, `/nix/store/<hash>-source`,
# which is the whole git repository when flake.nix sits in a subdirectory
# (`infra/flake.nix`). Commands the user runs (`nix run .#renc`, `git add`)
# start in the directory of flake.nix, so paths are shown relative to that:
# the nearest directory at or above the path that holds a flake.nix (what
# `nix` itself looks for from the working directory).
{ lib }:
let
  storeDir = builtins.storeDir;
in
rec {
  # The store path a path belongs to ("/nix/store/<hash>-source"), or null.
  sourceRootOf =
    p:
    let
      m = builtins.match "(${storeDir}/[^/]+)(/.*)?" (toString p);
    in
    if m == null then null else builtins.head m;

  # The directory holding the flake.nix of the flake `p` belongs to; null
  # when `p` is not in the store.
  flakeDirOf =
    p:
    let
      s = toString p;
      root = sourceRootOf s;
      isDir = builtins.pathExists "${s}/.";
      go = d: if d == root || builtins.pathExists "${d}/flake.nix" then d else go (dirOf d);
    in
    if root == null then null else go (if isDir then s else dirOf s);

  # `p` relative to `dir` ("." when equal), or null when outside it.
  relativeTo =
    dir: p:
    let
      s = toString p;
    in
    if s == dir then
      "."
    else if lib.hasPrefix "${dir}/" s then
      lib.removePrefix "${dir}/" s
    else
      null;

  # For messages: `p` relative to its flake's directory (as the user types it
  # in a shell there); a path outside the store as it is.
  inFlake =
    p:
    let
      dir = flakeDirOf p;
    in
    if dir == null then toString p else relativeTo dir p;
}
