#!/usr/bin/env python
"""Load benchmark of the cloud server on loopback: N concurrent edge clients for T seconds, against
tools/cloud_server.py with dynamic batching (SERVING.MAX_BATCH_SIZE) and with MAX_BATCH_SIZE 1.

    python benchmarks/bench_serving.py --clients 8 --duration 20 --output output/bench_serving.json
    python benchmarks/bench_serving.py --config-file configs/FashionDet/adaptive_ecc.yaml --halves output/halves

The clients are threads of this process, each a CloudClient (the edge's HTTP client) with its own connection, replaying
payloads that the edge half encoded once up front: on one machine the edge's own compute would
compete with the server being measured. Without ``--halves`` (a folder with edge.pth and cloud.pth)
the model is randomly initialised. Bounded: ``--duration`` seconds and ``--max-requests`` per server.

Besides throughput and latency it reports the server's CPU time per request, which stays put when
other work shares the machine (wall-clock numbers do not).
"""
import argparse
import os
import tempfile
import threading
import time

import cv2
import httpx
import numpy as np
import psutil
import torch

from loopback import start_server
from report import write_json

from eccentric_det.checkpoint import load_model, save_halves
from eccentric_det.edge import CloudClient
from eccentric_det.inputs import InputBuilder
from eccentric_det.serving import get_serving_cfg

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CONFIG = "configs/quick_schedules/fashion_det_adaptive_ecc_instant_test.yaml"


def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", default=DEFAULT_CONFIG, metavar="FILE")
    p.add_argument("--halves", default="", help="folder with edge.pth and cloud.pth (default: random init)")
    p.add_argument("--clients", type=int, default=8, help="concurrent clients")
    p.add_argument("--duration", type=float, default=20.0, help="seconds of load per server (at most 120)")
    p.add_argument("--rounds", type=int, default=4, help="load phases per server, interleaved")
    p.add_argument("--max-requests", type=int, default=5000, help="requests per server, at most")
    p.add_argument("--images", type=int, default=16, help="distinct payloads the clients cycle through")
    p.add_argument("--output", default="output/bench_serving.json")
    p.add_argument("opts", default=[], nargs=argparse.REMAINDER, help="config overrides: KEY VALUE pairs, last")
    return p


