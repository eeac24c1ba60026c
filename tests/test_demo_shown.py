"""What the demo shows (confidence threshold, one label per object) and fitting both on training-item runs."""
import importlib.util
import json
import os

import pytest

from eccentric_det.demo import DemoError, EccentricPredictor, setup_cfg
from eccentric_det.demo.shown import shown

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "configs/quick_schedules/fashion_det_dynamic_ecc_instant_test.yaml")

# one object seen as two classes (0, 1), a second object apart (2), a weak box (3)
BOXES = [[10, 10, 30, 30], [11, 11, 30, 31], [50, 50, 70, 70], [52, 52, 70, 70]]
SCORES = [0.6, 0.9, 0.8, 0.4]


def test_threshold_keeps_order_of_score():
    assert shown(BOXES, SCORES, 0.5) == [1, 2, 0]
    assert shown(BOXES, SCORES, 0.85) == [1]
    assert shown([], [], 0.5, 0.5) == []


def test_agnostic_nms_keeps_one_label_per_object():
    assert shown(BOXES, SCORES, 0.5, 0.5) == [1, 2]  # box 0 (IoU 0.86 with the better box 1) goes
    assert shown(BOXES, SCORES, 0.0, 0.5) == [1, 2]  # box 3 overlaps box 2
    assert shown(BOXES, SCORES, 0.0, 0.95) == [1, 2, 0, 3]  # nothing overlaps that much
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        shown(BOXES, SCORES, 0.5, 1.5)


def test_predictor_rejects_a_bad_iou_before_loading():
    with pytest.raises(DemoError, match="class-agnostic NMS IoU"):
        EccentricPredictor(setup_cfg(CONFIG, []), agnostic_iou=-0.1)


def _fit_cli():
    spec = importlib.util.spec_from_file_location("fit_demo_filter",
                                                  os.path.join(ROOT, "benchmarks", "fit_demo_filter.py"))
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    return cli


def _run(folder, frames):
    """A demo run folder: the video's boxes, the per-frame log and the summary pointing at both."""
    folder.mkdir()
    coco = {"images": [{"id": i, "frame": i} for i in range(len(frames))],
            "categories": [{"id": 1, "name": "Bag"}, {"id": 2, "name": "Dress"}],
            "annotations": [{"id": i, "image_id": i, "category_id": 1, "bbox": [10, 10, 20, 20]}
                            for i in range(len(frames))]}
    (folder / "v.json").write_text(json.dumps(coco))
    (folder / "v.jsonl").write_text("".join(json.dumps({"frame": i, "detections": d}) + "\n"
                                            for i, d in enumerate(frames)))
    (folder / "v.summary.json").write_text(json.dumps({"input": "v.mp4", "confidence_threshold": 0.5,
                                                       "ground_truth": str(folder / "v.json"),
                                                       "log": str(folder / "v.jsonl")}))
    return str(folder)


def test_fit_picks_the_highest_recall_at_the_precision(tmp_path):
    bag = {"class": "Bag", "score": 0.9, "box": [10, 10, 30, 30]}
    dress_on_bag = {"class": "Dress", "score": 0.6, "box": [11, 11, 30, 30]}  # a second label on the bag
    weak_bag = {"class": "Bag", "score": 0.55, "box": [10, 10, 30, 30]}
    far = {"class": "Dress", "score": 0.7, "box": [80, 80, 90, 90]}  # on the background
    runs = [_run(tmp_path / "a", [[bag, dress_on_bag], [weak_bag], [bag, far]]),
            _run(tmp_path / "b", [[bag, dress_on_bag]])]
    out = tmp_path / "fit.json"
    cli = _fit_cli()
    cli.main([*runs, "--precision", "0.8", "--confidence", "0.5", "0.65", "0.8", "--agnostic-iou", "0", "0.5",
              "--output", str(out)])
    fit = json.loads(out.read_text())
    grid = {(g["confidence"], g["agnostic_iou"]): g for g in fit["grid"]}
    assert (grid[0.5, 0.0]["matched"], grid[0.5, 0.0]["detections"], grid[0.5, 0.0]["objects"]) == (4, 7, 4)
    assert (grid[0.5, 0.5]["matched"], grid[0.5, 0.5]["detections"]) == (4, 5)  # the second labels go
    assert (grid[0.65, 0.0]["matched"], grid[0.65, 0.0]["detections"]) == (3, 4)  # the weak bag and labels go
    assert (grid[0.8, 0.0]["matched"], grid[0.8, 0.0]["detections"]) == (3, 3)
    # precision >= 0.8: (0.5, 0.5) 4/5 keeps every object, (0.8, *) only 3 of 4
    assert (fit["chosen"]["confidence"], fit["chosen"]["agnostic_iou"]) == (0.5, 0.5)
    with pytest.raises(SystemExit, match="thresholds >= 0.5 only"):
        cli.main([*runs, "--confidence", "0.3", "--output", str(out)])
