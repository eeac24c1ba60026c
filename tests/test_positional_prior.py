"""The positional symbol prior (CODEC.POSITIONAL_PRIOR): the same decoded latent in fewer bytes where the latent's
statistics differ by position, counted on training latents, saved alone and loaded over a model's weights."""
import json
import logging
import random

import pytest
import torch

from eccentric_det.classification import SplitTimmClassifier, save_weights
from eccentric_det.classification.checkpoint import load_state
from eccentric_det.cli.fit_symbol_prior import PREFIX, main as fit_cli
from eccentric_det.codec import Payload, PayloadError
from eccentric_det.codec.feature_codec import Latents, build_codec
from eccentric_det.codec.guarded_ans import EntropyDecodeError
from eccentric_det.codec.latent_codecs import SymbolCounts, fit_symbol_prior
from eccentric_det.tasks import get_eccentric_cfg
from eccentric_det.training.classification import load_initial_weights

SIZE = 32
RESNET = {"channels": (8, 16, 32, 64)}
QUICK = "quick_schedules/cls_adaptive_ecc_instant_test.yaml"


def _model(positional):
    torch.manual_seed(0)
    return SplitTimmClassifier(cloud_name="resnet18", cloud_kwargs=RESNET, split_index=0, image_size=(SIZE, SIZE),
                               codec={"name": "factorized", "latent_channels": 8, "hidden_channels": 16,
                                      "positional": positional}).eval()


