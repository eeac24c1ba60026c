"""The three costs, checked against hand-computed values; Pareto fronts; BD-rate; bad input."""
import importlib.util
import json
import os

import cv2
import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, DatasetMapper, build_detection_test_loader
from detectron2.evaluation import inference_on_dataset
from detectron2.modeling import build_model
from detectron2.structures import Boxes, BoxMode, Instances
from torch import nn

import eccentric_det.data  # noqa: F401  (registers the datasets)
import eccentric_det.modeling  # noqa: F401  (registers the backbones, ROI heads, EccentricRCNN)
from eccentric_det.baselines import ImageCodecBaseline
from eccentric_det.checkpoint import load_model
from eccentric_det.tasks import get_eccentric_cfg
from eccentric_det.data import register_fashion_det
from eccentric_det.data.fashion_det import generate_fashion_det
from eccentric_det.evaluation.build import coco_evaluator
from eccentric_det.evaluation.costs import summarize
from eccentric_det.evaluation.eccentric_evaluator import EccentricEvaluator, config_summary
from eccentric_det.evaluation.flops import count_gflops, edge_cloud_gflops
from eccentric_det.reports import series
from eccentric_det.reports.pareto import (bd_rate, dataset_dicts, load_results, pareto_mask, parse_sweep, plan,
                                             result_entry, result_series, run_sweep)
from eccentric_det.split.image_codecs import encode_image

from .helpers import image_input, split_cfg

QUICK = "configs/quick_schedules/fashion_det_{}_instant_test.yaml"
INFER = ["MODEL.ECCENTRIC.DISTILL.MODE", "task", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0]
PAYLOAD_OVERHEAD = 7 + 2 + 1 + 4  # format v2: fixed bytes, 1-byte sizes (< 128 px), string count, CRC32
needs_sc2bench = pytest.mark.skipif(importlib.util.find_spec("sc2bench") is None,
                                    reason="sc2bench (the bench extra) not installed")
needs_data = pytest.mark.fashion_mnist


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval") / "fashion_det"
    generate_fashion_det(root, num_train=4, num_val=3, size=128, seed=1)
    register_fashion_det(root=root, prefix="tiny_fd")
    return "tiny_fd_val"


def quick_cfg(name, *opts):
    return get_eccentric_cfg(QUICK.format(name), INFER + list(opts))


def mapped(cfg, dataset):
    return [DatasetMapper(cfg, is_train=False)(d) for d in DatasetCatalog.get(dataset)]


# ------------------------------------------------------------------------------------ evaluator
def test_summarize_hand_computed():
    records = [{"bytes": b, "pixels": 100, "offloaded": o, "edge_ms": e, "cloud_ms": c}
               for b, o, e, c in [(100, True, 1.0, 10.0), (0, False, 2.0, 0.0), (300, True, 3.0, 20.0),
                                  (50, True, 2.0, 30.0)]]
    gflops = {"edge": 2.0, "encoder": 0.5, "cloud": 4.0, "cloud_only": 5.0}
    m = summarize(records, gflops)
    assert m["images"] == 4
    assert m["bytes_mean"] == 112.5 and m["bytes_median"] == 75.0
    assert m["bytes_p95"] == pytest.approx(270.0)  # 100 + 0.85 * (300 - 100)
    assert m["bpp"] == pytest.approx(9.0)  # mean of 8 * bytes / 100 px
    assert m["offload_rate"] == 0.75 and m["edge_ms"] == 2.0 and m["cloud_ms"] == 15.0
    assert m["edge_gflops"] == pytest.approx(1.875)  # the encoder runs on the 3 offloaded images only
    assert m["cloud_gflops"] == pytest.approx(3.0) and m["cloud_saved"] == pytest.approx(0.4)
    assert summarize([{"pixels": 100}], gflops) == {
        "images": 1, "edge_gflops": 2.0, "cloud_gflops": 4.0, "cloud_gflops_offloaded": 4.0,
        "cloud_only_gflops": 5.0, "cloud_saved": pytest.approx(0.2)}


