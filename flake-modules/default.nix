# The flake-parts module: `imports = [ nixseal.flakeModules.default ];`
# Options `nixseal.*` describe the fleet; every system gets the apps `renc`,
# `check`, `edit`, `status`, `deploy`, `audit` and `rekey-masters` (names in `nixseal.apps`),
# the per-host deploy scripts `legacyPackages.<system>.nixseal-deploy.<host>`
# and systems `legacyPackages.<system>.nixseal-system.<host>`, the check
# `nixseal-rekeyed` and, with `nixseal.closureChecks`, one
# `nixseal-closure-<host>` check per host (see ./fleet.nix). nixseal's flake.nix exports
# it with flake-parts' importApply (so errors name this file) under a key
# (so importing it twice is harmless).
{ mkPackage }:
{
  config,
  lib,
  self,
  flake-parts-lib,
  ...
}:
let
  inherit (lib) mkOption types literalExpression;
  cfg = config.nixseal;

  identityType =
    types.addCheck types.str (i: !lib.hasPrefix "${builtins.storeDir}/" i)
    // {
      name = "identityPath";
      description = ''path string relative to the flake root, such as "./keys/master.age" (not a Nix path value, which would point into the store)'';
    };

  appOption =
    name: what:
    mkOption {
      type = types.nullOr types.str;
      default = name;
      example = "nixseal-${name}";
      description = "Name of the app that ${what} (`nix run .#${name}`); null leaves it out. Another definition of `apps.${name}` in the flake wins over nixseal's.";
    };
in
{
  options.nixseal = {
    nodes = mkOption {
      type = types.lazyAttrsOf types.raw;
      default = config.flake.nixosConfigurations or { };
      defaultText = literalExpression "self.nixosConfigurations";
      example = literalExpression "self.colmenaHive.nodes";
      description = ''
        NixOS configurations of the fleet (evalConfig results, such as
        `nixosConfigurations` or a colmena hive's `colmenaHive.nodes`). Those
        that declare nixseal secrets or templates become the profile's hosts,
        keyed by {option}`nixseal.settings.hostName`; their home-manager users
        (`home-manager.users.<user>`) that declare nixseal secrets or
        templates become homes, keyed by the user's
        `nixseal.settings.targetName` (`<hostName>.<user>`).
      '';
    };
    homes = mkOption {
      type = types.lazyAttrsOf types.raw;
      default = config.flake.homeConfigurations or { };
      defaultText = literalExpression "self.homeConfigurations";
      example = literalExpression "{ inherit (self.homeConfigurations) \"alice@laptop\"; }";
      description = ''
        Standalone home-manager configurations of the fleet
        (`home-manager.lib.homeManagerConfiguration` results). Those that
        declare nixseal secrets or templates become rekey targets like
        hosts, named by their `nixseal.settings.targetName`, else by their
        attribute name with the host first (`"alice@laptop"` is
        `laptop.alice`, `"alice"` is `alice`). Hosts and homes share one
        namespace: two targets with one name are refused, naming both.
      '';
    };
    identities = mkOption {
      type = types.listOf identityType;
      default = [ ];
      example = [ "./keys/master.age" ];
      description = ''
        Master identities (age identity files, passphrase-protected age files,
        SSH ed25519 private keys, plugin identity stubs), as paths relative to
        the flake root. They are read by `nix run .#renc`/`.#edit` from the
        working tree and never copied to the Nix store.
      '';
    };
    identityRecipients = mkOption {
      type = types.attrsOf (types.either types.str (types.listOf types.str));
      default = { };
      example = { "./keys/master.age" = "age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gq"; };
      description = ''
        The public half (recipient) of each master identity, keyed by the
        identity as written in {option}`nixseal.identities`: `age-keygen -y
        FILE` for an age key, the `.pub` line for an SSH key, the
        `# Recipient:` line of a plugin identity. `nix run .#rekey-masters`
        re-encrypts master secrets to these plus
        {option}`nixseal.extraRecipients` without reading any identity to
        find out what to encrypt to; it refuses to run while an identity's
        recipient is not declared here.
      '';
    };
    extraRecipients = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [ "age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gq" ];
      description = "Additional recipients (e.g. a backup key) that master secrets are encrypted to by `nix run .#edit`.";
    };
    rekeyedDir = mkOption {
      type = types.nullOr types.path;
      default = null;
      defaultText = literalExpression "the nodes' nixseal.settings.rekeyedDir (they must agree), else ./secrets/rekeyed";
      example = literalExpression "./secrets/rekeyed";
      description = "Directory in the flake that `nix run .#renc` writes `<host>/<secret>.age` to.";
    };
    root = mkOption {
      type = types.nullOr types.path;
      default = null;
      defaultText = literalExpression "the directory of flake.nix";
      example = literalExpression "./.";
      description = ''
        The directory of the flake's flake.nix, which the profile's paths are
        relative to and where the apps run. Found by itself (also for a flake
        in a subdirectory of a git repository); set it to `./.` only if that
        goes wrong.
      '';
    };
    closureChecks = mkOption {
      type = types.either types.bool (types.listOf types.str);
      default = false;
      example = true;
      description = ''
        Add a flake check `nixseal-closure-<host>` for every node (true) or
        for the listed host names: it builds the host's system and runs
        `nixseal audit` on its closure (from nixpkgs' `closureInfo`), failing
        when a store path carries the flake's source, a master ciphertext,
        another host's rekeyed file or cache, or an identity. Off by default
        because `nix flake check` then builds every listed host's whole
        system; a host's check lives under `checks.<its system>`. Turn it on
        in CI, where the systems are built anyway.
      '';
    };
    apps = {
      renc = appOption "renc" "rekeys every host's secrets";
      check = appOption "check" "lists missing or stale rekeys";
      edit = appOption "edit" "edits a master secret";
      status = appOption "status" "compares hosts' manifests with the working tree";
      deploy = appOption "deploy" "deploys a host's secrets on this machine";
      audit = appOption "audit" "lists store paths of a host's built system that carry secrets it must not have";
      rekey-masters = appOption "rekey-masters" "re-encrypts master secrets to the current master recipients (identityRecipients and extraRecipients)";
    };
  };

  options.perSystem = flake-parts-lib.mkPerSystemOption (
    { pkgs, ... }:
    {
      options.nixseal.package = mkOption {
        type = types.package;
        default = mkPackage pkgs;
        defaultText = literalExpression "nixseal.packages.\${system}.nixseal (built with this flake's nixpkgs)";
        description = "The nixseal package the apps run.";
      };
    }
  );

  config.perSystem =
    { config, pkgs, ... }:
    let
      fleet = import ./fleet.nix {
        inherit self pkgs;
        inherit (config.nixseal) package;
        inherit (cfg)
          nodes
          homes
          identities
          identityRecipients
          extraRecipients
          rekeyedDir
          apps
          root
          closureChecks
          ;
      };
    in
    {
      # mkDefault: the flake's own apps.<name> / checks win over nixseal's.
      apps = lib.mapAttrs (_: lib.mkDefault) fleet.apps;
      checks = lib.mapAttrs (_: lib.mkDefault) fleet.checks;
      legacyPackages = lib.mapAttrs (_: lib.mkDefault) fleet.legacyPackages;
    };
}
