"""Region-level Dynamic ECC: the edge's per-tile "needs the cloud" score (it lives in the edge half).

Each tile of the latent's grid (:mod:`eccentric_det.codec.tiles`) gets statistics of what the edge detector
sees there: its detections whose box centre lies in the tile (by score band), the unsure detection mass that
overlaps it, and the RPN's objectness without a confident box (an object the edge senses but cannot place
or name), beside the image's own statistics (:func:`~eccentric_det.split.gate.detection_statistics`). A
logistic model over them (:class:`RegionGate`) is fitted by recall-rate boosting on the tiles where the cloud
finds objects that the edge misses (:func:`eccentric_det.calibration.calibrate_offload_gate`, ``regions``).
"""
import numpy as np

from .gate import STAT_NAMES, LogisticGate, detection_statistics
from .regions import centre_tiles

TILE_STAT_NAMES = ("max_score", "n_low", "n_unsure", "n_confident", "unsure_mass", "max_objectness",
                   "n_objects", "n_unexplained", "inside") + tuple(f"image_{n}" for n in STAT_NAMES)


def box_iou(a, b):
    """IoU [len(a), len(b)] of xyxy boxes (numpy)."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area = lambda x: np.clip(x[:, 2:] - x[:, :2], 0, None).prod(-1)  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None] - inter, 1e-9)


def tile_statistics(boxes, scores, proposal_boxes, objectness_logits, image_size, tile_px, grid, min_score=0.05):
    """[rows * cols, len(TILE_STAT_NAMES)] float32 statistics of each tile (row-major) of ``grid``, from the edge's
    detections (xyxy ``boxes``, ``scores``) and RPN proposals (``proposal_boxes``, ``objectness_logits``), all at the
    network input's ``image_size``; a tile is ``tile_px`` pixels a side."""
    boxes, scores = np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(scores, np.float32).reshape(-1)
    keep = scores >= min_score
    boxes, scores = boxes[keep], scores[keep]
    pboxes = np.asarray(proposal_boxes, np.float32).reshape(-1, 4)
    obj = 1 / (1 + np.exp(-np.asarray(objectness_logits, np.float32).reshape(-1)))
    rows, cols = grid
    n = rows * cols
    stats = np.zeros((n, len(TILE_STAT_NAMES)), np.float32)
    r, c = centre_tiles(boxes, tile_px, grid)
    t = r * cols + c
    np.maximum.at(stats[:, 0], t, scores)
    for k, (lo, hi) in enumerate(((0.0, 0.3), (0.3, 0.7), (0.7, 1.01))):
        np.add.at(stats[:, 1 + k], t, ((scores >= lo) & (scores < hi)).astype(np.float32))
    ty, tx = np.divmod(np.arange(n), cols)
    tiles = np.stack([tx * tile_px, ty * tile_px, (tx + 1) * tile_px, (ty + 1) * tile_px], 1).astype(np.float32)
    tiles[:, 2] = np.minimum(tiles[:, 2], image_size[1])
    tiles[:, 3] = np.minimum(tiles[:, 3], image_size[0])
    if len(boxes):  # unsure mass: s(1 - s) of each detection, spread over the tiles by the share of its box in each
        lt, rb = np.maximum(boxes[:, None, :2], tiles[None, :, :2]), np.minimum(boxes[:, None, 2:], tiles[None, :, 2:])
        share = np.clip(rb - lt, 0, None).prod(-1) / np.maximum((boxes[:, 2:] - boxes[:, :2]).prod(-1), 1e-6)[:, None]
        stats[:, 4] = (share * (scores * (1 - scores))[:, None]).sum(0)
    if len(pboxes):
        pr, pc = centre_tiles(pboxes, tile_px, grid)
        pt = pr * cols + pc
        np.maximum.at(stats[:, 5], pt, obj)
        likely = obj >= 0.5
        np.add.at(stats[:, 6], pt, likely.astype(np.float32))
        confident = boxes[scores >= 0.5]
        explained = (box_iou(pboxes, confident).max(1) >= 0.5) if len(confident) else np.zeros(len(pboxes), bool)
        np.add.at(stats[:, 7], pt, (likely & ~explained).astype(np.float32))
    stats[:, 8] = np.clip(tiles[:, 2] - tiles[:, 0], 0, None) * np.clip(tiles[:, 3] - tiles[:, 1], 0, None) / tile_px ** 2
    stats[:, 9:] = detection_statistics(scores, min_score)[None]
    return stats


class RegionGate(LogisticGate):
    """P("this tile needs the cloud" | :func:`tile_statistics`). Before fitting: the tile's unsure mass and
    unexplained objectness."""

    def __init__(self, min_score=0.05):
        weight = [0.0] * len(TILE_STAT_NAMES)
        weight[TILE_STAT_NAMES.index("unsure_mass")] = 4.0
        weight[TILE_STAT_NAMES.index("n_unexplained")] = 1.0
        super().__init__(weight, -2.0)
        self.min_score = min_score

    def forward(self, stats):
        return self.probability(stats)

    def statistics(self, instances, proposals, image_size, tile_px, grid):
        """:func:`tile_statistics` of an edge detector's Instances and RPN proposals (network input size)."""
        return tile_statistics(instances.pred_boxes.tensor.detach().cpu().numpy(), instances.scores.detach().cpu().numpy(),
                               proposals.proposal_boxes.tensor.detach().cpu().numpy(),
                               proposals.objectness_logits.detach().cpu().numpy(), image_size, tile_px, grid,
                               self.min_score)
