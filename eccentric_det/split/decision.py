"""What the edge decides for one image, and the rule it decides by (shared by every task)."""
from dataclasses import dataclass
from typing import Any, Optional

from ..codec import Payload

OFFLOAD_MODES = ("features", "image")  # Adaptive ECC sends coded features; Independent ECC the image
POLICIES = ("always", "never", "dynamic")
HALVES = ("both", "edge", "cloud")


def check_choice(key, value, allowed):
    """Raise ValueError naming the config key ``MODEL.ECCENTRIC.<key>`` unless ``value`` is one of ``allowed``."""
    if value not in allowed:
        raise ValueError(f"MODEL.ECCENTRIC.{key} must be one of {allowed}, got {value!r}")


def should_offload(policy, score, threshold, force=False):
    """The offload rule: "always", "never", or "dynamic" (offload when the edge's "needs the cloud" score
    is at least ``threshold``); ``force`` offloads whatever the policy."""
    return force or policy == "always" or (policy == "dynamic" and score >= threshold)


@dataclass
class EdgeDecision:
    """The edge's answer for one image."""

    payload: Optional[Payload]  # None when the image stays on the edge
    answer: Any  # the edge's own result (detection: Instances; classification: logits [K]); None without one
    offload: bool
    score: float  # "needs the cloud" (the gate's probability, or 1 - max softmax); 1.0 without an own answer
    edge_ms: float
    tiles: Any = None  # region-level Dynamic ECC: the [rows, cols] bool mask of the latent tiles sent (else None)
    tile_px: int = 0  # ... and their side in network-input pixels
