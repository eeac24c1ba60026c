"""Saving and loading SplitTimmClassifier weights: whole models, one half, or an unsplit timm state dict."""
import logging
import os

import torch

from ..checkpoint import check_state, summarize_names

logger = logging.getLogger(__name__)
HALVES = ("edge_half.", "cloud_half.")


def save_weights(model, path, half_precision=True):
    """Write ``{"model": state_dict}`` (floating tensors as float16 when ``half_precision``) to ``path``."""
    state = {k: v.half() if half_precision and v.is_floating_point() else v for k, v in model.state_dict().items()}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    torch.save({"model": state}, path)
    return path


def read_state(path):
    """The state dict saved at ``path``; a plain timm state dict is renamed for both halves (:func:`timm_to_split`)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("model", state)
    if not any(k.startswith(HALVES + ("codec.",)) for k in state):
        state = timm_to_split(state)
    return state


def edge_state(state):
    """``state`` for the edge half: a checkpoint without an edge half (an unsplit, cloud-only model of the
    edge's timm model) gives its cloud model to the edge."""
    if not any(k.startswith("edge_half.") for k in state):
        state = {k.replace("cloud_half.", "edge_half.", 1): v for k, v in state.items()}
    return {k: v for k, v in state.items() if k.startswith("edge_half.")}


def load_state(model, state, source=""):
    """Load the keys of ``state`` that this model holds, checked by :func:`eccentric_det.checkpoint.check_state`
    (other shapes, or no tensor of the model, are refused); keys of parts it does not build (the other half, a
    pruned tail) are skipped. Returns the keys of the model's top-level modules that ``state`` covers but lacks."""
    take = check_state(model, state, source)
    model.load_state_dict(take, strict=False)
    covered = {k.split(".", 1)[0] for k in state}
    missing = [k for k in model.state_dict() if k not in take and k.split(".", 1)[0] in covered]
    logger.info("Loaded %d tensors from %s%s", len(take), source,
                f"; not in it: {summarize_names(missing)}" if missing else "")
    return missing


def load_weights(model, path):
    """:func:`load_state` of the checkpoint at ``path``."""
    return load_state(model, read_state(path), path)


def timm_to_split(state_dict):
    """An unsplit timm model's state dict under the names of both halves of a SplitTimmClassifier of that model
    (each half takes the keys it holds)."""
    return {f"{half}model.{k}": v for k, v in state_dict.items() for half in HALVES}
