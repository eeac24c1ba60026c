"""The sc2bench baseline: the cloud detector with its stem and res2 replaced by sc2bench's learned bottleneck
for ResNet (factorised prior), trained as sc2bench's entropic student in two stages: head distillation
(:func:`fit_sc2bench_bottleneck`), then the decoder and detector fine-tuned on the frozen, quantised encoder
(:func:`fit_sc2bench_detector`); saved and loaded with :func:`save_sc2bench` / :func:`load_sc2bench`. A
benchmark-only extra: ``sc2bench`` is imported here only.
"""
import logging
import os
import time

import torch
from detectron2.modeling import GeneralizedRCNN
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.solver import build_lr_scheduler, build_optimizer
from detectron2.structures import ImageList
from detectron2.utils.events import EventStorage
from torch import nn
from torch.nn import functional as F

from ..checkpoint import export_checkpoint
from ..codec import KIND_FEATURES, Payload
from ..distill.losses import rate_loss
from ..evaluation.flops import count_gflops

logger = logging.getLogger(__name__)

# sc2bench's bottleneck expects ImageNet-normalised input (pixel std ~57.6); Detectron2's caffe-style
# configs only subtract the mean (PIXEL_STD 1), so its input is rescaled by PIXEL_STD / this.
IMAGENET_PIXEL_STD = 57.6


def _require_sc2bench():
    try:
        from sc2bench.models.layer import FPBasedResNetBottleneck
    except ImportError as e:
        raise ImportError("The sc2bench baseline needs the sc2bench package (a benchmark-only extra): "
                          "pip install -e .[bench]") from e
    return FPBasedResNetBottleneck


class _TailFromRes2(nn.Module):
    """The stages after res2 of a Detectron2 ResNet, fed the (decoded) res2 feature."""

    def __init__(self, resnet):
        super().__init__()
        self.resnet = resnet

    def forward(self, x):
        outs = {"res2": x}
        for name, stage in zip(self.resnet.stage_names, self.resnet.stages):
            if name != "res2":
                x = stage(x)
                outs[name] = x
        return {f: outs[f] for f in self.resnet._out_features}


class Sc2benchDetector(nn.Module):
    """A stock Faster R-CNN (``GeneralizedRCNN`` with a ResNet-FPN) whose stem + res2 are replaced by
    sc2bench's ``FPBasedResNetBottleneck``: the edge runs the bottleneck encoder and entropy coder,
    the cloud decodes to a res2-shaped feature and runs the rest. The original stem and res2 stay as
    the distillation teacher of the bottleneck."""

    def __init__(self, detector, bottleneck_channels=24):
        super().__init__()
        if not isinstance(detector, GeneralizedRCNN) or not hasattr(detector.backbone, "bottom_up"):
            raise ValueError("The sc2bench baseline needs a stock GeneralizedRCNN with a ResNet-FPN backbone")
        resnet = detector.backbone.bottom_up
        if resnet.stage_names[0] != "res2":
            raise ValueError(f"The sc2bench baseline replaces res2; this ResNet starts at {resnet.stage_names[0]}")
        bottleneck_cls = _require_sc2bench()
        target = resnet._out_feature_channels["res2"]
        self.bottleneck_channels = bottleneck_channels
        self.bottleneck = bottleneck_cls(num_input_channels=3, num_bottleneck_channels=bottleneck_channels,
                                         num_target_channels=target).to(detector.device)
        # As in FeatureCodec, the coding range comes from bisection on the density (build_tables), not
        # from CompressAI's auxiliary loss, so both learned codecs get the same treatment.
        self.bottleneck.entropy_bottleneck.quantiles.requires_grad_(False)
        self.teacher_head = nn.Sequential(resnet.stem, resnet.stages[0]).eval().requires_grad_(False)
        self.detector = detector
        detector.backbone.bottom_up = _TailFromRes2(resnet)

    def bottleneck_input(self, images):
        """The preprocessed image tensor in ImageNet units, as sc2bench's bottleneck is designed for."""
        return images * (self.detector.pixel_std / IMAGENET_PIXEL_STD)

    def _coder(self):
        """The bottleneck, with its entropy tables built from the current weights."""
        if not self.bottleneck.updated:
            build_tables(self.bottleneck)
        return self.bottleneck

    @torch.no_grad()
    def forward(self, batched_inputs):
        det, bn = self.detector, self._coder()
        outputs = []
        for inp in batched_inputs:
            t0 = time.perf_counter()
            images = det.preprocess_image([inp])
            coded = bn.encode(self.bottleneck_input(images.tensor))
            n_bytes = len(Payload(KIND_FEATURES, b"SC2B", images.image_sizes[0], (inp["height"], inp["width"]),
                                  coded["strings"][0]).to_bytes())
            t1 = time.perf_counter()
            x = bn.decode(**coded)
            result = _cloud(det, images, det.backbone(x))[0]
            out = {"instances": detector_postprocess(result, inp["height"], inp["width"])}
            out["eccentric"] = {"bytes": n_bytes, "offloaded": True, "score": 1.0, "edge_ms": (t1 - t0) * 1e3,
                                "cloud_ms": (time.perf_counter() - t1) * 1e3}
            outputs.append(out)
        return outputs

    @torch.no_grad()
    def gflops(self, batched_input):
        det, bn = self.detector, self._coder()
        images = det.preprocess_image([batched_input])
        x_in = self.bottleneck_input(images.tensor)
        x = bn.decode(**bn.encode(x_in))
        tail = count_gflops(lambda f: _cloud(det, ImageList(f, images.image_sizes), det.backbone(f)), (x,),
                            det.backbone, det.proposal_generator, det.roi_heads)
        encoder = count_gflops(bn.encoder, (x_in,))
        return {"edge": encoder, "encoder": encoder,
                "cloud": count_gflops(bn.decoder, (torch.round(bn.encoder(x_in)),)) + tail,
                "cloud_only": count_gflops(self.teacher_head, (images.tensor,)) + tail}


