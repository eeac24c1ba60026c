"""The split model reduces exactly to stock Detectron2 with a passthrough codec, at every split point."""
import pytest
import torch
from detectron2.modeling import build_model

import eccentric_det.data  # noqa: F401  (registers the datasets)
import eccentric_det.modeling  # noqa: F401  (registers the backbones, ROI heads, EccentricRCNN)
from eccentric_det.codec import Payload

from .helpers import image_input, split_cfg, stock_cfg

SPLITS = ["stem", "res2", "res3", "res4"]


@pytest.fixture(scope="module", params=SPLITS)
def pair(request):
    split = request.param
    torch.manual_seed(0)
    stock = build_model(stock_cfg(split)).eval()
    ecc = build_model(split_cfg(split)).eval()
    incompatible = ecc.load_state_dict(stock.state_dict(), strict=False)
    return split, stock, ecc, incompatible


def test_stock_parameter_names_load_unchanged(pair):
    _, stock, ecc, incompatible = pair
    assert incompatible.unexpected_keys == []
    # Only the ROI adapters are new (zero-initialised); a passthrough codec has no parameters.
    assert all(k.startswith("roi_heads.adapters.") for k in incompatible.missing_keys)
    assert set(stock.state_dict()) <= set(ecc.state_dict())


def test_passthrough_split_equals_stock(pair):
    split, stock, ecc, _ = pair
    inputs = [image_input(120, 160, seed=1), image_input(96, 128, seed=2)]
    with torch.no_grad():
        for inp in inputs:
            images = stock.preprocess_image([inp])
            f_stock, f_ecc = stock.backbone(images.tensor), ecc.backbone(images.tensor)
            assert f_stock.keys() == f_ecc.keys()
            for k in f_stock:
                assert torch.equal(f_stock[k], f_ecc[k]), (split, k)
            a = stock([inp])[0]["instances"]
            out = ecc([inp])[0]
            b = out["instances"]
            assert len(a) > 0
            assert torch.equal(a.pred_boxes.tensor, b.pred_boxes.tensor)
            assert torch.equal(a.scores, b.scores)
            assert torch.equal(a.pred_classes, b.pred_classes)
            # the eval path really went through bytes: the payload holds the float32 split feature
            payload = ecc.edge([inp])[0]
            c = ecc.split_backbone.edge_shapes[split].channels
            fh, fw = ecc.payload_spec().feature_shape(payload.image_size)
            assert out["eccentric"]["bytes"] == len(payload.to_bytes()) <= len(payload.strings[0]) + 16
            assert len(payload.strings[0]) == c * 4 * fh * fw


def test_edge_cloud_apart_equal_in_process(pair):
    _, _, ecc, _ = pair
    inp = image_input(100, 140, seed=3)
    with torch.no_grad():
        together = ecc([inp])[0]["instances"]
        data = ecc.edge([inp])[0].to_bytes()
        apart = ecc.cloud([Payload.from_bytes(data)])[0]["instances"]
    assert torch.equal(together.pred_boxes.tensor, apart.pred_boxes.tensor)
    assert together.image_size == apart.image_size == (100, 140)


def test_pre_split_levels_are_refused():
    cfg = split_cfg("res3")
    cfg.MODEL.FPN.IN_FEATURES = ["res2", "res3", "res4", "res5"]
    with pytest.raises(ValueError, match="before the split"):
        build_model(cfg)


def test_slim_edge_feeds_wider_cloud_tail():
    """An R-18 (narrow) edge up to res2 feeding an R-50 tail: the decoder adapts 32 -> 256 channels."""
    cfg = split_cfg("res2", codec="factorized")
    cfg.merge_from_list(["MODEL.ECCENTRIC.EDGE.RESNETS.DEPTH", 18, "MODEL.ECCENTRIC.EDGE.RESNETS.RES2_OUT_CHANNELS", 32,
                         "MODEL.ECCENTRIC.EDGE.RESNETS.STEM_OUT_CHANNELS", 32,
                         "MODEL.ECCENTRIC.EDGE.RESNETS.STRIDE_IN_1X1", False])
    model = build_model(cfg).eval()
    bu = model.split_backbone
    assert bu.res2[0].conv1.weight.shape[0] == 32 and bu.res3[0].conv1.in_channels == 256
    inp = image_input(64, 96)
    with torch.no_grad():
        out = model([inp])[0]
        payload = model.edge([inp])[0]
    assert out["eccentric"]["bytes"] == len(payload.to_bytes())
    feature_hw = model.payload_spec().feature_shape(payload.image_size)
    assert feature_hw == (16, 24) and model.codec.latent_shape(feature_hw) == (8, 12)


def test_cloud_only_flops_are_the_stock_models(pair):
    """A split model's ``cloud_only`` GFLOPs are the stock cloud model's own count: its pre-split layers and tail,
    without the ROI adapters only knowledge adaptation adds (those stay in the split's ``cloud``)."""
    from eccentric_det.evaluation.flops import _adapter_gflops, edge_cloud_gflops

    split, stock, ecc, _ = pair
    inp = image_input(128, 128, seed=3)
    g = edge_cloud_gflops(ecc, inp, split_cfg(split).MODEL.RESNETS)
    assert g["cloud_only"] == pytest.approx(edge_cloud_gflops(stock, inp)["cloud"], rel=1e-6)
    with torch.no_grad():
        features = ecc.backbone(ecc.preprocess_image([inp]).tensor)
    assert _adapter_gflops(ecc, features) > 0  # what the split's own cloud does beyond the stock model
