"""Codec v2 (mean_scale): a variable-rate mean-scale hyperprior. Real bytes at every rate, the rate carried and
checked in the payload, one checkpoint for all rates, and the training helpers that draw the rates."""
import pytest
import torch

from eccentric_det.codec import FIELD_RATE, Payload, PayloadError, build_codec
from eccentric_det.codec.payload import KIND_FEATURES
from eccentric_det.codec.validation import PayloadLimits, PayloadSpec
from eccentric_det.distill.losses import rate_loss, sample_rates

from .test_codec import real_features


def _codec(levels=4, **kw):
    torch.manual_seed(0)
    return build_codec("mean_scale", 48, 64, 16, 32, 2, rate_levels=levels, **kw)


def test_bytes_fall_with_the_rate_and_decode_exactly_at_every_rate():
    x = real_features() * 40  # latents of many values at an untrained codec
    codec = _codec().eval()
    sizes = []
    for rate in (0, 0.5, 1, 2.25, 3):
        coded = codec.compress(x, rate)[0]
        assert coded.fields[FIELD_RATE] == bytes([round(rate * 32)])
        with torch.no_grad():
            expected = codec(x, rate).x_hat
        assert torch.equal(codec.decompress([coded]), expected)  # the cloud reads the rate from the payload
        sizes.append(len(coded.strings[0]))
    assert sizes == sorted(sizes, reverse=True) and sizes[0] > 1.5 * sizes[-1], sizes


def test_a_batch_of_payloads_at_different_rates_decodes_as_each_alone():
    x = real_features().repeat(2, 1, 1, 1) * 40
    codec = _codec().eval()
    a, b = codec.compress(x[:1], 0.0)[0], codec.compress(x[1:], 2.5)[0]
    together = codec.decompress([a, b])
    assert torch.allclose(together[0], codec.decompress([a])[0], atol=1e-5)
    assert torch.allclose(together[1], codec.decompress([b])[0], atol=1e-5)
    assert not torch.equal(together[0], together[1])


def test_real_size_matches_estimated_rate_at_each_level():
    x = real_features()
    torch.manual_seed(0)
    codec = build_codec("mean_scale", 48, 48, 16, 32, 2, rate_levels=3)
    opt = torch.optim.Adam(codec.parameters(), 2e-3)
    for step in range(90):  # all levels at once, as the training recipe does
        rates, weights = sample_rates(codec, 1, [0.02, 0.05, 0.12], 0.0)
        out = codec(x, rates)
        loss = 100 * torch.nn.functional.mse_loss(out.x_hat, x) + rate_loss(out.likelihoods, x[0, 0].numel(), weights)
        opt.zero_grad()
        loss.backward()
        opt.step()
    codec.eval()
    for rate in (0, 1, 2):
        coded = codec.compress(x, rate)[0]
        with torch.no_grad():
            estimated = float(codec.rate_bits(codec(x, rate).likelihoods)) / 8
        real = sum(len(s) for s in coded.strings)
        assert abs(real - estimated) <= 0.02 * estimated + 16, (rate, real, estimated)  # + the two strings' states


def test_halves_share_the_fingerprint_and_the_rate_is_no_part_of_it():
    full = _codec(rate=1.0).eval()
    edge = build_codec("mean_scale", 48, 64, 16, 32, 2, half="edge", rate_levels=4, rate=3.0)
    cloud = build_codec("mean_scale", 48, 64, 16, 32, 2, half="cloud", rate_levels=4)
    for half in (edge, cloud):
        missing = half.load_state_dict(full.state_dict(), strict=False).missing_keys
        assert not missing, missing
        half.eval()
    assert edge.fingerprint() == cloud.fingerprint() == full.fingerprint()
    assert not hasattr(edge, "g_s") and not hasattr(cloud, "g_a") and not hasattr(cloud, "h_a")
    x = real_features()
    with torch.no_grad():
        assert torch.equal(cloud.decompress(edge.compress(x)), full(x, 3.0).x_hat)


