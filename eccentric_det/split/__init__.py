"""The task-neutral split core: the edge step and its decision, the offload rule, payloads (build, parse,
check, group), image codecs, and the one edge -> codec -> tail path. Detection (EccentricRCNN) and
classification (SplitTimmClassifier) are thin task adapters around it."""
from .decision import HALVES, OFFLOAD_MODES, POLICIES, EdgeDecision, check_choice, should_offload
from .image_codecs import IMAGE_CODECS, decode_image, encode_image, image_fingerprint, tensor_to_hwc
from .model import SplitModel
from .path import SplitOutput, run_split

__all__ = ["HALVES", "OFFLOAD_MODES", "POLICIES", "EdgeDecision", "check_choice", "should_offload", "IMAGE_CODECS",
           "decode_image", "encode_image", "image_fingerprint", "tensor_to_hwc", "SplitModel", "SplitOutput",
           "run_split"]
