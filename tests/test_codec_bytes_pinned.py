"""Pinned codec output: the payload bytes, fingerprints, parameter groups and state-dict keys of every registered
codec (seeded random weights) and of the committed codec-v2 checkpoint hash to literals. A change to any of them breaks
every payload and checkpoint in the field. Re-pinned once (2026-12-06) when the entropy bottleneck's tables moved to a
float64 build (``latent_codecs.EntropyBottleneckLatentCodec.update``): the float32 ones differed between two x86
machines, which also made these pins fail on one of them; the training path's pins did not move."""
import hashlib

import numpy as np
import pytest
import torch

from eccentric_det.codec import build_codec
from eccentric_det.codec.tiles import encode_tiles, region_cells

CASES = {  # name: (rate_levels, rates)
    "passthrough": (1, [None]),
    "factorized": (1, [None]),
    "hyperprior": (1, [None]),
    "mean_scale": (1, [None]),
    "mean_scale_vr": (4, [0.0, 0.5, 1.0, 2.25, 3.0]),
}


@pytest.fixture(autouse=True)
def one_thread():
    """The pins were written on one thread: a convolution's float rounding, and so a scale next to a CDF boundary,
    may change with the thread count (payloads stay decodable either way; the pins check the code, not the CPU)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _sha(*parts):
    h = hashlib.sha256()
    for p in parts:
        h.update(p if isinstance(p, bytes) else repr(p).encode())
    return h.hexdigest()[:16]


def _coded(coded):
    return [(c.strings, c.latent_shape, c.output_shape, sorted(c.fields.items())) for c in coded]


def _regions(latent_hw):
    """Per image: a region of one corner tile, and one of two tiles (tiles of 4 cells)."""
    grid = tuple(-(-s // 4) for s in latent_hw)
    out = []
    for picks in ([(0, 0)], [(1, 1), (grid[0] - 1, grid[1] - 1)]):
        tiles = np.zeros(grid, bool)
        for p in picks:
            tiles[p] = True
        out.append((*region_cells(tiles, 4, latent_hw), encode_tiles(tiles, 4)))
    return out


def _digest(codec, x, rates):
    """{what: hash} of ``codec`` coding ``x`` at ``rates`` (and in regions, for a hyperprior)."""
    out = {"fingerprint": codec.fingerprint().hex(),
           "groups": _sha(*(codec.param_prefixes(s) for s in ("edge", "cloud", "shared"))),
           "keys": _sha(*[(k, tuple(v.shape)) for k, v in codec.state_dict().items()])}
    for rate in rates:
        coded = codec.compress(x, rate)
        out[f"bytes@{rate}"] = _sha(*_coded(coded))
        if codec.name != "passthrough":
            y_hat = codec.decompress_latent(coded)
            out[f"y_hat@{rate}"] = _sha(y_hat.numpy().tobytes())
        if codec.hyper:
            regions = _regions(coded[0].latent_shape)
            coded = codec.compress(x, rate, regions=regions)
            out[f"regions@{rate}"] = _sha(*_coded(coded))
            out[f"regions_y_hat@{rate}"] = _sha(codec.decompress_latent(coded).numpy().tobytes())
    return out


def _training_path(codec, x, rates):
    """(sum of x_hat, estimated bits) of the training path, in eval mode and in training mode (seeded noise)."""
    out = []
    for train in (False, True):
        codec.train(train)
        for rate in rates:
            torch.manual_seed(1)
            with torch.no_grad():
                o = codec(x, rate)
            out += [float(o.x_hat.double().sum()), float(codec.rate_bits(o.likelihoods))]
    codec.eval()
    return out


def _seeded(case):
    levels, rates = CASES[case]
    torch.manual_seed(0)
    codec = build_codec(case.replace("_vr", ""), 16, 16, 8, 16, 2, rate_levels=levels).eval()
    return codec, torch.randn(2, 16, 40, 52) * 4, rates


PINNED = {'factorized': {'bytes@None': 'eeaaa9d897a4665b',
                'fingerprint': '9a61336d',
                'groups': '0850f89379b96baa',
                'keys': 'c3de3a4371cf47c3',
                'y_hat@None': '17f79ab164d1b070'},
 'hyperprior': {'bytes@None': 'c0b56a98bffa27e8',
                'fingerprint': '226cb53d',
                'groups': '0850f89379b96baa',
                'keys': '3fc9ab97a0fb8f77',
                'regions@None': '4675d6b32879f225',
                'regions_y_hat@None': 'd9007b780a49bc20',
                'y_hat@None': '4512917131375226'},
 'mean_scale': {'bytes@None': '117a634a3886fa71',
                'fingerprint': '48ff2d45',
                'groups': '0850f89379b96baa',
                'keys': 'de03ae0583f46f8f',
                'regions@None': '27ed84ce1419cde7',
                'regions_y_hat@None': '42cefe65ea0aea37',
                'y_hat@None': '3d10528c680d2474'},
 'mean_scale_vr': {'bytes@0.0': 'cd033254aa0e0a3c',
                   'bytes@0.5': 'ded97b86de82147e',
                   'bytes@1.0': 'd548f2de28682328',
                   'bytes@2.25': '9a13734e7bd36254',
                   'bytes@3.0': 'e1df9a6628621f63',
                   'fingerprint': 'f95e06f2',
                   'groups': '0850f89379b96baa',
                   'keys': '167ae848cea72a6f',
                   'regions@0.0': 'b80cc289de32998b',
                   'regions@0.5': 'dffb0d4f9c024a68',
                   'regions@1.0': 'e256c046e29faa6e',
                   'regions@2.25': 'a8d22cf7186f7506',
                   'regions@3.0': '269e463865b37ca6',
                   'regions_y_hat@0.0': '42cefe65ea0aea37',
                   'regions_y_hat@0.5': '5cb6354c9b972cab',
                   'regions_y_hat@1.0': 'ea3c23f6b721fb36',
                   'regions_y_hat@2.25': '056ebe2cefaff278',
                   'regions_y_hat@3.0': '4e9c54f7174661a2',
                   'y_hat@0.0': '3d10528c680d2474',
                   'y_hat@0.5': '71e8f760b03e8e27',
                   'y_hat@1.0': 'e4bc88952e2c6cbd',
                   'y_hat@2.25': 'db79d45c59f74cc1',
                   'y_hat@3.0': '89da07ff609f2e7a'},
 'passthrough': {'bytes@None': '504492e32480c36f',
                 'fingerprint': 'ed82671a',
                 'groups': '0850f89379b96baa',
                 'keys': 'e3b0c44298fc1c14'}}


@pytest.mark.parametrize("case", sorted(CASES))
def test_seeded_codec_bytes_are_pinned(case):
    assert _digest(*_seeded(case)) == PINNED[case]


PINNED_TRAINING = {'factorized': [41.96852804115042, 44947.32421875, 57.17816548002884, 44950.27734375],
 'hyperprior': [42.67841614317149, 11741.7724609375, 54.9597094762139, 12495.3193359375],
 'mean_scale': [-223.9467480396852, 92564.96875, -224.2659145402722, 80872.4375],
 'mean_scale_vr': [-223.9467480396852, 92564.96875, -227.22560245683417, 78226.125, -226.2770325699821, 65636.8671875,
                   -207.0694112975616, 33800.90234375, -246.20697842049412, 18700.880859375, -224.2659145402722,
                   80872.4375, -228.34390473458916, 65156.00390625, -229.39351080334745, 51191.12890625,
                   -204.59459978714585, 24912.548828125, -242.29940939694643, 15766.6396484375],
 'passthrough': [-957.3399995393411, 0.0, -957.3399995393411, 0.0]}


@pytest.mark.parametrize("case", sorted(CASES))
def test_seeded_training_path_is_pinned(case):
    """The training path's reconstruction and estimated rate (floats: equal to rounding)."""
    assert _training_path(*_seeded(case)) == pytest.approx(PINNED_TRAINING[case], rel=1e-5, abs=1e-3)


