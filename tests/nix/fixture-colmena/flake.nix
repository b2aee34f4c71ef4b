# The fixture fleet as a colmena hive, and a deploy-rs node: nixseal.nodes is
# the hive's nodes. tests/nix/run.sh copies the rekeyed fixture fleet, puts
# this file in place of its flake.nix and fills in the @...@ input URLs.
{
  inputs = {
    nixpkgs.url = "@NIXPKGS@";
    flake-parts.url = "@FLAKE_PARTS@";
    flake-parts.inputs.nixpkgs-lib.follows = "nixpkgs";
    nixseal.url = "@NIXSEAL@";
    nixseal.inputs.nixpkgs.follows = "nixpkgs";
    nixseal.inputs.flake-parts.follows = "flake-parts";
  };

  outputs =
    inputs@{
      self,
      nixpkgs,
      flake-parts,
      nixseal,
      ...
    }:
    let
      inherit (nixpkgs) lib;
      # What colmena's makeHive returns (src/nix/hive/eval.nix): each node
      # is an evalConfig of colmena's deployment options, `defaults` and the
      # node's own modules, with `name` and `nodes` as specialArgs. colmena
      # does not set networking.hostName from the node name.
      makeHive =
        hive:
        let
          names = builtins.filter (n: !builtins.elem n [ "meta" "defaults" "network" ]) (builtins.attrNames hive);
          deploymentOptions =
            { name, lib, ... }:
            {
              options.deployment.targetHost = lib.mkOption {
                type = lib.types.nullOr lib.types.str;
                default = name;
              };
            };
          evalNode =
            name:
            nixpkgs.lib.nixosSystem {
              modules = [
                deploymentOptions
                hive.defaults
                hive.${name}
              ];
              specialArgs = {
                inherit name nodes;
              };
            };
          nodes = lib.genAttrs names evalNode;
        in
        {
          __schema = "v0";
          inherit nodes;
          toplevel = lib.mapAttrs (_: v: v.config.system.build.toplevel) nodes;
          deploymentConfig = lib.mapAttrs (_: v: v.config.deployment) nodes;
        };
      defaults = {
        imports = [ nixseal.nixosModules.default ];
      };
      # deploy-rs' lib.<system>.activate.nixos wraps a system's toplevel
      # (with its activation); the stand-in is the toplevel itself.
      deployRsActivateNixos = node: node.config.system.build.toplevel;
    in
    flake-parts.lib.mkFlake { inherit inputs; } {
      systems = [ "x86_64-linux" ];
      imports = [ nixseal.flakeModules.default ];
      nixseal = {
        nodes = self.colmenaHive.nodes;
        identities = [ "./keys/master.age" ];
      };
      flake = {
        colmena = {
          meta.nixpkgs = nixpkgs.legacyPackages.x86_64-linux;
          inherit defaults;
          web1 = ./hosts/web1.nix;
          web2 = ./hosts/web2.nix;
        };
        colmenaHive = makeHive self.colmena;
        # Two nodes that leave networking.hostName unset.
        unnamedHive = makeHive {
          inherit defaults;
          a.nixseal.secrets.s.file = ./secrets/db-password.age;
          b.nixseal.secrets.s.file = ./secrets/db-password.age;
        };
        deploy.nodes.web1 = {
          hostname = "web1";
          profiles.system = {
            user = "root";
            path = deployRsActivateNixos self.colmenaHive.nodes.web1;
          };
        };
      };
    };
}
