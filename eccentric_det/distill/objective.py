"""The training layer both tasks share: ``MODEL.ECCENTRIC.DISTILL``'s mode checks and loss weights, the rate term
(``CODEC.RATE_WEIGHT``, a variable-rate codec's ``CODEC.RATE_WEIGHTS``), ``DISTILL.FREEZE`` and the frozen teacher,
built once on first use.

Detection (:class:`eccentric_det.modeling.meta_arch.training.EccentricLosses`) and classification
(:class:`eccentric_det.training.classification.ClsLosses`) subclass :class:`TrainingObjective` and add only what is
their own: their losses, their checks (what gives the edge its own answer), and how their teacher is built
(:meth:`TrainingObjective.build_teacher`).
"""
import math

from .losses import rate_loss, sample_rates


def freeze_parameters(model, prefixes):
    """Stop the parameters of ``model`` whose names start with one of ``prefixes`` (``DISTILL.FREEZE``) from
    training (before the optimizer is built); returns their names."""
    prefixes, frozen = tuple(prefixes), []
    for name, p in model.named_parameters():
        if prefixes and name.startswith(prefixes):
            p.requires_grad_(False)
            frozen.append(name)
    return frozen


def keep_frozen_in_eval(model, prefixes):
    """Put the modules of ``model`` under ``prefixes`` (``DISTILL.FREEZE``) in eval mode, so that their BatchNorm
    statistics stay as they are; call it after each ``model.train()``."""
    prefixes = tuple(prefixes)
    if not prefixes:
        return
    for name, m in model.named_modules():
        if name.startswith(prefixes):
            m.eval()


class TrainingObjective:
    """The loss dict of one batch for ``DISTILL.MODE`` (a subclass's ``__call__``), with what both tasks share:

    * the checks of ``DISTILL.MODE`` (one of :attr:`MODES`) and of its teacher (``DISTILL.TEACHER_CONFIG``);
    * the weights ``T`` (``TEMPERATURE``), ``w_logit``, ``w_feat``, ``w_task`` and ``w_edge`` (the edge's own
      answer's share: all of it where it is what trains, ``task`` and ``kd``, ``EDGE_LOSS_WEIGHT`` in ``adapt``), and
      ``DISTILL.DECAY``'s factor of the cloud's distillation weights at the training loop's :attr:`iteration`
      (:attr:`distill_scale`);
    * the rate term (:meth:`sample_rates`, :meth:`rate_term`);
    * ``DISTILL.FREEZE`` (:meth:`freeze_parameters`, :meth:`keep_frozen_in_eval`);
    * the frozen teacher (:attr:`teacher`), held outside the model's state and built by :meth:`build_teacher` on
      first use (never in ``task`` mode)."""

    MODES = ("task", "kd", "adapt")
    DECAYS = ("none", "cosine")

    def __init__(self, cfg):
        E, D = cfg.MODEL.ECCENTRIC, cfg.MODEL.ECCENTRIC.DISTILL
        if D.MODE not in self.MODES:
            raise ValueError(f"MODEL.ECCENTRIC.DISTILL.MODE must be one of {self.MODES}, got {D.MODE!r}")
        if D.MODE != "task" and not D.TEACHER_CONFIG:
            raise ValueError(f"DISTILL.MODE {D.MODE!r} needs a teacher: set MODEL.ECCENTRIC.DISTILL.TEACHER_CONFIG "
                             f"(and TEACHER_WEIGHTS)")
        self.mode, self.T = D.MODE, D.TEMPERATURE
        self.w_logit, self.w_feat, self.w_task = D.LOGIT_WEIGHT, D.FEATURE_WEIGHT, D.TASK_WEIGHT
        self.w_edge = D.EDGE_LOSS_WEIGHT if D.MODE == "adapt" else 1.0
        self.rate_weight, self.rate_weights = E.CODEC.RATE_WEIGHT, tuple(E.CODEC.RATE_WEIGHTS)
        self.freeze = tuple(D.FREEZE)
        if D.DECAY not in self.DECAYS:
            raise ValueError(f"MODEL.ECCENTRIC.DISTILL.DECAY must be one of {self.DECAYS}, got {D.DECAY!r}")
        self.decay, self.max_iter, self.iteration = D.DECAY, cfg.SOLVER.MAX_ITER, 0
        self._cfg = cfg
        self._teacher = None

    # ------------------------------------------------------------------ DISTILL.DECAY
    @property
    def distill_scale(self):
        """The factor of the cloud's distillation weights at :attr:`iteration` (set by the training loop): 1 without
        ``DISTILL.DECAY``, else a half cosine from 1 to 0 over ``SOLVER.MAX_ITER``."""
        if self.decay == "none" or self.mode != "adapt":
            return 1.0
        return 0.5 * (1.0 + math.cos(math.pi * min(self.iteration / max(self.max_iter, 1), 1.0)))

    # ------------------------------------------------------------------ teacher
    @property
    def teacher(self):
        """The frozen teacher (None in ``task`` mode), built on first use."""
        if self._teacher is None and self.mode != "task":
            self._teacher = self.build_teacher()
        return self._teacher

    def build_teacher(self):
        """The task's frozen teacher of ``DISTILL.TEACHER_CONFIG`` and ``TEACHER_WEIGHTS``."""
        raise NotImplementedError

    # ------------------------------------------------------------------ DISTILL.FREEZE
    def freeze_parameters(self, model):
        """:func:`freeze_parameters` under ``DISTILL.FREEZE``; returns the frozen parameters' names."""
        return freeze_parameters(model, self.freeze)

    def keep_frozen_in_eval(self, model):
        """:func:`keep_frozen_in_eval` under ``DISTILL.FREEZE``."""
        keep_frozen_in_eval(model, self.freeze)

    # ------------------------------------------------------------------ rate
    def sample_rates(self, codec, num_images):
        """(rates, weights) of one batch (:func:`eccentric_det.distill.losses.sample_rates`)."""
        return sample_rates(codec, num_images, self.rate_weights, self.rate_weight)

    def rate_term(self, likelihoods, num_pixels, weights=None):
        """(rate loss, bits per pixel) of one batch of ``num_pixels`` input pixels: ``CODEC.RATE_WEIGHT`` x bits per
        pixel, or with per-image ``weights`` (a variable-rate codec's, :meth:`sample_rates`) each image's bits
        weighted by its level's."""
        bpp = rate_loss(likelihoods, num_pixels)
        if weights is None:
            return self.rate_weight * bpp, bpp
        return rate_loss(likelihoods, num_pixels, weights.to(bpp.device)), bpp
