"""Motion-compensated temporal reuse (``MODEL.ECCENTRIC.OFFLOAD.REUSE.TRACK_IOU``): the edge follows its own
detections, reuses the cloud's answers for the objects it follows, moved as they moved, and sends a tile again for a
new object, an object the cloud saw that no track took, or after the keyframe interval. The stream loop with an
edge and a cloud stand-in: no model."""
import numpy as np
import pytest

from eccentric_det.edge.stream import EdgeStream, stream_controls
from eccentric_det.split.frame import EdgeFrame
from eccentric_det.split.reuse import ReuseCache, box_iou, greedy_match

TILE = 32  # 4 x 4 tiles over a 128 x 128 input


def frame(boxes, size=(128, 128)):
    """A region-level frame whose edge found ``boxes`` (score 0.9) and whose gate wants the tiles of their centres."""
    answer = {"boxes": [list(map(float, b)) for b in boxes], "scores": [0.9] * len(boxes),
              "classes": [0] * len(boxes), "image_size": list(size)}
    probs = np.zeros((size[0] // TILE, size[1] // TILE))
    for x0, y0, x1, y1 in boxes:
        probs[int((y0 + y1) / 2 // TILE), int((x0 + x1) / 2 // TILE)] = 1.0
    return EdgeFrame(answer=answer, score=1.0, image_size=size, output_size=size, policy="dynamic", threshold=0.5,
                     coder=lambda rate, tiles: Payload(tiles), tile_probs=probs, tile_px=TILE, tile_cells=4)


class Payload:
    def __init__(self, tiles):
        self.tiles = tiles

    def to_bytes(self, key=None):
        return b"x" * (10 * int(np.sum(self.tiles)) if self.tiles is not None else 100)


def query(cache, f, index, candidates=None):
    cache.observe(f, index)
    candidates = np.ones(np.shape(f.tile_probs), bool) if candidates is None else candidates
    return cache.reusable_tiles(f, index, candidates)


def test_box_iou_and_greedy_match():
    a = [[0, 0, 10, 10], [20, 20, 30, 30]]
    b = [[0, 0, 10, 5], [21, 20, 31, 30], [100, 100, 110, 110]]
    iou = box_iou(a, b)
    assert iou.shape == (2, 3) and iou[0, 0] == pytest.approx(0.5) and iou[0, 2] == 0
    assert greedy_match(iou, 0.5) == [(1, 1), (0, 0)]
    assert greedy_match(iou, 0.9) == []
    assert box_iou([], b).shape == (0, 3)


def test_a_followed_object_is_answered_from_the_cache_moved_as_it_moved():
    cache = ReuseCache(0.0, keyframe=5, track_iou=0.5)
    f0 = frame([[10, 10, 40, 40]])
    assert not query(cache, f0, 0).any()  # nothing answered yet
    sent = np.zeros((4, 4), bool)
    sent[0, 0] = True
    cache.store_tiles(f0, 0, sent, {"boxes": [[11, 9, 41, 39]], "scores": [0.95], "classes": [7]})
    f1 = frame([[14, 12, 44, 42]])  # the object moved by (4, 2)
    reused = query(cache, f1, 1)
    assert reused.sum() == 1 and reused[0, 0]  # its tile only: the others hold no object the edge follows
    rows = cache.cached_detections(f1, reused)
    assert len(rows) == 1
    box, score, cls = rows[0]
    assert box == pytest.approx([15, 11, 45, 41]) and score == 0.95 and cls == 7
    # the edge lost it, then found it again: a new track, which the cloud has not answered
    assert not query(cache, frame([]), 2).any()
    assert not query(cache, frame([[14, 12, 44, 42]]), 3).any()


def test_new_objects_orphans_and_the_keyframe_interval_send_the_tile_again():
    cache = ReuseCache(0.0, keyframe=3, track_iou=0.5)
    f0 = frame([[10, 10, 40, 40]])
    query(cache, f0, 0)
    sent = np.zeros((4, 4), bool)
    sent[0, 0] = True
    cache.store_tiles(f0, 0, sent, {"boxes": [[10, 10, 40, 40]], "scores": [0.9], "classes": [1]})
    assert query(cache, frame([[11, 10, 41, 40]]), 1)[0, 0]
    # a second object appears in the same tile: the tile goes to the cloud again
    assert not query(cache, frame([[12, 10, 42, 40], [2, 2, 20, 20]]), 2)[0, 0]
    # keyframe: answered at 0, reused at 1 and 2 at most
    cache = ReuseCache(0.0, keyframe=3, track_iou=0.5)
    query(cache, f0, 0)
    cache.store_tiles(f0, 0, sent, {"boxes": [[10, 10, 40, 40]], "scores": [0.9], "classes": [1]})
    assert [bool(query(cache, f0, i)[0, 0]) for i in (1, 2, 3)] == [True, True, False]
    # the cloud found a confident object there that the edge does not see: not reused until the cloud answers again
    cache = ReuseCache(0.0, keyframe=10, track_iou=0.5)
    query(cache, f0, 0)
    cache.store_tiles(f0, 0, sent, {"boxes": [[10, 10, 40, 40], [0, 0, 12, 12]], "scores": [0.9, 0.8],
                                    "classes": [1, 2]})
    assert not query(cache, f0, 1)[0, 0]
    query(cache, f0, 2)
    cache.store_tiles(f0, 2, sent, {"boxes": [[10, 10, 40, 40]], "scores": [0.9], "classes": [1]})
    assert query(cache, f0, 3)[0, 0]  # the cloud answered the tile again without it


def test_tracking_and_the_latent_rule_are_each_optional_but_one_is_needed():
    with pytest.raises(ValueError, match="TRACK_IOU"):
        ReuseCache(0.0, keyframe=5, track_iou=0.0)
    with pytest.raises(ValueError, match="REUSE.TRACK_IOU"):
        stream_controls(track_iou=1.5)
    assert stream_controls()[1] is None
    assert stream_controls(track_iou=0.5)[1].track_iou == 0.5


def test_the_stream_sends_a_moving_object_once_per_keyframe_interval():
    """EdgeStream with tracking: the cloud sees the object's tile at the first frame and after each keyframe
    interval; in between the edge answers with the cloud's class, the box moved with the edge's own."""
    answers = []

    def send(body, output_size):
        answers.append(len(body))
        x = 10 + 2 * (len(stream_frames) - 1)
        return {"boxes": [[x + 1, 10, x + 31, 40]], "scores": [0.97], "classes": [5], "cloud_ms": 1.0}

    class Edge:
        def analyse(self, image):
            return image

    rc, reuse = stream_controls(track_iou=0.5, keyframe=4)
    stream = EdgeStream(Edge(), send, rate_control=rc, reuse=reuse)
    stream_frames, results = [], []
    for i in range(9):
        x = 10 + 2 * i  # the object moves 2 px a frame, inside tile (0, 0) then (0, 1)
        stream_frames.append(i)
        results.append(stream(frame([[x, 10, x + 30, 40]])))
    assert [r.source for r in results] == ["cloud", "reused", "reused", "reused", "cloud", "reused", "reused",
                                           "reused", "cloud"]
    assert len(answers) == 3 and all(r.bytes_sent == 0 for r in results if r.source == "reused")
    for i in (1, 2, 3):  # the cloud's class and score, its box moved by the object's motion since frame 0
        d = results[i].detections
        cloud = [b for b, c in zip(d["boxes"], d["classes"]) if c == 5]
        assert cloud == [pytest.approx([11 + 2 * i, 10, 41 + 2 * i, 40])]


def test_image_level_reuses_the_whole_answer_of_followed_objects():
    cache = ReuseCache(0.0, keyframe=5, track_iou=0.5)

    def image_frame(boxes):
        f = frame(boxes)
        f.tile_probs, f.tile_px = None, 0  # image-level Dynamic ECC: one decision per frame
        return f

    f0 = image_frame([[10, 10, 40, 40], [60, 60, 90, 100]])
    cache.observe(f0, 0)
    assert cache.reusable_answer(f0, 0) is None
    cache.store_answer(f0, 0, {"boxes": [[10, 11, 40, 41], [60, 60, 90, 100], [100, 5, 120, 20]],
                               "scores": [0.9, 0.8, 0.2], "classes": [3, 4, 5], "image_size": [128, 128]})
    f1 = image_frame([[13, 10, 43, 40], [60, 62, 90, 102]])
    cache.observe(f1, 1)
    answer = cache.reusable_answer(f1, 1)
    # each object's answer moved with it; the unsure detection no object took stays where the cloud put it
    got = dict(zip(answer["classes"], answer["boxes"]))
    assert len(answer["classes"]) == 3 and got[3] == pytest.approx([13, 11, 43, 41])
    assert got[4] == pytest.approx([60, 62, 90, 102]) and got[5] == [100, 5, 120, 20]
    # the second object's cloud answer was not confident: the next frame goes to the cloud
    cache = ReuseCache(0.0, keyframe=5, track_iou=0.5)
    cache.observe(f0, 0)
    cache.store_answer(f0, 0, {"boxes": [[10, 11, 40, 41], [60, 60, 90, 100]], "scores": [0.9, 0.4],
                               "classes": [3, 4], "image_size": [128, 128]})
    cache.observe(f1, 1)
    assert cache.reusable_answer(f1, 1) is None
