# Evaluates host modules in the stand-in NixOS without a flake (for `nix eval
# --impure`): modules/nixos.nix + the given modules, with a stand-in package
# whose binary path is the placeholder /nixseal-placeholder/bin/nixseal.
{
  nixpkgsLib,
  modules,
}:
let
  lib = import ./standin-lib.nix (import nixpkgsLib);
  pkgs = import ./standin-pkgs.nix {
    inherit lib;
    system = builtins.currentSystem;
  };
in
import ./standin-nixos.nix { inherit lib pkgs; } {
  modules = [
    ../../../modules/nixos.nix
    {
      nixseal.settings.package = {
        type = "derivation";
        name = "nixseal";
        outPath = "/nixseal-placeholder";
      };
      # The placeholder cannot run: the units' tests deploy the manifest
      # with the real binary instead.
      nixseal.settings.checkManifest = false;
    }
  ]
  ++ modules;
}
