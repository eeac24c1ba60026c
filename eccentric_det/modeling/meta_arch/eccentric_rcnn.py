"""EccentricRCNN: a Generalized R-CNN whose work is split between an edge device and the cloud.

* ``edge(batched_inputs) -> list[Payload]``: what each image would send.
* ``edge_step(batched_inputs) -> list[EdgeDecision]``: the edge's full step, with its own detections
  and the Dynamic ECC decision (no payload for an image it keeps).
* ``cloud(payloads) -> list[dict]``: detections from payloads (or their bytes) alone.
* ``forward`` in eval goes edge -> bytes -> cloud in one process; in training returns task losses,
  the rate loss, and the distillation/adaptation losses the config asks for.
"""
import time
from dataclasses import dataclass
from typing import List, Optional

import cv2
import numpy as np
import torch
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, GeneralizedRCNN, build_backbone
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.modeling.proposal_generator import build_proposal_generator
from detectron2.modeling.roi_heads import build_roi_heads
from detectron2.structures import ImageList, Instances

from ...codec import (KIND_FEATURES, KIND_IMAGE, CodedFeature, Payload, PayloadError, PayloadLimits, PayloadSpec,
                      parse_payloads)
from ...codec.validation import check_image_header
from ..backbone.split_resnet import SplitFeature
from ..edge_detector import EdgeDetector
from ..offload import OffloadGate
from .training import EccentricLosses, build_kd_hints

OFFLOAD_MODES = ("features", "image")
POLICIES = ("always", "never", "dynamic")


@dataclass
class EdgeDecision:
    """The edge's answer for one image."""

    payload: Optional[Payload]  # None when the image stays on the edge
    instances: Optional[Instances]  # the edge detector's own result (None without one)
    offload: bool
    score: float  # the gate's "needs the cloud" probability (1.0 without an edge detector)
    edge_ms: float


