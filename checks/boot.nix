# Boot: every secret is in place with its owner, mode and content; plaintext
# lives on a ramfs and nobody else can read it.
{ common }:
{
  name = "nixseal-boot";
  nodes.machine = common;
  testScript = ''
    machine.wait_for_unit("multi-user.target")
    machine.succeed("systemctl is-active nixseal-activate.service")

    def stat(path):
        return machine.succeed(f"stat -L -c '%U:%G %a' {path}").strip()

    assert machine.succeed("cat /run/nixseal/db-password") == "db-password-v1"
    assert stat("/run/nixseal/db-password") == "app:app 400", stat("/run/nixseal/db-password")

    # A custom path with symlink = false is a copy, not a link.
    machine.succeed("test -f /var/lib/app/api-token && test ! -L /var/lib/app/api-token")
    assert machine.succeed("cat /var/lib/app/api-token") == "api-token-v1"
    assert stat("/var/lib/app/api-token") == "app:app 440"

    assert machine.succeed("cat /run/nixseal/app.env") == "TOKEN=api-token-v1\n"
    assert stat("/run/nixseal/app.env") == "app:app 400"

    # The stable symlink points into a generation on a ramfs of its own.
    machine.succeed("test -L /run/nixseal")
    assert machine.succeed("findmnt -n -o FSTYPE /run/nixseal.d").strip() == "ramfs"
    machine.fail("su -s /bin/sh nobody -c 'cat /run/nixseal/db-password'")
    machine.succeed("su -s /bin/sh app -c 'cat /run/nixseal/db-password'")

    # The unit is ordered as designed.
    assert "sysinit.target" in machine.succeed("systemctl show -p Before --value nixseal-activate")
    assert machine.succeed("systemctl show -p DefaultDependencies --value nixseal-activate").strip() == "no"
  '';
}
