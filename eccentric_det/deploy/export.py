"""Export the edge half for a device: the network (trunk + codec encoder, and a hyperprior's h_a) to ONNX and
TorchScript, plus what the entropy coder needs, into one folder that :class:`~eccentric_det.edge.ExportedEdge`
runs (the format: :mod:`eccentric_det.edge.manifest`). This module loads the PyTorch model (Detectron2 or timm): run it where the model was trained.

The folder holds ``edge.json`` (the manifest: task, input preprocessing, codec, fingerprint, offload policy),
``edge.onnx``, ``edge.ts``, ``coder.pt`` (the CDF tables, plain tensors) and, for a hyperprior, ``h_s.ts``
(the scales are computed with PyTorch on the CPU on both sides, see :mod:`eccentric_det.codec.scale_indexes`).
A variable-rate codec's log-gains travel in ``coder.pt``: the device picks its rate at run time.
"""
import copy
import json
import os

import numpy as np
import torch
from compressai.layers import GDN
from torch import nn

from ..checkpoint import load_model
from ..classification import SplitTimmClassifier
from ..config import is_classification_config
from ..edge.manifest import BACKENDS, FORMAT, GAINS, H_S, MANIFEST, ONNX, TABLES, TORCHSCRIPT
from ..inputs import InputBuilder
from ..serving.config import get_serving_cfg
from ..tasks import get_eccentric_cfg
from ..training.classification import load_initial_weights



class EdgeNetwork(nn.Module):
    """Normalised network input [1, C, H, W] (and its true size [2] before padding) -> the latent y the edge
    codes, a hyperprior's z after it, then the edge's own answer when it has one (detection: boxes, scores,
    classes; classification: logits). ``edge``/``codec`` as in :func:`eccentric_det.split.run_split`;
    ``holder``: the module(s) owning ``edge``'s and ``answer``'s parameters; ``answer(x, extra, image_size)``."""

    def __init__(self, edge, codec, holder, answer=None):
        super().__init__()
        self.holder, self.codec, self.encoder = holder, codec, traceable(codec.analysis)
        self._edge, self._answer = edge, answer

    def forward(self, x, image_size):
        feature, extra = self._edge(x)
        y = self.encoder(feature)
        out = [y] + ([self.codec.hyper_analysis(y)] if self.codec.hyper else [])
        return tuple(out + (list(self._answer(x, extra, image_size)) if self._answer is not None else []))


class FrozenGDN(nn.Module):
    """A trained (inverse) GDN with its reparametrised beta and gamma fixed: CompressAI's parametriser is an
    autograd Function, which neither ONNX nor TorchScript traces. Computes what ``GDN.forward`` computes."""

    def __init__(self, gdn):
        super().__init__()
        with torch.no_grad():
            beta, gamma = gdn.beta_reparam(gdn.beta), gdn.gamma_reparam(gdn.gamma)
        self.register_buffer("beta", beta.detach().clone())
        self.register_buffer("gamma", gamma.detach().reshape(*gamma.shape, 1, 1).clone())
        self.inverse = gdn.inverse

    def forward(self, x):
        norm = nn.functional.conv2d(x**2, self.gamma, self.beta)
        return x * (torch.sqrt(norm) if self.inverse else torch.rsqrt(norm))


def traceable(module):
    """``module``, or a copy of it with every GDN frozen (:class:`FrozenGDN`) when it holds one."""
    if not any(isinstance(m, GDN) for m in module.modules()):
        return module
    module = copy.deepcopy(module)
    for name, m in list(module.named_modules()):
        if isinstance(m, GDN):
            parent, _, leaf = name.rpartition(".")
            setattr(module.get_submodule(parent) if parent else module, leaf, FrozenGDN(m))
    return module


ANSWERS = {"detection": ["boxes", "scores", "classes"], "classification": ["logits"]}


@torch.no_grad()
def export_edge(model, output_dir, sample, input_spec=None, opset=17):
    """Write the edge half of ``model`` (an EccentricRCNN or SplitTimmClassifier with a learned codec) to
    ``output_dir``. ``sample``: one input of the model's edge step (a Detectron2 input dict, or a [C, H, W]
    image) to trace with; ``input_spec``: preprocessing the device repeats beyond the model's own (detection:
    ``min_size``, ``max_size``, ``format`` of the config's test input). Returns the manifest."""
    if model.offload_mode != "features" or model.codec is None or model.codec.name == "passthrough":
        raise ValueError("only a learned split's edge exports (OFFLOAD_MODE 'features', a learned CODEC.NAME such as "
                         "mean_scale): an Independent-ECC edge sends the image and has no network to export")
    model.eval()
    holder, manifest, answer = model.edge_export()
    edge, codec, _ = model.split_parts()
    network = EdgeNetwork(edge, codec, holder, answer).eval()
    x, image_size = model.edge_input(sample)[:2]
    size = torch.tensor(image_size)
    backends = manifest.setdefault("backends", list(BACKENDS))
    names = ["y"] + (["z"] if codec.hyper else []) + (ANSWERS[manifest["task"]] if answer else [])
    os.makedirs(output_dir, exist_ok=True)
    if "onnx" in backends:
        torch.onnx.export(network, (x, size), os.path.join(output_dir, ONNX), input_names=["input", "image_size"],
                          output_names=names, dynamic_axes={"input": {2: "height", 3: "width"}}, opset_version=opset,
                          dynamo=False)
    torch.jit.trace(network, (x, size), check_trace=False).save(os.path.join(output_dir, TORCHSCRIPT))
    tables = {k: t.state() for k, t in codec.coder_tables().items()}
    if codec.rate_log_gains() is not None:  # variable rate: the edge scales y (and the hyperprior's output) itself
        tables[GAINS] = codec.rate_log_gains().detach().cpu().float()
    torch.save(tables, os.path.join(output_dir, TABLES))
    if codec.hyper:
        z = torch.round(network(x, size)[1].cpu())
        torch.jit.trace(codec.hyper_synthesis.cpu().float().eval(), (z,)).save(os.path.join(output_dir, H_S))
    manifest.update({"format": FORMAT, "fingerprint": model.fingerprint().hex(), "codec": dict(codec.config),
                     "rate": codec.rate, "outputs": names})
    manifest["input"].update(input_spec or {})
    with open(os.path.join(output_dir, MANIFEST), "w") as f:
        json.dump(manifest, f, indent=1)
    return manifest


def export_from_config(config_file, output_dir, opts=(), image=None):
    """Build the edge half of a config (detection or classification, with its checkpoints) and export it;
    ``image``: a BGR HxWx3 uint8 array to trace with (default: a synthetic 480x640 frame, or a blank image of
    the classifier's input). Returns the manifest."""
    if is_classification_config(config_file):
        cfg = get_eccentric_cfg(config_file, list(opts) + ["MODEL.DEVICE", "cpu"], task="classification")
        model = SplitTimmClassifier(cfg)
        load_initial_weights(cfg, model)
        C = cfg.MODEL.CLS
        sample = torch.zeros(C.IN_CHANS, *model.edge_normalizer.image_size) if image is None else \
            torch.from_numpy(np.ascontiguousarray(image[:, :, ::-1].transpose(2, 0, 1)).copy())
        return export_edge(model, output_dir, sample)
    cfg = get_serving_cfg(config_file, "edge", opts=list(opts) + ["MODEL.DEVICE", "cpu"])
    builder = InputBuilder.from_config(cfg)
    if image is None:
        image = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    spec = {"min_size": builder.min_size, "max_size": builder.max_size, "format": builder.input_format}
    return export_edge(load_model(cfg), output_dir, builder(image), spec)
