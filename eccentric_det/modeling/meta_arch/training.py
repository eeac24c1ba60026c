"""The training objective of EccentricRCNN, chosen by ``MODEL.ECCENTRIC.DISTILL.MODE``.

* ``task``: ground-truth losses of the cloud (through the codec) and of the edge detector, plus
  lambda x rate.
* ``kd``: knowledge distillation teacher -> edge detector: task losses, ROI logits with temperature,
  box deltas, and FPN feature hints (through 1x1 hint projections).
* ``adapt``: knowledge adaptation edge -> cloud: the cloud side learns to consume the edge's coded
  features: feature matching against the frozen teacher at the split and FPN levels, ROI logit
  distillation, task losses, plus lambda x rate. With ``DISTILL.EDGE_LOSS_WEIGHT`` > 0 the edge detector's task
  losses and ROI distillation join, at that weight (joint adaptation, with ``DISTILL.FREEZE`` empty: the edge
  trunk learns for the cloud and for its own detector at once).
* ``reconstruct``: the codec's cheap pre-training stage: the decoded feature matched to the teacher's at the
  split, plus lambda x rate; neither the cloud tail nor the heads run.

A variable-rate codec (``CODEC.RATE_WEIGHTS``) trains every level at once: each image of a batch is coded at a
level drawn uniformly (fractional levels included) and its rate weighted by that level's lambda.
"""
import torch
from detectron2.utils.events import get_event_storage
from torch import nn

from ...distill.losses import box_kd_loss, feature_matching_loss, logit_kd_loss
from ...distill.objective import TrainingObjective
from ...distill.teacher import build_teacher, teacher_cfg
from ...split import run_split
from ..roi_heads.knowledge_adapted import teacher_box_outputs


