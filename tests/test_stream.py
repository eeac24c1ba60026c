"""The edge's stream loop (eccentric_det/edge/stream.py): rate control under a budget (a leaky bucket that never
overflows, the mean bitrate at the budget when the content needs more, the frames the edge is least sure of
favoured), temporal reuse with a stateless cloud (unchanged frames and tiles answered from the cache, resent after the
keyframe interval), the same bytes as ever without either, and the options' errors. Real codecs and models
throughout; the synthetic frames are features of varied content coded by a real variable-rate codec."""
import os

import cv2
import numpy as np
import pytest
import torch

from eccentric_det.codec import KIND_FEATURES, Payload, build_codec
from eccentric_det.codec.tiles import encode_tiles, region_cells
from eccentric_det.edge import CloudClient, EdgeClient
from eccentric_det.edge.stream import EdgeStream, stream_controls
from eccentric_det.split.frame import EdgeFrame
from eccentric_det.split.rate_control import RateControl, check_stream_options, tile_masks

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICK = os.path.join(ROOT, "configs/quick_schedules/fashion_det_dynamic_ecc_instant_test.yaml")
QUICK_OPTS = ["MODEL.ECCENTRIC.DISTILL.MODE", "task", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0"]
VR_OPTS = ["MODEL.ECCENTRIC.CODEC.NAME", "mean_scale", "MODEL.ECCENTRIC.CODEC.RATE_WEIGHTS", "[0.1, 0.5, 2.0]",
           "MODEL.ECCENTRIC.CODEC.RATE", "1.0"]
TILE = 4  # latent cells a side of the synthetic frames' tiles


@pytest.fixture(scope="module")
def codec():
    """A variable-rate codec (3 levels) whose latents take many values, so the bytes follow the content and rate."""
    torch.manual_seed(0)
    c = build_codec("mean_scale", 16, 16, latent_channels=8, hidden_channels=16, downsample=2, rate_levels=3,
                    rate=1.0).eval()
    with torch.no_grad():
        c.analysis[-1].weight.mul_(3)
    return c


class CodecEdge:
    """An edge whose frames are given features (and "needs the cloud" scores), coded by a real codec: each frame's
    latents computed once, coded at whatever rate and tiles the stream asks for."""

    def __init__(self, codec, policy="always", threshold=0.0, regions=False):
        self.codec, self.policy, self.threshold, self.regions = codec, policy, threshold, regions
        self.fingerprint = codec.fingerprint()

    def analyse(self, item):
        feature, score = item[:2]
        latents = self.codec.latents(feature)
        size = tuple(4 * s for s in feature.shape[-2:])  # a split at stride 4

        def coder(rate, tiles):
            regions = None
            if tiles is not None:
                regions = [(*region_cells(tiles, TILE, tuple(latents.y.shape[-2:])), encode_tiles(tiles, TILE))]
            coded = self.codec.code(latents, rate, regions)[0]
            return Payload(KIND_FEATURES, self.fingerprint, size, size, coded.strings, coded.fields)

        probs = item[2] if self.regions else None
        return EdgeFrame(None if probs is None else empty(size), score, size, size, self.policy, self.threshold, coder,
                         lambda: latents.y[0], rate_levels=3, rate=self.codec.rate, tile_probs=probs,
                         tile_px=TILE * 8, tile_cells=TILE, dilate=0)


def empty(size):
    return {"boxes": [], "scores": [], "classes": [], "image_size": list(size)}


def varied_frames(n, hw=(32, 32), seed=0, tiles=False, busy=(0.2, 2.7)):
    """``n`` features of varied content (from flat to busy within ``busy``, changing scale) with random scores (and
    tile probabilities)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        busy_i = busy[0] + (busy[1] - busy[0]) * (0.5 + 0.5 * np.sin(i / 7.0)) * rng.random()
        x = torch.from_numpy(rng.normal(0, busy_i, (1, 16, *hw)).astype(np.float32))
        probs = rng.random((-(-hw[0] // 2 // TILE), -(-hw[1] // 2 // TILE))) if tiles else None
        out.append((x, float(rng.random()), probs))
    return out


class Recorder:
    """The cloud of these tests: it answers nothing, and notes what it received and the bucket after each frame."""

    def __init__(self):
        self.bodies = []

    def __call__(self, body, output_size):
        self.bodies.append(body)
        return {**empty(output_size), "cloud_ms": 0.0}


def run(stream, frames):
    fills, results = [], []
    for f in frames:
        results.append(stream(f))
        b = stream.rate_control.bucket
        fills.append((b.fill, b.capacity))
    return results, fills


def test_the_bucket_never_overflows_on_varied_content(codec):
    frames = varied_frames(80)
    sizes = [len(CodecEdge(codec).analyse(f).code(0.0).to_bytes()) for f in frames[:20]]
    for kbps in (0.5, 40.0, 120.0, 400.0):  # at 10 fps: from far below the cheapest frame to above most frames
        cloud = Recorder()
        stream = EdgeStream(CodecEdge(codec), cloud, None, RateControl(kbps, 10.0, buffer_s=0.5))
        results, fills = run(stream, frames)
        assert all(fill <= cap + 1e-6 for fill, cap in fills)
        s = stream.summary()
        assert s["bucket_peak_fill"] <= 1.0 and s["bucket_peak_bits"] <= s["bucket_bits"]
        assert sum(r.bytes_sent for r in results) == sum(map(len, cloud.bodies))
        assert {r.source for r in results} <= {"cloud", "edge-budget"}
        sent = [r for r in results if r.source == "cloud"]
        assert all(r.rate is not None and 0 <= r.rate <= 2 for r in sent)
        if kbps == 0.5:  # 50 bits a frame: nothing fits a bucket of 250 bits
            assert not sent and max(sizes) * 8 > 250
    # the same with region frames: the tiles the gate scores lowest are left out first
    frames = varied_frames(40, hw=(48, 64), tiles=True, seed=1)
    cloud = Recorder()
    stream = EdgeStream(CodecEdge(codec, "dynamic", 0.3, regions=True), cloud, None, RateControl(60.0, 10.0, 0.5))
    results, fills = run(stream, frames)
    assert all(fill <= cap + 1e-6 for fill, cap in fills)
    for (_, _, probs), r in zip(frames, results):
        if r.tiles is not None:
            assert r.tiles.sum() <= (probs >= 0.3).sum()
            assert probs[r.tiles].min() >= probs[(probs >= 0.3) & ~r.tiles].max(initial=0)


@pytest.mark.parametrize("kbps", [200.0, 80.0])  # between the finest and coarsest rate's bits; below the coarsest
def test_the_mean_bitrate_follows_the_budget_when_the_content_needs_it(codec, kbps):
    frames = varied_frames(200, seed=2, busy=(1.2, 3.0))  # every frame needs more than the budget at its finest
    edge = CodecEdge(codec)
    coarsest, finest = (np.array([len(edge.analyse(f).code(r).to_bytes()) * 8 * 10 / 1000 for f in frames[::4]])
                        for r in (2.0, 0.0))
    assert finest.min() > kbps and (kbps > coarsest.mean()) == (kbps == 200.0), (finest, coarsest)
    stream = EdgeStream(edge, Recorder(), None, RateControl(kbps, 10.0, buffer_s=1.0))
    results, _ = run(stream, frames)
    s = stream.summary()
    assert s["mean_kbps"] == pytest.approx(kbps, rel=0.05), s
    mean = 8 * sum(r.bytes_sent for r in results) * 10 / len(frames) / 1000
    assert mean == pytest.approx(s["mean_kbps"])
    # the frames the edge is least sure of are favoured: sent more often, at a finer rate
    scores = np.array([f[1] for f in frames])
    top, bottom = scores >= np.quantile(scores, 0.75), scores <= np.quantile(scores, 0.25)
    sent = np.array([r.source == "cloud" for r in results])
    rates = np.array([r.rate if r.rate is not None else np.nan for r in results])
    assert sent[top].mean() >= sent[bottom].mean()
    assert np.nanmean(rates[top & sent]) <= np.nanmean(rates[bottom & sent])


def test_tile_masks_leave_out_the_least_likely_tiles_first():
    probs = np.array([[0.9, 0.1, 0.5], [0.2, 0.7, 0.35]])
    masks = tile_masks(probs, 0.3, 0)
    assert [m.sum() for m in masks] == [4, 3, 2, 1]
    assert masks[-1][0, 0] and masks[1].tolist() == [[True, False, True], [False, True, False]]
    assert tile_masks(probs, 0.95, 1) == []
    # an unchanged tile is never sent; a tile answered from followed objects brings no context of its own, and is
    # sent only as another tile's context
    probs = np.array([[0.9, 0.1, 0.1, 0.1], [0.1, 0.1, 0.1, 0.7]])
    reused = np.zeros(probs.shape, bool)
    reused[0, 0] = True
    assert all(not m[0, 0] and m[0, 1] for m in tile_masks(probs, 0.3, 1, never=reused)[:1])
    masks = tile_masks(probs, 0.3, 1, exclude=reused)
    assert len(masks) == 1 and masks[0].tolist() == [[False, False, True, True], [False, False, True, True]]
    probs[0, 1] = 0.8
    assert all(m[0, 0] for m in tile_masks(probs, 0.3, 1, exclude=reused))
    assert not any(m[0, 0] for m in tile_masks(probs, 0.3, 1, never=reused))


def test_stream_options_are_checked_with_their_keys():
    for kwargs, key in (({"budget_kbps": -1}, "BUDGET_KBPS"), ({"budget_kbps": float("nan")}, "BUDGET_KBPS"),
                        ({"budget_kbps": 64}, "FPS"), ({"budget_kbps": 64, "fps": -25}, "FPS"),
                        ({"budget_kbps": 64, "fps": 25, "buffer_s": 0.01}, "BUFFER_S"),
                        ({"reuse_threshold": -0.1}, "REUSE.THRESHOLD"),
                        ({"reuse_threshold": 0.1, "keyframe": 0}, "REUSE.KEYFRAME"),
                        ({"reuse_threshold": 0.1, "keyframe": 2.5}, "REUSE.KEYFRAME"),
                        ({"track_iou": 1.0}, "REUSE.TRACK_IOU"), ({"track_iou": 0.5, "keyframe": 0}, "REUSE.KEYFRAME"),
                        ({"budget_kbps": 64, "fps": 25, "keyframe": 0}, "REUSE.KEYFRAME")):
        with pytest.raises(ValueError, match=f"MODEL.ECCENTRIC.OFFLOAD.{key}"):
            stream_controls(**kwargs)
    check_stream_options(budget_kbps=64, fps=None)  # a video's frame rate, not known yet
    assert stream_controls() == (None, None)
    rc, reuse = stream_controls(64, 25, 1.0, 0.1, 10)
    assert rc.bucket.capacity == 64000 and rc.bucket.drain == 2560 and reuse.keyframe == 10 and rc.hold_frames == 10


class Numbering(Recorder):
    """A cloud whose n-th answer is one box scored n, so that an answer tells which payload it was for."""

    def __call__(self, body, output_size):
        super().__call__(body, output_size)
        n = len(self.bodies)
        return {"boxes": [[0.0, 0.0, n, n]], "scores": [float(n)], "classes": [n % 3],
                "image_size": list(output_size), "cloud_ms": 1.0}


def test_an_edge_without_a_detector_holds_the_clouds_last_answer_while_the_budget_keeps_frames_back(codec):
    frames = varied_frames(120, seed=3, busy=(1.2, 3.0))
    edge = CodecEdge(codec)  # policy "always", no detector of its own: frame.answer is None
    coarsest = len(edge.analyse(frames[0]).code(2.0).to_bytes()) * 8
    for hold in (3, 0):
        cloud = Numbering()
        rc, _ = stream_controls(budget_kbps=coarsest * 10 / 3 / 1000, fps=10.0, buffer_s=0.5, keyframe=max(hold, 1))
        rc.hold_frames = hold  # 0: kept-back frames answer nothing, as before holding
        stream = EdgeStream(edge, cloud, None, rc)
        results, fills = run(stream, frames)
        assert all(fill <= cap + 1e-6 for fill, cap in fills)
        sources = [r.source for r in results]
        assert sources.count("cloud") == len(cloud.bodies) and 0 < len(cloud.bodies) < len(frames) / 2
        last = None  # (frame index, answer number) of the cloud's last answer
        for i, r in enumerate(results):
            if r.source == "cloud":
                last = (i, r.detections["scores"][0])
                continue
            assert r.bytes_sent == 0 and r.cloud_ms == 0.0
            if last is not None and i - last[0] <= hold:  # its scores fading with its age
                assert r.source == "held", (i, last, r)
                assert r.detections["scores"] == pytest.approx([last[1] * (1 - (i - last[0]) / (hold + 1))])
                assert r.detections["boxes"] == [[0.0, 0.0, last[1], last[1]]]
            else:  # nothing sent yet, or the last answer is older than the hold: an empty answer, never a stale one
                assert r.source == "edge-budget" and r.detections["boxes"] == [], (i, last, r)
        assert ("held" in sources) == (hold > 0) and "edge-budget" in sources


def test_a_bad_budget_is_one_clear_error_in_each_tool(tmp_path):
    import importlib.util

    from eccentric_det.demo import DemoError, EccentricPredictor, setup_cfg

    with pytest.raises(DemoError, match="OFFLOAD.BUDGET_KBPS .* at least 0"):
        EccentricPredictor(setup_cfg(QUICK, QUICK_OPTS + ["MODEL.ECCENTRIC.OFFLOAD.BUDGET_KBPS", "-5"]))
    p = EccentricPredictor(setup_cfg(QUICK, QUICK_OPTS + ["MODEL.ECCENTRIC.OFFLOAD.BUDGET_KBPS", "64"]))
    with pytest.raises(DemoError, match="OFFLOAD.FPS"):  # images, and no frame rate anywhere
        p.start_stream()
    assert p.start_stream(25.0).rate_control.bucket.fps == 25.0  # a video's own rate
    for tool, argv, message in (
            ("demo", ["--config-file", QUICK, "--input", "x.jpg", "--budget-kbps", "-5", *QUICK_OPTS],
             "demo.py: error: MODEL.ECCENTRIC.OFFLOAD.BUDGET_KBPS (--budget-kbps) must be at least 0"),
            ("demo", ["--config-file", QUICK, "--input", "x.jpg", "--track-iou", "2", *QUICK_OPTS],
             "demo.py: error: MODEL.ECCENTRIC.OFFLOAD.REUSE.TRACK_IOU must lie in [0, 1)"),
            ("edge_client", ["--edge", str(tmp_path), "--cloud-url", "http://cloud.test", "--input", str(tmp_path),
                             "--output", str(tmp_path / "o.jsonl"), "--reuse-threshold", "0.1",
                             "--keyframe-interval", "0"],
             "edge_client.py: error: MODEL.ECCENTRIC.OFFLOAD.REUSE.KEYFRAME must be a whole number")):
        cv2.imwrite(str(tmp_path / "x.jpg"), np.zeros((8, 8, 3), np.uint8))
        spec = importlib.util.spec_from_file_location(tool, os.path.join(ROOT, "tools", f"{tool}.py"))
        cli = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(cli)
        with pytest.raises(SystemExit) as e:
            cli.main(argv)
        assert str(e.value.code).startswith(message), e.value.code


# ---------------------------------------------------------------------------------------------- the PyTorch edge
@pytest.fixture(scope="module")
def predictor():
    from eccentric_det.demo import EccentricPredictor, setup_cfg
    from eccentric_det.demo.cloud import InProcessCloud

    torch.manual_seed(0)
    p = EccentricPredictor(setup_cfg(QUICK, QUICK_OPTS + VR_OPTS), offload_threshold=0.0, confidence_threshold=0.0)
    p.cloud = Sending(InProcessCloud(p.model))
    return p


class Sending:
    """The in-process cloud (stateless: each payload decoded on its own), noting the bytes it was sent."""

    def __init__(self, cloud):
        self.cloud, self.name, self.key, self.bodies = cloud, "in-process", None, []

    def __call__(self, data, image_size):
        self.bodies.append(data)
        return self.cloud(data, image_size)


def smooth(seed, hw=(96, 128)):
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (hw[0] // 8, hw[1] // 8, 3), dtype=np.uint8)
    return cv2.resize(small, hw[::-1], interpolation=cv2.INTER_CUBIC)


def test_without_budget_or_reuse_the_payloads_are_the_edge_steps(predictor):
    frames = [smooth(s) for s in range(3)]
    predictor.cloud.bodies.clear()
    predictor.start_stream(25.0)
    results = [predictor(f) for f in frames]
    want = [predictor.model.edge_step([predictor.inputs(f)])[0].payload.to_bytes() for f in frames]
    assert predictor.cloud.bodies == want and [r.bytes for r in results] == list(map(len, want))
    assert all(r.source == "cloud" and r.rate is None for r in results)
    # an edge with only an edge step (no analyse) runs the same loop, without budget or reuse
    step_only = type("StepOnly", (), {"step": staticmethod(predictor.edge.step)})()
    cloud = Recorder()
    assert EdgeStream(step_only, cloud)(frames[0]).bytes_sent == len(want[0]) and cloud.bodies == want[:1]
    with pytest.raises(TypeError, match="no analyse"):
        EdgeStream(step_only, cloud, rate_control=RateControl(64, 25))
    # the codec's latents, computed once and coded at any rate, give compress's bytes
    codec = predictor.model.codec
    feature = 3 * torch.randn(1, codec.config["in_channels"], 24, 32)
    latents = codec.latents(feature)
    for rate in (0.0, 1.375, 2.0):
        assert codec.code(latents, rate)[0].strings == codec.compress(feature, rate)[0].strings


def test_a_budget_picks_rates_and_keeps_the_bucket(predictor):
    frames = [smooth(s % 4) for s in range(12)]
    finest, coarsest = (np.mean([8 * len(predictor.edge.analyse(f).code(r).to_bytes()) for f in frames[:4]])
                        for r in (0.0, 2.0))
    assert finest > coarsest
    kbps = (finest + coarsest) / 2 * 10 / 1000  # at 10 fps: between the two rates' bits
    predictor.cloud.bodies.clear()
    stream = predictor.start_stream(10.0, budget_kbps=kbps, buffer_s=1.0)
    results = [predictor(f) for f in frames]
    s = stream.summary()
    assert s["bucket_peak_bits"] <= s["bucket_bits"] == pytest.approx(kbps * 1000)
    assert sum(r.bytes for r in results) == sum(map(len, predictor.cloud.bodies)) > 0
    assert all(r.rate is not None for r in results if r.offloaded)
    assert {r.source for r in results} <= {"cloud", "edge-budget"}


def test_reuse_skips_unchanged_frames_and_resends_after_the_keyframe_interval(predictor):
    a, b = smooth(10), smooth(11)
    predictor.cloud.bodies.clear()
    predictor.start_stream(25.0, reuse_threshold=0.05, keyframe=3)
    results = [predictor(f) for f in (a, a, a, a, a, b, b)]
    assert [r.source for r in results] == ["cloud", "reused", "reused", "cloud", "reused", "cloud", "reused"]
    assert [r.bytes > 0 for r in results] == [r.source == "cloud" for r in results]
    assert len(predictor.cloud.bodies) == 3
    for i in (1, 2, 4):  # the cache's answer is the cloud's answer to the same content
        assert torch.equal(results[i].instances.pred_boxes.tensor, results[0].instances.pred_boxes.tensor)
    # the cloud kept nothing between payloads: each one decodes alone, to the answer the stream gave
    again = predictor.model.cloud([predictor.cloud.bodies[1]])[0]["instances"]
    assert len(again) == len(results[3].instances)


def test_region_reuse_sends_only_the_tiles_that_changed():
    from eccentric_det.demo import EccentricPredictor, setup_cfg
    from eccentric_det.demo.cloud import InProcessCloud

    torch.manual_seed(0)
    opts = QUICK_OPTS + VR_OPTS + ["MODEL.ECCENTRIC.OFFLOAD.REGION.TILE", "4", "MODEL.ECCENTRIC.OFFLOAD.POLICY",
                                   "dynamic", "MODEL.ECCENTRIC.OFFLOAD.THRESHOLD", "0.0"]
    p = EccentricPredictor(setup_cfg(QUICK, opts), confidence_threshold=0.0)
    p.cloud = Sending(InProcessCloud(p.model))
    a = smooth(20, (128, 128))
    b = a.copy()
    b[:40, :40] = 255 - b[:40, :40]  # the top-left corner changes
    stream = p.start_stream(25.0, reuse_threshold=0.05, keyframe=10)
    first, same, changed = (p(f) for f in (a, a, b))
    total = 16  # 128x128 pixels in tiles of 32 (4 latent cells)
    assert first.source == "cloud" and len(first.tiles) == total and first.reused == 0
    assert same.source == "reused" and same.bytes == 0 and same.reused == total and not same.tiles
    assert changed.source == "cloud" and 0 < len(changed.tiles) < total
    assert changed.reused == total - len(changed.tiles)
    assert all(x0 < 40 + 32 and y0 < 40 + 32 for x0, y0, _, _ in changed.tiles), changed.tiles  # by the changed corner
    assert len(p.cloud.bodies) == 2 and stream.reuse is not None


# ---------------------------------------------------------------------------------------------- the exported edge
def test_an_exported_edge_codes_at_the_rates_rate_control_picks(tmp_path):
    """ExportedEdge.analyse codes its latents at any rate, the PyTorch edge's bytes at each; under a budget the
    EdgeClient sends the rates it picked in the payload's rate field, and the cloud decodes them."""
    import httpx

    from eccentric_det.checkpoint import load_model
    from eccentric_det.codec import FIELD_RATE
    from eccentric_det.deploy.export import export_edge
    from eccentric_det.edge import ExportedEdge
    from eccentric_det.inputs import InputBuilder
    from eccentric_det.tasks import get_eccentric_cfg

    cfg = get_eccentric_cfg("configs/FashionDet/adaptive_ecc.yaml", VR_OPTS + [
        "MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "", "MODEL.ECCENTRIC.EDGE.WEIGHTS", ""])
    torch.manual_seed(0)
    model = load_model(cfg).eval()
    with torch.no_grad():
        model.codec.analysis[-1].weight.mul_(3)
    builder = InputBuilder.from_config(cfg)
    frames = [smooth(s, (128, 160)) for s in range(6)]
    export_edge(model, str(tmp_path), builder(frames[0]), {"min_size": builder.min_size, "max_size": builder.max_size,
                                                           "format": builder.input_format})
    edge = ExportedEdge(str(tmp_path), "torchscript")
    frame = edge.analyse(frames[0])
    latents = model.codec.latents(model.split_parts()[0](model.edge_input(builder(frames[0]))[0])[0])
    for rate in (0.0, 1.375, 2.0):
        assert frame.code(rate).strings == model.codec.code(latents, rate)[0].strings
    assert frame.code().to_bytes() == edge.step(frames[0]).payload.to_bytes()  # None: the set rate

    sent = []

    def handler(request):
        sent.append(request.content)
        inst = model.cloud([request.content])[0]["instances"]
        return httpx.Response(200, json={"boxes": inst.pred_boxes.tensor.tolist(), "scores": inst.scores.tolist(),
                                         "classes": inst.pred_classes.tolist()})

    cloud = CloudClient("http://cloud.test", retries=0)
    cloud._http = httpx.Client(transport=httpx.MockTransport(handler))
    finest, coarsest = (8 * len(frame.code(r).to_bytes()) for r in (0.0, 2.0))
    assert finest > coarsest
    # a bucket of two frames: it fills within the clip whatever the frames' size, so the rate must follow it
    rate_control, _ = stream_controls(budget_kbps=(finest + coarsest) / 2 * 10 / 1000, fps=10.0, buffer_s=0.2)
    client = EdgeClient(edge, cloud, rate_control=rate_control)
    results = [client(f) for f in frames * 2]
    offloaded = [r for r in results if r.source == "cloud"]
    assert offloaded and len(sent) == len(offloaded)
    assert rate_control.bucket.peak <= rate_control.bucket.capacity
    assert len({r.rate for r in offloaded}) > 1  # the rate follows the bucket
    for r, body in zip(offloaded, sent):
        p = Payload.from_bytes(body, model.fingerprint())
        assert p.fields[FIELD_RATE] == bytes([round(r.rate * 32)]) and r.bytes_sent == len(body)


def test_stream_options_one_table_for_every_tool():
    """tools/demo.py and tools/edge_client.py take the same stream options (edge/stream.py's STREAM_OPTIONS): given
    ones become their config keys' overrides; without a config the ones not given take the stream's defaults."""
    import argparse
    import importlib.util

    from eccentric_det.edge.stream import STREAM_OPTIONS, add_stream_arguments, stream_defaults, stream_overrides

    p = argparse.ArgumentParser()
    add_stream_arguments(p)
    args = p.parse_args(["--budget-kbps", "128", "--keyframe-interval", "10"])
    assert stream_overrides(args) == ["MODEL.ECCENTRIC.OFFLOAD.BUDGET_KBPS", 128.0,
                                      "MODEL.ECCENTRIC.OFFLOAD.REUSE.KEYFRAME", 10]
    assert stream_defaults(args) == {"budget_kbps": 128.0, "fps": 0.0, "buffer_s": 1.0, "reuse_threshold": 0.0,
                                     "keyframe": 10, "track_iou": 0.0}
    assert stream_controls(**stream_defaults(p.parse_args([]))) == (None, None)
    with pytest.raises(SystemExit):  # a whole number of frames
        p.parse_args(["--keyframe-interval", "2.5"])
    for tool in ("demo", "edge_client"):
        spec = importlib.util.spec_from_file_location(tool, os.path.join(ROOT, "tools", f"{tool}.py"))
        cli = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(cli)
        flags = {a.dest for a in cli.get_parser()._actions}
        assert set(STREAM_OPTIONS) <= flags, (tool, set(STREAM_OPTIONS) - flags)
