# Option declarations shared by the NixOS module (../nixos.nix) and the
# home-manager module (../home-manager.nix): the parts of
# `nixseal.secrets.<name>` and `nixseal.templates.<name>` that mean the same
# in both. What differs (owner and group, neededForUsers, the default path,
# which units a restart reaches) stays in each module.
{ lib }:
let
  inherit (lib) literalExpression mkOption types;
  nixsealTypes = import ./types.nix { inherit lib; };
in
{
  # `name`, `mode` and `path` of a secret or template.
  #   path: { type; default; defaultText; example; }
  placement =
    name:
    {
      path,
    }:
    {
      name = mkOption {
        type = nixsealTypes.secretNameType;
        default = name;
        defaultText = literalExpression "<name>";
        description = "File name under {option}`nixseal.settings.symlink`, and the name used in the manifest and in placeholders.";
      };
      mode = mkOption {
        type = nixsealTypes.modeType;
        default = "0400";
        example = "0440";
        description = "Permissions of the decrypted file, in octal.";
      };
      path = mkOption {
        inherit (path)
          type
          default
          defaultText
          example
          ;
        description = ''
          Where services find the plaintext. The default lives inside the
          stable symlink; any other path is created by the activation (see
          {option}`nixseal.secrets.<name>.symlink`).
        '';
      };
    };

  # What a secret has besides its placement.
  #   target: "host" or "home" (the kind of rekey target, for descriptions)
  #   restartUnits, reloadUnits: { example; description; }
  secret =
    {
      target,
      restartUnits,
      reloadUnits,
    }:
    {
      file = mkOption {
        type = types.path;
        example = literalExpression "./secrets/db-password.age";
        description = ''
          The master ciphertext in the flake (encrypted to the master identity
          by `nix run .#edit`). It never enters the ${target}'s closure: only its
          rekeyed copy `<rekeyedDir>/<${target}>/<name>.age` does. Give a Nix path
          value inside the flake, such as `./secrets/db.age`.
        '';
      };
      generator = mkOption {
        type = types.nullOr types.path;
        default = null;
        example = literalExpression ''pkgs.writeShellScript "gen-session-key" "''${pkgs.openssl}/bin/openssl rand -hex 32"'';
        description = ''
          An executable that prints a new value of this secret on its standard
          output. When {option}`file` does not exist yet, `nix run .#renc` runs
          it (on the operator's machine, in the flake root, stdin closed),
          encrypts its output to the master identities and `extraRecipients`,
          writes {option}`file` and rekeys it in the same run. An existing file
          is never regenerated: delete it to rotate. A script in the flake
          (`./gen.sh`, executable), a `pkgs.writeShellScript` or
          `lib.getExe pkg` all work.
        '';
      };
      symlink = mkOption {
        type = types.bool;
        default = true;
        description = ''
          When {option}`path` is not the default, place a symlink there that
          points into the current generation (true), or an atomically replaced
          copy of the file (false, for programs that refuse symlinks).
        '';
      };
      restartUnits = mkOption {
        type = types.listOf types.str;
        default = [ ];
        inherit (restartUnits) example description;
      };
      reloadUnits = mkOption {
        type = types.listOf types.str;
        default = [ ];
        inherit (reloadUnits) example description;
      };
      allowPlaintextOnDisk = mkOption {
        type = types.bool;
        default = false;
        description = ''
          Copy mode only ({option}`symlink` = false with a custom
          {option}`path`): allow the copy to be written on a persistent file
          system (ext4, btrfs, zfs, …). The plaintext then lies on that disk
          until the secret leaves the configuration, when the next
          activation deletes the copy; its blocks are not scrubbed, so it
          may survive in the file system, in snapshots and in backups (use
          full-disk encryption). Without it, `nixseal deploy` places copies
          only on memory file systems (tmpfs, ramfs) and fails the
          activation (keeping the previous generation) otherwise.
        '';
      };
    };

  templateContent = mkOption {
    type = types.lines;
    example = literalExpression ''
      '''
        DATABASE_URL=postgres://app:''${config.nixseal.placeholder.db-password}@db/app
      '''
    '';
    description = ''
      Text of the file. Each {option}`nixseal.placeholder.<name>` in it is
      replaced by that secret's plaintext at activation. The content with its
      placeholders is stored in the Nix store; the rendered file is not.
    '';
  };

  # `nixseal.placeholder` for the given `nixseal.secrets`.
  placeholder =
    secrets:
    mkOption {
      type = types.attrsOf types.str;
      readOnly = true;
      default = lib.mapAttrs (_: s: "{{nixseal:${s.name}}}") secrets;
      defaultText = literalExpression ''{ <name> = "{{nixseal:<name>}}"; }'';
      description = "Placeholders for use in {option}`nixseal.templates.<name>.content`, one per secret.";
    };

  keepGenerations = mkOption {
    type = types.ints.unsigned;
    default = 1;
    description = "Generations kept after a deploy, the active one included (they hold plaintext until removed). The generation a deploy replaces survives until the next deploy, so with 1 two are normally present; when the new generation is empty (the last secret and template removed) the replaced one is removed by the same deploy. 0 disables pruning (old plaintext stays in RAM until reboot).";
  };

  rekeyedDir =
    target:
    mkOption {
      type = types.nullOr types.path;
      default = null;
      example = literalExpression "./secrets/rekeyed";
      description = ''
        Directory of the flake that holds `<${target}>/<secret>.age`, written by
        `nix run .#renc`. Give a Nix path value inside the flake; only this
        ${target}'s files are imported into its closure, one by one.
      '';
    };
}
