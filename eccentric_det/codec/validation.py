"""What a cloud accepts, checked before any decoding or allocation: every payload against what *this*
model could have produced. Shared by detection and classification."""
import io
from dataclasses import asdict, dataclass
from typing import Dict, Optional, Sequence, Tuple

from .payload import FIELD_TILES, KIND_FEATURES, KINDS, MAX_SIZE, Payload, PayloadError
from .shapes import check_fields, check_strings, latent_shape
from .tiles import decode_tiles, region_cells


@dataclass(frozen=True)
class PayloadLimits:
    """Sizes a payload may claim. ``max_side``/``max_short_side`` bound the network input (the model's own
    test-time resize: ``INPUT.MAX_SIZE_TEST``/``MIN_SIZE_TEST`` for detection), ``max_output_side`` the
    original image the results are scaled to (``MODEL.ECCENTRIC.PAYLOAD.*`` widens them)."""

    max_side: int
    max_short_side: int
    max_output_side: int = 16384

    @classmethod
    def from_config(cls, cfg, max_side, max_short_side):
        """Limits of ``cfg.MODEL.ECCENTRIC.PAYLOAD``; its 0 entries take the model's own ``max_side`` and
        ``max_short_side``."""
        P = cfg.MODEL.ECCENTRIC.PAYLOAD
        side = P.MAX_IMAGE_SIDE or max_side
        short = P.MAX_IMAGE_SHORT_SIDE or min(max_short_side or side, side)
        for key, value in (("MAX_IMAGE_SIDE", side), ("MAX_IMAGE_SHORT_SIDE", short),
                           ("MAX_OUTPUT_SIDE", P.MAX_OUTPUT_SIDE)):
            if not 0 < value <= MAX_SIZE:
                raise ValueError(f"MODEL.ECCENTRIC.PAYLOAD.{key} resolves to {value}: it must lie in 1..{MAX_SIZE}")
        return cls(side, short, P.MAX_OUTPUT_SIDE)

    def check(self, p: Payload):
        """Raise :class:`PayloadError` naming the field and the limit unless ``p``'s sizes are within these."""
        h, w = p.image_size
        if min(h, w) < 1 or max(h, w) > self.max_side or min(h, w) > self.max_short_side:
            raise PayloadError(f"payload image size {h}x{w} is outside this model's input limits (sides 1.."
                               f"{self.max_side}, shorter side at most {self.max_short_side}; "
                               f"MODEL.ECCENTRIC.PAYLOAD.MAX_IMAGE_SIDE / MAX_IMAGE_SHORT_SIDE widen them)")
        oh, ow = p.output_size
        if min(oh, ow) < 1 or max(oh, ow) > self.max_output_side:
            raise PayloadError(f"payload output size {oh}x{ow} is outside 1..{self.max_output_side} "
                               f"(MODEL.ECCENTRIC.PAYLOAD.MAX_OUTPUT_SIDE)")


def check_payload(p: Payload, fingerprint: bytes, kind: int, limits: PayloadLimits, fields: Sequence[int] = ()):
    """Raise :class:`PayloadError` unless ``p`` was made by the model with ``fingerprint``, is of ``kind``,
    claims sizes within ``limits`` and carries only the optional ``fields`` this model reads."""
    if p.fingerprint != fingerprint:
        raise PayloadError(f"payload was made by another model (fingerprint {p.fingerprint.hex()}, this model is "
                           f"{fingerprint.hex()}): deploy edge and cloud halves of the same checkpoint")
    if p.kind != kind:
        raise PayloadError(f"payload kind {p.kind} ({KINDS.get(p.kind, 'unknown')}) does not match this model's "
                           f"(kind {kind}: {KINDS[kind]})")
    unknown = sorted(set(p.fields) - set(fields))
    if unknown:
        raise PayloadError(f"payload carries optional fields {unknown} that this model does not read "
                           f"(it reads {sorted(fields) or 'none'}): edge and cloud must run the same model")
    limits.check(p)


