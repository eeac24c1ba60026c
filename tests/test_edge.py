"""The edge a device runs: it imports only the edge, and its exported form (ONNX, TorchScript) writes the
PyTorch edge's payloads byte for byte, which the cloud decodes."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from eccentric_det.codec import FIELD_SCALE_INDEXES, Payload
from eccentric_det.codec.coding import CodedFeature
from eccentric_det.edge import CloudClient, EdgeClient, ExportedEdge
from eccentric_det.deploy.export import export_edge, export_from_config
from eccentric_det.inputs import InputBuilder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DET_CFG = "configs/FashionDet/adaptive_ecc.yaml"  # the factorised codec (codec v1), built here with random weights
TRAINED_CFG = "configs/FashionDet/adaptive_ecc_vr.yaml"  # the committed codec-v2 model (adaptive_ecc_vr.pth)
DET_OPTS = []
# Not on an edge device: Detectron2 and what it pulls in, CompressAI's Python side, timm, the bounded decoder,
# and the project's cloud, training and evaluation modules.
FORBIDDEN = ("detectron2", "fvcore", "pycocotools", "timm", "numba", "compressai.entropy_models", "compressai.models",
             "compressai.datasets", "torch_geometric", "scipy", "eccentric_det.modeling", "eccentric_det.distill",
             "eccentric_det.evaluation", "eccentric_det.calibration", "eccentric_det.classification",
             "eccentric_det.baselines", "eccentric_det.serving.runtime", "eccentric_det.serving.worker",
             "eccentric_det.serving.http_app", "eccentric_det.serving.config", "eccentric_det.checkpoint",
             "eccentric_det.codec.feature_codec", "eccentric_det.codec.latent_codecs",
             "eccentric_det.codec.guarded_ans", "fastapi", "ray")

SIZES = [(256, 256), (200, 300), (333, 250)]  # square, and sizes the network pads to its divisibility


def images(sizes=SIZES, seed=0):
    rng = np.random.default_rng(seed)
    return [np.ascontiguousarray(np.repeat(np.repeat(rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8),
                                                     8, 0), 8, 1)[:h, :w]) for h, w in sizes]


@pytest.fixture(scope="module")
def detection(tmp_path_factory):
    from eccentric_det.checkpoint import load_model
    from eccentric_det.serving.config import get_serving_cfg

    out = str(tmp_path_factory.mktemp("edge_det"))
    manifest = export_from_config(TRAINED_CFG, out, DET_OPTS)
    cfg = get_serving_cfg(TRAINED_CFG, "edge", opts=DET_OPTS)
    return out, manifest, load_model(cfg), InputBuilder.from_config(cfg)


@pytest.mark.parametrize("backend", ["onnx", "torchscript"])
def test_the_edge_runs_without_the_cloud(detection, backend):
    """A fresh interpreter imports eccentric_det.edge and runs one edge step: no forbidden module is loaded."""
    code = ("import sys, json, numpy as np; from eccentric_det.edge import ExportedEdge; "
            f"d = ExportedEdge({detection[0]!r}, {backend!r}).step(np.zeros((240, 320, 3), np.uint8)); "
            "print(json.dumps([len(d.payload.to_bytes()), sorted(sys.modules)]))")
    n_bytes, loaded = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                                check=True, cwd=ROOT).stdout.splitlines()[-1])
    bad = [m for m in loaded if m.startswith(FORBIDDEN)]
    assert not bad, f"the edge loads {bad[:10]}"
    assert n_bytes > 16 and "eccentric_det.edge.runtime" in loaded


ROUNDING = 1e-4  # how close to a rounding boundary two runtimes' float32 convolutions may disagree


def _latent(model, payload, feature_hw):
    """The quantised latent a payload carries, decoded as the cloud decodes it."""
    coded = CodedFeature(payload.strings, model.codec.latent_shape(feature_hw), feature_hw, payload.fields)
    return model.codec.decompress_latent([coded])[0]


def _factorized_edge(tmp_path, seed=0):
    """A factorised-codec (codec v1) split model of DET_CFG with seeded random weights, its edge exported to
    ``tmp_path``: (model, input builder)."""
    from eccentric_det.checkpoint import load_model
    from eccentric_det.tasks import get_eccentric_cfg

    cfg = get_eccentric_cfg(DET_CFG, ["MODEL.ECCENTRIC.HALF", "edge", "MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "",
                                      "MODEL.ECCENTRIC.EDGE.WEIGHTS", ""])
    torch.manual_seed(seed)
    model = load_model(cfg)
    assert model.codec.name == "factorized"
    builder = InputBuilder.from_config(cfg)
    export_edge(model, str(tmp_path), builder(images()[0]), {"min_size": builder.min_size,
                                                             "max_size": builder.max_size,
                                                             "format": builder.input_format})
    return model, builder


@pytest.mark.parametrize("backend", ["onnx", "torchscript"])
def test_exported_factorized_edge_writes_the_pytorch_payloads(backend, tmp_path):
    """The factorised codec: the same header and the same quantised latent as the PyTorch edge, but for latent
    elements whose value lies within float32 noise of a rounding boundary: another runtime's convolutions (ONNX
    Runtime's kernels for this CPU) may round those the other way. Both payloads are valid; the cloud decodes
    whichever it gets."""
    model, builder = _factorized_edge(tmp_path)
    edge = ExportedEdge(str(tmp_path), backend)
    assert edge.manifest["outputs"] == ["y"]
    for img in images():
        inp = builder(img)
        want = model.edge([inp])[0]
        got = edge.step(img)
        assert got.offload and got.answer is None
        assert got.payload.image_size == want.image_size and got.payload.output_size == tuple(img.shape[:2])
        assert got.payload.to_bytes()[:16] == want.to_bytes()[:16]  # the header: version, model, sizes, lengths
        assert len(set(want.to_bytes()[16:])) > 16  # a latent of many values, not a constant
        with torch.no_grad():  # both payloads decoded (the cloud's factorised decoder), even when the bytes agree
            x = model.preprocess_image([inp]).tensor
            feature = model.split_backbone.edge_forward(x)[model.split_backbone.split_at]
            y = model.codec.analysis(feature)[0]
        hw = tuple(feature.shape[-2:])
        a, b = _latent(model, got.payload, hw), _latent(model, want, hw)
        differ = a != b
        medians = model.codec.entropy_bottleneck.quantiles[:, 0, 1].detach().view(-1, 1, 1).expand_as(y)
        frac = (y - medians) - torch.floor(y - medians)
        assert torch.all((a - b).abs()[differ] == 1), "a latent element differs by more than one step"
        assert torch.all((frac - 0.5).abs()[differ] < ROUNDING), "a latent element away from a boundary differs"
        assert differ.sum() <= max(1, differ.numel() // 1000)
        assert torch.equal(b, torch.round(y - medians) + medians)  # what the PyTorch edge quantised


@pytest.mark.parametrize("backend", ["onnx", "torchscript"])
def test_exported_detection_edge_writes_the_pytorch_payloads(detection, backend):
    """The committed codec-v2 model (mean-scale hyperprior, variable rate): the same header and the same
    quantised latent as the PyTorch edge, up to latent elements within float32 noise of a rounding boundary that
    another runtime may round the other way (see the factorised test above): a few elements at most."""
    folder, manifest, model, builder = detection
    assert manifest["task"] == "detection" and manifest["outputs"] == ["y", "z"]
    edge = ExportedEdge(folder, backend)
    for img in images():
        inp = builder(img)
        want = model.edge([inp])[0]
        got = edge.step(img)
        assert got.offload and got.answer is None
        assert got.payload.image_size == want.image_size and got.payload.output_size == tuple(img.shape[:2])
        assert got.payload.to_bytes()[:16] == want.to_bytes()[:16]  # the header: version, model, sizes, lengths
        if got.payload.to_bytes() == want.to_bytes():
            continue
        assert backend == "onnx", "TorchScript runs the PyTorch edge's kernels: the same bytes"
        with torch.no_grad():
            x = model.preprocess_image([inp]).tensor
            hw = tuple(model.split_backbone.edge_forward(x)[model.split_backbone.split_at].shape[-2:])
        a, b = _latent(model, got.payload, hw), _latent(model, want, hw)
        differ = ~torch.isclose(a, b)
        assert differ.sum() <= max(1, differ.numel() // 1000)


def test_exported_payloads_decode_in_the_cloud(detection):
    from detectron2.structures import pairwise_iou

    from eccentric_det.checkpoint import load_model
    from eccentric_det.tasks import get_eccentric_cfg

    cloud = load_model(get_eccentric_cfg(TRAINED_CFG, DET_OPTS + ["MODEL.DEVICE", "cpu"]))
    edge = ExportedEdge(detection[0], "onnx")
    for img in images():
        got = cloud.cloud([edge.step(img).payload.to_bytes()])[0]["instances"]
        want = cloud([detection[3](img)])[0]["instances"]
        assert got.image_size == want.image_size == img.shape[:2]
        # the same detections, or as close as a latent element rounded the other way leaves them (see the test
        # above): each has a twin of the same class, box and score, but at the top-k cut, where near-equal scores
        # may trade places
        assert len(got) == len(want) > 0
        iou = pairwise_iou(got.pred_boxes, want.pred_boxes)
        twin = (iou > 0.98) & (got.pred_classes[:, None] == want.pred_classes[None]) & (
            (got.scores[:, None] - want.scores[None]).abs() < 1e-2)
        cut = want.scores.min() + 1e-2
        assert twin.any(1)[got.scores > cut].all() and twin.any(0)[want.scores > cut].all()
        assert (want.scores > cut).sum() >= len(want) // 2


def test_latency_bench_runs_each_configs_exported_edge_where_it_exports(detection, monkeypatch, tmp_path):
    """benchmarks/bench_latency.py --edge-backend: the config's export, run by the backend asked for; an export
    without that backend (an edge detector: TorchScript only) is skipped with the reason, not a failed run."""
    import runpy
    import shutil

    monkeypatch.syspath_prepend(os.path.join(ROOT, "benchmarks"))
    exported_edge = runpy.run_path(os.path.join(ROOT, "benchmarks", "bench_latency.py"))["exported_edge"]
    skipped = []
    assert exported_edge(TRAINED_CFG, "pytorch", str(tmp_path / "none"), skipped) is None
    assert not os.path.exists(tmp_path / "none")
    edge = exported_edge(TRAINED_CFG, "onnx", detection[0], skipped)  # an export already there is run as it is
    assert isinstance(edge, ExportedEdge) and edge.fingerprint.hex() == detection[1]["fingerprint"]
    torchscript_only = str(tmp_path / "ts")
    shutil.copytree(detection[0], torchscript_only)
    with open(os.path.join(torchscript_only, "edge.json")) as f:
        manifest = json.load(f)
    with open(os.path.join(torchscript_only, "edge.json"), "w") as f:
        json.dump({**manifest, "backends": ["torchscript"]}, f)
    assert skipped == [] and exported_edge(TRAINED_CFG, "onnx", torchscript_only, skipped) is False
    assert skipped[0]["backend"] == "onnx" and "backend must be one of ['torchscript']" in skipped[0]["why"]
    assert isinstance(exported_edge(TRAINED_CFG, "torchscript", torchscript_only, skipped), ExportedEdge)


def test_input_builder_resizes_as_detectron2():
    from detectron2.data import transforms as T

    for (h, w), (short, longest) in zip([(480, 640), (333, 250), (1000, 90), (64, 64)],
                                        [(256, 1333), (800, 1333), (800, 1333), (0, 1333)]):
        img = images([(h, w)])[0]
        ours = InputBuilder(short, longest)(img)["image"]
        theirs = img if short == 0 else T.ResizeShortestEdge([short] * 2, longest).get_transform(img).apply_image(img)
        assert torch.equal(ours, torch.as_tensor(theirs.transpose(2, 0, 1).astype("float32")))


def test_hyperprior_edge_exports_byte_identical(tmp_path):
    """A hyperprior's edge also codes z and lists the scales next to CDF boundaries: same bytes, fields included."""
    from eccentric_det.checkpoint import load_model
    from eccentric_det.tasks import get_eccentric_cfg

    opts = ["MODEL.ECCENTRIC.CODEC.NAME", "hyperprior", "MODEL.ECCENTRIC.HALF", "edge", "MODEL.DEVICE", "cpu",
            "MODEL.WEIGHTS", "", "MODEL.ECCENTRIC.EDGE.WEIGHTS", ""]
    cfg = get_eccentric_cfg(DET_CFG, opts)
    torch.manual_seed(0)
    model = load_model(cfg)
    builder = InputBuilder.from_config(cfg)
    imgs = images()
    export_edge(model, str(tmp_path), builder(imgs[0]), {"min_size": builder.min_size, "max_size": builder.max_size,
                                                          "format": builder.input_format})
    edge = ExportedEdge(str(tmp_path), "torchscript")
    fields = 0
    for img in imgs:
        want = model.edge([builder(img)])[0]
        got = edge.step(img).payload
        assert got.to_bytes() == want.to_bytes() and len(got.strings) == 2
        fields += FIELD_SCALE_INDEXES in got.fields
    assert os.path.isfile(tmp_path / "h_s.ts")