class GroundTruthModel(nn.Module):
    """Answers each image with its ground-truth boxes (score 1) and a given ``eccentric`` record."""

    def __init__(self, dataset, records):
        super().__init__()
        self.gt = {d["image_id"]: d for d in DatasetCatalog.get(dataset)}
        self.records = records

    def forward(self, batched_inputs):
        outputs = []
        for inp in batched_inputs:
            d = self.gt[inp["image_id"]]
            inst = Instances((d["height"], d["width"]))
            inst.pred_boxes = Boxes(torch.tensor([BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS)
                                                  for a in d["annotations"]], dtype=torch.float32))
            inst.scores = torch.ones(len(d["annotations"]))
            inst.pred_classes = torch.tensor([a["category_id"] for a in d["annotations"]])
            outputs.append({"instances": inst, "eccentric": self.records[inp["image_id"]]})
        return outputs


def _evaluate(cfg, dataset, model, out, dicts=None):
    loader = build_detection_test_loader(dicts or DatasetCatalog.get(dataset), mapper=DatasetMapper(cfg, False))
    evaluator = EccentricEvaluator(cfg, dataset, out, model=model, accuracy=coco_evaluator(cfg, dataset, out))
    return inference_on_dataset(model, loader, evaluator)


@needs_data
def test_ground_truth_gets_ap_100(tiny, tmp_path):
    cfg = quick_cfg("cloud_teacher", "TEST.ECCENTRIC.FLOPS", False)
    ids = [d["image_id"] for d in DatasetCatalog.get(tiny)]
    sent = {ids[0]: 120, ids[1]: 0, ids[2]: 75}
    records = {i: {"bytes": b, "offloaded": b > 0, "score": 0.5, "edge_ms": 1.0, "cloud_ms": 2.0}
               for i, b in sent.items()}
    res = _evaluate(cfg, tiny, GroundTruthModel(tiny, records), str(tmp_path))
    m = res["eccentric"]
    assert res["bbox"]["AP"] == pytest.approx(100.0) and m["AP"] == pytest.approx(100.0)
    assert m["bytes_mean"] == pytest.approx(65.0) and m["offload_rate"] == pytest.approx(2 / 3)
    assert m["bpp"] == pytest.approx(np.mean([8 * b / 128 ** 2 for b in sent.values()]))
    saved = json.loads((tmp_path / "eccentric_metrics.json").read_text())
    assert saved["dataset"] == tiny and saved["metrics"]["AP"] == pytest.approx(100.0)
    assert [r["bytes"] for r in saved["images"]] == [120, 0, 75]
    # AP counts the images that were evaluated only: a subset still scores 100.
    sub = _evaluate(cfg, tiny, GroundTruthModel(tiny, records), None, DatasetCatalog.get(tiny)[:2])
    assert sub["eccentric"]["AP"] == pytest.approx(100.0) and sub["eccentric"]["images"] == 2


class NothingModel(GroundTruthModel):
    """Detects nothing on any image."""

    def forward(self, batched_inputs):
        outputs = super().forward(batched_inputs)
        for out in outputs:
            out["instances"] = out["instances"][:0]
        return outputs


@needs_data
def test_a_model_that_detects_nothing_scores_ap_0_not_nan(tiny, tmp_path):
    """pycocotools scores no detections against ground truth as AP 0 (recall 0); Detectron2's COCOEvaluator skips
    it and reports NaN, which would leave a report's row without a number."""
    cfg = quick_cfg("cloud_teacher", "TEST.ECCENTRIC.FLOPS", False)
    records = {d["image_id"]: {"bytes": 10, "offloaded": True, "edge_ms": 1.0, "cloud_ms": 2.0}
               for d in DatasetCatalog.get(tiny)}
    res = _evaluate(cfg, tiny, NothingModel(tiny, records), str(tmp_path))
    assert np.isnan(res["bbox"]["AP"])  # Detectron2's answer
    assert {k: res["eccentric"][k] for k in ("AP", "AP50", "AP75")} == {"AP": 0.0, "AP50": 0.0, "AP75": 0.0}
    assert json.loads((tmp_path / "eccentric_metrics.json").read_text())["metrics"]["AP"] == 0.0


class FixedGate(nn.Module):
    """The gate's "needs the cloud" probability, given per image in call order."""

    def __init__(self, scores):
        super().__init__()
        self.scores = list(scores)

    def forward(self, scores_per_image):
        return torch.tensor([self.scores.pop(0) for _ in scores_per_image])


