# bob's standalone home (homeConfigurations."bob@laptop"): target laptop.bob.
{
  home.username = "bob";
  home.homeDirectory = "/home/bob";
  home.stateVersion = "24.11";
  nixseal.settings = {
    targetName = "laptop.bob";
    userPubkey = ./bob.pub;
    rekeyedDir = ../secrets/rekeyed;
  };
  nixseal.secrets.mail-password = {
    file = ../secrets/mail-password.age;
    reloadUnits = [ "mbsync.service" ];
  };
}
