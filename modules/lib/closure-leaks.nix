# Options of a NixOS configuration (nix.registry, nix.nixPath,
# environment.etc, nixpkgs.flake.source, system.extraDependencies) that copy
# the flake's source, or secret files of it, into the host's system closure
# (issue 12: the closure guarantee). Read cheaply at evaluation: nothing here is built, nothing is
# copied into the store, and no string produced here carries the context of
# what it inspects (everything shown goes through unsafeDiscardStringContext),
# so the check itself adds nothing to the closure. `nixseal audit` (and the
# flake check nixseal-closure-<host>) is the complete check on the built
# system; this one names the option while it is being written.
#
# What carries the source:
# - a string whose context holds the flake's source store path (`"${self}"`,
#   `"${self}/etc/x"`, `self.outPath`, a flake input `self`): the whole
#   source enters the closure;
# - a Nix path value (copied on use, only that file or directory) that holds
#   the flake's root, the rekeyed directory, another host's rekeyed files or
#   one of this host's master ciphertexts (`./.`, `./secrets`,
#   `./secrets/rekeyed/web2/db.age`).
# Derivations are not inspected (what they copy is seen by audit only).
{ lib }:
{
  # The configuration (config) and what the module knows of the flake.
  config,
  host,
  # Store paths of the flake's source ("/nix/store/<hash>-source").
  roots,
  # Strings: the rekeyed directory (or null) and this host's master files.
  rekeyedDir,
  masterFiles,
  # For messages: a path relative to the flake.
  inFlake,
}:
let
  inherit (lib)
    concatStringsSep
    filter
    hasPrefix
    optional
    showOption
    ;
  discard = builtins.unsafeDiscardStringContext;

  # `s` (a path string) is `loc` or a directory above it.
  holds = s: loc: loc == s || hasPrefix "${s}/" loc;
  within = dir: s: s == dir || hasPrefix "${dir}/" s;

  # What a path value, copied into the store when used, would bring along.
  pathLeak =
    s:
    let
      root = lib.findFirst (holds s) null roots;
      other = lib.removePrefix "${rekeyedDir}/" s;
      otherHost = builtins.head (lib.splitString "/" other);
      masters = filter (holds s) masterFiles;
    in
    if root != null then
      "the path ${shown s}, a copy of ${wholeSource}"
    else if rekeyedDir != null && holds s rekeyedDir then
      "the path ${shown s}, which holds the rekeyed directory ${shown rekeyedDir} (every host's rekeyed secrets),"
    else if rekeyedDir != null && within rekeyedDir s && otherHost != host then
      "the path ${shown s}, host `${otherHost}`'s rekeyed secret${lib.optionalString (s == "${rekeyedDir}/${otherHost}") "s"},"
    else if masters != [ ] then
      "the path ${shown s}, which ${if masters == [ s ] then "is" else "holds"} the master ciphertext${lib.optionalString (builtins.length masters > 1) "s"} ${
        concatStringsSep ", " (map shown masters)
      },"
    else
      null;

  # As written in the flake: ./secrets/db.age.
  shown =
    p:
    let
      r = inFlake p;
    in
    if hasPrefix "/" r then r else "./${r}";

  wholeSource = "the flake's whole source (every master ciphertext, every host's rekeyed secrets and any identity file tracked by git),";

  # A string that refers to the flake's source (its context).
  contextLeak =
    str:
    let
      ctx = builtins.getContext str;
      root = lib.findFirst (r: ctx ? ${r}) null roots;
    in
    if root == null then null else "${root}, ${wholeSource}";

  # The leak a value of an option would cause, or null.
  leakOf =
    v:
    if builtins.isPath v then
      pathLeak (toString v)
    else if builtins.isString v then
      contextLeak v
    else if builtins.isAttrs v && !lib.isDerivation v && v ? outPath then
      # A flake (`self`, an input) or another attribute set standing for a path.
      leakOf v.outPath
    else
      null;

  sourceFix = "use only the files it needs (`./config/app.conf`), or a copy filtered with lib.fileset that leaves the secrets out: `lib.fileset.toSource { root = ./.; fileset = lib.fileset.difference ./. ./secrets; }`";

  finding = option: what: fix: { inherit option what fix; };

  registry = config.nix.registry or { };
  registryFindings = lib.concatLists (
    lib.mapAttrsToList (
      n: r:
      let
        viaFlake = if r.flake or null != null then leakOf r.flake else null;
        # `to.path` comes from `flake` when that is set; from
        # nixpkgs.flake.source for the nixpkgs entry (reported there).
        to = r.to or { };
        viaTo =
          if r.flake or null != null || !(to ? path) || (n == "nixpkgs" && sourceFinding != [ ] && discard (toString to.path) == discard (toString nixpkgsSource)) then
            null
          else
            leakOf to.path;
        fix = "register another flake there (e.g. `nix.registry.nixpkgs.flake = inputs.nixpkgs;`), or nothing: a host does not need the fleet's own flake in its registry";
      in
      optional (viaFlake != null) (finding (showOption [ "nix" "registry" n "flake" ]) viaFlake fix)
      ++ optional (viaTo != null) (finding (showOption [ "nix" "registry" n "to" "path" ]) viaTo fix)
    ) registry
  );

  etcFindings = lib.concatLists (
    lib.mapAttrsToList (
      n: e:
      let
        text = e.text or null;
        # nix/registry.json is written from nix.registry (reported there).
        fromRegistry = n == "nix/registry.json" && registryFindings != [ ];
        viaText = if text != null && !fromRegistry then contextLeak text else null;
        viaSource = if text == null then leakOf (e.source or null) else null;
      in
      if !(e.enable or true) then
        [ ]
      else
        optional (viaText != null) (
          finding (showOption [ "environment" "etc" n "text" ]) viaText "do not interpolate the flake (`\${self}`, `\${./.}`) into the text; ${sourceFix}"
        )
        ++ optional (viaSource != null) (finding (showOption [ "environment" "etc" n "source" ]) viaSource sourceFix)
    ) (config.environment.etc or { })
  );

  nixpkgsSource = config.nixpkgs.flake.source or null;
  sourceFinding =
    let
      l = leakOf nixpkgsSource;
    in
    optional (l != null) (
      finding "nixpkgs.flake.source" l "leave it at nixpkgs' own source (`inputs.nixpkgs.outPath`, what nixpkgs.lib.nixosSystem sets)"
    );

  # `nixpkgs=${inputs.nixpkgs}` is common; with `self` it is the registry leak.
  nixPathFindings =
    let
      leaks = filter (l: l != null) (map (e: if builtins.isString e then contextLeak e else null) (config.nix.nixPath or [ ]));
    in
    optional (leaks != [ ]) (
      finding "nix.nixPath" (builtins.head leaks) "name another flake there (`\"nixpkgs=\${inputs.nixpkgs}\"`), not this one"
    );

  extraFindings =
    let
      leaks = filter (l: l != null) (map leakOf (config.system.extraDependencies or [ ]));
    in
    optional (leaks != [ ]) (
      finding "system.extraDependencies" (builtins.head leaks) "list only what the host needs; for the flake's files, ${sourceFix}"
    );
in
map (f: f // { what = discard f.what; }) (registryFindings ++ nixPathFindings ++ etcFindings ++ sourceFinding ++ extraFindings)