@dataclass(frozen=True)
class PayloadSpec:
    """Everything a cloud checks a payload against, as plain values (it travels to a server's front
    process, which validates before anything is queued). :meth:`check` returns the derived shape a
    payload decodes to: the split feature's (h, w) for features, the image's for images."""

    fingerprint: bytes
    kind: int
    limits: PayloadLimits
    fields: Tuple[int, ...] = ()
    codec: Optional[Dict] = None  # the feature codec's config (features payloads)
    stride: int = 0  # the split feature's stride (0: the feature has the fixed shape ``feature_hw``)
    size_divisibility: int = 0  # the edge pads its input to a multiple of this before the trunk
    feature_hw: Tuple[int, int] = (0, 0)
    tile: int = 0  # region payloads: latent cells a side of a tile (0: this model takes whole latents only)

    def feature_shape(self, image_size):
        """(h, w) of the split feature for a network input of ``image_size`` (ResNet strides round up)."""
        if not self.stride:
            return tuple(self.feature_hw)
        div = self.size_divisibility
        return tuple(-(-(-(-s // div) * div if div else s) // self.stride) for s in image_size)

    def to_dict(self):
        """JSON-ready form (:meth:`from_dict` reads it back)."""
        return {**asdict(self), "fingerprint": self.fingerprint.hex()}

    @classmethod
    def from_dict(cls, d):
        return cls(bytes.fromhex(d["fingerprint"]), d["kind"], PayloadLimits(**d["limits"]), tuple(d["fields"]),
                   d["codec"], d["stride"], d["size_divisibility"], tuple(d["feature_hw"]), d.get("tile", 0))

    def check(self, p: Payload):
        """The derived shape of ``p``; raises :class:`PayloadError` when it is not one this model accepts."""
        check_payload(p, self.fingerprint, self.kind, self.limits, self.fields)
        if self.kind != KIND_FEATURES:
            if len(p.strings) != 1:
                raise PayloadError(f"an image payload holds 1 string, got {len(p.strings)}")
            return tuple(p.image_size)
        hw = self.feature_shape(p.image_size)
        cells = None
        if FIELD_TILES in p.fields:  # accepted only where ``fields`` lists it (a region model, tile > 0)
            y_hw = latent_shape(self.codec, hw)
            tiles = decode_tiles(p.fields[FIELD_TILES], y_hw, self.tile)
            cells = tuple(int(c.sum()) for c in region_cells(tiles, self.tile, y_hw))
        check_strings(self.codec, p.strings, hw, cells)
        check_fields(self.codec, p.fields)
        return hw

    def parse(self, data, key=None):
        """(payload, derived shape) of ``data`` (bytes, or an already parsed Payload): its MAC under the
        fleet ``key`` first, then framing, fingerprint and :meth:`check`; raises :class:`PayloadError`."""
        p = data if isinstance(data, Payload) else Payload.from_bytes(data, self.fingerprint, key)
        return p, self.check(p)


def parse_payloads(payloads, spec: PayloadSpec, key=None):
    """Parse and check payloads (:meth:`PayloadSpec.parse`) and return them, the derived shape of each,
    and the index lists of same-shape payloads (each can run as one batch; region payloads apart from whole ones)."""
    pairs = [spec.parse(p, key) for p in payloads]
    parsed, shapes = [p for p, _ in pairs], [hw for _, hw in pairs]
    groups = {}
    for i, hw in enumerate(shapes):
        groups.setdefault((hw, FIELD_TILES in parsed[i].fields), []).append(i)
    return parsed, shapes, list(groups.values())


def check_image_header(data, size, formats):
    """Raise :class:`PayloadError` unless ``data`` is an image in one of ``formats`` (PIL names, e.g.
    "JPEG") whose header gives the (h, w) ``size``; read from the header alone, before any pixel is decoded."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt, (w, h) = im.format, im.size
    except Exception as e:  # noqa: BLE001  (PIL raises many kinds for bad input)
        raise PayloadError(f"payload image is not a readable {'/'.join(formats)} ({type(e).__name__})") from None
    if fmt not in formats or (h, w) != tuple(size):
        raise PayloadError(f"payload image is a {w}x{h} {fmt}; expected a {'/'.join(formats)} of the payload's "
                           f"size {size[1]}x{size[0]}")
