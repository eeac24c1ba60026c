"""Every shipped config loads and builds; each half holds none of the other's parameters."""
import glob
import logging
import os

import pytest
import torch
from detectron2.modeling import build_model

import eccentric_det.data  # noqa: F401  (registers the datasets)
import eccentric_det.modeling  # noqa: F401  (registers the backbones, ROI heads, EccentricRCNN)
from eccentric_det.checkpoint import half_state_dict, save_halves
from eccentric_det.config import CONFIG_DIR
from eccentric_det.serving.config import add_serving_config
from eccentric_det.tasks import get_eccentric_cfg

from .helpers import image_input

CONFIGS = sorted(os.path.relpath(p, CONFIG_DIR) for p in glob.glob(os.path.join(CONFIG_DIR, "**", "*.yaml"),
                                                                     recursive=True))
DETECTION = [c for c in CONFIGS if not c.startswith("Classification") and "cls_" not in c]  # classification: tests/test_classification.py
QUICK = "quick_schedules/fashion_det_dynamic_ecc_instant_test.yaml"
INFER = ["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "", "MODEL.ECCENTRIC.EDGE.WEIGHTS", "",
         "MODEL.ECCENTRIC.DISTILL.MODE", "task", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0]


@pytest.mark.parametrize("name", DETECTION)
def test_config_loads(name):
    get_eccentric_cfg(name)


@pytest.mark.parametrize("name", DETECTION)
def test_detection_config_builds(name):
    cfg = get_eccentric_cfg(name, INFER)
    model = build_model(cfg)
    assert type(model).__name__ == cfg.MODEL.META_ARCHITECTURE
    assert model.roi_heads.num_classes == cfg.MODEL.ROI_HEADS.NUM_CLASSES
    if getattr(model, "offload_mode", None) == "features":
        assert model.split_backbone.split_at == cfg.MODEL.ECCENTRIC.SPLIT_AT


def test_wrong_key_names_the_key():
    with pytest.raises(KeyError, match="MODEL.ECCENTRIC.NOPE"):
        get_eccentric_cfg(QUICK, ["MODEL.ECCENTRIC.NOPE", 1])
    with pytest.raises(FileNotFoundError, match="not found"):
        get_eccentric_cfg("no/such.yaml")


def build_half(half, weights=""):
    cfg = get_eccentric_cfg(QUICK, INFER + ["MODEL.ECCENTRIC.HALF", half, "MODEL.WEIGHTS", weights,
                                            "MODEL.ECCENTRIC.OFFLOAD.THRESHOLD", 0.0])
    from eccentric_det.checkpoint import load_model

    return load_model(cfg)


def test_halves_are_disjoint_and_complete(tmp_path):
    torch.manual_seed(0)
    full = build_half("both")
    edge_sd, cloud_sd = half_state_dict(full, "edge"), half_state_dict(full, "cloud")
    shared = set(edge_sd) & set(cloud_sd)
    assert shared and all(".codec.entropy_bottleneck." in k for k in shared)
    assert not any(k.startswith(("roi_heads.", "proposal_generator.", "backbone.fpn")) for k in edge_sd)
    assert not any(k.startswith(("edge_detector.", "offload_gate.", "backbone.bottom_up.stem.")) for k in cloud_sd)
    assert not any(".codec.g_s." in k for k in edge_sd) and not any(".codec.g_a." in k for k in cloud_sd)
    assert set(edge_sd) | set(cloud_sd) == set(full.state_dict())
    paths = save_halves(full, tmp_path)
    edge, cloud = build_half("edge", paths["edge"]), build_half("cloud", paths["cloud"])
    # a device builds only its half: no module of the other side exists at all
    assert set(edge.state_dict()) == set(edge_sd) and set(cloud.state_dict()) == set(cloud_sd)
    assert edge.roi_heads is None and cloud.edge_detector is None
    inp = image_input(128, 128, seed=5)
    with torch.no_grad():
        expected = full([inp])[0]["instances"]
        decision = edge.edge_step([inp])[0]
        assert decision.offload and decision.answer is not None
        got = cloud.cloud([decision.payload.to_bytes()])[0]["instances"]
    assert torch.equal(expected.pred_boxes.tensor, got.pred_boxes.tensor)
    assert torch.equal(expected.scores, got.scores)


