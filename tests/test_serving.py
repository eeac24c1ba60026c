"""The edge-cloud runtime over loopback: tools/cloud_server.py in a subprocess, the real EdgeClient.

Results over the network must equal the in-process ``model(batched_inputs)`` results; bad input
gets a 4xx that names the problem and the server keeps serving; clients survive a server restart.
"""
import json
import os
import runpy
import signal
import socket
import subprocess
import sys
import threading
import time

import cv2
import httpx
import numpy as np
import pytest
import torch

from eccentric_det.checkpoint import load_model, save_halves
from eccentric_det.codec import Payload, PayloadError
from eccentric_det.tasks import get_eccentric_cfg
from eccentric_det.inputs import InputBuilder
from eccentric_det.edge import CloudRejected, run_images
from eccentric_det.serving import CloudRuntime, get_serving_cfg
from eccentric_det.serving.detections import CONTENT_TYPE, dict_to_instances
from eccentric_det.deploy.torch_edge import edge_client
from eccentric_det.serving.worker import InProcessModel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CFG = "configs/quick_schedules/fashion_det_dynamic_ecc_instant_test.yaml"
OPTS = ["MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0"]
TOKEN = "test-token"
MAX_BODY = 64 * 1024
SIZES = [(96, 128), (128, 128), (120, 160), (128, 96)]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bgr_image(h, w, seed):
    """A smooth random BGR uint8 image."""
    small = np.random.default_rng(seed).integers(0, 256, (h // 8 + 1, w // 8 + 1, 3)).astype(np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


class Server:
    """tools/cloud_server.py in a subprocess on 127.0.0.1 (its default address), token from the environment."""

    def __init__(self, weights, log_path, opts=(), env=None, config=CFG):
        self.port, self.log_path, self.env = free_port(), log_path, env or {}
        self.cmd = [sys.executable, os.path.join(ROOT, "tools", "cloud_server.py"), "--config-file", config,
                    "--weights", weights, "--port", str(self.port), *OPTS, *opts]
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = None

    def start(self, timeout=300):
        env = {**os.environ, "ECCENTRIC_TOKEN": TOKEN, "PYTHONPATH": ROOT, "PYTHONUNBUFFERED": "1", **self.env}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"cloud server exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        pytest.fail(f"cloud server not healthy after {timeout} s:\n{self.log()[-3000:]}")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def post(self, body, headers=None):
        headers = {"content-type": CONTENT_TYPE, "authorization": f"Bearer {TOKEN}", **(headers or {})}
        return httpx.post(self.url + "/v1/detect", content=body, headers=headers, timeout=30)

    def metrics(self):
        text = httpx.get(self.url + "/metrics", timeout=10).text
        return {k: float(v) for k, v in (line.rsplit(" ", 1) for line in text.splitlines() if line[0] != "#")}


@pytest.fixture(scope="module")
def model():
    """A random-init Dynamic ECC model (both halves), as trained: its halves are what gets deployed."""
    torch.manual_seed(0)
    return load_model(get_eccentric_cfg(CFG, OPTS + ["MODEL.ECCENTRIC.DISTILL.MODE", "task"]))


@pytest.fixture(scope="module")
def halves(model, tmp_path_factory):
    return save_halves(model, str(tmp_path_factory.mktemp("halves")))


@pytest.fixture(scope="module")
def server(halves, tmp_path_factory):
    s = Server(halves["cloud"], str(tmp_path_factory.mktemp("log") / "server.log"),
               ["SERVING.MAX_BODY_BYTES", str(MAX_BODY), "SERVING.MAX_WAIT_MS", "100"])
    s.start()
    yield s
    s.stop()


def make_client(halves, url, *opts):
    cfg = get_serving_cfg(CFG, "edge", halves["edge"], OPTS + ["SERVING.TOKEN", TOKEN, *opts])
    return edge_client(cfg, url)


@pytest.fixture(scope="module")
def client(halves, server):
    c = make_client(halves, server.url)
    yield c
    c.close()


@pytest.fixture(scope="module")
def inputs():
    builder = InputBuilder.from_config(get_eccentric_cfg(CFG))
    images = [bgr_image(h, w, i) for i, (h, w) in enumerate(SIZES)]
    return images, [builder(img) for img in images]


@pytest.fixture(scope="module")
def payload(model, inputs):
    return model.edge(inputs[1][:1])[0]


def assert_same(a, b):
    assert a.image_size == b.image_size and len(a) == len(b) > 0
    assert torch.equal(a.pred_boxes.tensor, b.pred_boxes.tensor)
    assert torch.equal(a.scores, b.scores) and torch.equal(a.pred_classes, b.pred_classes)


def test_default_bind_is_loopback(server, model):
    assert get_serving_cfg(CFG, "cloud").SERVING.HOST == "127.0.0.1"
    assert f"Uvicorn running on http://127.0.0.1:{server.port}" in server.log()  # started without --host
    health = httpx.get(server.url + "/healthz").json()
    assert health["fingerprint"] == model.fingerprint().hex() and health["half"] == "cloud"


@pytest.mark.parametrize("threshold,source", [(0.0, "cloud"), (1.0, "edge")])
def test_network_equals_in_process(client, model, inputs, threshold, source):
    client.edge.model.threshold = model.threshold = threshold  # every image offloaded / every image kept
    for image, inp in zip(*inputs):
        result, expected = client(image), model([inp])[0]
        assert result.source == source
        assert result.bytes_sent == expected["eccentric"]["bytes"]
        assert_same(dict_to_instances(result.detections), expected["instances"])


def test_concurrent_requests_are_batched(server, model, inputs):
    payloads = [p.to_bytes() for p in model.edge(inputs[1] * 2)]
    before = server.metrics()
    answers = [None] * len(payloads)

    def send(i):
        answers[i] = server.post(payloads[i])

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(payloads))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [a.status_code for a in answers] == [200] * len(payloads)
    assert max(a.json()["batch_size"] for a in answers) > 1
    for answer, body in zip(answers, payloads):  # batch-mates do not change an image's detections
        got, expected = answer.json(), model.cloud([body])[0]["instances"]
        assert got["classes"] == expected.pred_classes.tolist()
        assert np.allclose(got["boxes"], expected.pred_boxes.tensor.numpy(), atol=1e-3)
    after = server.metrics()
    assert after["eccentric_batch_size_count"] - before["eccentric_batch_size_count"] < len(payloads)
    assert after["eccentric_request_bytes_total"] - before["eccentric_request_bytes_total"] == sum(map(len, payloads))


def _other_model(p):
    return Payload(p.kind, b"\x01" * 4, p.image_size, p.output_size, p.strings, p.fields)


def _oversized_image(p):
    """The attack of issue 11: a valid CRC, a header claiming an 8192x8192 image, strings for a small one."""
    return Payload(p.kind, p.fingerprint, (8192, 8192), (8192, 8192), p.strings, p.fields)


def _flip(data, i):
    return data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:]


