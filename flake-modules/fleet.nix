# The operator side of the flake, shared by the flake-parts module
# (./default.nix) and the plain function `nixseal.lib.mkFleet` / `mkApps`.
#
# From the fleet's NixOS configurations it makes the fleet profile (version 1;
# keep in sync with the FleetProfile serde types in crates/nixseal) and the apps
# `renc`, `check`, `edit`, `status`, `deploy` plus the flake check
# `nixseal-rekeyed`.
{
  # The consumer's flake (`self`): its source is the flake root that all
  # profile paths are relative to.
  self,
  # The consumer's nixpkgs for the app scripts and the nixseal package.
  pkgs,
  package,
  nodes ? self.nixosConfigurations or { },
  identities ? [ ],
  extraRecipients ? [ ],
  rekeyedDir ? null,
}:
let
  inherit (pkgs) lib;
  inherit (lib)
    attrNames
    concatStringsSep
    filterAttrs
    hasPrefix
    mapAttrs
    mapAttrs'
    mapAttrsToList
    nameValuePair
    removePrefix
    ;

  # The store path of the flake source, as a plain string: the profile must not
  # depend on (copy or reference) the flake source.
  root = builtins.unsafeDiscardStringContext (toString (self.outPath or self));

  # A Nix path value (or path string) inside the flake -> "./relative/path".
  relative =
    what: p:
    let
      s = builtins.unsafeDiscardStringContext (toString p);
    in
    if s == root then
      "."
    else if hasPrefix "${root}/" s then
      "./${removePrefix "${root}/" s}"
    else
      throw "nixseal: ${what} is ${s}, which is outside this flake (${root}). nixseal's apps work on files inside the flake, relative to its root: move the file into the flake, or give it as a path relative to flake.nix (e.g. ./secrets/db.age).";

  # Identities stay where they are on the operator's machine: strings relative
  # to the flake root (or absolute), never Nix paths (a path would point into
  # the store copy of the flake, which holds only git-tracked files, and could
  # copy a private key into the world-readable store).
  identity =
    i:
    if builtins.isPath i then
      throw "nixseal: identity ${toString i} is a Nix path; give it as a string relative to the flake root, e.g. \"./keys/master.age\", so the private key is never copied into the Nix store."
    else if hasPrefix "${builtins.storeDir}/" i then
      throw "nixseal: identity ${i} is in the Nix store, which every user can read; keep master identities outside the store and give their path as a string relative to the flake root."
    else if hasPrefix "/" i || hasPrefix "./" i || hasPrefix "../" i then
      i
    else
      "./${i}";

  # Only nodes that use nixseal count.
  users = filterAttrs (
    _: node:
    let
      c = node.config.nixseal or { };
    in
    (c.secrets or { }) != { } || (c.templates or { }) != { }
  ) nodes;

  hostOf = node: node.config.nixseal.settings.hostName;
  byHost = lib.groupBy (n: hostOf users.${n}) (attrNames users);
  duplicateHosts = filterAttrs (_: ns: builtins.length ns > 1) byHost;
  hosts =
    if duplicateHosts != { } then
      throw "nixseal: several nodes share a host name, but each host needs its own rekeyed directory: ${
        concatStringsSep "; " (mapAttrsToList (h: ns: "${h} is used by ${concatStringsSep ", " ns}") duplicateHosts)
      }. Set nixseal.settings.hostName (default: networking.hostName) to distinct names."
    else
      mapAttrs' (_: node: nameValuePair (hostOf node) node) users;

  nodeRekeyedDirs = lib.unique (
    lib.filter (d: d != null) (mapAttrsToList (_: node: node.config.nixseal.settings.rekeyedDir) hosts)
  );
  rekeyedDirRel =
    let
      fromNodes = map (relative "nixseal.settings.rekeyedDir") nodeRekeyedDirs;
      chosen =
        if rekeyedDir != null then
          relative "nixseal.rekeyedDir" rekeyedDir
        else if fromNodes != [ ] then
          builtins.head fromNodes
        else
          "./secrets/rekeyed";
      disagree = lib.filter (d: d != chosen) fromNodes;
    in
    if disagree != [ ] then
      throw "nixseal: the rekeyed directory differs between the fleet (${chosen}) and some nodes' nixseal.settings.rekeyedDir (${concatStringsSep ", " disagree}); use one directory for the whole flake."
    else
      chosen;

  hostEntry =
    host: node:
    let
      build = node.config.nixseal.build;
      keyProblems = lib.filter (p: lib.hasInfix "hostPubkey" p) build.problems;
    in
    if build.recipient == null then
      throw ("\n" + concatStringsSep "\n" keyProblems)
    else
      {
        hostPubkey = build.recipient;
        secrets = mapAttrs' (
          _: s:
          nameValuePair s.name (
            { file = relative "the file of secret ${s.name} of host ${host}" s.file; }
            # The generator's store path: the profile (and so the renc app)
            # depends on it, so `nix run .#renc` builds it first.
            // lib.optionalAttrs (s.generator != null) { generator = "${s.generator}"; }
          )
        ) node.config.nixseal.secrets;
      };

  # Keep in sync with the FleetProfile type in crates/nixseal (version 1).
  profile = {
    version = 1;
    identities = map identity identities;
    inherit extraRecipients;
    rekeyedDir = rekeyedDirRel;
    hosts = mapAttrs hostEntry hosts;
  };
  profileFile = pkgs.writeText "nixseal-profile.json" (builtins.toJSON profile);

  rekeyedParent = dirOf rekeyedDirRel;

  # The operator apps read and write files of the working tree, so they must
  # start in the flake root.
  atFlakeRoot = ''
    if [ ! -f flake.nix ] || [ ! -d ${lib.escapeShellArg rekeyedParent} ]; then
      echo "nixseal: run this from the root of your flake (the directory with flake.nix and ${rekeyedParent}/); the current directory is $PWD." >&2
      exit 2
    fi
  '';

  app = name: text: {
    type = "app";
    program = "${
      pkgs.writeShellApplication {
        name = "nixseal-${name}";
        runtimeInputs = [ package ];
        inherit text;
      }
    }/bin/nixseal-${name}";
    meta.description = "nixseal ${name} for this flake's fleet";
  };

  # The operator subcommands: run at the flake root with the fleet profile.
  profileApp =
    sub:
    app sub ''
      ${atFlakeRoot}
      exec nixseal ${sub} --profile ${profileFile} "$@"
    '';

  problemsOf = node: node.config.nixseal.build.problems;

  # `deploy HOST`: one case branch per host. A host whose rekeys are missing or
  # stale gets a file with its fix-it messages instead of a manifest, so one
  # stale host does not break deploying the others. (The script must pass
  # shellcheck: writeShellApplication checks it at build time.)
  deployBranch =
    host: node:
    let
      problems = problemsOf node;
      users = lib.any (s: s.neededForUsers) (builtins.attrValues node.config.nixseal.secrets);
    in
    if problems == [ ] then
      ''
        ${lib.escapeShellArg host}) manifest=${node.config.nixseal.build.manifest} users=${if users then "1" else "0"} ;;
      ''
    else
      ''
        ${lib.escapeShellArg host}) problems=${pkgs.writeText "nixseal-${host}-problems" (concatStringsSep "\n" problems + "\n")} ;;
      '';

  hostList = concatStringsSep " " (attrNames hosts);
