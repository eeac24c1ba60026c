"""A structure-aware fuzzer of the whole cloud path: payloads with recomputed CRCs, header fields at and
beyond their limits, string counts and lengths at their bounds, random and adversarial strings, shapes
larger than the strings support. Each case runs in a supervised worker process (the server's own
:class:`CloudWorker`), so a native crash fails the test with its case instead of killing the suite."""
import random

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eccentric_det.checkpoint import load_model, save_halves
from eccentric_det.codec import FIELD_SCALE_INDEXES, KIND_FEATURES, KIND_IMAGE, Payload, PayloadError
from eccentric_det.codec.attacks import _string_bounds
from eccentric_det.tasks import get_eccentric_cfg
from eccentric_det.serving import get_serving_cfg
from eccentric_det.serving.worker import CloudWorker, WorkerDied

from .helpers import image_input

CFG = "configs/quick_schedules/fashion_det_adaptive_ecc_instant_test.yaml"
CODECS = ["factorized", "hyperprior"]


@pytest.fixture(scope="module", params=CODECS)
def target(request, tmp_path_factory):
    """(worker, legit payloads, spec) of a random-init model with the given codec."""
    opts = ["MODEL.ECCENTRIC.CODEC.NAME", request.param, "MODEL.ECCENTRIC.DISTILL.MODE", "task"]
    torch.manual_seed(0)
    model = load_model(get_eccentric_cfg(CFG, opts))
    halves = save_halves(model, str(tmp_path_factory.mktemp(request.param)))
    legit = [model.edge([image_input(h, w, seed=i)])[0] for i, (h, w) in enumerate([(128, 128), (96, 128), (40, 60)])]
    worker = CloudWorker(get_serving_cfg(CFG, "cloud", halves["cloud"], opts[:2]))
    yield worker, legit, model.payload_spec()
    worker.close()


def _patterned(n):
    """``n`` random bytes (drawn from a seed: hypothesis draws long binaries slowly), or all ones or zeros."""
    return st.one_of(st.integers(0, 2 ** 32).map(lambda seed: random.Random(seed).randbytes(n)),
                     st.sampled_from([b"\xff" * n, b"\x00" * n]))


@st.composite
def crafted(draw, legit, spec):
    base = draw(st.sampled_from(legit))
    lim = spec.limits

    def side(limit):
        return draw(st.one_of(st.sampled_from([0, 1, limit - 1, limit, limit + 1, 2 * limit, 8192, 65535]),
                              st.integers(0, 65535)))

    image = (side(lim.max_short_side), side(lim.max_side))
    if draw(st.booleans()):  # sizes the model accepts, strings that may not fit them
        image = (draw(st.integers(1, lim.max_short_side)), draw(st.integers(1, lim.max_side)))
    output = image if draw(st.booleans()) else (side(lim.max_output_side), side(lim.max_output_side))
    mode = draw(st.sampled_from(["legit", "bounds", "random", "count"]))
    if mode == "legit":
        strings = list(base.strings)
    elif mode == "count":
        strings = draw(st.lists(st.binary(max_size=64), min_size=1, max_size=8))
    else:
        # strings at the bounds of the largest shape the limits allow (a larger claim is refused before)
        hw = spec.feature_shape((max(1, min(image[0], lim.max_short_side)), max(1, min(image[1], lim.max_side))))
        strings = []
        for lo, hi in _string_bounds(spec, hw):
            n = draw(st.sampled_from([max(lo - 1, 0), lo, lo + 4, hi - 4, hi, hi + 1])) if mode == "bounds" \
                else draw(st.integers(lo, min(hi, lo + 2048)))
            strings.append(draw(_patterned(max(n, 0))))
    fields = dict(base.fields)
    if draw(st.integers(0, 3)) == 0:
        fields[draw(st.sampled_from([FIELD_SCALE_INDEXES, 1, 2, 99]))] = draw(st.binary(max_size=48))
    kind = KIND_IMAGE if draw(st.integers(0, 9)) == 0 else KIND_FEATURES
    return Payload(kind, base.fingerprint, image, output, strings, fields).to_bytes()


def test_legit_payloads_decode_in_the_worker(target):
    worker, legit, _ = target
    answers = worker.run([p.to_bytes() for p in legit], timeout_s=120)
    assert [a["image_size"] for a in answers] == [list(p.output_size) for p in legit]


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(data=st.data())
def test_no_payload_crashes_or_escapes_the_cloud(target, data):
    worker, legit, spec = target
    blob = data.draw(crafted(legit, spec))
    restarts = worker.restarts
    try:
        (answer,) = worker.run([blob], timeout_s=120)
    except WorkerDied:
        pytest.fail(f"the cloud worker crashed on payload {blob[:64].hex()}... ({len(blob)} bytes)")
    assert worker.restarts == restarts
    assert isinstance(answer, (dict, PayloadError)), answer


def test_a_batch_past_its_deadline_kills_and_restarts_the_worker(target):
    """Bounded work: a batch still running at its deadline is not left running; the worker is killed,
    a fresh one takes the next batch."""
    from eccentric_det.serving.worker import WorkerTimeout

    worker, legit, _ = target
    pid, restarts = worker.proc.pid, worker.restarts
    with pytest.raises(WorkerTimeout, match="deadline"):
        worker.run([p.to_bytes() for p in legit] * 4, timeout_s=1e-4)
    assert worker.restarts == restarts + 1 and worker.proc.pid != pid
    assert len(worker.run([legit[0].to_bytes()], timeout_s=120)) == 1
