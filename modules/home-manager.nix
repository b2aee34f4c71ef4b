# The nixseal home-manager module: per-user secrets, rekeyed by the fleet's
# `nix run .#renc` to the user's own SSH ed25519 key and decrypted by the
# user, without root, into the user's runtime directory.
#
# It turns `nixseal.secrets` / `nixseal.templates` into a user-session
# manifest (host manifest version 1 with "session": "user", owner and group
# "", `%r` paths; the contract is in docs/design.md) in the home's closure,
# and runs `nixseal deploy --manifest M --user-session` from the systemd user
# service `nixseal.service` (at login, and when a switch changes the
# manifest) and from the activation entry `nixseal` (see `activation`
# below). Keep the manifest in sync with the serde type
# nixseal::manifest::Manifest in crates/nixseal/src/contract/manifest/mod.rs.
#
# The same evaluation checks as the NixOS module (./lib/problems.nix). They
# stop the manifest, and so `home-manager switch` and `nixos-rebuild`, with
# the fix-it text. Inside NixOS they are also `assertions` (home-manager's
# NixOS module makes them the system's, next to the host's own); in a
# standalone home they are not: homeManagerConfiguration refuses to show
# its `config` at all while an assertion fails, and the fleet's `nix run
# .#renc` reads the home's secrets from that `config` — a missing rekey
# would then block the very command that makes it.
args@{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib)
    attrValues
    concatStringsSep
    filter
    hasPrefix
    literalExpression
    mkOption
    optional
    optionalString
    types
    ;

  cfg = config.nixseal;
  # Given by home-manager's NixOS (and nix-darwin) module, absent otherwise.
  osConfig = args.osConfig or null;
  user = config.home.username;
  homeDir = config.home.homeDirectory;
  osHost =
    if osConfig == null then
      null
    else
      osConfig.nixseal.settings.hostName or osConfig.networking.hostName or null;
  target = cfg.settings.targetName;
  exe = "${cfg.settings.package}/bin/nixseal";

  nixsealTypes = import ./lib/types.nix { inherit lib; };
  inherit (nixsealTypes) runtimePath targetNameType userPath;
  shared = import ./lib/options.nix { inherit lib; };
  checks = import ./lib/problems.nix { inherit lib; };
  inFlake = checks.inFlake;

  # Who the messages name.
  subject =
    if target == null then
      "the home of user `${user}`"
    else
      "home `${target}` (user `${user}`${optionalString (osHost != null) " on host `${osHost}`"})";
  short = if target == null then subject else "home `${target}`";

  placementOptions =
    { name, config, ... }:
    {
      options = shared.placement name {
        path = {
          type = userPath;
          default = "${cfg.settings.symlink}/${config.name}";
          defaultText = literalExpression ''"''${config.nixseal.settings.symlink}/''${name}"'';
          example = literalExpression ''"''${config.home.homeDirectory}/.netrc"'';
        };
      };
    };

  secretModule = {
    imports = [ placementOptions ];
    options = shared.secret {
      target = "home";
      restartUnits = {
        example = [ "mbsync.service" ];
        description = "User units to `systemctl --user try-restart` when this secret's content or mode changes; `nixseal.service` is ordered before them, so at login they start with the secret in place.";
      };
      reloadUnits = {
        example = [ "gpg-agent.service" ];
        description = "User units to `systemctl --user try-reload-or-restart` when this secret's content or mode changes; `nixseal.service` is ordered before them.";
      };
    };
  };

  templateModule = {
    imports = [ placementOptions ];
    options.content = shared.templateContent;
  };

  secrets = attrValues cfg.secrets;
  templates = attrValues cfg.templates;
  secretNames = map (s: s.name) secrets;
  items = secrets ++ templates;

  pubkey = checks.pubkey cfg.settings.userPubkey;
  recipient = pubkey.recipient;

  rekeyed = checks.rekeyed {
    inherit (cfg.settings) rekeyedDir;
    inherit target subject recipient;
    keyOption = "nixseal.settings.userPubkey";
    keyWhat = "key";
  };
  defaultPath = s: "${cfg.settings.symlink}/${s.name}";

  dedicatedKey = "`ssh-keygen -t ed25519 -N '' -f ~/.ssh/nixseal_ed25519` makes a key without a passphrase for nixseal (then add its path to nixseal.settings.userKeys)";

  # What a home with secrets needs to decrypt them.
  keyProblems =
    optional (target == null) "nixseal: ${subject} has secrets but no nixseal.settings.targetName. Outside NixOS the module cannot know the home's name in the fleet: set it to the name of its homeConfigurations attribute with the host first, e.g. nixseal.settings.targetName = \"laptop.${user}\"; for homeConfigurations.\"${user}@laptop\" (that is the name `nix run .#renc` rekeys it under: <rekeyedDir>/<targetName>/)."
    ++ optional (cfg.settings.userPubkey == null) "nixseal: ${subject} has secrets but no nixseal.settings.userPubkey; set it to the user's SSH ed25519 public key (the content of ~/.ssh/id_ed25519.pub), or to the path of that .pub file in the flake. ${dedicatedKey}."
    ++ optional pubkey.fileMissing "nixseal: nixseal.settings.userPubkey of ${subject} is the file ${inFlake cfg.settings.userPubkey}, which does not exist (or is not tracked by git); `git add` it, or give the key itself."
    ++ optional (pubkey.problem != null) "nixseal: nixseal.settings.userPubkey of ${subject} ${pubkey.problem}; nixseal encrypts to the user's SSH ed25519 key: use the content of ~/.ssh/id_ed25519.pub; ${dedicatedKey}."
    ++ optional (cfg.settings.rekeyedDir == null) "nixseal: ${subject} has secrets but no nixseal.settings.rekeyedDir; set it to the flake's rekeyed directory, e.g. `./secrets/rekeyed` (the one the NixOS hosts use)."
    ++ optional (cfg.settings.userKeys == [ ]) "nixseal: ${subject} has no nixseal.settings.userKeys; list the path of the user's private SSH ed25519 key (by default ${homeDir}/.ssh/id_ed25519).";

  problems =
    lib.optionals (secrets != [ ]) keyProblems
    ++ lib.optionals (cfg.settings.rekeyedDir != null && recipient != null && target != null) (
      filter (p: p != null) (map rekeyed.problem secrets)
    )
    ++ lib.concatMap (checks.templateProblems { inherit subject short secretNames; }) templates
    ++ optional (items != [ ] && user == "root") "nixseal: ${subject}: nixseal's home-manager module decrypts with the user's own key, as that user, and `nixseal deploy --user-session` refuses to run as root. Declare root's secrets in the NixOS module instead (nixseal.secrets.<name> with owner = \"root\")."
    ++ checks.duplicates subject "secret or template name" (map (x: x.name) items)
    ++ checks.duplicates subject "secret or template path" (map (x: x.path) items);

  warnings =
    checks.modeWarnings subject secrets templates
    ++ checks.plaintextWarnings {
      inherit subject defaultPath;
      memory = "the runtime directory";
    } secrets;

  # Keep in sync with nixseal::manifest::Manifest (crates/nixseal/src/contract/manifest/mod.rs,
  # version 1, "session": "user"; docs/design.md).
  manifest = {
    version = 1;
    session = "user";
    hostKeys = map (path: {
      inherit path;
      type = "ed25519";
    }) cfg.settings.userKeys;
    inherit (cfg.settings)
      mountPoint
      symlink
      keepGenerations
      stateDir
      ;
    secrets = map (s: {
      inherit (s)
        name
        mode
        path
        symlink
        restartUnits
        reloadUnits
        allowPlaintextOnDisk
        ;
      # The files belong to the user who runs the deploy.
      owner = "";
      group = "";
      neededForUsers = false;
      # A store path of its own, holding only this file.
      source = rekeyed.source s;
    }) secrets;
    templates = map (t: {
      inherit (t)
        name
        content
        mode
        path
        ;
      owner = "";
      group = "";
    }) templates;
  };

  # Checked when built by the nixseal that deploys it, as a host's
  # (lib/manifest-file.nix; `nixseal manifest check` judges a user-session
  # manifest by the rules of `deploy --user-session`).
  manifestFile =
    if problems != [ ] then
      throw ("\n" + concatStringsSep "\n" problems)
    else
      import ./lib/manifest-file.nix { inherit lib pkgs; } {
        name = "nixseal-manifest-${if target == null then "home" else target}.json";
        inherit manifest exe;
        check = cfg.settings.checkManifest;
      };

  deployCommand = "${exe} deploy --manifest ${manifestFile} --user-session";

  # Paths in unit files: `%r/` is systemd's `%t/` (the runtime directory),
  # and a `%` anywhere else is a literal one (`%%`).
  unitPath =
    p:
    let
      escape = lib.replaceStrings [ "%" ] [ "%%" ];
    in
    if hasPrefix "%r/" p then "%t/" + escape (lib.removePrefix "%r/" p) else escape p;
  units = lib.unique (lib.concatMap (s: s.restartUnits ++ s.reloadUnits) secrets);
  # The directories the user's keys and records are in (a home or /persist
  # that is mounted late).
  mountDirs = lib.unique (
    map (k: unitPath (dirOf k)) cfg.settings.userKeys
    ++ optional (!hasPrefix "%r/" cfg.settings.stateDir) (unitPath cfg.settings.stateDir)
  );

  # Whether home-manager installs `nixseal.service` (modules/systemd.nix:
  # systemd.user.enable, never for root), and whether a switch restarts
  # changed units itself (startServices = "sd-switch", the default) or only
  # suggests it.
  unitInstalled = (config.systemd.user.enable or false) && user != "root";
  sdSwitch = config.systemd.user.startServices or false;
  systemctl = config.systemd.user.systemctlPath or "systemctl";
  # nixseal.service in a generation (as home-manager's reloadSystemd finds
  # the units).
  unitInGeneration = lib.escapeShellArg "/home-files${lib.removePrefix homeDir config.xdg.configHome}/systemd/user/nixseal.service";
  unitFile = "\"$newGenPath\"${unitInGeneration}";
  oldUnitFile = "\"$oldGenPath\"${unitInGeneration}";
  # The symlink as the shell sees it, for "is a generation left?".
  shellPath =
    p:
    if hasPrefix "%r/" p then
      "\"$nixsealRuntimeDir\"/${lib.escapeShellArg (lib.removePrefix "%r/" p)}"
    else
      lib.escapeShellArg p;

  # The activation entry. Who deploys on a switch (once, never twice):
  # - the user's systemd runs (a logged-in or lingering user; also under
  #   `nixos-rebuild switch`, whose home-manager-<user>.service finds the
  #   session's XDG_RUNTIME_DIR, as home-manager's reloadSystemd does):
  #   * sd-switch (the reloadSystemd entry, which this one follows) restarts
  #     nixseal.service when its unit file changed — exactly when the
  #     manifest changed: it is in ExecStart and X-Restart-Triggers — and
  #     starts it when new. This entry only retries a unit that failed
  #     before (sd-switch leaves failed units alone), e.g. after a missing
  #     key was put in place.
  #   * with startServices = "suggest" (or false) home-manager only reloads
  #     the units and prints suggestions; this entry restarts
  #     nixseal.service itself when its unit file differs from the previous
  #     generation's, or when it failed.
  #   * while the session is still starting, default.target runs it.
  # - no user systemd reachable (not logged in: no runtime directory; or a
  #   session without systemd; or systemd.user.enable = false): with a
  #   runtime directory, this entry runs `nixseal deploy` itself, at every
  #   switch (it is cheap and restarts nothing whose secret did not
  #   change); without one there is nothing to deploy into, and
  #   nixseal.service deploys at the next login.
  # A failed deploy keeps the previous generation and is reported as a
  # warning; it does not abort the rest of the activation (home-manager's
  # own steps after this one, such as its GC root, must still run).
  activation =
    let
      # `block` with every line but the first indented by n spaces (for
      # blocks interpolated at that depth).
      indent =
        n: block:
        lib.concatStringsSep "\n" (
          lib.imap0 (i: l: if i == 0 || l == "" then l else lib.fixedWidthString n " " "" + l) (
            lib.splitString "\n" (lib.removeSuffix "\n" block)
          )
        );
      isFailed = "${systemctl} --user is-failed --quiet nixseal.service";
      restart = ''
        if ! run ${systemctl} --user restart nixseal.service; then
          warnEcho "nixseal: nixseal.service failed; the previous secrets (if any) stay in place. See: journalctl --user -u nixseal.service"
        fi
      '';
      # sd-switch restarted nixseal.service if the manifest changed.
      withSystemd =
        if sdSwitch then
          ''
            if ${isFailed}; then
              ${indent 2 restart}
            fi
          ''
        else
          ''
            if [[ ! -v oldGenPath || ! -e ${oldUnitFile} ]] || ! cmp -s ${oldUnitFile} ${unitFile} || ${isFailed}; then
              ${indent 2 restart}
            fi
          '';
      notLoggedIn =
        if unitInstalled then
          ''echo "nixseal: no runtime directory $nixsealRuntimeDir (the user is not logged in); nixseal.service deploys the secrets at the next login"''
        else
          ''warnEcho "nixseal: no runtime directory $nixsealRuntimeDir; the secrets are not deployed (run the switch again from a login session)"'';
      direct = ''
        if [[ ! -d $nixsealRuntimeDir ]]; then
          ${notLoggedIn}
        ${
          # Nothing to install: run only to remove what an earlier
          # configuration installed.
          lib.optionalString (items == [ ]) "elif [[ ! -L ${shellPath cfg.settings.symlink} ]]; then\n  :\n"
        }else
          if ! XDG_RUNTIME_DIR=$nixsealRuntimeDir run ${deployCommand}; then
            warnEcho "nixseal: deploying the secrets failed (see above); the previous secrets (if any) stay in place"
          fi
        fi
      '';
    in
    if unitInstalled then
      ''
        nixsealRuntimeDir=''${XDG_RUNTIME_DIR:-/run/user/$(id -u)}
        nixsealSystemd=$(XDG_RUNTIME_DIR=$nixsealRuntimeDir ${systemctl} --user is-system-running 2>&1 || true)
        case $nixsealSystemd in
          running | degraded)
            export XDG_RUNTIME_DIR=$nixsealRuntimeDir
            ${indent 4 withSystemd}
            ;;
          starting | initializing)
            echo "nixseal: the user's systemd is starting; nixseal.service deploys the secrets as part of default.target"
            ;;
          *)
            ${indent 4 direct}
            ;;
        esac
        unset nixsealSystemd nixsealRuntimeDir
      ''
    else
      ''
        nixsealRuntimeDir=''${XDG_RUNTIME_DIR:-/run/user/$(id -u)}
        ${indent 0 direct}
        unset nixsealRuntimeDir
      '';
