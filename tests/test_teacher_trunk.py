"""The shipped teacher-trunk split (``configs/FashionDet/adaptive_ecc_vr_teacher_trunk.yaml``): its checkpoint loads
whole into its config, its edge is the teacher's own stem+res2 (32 channels, no detector), and one checkpoint codes at
every rate, fewer bytes at higher rates, as the one-checkpoint variable-rate codec does."""
import torch

import eccentric_det.modeling  # noqa: F401  (registers the backbones, ROI heads, EccentricRCNN)
from eccentric_det.checkpoint import load_model
from eccentric_det.tasks import get_eccentric_cfg

from .helpers import image_input

CONFIG = "configs/FashionDet/adaptive_ecc_vr_teacher_trunk.yaml"


def test_teacher_trunk_checkpoint_loads_whole_and_codes_at_every_rate():
    cfg = get_eccentric_cfg(CONFIG, ["MODEL.DEVICE", "cpu"])
    model = load_model(cfg)  # complete=True: every parameter and buffer of the model from the checkpoint
    teacher = torch.load("checkpoints/fashion_det/cloud_teacher.pth", map_location="cpu", weights_only=False)["model"]
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
