# Option types shared by the NixOS module (../nixos.nix) and the
# home-manager module (../home-manager.nix).
{ lib }:
let
  inherit (lib) hasPrefix types;
  storeDir = builtins.storeDir;

  # Secret, template, host and home names become file names on the machine
  # *and* parts of store path names ("<target>-<secret>.age", at most 211
  # characters), so they must satisfy both. The limits are
  # crates/nixseal/src/contract/names.rs' HOST_NAME_MAX and SECRET_NAME_MAX (keep in
  # sync; tests/nix checks that both sides refuse the same names).
  nameType =
    kind: max:
    types.addCheck (types.strMatching "[A-Za-z0-9_+=-][A-Za-z0-9._+=-]*") (
      n: !lib.hasInfix ".." n && builtins.stringLength n <= max
    )
    // {
      name = "nixseal${kind}Name";
      description = "${lib.toLower kind} name of at most ${toString max} bytes made of letters, digits and `-_.+=`, not starting with `.`, without `..`";
    };

  # Not in the Nix store (a secret placed there would be world-readable, and
  # a store path here is always a mistake) and without `..` components.
  outsideStore =
    p:
    !hasPrefix "${storeDir}/" p
    && p != storeDir
    && !lib.hasInfix "/../" p
    && !lib.hasSuffix "/.." p;
in
{
  inherit nameType;
  hostNameType = nameType "Host" 96;
  # A home's name in the fleet shares the host names' namespace and limit.
  targetNameType = nameType "Target" 96;
  secretNameType = nameType "Secret" 110;

  # A path on the running host.
  runtimePath =
    types.addCheck types.str (p: hasPrefix "/" p && outsideStore p)
    // {
      name = "runtimePath";
      description = "absolute path outside the Nix store";
    };

  # A path of a user session: absolute, or under the user's runtime
  # directory, written `%r/...` (`nixseal deploy --user-session` expands a
  # leading `%r` to $XDG_RUNTIME_DIR and nothing else).
  userPath =
    types.addCheck types.str (p: (hasPrefix "/" p || hasPrefix "%r/" p) && outsideStore p)
    // {
      name = "userRuntimePath";
      description = "absolute path outside the Nix store, or a path starting with `%r/` (the user's runtime directory, $XDG_RUNTIME_DIR)";
    };

  modeType = types.strMatching "0?[0-7]{3}" // {
    description = "octal file mode such as \"0400\"";
  };
}