def test_one_rate_codecs_and_wrong_rates_are_refused():
    with pytest.raises(ValueError, match="has one rate.*mean_scale"):
        build_codec("factorized", 48, 64, 16, 32, 2, rate_levels=4)
    with pytest.raises(ValueError, match="CODEC.RATE must lie in 0..3"):
        _codec(rate=3.5)
    with pytest.raises(ValueError, match="CODEC.RATE must lie in 0..3"):
        _codec().compress(real_features(), -1)
    one = build_codec("mean_scale", 48, 64, 16, 32, 2).eval()  # one level: no rate in the payload
    assert FIELD_RATE not in one.compress(real_features())[0].fields and FIELD_RATE not in one.payload_fields()


def _spec(codec):
    return PayloadSpec(codec.fingerprint(), KIND_FEATURES, PayloadLimits(512, 512), codec.payload_fields(),
                       dict(codec.config), 4, 0)


@pytest.mark.parametrize("value, error", [(None, "carries its rate in one byte"), (b"", "one byte"),
                                          (b"\x10\x00", "one byte"), (bytes([97]), "beyond this codec's levels 0..3")])
def test_the_cloud_refuses_a_missing_or_impossible_rate_before_decoding(value, error):
    x = real_features()
    codec = _codec().eval()
    coded = codec.compress(x, 1.0)[0]
    fields = dict(coded.fields)
    fields.pop(FIELD_RATE)
    if value is not None:
        fields[FIELD_RATE] = value
    image_hw = (x.shape[-2] * 4, x.shape[-1] * 4)
    spec = _spec(codec)
    good = Payload(KIND_FEATURES, codec.fingerprint(), image_hw, image_hw, coded.strings, coded.fields)
    assert spec.parse(good.to_bytes())[1] == tuple(x.shape[-2:])
    bad = Payload(KIND_FEATURES, codec.fingerprint(), image_hw, image_hw, coded.strings, fields)
    with pytest.raises(PayloadError, match=error):
        spec.parse(bad.to_bytes())


def test_a_one_rate_cloud_refuses_a_rate_field():
    x = real_features()
    codec = build_codec("mean_scale", 48, 64, 16, 32, 2).eval()
    coded = codec.compress(x)[0]
    image_hw = (x.shape[-2] * 4, x.shape[-1] * 4)
    p = Payload(KIND_FEATURES, codec.fingerprint(), image_hw, image_hw, coded.strings, {**coded.fields, FIELD_RATE: b"\x00"})
    with pytest.raises(PayloadError, match="optional fields \\[1\\]"):
        _spec(codec).parse(p.to_bytes())


def test_sample_rates_spans_the_levels_and_interpolates_the_weights():
    codec = _codec(levels=3)
    torch.manual_seed(0)
    rates, weights = sample_rates(codec, 4000, [0.1, 0.4, 1.6], 0.0)
    assert float(rates.min()) >= 0 and float(rates.max()) <= 2 and float(rates.max()) > 1.9
    expected = 0.1 * 4 ** rates  # log-linear between levels a factor 4 apart
    assert torch.allclose(weights, expected, rtol=1e-5)
    assert sample_rates(build_codec("factorized", 48, 64, 16, 32, 2), 4, [], 0.5) == (None, None)
    for bad in ([0.1, 0.4], [0.4, 0.1, 1.6], [0.0, 0.4, 1.6]):
        with pytest.raises(ValueError, match="RATE_WEIGHTS must hold 3 positive, increasing"):
            sample_rates(codec, 4, bad, 0.0)


def test_weighted_rate_loss_weighs_each_image():
    lik = {"y": torch.full((2, 1, 2, 2), 0.5)}  # 4 bits per image
    assert float(rate_loss(lik, 8)) == 1.0
    assert float(rate_loss(lik, 8, torch.tensor([1.0, 3.0]))) == 2.0


def test_the_encoder_downsamples_first_and_the_decoder_is_cheaper_than_v1():
    from eccentric_det.evaluation.flops import codec_gflops

    x = torch.zeros(1, 16, 64, 64)
    v2 = build_codec("mean_scale", 16, 32, 24, 64, 2, rate_levels=5).eval()
    v1 = build_codec("factorized", 16, 32, 24, 64, 2).eval()
    assert v2.g_a[0].stride == (2, 2)
    (enc2, dec2), (enc1, dec1) = codec_gflops(v2, x), codec_gflops(v1, x)
    assert enc2 < 0.5 * enc1 and dec2 < 0.5 * dec1, (enc2, enc1, dec2, dec1)
