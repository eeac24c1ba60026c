"""Choosing an operating point on held-out images (eccentric_det.reports.select, tools/select_point.py)."""
import json
import os
import subprocess
import sys

import pytest

from eccentric_det.reports.select import point_threshold, select_point

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERIES = "Dynamic ECC (regions)"


def _point(t, ap, nbytes, gflops, series=SERIES):
    return {"series": series, "label": f"threshold {t}", "opts": ["MODEL.ECCENTRIC.OFFLOAD.POLICY", "dynamic",
                                                                  "MODEL.ECCENTRIC.OFFLOAD.THRESHOLD", t],
            "metrics": {"AP": ap, "bytes_mean": nbytes, "cloud_gflops": gflops}}


POINTS = [_point(0, 40.0, 1000, 2.0), _point(0.3, 39.8, 700, 1.5), _point(0.5, 39.2, 480, 0.9),
          _point(0.7, 38.5, 300, 0.6), _point(0.9, 30.0, 100, 0.2)]


def test_cheapest_point_that_keeps_the_reference_accuracy():
    choice = select_point(POINTS, SERIES, "threshold 0")
    assert choice["met"] and choice["label"] == "threshold 0.5" and choice["threshold"] == 0.5
    assert choice["reference"]["AP"] == 40.0 and choice["point"]["bytes_mean"] == 480


def test_a_tighter_tolerance_moves_the_choice_and_a_miss_is_said():
    assert select_point(POINTS, SERIES, "threshold 0", tolerance=2)["label"] == "threshold 0.7"
    miss = select_point(POINTS, SERIES, "threshold 0", tolerance=0.5)
    assert not miss["met"] and miss["label"] == "threshold 0.5"  # the most accurate within half the costs
    assert "no point keeps AP within 0.5" in miss["why"]


def test_cloud_gflops_count_as_a_cost():
    points = [dict(p, metrics=dict(p["metrics"], cloud_gflops=2.0)) for p in POINTS]
    none = select_point(points, SERIES, "threshold 0")
    assert none["label"] is None and not none["met"]


def test_bad_reference_or_series_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="no point labelled 'threshold 9'.*threshold 0.5"):
        select_point(POINTS, SERIES, "threshold 9")
    with pytest.raises(ValueError, match="no point of series 'Adaptive'"):
        select_point(POINTS, "Adaptive", "threshold 0")
    assert point_threshold({"opts": []}) is None


def test_tool_writes_the_choice_as_json(tmp_path):
    pareto = tmp_path / "pareto.json"
    pareto.write_text(json.dumps({"points": POINTS}))
    out = tmp_path / "selected.json"
    run = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "select_point.py"), "--pareto", str(pareto),
                          "--series", SERIES, "--reference", "threshold 0", "--output", str(out)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert json.loads(out.read_text())["threshold"] == 0.5
    bad = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "select_point.py"), "--pareto",
                          str(tmp_path / "missing.json"), "--series", SERIES, "--reference", "threshold 0",
                          "--output", str(out)], capture_output=True, text=True)
    assert bad.returncode == 2 and "missing.json" in bad.stderr and "Traceback" not in bad.stderr