@META_ARCH_REGISTRY.register()
class EccentricRCNN(GeneralizedRCNN):
    """See the module docstring. Cloud modules keep GeneralizedRCNN's names (``backbone``,
    ``proposal_generator``, ``roi_heads``); the edge detector is ``edge_detector``, the gate ``offload_gate``."""

    @configurable
    def __init__(self, *, edge_detector=None, offload_gate=None, offload_mode="features", policy="always",
                 threshold=0.5, jpeg_quality=90, half="both", size_divisibility=32, losses=None, kd_hint=None,
                 payload_limits=None, **kwargs):
        super().__init__(**kwargs)
        if offload_mode not in OFFLOAD_MODES:
            raise ValueError(f"MODEL.ECCENTRIC.OFFLOAD_MODE must be one of {OFFLOAD_MODES}, got {offload_mode!r}")
        if policy not in POLICIES:
            raise ValueError(f"MODEL.ECCENTRIC.OFFLOAD.POLICY must be one of {POLICIES}, got {policy!r}")
        if policy != "always" and edge_detector is None and half != "cloud":
            raise ValueError(f"OFFLOAD.POLICY {policy!r} needs the edge's own detector: set "
                             f"MODEL.ECCENTRIC.EDGE.DETECTOR True")
        self.edge_detector, self.offload_gate = edge_detector, offload_gate
        self.offload_mode, self.policy, self.threshold = offload_mode, policy, threshold
        self.jpeg_quality, self.half, self.size_divisibility = jpeg_quality, half, size_divisibility
        self.losses, self.kd_hint = losses, kd_hint
        self.payload_limits = payload_limits or PayloadLimits(1333, 800)
        if losses is not None:
            losses.freeze_parameters(self)

    @classmethod
    def from_config(cls, cfg):
        E = cfg.MODEL.ECCENTRIC
        features_mode = E.OFFLOAD_MODE == "features"
        # An Independent-ECC edge device holds only its own detector, not the cloud's backbone.
        backbone = None if (E.HALF == "edge" and not features_mode) else build_backbone(cfg)
        ret = {"backbone": backbone, "pixel_mean": cfg.MODEL.PIXEL_MEAN, "pixel_std": cfg.MODEL.PIXEL_STD,
               "input_format": cfg.INPUT.FORMAT, "vis_period": cfg.VIS_PERIOD, "offload_mode": E.OFFLOAD_MODE,
               "policy": E.OFFLOAD.POLICY, "threshold": E.OFFLOAD.THRESHOLD, "jpeg_quality": E.JPEG_QUALITY,
               "half": E.HALF, "proposal_generator": None, "roi_heads": None,
               "payload_limits": PayloadLimits.from_config(cfg, cfg.INPUT.MAX_SIZE_TEST,
                                                           _max_min_size(cfg.INPUT.MIN_SIZE_TEST))}
        if features_mode and not hasattr(_bottom_up(backbone), "edge_forward"):
            raise ValueError("OFFLOAD_MODE 'features' needs a split backbone: set MODEL.BACKBONE.NAME to "
                             "build_split_resnet_fpn_backbone (or build_split_resnet_backbone)")
        ret["size_divisibility"] = getattr(backbone, "size_divisibility", 32)
        if E.HALF == "edge" and "fpn" in cfg.MODEL.BACKBONE.NAME:  # the cloud's FPN pads to its coarsest stride
            ret["size_divisibility"] = max(backbone.bottom_up._out_feature_strides.values())
        if E.HALF != "edge":
            ret["proposal_generator"] = build_proposal_generator(cfg, backbone.output_shape())
            ret["roi_heads"] = build_roi_heads(cfg, backbone.output_shape())
        if E.EDGE.DETECTOR and E.HALF != "cloud":
            ret["edge_detector"] = EdgeDetector(cfg, E.SPLIT_AT if features_mode else None)
            ret["offload_gate"] = OffloadGate(E.OFFLOAD.MIN_SCORE)
        if E.HALF == "both":
            ret["losses"] = EccentricLosses(cfg)
            if E.DISTILL.MODE == "kd":
                edge_fpn = ret["edge_detector"].backbone
                ret["kd_hint"] = build_kd_hints(E.EDGE.FPN_OUT_CHANNELS, ret["losses"].teacher_fpn_channels(),
                                                edge_fpn._out_features)
        return ret

    # ------------------------------------------------------------------ helpers
    @property
    def split_backbone(self):
        return _bottom_up(self.backbone)

    @property
    def codec(self):
        return self.split_backbone.codec

    def fingerprint(self):
        """Bytes shared by the edge and cloud halves of one trained model."""
        if self.offload_mode == "image":
            return b"JPEG"
        return self.codec.fingerprint()

    def payload_spec(self) -> PayloadSpec:
        """What this model's cloud accepts (checked before any decoding)."""
        if self.offload_mode == "image":
            return PayloadSpec(self.fingerprint(), KIND_IMAGE, self.payload_limits)
        split = self.split_backbone
        return PayloadSpec(self.fingerprint(), KIND_FEATURES, self.payload_limits, self.codec.payload_fields(),
                           dict(self.codec.config), split.edge_shapes[split.split_at].stride, self.size_divisibility)

    def train(self, mode=True):
        super().train(mode)
        if mode and self.losses is not None:
            self.losses.keep_frozen_in_eval(self)
        return self

    # ------------------------------------------------------------------ edge
    def preprocess_image(self, batched_inputs):
        """Normalise and pad to the cloud backbone's divisibility (known to the edge half too)."""
        images = [(x["image"].to(self.device) - self.pixel_mean) / self.pixel_std for x in batched_inputs]
        return ImageList.from_tensors(images, self.size_divisibility)

    @torch.no_grad()
    def edge_step(self, batched_inputs, force_offload=False) -> List[EdgeDecision]:
        """Run the edge on each image on its own (as a device would): its detector, the offload
        decision, and the payload of the images it sends."""
        return [self._edge_one(x, force_offload) for x in batched_inputs]

    def edge(self, batched_inputs) -> List[Payload]:
        """The payload of every image (as if every image were offloaded)."""
        return [d.payload for d in self.edge_step(batched_inputs, force_offload=True)]

    def _edge_one(self, inp, force_offload):
        t0 = time.perf_counter()
        images = self.preprocess_image([inp])
        out_size = (inp.get("height", images.image_sizes[0][0]), inp.get("width", images.image_sizes[0][1]))
        trunk = None
        if self.offload_mode == "features":
            trunk = self.split_backbone.edge_forward(images.tensor)
        instances, score = None, 1.0
        if self.edge_detector is not None and self.policy != "always":
            _, results, _ = self.edge_detector(images, trunk if trunk is not None else images.tensor)
            instances = detector_postprocess(results[0], *out_size)
            score = float(self.offload_gate([instances.scores.cpu()])[0])
        offload = force_offload or self.policy == "always" or (self.policy == "dynamic" and score >= self.threshold)
        payload = None
        if offload:
            if trunk is not None:
                coded = self.codec.compress(trunk[self.split_backbone.split_at])[0]
                payload = Payload(KIND_FEATURES, self.fingerprint(), tuple(images.image_sizes[0]), out_size,
                                  coded.strings, coded.fields)
            else:
                payload = Payload(KIND_IMAGE, self.fingerprint(), tuple(images.image_sizes[0]), out_size,
                                  [self._encode_jpeg(inp["image"])])
        return EdgeDecision(payload, instances, offload, score, (time.perf_counter() - t0) * 1e3)

    def _encode_jpeg(self, image):
        hwc = image.permute(1, 2, 0).cpu().numpy().astype(np.uint8)
        if self.input_format == "RGB":
            hwc = hwc[:, :, ::-1]
        ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(hwc), [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        if not ok:
            raise RuntimeError("OpenCV could not encode the image as JPEG")
        return buf.tobytes()

    # ------------------------------------------------------------------ cloud
    @torch.no_grad()
    def cloud(self, payloads, key=None) -> List[dict]:
        """Detections for payloads (``Payload`` or bytes, authenticated with the fleet ``key`` when given);
        same-shape payloads run as one batch. Every payload is checked against :meth:`payload_spec` before
        any decoding; raises :class:`PayloadError` for one this model cannot have produced."""
        if self.roi_heads is None:
            raise RuntimeError("this is an edge-half model (MODEL.ECCENTRIC.HALF 'edge'): it has no cloud side")
        parsed, shapes, groups = parse_payloads(payloads, self.payload_spec(), key)
        results = [None] * len(parsed)
        for idx in groups:
            for i, r in zip(idx, self._cloud_batch([parsed[i] for i in idx], shapes[idx[0]])):
                results[i] = r
        return results

    def _cloud_batch(self, payloads, feature_hw):
        t0 = time.perf_counter()
        sizes = [p.image_size for p in payloads]
        if payloads[0].kind == KIND_FEATURES:
            latent_hw = self.codec.latent_shape(feature_hw)
            try:
                x = self.codec.decompress([CodedFeature(p.strings, latent_hw, feature_hw, p.fields) for p in payloads])
            except (ValueError, RuntimeError) as e:
                raise PayloadError(f"payload could not be entropy-decoded: {e}") from e
            images = ImageList(x, sizes)
            features = self.backbone(SplitFeature(x))
        else:
            images = ImageList.from_tensors([self._decode_jpeg(p) for p in payloads], self.size_divisibility)
            features = self.backbone(images.tensor)
        proposals, _ = self.proposal_generator(images, features, None)
        results, _ = self.roi_heads(images, features, proposals, None)
        ms = (time.perf_counter() - t0) * 1e3 / len(payloads)
        return [{"instances": detector_postprocess(r, *p.output_size), "cloud_ms": ms}
                for r, p in zip(results, payloads)]

    def _decode_jpeg(self, p):
        check_image_header(p.strings[0], p.image_size, ("JPEG",))
        img = cv2.imdecode(np.frombuffer(p.strings[0], np.uint8), cv2.IMREAD_COLOR)
        if img is None or tuple(img.shape[:2]) != tuple(p.image_size):
            raise PayloadError(f"payload image is not a decodable JPEG of size {p.image_size}")
        if self.input_format == "RGB":
            img = img[:, :, ::-1]
        t = torch.as_tensor(np.ascontiguousarray(img.transpose(2, 0, 1)), dtype=torch.float32, device=self.device)
        return (t - self.pixel_mean) / self.pixel_std

    # ------------------------------------------------------------------ forward
    def forward(self, batched_inputs):
        if not self.training:
            return self.inference(batched_inputs)
        return self.losses(self, batched_inputs)

    def inference(self, batched_inputs, detected_instances=None, do_postprocess=True):
        """Edge -> real bytes -> cloud for every image. Each result dict carries ``instances`` and
        ``eccentric``: bytes sent, offloaded, gate score, edge and cloud ms."""
        assert detected_instances is None and do_postprocess, "EccentricRCNN.inference returns final results"
        decisions = self.edge_step(batched_inputs)
        sent = [i for i, d in enumerate(decisions) if d.offload]
        cloud_out = dict(zip(sent, self.cloud([decisions[i].payload.to_bytes() for i in sent]))) if sent else {}
        outputs = []
        for i, d in enumerate(decisions):
            c = cloud_out.get(i)
            info = {"bytes": len(d.payload.to_bytes()) if d.offload else 0, "offloaded": d.offload,
                    "score": d.score, "edge_ms": d.edge_ms, "cloud_ms": c["cloud_ms"] if c else 0.0}
            outputs.append({"instances": c["instances"] if c else d.instances, "eccentric": info})
        return outputs


def _max_min_size(min_size):
    """The largest of INPUT.MIN_SIZE_TEST (an int, or a list/tuple of sizes); 0 when it is 0 (no resize)."""
    return max(min_size) if isinstance(min_size, (list, tuple)) else int(min_size)


def _bottom_up(backbone):
    return getattr(backbone, "bottom_up", backbone)
