"""The video benchmark: H.264 and JPEG round trips at their bitrates, video AP against the composed video's boxes,
and benchmarks/bench_video.py end to end on a short composed clip with the quick models."""
import json
import os
import runpy

import cv2
import numpy as np
import pytest
import torch

from eccentric_det.evaluation.video import h264_round_trip, image_round_trip, kbps, video_ap, video_ap_difference

pytest.importorskip("av", reason="PyAV is not installed (pip install av)")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def moving_frames(n=30, size=(120, 160)):
    rng = np.random.default_rng(0)
    base = cv2.GaussianBlur((rng.random((*size, 3)) * 255).astype(np.uint8), (9, 9), 3)
    return [np.roll(base, 2 * i, axis=1).copy() for i in range(n)]


def load_bench(monkeypatch):
    """benchmarks/bench_video.py's names (it imports its sibling report.py)."""
    monkeypatch.syspath_prepend(os.path.join(ROOT, "benchmarks"))
    return runpy.run_path(os.path.join(ROOT, "benchmarks", "bench_video.py"))


QUICK = "configs/quick_schedules/fashion_det_{}_instant_test.yaml"


def quick_cloud_weights(tmp_path):
    """The quick cloud's (random) weights saved as a checkpoint: the benchmark refuses a cloud without weights."""
    from detectron2.modeling import build_model

    from eccentric_det.tasks import get_eccentric_cfg

    path = str(tmp_path / "cloud.pth")
    torch.manual_seed(0)
    torch.save({"model": build_model(get_eccentric_cfg(QUICK.format("cloud_teacher"))).state_dict()}, path)
    return path


def background_clip(tmp_path, frames=6):
    """A short moving clip (mp4v, 10 fps) to compose videos over; its path."""
    source = str(tmp_path / "bg.mp4")
    writer = cv2.VideoWriter(source, cv2.VideoWriter_fourcc(*"mp4v"), 10, (160, 120))
    for frame in moving_frames(frames):
        writer.write(frame)
    writer.release()
    return source


def test_h264_holds_its_bitrate_and_decodes_every_frame():
    frames = moving_frames()
    low, low_sizes = h264_round_trip(frames, 25, 64, gop=10)
    high, high_sizes = h264_round_trip(frames, 25, 512, gop=10)
    assert len(low) == len(high) == len(frames) and low[0].shape == frames[0].shape
    assert kbps(low_sizes, 25) < kbps(high_sizes, 25)
    assert 0.5 * 64 < kbps(low_sizes, 25) < 1.5 * 64 and kbps(high_sizes, 25) < 1.5 * 512
    error = lambda dec: np.mean([np.abs(d.astype(int) - f).mean() for d, f in zip(dec, frames)])  # noqa: E731
    assert error(high) < error(low)
    with pytest.raises(ValueError, match="even"):
        h264_round_trip([f[:-1] for f in frames[:2]], 25, 64)


def test_jpeg_frames_and_video_ap(tmp_path):
    frames = moving_frames(4)
    decoded, sizes = image_round_trip(frames, "jpeg", 50)
    assert len(decoded) == 4 and kbps(sizes, 25) == pytest.approx(8 * sum(sizes) * 25 / 4 / 1000)
    coco = {"images": [{"id": 10 + f, "frame": f, "width": 160, "height": 120} for f in range(2)],
            "categories": [{"id": 1, "name": "Bag"}, {"id": 2, "name": "Coat"}],
            "annotations": [{"id": 1, "image_id": 10, "category_id": 1, "bbox": [10, 10, 30, 20], "area": 600,
                             "iscrowd": 0},
                            {"id": 2, "image_id": 11, "category_id": 2, "bbox": [50, 40, 20, 20], "area": 400,
                             "iscrowd": 0}]}
    gt = tmp_path / "v.json"
    gt.write_text(json.dumps(coco))
    names = ["Coat", "Bag"]  # the detector's class indices, matched to the json's categories by name
    perfect = [([[10, 10, 40, 30]], [0.9], [1]), ([[50, 40, 70, 60]], [0.8], [0])]
    assert video_ap(str(gt), perfect, names)["AP"] == pytest.approx(100.0)
    wrong_class = [([[10, 10, 40, 30]], [0.9], [0]), ([[50, 40, 70, 60]], [0.8], [1])]
    assert video_ap(str(gt), wrong_class, names)["AP"] == 0.0
    half = [([[10, 10, 40, 30]], [0.9], [1]), ([], [], [])]
    assert video_ap(str(gt), half, names)["AP"] == pytest.approx(50.0)


