# Evaluates a home with modules/home-manager.nix without a flake (for `nix
# eval --impure`), in the stand-in home-manager (./standin-home-manager.nix),
# with a stand-in package whose binary path is the placeholder
# /nixseal-placeholder/bin/nixseal:
#   standalone (default): homeManagerConfiguration { modules; }
#   nixos = [ host modules ]: a stand-in NixOS system with home-manager's
#     NixOS module, nixseal's NixOS module, the user `user` (a normal user)
#     and home-manager.users.<user> = the modules (the result is the system;
#     the home is .config.home-manager.users.<user>)
{
  nixpkgsLib,
  modules,
  nixos ? null,
  user ? "alice",
}:
let
  lib = import ./standin-lib.nix (import nixpkgsLib);
  pkgs = import ./standin-pkgs.nix {
    inherit lib;
    system = builtins.currentSystem;
  };
  hm = import ./standin-home-manager.nix { inherit lib pkgs; };
  package = {
    type = "derivation";
    name = "nixseal";
    outPath = "/nixseal-placeholder";
  };
  home = [
    ../../../modules/home-manager.nix
    {
      nixseal.settings.package = package;
      # The placeholder cannot run (as in eval-host.nix).
      nixseal.settings.checkManifest = false;
    }
  ]
  ++ modules;
in
if nixos == null then
  hm.homeManagerConfiguration {
    inherit pkgs;
    modules = home;
  }
else
  import ./standin-nixos.nix { inherit lib pkgs; } {
    modules = [
      ../../../modules/nixos.nix
      hm.nixosModule
      {
        nixseal.settings.package = package;
        users.users.${user}.isNormalUser = true;
        home-manager.users.${user}.imports = home;
      }
    ]
    ++ nixos;
  }