@pytest.mark.parametrize("backend", ["torchscript", "onnx"])
def test_variable_rate_edge_exports_and_picks_its_rate_at_run_time(backend, tmp_path):
    """Codec v2 (mean_scale, GDN, gains per rate level): the exported edge writes the PyTorch edge's payloads at
    the exported rate and at any rate it is set to, each naming its rate, and the cloud decodes them all."""
    from eccentric_det.checkpoint import load_model
    from eccentric_det.codec import FIELD_RATE
    from eccentric_det.tasks import get_eccentric_cfg

    opts = ["MODEL.ECCENTRIC.CODEC.NAME", "mean_scale", "MODEL.ECCENTRIC.CODEC.RATE_WEIGHTS", "[0.1, 0.5, 2.0]",
            "MODEL.ECCENTRIC.CODEC.RATE", "1.0", "MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "",
            "MODEL.ECCENTRIC.EDGE.WEIGHTS", ""]
    cfg = get_eccentric_cfg(DET_CFG, opts)
    torch.manual_seed(0)
    model = load_model(cfg).eval()
    with torch.no_grad():  # latents of many values, so that a wrong gain or mean would show in the bytes
        model.codec.analysis[-1].weight.mul_(30)
    builder = InputBuilder.from_config(cfg)
    imgs = images()
    export_edge(model, str(tmp_path), builder(imgs[0]), {"min_size": builder.min_size, "max_size": builder.max_size,
                                                          "format": builder.input_format})
    edge = ExportedEdge(str(tmp_path), backend)
    assert edge.rate == 1.0
    sizes = {}
    for rate in (1.0, 0.0, 1.75):
        edge.set_rate(rate)
        model.codec.set_rate(rate)
        for img in imgs:
            want = model.edge([builder(img)])[0]
            got = edge.step(img).payload
            assert got.fields[FIELD_RATE] == bytes([round(rate * 32)])
            if backend == "torchscript":  # onnxruntime's convolutions may move a latent by one in the last bit
                assert got.to_bytes() == want.to_bytes()
            sizes.setdefault(rate, []).append(len(got.to_bytes()))
        decoded = model.cloud([edge.step(img).payload.to_bytes() for img in imgs])
        assert len(decoded) == len(imgs)
    assert sum(sizes[0.0]) > sum(sizes[1.0]) > sum(sizes[1.75]), sizes
    with pytest.raises(ValueError, match="rate must lie in 0..2"):
        edge.set_rate(2.5)


