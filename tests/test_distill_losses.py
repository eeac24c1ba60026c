"""KD, adaptation and rate losses on hand-checkable values."""
import math

import pytest
import torch

from eccentric_det.distill import box_kd_loss, feature_matching_loss, logit_kd_loss, rate_loss


def test_logit_kd_zero_when_equal_and_known_value():
    t = torch.tensor([[2.0, 0.0, -1.0]])
    assert float(logit_kd_loss(t, t, 2.0)) == pytest.approx(0.0, abs=1e-6)
    # teacher one-hot-ish at T=1: KL(p||q) with p=[1,0], q=softmax([0,0])=[.5,.5] -> log 2
    s, t = torch.tensor([[0.0, 0.0]]), torch.tensor([[100.0, 0.0]])
    assert float(logit_kd_loss(s, t, 1.0)) == pytest.approx(math.log(2), rel=1e-4)
    # scaled by T^2 and averaged over ROIs
    two = logit_kd_loss(torch.zeros(2, 2), torch.tensor([[100.0, 0.0], [100.0, 0.0]]), 1.0)
    assert float(two) == pytest.approx(math.log(2), rel=1e-4)


def test_box_kd_uses_teacher_class_and_foreground_only():
    # 2 classes + background; ROI 0: teacher says class 1; ROI 1: background (ignored)
    t_logits = torch.tensor([[0.0, 5.0, 0.0], [0.0, 0.0, 5.0]])
    t_deltas = torch.zeros(2, 8)
    s_deltas = torch.zeros(2, 8)
    s_deltas[0, 4:8] = torch.tensor([0.5, 0.0, 0.0, 0.0])  # class 1 of ROI 0: smooth-L1(0.5) = 0.125
    s_deltas[0, 0:4] = 9.0  # class 0 of ROI 0: not the teacher's class -> ignored
    s_deltas[1] = 9.0  # background ROI -> ignored
    assert float(box_kd_loss(s_deltas, t_deltas, t_logits)) == pytest.approx(0.125 / 4)
    assert float(box_kd_loss(s_deltas[1:], t_deltas[1:], t_logits[1:])) == 0.0


def test_feature_matching_relative_mse():
    t = {"p2": torch.full((1, 2, 2, 2), 2.0), "p3": torch.ones(1, 2, 1, 1)}
    s = {"p2": torch.full((1, 2, 2, 2), 3.0), "p3": torch.ones(1, 2, 1, 1)}
    # p2: mse 1 / mean square 4 = 0.25; p3: 0 -> mean 0.125
    assert float(feature_matching_loss(s, t, ["p2", "p3"])) == pytest.approx(0.125)
    with pytest.raises(ValueError, match="teacher"):
        feature_matching_loss({"p2": torch.ones(1, 3, 2, 2)}, t, ["p2"])


def test_rate_loss_is_bits_per_pixel():
    lik = {"y": torch.full((1, 4, 2, 2), 0.5), "z": torch.full((1, 1, 1, 1), 0.25)}
    assert float(rate_loss(lik, num_pixels=10)) == pytest.approx((16 * 1 + 2) / 10)
    assert float(rate_loss({}, 10)) == 0.0
