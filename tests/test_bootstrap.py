"""Bootstrap intervals: the re-accumulated AP equals pycocotools' on the full image set, intervals bracket it and
shrink with more images."""
import contextlib
import io
import json

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from eccentric_det.evaluation.bootstrap import coco_ap_interval, mean_interval


def synthetic_coco(n_images, seed=0):
    """A COCO ground truth of ``n_images`` 256x256 images (1-5 boxes, 3 classes) and noisy detections of it."""
    rng = np.random.default_rng(seed)
    images, anns, dets = [], [], []
    for i in range(1, n_images + 1):
        images.append({"id": i, "width": 256, "height": 256, "file_name": f"{i}.png"})
        for _ in range(rng.integers(1, 6)):
            x, y, w, h = rng.uniform(0, 180), rng.uniform(0, 180), rng.uniform(10, 70), rng.uniform(10, 70)
            c = int(rng.integers(1, 4))
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": c, "bbox": [x, y, w, h], "area": w * h,
                         "iscrowd": 0})
            if rng.random() < 0.8:  # found, with some box noise and sometimes the wrong class
                jitter = rng.normal(0, 4, 4)
                dets.append({"image_id": i, "category_id": c if rng.random() < 0.85 else int(rng.integers(1, 4)),
                             "bbox": [x + jitter[0], y + jitter[1], max(w + jitter[2], 2), max(h + jitter[3], 2)],
                             "score": float(rng.uniform(0.3, 1.0))})
        for _ in range(rng.integers(0, 3)):  # false positives
            dets.append({"image_id": i, "category_id": int(rng.integers(1, 4)),
                         "bbox": [*rng.uniform(0, 200, 2).tolist(), 30.0, 30.0], "score": float(rng.uniform(0, 0.7))})
    gt = COCO()
    gt.dataset = {"images": images, "annotations": anns,
                  "categories": [{"id": c, "name": str(c)} for c in (1, 2, 3)]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    return gt, dets


def pycocotools_ap(gt, dets):
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(gt, gt.loadRes(dets), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return 100 * ev.stats[0]


@pytest.mark.parametrize("seed", [0, 1])
def test_full_sample_ap_is_pycocotools_ap(seed):
    gt, dets = synthetic_coco(40, seed)
    ap, low, high = coco_ap_interval(gt, dets, n=200, seed=seed)
    assert ap == pytest.approx(pycocotools_ap(gt, dets), abs=1e-9)
    assert low < ap < high


def test_interval_shrinks_with_more_images():
    small = coco_ap_interval(*synthetic_coco(20, 3), n=200)
    large = coco_ap_interval(*synthetic_coco(320, 3), n=200)
    assert large[2] - large[1] < small[2] - small[1]


def test_mean_interval():
    values = np.r_[np.ones(90), np.zeros(10)]
    mean, low, high = mean_interval(values, n=2000)
    assert mean == pytest.approx(0.9) and low < 0.9 < high
    assert 0.82 < low and high < 0.97  # binomial: sd 0.03
    assert mean_interval(np.ones(50)) == (1.0, 1.0, 1.0)


def test_result_interval_of_evaluation_folders(tmp_path):
    from eccentric_det.data import register_dataset
    from eccentric_det.evaluation.bootstrap import result_interval
    from eccentric_det.reports.pareto import format_summary

    gt, dets = synthetic_coco(60, seed=5)
    (tmp_path / "gt.json").write_text(json.dumps(gt.dataset))
    (tmp_path / "img").mkdir()
    register_dataset(["bootstrap_tmp", "coco", str(tmp_path / "gt.json"), str(tmp_path / "img")])
    run = tmp_path / "run"
    run.mkdir()
    (run / "coco_instances_results.json").write_text(json.dumps(dets))
    (run / "eccentric_metrics.json").write_text(json.dumps({"images": [{"image_id": i} for i in range(1, 61)]}))
    low, high = result_interval(str(run), "bootstrap_tmp", "AP", n=200)
    assert low < pycocotools_ap(gt, dets) < high
    assert result_interval(str(run), "bootstrap_tmp", "AP50") is None  # only AP and top1 have intervals

    cls = tmp_path / "cls"
    cls.mkdir()
    records = [{"image_id": i, "pred": i % 10, "label": i % 10 if i % 5 else 0} for i in range(1000)]
    (cls / "eccentric_metrics.json").write_text(json.dumps({"images": records}))
    low, high = result_interval(str(cls), "any", "top1", n=500)
    assert low < 90.0 < high and high - low < 5  # 900 of 1000 right (those with i % 10 == 5 are wrong)

    point = {"series": "s", "label": "p", "front": {"bytes": True},
             "metrics": {"AP": 30.0, "AP_ci95": [28.5, 31.25], "bytes_mean": 100}}
    table = format_summary({"accuracy": "AP", "points": [point], "bd_rate": {}, "anchor": "x", "bd_method": "pchip"})
    assert "AP [95% CI]" in table and "30.00 [28.50, 31.25]" in table


def test_paired_difference_of_evaluation_folders(tmp_path):
    from eccentric_det.data import register_dataset
    from eccentric_det.evaluation.bootstrap import paired_differences, result_interval
    from eccentric_det.reports.pareto import format_summary

    def paired_difference(a, reference, dataset, accuracy, n=1000):
        return paired_differences([a], reference, dataset, accuracy, n)[0]

    def folder(name, records, dets=None):
        (tmp_path / name).mkdir()
        (tmp_path / name / "eccentric_metrics.json").write_text(json.dumps({"images": records}))
        if dets is not None:
            (tmp_path / name / "coco_instances_results.json").write_text(json.dumps(dets))
        return str(tmp_path / name)

    # top1: b is right on 880 of 1000 images, a on those and 20 more; the hard images are hard for both
    b = folder("b", [{"image_id": i, "pred": 0, "label": 0 if i < 880 else 1} for i in range(1000)])
    a = folder("a", [{"image_id": i, "pred": 0, "label": 0 if i < 900 else 1} for i in range(1000)])
    mean, low, high = paired_difference(a, b, "any", "top1", n=1000)
    assert mean == pytest.approx(2.0) and 0.5 < low < 2.0 < high < 3.5
    side_by_side = [result_interval(d, "any", "top1", n=1000) for d in (a, b)]
    assert all(high - low < (hi - lo) / 1.5 for lo, hi in side_by_side)  # pairing removes what the two share
    assert paired_difference(a, a, "any", "top1") == (0.0, 0.0, 0.0)
    both = paired_differences([a, b, str(tmp_path / "none")], b, "any", "top1", n=200)  # one reference, many points
    assert both[0][0] == pytest.approx(2.0) and both[1] == (0.0, 0.0, 0.0) and both[2] is None
    with pytest.raises(ValueError, match="different images"):
        paired_difference(a, folder("c", [{"image_id": 0, "pred": 0, "label": 0}]), "any", "top1")

    # AP: the same images drawn for both; the mean is pycocotools' AP difference
    gt, dets = synthetic_coco(60, seed=7)
    (tmp_path / "gt.json").write_text(json.dumps(gt.dataset))
    (tmp_path / "img").mkdir()
    register_dataset(["paired_tmp", "coco", str(tmp_path / "gt.json"), str(tmp_path / "img")])
    weaker = [{**d, "score": d["score"] * (0.5 if k % 3 == 0 else 1.0)} for k, d in enumerate(dets)]
    ids = [{"image_id": i} for i in range(1, 61)]
    mean, low, high = paired_difference(folder("d", ids, dets), folder("e", ids, weaker), "paired_tmp", "AP", n=200)
    assert mean == pytest.approx(pycocotools_ap(gt, dets) - pycocotools_ap(gt, weaker), abs=1e-9)
    assert low <= mean <= high
    assert paired_difference(str(tmp_path / "d"), str(tmp_path / "d"), "paired_tmp", "AP", n=50) == (0.0, 0.0, 0.0)
    assert paired_difference(str(tmp_path / "d"), str(tmp_path / "e"), "paired_tmp", "AP50") is None

    point = {"series": "s", "label": "p", "front": {"bytes": True},
             "metrics": {"top1": 90.0, "bytes_mean": 10, "top1_minus_reference": [2.0, 1.1, 2.9]}}
    text = format_summary({"accuracy": "top1", "points": [point], "bd_rate": {}, "anchor": "x", "bd_method": "pchip",
                           "reference": "cloud/png"})
    assert "top1 minus cloud/png's, paired over the same images" in text and "s, p: +2.00 [+1.10, +2.90]" in text
