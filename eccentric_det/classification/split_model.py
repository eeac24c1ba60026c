"""SplitTimmClassifier: a timm classifier whose work is split between an edge device and the cloud.

* ``edge_half`` (:class:`TimmEdge`): the edge timm model run to its split feature with ``forward_intermediates``
  (pruned there with ``prune_intermediate_layers`` unless it also answers on its own).
* ``codec`` (:class:`FeatureCodec`, built for ``half`` "edge", "cloud" or "both"): encoder on the edge, decoder on
  the cloud. Edge and cloud may be different timm models: the decoder maps the edge's channels to the cloud's.
* ``cloud_half`` (:class:`TimmCloud`): the cloud timm model from the split on, then its head.
* ``edge_step(images) -> list[EdgeDecision]``, ``edge(images) -> list[Payload]``, ``cloud(payloads) -> logits``
  move real bytes (the classification adapter around :class:`eccentric_det.split.SplitModel`); ``forward`` is
  the training path (likelihoods instead of bytes).

Only timm's public API is used: ``create_model``, ``feature_info``, ``forward_intermediates``,
``prune_intermediate_layers``, ``forward_features`` and ``forward_head``.
"""
import copy
from dataclasses import dataclass
from typing import Dict, Optional

import timm
import torch
from detectron2.config import configurable
from timm.models import FeatureInfo
from torch import nn

from ..codec import PayloadLimits, build_codec
from ..split.gate import softmax_uncertainty
from ..inputs import ImageNormalizer
from ..split import HALVES, OFFLOAD_MODES, POLICIES, SplitModel, check_choice, encode_image, run_split, tensor_to_hwc
from ..split.image_codecs import check_codec


@dataclass
class ClsOutput:
    """Training-path result of :meth:`SplitTimmClassifier.forward`."""

    logits: Optional[torch.Tensor]  # the cloud's (None for an edge-only model)
    edge_logits: Optional[torch.Tensor]  # the edge's own head (None when it has none)
    likelihoods: Dict[str, torch.Tensor]
    features: Dict[str, torch.Tensor]  # "split": the decoded feature the cloud consumes, "final": before the head


def create_timm(name, num_classes, in_chans, kwargs=None, device=None):
    """``timm.create_model`` without pretrained weights (``device="meta"``: structure only)."""
    with torch.device(device or "cpu"):
        return timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_chans,
                                 **dict(kwargs or {}))


def feature_info(model):
    """timm's FeatureInfo over every feature ``forward_intermediates`` can return."""
    if not hasattr(model, "forward_intermediates"):
        raise ValueError(f"{type(model).__name__} has no forward_intermediates: timm cannot split it")
    return FeatureInfo(model.feature_info, list(range(len(model.feature_info))))


def _flat_children(model):
    """(name, module) of the model's children, Sequential/ModuleList flattened one level (as timm's features_only)."""
    for name, child in model.named_children():
        if isinstance(child, (nn.Sequential, nn.ModuleList)):
            for sub, m in child.named_children():
                yield f"{name}.{sub}", m
        else:
            yield name, child


@torch.no_grad()
def trace_split(model, index, input_shape):
    """Prune a copy of ``model`` at feature ``index`` and run it once: the names of the children that
    compute that feature (see :func:`_flat_children`) and the feature's shape [C, h, w]."""
    ref = copy.deepcopy(model).eval()
    ref.prune_intermediate_layers(indices=[index], prune_norm=True, prune_head=True)
    called = []
    hooks = [m.register_forward_hook(lambda *_, n=n: called.append(n))
             for n, m in _flat_children(ref) if not isinstance(m, nn.Identity)]
    feat = ref.forward_intermediates(torch.zeros(1, *input_shape), indices=[index], intermediates_only=True)[0]
    for h in hooks:
        h.remove()
    return list(dict.fromkeys(called)), tuple(feat.shape[1:])