@needs_data
def test_real_bytes_and_offload_rate(tiny, tmp_path):
    cfg = quick_cfg("dynamic_ecc", "TEST.ECCENTRIC.FLOPS_IMAGES", 1, "MODEL.ECCENTRIC.OFFLOAD.THRESHOLD", 0.5)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    inputs = mapped(cfg, tiny)
    payload_bytes = [len(model.edge([x])[0].to_bytes()) for x in inputs]
    model.offload_gate = FixedGate([0.9, 0.1, 0.7])  # images 0 and 2 go to the cloud
    m = _evaluate(cfg, tiny, model, str(tmp_path))["eccentric"]
    assert m["bytes_mean"] == pytest.approx((payload_bytes[0] + payload_bytes[2]) / 3)
    assert m["offload_rate"] == pytest.approx(2 / 3)
    assert m["cloud_gflops"] == pytest.approx(m["cloud_gflops_offloaded"] * 2 / 3)
    assert 0 < m["edge_gflops"] and 0 < m["cloud_saved"] < 1


def test_flops_of_each_half_hand_computed():
    cfg = split_cfg("stem", "factorized")
    torch.manual_seed(0)
    g = edge_cloud_gflops(build_model(cfg).eval(), image_input(128, 128), cfg.MODEL.RESNETS)
    # 128 px: stem conv 7x7 3->64 out 64x64 + its frozen BN (2 per element); codec on the 32x32 stem output,
    # hidden 96, latent 32 at 16x16.
    stem = 64 * 3 * 49 * 64 * 64 + 2 * 64 * 64 * 64
    encoder = 96 * 64 * 9 * 32 * 32 + 96 * 96 * 9 * 16 * 16 + 32 * 96 * 9 * 16 * 16
    decoder = 96 * 32 * 9 * 16 * 16 + 96 * 96 * 9 * 16 * 16 + 64 * 96 * 9 * 32 * 32  # deconv: per input pixel
    assert g["encoder"] == pytest.approx(encoder / 1e9)
    assert g["edge"] == pytest.approx((stem + encoder) / 1e9)
    # the split's cloud runs the ROI adapters (1x1, 256 channels on p2-p5: 32^2 ... 4^2), the cloud-only model does not
    adapters = 256 * 256 * (32 * 32 + 16 * 16 + 8 * 8 + 4 * 4)
    assert g["cloud_only"] - g["cloud"] == pytest.approx((stem - decoder - adapters) / 1e9)


def test_edge_detector_counted_once_and_only_when_used():
    cfg = quick_cfg("dynamic_ecc")
    model = build_model(cfg).eval()
    inp = image_input(128, 128)
    g = edge_cloud_gflops(model, inp, cfg.MODEL.RESNETS)
    images = model.preprocess_image([inp])
    trunk = model.split_backbone.edge_forward(images.tensor)
    detector = count_gflops(lambda t: model.edge_detector(images, t)[1], (trunk,), model.edge_detector)
    model.policy = "always"  # the edge detector's answer is no longer used
    assert g["edge"] == pytest.approx(edge_cloud_gflops(model, inp, cfg.MODEL.RESNETS)["edge"] + detector)


# ------------------------------------------------------------------------------------ baselines
class EchoDetector(nn.Module):
    """Records the image it is given; answers nothing."""

    def forward(self, batched_inputs):
        self.seen = batched_inputs[0]["image"]
        return [{"instances": Instances((1, 1))}]


def test_image_codec_baseline_counts_coded_bytes():
    inp = image_input(64, 96)
    bgr = inp["image"].permute(1, 2, 0).numpy().astype(np.uint8)
    for codec, quality in [("jpeg", 50), ("webp", 80), ("avif", 60), ("webp", 101), ("png", 9)]:
        det = EchoDetector()
        out = ImageCodecBaseline(det, codec, quality)([inp])[0]["eccentric"]
        assert out["bytes"] == PAYLOAD_OVERHEAD + len(encode_image(bgr, codec, quality)) and out["offloaded"]
        assert torch.equal(det.seen, inp["image"]) == (codec == "png" or quality == 101)  # PNG, WebP 101: lossless
    decoded = cv2.imdecode(np.frombuffer(encode_image(bgr, "jpeg", 10), np.uint8), cv2.IMREAD_COLOR)
    assert not np.array_equal(decoded, bgr)
    with pytest.raises(ValueError, match="quality"):
        ImageCodecBaseline(EchoDetector(), "jpeg", 101)
    with pytest.raises(ValueError, match="Unknown image codec"):
        encode_image(bgr, "gif", 1)


