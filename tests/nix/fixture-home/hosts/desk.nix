{
  networking.hostName = "desk";
  services.openssh.enable = true;
  nixseal.settings = {
    hostPubkey = "@DESK_PUBKEY@";
    rekeyedDir = ../secrets/rekeyed;
  };
  nixseal.secrets.db-password.file = ../secrets/db-password.age;
  users.users.alice.isNormalUser = true;
  home-manager.users.alice = import ../homes/alice.nix;
}
