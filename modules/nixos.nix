# The nixseal NixOS module.
#
# It turns `nixseal.secrets` / `nixseal.templates` into a host manifest (version 1)
# in the host's closure and runs `nixseal deploy` on it at boot and on every
# activation. Keep the manifest in sync with the serde type
# nixseal::manifest::Manifest in crates/nixseal/src/contract/manifest/mod.rs (the Rust
# side rejects unknown fields); tests/nix checks both.
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
    mkIf
    mkMerge
    mkOption
    optional
    types
    ;

  cfg = config.nixseal;
  osConfig = config;
  # `nixseal deploy --users` keeps neededForUsers secrets apart, under
  # `<symlink>-for-users` (see for_users in crates/nixseal/src/contract/manifest/mod.rs).
  usersSymlink =
    let
      s = cfg.settings.symlink;
    in
    if lib.hasSuffix ".d" s then lib.removeSuffix ".d" s + "-for-users.d" else s + "-for-users";
  host = cfg.settings.hostName;
  exe = "${cfg.settings.package}/bin/nixseal";
  paths = import ./lib/paths.nix { inherit lib; };

  nixsealTypes = import ./lib/types.nix { inherit lib; };
  inherit (nixsealTypes) hostNameType runtimePath;
  shared = import ./lib/options.nix { inherit lib; };
  checks = import ./lib/problems.nix { inherit lib; };
  subject = "host `${host}`";

  # Options shared by secrets and templates: where the plaintext lands and who
  # may read it.
  placementOptions =
    { name, config, ... }:
    {
      options =
        shared.placement name {
          path = {
            type = runtimePath;
            default = "${if config.neededForUsers or false then usersSymlink else cfg.settings.symlink}/${config.name}";
            defaultText = literalExpression ''"''${config.nixseal.settings.symlink}/''${name}" (neededForUsers: "<symlink>-for-users/''${name}")'';
            example = "/var/lib/app/secret.key";
          };
        }
        // {
          owner = mkOption {
            type = types.str;
            default = "root";
            example = "postgres";
            description = "User that owns the decrypted file: a user that exists on the host when `nixseal-activate.service` runs, or a decimal uid (e.g. for a container's user; an account of that name wins, as with chown).";
          };
          group = mkOption {
            type = types.str;
            # Services usually run as a user whose primary group is declared.
            default =
              let
                g = osConfig.users.users.${config.owner}.group or "";
              in
              if g == "" then "root" else g;
            defaultText = literalExpression ''config.users.users.''${owner}.group or "root"'';
            description = "Group of the decrypted file (a group name or a decimal gid): by default the owner's primary group when NixOS declares it, else root.";
          };
        };
    };

  secretModule = {
    imports = [ placementOptions ];
    options =
      shared.secret {
        target = "host";
        restartUnits = {
          example = [ "postgresql.service" ];
          description = "Units to `try-restart` when this secret's content, owner or mode changes.";
        };
        reloadUnits = {
          example = [ "nginx.service" ];
          description = "Units to `try-reload-or-restart` when this secret's content, owner or mode changes.";
        };
      }
      // {
        neededForUsers = mkOption {
          type = types.bool;
          default = false;
          description = ''
            Decrypt this secret before users are created (before
            systemd-sysusers, userborn, or the `users` activation step), so that
            `users.users.<name>.hashedPasswordFile` can point at it. Such secrets
            must be owned by root and live apart from the others, by default in
            `<symlink>-for-users/<name>` (`/run/nixseal-for-users/<name>`).
          '';
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
  # What `nixseal deploy` (without and with --users) installs.
  mainItems = filter (s: !s.neededForUsers) secrets ++ templates;
  usersEarly = lib.any (s: s.neededForUsers) secrets;

  # hostPubkey: the key line itself, or a .pub file in the flake.
  pubkey = checks.pubkey cfg.settings.hostPubkey;
  # "ssh-ed25519 <base64>" (the recipient the rekey cache records), or null.
  recipient = pubkey.recipient;

  # Shown in messages: the path relative to the directory of flake.nix.
  inFlake = checks.inFlake;

  rekeyed = checks.rekeyed {
    inherit (cfg.settings) rekeyedDir;
    target = host;
    inherit subject recipient;
    keyOption = "nixseal.settings.hostPubkey";
    keyWhat = "host key";
  };
  # Where a secret lands when its path is not set.
  defaultPath = s: "${if s.neededForUsers then usersSymlink else cfg.settings.symlink}/${s.name}";

  templateProblems = checks.templateProblems {
    inherit subject secretNames;
    short = subject;
  };

  # NixOS' rule for the file systems the initrd mounts (nixos/lib/utils.nix
  # fsNeededForBoot): neededForBoot, or one of the paths NixOS itself needs.
  pathsNeededForBoot = [
    "/"
    "/nix"
    "/nix/store"
    "/var"
    "/var/log"
    "/var/lib"
    "/var/lib/nixos"
    "/etc"
    "/usr"
  ];
  fileSystems = attrValues (config.fileSystems or { });
  fsNeededForBoot = fs: fs.neededForBoot or false || builtins.elem fs.mountPoint pathsNeededForBoot;
  # The declared file systems a path lies on (every mount above it).
  mountsOf =
    p:
    filter (
      fs: fs.mountPoint == "/" || p == fs.mountPoint || hasPrefix "${lib.removeSuffix "/" fs.mountPoint}/" p
    ) fileSystems;
  earlyWhen =
    if earlyUnit then
      "by nixseal-activate-users.service, before systemd-sysusers/userborn and before local file systems are mounted"
    else
      "by the activation script, before systemd starts";
  earlyKeyProblems = lib.optionals usersEarly (
    lib.concatMap (
      k:
      map (
        fs:
        "nixseal: host `${host}` has neededForUsers secrets, which are decrypted before users exist (${earlyWhen}), but its host key ${k.path} is on ${fs.mountPoint}, which the initrd does not mount. Set fileSystems.\"${fs.mountPoint}\".neededForBoot = true, or keep the host key on a file system the initrd mounts."
      ) (filter (fs: !fsNeededForBoot fs) (mountsOf k.path))
    ) cfg.settings.hostKeys
    ++ map (
      fs:
      "nixseal: host `${host}` has neededForUsers secrets, which are decrypted before users exist (${earlyWhen}), but nixseal.settings.stateDir ${cfg.settings.stateDir} is on ${fs.mountPoint}, which the initrd does not mount: the early activation would read and write its records in the directory under that mount point. Set fileSystems.\"${fs.mountPoint}\".neededForBoot = true, or keep stateDir on a file system the initrd mounts (the default /var/lib/nixseal is)."
    ) (filter (fs: !fsNeededForBoot fs) (mountsOf cfg.settings.stateDir))
  );

  problems =
    lib.optionals (secrets != [ ]) keyProblems
    ++ lib.optionals (cfg.settings.rekeyedDir != null && recipient != null) (
      filter (p: p != null) (map rekeyed.problem secrets)
    )
    ++ lib.concatMap templateProblems templates
    ++ map (s: "nixseal: secret `${s.name}` of host `${host}` has neededForUsers = true, so it is decrypted before users exist: its owner and group must be \"root\" (got ${s.owner}:${s.group}).") (
      filter (s: s.neededForUsers && (s.owner != "root" || s.group != "root")) secrets
    )
    ++ map (s: "nixseal: secret `${s.name}` of host `${host}` has neededForUsers = true, but its path ${s.path} is inside ${cfg.settings.symlink}, which is only made after users exist; leave path at its default (${usersSymlink}/${s.name}) or choose one outside ${cfg.settings.symlink}.") (
      filter (s: s.neededForUsers && hasPrefix "${cfg.settings.symlink}/" s.path) secrets
    )
    ++ earlyKeyProblems
    ++ checks.duplicates subject "secret or template name" (map (x: x.name) (secrets ++ templates))
    ++ checks.duplicates subject "secret or template path" (map (x: x.path) (secrets ++ templates));

  # What a host with secrets needs to decrypt them.
  keyProblems =
    optional (cfg.settings.hostPubkey == null) "nixseal: host `${host}` has secrets but no nixseal.settings.hostPubkey; set it to the host's `ssh-keyscan -t ed25519 HOST` output (or the content of /etc/ssh/ssh_host_ed25519_key.pub), or to the path of that .pub file in the flake."
    ++ optional pubkey.fileMissing "nixseal: nixseal.settings.hostPubkey of host `${host}` is the file ${inFlake cfg.settings.hostPubkey}, which does not exist (or is not tracked by git); `git add` it, or give the key itself."
    ++ optional (pubkey.problem != null) "nixseal: nixseal.settings.hostPubkey of host `${host}` ${pubkey.problem}; nixseal encrypts to the host's SSH ed25519 key: use the output of `ssh-keyscan -t ed25519 HOST` (or the host's /etc/ssh/ssh_host_ed25519_key.pub)."
    ++ optional (cfg.settings.rekeyedDir == null) "nixseal: host `${host}` has secrets but no nixseal.settings.rekeyedDir; set it to the flake's rekeyed directory, e.g. `./secrets/rekeyed`."
    ++ optional (cfg.settings.hostKeys == [ ]) "nixseal: host `${host}` has no nixseal.settings.hostKeys; enable services.openssh (its ed25519 host key is used) or list the key path explicitly.";

  warnings =
    checks.modeWarnings subject secrets templates
    ++ checks.plaintextWarnings {
      inherit subject defaultPath;
      memory = "the ramfs";
    } secrets
    ++ lib.optionals (usersEarly && sysusers) (
      map (
        u:
        "nixseal: host `${host}` creates users with systemd-sysusers, which sets a password only when it creates the user: users.users.${u.name}.hashedPasswordFile is the nixseal secret ${u.hashedPasswordFile}, and a changed secret is never applied to the existing user `${u.name}`. Use services.userborn.enable = true (or scripted users) to have password changes applied, or change the password on the host as well."
      ) (
        filter (
          u: u.hashedPasswordFile or null != null && hasPrefix "${usersSymlink}/" u.hashedPasswordFile
        ) (attrValues (config.users.users or { }))
      )
    );

  # Keep in sync with nixseal::manifest::Manifest (crates/nixseal/src/contract/manifest/mod.rs, version 1).
  manifest = {
    version = 1;
    hostKeys = map (k: { inherit (k) path type; }) cfg.settings.hostKeys;
    inherit (cfg.settings)
      mountPoint
      symlink
      keepGenerations
      stateDir
      ;
    secrets = map (s: {
      inherit (s)
        name
        owner
        group
        mode
        path
        symlink
        restartUnits
        reloadUnits
        neededForUsers
        allowPlaintextOnDisk
        ;
      # A store path of its own, holding only this file.
      source = rekeyed.source s;
    }) secrets;
    templates = map (t: { inherit (t) name content owner group mode path; }) templates;
  };

  # Checked when built by the nixseal that deploys it (lib/manifest-file.nix).
  manifestFile =
    if problems != [ ] then
      throw ("\n" + concatStringsSep "\n" problems)
    else
      import ./lib/manifest-file.nix { inherit lib pkgs; } {
        name = "nixseal-manifest-${host}.json";
        inherit manifest exe;
        check = cfg.settings.checkManifest;
      };

  sysusers = config.systemd.sysusers.enable or false;
  userborn = config.services.userborn.enable or false;
  # neededForUsers secrets: a unit before systemd-sysusers/userborn, else an
  # activation script before the `users` step.
  earlyUnit = sysusers || userborn;
  hostKeyDirs = lib.unique (map (k: dirOf k.path) cfg.settings.hostKeys);

  # A scope (the main generation, or --users) with nothing in it still runs
  # when an earlier configuration left a generation behind, so that removing
  # the last secret removes its plaintext from RAM: deploying an empty
  # generation also removes the one it replaced, once readers had their
  # grace (crates/nixseal/src/host/generation.rs, PRUNE_GRACE).
  deployCommand = args: "${exe} deploy --manifest ${manifestFile}${args}";

  # Options that would copy the flake's source (every host's secrets) into
  # this host's closure (./lib/closure-leaks.nix). The source is known by
  # its store path: the store root of the flake files this host names, of
  # `self` / `inputs.self` when the configuration gets them as module
  # arguments, and of nixseal.settings.flakeSource.
  discard = builtins.unsafeDiscardStringContext;
  location =
    v:
    if v == null then
      null
    else if builtins.isPath v then
      toString v
    else if builtins.isString v then
      discard v
    else if builtins.isAttrs v && v ? outPath then
      location v.outPath
    else
      null;
  argFlake = n: if builtins.isAttrs (args.${n} or null) then args.${n} else null;
  flakeHints = [
    cfg.settings.flakeSource
    cfg.settings.rekeyedDir
    (argFlake "self")
    ((if argFlake "inputs" != null then args.inputs else { }).self or null)
  ]
  ++ map (s: s.file) secrets
  ++ optional (builtins.isPath cfg.settings.hostPubkey) cfg.settings.hostPubkey;
  flakeRoots = lib.unique (
    filter (r: r != null) (
      map (
        v:
        let
          l = location v;
        in
        if l == null then null else paths.sourceRootOf l
      ) flakeHints
    )
  );
  closureLeaks = lib.optionals (cfg.settings.closureLeaks != "ignore") (
    map
      (
        f:
        "nixseal: host `${host}`: ${f.option} puts ${f.what} into the host's system closure, where every machine and binary cache holding the system can read it. Instead, ${f.fix}. (`nix run .#audit -- ${host}` lists what a built system holds; nixseal.settings.closureLeaks = \"ignore\" silences this.)"
      )
      (
        import ./lib/closure-leaks.nix { inherit lib; } {
          inherit config host;
          roots = flakeRoots;
          rekeyedDir = location cfg.settings.rekeyedDir;
          masterFiles = map (s: location s.file) secrets;
          inherit inFlake;
        }
      )
  );
in
{
  options.nixseal = {
    secrets = mkOption {
      type = types.attrsOf (types.submodule secretModule);
      default = { };
      example = literalExpression ''
        {
          db-password = {
            file = ./secrets/db-password.age;
            owner = "postgres";
            restartUnits = [ "postgresql.service" ];
          };
        }
      '';
      description = "Secrets to decrypt on this host, each into {option}`nixseal.settings.symlink`/<name> unless {option}`path` says otherwise.";
    };

    templates = mkOption {
      type = types.attrsOf (types.submodule templateModule);
      default = { };
      example = literalExpression ''
        {
          "app.env".content = "PASSWORD=''${config.nixseal.placeholder.db-password}\n";
        }
      '';
      description = "Files rendered at activation from text with secret placeholders.";
    };

    placeholder = shared.placeholder cfg.secrets;

    settings = {
      hostName = mkOption {
        type = hostNameType;
        default = config.networking.hostName;
        defaultText = literalExpression "config.networking.hostName";
        description = ''
          Name of this host in the fleet: its rekeyed files live in
          `<rekeyedDir>/<hostName>/` and the fleet profile keys it by this name.
          Must be unique across the flake's nodes.
        '';
      };
      hostPubkey = mkOption {
        type = types.nullOr (types.either types.str types.path);
        default = null;
        example = literalExpression "./hosts/web1/ssh_host_ed25519_key.pub";
        description = ''
          The host's SSH ed25519 public key, as the key line itself
          (`ssh-keyscan -t ed25519 HOST`, a trailing comment is ignored) or as
          the path of a `.pub` file in the flake. The rekeyed secrets are
          encrypted to it. A key that is not valid base64, not the encoding of
          an ed25519 key, or of small order (which anyone could decrypt) fails
          evaluation.
        '';
      };
      hostKeys = mkOption {
        type = types.listOf (
          types.submodule {
            options.path = mkOption {
              type = runtimePath;
              example = "/persist/etc/ssh/ssh_host_ed25519_key";
              description = "Private key file; the activation waits for the file system that holds it.";
            };
            options.type = mkOption {
              type = types.enum [ "ed25519" ];
              default = "ed25519";
              description = "Key type (only ed25519).";
            };
          }
        );
        # As sops-nix and agenix: openssh's keys exist only when it runs.
        default = lib.optionals (config.services.openssh.enable or false) (
          map (k: { inherit (k) path type; }) (
            filter (k: (k.type or "") == "ed25519") (config.services.openssh.hostKeys or [ ])
          )
        );
        defaultText = literalExpression ''lib.optionals config.services.openssh.enable (map (k: { inherit (k) path type; }) (lib.filter (k: k.type == "ed25519") config.services.openssh.hostKeys))'';
        description = "Private host keys tried, in order, to decrypt the rekeyed secrets. By default the ed25519 keys of services.openssh when it is enabled (NixOS generates them then), else none.";
      };
      rekeyedDir = shared.rekeyedDir "host";
      mountPoint = mkOption {
        type = runtimePath;
        default = "/run/nixseal.d";
        description = "Memory-backed file system (ramfs) holding the generations of decrypted secrets.";
      };
      symlink = mkOption {
        type = runtimePath;
        default = "/run/nixseal";
        description = "Stable symlink to the current generation; secrets appear as `<symlink>/<name>`.";
      };
      keepGenerations = shared.keepGenerations;
      stateDir = mkOption {
        type = runtimePath;
        default = "/var/lib/nixseal";
        example = "/persist/var/lib/nixseal";
        description = ''
          Root-only directory where `nixseal deploy` keeps the records that
          must survive a reboot: which custom paths (symlinks and copies) it
          placed, so it removes only its own when a secret leaves, and which
          unit restarts are still owed. No secret data. `nixseal-activate`
          waits for its file system (`RequiresMountsFor`). With
          `neededForUsers` secrets it must be on a file system the initrd
          mounts, since the early activation runs before local file systems
          are mounted (evaluation checks it; `/var/lib` is one NixOS mounts
          early).
        '';
      };
      closureLeaks = mkOption {
        type = types.enum [
          "warn"
          "error"
          "ignore"
        ];
        default = "warn";
        example = "error";
        description = ''
          What evaluation does when an option of this host copies the flake's
          source, or secret files of it, into the system closure:
          `nix.registry.<name>.flake` or `.to.path`, `nix.nixPath`,
          `environment.etc.<name>.source` or the context of its `text`,
          `nixpkgs.flake.source`, `system.extraDependencies` (e.g.
          `nix.registry.self.flake = self;`, which gives every host every
          master ciphertext and every other host's rekeyed files). `"warn"`
          names the option and what to use instead, `"error"` fails the
          evaluation (an assertion) with the same text, `"ignore"` says
          nothing. The check is cheap and sees only these options; `nix run
          .#audit -- HOST` and the `nixseal-closure-<host>` flake checks
          inspect the built system itself.
        '';
      };
      flakeSource = mkOption {
        type = types.nullOr types.path;
        default = null;
        example = literalExpression "self";
        description = ''
          The flake whose source must not enter this host's closure, for the
          {option}`closureLeaks` check. Only needed for a host without
          secrets whose configuration does not receive `self` (or `inputs`)
          as a module argument: otherwise the source is known from
          {option}`rekeyedDir`, the secrets' files and the `self` /
          `inputs.self` arguments. Compared without its string context, so
          setting it never adds the source to the closure.
        '';
      };
      checkManifest = mkOption {
        type = types.bool;
        default = true;
        example = false;
        description = ''
          Check the host manifest with `nixseal manifest check` when it is
          built, as sops-nix validates its manifest: a manifest that
          `nixseal deploy` would refuse (a system directory as a path, a
          name or path nixseal reserves, a path too long for the file
          system, …) fails the build instead of the activation. Owners and
          groups are still checked by deploy, on the host. Cross builds skip
          the check by themselves (the build machine cannot run the host's
          nixseal); turn it off only where {option}`package` is not a
          runnable nixseal.
        '';
      };
      package = mkOption {
        type = types.package;
        default =
          pkgs.nixseal
            or (throw "nixseal: pkgs has no `nixseal`; import nixseal.nixosModules.default (which sets nixseal.settings.package) or add nixseal.overlays.default to nixpkgs.overlays.");
        defaultText = literalExpression "pkgs.nixseal";
        description = "The nixseal package whose `nixseal deploy` activates the secrets.";
      };
    };

    build = {
      manifest = mkOption {
        type = types.package;
        readOnly = true;
        internal = true;
        description = "The host manifest (JSON, version 1) given to `nixseal deploy`.";
      };
      recipient = mkOption {
        type = types.nullOr types.str;
        readOnly = true;
        internal = true;
        description = "hostPubkey normalised to `ssh-ed25519 <base64>` (the rekey cache's recipient), or null when missing or not ssh-ed25519.";
      };
      problems = mkOption {
        type = types.listOf types.str;
        readOnly = true;
        internal = true;
        description = "Why this host's secrets cannot be deployed (missing or stale rekeys, bad key); empty when all is well.";
      };
    };
  };

  # Present whenever the module is imported: a host whose last secret was
  # removed must still get rid of the plaintext (see deployCommand).
  config = mkMerge [
    {
      nixseal.build.manifest = manifestFile;
      nixseal.build.problems = problems;
      nixseal.build.recipient = recipient;

      assertions = map (message: {
        assertion = false;
        inherit message;
      }) (problems ++ lib.optionals (cfg.settings.closureLeaks == "error") closureLeaks);
      warnings = warnings ++ lib.optionals (cfg.settings.closureLeaks == "warn") closureLeaks;

      systemd.services.nixseal-activate = {
        description = "Decrypt nixseal secrets into ${cfg.settings.symlink}";
        wantedBy = [ "sysinit.target" ];
        before = [ "sysinit.target" ];
        # User creation: systemd-sysusers or userborn when enabled (ordering
        # against units that do not exist is a no-op), else the activation
        # script, which runs before systemd starts.
        after = [
          "local-fs.target"
          "systemd-sysusers.service"
          "userborn.service"
        ]
        ++ optional earlyUnit "nixseal-activate-users.service";
        restartTriggers = [ manifestFile ];
        # Restart (not stop, activate, start): the old generation stays in
        # place while the new one is made.
        stopIfChanged = false;
        unitConfig = {
          DefaultDependencies = false;
          # The host keys and the records (stateDir).
          RequiresMountsFor = hostKeyDirs ++ [ cfg.settings.stateDir ];
        }
        # Nothing to install: run only to remove what an earlier
        # configuration installed.
        // lib.optionalAttrs (mainItems == [ ]) { ConditionPathIsSymbolicLink = cfg.settings.symlink; };
        serviceConfig = {
          Type = "oneshot";
          RemainAfterExit = true;
          ExecStart = [ (deployCommand "") ];
        };
      };
    }

    # neededForUsers: decrypt before users are created, so hashedPasswordFile
    # can name a secret: a unit before systemd-sysusers/userborn, or an
    # activation snippet before the `users` one. Without such secrets the
    # unit stays, to remove what an earlier configuration installed (it runs
    # when it changes, not at every switch as a snippet would).
    (mkIf (earlyUnit || !usersEarly) {
      systemd.services.nixseal-activate-users = {
        description =
          if usersEarly then "Decrypt nixseal secrets needed to create users" else "Remove nixseal's secrets for user creation";
        wantedBy = if earlyUnit then optional sysusers "systemd-sysusers.service" ++ optional userborn "userborn.service" else [ "sysinit.target" ];
        before = if earlyUnit then optional sysusers "systemd-sysusers.service" ++ optional userborn "userborn.service" else [ "sysinit.target" ];
        # No local-fs.target and no RequiresMountsFor here: systemd-sysusers
        # runs before local-fs-pre.target, so waiting for file systems would
        # be an ordering cycle. The host key and stateDir must be on / or on
        # a file system mounted in the initrd (neededForBoot): evaluation
        # checks it (earlyKeyProblems).
        after = [ "systemd-remount-fs.service" ];
        restartTriggers = [ manifestFile ];
        stopIfChanged = false;
        unitConfig = {
          DefaultDependencies = false;
        }
        // lib.optionalAttrs (!usersEarly) { ConditionPathIsSymbolicLink = usersSymlink; };
        serviceConfig = {
          Type = "oneshot";
          RemainAfterExit = true;
          ExecStart = [ (deployCommand " --users") ];
        };
      };
    })
    (mkIf (usersEarly && !earlyUnit) {
      system.activationScripts.nixsealForUsers = {
        deps = [ "specialfs" ];
        text = deployCommand " --users --no-restart" + "\n";
      };
      system.activationScripts.users.deps = [ "nixsealForUsers" ];
    })
  ];
}