@torch.no_grad()
def build_tables(bottleneck):
    """CompressAI ``update`` with the coding range found by bisection (as ``FeatureCodec.update``)."""
    bottleneck.entropy_bottleneck.update(force=True, update_quantiles=True)
    bottleneck.updated = True


def _cloud(det, images, features):
    proposals, _ = det.proposal_generator(images, features, None)
    return det.roi_heads(images, features, proposals, None)[0]


def fit_sc2bench_bottleneck(model, batches, iterations, rate_weight=0.01, lr=1e-3):
    """Stage 1 of the entropic student, head distillation: train the bottleneck to reproduce the
    teacher's res2 feature (MSE) at ``rate_weight`` x bits per pixel. ``batches`` yields lists of
    Detectron2 input dicts. Returns the last losses."""
    bn, det = model.bottleneck, model.detector
    bn.train()
    opt = torch.optim.Adam([p for p in bn.parameters() if p.requires_grad], lr=lr)
    losses = {}
    for it, batch in zip(range(iterations), batches):
        images = det.preprocess_image(batch).tensor
        with torch.no_grad():
            target = model.teacher_head(images)
        y_hat, likelihoods = bn.entropy_bottleneck(bn.encoder(model.bottleneck_input(images)))
        x_hat = bn.decoder(y_hat)
        bpp = rate_loss({"y": likelihoods}, images.shape[0] * images.shape[-2] * images.shape[-1])
        losses = {"distill": F.mse_loss(x_hat, target), "bpp": bpp}
        opt.zero_grad()
        (losses["distill"] + rate_weight * bpp).backward()
        opt.step()
        _log_progress("stage 1 (head distillation)", it, iterations, losses)
    bn.eval()
    bn.updated = False  # entropy tables are rebuilt from the new weights before coding
    return {k: float(v.detach()) for k, v in losses.items()}