@needs_sc2bench
def test_sc2bench_baseline_trains_both_stages_and_round_trips(tiny, tmp_path):
    from eccentric_det.baselines import (Sc2benchDetector, fit_sc2bench_bottleneck, fit_sc2bench_detector,
                                         load_sc2bench, save_sc2bench)

    torch.manual_seed(0)
    cfg = quick_cfg("cloud_teacher")
    model = Sc2benchDetector(build_model(cfg).eval())
    batch = [DatasetMapper(cfg, is_train=True)(d) for d in DatasetCatalog.get("tiny_fd_train")[:2]]
    losses = fit_sc2bench_bottleneck(model, iter([batch] * 2), 2)
    assert set(losses) == {"distill", "bpp"} and losses["bpp"] > 0
    before = {k: v.clone() for k, v in model.state_dict().items()}
    seen = []  # the learning-curve callback: every eval_period and after the last, the model in eval mode

    def evaluate(m, iteration):
        seen.append((iteration, any(x.training for x in m.modules()), len(m([image_input(96, 96)])[0]["instances"])))

    modes = []  # the ROI heads' mode at each call: training steps, then the callback's, then training again
    hook = model.detector.roi_heads.register_forward_hook(lambda m, i, o: modes.append(m.training))
    losses = fit_sc2bench_detector(model, iter([batch] * 3), 3, cfg, evaluate, eval_period=2)
    hook.remove()
    assert [(i, training) for i, training, _ in seen] == [(2, False), (3, False)]
    assert modes == [True, True, False, True, False]
    assert model.detector.training is False and model.bottleneck.decoder.training is False  # as stage 2 leaves them
    assert set(losses) == {"loss_rpn_cls", "loss_rpn_loc", "loss_cls", "loss_box_reg"}
    assert all(np.isfinite(v) for v in losses.values())
    after = model.state_dict()
    changed = {k.split(".")[0] + "." + k.split(".")[1] for k in before if not torch.equal(before[k], after[k])}
    # stage 2 trains the decoder and the detector after res2; the edge (encoder, entropy model) and the
    # teacher's stem/res2 stay as they were
    assert {"bottleneck.decoder", "detector.roi_heads", "detector.backbone"} <= changed
    assert not changed & {"bottleneck.encoder", "teacher_head.0", "teacher_head.1"}

    inp = image_input(128, 128)
    out = model([inp])[0]
    assert out["eccentric"]["bytes"] > PAYLOAD_OVERHEAD and len(out["instances"]) > 0
    g = model.gflops(inp)
    assert 0 < g["edge"] == g["encoder"] and g["cloud"] > 0 and g["cloud_only"] > 0

    path = str(tmp_path / "sc2bench.pth")
    save_sc2bench(model, path, rate_weight=0.01)
    again, meta = load_sc2bench(build_model(cfg), path)
    assert meta == {"rate_weight": 0.01, "bottleneck_channels": 24} and not again.training
    for k, v in again.state_dict().items():
        if v.is_floating_point() and not k.endswith(("_quantized_cdf", "_offset", "_cdf_length")):
            w = after[k].half().float() if after[k].numel() >= 4096 else after[k]  # fp16 export of large tensors
            assert torch.equal(v, w), k
    assert again([inp])[0]["eccentric"]["bytes"] > PAYLOAD_OVERHEAD

    stock = str(tmp_path / "teacher.pth")
    torch.save({"model": build_model(cfg).state_dict()}, stock)
    with pytest.raises(ValueError, match="not an sc2bench baseline checkpoint"):
        load_sc2bench(build_model(cfg), stock)
    with pytest.raises(ValueError, match="does not match the cloud config"):
        load_sc2bench(build_model(quick_cfg("cloud_teacher", "MODEL.FPN.OUT_CHANNELS", 48)), path)
    with pytest.raises(FileNotFoundError, match="tools/train_sc2bench.py"):
        load_sc2bench(build_model(cfg), str(tmp_path / "missing.pth"))


