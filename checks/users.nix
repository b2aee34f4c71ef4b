# neededForUsers: root's hashedPasswordFile is a secret, decrypted before
# users are created — by the activation script (scripted users) and by the
# early unit (userborn).
{ common }:
let
  node =
    extra:
    { config, ... }:
    {
      imports = [
        common
        extra
      ];
      users.mutableUsers = false;
      nixseal.secrets.root-password = {
        file = ./fixtures/secrets/root-password.age;
        neededForUsers = true;
      };
      users.users.root.hashedPasswordFile = config.nixseal.secrets.root-password.path;
    };
in
{
  name = "nixseal-users";
  nodes.scripted = node {
    # The test key must be in place before nixseal's early step.
    system.activationScripts.nixsealForUsers.deps = [ "nixsealTestHostKey" ];
  };
  nodes.userborn = node { services.userborn.enable = true; };
  testScript = ''
    start_all()
    for m in [scripted, userborn]:
        m.wait_for_unit("multi-user.target")
        shadow = m.succeed("getent shadow root")
        assert shadow.startswith("root:$6$nixsealtest$"), shadow
        assert m.succeed("stat -L -c '%U:%G %a' /run/nixseal-for-users/root-password").strip() == "root:root 400"
        assert m.succeed("cat /run/nixseal/db-password") == "db-password-v1"

    userborn.succeed("systemctl is-active nixseal-activate-users.service")
    before = userborn.succeed("systemctl show -p Before --value nixseal-activate-users.service")
    assert "userborn.service" in before, before
  '';
}
