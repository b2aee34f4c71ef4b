# alice on desk (home-manager's NixOS module): target desk.alice.
{ config, ... }:
{
  home.stateVersion = "24.11";
  nixseal.settings = {
    userPubkey = "@ALICE_PUBKEY@";
    rekeyedDir = ../secrets/rekeyed;
  };
  nixseal.secrets = {
    api-token = {
      file = ../secrets/api-token.age;
      restartUnits = [ "app.service" ];
    };
    netrc = {
      file = ../secrets/netrc.age;
      path = "${config.home.homeDirectory}/.netrc";
    };
  };
  nixseal.templates."app.env".content = "TOKEN=${config.nixseal.placeholder.api-token}\n";
  systemd.user.services.app = {
    Unit.Description = "A user service that reads the token";
    Service.ExecStart = "/bin/sh -c 'cat $XDG_RUNTIME_DIR/nixseal/api-token'";
    Install.WantedBy = [ "default.target" ];
  };
}
