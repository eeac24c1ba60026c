"""Feature codec: exact entropy-coding round trip; real size vs estimated rate."""
import os

import cv2
import numpy as np
import pytest
import torch

from eccentric_det.codec import CODEC_REGISTRY, Payload, build_codec
from eccentric_det.codec.payload import KIND_FEATURES

DOG = [p for p in ("datasets/_darknet/dog.jpg", "/usr/share/darknet/data/dog.jpg") if os.path.isfile(p)]


def real_features():
    """res2-like features of a real photo (a random conv on the image, pooled to stride 4)."""
    torch.manual_seed(0)
    if DOG:
        img = cv2.resize(cv2.imread(DOG[0]), (256, 192))
    else:  # no photo on this machine: a smooth synthetic image keeps the test meaningful
        img = cv2.GaussianBlur(np.random.default_rng(0).integers(0, 255, (192, 256, 3), dtype=np.uint8), (15, 15), 5)
    x = torch.from_numpy(img).permute(2, 0, 1).float()[None] / 255.0
    with torch.no_grad():
        return torch.nn.functional.avg_pool2d(torch.relu(torch.nn.Conv2d(3, 48, 3, padding=1)(x)), 4)


def fit(codec, x, steps=80):
    opt = torch.optim.Adam(codec.parameters(), 2e-3)
    for _ in range(steps):
        out = codec(x)
        bpp = codec.rate_bits(out.likelihoods) / x[0, 0].numel()
        loss = 100 * torch.nn.functional.mse_loss(out.x_hat, x) + 0.05 * bpp
        opt.zero_grad()
        loss.backward()
        opt.step()
    return codec.eval()


@pytest.mark.parametrize("name", ["factorized", "hyperprior"])
def test_round_trip_is_exact(name):
    x = real_features()
    codec = build_codec(name, 48, 64, 16, 32, 2).eval()
    coded = codec.compress(x)[0]
    y_hat = codec.decompress_latent([coded])
    with torch.no_grad():
        y = codec.g_a(x)
        eb = codec.entropy_bottleneck
        expected = eb.quantize(y, "dequantize", eb._get_medians()) if name == "factorized" else torch.round(y)
    assert torch.equal(y_hat, expected)
    x_hat = codec.decompress([coded])
    assert x_hat.shape == (1, 64, *x.shape[-2:])
    with torch.no_grad():  # the training path in eval mode reconstructs the same feature
        assert torch.allclose(codec(x).x_hat, x_hat, atol=1e-5)


def test_real_size_matches_estimated_rate():
    x = real_features()
    codec = fit(build_codec("factorized", 48, 48, 24, 48, 2), x)
    coded = codec.compress(x)[0]
    with torch.no_grad():
        estimated = float(codec.rate_bits(codec(x).likelihoods)) / 8
    real = sum(len(s) for s in coded.strings)
    assert abs(real - estimated) <= 0.02 * estimated, (real, estimated)
    payload = Payload(KIND_FEATURES, codec.fingerprint(), (192, 256), (192, 256), coded.strings, coded.fields)
    data = payload.to_bytes()
    assert len(data) == len(payload)
    header = len(data) - real
    assert header == 16  # format v2: 7 fixed bytes, two 2-byte sizes, the string count, the CRC


def test_halves_share_fingerprint_and_decode():
    x = real_features()
    full = fit(build_codec("factorized", 48, 48, 16, 32, 2), x, steps=10)
    edge, cloud = (build_codec("factorized", 48, 48, 16, 32, 2, half=h) for h in ("edge", "cloud"))
    state = full.state_dict()
    assert not any(k.endswith("_quantized_cdf") for k in state)  # derived tables are rebuilt, not saved
    edge.load_state_dict({k: v for k, v in state.items() if k.startswith(edge.param_prefixes("edge"))})
    cloud.load_state_dict({k: v for k, v in state.items() if k.startswith(cloud.param_prefixes("cloud"))})
    assert not hasattr(edge, "g_s") and not hasattr(cloud, "g_a")
    assert edge.synthesis is None and cloud.analysis is None
    assert edge.eval().fingerprint() == cloud.eval().fingerprint() == full.fingerprint()
    assert torch.equal(cloud.decompress(edge.compress(x)), full.decompress(full.compress(x)))
    other = build_codec("factorized", 48, 48, 16, 32, 2).eval()
    assert other.fingerprint() != full.fingerprint()


