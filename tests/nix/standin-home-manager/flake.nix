# Stand-in for the home-manager flake, for offline tests: the outputs a
# fleet uses, `lib.homeManagerConfiguration { pkgs; modules; … }` and
# `nixosModules.home-manager` (= `.default`), from
# tests/nix/lib/standin-home-manager.nix on the (stand-in) nixpkgs it
# follows. tests/nix/lib/setup.sh copies this directory with lib/*.nix and
# fills in the @...@ value.
{
  inputs.nixpkgs.url = "@NIXPKGS@";

  outputs =
    { nixpkgs, ... }:
    let
      hm = import ./standin-home-manager.nix {
        inherit (nixpkgs) lib;
        pkgs = nixpkgs.legacyPackages.x86_64-linux;
      };
    in
    {
      # Nix 2.8 does not tag inputs as flakes; flake-parts' inputs' needs it.
      _type = "flake";
      lib = {
        inherit (hm) homeManagerConfiguration hm;
      };
      nixosModules.home-manager = hm.nixosModule;
      nixosModules.default = hm.nixosModule;
    };
}
