"""Feature codec and payload format (independent of Detectron2)."""
from .feature_codec import CODECS, CodecOutput, CodedFeature, FeatureCodec
from .payload import KIND_FEATURES, KIND_IMAGE, Payload, PayloadError, check_payload, parse_payloads

__all__ = ["CODECS", "CodecOutput", "CodedFeature", "FeatureCodec", "KIND_FEATURES", "KIND_IMAGE",
           "Payload", "PayloadError", "check_payload", "parse_payloads"]
