{
  description = "nixseal: secrets for NixOS fleets, rekeyed to each host's SSH key";

  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";
    flake-parts.url = "github:hercules-ci/flake-parts";
    flake-parts.inputs.nixpkgs-lib.follows = "nixpkgs";
  };

  outputs =
    inputs@{ self, flake-parts, ... }:
    let
      # The nixseal package, built from this flake's Cargo workspace with the
      # caller's nixpkgs (the NixOS module and the apps use the consumer's pkgs).
      mkPackage =
        pkgs:
        let
          inherit (pkgs) lib;
        in
        pkgs.rustPlatform.buildRustPackage {
          pname = "nixseal";
          version = (builtins.fromTOML (builtins.readFile ./Cargo.toml)).workspace.package.version;
          src = lib.fileset.toSource {
            root = ./.;
            fileset = lib.fileset.unions [
              ./Cargo.toml
              ./Cargo.lock
              ./crates
              # A workspace member: cargo refuses to load the workspace without it.
              ./bench
            ];
          };
          cargoLock.lockFile = ./Cargo.lock;
          cargoBuildFlags = [
            "--package"
            "nixseal-cli"
          ];
          # The library's unit tests; tests/ needs nix, systemd and Go age.
          cargoTestFlags = [
            "--package"
            "nixseal"
            "--lib"
          ];
          meta = {
            description = "Secrets for NixOS fleets, rekeyed to each host's SSH key";
            license = lib.licenses.mit;
            mainProgram = "nixseal";
            platforms = lib.platforms.linux;
          };
        };

      # Plain-Nix entry for flakes without flake-parts (see docs/getting-started.md).
      mkFleet =
        args@{ pkgs, ... }:
        import ./flake-modules/fleet.nix ({ package = mkPackage pkgs; } // args);
    in
    flake-parts.lib.mkFlake { inherit inputs; } (
      { flake-parts-lib, ... }:
      {
        # flakeModules.<name> get flake-parts' location (_file), key and _class.
        imports = [ flake-parts.flakeModules.flakeModules ];

        systems = [
          "x86_64-linux"
          "aarch64-linux"
        ];

        flake = {
          overlays.default = final: _prev: { nixseal = mkPackage final; };

          nixosModules.default =
            { lib, pkgs, ... }:
            {
              key = "nixseal#nixosModules.default";
              imports = [ ./modules/nixos.nix ];
              nixseal.settings.package = lib.mkDefault (mkPackage pkgs);
            };

          # For home-manager: `imports = [ nixseal.homeManagerModules.default ];`
          # in a home, or `home-manager.sharedModules = [ … ];` in NixOS.
          homeManagerModules.default =
            { lib, pkgs, ... }:
            {
              key = "nixseal#homeManagerModules.default";
              imports = [ ./modules/home-manager.nix ];
              nixseal.settings.package = lib.mkDefault (mkPackage pkgs);
            };

          # importApply: errors inside it name flake-modules/default.nix.
          flakeModules.default = flake-parts-lib.importApply ./flake-modules/default.nix { inherit mkPackage; };

          lib = {
            # { self, pkgs, nodes?, homes?, identities?, extraRecipients?,
            #   rekeyedDir?, apps?, root?, closureChecks?, package? }
            #   -> { apps, legacyPackages, checks, profile, profileFile }
            inherit mkFleet;
            # The same arguments -> the apps for `apps.<system>`: renc, check,
            # edit, status, deploy, audit (as named by `apps`).
            mkApps = args: (mkFleet args).apps;
          };
        };

        perSystem =
          { pkgs, self', ... }:
          {
            packages.nixseal = mkPackage pkgs;
            packages.default = self'.packages.nixseal;

            # NixOS VM tests: need a machine with nixpkgs and KVM.
            checks = import ./checks {
              inherit pkgs;
              nixseal = self;
            };

            devShells.default = pkgs.mkShell {
              inputsFrom = [ self'.packages.nixseal ];
              packages = [
                pkgs.age
                pkgs.clippy
                pkgs.rustfmt
                pkgs.nixfmt
                pkgs.jq
              ];
            };
          };
      }
    );
}
