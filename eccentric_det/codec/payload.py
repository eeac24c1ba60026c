"""The versioned binary format of what crosses the network from edge to cloud (version 2). No pickle.

Layout::

    0xEC | version u8 (2) | kind (low 4 bits) + flags (high 4 bits) | fingerprint 4 B
    varint image h, w | [varint output h, w]                      (flag OUTPUT; absent: output = image)
    [varint n_fields | n_fields x (varint tag | varint length | bytes)]             (flag FIELDS)
    varint n_strings | varint length of each string but the last | the strings
    trailer: CRC32 (4 B, big-endian), or with flag AUTH the HMAC-SHA256 of everything before it
    under the fleet's key, truncated to 8 B

Sizes that the model derives (feature and latent shapes) are not sent: the cloud computes them from
the image size, so no header field can size an allocation. A one-string payload of equal image and
output sizes has a 14-byte header. Optional fields (``FIELD_*``) carry what later formats add; a cloud
refuses fields its model does not use.

The CRC only catches accidents: anybody can compute one. Fleet authentication (a key shared by a
fleet's edges and its cloud) is what keeps out payloads from outside the fleet; the cloud checks the
MAC, in constant time, before it reads anything else.
"""
import hashlib
import hmac
import struct
import zlib
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

DETECT_PATH = "/v1/detect"  # where a cloud server takes payloads (HTTP POST)
CONTENT_TYPE = "application/octet-stream"  # the content type they travel as
MAGIC = 0xEC
VERSION = 2
V1_MAGIC = b"ECCD"  # version 1 payloads (39-byte header) began with these four bytes
KIND_FEATURES = 1  # coded edge features (Adaptive ECC)
KIND_IMAGE = 2  # an encoded image (Independent ECC, cloud-only baselines)
KINDS = {KIND_FEATURES: "features", KIND_IMAGE: "image"}
FINGERPRINT_BYTES = 4
FLAG_OUTPUT, FLAG_FIELDS, FLAG_AUTH = 0x10, 0x20, 0x40
_KNOWN_FLAGS = FLAG_OUTPUT | FLAG_FIELDS | FLAG_AUTH
# Optional fields (tag -> meaning). A model declares the ones it reads; any other is refused.
FIELD_RATE = 1  # the rate index a variable-rate codec coded at
FIELD_TILES = 2  # the mask of latent tiles a region payload holds
FIELD_SCALE_INDEXES = 3  # hyperprior: CDF indexes of the scales that lie next to a table boundary
MAX_STRINGS = 8
MAX_FIELDS = 8
MAX_SIZE = 65535  # every size field
MAC_BYTES = 8
CRC_BYTES = 4
MIN_KEY_BYTES = 16
_CRC = struct.Struct(">I")
_FIXED = 3 + FINGERPRINT_BYTES


class PayloadError(ValueError):
    """A payload that this model must not decode: truncated, corrupted, foreign, unauthenticated,
    or claiming what the model could not have produced. The message names the field and the limit."""


