# Reads an SSH ed25519 public key line ("ssh-ed25519 <base64> [comment]") at
# evaluation, as the operator side does (crates/nixseal: the recipient of the
# rekey cache is "ssh-ed25519 <base64>"):
#   parse text -> { recipient = "ssh-ed25519 <base64>" or null;
#                   problem = null or why the key is unusable; }
# The base64 must be canonical standard base64 and decode to the 51-byte SSH
# wire encoding of an ed25519 key (string "ssh-ed25519", string of 32 bytes);
# a key of small order (./ed25519-small-order.nix) is refused, since
# anything encrypted to it can be decrypted by anyone. Whether the 32 bytes
# are a point on the curve at all is left to the operator side (that needs
# field arithmetic Nix does not have).
{ lib }:
let
  inherit (lib) elemAt length mod;

  alphabet = lib.stringToCharacters "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  sextet = builtins.listToAttrs (
    lib.imap0 (i: c: {
      name = c;
      value = i;
    }) alphabet
  );

  # Canonical, padded standard base64 -> list of bytes; null otherwise.
  decodeBase64 =
    s:
    let
      len = builtins.stringLength s;
      pad =
        if lib.hasSuffix "==" s then
          2
        else if lib.hasSuffix "=" s then
          1
        else
          0;
      body = lib.stringToCharacters (builtins.substring 0 (len - pad) s);
      ok = len > 0 && mod len 4 == 0 && lib.all (c: sextet ? ${c}) body;
      vals = map (c: sextet.${c}) body ++ lib.genList (_: 0) pad;
      group =
        i:
        let
          n =
            ((elemAt vals (4 * i) * 64 + elemAt vals (4 * i + 1)) * 64 + elemAt vals (4 * i + 2)) * 64
            + elemAt vals (4 * i + 3);
        in
        [
          (n / 65536)
          (mod (n / 256) 256)
          (mod n 256)
        ];
      bytes = lib.concatLists (lib.genList group (len / 4));
      # The bits the padding leaves over must be zero.
      last = elemAt vals (len - pad - 1);
      canonical =
        pad == 0 || (pad == 1 && mod last 4 == 0) || (pad == 2 && mod last 16 == 0);
    in
    if ok && canonical then lib.take (length bytes - pad) bytes else null;

  hex = b: lib.fixedWidthString 2 "0" (lib.toLower (lib.toHexString b));

  # uint32 11, "ssh-ed25519", uint32 32.
  ed25519Prefix = [
    0
    0
    0
    11
    115
    115
    104
    45
    101
    100
    50
    53
    53
    49
    57
    0
    0
    0
    32
  ];
  smallOrder = import ./ed25519-small-order.nix;
in
{
  inherit decodeBase64;

  parse =
    text:
    let
      fields = lib.filter (f: f != "") (
        lib.splitString " " (lib.replaceStrings [ "\t" "\n" "\r" ] [ " " " " " " ] text)
      );
      type = if fields == [ ] then "" else builtins.head fields;
      b64 = elemAt fields 1;
      bytes = decodeBase64 b64;
      point = lib.drop 19 bytes;
      # y with the sign bit cleared, as ./ed25519-small-order.nix lists it.
      y = lib.concatMapStrings hex (lib.take 31 point ++ [ (mod (lib.last point) 128) ]);
      problem =
        if fields == [ ] then
          "is empty"
        else if type != "ssh-ed25519" then
          "is not an ssh-ed25519 key (got `${type}`)"
        else if length fields < 2 then
          "has no key after `ssh-ed25519`"
        else if bytes == null then
          "is not valid base64 (`${b64}`)"
        else if length bytes != 51 || lib.take 19 bytes != ed25519Prefix then
          "does not decode to an ssh-ed25519 public key (${toString (length bytes)} bytes; an ssh-ed25519 key is 51: its type and 32 key bytes)"
        else if builtins.elem y smallOrder then
          "is an ed25519 point of small order: anything encrypted to it can be decrypted by anyone"
        else
          null;
    in
    {
      inherit problem;
      recipient = if problem == null then "ssh-ed25519 ${b64}" else null;
    };
}
