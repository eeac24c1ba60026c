"""ROI heads that consume the edge's (decoded) features and expose their box outputs for distillation."""
import torch
from detectron2.config import configurable
from detectron2.modeling import ROI_HEADS_REGISTRY, StandardROIHeads
from torch import nn


def box_outputs(roi_heads, features, boxes):
    """Class logits and box deltas of any ``StandardROIHeads`` for the given boxes (a list of Boxes)."""
    pooled = roi_heads.box_pooler([features[f] for f in roi_heads.box_in_features], boxes)
    return roi_heads.box_predictor(roi_heads.box_head(pooled))


@ROI_HEADS_REGISTRY.register()
class KnowledgeAdaptedROIHeads(StandardROIHeads):
    """``StandardROIHeads`` for features that come from the edge through the codec.

    * A zero-initialised residual 1x1 adapter per input level (``MODEL.ECCENTRIC.ROI_ADAPTER``) lets
      knowledge adaptation correct the decoded features for the head; at initialisation it is the
      identity, so stock weights behave exactly as stock.
    * In training it keeps the sampled proposal boxes and its box outputs of the last step
      (``last_boxes``, ``last_outputs``), which ROI-level distillation compares with a teacher's.
    """

    @configurable
    def __init__(self, *, adapter_channels: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.adapters = None
        if adapter_channels:
            self.adapters = nn.ModuleDict({f: nn.Conv2d(adapter_channels, adapter_channels, 1)
                                           for f in self.box_in_features})
            for conv in self.adapters.values():
                nn.init.zeros_(conv.weight)
                nn.init.zeros_(conv.bias)
        self.last_boxes, self.last_outputs = None, None
        self.box_pooler.register_forward_pre_hook(self._keep_boxes)
        self.box_predictor.register_forward_hook(self._keep_outputs)

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        if cfg.MODEL.ECCENTRIC.ROI_ADAPTER:
            ret["adapter_channels"] = input_shape[cfg.MODEL.ROI_HEADS.IN_FEATURES[0]].channels
        return ret

    def adapt(self, features):
        """Apply the residual adapters to the ROI input levels."""
        if self.adapters is None:
            return features
        return {k: v + self.adapters[k](v) if k in self.adapters else v for k, v in features.items()}

    def forward(self, images, features, proposals, targets=None):
        return super().forward(images, self.adapt(features), proposals, targets)

    def box_outputs(self, features, boxes):
        """Class logits and box deltas for given boxes, through the adapters."""
        return box_outputs(self, self.adapt(features), boxes)

    def _keep_boxes(self, module, args):
        if self.training:
            self.last_boxes = [b.clone() for b in args[1]]

    def _keep_outputs(self, module, args, output):
        if self.training:
            self.last_outputs = output


def teacher_box_outputs(teacher_roi_heads, features, boxes):
    """A frozen teacher's ROI outputs for the student's boxes (no gradient)."""
    with torch.no_grad():
        if isinstance(teacher_roi_heads, KnowledgeAdaptedROIHeads):
            return teacher_roi_heads.box_outputs(features, boxes)
        return box_outputs(teacher_roi_heads, features, boxes)