@needs_sc2bench
def test_train_sc2bench_tool_writes_a_checkpoint_the_sweep_reads(tiny, tmp_path, capsys):
    tool = _load_tool("train_sc2bench")
    path = tmp_path / "sc2.pth"
    args = ["--config-file", QUICK.format("cloud_teacher"), "--rate-weight", "0.5", "--output", str(path)]
    assert tool.main(args + ["--iters", "1", "1", "DATASETS.TRAIN", "('tiny_fd_train',)"]) == 0
    assert tool.main(args + ["DATASETS.TRAIN", "('no_such_dataset',)"]) == 2
    assert tool.main(args + ["MODEL.NO_SUCH_KEY", "1"]) == 2
    err = capsys.readouterr().err
    assert "no_such_dataset" in err and "NO_SUCH_KEY" in err and "Traceback" not in err
    result = run_sweep(QUICK.format("dynamic_ecc"), parse_sweep([f"sc2bench={path}"]), tiny, 1,
                       str(tmp_path / "sweep"), INFER + ["TEST.ECCENTRIC.FLOPS", False])
    (point,) = result["points"]
    assert (point["series"], point["label"]) == ("sc2bench bottleneck", "sc2.pth")
    assert point["metrics"]["bytes_mean"] > PAYLOAD_OVERHEAD and point["metrics"]["offload_rate"] == 1.0


# ------------------------------------------------------------------------------------ fronts, BD-rate
def test_pareto_mask_hand_made():
    pts = [{"AP": 30, "bytes_mean": 100, "edge_gflops": 5},   # A
           {"AP": 35, "bytes_mean": 200, "edge_gflops": 5},   # B
           {"AP": 32, "bytes_mean": 250, "edge_gflops": 1},   # C: B is better on bytes, not on edge work
           {"AP": 30, "bytes_mean": 150, "edge_gflops": 5},   # D: A sends fewer bytes at the same AP
           {"AP": 40, "bytes_mean": None, "edge_gflops": 1},  # E: bytes unknown
           {"AP": 30, "bytes_mean": 100, "edge_gflops": 5}]   # F: the same as A
    assert pareto_mask(pts) == [True, True, False, False, False, True]
    assert pareto_mask(pts, costs=("bytes_mean", "edge_gflops")) == [True, True, True, False, False, True]
    assert pareto_mask(pts, costs=("edge_gflops",)) == [False, False, False, False, True, False]


@pytest.mark.parametrize("method", ["cubic", "pchip"])
def test_bd_rate_hand_made(method):
    rate, ap = [1000, 2000, 4000, 8000], [20.0, 28.0, 33.0, 36.0]
    assert bd_rate(rate, ap, rate, ap, method) == pytest.approx(0.0, abs=1e-9)
    assert bd_rate(rate, ap, [r / 2 for r in rate], ap, method) == pytest.approx(-50.0)
    assert bd_rate(rate, ap, [r * 2 for r in rate], ap, method) == pytest.approx(100.0)
    with pytest.raises(ValueError, match="do not overlap"):
        bd_rate(rate, ap, rate, [50.0, 55.0, 60.0, 70.0], method)
    with pytest.raises(ValueError, match="at least 2"):
        bd_rate(rate, ap, [100, 200], [30.0, 29.0], method)
    # A saturated point (more bytes, no more AP) leaves the curve; without that, BD-rate would be its artefact.
    assert bd_rate(rate + [16000], ap + [35.5], [r / 2 for r in rate], ap, method) == pytest.approx(-50.0)


def test_sweep_plan():
    sweep = parse_sweep(["thresholds=0.2,0.6", "edge_only", "jpeg=30,90", "png=9"])
    points = plan(QUICK.format("dynamic_ecc"), sweep)
    assert [(p.series, p.label) for p in points] == [
        ("Dynamic ECC", "threshold 0.2"), ("Dynamic ECC", "threshold 0.6"), ("edge-only", "edge-only"),
        ("cloud-only JPEG", "jpeg 30"), ("cloud-only JPEG", "jpeg 90"), ("cloud-only PNG", "png 9")]
    assert points[1].opts == ["MODEL.ECCENTRIC.OFFLOAD.POLICY", "dynamic", "MODEL.ECCENTRIC.OFFLOAD.THRESHOLD", 0.6]
    assert points[3].config_file == "quick_schedules/fashion_det_cloud_teacher_instant_test.yaml"  # the teacher
    assert points[4].image_codec == ("jpeg", 90)
    with pytest.raises(ValueError, match="unknown sweep 'quality'"):
        parse_sweep(["quality=3"])
    with pytest.raises(ValueError, match="needs values"):
        parse_sweep(["jpeg"])
    with pytest.raises(ValueError, match="needs --independent-config"):
        plan(QUICK.format("dynamic_ecc"), parse_sweep(["independent=50"]))
    with pytest.raises(ValueError, match="not an integer"):
        plan(QUICK.format("dynamic_ecc"), parse_sweep(["jpeg=high"]))


