#!/usr/bin/env python
"""End-to-end latency per frame over an emulated uplink: edge time + transfer time + cloud time, at each
``--mbps`` (1, 5, 20 Mbit/s) with a set ``--rtt-ms``, one frame in flight at a time, on this machine's CPU, for

* ECC (each ``--ecc-config``: Dynamic ECC, Adaptive ECC): the edge step in this process, the payload's bytes to
  ``tools/cloud_server.py`` (the cloud half of the same config) with the edge's HTTP client (CloudClient);
* per-frame JPEG at each ``--jpeg`` quality: the Independent-ECC edge at policy "always" (``--jpeg-config``: the
  frame resized to the network's input, JPEG-coded) to ``tools/cloud_server.py`` serving its cloud half, the cloud
  detector (cloud_teacher.pth, the architecture of configs/FashionDet/cloud_teacher.yaml) on the decoded JPEG;
* H.264 streaming at each ``--h264-kbps`` (libx264 through PyAV: zero-latency tuning, no B-frames, a keyframe every
  ``--gop`` frames): each frame's packet as it leaves the encoder, POSTed to a cloud of this script (the serving
  stack's HTTP app and batcher around a decoder per stream and ``--cloud-config``'s detector); a frame's latency is
  encode + transfer of its packet + decode + detect;
* the edge alone (Dynamic ECC's edge detector, nothing sent).

``--edge-backend onnx`` (or ``torchscript``; several may be given) adds ECC rows whose edge is the config's edge
exported as ``tools/export_edge.py`` does it and run as a device runs it: :class:`eccentric_det.edge.ExportedEdge` in
the device's client (:class:`eccentric_det.edge.EdgeClient`), the same payloads to the same cloud.

The methods take turns frame by frame, in a shuffled order; every server runs its model in the server process (no
worker process) with batches of one (one camera).

The transfer is real: every byte between the client and its server goes through a TCP proxy in its own process that
passes it through a token bucket at the link's rate and delays it by half the RTT, each way
(:mod:`eccentric_det.evaluation.link`; ``tc netem`` would do the same in the kernel, but this machine's kernel has no
netem: the script probes and says so). The proxy times each request/response exchange, so a frame's time splits into
edge (the client's own work), transfer (uplink + downlink at the proxy), cloud (the server's time between the last
request byte and the first answer byte: HTTP, validation, decoding, the model) and the client's HTTP handling.

    python benchmarks/bench_latency.py --output output/bench_latency
    python benchmarks/bench_latency.py --frames 30 --mbps 1 5 20 --rtt-ms 20 --jpeg 50 90 --h264-kbps 128 512

Writes OUTPUT/bench_latency.json (per method and bandwidth: mean, p50 and p95 of edge, transfer, cloud and total ms,
and of the CPU times; bytes per frame; the mechanism, the RTT; the issue's latency goals, met or not),
OUTPUT/bench_latency.md (the table) and OUTPUT/bench_latency.png (mean total latency against bandwidth, one line per
method; p95 dotted). The CPU times (this process's, the server's) give a second total, "idle-CPU estimate": client
CPU + transfer + server CPU, what the frame would take if nothing else wanted the cores (on a VM, CPU time still
counts some of the host's contention).
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

# one camera: no batching wait; the model in the server's process (as the H.264 cloud); a cloud half needs no edge
# checkpoint (MODEL.WEIGHTS holds the whole model)
SERVER_OPTS = ["SERVING.MAX_BATCH_SIZE", "1", "SERVING.WORKER_PROCESS", "False", "MODEL.ECCENTRIC.EDGE.WEIGHTS", ""]
ECC_NAMES = {"dynamic_ecc_vr": "Dynamic ECC", "adaptive_ecc_vr": "Adaptive ECC", "dynamic_region_ecc": "Region ECC"}
H264_FLAG_NEW_STREAM = 1  # first byte of an H.264 request: 1 starts a new stream (a new decoder), 0 continues it


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--video", default="", help="video file (default: the demo's, datasets/demo/fashion_bikes.mp4)")
    p.add_argument("--frames", type=int, default=50, help="first frames of the video measured (per method, bandwidth)")
    p.add_argument("--warmup", type=int, default=2, help="frames run and discarded before each measurement")
    p.add_argument("--mbps", nargs="+", type=float, default=[1, 5, 20], help="link rates (Mbit/s)")
    p.add_argument("--down-mbps", type=float, default=0.0, help="downlink rate (Mbit/s; 0: the uplink's)")
    p.add_argument("--rtt-ms", type=float, default=20.0, help="round-trip time of the link (ms)")
    p.add_argument("--ecc-config", nargs="*", default=["configs/FashionDet/dynamic_ecc_vr.yaml",
                                                       "configs/FashionDet/adaptive_ecc_vr.yaml"])
    p.add_argument("--edge-backend", nargs="+", default=["pytorch"], choices=["pytorch", "onnx", "torchscript"],
                   help="the ECC edges run: in PyTorch, and/or each config's edge exported (tools/export_edge.py) "
                        "and run as a device runs it; one row per config and backend")
    p.add_argument("--jpeg-config", default="configs/FashionDet/independent_ecc.yaml",
                   help="image-mode config whose cloud half is the cloud detector on JPEG payloads")
    p.add_argument("--jpeg", nargs="*", type=int, default=[50, 90], help="JPEG qualities")
    p.add_argument("--cloud-config", default="configs/FashionDet/cloud_teacher.yaml", help="H.264's cloud detector")
    p.add_argument("--cloud-weights", default="checkpoints/fashion_det/cloud_teacher.pth")
    p.add_argument("--h264-kbps", nargs="*", type=float, default=[128, 512], help="H.264 bitrates (kbit/s)")
    p.add_argument("--gop", type=int, default=25, help="H.264 keyframe interval (frames)")
    p.add_argument("--preset", default="veryfast", help="libx264 preset")
    p.add_argument("--no-edge-only", action="store_true", help="skip the edge-only row")
    p.add_argument("--no-probe", action="store_true", help="do not probe for tc netem (needs root, ip, tc)")
    p.add_argument("--output", default="output/bench_latency")
    p.add_argument("--serve-h264", type=int, default=0, metavar="PORT", help=argparse.SUPPRESS)  # the H.264 cloud
    return p.parse_args(argv)


# ---------------------------------------------------------------------------------------------- the H.264 cloud
class H264Spec:
    """What the H.264 cloud accepts: a flag byte (1: a new stream), the stream's number (a byte), then one access unit
    (a frame's packet)."""

    fingerprint = b"H264"

    def parse(self, body, key=None):
        from eccentric_det.codec import PayloadError

        if len(body) < 3 or body[0] not in (0, H264_FLAG_NEW_STREAM):
            raise PayloadError("an H.264 request is a flag byte (0, or 1: a new stream), the stream's number and one "
                               "frame's packet")
        return [body]


class H264Backend:
    """The cloud of the H.264 baseline, for :class:`~eccentric_det.serving.runtime.CloudRuntime`: a decoder per stream
    (stateful, as video streaming is) and the cloud detector on each decoded frame. ``cloud_ms``: decode + detect."""

    offload_mode = "h264"

    def __init__(self, config, weights):
        from eccentric_det.checkpoint import load_model
        from eccentric_det.data.datasets import class_names_of
        from eccentric_det.inputs import InputBuilder
        from eccentric_det.tasks import get_eccentric_cfg

        cfg = get_eccentric_cfg(config, ["MODEL.WEIGHTS", weights] if weights else [])
        self.model, self.inputs, self.class_names = load_model(cfg).eval(), InputBuilder.from_config(cfg), \
            class_names_of(cfg)
        self.spec, self.decoders = H264Spec(), {}

    def run(self, blobs, timeout_s=None):
        import av
        import torch

        from eccentric_det.codec import PayloadError
        from eccentric_det.serving.detections import instances_to_dict

        out = []
        for body in blobs:
            t0 = time.perf_counter()
            if body[0] == H264_FLAG_NEW_STREAM or body[1] not in self.decoders:
                self.decoders[body[1]] = av.CodecContext.create("h264", "r")
            frames = self.decoders[body[1]].decode(av.Packet(bytes(body[2:])))
            if len(frames) != 1:
                out.append(PayloadError(f"the packet decoded to {len(frames)} frames, not 1"))
                continue
            with torch.no_grad():
                inst = self.model([self.inputs(frames[0].to_ndarray(format="bgr24"))])[0]["instances"].to("cpu")
            out.append({**instances_to_dict(inst, self.class_names), "cloud_ms": (time.perf_counter() - t0) * 1e3,
                        "batch_size": 1})
        return out

    def health(self):
        return {}

    def close(self):
        pass


def serve_h264(args):
    """The H.264 cloud: the serving stack's HTTP app and batcher (batches of 1) around :class:`H264Backend`."""
    import uvicorn

    from eccentric_det.serving.http_app import create_app
    from eccentric_det.serving.runtime import CloudRuntime

    runtime = CloudRuntime(H264Backend(args.cloud_config, args.cloud_weights), max_batch_size=1, max_wait_ms=0)
    try:
        uvicorn.run(create_app(runtime, 16 * 1024 * 1024), host="127.0.0.1", port=args.serve_h264, access_log=False,
                    log_level="warning")
    finally:
        runtime.close()


# ---------------------------------------------------------------------------------------------- the mechanism
def probe_netem():
    """Whether ``tc qdisc ... netem`` works in a throwaway network namespace (root, ip and tc needed), and what
    the kernel said; also whether the token bucket filter (tbf) does."""
    if os.name != "posix" or os.geteuid() != 0 or not (shutil.which("ip") and shutil.which("tc")):
        return {"probed": False, "why": "needs root, ip and tc"}
    ns = f"eccdet-probe-{os.getpid()}"

    def run(*cmd):
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        return r.returncode == 0, (r.stderr or r.stdout).strip()

    ok, msg = run("ip", "netns", "add", ns)
    if not ok:
        return {"probed": False, "why": f"ip netns add failed: {msg}"}
    try:
        run("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        netem, netem_msg = run("ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", "lo", "root", "netem",
                               "rate", "1mbit", "delay", "10ms")
        run("ip", "netns", "exec", ns, "tc", "qdisc", "del", "dev", "lo", "root")
        tbf, tbf_msg = run("ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", "lo", "root", "tbf", "rate",
                           "1mbit", "burst", "16kb", "latency", "1s")
    finally:
        run("ip", "netns", "del", ns)
    return {"probed": True, "netem": netem, "netem_message": netem_msg or "ok", "tbf": tbf,
            "tbf_message": tbf_msg or "ok"}


def mechanism(args, probe, settings):
    why = ("tc netem is unavailable here (" + probe.get("netem_message", "") + ")" if probe.get("probed")
           and not probe.get("netem") else "the same on every machine, and it times each exchange")
    return {"name": "token-bucket TCP proxy (eccentric_det.evaluation.link.ThrottledLink)",
            "description": "every byte between client and server passes a proxy process that cuts it into TCP-sized "
                           "segments (1448 data bytes, each charged 52 header bytes), releases them through a token "
                           "bucket at the link rate (no burst credit: a serialising link) and delays them by RTT/2, "
                           "each way; the proxy times each exchange (uplink: first request byte in -> last out; "
                           "cloud: -> first answer byte in; downlink: -> last answer byte out). One frame in flight; "
                           "warm keep-alive HTTP connections; TCP slow start over the emulated RTT is not modelled.",
            "why": why, "tc_probe": probe, "rtt_ms": args.rtt_ms, "link_settings": settings,
            "downlink": f"{args.down_mbps:g} Mbit/s" if args.down_mbps else "the uplink's rate"}


# ---------------------------------------------------------------------------------------------- the clients
class Measure:
    """Per-frame timings of one method at one bandwidth."""

    def __init__(self):
        self.rows = []

    def add(self, edge_ms, rtt_ms, exchanges, model_ms, payload_bytes, client_cpu_ms, cloud_cpu_ms, retried=False):
        """``edge_ms``: the client's wall time outside the cloud call; ``rtt_ms``: the cloud call's; ``exchanges``: the
        proxy's timings of it; ``model_ms``: the time the server reports; ``client_cpu_ms``, ``cloud_cpu_ms``: CPU
        time of the client process (edge and HTTP client) and of the server process over the frame."""
        transfer = sum(e["up_ms"] + e["down_ms"] for e in exchanges)
        cloud = sum(e["server_ms"] for e in exchanges)
        self.rows.append({"edge_ms": edge_ms, "transfer_ms": transfer, "cloud_ms": cloud,
                          "client_http_ms": max(rtt_ms - transfer - cloud, 0.0), "total_ms": edge_ms + rtt_ms,
                          "model_ms": model_ms, "client_cpu_ms": client_cpu_ms, "cloud_cpu_ms": cloud_cpu_ms,
                          "total_ms_cpu": client_cpu_ms + transfer + cloud_cpu_ms, "bytes": payload_bytes,
                          "up_wire_bytes": sum(e["up_bytes"] for e in exchanges),
                          "down_wire_bytes": sum(e["down_bytes"] for e in exchanges),
                          "offloaded": bool(exchanges), "retried": bool(retried)})


def summarize(rows, fps):
    out = {}
    for k in ("edge_ms", "transfer_ms", "cloud_ms", "client_http_ms", "total_ms", "model_ms", "client_cpu_ms",
              "cloud_cpu_ms", "total_ms_cpu", "bytes", "up_wire_bytes", "down_wire_bytes"):
        v = np.array([r[k] for r in rows], float)
        out[k] = {"mean": float(v.mean()), "p50": float(np.median(v)), "p95": float(np.percentile(v, 95))}
    sent = [r["total_ms"] for r in rows if r["offloaded"]]
    out["offload_rate"] = sum(r["offloaded"] for r in rows) / len(rows)
    out["retried_frames"] = sum(r["retried"] for r in rows)  # a stale keep-alive connection: see send_retrying_stale
    out["total_ms_offloaded_frames"] = float(np.mean(sent)) if sent else None
    out["kbps_at_fps"] = 8 * out["bytes"]["mean"] * fps / 1000
    out["frames"] = len(rows)
    out["total_ms_frames"] = [round(r["total_ms"], 3) for r in rows]  # frame by frame, for the paired comparisons
    return out


def send_retrying_stale(send):
    """(answer, ms of a failed first attempt or 0) of ``send()``, retried once at once when the server had closed the
    idle keep-alive connection just as the request went out (uvicorn closes one idle for 5 s, httpx reuses one idle
    for up to 5 s; the emulated delay widens the window): a camera sending 25 frames a second never idles that
    long, so the failed attempt is not timed, only counted. Any other error is raised."""
    from eccentric_det.demo import DemoError
    from eccentric_det.edge.http import CloudUnavailable

    t0 = time.perf_counter()
    try:
        return send(), 0.0
    except (DemoError, CloudUnavailable) as e:
        if not isinstance(e, CloudUnavailable) and not isinstance(e.__cause__, CloudUnavailable):
            raise
    return send(), (time.perf_counter() - t0) * 1e3


class TimedCloud:
    """The demo's HTTP cloud (:class:`~eccentric_det.demo.HttpCloud`, the edge's CloudClient) with each send's wall
    time, the server's reported time and any failed attempt's time (:func:`send_retrying_stale`) kept; called as the
    demo's cloud (``cloud(data, image_size)``) or as a device's (``cloud.send(body)``: the answer as it comes)."""

    def __init__(self, url):
        from eccentric_det.demo import HttpCloud

        self.http = HttpCloud(url, timeout_s=120, retries=0)
        self.name, self.key = self.http.name, None
        self.reset()

    def reset(self):
        self.rtt_ms = self.model_ms = self.lost_ms = 0.0

    def __call__(self, data, image_size):
        return self._timed(lambda: self.http(data, image_size))

    def send(self, body):
        return self._timed(lambda: self.http.client.send(body))

    def _timed(self, send):
        t0 = time.perf_counter()
        answer, lost = send_retrying_stale(send)
        self.rtt_ms += (time.perf_counter() - t0) * 1e3 - lost
        self.lost_ms += lost
        self.model_ms += answer.get("cloud_ms", 0.0)
        return answer

    def close(self):
        self.http.client.close()


class ServerCPU:
    """CPU seconds a server process (all its threads) has used so far: its CPU-time clock (Linux:
    ``clock_getcpuclockid``'s clock id, ns resolution), else psutil's 10 ms ticks; 0 without a process."""

    def __init__(self, proc=None):
        self.pid = proc.pid if proc is not None else None
        self.clock = ((~self.pid) << 3) | 2 if self.pid and sys.platform.startswith("linux") else None  # CPUCLOCK_SCHED

    def __call__(self):
        if self.pid is None:
            return 0.0
        if self.clock is not None:
            return time.clock_gettime(self.clock)
        import psutil

        t = psutil.Process(self.pid).cpu_times()
        return t.user + t.system


class PredictorMethod:
    """ECC, JPEG or the edge alone: an EccentricPredictor (the project's edge step and stream loop) whose cloud is
    ``cloud`` (a :class:`TimedCloud` behind ``link``, its server's CPU time ``server_cpu``; None: nothing is sent)."""

    def __init__(self, name, kind, predictor, cloud=None, link=None, server_cpu=None):
        self.name, self.kind, self.predictor, self.cloud, self.link = name, kind, predictor, cloud, link
        self.server_cpu = server_cpu or ServerCPU()

    def start(self, fps):
        self.predictor.start_stream(fps)

    def step(self, frame, measure):
        if self.cloud is not None:
            self.cloud.reset()
        server0, cpu0, t0 = self.server_cpu(), time.process_time(), time.perf_counter()
        r = self.predictor(frame)
        total, cpu, server = (time.perf_counter() - t0) * 1e3, time.process_time() - cpu0, self.server_cpu() - server0
        rtt, lost = (self.cloud.rtt_ms, self.cloud.lost_ms) if self.cloud is not None else (0.0, 0.0)
        exchanges = self.link.take() if self.link is not None else []
        if measure is not None:
            measure.add(total - rtt - lost, rtt, exchanges, self.cloud.model_ms if self.cloud is not None else 0.0,
                        self.sent(r), cpu * 1e3, server * 1e3, retried=lost > 0)

    @staticmethod
    def sent(result):
        return result.bytes


class DeviceMethod(PredictorMethod):
    """ECC as a device runs it: an exported edge (:class:`~eccentric_det.edge.ExportedEdge`) in the device's own
    client (:class:`~eccentric_det.edge.EdgeClient`: the stream loop, the payload POSTed by CloudClient, the answer
    in wire format), with neither Detectron2 nor the demo's display on the way."""

    def __init__(self, name, edge, cloud, link, server_cpu):
        super().__init__(name, "ecc", None, cloud, link, server_cpu)
        self.edge = edge

    def start(self, fps):
        from eccentric_det.edge import EdgeClient

        self.predictor = EdgeClient(self.edge, self.cloud)  # a new stream

    @staticmethod
    def sent(result):
        return result.bytes_sent


class H264Method:
    """H.264 streaming at ``kbps``: each frame's packet POSTed (CloudClient) as libx264 gives it; edge = colour
    conversion + encoding."""

    kind = "h264"

    def __init__(self, kbps, client, link, gop, preset, server_cpu, stream):
        self.name, self.kbps, self.client, self.link, self.gop, self.preset = (f"H.264 {kbps:g} kbit/s", kbps, client,
                                                                                link, gop, preset)
        self.server_cpu, self.stream = server_cpu, stream  # its number: one decoder each in the cloud
        self.encoder = None

    def start(self, fps, size):
        import torch
        from eccentric_det.evaluation.video import _x264

        h, w = size
        # one thread budget per method: the device's, as the exported edge's onnxruntime takes it
        threads = torch.get_num_threads()
        self.encoder, self.index = _x264(w, h, fps, int(self.kbps * 1000), self.gop, self.preset, threads), 0

    def step(self, frame, measure):
        import av

        server0, cpu0, t0 = self.server_cpu(), time.process_time(), time.perf_counter()
        vf = av.VideoFrame.from_ndarray(frame, format="bgr24").reformat(format="yuv420p")
        vf.pts = self.index
        packet = b"".join(bytes(p) for p in self.encoder.encode(vf))
        edge = (time.perf_counter() - t0) * 1e3
        if not packet:
            raise RuntimeError("libx264 held a frame back: not a zero-latency encoder")
        body = bytes([H264_FLAG_NEW_STREAM if self.index == 0 else 0, self.stream]) + packet
        self.index += 1
        t1 = time.perf_counter()
        answer, lost = send_retrying_stale(lambda: self.client.send(body))
        rtt = (time.perf_counter() - t1) * 1e3 - lost
        cpu, server = time.process_time() - cpu0, self.server_cpu() - server0
        exchanges = self.link.take()
        if measure is not None:
            measure.add(edge, rtt, exchanges, answer["cloud_ms"], len(body), cpu * 1e3, server * 1e3, lost > 0)


def run_methods(methods, frames, fps, warmup, seed=0):
    """Every method on the same frames, interleaved frame by frame in a shuffled order (a machine whose load drifts
    treats them alike, and no method always follows another or an idle pause), one frame in flight; each starts a new
    stream (an H.264 stream starts with a keyframe) after ``warmup`` frames it ran and discarded, interleaved alike.
    {method name: per-frame rows}."""
    rng = np.random.default_rng(seed)
    size = frames[0].shape[:2]
    measures = {m.name: Measure() for m in methods}
    for part, measured in ((frames[:warmup], False), (frames, True)):
        for m in methods:
            m.start(fps, size) if m.kind == "h264" else m.start(fps)
        for frame in part:
            for k in rng.permutation(len(methods)):
                methods[k].step(frame, measures[methods[k].name] if measured else None)
    return {name: measure.rows for name, measure in measures.items()}


# ---------------------------------------------------------------------------------------------- the run
def start_servers(args, workdir):
    """{name: (process, url)}: the ECC clouds, the JPEG cloud, the H.264 cloud (all stopped if one fails)."""
    from loopback import free_port, start_http, start_server

    servers = {}
    try:
        for config in args.ecc_config:
            servers[config] = start_server(config, "", SERVER_OPTS, os.path.join(workdir, f"ecc_{len(servers)}.log"))
        if args.jpeg:
            servers["jpeg"] = start_server(args.jpeg_config, "", SERVER_OPTS, os.path.join(workdir, "jpeg.log"))
        if args.h264_kbps:
            port = free_port()
            cmd = [sys.executable, os.path.abspath(__file__), "--serve-h264", str(port), "--cloud-config",
                   args.cloud_config, "--cloud-weights", args.cloud_weights]
            servers["h264"] = start_http(cmd, port, os.path.join(workdir, "h264.log"))
    except BaseException:
        stop_servers(servers)
        raise
    return servers


def stop_servers(servers):
    for proc, _ in servers.values():
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def ecc_name(config):
    stem = os.path.splitext(os.path.basename(config))[0]
    return ECC_NAMES.get(stem, stem)


def bench(args, frames, fps, workdir):
    """The rows (method x bandwidth) and the link's last settings."""
    import httpx

    from eccentric_det.demo import EccentricPredictor
    from eccentric_det.edge import CloudClient
    from eccentric_det.evaluation.link import ThrottledLink
    from eccentric_det.tasks import get_eccentric_cfg

    servers, links, clouds, rows, settings, skipped = start_servers(args, workdir), {}, [], [], None, []
    try:
        for name, (_, url) in servers.items():
            links[name] = ThrottledLink(("127.0.0.1", httpx.URL(url).port), args.mbps[0] * 1e6, args.rtt_ms / 1e3)

        def timed_cloud(server):
            clouds.append(TimedCloud(links[server].url))
            return clouds[-1]

        methods = []
        for i, config in enumerate(args.ecc_config):
            for backend in args.edge_backend:
                edge = exported_edge(config, backend, os.path.join(workdir, f"edge_{i}"), skipped)
                if edge is False:
                    continue
                cloud, server_cpu = timed_cloud(config), ServerCPU(servers[config][0])
                if edge is None:
                    methods.append(PredictorMethod(ecc_name(config), "ecc", EccentricPredictor(
                        get_eccentric_cfg(config), cloud=cloud, confidence_threshold=0.0), cloud, links[config],
                        server_cpu))
                else:
                    methods.append(DeviceMethod(f"{ecc_name(config)}, {backend} edge", edge, cloud, links[config],
                                                server_cpu))
        for q in args.jpeg:
            cloud = timed_cloud("jpeg")
            cfg = get_eccentric_cfg(args.jpeg_config, ["MODEL.ECCENTRIC.OFFLOAD.POLICY", "always",
                                                       "MODEL.ECCENTRIC.JPEG_QUALITY", str(q)])
            methods.append(PredictorMethod(f"JPEG q{q}", "jpeg", EccentricPredictor(cfg, cloud=cloud,
                                                                                    confidence_threshold=0.0),
                                           cloud, links["jpeg"], ServerCPU(servers["jpeg"][0])))
        if args.h264_kbps:
            h264_client = CloudClient(links["h264"].url, timeout_s=120, retries=0)
            clouds.append(h264_client)
            methods += [H264Method(k, h264_client, links["h264"], args.gop, args.preset, ServerCPU(servers["h264"][0]),
                                   stream) for stream, k in enumerate(args.h264_kbps)]
        if not args.no_edge_only and args.ecc_config:  # Dynamic ECC's edge, never offloading: nothing sent
            methods.append(PredictorMethod("edge only", "edge", EccentricPredictor(
                get_eccentric_cfg(args.ecc_config[0]), offload_threshold=1.01, confidence_threshold=0.0)))
        for mbps in args.mbps:
            for link in links.values():
                settings = link.configure(rate_bps=mbps * 1e6, rtt_s=args.rtt_ms / 1e3,
                                          down_rate_bps=(args.down_mbps or mbps) * 1e6)
            t0 = time.perf_counter()
            for name, per_frame in run_methods(methods, frames, fps, args.warmup, seed=len(rows)).items():
                kind = next(m.kind for m in methods if m.name == name)
                summary = summarize(per_frame, fps)
                rows.append({"method": name, "kind": kind, "mbps": mbps, **summary})
                print(f"{mbps:5g} Mbit/s  {name:<18} total {summary['total_ms']['mean']:7.1f} ms "
                      f"(p95 {summary['total_ms']['p95']:7.1f})  edge {summary['edge_ms']['mean']:6.1f}  transfer "
                      f"{summary['transfer_ms']['mean']:6.1f}  cloud {summary['cloud_ms']['mean']:6.1f}  "
                      f"{summary['bytes']['mean']:8.0f} B/frame"
                      + (f"  ({summary['retried_frames']} retried)" if summary["retried_frames"] else ""), flush=True)
            print(f"[{mbps:g} Mbit/s: {time.perf_counter() - t0:.0f} s]", flush=True)
    finally:
        for cloud in clouds:
            cloud.close()
        for link in links.values():
            link.close()
        stop_servers(servers)
    return rows, settings, skipped


def exported_edge(config, backend, folder, skipped):
    """``config``'s edge exported to ``folder`` (once) and run by ``backend``; None for "pytorch" (the predictor's own
    edge); False, with the reason added to ``skipped``, where the export has no such backend."""
    from eccentric_det.deploy.export import export_from_config
    from eccentric_det.edge import ExportedEdge

    if backend == "pytorch":
        return None
    if not os.path.isdir(folder):
        export_from_config(config, folder)
    try:
        return ExportedEdge(folder, backend)
    except ValueError as e:  # e.g. an edge detector: TorchScript only
        skipped.append({"config": config, "backend": backend, "why": str(e)})
        print(f"skipped {ecc_name(config)} on {backend}: {e}", flush=True)
        return False


def difference(a, b):
    """Method ``a``'s total latency minus ``b``'s, frame by frame over the same frames (run interleaved): the mean,
    its 95% bootstrap interval over frames, and what the interval says: ``ahead`` (all of it below 0), ``behind``
    (all above) or ``level``."""
    from eccentric_det.evaluation.bootstrap import mean_interval

    mean, low, high = mean_interval(np.subtract(a, b))
    return {"mean": mean, "ci95": [low, high], "says": "ahead" if high < 0 else "behind" if low > 0 else "level"}


def goals(rows, mbps_goal=5.0):
    """The issue's latency goals on these rows: ECC at ``mbps_goal`` <= H.264 (each bitrate), and ECC ahead of
    per-frame JPEG (each quality) at every bandwidth; by mean total latency as measured (``met``) and as the CPU
    times would give it on an idle machine (``met_cpu``: client CPU + transfer + server CPU); ``diff_ms``: ECC minus
    the other, paired frame by frame, with its interval (:func:`difference`)."""
    by = {(r["method"], r["mbps"]): (r["total_ms"]["mean"], r["total_ms_cpu"]["mean"]) for r in rows}
    frames = {(r["method"], r["mbps"]): r["total_ms_frames"] for r in rows}
    names = lambda kind: sorted({r["method"] for r in rows if r["kind"] == kind})  # noqa: E731
    out = []
    for m in names("ecc"):
        for h in names("h264"):
            if (m, mbps_goal) in by and (h, mbps_goal) in by:
                (e, e_cpu), (o, o_cpu) = by[m, mbps_goal], by[h, mbps_goal]
                out.append({"goal": f"{m} <= {h} at {mbps_goal:g} Mbit/s", "ms": [e, o], "ms_cpu": [e_cpu, o_cpu],
                            "met": e <= o, "met_cpu": e_cpu <= o_cpu,
                            "diff_ms": difference(frames[m, mbps_goal], frames[h, mbps_goal])})
        for j in names("jpeg"):
            bws = sorted(b for (name, b) in by if name == m and (j, b) in by)
            if bws:
                out.append({"goal": f"{m} < {j} at every bandwidth",
                            "per_mbps": {f"{b:g}": {"ms": [by[m, b][0], by[j, b][0]],
                                                    "ms_cpu": [by[m, b][1], by[j, b][1]],
                                                    "diff_ms": difference(frames[m, b], frames[j, b])} for b in bws},
                            "met": all(by[m, b][0] < by[j, b][0] for b in bws),
                            "met_cpu": all(by[m, b][1] < by[j, b][1] for b in bws)})
    return out


def markdown(rows):
    """The rows as a markdown table: per method and bandwidth, mean ms of each part, total mean/p50/p95, bytes."""
    lines = ["| method | Mbit/s | edge ms | transfer ms | cloud ms | total ms: mean | p50 | p95 | idle-CPU estimate ms "
             "| payload B/frame |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in sorted(rows, key=lambda r: (r["mbps"], ["ecc", "jpeg", "h264", "edge"].index(r["kind"]))):
        t = r["total_ms"]
        lines.append(f"| {r['method']} | {r['mbps']:g} | {r['edge_ms']['mean']:.0f} | {r['transfer_ms']['mean']:.0f} | "
                     f"{r['cloud_ms']['mean']:.0f} | **{t['mean']:.0f}** | {t['p50']:.0f} | {t['p95']:.0f} | "
                     f"{r['total_ms_cpu']['mean']:.0f} | {r['bytes']['mean']:.0f} |")
    return "\n".join(lines) + "\n"


def plot(rows, path, rtt_ms):
    import matplotlib  # optional: plotting only

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    styles = {"ecc": "o-", "jpeg": "s-", "h264": "^-", "edge": "*-"}
    for i, method in enumerate(dict.fromkeys(r["method"] for r in rows)):
        rs = sorted((r for r in rows if r["method"] == method), key=lambda r: r["mbps"])
        x = [r["mbps"] for r in rs]
        color = f"C{i}"
        ax.plot(x, [r["total_ms"]["mean"] for r in rs], styles[rs[0]["kind"]], color=color, label=method)
        ax.plot(x, [r["total_ms"]["p95"] for r in rs], ":", color=color, alpha=0.6)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(sorted({r["mbps"] for r in rows}))
    ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.get_yaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.get_yaxis().set_minor_formatter(matplotlib.ticker.ScalarFormatter())
    ax.set_xlabel(f"uplink (Mbit/s), RTT {rtt_ms:g} ms")
    ax.set_ylabel("end-to-end latency per frame (ms)\nmean (line), p95 (dotted)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    args = parse_args(argv)
    if args.serve_h264:
        return serve_h264(args)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # loopback, report
    import torch
    from report import write_json

    from eccentric_det.demo import ensure_default_video
    from eccentric_det.evaluation.video import read_frames

    video = args.video or ensure_default_video()
    frames, fps = read_frames(video)
    frames = frames[:args.frames]
    probe = {"probed": False, "why": "--no-probe"} if args.no_probe else probe_netem()
    with tempfile.TemporaryDirectory() as workdir:
        rows, settings, skipped = bench(args, frames, fps, workdir)
    result = {"video": video, "frames": len(frames), "frame_size": list(frames[0].shape[:2]), "fps": fps,
              "mbps": args.mbps, "rtt_ms": args.rtt_ms, "mechanism": mechanism(args, probe, settings),
              "one_frame_in_flight": True, "torch_threads": torch.get_num_threads(), "cpus": os.cpu_count(),
              "load_average": os.getloadavg(), "ecc_configs": args.ecc_config, "edge_backends": args.edge_backend,
              "skipped": skipped, "jpeg_config": args.jpeg_config, "cloud_config": args.cloud_config, "gop": args.gop,
              "preset": args.preset, "rows": rows, "goals": goals(rows)}
    os.makedirs(args.output, exist_ok=True)
    write_json(os.path.join(args.output, "bench_latency.json"), result)
    plot(rows, os.path.join(args.output, "bench_latency.png"), args.rtt_ms)
    with open(os.path.join(args.output, "bench_latency.md"), "w") as f:
        f.write(markdown(rows))
    print(f"mechanism: {result['mechanism']['name']} ({result['mechanism']['why']})")
    for g in result["goals"]:
        diffs = [g["diff_ms"]] if "diff_ms" in g else [v["diff_ms"] for v in g["per_mbps"].values()]
        print(f"{'met   ' if g['met'] else 'missed'} {g['goal']} (by CPU times: {'met' if g['met_cpu'] else 'missed'}; "
              "paired difference " + ", ".join(f"{d['mean']:+.1f} ms [{d['ci95'][0]:+.1f}, {d['ci95'][1]:+.1f}]: "
                                               f"{d['says']}" for d in diffs) + ")")
    return 0


if __name__ == "__main__":
    sys.exit(main())
