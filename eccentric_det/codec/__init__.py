"""Feature codec, payload format and payload validation (independent of Detectron2).

Names are loaded on first use, so that ``eccentric_det.codec.payload`` (what an edge device writes) does not
pull in CompressAI's models or the cloud's bounded decoder.
"""
import importlib

_EXPORTS = {
    **dict.fromkeys(("CODEC_REGISTRY", "CodecOutput", "FeatureCodec", "Latents", "build_codec"), ".feature_codec"),
    **dict.fromkeys(("CodedFeature", "CoderTables"), ".coding"),
    **dict.fromkeys(("FIELD_RATE", "FIELD_SCALE_INDEXES", "FIELD_TILES", "KIND_FEATURES", "KIND_IMAGE", "Payload",
                     "PayloadError", "fleet_key"), ".payload"),
    **dict.fromkeys(("PayloadLimits", "PayloadSpec", "check_payload", "parse_payloads"), ".validation"),
}
__all__ = list(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'eccentric_det.codec' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
