# The host key lives on a separate file system: the activation waits for it
# (RequiresMountsFor), names the missing key, and works once it is there,
# also after a reboot.
{ common }:
{
  name = "nixseal-hostkey-mount";
  nodes.machine = {
    imports = [ common ];
    nixsealTest.installHostKey = false;
    virtualisation.emptyDiskImages = [ 64 ];
    virtualisation.fileSystems."/persist" = {
      device = "/dev/vdb";
      fsType = "ext4";
      autoFormat = true;
    };
    nixseal.settings.hostKeys = [ { path = "/persist/ssh/ssh_host_ed25519_key"; } ];
  };
  testScript = ''
    machine.wait_for_unit("multi-user.target")
    assert "/persist/ssh" in machine.succeed("systemctl show -p RequiresMountsFor --value nixseal-activate")
    assert "persist.mount" in machine.succeed("systemctl show -p After --value nixseal-activate")

    # First boot: the new disk has no key yet.
    machine.fail("systemctl is-active nixseal-activate.service")
    assert "/persist/ssh/ssh_host_ed25519_key" in machine.succeed("journalctl -u nixseal-activate --no-pager")

    machine.succeed("install -D -m 0600 ${./fixtures/host/ssh_host_ed25519_key} /persist/ssh/ssh_host_ed25519_key")
    machine.succeed("systemctl restart nixseal-activate.service")
    assert machine.succeed("cat /run/nixseal/db-password") == "db-password-v1"

    machine.reboot()
    machine.wait_for_unit("multi-user.target")
    machine.succeed("systemctl is-active nixseal-activate.service")
    assert machine.succeed("cat /run/nixseal/db-password") == "db-password-v1"
  '';
}
