"""Loading and saving weights: the one checked loader (both tasks), EccentricRCNN's halves and edge initialisation."""
import logging
import os
import re

import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.checkpoint.c2_model_loading import align_and_update_state_dicts
from detectron2.modeling import build_model

from .codec.feature_codec import rename_legacy_keys
from .config import STAGES

logger = logging.getLogger(__name__)
_GATES = ("offload_gate.", "region_gate.")  # fitted gates: what EDGE.WEIGHTS is for


def edge_prefixes(model):
    """Parameter-name prefixes of what an edge device holds."""
    prefixes = ["edge_detector.", *_GATES]
    if model.offload_mode == "features":
        split = STAGES.index(model.split_backbone.split_at)
        bu = "backbone.bottom_up."
        prefixes += [bu + s + "." for s in STAGES[:split + 1]]
        prefixes += [bu + "codec." + c for c in model.codec.param_prefixes("edge")]
    return tuple(prefixes)


def cloud_prefixes(model):
    """Parameter-name prefixes of what the cloud holds."""
    if model.offload_mode == "image":
        return ("backbone.", "proposal_generator.", "roi_heads.")
    split = STAGES.index(model.split_backbone.split_at)
    bu = "backbone.bottom_up."
    return (tuple(bu + s + "." for s in STAGES[split + 1:])
            + tuple(bu + "codec." + c for c in model.codec.param_prefixes("cloud"))
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


MAX_MISSING = 0.1  # an evaluated model that its checkpoints leave more than this fraction unfilled is refused
_FIX = "Use the config the checkpoint was trained with, or a checkpoint of this config's architecture."
_EDGE_FIX = ("Use the edge config the checkpoint was trained with (detection: MODEL.ECCENTRIC.EDGE.*, CODEC.*, "
             "ROI_HEADS.NUM_CLASSES; classification: MODEL.CLS.EDGE_*), or MODEL.ECCENTRIC.EDGE.WEIGHTS '' to keep "
             "MODEL.WEIGHTS.")


def check_state(model, state, source, part="", fix=_FIX):
    """The entries of ``state`` (a name -> tensor dict under ``model``'s names) that ``model`` holds, checked:
    a tensor whose shape differs from the model's, or a state that fills none of the model's tensors, is
    refused with a ValueError naming ``source``, the first mismatching tensors with both shapes, and ``fix``.
    ``part`` ("edge", ...) names what ``state`` is meant to fill. Shared by detection and classification. A codec
    saved under its pre-CompressAI names is renamed first (:func:`.codec.feature_codec.rename_legacy_keys`)."""
    state, own = rename_legacy_keys(state), model.state_dict()
    picked = {k: v for k, v in state.items() if k in own}
    wrong = [f"{k}: {tuple(v.shape)} in the file, {tuple(own[k].shape)} in the model"
             for k, v in picked.items() if tuple(v.shape) != tuple(own[k].shape)]
    if wrong:
        raise ValueError(f"{source} does not match the config: it does not fit this model's {part or 'tensors'} "
                         f"({len(wrong)} tensors have other shapes, e.g. {'; '.join(wrong[:3])}). {fix}")
    if not picked:
        raise ValueError(f"{source} holds none of this model's {part + ' ' if part else ''}tensors. {fix}")
    return picked


# the layers whose shape follows the class count (Detectron2's fine-tuning skips them when it differs)
_CLASS_LAYERS = re.compile(r"(^|\.)roi_heads\.(box_predictor\.(cls_score|bbox_pred)|mask_head\.predictor)\.")


def drop_class_layers(model, state, source):
    """``state`` without the class-dependent predictor tensors whose shapes differ from ``model``'s (a checkpoint
    trained on another class count, e.g. COCO's 80, initialising a model for yours): those start fresh, as in
    Detectron2's fine-tuning, and a warning says so. Every other mismatch is left for :func:`check_state`."""
    own = model.state_dict()
    fresh = [k for k, v in state.items() if _CLASS_LAYERS.search(k) and k in own and v.shape != own[k].shape]
    if fresh:
        logger.warning("%s was trained on another class count: its %d class-dependent predictor tensors (%s) are not "
                       "loaded and start fresh for MODEL.ROI_HEADS.NUM_CLASSES %s (fine-tuning)", source, len(fresh),
                       summarize_names(fresh), getattr(getattr(model, "roi_heads", None), "num_classes", "?"))
    return {k: v for k, v in state.items() if k not in fresh}


def _same(a, b):
    """Equal tensors up to fp16 export rounding."""
    return a.shape == b.shape and torch.allclose(a.float(), b.float(), rtol=1e-3, atol=1e-5)


def check_edge_kept(weights, edge):
    """At evaluation, refuse an EDGE.WEIGHTS ``edge`` that would replace edge tensors that MODEL.WEIGHTS ``weights``
    holds (same shapes) with other values: a trained edge (a jointly adapted one, or one trained on after its
    export) would silently give way to another. A fitted gate (``offload_gate.``, ``region_gate.``) replacing the model's own is
    what EDGE.WEIGHTS is for. Both are ``(source, state)`` pairs. Shared by detection and classification."""
    held = weights[1]
    changed = [k for k, v in edge[1].items() if not k.startswith(_GATES) and k in held
               and held[k].shape == v.shape and not _same(v, held[k])]
    if changed:
        raise ValueError(f"{edge[0]} would replace {len(changed)} edge tensors that {weights[0]} holds with other "
                         f"values ({summarize_names(changed)}): the model would be evaluated with another edge than "
                         f"the one it was trained with. Set MODEL.ECCENTRIC.EDGE.WEIGHTS \"\" to evaluate MODEL.WEIGHTS "
                         f"as trained (its edge included); to evaluate that other edge on purpose, write one checkpoint "
                         f"that holds it.")


def load_checked(model, weights=None, edge=None, complete=False):
    """Load ``weights`` (MODEL.WEIGHTS) and ``edge`` (MODEL.ECCENTRIC.EDGE.WEIGHTS), each a ``(source, state)``
    pair or None, into ``model`` after :func:`check_state`; a tensor that ``edge`` provides is not taken from
    ``weights``. What neither fills is logged by module; with ``complete`` (an evaluated model) more than
    MAX_MISSING of the model unfilled by ``weights`` and ``edge`` is refused, and so is an ``edge`` that would replace a
    trained edge (:func:`check_edge_kept`); without it (training), ``weights``
    of another class count initialise all but the class-dependent layers (:func:`drop_class_layers`). Returns the
    loaded tensors."""
    weights, edge = [(s[0], rename_legacy_keys(s[1])) if s else None for s in (weights, edge)]
    loaded = check_state(model, edge[1], edge[0], "edge", _EDGE_FIX) if edge else {}
    if weights and edge and complete:
        check_edge_kept(weights, (edge[0], loaded))
    if weights:
        state = {k: v for k, v in weights[1].items() if k not in loaded}
        if not complete:
            state = drop_class_layers(model, state, weights[0])
        loaded.update(check_state(model, state, weights[0]))
    if not loaded:
        return loaded
    model.load_state_dict(loaded, strict=False)
    own = model.state_dict()
    missing = [k for k in own if k not in loaded]
    sources = " with ".join(source for source, _ in filter(None, (weights, edge)))
    if weights and complete and len(missing) > MAX_MISSING * len(own):
        raise ValueError(f"{sources} does not match the config: {len(missing)} of the model's {len(own)} tensors are "
                         f"not in it ({summarize_names(missing)}). Is it the checkpoint of this config? A model "
                         f"with an edge detector may also need its MODEL.ECCENTRIC.EDGE.WEIGHTS.")
    logger.info("Loaded %d tensors from %s", len(loaded), sources)
    if missing:
        logger.warning("%d tensors of the model are not in %s and keep their initial values: %s", len(missing),
                       sources, summarize_names(missing))
    return loaded


def summarize_names(names, limit=8):
    """Tensor names grouped by module (at most 3 levels deep), with counts: "roi_heads.adapters.p2 (2), ..."."""
    groups = {}
    for name in names:
        parts = name.split(".")[:-1] or [name]
        module = ".".join(parts[:3])
        groups[module] = groups.get(module, 0) + 1
    text = ", ".join(f"{m} ({n})" for m, n in list(groups.items())[:limit])
    return text + (f", and {len(groups) - limit} more modules" if len(groups) > limit else "")


def read_weights(model, path, names=None):
    """The tensors of checkpoint ``path`` (a file or a Detectron2 model-zoo URL) under ``model``'s names, read as
    Detectron2 does: Detectron2 .pth/.pkl, and Caffe2/pycls files through its name-matching heuristics (against
    the model tensors ``names``, default all). A half checkpoint (:func:`save_halves`) of the other half than the
    model's ``half`` is refused."""
    checkpointer = DetectionCheckpointer(model)
    try:
        checkpoint = checkpointer._load_file(checkpointer.path_manager.get_local_path(path))
    except Exception as e:  # a file that is not a checkpoint: torch/pickle say why
        raise ValueError(f"{path!r} is not a readable checkpoint: {type(e).__name__}: {e}") from None
    saved, half = checkpoint.get("half"), getattr(model, "half", "both")
    if saved is not None and half != "both" and saved != half:
        raise ValueError(f"{path} holds the {saved} half, but this model is the {half} half: pass {half}.pth "
                         f"(eccentric_det.checkpoint.save_halves writes both)")
    state = checkpoint["model"]
    checkpointer._convert_ndarray_to_tensor(state)
    if checkpoint.get("matching_heuristics", False):
        own = {k: v for k, v in model.state_dict().items() if names is None or k in names}
        state = align_and_update_state_dicts(own, state, c2_conversion=checkpoint.get("__author__") == "Caffe2")
    if state and all(k.startswith("module.") for k in state):  # saved from a DistributedDataParallel model
        state = {k[len("module."):]: v for k, v in state.items()}
    return rename_legacy_keys(state)


def _edge_part(model):
    return edge_prefixes(model) if model.offload_mode == "features" else ("edge_detector.", *_GATES)


def _read_edge(model, path):
    """The edge tensors of ``path`` under the model's names. For Independent ECC the trunk of a feature-mode
    checkpoint moves into the edge detector."""
    prefixes = _edge_part(model)
    state = read_weights(model, path, {k for k in model.state_dict() if k.startswith(prefixes)})
    if model.offload_mode == "image":
        state = {k.replace("backbone.bottom_up.", "edge_detector.backbone.bottom_up.", 1)
                 if k.startswith(tuple(f"backbone.bottom_up.{s}." for s in STAGES)) else k: v
                 for k, v in state.items()}
    return {k: v for k, v in state.items() if k.startswith(prefixes)}


def load_edge_weights(model, path):
    """Initialise the edge (trunk, edge detector, gate) from a checkpoint, leaving the rest alone; a checkpoint
    whose edge tensors do not fit the model, or that holds none, is refused (:func:`check_state`)."""
    picked = check_state(model, _read_edge(model, path), f"{path} (MODEL.ECCENTRIC.EDGE.WEIGHTS)", "edge", _EDGE_FIX)
    model.load_state_dict(picked, strict=False)
    return picked


def load_weights(model, cfg, complete=False, label="MODEL.WEIGHTS"):
    """MODEL.WEIGHTS and MODEL.ECCENTRIC.EDGE.WEIGHTS into a detection model, checked (:func:`load_checked`).
    EDGE.WEIGHTS supplies the edge trunk, edge detector and gate: those tensors are not taken from MODEL.WEIGHTS
    (so a cloud teacher's checkpoint initialises a model with an edge of another width, and a fitted gate replaces
    a model's own). It must not overwrite the codec (``backbone.bottom_up.codec.``): a codec tensor that
    MODEL.WEIGHTS holds with other values is refused with a ValueError that says what to do; codec tensors
    MODEL.WEIGHTS lacks are taken. ``complete``: refuse checkpoints that leave much of the model unfilled
    (evaluation). ``label``: what MODEL.WEIGHTS is, in the log and the errors (the distillation teacher's weights
    say so). Returns the loaded tensors."""
    path, edge_path = cfg.MODEL.WEIGHTS, cfg.MODEL.ECCENTRIC.EDGE.WEIGHTS
    for p in (path, edge_path):
        if p and not (p.startswith(("detectron2://", "http://", "https://")) or os.path.isfile(p)):
            raise FileNotFoundError(f"Checkpoint {p!r} not found: check {label} / "
                                    f"MODEL.ECCENTRIC.EDGE.WEIGHTS (committed FashionDet models are in checkpoints/)")
    edge = (f"{edge_path} (MODEL.ECCENTRIC.EDGE.WEIGHTS)", _read_edge(model, edge_path)) if edge_path else None
    weights = None
    if path:
        names = {k for k in model.state_dict() if not (edge and k in edge[1])}
        weights = (f"{path} ({label})", read_weights(model, path, names))
        if edge:
            _check_codec_kept(model, weights[1], edge[1], path, edge_path)
    return load_checked(model, weights, edge, complete)


_CODEC = "backbone.bottom_up.codec."


def _check_codec_kept(model, held, edge, path, edge_path):
    """Refuse an EDGE.WEIGHTS state ``edge`` that would replace codec tensors that MODEL.WEIGHTS' ``held`` holds
    with other values (beyond fp16 rounding): a trained codec would silently give way to another, e.g. the
    untrained codec of a raw edge-training checkpoint."""
    changed = [k for k, v in edge.items() if k.startswith(_CODEC) and k in held and not _same(v, held[k])]
    if not changed:
        return
    trunk = STAGES[:STAGES.index(model.split_backbone.split_at) + 1]
    keep = " ".join([f"backbone.bottom_up.{s}" for s in trunk] + ["edge_detector", "offload_gate", "region_gate"])
    raise ValueError(f"{edge_path} (MODEL.ECCENTRIC.EDGE.WEIGHTS) would replace {len(changed)} codec tensors "
                     f"({_CODEC}*) that {path} (MODEL.WEIGHTS) holds with other values: EDGE.WEIGHTS supplies the edge "
                     f"trunk, edge detector and gate, never a trained codec. If MODEL.WEIGHTS is a complete trained "
                     f"model, set MODEL.ECCENTRIC.EDGE.WEIGHTS \"\"; to take only the edge of {edge_path}, export it "
                     f"without its codec: python tools/export_checkpoint.py {edge_path} EDGE.pth --keep {keep}")


def load_model(cfg, label="MODEL.WEIGHTS"):
    """Build the model of ``cfg`` in eval mode with its checked MODEL.WEIGHTS and MODEL.ECCENTRIC.EDGE.WEIGHTS
    (``label``: what MODEL.WEIGHTS is, for the log, e.g. the distillation teacher's)."""
    model = build_model(cfg)
    load_weights(model, cfg, complete=True, label=label)
    return model.eval()


def export_checkpoint(state_dict, path, fp16_min_numel=4096, **extra):
    """Save weights only (plus ``extra`` top-level entries); large floating-point tensors (conv/fc
    weights) as fp16, small ones (norm statistics, biases, the gate) as fp32. fp16 weights load back
    into fp32 models."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    small = {k: v.half() if v.is_floating_point() and v.numel() >= fp16_min_numel else v
             for k, v in state_dict.items()}
    torch.save({"model": small, "__author__": "eccentric_det", **extra}, path)
