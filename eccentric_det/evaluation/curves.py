"""Learning curves on held-out training images and the plateau rule every trained model is held to.

A curve is a list of ``(iteration, value)`` points (AP or top-1 on the held-out split of the *training* images,
never val or test). The rule (:func:`plateau`): a run has reached its plateau when the best value of its last
quarter of iterations is less than ``min_gain`` above the best value before that quarter.
"""
import json
import math
import os

PLATEAU_MIN_GAIN = 0.3  # AP or top-1 points
PLATEAU_FRACTION = 0.25  # the last quarter of the run


def plateau(points, min_gain=PLATEAU_MIN_GAIN, fraction=PLATEAU_FRACTION):
    """The plateau verdict of a curve: ``{"flat", "gain", "rule", "final", "best"}``. ``gain`` is the best value
    after ``(1 - fraction)`` of the last point's iteration minus the best before it (None with fewer than one
    point on each side, and then ``flat`` is False)."""
    points = sorted((int(i), float(v)) for i, v in points if math.isfinite(float(v)))  # NaN: nothing detected
    rule = f"best of the last {fraction:.0%} of iterations < best before it + {min_gain}"
    if not points:
        return {"flat": False, "gain": None, "rule": rule, "final": None, "best": None}
    cut = points[-1][0] * (1 - fraction)
    before = [v for i, v in points if i <= cut]
    after = [v for i, v in points if i > cut]
    gain = max(after) - max(before) if before and after else None
    return {"flat": gain is not None and gain < min_gain, "gain": gain, "rule": rule,
            "final": points[-1][1], "best": max(v for _, v in points)}


def detectron2_curve(output_dir, key="bbox/AP"):
    """``(iteration, value)`` points of ``key`` from Detectron2's ``OUTPUT_DIR/metrics.json`` (written by its
    EventWriter; the EvalHook's results sit on the line of the iteration they were computed at). The last line per
    iteration wins (a resumed run rewrites the iterations after its checkpoint)."""
    path = os.path.join(output_dir, "metrics.json")
    points = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            rec = json.loads(line)
            if key in rec:
                points[int(rec["iteration"]) + 1] = float(rec[key])
    return sorted(points.items())


def write_curve(path, points, metric, **info):
    """Write ``{"metric", "points", "plateau", **info}`` as JSON (what :func:`plot_curves` reads)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    record = {"metric": metric, "points": [list(p) for p in points], "plateau": plateau(points), **info}
    with open(path, "w") as f:
        json.dump(record, f, indent=1)
    return record


def plot_curves(curves, path, title=""):
    """One figure of several curves ``{label: curve record}`` (as :func:`write_curve` writes them) at ``path``."""
    import matplotlib  # optional: plotting only

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, rec in curves.items():
        its, vals = zip(*rec["points"]) if rec["points"] else ((), ())
        verdict = rec["plateau"]
        flat = "flat" if verdict["flat"] else "not flat"
        gain = "" if verdict["gain"] is None else f", last quarter {verdict['gain']:+.2f}"
        ax.plot(its, vals, marker="o", ms=3, label=f"{label} ({flat}{gain})")
    ax.set_xlabel("iteration")
    ax.set_ylabel(next(iter(curves.values()))["metric"] if curves else "")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
