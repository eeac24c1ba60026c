"""The shipped teacher-trunk splits (``configs/FashionDet/adaptive_ecc_vr_teacher_trunk*.yaml``): a checkpoint loads
whole into its config, its edge is the teacher's own stem+res2 (32 channels, no detector), and one checkpoint codes at
every rate, fewer bytes at higher rates, as the one-checkpoint variable-rate codec does."""
import pytest
import torch

import eccentric_det.modeling  # noqa: F401  (registers the backbones, ROI heads, EccentricRCNN)
from eccentric_det.checkpoint import load_model
from eccentric_det.tasks import get_eccentric_cfg

from .helpers import image_input

CONFIG = "configs/FashionDet/adaptive_ecc_vr_teacher_trunk.yaml"
K = "checkpoints/fashion_det/"


@pytest.mark.parametrize("config,teacher_path", [(CONFIG, K + "cloud_teacher.pth"),
                                                 (CONFIG.replace(".yaml", "_8000.yaml"), K + "cloud_teacher_8000.pth")])
def test_teacher_trunk_checkpoint_loads_whole_and_codes_at_every_rate(config, teacher_path):
    """Both shipped teacher-trunk splits: on the 4,000- and on the 8,000-iteration teacher (its DISTILL.TEACHER_WEIGHTS)."""
    cfg = get_eccentric_cfg(config, ["MODEL.DEVICE", "cpu"])
    assert cfg.MODEL.ECCENTRIC.DISTILL.TEACHER_WEIGHTS.endswith(teacher_path)
    model = load_model(cfg)  # complete=True: every parameter and buffer of the model from the checkpoint
    teacher = torch.load(teacher_path, map_location="cpu", weights_only=False)["model"]
    names = dict(model.named_parameters())
    key = "backbone.bottom_up.stem.conv1.weight"
    assert names[key].shape[0] == teacher[key].shape[0] == 32
    assert not any(k.startswith("edge_detector") for k in names)  # Adaptive ECC only
    # trained with the cloud: the trunk is no longer the teacher's
    assert not torch.equal(names[key].detach().half(), teacher[key].half())
    inp = image_input(256, 256, seed=3)
    sent = []
    for rate in (0.0, 2.0, 4.0):
        model.codec.set_rate(rate)  # what MODEL.ECCENTRIC.CODEC.RATE sets
        with torch.no_grad():
            out = model([dict(inp)])[0]
        assert out["eccentric"]["offloaded"]
        sent.append(out["eccentric"]["bytes"])
    assert sent[0] > sent[1] > sent[2] > 0, sent


def test_the_recipe_s_teacher_trunk_mode_builds_the_shipped_split_and_fills_its_edge_from_the_teacher():
    """tools/train_eccentric.py --teacher-trunk's overrides on the default Adaptive ECC config build this split: the
    shipped checkpoint loads whole into it. Its stage 3 passes only the teacher as MODEL.WEIGHTS (no edge checkpoint):
    the edge trunk then holds the teacher's own stem and res2."""
    from eccentric_det.checkpoint import load_weights
    from eccentric_det.recipe.plan import TEACHER_TRUNK_OPTS
    from detectron2.modeling import build_model

    base = "configs/FashionDet/adaptive_ecc_vr.yaml"
    opts = TEACHER_TRUNK_OPTS + ["MODEL.ECCENTRIC.DISTILL.FREEZE", "[]", "MODEL.DEVICE", "cpu",
                                 "MODEL.ECCENTRIC.EDGE.WEIGHTS", ""]
    shipped = get_eccentric_cfg(CONFIG, ["MODEL.DEVICE", "cpu"]).MODEL.WEIGHTS
    model = load_model(get_eccentric_cfg(base, opts + ["MODEL.WEIGHTS", shipped]))  # complete: every tensor
    reference = load_model(get_eccentric_cfg(CONFIG, ["MODEL.DEVICE", "cpu"]))
    assert {k: v.shape for k, v in model.state_dict().items()} == \
        {k: v.shape for k, v in reference.state_dict().items()}
    teacher_path = "checkpoints/fashion_det/cloud_teacher.pth"
    cfg = get_eccentric_cfg(base, opts + ["MODEL.WEIGHTS", teacher_path])
    fresh = build_model(cfg)
    load_weights(fresh, cfg)
    teacher = torch.load(teacher_path, map_location="cpu", weights_only=False)["model"]
    trunk = {k: v for k, v in fresh.state_dict().items() if k.startswith(("backbone.bottom_up.stem.",
                                                                           "backbone.bottom_up.res2."))}
    assert trunk and all(torch.equal(v, teacher[k].to(v.dtype)) for k, v in trunk.items())


@pytest.mark.parametrize("name,teacher", [("cloud_plus_4500", "cloud_teacher"), ("cloud_teacher_8000", "cloud_teacher"),
                                          ("cloud_8000_plus_4500", "cloud_teacher_8000")])
def test_the_longer_trained_cloud_checkpoints_load_whole_and_are_not_the_teacher(name, teacher):
    """``cloud_plus_4500.pth`` and ``cloud_8000_plus_4500.pth`` (the teacher-trunk splits' cloud-only references: their
    teacher + 4,500 iterations) and ``cloud_teacher_8000.pth`` (the cloud trained from scratch twice as long) load
    whole into the teacher's config and are not the weights they started from."""
    cfg = get_eccentric_cfg("configs/FashionDet/cloud_teacher.yaml",
                            ["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", f"{K}{name}.pth"])
    cloud = load_model(cfg).state_dict()
    teacher = torch.load(f"{K}{teacher}.pth", map_location="cpu", weights_only=False)["model"]
    assert set(teacher) <= set(cloud)
    key = "roi_heads.box_predictor.cls_score.weight"
    assert not torch.equal(cloud[key].half(), teacher[key].half())
