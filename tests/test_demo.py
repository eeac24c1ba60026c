"""The video demo on a short generated clip: output video, per-frame log, offload threshold, cloud
adapters and the one-line errors for bad input."""
import importlib.util
import json
import os

import cv2
import httpx
import numpy as np
import pytest
import torch
from detectron2.config import get_cfg

from eccentric_det.demo import (DemoError, EccentricPredictor, HttpCloud, compose_demo_video, format_summary,
                                run_on_video, setup_cfg)
from eccentric_det.demo.cloud import InProcessCloud
from eccentric_det.demo.shown import LabelVote
from eccentric_det.deploy.export import export_edge
from eccentric_det.edge import ExportedEdge
from eccentric_det.evaluation.video import read_frames

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "configs/quick_schedules/fashion_det_dynamic_ecc_instant_test.yaml")
OPTS = ["MODEL.ECCENTRIC.DISTILL.MODE", "task", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0"]
FRAMES, SIZE = 3, (96, 72)  # (w, h)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A few frames of smooth random colour, written with OpenCV."""
    path = str(tmp_path_factory.mktemp("clip") / "clip.mp4")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), 10, SIZE)
    assert writer.isOpened()
    rng = np.random.default_rng(0)
    for _ in range(FRAMES):
        small = rng.integers(0, 256, (SIZE[1] // 8, SIZE[0] // 8, 3), dtype=np.uint8)
        writer.write(cv2.resize(small, SIZE, interpolation=cv2.INTER_CUBIC))
    writer.release()
    return path


@pytest.fixture(scope="module")
def cfg():
    torch.manual_seed(0)
    return setup_cfg(CONFIG, OPTS)


class Recording:
    """A cloud step that remembers the bytes it was given."""

    def __init__(self, cloud):
        self.cloud, self.name, self.sizes = cloud, "recording", []

    def __call__(self, data, image_size):
        self.sizes.append(len(data))
        return self.cloud(data, image_size)


def _predictor(cfg, threshold):
    p = EccentricPredictor(cfg, offload_threshold=threshold, confidence_threshold=0.0)
    p.cloud = Recording(InProcessCloud(p.model))
    return p


def _count_frames(path):
    cap, n = cv2.VideoCapture(path), 0
    while cap.read()[0]:
        n += 1
    return n


def _log(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def test_all_offloaded_at_threshold_zero(cfg, clip, tmp_path):
    p = _predictor(cfg, 0.0)
    summary = run_on_video(p, clip, str(tmp_path / "out"))
    out = str(tmp_path / "out" / "clip.mp4")
    assert summary["output"] == out and summary["codec"] in ("avc1", "mp4v")
    assert _count_frames(out) == FRAMES
    records = _log(tmp_path / "out" / "clip.jsonl")
    assert [r["frame"] for r in records] == list(range(FRAMES))
    assert all(r["offloaded"] for r in records)
    assert [r["bytes"] for r in records] == p.cloud.sizes and all(s > 0 for s in p.cloud.sizes)
    assert all(r["cloud_ms"] > 0 and r["edge_ms"] > 0 for r in records)
    assert all(set(d) == {"class", "score", "box"} for r in records for d in r["detections"])
    with open(tmp_path / "out" / "clip.summary.json") as f:
        assert json.load(f) == summary
    assert summary["frames"] == FRAMES and summary["offload_rate"] == 1.0
    assert summary["bytes_total"] == sum(p.cloud.sizes)
    assert summary["input_bytes"] == os.path.getsize(clip)
    assert summary["detections_per_frame"] == sum(len(r["detections"]) for r in records) / FRAMES


def test_label_vote_relabels_what_is_shown_frame_by_frame(cfg, clip, tmp_path):
    """--label-decay: the log of a voted run is the unvoted run's log put through LabelVote frame by frame, and the
    summary names the decay."""
    runs = {}
    for decay in (0.0, 1.0):
        torch.manual_seed(0)
        p = EccentricPredictor(cfg, offload_threshold=0.0, confidence_threshold=0.0, agnostic_iou=0.5,
                               label_decay=decay)
        summary = run_on_video(p, clip, str(tmp_path / f"d{decay:g}" / "v.mp4"))
        assert summary["label_decay"] == decay
        runs[decay] = _log(tmp_path / f"d{decay:g}" / "v.jsonl")
    vote, changed = LabelVote(1.0), 0
    for plain, voted in zip(runs[0.0], runs[1.0]):
        d = plain["detections"]
        assert [x["box"] for x in voted["detections"]] == [x["box"] for x in d] and d
        want = vote([x["box"] for x in d], [x["score"] for x in d], [x["class"] for x in d])
        assert [x["class"] for x in voted["detections"]] == want
        changed += sum(w != x["class"] for w, x in zip(want, d))
    assert changed  # the vote did relabel something on these frames (random weights: unsure labels)


def test_none_offloaded_above_one(cfg, clip, tmp_path):
    p = _predictor(cfg, 1.01)
    summary = run_on_video(p, clip, str(tmp_path / "edge.mp4"))
    assert _count_frames(str(tmp_path / "edge.mp4")) == FRAMES
    records = _log(tmp_path / "edge.jsonl")
    assert len(records) == FRAMES and p.cloud.sizes == []
    assert all(not r["offloaded"] and r["bytes"] == 0 and r["cloud_ms"] == 0 for r in records)
    assert summary["offload_rate"] == 0.0 and summary["bytes_total"] == 0


def test_http_cloud_matches_in_process(cfg, clip):
    p = EccentricPredictor(cfg, offload_threshold=0.0, confidence_threshold=0.0)
    frame = cv2.VideoCapture(clip).read()[1]
    posted = []

    def server(request):
        assert request.url.path == "/v1/detect"
        assert request.headers["content-type"] == "application/octet-stream"
        assert request.headers["authorization"] == "Bearer s3cret"
        posted.append(request.content)
        inst = p.model.cloud([request.content])[0]["instances"]
        return httpx.Response(200, json={"boxes": inst.pred_boxes.tensor.tolist(), "scores": inst.scores.tolist(),
                                         "classes": inst.pred_classes.tolist()})

    local = p(frame)
    p.cloud = HttpCloud("http://cloud.test", retries=0, token="s3cret")

    def serve(handler):
        p.cloud.client._http = httpx.Client(headers=p.cloud.client._http.headers, transport=httpx.MockTransport(handler))

    serve(server)
    remote = p(frame)
    assert remote.offloaded and remote.bytes == len(posted[0]) == local.bytes
    assert len(remote.instances) == len(local.instances)
    assert torch.allclose(remote.instances.pred_boxes.tensor, local.instances.pred_boxes.tensor, atol=1e-4)
    assert torch.equal(remote.instances.pred_classes, local.instances.pred_classes)

    serve(lambda request: httpx.Response(503, text="busy"))
    with pytest.raises(DemoError, match="HTTP 503: busy"):
        p(frame)
    serve(lambda request: httpx.Response(200, json={"boxes": [[0, 0, 1, 1]], "scores": [], "classes": []}))
    with pytest.raises(DemoError, match="not detections JSON"):
        p(frame)


def test_an_exported_edge_sends_what_the_models_own_edge_sends(cfg, clip, tmp_path):
    """The predictor runs the edge a device runs (TorchScript, PyTorch's kernels): the same payloads, the same
    answers, at the threshold given; an edge exported from another model is refused before anything runs."""
    frames = read_frames(clip)[0]
    torch.manual_seed(0)
    own = _predictor(cfg, 0.0)
    b = own.inputs
    export_edge(own.model, str(tmp_path), b(frames[0]), {"min_size": b.min_size, "max_size": b.max_size,
                                                         "format": b.input_format})
    torch.manual_seed(0)
    edge = ExportedEdge(str(tmp_path), "torchscript")
    exported = EccentricPredictor(cfg, offload_threshold=0.0, confidence_threshold=0.0, edge=edge)
    exported.cloud = Recording(InProcessCloud(exported.model))
    for frame in frames:
        a, e = own(frame), exported(frame)
        assert a.offloaded and e.offloaded and e.source == a.source == "cloud"
        assert torch.equal(e.instances.pred_classes, a.instances.pred_classes)
        assert torch.allclose(e.instances.pred_boxes.tensor, a.instances.pred_boxes.tensor, atol=1e-4)
    assert exported.stream.edge is edge and (edge.policy, edge.threshold) == ("dynamic", 0.0)
    assert exported.cloud.sizes == own.cloud.sizes and len(own.cloud.sizes) == len(frames)

    class Foreign:
        fingerprint = bytes(len(own.model.fingerprint()))

    with pytest.raises(DemoError, match="not exported from this model .* export it from the same config"):
        EccentricPredictor(cfg, edge=Foreign())


def test_bad_input_and_output(cfg, clip, tmp_path):
    p = _predictor(cfg, None)
    with pytest.raises(DemoError, match="not found"):
        run_on_video(p, str(tmp_path / "missing.mp4"), str(tmp_path / "out"))
    junk = tmp_path / "junk.mp4"
    junk.write_text("not a video")
    with pytest.raises(DemoError, match="cannot read .*junk.mp4: not a video OpenCV can decode"):
        run_on_video(p, str(junk), str(tmp_path / "out"))
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(DemoError, match="cannot write .*cannot create its folder"):
        run_on_video(p, clip, str(blocker / "out.mp4"))


def test_config_errors():
    with pytest.raises(DemoError, match="not an EccentricRCNN"):
        EccentricPredictor(setup_cfg("Base-RCNN-FPN.yaml", ["MODEL.DEVICE", "cpu"]))
    with pytest.raises(DemoError, match="no MODEL.ECCENTRIC"):
        EccentricPredictor(get_cfg())
    with pytest.raises(DemoError, match="Non-existent key: MODEL.ECCENTRIC.NO_SUCH_KEY"):
        setup_cfg(CONFIG, ["MODEL.ECCENTRIC.NO_SUCH_KEY", 1])
    with pytest.raises(DemoError, match="Checkpoint 'no/such.pth' not found"):
        EccentricPredictor(setup_cfg(CONFIG, OPTS + ["MODEL.WEIGHTS", "no/such.pth"]))


def test_cli_one_line_error(tmp_path):
    spec = importlib.util.spec_from_file_location("demo_cli", os.path.join(ROOT, "tools", "demo.py"))
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    missing = str(tmp_path / "missing.mp4")
    with pytest.raises(SystemExit) as e:
        cli.main(["--config-file", CONFIG, "--video-input", missing, "--output", str(tmp_path), *OPTS])
    assert e.value.code == f"demo.py: error: video {missing!r} not found"
    with pytest.raises(SystemExit) as e:  # --edge: a folder without an export is named before any frame is read
        cli.main(["--config-file", CONFIG, "--video-input", missing, "--edge", str(tmp_path), *OPTS])
    assert e.value.code.startswith(f"demo.py: error: {tmp_path} holds no exported edge")
    assert "tools/export_edge.py" in e.value.code


@pytest.mark.fashion_mnist
def test_compose_is_deterministic(clip, tmp_path):
    info = compose_demo_video(str(tmp_path / "a.mp4"), clip, num_tracks=3, input_size=64)
    compose_demo_video(str(tmp_path / "b.mp4"), clip, num_tracks=3, input_size=64)
    assert info["frames"] == _count_frames(str(tmp_path / "a.mp4")) == FRAMES
    assert (tmp_path / "a.mp4").read_bytes() == (tmp_path / "b.mp4").read_bytes()
    with open(tmp_path / "a.json") as f:
        coco = json.load(f)
    assert len(coco["images"]) == FRAMES and coco["annotations"]
    assert all(0 <= a["bbox"][0] and a["bbox"][0] + a["bbox"][2] <= SIZE[0] for a in coco["annotations"])


def test_box_accuracy_matches_each_box_once_by_class_and_iou(tmp_path):
    from eccentric_det.demo.accuracy import BoxAccuracy, ground_truth_of

    coco = {"images": [{"id": 1, "frame": 0}, {"id": 2, "frame": 1}],
            "categories": [{"id": 1, "name": "Bag"}, {"id": 2, "name": "Dress"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20]},
                            {"id": 2, "image_id": 1, "category_id": 2, "bbox": [50, 50, 10, 10]},
                            {"id": 3, "image_id": 2, "category_id": 1, "bbox": [0, 0, 8, 8]}]}
    video = tmp_path / "v.mp4"
    (tmp_path / "v.json").write_text(json.dumps(coco))
    assert ground_truth_of(str(video)) == str(tmp_path / "v.json")
    assert ground_truth_of(str(tmp_path / "other.mp4")) is None
    acc = BoxAccuracy(ground_truth_of(str(video)))
    # frame 0: the Bag twice (the better-scored one matches, the other is a false positive), the Dress box found
    # as a Bag (wrong class: no match); frame 1: nothing found
    acc.add(0, [[10, 10, 30, 30], [11, 11, 30, 30], [50, 50, 60, 60]], [0.6, 0.9, 0.8], ["Bag", "Bag", "Bag"])
    acc.add(1, [], [], [])
    s = acc.summary()
    assert (s["matched"], s["detections"], s["objects"]) == (1, 3, 3)
    assert s["precision"] == pytest.approx(1 / 3) and s["recall"] == pytest.approx(1 / 3)
    acc.add(2, [[0, 0, 10, 10]], [0.5], ["Bag"])  # a frame without boxes: a false positive
    assert acc.summary()["precision"] == pytest.approx(1 / 4)
    with pytest.raises(ValueError, match="frame 1 is already counted"):  # a frame counts once
        acc.add(1, [], [], [])


def _accuracy_of(tmp_path, name, hits):
    """A BoxAccuracy over one box a frame, found (1) or missed (0) frame by frame as ``hits`` say."""
    from eccentric_det.demo.accuracy import BoxAccuracy

    coco = {"images": [{"id": i, "frame": i} for i in range(len(hits))], "categories": [{"id": 1, "name": "Bag"}],
            "annotations": [{"id": i, "image_id": i, "category_id": 1, "bbox": [10, 10, 20, 20]}
                            for i in range(len(hits))]}
    (tmp_path / f"{name}.json").write_text(json.dumps(coco))
    acc = BoxAccuracy(str(tmp_path / f"{name}.json"))
    for i in np.random.default_rng(0).permutation(len(hits)):  # counted out of order: blocks follow the frames
        acc.add(int(i), [[10, 10, 30, 30]] if hits[i] else [], [0.9] if hits[i] else [], ["Bag"] if hits[i] else [])
    return acc


def test_pooled_accuracy_counts_the_videos_together_with_block_intervals(tmp_path):
    from eccentric_det.demo.accuracy import pooled

    # video a: found in the first 150 of 200 frames, missed in a run of 50 (an item read wrongly as it crosses);
    # video b: every frame found
    a = _accuracy_of(tmp_path, "a", [1] * 150 + [0] * 50)
    b = _accuracy_of(tmp_path, "b", [1] * 100)
    both = pooled([a, b], block=25, n=500)
    assert (both["matched"], both["detections"], both["objects"]) == (250, 250, 300)
    assert both["precision"] == 1.0 and both["recall"] == pytest.approx(250 / 300)
    assert both["precision_ci95"] == [1.0, 1.0]  # every resample holds only right answers
    low, high = both["recall_ci95"]
    assert low < 250 / 300 < high
    # the misses come in one run of frames: drawing frames one by one (block 1) pretends they are independent and
    # gives a narrower interval than drawing runs of 25
    one = pooled([a, b], block=1, n=500)["recall_ci95"]
    assert one[1] - one[0] < 0.7 * (high - low)
    assert pooled([a], n=0)["recall_ci95"] is None and a.summary(n=0)["recall"] == 0.75
    assert a.summary(block=25, n=200)["recall_ci95"] is not None


def test_block_counts_draw_every_frame_alike():
    from eccentric_det.evaluation.bootstrap import block_counts

    rng = np.random.default_rng(0)
    draws = np.stack([block_counts(100, 25, rng) for _ in range(4000)])
    assert (draws.sum(1) == 100).all()
    # circular blocks: the first and the last frame are drawn as often as the middle one (plain moving blocks draw
    # them 25 times less often)
    assert draws[:, [0, 50, 99]].mean(0) == pytest.approx([1, 1, 1], abs=0.1)
    assert len(block_counts(0, 25, rng)) == 0 and block_counts(3, 25, rng).sum() == 3


def test_summary_has_precision_and_recall_of_a_composed_video(cfg, tmp_path):
    from eccentric_det.demo.accuracy import ground_truth_of

    source = str(tmp_path / "bg.mp4")
    writer = cv2.VideoWriter(source, cv2.VideoWriter_fourcc(*"mp4v"), 10, (160, 120))
    for _ in range(4):
        writer.write(np.full((120, 160, 3), 90, np.uint8))
    writer.release()
    video = str(tmp_path / "composed.mp4")
    compose_demo_video(video, source=source, seed=1, num_tracks=2)
    assert ground_truth_of(video)
    summary = run_on_video(_predictor(cfg, 0.5), video, str(tmp_path / "out"))
    assert summary["objects"] > 0 and summary["detections"] >= summary["matched"] >= 0
    assert summary["recall"] == summary["matched"] / summary["objects"]
    assert "accuracy     precision" in format_summary(summary) or summary["detections"] == 0
