"""Split timm classifiers: exactness of the split, payloads, the training strategies, the gate and evaluation."""
import json
import os

import pytest
import timm
import torch

from eccentric_det.calibration import edge_confidence, fit_gate
from eccentric_det.classification import SplitTimmClassifier, load_weights, save_weights, timm_to_split
from eccentric_det.classification.checkpoint import edge_state, load_state, read_state
from eccentric_det.classification.data import ClsData, load_cls_dataset, random_crops, random_erasing
from eccentric_det.classification.split_model import create_timm, encode_png
from eccentric_det.training.classification import ClsLosses, classifier_gflops, evaluate, load_initial_weights, main, train
from eccentric_det.codec import KIND_IMAGE, Payload, PayloadError
from eccentric_det.config import CONFIG_DIR
from eccentric_det.tasks import get_eccentric_cfg

SIZE = 32
RESNET = {"channels": (8, 16, 32, 64)}
VIT = {"img_size": SIZE, "patch_size": 8, "depth": 4, "class_token": False, "global_pool": "avg"}
FAMILIES = [  # (timm name, kwargs, split indices)
    ("resnet18", RESNET, (0, 2, 4)),
    ("mobilenetv3_small_050", {}, (1, 3)),
    ("convnext_atto", {}, (0, 2)),
    ("vit_tiny_patch16_224", VIT, (0, 2)),
]
QUICK = "quick_schedules/cls_{}_instant_test.yaml"
CONFIGS = os.path.join(os.path.dirname(__file__), "..", "configs", "Classification")


def _images(n, seed=0, channels=3, size=SIZE):
    return torch.randint(0, 256, (n, channels, size, size), generator=torch.Generator().manual_seed(seed)).float()


def _split(name, kwargs, index, codec="passthrough", **kw):
    return SplitTimmClassifier(cloud_name=name, cloud_kwargs=kwargs, split_index=index, image_size=(SIZE, SIZE),
                               codec={"name": codec, "latent_channels": 8, "hidden_channels": 16}, **kw)


