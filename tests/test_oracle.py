"""Oracle bounds of Dynamic ECC (eccentric_det.evaluation.oracle, tools/oracle.py) on a hand-built COCO set."""
import json
import os
import subprocess
import sys

import pytest

from eccentric_det.evaluation.oracle import coco_ap, load_coco_gt, oracle_curve, tile_gains

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# two 100x100 images; objects: image 1 has A (top-left) and B (bottom-right), image 2 has C (top-left)
OBJECTS = {1: [(1, [5, 5, 20, 20]), (2, [70, 70, 20, 20])], 2: [(1, [10, 10, 30, 30])]}


def _gt(tmp_path):
    images = [{"id": i, "width": 100, "height": 100, "file_name": f"{i}.jpg"} for i in OBJECTS]
    anns = [{"id": 10 * i + k, "image_id": i, "category_id": c, "bbox": b, "area": b[2] * b[3], "iscrowd": 0}
            for i, objs in OBJECTS.items() for k, (c, b) in enumerate(objs)]
    path = tmp_path / "gt.json"
    path.write_text(json.dumps({"images": images, "annotations": anns,
                                "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}))
    from pycocotools.coco import COCO
    return COCO(str(path)), path


def _det(i, c, box, score=0.9):
    return {"image_id": i, "category_id": c, "bbox": box, "score": score}


# the edge finds A and C, misses B and adds a false box next to it; the cloud finds all three
EDGE = [_det(1, 1, [5, 5, 20, 20]), _det(2, 1, [10, 10, 30, 30]), _det(1, 1, [60, 60, 10, 10], 0.8)]
CLOUD = [_det(1, 1, [5, 5, 20, 20]), _det(1, 2, [70, 70, 20, 20]), _det(2, 1, [10, 10, 30, 30])]


def test_the_tile_that_holds_the_miss_is_sent_first(tmp_path):
    gt, _ = _gt(tmp_path)
    gains = tile_gains(gt, EDGE, CLOUD, grid=2)
    assert len(gains) == 8 and max(gains, key=gains.get) == (1, 1, 1) and gains[(1, 1, 1)][0] == 1
    whole = tile_gains(gt, EDGE, CLOUD, grid=1)
    assert whole[(1, 0, 0)][0] == 1 and whole[(2, 0, 0)][0] == 0
    edge_ap, cloud_ap = coco_ap(gt, EDGE, [1, 2]), coco_ap(gt, CLOUD, [1, 2])
    assert cloud_ap == pytest.approx(100.0) and edge_ap < 70
    for grid in (1, 2):
        curve = oracle_curve(gt, EDGE, CLOUD, grid, fractions=(0.125, 0.5))
        assert curve[0]["AP"] == pytest.approx(edge_ap) and curve[-1]["AP"] == pytest.approx(cloud_ap)
        assert [p["fraction"] for p in curve] == [0.0, 0.125, 0.5, 1.0]
    tiles = oracle_curve(gt, EDGE, CLOUD, 2, fractions=(0.125,))[1]  # one tile of eight
    images = oracle_curve(gt, EDGE, CLOUD, 1, fractions=(0.5,))[1]  # one image of two
    assert tiles["tiles_sent"] == 1 and tiles["AP"] == pytest.approx(cloud_ap)  # the cloud's gain at 1/8 of the area
    assert images["tiles_sent"] == 1 and images["AP"] == pytest.approx(cloud_ap)
    half = oracle_curve(gt, EDGE, CLOUD, 1, fractions=(0.5,), image_ids=[2])  # only image 2: nothing to gain
    assert all(p["AP"] == pytest.approx(100.0) for p in half)


def test_tool_writes_the_curves_and_refuses_mismatched_runs(tmp_path):
    gt, path = _gt(tmp_path)
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.data.datasets import register_coco_instances
    if "oracle_toy" not in DatasetCatalog.list():
        register_coco_instances("oracle_toy", {}, str(path), str(tmp_path))
    assert load_coco_gt("oracle_toy").getImgIds() == [1, 2]
    runs = {}
    for name, dets, ids in (("edge", EDGE, [1, 2]), ("cloud", CLOUD, [1, 2]), ("other", CLOUD, [1])):
        d = tmp_path / name
        d.mkdir()
        (d / "coco_instances_results.json").write_text(json.dumps(dets))
        (d / "eccentric_metrics.json").write_text(json.dumps({"images": [{"image_id": i} for i in ids]}))
        runs[name] = str(d)
    code = ("import sys, runpy; from detectron2.data.datasets import register_coco_instances; "
            f"register_coco_instances('oracle_toy', {{}}, {str(path)!r}, {str(tmp_path)!r}); "
            "sys.argv = ['oracle.py'] + sys.argv[1:]; runpy.run_path('tools/oracle.py', run_name='__main__')")
    out = tmp_path / "oracle.json"
    ok = subprocess.run([sys.executable, "-c", code, "--dataset", "oracle_toy", "--edge", runs["edge"], "--cloud",
                         runs["cloud"], "--grids", "1", "2", "--fractions", "0.5", "--output", str(out)],
                        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr[-2000:]
    curves = json.loads(out.read_text())["curves"]
    assert set(curves) == {"1", "2"} and curves["2"][-1]["AP"] == pytest.approx(100.0)
    bad = subprocess.run([sys.executable, "-c", code, "--dataset", "oracle_toy", "--edge", runs["edge"], "--cloud",
                          runs["other"]], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "evaluated different images" in bad.stderr
