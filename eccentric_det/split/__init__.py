"""The task-neutral split core: the edge step and its decision, the offload rule, payloads (build, parse,
check, group), image codecs, and the one edge -> codec -> tail path; a stream's rate control and temporal reuse
(:mod:`.rate_control`, :mod:`.reuse`); region-level offloading's box-to-tile rule and merge (:mod:`.regions`) and
gate (:mod:`.region_gate`). Detection (EccentricRCNN) and classification (SplitTimmClassifier) are thin
task adapters around it."""
from .decision import HALVES, OFFLOAD_MODES, POLICIES, EdgeDecision, check_choice, should_offload
from .frame import EdgeFrame
from .image_codecs import IMAGE_CODECS, decode_image, encode_image, image_fingerprint, tensor_to_hwc
from .model import SplitModel
from .path import SplitOutput, run_split

__all__ = ["HALVES", "OFFLOAD_MODES", "POLICIES", "EdgeDecision", "EdgeFrame", "check_choice", "should_offload",
           "IMAGE_CODECS", "decode_image", "encode_image", "image_fingerprint", "tensor_to_hwc", "SplitModel",
           "SplitOutput", "run_split"]
