# A stand-in for the NixOS option set, enough to evaluate modules/nixos.nix with
# lib.evalModules offline. The options nixseal reads or defines are declared
# with NixOS' types (so that definitions merge as in NixOS, e.g. lists
# concatenate); everything else is accepted freeform. `system.build.toplevel`
# enforces assertions the way NixOS does.
{ lib, pkgs }:
{
  modules,
  specialArgs ? { },
}:
let
  inherit (lib) mkOption types;
  listOfStr = mkOption {
    type = types.listOf types.str;
    default = [ ];
  };
  anyAttrs = mkOption {
    type = types.lazyAttrsOf types.anything;
    default = { };
  };

  serviceModule = {
    freeformType = types.lazyAttrsOf types.anything;
    options = {
      description = mkOption {
        type = types.str;
        default = "";
      };
      wantedBy = listOfStr;
      requiredBy = listOfStr;
      before = listOfStr;
      after = listOfStr;
      wants = listOfStr;
      requires = listOfStr;
      conflicts = listOfStr;
      restartTriggers = mkOption {
        type = types.listOf types.unspecified;
        default = [ ];
      };
      restartIfChanged = mkOption {
        type = types.bool;
        default = true;
      };
      stopIfChanged = mkOption {
        type = types.bool;
        default = true;
      };
      unitConfig = anyAttrs;
      serviceConfig = anyAttrs;
    };
  };

  activationModule = {
    options = {
      text = mkOption {
        type = types.lines;
        default = "";
      };
      deps = listOfStr;
    };
  };

  standin =
    { config, ... }:
    {
      freeformType = types.lazyAttrsOf types.anything;
      options = {
        assertions = mkOption {
          type = types.listOf types.unspecified;
          default = [ ];
        };
        warnings = listOfStr;
        networking.hostName = mkOption {
          type = types.str;
          default = "nixos";
        };
        services.openssh.hostKeys = mkOption {
          type = types.listOf (types.attrsOf types.anything);
          # The NixOS default.
          default = [
            {
              type = "rsa";
              bits = 4096;
              path = "/etc/ssh/ssh_host_rsa_key";
            }
            {
              type = "ed25519";
              path = "/etc/ssh/ssh_host_ed25519_key";
            }
          ];
        };
        services.userborn.enable = mkOption {
          type = types.bool;
          default = false;
        };
        systemd.sysusers.enable = mkOption {
          type = types.bool;
          default = false;
        };
        systemd.services = mkOption {
          type = types.attrsOf (types.submodule serviceModule);
          default = { };
        };
        system.activationScripts = mkOption {
          type = types.attrsOf (types.submodule activationModule);
          default = { };
        };
        users.users = mkOption {
          type = types.attrsOf (
            types.submodule {
              freeformType = types.lazyAttrsOf types.anything;
              options.group = mkOption {
                type = types.str;
                default = "";
              };
              options.hashedPasswordFile = mkOption {
                type = types.nullOr types.str;
                default = null;
              };
            }
          );
          default = { };
        };
        environment.systemPackages = mkOption {
          type = types.listOf types.package;
          default = [ ];
        };
        system.build = mkOption {
          type = types.lazyAttrsOf types.unspecified;
          default = { };
        };
      };
      config = {
        _module.args.pkgs = pkgs;
        users.users.root.group = "root";
        system.build.toplevel =
          let
            failed = map (a: a.message) (lib.filter (a: !a.assertion) config.assertions);
            units = import ./render-units.nix { inherit lib; } config.systemd.services;
          in
          if failed != [ ] then
            throw "\nFailed assertions:\n${lib.concatMapStringsSep "\n" (m: "- ${m}") failed}"
          else
            pkgs.writeText "nixos-system-${config.networking.hostName}" (
              lib.concatStrings (lib.mapAttrsToList (n: u: "### ${n}.service\n${u}\n") units)
            );
      };
    };

  eval = lib.evalModules {
    modules = [ standin ] ++ modules;
    inherit specialArgs;
  };
in
eval
// {
  _type = "configuration";
}