BAD = {  # name: (make the body from a good payload, status, words the answer must hold)
    "truncated_header": (lambda p: p.to_bytes()[:20], 400, "truncated"),
    "truncated_tail": (lambda p: p.to_bytes()[:-9], 400, "truncated"),
    "corrupted": (lambda p: _flip(p.to_bytes(), len(p.to_bytes()) // 2), 400, "corrupted"),
    "wrong_version": (lambda p: _flip(p.to_bytes(), 1), 400, "version"),
    "version_1": (lambda p: b"ECCD\x01\x01" + p.to_bytes()[7:], 400, "upgrade the edge"),
    "wrong_model": (lambda p: _other_model(p).to_bytes(), 400, "another model"),
    "pickle": (lambda p: b"\x80\x04\x95" + bytes(60), 400, "not an eccentric_det payload"),
    "oversized_image": (lambda p: _oversized_image(p).to_bytes(), 400, "image size 8192x8192 is outside this "
                                                                       "model's input limits (sides 1..128"),
    "shape_beyond_strings": (lambda p: Payload(p.kind, p.fingerprint, (128, 128), (128, 128), [p.strings[0][:8]])
                             .to_bytes(), 400, "could not be entropy-decoded"),
    "signed_without_key": (lambda p: p.to_bytes(b"k" * 16), 400, "this cloud has none"),
    "oversized": (lambda p: bytes(MAX_BODY + 1), 413, "SERVING.MAX_BODY_BYTES"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_payload_is_refused_and_server_keeps_serving(server, payload, case):
    make, status, words = BAD[case]
    answer = server.post(make(payload))
    assert answer.status_code == status
    assert words in answer.json()["detail"]
    assert server.post(payload.to_bytes()).status_code == 200


def test_wrong_content_type(server, payload):
    answer = server.post(payload.to_bytes(), {"content-type": "application/json"})
    assert answer.status_code == 415 and CONTENT_TYPE in answer.json()["detail"]


def test_token_is_checked(server, payload):
    for headers in ({"authorization": ""}, {"authorization": "Bearer wrong"}, {"authorization": TOKEN}):
        answer = server.post(payload.to_bytes(), headers)
        assert answer.status_code == 401 and "token" in answer.json()["detail"]
    assert server.post(payload.to_bytes()).status_code == 200


def _raw_request(port, body, declared):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(f"POST /v1/detect HTTP/1.1\r\nHost: x\r\nContent-Type: {CONTENT_TYPE}\r\nAuthorization: Bearer "
              f"{TOKEN}\r\nContent-Length: {declared}\r\n\r\n".encode() + body)
    return s


def test_client_disconnecting_mid_request(server, payload):
    body = payload.to_bytes()
    before = server.metrics()
    _raw_request(server.port, body[:100], len(body)).close()  # gone while sending its body
    _raw_request(server.port, body, len(body)).close()  # gone while its payload waits for the model
    deadline = time.monotonic() + 20
    while server.metrics().get('eccentric_errors_total{reason="disconnected"}', 0) <= \
            before.get('eccentric_errors_total{reason="disconnected"}', 0):
        assert time.monotonic() < deadline, "the server never noticed the client that left mid-body"
        time.sleep(0.1)
    assert server.post(body).status_code == 200


def test_metrics_in_prometheus_format(server, payload):
    assert server.post(payload.to_bytes()).status_code == 200
    text = httpx.get(server.url + "/metrics").text
    assert "# TYPE eccentric_requests_total counter" in text
    m = server.metrics()
    assert m["eccentric_requests_total"] >= 1 and m["eccentric_request_bytes_total"] >= len(payload.to_bytes())
    assert m["eccentric_request_latency_seconds_sum"] > 0
    assert m['eccentric_request_latency_seconds_bucket{le="+Inf"}'] == m["eccentric_request_latency_seconds_count"]
    assert m['eccentric_batch_size_bucket{le="1.0"}'] <= m['eccentric_batch_size_bucket{le="+Inf"}']
    assert m['eccentric_batch_size_bucket{le="+Inf"}'] == m["eccentric_batch_size_count"] >= 1


def test_runtime_batches_and_isolates_bad_payloads(model, inputs, payload):
    runtime = CloudRuntime(InProcessModel(model), max_batch_size=3, max_wait_ms=500)
    try:
        payloads = [p.to_bytes() for p in model.edge(inputs[1][:1] * 5)]
        payloads.insert(2, _oversized_image(payload).to_bytes())
        with pytest.raises(PayloadError, match="input limits"):
            runtime.validate(payloads[2])
        futures = [runtime.submit(p) for p in payloads]
        with pytest.raises(PayloadError, match="input limits"):
            futures[2].result(60)
        good = [f.result(60) for i, f in enumerate(futures) if i != 2]
    finally:
        runtime.close()
    assert [r["batch_size"] for r in good] == [1, 1, 3, 3, 3]  # the bad one's batch-mates ran on their own
    expected = model.cloud(payloads[:1])[0]["instances"]
    assert all(r["classes"] == expected.pred_classes.tolist() for r in good)


def test_worker_killed_mid_request_the_server_answers_and_the_retry_succeeds(server, halves, model, inputs):
    """The model runs in a supervised worker process. Kill it while it holds a request: that request gets
    503, the worker is restarted, the edge client's retry is answered by the new worker."""
    before = httpx.get(server.url + "/healthz").json()
    died = server.metrics().get('eccentric_errors_total{reason="worker_died"}', 0)
    client = make_client(halves, server.url, "SERVING.RETRIES", "6", "SERVING.BACKOFF_S", "0.5",
                         "SERVING.TIMEOUT_S", "120.0")
    client.edge.model.threshold = 0.0
    os.kill(before["worker_pid"], signal.SIGSTOP)  # frozen, so the request is surely in its hands when it dies
    result = {}
    request = threading.Thread(target=lambda: result.setdefault("r", client(inputs[0][0])))
    try:
        request.start()
        time.sleep(2)
        os.kill(before["worker_pid"], signal.SIGKILL)
        request.join(300)
    finally:
        client.close()
    assert result["r"].source == "cloud"
    assert_same(dict_to_instances(result["r"].detections), model.cloud(model.edge(inputs[1][:1]))[0]["instances"])
    after = httpx.get(server.url + "/healthz").json()
    assert after["worker_restarts"] == before["worker_restarts"] + 1 and after["worker_pid"] != before["worker_pid"]
    metrics = server.metrics()
    assert metrics['eccentric_errors_total{reason="worker_died"}'] == died + 1  # the kill hit the request
    assert metrics["eccentric_worker_restarts_total"] == after["worker_restarts"]
    assert "died holding a batch" in server.log()


def test_fleet_key_keeps_out_payloads_from_outside_the_fleet(halves, model, inputs, tmp_path):
    """A cloud with SERVING.PAYLOAD_KEY answers only payloads signed with it, even with the right token."""
    key = "fleet-key-0123456789"
    keyed = Server(halves["cloud"], str(tmp_path / "keyed.log"), ["SERVING.WORKER_PROCESS", "False"],
                   {"ECCENTRIC_PAYLOAD_KEY": key})
    keyed.start()
    clients = {k: make_client(halves, keyed.url, "SERVING.PAYLOAD_KEY", k) for k in (key, "", "another-key-0123456")}
    try:
        for c in clients.values():
            c.edge.model.threshold = 0.0
        assert clients[key](inputs[0][0]).source == "cloud"
        assert httpx.get(keyed.url + "/healthz").json()["authenticated"] is True
        for other in ("", "another-key-0123456"):
            with pytest.raises(CloudRejected, match="not authenticated by this fleet's key"):
                clients[other](inputs[0][0])
    finally:
        for c in clients.values():
            c.close()
        keyed.stop()


def test_a_half_checkpoint_is_refused_by_the_other_half(halves):
    with pytest.raises(ValueError, match="holds the edge half"):
        load_model(get_serving_cfg(CFG, "cloud", halves["edge"], OPTS))


def test_unreachable_cloud_falls_back_to_edge(halves, model, inputs):
    client = make_client(halves, f"http://127.0.0.1:{free_port()}", "SERVING.RETRIES", "2", "SERVING.BACKOFF_S", "0.01")
    client.edge.model.threshold = model.threshold = 0.0
    image, inp = inputs[0][0], inputs[1][0]
    try:
        result = client(image)
    finally:
        client.close()
    assert result.source == "edge-fallback" and result.bytes_sent == 0
    assert_same(dict_to_instances(result.detections), model.edge_step([inp])[0].answer)


class Gated:
    """A client that holds image ``i`` until ``gates[i]`` is set."""

    def __init__(self, client, gates):
        self.client, self.gates, self.calls = client, gates, 0
        self.class_names = client.class_names

    def __call__(self, image):
        gate = self.gates.get(self.calls)
        self.calls += 1
        if gate is not None:
            assert gate.wait(180)
        return self.client(image)


def test_server_restart_during_a_client_run(server, client, halves, inputs, tmp_path):
    client.edge.model.threshold = 0.0  # offload every image
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(7):
        cv2.imwrite(str(folder / f"{i:02d}.png"), inputs[0][i % len(SIZES)])
    paths = sorted(str(p) for p in folder.iterdir())
    output = str(tmp_path / "results.jsonl")
    stopped, restarted = threading.Event(), threading.Event()
    gated = Gated(client, {2: stopped, 4: restarted})
    run = threading.Thread(target=run_images, args=(gated, paths, output))
    run.start()
    while not os.path.exists(output) or open(output).read().count("\n") < 2:
        assert run.is_alive()
        time.sleep(0.05)
    server.stop()
    stopped.set()  # images 2 and 3 run while the server is down
    server.start()
    restarted.set()
    run.join(120)
    lines = [json.loads(line) for line in open(output)]
    assert [r["image"] for r in lines] == [os.path.abspath(p) for p in paths]  # each image once, in order
    sources = [r["source"] for r in lines]
    assert sources[:2] == ["cloud", "cloud"] and sources[2] == "edge-fallback" and sources[4:] == ["cloud"] * 3

    # A killed run leaves a half-written line: --resume drops it and redoes that image only.
    with open(output, "r+") as f:
        text = f.read()
        f.seek(0)
        f.truncate()
        f.write(text[:text.rindex("\n", 0, len(text) - 1) + 1] + text.splitlines()[-1][:25])
    cli = runpy.run_path(os.path.join(ROOT, "tools", "edge_client.py"))
    counts = cli["main"](["--config-file", CFG, "--weights", halves["edge"], "--cloud-url", server.url,
                          "--input", str(folder), "--output", output, "--resume",
                          *OPTS, "SERVING.TOKEN", TOKEN, "MODEL.ECCENTRIC.OFFLOAD.THRESHOLD", "0.0"])
    assert counts["skipped"] == 6 and counts["cloud"] == 1
    again = [json.loads(line) for line in open(output)]
    assert [r["image"] for r in again] == [r["image"] for r in lines] and again[:6] == lines[:6]
    assert again[6]["boxes"] == lines[6]["boxes"]
    with pytest.raises(FileExistsError, match="--resume"):
        run_images(client, paths, output)


def test_the_cloud_half_of_a_dynamic_config_serves_from_its_committed_weights():
    """The cloud half of a config whose EDGE.WEIGHTS names the gate's checkpoint loads without it (the cloud has no
    edge to load it into) and decodes what the whole model's edge sends."""
    config = "configs/FashionDet/dynamic_ecc_vr.yaml"
    cfg = get_serving_cfg(config, "cloud", opts=["MODEL.DEVICE", "cpu"])
    assert cfg.MODEL.ECCENTRIC.EDGE.WEIGHTS == ""
    cloud = load_model(cfg).eval()
    whole = load_model(get_eccentric_cfg(config, ["MODEL.DEVICE", "cpu", "MODEL.ECCENTRIC.OFFLOAD.POLICY", "always"]))
    image = np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8)
    with torch.no_grad():
        payload = whole.eval().edge_step([{"image": torch.as_tensor(image.transpose(2, 0, 1).copy())}])[0].payload
        remote = cloud.cloud([payload.to_bytes()])[0]["instances"]
        local = whole.cloud([payload.to_bytes()])[0]["instances"]
    assert torch.equal(remote.pred_boxes.tensor, local.pred_boxes.tensor)