PINNED_CHECKPOINT = {'bytes@0.0': '01afcf08f73e8086',
 'bytes@1.5': 'd593a7d3a5ffbb88',
 'bytes@4.0': 'f52989b4d38467d9',
 'fingerprint': '8b091907',
 'groups': '0850f89379b96baa',
 'keys': '5c454a776d2650ca',
 'regions@0.0': '5b157b71e0975841',
 'regions@1.5': '6bd924e78a52b3b5',
 'regions@4.0': 'ae389a5a2a18a688',
 'regions_y_hat@0.0': '086d80c8ea724a39',
 'regions_y_hat@1.5': '108789fefeb9fcef',
 'regions_y_hat@4.0': 'b0852ba20179d48e',
 'y_hat@0.0': 'ac403a4f809e4bb6',
 'y_hat@1.5': '00762e9e26abb41c',
 'y_hat@4.0': '6a2dfbe5e63f63fe'}


def test_committed_checkpoint_bytes_are_pinned():
    """adaptive_ecc_vr.pth through its config and the checked loader: the codec's keys, fingerprint and bytes."""
    from eccentric_det.checkpoint import load_model
    from eccentric_det.tasks import get_eccentric_cfg

    model = load_model(get_eccentric_cfg("configs/FashionDet/adaptive_ecc_vr.yaml", ["MODEL.DEVICE", "cpu"]))
    codec = model.codec.eval()
    torch.manual_seed(0)
    x = torch.randn(2, codec.config["in_channels"], 40, 52) * 2
    assert _digest(codec, x, [0.0, 1.5, 4.0]) == PINNED_CHECKPOINT