def test_passthrough_is_lossless_and_checks_channels():
    x = torch.randn(2, 8, 5, 7)
    codec = build_codec("passthrough", 8, 8)
    coded = codec.compress(x)
    assert len(coded[0].strings[0]) == 8 * 5 * 7 * 4
    assert torch.equal(codec.decompress(coded[:1]), x[:1])
    with pytest.raises(ValueError, match="passthrough"):
        build_codec("passthrough", 8, 16)
    with pytest.raises(ValueError, match="Unknown codec"):
        build_codec("gzip", 8, 8)


@pytest.mark.parametrize("scale", [0.5, 4.0, 300.0])  # 300: most symbols leave the CDF's range (bypass coding)
def test_guarded_decoder_equals_compressai(scale):
    """The bounds-checked decoder reads CompressAI's strings exactly as its native decoder does."""
    from compressai.entropy_models import EntropyBottleneck

    from eccentric_det.codec import guarded_ans

    torch.manual_seed(0)
    eb = EntropyBottleneck(8)
    eb.update(force=True, update_quantiles=True)
    y = torch.randn(2, 8, 9, 13) * scale
    strings = eb.compress(y)
    medians = eb._get_medians().detach().reshape(1, -1, 1, 1).expand(2, -1, 9, 13)
    ours = guarded_ans.decompress(eb, strings, eb._build_indexes((2, 8, 9, 13)), medians)
    assert torch.equal(ours, eb.decompress(strings, (9, 13)))
    with pytest.raises(guarded_ans.EntropyDecodeError, match="corrupt"):
        guarded_ans.decompress(eb, [strings[0][:-4]], eb._build_indexes((1, 8, 9, 13)), medians[:1])


def _boundary_params(codec, fraction=0.3):
    """The hyper branch's params, with ``fraction`` of the scales put exactly on a scale-table boundary."""
    table = codec.gaussian_conditional.scale_table
    original = codec.latent_codec.hyper.params

    def params(z_hat, y_hw, gain=None):
        s, means = original(z_hat, y_hw, gain)
        s = s.clone()
        g = torch.Generator().manual_seed(1)
        pick = torch.rand(s.shape, generator=g) < fraction
        s[pick] = table[torch.randint(0, len(table) - 1, (int(pick.sum()),), generator=g)]
        return s, means
    return params


@pytest.mark.parametrize("direction", [float("inf"), float("-inf")])
def test_hyperprior_decodes_exactly_when_cloud_scales_differ_by_one_ulp(direction):
    """Edge and cloud on different hardware disagree on scales in the last bit (CompressAI issue 279).
    With scales placed on table boundaries and the cloud's perturbed by one ulp, the decode is exact:
    the edge lists the elements next to a boundary with their indexes (FIELD_SCALE_INDEXES)."""
    from eccentric_det.codec import FIELD_SCALE_INDEXES

    x = real_features() * 40  # latents of many values, so that a wrong CDF shows
    edge = build_codec("hyperprior", 48, 48, 16, 32, 2).eval()
    cloud = build_codec("hyperprior", 48, 48, 16, 32, 2).eval()
    cloud.load_state_dict(edge.state_dict())
    edge.latent_codec.hyper.params = _boundary_params(edge)
    on_boundary = _boundary_params(cloud)
    cloud.latent_codec.hyper.params = lambda z, hw, gain=None: (torch.nextafter(on_boundary(z, hw)[0], torch.tensor(direction)), None)
    coded = edge.compress(x)[0]
    assert FIELD_SCALE_INDEXES in coded.fields
    expected = torch.round(edge.g_a(x).detach())
    assert torch.equal(cloud.decompress_latent([coded]), expected)
    if direction < 0:  # a scale one ulp below a boundary s_k still picks CDF k, the edge's
        return
    # one ulp above, without the list the cloud picks the next CDF for those elements: the test can fail
    bare = type(coded)(coded.strings, coded.latent_shape, coded.output_shape)
    try:
        wrong = cloud.decompress_latent([bare])
    except ValueError:  # the strict decoder often notices the mismatch
        return
    assert not torch.equal(wrong, expected)


