"""What the demo shows (confidence threshold, one label per object) and fitting both on training-item runs."""
import importlib.util
import json
import os

import pytest

from eccentric_det.demo import DemoError, EccentricPredictor, setup_cfg
from eccentric_det.demo.shown import LabelVote, shown

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


def test_label_vote_keeps_an_objects_label_through_a_frame_of_doubt():
    """An object read as class 1 for three frames and as 2 (less sure) on the fourth keeps 1; a new object far away
    and an object that moved (IoU < 0.5 with every box before) start their own tracks; off, nothing changes."""
    vote = LabelVote(0.9)
    a, b, far = [10, 10, 30, 30], [12, 11, 32, 31], [60, 60, 80, 80]
    for _ in range(3):
        assert vote([a], [0.8], [1]) == [1]
    assert vote([b, far], [0.7, 0.6], [2, 3]) == [1, 3]  # 0.8 * (0.9**3 + 0.9**2 + 0.9) = 1.95 > 0.7
    assert vote([a, far], [0.9, 0.6], [1, 3]) == [1, 3]
    assert vote([[40, 40, 60, 60]], [0.7], [2]) == [2]  # moved away: a new track
    short = LabelVote(0.1)  # little memory: the frame's own, surer reading wins
    short([a], [0.8], [1])
    assert short([b], [0.9], [2]) == [2]
    off = LabelVote(0.0)
    off([a], [0.9], [1])
    assert off([b], [0.6], [2]) == [2]
    vote.reset()
    assert vote([b], [0.7], ["Dress"]) == ["Dress"]  # names as well as ids; after a reset nothing is remembered
    with pytest.raises(ValueError, match=r"decay must lie in \[0, 1\]"):
        LabelVote(1.5)


def test_predictor_rejects_a_bad_iou_before_loading():
    with pytest.raises(DemoError, match="class-agnostic NMS IoU"):
        EccentricPredictor(setup_cfg(CONFIG, []), agnostic_iou=-0.1)
    with pytest.raises(DemoError, match="decay must lie in"):
        EccentricPredictor(setup_cfg(CONFIG, []), label_decay=-1)


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


def test_fit_picks_the_highest_recall_at_the_precision_or_the_widest_margin_to_both(tmp_path):
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
    # a recall floor too: the largest smaller margin; (0.5, 0.5) sits at the precision's edge (margins 0 and 0.4),
    # (0.8, *) clears both (0.2 and 0.15); of the two NMS settings that tie, the simpler (none)
    cli.main([*runs, "--precision", "0.8", "--recall", "0.6", "--confidence", "0.5", "0.65", "0.8", "--agnostic-iou",
              "0", "0.5", "--output", str(out)])
    fit = json.loads(out.read_text())
    assert (fit["chosen"]["confidence"], fit["chosen"]["agnostic_iou"], fit["target_recall"]) == (0.8, 0.0, 0.6)
    # the chosen setting comes with its intervals (the grid without: each would cost a bootstrap)
    low, high = fit["chosen"]["recall_ci95"]
    assert low <= fit["chosen"]["recall"] <= high and fit["chosen"]["bootstrap"] == 1000
    assert all(g["recall_ci95"] is None for g in fit["grid"])
    with pytest.raises(SystemExit, match="thresholds >= 0.5 only"):
        cli.main([*runs, "--confidence", "0.3", "--output", str(out)])


def test_fit_tries_the_label_vote_frame_by_frame(tmp_path):
    """A bag read as a dress in one frame of four: the vote (in frame order) turns that frame's label back, so the
    fit picks it; without it the same threshold loses a match and a detection goes unmatched."""
    bag = {"class": "Bag", "score": 0.9, "box": [10, 10, 30, 30]}
    doubt = {"class": "Dress", "score": 0.6, "box": [11, 11, 30, 30]}
    run = _run(tmp_path / "a", [[bag], [bag], [doubt], [bag]])
    out = tmp_path / "fit.json"
    _fit_cli().main([run, "--precision", "0.9", "--confidence", "0.5", "--agnostic-iou", "0", "--label-decay", "0",
                     "0.9", "--output", str(out)])
    fit = json.loads(out.read_text())
    grid = {g["label_decay"]: g for g in fit["grid"]}
    assert (grid[0.0]["matched"], grid[0.0]["detections"]) == (3, 4)
    assert (grid[0.9]["matched"], grid[0.9]["detections"]) == (4, 4)
    assert fit["chosen"]["label_decay"] == 0.9
