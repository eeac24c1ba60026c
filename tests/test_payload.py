"""Payload format: every malformed input raises PayloadError, quickly, and nothing else."""
import struct
import time
import zlib

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from eccentric_det.codec import KIND_FEATURES, Payload, PayloadError

FP = b"\x01\x02\x03\x04\x05\x06\x07\x08"


def sample(strings=(b"abc" * 50, b"z" * 7)):
    return Payload(KIND_FEATURES, FP, (240, 320), (480, 640), list(strings), (30, 40), (60, 80))


def test_round_trip():
    p = sample()
    q = Payload.from_bytes(p.to_bytes(), fingerprint=FP)
    assert q == p
    assert len(p.to_bytes()) == len(p)


def test_wrong_version_and_model():
    data = bytearray(sample().to_bytes())
    data[4] = 99
    body = bytes(data[:-4])
    with pytest.raises(PayloadError, match="version 99"):
        Payload.from_bytes(body + struct.pack(">I", zlib.crc32(body)))
    with pytest.raises(PayloadError, match="another model"):
        Payload.from_bytes(sample().to_bytes(), fingerprint=b"\x00" * 8)
    with pytest.raises(PayloadError, match="not an eccentric_det payload"):
        Payload.from_bytes(b"GIF89a" + bytes(60))
    with pytest.raises(PayloadError, match="bytes"):
        Payload.from_bytes("a string")


@settings(max_examples=150, deadline=2000)
@given(cut=st.integers(min_value=0, max_value=200))
def test_truncation(cut):
    data = sample().to_bytes()
    cut = min(cut, len(data) - 1)
    with pytest.raises(PayloadError):
        Payload.from_bytes(data[:cut])


@settings(max_examples=150, deadline=2000)
@given(flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 7)), min_size=1, max_size=4))
def test_bit_flips(flips):
    data = bytearray(sample().to_bytes())
    for pos, bit in flips:
        data[pos % len(data)] ^= 1 << bit
    if bytes(data) == sample().to_bytes():  # flips that cancel out
        return
    with pytest.raises(PayloadError):
        Payload.from_bytes(bytes(data))


@settings(max_examples=200, deadline=2000)
@given(blob=st.binary(max_size=300))
def test_random_bytes(blob):
    with pytest.raises(PayloadError):
        Payload.from_bytes(blob)


def test_huge_claimed_length_is_bounded():
    """A header that claims a gigabyte string is refused at once, without allocating it."""
    head = sample().to_bytes()[:29]
    body = head + struct.pack(">I", 2**31) + b"x" * 10
    data = body + struct.pack(">I", zlib.crc32(body))
    t0 = time.perf_counter()
    with pytest.raises(PayloadError):
        Payload.from_bytes(data)
    assert time.perf_counter() - t0 < 0.1


def test_model_cloud_rejects_bad_payloads():
    from detectron2.modeling import build_model

    from .helpers import image_input, split_cfg

    model = build_model(split_cfg("res2", codec="factorized")).eval()
    data = model.edge([image_input(64, 64)])[0].to_bytes()
    with torch.no_grad():
        assert len(model.cloud([data])) == 1
        for bad in (data[:-10], data[:20] + bytes([data[20] ^ 4]) + data[21:], b""):
            with pytest.raises(PayloadError):
                model.cloud([bad])
        # a consistent payload whose shapes do not fit this model
        p = Payload.from_bytes(data)
        p.feature_shape = (p.feature_shape[0] + 8, p.feature_shape[1])
        with pytest.raises(PayloadError, match="inconsistent"):
            model.cloud([p.to_bytes()])
