# The manifest derivation of the NixOS module (../nixos.nix) and of the
# home-manager module (../home-manager.nix): the JSON, checked when it is
# built by the nixseal that deploys it (`nixseal manifest check`: every rule
# deploy applies before touching anything, except that owners and groups
# exist), as sops-nix checks its manifest, so what evaluation lets through
# but deploy would refuse fails the build, not the boot or the login.
# Skipped when the build machine cannot run the package (cross builds), or
# when `check` is false.
{ lib, pkgs }:
{
  name,
  manifest,
  exe,
  check,
}:
let
  inherit (pkgs) stdenv;
  canCheck =
    check && (!(stdenv ? buildPlatform) || stdenv.buildPlatform.canExecute stdenv.hostPlatform);
in
pkgs.runCommand name
  {
    manifest = builtins.toJSON manifest;
    passAsFile = [ "manifest" ];
  }
  (
    ''
      cp "$manifestPath" "$out"
    ''
    + lib.optionalString canCheck ''
      ${exe} manifest check "$out"
    ''
  )
