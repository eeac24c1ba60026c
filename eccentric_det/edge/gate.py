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


class OffloadGate(nn.Module):
    """P("the edge needs the cloud" | statistics of the edge's detections). Lives in the edge half."""

    def __init__(self, min_score=0.05):
        super().__init__()
        self.min_score = min_score
        n = len(STAT_NAMES)
        # Before fitting: offload when the best edge detection is unsure (probability 0.5 at score 0.5).
        self.register_buffer("weight", torch.tensor([6.0] + [0.0] * (n - 1)))
        self.register_buffer("bias", torch.tensor(-3.0))
        self.register_buffer("mean", torch.zeros(n))
        self.register_buffer("std", torch.ones(n))

    def forward(self, scores_per_image):
        stats = torch.from_numpy(np.stack([detection_statistics(s, self.min_score) for s in scores_per_image]))
        z = (stats - self.mean.cpu()) / self.std.cpu()
        return torch.sigmoid(z @ self.weight.cpu() + self.bias.cpu())

    def load_fit(self, fit):
        """Install the parameters found by :func:`eccentric_det.calibration.fit_offload_gate`."""
        for key in ("weight", "bias", "mean", "std"):
            getattr(self, key).copy_(torch.as_tensor(fit[key], dtype=torch.float32))


def softmax_uncertainty(logits):
    """Classification's "needs the cloud" score of each row of ``logits`` [..., K]: 1 - its max softmax."""
    return 1 - F.softmax(logits.float(), dim=-1).max(-1).values