def test_scale_index_list_round_trip_and_corruption():
    """The list of boundary elements decodes to what was encoded; every corruption is a PayloadError."""
    from eccentric_det.codec import PayloadError
    from eccentric_det.codec.scale_indexes import decode_exceptions, encode_exceptions

    g = torch.Generator().manual_seed(0)
    indexes = torch.randint(0, 64, (2, 7, 9), generator=g, dtype=torch.int32)
    mask = torch.rand(indexes.shape, generator=g) < 0.2
    data = encode_exceptions(indexes, mask)
    positions, values = decode_exceptions(data, indexes.numel(), 64)
    assert positions.tolist() == torch.nonzero(mask.reshape(-1)).reshape(-1).tolist()
    assert values.tolist() == indexes[mask].tolist()
    for bad, n, k in [(data[:-1], 126, 64), (data + b"\x00", 126, 64), (data, 10, 64), (data, 126, 8),
                      (b"\xff\xff\xff\xff\x7f", 126, 64), (b"", 126, 64)]:
        with pytest.raises(PayloadError, match="scale.index"):
            decode_exceptions(bad, n, k)


def test_fast_scale_indexes_equal_the_reference_element_for_element():
    """The edge's table lookup (scale_indexes_near) gives scale_indexes' CDF index and near_boundary's mask for every
    float32: on table entries, within and just outside the margin of each, one ulp either side, below the scale
    bound, negative, zero, infinite, NaN, and arbitrary bit patterns."""
    from compressai.entropy_models import GaussianConditional

    from eccentric_det.codec.coding import CoderTables, scale_indexes, scale_indexes_near
    from eccentric_det.codec.latent_codecs import SCALES
    from eccentric_det.codec.scale_indexes import MARGIN, near_boundary

    gc = GaussianConditional(SCALES)
    gc.update_scale_table(SCALES, force=True)
    tables = CoderTables.of(gc)
    table = tables.scale_table
    g = torch.Generator().manual_seed(0)
    parts = [torch.exp(torch.empty(100_000).uniform_(-6, 7, generator=g)), torch.randn(20_000, generator=g),
             torch.tensor([float("nan"), -float("nan"), float("inf"), -float("inf"), 0.0, -0.0, tables.scale_bound,
                           1e-30, 1e30, 1e-40, -1e-40]),
             torch.from_numpy(np.random.default_rng(0).integers(-2 ** 31, 2 ** 31, 100_000).astype(np.int32)
                              .view(np.float32))]
    for k in (-40, -20, -11, -10, -9, -5, -1, 0, 1, 5, 9, 10, 11, 20, 40):
        parts.append(table * (1 + k * MARGIN / 10))
    for direction in (float("inf"), -float("inf")):
        parts.append(torch.nextafter(table, torch.tensor(direction)))
    scales = torch.cat(parts).float()
    for s in (scales, scales[:96_000].reshape(2, 24, 40, 50)):
        indexes, near = scale_indexes_near(s, tables)
        assert torch.equal(indexes, scale_indexes(s, tables))
        assert torch.equal(near, near_boundary(s, table))
    assert near.any() and not near.all()


def _coder_tables():
    """The tables of a gaussian conditional (64 CDFs of ~400 entries) and of an entropy bottleneck (8 short ones)."""
    from compressai.entropy_models import EntropyBottleneck, GaussianConditional

    from eccentric_det.codec.coding import CoderTables
    from eccentric_det.codec.latent_codecs import SCALES

    gc = GaussianConditional(SCALES)
    gc.update_scale_table(SCALES, force=True)
    torch.manual_seed(0)
    eb = EntropyBottleneck(8)
    eb.update(force=True, update_quantiles=True)
    return [CoderTables.of(gc), CoderTables.of(eb)]


@pytest.mark.parametrize("name", ["factorized", "mean_scale"])
def test_entropy_tables_do_not_follow_the_last_bits_of_the_machines_kernels(name, monkeypatch):
    """Edge and cloud build the CDF tables from the same weights on different machines, whose matrix-product
    kernels round differently: tables built with every product moved by 64 ulps are the same tables (in float32
    a change of one ulp moved 144 of the factorized codec's 3,464 entries, and its payloads then failed the fingerprint
    check of the other side)."""
    import compressai.entropy_models.entropy_models as em

    def tables():
        torch.manual_seed(0)
        codec = build_codec(name, 16, 16, 8, 16, 2).eval()
        codec.update()
        return codec.fingerprint(), {k: {b: getattr(m, b).clone() for b in ("_quantized_cdf", "_offset", "quantiles")
                                          if hasattr(m, b)} for k, m in codec.entropy_models().items()}

    reference = tables()
    exact = torch.matmul
    monkeypatch.setattr(em.torch, "matmul",
                        lambda a, b: exact(a, b) * (1 + 64 * torch.finfo(a.dtype).eps))
    moved = tables()
    assert moved[0] == reference[0]
    for k, bufs in reference[1].items():
        for b, t in bufs.items():
            assert torch.equal(moved[1][k][b], t), (k, b)


