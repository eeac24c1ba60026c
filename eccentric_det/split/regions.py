"""Region-level Dynamic ECC's one rule for boxes and tiles (numpy, no Detectron2): the tile holding a box's centre,
and the edge's merge (the cloud's detections in the sent tiles, the edge's elsewhere, by score). The in-process model
(:func:`eccentric_det.modeling.meta_arch.regions.merge_regions`, Instances), the reuse cache and the edge's stream
(:func:`merge_region_detections`, the wire format) all use it. Tiles are laid on the network input; boxes at the
output size come with ``scale`` (:func:`input_scale`)."""
import numpy as np


def input_scale(image_size, output_size):
    """(y, x) factors from the output size to the network input's ``image_size``, where the tiles are laid."""
    return image_size[0] / output_size[0], image_size[1] / output_size[1]


def centre_tiles(boxes, tile_px, grid, scale=(1.0, 1.0)):
    """(row, col) int arrays of the tile of ``grid`` (rows, cols) of ``tile_px`` pixels holding each xyxy box's centre
    (the box times ``scale`` (y, x)); centres outside the grid belong to its nearest tile."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4) * np.array([scale[1], scale[0], scale[1], scale[0]])
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    return (np.clip(cy // tile_px, 0, grid[0] - 1).astype(int), np.clip(cx // tile_px, 0, grid[1] - 1).astype(int))


def in_tiles(boxes, tiles, tile_px, scale=(1.0, 1.0)):
    """Bool array: does each xyxy box's centre (:func:`centre_tiles`) lie in a set tile of ``tiles`` ([rows, cols])?"""
    tiles = np.asarray(tiles, bool)
    return tiles[centre_tiles(boxes, tile_px, tiles.shape, scale)]


def merge_order(edge_boxes, edge_scores, cloud_scores, tiles, tile_px, scale=(1.0, 1.0)):
    """(keep, order) of the edge's merge: ``keep``, the edge's detections whose box centre lies outside the sent
    ``tiles``; ``order``, the merged list (the edge's kept, then the cloud's) by score, the earlier first on ties."""
    keep = ~in_tiles(edge_boxes, tiles, tile_px, scale)
    scores = np.concatenate([np.asarray(edge_scores, np.float64).reshape(-1)[keep],
                             np.asarray(cloud_scores, np.float64).reshape(-1)])
    return keep, np.argsort(-scores, kind="stable")


def merge_region_detections(edge, cloud, tiles, tile_px, image_size):
    """:func:`merge_order` in the wire format (``boxes``, ``scores``, ``classes``, ``image_size``; ``image_size``:
    the network input's)."""
    keep, order = merge_order(edge["boxes"], edge["scores"], cloud["scores"], tiles, tile_px,
                              input_scale(image_size, edge["image_size"]))
    rows = [r for r, k in zip(zip(edge["boxes"], edge["scores"], edge["classes"]), keep) if k]
    rows += list(zip(cloud["boxes"], cloud["scores"], cloud["classes"]))
    rows = [rows[i] for i in order]
    return {"boxes": [list(r[0]) for r in rows], "scores": [r[1] for r in rows], "classes": [r[2] for r in rows],
            "image_size": list(edge["image_size"])}
