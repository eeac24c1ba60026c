"""Dynamic ECC: the edge's per-image "needs the cloud" score (it lives in the edge half).

Detection: a logistic model over statistics of the edge detector's scores (:class:`OffloadGate`);
classification: 1 - the edge head's max softmax (:func:`softmax_uncertainty`). Both are fitted by recall-rate
boosting in :mod:`eccentric_det.calibration`.
"""
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

STAT_NAMES = ("uncertainty", "n_uncertain", "n_confident", "mean_top_score", "n_detections")


def detection_statistics(scores, min_score=0.05):
    """Statistics of one image's edge detection scores (a 1-D tensor or array) as a float32 vector."""
    s = np.sort(np.asarray(scores, dtype=np.float32))[::-1]
    s = s[s >= min_score]
    top = s[:5] if len(s) else np.zeros(1, np.float32)
    uncertain = ((s >= 0.2) & (s < 0.7)).sum()
    return np.array([1.0 - top[0], uncertain, (s >= 0.7).sum(), top.mean(), len(s)], np.float32)


class LogisticGate(nn.Module):
    """P("needs the cloud" | a statistics vector): a logistic model over standardised statistics, fitted by
    :func:`eccentric_det.calibration.fit_offload_gate`. Lives in the edge half."""

    def __init__(self, weight, bias):
        super().__init__()
        n = len(weight)
        self.register_buffer("weight", torch.tensor(weight, dtype=torch.float32))
        self.register_buffer("bias", torch.tensor(float(bias)))
        self.register_buffer("mean", torch.zeros(n))
        self.register_buffer("std", torch.ones(n))

    def probability(self, stats):
        """The probability of each row of ``stats`` [N, F] (numpy or tensor)."""
        z = (torch.as_tensor(np.asarray(stats), dtype=torch.float32) - self.mean.cpu()) / self.std.cpu()
        return torch.sigmoid(z @ self.weight.cpu() + self.bias.cpu())

    def load_fit(self, fit):
        """Install the parameters found by :func:`eccentric_det.calibration.fit_offload_gate`."""
        for key in ("weight", "bias", "mean", "std"):
            getattr(self, key).copy_(torch.as_tensor(fit[key], dtype=torch.float32))


class OffloadGate(LogisticGate):
    """P("the edge needs the cloud" | statistics of the edge's detections of one image)."""

    def __init__(self, min_score=0.05):
        # Before fitting: offload when the best edge detection is unsure (probability 0.5 at score 0.5).
        super().__init__([6.0] + [0.0] * (len(STAT_NAMES) - 1), -3.0)
        self.min_score = min_score

    def forward(self, scores_per_image):
        return self.probability(np.stack([detection_statistics(s, self.min_score) for s in scores_per_image]))


def softmax_uncertainty(logits):
    """Classification's "needs the cloud" score of each row of ``logits`` [..., K]: 1 - its max softmax."""
    return 1 - F.softmax(logits.float(), dim=-1).max(-1).values
