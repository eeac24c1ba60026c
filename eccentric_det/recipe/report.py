"""report.md: what the operating points of pareto.json are worth and which one to use.

:func:`recommend` picks a point for a budget (bytes or offload rate) or, without one, the fewest bytes near the
best cloud-only point; :func:`recommendation_rivals`, :func:`indistinct` and :func:`ranking_noise` say when the
intervals cannot tell it from its neighbours; :func:`report_warnings` names what the numbers cannot say, each with
its fix; :func:`write_report` renders it all, with the table of :mod:`eccentric_det.reports.table` (the one
tools/pareto.py prints), the ceilings, the plot, the BD-rates, the reproduce commands and how each training ended.
Pure Python: no Detectron2."""
import json
import math
import os
import re
import shlex

from ..reports.series import ANCHOR, CLOUD_ONLY_PNG, EDGE_ONLY, SERIES, is_cloud_only
from ..reports.table import front_legend, interval, point_metric, points_table
from .engine import duration

BOOTSTRAP = 200  # resamples of each point's AP interval (--bootstrap)
CEILING, EDGE_ALONE = CLOUD_ONLY_PNG, EDGE_ONLY  # the report's two reference rows
REPRODUCE_WIDTH = 200  # characters: a reproduce command is shorter


def shorter_path(path):
    """``path`` relative to the working directory when that is shorter, else absolute."""
    full = os.path.abspath(path)
    rel = os.path.relpath(full)
    return rel if len(rel) < len(full) else full


class InOutput(str):
    """An argument of a reproduce command that is a path in the output folder, relative to it (``configs/x.yaml``:
    letters, digits, ``_.-/`` only): :func:`reproduce_lines` writes it out or as ``"$OUT/configs/x.yaml"``."""


def reproduce_lines(commands, folder):
    """Shell lines of ``commands`` (lists of arguments, the paths in the output ``folder`` as :class:`InOutput`) and
    the line to run before them. The paths as :func:`shorter_path` gives them while every line is shorter than
    :data:`REPRODUCE_WIDTH` characters (no line before them: ""); else, for a long output path, ``"$OUT/..."`` after
    ``OUT=folder``."""
    def line(command, var):
        return " ".join((f'"$OUT/{a}"' if var else shlex.quote(shorter_path(os.path.join(folder, a))))
                        if isinstance(a, InOutput) else shlex.quote(a) for a in command)

    lines = [line(c, False) for c in commands]
    if all(len(x) < REPRODUCE_WIDTH for x in lines):
        return lines, ""
    return [line(c, True) for c in commands], f"OUT={shlex.quote(shorter_path(folder))}"


def _finite(v):
    return isinstance(v, (int, float)) and math.isfinite(v)


def _metric(point, key):
    return point_metric(point, key)  # None when missing or not finite; a cloud-only point's offload rate is 1


def recommend(points, budget_bytes=None, budget_offload=None, accuracy="AP", tolerance=1.0):
    """The recommended operating point of ``points`` (pareto.json's) and why: with ``budget_bytes`` the most accurate
    point at a mean of at most that many bytes per image, with ``budget_offload`` the most accurate at an offload
    rate of at most that, otherwise the one sending the fewest bytes within ``tolerance`` of the best cloud-only
    point's accuracy. Ties go to fewer bytes. ``(None, why)`` when no point qualifies."""
    scored = [p for p in points if _metric(p, accuracy) is not None]
    if not scored:
        return None, f"no operating point has a finite {accuracy}"
    acc = lambda p: _metric(p, accuracy)  # noqa: E731
    nbytes = lambda p: _metric(p, "bytes_mean")  # noqa: E731
    name = lambda p: f"{p['series']}, {p['label']}"  # noqa: E731
    if budget_bytes is not None and budget_offload is not None:
        raise ValueError("give one budget: bytes or offload rate")
    for budget, key, what in ((budget_bytes, "bytes_mean", "bytes/image (mean)"),
                              (budget_offload, "offload_rate", "offload rate")):
        if budget is None:
            continue
        known = [p for p in scored if _metric(p, key) is not None]
        ok = [p for p in known if _metric(p, key) <= budget]
        if not ok:
            if not known:
                return None, f"no operating point measured its {what}"
            low = min(known, key=lambda p: _metric(p, key))
            return None, (f"no operating point stays within {what} {budget:g}: the lowest is {_metric(low, key):g} "
                          f"({name(low)})")
        best = max(ok, key=lambda p: (acc(p), -(nbytes(p) if nbytes(p) is not None else math.inf)))
        return best, f"the best {accuracy} at {what} <= {budget:g}"
    cloud = [p for p in scored if is_cloud_only(p["series"])]
    if not cloud:
        return None, "no cloud-only point to compare with (add a JPEG sweep); pass --budget-bytes or --budget-offload"
    ref = max(cloud, key=acc)
    ok = [p for p in scored if nbytes(p) is not None and acc(p) >= acc(ref) - tolerance]
    best = min(ok, key=lambda p: (nbytes(p), -acc(p)))
    return best, (f"the fewest bytes/image within {tolerance:g} {accuracy} of the best cloud-only point "
                  f"({name(ref)}: {accuracy} {acc(ref):.2f})")


