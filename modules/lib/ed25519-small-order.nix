# Encodings of the ed25519 points of small order (the 8 torsion points:
# order 1, 2, 4 and 8), as the 32-byte little-endian y coordinate in hex with
# the sign bit (bit 255) cleared: y = 0, 1, the two order-8 values, p-1, and
# the non-canonical p and p+1 (p = 2^255-19). A host key with one of these
# (with either sign bit) protects nothing: X25519 with it yields a shared
# secret every attacker knows. Generated once with
# tests/nix/lib/ed25519-small-order.py (plain integer arithmetic: each point
# decompresses, 8·P = O, all 8 torsion points are covered), which
# tests/nix/run.sh runs again to compare with this list. The operator side
# (crates/nixseal) must refuse the same keys.
[
  "0000000000000000000000000000000000000000000000000000000000000000"
  "0100000000000000000000000000000000000000000000000000000000000000"
  "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"
  "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"
  "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"
  "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"
  "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"
]