def test_codec_learns_at_its_lr_factor():
    from eccentric_det.solver import build_optimizer

    cfg = get_eccentric_cfg(QUICK, INFER + ["MODEL.ECCENTRIC.CODEC.LR_FACTOR", 0.25, "SOLVER.BASE_LR", 0.004,
                                            "SOLVER.BIAS_LR_FACTOR", 1.0])
    model = build_model(cfg)
    lr_of = {id(p): g["lr"] for g in build_optimizer(cfg, model).param_groups for p in g["params"]}
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}  # not the coder's range
    assert set(lr_of) == {id(p) for p in params.values()}
    assert any(".codec." in n for n in params)
    for name, p in params.items():
        assert lr_of[id(p)] == pytest.approx(0.001 if ".codec." in name else 0.004), name


def test_edge_weights_that_do_not_fit_are_refused(tmp_path):
    """MODEL.ECCENTRIC.EDGE.WEIGHTS of another edge architecture (or of no edge at all) is an error that
    names the tensors, never a silent partial load from a random edge."""
    from eccentric_det.checkpoint import load_edge_weights

    model = build_model(get_eccentric_cfg(QUICK, INFER))
    good = tmp_path / "edge.pth"
    torch.save({"model": half_state_dict(model, "edge")}, good)
    assert len(load_edge_weights(model, str(good))) == len(half_state_dict(model, "edge"))
    wider = build_model(get_eccentric_cfg(QUICK, INFER + ["MODEL.ECCENTRIC.EDGE.RESNETS.RES2_OUT_CHANNELS", 32]))
    with pytest.raises(ValueError, match=r"does not fit this model's edge .*res2.* in the file"):
        load_edge_weights(wider, str(good))
    foreign = tmp_path / "foreign.pth"
    torch.save({"model": {"stem.conv1.weight": torch.zeros(1)}}, foreign)
    with pytest.raises(ValueError, match="holds none of this model's edge tensors"):
        load_edge_weights(model, str(foreign))


def _quick(name, *opts):
    return get_eccentric_cfg(f"quick_schedules/fashion_det_{name}_instant_test.yaml", INFER + list(opts))


def test_checkpoint_of_another_shape_or_of_nothing_is_refused(tmp_path):
    """MODEL.WEIGHTS is checked as EDGE.WEIGHTS is: any tensor of another shape is an error naming the first
    such tensors with both shapes and the fix; a checkpoint that fills none of the model's tensors too."""
    from eccentric_det.checkpoint import load_model

    teacher = tmp_path / "teacher.pth"
    torch.save({"model": build_model(_quick("cloud_teacher")).state_dict()}, teacher)
    with pytest.raises(ValueError, match=r"teacher.pth \(MODEL.WEIGHTS\) does not match the config: .*"
                                         r"backbone.bottom_up.stem.conv1.weight: \(32, 3, 7, 7\) in the file, "
                                         r"\(16, 3, 7, 7\) in the model.*Use the config the checkpoint was trained"):
        load_model(_quick("dynamic_ecc", "MODEL.WEIGHTS", str(teacher)))
    foreign = tmp_path / "foreign.pth"
    torch.save({"model": {"stem.conv1.weight": torch.zeros(1)}}, foreign)
    with pytest.raises(ValueError, match=r"foreign.pth \(MODEL.WEIGHTS\) holds none of this model's tensors"):
        load_model(_quick("dynamic_ecc", "MODEL.WEIGHTS", str(foreign)))


