# The flake-parts module: `imports = [ nixseal.flakeModules.default ];`
# Options `nixseal.*` describe the fleet; every system gets the apps
# `renc`, `edit`, `deploy` and the check `nixseal-rekeyed` (see ./fleet.nix).
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
in
{
  options.nixseal = {
    nodes = mkOption {
      type = types.lazyAttrsOf types.raw;
      default = config.flake.nixosConfigurations or { };
      defaultText = literalExpression "self.nixosConfigurations";
      description = ''
        NixOS configurations of the fleet. Those that declare nixseal secrets or
        templates become the profile's hosts, keyed by
        {option}`nixseal.settings.hostName`.
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
          identities
          extraRecipients
          rekeyedDir
          ;
      };
    in
    {
      inherit (fleet) apps checks;
    };
}