class EccentricLosses(TrainingObjective):
    """Computes the loss dict for one batch. The mode checks, weights, rate term, ``DISTILL.FREEZE`` and the
    teacher's life are :class:`~eccentric_det.distill.objective.TrainingObjective`'s; detection adds the
    ``reconstruct`` mode, the edge detector's checks, box distillation and its teacher (built on the first training
    step, so evaluation never loads it)."""

    MODES = TrainingObjective.MODES + ("reconstruct",)

    def __init__(self, cfg):
        super().__init__(cfg)
        E = cfg.MODEL.ECCENTRIC
        D = E.DISTILL
        if D.MODE == "kd" and not E.EDGE.DETECTOR:
            raise ValueError("DISTILL.MODE 'kd' distils into the edge detector: set MODEL.ECCENTRIC.EDGE.DETECTOR True")
        if D.EDGE_LOSS_WEIGHT < 0 or (D.EDGE_LOSS_WEIGHT > 0 and D.MODE == "adapt" and not E.EDGE.DETECTOR):
            raise ValueError(f"DISTILL.EDGE_LOSS_WEIGHT {D.EDGE_LOSS_WEIGHT} weighs the edge detector's losses in "
                             f"adaptation: it must be at least 0, and above 0 needs MODEL.ECCENTRIC.EDGE.DETECTOR True")
        self.w_box = D.BOX_WEIGHT
        self._teacher_bottom_up = {}

    def build_teacher(self):
        """The Detectron2 teacher (:func:`~eccentric_det.distill.teacher.build_teacher`); its ResNet bottom-up's
        outputs, the split level included (feature matching at the split needs it), are kept for each batch."""
        D = self._cfg.MODEL.ECCENTRIC.DISTILL
        teacher = build_teacher(D.TEACHER_CONFIG, D.TEACHER_WEIGHTS, self._cfg.MODEL.DEVICE, student=self._cfg)
        bottom_up = teacher.backbone.bottom_up
        split = self._cfg.MODEL.ECCENTRIC.SPLIT_AT
        if split not in bottom_up._out_features:
            bottom_up._out_features = list(bottom_up._out_features) + [split]
        bottom_up.register_forward_hook(lambda m, i, o: self._teacher_bottom_up.update(o))
        return teacher

    def teacher_fpn_channels(self):
        D = self._cfg.MODEL.ECCENTRIC.DISTILL
        return teacher_cfg(D.TEACHER_CONFIG, student=self._cfg).MODEL.FPN.OUT_CHANNELS

    def __call__(self, model, batched_inputs):
        if self.decay != "none":  # DISTILL.DECAY follows the trainer's iteration
            self.iteration = get_event_storage().iter
        images = model.preprocess_image(batched_inputs)
        gt = [x["instances"].to(model.device) for x in batched_inputs] if "instances" in batched_inputs[0] else None
        losses, teacher_out = {}, None
        if self.mode != "task":
            teacher_out = self._run_teacher(images)
        trunk = split = weights = None
        if model.offload_mode == "features":
            edge, codec, tail = model.split_parts()
            if self.mode == "kd":  # only the edge detector learns: the codec and the cloud do not run
                trunk = edge(images.tensor)[1]
            else:
                rates, weights = self.sample_rates(codec, len(images))
                if self.mode == "reconstruct":
                    tail = _no_tail
                split = run_split(edge, codec, tail, images.tensor, rate=rates)
                trunk = split.extra
        if self.mode == "reconstruct":
            return self._reconstruct_losses(model, images, split, weights, teacher_out)
        if self.mode != "kd":
            losses.update(self._cloud_losses(model, images, split, weights, gt, teacher_out))
        if model.edge_detector is not None and self.w_edge > 0:
            losses.update(self._edge_losses(model, images, trunk, gt, teacher_out))
        return losses

    def _run_teacher(self, images):
        self._teacher_bottom_up.clear()
        with torch.no_grad():
            feats = self.teacher.backbone(images.tensor)
        return {"fpn": feats, "bottom_up": dict(self._teacher_bottom_up)}

    def _scaled(self, d, w, prefix=""):
        return {prefix + k: v * w for k, v in d.items()}

    def _cloud_losses(self, model, images, split, weights, gt, teacher_out):
        """``split``: the :class:`~eccentric_det.split.SplitOutput` of the batch (None in image mode);
        ``weights``: each image's rate weight (variable rate) or None."""
        # Independent ECC: the cloud is a plain detector on images
        features = model.backbone(images.tensor) if split is None else split.out
        proposals, rpn_losses = model.proposal_generator(images, features, gt)
        _, det_losses = model.roi_heads(images, features, proposals, gt)
        losses = self._scaled({**rpn_losses, **det_losses}, self.w_task)
        if split is not None:
            losses.update(self._rate_losses(images, split, weights))
        if self.mode == "adapt":
            level = model.split_backbone.split_at
            student = {level: split.x_hat, **features}
            teacher = {level: teacher_out["bottom_up"][level], **teacher_out["fpn"]}
            scale = self.distill_scale
            losses["loss_feature_match"] = scale * self.w_feat * feature_matching_loss(student, teacher, list(student))
            losses.update(self._scaled(self._roi_kd(model.roi_heads, teacher_out["fpn"], prefix=""), scale))
        return losses

    def _rate_losses(self, images, split, weights):
        loss, bpp = self.rate_term(split.likelihoods, sum(h * w for h, w in images.image_sizes), weights)
        get_event_storage().put_scalar("rate_bpp", float(bpp.detach()))
        return {"loss_rate": loss}

    def _reconstruct_losses(self, model, images, split, weights, teacher_out):
        if split is None:
            raise ValueError("DISTILL.MODE 'reconstruct' pre-trains a feature codec: set OFFLOAD_MODE 'features'")
        level = model.split_backbone.split_at
        match = feature_matching_loss({level: split.x_hat}, {level: teacher_out["bottom_up"][level]}, [level])
        return {"loss_feature_match": self.w_feat * match, **self._rate_losses(images, split, weights)}

    def _edge_losses(self, model, images, trunk, gt, teacher_out):
        features, _, task = model.edge_detector(images, trunk if trunk is not None else images.tensor, gt)
        losses = self._scaled(task, self.w_task, prefix="edge_")
        if self.mode == "kd":
            hints = {k: model.kd_hint[k](v) for k, v in features.items()}
            losses["edge_loss_feature_hint"] = self.w_feat * feature_matching_loss(hints, teacher_out["fpn"], list(hints))
        if self.mode in ("kd", "adapt"):
            losses.update(self._roi_kd(model.edge_detector.roi_heads, teacher_out["fpn"], prefix="edge_"))
        return self._scaled(losses, self.w_edge)

    def _roi_kd(self, student_heads, teacher_features, prefix):
        boxes, (s_logits, s_deltas) = student_heads.last_boxes, student_heads.last_outputs
        t_logits, t_deltas = teacher_box_outputs(self.teacher.roi_heads, teacher_features, boxes)
        return {prefix + "loss_kd_logits": self.w_logit * logit_kd_loss(s_logits, t_logits, self.T),
                prefix + "loss_kd_boxes": self.w_box * box_kd_loss(s_deltas, t_deltas, t_logits)}


def _no_tail(x_hat):
    return None


def build_kd_hints(edge_fpn_channels, teacher_fpn_channels, levels):
    """1x1 projections from the edge's FPN width to the teacher's, for feature hints (FitNets)."""
    return nn.ModuleDict({k: nn.Conv2d(edge_fpn_channels, teacher_fpn_channels, 1) for k in levels})
