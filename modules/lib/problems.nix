# What the NixOS module (../nixos.nix) and the home-manager module
# (../home-manager.nix) check at evaluation, in the same words: rekeyed
# files missing, stale or untracked, template placeholders naming no
# secret, duplicate names and paths, modes "other" can read,
# allowPlaintextOnDisk where it does nothing. Each function gets the
# `subject` its messages name: "host `web1`", or "home `web1.alice` (user
# `alice` on host `web1`)".
{ lib }:
let
  inherit (lib) concatStringsSep filter;
  paths = import ./paths.nix { inherit lib; };
  hostKey = import ./host-key.nix { inherit lib; };
  inFlake = paths.inFlake;
in
rec {
  inherit inFlake;

  # A public key option: the key line itself, or a .pub file in the flake
  # (null: not set).
  #   -> { fileMissing; problem (null or why the key is unusable);
  #        recipient ("ssh-ed25519 <base64>", what the rekey cache records,
  #        or null); }
  pubkey =
    k:
    let
      text =
        if k == null || builtins.isString k then
          k
        else if builtins.pathExists k then
          builtins.unsafeDiscardStringContext (builtins.readFile k)
        else
          null;
      parsed = if text == null then null else hostKey.parse text;
    in
    {
      fileMissing = k != null && text == null;
      problem = if parsed == null then null else parsed.problem;
      recipient = if parsed == null then null else parsed.recipient;
    };

  # The rekeyed files of one rekey target (a host or a home), compared with
  # the rekey cache exactly as `nixseal renc` does (COMMON contract): source
  # hash, recipient, output hash.
  #   rekeyedDir: the flake's rekeyed directory (a path, not null)
  #   target: the target's name, its directory under rekeyedDir
  #   recipient: "ssh-ed25519 <base64>" of the target's key
  #   keyOption, keyWhat: for the message when the recipient differs
  #     ("nixseal.settings.hostPubkey", "host key")
  rekeyed =
    {
      rekeyedDir,
      target,
      subject,
      recipient,
      keyOption,
      keyWhat,
    }:
    rec {
      dir = rekeyedDir + "/${target}";
      cacheFile = dir + "/.nixseal-rekey.json";
      cache =
        if builtins.pathExists cacheFile then
          (builtins.fromJSON (builtins.readFile cacheFile)).outputs or { }
        else
          { };
      file = s: dir + "/${s.name}.age";
      # Each rekeyed file becomes a store path of its own. Never interpolate
      # the flake source ("${self}/..."): that would put every target's files
      # (and the master ciphertexts) into this one's closure. The name is the
      # one `nixseal status` computes (crates/nixseal/src/contract/layout.rs `store_name`).
      source =
        s:
        builtins.path {
          path = file s;
          name = "${target}-${s.name}.age";
        };
      fix = "run `nix run .#renc`, then `git add ${inFlake rekeyedDir}` (flakes only see files tracked by git)";

      # Why a secret's rekeyed file cannot be used, or null.
      problem =
        s:
        let
          out = file s;
          entry = cache.${s.name} or null;
          where = "nixseal: secret `${s.name}` of ${subject}";
        in
        if !builtins.pathExists s.file then
          if s.generator != null then
            "${where}: the master file ${inFlake s.file} does not exist (or is not tracked by git); run `nix run .#renc` (it runs the secret's generator and rekeys), then `git add ${inFlake s.file} ${inFlake rekeyedDir}`."
          else
            "${where}: the master file ${inFlake s.file} does not exist (or is not tracked by git); create it with `nix run .#edit -- ${inFlake s.file}` and `git add` it."
        else if !builtins.pathExists out then
          "${where}: the rekeyed file ${inFlake out} is missing or not tracked by git; ${fix}."
        else if !builtins.pathExists cacheFile then
          "${where}: the rekey cache ${inFlake cacheFile} is missing or not tracked by git, so ${inFlake out} cannot be checked; ${fix}."
        else if entry == null then
          "${where}: ${inFlake out} has no entry in ${inFlake cacheFile}, so it may be stale; ${fix}."
        else if entry.sourceSha256 or "" != builtins.hashFile "sha256" s.file then
          "${where}: ${inFlake out} is stale: ${inFlake s.file} changed since it was rekeyed; ${fix}."
        else if entry.recipient or "" != recipient then
          "${where}: ${inFlake out} is stale: it was encrypted to another ${keyWhat} than ${keyOption}; ${fix}."
        else if entry.outputSha256 or "" != builtins.hashFile "sha256" out then
          "${where}: ${inFlake out} does not match its entry in ${inFlake cacheFile} (edited by hand or a bad merge?); ${fix}."
        else
          null;
    };

  # The names between `{{nixseal:` and the next `}}`, as the Rust side reads
  # them (crates/nixseal/src/contract/manifest/template.rs `pieces`); null when a
  # `{{nixseal:` is not closed.
  placeholdersIn =
    content:
    let
      open = "{{nixseal:";
      strings = xs: filter builtins.isString xs;
      go =
        acc: rest:
        let
          parts = strings (builtins.split "\\{\\{nixseal:" rest);
          after = concatStringsSep open (builtins.tail parts);
          closed = strings (builtins.split "}}" after);
        in
        if builtins.length parts == 1 then
          acc
        else if builtins.length closed == 1 then
          null
        else
          go (acc ++ [ (builtins.head closed) ]) (concatStringsSep "}}" (builtins.tail closed));
    in
    go [ ] content;

  # A template's placeholders that name no secret, or one left open.
  #   short: the subject again, shorter ("host `web1`", "home `web1.alice`")
  templateProblems =
    {
      subject,
      short,
      secretNames,
    }:
    t:
    let
      names = placeholdersIn t.content;
      where = "nixseal: template `${t.name}` of ${subject}";
      known =
        if secretNames == [ ] then
          "it has no secrets"
        else
          "its secrets are ${concatStringsSep ", " (map (n: "`${n}`") secretNames)}";
    in
    if names == null then
      [
        "${where} has a `{{nixseal:` without a closing `}}`; write placeholders as \${config.nixseal.placeholder.<secret>}."
      ]
    else
      map (
        n:
        "${where} uses the placeholder `{{nixseal:${n}}}`, but ${short} has no secret named `${n}` (${known}). Fix the name (write it as \${config.nixseal.placeholder.<secret>}), remove the placeholder if the secret was removed, or declare nixseal.secrets.\"${n}\"."
      ) (lib.unique (filter (n: !builtins.elem n secretNames) names));

  duplicates =
    subject: what: xs:
    map (x: "nixseal: ${subject} uses the ${what} `${x}` more than once; make them unique.") (
      lib.unique (filter (x: lib.count (y: y == x) xs > 1) xs)
    );

  # Modes with a permission bit for "other" let every local user read the
  # plaintext: allowed, but said (issue: world-readable is a decision).
  modeWarnings =
    subject: secrets: templates:
    let
      worldReadable = x: builtins.match "0?[0-7][0-7]0" x.mode == null;
    in
    map (
      x:
      "nixseal: ${x.kind} `${x.name}` of ${subject} has mode ${x.mode}, which gives every user on the host (\"other\") access to its plaintext; use a mode ending in 0 (e.g. \"0400\", or \"0440\" with a group) unless it is meant to be readable by all."
    ) (filter worldReadable (map (s: s // { kind = "secret"; }) secrets ++ map (t: t // { kind = "template"; }) templates));

  # allowPlaintextOnDisk where it changes nothing.
  #   memory: where the plaintext stays ("the ramfs")
  #   defaultPath: a secret's path when `path` is not set
  plaintextWarnings =
    {
      subject,
      memory,
      defaultPath,
    }:
    secrets:
    map (
      s:
      "nixseal: secret `${s.name}` of ${subject} sets allowPlaintextOnDisk, which only matters for a copy (symlink = false) at a custom path; its plaintext stays on ${memory} ${if s.symlink then "(symlink = true)" else "(its path is the default)"}. Remove the setting, or set symlink = false and a path if a program needs a copy."
    ) (filter (s: s.allowPlaintextOnDisk && (s.symlink || s.path == defaultPath s)) secrets);
}
