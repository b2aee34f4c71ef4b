# The test machine shared by the VM tests: nixseal with the fixtures of
# ./fixtures (TEST KEYS ONLY, made by ./fixtures/make.sh), a service user
# `app` and a long-running `consumer.service` that reads a secret.
{ nixseal }:
{
  config,
  lib,
  pkgs,
  ...
}:
{
  imports = [ nixseal.nixosModules.default ];

  options.nixsealTest.installHostKey = lib.mkOption {
    type = lib.types.bool;
    default = true;
    description = "Install the fixture host key at /etc/ssh before anything runs.";
  };

  config = {
    # A real host has its key on disk already; the test puts it there in
    # stage 2, before users are created and before systemd starts.
    system.activationScripts.nixsealTestHostKey = lib.mkIf config.nixsealTest.installHostKey {
      deps = [ "specialfs" ];
      text = ''
        install -D -m 0600 ${./fixtures/host/ssh_host_ed25519_key} /etc/ssh/ssh_host_ed25519_key
      '';
    };

    # The fixtures were rekeyed for the host "machine", whatever a test
    # names its nodes (the test driver sets networking.hostName to the node
    # name).
    nixseal.settings = {
      hostName = "machine";
      hostPubkey = ./fixtures/host/ssh_host_ed25519_key.pub;
      rekeyedDir = ./fixtures/rekeyed;
    };
    # Its ed25519 host key is the one nixseal decrypts with (the default
    # nixseal.settings.hostKeys).
    services.openssh.enable = true;

    users.users.app = {
      isSystemUser = true;
      group = "app";
    };
    users.groups.app = { };

    nixseal.secrets.db-password = {
      file = ./fixtures/secrets/db-password.age;
      owner = "app";
      restartUnits = [ "consumer.service" ];
    };
    nixseal.secrets.api-token = {
      file = ./fixtures/secrets/api-token.age;
      owner = "app";
      mode = "0440";
      path = "/var/lib/app/api-token";
      symlink = false;
    };
    nixseal.templates."app.env" = {
      content = "TOKEN=${config.nixseal.placeholder.api-token}\n";
      owner = "app";
    };

    systemd.services.consumer = {
      wantedBy = [ "multi-user.target" ];
      after = [ "nixseal-activate.service" ];
      serviceConfig = {
        User = "app";
        ExecStart = "${pkgs.coreutils}/bin/sleep infinity";
      };
    };
  };
}
