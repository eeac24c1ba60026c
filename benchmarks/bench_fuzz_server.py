#!/usr/bin/env python
"""Fuzz a live cloud server on loopback with crafted payloads (eccentric_det.codec.attacks.crafted).

    OMP_NUM_THREADS=1 python benchmarks/bench_fuzz_server.py --num 10000 --output output/bench_fuzz_server.json
    python benchmarks/bench_fuzz_server.py --config-file configs/FashionDet/adaptive_ecc_vr.yaml \
        --weights checkpoints/fashion_det/adaptive_ecc_vr.pth --clients 4 --max-seconds 900 \
        MODEL.ROI_HEADS.SCORE_THRESH_TEST 0.3

tools/cloud_server.py runs in a subprocess (its model in a supervised worker process by default);
this process builds the same model to encode legit payloads (FashionDet val images when
datasets/fashion_det exists, else smooth random images) and to read its PayloadSpec. ``--clients``
threads POST ``--num`` crafted payloads to /v1/detect, with a legit one every ``--legit-every``
requests, which must be answered 200. Bounded by ``--max-seconds`` (then it reports what it has).

Measured: requests per status code, 5xx, hangs (client timeouts), crashes (server exit, /healthz
worker_restarts increase or worker_pid change, polled every second), time to reject (4xx) and to
accept (200), per attack kind 200/400/other, server RSS (process + children) before and after, and
legit payloads answered 200.
"""
import argparse
import glob
import itertools
import os
import random
import subprocess
import tempfile
import threading
import time
from collections import Counter, defaultdict

import cv2
import httpx
import numpy as np
import psutil

from loopback import start_server
from report import write_json

from eccentric_det.checkpoint import load_model
from eccentric_det.codec.attacks import crafted
from eccentric_det.tasks import get_eccentric_cfg
from eccentric_det.inputs import InputBuilder
from eccentric_det.serving.detections import CONTENT_TYPE, DETECT_PATH

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEADERS = {"content-type": CONTENT_TYPE}


def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", default="configs/FashionDet/adaptive_ecc_vr.yaml", metavar="FILE")
    p.add_argument("--weights", default="checkpoints/fashion_det/adaptive_ecc_vr.pth")
    p.add_argument("--num", type=int, default=10000, help="crafted payloads to send")
    p.add_argument("--clients", type=int, default=4, help="concurrent client threads")
    p.add_argument("--legit", type=int, default=8, help="legit payloads (encoded up front)")
    p.add_argument("--legit-every", type=int, default=100, help="a legit payload every N requests")
    p.add_argument("--timeout", type=float, default=60.0, help="client timeout per request, s (a hang)")
    p.add_argument("--max-seconds", type=float, default=900.0, help="stop sending after this long")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", default="output/bench_fuzz_server.json")
    p.add_argument("opts", default=[], nargs=argparse.REMAINDER,
                   help="config overrides for server and model (after MODEL.DEVICE cpu, no EDGE.WEIGHTS): KEY VALUE "
                        "pairs, last")
    return p


def server_opts(args):
    """The config overrides of the server and of this process's model."""
    return ["MODEL.DEVICE", "cpu", "MODEL.ECCENTRIC.EDGE.WEIGHTS", ""] + args.opts


def legit_payloads(args):
    """(PayloadSpec, legit Payloads) of the model the server runs, with its own offload decisions."""
    cfg = get_eccentric_cfg(args.config_file, ["MODEL.WEIGHTS", args.weights] + server_opts(args))
    model = load_model(cfg)
    files = sorted(glob.glob(os.path.join(ROOT, "datasets", "fashion_det", "val", "*.jpg")))[:args.legit]
    if files:
        images = [cv2.imread(f, cv2.IMREAD_COLOR) for f in files]
    else:  # smooth random images, as tests/helpers.py::image_input
        rng = np.random.default_rng(args.seed)
        sizes = [(256, 256), (200, 256), (256, 320), (180, 240)]
        images = [cv2.resize(rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8), (w, h))
                  for h, w in itertools.islice(itertools.cycle(sizes), args.legit)]
    builder = InputBuilder.from_config(cfg)
    # what the edge sends (a region-level model: its region payloads), or the whole payload of an image it keeps
    payloads = [model.edge_step([inp])[0].payload or model.edge([inp])[0] for inp in map(builder, images)]
    return model.payload_spec(), payloads, bool(files)