def recommendation_rivals(points, best, budget_bytes=None, budget_offload=None, accuracy="AP"):
    """The neighbours :func:`recommend`'s rule ranked ``best`` ahead of: with a budget the runner-up (the most accurate
    other point within it); without, the most accurate point sending fewer bytes (passed over for its accuracy). The
    recommendation is distinguishable only when its interval overlaps none of theirs (:func:`indistinct`)."""
    if best is None:
        return []
    others = [p for p in points if p is not best and _metric(p, accuracy) is not None]
    for budget, key in ((budget_bytes, "bytes_mean"), (budget_offload, "offload_rate")):
        if budget is not None:
            ok = [p for p in others if _metric(p, key) is not None and _metric(p, key) <= budget]
            return [max(ok, key=lambda p: _metric(p, accuracy))] if ok else []
    nbytes = _metric(best, "bytes_mean")
    cheaper = [p for p in others if nbytes is not None and _metric(p, "bytes_mean") is not None
               and _metric(p, "bytes_mean") < nbytes]
    return [max(cheaper, key=lambda p: _metric(p, accuracy))] if cheaper else []


def _overlap(a, b):
    return a is not None and b is not None and a[0] <= b[1] and b[0] <= a[1]


def ranking_noise(points, accuracy="AP"):
    """``(overlapping pairs, pairs)`` when the intervals of at least :data:`NOISE_SHARE` of the pairs of rows with
    an interval overlap (at least 3 such rows): the ranking of the rows is noise. None otherwise."""
    ranked = [p for p in points if _metric(p, accuracy) is not None and interval(p, accuracy)]
    pairs = [(x, y) for i, x in enumerate(ranked) for y in ranked[i + 1:]]
    overlapping = sum(_overlap(interval(x, accuracy), interval(y, accuracy)) for x, y in pairs)
    return (overlapping, len(pairs)) if len(ranked) >= 3 and overlapping >= NOISE_SHARE * len(pairs) else None


def indistinct(best, rivals, accuracy="AP"):
    """The ``rivals`` whose interval overlaps ``best``'s: the ranking between them is noise."""
    return [r for r in rivals if _overlap(interval(best, accuracy), interval(r, accuracy))] if best else []


def _fmt(v, spec):
    return "-" if v is None else format(v, spec)


def _value(point, accuracy):
    """``"AP 23.50 [22.10, 24.90]"``."""
    ci = interval(point, accuracy)
    return f"{accuracy} {_fmt(_metric(point, accuracy), '.2f')}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")


def _name(point):
    return f"{point['series']}, {point['label']}"


TEACHER_FIX = "train it longer (teacher:SOLVER.MAX_ITER) or start from pretrained weights with --teacher-weights"
MORE_IMAGES = "evaluate on more test images (a larger --test set, and no --eval-images)"
NOISE_SHARE = 0.75  # at least this share of the pairs of rows overlapping: the ranking is noise


