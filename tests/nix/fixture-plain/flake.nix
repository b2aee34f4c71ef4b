# The fixture fleet without flake-parts: the same hosts through the plain
# functions nixseal.lib.mkFleet / mkApps. tests/nix/lib/setup.sh copies the
# fixture fleet and puts this file in place of its flake.nix.
{
  inputs = {
    nixpkgs.url = "@NIXPKGS@";
    nixseal.url = "@NIXSEAL@";
    nixseal.inputs.nixpkgs.follows = "nixpkgs";
    # Only for nixseal's own flake.nix (built with flake-parts), so that it
    # resolves offline; this fleet's outputs do not use flake-parts, and a
    # real user needs none of these three lines.
    flake-parts.url = "@FLAKE_PARTS@";
    flake-parts.inputs.nixpkgs-lib.follows = "nixpkgs";
    nixseal.inputs.flake-parts.follows = "flake-parts";
  };

  outputs =
    {
      self,
      nixpkgs,
      nixseal,
      ...
    }:
    let
      node =
        host:
        nixpkgs.lib.nixosSystem {
          system = "x86_64-linux";
          # As many flakes do: modules may use `self` (tests/nix/run.sh's
          # closure tests make web1 put it into its registry).
          specialArgs = { inherit self; };
          modules = [
            nixseal.nixosModules.default
            host
          ];
        };
      fleet = nixseal.lib.mkFleet {
        inherit self;
        pkgs = nixpkgs.legacyPackages.x86_64-linux;
        identities = [ "./keys/master.age" ];
        closureChecks = true;
      };
    in
    {
      nixosConfigurations = {
        web1 = node ./hosts/web1.nix;
        web2 = node ./hosts/web2.nix;
        builder = node { networking.hostName = "builder"; };
      };
      apps.x86_64-linux = fleet.apps;
      # The per-host deploy scripts the deploy app runs.
      legacyPackages.x86_64-linux = fleet.legacyPackages;
      checks.x86_64-linux = fleet.checks;
    };
}