def test_dynamic_ecc_edge_exports_its_detector_and_gate(tmp_path):
    """Dynamic ECC's edge detector and gate trace to TorchScript: the same decisions and payloads as the PyTorch
    edge. Detections may differ in low-score boxes: traced, torchvision's batched NMS takes its coordinate-offset
    variant, eager its per-class one, and they break near-ties apart differently."""
    from eccentric_det.deploy.torch_edge import TorchEdge
    from eccentric_det.serving.config import get_serving_cfg

    manifest = export_from_config("configs/FashionDet/dynamic_ecc_vr.yaml", str(tmp_path / "edge"))
    assert manifest["backends"] == ["torchscript"] and manifest["outputs"] == ["y", "z", "boxes", "scores", "classes"]
    assert not os.path.exists(tmp_path / "edge" / "edge.onnx")
    with pytest.raises(ValueError, match="TorchScript only"):
        ExportedEdge(str(tmp_path / "edge"), "onnx")
    ref = TorchEdge.from_config(get_serving_cfg("configs/FashionDet/dynamic_ecc_vr.yaml", "edge"))
    edge = ExportedEdge(str(tmp_path / "edge"), "torchscript")
    import cv2

    from eccentric_det.data import generate_fashion_det

    generate_fashion_det(str(tmp_path / "data"), num_train=1, num_val=4, size=256, seed=3)  # real-looking scenes
    val = tmp_path / "data" / "val"
    for img in images() + [cv2.imread(str(val / p)) for p in sorted(os.listdir(val)) if p.endswith(".jpg")]:
        want, got = ref.step(img), edge.step(img)
        assert got.offload == want.offload and got.score == pytest.approx(want.score, abs=0.05)
        assert got.answer["image_size"] == want.answer["image_size"] == list(img.shape[:2])
        assert got.answer["boxes"][:1] == want.answer["boxes"][:1] and got.answer["scores"][:1] == want.answer["scores"][:1]
        assert (got.payload is None) == (want.payload is None)
        if got.payload is not None:
            assert got.payload.to_bytes() == want.payload.to_bytes()