def test_rates_sweep_plans_every_level_of_the_variable_rate_checkpoint():
    points = plan("FashionDet/adaptive_ecc_vr.yaml", parse_sweep(["rates=all,0.5", "jpeg=30"]))
    rated = [p for p in points if p.series == "Adaptive ECC (variable rate)"]
    assert [p.label for p in rated] == ["rate 0", "rate 1", "rate 2", "rate 3", "rate 4", "rate 0.5"]
    assert rated[2].opts == ["MODEL.ECCENTRIC.CODEC.RATE", 2.0] and rated[0].config_file == "FashionDet/adaptive_ecc_vr.yaml"
    with pytest.raises(ValueError, match="outside the codec's levels 0..4"):
        plan("FashionDet/adaptive_ecc_vr.yaml", parse_sweep(["rates=5"]))
    with pytest.raises(ValueError, match="needs a variable-rate codec"):
        plan(QUICK.format("dynamic_ecc"), parse_sweep(["rates=all"]))


def test_plan_and_result_series_name_points_alike():
    """A sweep's point and an --eval-only run of the same model are in the same series (so that they form one curve
    and one BD-rate), every name being one of eccentric_det.reports.series' list, whose names never change: they are
    stored in pareto.json files that new sweeps merge."""
    assert series.NAMES == (
        "cloud-only", "cloud-only JPEG", "cloud-only WebP", "cloud-only AVIF", "cloud-only PNG", "edge-only",
        "Adaptive ECC", "Adaptive ECC (variable rate)", "rate-weight checkpoints", "Dynamic ECC",
        "Dynamic ECC (regions)", "Independent ECC", "Independent ECC (dynamic)", "sc2bench bottleneck", "config",
        "earlier runs")
    assert series.ANCHOR == series.image_codec_series("jpeg") == "cloud-only JPEG"
    with pytest.raises(ValueError, match="no series for image codec 'bmp'"):
        series.image_codec_series("bmp")
    sweeps = [(QUICK.format("dynamic_ecc"), ["thresholds=0.5", "edge_only", "independent=50", "jpeg=50", "webp=50",
                                             "avif=50", "png=9"]),
              ("FashionDet/dynamic_region_ecc.yaml", ["thresholds=0.5"]),
              ("FashionDet/adaptive_ecc_vr.yaml", ["rates=0,4"])]
    seen = set()
    for config, tokens in sweeps:
        for p in plan(config, parse_sweep(tokens), independent_config=QUICK.format("independent_ecc")):
            named = result_series(config_summary(get_eccentric_cfg(p.config_file, list(p.opts))))
            assert p.series in series.NAMES and named in series.NAMES
            seen.add(p.series)
            if p.image_codec:  # train_net --eval-only does not code the input images: the cloud model alone
                assert p.series == series.image_codec_series(p.image_codec[0]) and named == series.CLOUD_ONLY
                assert series.is_cloud_only(p.series)
            else:
                assert named == p.series, (config, p.label)
    assert seen == {"Dynamic ECC", "Dynamic ECC (regions)", "Adaptive ECC (variable rate)", "edge-only",
                    "Independent ECC", *series.IMAGE_CODEC_SERIES.values()}
    # the other names of result_series: a stock detector, an image-mode split at each policy, no policy recorded
    assert result_series({"model": "cloud-only"}) == result_series({"meta_architecture": "GeneralizedRCNN"}) \
        == series.CLOUD_ONLY
    assert result_series({"offload_mode": "image", "policy": "dynamic"}) == series.INDEPENDENT_DYNAMIC
    assert result_series({"offload_mode": "features", "policy": "always"}) == series.ADAPTIVE
    assert result_series({"offload_mode": "features"}) == series.EARLIER_RUNS
    assert result_series({"task": "classification", "offload_mode": "image", "policy": "always",
                          "image_codec": ["webp", 50]}) == series.CLOUD_ONLY_WEBP


