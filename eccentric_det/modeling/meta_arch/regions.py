"""Region-level Dynamic ECC for detection: :mod:`eccentric_det.split.regions`' rule on Detectron2 tensors and
Instances, and the cloud's proposal counts on a crop."""
import contextlib
import math

import torch
from detectron2.structures import Instances

from ...split import regions


def in_tiles(boxes, tiles, tile_px, scale=(1.0, 1.0)):
    """:func:`eccentric_det.split.regions.in_tiles` of a boxes tensor, as a bool tensor on its device."""
    return torch.from_numpy(regions.in_tiles(boxes.detach().cpu().numpy(), tiles, tile_px, scale)).to(boxes.device)


def merge_regions(edge, cloud, tiles, tile_px, image_size):
    """:func:`eccentric_det.split.regions.merge_order` of Instances at the output size: one Instances of the edge's
    detections outside the sent ``tiles`` and the cloud's (already those of the sent tiles), by score (``image_size``:
    the network input's)."""
    numpy = lambda t: t.detach().cpu().numpy()  # noqa: E731
    keep, order = regions.merge_order(numpy(edge.pred_boxes.tensor), numpy(edge.scores), numpy(cloud.scores), tiles,
                                      tile_px, regions.input_scale(image_size, edge.image_size))
    device = edge.scores.device
    edge = edge[torch.from_numpy(keep).to(device)]
    fields = ("pred_boxes", "scores", "pred_classes")
    parts = [Instances(edge.image_size, **{k: i.get(k).to(device) for k in fields}) for i in (edge, cloud)]
    return Instances.cat(parts)[torch.from_numpy(order).to(device)]


@contextlib.contextmanager
def scaled_proposals(rpn, share):
    """Detectron2's RPN with its test-time pre- and post-NMS proposal counts times ``share`` (a crop's share of the
    image), so the ROI heads' work on a crop falls with its area as the convolutions' does."""
    saved = rpn.pre_nms_topk[False], rpn.post_nms_topk[False]
    rpn.pre_nms_topk[False], rpn.post_nms_topk[False] = (max(1, math.ceil(n * min(share, 1.0))) for n in saved)
    try:
        yield
    finally:
        rpn.pre_nms_topk[False], rpn.post_nms_topk[False] = saved