class TimmEdge(nn.Module):
    """Edge half: the edge timm model up to feature ``split_index`` and, with ``own_head``, on to its own logits."""

    def __init__(self, model, split_index, own_head):
        super().__init__()
        if not own_head:
            model.prune_intermediate_layers(indices=[split_index], prune_norm=True, prune_head=True)
        self.model, self.split_index, self.own_head = model, split_index, own_head

    def forward(self, x):
        """(feature at the split, own logits or None) for a normalised batch."""
        if not self.own_head:
            return self.model.forward_intermediates(x, indices=[self.split_index], intermediates_only=True)[0], None
        final, (feat,) = self.model.forward_intermediates(x, indices=[self.split_index])
        return feat, self.model.forward_head(final)


class TimmCloud(nn.Module):
    """Cloud half: the cloud timm model from feature ``split_index`` on (from the image when it is None).
    The modules that compute the split feature are replaced by ``nn.Identity`` (the cloud does not hold
    them), so ``forward_features`` runs the rest. Token models (ViT) continue on the feature's tokens."""

    def __init__(self, model, split_index, input_shape):
        super().__init__()
        self.split_index, self.tokens = split_index, hasattr(model, "num_prefix_tokens")
        self.feature_shape = None
        if split_index is not None:
            if self.tokens and model.num_prefix_tokens:
                raise ValueError(f"{type(model).__name__} has {model.num_prefix_tokens} prefix (class/register) "
                                 f"tokens, which a spatial payload cannot carry: create it with class_token=False, "
                                 f"global_pool='avg' (MODEL.CLS.TIMM_KWARGS)")
            names, self.feature_shape = trace_split(model, split_index, input_shape)
            for name in names:
                model.set_submodule(name, nn.Identity())
        self.model = model

    def forward(self, x):
        """(final features, logits) from the decoded split feature (or the normalised image)."""
        m = self.model
        if self.tokens and self.split_index is not None:
            final = m.norm(m.blocks(x.flatten(2).transpose(1, 2)))
        else:
            final = m.forward_features(x)
        return final, m.forward_head(final)


