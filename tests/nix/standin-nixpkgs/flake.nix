# Stand-in for the nixpkgs flake, for offline tests: the real nixpkgs `lib`
# (../shared/nix/nixpkgs-lib, with lib/standin-lib.nix's fallback for Nix
# 2.8), `lib.nixosSystem` evaluating the stand-in NixOS option set (with
# nixpkgs.flake.source = this flake's source, as nixpkgs does), and
# `legacyPackages.<system>` from the stand-in pkgs, whose
# rustPlatform.buildRustPackage builds nixseal with the host's cargo from the
# source the flake gives it. tests/nix/lib/setup.sh copies this directory
# and lib/*.nix together and fills in the @...@ values.
{
  inputs.nixpkgs-lib.url = "@NIXPKGS_LIB@";

  outputs =
    { self, nixpkgs-lib, ... }:
    let
      system = "x86_64-linux";
      lib = import ./standin-lib.nix nixpkgs-lib.lib // {
        nixosSystem =
          {
            modules,
            specialArgs ? { },
            ...
          }:
          # As nixpkgs' flake.nix: nixpkgs.flake.source is its own source.
          import ./standin-nixos.nix { inherit lib pkgs; } {
            modules = modules ++ [ { nixpkgs.flake.source = self.outPath; } ];
            inherit specialArgs;
          };
      };
      pkgs = import ./standin-pkgs.nix {
        inherit lib system;
        nixos = import ./standin-nixos.nix { inherit lib pkgs; };
        rust = {
          toolchainBin = "@RUST_TOOLCHAIN_BIN@";
          cargoHome = "@CARGO_HOME@";
          targetCache = "@CARGO_TARGET_CACHE@";
        };
      };
    in
    {
      # Nix 2.8 does not tag inputs as flakes; flake-parts' inputs' needs it.
      _type = "flake";
      inherit lib;
      legacyPackages.${system} = pkgs;
    };
}