# ------------------------------------------------------------------------------------ bad input
def test_checkpoint_of_another_config_is_refused(tmp_path):
    teacher, dynamic = tmp_path / "teacher.pth", tmp_path / "dynamic.pth"
    torch.save({"model": build_model(quick_cfg("cloud_teacher")).state_dict()}, teacher)
    torch.save({"model": build_model(quick_cfg("dynamic_ecc")).state_dict()}, dynamic)
    with pytest.raises(ValueError, match="does not match the config"):
        load_model(quick_cfg("dynamic_ecc", "MODEL.WEIGHTS", str(teacher)))
    assert not load_model(quick_cfg("dynamic_ecc", "MODEL.WEIGHTS", str(dynamic))).training
    # Independent ECC: the teacher fills the cloud, the edge checkpoint the edge detector; neither alone is enough
    edge = tmp_path / "edge.pth"
    torch.save({"model": build_model(quick_cfg("edge_kd")).state_dict()}, edge)
    independent = load_model(quick_cfg("independent_ecc", "MODEL.WEIGHTS", str(teacher),
                                               "MODEL.ECCENTRIC.EDGE.WEIGHTS", str(edge)))
    assert torch.equal(independent.state_dict()["roi_heads.box_predictor.cls_score.weight"],
                       torch.load(teacher)["model"]["roi_heads.box_predictor.cls_score.weight"])
    with pytest.raises(ValueError, match="does not match the config"):
        load_model(quick_cfg("independent_ecc", "MODEL.WEIGHTS", str(teacher)))
    (tmp_path / "notes.pth").write_text("not a checkpoint")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        load_model(quick_cfg("dynamic_ecc", "MODEL.WEIGHTS", str(tmp_path / "notes.pth")))


def test_empty_or_unknown_dataset():
    if "empty_eval_ds" not in DatasetCatalog.list():
        DatasetCatalog.register("empty_eval_ds", lambda: [])
    with pytest.raises(ValueError, match="holds no images"):
        dataset_dicts("empty_eval_ds")
    with pytest.raises(KeyError, match="not registered"):
        dataset_dicts("no_such_dataset")


@needs_data
def test_sweep_writes_results_and_reuses_earlier_runs(tiny, tmp_path):
    opts = INFER + ["TEST.ECCENTRIC.FLOPS", False]
    out = tmp_path / "sweep"
    result = run_sweep(QUICK.format("dynamic_ecc"), parse_sweep(["jpeg=20,95"]), tiny, 2, str(out), opts)
    assert [p["label"] for p in result["points"]] == ["jpeg 20", "jpeg 95"]
    b20, b95 = (p["metrics"]["bytes_mean"] for p in result["points"])
    assert PAYLOAD_OVERHEAD < b20 < b95 and result["images"] == 2
    assert (out / "pareto.png").stat().st_size > 0
    q20, q95 = json.loads((out / "pareto.json").read_text())["points"]
    assert q20["front"]["bytes"] is True  # the fewest bytes: nothing can dominate it
    assert q95["front"]["bytes"] == (q95["metrics"]["AP"] > q20["metrics"]["AP"])
    first = result["points"][0]["output_dir"]
    again = run_sweep("", {}, tiny, None, str(tmp_path / "again"), results=[first])
    assert again["points"][0]["metrics"] == result["points"][0]["metrics"]
    merged = run_sweep("", {}, tiny, None, str(tmp_path / "merged"), results=[str(out)])  # a whole sweep
    assert [(p["series"], p["label"]) for p in merged["points"]] == [("cloud-only JPEG", "jpeg 20"),
                                                                     ("cloud-only JPEG", "jpeg 95")]
    assert [p["metrics"] for p in merged["points"]] == [p["metrics"] for p in result["points"]]
    with pytest.raises(ValueError, match="dataset 'tiny_fd_val', this sweep is on 'coco_2017_val'"):
        load_results(first, "coco_2017_val")
    with pytest.raises(ValueError, match="evaluated on 2 images"):
        load_results(first, tiny, image_ids=[1, 2, 3])
    with pytest.raises(FileNotFoundError, match="no eccentric_metrics.json"):
        load_results(str(tmp_path), tiny)


