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

  # nixos/modules/config/nix-flakes.nix: a registry entry rewrites `from`
  # (by default the indirect id <name>) to `to`, which a non-null `flake`
  # fills in from the flake's outPath and metadata.
  registryEntry =
    { config, name, ... }:
    let
      reference = types.attrsOf (
        types.oneOf [
          types.str
          types.int
          types.bool
          types.path
          types.package
        ]
      );
    in
    {
      options = {
        from = mkOption { type = reference; };
        to = mkOption { type = reference; };
        flake = mkOption {
          type = types.nullOr types.attrs;
          default = null;
        };
        exact = bool true;
      };
      config = {
        from = lib.mkDefault {
          type = "indirect";
          id = name;
        };
        to = lib.mkIf (config.flake != null) (
          lib.mkDefault (
            {
              type = "path";
              path = config.flake.outPath;
            }
            // lib.filterAttrs (
              n: _: builtins.elem n [ "lastModified" "rev" "narHash" ]
            ) config.flake
          )
        );
      };
    };

  # nixos/modules/system/etc/etc.nix: `text` (when set) becomes `source`
  # through pkgs.writeText, with the priority of the text's definitions.
  etcEntry =
    { name, config, options, ... }:
    {
      options = {
        enable = bool true;
        target = mkOption { type = types.str; };
        text = mkOption {
          type = types.nullOr types.lines;
          default = null;
        };
        source = mkOption { type = types.path; };
        mode = mkOption {
          type = types.str;
          default = "symlink";
        };
        uid = mkOption {
          type = types.int;
          default = 0;
        };
        gid = mkOption {
          type = types.int;
          default = 0;
        };
        user = mkOption {
          type = types.str;
          default = "+${toString config.uid}";
        };
        group = mkOption {
          type = types.str;
          default = "+${toString config.gid}";
        };
      };
      config = {
        target = lib.mkDefault name;
        source = lib.mkIf (config.text != null) (
          lib.mkDerivedConfig options.text (pkgs.writeText "etc-${lib.replaceStrings [ "/" ] [ "-" ] name}")
        );
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
              { name, config, ... }:
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
                # users-groups.nix: a normal user's home and group
                # (home-manager's NixOS module reads home and uid).
                options.isNormalUser = bool false;
                options.home = mkOption {
                  type = types.str;
                  default = "/var/empty";
                };
                options.uid = mkOption {
                  type = types.nullOr types.int;
                  default = null;
                };
                config = lib.mkIf config.isNormalUser {
                  group = lib.mkDefault "users";
                  home = lib.mkDefault "/home/${config.name}";
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
        environment.etc = mkOption {
          type = types.attrsOf (types.submodule etcEntry);
          default = { };
        };
        # nixos/modules/config/nix.nix, nix-flakes.nix.
        nix.enable = bool true;
        nix.registry = mkOption {
          type = types.attrsOf (types.submodule registryEntry);
          default = { };
        };
        nix.nixPath = listOfStr;
        # nixos/modules/misc/nixpkgs-flake.nix: nixpkgs.lib.nixosSystem sets
        # `source` to nixpkgs' own outPath.
        nixpkgs.flake.source = mkOption {
          type = types.nullOr (types.either types.str types.path);
          default = null;
        };
        nixpkgs.flake.setNixPath = bool (config.nixpkgs.flake.source != null);
        nixpkgs.flake.setFlakeRegistry = bool (config.nixpkgs.flake.source != null);
        # nixos/modules/system/activation/top-level.nix.
        system.extraDependencies = mkOption {
          type = types.listOf types.pathInStore;
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

        # What nix-flakes.nix and nixpkgs-flake.nix make of their options.
        environment.etc."nix/registry.json" = lib.mkIf config.nix.enable {
          text = builtins.toJSON {
            version = 2;
            flakes = lib.mapAttrsToList (_: r: { inherit (r) from to exact; }) config.nix.registry;
          };
        };
        nix.registry = lib.mkIf (config.nixpkgs.flake.source != null && config.nixpkgs.flake.setFlakeRegistry) {
          nixpkgs.to = lib.mkDefault {
            type = "path";
            path = config.nixpkgs.flake.source;
          };
        };
        nix.nixPath = lib.mkIf (config.nixpkgs.flake.source != null && config.nixpkgs.flake.setNixPath) (
          lib.mkDefault [ "nixpkgs=flake:nixpkgs" ]
        );

        system.build.etc =
          let
            units = import ./render-units.nix { inherit lib; } config.systemd.services;
            entries = lib.filter (e: e.enable) (builtins.attrValues config.environment.etc);
          in
          # As etc.nix: a symlink per entry to its source ("${source}" copies
          # a local path into the store); the units as systemd.nix puts them
          # under etc/systemd/system.
          pkgs.runCommand "etc" { } (
            "mkdir -p $out/etc/systemd/system\n"
            + lib.concatStrings (
              lib.mapAttrsToList (
                n: u: "cp ${pkgs.writeText "${n}.service" u} $out/etc/systemd/system/${n}.service\n"
              ) units
            )
            + lib.concatMapStrings (
              e:
              "mkdir -p \"$(dirname $out/etc/${lib.escapeShellArg e.target})\"\n"
              + "ln -s ${lib.escapeShellArg "${e.source}"} $out/etc/${lib.escapeShellArg e.target}\n"
            ) entries
          );

        system.build.toplevel =
          let
            failed = map (a: a.message) (lib.filter (a: !a.assertion) config.assertions);
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
              # Like a NixOS system: activate, etc (-> system.build.etc),
              # extra-dependencies, specialisation/<name>.
              pkgs.runCommand "nixos-system-${config.networking.hostName}" { } (
                "mkdir -p $out/specialisation\n"
                + "cp ${pkgs.writeText "activate" config.system.activationScripts.script} $out/activate\n"
                + "ln -s ${config.system.build.etc}/etc $out/etc\n"
                + "printf '%s' ${lib.escapeShellArg (toString config.system.extraDependencies)} > $out/extra-dependencies\n"
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