@pytest.mark.parametrize("config,opts", [
    ("configs/Classification/fashion_mnist_adaptive_ecc_joint.yaml",
     ["MODEL.WEIGHTS", "checkpoints/classification/fashion_mnist_adaptive_ecc_joint.pth", "MODEL.ECCENTRIC.EDGE.WEIGHTS", "",
      "MODEL.ECCENTRIC.OFFLOAD.POLICY", "always"]),
    ("configs/Classification/fashion_mnist_dynamic_ecc.yaml", []),
    ("configs/Classification/fashion_mnist_adaptive_ecc_joint_stem_56_nofm_prior.yaml",  # the positional prior
     ["MODEL.WEIGHTS", "checkpoints/classification/fashion_mnist_adaptive_ecc_joint_stem_56_nofm.pth",
      "MODEL.ECCENTRIC.EDGE.WEIGHTS", "", "MODEL.ECCENTRIC.OFFLOAD.POLICY", "always"])])
def test_exported_classification_edge(config, opts, tmp_path):
    from eccentric_det.classification import SplitTimmClassifier
    from eccentric_det.training.classification import load_initial_weights
    from eccentric_det.tasks import get_eccentric_cfg

    manifest = export_from_config(config, str(tmp_path), opts)
    cfg = get_eccentric_cfg(config, opts + ["MODEL.DEVICE", "cpu"])
    model = SplitTimmClassifier(cfg)
    load_initial_weights(cfg, model)
    _assert_edge_matches(model.eval(), ExportedEdge(str(tmp_path), "onnx"), manifest)