def rss_mb(proc):
    p = psutil.Process(proc.pid)
    total = 0
    for q in [p] + p.children(recursive=True):
        try:
            total += q.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total / 2**20


def health(url):
    try:
        h = httpx.get(url + "/healthz", timeout=10).json()
        return h["worker_pid"], h["worker_restarts"]
    except (httpx.HTTPError, ValueError, KeyError):
        return None


def fuzz(args, spec, legit, proc, url):
    """Send everything; returns (records [(kind, status, seconds)], crash info, 5xx samples, seconds)."""
    rng, lock, done = random.Random(args.seed), threading.Lock(), threading.Event()
    deadline = time.monotonic() + args.max_seconds
    jobs = itertools.count()
    records, samples, sent = [], [], Counter()
    pid0, restarts0 = health(url)
    crash = {"pids": [pid0], "restarts": 0, "server_exit": None}

    def next_job():
        with lock:
            if sent["crafted"] >= args.num or time.monotonic() > deadline or proc.poll() is not None:
                return None
            i = next(jobs)
            if i % args.legit_every == args.legit_every - 1:
                sent["legit"] += 1
                return "legit", legit[i // args.legit_every % len(legit)].to_bytes()
            sent["crafted"] += 1
            return crafted(spec, legit, rng)

    def client_loop():
        with httpx.Client(timeout=args.timeout) as client:
            while (job := next_job()) is not None:
                kind, body = job
                t0, detail = time.perf_counter(), ""
                try:
                    r = client.post(url + DETECT_PATH, content=body, headers=HEADERS)
                    status, detail = r.status_code, r.text[:300]
                except httpx.TimeoutException:
                    status = "timeout"
                except httpx.TransportError as e:
                    status = f"transport:{type(e).__name__}"
                dt = time.perf_counter() - t0
                with lock:
                    records.append((kind, status, dt))
                    if not (isinstance(status, int) and status < 500) and len(samples) < 10:
                        samples.append({"kind": kind, "status": status, "bytes": len(body), "detail": detail})

    def monitor():
        while not done.wait(1.0):
            if (code := proc.poll()) is not None:
                crash["server_exit"] = code
                return
            if (h := health(url)) is not None:
                if h[0] != crash["pids"][-1]:
                    crash["pids"].append(h[0])
                crash["restarts"] = h[1] - restarts0

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client_loop) for _ in range(args.clients)]
    watcher = threading.Thread(target=monitor)
    for t in threads + [watcher]:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - t0
    done.set()
    watcher.join()
    if proc.poll() is None and (h := health(url)) is not None:  # the final word on restarts
        crash["restarts"] = h[1] - restarts0
        if h[0] != crash["pids"][-1]:
            crash["pids"].append(h[0])
    else:
        crash["server_exit"] = proc.poll()
    return records, crash, samples, seconds


def pct(xs, q):
    return round(float(np.percentile(np.array(xs) * 1e3, q)), 2) if xs else None


