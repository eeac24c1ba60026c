"""Dynamic ECC: gate statistics, recall-boosted fitting, the threshold, and the per-image decision."""
import numpy as np
import pytest
import torch
from detectron2.structures import Boxes, Instances

from eccentric_det.calibration import count_errors, fit_offload_gate, threshold_for_recall
from eccentric_det.split.gate import OffloadGate, detection_statistics


def test_statistics_by_hand():
    s = detection_statistics([0.9, 0.6, 0.3, 0.01])
    # 1 - max, uncertain in [0.2, 0.7), confident >= 0.7, mean of top-5 above min score, count
    assert s.tolist() == pytest.approx([0.1, 2, 1, 0.6, 3])
    assert detection_statistics([]).tolist() == pytest.approx([1.0, 0, 0, 0, 0])


def test_threshold_for_recall():
    probs = np.array([0.9, 0.8, 0.7, 0.2, 0.1, 0.05])
    pos = np.array([True, False, True, True, False, False])
    assert threshold_for_recall(probs, pos, 2 / 3) == 0.7  # two of three positives at >= 0.7
    assert threshold_for_recall(probs, pos, 1.0) == 0.2


def test_recall_boosted_fit_catches_the_hard_images():
    rng = np.random.default_rng(0)
    n = 400
    hard = rng.random(n) < 0.25  # a minority needs the cloud: low edge confidence
    top = np.where(hard, rng.uniform(0.2, 0.6, n), rng.uniform(0.5, 1.0, n))
    stats = np.stack([detection_statistics([t, t / 2]) for t in top])
    fit = fit_offload_gate(stats, hard, recall_target=0.9)
    assert fit["recall"] >= 0.9
    assert fit["offload_rate"] < 0.6  # far fewer than "offload everything"
    gate = OffloadGate()
    gate.load_fit(fit)
    p = gate([torch.tensor([0.3, 0.15]), torch.tensor([0.95, 0.4])])
    assert p[0] > fit["threshold"] > p[1]
    with pytest.raises(ValueError, match="both"):
        fit_offload_gate(stats, np.zeros(n, bool))


def test_count_errors():
    inst = Instances((100, 100))
    inst.pred_boxes = Boxes(torch.tensor([[0, 0, 10, 10], [50, 50, 60, 60], [0, 0, 10, 10.0]]))
    inst.scores = torch.tensor([0.9, 0.8, 0.3])
    inst.pred_classes = torch.tensor([1, 2, 1])
    gt = torch.tensor([[0, 0, 10, 10], [20, 20, 30, 30.0]])
    # det 0 matches gt 0; det 1 is a false positive; det 2 is below the score threshold; gt 1 is missed
    assert count_errors(inst, gt, torch.tensor([1, 1])) == 2
    assert count_errors(inst, gt[:0], torch.tensor([], dtype=torch.long)) == 2