@dataclass
class Payload:
    """What one image sends: coded strings, the sizes the cloud needs, and optional fields."""

    kind: int
    fingerprint: bytes  # FINGERPRINT_BYTES that identify the model (or the image codec)
    image_size: Tuple[int, int]  # (h, w) of the network input, after resizing, before padding
    output_size: Tuple[int, int]  # (h, w) the detections are scaled to (the original image)
    strings: List[bytes] = field(default_factory=list)
    fields: Dict[int, bytes] = field(default_factory=dict)

    def to_bytes(self, key: Optional[bytes] = None) -> bytes:
        """The wire form; with the fleet ``key``, authenticated (HMAC) instead of CRC-checked."""
        if len(self.fingerprint) != FINGERPRINT_BYTES:
            raise PayloadError(f"fingerprint must be {FINGERPRINT_BYTES} bytes, got {len(self.fingerprint)}")
        if self.kind not in KINDS:
            raise PayloadError(f"unknown payload kind {self.kind}")
        if not 0 < len(self.strings) <= MAX_STRINGS:
            raise PayloadError(f"a payload holds 1..{MAX_STRINGS} strings, got {len(self.strings)}")
        if len(self.fields) > MAX_FIELDS or any(not 0 < t < 128 for t in self.fields):
            raise PayloadError(f"a payload holds at most {MAX_FIELDS} fields with tags 1..127, "
                               f"got {sorted(self.fields)}")
        sizes = (*self.image_size, *self.output_size)
        if any(not 0 <= int(s) <= MAX_SIZE for s in sizes):
            raise PayloadError(f"sizes must lie in 0..{MAX_SIZE}, got {sizes}")
        flags = FLAG_AUTH if key else 0
        out = bytearray()
        put_varints(out, *map(int, self.image_size))
        if tuple(self.output_size) != tuple(self.image_size):
            flags |= FLAG_OUTPUT
            put_varints(out, *map(int, self.output_size))
        if self.fields:
            flags |= FLAG_FIELDS
            put_varints(out, len(self.fields))
            for tag, value in sorted(self.fields.items()):
                put_varints(out, tag, len(value))
                out += value
        put_varints(out, len(self.strings), *(len(s) for s in self.strings[:-1]))
        for s in self.strings:
            out += s
        body = bytes([MAGIC, VERSION, self.kind | flags]) + self.fingerprint + bytes(out)
        return body + (_mac(key, body) if key else _CRC.pack(zlib.crc32(body)))

    def __len__(self):
        """Bytes on the wire (CRC-checked form)."""
        return len(self.to_bytes())

    @classmethod
    def from_bytes(cls, data, fingerprint: Optional[bytes] = None, key: Optional[bytes] = None) -> "Payload":
        """Parse and check ``data``: with ``key``, its MAC first; with ``fingerprint``, that this model made
        it. Bounded work for any input: nothing is allocated beyond ``data`` itself."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise PayloadError(f"a payload is bytes, got {type(data).__name__}")
        data = bytes(data)
        if key:
            if len(data) <= MAC_BYTES or not hmac.compare_digest(_mac(key, data[:-MAC_BYTES]), data[-MAC_BYTES:]):
                raise PayloadError("payload is not authenticated by this fleet's key: the edge must sign with the "
                                   "same SERVING.PAYLOAD_KEY as the cloud")
        if len(data) >= 4 and data[:4] == V1_MAGIC:
            raise PayloadError(f"payload format version 1 is not supported (this build reads version {VERSION}): "
                               f"upgrade the edge so edge and cloud run the same release")
        if len(data) < _FIXED + 2 + _CRC.size:
            raise PayloadError(f"payload truncated: {len(data)} bytes, the smallest is {_FIXED + 2 + _CRC.size}")
        if data[0] != MAGIC:
            raise PayloadError(f"not an eccentric_det payload (first byte 0x{data[0]:02x}, expected 0x{MAGIC:02x})")
        if data[1] != VERSION:
            raise PayloadError(f"payload format version {data[1]} is not supported (this build reads version "
                               f"{VERSION}): upgrade the older side so edge and cloud run the same release")
        kind, flags = data[2] & 0x0F, data[2] & 0xF0
        if flags & ~_KNOWN_FLAGS:
            raise PayloadError(f"payload sets unknown flags 0x{flags & ~_KNOWN_FLAGS:02x}")
        if not key:
            if flags & FLAG_AUTH:
                raise PayloadError("payload is signed with a fleet key, but this cloud has none: set the same "
                                   "SERVING.PAYLOAD_KEY on the cloud")
            body, (crc,) = data[:-_CRC.size], _CRC.unpack(data[-_CRC.size:])
            if zlib.crc32(body) != crc:
                raise PayloadError("payload corrupted or truncated: CRC32 mismatch")
        else:
            if not flags & FLAG_AUTH:
                raise PayloadError("payload does not declare its authentication (flag AUTH)")
            body = data[:-MAC_BYTES]
        if kind not in KINDS:
            raise PayloadError(f"unknown payload kind {kind}")
        fp = body[3:_FIXED]
        if fingerprint is not None and fp != fingerprint:
            raise PayloadError(f"payload was made by another model (fingerprint {fp.hex()}, this model is "
                               f"{fingerprint.hex()}): deploy edge and cloud halves of the same checkpoint")
        r = _Reader(body, _FIXED)
        image_size = (r.size("image height"), r.size("image width"))
        output_size = (r.size("output height"), r.size("output width")) if flags & FLAG_OUTPUT else image_size
        fields = {}
        if flags & FLAG_FIELDS:
            n = r.varint("field count")
            if not 0 < n <= MAX_FIELDS:
                raise PayloadError(f"payload claims {n} fields (1..{MAX_FIELDS} allowed)")
            for _ in range(n):
                tag = r.varint("field tag")
                if not 0 < tag < 128 or tag in fields:
                    raise PayloadError(f"payload field tag {tag} is invalid or repeated (tags 1..127, once each)")
                fields[tag] = r.take(r.varint("field length"), f"field {tag}")
        n = r.varint("string count")
        if not 0 < n <= MAX_STRINGS:
            raise PayloadError(f"payload claims {n} strings (1..{MAX_STRINGS} allowed)")
        lengths = [r.varint("string length") for _ in range(n - 1)]
        strings = [r.take(length, f"string {i}") for i, length in enumerate(lengths)]
        strings.append(body[r.pos:])
        return cls(kind, fp, image_size, output_size, strings, fields)


def _mac(key, body):
    return hmac.new(key, body, hashlib.sha256).digest()[:MAC_BYTES]


def fleet_key(text):
    """The fleet key of ``SERVING.PAYLOAD_KEY`` as bytes (None when it is empty)."""
    if not text:
        return None
    key = text.encode()
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"SERVING.PAYLOAD_KEY must be at least {MIN_KEY_BYTES} bytes, got {len(key)}: use e.g. "
                         f"python -c 'import secrets; print(secrets.token_hex(16))'")
    return key


def put_varints(out, *values):
    """Append unsigned LEB128 varints."""
    for v in values:
        while v >= 0x80:
            out.append((v & 0x7F) | 0x80)
            v >>= 7
        out.append(v)


class _Reader:
    """Bounds-checked reads of varints and byte runs from ``body``."""

    def __init__(self, body, pos):
        self.body, self.pos = body, pos

    def varint(self, what, max_bytes=4):
        value = 0
        for i in range(max_bytes):
            if self.pos >= len(self.body):
                raise PayloadError(f"payload truncated inside its header ({what})")
            b = self.body[self.pos]
            self.pos += 1
            value |= (b & 0x7F) << (7 * i)
            if not b & 0x80:
                if b == 0 and i:
                    raise PayloadError(f"payload header has an overlong varint ({what})")
                return value
        raise PayloadError(f"payload header field {what} is longer than {max_bytes} bytes")

    def size(self, what):
        value = self.varint(what, 3)
        if value > MAX_SIZE:
            raise PayloadError(f"payload {what} {value} is over {MAX_SIZE}")
        return value

    def take(self, length, what):
        if self.pos + length > len(self.body):
            raise PayloadError(f"payload truncated: {what} claims {length} bytes, {len(self.body) - self.pos} remain")
        out = self.body[self.pos:self.pos + length]
        self.pos += length
        return out