def summarize(records, crash, samples, seconds, rss, from_dataset):
    crafted_recs = [r for r in records if r[0] != "legit"]
    statuses = Counter(str(s) for _, s, _ in records)
    per_kind = defaultdict(Counter)
    for kind, s, _ in crafted_recs:
        per_kind[kind]["200" if s == 200 else "400" if s == 400 else "other"] += 1
    legit = [s for k, s, _ in records if k == "legit"]
    rejects = [dt for _, s, dt in crafted_recs if isinstance(s, int) and 400 <= s < 500]
    accepts = [dt for _, s, dt in crafted_recs if s == 200]
    return {
        "seconds": round(seconds, 1), "sent": len(records), "crafted_sent": len(crafted_recs),
        "legit_sent": len(legit), "legit_ok": legit.count(200), "legit_from_dataset": from_dataset,
        "status_counts": dict(sorted(statuses.items())),
        "5xx": sum(isinstance(s, int) and s >= 500 for _, s, _ in records),
        "hangs": statuses["timeout"],
        "transport_errors": sum(n for s, n in statuses.items() if s.startswith("transport:")),
        "worker_restarts": crash["restarts"], "worker_pid_changes": len(crash["pids"]) - 1,
        "server_exit_code": crash["server_exit"],
        "crashes": max(crash["restarts"], len(crash["pids"]) - 1) + (crash["server_exit"] is not None),
        "reject_ms": {"p50": pct(rejects, 50), "p99": pct(rejects, 99), "max": pct(rejects, 100)},
        "accept_ms": {"p50": pct(accepts, 50), "p99": pct(accepts, 99), "max": pct(accepts, 100)},
        "per_kind": {k: dict(per_kind[k]) for k in sorted(per_kind)},
        "server_rss_mb": rss, "samples_not_4xx": samples,
    }


def table(r):
    rows = [("sent (crafted + legit)", f"{r['sent']} ({r['crafted_sent']} + {r['legit_sent']}) in {r['seconds']} s"),
            *[(f"status {s}", n) for s, n in r["status_counts"].items()],
            ("5xx", r["5xx"]), ("hangs (client timeout)", r["hangs"]), ("transport errors", r["transport_errors"]),
            ("crashes (worker restarts / pid changes / server exit)",
             f"{r['crashes']} ({r['worker_restarts']} / {r['worker_pid_changes']} / {r['server_exit_code']})"),
            ("reject (4xx) ms p50 / p99 / max", " / ".join(str(v) for v in r["reject_ms"].values())),
            ("accept (200) ms p50 / p99 / max", " / ".join(str(v) for v in r["accept_ms"].values())),
            *[(f"kind {k}: 200 / 400 / other", f"{c.get('200', 0)} / {c.get('400', 0)} / {c.get('other', 0)}")
              for k, c in r["per_kind"].items()],
            ("server RSS MB before / after", " / ".join(f"{v:.0f}" for v in r["server_rss_mb"].values())),
            ("legit answered 200 / sent", f"{r['legit_ok']} / {r['legit_sent']}")]
    return "\n".join(["| measure | value |", "|---|---|"] + [f"| {a} | {b} |" for a, b in rows])


def main(argv=None):
    args = get_parser().parse_args(argv)
    spec, legit, from_dataset = legit_payloads(args)
    with tempfile.TemporaryDirectory() as workdir:
        log_path = os.path.join(workdir, "server.log")
        proc, url = start_server(args.config_file, args.weights, server_opts(args), log_path, {"ECCENTRIC_TOKEN": None})
        try:
            for p in legit:  # warm-up, and the legit payloads must work before anything is crafted
                r = httpx.post(url + DETECT_PATH, content=p.to_bytes(), headers=HEADERS, timeout=args.timeout)
                if r.status_code != 200:
                    raise RuntimeError(f"legit payload answered {r.status_code}: {r.text[:500]}")
            rss = {"before": rss_mb(proc)}
            records, crash, samples, seconds = fuzz(args, spec, legit, proc, url)
            rss["after"] = rss_mb(proc) if proc.poll() is None else float("nan")
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        with open(log_path, errors="replace") as f:
            errors = [line.rstrip() for line in f if "Traceback" in line or "ERROR" in line]
    result = {"config": args.config_file, "weights": args.weights, "clients": args.clients, "num": args.num,
              "seed": args.seed, "timeout_s": args.timeout,
              **summarize(records, crash, samples, seconds, rss, from_dataset),
              "server_log_errors": len(errors), "server_log_last_errors": errors[-5:]}
    print(table(result))
    if errors:
        print(f"server log: {len(errors)} error lines, last: {errors[-1]}")
    return write_json(args.output, result)


if __name__ == "__main__":
    main()
