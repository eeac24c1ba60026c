"""Crafted payloads, as an attacker who knows the format would send them: valid framing and a recomputed
CRC (or MAC, with the fleet key: a compromised edge), every header field at and beyond its limit, and
strings that reach the entropy decoder. The fuzz tests and ``benchmarks/bench_fuzz_server.py`` send them
to a cloud; run them against your own deployment the same way.
"""
import random
import zlib

from .shapes import string_bounds
from .payload import (CRC_BYTES, FIELD_RATE, FIELD_SCALE_INDEXES, FIELD_TILES, KIND_FEATURES, KIND_IMAGE, MAX_SIZE,
                      Payload)

KINDS = ("oversize_image", "at_limit_image", "bad_output", "string_count", "string_length", "random_strings",
         "fields", "kind", "header_bytes")


def _sizes(limit):
    return [0, 1, limit - 1, limit, limit + 1, 2 * limit, 4096, 8192, MAX_SIZE]


def _blob(rng, n):
    style = rng.randrange(4)
    if style == 0:
        return rng.randbytes(n)
    if style == 1:
        return b"\xff" * n
    if style == 2:
        return b"\x00" * n
    return (rng.randbytes(8) * (n // 8 + 1))[:n]


def _string_bounds(spec, hw):
    """(lo, hi) bytes of each string a payload of feature shape ``hw`` may hold (see check_strings)."""
    if spec.kind != KIND_FEATURES:
        return [(1, 4096)]
    return string_bounds(spec.codec, hw)


def crafted(spec, legit, rng: random.Random, key=None):
    """One crafted payload: (kind of attack, bytes). ``spec``: the target's PayloadSpec; ``legit``: real
    payloads of that model (their strings are reused under forged headers)."""
    kind = rng.choice(KINDS)
    base = rng.choice(legit)
    lim = spec.limits
    p = Payload(base.kind, base.fingerprint, base.image_size, base.output_size, list(base.strings), dict(base.fields))
    if kind == "oversize_image":
        p.image_size = (rng.choice(_sizes(lim.max_side)), rng.choice(_sizes(lim.max_side)))
        p.output_size = p.image_size
    elif kind == "at_limit_image":  # accepted sizes, strings made for a smaller image: reaches the decoder
        p.image_size = (rng.randint(1, lim.max_short_side), rng.randint(1, lim.max_side))
        if rng.random() < 0.5:
            p.image_size = (lim.max_short_side, lim.max_side)
    elif kind == "bad_output":
        p.output_size = (rng.choice(_sizes(lim.max_output_side)), rng.choice(_sizes(lim.max_output_side)))
    elif kind == "string_count":
        p.strings = [_blob(rng, rng.randint(0, 64)) for _ in range(rng.randint(1, 8))]
    elif kind in ("string_length", "random_strings"):
        hw = spec.feature_shape(p.image_size)
        strings = []
        for lo, hi in _string_bounds(spec, hw):
            n = rng.choice([lo - 1, lo, lo + 1, hi - 1, hi, hi + 1, rng.randint(lo, hi)]) if kind == "string_length" \
                else rng.randint(lo, min(hi, lo + 4096))
            strings.append(_blob(rng, max(0, n)))
        p.strings = strings
    elif kind == "fields":
        tag = rng.choice([FIELD_RATE, FIELD_TILES, FIELD_SCALE_INDEXES, rng.randint(1, 127)])
        p.fields[tag] = _blob(rng, rng.randint(0, 64))
    elif kind == "kind":
        p.kind = KIND_IMAGE if p.kind == KIND_FEATURES else KIND_FEATURES
        if rng.random() < 0.5:
            p.strings = [b"\xff\xd8\xff\xe0" + _blob(rng, rng.randint(0, 256))]
    else:  # "header_bytes": a valid fixed header followed by arbitrary bytes, framed with a valid CRC
        body = p.to_bytes()[:7] + _blob(rng, rng.randint(0, 64))
        return kind, body + zlib.crc32(body).to_bytes(CRC_BYTES, "big")
    return kind, p.to_bytes(key)
