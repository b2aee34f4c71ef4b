# Rotation: switching to a configuration with a new rekeyed secret replaces it
# and restarts the unit listed in restartUnits; units of unchanged secrets are
# left alone.
{ common }:
{
  name = "nixseal-rotation";
  nodes.machine =
    { lib, ... }:
    {
      imports = [ common ];
      systemd.services.token-reader = {
        wantedBy = [ "multi-user.target" ];
        serviceConfig.ExecStart = "/run/current-system/sw/bin/sleep infinity";
      };
      nixseal.secrets.api-token.restartUnits = [ "token-reader.service" ];
      specialisation.rotated.configuration = {
        nixseal.secrets.db-password.file = lib.mkForce ./fixtures/secrets/db-password-v2.age;
        nixseal.settings.rekeyedDir = lib.mkForce ./fixtures/rekeyed-v2;
      };
    };
  testScript = ''
    machine.wait_for_unit("consumer.service")
    machine.wait_for_unit("token-reader.service")

    def invocation(unit):
        return machine.succeed(f"systemctl show -p InvocationID --value {unit}").strip()

    consumer = invocation("consumer.service")
    reader = invocation("token-reader.service")
    assert machine.succeed("cat /run/nixseal/db-password") == "db-password-v1"

    machine.succeed("/run/booted-system/specialisation/rotated/bin/switch-to-configuration test")
    assert machine.succeed("cat /run/nixseal/db-password") == "db-password-v2"
    machine.wait_until_succeeds(f"test \"$(systemctl show -p InvocationID --value consumer.service)\" != {consumer}")
    machine.wait_for_unit("consumer.service")
    assert invocation("token-reader.service") == reader, "token-reader restarted though api-token did not change"
    assert machine.succeed("cat /var/lib/app/api-token") == "api-token-v1"
  '';
}
