# A stand-in for the NixOS option set, enough to evaluate modules/nixos.nix with
# lib.evalModules offline. The options nixseal reads or defines are declared
# with the types, defaults and merge rules of their NixOS declarations (each
# names the file it follows), so that a module that only works because the
# stand-in is lenient fails here too; everything else is accepted freeform.
# `system.build.toplevel` enforces assertions, prints warnings, orders the
# activation script and builds the specialisations, as NixOS does.
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
  bool = default: mkOption {
    type = types.bool;
    inherit default;
  };

  # nixos/lib/systemd-unit-options.nix `unitOption`: definitions of a unit
  # setting concatenate when any of them is a list, else they must agree.
  unitOption = lib.mkOptionType {
    name = "systemd option";
    merge =
      loc: defs:
      let
        defs' = lib.filterOverrides defs;
      in
      if lib.any (def: lib.isList def.value) defs' then
        lib.concatMap (def: lib.toList def.value) defs'
      else
        lib.mergeEqualOption loc defs';
  };
  unitSection = mkOption {
    type = types.attrsOf unitOption;
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
      restartIfChanged = bool true;
      stopIfChanged = bool true;
      unitConfig = unitSection;
      serviceConfig = unitSection;
    };
  };

  # nixos/modules/system/activation/activation-script.nix `scriptType`: a
  # snippet is a string (no dependencies) or { deps; text; }; `text` has no
  # default.
  activationScript = types.either types.str (
    types.submodule {
      options = {
        deps = listOfStr;
        text = mkOption { type = types.lines; };
        supportsDryActivation = bool false;
      };
    }
  );
  # The same file: snippets in dependency order (lib.stringsWithDeps, which
  # fails on a dependency that names no snippet).
  activationText =
    set:
    let
      entries = lib.mapAttrs (
        name: v:
        let
          e = if builtins.isString v then lib.noDepEntry v else v;
        in
        e // { text = "#### Activation script snippet ${name}:\n${e.text}\n"; }
      ) set;
    in
    lib.textClosureMap lib.id entries (builtins.attrNames entries);

  # nixos/modules/tasks/filesystems.nix (the options nixseal reads).
  fileSystemModule =
    { name, ... }:
    {
      freeformType = types.lazyAttrsOf types.anything;
      options = {
        mountPoint = mkOption {
          type = types.str;
          default = name;
        };
        device = mkOption {
          type = types.nullOr types.str;
          default = null;
        };
        fsType = mkOption {
          type = types.str;
          default = "auto";
        };
        options = listOfStr;
        neededForBoot = bool false;
      };
    };

  standin =
    { config, extendModules, ... }:
    {
      freeformType = types.lazyAttrsOf types.anything;
      options = {
        assertions = mkOption {
          type = types.listOf types.unspecified;
          default = [ ];
        };
        warnings = listOfStr;
        # nixos/modules/tasks/network-interfaces.nix: a DNS label (no
        # domain part) or empty; the default is system.nixos.distroId.
        networking.hostName = mkOption {
          type = types.strMatching "^$|^[[:alnum:]]([[:alnum:]_-]{0,61}[[:alnum:]])?$";
          default = "nixos";
        };
        # nixos/modules/services/networking/ssh/sshd.nix.
        services.openssh.enable = bool false;
        services.openssh.hostKeys = mkOption {
          type = types.listOf types.attrs;
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
        services.userborn.enable = bool false;
        systemd.sysusers.enable = bool false;
        systemd.services = mkOption {
          type = types.attrsOf (types.submodule serviceModule);
          default = { };
        };
        system.activationScripts = mkOption {
          type = types.attrsOf activationScript;
          default = { };
          # As NixOS: the whole script appears as `script`.
          apply = set: set // { script = activationText set; };
        };
        fileSystems = mkOption {
          type = types.attrsOf (types.submodule fileSystemModule);
          default = { };
        };
        # nixos/modules/system/activation/specialisation.nix.
        specialisation = mkOption {
          type = types.attrsOf (
            types.submodule {
              options.inheritParentConfig = bool true;
              options.configuration = mkOption {
                type = types.deferredModule;
                default = { };
              };
            }
          );
          default = { };
        };
        users.mutableUsers = bool true;
        users.users = mkOption {
          type = types.attrsOf (
            types.submodule (
              { name, ... }:
              {
                freeformType = types.lazyAttrsOf types.anything;
                options.name = mkOption {
                  type = types.str;
                  default = name;
                };
                options.group = mkOption {
                  type = types.str;
                  default = "";
                };
                options.hashedPasswordFile = mkOption {
                  type = types.nullOr types.str;
                  default = null;
                };
              }
            )
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
        users.users.nobody.group = "nogroup";

        # What NixOS itself puts into the activation script and that nixseal
        # orders against (activation-script.nix, users-groups.nix): `users`
        # exists as a snippet only for scripted users, and is "" under
        # systemd-sysusers or userborn.
        system.activationScripts = {
          specialfs = "# mount /proc, /sys, /dev, /run (specialfs)";
          users =
            if !config.systemd.sysusers.enable && !config.services.userborn.enable then
              {
                supportsDryActivation = true;
                text = "# create users and groups (update-users-groups.pl)";
              }
            else
              "";
          groups = lib.stringAfter [ "users" ] "";
        };
        assertions = lib.optionals config.services.userborn.enable [
          {
            assertion = !config.systemd.sysusers.enable;
            message = "You cannot use systemd-sysusers and Userborn at the same time";
          }
          {
            assertion = config.system.activationScripts.users == "";
            message = "system.activationScripts.users has to be empty to use userborn";
          }
        ];

        system.build.toplevel =
          let
            failed = map (a: a.message) (lib.filter (a: !a.assertion) config.assertions);
            units = import ./render-units.nix { inherit lib; } config.systemd.services;
            specialisations = lib.mapAttrs (
              _: s:
              (extendModules {
                modules = [
                  s.configuration
                  { specialisation = lib.mkOverride 0 { }; }
                ];
              }).config.system.build.toplevel
            ) (lib.filterAttrs (_: s: s.inheritParentConfig) config.specialisation);
            system =
              # Like a NixOS system: activate, etc/systemd/system/<unit>.service,
              # specialisation/<name>.
              pkgs.runCommand "nixos-system-${config.networking.hostName}" { } (
                "mkdir -p $out/etc/systemd/system $out/specialisation\n"
                + "cp ${pkgs.writeText "activate" config.system.activationScripts.script} $out/activate\n"
                + lib.concatStrings (
                  lib.mapAttrsToList (
                    n: u: "cp ${pkgs.writeText "${n}.service" u} $out/etc/systemd/system/${n}.service\n"
                  ) units
                )
                + lib.concatStrings (
                  lib.mapAttrsToList (n: s: "ln -s ${s} $out/specialisation/${n}\n") specialisations
                )
              );
          in
          if failed != [ ] then
            throw "\nFailed assertions:\n${lib.concatMapStringsSep "\n" (m: "- ${m}") failed}"
          else
            lib.foldr (w: x: lib.warn w x) system config.warnings;
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
