"""Learning curves and the plateau rule; tools/plot_curves.py on Detectron2's metrics.json and on curve.json."""
import json
import runpy

import pytest

from eccentric_det.evaluation.curves import detectron2_curve, plateau, write_curve


def test_plateau_rule():
    rising = [(i, 10 + i / 100) for i in range(100, 1001, 100)]  # +1 AP per 100 iterations to the end
    assert plateau(rising)["flat"] is False and plateau(rising)["gain"] == pytest.approx(3.0)  # 17 at 700 -> 20 at 1000
    flat = [(100, 10), (200, 20), (300, 25), (400, 27), (500, 27.5), (600, 27.6), (700, 27.5), (800, 27.7)]
    verdict = plateau(flat)
    assert verdict["flat"] is True and verdict["gain"] == pytest.approx(0.1)
    assert verdict["final"] == 27.7 and verdict["best"] == 27.7
    assert plateau([(100, 5.0)])["flat"] is False  # one point cannot show a plateau
    assert plateau([])["gain"] is None
    assert plateau([(100, float("nan")), (200, float("nan"))])["flat"] is False  # AP NaN: nothing was detected


def test_detectron2_curve_reads_the_eval_points_and_a_resumed_run(tmp_path):
    lines = [{"iteration": 99, "total_loss": 1.0}, {"iteration": 499, "bbox/AP": 10.0, "total_loss": 0.5},
             {"iteration": 999, "bbox/AP": 20.0}, {"iteration": 999, "bbox/AP": 21.0},  # resumed: the last wins
             {"iteration": 1499, "bbox/AP": 22.0}]
    (tmp_path / "metrics.json").write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    assert detectron2_curve(str(tmp_path)) == [(500, 10.0), (1000, 21.0), (1500, 22.0)]


def test_plot_curves_tool(tmp_path, monkeypatch, capsys):
    det, cls = tmp_path / "det", tmp_path / "cls"
    det.mkdir()
    (det / "metrics.json").write_text("\n".join(json.dumps({"iteration": i * 100 - 1, "bbox/AP": a})
                                                for i, a in enumerate([5, 15, 20, 21, 21, 21.1, 21.1, 21.2], 1)))
    write_curve(str(cls / "curve.json"), [(430, 88.0), (860, 90.0)], "top-1")
    tool = runpy.run_path("tools/plot_curves.py")
    out = str(tmp_path / "curves" / "both")
    assert tool["main"](["--run", f"det={det}", f"cls={cls}", "--output", out]) == 0
    runs = json.load(open(out + ".json"))
    assert runs["det"]["points"][:2] == [[100, 5], [200, 15]] and len(runs["det"]["points"]) == 8
    assert runs["det"]["plateau"]["flat"] is True and runs["cls"]["plateau"]["flat"] is False
    assert (tmp_path / "curves" / "both.png").stat().st_size > 1000
    assert tool["main"](["--run", f"det={det}", "--run", f"cls={cls}", "--output", out]) == 0  # repeated: both kept
    assert sorted(json.load(open(out + ".json"))) == ["cls", "det"]
    assert tool["main"](["--run", f"x={tmp_path / 'nothing'}", "--output", out]) == 2
    assert "neither curve.json nor metrics.json" in capsys.readouterr().err