def test_teacher_and_edge_checkpoints_initialise_a_wider_cloud(tmp_path, caplog):
    """Adaptive ECC's init: the cloud teacher (a wider stem and res2 than the edge) with the edge's own checkpoint.
    The edge tensors come from EDGE.WEIGHTS only, so nothing is refused or skipped; what neither holds (the
    codec's decoder, the ROI adapters) is logged by module."""
    from eccentric_det.checkpoint import load_weights

    teacher, edge = tmp_path / "teacher.pth", tmp_path / "edge.pth"
    t, e = (build_model(_quick(n)).state_dict() for n in ("cloud_teacher", "edge_kd"))
    torch.save({"model": t}, teacher)
    torch.save({"model": e}, edge)
    cfg = _quick("adaptive_ecc", "MODEL.WEIGHTS", str(teacher), "MODEL.ECCENTRIC.EDGE.WEIGHTS", str(edge))
    model = build_model(cfg)
    logging.getLogger("eccentric_det.checkpoint").addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.INFO):
            load_weights(model, cfg)
    finally:
        logging.getLogger("eccentric_det.checkpoint").removeHandler(caplog.handler)
    got = model.state_dict()
    stem, head = "backbone.bottom_up.stem.conv1.weight", "roi_heads.box_predictor.cls_score.weight"
    assert t[stem].shape != got[stem].shape and torch.equal(got[stem], e[stem])
    assert torch.equal(got[head], t[head]) and torch.equal(got["backbone.bottom_up.res3.0.conv1.weight"],
                                                             t["backbone.bottom_up.res3.0.conv1.weight"])
    assert "Skip loading" not in caplog.text and "incompatible" not in caplog.text
    assert "keep their initial values" in caplog.text and "backbone.bottom_up.codec" in caplog.text
    assert "roi_heads.adapters" in caplog.text


def test_whole_model_checkpoint_loads_into_either_half(tmp_path):
    from eccentric_det.checkpoint import load_model

    torch.manual_seed(0)
    whole = build_half("both")
    path = tmp_path / "whole.pth"
    torch.save({"model": whole.state_dict()}, path)
    for half in ("edge", "cloud"):
        model = build_half(half, str(path))
        own = model.state_dict()
        assert own and all(torch.equal(v, whole.state_dict()[k]) for k, v in own.items()), half
    # the unsplit Independent ECC model needs its edge detector's checkpoint too: a teacher alone is refused
    teacher = tmp_path / "teacher.pth"
    torch.save({"model": build_model(_quick("cloud_teacher")).state_dict()}, teacher)
    with pytest.raises(ValueError, match=r"does not match the config: \d+ of the model's \d+ tensors are not in it "
                                         r"\(edge_detector"):
        load_model(_quick("independent_ecc", "MODEL.WEIGHTS", str(teacher)))


def test_one_config_factory(tmp_path):
    """Classification is read from the file, serving keys are asked for, and an unknown key names itself, its
    source (file or command line) and where keys are documented."""
    cls = get_eccentric_cfg("quick_schedules/cls_cloud_teacher_instant_test.yaml")
    assert cls.MODEL.CLS.NUM_CLASSES == 10 and "CLS" not in get_eccentric_cfg(QUICK).MODEL
    assert get_eccentric_cfg(QUICK, extensions=(add_serving_config,)).SERVING.PORT == 8000
    assert get_eccentric_cfg(QUICK, ["--", "MODEL.ECCENTRIC.JPEG_QUALITY", 70]).MODEL.ECCENTRIC.JPEG_QUALITY == 70
    with pytest.raises(KeyError, match=r"MODEL.ECCENTRIC.NOPE \(in the command-line overrides\).*documented in "
                                       r"eccentric_det/config.py"):
        get_eccentric_cfg(QUICK, ["MODEL.ECCENTRIC.NOPE", 1])
    bad = tmp_path / "bad.yaml"
    bad.write_text(f'_BASE_: "{os.path.join(CONFIG_DIR, QUICK)}"\nMODEL:\n  ECCENTRIC:\n    NOPE: 1\n')
    with pytest.raises(KeyError, match=r"MODEL.ECCENTRIC.NOPE \(in .*bad.yaml\).*documented in"):
        get_eccentric_cfg(str(bad))


def test_an_integer_for_a_float_key_is_taken_as_the_float():
    """yacs refuses ``CODEC.RATE 4`` (int for a float key); the config factory takes it as 4.0, as a user means."""
    cfg = get_eccentric_cfg("FashionDet/adaptive_ecc_vr.yaml", ["MODEL.ECCENTRIC.CODEC.RATE", "4",
                                                               "MODEL.ECCENTRIC.OFFLOAD.THRESHOLD", 1,
                                                               "SOLVER.MAX_ITER", "5"])
    assert cfg.MODEL.ECCENTRIC.CODEC.RATE == 4.0 and isinstance(cfg.MODEL.ECCENTRIC.CODEC.RATE, float)
    assert cfg.MODEL.ECCENTRIC.OFFLOAD.THRESHOLD == 1.0 and cfg.SOLVER.MAX_ITER == 5
