# Renders evaluated `systemd.services` entries to unit file text the way NixOS'
# systemd-lib does ([Unit] from the dependency lists, restartTriggers and
# unitConfig; [Service] from serviceConfig; bools as true/false; a list value
# as one line per element). NixOS expresses wantedBy as `<target>.wants/`
# symlinks; outside NixOS this renders it as an [Install] section instead, so
# `systemctl enable` makes the same links.
{ lib }:
services:
let
  inherit (lib) concatStrings concatStringsSep mapAttrsToList optionalString;
  value =
    v:
    if v == true then
      "true"
    else if v == false then
      "false"
    else
      toString v;
  line =
    k: v:
    if builtins.isList v then concatStrings (map (x: "${k}=${value x}\n") v) else "${k}=${value v}\n";
  section = attrs: concatStrings (mapAttrsToList line attrs);
  deps =
    s:
    lib.filterAttrs (_: v: v != [ ]) {
      After = s.after;
      Before = s.before;
      Wants = s.wants;
      Requires = s.requires;
      Conflicts = s.conflicts;
    };
  render =
    name: s:
    ''
      [Unit]
    ''
    + optionalString (s.description != "") "Description=${s.description}\n"
    + section (lib.mapAttrs (_: concatStringsSep " ") (deps s))
    + optionalString (s.restartTriggers != [ ]) "X-Restart-Triggers=${toString s.restartTriggers}\n"
    + optionalString (!s.restartIfChanged) "X-RestartIfChanged=false\n"
    + section s.unitConfig
    + ''

      [Service]
    ''
    + section s.serviceConfig
    + optionalString (!s.stopIfChanged) "X-StopIfChanged=false\n"
    + optionalString (s.wantedBy != [ ] || s.requiredBy != [ ]) (
      "\n[Install]\n"
      + optionalString (s.wantedBy != [ ]) "WantedBy=${concatStringsSep " " s.wantedBy}\n"
      + optionalString (s.requiredBy != [ ]) "RequiredBy=${concatStringsSep " " s.requiredBy}\n"
    );
in
lib.mapAttrs render services