def fit_sc2bench_detector(model, batches, iterations, cfg, evaluate=None, eval_period=0):
    """Stage 2 of the entropic student: the encoder and entropy model stay frozen (the edge is fixed);
    the decoder and the detector after res2 learn the detection losses on the quantised latent, as
    sc2bench's bottleneck feeds its decoder once its tables are built. Optimiser and schedule are
    ``cfg.SOLVER``'s (Detectron2's), over ``iterations``. ``evaluate(model, iteration)``, if given, is called
    every ``eval_period`` iterations and after the last (a learning curve on held-out images), the model in
    eval mode; each module's mode is restored after it. Returns the last losses."""
    bn, det = model.bottleneck, model.detector
    build_tables(bn)
    bn.encoder.requires_grad_(False)
    bn.entropy_bottleneck.requires_grad_(False)
    trainable = nn.ModuleDict({"decoder": bn.decoder, "detector": det}).train()
    model.teacher_head.eval()
    solver_cfg = cfg.clone()
    solver_cfg.defrost()
    solver_cfg.SOLVER.MAX_ITER = iterations
    opt = build_optimizer(solver_cfg, trainable)
    scheduler = build_lr_scheduler(solver_cfg, opt)
    losses = {}
    with EventStorage(0):  # Detectron2's heads log to it
        for it, batch in zip(range(iterations), batches):
            images = det.preprocess_image(batch)
            gt = [x["instances"].to(det.device) for x in batch]
            features = det.backbone(bn(model.bottleneck_input(images.tensor)))
            proposals, losses = det.proposal_generator(images, features, gt)
            losses.update(det.roi_heads(images, features, proposals, gt)[1])
            opt.zero_grad()
            sum(losses.values()).backward()
            opt.step()
            scheduler.step()
            _log_progress("stage 2 (detector fine-tuning)", it, iterations, losses)
            if evaluate is not None and ((eval_period > 0 and (it + 1) % eval_period == 0) or it + 1 == iterations):
                _in_eval_mode(model, evaluate, it + 1)
    trainable.eval()
    return {k: float(v.detach()) for k, v in losses.items()}


def _in_eval_mode(model, evaluate, iteration):
    """``evaluate(model, iteration)`` with the whole model in eval mode, each module's own mode restored after."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        evaluate(model, iteration)
    finally:
        for m, training in modes:
            m.training = training


def _log_progress(stage, it, iterations, losses, period=20):
    if (it + 1) % period == 0 or it + 1 == iterations:
        logger.info("sc2bench %s iter %d/%d: %s", stage, it + 1, iterations,
                    ", ".join(f"{k} {float(v.detach()):.4f}" for k, v in losses.items()))


# Entropy tables: rebuilt from the weights after loading (their shapes depend on the weights).
_TABLES = ("_quantized_cdf", "_offset", "_cdf_length")


def save_sc2bench(model, path, **meta):
    """Save a trained :class:`Sc2benchDetector` (weights, fp16 where large) with ``meta`` (rate weight,
    iterations, ...) under the ``sc2bench`` key; entropy tables are left out."""
    state = {k: v for k, v in model.state_dict().items() if not k.endswith(_TABLES)}
    export_checkpoint(state, path, sc2bench={**meta, "bottleneck_channels": model.bottleneck_channels})


def load_sc2bench(detector, path):
    """The :class:`Sc2benchDetector` around ``detector`` (the cloud config's model) with the weights of
    ``path``, a checkpoint of ``tools/train_sc2bench.py``. Returns (model, its metadata)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"sc2bench checkpoint {path!r} not found: train one with tools/train_sc2bench.py")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a file that is not a checkpoint: torch/pickle say why
        raise ValueError(f"{path!r} is not a readable checkpoint: {type(e).__name__}: {e}") from None
    meta = checkpoint.get("sc2bench") if isinstance(checkpoint, dict) else None
    if not isinstance(meta, dict) or "bottleneck_channels" not in meta:
        raise ValueError(f"{path!r} is not an sc2bench baseline checkpoint (made by tools/train_sc2bench.py)")
    model = Sc2benchDetector(detector, meta["bottleneck_channels"])
    state = {k: v.float() if v.is_floating_point() else v for k, v in checkpoint["model"].items()}
    try:
        incompatible = model.load_state_dict(state, strict=False)
    except RuntimeError as e:
        raise ValueError(f"sc2bench checkpoint {path!r} does not match the cloud config: {e}") from None
    missing = [k for k in incompatible.missing_keys if not k.endswith(_TABLES)]
    if missing or incompatible.unexpected_keys:
        raise ValueError(f"sc2bench checkpoint {path!r} does not match the cloud config: missing {missing[:3]}, "
                         f"unexpected {incompatible.unexpected_keys[:3]}")
    model.bottleneck.updated = False
    return model.eval(), meta