def report_warnings(result, best=None, rivals=(), bootstrap=None, edge_alone=True):
    """Plain warnings about what pareto.json's numbers are worth, each with its fix: a missing ceiling row; the cloud
    teacher not clearly better than the edge alone (its ceiling, the teacher on lossless PNG images, below edge-only
    or its interval overlapping edge-only's); an image codec whose accuracy falls at its highest quality below a
    lower quality's by more than the interval; intervals that overlap so much that the ranking is noise; a
    recommended point (``best``, with :func:`recommendation_rivals`) that its neighbours' intervals overlap; no
    intervals at all (``bootstrap``: the resamples the recipe asked for). ``edge_alone`` False: the edge has no
    detector (--teacher-trunk), so no edge-only row is missing."""
    acc = result.get("accuracy", "AP")
    points = [p for p in result.get("points", []) if _metric(p, acc) is not None]
    a = lambda p: _metric(p, acc)  # noqa: E731
    images = result.get("images")
    out = []
    top = lambda series: max((p for p in points if p.get("series") == series), key=a, default=None)  # noqa: E731
    cloud, edge = top(CEILING), top(EDGE_ALONE)
    if cloud is None:
        out.append(f"No {CEILING} row, {SERIES[CEILING]} (the most an offloading point can reach): "
                   f"nothing here says whether the teacher learned the task; add png=9 to the sweep.")
    if edge is None and edge_alone:
        out.append(f"No {EDGE_ALONE} row, {SERIES[EDGE_ALONE]} (what the device does without the cloud): add "
                   f"edge_only to the sweep.")
    if cloud is not None and edge is not None:
        ci_cloud, ci_edge = interval(cloud, acc), interval(edge, acc)
        below = a(cloud) <= a(edge)
        if below or (ci_cloud and ci_edge and ci_cloud[0] <= ci_edge[1]):
            out.append(f"**The cloud teacher is not clearly better than the edge alone: {TEACHER_FIX}.** On lossless "
                       f"images ({CEILING}) it scores {_value(cloud, acc)}, the edge alone {_value(edge, acc)}"
                       + ("" if below else ": the intervals overlap")
                       + ". The edge was distilled from this teacher, and every offloaded image ends with it: a "
                         "teacher that has not learned the task caps every point that offloads.")
    for series in dict.fromkeys(p["series"] for p in points if is_cloud_only(p["series"])):
        graded = []
        for p in points:
            m = re.match(r"^(\w+) (\d+)$", str(p.get("label", "")))
            if p["series"] == series and m and m.group(1) != "png":  # PNG levels are all lossless
                graded.append((int(m.group(2)), p))
        if len(graded) < 2:
            continue
        q_top, highest = max(graded, key=lambda t: t[0])
        ci = interval(highest, acc)
        worse = [p for q, p in graded if q < q_top and a(p) > (ci[1] if ci else a(highest))]
        if worse:
            lower = max(worse, key=a)
            out.append(f"**{series}: {acc} does not rise with quality.** At its highest quality ({highest['label']}) "
                       f"the cloud scores {_value(highest, acc)}, below {lower['label']}'s {_fmt(a(lower), '.2f')}"
                       + (" by more than the interval" if ci else "")
                       + ". A detector that does worse on better images has not learned what they show, or the test "
                         f"set is too small to rank them: train the teacher longer (teacher:SOLVER.MAX_ITER) or from "
                         f"--teacher-weights, and {MORE_IMAGES}.")
    noise = ranking_noise(points, acc)
    if noise:
        out.append(f"**The intervals overlap so much that the ranking is noise**: {noise[0]} of the {noise[1]} "
                   f"pairs of rows have overlapping {acc} intervals on these {images} test images, so the fronts, the "
                   f"BD-rates and the recommendation cannot be told from chance: {MORE_IMAGES}, and train the stages "
                   f"longer (STAGE:SOLVER.MAX_ITER).")
    close = indistinct(best, rivals, acc)
    if close:
        out.append(f"**The recommended point is not distinguishable from its neighbours**: {_name(best)} "
                   f"({_value(best, acc)}) overlaps "
                   + ", ".join(f"{_name(r)} ({_value(r, acc)})" for r in close)
                   + f", which the rule ranked below it: on these {images} images the choice between them is noise; "
                     f"{MORE_IMAGES} before relying on it.")
    if points and not any(interval(p, acc) for p in points):
        out.append("No intervals: nothing here says whether two rows differ by more than chance"
                   + (" (the sweep ran with --bootstrap 0)" if bootstrap == 0 else "")
                   + f"; run with --bootstrap {BOOTSTRAP}.")
    return out


def _reproduce(point, context):
    """The arguments of the short command that reproduces one row (``context["point_configs"]``, from
    :meth:`eccentric_det.recipe.plan.Recipe.write_point_configs`), or None for a point the recipe did not evaluate."""
    found = (context or {}).get("point_configs", {}).get(os.path.abspath(str(point.get("output_dir", ""))))
    return found.get("command") if found else None