class SplitTimmClassifier(SplitModel, nn.Module):
    """See the module docstring. ``offload_mode`` "image" is the cloud-only baseline: the edge sends the image coded
    as ``image_codec`` (name, quality: PNG at level 9 by default; JPEG, WebP) and the cloud runs the whole cloud
    model. ``policy``: "always" offload, "never" (the edge's own head
    answers) or "dynamic" (offload when 1 - the edge's max softmax is at least ``threshold``). ``image_size`` is the
    cloud model's input, ``edge_image_size`` the edge model's (None: the same); images are resized to each, so a cheap
    edge at a small size can feed a cloud at a larger one when both split features have the same grid."""

    @configurable
    def __init__(self, *, cloud_name, edge_name="", split_index=2, edge_split_index=-1, num_classes=10, in_chans=3,
                 image_size=(224, 224), edge_image_size=None, pixel_mean=(123.675, 116.28, 103.53),
                 pixel_std=(58.395, 57.12, 57.375),
                 codec=None, offload_mode="features", policy="always", threshold=0.5, half="both",
                 cloud_kwargs=None, edge_kwargs=None, payload_limits=None, image_codec=("png", 9)):
        super().__init__()
        for key, value, allowed in (("OFFLOAD_MODE", offload_mode, OFFLOAD_MODES), ("OFFLOAD.POLICY", policy, POLICIES),
                                    ("HALF", half, HALVES)):
            check_choice(key, value, allowed)
        if offload_mode == "image" and policy != "always":
            raise ValueError("OFFLOAD_MODE 'image' (cloud-only) has no edge model: OFFLOAD.POLICY must be 'always'")
        self.offload_mode, self.policy, self.threshold, self.half = offload_mode, policy, threshold, half
        self.in_chans, self.image_size = in_chans, tuple(image_size)
        check_codec(*image_codec)
        self.image_codec, self.image_channels, self.rgb = tuple(image_codec), in_chans, True  # image payloads
        self.payload_limits = payload_limits or PayloadLimits(2048, 2048)
        self.cloud_spec = (cloud_name, num_classes, in_chans, cloud_kwargs)  # to count the unsplit model's FLOPs
        self.normalizer = ImageNormalizer(pixel_mean, pixel_std, image_size)  # the cloud's input
        edge_size = tuple(edge_image_size or image_size)
        self.edge_normalizer = self.normalizer if edge_size == self.image_size else \
            ImageNormalizer(pixel_mean, pixel_std, edge_size)
        input_shape = (in_chans, *self.image_size)
        if not edge_name:
            edge_name, edge_kwargs = cloud_name, cloud_kwargs
        edge_index = split_index if edge_split_index < 0 else edge_split_index
        features = offload_mode == "features"
        uses_cloud = policy != "never"
        self.edge_half = self.cloud_half = self.codec = None
        # Each half builds its own model; the other half's model is built on the meta device, for feature_info only.
        edge_model = cloud_model = None
        if features:
            edge_device = "meta" if half == "cloud" else None
            edge_model = create_timm(edge_name, num_classes, in_chans, edge_kwargs, edge_device)
        if uses_cloud:
            cloud_device = "meta" if half == "edge" else None
            cloud_model = create_timm(cloud_name, num_classes, in_chans, cloud_kwargs, cloud_device)
        if features and uses_cloud:
            edge_info, cloud_info = feature_info(edge_model), feature_info(cloud_model)
            edge_stride, cloud_stride = edge_info.reduction(edge_index), cloud_info.reduction(split_index)
            if any(e * cloud_stride != c * edge_stride for e, c in zip(edge_size, self.image_size)):
                raise ValueError(f"the edge's split feature {edge_index} (stride {edge_stride} of its {edge_size} "
                                 f"input) and the cloud's {split_index} (stride {cloud_stride} of {self.image_size}) "
                                 f"have different grids: set MODEL.CLS.EDGE_SPLIT_INDEX (or MODEL.CLS.EDGE_IMAGE_SIZE) "
                                 f"so that input size / stride is the same on both")
            codec = dict(codec or {})
            # a positional prior codes the one split feature size of this input size (stride-2 steps round up)
            positional = tuple(-(-s // cloud_stride) for s in self.image_size) if codec.pop("positional", False) \
                else None
            self.codec = build_codec(codec.pop("name", "factorized"), edge_info.channels(edge_index),
                                     cloud_info.channels(split_index), half=half, positional=positional, **codec)
        if features and half != "cloud":
            self.edge_half = TimmEdge(edge_model, edge_index, own_head=policy != "always")
        if uses_cloud and half != "edge":
            self.cloud_half = TimmCloud(cloud_model, split_index if features else None, input_shape)

    @classmethod
    def from_config(cls, cfg):
        C, E = cfg.MODEL.CLS, cfg.MODEL.ECCENTRIC
        return {
            "cloud_name": C.TIMM_NAME, "edge_name": C.EDGE_TIMM_NAME, "split_index": C.SPLIT_INDEX,
            "edge_split_index": C.EDGE_SPLIT_INDEX, "num_classes": C.NUM_CLASSES, "in_chans": C.IN_CHANS,
            "image_size": (C.IMAGE_SIZE, C.IMAGE_SIZE),
            "edge_image_size": (C.EDGE_IMAGE_SIZE, C.EDGE_IMAGE_SIZE) if C.EDGE_IMAGE_SIZE else None,
            "pixel_mean": C.PIXEL_MEAN, "pixel_std": C.PIXEL_STD,
            "codec": {"name": E.CODEC.NAME, "latent_channels": E.CODEC.LATENT_CHANNELS,
                      "hidden_channels": E.CODEC.HIDDEN_CHANNELS, "downsample": E.CODEC.DOWNSAMPLE,
                      "rate_levels": max(len(E.CODEC.RATE_WEIGHTS), 1), "rate": E.CODEC.RATE,
                      "positional": E.CODEC.POSITIONAL_PRIOR},
            "offload_mode": E.OFFLOAD_MODE, "policy": E.OFFLOAD.POLICY, "threshold": E.OFFLOAD.THRESHOLD,
            "half": E.HALF, "cloud_kwargs": dict(C.TIMM_KWARGS), "edge_kwargs": dict(C.EDGE_TIMM_KWARGS),
            "payload_limits": PayloadLimits.from_config(cfg, 2048, 2048),
            "image_codec": (C.IMAGE_CODEC, C.IMAGE_QUALITY),
        }

    @property
    def device(self):
        return self.normalizer.mean.device

    # ------------------------------------------------------------------ split core hooks
    def split_parts(self):
        """(edge, codec, tail) of the split path (see :mod:`eccentric_det.split.path`): normalised images ->
        (split feature, own logits or None), the codec, decoded feature -> (final features, logits)."""
        return self.edge_half, self.codec, self.cloud_half

    def has_edge(self):
        return self.half != "cloud"

    def has_cloud(self):
        return self.cloud_half is not None

    def feature_geometry(self):
        return {"feature_hw": tuple(self.cloud_half.feature_shape[1:])}

    def edge_export(self):
        """(module holding the edge's parameters, manifest, traceable own answer or None) for
        :func:`eccentric_det.deploy.export.export_edge`."""
        n = self.edge_normalizer
        manifest = {"task": "classification", "policy": self.policy, "threshold": self.threshold,
                    "input": {"pixel_mean": n.mean.flatten().tolist(), "pixel_std": n.std.flatten().tolist(),
                              "image_size": list(n.image_size)}}
        return self.edge_half, manifest, None if self.policy == "always" else (lambda x, logits, size: (logits,))

    def edge_input(self, image):
        size = tuple(image.shape[-2:])
        return (self.edge_normalizer(image[None]) if self.edge_half is not None else None), size, size, image

    def edge_answer(self, x, logits, image_size, output_size):
        """The edge's own logits [K] and 1 - their max softmax."""
        return logits[0], float(softmax_uncertainty(logits[0]))

    def cloud_tail_batch(self, x, payloads):
        return self.cloud_half(x)[1]

    def cloud_image_batch(self, images, payloads):
        rgb = [torch.from_numpy(img[:, :, ::-1].transpose(2, 0, 1).copy()) for img in images]  # BGR -> RGB
        return self.cloud_half(self.normalizer(torch.stack(rgb)))[1]

    def cloud_results(self, logits, payloads, ms):
        return list(logits)

    # ------------------------------------------------------------------ training path
    def forward(self, images, run_cloud=True, rate=None):
        """Images [B, C, H, W] (0-255) -> :class:`ClsOutput`; ``run_cloud=False`` stops after the edge; ``rate``:
        a variable-rate codec's level (a number, or one per image)."""
        if self.edge_half is None:
            final, logits = self.cloud_half(self.normalizer(images))
            return ClsOutput(logits, None, {}, {"final": final})
        x = self.edge_normalizer(images)
        if self.cloud_half is None or not run_cloud:
            return ClsOutput(None, self.edge_half(x)[1], {}, {})
        out = run_split(*self.split_parts(), x, rate=rate)
        final, logits = out.out
        return ClsOutput(logits, out.extra, out.likelihoods, {"split": out.x_hat, "final": final})

    @torch.no_grad()
    def cloud(self, payloads, key=None):
        """Logits [N, K] for payloads, in order (see :meth:`eccentric_det.split.SplitModel.cloud`)."""
        return torch.stack(super().cloud(payloads, key))


def encode_png(image):
    """A [C, H, W] uint8-valued image (RGB order for 3 channels) as PNG bytes, at maximum compression."""
    return encode_image(tensor_to_hwc(image, rgb=True), "png", 9)
