"""Payload format v2: every malformed input raises PayloadError and nothing else; a model refuses, before
decoding, any payload it could not have produced; fleet authentication keeps out foreign payloads."""
import struct
import zlib

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from eccentric_det.codec import FIELD_RATE, KIND_FEATURES, KIND_IMAGE, Payload, PayloadError, fleet_key

FP = b"\x01\x02\x03\x04"
KEY = b"k" * 16


def sample(strings=(b"abc" * 50, b"z" * 7), fields=None):
    return Payload(KIND_FEATURES, FP, (240, 320), (480, 640), list(strings), dict(fields or {}))


@pytest.mark.parametrize("key", [None, KEY])
@pytest.mark.parametrize("fields", [{}, {FIELD_RATE: b"\x03", 77: b"x" * 300}])
def test_round_trip(key, fields):
    p = sample(fields=fields)
    q = Payload.from_bytes(p.to_bytes(key), fingerprint=FP, key=key)
    assert q == p
    assert len(p.to_bytes()) == len(p)


def test_compact_header():
    """A small one-string payload (classification: 28x28, output = image) has a 14-byte header."""
    p = Payload(KIND_FEATURES, FP, (28, 28), (28, 28), [b"s" * 37])
    assert len(p.to_bytes()) - 37 == 14
    assert len(p.to_bytes(KEY)) - 37 == 18  # the 8-byte MAC replaces the 4-byte CRC
    assert Payload.from_bytes(p.to_bytes()).output_size == (28, 28)


def test_version_1_and_foreign_payloads_are_refused():
    v1 = b"ECCD\x01\x01" + bytes(40)
    with pytest.raises(PayloadError, match="version 1 is not supported.*upgrade the edge"):
        Payload.from_bytes(v1)
    data = bytearray(sample().to_bytes())
    data[1] = 99
    body = bytes(data[:-4])
    with pytest.raises(PayloadError, match="version 99"):
        Payload.from_bytes(body + struct.pack(">I", zlib.crc32(body)))
    with pytest.raises(PayloadError, match="another model"):
        Payload.from_bytes(sample().to_bytes(), fingerprint=b"\x00" * 4)
    with pytest.raises(PayloadError, match="not an eccentric_det payload"):
        Payload.from_bytes(b"GIF89a" + bytes(60))
    with pytest.raises(PayloadError, match="bytes"):
        Payload.from_bytes("a string")


def test_fleet_authentication():
    signed, unsigned = sample().to_bytes(KEY), sample().to_bytes()
    with pytest.raises(PayloadError, match="not authenticated by this fleet's key"):
        Payload.from_bytes(unsigned, key=KEY)
    with pytest.raises(PayloadError, match="not authenticated"):
        Payload.from_bytes(sample().to_bytes(b"x" * 16), key=KEY)
    with pytest.raises(PayloadError, match="signed with a fleet key, but this cloud has none"):
        Payload.from_bytes(signed)
    tampered = bytearray(signed)
    tampered[10] ^= 1
    with pytest.raises(PayloadError, match="not authenticated"):
        Payload.from_bytes(bytes(tampered), key=KEY)
    # a client that knows the format but not the key cannot forge a valid trailer (a CRC is no MAC)
    body = signed[:-8]
    with pytest.raises(PayloadError, match="not authenticated"):
        Payload.from_bytes(body + struct.pack(">I", zlib.crc32(body)) * 2, key=KEY)
    assert fleet_key("") is None
    with pytest.raises(ValueError, match="at least 16 bytes"):
        fleet_key("short")


@settings(max_examples=150, deadline=2000)
@given(cut=st.integers(min_value=0, max_value=200))
def test_truncation(cut):
    data = sample().to_bytes()
    cut = min(cut, len(data) - 1)
    with pytest.raises(PayloadError):
        Payload.from_bytes(data[:cut])


@settings(max_examples=150, deadline=2000)
@given(flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 7)), min_size=1, max_size=4),
       key=st.sampled_from([None, KEY]))
def test_bit_flips(flips, key):
    data = bytearray(sample().to_bytes(key))
    for pos, bit in flips:
        data[pos % len(data)] ^= 1 << bit
    if bytes(data) == sample().to_bytes(key):  # flips that cancel out
        return
    with pytest.raises(PayloadError):
        Payload.from_bytes(bytes(data), key=key)


@settings(max_examples=200, deadline=2000)
@given(blob=st.binary(max_size=300))
def test_random_bytes(blob):
    with pytest.raises(PayloadError):
        Payload.from_bytes(blob)


