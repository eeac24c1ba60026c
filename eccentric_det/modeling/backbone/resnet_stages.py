"""ResNet stems and stages built from a RESNETS config node, at any width.

Detectron2's ``build_resnet_backbone`` refuses R-18/34 narrower than 64 channels; an edge device
wants exactly such slim networks, so the stage builder here takes any width. Otherwise the modules
(and their parameter names) are Detectron2's own, so stock checkpoints load unchanged.
"""
from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, FPN
from detectron2.modeling.backbone.fpn import LastLevelMaxPool
from detectron2.modeling.backbone.resnet import BasicBlock, BasicStem, BottleneckBlock, ResNet
from torch import nn

from ...config import STAGES
_BLOCKS = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3], 50: [3, 4, 6, 3], 101: [3, 4, 23, 3], 152: [3, 8, 36, 3]}


def stage_index(name):
    """Position of a stage name in ``STAGES`` with a clear error for a typo."""
    if name not in STAGES:
        raise ValueError(f"Unknown stage {name!r}: choose one of {STAGES} (MODEL.ECCENTRIC.SPLIT_AT).")
    return STAGES.index(name)


def build_resnet_parts(rcfg, in_channels=3, names=STAGES):
    """Build the named parts (``stem``, ``res2`` ... ``res5``) of the ResNet that ``rcfg`` (a
    ``MODEL.RESNETS``-like node) describes. Returns ``{name: module}`` and ``{name: ShapeSpec}``
    with strides relative to the input image."""
    depth = rcfg.DEPTH
    if depth not in _BLOCKS:
        raise ValueError(f"RESNETS.DEPTH must be one of {sorted(_BLOCKS)}, got {depth}.")
    if getattr(rcfg, "RES5_DILATION", 1) != 1 or any(getattr(rcfg, "DEFORM_ON_PER_STAGE", [])):
        raise ValueError("Split/slim ResNets support neither RES5_DILATION != 1 nor deformable convs.")
    basic = depth in (18, 34)
    parts, shapes = {}, {}
    stem_ch = rcfg.STEM_OUT_CHANNELS
    if "stem" in names:
        parts["stem"] = BasicStem(in_channels=in_channels, out_channels=stem_ch, norm=rcfg.NORM)
    shapes["stem"] = ShapeSpec(channels=stem_ch, stride=4)
    cin, cout = stem_ch, rcfg.RES2_OUT_CHANNELS
    bottleneck = rcfg.NUM_GROUPS * rcfg.WIDTH_PER_GROUP
    for idx, name in enumerate(STAGES[1:]):
        if name in names:
            n = _BLOCKS[depth][idx]
            kwargs = dict(num_blocks=n, stride_per_block=[1 if idx == 0 else 2] + [1] * (n - 1),
                          in_channels=cin, out_channels=cout, norm=rcfg.NORM)
            if basic:
                kwargs["block_class"] = BasicBlock
            else:
                kwargs.update(block_class=BottleneckBlock, bottleneck_channels=bottleneck,
                              stride_in_1x1=rcfg.STRIDE_IN_1X1, num_groups=rcfg.NUM_GROUPS)
            parts[name] = nn.Sequential(*ResNet.make_stage(**kwargs))
        shapes[name] = ShapeSpec(channels=cout, stride=4 * 2 ** idx)
        cin, cout, bottleneck = cout, cout * 2, bottleneck * 2
    return parts, shapes


def freeze_parts(parts, freeze_at):
    """Detectron2's FREEZE_AT semantics: 1 freezes the stem, 2 the stem and res2, and so on."""
    for name, module in parts.items():
        if 0 < STAGES.index(name) + 1 <= freeze_at:
            for block in [module] if name == "stem" else module:
                block.freeze()


@BACKBONE_REGISTRY.register()
def build_slim_resnet_backbone(cfg, input_shape):
    """Detectron2's ResNet at any width (slim R-18/34 for edge devices), same parameter names."""
    parts, _ = build_resnet_parts(cfg.MODEL.RESNETS, input_shape.channels)
    stem = parts.pop("stem")
    return ResNet(stem, [list(s) for s in parts.values()], out_features=cfg.MODEL.RESNETS.OUT_FEATURES,
                  freeze_at=cfg.MODEL.BACKBONE.FREEZE_AT)


@BACKBONE_REGISTRY.register()
def build_slim_resnet_fpn_backbone(cfg, input_shape):
    """``build_slim_resnet_backbone`` under Detectron2's FPN."""
    return FPN(bottom_up=build_slim_resnet_backbone(cfg, input_shape), in_features=cfg.MODEL.FPN.IN_FEATURES,
               out_channels=cfg.MODEL.FPN.OUT_CHANNELS, norm=cfg.MODEL.FPN.NORM, top_block=LastLevelMaxPool(),
               fuse_type=cfg.MODEL.FPN.FUSE_TYPE)
