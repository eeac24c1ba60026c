#!/usr/bin/env python
"""The exported edge against the PyTorch edge.

Start-up of the edge device's process: seconds from interpreter start to the first payload, and resident
memory then, for torch alone, the exported edge (``eccentric_det.edge``, onnxruntime and TorchScript) and the
PyTorch edge (Detectron2: ``eccentric_det.deploy.torch_edge.edge_client``). Each is a fresh interpreter, run ``--repeats`` times
(median). The edge is the Adaptive ECC model of the FashionDet config, exported first. With
``--compare-images N``: on the first N images of fashion_det_val, how many payloads (and, for Dynamic ECC,
offload decisions, gate scores and top-10 detections) the exported edges write exactly as the PyTorch edge.

    python benchmarks/bench_edge.py --output output/bench_edge.json
    python benchmarks/bench_edge.py --old-checkout /tmp/old   # also a checkout of an earlier commit's edge client
    python benchmarks/bench_edge.py --compare-images 500 --repeats 0
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

from report import write_json
from tabulate import tabulate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CFG = "configs/FashionDet/adaptive_ecc_vr.yaml"  # its checkpoints: adaptive_ecc_vr.pth, the edge of edge_kd.pth
OPTS = ["MODEL.DEVICE", "cpu"]
GOAL_S, GOAL_MB = 2.0, 400.0  # beyond torch itself

_PRELUDE = """
import time, sys, json, resource
t0 = time.perf_counter()
import numpy as np, torch
t_torch = time.perf_counter() - t0
frame = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
"""
_REPORT = """
rss = int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0]) / 1024
print(json.dumps({"torch_s": t_torch, "total_s": time.perf_counter() - t0, "rss_mb": rss, "modules": len(sys.modules),
                  "bytes": n}))
"""
SCRIPTS = {
    "torch alone": "n = 0",
    "exported edge, onnxruntime": "from eccentric_det.edge import ExportedEdge\n"
                                  "n = len(ExportedEdge({edge!r}, 'onnx').step(frame).payload.to_bytes())",
    "exported edge, TorchScript": "from eccentric_det.edge import ExportedEdge\n"
                                  "n = len(ExportedEdge({edge!r}, 'torchscript').step(frame).payload.to_bytes())",
    "PyTorch edge (Detectron2)": "from eccentric_det.deploy.torch_edge import edge_client\n"
                                 "from eccentric_det.serving.config import get_serving_cfg\n"
                                 "c = edge_client(get_serving_cfg({cfg!r}, 'edge', opts={opts!r}))\n"
                                 "n = len(c.edge.step(frame).payload.to_bytes())",
    "before (old checkout): serving.edge_client": "from eccentric_det.serving.edge_client import EdgeClient\n"
                                                  "from eccentric_det.serving.config import get_serving_cfg\n"
                                                  "c = EdgeClient.from_config(get_serving_cfg({cfg!r}, 'edge', "
                                                  "opts={opts!r}))\n"
                                                  "n = len(c.model.edge([c.inputs(frame)])[0].to_bytes())",
}


def run(name, script, cwd, env):
    out = subprocess.run([sys.executable, "-c", _PRELUDE + script + _REPORT], cwd=cwd, env=env, capture_output=True,
                         text=True)
    if out.returncode:
        raise RuntimeError(f"{name} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.splitlines()[-1])


def compare(n, folder):
    """Agreement of exported edges with the PyTorch edge on the first ``n`` images of fashion_det_val."""
    import cv2

    from eccentric_det.edge import ExportedEdge
    from eccentric_det.deploy.export import export_from_config
    from eccentric_det.deploy.torch_edge import TorchEdge
    from eccentric_det.serving.config import get_serving_cfg

    val = os.path.join(os.environ.get("DETECTRON2_DATASETS", os.path.join(ROOT, "datasets")), "fashion_det", "val")
    frames = [cv2.imread(os.path.join(val, f)) for f in sorted(os.listdir(val))[:n]]
    dynamic = "configs/FashionDet/dynamic_ecc_vr.yaml"
    export_from_config(dynamic, os.path.join(folder, "dynamic"))
    runs = {"adaptive": (TorchEdge.from_config(get_serving_cfg(CFG, "edge", opts=OPTS)), folder, ("onnx", "torchscript")),
            "dynamic": (TorchEdge.from_config(get_serving_cfg(dynamic, "edge")), os.path.join(folder, "dynamic"),
                        ("torchscript",))}
    out = {}
    for name, (ref, path, backends) in runs.items():
        wants = [ref.step(f) for f in frames]
        for backend in backends:
            edge = ExportedEdge(path, backend)
            r = dict.fromkeys(("images", "payload", "offload", "score", "top10"), 0)
            for f, want in zip(frames, wants):
                got = edge.step(f)
                r["images"] += 1
                r["payload"] += (got.payload and got.payload.to_bytes()) == (want.payload and want.payload.to_bytes())
                r["offload"] += got.offload == want.offload
                r["score"] += got.score == want.score
                r["top10"] += _top(got.answer) == _top(want.answer)
            out[f"{name}, {backend}"] = r
    print(tabulate([[k, *v.values()] for k, v in out.items()], headers=["exported edge", *r], tablefmt="pipe"))
    return out


def _top(answer, k=10):
    return None if answer is None else sorted(zip(answer["scores"], answer["classes"], map(tuple, answer["boxes"])),
                                              reverse=True)[:k]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--old-checkout", help="a checkout of an earlier commit, to measure its edge client")
    p.add_argument("--compare-images", type=int, default=0, help="also compare payloads on this many val images")
    p.add_argument("--output", help="JSON file of the results")
    args = p.parse_args(argv)
    sys.path.insert(0, ROOT)
    from eccentric_det.deploy.export import export_from_config

    edge = tempfile.mkdtemp(prefix="bench_edge_")
    export_from_config(CFG, edge, OPTS)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    rows, results = [], {}
    if args.compare_images:
        results["agreement"] = compare(args.compare_images, edge)
    if not args.repeats:
        return write_json(args.output, results) if args.output else results
    for name, script in SCRIPTS.items():
        cwd, run_env = ROOT, env
        if name.startswith("before"):
            if not args.old_checkout:
                continue
            cwd, run_env = args.old_checkout, {**env, "PYTHONPATH": args.old_checkout}
        runs = [run(name, script.format(edge=edge, cfg=CFG, opts=OPTS), cwd, run_env) for _ in range(args.repeats)]
        r = {k: statistics.median(x[k] for x in runs) for k in runs[0]}
        results[name] = r
    base = results["torch alone"]
    for name, r in results.items():
        if name == "agreement":
            continue
        beyond_s, beyond_mb = r["total_s"] - base["total_s"], r["rss_mb"] - base["rss_mb"]
        r.update(beyond_torch_s=beyond_s, beyond_torch_mb=beyond_mb)
        rows.append([name, f"{r['total_s']:.2f}", f"{beyond_s:.2f}", f"{r['rss_mb']:.0f}", f"{beyond_mb:.0f}",
                     int(r["modules"]), int(r["bytes"])])
    print(tabulate(rows, headers=["process", "s to first payload", "s beyond torch", "RSS MB", "MB beyond torch",
                                  "modules", "payload B"], tablefmt="pipe"))
    print(f"goal: <= {GOAL_S} s and <= {GOAL_MB} MB beyond torch")
    results.update(repeats=args.repeats, goal=[GOAL_S, GOAL_MB])
    return write_json(args.output, results) if args.output else results


if __name__ == "__main__":
    main()
