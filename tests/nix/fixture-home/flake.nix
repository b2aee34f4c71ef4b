# Fixture fleet with homes, for the offline tests of the home-manager module
# (issue 16): the NixOS host `desk` carries the home-manager user alice
# (target desk.alice), and `homeConfigurations."bob@laptop"` is a standalone
# home (target laptop.bob). tests/nix/lib/setup.sh fills in the @...@ input
# URLs and keys.
{
  inputs = {
    nixpkgs.url = "@NIXPKGS@";
    flake-parts.url = "@FLAKE_PARTS@";
    flake-parts.inputs.nixpkgs-lib.follows = "nixpkgs";
    home-manager.url = "@HOME_MANAGER@";
    home-manager.inputs.nixpkgs.follows = "nixpkgs";
    nixseal.url = "@NIXSEAL@";
    nixseal.inputs.nixpkgs.follows = "nixpkgs";
    nixseal.inputs.flake-parts.follows = "flake-parts";
  };

  outputs =
    inputs@{
      self,
      nixpkgs,
      flake-parts,
      home-manager,
      nixseal,
      ...
    }:
    let
      pkgs = nixpkgs.legacyPackages.x86_64-linux;
      fleetArgs.identities = [ "./keys/master.age" ];
    in
    flake-parts.lib.mkFlake { inherit inputs; } {
      systems = [ "x86_64-linux" ];
      imports = [ nixseal.flakeModules.default ];
      nixseal = fleetArgs;
      flake = {
        nixosConfigurations.desk = nixpkgs.lib.nixosSystem {
          system = "x86_64-linux";
          modules = [
            nixseal.nixosModules.default
            home-manager.nixosModules.home-manager
            { home-manager.sharedModules = [ nixseal.homeManagerModules.default ]; }
            ./hosts/desk.nix
          ];
        };
        homeConfigurations."bob@laptop" = home-manager.lib.homeManagerConfiguration {
          inherit pkgs;
          modules = [
            nixseal.homeManagerModules.default
            ./homes/bob.nix
          ];
        };
        # The same fleet through the plain function (no flake-parts).
        plainFleet = nixseal.lib.mkFleet (fleetArgs // { inherit self pkgs; });
      };
    };
}
