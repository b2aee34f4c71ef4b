# A stand-in for home-manager (nix-community/home-manager), enough to
# evaluate modules/home-manager.nix offline, standalone and as home-manager's
# NixOS module does. What nixseal's module reads or defines follows the real
# declarations and their behaviour (each part names the file it follows):
# the module system is strict (no freeform options: an option home-manager
# does not declare fails here as it fails there), `lib.hm.dag` sorts
# activation entries as home-manager does, `xdg.configFile` becomes
# `home.file`, `systemd.user.services` are rendered into unit files under
# `xdg.configFile."systemd/user/…"` with their `<target>.wants/` links, and
# the activation package holds `activate` and `home-files` as a home-manager
# generation does. What home-manager does at activation beyond running the
# entries in order (linking files, sd-switch) is a comment here.
#
#   lib:  nixpkgs' lib (tests/nix/lib/standin-lib.nix)
#   pkgs: the stand-in pkgs (tests/nix/lib/standin-pkgs.nix)
# gives { lib (lib with `hm`), hm, modules, homeManagerConfiguration,
# nixosModule }.
{ lib, pkgs }:
let
  inherit (lib) mkOption types;

  # modules/lib/dag.nix and types-dag.nix.
  mkHm =
    lib:
    let
      dag = rec {
        empty = { };
        isEntry = e: e ? data && e ? after && e ? before;
        isDag = d: builtins.isAttrs d && lib.all isEntry (builtins.attrValues d);
        entryBetween = before: after: data: { inherit data before after; };
        entryAnywhere = entryBetween [ ] [ ];
        entryAfter = entryBetween [ ];
        entryBefore = before: entryBetween before [ ];
        # An entry goes after the names in its `after` and after every entry
        # that lists it in `before`; names that are not in the DAG order
        # nothing.
        topoSort =
          d:
          let
            wantedBy = name: builtins.attrNames (lib.filterAttrs (_: v: builtins.elem name v.before) d);
            normal = lib.mapAttrsToList (n: v: {
              name = n;
              inherit (v) data;
              after = v.after ++ wantedBy n;
            }) d;
            sorted = lib.toposort (a: b: builtins.elem a.name b.after) normal;
          in
          if sorted ? result then { result = map (v: { inherit (v) name data; }) sorted.result; } else sorted;
      };
      dagEntryOf =
        elemType:
        let
          submoduleType = types.submodule {
            options = {
              data = mkOption { type = elemType; };
              after = mkOption { type = types.listOf types.str; };
              before = mkOption { type = types.listOf types.str; };
            };
          };
          asEntry =
            def:
            if dag.isEntry def.value then
              def.value
            else
              dag.entryAnywhere (if def ? priority then lib.mkOrder def.priority def.value else def.value);
        in
        lib.mkOptionType {
          name = "dagEntryOf";
          description = "DAG entry of ${elemType.description}";
          merge =
            loc: defs:
            submoduleType.merge loc (
              map (def: {
                inherit (def) file;
                value = asEntry def;
              }) defs
            );
        };
      dagOf =
        elemType:
        let
          attrs = types.attrsOf (dagEntryOf elemType);
        in
        lib.mkOptionType {
          name = "dagOf";
          description = "DAG of ${elemType.description}";
          inherit (attrs) check merge emptyValue;
          getSubOptions = prefix: elemType.getSubOptions (prefix ++ [ "<name>" ]);
          nestedTypes.elemType = elemType;
        };
    in
    {
      inherit dag;
      types = { inherit dagOf; };
      # modules/lib/strings.nix: only `+._?=`, letters and digits, "hm_" first.
      strings.storeFileName =
        path:
        let
          safe = [
            "+"
            "."
            "_"
            "?"
            "="
          ]
          ++ lib.lowerChars
          ++ lib.upperChars
          ++ lib.stringToCharacters "0123456789";
          empties = l: map (_: "") l;
          unsafe = lib.stringToCharacters (lib.replaceStrings safe (empties safe) path);
        in
        "hm_" + lib.replaceStrings unsafe (empties unsafe) path;
    };

  # modules/lib/stdlib-extended.nix.
  extendedLib = lib.extend (self: _: { hm = mkHm self; });

  # modules/lib/file-type.nix: `home.file`-like options; `target` is
  # relative to the home directory after `apply`.
  fileType =
    pkgs: hmLib: homeDirectory: basePath:
    types.attrsOf (
      types.submodule (
        { name, config, ... }:
        {
          options = {
            enable = mkOption {
              type = types.bool;
              default = true;
            };
            target = mkOption {
              type = types.nonEmptyStr;
              apply =
                p:
                let
                  abs = if lib.hasPrefix "/" p then p else "${basePath}/${p}";
                in
                lib.removePrefix (homeDirectory + "/") abs;
            };
            text = mkOption {
              type = types.nullOr types.lines;
              default = null;
            };
            source = mkOption { type = types.path; };
            executable = mkOption {
              type = types.nullOr types.bool;
              default = null;
            };
            recursive = mkOption {
              type = types.bool;
              default = false;
            };
            onChange = mkOption {
              type = types.lines;
              default = "";
            };
            force = mkOption {
              type = types.bool;
              default = false;
            };
          };
          config = {
            target = lib.mkDefault name;
            source = lib.mkIf (config.text != null) (
              lib.mkDefault (pkgs.writeText (hmLib.strings.storeFileName (baseNameOf name)) config.text)
            );
          };
        }
      )
    );

  # nixpkgs' nixos/modules/misc/assertions.nix, which home-manager imports.
  assertionsModule = {
    options.assertions = mkOption {
      type = types.listOf types.unspecified;
      default = [ ];
    };
    options.warnings = mkOption {
      type = types.listOf types.str;
      default = [ ];
    };
  };

  # modules/misc/submodule-support.nix.
  submoduleSupport =
    { lib, ... }:
    {
      options.submoduleSupport = {
        enable = mkOption {
          type = types.bool;
          default = false;
          internal = true;
        };
        externalPackageInstall = mkOption {
          type = types.bool;
          default = false;
          internal = true;
        };
      };
      # Without NixOS these arguments exist and are null.
      config._module.args = {
        osConfig = lib.mkDefault null;
        nixosConfig = lib.mkDefault null;
      };
    };

  # modules/home-environment.nix (the options nixseal uses) and the
  # activation package it builds.
  homeEnvironment =
    {
      config,
      lib,
      pkgs,
      ...
    }:
    let
      cfg = config.home;
      sorted = lib.hm.dag.topoSort cfg.activation;
      entries =
        if sorted ? result then
          lib.concatMapStrings (e: ''
            _iNote "Activating %s" ${lib.escapeShellArg e.name}
            ${e.data}
          '') sorted.result
        else
          abort ("Dependency cycle in activation script: " + builtins.toJSON sorted);
      # lib/bash/home-manager.sh and modules/lib-bash/activation-init.sh:
      # the helpers activation entries may use, the generation paths
      # (oldGenPath from the current-home GC root, unset on a first run),
      # DRY_RUN.
      activate = ''
        #!/usr/bin/env bash
        set -eu
        set -o pipefail
        cd "$HOME"
        _i() { local f=$1; shift; printf "$f\n" "$@"; }
        _iNote() { local f=$1; shift; printf "$f\n" "$@"; }
        noteEcho() { echo "$*"; }
        warnEcho() { echo "$*" >&2; }
        errorEcho() { echo "$*" >&2; }
        verboseEcho() { if [[ -v VERBOSE ]]; then echo "$*"; fi; }
        run() {
          if [[ $1 == --quiet || $1 == --silence ]]; then
            local mode=$1
            shift
          fi
          if [[ -v DRY_RUN ]]; then
            echo "$@"
          elif [[ ''${mode:-} == --quiet ]]; then
            "$@" >/dev/null
          elif [[ ''${mode:-} == --silence ]]; then
            "$@" >/dev/null 2>&1
          else
            "$@"
          fi
        }
        if [[ $USER != ${lib.escapeShellArg cfg.username} ]]; then
          errorEcho "USER is \"$USER\", expected \"${cfg.username}\""
          exit 1
        fi
        stateHome=''${XDG_STATE_HOME:-$HOME/.local/state}
        currentGenGcPath=$stateHome/home-manager/gcroots/current-home
        newGenPath=@GENERATION_DIR@
        if [[ -e $currentGenGcPath ]]; then
          oldGenPath=$(readlink -e "$currentGenGcPath")
        fi
      ''
      + entries
      + ''
        mkdir -p "$(dirname "$currentGenGcPath")"
        ln -sfn "$newGenPath" "$currentGenGcPath"
      '';
    in
    {
      options.home = {
        username = mkOption { type = types.nonEmptyStr; };
        uid = mkOption {
          type = types.nullOr types.ints.unsigned;
          default = null;
        };
        homeDirectory = mkOption {
          type = types.path;
          apply = toString;
        };
        stateVersion = mkOption { type = types.str; };
        packages = mkOption {
          type = types.listOf types.package;
          default = [ ];
        };
        activation = mkOption {
          type = lib.hm.types.dagOf types.str;
          default = { };
        };
        activationPackage = mkOption {
          internal = true;
          type = types.package;
        };
      };
      config = {
        assertions = [
          {
            assertion = cfg.username != "";
            message = "Username could not be determined";
          }
        ];
        home.activation.writeBoundary = lib.hm.dag.entryAnywhere "";
        home.activation.installPackages = lib.hm.dag.entryAfter [ "writeBoundary" ] ''
          # (stand-in) nix profile install of home.packages
        '';
        home.activationPackage =
          pkgs.runCommand "home-manager-generation"
            {
              activate = pkgs.writeText "activate" activate;
              homeFiles = config.home-files;
            }
            ''
              mkdir -p $out/bin
              sed "s|@GENERATION_DIR@|$out|" "$activate" >$out/activate
              chmod +x $out/activate
              ln -s $out/activate $out/bin/home-manager-generation
              ln -s "$homeFiles" $out/home-files
            '';
      };
    };

  # modules/files.nix: `home.file` and the home-files package (each file a
  # symlink to its source), with the activation entries that link it.
  files =
    {
      config,
      lib,
      pkgs,
      ...
    }:
    let
      enabled = lib.filter (f: f.enable) (builtins.attrValues config.home.file);
      dups = lib.attrNames (
        lib.filterAttrs (_: n: n > 1) (lib.foldAttrs (a: b: a + b) 0 (map (f: { ${f.target} = 1; }) enabled))
      );
    in
    {
      options.home.file = mkOption {
        type = fileType pkgs lib.hm config.home.homeDirectory config.home.homeDirectory;
        default = { };
      };
      options.home-files = mkOption {
        type = types.package;
        internal = true;
      };
      config = {
        assertions = [
          {
            assertion = dups == [ ];
            message = "Conflicting managed target files: ${lib.concatStringsSep ", " dups}";
          }
        ];
        home-files = pkgs.runCommand "home-manager-files" { } (
          "mkdir -p $out\n"
          + lib.concatMapStrings (f: ''
            mkdir -p "$(dirname $out/${lib.escapeShellArg f.target})"
            ln -s ${lib.escapeShellArg "${f.source}"} $out/${lib.escapeShellArg f.target}
          '') enabled
        );
        home.activation.checkLinkTargets = lib.hm.dag.entryBefore [ "writeBoundary" ] ''
          # (stand-in) refuse to overwrite files that home-manager does not manage
        '';
        home.activation.linkGeneration = lib.hm.dag.entryAfter [ "writeBoundary" ] ''
          # (stand-in) remove the old generation's links, link $newGenPath/home-files into $HOME
        '';
      };
    };

  # modules/misc/xdg/default.nix: the base directories (the deterministic
  # defaults of state version 20.09 and later) and their *File options,
  # which become home.file entries.
  xdg =
    {
      config,
      lib,
      pkgs,
      ...
    }:
    let
      cfg = config.xdg;
      home = config.home.homeDirectory;
      dirOption = mkOption {
        type = types.path;
        apply = toString;
      };
      fileOption =
        base:
        mkOption {
          type = fileType pkgs lib.hm home base;
          default = { };
        };
    in
    {
      options.xdg = {
        enable = mkOption {
          type = types.bool;
          default = false;
        };
        cacheHome = dirOption;
        configHome = dirOption;
        dataHome = dirOption;
        stateHome = dirOption;
        configFile = fileOption cfg.configHome;
        dataFile = fileOption cfg.dataHome;
        stateFile = fileOption cfg.stateHome;
      };
      config = {
        xdg.cacheHome = lib.mkOptionDefault "${home}/.cache";
        xdg.configHome = lib.mkOptionDefault "${home}/.config";
        xdg.dataHome = lib.mkOptionDefault "${home}/.local/share";
        xdg.stateHome = lib.mkOptionDefault "${home}/.local/state";
        home.file = lib.mkMerge [
          (lib.mapAttrs' (n: f: lib.nameValuePair "${cfg.configHome}/${n}" f) cfg.configFile)
          (lib.mapAttrs' (n: f: lib.nameValuePair "${cfg.dataHome}/${n}" f) cfg.dataFile)
          (lib.mapAttrs' (n: f: lib.nameValuePair "${cfg.stateHome}/${n}" f) cfg.stateFile)
        ];
      };
    };

  # modules/systemd.nix: user services (Unit/Service/Install sections with
  # systemd's names; X-Restart-Triggers, X-SwitchMethod and ExecStart typed),
  # rendered into xdg.configFile."systemd/user/<name>.service" with a link
  # per WantedBy/RequiredBy target, and the reloadSystemd activation entry.
  # Nothing is installed for root.
  systemd =
    {
      config,
      lib,
      pkgs,
      ...
    }:
    let
      cfg = config.systemd.user;
      primitive = types.oneOf [
        types.bool
        types.int
        types.str
        types.path
      ];
      serviceType = types.attrsOf (
        types.submodule {
          freeformType = types.attrsOf (types.attrsOf (types.either primitive (types.listOf primitive)));
          options = {
            Unit.Description = mkOption {
              type = types.nullOr types.str;
              default = null;
            };
            Unit.Documentation = mkOption {
              type = types.coercedTo types.str lib.toList (types.listOf types.str);
              default = [ ];
            };
            Unit.X-Reload-Triggers = mkOption {
              type = types.listOf (types.either types.package types.str);
              default = [ ];
            };
            Unit.X-Restart-Triggers = mkOption {
              type = types.listOf (types.either types.package types.str);
              default = [ ];
            };
            Unit.X-SwitchMethod = mkOption {
              type = types.enum [
                null
                "reload"
                "restart"
                "stop-start"
                "keep-old"
              ];
              default = null;
            };
            Service.Environment = mkOption {
              type = types.coercedTo types.str lib.toList (types.listOf types.str);
              default = [ ];
            };
            Service.ExecStart = mkOption {
              type =
                let
                  p = types.either types.package types.str;
                in
                types.either p (types.listOf p);
              apply = lib.toList;
              default = [ ];
            };
          };
        }
      );
      # lib.generators.toINI { listsAsDuplicateKeys = true; } with
      # true/false; null values, empty lists and empty sections left out.
      value = v: if builtins.isBool v then (if v then "true" else "false") else toString v;
      render =
        unit:
        let
          sections = lib.filterAttrs (_: s: s != { }) (
            lib.mapAttrs (_: lib.filterAttrs (_: v: v != null && v != [ ])) unit
          );
        in
        lib.concatStringsSep "\n" (
          lib.mapAttrsToList (
            name: s:
            "[${name}]\n"
            + lib.concatStrings (
              lib.mapAttrsToList (k: v: lib.concatMapStrings (x: "${k}=${value x}\n") (lib.toList v)) s
            )
          ) sections
        );
      unitFiles = lib.concatLists (
        lib.mapAttrsToList (
          name: unit:
          let
            file = "${name}.service";
            source = pkgs.writeText file (render unit);
            link = kind: t: lib.nameValuePair "systemd/user/${t}.${kind}/${file}" { inherit source; };
          in
          [ (lib.nameValuePair "systemd/user/${file}" { inherit source; }) ]
          ++ map (link "wants") (unit.Install.WantedBy or [ ])
          ++ map (link "requires") (unit.Install.RequiredBy or [ ])
        ) cfg.services
      );
    in
    {
      options.systemd.user = {
        enable = mkOption {
          type = types.bool;
          default = pkgs.stdenv.isLinux;
        };
        systemctlPath = mkOption {
          type = types.str;
          default = "systemctl";
        };
        services = mkOption {
          type = serviceType;
          default = { };
        };
        startServices = mkOption {
          type = types.either types.bool (
            types.enum [
              "suggest"
              "sd-switch"
            ]
          );
          apply = p: if builtins.isBool p then p else p == "sd-switch";
          default = true;
        };
      };
      config = lib.mkIf (cfg.enable && config.home.username != "root") {
        xdg.configFile = lib.listToAttrs unitFiles;
        home.activation.reloadSystemd = lib.hm.dag.entryAfter [ "linkGeneration" ] ''
          systemdStatus=$(env XDG_RUNTIME_DIR="''${XDG_RUNTIME_DIR:-/run/user/$(id -u)}" ${cfg.systemctlPath} --user is-system-running 2>&1 || true)
          if [[ $systemdStatus == running || $systemdStatus == degraded ]]; then
            # (stand-in) ${
              if cfg.startServices then
                "sd-switch: daemon-reload, restart changed active units, start active targets"
              else
                "systemd-activate.sh: daemon-reload, print suggested commands"
            }
            run env XDG_RUNTIME_DIR="''${XDG_RUNTIME_DIR:-/run/user/$(id -u)}" ${cfg.systemctlPath} --user daemon-reload
          else
            echo "User systemd daemon not running. Skipping reload."
          fi
          unset systemdStatus
        '';
      };
    };

  # modules/modules.nix (the part used here): `pkgs` becomes the module
  # argument (as with useGlobalPkgs in NixOS).
  hmModules = pkgs: [
    assertionsModule
    submoduleSupport
    homeEnvironment
    files
    xdg
    systemd
    { _module.args.pkgs = lib.mkDefault pkgs; }
  ];

  # modules/default.nix: a configuration whose result (config, options,
  # activationPackage, …) exists only when no assertion fails; warnings are
  # traced.
  homeManagerConfiguration =
    {
      modules ? [ ],
      pkgs,
      extraSpecialArgs ? { },
      ...
    }:
    let
      raw = extendedLib.evalModules {
        modules = modules ++ hmModules pkgs;
        class = "homeManager";
        specialArgs = {
          modulesPath = "/home-manager-standin/modules";
        }
        // extraSpecialArgs;
      };
      checked =
        r:
        let
          failed = map (a: a.message) (lib.filter (a: !a.assertion) r.config.assertions);
        in
        lib.foldr (w: x: builtins.trace "warning: ${w}" x) (
          if failed == [ ] then r else throw "\nFailed assertions:\n${lib.concatMapStringsSep "\n" (m: "- ${m}") failed}"
        ) r.config.warnings;
      withExtra =
        r:
        let
          m = checked r;
        in
        m
        // {
          inherit (m.config.home) activationPackage;
          inherit (m._module.args) pkgs;
          extendModules = args: withExtra (r.extendModules args);
        };
    in
    withExtra raw;

  # nixos/common.nix and nixos/default.nix: home-manager.users.<name> is a
  # home-manager configuration per user (the shared modules in it, the
  # system's `config` as `osConfig`, username and home directory from
  # users.users.<name>); its warnings and assertions become the system's,
  # prefixed "<name> profile: "; each user's activation runs as a system
  # service home-manager-<name>.service.
  nixosModule =
    {
      config,
      lib,
      pkgs,
      ...
    }:
    let
      cfg = config.home-manager;
      hmModule = types.submoduleWith {
        description = "Home Manager module";
        class = "homeManager";
        specialArgs = {
          lib = extendedLib;
          osConfig = config;
          osClass = "nixos";
          modulesPath = "/home-manager-standin/modules";
        }
        // cfg.extraSpecialArgs;
        modules = [
          (
            { name, ... }:
            {
              imports = hmModules pkgs ++ cfg.sharedModules;
              config = {
                submoduleSupport.enable = true;
                submoduleSupport.externalPackageInstall = cfg.useUserPackages;
                home.username = config.users.users.${name}.name;
                home.homeDirectory = config.users.users.${name}.home;
                home.uid = lib.mkIf (config.users.users.${name}.uid != null) config.users.users.${name}.uid;
              };
            }
          )
        ];
      };
    in
    {
      options.home-manager = {
        useUserPackages = mkOption {
          type = types.bool;
          default = false;
        };
        useGlobalPkgs = mkOption {
          type = types.bool;
          default = false;
        };
        extraSpecialArgs = mkOption {
          type = types.attrs;
          default = { };
        };
        sharedModules = mkOption {
          type = types.listOf types.raw;
          default = [ ];
        };
        users = mkOption {
          type = types.attrsOf hmModule;
          default = { };
          visible = "shallow";
        };
      };
      config = lib.mkIf (cfg.users != { }) {
        warnings = lib.flatten (lib.mapAttrsToList (u: c: map (w: "${u} profile: ${w}") c.warnings) cfg.users);
        assertions = lib.flatten (
          lib.mapAttrsToList (
            u: c:
            map (a: {
              inherit (a) assertion;
              message = "${u} profile: ${a.message}";
            }) c.assertions
          ) cfg.users
        );
        systemd.services = lib.mapAttrs' (
          _: c:
          lib.nameValuePair "home-manager-${c.home.username}" {
            description = "Home Manager environment for ${c.home.username}";
            wantedBy = [ "multi-user.target" ];
            wants = [ "nix-daemon.socket" ];
            after = [ "nix-daemon.socket" ];
            before = [ "systemd-user-sessions.service" ];
            stopIfChanged = false;
            unitConfig.RequiresMountsFor = c.home.homeDirectory;
            serviceConfig = {
              User = c.home.username;
              Type = "oneshot";
              RemainAfterExit = "yes";
              TimeoutStartSec = "5m";
              SyslogIdentifier = "hm-activate-${c.home.username}";
              # (stand-in) hm-setup-env imports the session's
              # XDG_RUNTIME_DIR etc. from `systemctl --user show-environment`.
              ExecStart = "${c.home.activationPackage}/activate";
            };
          }
        ) cfg.users;
      };
    };
in
{
  lib = extendedLib;
  inherit (extendedLib) hm;
  modules = hmModules pkgs;
  inherit homeManagerConfiguration nixosModule;
}
