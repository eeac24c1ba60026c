"""The table of operating points, one renderer for ``tools/pareto.py``'s summary and the recipe's ``report.md``: a
Markdown pipe table (readable as text too) with each point's accuracy and its 95% bootstrap interval, bytes, offload
rate, edge and cloud GFLOPs and the fronts it is on, and the legend of those fronts.

Pure Python (no Detectron2): ``tools/train_eccentric.py`` imports it before anything heavy.
"""
import math

from .series import is_cloud_only

FRONTS = {"bytes": ("b", "bytes"), "edge_gflops": ("e", "edge GFLOPs"), "cloud_gflops": ("c", "cloud GFLOPs"),
          "offload": ("o", "offload rate")}  # pareto.json's front axes -> (letter, what the accuracy is against)


def finite(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def point_metric(point, key):
    """A point's metric, None when missing or not finite; a cloud-only point's offload rate is 1 (it sends every
    image) when it did not record one."""
    v = point.get("metrics", {}).get(key)
    if v is None and key == "offload_rate" and is_cloud_only(point.get("series", "")):
        return 1.0
    return v if finite(v) else None


def interval(point, accuracy="AP"):
    """``(low, high)`` of the point's 95% interval of ``accuracy`` (``metrics[accuracy + "_ci95"]``, what
    ``tools/pareto.py --bootstrap`` stores), or None."""
    ci = point.get("metrics", {}).get(f"{accuracy}_ci95")
    if isinstance(ci, (list, tuple)) and len(ci) == 2 and all(finite(v) for v in ci):
        return float(ci[0]), float(ci[1])
    return None


def front_letters(point):
    return "".join(FRONTS.get(axis, (axis[0],))[0] for axis, on in point.get("front", {}).items() if on)


def front_legend(accuracy="AP"):
    return "front: " + ", ".join(f"{letter} = {accuracy} vs {what}" for letter, what in FRONTS.values()) + \
           " (non-dominated)"


def _fmt(v, spec):
    return "-" if v is None else format(v, spec)


def accuracy_cell(point, accuracy="AP", intervals=True):
    """``"23.50 [22.10, 24.90]"``; ``[-]`` when the table shows intervals and this point has none."""
    text = _fmt(point_metric(point, accuracy), ".2f")
    if not intervals:
        return text
    ci = interval(point, accuracy)
    return text + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else " [-]")


def points_table(points, accuracy="AP", numbered=False, marks=None):
    """The operating points as the lines of a Markdown pipe table, columns padded. ``numbered``: a first column
    with the row number (from 1); ``marks``: ``{row index (0-based): text}`` appended to a point's label (e.g. the
    recommended point). The accuracy column shows the intervals when any point has one."""
    marks = marks or {}
    intervals = any(interval(p, accuracy) for p in points)
    header = ["series", "point", accuracy + (" [95% CI]" if intervals else ""), "bytes/image", "offload rate",
              "edge GFLOPs", "cloud GFLOPs", "front"]
    right = [False, False, True, True, True, True, True, False]
    rows = []
    for i, p in enumerate(points):
        m = p.get("metrics", {})
        rows.append([str(p.get("series", "")), f"{p.get('label', '')}{marks.get(i, '')}",
                     accuracy_cell(p, accuracy, intervals), _fmt(point_metric(p, "bytes_mean"), ",.0f"),
                     _fmt(point_metric(p, "offload_rate"), ".2f"), _fmt(m.get("edge_gflops"), ".3f"),
                     _fmt(m.get("cloud_gflops"), ".3f"), front_letters(p)])
    if numbered:
        header, right = ["#"] + header, [True] + right
        rows = [[str(i)] + r for i, r in enumerate(rows, 1)]
    widths = [max([len(header[c])] + [len(r[c]) for r in rows] + [3]) for c in range(len(header))]

    def line(cells):
        return "| " + " | ".join(c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right)) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if r else (":" + "-" * (w + 1)) for w, r in zip(widths, right)) + "|"
    return [line(header), rule] + [line(r) for r in rows]
