#!/usr/bin/env python3
"""The ed25519 points of small order, computed with plain integers.

Usage: ed25519-small-order.py ys     the y coordinates (32 bytes, little
                                     endian, hex, sign bit clear) of every
                                     encoding of a small-order point
       ed25519-small-order.py keys   each such encoding, with either sign
                                     bit, as an "ssh-ed25519 <base64>" line

It checks what it prints: every point decompresses, 8·P is the identity,
and together they are the whole torsion subgroup (8 points). The encodings
include the non-canonical y = p and y = p + 1 (congruent to 0 and 1).
"""

import base64
import sys

P = 2**255 - 19
D = (-121665 * pow(121666, P - 2, P)) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)


def decompress(y, sign):
    y %= P
    x2 = (y * y - 1) * pow(D * y * y + 1, P - 2, P) % P
    if x2 == 0:
        return (0, y) if sign == 0 else None
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P != 0:
        x = x * SQRT_M1 % P
    if (x * x - x2) % P != 0:
        return None
    if x & 1 != sign:
        x = P - x
    return (x, y)


def add(a, b):
    (x1, y1), (x2, y2) = a, b
    t = D * x1 * x2 * y1 * y2 % P
    return ((x1 * y2 + x2 * y1) * pow(1 + t, P - 2, P) % P, (y1 * y2 + x1 * x2) * pow(1 - t, P - 2, P) % P)


def times8(pt):
    for _ in range(3):
        pt = add(pt, pt)
    return pt


def sqrt(v):
    r = pow(v, (P + 3) // 8, P)
    if (r * r - v) % P != 0:
        r = r * SQRT_M1 % P
    return r if (r * r - v) % P == 0 else None


def order8_ys():
    # 2P has order 4 (its y is 0) exactly when x^2 = -y^2 (doubling on
    # -x^2 + y^2 = 1 + d x^2 y^2), which gives d y^4 + 2 y^2 - 1 = 0:
    # y^2 = (-1 ± sqrt(1 + d)) / d.
    out = []
    r = sqrt((1 + D) % P)
    assert r is not None
    inv_d = pow(D, P - 2, P)
    for y2 in ((-1 + r) * inv_d % P, (-1 - r) * inv_d % P):
        y = sqrt(y2)
        if y is not None:
            out += [y, P - y]
    return out


def encodings():
    ys = {0, 1, P - 1} | set(order8_ys())
    points = set()
    encs = []
    for y in sorted(ys):
        for sign in (0, 1):
            pt = decompress(y, sign)
            if pt is None:
                continue
            assert times8(pt) == (0, 1), (y, sign)
            points.add(pt)
    ys = {pt[1] for pt in points}
    assert len(points) == 8, len(points)
    # Non-canonical encodings: y + P still fits in 255 bits.
    all_ys = sorted(ys | {y + P for y in ys if y + P < 2**255})
    for y in all_ys:
        for sign in (0, 1):
            encs.append((y | (sign << 255)).to_bytes(32, "little"))
    return all_ys, encs


def main():
    ys, encs = encodings()
    if sys.argv[1:] == ["ys"]:
        for y in ys:
            print(y.to_bytes(32, "little").hex())
    elif sys.argv[1:] == ["keys"]:
        prefix = b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20"
        for e in encs:
            print("ssh-ed25519 " + base64.b64encode(prefix + e).decode())
    else:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