def prepare(args, workdir):
    """(edge model, its config, cloud.pth, payload bytes): the edge encodes ``--images`` images once."""
    if args.halves:
        paths = {h: os.path.join(args.halves, f"{h}.pth") for h in ("edge", "cloud")}
        cfg = get_serving_cfg(args.config_file, "edge", paths["edge"], args.opts)
        edge = load_model(cfg)
    else:  # a whole model, as training leaves it, split into the two halves
        cfg = get_serving_cfg(args.config_file, "edge", "", args.opts)
        whole = cfg.clone()
        whole.defrost()
        whole.MODEL.ECCENTRIC.HALF = "both"
        torch.manual_seed(0)
        edge = load_model(whole)
        paths = save_halves(edge, workdir)
    side = cfg.INPUT.MIN_SIZE_TEST
    rng = np.random.default_rng(0)
    builder = InputBuilder.from_config(cfg)
    images = [cv2.resize(rng.integers(0, 256, (side // 8, side // 8, 3), dtype=np.uint8), (side, side))
              for _ in range(args.images)]
    payloads = [p.to_bytes() for p in edge.edge([builder(img) for img in images])]
    return edge, cfg, paths["cloud"], payloads


def load(args, edge, cfg, url, payloads, seconds, stats):
    """Run the clients against ``url`` for ``seconds``, adding to ``stats``."""
    lock, stop = threading.Lock(), time.monotonic() + seconds

    def client_loop(k):
        client = CloudClient(url, timeout_s=60, retries=0, token=cfg.SERVING.TOKEN)
        i = k
        while time.monotonic() < stop and len(stats["latency"]) + stats["errors"] < args.max_requests:
            body = payloads[i % len(payloads)]
            t0 = time.perf_counter()
            try:
                answer = client.send(body)
            except Exception:  # noqa: BLE001  (counted: the goal is zero)
                with lock:
                    stats["errors"] += 1
                continue
            with lock:
                stats["latency"].append(time.perf_counter() - t0)
                stats["cloud_ms"].append(answer["cloud_ms"])
                stats["bytes"] += len(body)
            i += args.clients
        client.close()

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client_loop, args=(k,)) for k in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stats["seconds"] += time.perf_counter() - t0


def cpu_seconds(proc):
    """CPU time the server has used (all threads of its process and of its model worker process):
    unlike wall time, it does not grow when other work on the machine takes the cores."""
    server = psutil.Process(proc.pid)
    return sum(t.user + t.system for t in (p.cpu_times() for p in [server, *server.children(recursive=True)]))


def batch_mean(url):
    m = dict(line.rsplit(" ", 1) for line in httpx.get(url + "/metrics").text.splitlines() if line[0] != "#")
    return float(m["eccentric_batch_size_sum"]) / max(float(m["eccentric_batch_size_count"]), 1.0)


def summary(batch_size, stats, mean_batch):
    ms = np.array(stats["latency"]) * 1e3
    pct = {f"p{q}_ms": float(np.percentile(ms, q)) if len(ms) else float("nan") for q in (50, 95, 99)}
    return {"max_batch_size": batch_size, "requests": len(ms), "errors": stats["errors"],
            "seconds": stats["seconds"], "throughput_rps": len(ms) / stats["seconds"], **pct,
            "bytes_per_s": stats["bytes"] / stats["seconds"], "mean_batch_size": mean_batch,
            "cloud_model_ms_per_image": float(np.mean(stats["cloud_ms"])) if len(ms) else float("nan"),
            "server_cpu_ms_per_request": stats["cpu_s"] * 1e3 / max(len(ms), 1)}


def run(args, edge, cfg, weights, payloads, workdir):
    """Both servers up at once; their load phases interleave (``--rounds``), so that a machine whose
    load drifts treats them alike."""
    sizes = (1, cfg.SERVING.MAX_BATCH_SIZE)
    servers = {}
    try:
        for bs in sizes:
            servers[bs] = start_server(args.config_file, weights, [*args.opts, "SERVING.MAX_BATCH_SIZE", str(bs)],
                                       os.path.join(workdir, f"server_bs{bs}.log"))
        stats = {bs: {"latency": [], "cloud_ms": [], "bytes": 0, "errors": 0, "seconds": 0.0, "cpu_s": 0.0}
                 for bs in sizes}
        for bs in sizes:  # warm-up
            warm = CloudClient(servers[bs][1], timeout_s=60, token=cfg.SERVING.TOKEN)
            for body in payloads[:args.clients]:
                warm.send(body)
            warm.close()
        for _ in range(args.rounds):
            for bs in sizes:
                cpu0 = cpu_seconds(servers[bs][0])
                load(args, edge, cfg, servers[bs][1], payloads, min(args.duration, 120.0) / args.rounds, stats[bs])
                stats[bs]["cpu_s"] += cpu_seconds(servers[bs][0]) - cpu0
        return [summary(bs, stats[bs], batch_mean(servers[bs][1])) for bs in sizes]
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(30)


def main(argv=None):
    args = get_parser().parse_args(argv)
    with tempfile.TemporaryDirectory() as workdir:
        edge, cfg, weights, payloads = prepare(args, workdir)
        runs = run(args, edge, cfg, weights, payloads, workdir)
    result = {"config": args.config_file, "clients": args.clients, "duration_s": args.duration,
              "payload_bytes": float(np.mean([len(p) for p in payloads])), "torch_threads": torch.get_num_threads(),
              "runs": runs, "batching_gain": runs[1]["throughput_rps"] / max(runs[0]["throughput_rps"], 1e-9),
              "batching_cpu_gain": runs[0]["server_cpu_ms_per_request"] / runs[1]["server_cpu_ms_per_request"],
              "load_average": os.getloadavg()}
    print(f"{args.clients} clients, {args.duration:g} s per server, payload {result['payload_bytes']:.0f} B")
    print(f"{'max batch':>9} {'req/s':>7} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'KB/s':>7} {'errors':>6} "
          f"{'mean batch':>10} {'model ms/img':>12} {'server CPU ms/req':>17}")
    for r in runs:
        print(f"{r['max_batch_size']:>9} {r['throughput_rps']:>7.2f} {r['p50_ms']:>7.0f} {r['p95_ms']:>7.0f} "
              f"{r['p99_ms']:>7.0f} {r['bytes_per_s'] / 1e3:>7.1f} {r['errors']:>6} {r['mean_batch_size']:>10.2f} "
              f"{r['cloud_model_ms_per_image']:>12.0f} {r['server_cpu_ms_per_request']:>17.0f}")
    print(f"dynamic batching gain: {result['batching_gain']:.2f}x throughput, {result['batching_cpu_gain']:.2f}x less "
          f"server CPU per request (load average {result['load_average'][0]:.1f} on {os.cpu_count()} CPUs)")
    return write_json(args.output, result)


if __name__ == "__main__":
    main()