def test_video_ap_difference_pairs_the_frames_in_blocks(tmp_path):
    """The paired difference's mean is the two video APs' difference; a method that is right where the other is
    wrong on every other frame is "ahead" by its interval; the same detections give exactly 0, "level"; blocks follow
    the frames' order, not the image ids'."""
    n = 40
    ids = np.random.default_rng(0).permutation(n) + 100  # image ids in no order of the frames
    coco = {"images": [{"id": int(ids[f]), "frame": f, "width": 160, "height": 120} for f in range(n)],
            "categories": [{"id": 1, "name": "Bag"}],
            "annotations": [{"id": f + 1, "image_id": int(ids[f]), "category_id": 1, "bbox": [10, 10, 30, 20],
                             "area": 600, "iscrowd": 0} for f in range(n)]}
    gt = tmp_path / "v.json"
    gt.write_text(json.dumps(coco))
    names = ["Bag"]
    found = ([[10, 10, 40, 30]], [0.9], [0])
    missed, far = ([], [], []), ([[100, 80, 130, 100]], [0.9], [0])
    right = [found] * n
    late = [found if f >= n // 2 else missed for f in range(n)]  # finds the bag in the second half only
    noisy = [found if f % 2 else far for f in range(n)]  # right on every other frame, a false box on the others
    d = video_ap_difference([(str(gt), (right, names), (noisy, names))], block=5, n=200)
    expected = video_ap(str(gt), right, names)["AP"] - video_ap(str(gt), noisy, names)["AP"]
    assert d["mean"] == pytest.approx(expected) and expected > 0 and d["says"] == "ahead" and d["ci95"][0] > 0
    same = video_ap_difference([(str(gt), (late, names), (late, names))], block=5, n=50)
    assert same["mean"] == 0 and same["ci95"] == [0, 0] and same["says"] == "level"
    # blocks of 20 consecutive frames: a block holds s of the 20 frames where `late` finds the bag (s: its start), so
    # resamples range from nearly none to nearly all; blocks of frames in id order would hold about half each time
    blocks = video_ap_difference([(str(gt), (late, names), ([missed] * n, names))], block=n // 2, n=200)
    assert blocks["ci95"][0] < 30 and blocks["ci95"][1] > 70
    # two videos: the mean of their differences; in blocks of the whole video a resample is the video itself
    two = video_ap_difference([(str(gt), (right, names), (late, names))] * 2, block=n, n=20)
    assert two["ci95"][0] == pytest.approx(two["mean"]) == pytest.approx(two["ci95"][1])
    assert two["mean"] == pytest.approx(video_ap(str(gt), right, names)["AP"] - video_ap(str(gt), late, names)["AP"])


def test_bench_video_tool_on_a_composed_clip(tmp_path, monkeypatch):
    from eccentric_det.demo import compose_demo_video

    source = background_clip(tmp_path)
    video = str(tmp_path / "clip.mp4")
    compose_demo_video(video, source=source, seed=3, num_tracks=2)
    tool = load_bench(monkeypatch)
    out = tmp_path / "out"
    assert tool["main"](["--videos", video, "--ecc-config", QUICK.format("dynamic_ecc"), "--cloud-config",
                         QUICK.format("cloud_teacher"), "--cloud-weights", quick_cloud_weights(tmp_path),
                         "--h264-kbps", "64", "256", "--jpeg", "30", "--gop", "5",
                         "--budget-kbps", "16", "--reuse", "both", "--reuse-threshold", "0.5", "--keyframe", "3",
                         "--track-iou", "0.5", "--output", str(out), "MODEL.ECCENTRIC.DISTILL.MODE", "task"]) == 0
    result = json.load(open(out / "bench_video.json"))
    assert result["track_iou"] == 0.5 and result["reuse_threshold"] == 0.5
    assert result["cloud_weights"] == str(tmp_path / "cloud.pth")  # which cloud the H.264 and JPEG rows measured
    rows = {r["method"]: r for r in result["videos"][0]["rows"]}
    assert set(rows) == {"ECC", "ECC, reuse", "ECC at 16 kbit/s", "ECC at 16 kbit/s, reuse", "edge only",
                         "cloud, lossless frames", "cloud on H.264 64 kbit/s", "cloud on H.264 256 kbit/s",
                         "cloud on JPEG q30"}
    for name in ("ECC at 16 kbit/s", "ECC at 16 kbit/s, reuse"):  # AP against the mean kbit/s under the budget
        assert rows[name]["budget_kbps"] == 16 and 0 <= rows[name]["bucket_peak_fill"] <= 1
        seconds = rows[name]["frames"] / result["videos"][0]["fps"]
        assert rows[name]["kbps"] <= 16 * (1 + 1.0 / seconds) + 1e-6  # the budget, and at most one full bucket
    assert rows["ECC, reuse"]["kbps"] <= rows["ECC"]["kbps"] and rows["ECC"]["reused_frames"] == 0
    assert rows["edge only"]["kbps"] == 0 and rows["cloud, lossless frames"]["kbps"] == 0
    assert rows["cloud on H.264 64 kbit/s"]["kbps"] < rows["cloud on H.264 256 kbit/s"]["kbps"]
    assert 0 <= rows["ECC"]["offload_rate"] <= 1 and all(0 <= r["AP"] <= 100 for r in rows.values())
    assert [r["method"] for r in result["mean"]] == list(rows) and (out / "bench_video.png").stat().st_size > 1000
    pairs = {(d["a"], d["b"]) for d in result["differences"]}  # every ECC row against every H.264 row, paired
    assert pairs == {(a, b) for a in rows if a.startswith("ECC") for b in rows if "H.264" in b}
    for d in result["differences"]:
        assert d["ci95"][0] <= d["AP_difference"] <= d["ci95"][1] and d["says"] in ("ahead", "behind", "level")
        assert d["AP_difference"] == pytest.approx(rows[d["a"]]["AP"] - rows[d["b"]]["AP"], abs=1e-6)


def test_bench_video_of_a_split_whose_edge_does_not_detect(tmp_path, monkeypatch):
    """A split without an edge detector (Adaptive ECC, a teacher-trunk split) is benchmarked with no edge-only row:
    there is no edge answer to measure (the demo's predictor refuses --offload-threshold for it)."""
    from eccentric_det.demo import compose_demo_video

    video = str(tmp_path / "clip.mp4")
    compose_demo_video(video, source=background_clip(tmp_path), seed=3, num_tracks=2)
    tool = load_bench(monkeypatch)
    out = tmp_path / "out"
    assert tool["main"](["--videos", video, "--ecc-config", QUICK.format("adaptive_ecc"), "--cloud-config",
                         QUICK.format("cloud_teacher"), "--cloud-weights", quick_cloud_weights(tmp_path),
                         "--h264-kbps", "--jpeg", "--budget-kbps", "16", "--output",
                         str(out), "MODEL.ECCENTRIC.DISTILL.MODE", "task",
                         "MODEL.ECCENTRIC.EDGE.DETECTOR", "False"]) == 0
    rows = {r["method"]: r for r in json.load(open(out / "bench_video.json"))["videos"][0]["rows"]}
    assert set(rows) == {"ECC", "ECC at 16 kbit/s", "cloud, lossless frames"}
    assert rows["ECC"]["offload_rate"] == 1.0 and rows["ECC at 16 kbit/s"]["kbps"] < rows["ECC"]["kbps"]


def test_reuse_threshold_is_fitted_on_training_item_videos_and_read_back(tmp_path, monkeypatch):
    source = background_clip(tmp_path)
    tool = load_bench(monkeypatch)
    out = tmp_path / "fit"
    assert tool["main"](["--compose", "3", "--compose-items", "train", "--source", source, "--ecc-config",
                         QUICK.format("dynamic_ecc"), "--cloud-config", QUICK.format("cloud_teacher"),
                         "--cloud-weights", quick_cloud_weights(tmp_path), "--h264-kbps", "--jpeg", "--reuse-sweep",
                         "0.2", "100", "--keyframe", "3", "--max-ap-loss", "0.5", "--output", str(out),
                         "MODEL.ECCENTRIC.DISTILL.MODE", "task",
                         "MODEL.ECCENTRIC.OFFLOAD.THRESHOLD", "-1"]) == 0
    result = json.load(open(out / "bench_video.json"))
    video = result["videos"][0]["video"]
    assert os.path.basename(video) == "train_seed3.mp4"
    assert json.load(open(os.path.splitext(video)[0] + ".json"))["info"]["items"] == "train"
    rows = {r["method"]: r for r in result["mean"]}
    assert set(rows) == {"ECC", "ECC, reuse 0.2", "ECC, reuse 100", "edge only", "cloud, lossless frames"}
    assert rows["ECC, reuse 100"]["kbps"] < rows["ECC"]["kbps"]  # everything but the keyframes answered from the cache
    fit = json.load(open(out / "reuse_threshold.json"))
    ok = [s for s in fit["sweep"] if s["AP"] >= fit["no_reuse"]["AP"] - 0.5]
    assert fit["threshold"] == (min(ok, key=lambda s: s["kbps"])["threshold"] if ok else 0.0)
    assert fit["videos"] == [video] and fit["keyframe"] == 3
    assert tool["reuse_threshold"](str(out / "reuse_threshold.json")) == fit["threshold"]
    assert tool["reuse_threshold"]("0.25") == 0.25
    with pytest.raises(Exception, match="--reuse-sweep"):
        tool["reuse_threshold"](str(tmp_path / "missing.json"))


def test_the_cloud_defaults_to_the_ecc_configs_teacher_and_is_refused_without_weights(tmp_path, monkeypatch):
    """Without --cloud-config the cloud is the ECC config's distillation teacher (config and weights, as tools/pareto.py
    takes it); a cloud that names no weights is refused before any video is composed or read: its rows would measure a
    random detector."""
    tool = load_bench(monkeypatch)
    ecc = tool["get_eccentric_cfg"]("configs/FashionDet/dynamic_ecc_vr.yaml")
    D = ecc.MODEL.ECCENTRIC.DISTILL
    assert tool["cloud_of"](ecc, "", "") == (D.TEACHER_CONFIG, D.TEACHER_WEIGHTS) and D.TEACHER_WEIGHTS
    assert tool["cloud_of"](ecc, "", "mine.pth") == (D.TEACHER_CONFIG, "mine.pth")
    assert tool["cloud_of"](ecc, "my_cloud.yaml", "") == ("my_cloud.yaml", "")  # the config's own MODEL.WEIGHTS
    with pytest.raises(ValueError, match="--cloud-weights"):
        tool["Cloud"](QUICK.format("cloud_teacher"), "", [])
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="random detector"):  # the quick ECC config's teacher has no weights
        tool["main"](["--videos", str(tmp_path / "never_read.mp4"), "--compose", "3", "--ecc-config",
                      QUICK.format("adaptive_ecc"), "--h264-kbps", "--jpeg", "--output", str(out),
                      "MODEL.ECCENTRIC.DISTILL.MODE", "task"])
    assert not out.exists()


def test_fit_reuse_threshold_takes_the_cheapest_within_the_loss(monkeypatch):
    fit = load_bench(monkeypatch)["fit_reuse_threshold"]
    mean = [{"method": "ECC", "AP": 40.0, "kbps": 100.0}, {"method": "ECC, reuse 0.1", "AP": 39.8, "kbps": 90.0},
            {"method": "ECC, reuse 0.3", "AP": 39.6, "kbps": 60.0}, {"method": "ECC, reuse 0.5", "AP": 38.0, "kbps": 30.0}]
    assert fit(mean, [0.1, 0.3, 0.5], 0.5)["threshold"] == 0.3
    assert fit(mean, [0.1, 0.3, 0.5], 0.1)["threshold"] == 0.0  # none within 0.1 AP: no reuse
    assert fit(mean, [0.1, 0.3, 0.5], 3.0)["threshold"] == 0.5


def test_keyframe_bounds_both_reuse_and_the_budgets_hold(monkeypatch):
    """--keyframe reaches every run that uses it: reuse's staleness bound and how long a budget holds the cloud's
    last answer (the budget rows once took the config's REUSE.KEYFRAME whatever --keyframe said)."""
    runs = dict(load_bench(monkeypatch)["ecc_runs"]([64], "both", 0.2, 5, 1.0))
    assert set(runs) == {"ECC", "ECC, reuse", "ECC at 64 kbit/s", "ECC at 64 kbit/s, reuse"}
    assert "keyframe" not in runs["ECC"]  # no budget, no reuse: the config's stream as it is
    assert runs["ECC at 64 kbit/s"] == {"budget_kbps": 64, "buffer_s": 1.0, "keyframe": 5}
    assert runs["ECC at 64 kbit/s, reuse"]["keyframe"] == runs["ECC, reuse"]["keyframe"] == 5
