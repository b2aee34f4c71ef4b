# NixOS VM tests (pkgs.testers.runNixOSTest), one file each: every .nix file
# here except this one and common.nix is a test, exported as
# checks.<system>.nixseal-<file>. They need nixpkgs and KVM:
#   nix build .#checks.x86_64-linux.nixseal-boot -L
# tests/nix evaluates all of them offline (a stand-in runNixOSTest that
# evaluates every node and checks every testScript, no VMs).
{ pkgs, nixseal }:
let
  inherit (builtins) attrNames filter listToAttrs match readDir;
  common = import ./common.nix { inherit nixseal; };
  runNixOSTest =
    pkgs.testers.runNixOSTest
      or (throw "nixseal's checks are NixOS VM tests and need pkgs.testers.runNixOSTest (nixpkgs 23.05 or later)");
  files = filter (f: f != "default.nix" && f != "common.nix" && match ".*\\.nix" f != null) (
    attrNames (readDir ./.)
  );
  name = f: "nixseal-${builtins.head (match "(.*)\\.nix" f)}";
in
listToAttrs (
  map (f: {
    name = name f;
    value = runNixOSTest (import (./. + "/${f}") { inherit common; });
  }) files
)
