"""The cloud half as a Ray Serve deployment on a local Ray instance: one replica, batched, same answers."""
import os
import socket
import threading

import httpx
import pytest
import torch

from eccentric_det.checkpoint import load_model, save_halves
from eccentric_det.tasks import get_eccentric_cfg
from eccentric_det.serving import get_serving_cfg
from eccentric_det.serving.detections import CONTENT_TYPE, dict_to_instances

from .helpers import image_input

ray = pytest.importorskip("ray", reason="ray[serve] is not installed (pip install 'ray[serve]')")
serve = pytest.importorskip("ray.serve")

CFG = "configs/quick_schedules/fashion_det_adaptive_ecc_instant_test.yaml"
OPTS = ["MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0"]


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    torch.manual_seed(0)
    model = load_model(get_eccentric_cfg(CFG, OPTS + ["MODEL.ECCENTRIC.DISTILL.MODE", "task"]))
    halves = save_halves(model, str(tmp_path_factory.mktemp("halves")))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = get_serving_cfg(CFG, "cloud", halves["cloud"], OPTS + [
        "SERVING.PORT", str(port), "SERVING.MAX_WAIT_MS", "200", "SERVING.RAY.NUM_REPLICAS", "1"])
    # Serve's proxy must answer its readiness check within 5 s of starting (RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S), and a
    # worker process on a busy 2-core machine takes longer to start than that: the processes Ray starts inherit this
    os.environ.setdefault("RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S", "60")
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    except Exception as e:  # noqa: BLE001  (any failure to start Ray is a reason to skip, and is named)
        pytest.skip(f"a local Ray instance failed to start: {type(e).__name__}: {e}")
    from eccentric_det.serving.ray_app import serve_ray

    try:
        serve_ray(cfg, blocking=False)
        yield model, f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()
        ray.shutdown()


def _post(url, body):
    return httpx.post(url + "/v1/detect", content=body, headers={"content-type": CONTENT_TYPE}, timeout=60)


def test_ray_answers_equal_in_process(deployed):
    model, url = deployed
    inputs = [image_input(96, 128, seed=1), image_input(128, 128, seed=2)]
    for inp in inputs:  # one at a time: each runs as a batch of one, like model([inp])
        answer = _post(url, model.edge([inp])[0].to_bytes())
        assert answer.status_code == 200, answer.text
        got, expected = dict_to_instances(answer.json()), model([inp])[0]["instances"]
        assert got.image_size == expected.image_size and len(got) == len(expected) > 0
        # Ray's replica runs torch on its own thread count (Ray sets OMP_NUM_THREADS=1), and a CPU's kernels may round
        # the last float bits differently per thread count: equal up to that
        assert torch.allclose(got.pred_boxes.tensor, expected.pred_boxes.tensor, rtol=0, atol=1e-3)
        assert torch.allclose(got.scores, expected.scores, rtol=0, atol=1e-5)
        assert torch.equal(got.pred_classes, expected.pred_classes)
    assert httpx.get(url + "/healthz").json()["fingerprint"] == model.fingerprint().hex()


def test_ray_batches_concurrent_requests_and_refuses_bad_ones(deployed):
    model, url = deployed
    body = model.edge([image_input(96, 128, seed=1)])[0].to_bytes()
    answers = [None] * 4

    def send(i):
        answers[i] = _post(url, body)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [a.status_code for a in answers] == [200] * 4
    assert max(a.json()["batch_size"] for a in answers) > 1
    bad = _post(url, body[:-5])
    assert bad.status_code == 400 and "truncated" in bad.json()["detail"]
