# The operator side of the flake, shared by the flake-parts module
# (./default.nix) and the plain function `nixseal.lib.mkFleet` / `mkApps`.
#
# From the fleet's NixOS configurations and home-manager configurations (the
# home-manager users inside the nodes, and standalone homes) it makes the
# fleet profile (version 1;
# keep in sync with the serde type nixseal::profile::RawProfile in
# crates/nixseal/src/contract/profile.rs), the apps `renc`, `check`, `edit`, `status`,
# `deploy` and `audit` (each can be renamed or left out), one deploy script
# per host (`legacyPackages.<system>.nixseal-deploy.<host>`, which the
# `deploy` app runs), each host's system (`legacyPackages.<system>.
# nixseal-system.<host>`, which the `audit` app builds), the flake check
# `nixseal-rekeyed` and, when asked for, one check per host that audits its
# built system's closure (`nixseal-closure-<host>`).
{
  # The consumer's flake (`self`): its source is where all profile paths
  # point into.
  self,
  # The consumer's nixpkgs for the app scripts and the nixseal package.
  pkgs,
  package,
  nodes ? self.nixosConfigurations or { },
  # Standalone home-manager configurations (homeManagerConfiguration
  # results); the home-manager users inside `nodes` are found there.
  homes ? self.homeConfigurations or { },
  identities ? [ ],
  # The public half of identities, by identity as written in `identities`:
  # { "./keys/master.age" = "age1..."; } (a string or a list of strings).
  identityRecipients ? { },
  extraRecipients ? [ ],
  rekeyedDir ? null,
  # App names: { renc = "renc"; ... }; null leaves an app out.
  apps ? { },
  # The directory of the flake's flake.nix (`./.` in flake.nix); found by
  # itself when null.
  root ? null,
  # Per-host closure checks: false, true (every node) or a list of host names.
  closureChecks ? false,
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
    ;
  paths = import ../modules/lib/paths.nix { inherit lib; };
  nixsealTypes = import ../modules/lib/types.nix { inherit lib; };
  str = p: builtins.unsafeDiscardStringContext (toString p);
  system = pkgs.stdenv.hostPlatform.system or pkgs.system;

  appNames = {
    renc = "renc";
    check = "check";
    edit = "edit";
    status = "status";
    deploy = "deploy";
    audit = "audit";
    rekey-masters = "rekey-masters";
  }
  // apps;
  unknownApps = attrNames (removeAttrs apps (attrNames appNames'));
  appNames' = {
    renc = null;
    check = null;
    edit = null;
    status = null;
    deploy = null;
    audit = null;
    rekey-masters = null;
  };

  # colmena's `makeHive` output: its nodes are evalConfig results.
  nodes' =
    if nodes ? __schema && nodes ? nodes then
      throw "nixseal: nodes is a colmena hive (colmenaHive); give its nodes: `nixseal.nodes = self.colmenaHive.nodes;`."
    else
      nodes;

  # Only nodes that use nixseal count.
  users = filterAttrs (
    _: node:
    let
      c = node.config.nixseal or { };
    in
    (c.secrets or { }) != { } || (c.templates or { }) != { }
  ) nodes';

  hostOf = node: node.config.nixseal.settings.hostName;
  byHost = lib.groupBy (n: hostOf users.${n}) (attrNames users);
  duplicateHosts = filterAttrs (_: ns: builtins.length ns > 1) byHost;
  hosts =
    if duplicateHosts != { } then
      throw "nixseal: several nodes share a host name, but each host needs its own rekeyed directory: ${
        concatStringsSep "; " (mapAttrsToList (h: ns: "${h} is used by ${concatStringsSep ", " ns}") duplicateHosts)
      }. ${
        lib.optionalString (duplicateHosts ? nixos) "\"nixos\" is NixOS' default networking.hostName: nodes that leave it unset all get it (colmena and deploy-rs do not set it from the node name). "
      }Set networking.hostName in each node (or nixseal.settings.hostName) to distinct names."
    else
      mapAttrs' (_: node: nameValuePair (hostOf node) node) users;

  # Homes: each home-manager configuration that declares nixseal secrets or
  # templates is a rekey target like a host, under the target name of the
  # contract (docs/design.md): `<hostName>.<user>` for a home-manager user of
  # a node (the module's nixseal.settings.targetName default), a standalone
  # homeConfigurations."alice@laptop" as `laptop.alice` (the attribute name
  # host first; the name itself without an `@`), unless the home sets
  # nixseal.settings.targetName.
  usesNixseal = c: (c.secrets or { }) != { } || (c.templates or { }) != { };
  nodeHomes = lib.concatLists (
    mapAttrsToList (
      n: node:
      mapAttrsToList (u: hc: {
        cfg = hc;
        target = hc.nixseal.settings.targetName;
        origin = "the home-manager user ${u} of node ${n}";
        # The node's host target, whose system carries this home's files
        # (profile field "host"; `nixseal audit` counts them as its own).
        # Only when the node is a target itself (it has secrets of its own).
        host = if hosts ? ${hostOf node} then hostOf node else null;
      }) (filterAttrs (_: hc: usesNixseal (hc.nixseal or { })) (node.config.home-manager.users or { }))
    ) nodes'
  );
  standaloneTarget = a: concatStringsSep "." (lib.reverseList (lib.splitString "@" a));
  standaloneHomes = mapAttrsToList (
    a: h:
    let
      set = h.config.nixseal.settings.targetName;
      derived = standaloneTarget a;
    in
    {
      cfg = h.config;
      target =
        if set != null then
          set
        else if nixsealTypes.targetNameType.check derived then
          derived
        else
          throw "nixseal: homeConfigurations.\"${a}\" would be the rekey target `${derived}` (its name, host first), which is not a valid name (${nixsealTypes.targetNameType.description}); set nixseal.settings.targetName in it.";
      origin = "homeConfigurations.\"${a}\"";
      host = null;
    }
  ) (filterAttrs (_: h: usesNixseal (h.config.nixseal or { })) homes);
  homeList = nodeHomes ++ standaloneHomes;

  # One name, one rekeyed directory: hosts and homes share the namespace.
  targetList =
    mapAttrsToList (h: _: {
      target = h;
      origin = "the NixOS node ${builtins.head byHost.${h}}";
    }) hosts
    ++ homeList;
  clashes = filterAttrs (_: ts: builtins.length ts > 1) (lib.groupBy (t: t.target) targetList);
  homesByTarget =
    if clashes != { } then
      throw "nixseal: several rekey targets share a name, but each needs its own rekeyed directory: ${
        concatStringsSep "; " (mapAttrsToList (t: ts: "${t} is ${concatStringsSep " and " (map (x: x.origin) ts)}") clashes)
      }. Give them distinct names: nixseal.settings.targetName in a home, nixseal.settings.hostName (or networking.hostName) in a NixOS host."
    else
      lib.listToAttrs (map (h: nameValuePair h.target h) homeList);

  # The flake's directory in its store copy. Nix 2.14 and later make
  # `self.outPath` that directory; older Nix give the repository root for a
  # flake in a subdirectory (`infra/flake.nix`), so there it is the nearest
  # directory holding a flake.nix above the rekeyed directory.
  sourceRoot = str (self.sourceInfo.outPath or self.outPath or self);
  selfPath = str (self.outPath or self);
  anchors =
    lib.optional (builtins.isPath rekeyedDir) rekeyedDir
    ++ lib.filter (d: d != null) (
      mapAttrsToList (_: node: node.config.nixseal.settings.rekeyedDir) hosts
      ++ map (h: h.cfg.nixseal.settings.rekeyedDir) homeList
    );
  flakeRoot =
    if root != null then
      str root
    else if selfPath != sourceRoot || anchors == [ ] then
      selfPath
    else
      let
        d = paths.flakeDirOf (builtins.head anchors);
      in
      if d != null && (d == selfPath || hasPrefix "${selfPath}/" d) then d else selfPath;
  # "infra" for infra/flake.nix; "" at the root of the repository.
  subdir = if flakeRoot == sourceRoot then "" else lib.removePrefix "${sourceRoot}/" flakeRoot;

  # A Nix path value (or path string) inside the flake -> "./relative/path".
  relative =
    what: p:
    let
      r = paths.relativeTo flakeRoot (str p);
    in
    if r == "." then
      "."
    else if r != null then
      "./${r}"
    else
      throw "nixseal: ${what} is ${str p}, which is outside this flake (${flakeRoot}). nixseal's apps work on files inside the flake, relative to the directory of its flake.nix: move the file into the flake, or give it as a path relative to flake.nix (e.g. ./secrets/db.age).";

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

  nodeRekeyedDirs = lib.unique (
    lib.filter (d: d != null) (
      mapAttrsToList (_: node: node.config.nixseal.settings.rekeyedDir) hosts
      ++ map (h: h.cfg.nixseal.settings.rekeyedDir) homeList
    )
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
      throw "nixseal: the rekeyed directory differs between the fleet (${chosen}) and some nodes' or homes' nixseal.settings.rekeyedDir (${concatStringsSep ", " disagree}); use one directory for the whole flake."
    else
      chosen;

  # A host whose key is missing or unusable stays in the profile with
  # hostPubkey "" so that renc and check report it (its evaluation says why)
  # and still serve every other host.
  targetEntry = kind: name: c: {
    hostPubkey = if c.build.recipient == null then "" else c.build.recipient;
    secrets = mapAttrs' (
      _: s:
      nameValuePair s.name (
        { file = relative "the file of secret ${s.name} of ${kind} ${name}" s.file; }
        # The generator's store path: the profile (and so the renc app)
        # depends on it, so `nix run .#renc` builds it first.
        // lib.optionalAttrs (s.generator != null) { generator = "${s.generator}"; }
      )
    ) c.secrets;
  }
  // { inherit kind; };
  # The profile's per-target field "kind" ("host" | "home", for messages) and,
  # for a home of a NixOS node, "host" (docs/design.md;
  # nixseal::profile::RawHost).
  hostEntry = host: node: targetEntry "host" host node.config.nixseal;
  homeEntry = t: h: targetEntry "home" t h.cfg.nixseal // lib.optionalAttrs (h.host != null) { inherit (h) host; };

  # Two hosts with one key can read each other's secrets.
  sharedKeys = filterAttrs (_: hs: builtins.length hs > 1) (
    lib.groupBy (h: hosts.${h}.config.nixseal.build.recipient) (
      lib.filter (h: hosts.${h}.config.nixseal.build.recipient != null) (attrNames hosts)
    )
  );
  # So can a home and a host, or the homes of different users, with one key
  # (one user's homes on several machines often share the user's key).
  keyHolders =
    mapAttrsToList (h: node: {
      name = h;
      key = node.config.nixseal.build.recipient;
      who = "host ${h}";
    }) hosts
    ++ mapAttrsToList (t: h: {
      name = t;
      key = h.cfg.nixseal.build.recipient;
      who = "user ${h.cfg.home.username}";
    }) homesByTarget;
  sharedTargetKeys = lib.filter (ts: lib.length (lib.unique (map (t: t.who) ts)) > 1 && !lib.all (t: hosts ? ${t.name}) ts) (
    lib.attrValues (lib.groupBy (t: t.key) (lib.filter (t: t.key != null) keyHolders))
  );
  keyWarnings =
    mapAttrsToList (
      _: hs:
      "nixseal: hosts ${concatStringsSep ", " hs} have the same nixseal.settings.hostPubkey, so each can decrypt the other's secrets; give each host its own SSH host key (a copied disk image shares it: regenerate it with ssh-keygen -A after removing /etc/ssh/ssh_host_*)."
    ) sharedKeys
    ++ map (
      ts:
      "nixseal: the rekey targets ${concatStringsSep ", " (map (t: "${t.name} (${t.who})") ts)} have the same public key (nixseal.settings.hostPubkey or userPubkey), so each can decrypt the other's secrets; give each its own key (for a user: `ssh-keygen -t ed25519 -N '' -f ~/.ssh/nixseal_ed25519`, then set nixseal.settings.userKeys and userPubkey)."
    ) sharedTargetKeys;

  # Keep in sync with nixseal::profile::RawProfile (crates/nixseal/src/contract/profile.rs, version 1).
  profile = lib.foldr lib.warn ({
    version = 1;
    identities = map identity identities;
    inherit extraRecipients;
    rekeyedDir = rekeyedDirRel;
    hosts = mapAttrs hostEntry hosts // mapAttrs homeEntry homesByTarget;
  }
  // lib.optionalAttrs (identityRecipients != { }) {
    identityRecipients = mapAttrs' (
      i: r: nameValuePair (identity i) (if builtins.isList r then r else [ r ])
    ) identityRecipients;
  }) keyWarnings;
  profileFile = pkgs.writeText "nixseal-profile.json" (builtins.toJSON profile);

  rekeyedParent = dirOf rekeyedDirRel;
  flakeNixHash = builtins.hashFile "sha256" "${flakeRoot}/flake.nix";

  # The operator apps read and write files of the working tree, so they must
  # start in the directory of this flake's flake.nix: the one whose content
  # this evaluation saw.
  atFlakeRoot = ''
    if [ ! -f flake.nix ] || [ "$(sha256sum flake.nix | cut -d' ' -f1)" != ${flakeNixHash} ] || [ ! -d ${lib.escapeShellArg rekeyedParent} ]; then
      where="the directory with this flake's flake.nix and ${rekeyedParent}/"
      if top=$(git rev-parse --show-toplevel 2>/dev/null); then
        where="$where: cd $top"${lib.optionalString (subdir != "") (lib.escapeShellArg "/${subdir}")}
      fi
      echo "nixseal: run this from the root of your flake ($where); the current directory is $PWD." >&2
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

  # The text of a deploy script that cannot deploy: it prints why.
  printProblems = problems: ''
    cat >&2 <<'EOF'
    ${concatStringsSep "\n" problems}
    EOF
    exit 1
  '';

  # One deploy script per host, as `legacyPackages.<system>.nixseal-deploy.<host>`.
  # Each holds only its host's manifest and rekeyed files, and evaluating it
  # evaluates only that host. A host whose rekeys are missing or stale gets a
  # script that prints why instead. (writeShellApplication runs shellcheck
  # on each.)
  deployScripts = mapAttrs (
    host: node:
    let
      problems = node.config.nixseal.build.problems;
      usersEarly = lib.any (s: s.neededForUsers) (builtins.attrValues node.config.nixseal.secrets);
      manifest = node.config.nixseal.build.manifest;
    in
    pkgs.writeShellApplication {
      name = "nixseal-deploy-${host}";
      runtimeInputs = [ package ];
      text =
        if problems != [ ] then
          printProblems problems
        else
          # As at boot: the neededForUsers secrets first, then the others.
          lib.optionalString usersEarly ''
            nixseal deploy --manifest ${manifest} --users "$@"
          ''
          + ''
            exec nixseal deploy --manifest ${manifest} "$@"
          '';
    }
  ) hosts
  # One per home too (`nix run .#deploy -- laptop.bob`, run by that user):
  # `nixseal deploy --user-session` of the home's manifest, as its user unit
  # runs it.
  // mapAttrs (
    target: h:
    let
      problems = h.cfg.nixseal.build.problems;
    in
    pkgs.writeShellApplication {
      name = "nixseal-deploy-${target}";
      runtimeInputs = [ package ];
      text =
        if problems != [ ] then
          printProblems problems
        else
          ''
            exec nixseal deploy --manifest ${h.cfg.nixseal.build.manifest} --user-session "$@"
          '';
    }
  ) homesByTarget;

  # `deploy HOST`: evaluates and runs that host's deploy script from the
  # flake source this app was evaluated from (a store path, referenced
  # without pulling it, or any host's files, into the app's closure).
  hostList = concatStringsSep " " (attrNames hosts);
  homeNames = concatStringsSep " " (attrNames homesByTarget);
  homesNote = lib.optionalString (homesByTarget != { }) "; homes (run as the user): ${homeNames}";
  # For a flake in a subdirectory that directory alone (`path:` takes no
  # `?dir=` in Nix 2.8): `nix run .#nixseal-deploy.<host>` is the way for
  # such a flake whose hosts use files outside its directory.
  flakeRef = "path:${flakeRoot}";
  deployAttr = "legacyPackages.${system}.nixseal-deploy";
  deployApp = app "deploy" (
    ''
      if [ $# -lt 1 ] || [ "''${1#-}" != "$1" ]; then
        echo "usage: nix run .#${appNames.deploy} -- HOST [--dry-run] [nixseal deploy options]" >&2
        echo "hosts: ${hostList}${homesNote}" >&2
        exit 2
      fi
      host=$1
      shift
      hosts=${lib.escapeShellArg " ${hostList} ${homeNames} "}
      case "$hosts" in
        *" $host "*) ;;
        *)
          echo "nixseal: no host named '$host' in this flake uses nixseal; hosts: ${hostList}${homesNote}" >&2
          exit 2 ;;
      esac
      if ! command -v nix >/dev/null; then
        echo "nixseal: deploy needs the nix command to build host $host's deploy script" >&2
        exit 2
      fi
      rc=0
      nix --extra-experimental-features 'nix-command flakes' run ${lib.escapeShellArg flakeRef}"#${deployAttr}.\"$host\"" -- "$@" || rc=$?
      if [ "$rc" -ne 0 ] && ! nix --extra-experimental-features 'nix-command flakes' eval --raw ${lib.escapeShellArg flakeRef}"#${deployAttr}.\"$host\".name" >/dev/null 2>&1; then
        echo "nixseal: could not evaluate ${deployAttr}.\"$host\" of this flake (see above). With nixseal.lib.mkFleet, export it: legacyPackages.${system} = fleet.legacyPackages;" >&2
      fi
      exit "$rc"
    ''
  );

  # Every node, also those without secrets (a host with none can still
  # carry the flake's source, and so every other host's secrets), keyed by
  # host name as the profile keys them.
  systemNodes = mapAttrs (
    h: ns:
    if builtins.length ns > 1 then
      throw "nixseal: several nodes have the host name ${h} (${concatStringsSep ", " ns}); set networking.hostName (or nixseal.settings.hostName) in each to a name of its own."
    else
      nodes'.${builtins.head ns}
  ) (lib.groupBy (n: nodes'.${n}.config.nixseal.settings.hostName or nodes'.${n}.config.networking.hostName) (attrNames nodes'));
  systemHostList = concatStringsSep " " (attrNames systemNodes);
  toplevelOf = node: node.config.system.build.toplevel;
  systemAttr = "legacyPackages.${system}.nixseal-system";
  # The system a node is built for; nodes for other systems get their
  # closure check under checks.<their system>.
  nodeSystem = node: node.pkgs.stdenv.hostPlatform.system or node.config.nixpkgs.hostPlatform.system or system;

  # The flake's root in the store, with its context: the audit inside a
  # check reads the flake's files (and the source it must not find) there.
  rootInStore = "${self.sourceInfo.outPath or self.outPath or self}" + lib.optionalString (subdir != "") "/${subdir}";

  # `nixseal audit` of a host's built system in a build (no nix-store, no
  # git): the closure comes from closureInfo, as nixpkgs makes it
  # (exportReferencesGraph), and any leak fails the check.
  closureCheck =
    host: node:
    let
      toplevel = toplevelOf node;
    in
    pkgs.runCommand "nixseal-closure-${host}"
      {
        nativeBuildInputs = [ package ];
        closureInfo = pkgs.closureInfo { rootPaths = [ toplevel ]; };
        inherit toplevel;
        root = rootInStore;
        profile = profileFile;
        host = host;
      }
      ''
        nixseal audit --profile "$profile" --root "$root" --host "$host" --closure-info "$closureInfo" "$toplevel"
        echo "nixseal: no store path in $host's closure carries another host's secrets or the flake's source" >$out
      '';
  closureCheckHosts =
    if closureChecks == true then
      attrNames systemNodes
    else if closureChecks == false then
      [ ]
    else
      closureChecks;
  unknownCheckHosts = lib.filter (h: !(systemNodes ? ${h})) closureCheckHosts;
  closureChecksAttrs =
    if unknownCheckHosts != [ ] then
      throw "nixseal: closureChecks names ${concatStringsSep ", " unknownCheckHosts}, which is not a host of this flake's nodes (${systemHostList})."
    else
      lib.listToAttrs (
        map (h: nameValuePair "nixseal-closure-${h}" (closureCheck h systemNodes.${h})) (
          lib.filter (h: nodeSystem systemNodes.${h} == system) closureCheckHosts
        )
      );

  # `audit HOST [SYSTEM]`: builds the host's system from this flake (as
  # `nixos-rebuild build` does) unless SYSTEM is given, and audits its
  # closure against the working tree.
  auditApp = app "audit" ''
    ${atFlakeRoot}
    if [ $# -lt 1 ] || [ "''${1#-}" != "$1" ]; then
      echo "usage: nix run .#${appNames.audit} -- HOST [SYSTEM] [nixseal audit options, e.g. --json]" >&2
      echo "  SYSTEM: a built system (./result, /run/current-system); by default HOST's system is built" >&2
      echo "hosts: ${systemHostList}" >&2
      exit 2
    fi
    host=$1
    shift
    hosts=${lib.escapeShellArg " ${systemHostList} "}
    case "$hosts" in
      *" $host "*) ;;
      *)
        echo "nixseal: no host named '$host' in this flake; hosts: ${systemHostList}" >&2
        exit 2 ;;
    esac
    if [ $# -gt 0 ] && [ "''${1#-}" = "$1" ]; then
      sys=$1
      shift
    else
      if ! command -v nix >/dev/null; then
        echo "nixseal: audit needs the nix command to build host $host's system (or give the SYSTEM to audit)" >&2
        exit 2
      fi
      tmp=$(mktemp -d)
      trap 'rm -rf "$tmp"' EXIT
      echo "nixseal: building host $host's system (.#${systemAttr}.\"$host\")" >&2
      if ! nix --extra-experimental-features 'nix-command flakes' build ".#${systemAttr}.\"$host\"" -o "$tmp/system"; then
        if ! nix --extra-experimental-features 'nix-command flakes' eval --raw ".#${systemAttr}.\"$host\".name" >/dev/null 2>&1; then
          echo "nixseal: could not evaluate ${systemAttr}.\"$host\" of this flake (see above). With nixseal.lib.mkFleet, export it: legacyPackages.${system} = fleet.legacyPackages;" >&2
        fi
        exit 1
      fi
      sys=$tmp/system
    fi
    rc=0
    nixseal audit --profile ${profileFile} --host "$host" "$@" "$sys" || rc=$?
    exit "$rc"
  '';

  allApps = {
    renc = profileApp "renc";
    check = profileApp "check";
    edit = profileApp "edit";
    # `-- --manifest HOST=PATH...`: which hosts run stale ciphertexts.
    status = profileApp "status";
    deploy = deployApp;
    audit = auditApp;
    # Master-key rotation (`updatekeys`): `-- --dry-run` lists what changes.
    rekey-masters = profileApp "rekey-masters";
  };
  problemsOf = node: node.config.nixseal.build.problems;
in
if unknownApps != [ ] then
  throw "nixseal: apps.${builtins.head unknownApps} is not one of nixseal's apps (renc, check, edit, status, deploy, audit, rekey-masters)."
else
  {
    inherit profile profileFile;

    apps = lib.listToAttrs (
      lib.concatMap (a: lib.optional (appNames.${a} != null) (nameValuePair appNames.${a} allApps.${a})) (
        attrNames allApps
      )
    );

    legacyPackages.nixseal-deploy = deployScripts;
    legacyPackages.nixseal-system = mapAttrs (_: toplevelOf) systemNodes;

    checks = {
      nixseal-rekeyed = pkgs.runCommand "nixseal-rekeyed"
        {
          problems = concatStringsSep "\n" (
            lib.concatMap problemsOf (builtins.attrValues hosts)
            ++ lib.concatMap (h: h.cfg.nixseal.build.problems) (builtins.attrValues homesByTarget)
          );
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
    // closureChecksAttrs;
  }
