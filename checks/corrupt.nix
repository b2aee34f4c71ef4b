# A corrupt rekeyed secret: activation fails, names the secret, and the
# previous generation stays in place, complete.
{ common }:
{
  name = "nixseal-corrupt";
  nodes.machine =
    { lib, ... }:
    {
      imports = [ common ];
      specialisation.corrupt.configuration = {
        nixseal.secrets.db-password.file = lib.mkForce ./fixtures/secrets/db-password-v2.age;
        nixseal.settings.rekeyedDir = lib.mkForce ./fixtures/rekeyed-corrupt;
      };
    };
  testScript = ''
    machine.wait_for_unit("multi-user.target")
    before = machine.succeed("readlink /run/nixseal").strip()

    machine.fail("/run/booted-system/specialisation/corrupt/bin/switch-to-configuration test")
    machine.fail("systemctl is-active nixseal-activate.service")
    assert "db-password" in machine.succeed("journalctl -u nixseal-activate.service --no-pager")

    assert machine.succeed("readlink /run/nixseal").strip() == before
    assert machine.succeed("cat /run/nixseal/db-password") == "db-password-v1"
    assert machine.succeed("cat /run/nixseal/app.env") == "TOKEN=api-token-v1\n"
    machine.fail("ls -d /run/nixseal.d/*.tmp")
    machine.succeed("systemctl is-active consumer.service")
  '';
}