def _centred(n, seed):
    """Images with a bright object in the middle of a dark, noisy background (a classifier's centred objects)."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 40, (n, 3, SIZE, SIZE), generator=g).float()
    images[:, :, 8:24, 10:22] += torch.randint(120, 200, (n, 3, 1, 1), generator=g).float()
    return images


def test_the_prior_codes_the_same_latent_in_fewer_bytes(caplog):
    plain, model = _model(False), _model(True)
    load_state(model, plain.state_dict())  # the same trained split; the prior is what the plain one lacks
    assert "positional" not in plain.codec.config  # (so every other codec keeps its fingerprint)
    images = _centred(16, seed=1)
    unfitted = model.edge(images)  # not fitted: every element's window uniform, still lossless
    assert torch.equal(model.cloud(unfitted), plain.cloud(plain.edge(images)))
    fingerprint = model.fingerprint()
    edge, codec, _ = model.split_parts()
    with torch.no_grad():
        fit_symbol_prior(codec.latent_codec, codec.latents(edge(model.edge_normalizer(_centred(256, seed=0)))[0]).y)
    assert model.fingerprint() != fingerprint  # an edge and a cloud with other counts refuse each other's payloads
    retrained = _model(True)
    with torch.no_grad():  # the same split trained further: other channel medians than the counts were taken against
        retrained.codec.entropy_bottleneck.biases[-1] += 2.0  # the density's last bias: its medians move
    load_state(retrained, {k: v for k, v in model.state_dict().items() if "symbol_prior" in k})
    with caplog.at_level(logging.WARNING, logger="eccentric_det.codec.latent_codecs"):
        retrained.codec.update(force=True)
        model.codec.update(force=True)
    assert len([r for r in caplog.records if "counted against other weights" in r.getMessage()]) == 1
    payloads, reference = model.edge(images), plain.edge(images)
    assert torch.equal(model.cloud(payloads), plain.cloud(reference))  # the decoded latent is the plain codec's
    shorter = sum(len(p.strings[0]) for p in payloads) / sum(len(p.strings[0]) for p in reference)
    assert shorter < 0.9, shorter
    # any bytes in its place: refused with an error, never a read out of bounds (the bounded decoder, its own tables)
    rng, base, refused = random.Random(0), payloads[0], 0
    for n in [0, 4, 8, 12, *rng.sample(range(13, 400), 20)]:
        forged = Payload(base.kind, base.fingerprint, base.image_size, base.output_size, [rng.randbytes(n)])
        try:
            model.cloud([forged.to_bytes()])
        except (PayloadError, EntropyDecodeError):
            refused += 1
    assert refused >= 20  # the strict decoder takes next to no string its encoder did not write


def test_symbols_outside_the_counted_window_are_escaped_and_other_sizes_refused():
    codec = build_codec("factorized", 8, 8, latent_channels=4, hidden_channels=8, positional=(8, 8))
    assert codec.latent_codec.shape == (4, 4, 4)
    torch.manual_seed(0)
    y = torch.randn(64, 4, 4, 4)
    fit_symbol_prior(codec.latent_codec, y)
    medians = codec.entropy_bottleneck._get_medians().detach().reshape(1, -1, 1, 1)
    odd = torch.randn(2, 4, 4, 4)
    odd[0, 1, 2, 3], odd[1, 0, 0, 0] = 300.0, -90.0  # far outside anything counted
    coded = codec.code(Latents(odd, None, (8, 8)))
    y_hat = codec.decompress_latent(coded)
    assert torch.equal(y_hat, torch.round(odd - medians) + medians)
    with pytest.raises(ValueError, match="codes 4x4 latents, got 5x5"):
        codec.code(Latents(torch.randn(1, 4, 5, 5), None, (10, 10)))
    with pytest.raises(ValueError, match="codes 4x4 latents, got 3x3"):
        codec.latent_codec.decompress([[coded[0].strings[0]]], (3, 3))
    with pytest.raises(EntropyDecodeError):  # bytes its coder did not write
        codec.latent_codec.decompress([[bytes(range(12))]], (4, 4))
    with pytest.raises(ValueError, match="has no positional prior"):
        build_codec("hyperprior", 8, 8, positional=(8, 8))


def test_counts_make_a_distribution_per_element():
    prior = SymbolCounts(3, channels=1)
    prior.fit(torch.tensor([[0, 5, -2], [0, 5, 1], [0, 6, 1], [0, 5, 40]]), basis=torch.zeros(1))
    assert prior.low.tolist() == [0, 5, -2] and prior.length.tolist() == [1, 2, SymbolCounts.WINDOW]
    assert prior.counts[1, :2].tolist() == [3, 1] and prior.counts[2, [0, 3]].tolist() == [1, 2]
    # CompressAI's tables: an element's window plus the escape; a near-certain symbol costs well under a bit
    assert prior._cdf_length.tolist() == [3, 4, SymbolCounts.WINDOW + 2] and prior._offset.tolist() == [0, 5, -2]
    cdf = prior._quantized_cdf
    assert cdf[0, 1] - cdf[0, 0] > 0.75 * 2 ** 16 and cdf[1, 1] - cdf[1, 0] > cdf[1, 2] - cdf[1, 1]


def test_the_tool_writes_the_prior_alone_and_a_config_loads_it(tmp_path):
    opts = ["MODEL.ECCENTRIC.CODEC.LATENT_CHANNELS", 4, "DATA_CLS.TRAIN_LIMIT", 64, "DATA_CLS.HOLDOUT", 16]
    cfg = get_eccentric_cfg(QUICK, opts)
    weights = save_weights(SplitTimmClassifier(cfg), str(tmp_path / "split.pth"))
    out = tmp_path / "prior.pth"
    assert fit_cli(["--config-file", QUICK, "--output", str(out), "MODEL.WEIGHTS", weights, *map(str, opts)]) == 0
    state = torch.load(out, weights_only=True)["model"]
    assert state and all(k.startswith(PREFIX) for k in state) and int(state[PREFIX + "length"].min()) >= 1
    report = json.loads((tmp_path / "prior.json").read_text())
    assert report["images_counted"] == 64 and report["holdout_images"] == 16 and report["latent_shape"][0] == 4
    assert report["payload_bytes_positional"] > 0 and report["payload_bytes_factorized"] > 0
    prior = ["MODEL.WEIGHTS", weights, "MODEL.ECCENTRIC.CODEC.PRIOR_WEIGHTS", str(out)]
    cfg = get_eccentric_cfg(QUICK, opts + prior + ["MODEL.ECCENTRIC.CODEC.POSITIONAL_PRIOR", True])
    model = SplitTimmClassifier(cfg)
    load_initial_weights(cfg, model, complete=True)
    assert torch.equal(model.codec.symbol_prior.counts, state[PREFIX + "counts"])
    cfg = get_eccentric_cfg(QUICK, opts + prior)
    with pytest.raises(ValueError, match="needs MODEL.ECCENTRIC.CODEC.POSITIONAL_PRIOR True"):
        load_initial_weights(cfg, SplitTimmClassifier(cfg))
    cfg = get_eccentric_cfg(QUICK, opts + ["MODEL.ECCENTRIC.CODEC.POSITIONAL_PRIOR", True,
                                           "MODEL.ECCENTRIC.CODEC.PRIOR_WEIGHTS", weights])  # a whole model instead
    with pytest.raises(ValueError, match="tensors besides a positional prior"):
        load_initial_weights(cfg, SplitTimmClassifier(cfg))


def test_detection_refuses_the_positional_prior():
    from detectron2.modeling import build_model

    cfg = get_eccentric_cfg("quick_schedules/fashion_det_adaptive_ecc_instant_test.yaml",
                            ["MODEL.ECCENTRIC.CODEC.POSITIONAL_PRIOR", True, "MODEL.DEVICE", "cpu"])
    with pytest.raises(ValueError, match="classification only"):
        build_model(cfg)