@settings(max_examples=300, deadline=2000)
@given(tail=st.binary(max_size=64), head=st.sampled_from([b"\xec\x02\x01", b"\xec\x02\x11", b"\xec\x02\x31"]))
def test_any_header_with_a_valid_crc_parses_or_raises_payload_error(tail, head):
    """The structure-aware case: a client computes the CRC, so every header the parser can meet is one
    with a valid CRC. Parsing either succeeds with sizes in range or raises PayloadError."""
    body = head + FP + tail
    try:
        p = Payload.from_bytes(body + struct.pack(">I", zlib.crc32(body)))
    except PayloadError:
        return
    assert all(0 <= s <= 65535 for s in (*p.image_size, *p.output_size)) and 0 < len(p.strings) <= 8


def test_huge_claimed_length_is_bounded():
    """A header that claims a 256 MB string is refused, without allocating it."""
    head = bytes([0xEC, 2, KIND_FEATURES]) + FP + bytes([10, 10, 2]) + bytes([0xFF, 0xFF, 0xFF, 0x7F])
    body = head + b"x" * 10
    with pytest.raises(PayloadError, match="claims 268435455 bytes"):
        Payload.from_bytes(body + struct.pack(">I", zlib.crc32(body)))


@pytest.fixture(scope="module")
def factorized_model():
    from detectron2.modeling import build_model

    from .helpers import split_cfg

    torch.manual_seed(0)
    cfg = split_cfg("res2", codec="factorized")
    cfg.merge_from_list(["INPUT.MIN_SIZE_TEST", 128, "INPUT.MAX_SIZE_TEST", 192])
    return build_model(cfg).eval()


def forged(p, **changes):
    q = Payload(p.kind, p.fingerprint, p.image_size, p.output_size, list(p.strings), dict(p.fields))
    for k, v in changes.items():
        setattr(q, k, v)
    return q.to_bytes()


@pytest.mark.parametrize("changes,message", [
    ({"image_size": (8192, 8192)}, r"image size 8192x8192 is outside this model's input limits \(sides 1..192"),
    ({"image_size": (128, 193)}, "outside this model's input limits"),
    ({"image_size": (192, 192)}, "shorter side at most 128"),
    ({"image_size": (96, 0)}, "image size 96x0"),
    ({"output_size": (0, 50)}, "output size 0x50"),
    ({"output_size": (65535, 100)}, r"output size 65535x100 is outside 1..16384"),
    ({"strings": [b"x" * 100000]}, r"string 0 holds 100000 bytes; for a feature of \(16, 16\) this codec "
                                   r"writes 8..8192"),
    ({"strings": [b"x" * 8, b"y" * 8]}, "holds 2 strings, this codec \\(factorized\\) writes 1"),
    ({"strings": [b"x" * 6]}, "holds 6 bytes"),
    ({"fields": {FIELD_RATE: b"\x01"}}, "optional fields \\[1\\] that this model does not read"),
    ({"kind": KIND_IMAGE}, "kind 2 \\(image\\) does not match"),
    ({"fingerprint": b"\x00" * 4}, "another model"),
])
def test_model_refuses_what_it_could_not_have_produced(factorized_model, changes, message):
    """Each forged header (with a valid CRC) is refused before decoding, naming the field and the limit."""
    from .helpers import image_input

    legit = factorized_model.edge([image_input(64, 64)])[0]
    assert len(factorized_model.cloud([legit.to_bytes()])) == 1
    with pytest.raises(PayloadError, match=message):
        factorized_model.cloud([forged(legit, **changes)])


def test_strings_that_do_not_code_the_claimed_shape_are_refused(factorized_model):
    """A legit string under a header that claims a larger image (the shape the string cannot support)
    reaches the entropy decoder, which refuses it instead of reading past the string."""
    from .helpers import image_input

    legit = factorized_model.edge([image_input(64, 64)])[0]
    with pytest.raises(PayloadError, match="could not be entropy-decoded: .*corrupt"):
        factorized_model.cloud([forged(legit, image_size=(128, 160), output_size=(128, 160))])
    s = legit.strings[0]
    for bad in (s[:-4], s + s[-4:], b"\xff" * len(s), s[4:] + s[:4]):
        with pytest.raises(PayloadError, match="entropy-decoded"):
            factorized_model.cloud([forged(legit, strings=[bad])])
