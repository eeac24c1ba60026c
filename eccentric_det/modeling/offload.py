"""Dynamic ECC: the edge's per-image decision to offload, from its own detections.

The gate is a logistic model over statistics of the edge detector's scores. Recall-rate boosting
(``fit_offload_gate``) trains it on images labelled "the edge gets this one wrong" with the positive
class up-weighted, and picks the threshold that reaches a target recall of those images: under an
offload budget, missing an image that needs the cloud costs accuracy, while offloading an easy one
only costs bytes.
"""
import numpy as np
import torch
from torch import nn

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
        """Install the parameters found by :func:`fit_offload_gate`."""
        for key in ("weight", "bias", "mean", "std"):
            getattr(self, key).copy_(torch.as_tensor(fit[key], dtype=torch.float32))


def fit_offload_gate(stats, needs_cloud, recall_target=0.9, positive_weight=None, steps=2000, lr=0.1):
    """Recall-boosted logistic regression. ``stats``: [N, F] from :func:`detection_statistics`;
    ``needs_cloud``: [N] bool. Returns the parameters and the threshold reaching ``recall_target``
    of the positives on these images, with the offload rate it implies."""
    x = torch.as_tensor(np.asarray(stats), dtype=torch.float32)
    y = torch.as_tensor(np.asarray(needs_cloud), dtype=torch.float32)
    if len(y) == 0 or y.sum() == 0 or y.sum() == len(y):
        raise ValueError("fitting the offload gate needs images both needing and not needing the cloud")
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    z = (x - mean) / std
    pos_w = positive_weight or float((1 - y).sum() / y.sum())  # boost recall: balance the classes at least
    w = torch.zeros(x.shape[1], requires_grad=True)
    b = torch.zeros((), requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=lr, max_iter=steps)
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=torch.tensor(pos_w))

    def closure():
        opt.zero_grad()
        loss = loss_fn(z @ w + b, y) + 1e-3 * (w ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        p = torch.sigmoid(z @ w + b)
    threshold = threshold_for_recall(p.numpy(), y.numpy().astype(bool), recall_target)
    return {"weight": w.detach().tolist(), "bias": float(b.detach()), "mean": mean.tolist(), "std": std.tolist(),
            "threshold": threshold, "offload_rate": float((p.numpy() >= threshold).mean()),
            "recall": float(((p.numpy() >= threshold) & y.numpy().astype(bool)).sum() / y.sum())}


def threshold_for_recall(probs, positives, recall_target):
    """The largest threshold whose offloaded set (probs >= threshold) holds ``recall_target`` of the positives."""
    pos = np.sort(np.asarray(probs)[np.asarray(positives)])[::-1]
    k = max(1, int(np.ceil(recall_target * len(pos))))
    return float(pos[k - 1])
