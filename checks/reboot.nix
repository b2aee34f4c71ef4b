# Reboot: /run is empty again and the secrets come back, same content, one
# generation.
{ common }:
{
  name = "nixseal-reboot";
  nodes.machine = common;
  testScript = ''
    machine.wait_for_unit("multi-user.target")
    assert machine.succeed("cat /run/nixseal/db-password") == "db-password-v1"
    machine.reboot()
    machine.wait_for_unit("multi-user.target")
    machine.succeed("systemctl is-active nixseal-activate.service")
    assert machine.succeed("cat /run/nixseal/db-password") == "db-password-v1"
    assert machine.succeed("cat /var/lib/app/api-token") == "api-token-v1"
    machine.succeed("systemctl is-active consumer.service")
    assert machine.succeed("ls /run/nixseal.d | grep -v '[.]tmp$' | wc -l").strip() == "1"
  '';
}
