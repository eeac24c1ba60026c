"""Feature codec, payload format and payload validation (independent of Detectron2)."""
from .feature_codec import CODECS, CodecOutput, CodedFeature, FeatureCodec
from .payload import (FIELD_RATE, FIELD_SCALE_INDEXES, FIELD_TILES, KIND_FEATURES, KIND_IMAGE, Payload,
                      PayloadError, fleet_key)
from .validation import PayloadLimits, PayloadSpec, check_payload, parse_payloads

__all__ = ["CODECS", "CodecOutput", "CodedFeature", "FeatureCodec", "FIELD_RATE", "FIELD_SCALE_INDEXES",
           "FIELD_TILES", "KIND_FEATURES", "KIND_IMAGE", "Payload", "PayloadError", "fleet_key", "PayloadLimits",
           "PayloadSpec", "check_payload", "parse_payloads"]
