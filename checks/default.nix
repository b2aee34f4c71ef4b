# NixOS VM tests (pkgs.testers.runNixOSTest), one file each. They need a
# machine with nixpkgs and KVM:
#   nix build .#checks.x86_64-linux.nixseal-boot -L
# Elsewhere (no nixpkgs) this set is empty; tests/nix proves the rest offline.
{ pkgs, nixseal }:
let
  common = import ./common.nix { inherit nixseal; };
  test = file: pkgs.testers.runNixOSTest (import file { inherit common; });
in
if !(pkgs ? testers.runNixOSTest) then
  { }
else
  {
    nixseal-boot = test ./boot.nix;
    nixseal-reboot = test ./reboot.nix;
    nixseal-rotation = test ./rotation.nix;
    nixseal-corrupt = test ./corrupt.nix;
    nixseal-users = test ./users.nix;
    nixseal-hostkey-mount = test ./hostkey-mount.nix;
  }
