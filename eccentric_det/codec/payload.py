"""The versioned binary format of what crosses the network from edge to cloud. No pickle.

Layout (big-endian)::

    magic "ECCD" | version u8 | kind u8 | fingerprint 8B
    image h,w u16 | output h,w u16 | latent h,w u16 | feature h,w u16
    n_strings u8 | n_strings x (length u32 | bytes) | crc32 u32 (of everything before it)
"""
import struct
import zlib
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

MAGIC = b"ECCD"
VERSION = 1
KIND_FEATURES = 1  # coded edge features (Adaptive ECC)
KIND_IMAGE = 2  # an encoded image (Independent ECC)
_HEAD = struct.Struct(">4sBB8s8HB")
_LEN = struct.Struct(">I")
_CRC = struct.Struct(">I")
MAX_STRINGS = 8


class PayloadError(ValueError):
    """A payload that cannot be decoded by this model: truncated, corrupted, foreign or mismatched."""


@dataclass
class Payload:
    """What one image sends: coded strings plus the sizes the cloud needs to finish the job."""

    kind: int
    fingerprint: bytes
    image_size: Tuple[int, int]  # (h, w) of the network input, after resizing, before padding
    output_size: Tuple[int, int]  # (h, w) the detections are scaled to (the original image)
    strings: List[bytes] = field(default_factory=list)
    latent_shape: Tuple[int, int] = (0, 0)
    feature_shape: Tuple[int, int] = (0, 0)

    def to_bytes(self) -> bytes:
        if len(self.fingerprint) != 8:
            raise PayloadError("fingerprint must be 8 bytes")
        if not 0 < len(self.strings) <= MAX_STRINGS:
            raise PayloadError(f"a payload holds 1..{MAX_STRINGS} strings, got {len(self.strings)}")
        sizes = (*self.image_size, *self.output_size, *self.latent_shape, *self.feature_shape)
        if any(not 0 <= int(s) < 65536 for s in sizes):
            raise PayloadError(f"sizes must fit in 16 bits, got {sizes}")
        parts = [_HEAD.pack(MAGIC, VERSION, self.kind, self.fingerprint, *map(int, sizes), len(self.strings))]
        for s in self.strings:
            parts += [_LEN.pack(len(s)), bytes(s)]
        body = b"".join(parts)
        return body + _CRC.pack(zlib.crc32(body))

    def __len__(self):
        return _HEAD.size + sum(_LEN.size + len(s) for s in self.strings) + _CRC.size

    @classmethod
    def from_bytes(cls, data, fingerprint: Optional[bytes] = None) -> "Payload":
        """Parse and check ``data``; with ``fingerprint``, also check that this model made it."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise PayloadError(f"a payload is bytes, got {type(data).__name__}")
        data = bytes(data)
        if len(data) < _HEAD.size + _CRC.size:
            raise PayloadError(f"payload truncated: {len(data)} bytes, a header alone is {_HEAD.size + _CRC.size}")
        if data[:4] != MAGIC:
            raise PayloadError(f"not an eccentric_det payload (magic {data[:4]!r}, expected {MAGIC!r})")
        if data[4] != VERSION:
            raise PayloadError(f"payload format version {data[4]} is not supported (this build reads version "
                               f"{VERSION}): upgrade the older side so edge and cloud run the same release")
        body, (crc,) = data[:-_CRC.size], _CRC.unpack(data[-_CRC.size:])
        if zlib.crc32(body) != crc:
            raise PayloadError("payload corrupted or truncated: CRC32 mismatch")
        _, _, kind, fp, ih, iw, oh, ow, lh, lw, fh, fw, n = _HEAD.unpack_from(body)
        if kind not in (KIND_FEATURES, KIND_IMAGE):
            raise PayloadError(f"unknown payload kind {kind}")
        if not 0 < n <= MAX_STRINGS:
            raise PayloadError(f"payload claims {n} strings (1..{MAX_STRINGS} allowed)")
        strings, pos = [], _HEAD.size
        for _ in range(n):
            if pos + _LEN.size > len(body):
                raise PayloadError("payload truncated inside its string table")
            (length,) = _LEN.unpack_from(body, pos)
            pos += _LEN.size
            if pos + length > len(body):
                raise PayloadError(f"payload truncated: a string claims {length} bytes, {len(body) - pos} remain")
            strings.append(body[pos:pos + length])
            pos += length
        if pos != len(body):
            raise PayloadError(f"payload has {len(body) - pos} trailing bytes")
        if fingerprint is not None and fp != fingerprint:
            raise PayloadError(f"payload was made by another model (codec fingerprint {fp.hex()}, this model is "
                               f"{fingerprint.hex()}): deploy edge and cloud halves of the same checkpoint")
        return cls(kind, fp, (ih, iw), (oh, ow), strings, (lh, lw), (fh, fw))


def check_payload(payload, fingerprint, kind, codec=None):
    """Raise :class:`PayloadError` unless ``payload`` was made by the model with ``fingerprint``, is of
    ``kind``, and (for features) holds as many strings as ``codec`` writes."""
    if payload.fingerprint != fingerprint:
        raise PayloadError(f"payload was made by another model (fingerprint {payload.fingerprint.hex()}, this "
                           f"model is {fingerprint.hex()}): deploy edge and cloud halves of the same checkpoint")
    if payload.kind != kind:
        raise PayloadError(f"payload kind {payload.kind} does not match this model's (kind {kind}: "
                           f"{'features' if kind == KIND_FEATURES else 'image'})")
    if kind == KIND_FEATURES and codec is not None and len(payload.strings) != codec.expected_strings():
        raise PayloadError(f"payload holds {len(payload.strings)} strings, this codec expects "
                           f"{codec.expected_strings()}")


def parse_payloads(payloads, fingerprint, check):
    """Parse payloads given as bytes (checking ``fingerprint``), run ``check(payload, fingerprint)`` on
    each, and return them with the index lists of same-shape payloads (each can run as one batch)."""
    parsed = [p if isinstance(p, Payload) else Payload.from_bytes(p, fingerprint) for p in payloads]
    groups = {}
    for i, p in enumerate(parsed):
        check(p, fingerprint)
        groups.setdefault((p.image_size, p.latent_shape, p.feature_shape), []).append(i)
    return parsed, list(groups.values())
