# Stand-in for the nixpkgs flake, for offline tests: the real nixpkgs `lib`
# (../shared/nix/nixpkgs-lib), `lib.nixosSystem` evaluating the stand-in NixOS
# option set, and `legacyPackages.<system>` from the stand-in pkgs whose
# rustPlatform.buildRustPackage yields the cargo-built ./nixseal binary.
# tests/nix/lib/setup.sh copies this directory, lib/*.nix and the binary
# together and fills in @NIXPKGS_LIB@.
{
  inputs.nixpkgs-lib.url = "@NIXPKGS_LIB@";

  outputs =
    { nixpkgs-lib, ... }:
    let
      system = "x86_64-linux";
      lib = nixpkgs-lib.lib // {
        nixosSystem =
          {
            modules,
            specialArgs ? { },
            ...
          }:
          import ./standin-nixos.nix { inherit lib pkgs; } { inherit modules specialArgs; };
      };
      pkgs = import ./standin-pkgs.nix {
        inherit lib system;
        nixsealBin = ./nixseal;
      };
    in
    {
      # Nix 2.8 does not tag inputs as flakes; flake-parts' inputs' needs it.
      _type = "flake";
      inherit lib;
      legacyPackages.${system} = pkgs;
    };
}