@pytest.mark.parametrize("name,kwargs,indices", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_passthrough_split_equals_unsplit(name, kwargs, indices):
    ref = create_timm(name, 10, 3, kwargs).eval()
    images = _images(3)
    for index in indices:
        model = _split(name, kwargs, index)
        missing = model.load_state_dict(timm_to_split(ref.state_dict()), strict=False).missing_keys
        assert not missing
        model.eval()
        with torch.no_grad():
            want = ref(model.normalizer(images))
            assert torch.equal(model(images).logits, want), (name, index)
            one = model.cloud([p.to_bytes() for p in model.edge(images[:1])])
            assert torch.equal(one, ref(model.normalizer(images[:1]))), (name, index)
            assert torch.allclose(model.cloud(model.edge(images)), want, rtol=0, atol=1e-5)
        # the cloud holds none of the modules that compute the split feature, the edge none after it
        cloud_keys = {k.split(".", 2)[2] for k in model.state_dict() if k.startswith("cloud_half.")}
        edge_keys = {k.split(".", 2)[2] for k in model.state_dict() if k.startswith("edge_half.model.")}
        assert cloud_keys | edge_keys == set(ref.state_dict())
        assert all("." not in k for k in cloud_keys & edge_keys)  # shared: top-level tensors only (ViT pos_embed)


def test_halves_built_apart_match_the_whole():
    """An edge process and a cloud process, each holding one half of one checkpoint, agree with the whole."""
    kw = dict(edge_name="mobilenetv3_small_050", edge_kwargs={}, codec="factorized")
    whole = _split("resnet18", RESNET, 3, **kw).eval()
    state = whole.state_dict()
    edge, cloud = (_split("resnet18", RESNET, 3, half=h, **kw) for h in ("edge", "cloud"))
    for half in (edge, cloud):
        half.load_state_dict({k: v for k, v in state.items() if k in half.state_dict()})
        half.eval()
    assert edge.cloud_half is None and cloud.edge_half is None
    assert not hasattr(edge.codec, "g_s") and not hasattr(cloud.codec, "g_a")
    assert whole.codec.config["in_channels"] == 24 and whole.codec.config["out_channels"] == 32  # the decoder adapts
    images = _images(4, channels=3)
    blobs = [p.to_bytes() for p in edge.edge(images)]
    assert blobs == [p.to_bytes() for p in whole.edge(images)]
    logits = cloud.cloud(blobs)
    assert logits.shape == (4, 10) and torch.equal(logits, whole.cloud(blobs))
    with pytest.raises(RuntimeError, match="no cloud side"):
        edge.cloud(blobs)
    with pytest.raises(RuntimeError, match="no edge side"):
        cloud.edge(images)


def test_unsplit_checkpoint_initialises_both_halves(tmp_path):
    """A cloud-only checkpoint gives its stages to a split model of the same timm model: MODEL.WEIGHTS fills the
    cloud's tail, EDGE.WEIGHTS the edge (``edge_state``); with a passthrough codec it then equals the teacher."""
    teacher = _split("resnet18", RESNET, 2, offload_mode="image").eval()
    path = save_weights(teacher, str(tmp_path / "teacher.pth"), half_precision=False)
    split = _split("resnet18", RESNET, 2).eval()
    images = _images(2)
    with torch.no_grad():
        want = teacher(images).logits
        assert not load_weights(split, path)  # all of the cloud's tail is in it
        assert not torch.equal(split(images).logits, want)  # the edge is still random
        assert not load_state(split, edge_state(read_state(path)), path)
        assert torch.equal(split(images).logits, want)


def test_checkpoints_are_checked_as_detection_checks_them(tmp_path):
    """The shared check (eccentric_det.checkpoint.check_state): a tensor of another shape is refused with its name
    and both shapes, a checkpoint of nothing the model holds too; EDGE.WEIGHTS' tensors are not taken from
    MODEL.WEIGHTS, so an unsplit teacher initialises a split model whose edge is narrower."""
    narrow = tmp_path / "narrow_edge.yaml"
    narrow.write_text(f'_BASE_: "{os.path.join(CONFIG_DIR, QUICK.format("adaptive_ecc"))}"\nMODEL:\n  CLS:\n'
                      f'    EDGE_TIMM_NAME: "resnet18"\n    EDGE_TIMM_KWARGS:\n      channels: [4, 8, 16, 32]\n')
    torch.manual_seed(0)
    edge = SplitTimmClassifier(get_eccentric_cfg(str(narrow)))
    edge_path = save_weights(edge, str(tmp_path / "edge.pth"), half_precision=False)
    teacher = SplitTimmClassifier(get_eccentric_cfg(QUICK.format("cloud_teacher"))).cloud_half.model
    teacher_path = str(tmp_path / "teacher.pth")
    torch.save(teacher.state_dict(), teacher_path)  # a plain timm state dict: it names both halves' tensors
    cfg = get_eccentric_cfg(str(narrow), ["MODEL.WEIGHTS", teacher_path, "MODEL.ECCENTRIC.EDGE.WEIGHTS", edge_path])
    model = SplitTimmClassifier(cfg)
    load_initial_weights(cfg, model)
    got = model.state_dict()
    assert all(torch.equal(v, got[k]) for k, v in edge.state_dict().items() if k.startswith("edge_half."))
    assert torch.equal(got["cloud_half.model.fc.weight"], teacher.state_dict()["fc.weight"])
    alone = get_eccentric_cfg(str(narrow), ["MODEL.WEIGHTS", teacher_path])
    with pytest.raises(ValueError, match=r"teacher.pth \(MODEL.WEIGHTS\) does not match the config: .*"
                                         r"edge_half.model.layer1.0.conv1.weight: \(8, 64, 3, 3\) in the file, "
                                         r"\(4, 64, 3, 3\) in the model"):
        load_initial_weights(alone, SplitTimmClassifier(alone))
    foreign = tmp_path / "foreign.pth"
    torch.save({"model": {"codec.nothing": torch.zeros(1)}}, foreign)
    with pytest.raises(ValueError, match="holds none of this model's tensors"):
        load_weights(model, str(foreign))


def test_bad_splits_are_refused():
    with pytest.raises(ValueError, match="EDGE_SPLIT_INDEX"):
        _split("resnet18", RESNET, 2, edge_name="mobilenetv3_small_050", edge_kwargs={}, edge_split_index=3,
               codec="factorized")
    with pytest.raises(ValueError, match="class_token=False"):
        _split("vit_tiny_patch16_224", dict(VIT, class_token=True, global_pool="token"), 1)
    with pytest.raises(ValueError, match="POLICY"):
        _split("resnet18", RESNET, 2, offload_mode="image", policy="dynamic")


def test_a_small_edge_feeds_a_larger_cloud_when_their_grids_match():
    """EDGE_IMAGE_SIZE: the edge runs at its own input size (its stride-2 stem at 16x16) and feeds a cloud at 32x32
    from its stride-4 feature, both 8x8; the edge's FLOPs are counted at its size, the unsplit cloud's at the
    cloud's, the gate scores what the edge answers, the exported manifest takes the edge's size; a split whose grids
    differ is refused."""
    kw = dict(edge_name="mobilenetv3_small_050", edge_kwargs={}, codec="factorized")
    small = _split("resnet18", RESNET, 1, edge_split_index=0, edge_image_size=(16, 16), policy="dynamic",
                   **kw).eval()
    same = _split("resnet18", RESNET, 1, edge_split_index=1, policy="dynamic", **kw).eval()
    assert small.edge_normalizer.image_size == (16, 16) and small.normalizer.image_size == (SIZE, SIZE)
    assert same.edge_normalizer is same.normalizer
    images = _images(2)
    with torch.no_grad():
        feat = small.edge_half(small.edge_normalizer(images))[0]
        want = small.edge_half.model.forward_intermediates(
            torch.nn.functional.interpolate(small.normalizer(images), size=(16, 16), mode="bilinear"), indices=[0],
            intermediates_only=True)[0]
        assert feat.shape[-2:] == (8, 8) == small.cloud_half.feature_shape[1:] and torch.allclose(feat, want, atol=1e-4)
        payloads = small.edge(images)
        assert [p.image_size for p in payloads] == [(SIZE, SIZE)] * 2  # the image as it came, for the cloud
        logits = small.cloud([p.to_bytes() for p in payloads])
        out = small(images)  # the training path: the edge at its size too
        assert out.features["split"].shape[-2:] == (8, 8)
        assert logits.shape == (2, 10) and torch.allclose(logits, out.logits, atol=0.01)
    scores, _ = edge_confidence(small, ClsData("two", images.to(torch.uint8), torch.zeros(2, dtype=torch.long), []))
    assert scores.tolist() == pytest.approx([d.score for d in small.edge_step(images)], abs=1e-6)  # the gate's input
    g_small, g_same = classifier_gflops(small), classifier_gflops(same)
    assert g_small["cloud_only"] == g_same["cloud_only"] and g_small["cloud"] == g_same["cloud"]
    assert g_small["edge"] < g_same["edge"]
    assert small.edge_export()[1]["input"]["image_size"] == [16, 16]
    with pytest.raises(ValueError, match="EDGE_IMAGE_SIZE"):  # stride 2 at 32 is 16x16, the cloud's 8x8
        _split("resnet18", RESNET, 1, edge_split_index=0, **kw)
    with pytest.raises(ValueError, match="different grids"):
        _split("resnet18", RESNET, 1, edge_split_index=1, edge_image_size=(16, 16), **kw)


def test_payload_round_trip_and_bad_payloads():
    model = _split("resnet18", RESNET, 2, codec="factorized").eval()
    payload = model.edge(_images(1))[0]
    blob = payload.to_bytes()
    assert Payload.from_bytes(blob, model.fingerprint()) == payload and len(blob) == len(payload)
    with pytest.raises(PayloadError, match="truncated"):
        model.cloud([blob[:20]])
    with pytest.raises(PayloadError, match="CRC32"):
        model.cloud([blob[:-9] + bytes([blob[-9] ^ 1]) + blob[-8:]])
    other = _split("resnet18", RESNET, 2, codec="factorized").eval()
    with pytest.raises(PayloadError, match="another model"):
        other.cloud([blob])
    fp = model.fingerprint()
    assert len(blob) - len(payload.strings[0]) <= 16  # format v2's compact header
    too_long = Payload(payload.kind, fp, payload.image_size, payload.output_size, [payload.strings[0] * 50])
    with pytest.raises(PayloadError, match="string 0 holds"):
        model.cloud([too_long.to_bytes()])
    with pytest.raises(PayloadError, match="image size 4096x4096 is outside"):
        model.cloud([Payload(payload.kind, fp, (4096, 4096), (4096, 4096), payload.strings).to_bytes()])
    with pytest.raises(PayloadError, match="kind"):
        model.cloud([Payload(KIND_IMAGE, fp, (SIZE, SIZE), (SIZE, SIZE), [b"x"]).to_bytes()])
    cloud_only = _split("resnet18", RESNET, 2, offload_mode="image").eval()
    png = cloud_only.edge(_images(1))[0]
    assert png.kind == KIND_IMAGE and png.strings[0][:4] == b"\x89PNG"
    with pytest.raises(PayloadError, match="PNG"):
        cloud_only.cloud([Payload(KIND_IMAGE, png.fingerprint, (SIZE, SIZE), (SIZE, SIZE), [b"not a png"])])
    # a PNG whose header claims more pixels than the payload says is refused before it is decoded
    big = Payload(KIND_IMAGE, png.fingerprint, (SIZE, SIZE), (SIZE, SIZE), [encode_png(torch.zeros(3, 300, 300))])
    with pytest.raises(PayloadError, match="300x300 PNG; expected a PNG of the payload's size"):
        cloud_only.cloud([big])


def test_cloud_only_on_jpeg_and_webp_images():
    """MODEL.CLS.IMAGE_CODEC: the cloud-only baseline's image payloads in a lossy codec, fewer bytes than PNG, the
    logits close to the uncoded image's; the cloud refuses another codec's image, and a codec name it does not know."""
    images = _images(2)  # noise: PNG cannot compress it, a lossy codec can
    png = _split("resnet18", RESNET, 2, offload_mode="image").eval()
    for codec, magic in (("jpeg", b"\xff\xd8"), ("webp", b"RIFF")):
        lossy = _split("resnet18", RESNET, 2, offload_mode="image", image_codec=(codec, 50)).eval()
        lossy.load_state_dict(png.state_dict())
        payload = lossy.edge(images)[0]
        assert payload.strings[0][:len(magic)] == magic
        assert len(payload.strings[0]) < len(png.edge(images)[0].strings[0])
        with torch.no_grad():
            assert torch.allclose(lossy.cloud([payload]), png.cloud([png.edge(images)[0]]), atol=0.5)
        with pytest.raises(PayloadError):
            png.cloud([payload])  # a PNG cloud does not take a JPEG/WebP image
    with pytest.raises(ValueError, match="Unknown image codec"):
        _split("resnet18", RESNET, 2, offload_mode="image", image_codec=("gif", 50))


def _tiny_set(n=48, seed=0):
    """Fashion-MNIST-shaped images whose class sets which of ten bands is bright, plus noise."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 10
    images = torch.randint(0, 60, (n, 1, 28, 28), generator=g)
    for i, c in enumerate(labels):
        images[i, 0, 2 + 2 * c: 4 + 2 * c, 4:24] += 180
    return ClsData("tiny", images.to(torch.uint8), labels, [str(c) for c in range(10)])


def _cfg(strategy, *opts):
    cfg = get_eccentric_cfg(QUICK.format(strategy), ["SOLVER.IMS_PER_BATCH", 48, "SOLVER.MAX_ITER", 8, *opts])
    torch.manual_seed(0)
    return cfg, SplitTimmClassifier(cfg)


def _params(module):
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def test_random_crops_shift_each_image_within_the_padding():
    images = torch.zeros(64, 1, 9, 9, dtype=torch.uint8)
    images[:, 0, 4, 4] = 255  # one bright pixel in the centre
    out = random_crops(images, 2, torch.Generator().manual_seed(0))
    assert out.shape == images.shape and out.dtype == torch.uint8
    ys, xs = (out[:, 0] == 255).nonzero()[:, 1:].T
    assert len(ys) == 64  # the pixel stays in every crop (|shift| <= 2 < 4)
    assert ys.min() == 2 and ys.max() == 6 and xs.min() == 2 and xs.max() == 6  # every shift in [-2, 2] is drawn
    assert len(set(zip(ys.tolist(), xs.tolist()))) > 15


def test_random_erasing_fills_one_rectangle_of_the_drawn_size_in_about_the_drawn_fraction_of_images():
    images = torch.zeros(2000, 1, 28, 28, dtype=torch.uint8)
    out = random_erasing(images, 0.5, torch.Generator().manual_seed(0))
    assert out.shape == images.shape and out.dtype == torch.uint8 and images.eq(0).all()  # the input is kept
    changed = out[:, 0] != 0
    erased = changed.flatten(1).any(1)
    assert 0.45 < erased.float().mean() < 0.55
    for m in changed[erased][:200]:  # each erased region fits in one rectangle of 2-40% of the image
        ys, xs = m.nonzero().T
        box = (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)
        assert box <= 0.4 * 28 * 28 + 2 * 28 and box >= 0.02 * 28 * 28 - 2 * 28
        assert m.sum() > 0.9 * box  # filled (a random pixel is 0 one time in 256)
    assert out[:, 0][changed].float().mean().sub(127.5).abs() < 5  # uniform values


def test_an_interrupted_run_resumes_to_the_same_weights_and_curve(tmp_path):
    opts = ["SOLVER.MAX_ITER", 6, "SOLVER.CHECKPOINT_PERIOD", 3, "TEST.EVAL_PERIOD", 3, "DATA_CLS.CROP_PADDING", 1,
            "DATA_CLS.ERASE_PROB", 0.5]
    holdout = _tiny_set(20, seed=1)
    cfg, whole = _cfg("cloud_teacher", *opts, "OUTPUT_DIR", str(tmp_path / "whole"))
    train(cfg, whole, _tiny_set(), holdout=holdout)
    curve = json.load(open(tmp_path / "whole" / "curve.json"))
    assert [p[0] for p in curve["points"]] == [3, 6] and set(curve["plateau"]) >= {"flat", "gain", "rule"}

    cfg, model = _cfg("cloud_teacher", *opts, "OUTPUT_DIR", str(tmp_path / "cut"))
    losses, calls = ClsLosses(cfg), []

    def interrupted(*args):  # stops the run in its fifth iteration, after the checkpoint of the third
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return losses(*args)

    with pytest.raises(KeyboardInterrupt):
        train(cfg, model, _tiny_set(), interrupted, holdout=holdout)
    cfg, resumed = _cfg("cloud_teacher", *opts, "OUTPUT_DIR", str(tmp_path / "cut"))
    assert len(train(cfg, resumed, _tiny_set(), holdout=holdout, resume=True)) == 3  # iterations 4-6 only
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-6), name
    assert json.load(open(tmp_path / "cut" / "curve.json"))["points"] == curve["points"]


def test_task_training_lowers_the_loss():
    cfg, model = _cfg("cloud_teacher", "SOLVER.BASE_LR", 0.01)
    history = train(cfg, model, _tiny_set())
    assert list(history[0]) == ["loss_cls"]
    assert history[-1]["loss_cls"] < 0.8 * history[0]["loss_cls"]


def test_kd_trains_the_edge_head_towards_the_teacher():
    cfg, model = _cfg("edge_kd", "MODEL.ECCENTRIC.DISTILL.TASK_WEIGHT", 0.0)  # KD alone: it must fall
    assert model.codec is None and model.cloud_half is None  # an edge-only model
    losses = ClsLosses(cfg)
    teacher = _params(losses.teacher)
    history = train(cfg, model, _tiny_set(), losses)
    assert set(history[0]) == {"edge_loss_cls", "edge_loss_kd"}
    assert history[-1]["edge_loss_kd"] < history[0]["edge_loss_kd"]
    assert all(torch.equal(v, dict(losses.teacher.named_parameters())[k]) for k, v in teacher.items())


def test_adaptation_trains_codec_and_cloud_only():
    cfg, model = _cfg("adaptive_ecc", "MODEL.ECCENTRIC.CODEC.RATE_WEIGHT", 1.0)
    edge, cloud = _params(model.edge_half), _params(model.cloud_half)
    history = train(cfg, model, _tiny_set())
    assert set(history[0]) == {"loss_cls", "loss_rate", "loss_kd", "loss_feature_match"}
    assert all(torch.equal(v, dict(model.edge_half.named_parameters())[k]) for k, v in edge.items())
    assert not all(torch.equal(v, dict(model.cloud_half.named_parameters())[k]) for k, v in cloud.items())
    for key in ("loss_rate", "loss_feature_match"):
        assert history[-1][key] < history[0][key], key


def test_joint_adaptation_trains_the_edge_with_its_own_losses():
    """MODEL.ECCENTRIC.DISTILL.EDGE_LOSS_WEIGHT: the edge trunk and head train with the codec and the cloud tail, the edge head's
    cross-entropy and KD beside the adaptation losses (weighted); with 'always' (no edge head) it is refused."""
    opts = ["MODEL.ECCENTRIC.DISTILL.FREEZE", "[]", "MODEL.ECCENTRIC.OFFLOAD.POLICY", "dynamic"]
    cfg, model = _cfg("adaptive_ecc", *opts, "MODEL.ECCENTRIC.DISTILL.EDGE_LOSS_WEIGHT", 0.5)
    edge = _params(model.edge_half)
    losses = ClsLosses(cfg)
    history = train(cfg, model, _tiny_set(), losses)
    assert set(history[0]) == {"loss_cls", "loss_rate", "loss_kd", "loss_feature_match", "edge_loss_cls", "edge_loss_kd"}
    now = dict(model.edge_half.named_parameters())
    trunk = [k for k in edge if not k.startswith("model.classifier")]
    assert trunk and not all(torch.equal(edge[k], now[k]) for k in trunk)
    with torch.no_grad():  # the weight scales both edge losses
        model.eval()
        images, labels = _tiny_set(16).images.float(), _tiny_set(16).labels
        torch.manual_seed(0)
        half = losses(model, images, labels)
        losses.w_edge = 1.0
        torch.manual_seed(0)
        full = losses(model, images, labels)
    for k in ("edge_loss_cls", "edge_loss_kd"):
        assert float(full[k]) == pytest.approx(2 * float(half[k]), rel=1e-5)
    assert float(full["loss_cls"]) == pytest.approx(float(half["loss_cls"]), rel=1e-5)
    with pytest.raises(ValueError, match="EDGE_LOSS_WEIGHT trains the edge's own head.*OFFLOAD.POLICY 'dynamic'"):
        ClsLosses(_cfg("adaptive_ecc", "MODEL.ECCENTRIC.DISTILL.EDGE_LOSS_WEIGHT", 1.0)[0])


def test_variable_rate_codec_trains_and_codes_at_each_rate():
    """The detection side's codec v2 as is: one classifier checkpoint, payloads at two rates, both decoded."""
    cfg, model = _cfg("adaptive_ecc", "MODEL.ECCENTRIC.CODEC.NAME", "mean_scale",
                      "MODEL.ECCENTRIC.CODEC.RATE_WEIGHTS", "[0.5, 2.0]", "SOLVER.MAX_ITER", 4)
    history = train(cfg, model, _tiny_set())
    assert {"loss_cls", "loss_rate"} <= set(history[-1])
    model.eval()
    with torch.no_grad():  # latents of many values after 4 iterations, so that the rate shows in the bytes
        model.codec.analysis[-1].weight.mul_(30)
    images = list(_tiny_set(4).images)
    sizes = {}
    for rate in (0.0, 1.0):
        model.codec.set_rate(rate)
        sent = [p.to_bytes() for p in model.edge(images)]
        assert model.cloud(sent).shape[0] == 4
        sizes[rate] = sum(map(len, sent))
    assert sizes[0.0] > sizes[1.0]


def test_dynamic_gate_and_evaluation(tmp_path):
    cfg, model = _cfg("dynamic_ecc")
    data = _tiny_set(40)
    fit = fit_gate(model, data, recall=0.75)  # an untrained edge: it gets most images wrong
    assert fit["recall"] >= 0.75 and model.threshold == fit["threshold"]
    metrics = evaluate(cfg, model, data, str(tmp_path))
    with open(tmp_path / "eccentric_metrics.json") as f:
        written = json.load(f)
    assert written["metrics"] == metrics and len(written["images"]) == len(data)
    for key in ("top1", "bytes_mean", "bytes_median", "bytes_p95", "bpp", "offload_rate", "edge_ms", "cloud_ms",
                "edge_gflops", "cloud_gflops"):
        assert key in metrics, key
    sent = [r for r in written["images"] if r["offloaded"]]
    assert [r["bytes"] > 0 for r in written["images"]] == [r["offloaded"] for r in written["images"]]
    assert metrics["offload_rate"] == pytest.approx(len(sent) / len(data))
    assert all((r["score"] >= fit["threshold"]) == r["offloaded"] for r in written["images"])
    g, rate = classifier_gflops(model), metrics["offload_rate"]
    assert 0 < rate < 1 and g["cloud_only"] > 0 and g["edge"] > g["encoder"] > 0 and g["cloud"] > 0
    assert metrics["edge_gflops"] == pytest.approx(g["edge"] - (1 - rate) * g["encoder"])
    assert metrics["cloud_gflops"] == pytest.approx(rate * g["cloud"])


def test_missing_datasets_say_what_to_install(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_cls_dataset("fashion_mnist_test", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py"):
        load_cls_dataset("cifar10_test", str(tmp_path))


@pytest.mark.fashion_mnist
def test_main_trains_and_evaluates_on_fashion_mnist(tmp_path):
    cfg = get_eccentric_cfg(QUICK.format("cloud_teacher"), ["OUTPUT_DIR", str(tmp_path)])
    metrics = main(cfg)
    assert metrics["images"] == 32 and metrics["offload_rate"] == 1.0 and metrics["edge_gflops"] == 0.0
    assert metrics["bytes_mean"] > 39 and os.path.isfile(tmp_path / "model_final.pth")


@pytest.mark.parametrize("config", sorted(f for f in os.listdir(CONFIGS) if not f.startswith("Base")))
def test_shipped_configs_build(config):
    cfg = get_eccentric_cfg(f"Classification/{config}")
    model = SplitTimmClassifier(cfg)
    assert (model.codec is None) == (cfg.MODEL.ECCENTRIC.OFFLOAD.POLICY == "never"
                                     or cfg.MODEL.ECCENTRIC.OFFLOAD_MODE == "image")


def test_a_config_unsets_a_kwarg_of_its_base_for_another_family():
    """The RegNet cloud's configs set Base-FashionMNIST.yaml's ResNet ``channels`` to null, which timm's create_model
    drops (RegNet has no such argument), and the cloud half is a RegNet from its stem on."""
    cfg = get_eccentric_cfg("Classification/fashion_mnist_regnet_adaptive_ecc_joint_stem.yaml")
    assert cfg.MODEL.CLS.TIMM_KWARGS.channels is None
    model = SplitTimmClassifier(cfg)
    assert type(model.cloud_spec[0]) is str and model.cloud_spec[0] == "regnetx_002"
    assert any(type(m).__name__ == "RegNet" for m in model.modules())
    with pytest.raises(TypeError, match="channels"):  # what the base's value would do
        timm.create_model("regnetx_002", channels=[32, 64, 128, 256])


def test_codec_learns_at_its_lr_factor():
    from eccentric_det.solver import param_groups

    cfg, model = _cfg("adaptive_ecc", "MODEL.ECCENTRIC.CODEC.LR_FACTOR", 0.25, "SOLVER.BASE_LR", 0.004)
    lr_of = {id(p): g["lr"] for g in param_groups(cfg, model) for p in g["params"]}
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert set(lr_of) == {id(p) for p in params.values()}
    assert {n.split(".")[0] for n in params} >= {"codec"}
    for name, p in params.items():
        assert lr_of[id(p)] == pytest.approx(0.001 if name.startswith("codec.") else 0.004), name


@pytest.mark.parametrize("codec,quality", [("png", 9), ("jpeg", 50), ("webp", 50), ("webp", 101), ("avif", 50)])
def test_grayscale_images_round_trip_in_every_codec(codec, quality):
    """Fashion-MNIST's 1-channel images through every image codec come back 1-channel at their size (WebP has no
    grayscale mode: read back as grayscale); the lossless ones exactly."""
    from eccentric_det.split.image_codecs import decode_image, encode_image

    gray = torch.randint(0, 256, (28, 28, 1), generator=torch.Generator().manual_seed(0)).to(torch.uint8).numpy()
    back = decode_image(encode_image(gray, codec, quality), (28, 28), codec, channels=1)
    assert back.shape == (28, 28, 1) and back.dtype == gray.dtype
    assert (back == gray).all() == (codec == "png" or quality == 101)


def test_an_edge_only_model_answers_on_the_edge_without_a_codec():
    cfg, model = _cfg("adaptive_ecc", "MODEL.ECCENTRIC.OFFLOAD.POLICY", "never")
    model.eval()
    assert model.codec is None
    decisions = model.edge_step([torch.randint(0, 256, (1, 28, 28), dtype=torch.uint8).float() for _ in range(2)])
    assert [d.offload for d in decisions] == [False, False] and all(d.payload is None for d in decisions)
    assert all(d.answer.shape == (10,) for d in decisions)
