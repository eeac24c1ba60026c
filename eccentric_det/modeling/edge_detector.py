"""The edge's own small detector (Independent and Dynamic ECC), reading the same trunk it codes."""
from detectron2.modeling import FPN, Backbone
from detectron2.modeling.backbone.fpn import LastLevelMaxPool
from detectron2.modeling.proposal_generator import build_proposal_generator
from detectron2.modeling.roi_heads import build_roi_heads
from torch import nn

from .backbone.resnet_stages import STAGES, build_resnet_parts
from .backbone.split_resnet import edge_resnets_cfg


class EdgeStages(Backbone):
    """Bottom-up of the edge detector: the edge ResNet stages after ``start`` (a dict of trunk features
    comes in), or the whole edge ResNet when ``start`` is None (an image comes in)."""

    def __init__(self, parts, shapes, start, out_features):
        super().__init__()
        self.start, self.names = start, list(parts)
        for name, module in parts.items():
            self.add_module(name, module)
        self._out_features = list(out_features)
        self._out_feature_channels = {f: shapes[f].channels for f in out_features}
        self._out_feature_strides = {f: shapes[f].stride for f in out_features}

    def forward(self, x):
        outs = dict(x) if isinstance(x, dict) else {}
        h = x[self.start] if isinstance(x, dict) else x
        for name in self.names:
            h = getattr(self, name)(h)
            outs[name] = h
        return {f: outs[f] for f in self._out_features}


def edge_detector_cfg(cfg):
    """The config of the edge detector: the main config with the edge's network widths."""
    E = cfg.MODEL.ECCENTRIC.EDGE
    c = cfg.clone()
    c.defrost()
    c.MODEL.RESNETS.merge_from_other_cfg(edge_resnets_cfg(cfg))
    c.MODEL.FPN.OUT_CHANNELS = E.FPN_OUT_CHANNELS
    c.MODEL.ROI_BOX_HEAD.FC_DIM = E.BOX_FC_DIM
    c.MODEL.ROI_HEADS.NAME = "KnowledgeAdaptedROIHeads"
    c.MODEL.ECCENTRIC.ROI_ADAPTER = False
    return c


class EdgeDetector(nn.Module):
    """FPN + RPN + ROI heads of the edge. ``start`` names the last shared trunk stage (None: own trunk)."""

    def __init__(self, cfg, start=None, in_channels=3):
        super().__init__()
        ecfg = edge_detector_cfg(cfg)
        first = STAGES.index(start) + 1 if start else 0
        parts, shapes = build_resnet_parts(ecfg.MODEL.RESNETS, in_channels, STAGES[first:])
        bottom_up = EdgeStages(parts, shapes, start, ecfg.MODEL.FPN.IN_FEATURES)
        self.backbone = FPN(bottom_up=bottom_up, in_features=ecfg.MODEL.FPN.IN_FEATURES,
                            out_channels=ecfg.MODEL.FPN.OUT_CHANNELS, norm=ecfg.MODEL.FPN.NORM,
                            top_block=LastLevelMaxPool(), fuse_type=ecfg.MODEL.FPN.FUSE_TYPE)
        self.proposal_generator = build_proposal_generator(ecfg, self.backbone.output_shape())
        self.roi_heads = build_roi_heads(ecfg, self.backbone.output_shape())

    def forward(self, images, x, gt_instances=None):
        """``x``: trunk features (dict) or the normalised image tensor. Returns (features, results, losses)."""
        features = self.backbone(x)
        proposals, proposal_losses = self.proposal_generator(images, features, gt_instances)
        results, detector_losses = self.roi_heads(images, features, proposals, gt_instances)
        return features, results, {**proposal_losses, **detector_losses}
