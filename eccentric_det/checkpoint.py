"""Loading and saving EccentricRCNN weights: whole models, the edge and cloud halves, edge initialisation."""
import logging
import os

import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model

from .modeling.backbone.resnet_stages import STAGES

logger = logging.getLogger(__name__)
_SHARED_CODEC = ("entropy_bottleneck.", "gaussian_conditional.", "h_s.")
_EDGE_CODEC = ("encoder.", "h_a.")


def edge_prefixes(model):
    """Parameter-name prefixes of what an edge device holds."""
    prefixes = ["edge_detector.", "offload_gate."]
    if model.offload_mode == "features":
        split = STAGES.index(model.split_backbone.split_at)
        bu = "backbone.bottom_up."
        prefixes += [bu + s + "." for s in STAGES[:split + 1]]
        prefixes += [bu + "codec." + c for c in _EDGE_CODEC + _SHARED_CODEC]
    return tuple(prefixes)


def cloud_prefixes(model):
    """Parameter-name prefixes of what the cloud holds."""
    if model.offload_mode == "image":
        return ("backbone.", "proposal_generator.", "roi_heads.")
    split = STAGES.index(model.split_backbone.split_at)
    bu = "backbone.bottom_up."
    return (tuple(bu + s + "." for s in STAGES[split + 1:]) + (bu + "codec.decoder.",)
            + tuple(bu + "codec." + c for c in _SHARED_CODEC)
            + ("backbone.fpn_", "backbone.top_block.", "proposal_generator.", "roi_heads."))


def half_state_dict(model, half):
    """The state dict of one half ("edge" or "cloud"), with the full model's parameter names."""
    prefixes = edge_prefixes(model) if half == "edge" else cloud_prefixes(model)
    return {k: v for k, v in model.state_dict().items() if k.startswith(prefixes)}


def save_halves(model, output_dir):
    """Write ``edge.pth`` and ``cloud.pth`` (Detectron2 checkpoint format) to ``output_dir``."""
    os.makedirs(output_dir, exist_ok=True)
    paths = {}
    for half in ("edge", "cloud"):
        paths[half] = os.path.join(output_dir, f"{half}.pth")
        torch.save({"model": half_state_dict(model, half), "half": half}, paths[half])
    return paths


def load_edge_weights(model, path):
    """Initialise the edge (trunk, edge detector, gate) from a checkpoint, leaving the rest alone.
    For Independent ECC the trunk of a feature-mode checkpoint moves into the edge detector. A
    checkpoint whose edge tensors do not fit the model, or that holds none, is refused (never a silent
    partial load)."""
    state = DetectionCheckpointer(model)._load_file(path)["model"]
    state = {k: torch.as_tensor(v) for k, v in state.items()}
    if model.offload_mode == "image":
        state = {k.replace("backbone.bottom_up.", "edge_detector.backbone.bottom_up.", 1)
                 if k.startswith(tuple(f"backbone.bottom_up.{s}." for s in STAGES)) else k: v
                 for k, v in state.items()}
    prefixes = edge_prefixes(model) if model.offload_mode == "features" else ("edge_detector.", "offload_gate.")
    own = model.state_dict()
    picked = {k: v for k, v in state.items() if k.startswith(prefixes) and k in own}
    wrong = [f"{k}: {tuple(v.shape)} in the file, {tuple(own[k].shape)} in the model"
             for k, v in picked.items() if v.shape != own[k].shape]
    if wrong:
        raise ValueError(f"{path} does not fit this model's edge (MODEL.ECCENTRIC.EDGE.WEIGHTS): {len(wrong)} tensors "
                         f"have other shapes, e.g. {'; '.join(wrong[:3])}. Use the edge config the checkpoint was "
                         f"trained with (MODEL.ECCENTRIC.EDGE.*, CODEC.*, ROI_HEADS.NUM_CLASSES).")
    if not picked:
        raise ValueError(f"{path} holds none of this model's edge tensors (names starting with "
                         f"{', '.join(prefixes[:3])}, ...): pass an edge checkpoint of this architecture as "
                         f"MODEL.ECCENTRIC.EDGE.WEIGHTS, or '' to keep MODEL.WEIGHTS")
    model.load_state_dict(picked, strict=False)
    logger.info("Loaded %d edge tensors from %s", len(picked), path)
    return picked


def load_model(cfg):
    """Build the model of ``cfg`` in eval mode with MODEL.WEIGHTS and then MODEL.ECCENTRIC.EDGE.WEIGHTS."""
    model = build_model(cfg)
    for path in (cfg.MODEL.WEIGHTS, cfg.MODEL.ECCENTRIC.EDGE.WEIGHTS):
        if path and not (path.startswith(("detectron2://", "http://", "https://")) or os.path.isfile(path)):
            raise FileNotFoundError(f"Checkpoint {path!r} not found: check MODEL.WEIGHTS / "
                                    f"MODEL.ECCENTRIC.EDGE.WEIGHTS (committed FashionDet models are in checkpoints/)")
    if cfg.MODEL.WEIGHTS:
        DetectionCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    if cfg.MODEL.ECCENTRIC.EDGE.WEIGHTS:
        load_edge_weights(model, cfg.MODEL.ECCENTRIC.EDGE.WEIGHTS)
    return model.eval()


def export_checkpoint(state_dict, path, fp16_min_numel=4096, **extra):
    """Save weights only (plus ``extra`` top-level entries); large floating-point tensors (conv/fc
    weights) as fp16, small ones (norm statistics, biases, the gate) as fp32. fp16 weights load back
    into fp32 models."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    small = {k: v.half() if v.is_floating_point() and v.numel() >= fp16_min_numel else v
             for k, v in state_dict.items()}
    torch.save({"model": small, "__author__": "eccentric_det", **extra}, path)
