"""ResNet and ResNet-FPN split into an edge trunk and a cloud tail, joined by a feature codec.

Parameter names are Detectron2's (``backbone.bottom_up.stem``, ``.res3``, ``backbone.fpn_lateral3``
...), so a stock checkpoint loads unchanged; the codec lives at ``backbone.bottom_up.codec``.
The edge trunk may be a different (e.g. slimmer) ResNet than the cloud tail: the decoder maps the
edge's channels at the split to the channels the cloud tail expects there.
"""
from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, FPN, Backbone
from detectron2.modeling.backbone.fpn import LastLevelMaxPool

from ...codec import build_codec
from ...split import HALVES, check_choice, run_split
from .resnet_stages import STAGES, build_resnet_parts, freeze_parts, stage_index


class SplitFeature:
    """The decoded split-level feature, handed to the backbone instead of an image (cloud path)."""

    def __init__(self, tensor):
        self.tensor = tensor


def edge_resnets_cfg(cfg):
    """The RESNETS node that describes the edge network (``MODEL.RESNETS`` when EDGE.RESNETS.DEPTH is 0)."""
    edge = cfg.MODEL.ECCENTRIC.EDGE.RESNETS
    return cfg.MODEL.RESNETS if edge.DEPTH == 0 else edge


class SplitResNet(Backbone):
    """Edge stages up to ``split_at`` + codec + cloud stages after it; ``half`` keeps one side only."""

    def __init__(self, edge_parts, edge_shapes, cloud_parts, cloud_shapes, codec, split_at, out_features,
                 half="both"):
        super().__init__()
        i = stage_index(split_at)
        early = [f for f in out_features if f in STAGES[:i]]
        if early:
            raise ValueError(
                f"Features {early} lie before the split at {split_at!r}, so the cloud never receives them "
                f"(MODEL.ECCENTRIC.PRE_SPLIT_LEVELS 'drop'). Remove them from MODEL.FPN.IN_FEATURES / "
                f"MODEL.RESNETS.OUT_FEATURES (and match ANCHOR_GENERATOR.SIZES, RPN.IN_FEATURES, "
                f"ROI_HEADS.IN_FEATURES), or split earlier.")
        self.split_at, self.half = split_at, half
        self.edge_names = [n for n in STAGES[:i + 1] if n in edge_parts]
        self.cloud_names = [n for n in STAGES[i + 1:] if n in cloud_parts]
        for name in self.edge_names + self.cloud_names:
            self.add_module(name, edge_parts.get(name) or cloud_parts.get(name))
        self.codec = codec
        self.edge_shapes = {n: edge_shapes[n] for n in STAGES[:i + 1]}
        self._out_features = list(out_features)
        self._out_feature_channels = {f: cloud_shapes[f].channels for f in out_features}
        self._out_feature_strides = {f: cloud_shapes[f].stride for f in out_features}
        self.likelihoods = {}

    def edge_forward(self, x):
        """Image -> ``{stage: feature}`` for every edge stage (the last one is coded and sent)."""
        outs = {}
        for name in self.edge_names:
            x = getattr(self, name)(x)
            outs[name] = x
        return outs

    def edge_part(self, x):
        """Image -> (split feature, ``{stage: feature}`` of every edge stage): the edge of the split path."""
        trunk = self.edge_forward(x)
        return trunk[self.split_at], trunk

    def cloud_forward(self, x):
        """Decoded split feature -> the requested cloud features."""
        outs = {self.split_at: x}
        for name in self.cloud_names:
            x = getattr(self, name)(x)
            outs[name] = x
        return {f: outs[f] for f in self._out_features}

    def forward(self, x):
        if isinstance(x, SplitFeature):
            return self.cloud_forward(x.tensor)
        out = run_split(self.edge_part, self.codec, self.cloud_forward, x)
        self.likelihoods = out.likelihoods
        return out.out


class EdgeHalfBackbone(Backbone):
    """Holds the edge half of a split backbone under the same name (``backbone.bottom_up``)."""

    def __init__(self, bottom_up):
        super().__init__()
        self.bottom_up = bottom_up
        self._out_features = []

    def forward(self, x):
        raise RuntimeError("the edge half (MODEL.ECCENTRIC.HALF 'edge') has no cloud backbone: "
                           "use model.edge_step()/model.edge()")


def build_split_resnet(cfg, input_shape, out_features):
    """Build a :class:`SplitResNet` (the half in ``MODEL.ECCENTRIC.HALF``) from a config."""
    E = cfg.MODEL.ECCENTRIC
    check_choice("HALF", E.HALF, HALVES)
    if E.PRE_SPLIT_LEVELS != "drop":
        raise ValueError(f"MODEL.ECCENTRIC.PRE_SPLIT_LEVELS must be 'drop', got {E.PRE_SPLIT_LEVELS!r}.")
    i = stage_index(E.SPLIT_AT)
    edge_names = STAGES[:i + 1] if E.HALF != "cloud" else ()
    cloud_names = STAGES[i + 1:] if E.HALF != "edge" else ()
    edge_parts, edge_shapes = build_resnet_parts(edge_resnets_cfg(cfg), input_shape.channels, edge_names)
    cloud_parts, cloud_shapes = build_resnet_parts(cfg.MODEL.RESNETS, input_shape.channels, cloud_names)
    C = E.CODEC
    if C.POSITIONAL_PRIOR:
        raise ValueError("MODEL.ECCENTRIC.CODEC.POSITIONAL_PRIOR codes a latent of one fixed size: classification "
                         "only (detection inputs vary in size); set it False")
    codec = build_codec(C.NAME, edge_shapes[E.SPLIT_AT].channels, cloud_shapes[E.SPLIT_AT].channels,
                        C.LATENT_CHANNELS, C.HIDDEN_CHANNELS, C.DOWNSAMPLE, half=E.HALF,
                        rate_levels=max(len(C.RATE_WEIGHTS), 1), rate=C.RATE)
    freeze_parts({**edge_parts, **cloud_parts}, cfg.MODEL.BACKBONE.FREEZE_AT)
    return SplitResNet(edge_parts, edge_shapes, cloud_parts, cloud_shapes, codec, E.SPLIT_AT, out_features,
                       E.HALF)


@BACKBONE_REGISTRY.register()
def build_split_resnet_backbone(cfg, input_shape: ShapeSpec):
    """Split ResNet whose cloud side returns ``MODEL.RESNETS.OUT_FEATURES``."""
    return build_split_resnet(cfg, input_shape, cfg.MODEL.RESNETS.OUT_FEATURES)


@BACKBONE_REGISTRY.register()
def build_split_resnet_fpn_backbone(cfg, input_shape: ShapeSpec):
    """Split ResNet under Detectron2's FPN (on the cloud); the edge half holds the trunk only."""
    bottom_up = build_split_resnet(cfg, input_shape, cfg.MODEL.FPN.IN_FEATURES)
    if cfg.MODEL.ECCENTRIC.HALF == "edge":
        return EdgeHalfBackbone(bottom_up)
    return FPN(bottom_up=bottom_up, in_features=cfg.MODEL.FPN.IN_FEATURES, out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
               norm=cfg.MODEL.FPN.NORM, top_block=LastLevelMaxPool(), fuse_type=cfg.MODEL.FPN.FUSE_TYPE)
