"""Choosing an operating point on held-out images: the cheapest point of a sweep that keeps a reference's accuracy.

The rule of the region gate's goal ("AP >= always-offload - 1 at <= 50% of its bytes and cloud GFLOPs"), applied to a
``tools/pareto.py`` sweep measured on held-out *training* images, so that the threshold is never picked on val or test.
Pure Python over pareto.json's points.
"""
from .table import point_metric

THRESHOLD_KEY = "MODEL.ECCENTRIC.OFFLOAD.THRESHOLD"


def point_threshold(point):
    """The offload threshold a threshold-sweep point set (its ``opts``), or None."""
    opts = list(point.get("opts", []))
    for key, value in zip(opts[::2], opts[1::2]):
        if key == THRESHOLD_KEY:
            return float(value)
    return None


def select_point(points, series, reference, tolerance=1.0, max_share=0.5, accuracy="AP",
                 costs=("bytes_mean", "cloud_gflops")):
    """The point of ``series`` (other than ``reference``, a label of the same series or of any point) that costs the
    least bytes with ``accuracy >= reference's - tolerance`` and every cost in ``costs`` at most ``max_share`` of the
    reference's. When none qualifies, the most accurate point within the cost shares (``met`` False), or None.

    Returns ``{"label", "threshold", "met", "why", "reference": {...}, "point": {...}}``."""
    ref = next((p for p in points if p.get("label") == reference), None)
    if ref is None:
        raise ValueError(f"no point labelled {reference!r} to compare with; labels: "
                         f"{sorted({str(p.get('label')) for p in points})}")
    ref_acc = point_metric(ref, accuracy)
    if ref_acc is None:
        raise ValueError(f"the reference point {reference!r} has no finite {accuracy}")
    candidates = [p for p in points if p.get("series") == series and p is not ref
                  and point_metric(p, accuracy) is not None and point_metric(p, costs[0]) is not None]
    if not candidates:
        raise ValueError(f"no point of series {series!r} with {accuracy} and {costs[0]}; series: "
                         f"{sorted({str(p.get('series')) for p in points})}")

    def cheap(p):
        return all(point_metric(p, c) is not None and point_metric(ref, c) is not None
                   and point_metric(p, c) <= max_share * point_metric(ref, c) for c in costs)

    within = [p for p in candidates if cheap(p)]
    good = [p for p in within if point_metric(p, accuracy) >= ref_acc - tolerance]
    if good:
        best, met = min(good, key=lambda p: (point_metric(p, costs[0]), -point_metric(p, accuracy))), True
        why = (f"the fewest {costs[0]} with {accuracy} >= {reference}'s {ref_acc:.2f} - {tolerance:g} and "
               f"{', '.join(costs)} <= {max_share:g} of its")
    elif within:
        best, met = max(within, key=lambda p: point_metric(p, accuracy)), False
        why = (f"no point keeps {accuracy} within {tolerance:g} of {reference}'s {ref_acc:.2f} at <= {max_share:g} "
               f"of its costs: the most accurate point within those costs")
    else:
        return {"label": None, "threshold": None, "met": False,
                "why": f"no point of {series!r} costs <= {max_share:g} of {reference}'s {', '.join(costs)}",
                "reference": _summary(ref, accuracy, costs), "point": None}
    return {"label": best.get("label"), "threshold": point_threshold(best), "met": met, "why": why,
            "reference": _summary(ref, accuracy, costs), "point": _summary(best, accuracy, costs)}


def _summary(point, accuracy, costs):
    return {"label": point.get("label"), accuracy: point_metric(point, accuracy),
            **{c: point_metric(point, c) for c in costs}}