def test_sweep_checks_every_point_before_evaluating_any(tiny, tmp_path):
    sweep = parse_sweep(["jpeg=20", f"weights={tmp_path / 'missing.pth'}"])
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        run_sweep(QUICK.format("dynamic_ecc"), sweep, tiny, 1, str(tmp_path / "out"), INFER)
    assert not (tmp_path / "out").exists()


def test_top1_fronts_from_classification_results(tmp_path):
    def run(name, top1, bytes_mean, size=28, pixels=None):
        folder = tmp_path / name
        folder.mkdir()
        metrics = {"top1": top1, "bytes_mean": bytes_mean, "edge_gflops": 0.001, "offload_rate": 1.0}
        images = [{"image_id": i, **({"pixels": pixels} if pixels else {})} for i in range(3)]
        (folder / "eccentric_metrics.json").write_text(json.dumps({
            "format": 1, "dataset": "fashion_mnist_test", "config": {"input_size_test": [size, size]},
            "metrics": metrics, "images": images}))
        return str(folder)

    runs = [run("adaptive", 80.8, 51.3), run("cloud", 88.5, 552.6), run("worse", 80.0, 60.0)]
    result = run_sweep("", {}, "fashion_mnist_test", output_dir=str(tmp_path / "out"), results=runs, accuracy="top1")
    assert [p["front"]["bytes"] for p in result["points"]] == [True, True, False]
    assert result["accuracy"] == "top1" and (tmp_path / "out" / "pareto.png").stat().st_size > 0
    with pytest.raises(ValueError, match="holds no AP \\(it has top1\\)"):
        run_sweep("", {}, "fashion_mnist_test", output_dir=str(tmp_path / "out"), results=runs)
    with pytest.raises(ValueError, match="evaluated at test input size \\[32, 32\\], this sweep at \\[28, 28\\]"):
        run_sweep("", {}, "fashion_mnist_test", output_dir=str(tmp_path / "out"),
                  results=runs + [run("bigger", 90.0, 700.0, size=32)], accuracy="top1")
    with pytest.raises(ValueError, match="top1 fronts come from --results"):
        run_sweep(QUICK.format("dynamic_ecc"), parse_sweep(["jpeg=50"]), accuracy="top1")
    # another configured size that resized every image alike (the per-image input pixels agree) compares
    same = [run("p28", 80.0, 50.0, pixels=784), run("p_cap", 81.0, 55.0, size=40, pixels=784)]
    assert len(run_sweep("", {}, "fashion_mnist_test", output_dir=str(tmp_path / "px"), results=same,
                         accuracy="top1")["points"]) == 2
    with pytest.raises(ValueError, match="not resized alike"):
        run_sweep("", {}, "fashion_mnist_test", output_dir=str(tmp_path / "px"), accuracy="top1",
                  results=same + [run("p_big", 82.0, 60.0, size=40, pixels=1600)])
    # TAG=DIR: a run's series is tagged (two checkpoints' sweeps stay two curves); a path with "=" that exists stays
    # a path
    named = run_sweep("", {}, "fashion_mnist_test", output_dir=str(tmp_path / "named"), accuracy="top1",
                      results=runs[:2] + ["joint model=" + runs[2]])
    assert [p["series"] for p in named["points"]][2] == "joint model: " + result["points"][2]["series"]
    assert len({p["series"] for p in named["points"]}) == len({p["series"] for p in result["points"]}) + 1
    odd = tmp_path / "a=b"
    odd.mkdir()
    assert result_entry(str(odd)) == (None, str(odd)) and result_entry("x/y=z") == (None, "x/y=z")


def _load_tool(name):
    spec = importlib.util.spec_from_file_location(f"{name}_tool", os.path.join(os.path.dirname(__file__), "..",
                                                                              "tools", f"{name}.py"))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def test_pareto_tool_reports_bad_input_without_traceback(capsys):
    tool = _load_tool("pareto")
    assert tool.main(["--sweep", "quality=9", "--config-file", QUICK.format("dynamic_ecc")]) == 2
    assert tool.main(["--dataset", "tiny_fd_val", "--results", "/nonexistent/run"]) == 2
    err = capsys.readouterr().err
    assert "unknown sweep 'quality'" in err and "no eccentric_metrics.json" in err and "Traceback" not in err