def _assert_edge_matches(model, edge, manifest):
    """The exported edge's scores and payload bytes are the model's, on random 28x28 images."""
    rng = np.random.default_rng(0)
    for _ in range(4):
        img = torch.from_numpy(rng.integers(0, 256, (model.in_chans, 28, 28)).astype(np.float32))
        want, got = model.edge_step([img], force_offload=True)[0], edge.step(img)
        assert got.score == pytest.approx(want.score, abs=1e-5)
        assert (got.payload is None) == (manifest["policy"] == "dynamic" and want.score < model.threshold)
        if got.payload is not None:
            assert got.payload.to_bytes() == want.payload.to_bytes()


def test_exported_classification_edge_at_its_own_input_size(tmp_path):
    """MODEL.CLS.EDGE_IMAGE_SIZE: the exported edge resizes to the edge's size (28), not the cloud's (56)."""
    from eccentric_det.classification import SplitTimmClassifier, save_weights
    from eccentric_det.tasks import get_eccentric_cfg

    config = "configs/Classification/fashion_mnist_adaptive_ecc_joint_stem.yaml"
    opts = ["MODEL.CLS.IMAGE_SIZE", 56, "MODEL.CLS.EDGE_IMAGE_SIZE", 28, "MODEL.CLS.SPLIT_INDEX", 1,
            "MODEL.CLS.EDGE_SPLIT_INDEX", 0, "MODEL.ECCENTRIC.EDGE.WEIGHTS", ""]
    model = SplitTimmClassifier(get_eccentric_cfg(config, opts + ["MODEL.WEIGHTS", ""])).eval()
    opts += ["MODEL.WEIGHTS", save_weights(model, str(tmp_path / "split.pth"), half_precision=False)]
    manifest = export_from_config(config, str(tmp_path / "edge"), opts)
    assert manifest["input"]["image_size"] == [28, 28]
    _assert_edge_matches(model, ExportedEdge(str(tmp_path / "edge"), "onnx"), manifest)


def test_edge_client_runs_the_exported_edge(detection, monkeypatch):
    """EdgeClient drives an exported edge: it signs and posts the payload, and returns the cloud's answer."""
    import httpx

    folder, _, model, builder = detection
    key = b"k" * 16
    sent = []

    def handler(request):
        sent.append(request.content)
        return httpx.Response(200, json={"boxes": [[1.0, 2.0, 3.0, 4.0]], "scores": [0.5], "classes": [3],
                                         "cloud_ms": 7.0})

    cloud = CloudClient("http://cloud.test", retries=0)
    cloud._http = httpx.Client(transport=httpx.MockTransport(handler))
    client = EdgeClient(ExportedEdge(folder, "onnx"), cloud, key=key)
    img = images()[2]
    result = client(img)
    assert result.source == "cloud" and result.bytes_sent == len(sent[0]) and result.cloud_ms == 7.0
    assert Payload.from_bytes(sent[0], model.fingerprint(), key).to_bytes() == model.edge([builder(img)])[0].to_bytes()
    assert result.to_dict()["image_size"] == list(img.shape[:2])