in
{
  inherit profile profileFile;

  apps = {
    renc = profileApp "renc";
    check = profileApp "check";
    edit = profileApp "edit";
    # `-- --manifest HOST=PATH...`: which hosts run stale ciphertexts.
    status = profileApp "status";
    deploy = app "deploy" (
      ''
        if [ $# -lt 1 ] || [ "''${1#-}" != "$1" ]; then
          echo "usage: nix run .#deploy -- HOST [--dry-run] [nixseal deploy options]" >&2
          echo "hosts: ${hostList}" >&2
          exit 2
        fi
      ''
      + (
        if hosts == { } then
          ''
            echo "nixseal: no host in this flake uses nixseal" >&2
            exit 2
          ''
        else
          ''
            host=$1
            shift
            manifest=""
            users=0
            problems=""
            case "$host" in
            ${concatStringsSep "" (mapAttrsToList deployBranch hosts)}
              *)
                echo "nixseal: no host named '$host' in this flake uses nixseal; hosts: ${hostList}" >&2
                exit 2 ;;
            esac
            if [ -n "$problems" ]; then
              cat "$problems" >&2
              exit 1
            fi
            # As at boot: the neededForUsers secrets first, then the others.
            if [ "$users" = 1 ]; then
              nixseal deploy --manifest "$manifest" --users "$@"
            fi
            exec nixseal deploy --manifest "$manifest" "$@"
          ''
      )
    );
  };

  checks.nixseal-rekeyed =
    pkgs.runCommand "nixseal-rekeyed"
      {
        problems = concatStringsSep "\n" (lib.concatMap problemsOf (builtins.attrValues hosts));
        profile = profileFile;
      }
      ''
        if [ -n "$problems" ]; then
          printf '%s\n' "$problems" >&2
          exit 1
        fi
        echo "all rekeyed secrets are current" >$out
      '';
}