@pytest.mark.parametrize("spread", [1, 30, 1e4, 1e7])  # 1e4, 1e7: nearly every symbol bypass-coded (4, 7 nibbles)
def test_edge_encoder_writes_compressais_strings_from_arrays(spread):
    """The edge's rANS encoder (``_rans``, int32 arrays in) writes the strings CompressAI's C++ encoder writes from
    lists, byte for byte, and the bounded decoder reads them back, for symbols inside and far outside each CDF's
    range. CompressAI's encoder is compared only where its output buffer (4 bytes a symbol) holds the string: past
    it, it writes outside its buffer (for 0 symbols, or mostly bypass-coded ones), which ours does not."""
    from compressai import ans

    from eccentric_det.codec import _rans, guarded_ans

    rng = np.random.default_rng(0)
    compared = 0
    for tables in _coder_tables():
        cdf, lengths, offsets = tables.arrays()
        cdf_lists = [row[:n] for row, n in zip(cdf.tolist(), lengths.tolist())]
        for n in (0, 1, 7, 5000):
            indexes = rng.integers(0, len(lengths), n).astype(np.int32)
            symbols = np.round(rng.standard_normal(n) * spread).astype(np.int32)
            ours = _rans.encode(symbols, indexes, cdf, lengths, offsets, cdf.shape[1])
            assert np.array_equal(guarded_ans.decode_symbols(ours, indexes, cdf, lengths, offsets), symbols)
            if len(ours) <= 4 * n:
                compared += 1
                assert ours == ans.RansEncoder().encode_with_indexes(
                    symbols.tolist(), indexes.tolist(), cdf_lists, lengths.tolist(), offsets.tolist())
    assert compared >= (4 if spread <= 30 else 0)


def test_edge_encoder_codes_every_int32_and_refuses_bad_tables():
    """Symbols CompressAI's encoder cannot code (|value| >= 2 ** 27 needs 8 bypass nibbles, where its loop never
    ends) are coded in 8 and decoded back; out-of-range indexes, mismatched counts and broken CDFs raise a
    ValueError that names them instead of reading outside the tables."""
    from eccentric_det.codec import _rans, guarded_ans

    tables = _coder_tables()[1]
    cdf, lengths, offsets = tables.arrays()
    row = cdf.shape[1]
    extreme = np.array([2 ** 31 - 1 + min(0, int(offsets.min())), -2 ** 31 + max(0, int(offsets.max())), 2 ** 27,
                        -2 ** 27, 0, 3], np.int32)
    indexes = np.arange(len(extreme), dtype=np.int32) % len(lengths)
    string = _rans.encode(extreme, indexes, cdf, lengths, offsets, row)
    assert np.array_equal(guarded_ans.decode_symbols(string, indexes, cdf, lengths, offsets), extreme)
    one = np.zeros(1, np.int32)
    with pytest.raises(ValueError, match="element 0's CDF index is out of range"):
        _rans.encode(one, one + len(lengths), cdf, lengths, offsets, row)
    with pytest.raises(ValueError, match="element 1's CDF index"):
        _rans.encode(np.zeros(2, np.int32), np.array([0, -1], np.int32), cdf, lengths, offsets, row)
    with pytest.raises(ValueError, match="counts do not match"):
        _rans.encode(np.zeros(2, np.int32), one, cdf, lengths, offsets, row)
    with pytest.raises(ValueError, match="counts do not match"):
        _rans.encode(one, one, cdf, lengths, offsets, row + 1)
    with pytest.raises(ValueError, match="must be int32"):
        _rans.encode(np.zeros(1, np.int16), one, cdf, lengths, offsets, row)
    with pytest.raises(ValueError, match="overflows int32"):
        _rans.encode(np.array([2 ** 31 - 1], np.int32), one, cdf, lengths, offsets - 1 - (offsets >= 0) * offsets,
                     row)
    for broken in (lengths + row, np.where(np.arange(len(lengths)) == 3, 1, lengths).astype(np.int32)):
        with pytest.raises(ValueError, match="CDF 3 is not a 16-bit CDF|CDF 0 is not"):
            _rans.encode(one, one, cdf, broken.astype(np.int32), offsets, row)
    flat = cdf.copy()
    flat[2, 1] = 0  # not increasing
    with pytest.raises(ValueError, match="CDF 2 is not a 16-bit CDF"):
        _rans.encode(one, one, flat, lengths, offsets, row)