in
{
  options.nixseal = {
    secrets = mkOption {
      type = types.attrsOf (types.submodule secretModule);
      default = { };
      example = literalExpression ''
        {
          github-token.file = ./secrets/github-token.age;
          netrc = {
            file = ./secrets/netrc.age;
            path = "''${config.home.homeDirectory}/.netrc";
          };
          mail-password = {
            file = ./secrets/mail-password.age;
            restartUnits = [ "mbsync.service" ];
          };
        }
      '';
      description = "Secrets of this user, decrypted with the user's own key into {option}`nixseal.settings.symlink`/<name> (in the runtime directory) unless {option}`path` says otherwise.";
    };

    templates = mkOption {
      type = types.attrsOf (types.submodule templateModule);
      default = { };
      example = literalExpression ''
        {
          "gh-hosts.yml".content = "github.com:\n  oauth_token: ''${config.nixseal.placeholder.github-token}\n";
        }
      '';
      description = "Files rendered at activation from text with secret placeholders.";
    };

    placeholder = shared.placeholder cfg.secrets;

    settings = {
      targetName = mkOption {
        type = types.nullOr targetNameType;
        default = if osHost == null then null else "${osHost}.${user}";
        defaultText = literalExpression ''"''${osConfig.nixseal.settings.hostName}.''${config.home.username}" inside NixOS (else osConfig.networking.hostName), null in a standalone home'';
        example = "laptop.alice";
        description = ''
          Name of this home in the fleet: its rekeyed files live in
          `<rekeyedDir>/<targetName>/` and the fleet profile keys it by this
          name. Inside NixOS (home-manager's NixOS module) it is
          `<hostName>.<user>`; a standalone `homeConfigurations."alice@laptop"`
          is `laptop.alice` in the fleet (the attribute name, host first), but
          the module cannot see that name: set it here (evaluation says so
          when it is missing). Unique across the fleet's hosts and homes.
        '';
      };
      userPubkey = mkOption {
        type = types.nullOr (types.either types.str types.path);
        default = null;
        example = literalExpression "./homes/alice/id_ed25519.pub";
        description = ''
          The user's SSH ed25519 public key, as the key line itself (the
          content of `~/.ssh/id_ed25519.pub`, a trailing comment is ignored)
          or as the path of a `.pub` file in the flake. The rekeyed secrets
          are encrypted to it. A key that is not valid base64, not the
          encoding of an ed25519 key, or of small order (which anyone could
          decrypt) fails evaluation.
        '';
      };
      userKeys = mkOption {
        type = types.listOf runtimePath;
        default = [ "${homeDir}/.ssh/id_ed25519" ];
        defaultText = literalExpression ''[ "''${config.home.homeDirectory}/.ssh/id_ed25519" ]'';
        example = literalExpression ''[ "''${config.home.homeDirectory}/.ssh/nixseal_ed25519" ]'';
        description = ''
          The user's private SSH ed25519 keys tried, in order, to decrypt the
          rekeyed secrets (absolute paths). A key protected by a passphrase
          cannot be used unattended: deploy refuses it, naming it; make a
          dedicated one with `ssh-keygen -t ed25519 -N ''' -f ~/.ssh/nixseal_ed25519`.
        '';
      };
      rekeyedDir = shared.rekeyedDir "home";
      mountPoint = mkOption {
        type = userPath;
        default = "%r/nixseal.d";
        description = "Directory holding the generations of decrypted secrets, made `0700` by deploy: `%r` is the user's runtime directory ($XDG_RUNTIME_DIR, a memory file system that logind removes at logout). Never a mount of its own.";
      };
      symlink = mkOption {
        type = userPath;
        default = "%r/nixseal";
        description = "Stable symlink to the current generation; secrets appear as `<symlink>/<name>` (by default `$XDG_RUNTIME_DIR/nixseal/<name>`).";
      };
      keepGenerations = shared.keepGenerations;
      stateDir = mkOption {
        type = userPath;
        default = "${config.xdg.stateHome}/nixseal";
        defaultText = literalExpression ''"''${config.xdg.stateHome}/nixseal"'';
        description = ''
          The user's own directory (made `0700`) where `nixseal deploy` keeps
          the records that must survive a logout: which custom paths it
          placed, so it removes only its own when a secret leaves, and which
          unit restarts are still owed. No secret data.
        '';
      };
      checkManifest = mkOption {
        type = types.bool;
        default = true;
        example = false;
        description = ''
          Check the user-session manifest with `nixseal manifest check` when
          it is built, as the NixOS module checks a host's: a manifest that
          `nixseal deploy --user-session` would refuse (a system directory as
          a path, a name or path nixseal reserves, …) fails the build instead
          of the login. Cross builds skip the check by themselves; turn it off
          only where {option}`package` is not a runnable nixseal.
        '';
      };
      package = mkOption {
        type = types.package;
        default =
          pkgs.nixseal
            or (throw "nixseal: pkgs has no `nixseal`; import nixseal.homeManagerModules.default (which sets nixseal.settings.package) or add nixseal.overlays.default to nixpkgs.overlays.");
        defaultText = literalExpression "pkgs.nixseal";
        description = "The nixseal package whose `nixseal deploy --user-session` activates the secrets.";
      };
    };

    build = {
      manifest = mkOption {
        type = types.package;
        readOnly = true;
        internal = true;
        description = "The user-session manifest (JSON, version 1) given to `nixseal deploy --user-session`.";
      };
      recipient = mkOption {
        type = types.nullOr types.str;
        readOnly = true;
        internal = true;
        description = "userPubkey normalised to `ssh-ed25519 <base64>` (the rekey cache's recipient), or null when missing or not ssh-ed25519.";
      };
      problems = mkOption {
        type = types.listOf types.str;
        readOnly = true;
        internal = true;
        description = "Why this home's secrets cannot be deployed (missing or stale rekeys, bad key); empty when all is well.";
      };
    };
  };

  # Present whenever the module is imported: a home whose last secret was
  # removed must still get rid of the plaintext.
  config = {
    nixseal.build.manifest = manifestFile;
    nixseal.build.problems = problems;
    nixseal.build.recipient = recipient;

    inherit warnings;
    assertions = lib.optionals (osConfig != null) (
      map (message: {
        assertion = false;
        inherit message;
      }) problems
    );

    systemd.user.services.nixseal = {
      Unit = {
        Description = "Decrypt nixseal secrets into ${unitPath cfg.settings.symlink}";
        # At login the services that read the secrets start after them.
        Before = units;
        RequiresMountsFor = mountDirs;
        # A new manifest makes a new unit file: sd-switch restarts the unit.
        X-Restart-Triggers = [ manifestFile ];
        # A stop does nothing (no ExecStop), so a restart is right; the old
        # generation stays in place while the new one is made.
        X-SwitchMethod = "restart";
      }
      # Nothing to install: run only to remove what an earlier configuration
      # installed.
      // lib.optionalAttrs (items == [ ]) { ConditionPathIsSymbolicLink = unitPath cfg.settings.symlink; };
      Service = {
        Type = "oneshot";
        RemainAfterExit = true;
        ExecStart = deployCommand;
      };
      Install.WantedBy = [ "default.target" ];
    };

    # After writeBoundary (it changes state) and after reloadSystemd (the
    # unit files are reloaded and sd-switch has done its part); a name that
    # is not in the DAG (reloadSystemd when systemd.user.enable is false)
    # orders nothing.
    home.activation.nixseal = lib.hm.dag.entryAfter [
      "writeBoundary"
      "reloadSystemd"
    ] activation;
  };
}
