# nixpkgs' `lib` as the offline tests use it: the real library
# (../shared/nix/nixpkgs-lib) with one fallback for the Nix 2.8 that Debian
# ships. `lib.filesystem.pathType` is `builtins.readFileType`, which Nix 2.14
# added; `lib.fileset` needs it for every path it is given. The fallback
# reads the type from the parent directory's `builtins.readDir`; a store
# path's parent (the store itself) cannot be listed in pure evaluation, so
# there a path `p` counts as a directory when `p/.` exists. Everything else
# in `lib.fileset` (and so the source the flake hands to cargo) is the real
# code.
nixpkgsLib:
nixpkgsLib.extend (
  final: prev: {
    filesystem = prev.filesystem // {
      pathType =
        builtins.readFileType or (
          p:
          let
            s = toString p;
            parent = dirOf s;
          in
          if s == "/" then
            "directory"
          else if parent == builtins.storeDir then
            (if builtins.pathExists "${s}/." then "directory" else "regular")
          else
            (builtins.readDir parent).${baseNameOf s}
              or (throw "lib.filesystem.pathType: path ${s} does not exist.")
        );
    };
  }
)
