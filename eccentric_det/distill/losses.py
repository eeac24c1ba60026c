"""Loss functions of knowledge distillation, knowledge adaptation and rate (plain tensors in, scalars out)."""
import torch
from torch.nn import functional as F


def logit_kd_loss(student_logits, teacher_logits, temperature):
    """Hinton KD: KL(softmax(teacher/T) || softmax(student/T)) * T^2, averaged over ROIs."""
    if student_logits.numel() == 0:
        return student_logits.sum() * 0
    t = F.softmax(teacher_logits / temperature, dim=1)
    log_s = F.log_softmax(student_logits / temperature, dim=1)
    return F.kl_div(log_s, t, reduction="batchmean") * temperature ** 2


def box_kd_loss(student_deltas, teacher_deltas, teacher_logits):
    """Smooth-L1 (beta 1) between student and teacher box deltas of the teacher's predicted class,
    on the ROIs the teacher calls foreground; zero when it sees none."""
    cls = teacher_logits.argmax(dim=1)
    num_classes = teacher_logits.shape[1] - 1
    fg = cls < num_classes
    if not fg.any():
        return student_deltas.sum() * 0
    rows = fg.nonzero().squeeze(1)
    s, t = student_deltas.view(len(cls), -1, 4), teacher_deltas.view(len(cls), -1, 4)
    col = cls[rows] if s.shape[1] > 1 else torch.zeros_like(rows)
    return F.smooth_l1_loss(s[rows, col], t[rows, col], beta=1.0)


def feature_matching_loss(student, teacher, keys):
    """Mean over ``keys`` of the MSE between student and teacher feature maps of equal shape, each
    relative to the teacher's mean square (so levels of any magnitude weigh alike)."""
    for k in keys:
        if student[k].shape != teacher[k].shape:
            raise ValueError(f"feature matching at {k!r}: student {tuple(student[k].shape)} vs teacher "
                             f"{tuple(teacher[k].shape)}; the cloud tail must have the teacher's architecture")
    return sum(F.mse_loss(student[k], teacher[k]) / teacher[k].pow(2).mean().clamp_min(1e-6) for k in keys) / len(keys)


def rate_loss(likelihoods, num_pixels, weights=None):
    """Bits per input pixel estimated from the codec's likelihoods; with per-image ``weights`` [N], the
    weighted sum of each image's bits over ``num_pixels``."""
    if not likelihoods:
        return torch.zeros(())
    bits = sum(-torch.log2(lik).flatten(1).sum(1) for lik in likelihoods.values())
    return (bits if weights is None else bits * weights).sum() / num_pixels


def sample_rates(codec, num_images, rate_weights, rate_weight):
    """(rates, weights) of one training batch: for a variable-rate codec (``rate_weights``: one rate weight per
    level, increasing) each image's level drawn uniformly over 0..L-1 and its weight interpolated log-linearly
    between the levels' (as the codec interpolates its gains); otherwise (None, None): the codec's one rate
    at ``rate_weight``."""
    levels = codec.config.get("rate_levels", 1) if codec is not None else 1
    if levels == 1:
        return None, None
    w = torch.as_tensor(list(rate_weights), dtype=torch.float32)
    if len(w) != levels or not bool((w > 0).all()) or not bool((w[1:] > w[:-1]).all()):
        raise ValueError(f"MODEL.ECCENTRIC.CODEC.RATE_WEIGHTS must hold {levels} positive, increasing rate weights "
                         f"(one per level), got {list(rate_weights)}")
    rates = torch.rand(num_images) * (levels - 1)
    lo = rates.floor().long().clamp(max=levels - 2)
    t = rates - lo
    return rates, torch.exp(w.log()[lo] * (1 - t) + w.log()[lo + 1] * t)