def training_section(stops):
    """report.md's lines on how each training stage ended (its stop.json): iterations run of its budget, why it
    stopped, its held-out curve's last value and its plateau verdict."""
    if not stops:
        return []
    lines = ["## Training", "", "| stage | iterations | ended by | held-out AP (last) | curve |", "|---|--:|---|--:|---|"]
    for key, s in stops.items():
        verdict, curve = s.get("plateau") or {}, s.get("curve") or []
        last = f"{curve[-1][1]:.2f}" if curve else "-"
        flat = ("flat" if verdict.get("flat") else "not flat") + (
            f" (last quarter {verdict['gain']:+.2f})" if _finite(verdict.get("gain")) else "")
        lines.append(f"| {key} | {s.get('iteration')} of {s.get('max_iter')} | {s.get('reason')} | {last} | "
                     f"{flat if curve else 'no held-out curve (--holdout 0)'} |")
    lines += ["", "A stage ends at its plateau (the best held-out AP of its last quarter of iterations less than 0.3 "
                  "above the best before it), at `--max-minutes`, or at its `SOLVER.MAX_ITER`.", ""]
    return lines


def write_report(pareto_json, report_md, budget_bytes=None, budget_offload=None, context=None):
    """report.md from pareto.json: the recommended point for the budget (or that none is distinguishable), the
    warnings (:func:`report_warnings`), the operating points with their intervals (the table of
    :func:`eccentric_det.reports.table.points_table`, as tools/pareto.py prints it), the ceilings, the plot, the
    BD-rates, and how to reproduce each row. Returns the recommended point (or None)."""
    with open(pareto_json) as f:
        result = json.load(f)
    acc = result.get("accuracy", "AP")
    points = result.get("points", [])
    best, why = recommend(points, budget_bytes, budget_offload, acc)
    rivals = recommendation_rivals(points, best, budget_bytes, budget_offload, acc)
    close, noise = indistinct(best, rivals, acc), ranking_noise(points, acc)
    ctx = context or {}
    out_dir = os.path.dirname(os.path.abspath(report_md))
    lines = [f"# ECC trade-off report: {ctx.get('train', '')} -> {result.get('dataset', '')}".rstrip(), ""]
    if ctx.get("command"):  # the recipe's
        trained = (f"Stages 1 and 3-5 trained on `{ctx['train_set']}` (--teacher-trunk: the edge is the teacher's own "
                   f"early layers, trained with the cloud in stage 4; it has no detector, so there is no edge-only "
                   f"row and no Dynamic ECC)" if ctx.get("teacher_trunk") else
                   f"Stages 1-5 trained on `{ctx['train_set']}`, the Dynamic ECC gate fitted on `{ctx['gate_set']}`")
        lines += [f"{ctx['num_classes']} classes. {trained}, every point evaluated on {result.get('images')} images of "
                  f"`{result.get('dataset')}`" + (" (--quick: a smoke test, not a measurement)" if ctx.get("quick")
                                                   else "") + ".", "",
                  f"Made by `{ctx['command']}`.", ""]
        if ctx.get("equal_budget"):
            lines += [f"Training budgets: every cloud-only row is the equal-budget cloud (stage 5: the teacher + "
                      f"{ctx['equal_budget']} iterations, as many as the codec's pre-training and the adaptation "
                      f"together, at the adaptation's schedule), so the split's rows and the cloud's have trained "
                      f"alike.", ""]
    budget = (f"--budget-bytes {budget_bytes:g}" if budget_bytes is not None else
              f"--budget-offload {budget_offload:g}" if budget_offload is not None else "no budget given")
    if best is None:
        lines += [f"**Recommended point ({budget}): none**: {why}.", ""]
    else:
        m = best["metrics"]
        numbers = (f"{_value(best, acc)}, {_fmt(_metric(best, 'bytes_mean'), ',.0f')} bytes/image, "
                   f"offload rate {_fmt(_metric(best, 'offload_rate'), '.2f')}, "
                   f"edge {_fmt(m.get('edge_gflops'), '.3f')} / cloud {_fmt(m.get('cloud_gflops'), '.3f')} GFLOPs per "
                   f"image")
        if close or noise:
            lines += [f"**Recommended point ({budget}): none distinguishable.** The rule ({why}) picks "
                      f"{_name(best)}: {numbers}; but "
                      + (("its interval overlaps that of " + ", ".join(f"{_name(r)} ({_value(r, acc)})" for r in close))
                         if close else f"the intervals of {noise[0]} of the {noise[1]} pairs of rows overlap")
                      + f": on these {result.get('images')} images the choice is noise (see the warnings).", ""]
        else:
            lines += [f"**Recommended point ({budget}): {_name(best)}**: {numbers} ({why}).", ""]
    warnings = report_warnings(result, best, rivals, ctx.get("bootstrap"), not ctx.get("teacher_trunk"))
    if warnings:
        lines += ["## Warnings", ""] + [f"* {w}" for w in warnings] + [""]
    intervals = any(interval(p, acc) for p in points)
    lines += ["## Operating points", "",
              f"{acc} on {result.get('images')} images of `{result.get('dataset')}`"
              + (" with its 95% bootstrap interval over the images"
                 + (f" ({ctx['bootstrap']} resamples)" if ctx.get("bootstrap") else "") if intervals else "")
              + "; bytes per image (mean), the share of images offloaded, GFLOPs per image on each side.", ""]
    marks = {i: (" *(picked, not distinguishable)*" if close or noise else " **(recommended)**")
             for i, p in enumerate(points) if p is best}
    lines += points_table(points, acc, numbered=True, marks=marks)
    lines += ["", front_legend(acc) + ".", ""]
    cloud = ("the equal-budget cloud (stage 5) on lossless images" if ctx.get("equal_budget")
             else SERIES[CEILING])
    ceilings = [text for series, text in (
        (CEILING, f"*{CEILING}* is {cloud}: nothing lost to coding, the most an "
                  f"offloading point can reach"),
        (EDGE_ALONE, f"*{EDGE_ALONE}* is {SERIES[EDGE_ALONE]}: nothing sent, what the device does without the "
                     f"cloud")) if any(p.get("series") == series for p in points)]
    if ceilings:
        lines += ["Ceilings: " + "; ".join(ceilings) + ".", ""]
    png = os.path.join(os.path.dirname(os.path.abspath(pareto_json)), "pareto.png")
    lines += [f"![Pareto fronts]({os.path.relpath(png, out_dir)})", ""]
    lines += [f"## BD-rate against {result.get('anchor', ANCHOR)} ({result.get('bd_method', 'pchip')})", "",
              "| series | BD-rate |", "|---|---|"]
    for series, value in (result.get("bd_rate") or {}).items():
        lines.append(f"| {series} | {f'{value:+.1f}%' if isinstance(value, (int, float)) else value} |")
    lines += ["", "Negative: fewer bytes than the anchor at the same accuracy.", ""]
    rows = [(i, _reproduce(p, ctx)) for i, p in enumerate(points, 1)]
    rows = [(i, c) for i, c in rows if c]
    if rows:
        commands, first = reproduce_lines([c for _, c in rows], out_dir)
        folder = shorter_path(os.path.join(out_dir, "configs"))
        lines += ["## Reproduce a row", "",
                  f"Each row's merged config (every override and the dataset registration in it) is in `{folder}/`. "
                  f"A model row re-runs with train_net `--eval-only` (on the whole test set"
                  + (f"; the sweep used its first {ctx['eval_images']} images" if ctx.get("eval_images") else "")
                  + "); a cloud-only image-codec row with a one-point pareto sweep of its config (train_net does "
                    "not code the input images). Run them from the folder the recipe ran in (`python -m "
                    "eccentric_det.cli.train_net` is `tools/train_net.py`)"
                  + (", after setting `OUT` to the output folder (its path in every line would make them long)"
                     if first else "") + ":", ""]
        lines += [f"`{first}`", ""] if first else []
        lines += [f"{i}. `{c}`" for (i, _), c in zip(rows, commands)]
        lines.append("")
    if ctx.get("checkpoints"):
        fit = ctx.get("fit") or {}
        gate = (f"threshold {fit['threshold']:.4f}, fitted on `{fit.get('dataset')}` for recall "
                f"{fit.get('recall_target')}" + (f" (offload rate {fit['offload_rate']:.2f} there)"
                                                 if _finite(fit.get("offload_rate")) else "")
                if fit.get("fitted") else f"NOT fitted: {fit.get('reason', '?')}; threshold {fit.get('threshold')}")
        lines += ["## Checkpoints", ""]
        for name, path in ctx["checkpoints"].items():
            lines.append(f"* {name}: `{path}`" + (f" ({gate})" if name == "offload_gate" and fit else ""))
        if ctx.get("seconds"):
            lines += ["", "Stage times: " + ", ".join(f"{k} {duration(v)}" for k, v in ctx["seconds"].items()
                                                     if _finite(v)) + "."]
        lines.append("")
    lines += training_section(ctx.get("stops") or {})
    os.makedirs(out_dir, exist_ok=True)
    with open(report_md, "w") as f:
        f.write("\n".join(lines))
    return best
