"""Region-level Dynamic ECC for detection: which detections belong to the sent tiles, the edge's merge of the
cloud's detections there with its own elsewhere, and the cloud's proposal counts on a crop."""
import contextlib
import math

import torch
from detectron2.structures import Instances

from ...split import region_gate


def in_tiles(boxes, tiles, tile_px, scale=(1.0, 1.0)):
    """:func:`eccentric_det.split.region_gate.in_tiles` of a boxes tensor, as a bool tensor on its device."""
    return torch.from_numpy(region_gate.in_tiles(boxes.detach().cpu().numpy(), tiles, tile_px, scale)).to(boxes.device)


def merge_regions(edge, cloud, tiles, tile_px, image_size):
    """One Instances at the output size: the cloud's detections (already those of the sent tiles) and the edge's
    whose box centre lies outside the sent tiles (``image_size``: the network input's, where the tiles are laid)."""
    oh, ow = edge.image_size
    scale = (image_size[0] / oh, image_size[1] / ow)
    edge = edge[~in_tiles(edge.pred_boxes.tensor, tiles, tile_px, scale)]
    fields = ("pred_boxes", "scores", "pred_classes")
    parts = [Instances(edge.image_size, **{k: i.get(k).to(edge.scores.device) for k in fields}) for i in (cloud, edge)]
    merged = Instances.cat(parts)
    return merged[merged.scores.argsort(descending=True)]


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