@pytest.mark.parametrize("name", ["factorized", "hyperprior"])
def test_edge_coder_writes_compressai_strings(name):
    """The edge's coder (eccentric_det.codec.coding, CompressAI's C++ rANS encoder without the rest of CompressAI)
    writes what CompressAI's own entropy models write, byte for byte."""
    codec = build_codec(name, 48, 48, 16, 32, 2).eval()
    x = real_features() * 8
    ours = codec.compress(x)
    with torch.no_grad():
        y = codec.g_a(x)
        eb = codec.entropy_bottleneck
        if name == "factorized":
            assert [c.strings[0] for c in ours] == eb.compress(y)
            return
        z = codec.h_a(y)
        z_strings = eb.compress(z)
        scales = codec.latent_codec.hyper.params(eb.decompress(z_strings, z.shape[-2:]), y.shape[-2:])[0]
        y_strings = codec.gaussian_conditional.compress(y, codec.gaussian_conditional.build_indexes(scales))
    assert [c.strings for c in ours] == [[ys, zs] for ys, zs in zip(y_strings, z_strings)]


def test_codecs_are_registered_by_name():
    """One class per codec in CODEC_REGISTRY; a codec a user registers is built by its name like the shipped ones."""
    from eccentric_det.codec.feature_codec import FactorizedCodec, HyperpriorCodec, PassthroughCodec

    for name, cls in (("factorized", FactorizedCodec), ("hyperprior", HyperpriorCodec),
                      ("passthrough", PassthroughCodec)):
        codec = build_codec(name, 8, 8, 4, 8, 1)
        assert type(codec) is cls and codec.config["name"] == name == codec.name

    @CODEC_REGISTRY.register()
    class WideFactorized(FactorizedCodec):
        name = "test_wide_factorized"

    try:
        codec = build_codec("test_wide_factorized", 8, 8, 4, 8, 2).eval()
        x = real_features()[:, :8] * 4
        assert torch.equal(codec.decompress(codec.compress(x)), codec(x).x_hat)
        with pytest.raises(ValueError, match="test_wide_factorized"):  # the message lists what is registered
            build_codec("gzip", 8, 8)
    finally:
        CODEC_REGISTRY._obj_map.pop("WideFactorized")


@pytest.mark.parametrize("name, levels", [("factorized", 1), ("hyperprior", 1), ("mean_scale", 1), ("mean_scale", 3)])
def test_learned_codecs_are_g_a_a_latent_codec_and_g_s(name, levels):
    """A learned codec is g_a -> a CompressAI-shaped latent codec -> g_s; the latent codec holds the codec's own
    modules (no parameter of its own, no state-dict key), and its compress/decompress decode what forward sees."""
    from compressai.latent_codecs import LatentCodec

    torch.manual_seed(0)
    codec = build_codec(name, 48, 48, 16, 32, 2, rate_levels=levels).eval()
    lc = codec.latent_codec
    assert isinstance(lc, LatentCodec) and not any(k.startswith("latent_codec") for k in codec.state_dict())
    own = {id(p) for p in codec.parameters()}
    assert {id(p) for p in lc.parameters()} <= own
    assert set(lc.entropy_models) == {"entropy_bottleneck"} | ({"gaussian_conditional"} if codec.hyper else set())
    rated = (1.5,) if levels > 1 else ()
    codec.update()  # the medians, then the tables
    with torch.no_grad():
        y = codec.g_a(real_features() * 8)
        out = lc(y, *rated)
        enc = lc.compress(y, *((None, None, *rated) if codec.hyper else ()))
        y_hat = lc.decompress(enc["strings"], tuple(y.shape[-2:]), fields=enc.get("fields") or [{}])["y_hat"]
    assert set(out) == {"likelihoods", "y_hat"} and set(out["likelihoods"]) == ({"y", "z"} if codec.hyper else {"y"})
    assert len(enc["strings"]) == (2 if codec.hyper else 1) and len(enc["strings"][0]) == 1
    assert torch.allclose(y_hat, out["y_hat"], atol=1e-5)
