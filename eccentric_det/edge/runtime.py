"""ExportedEdge: the edge half from an exported folder (:mod:`.export`), run with onnxruntime or TorchScript.

It repeats the PyTorch edge's preprocessing (:mod:`eccentric_det.inputs`), runs the exported network, and
codes the latents with the same coder (:mod:`eccentric_det.codec.coding`), so its payloads are the PyTorch
edge's, byte for byte, whenever the two runtimes compute the same latents (TorchScript runs PyTorch's own
kernels; onnxruntime's may differ in the last bit, which moves a latent to the next integer only when it
lies within that bit of a rounding boundary). Imports neither Detectron2 nor anything of the cloud.
"""
import json
import os
import time

import torch

from ..codec.coding import CoderTables, check_rate, code_latents, hyper_params, rate_field, rate_gains
from ..codec.payload import FIELD_RATE
from ..codec.payload import KIND_FEATURES, Payload
from ..inputs import ImageNormalizer, InputBuilder, normalize_and_pad
from ..split.decision import EdgeDecision
from ..split.frame import EdgeFrame
from .manifest import BACKENDS, FORMAT, GAINS, H_S, MANIFEST, ONNX, TABLES, TORCHSCRIPT
from ..split.gate import OffloadGate, softmax_uncertainty


class ExportedEdge:
    """``step(image) -> EdgeDecision``: a BGR HxWx3 uint8 image (detection) or a [C, H, W] 0-255 tensor
    (classification, as ``SplitTimmClassifier.edge_step`` takes). ``backend``: "onnx" or "torchscript";
    ``rate``: a variable-rate codec's level (default: the one exported, ``CODEC.RATE``; :meth:`set_rate` changes it).
    The decision's ``answer``: detections in the wire format (Dynamic ECC), logits (classification) or None."""

    def __init__(self, folder, backend="onnx", rate=None):
        path = os.path.join(folder, MANIFEST)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{folder} holds no exported edge ({MANIFEST}): write one with "
                                    f"tools/export_edge.py")
        with open(path) as f:
            m = json.load(f)
        if m.get("format") != FORMAT:
            raise ValueError(f"{path} is export format {m.get('format')}, this runtime reads {FORMAT}: re-export it "
                             f"with this version's tools/export_edge.py")
        if backend not in m.get("backends", BACKENDS):
            raise ValueError(f"backend must be one of {m.get('backends', BACKENDS)} for the edge in {folder}, got "
                             f"{backend!r}" + (" (its edge detector exports to TorchScript only)" if "gate" in m else ""))
        self.manifest, self.task = m, m["task"]
        self.policy, self.threshold = m["policy"], float(m["threshold"])
        self.fingerprint = bytes.fromhex(m["fingerprint"])
        self.outputs = m["outputs"]
        tables = torch.load(os.path.join(folder, TABLES), weights_only=True)
        self._log_gains = tables.pop(GAINS, None)
        self.tables = {k: CoderTables(**v) for k, v in tables.items()}
        self._h_s = torch.jit.load(os.path.join(folder, H_S)) if "z" in self.outputs else None
        self.set_rate(m.get("rate", 0.0) if rate is None else rate)
        self._run = _onnx_runner(os.path.join(folder, ONNX)) if backend == "onnx" else \
            _torchscript_runner(os.path.join(folder, TORCHSCRIPT))
        self.gate = None
        if "gate" in m:
            self.gate = OffloadGate(m["gate"]["min_score"])
            self.gate.load_fit(m["gate"])
        i = m["input"]
        mean = torch.tensor(i["pixel_mean"], dtype=torch.float32).view(-1, 1, 1)
        std = torch.tensor(i["pixel_std"], dtype=torch.float32).view(-1, 1, 1)
        if self.task == "detection":
            self.inputs = InputBuilder(i["min_size"], i["max_size"], i["format"])
            self._prepare = lambda image: normalize_and_pad(image, mean, std, i["size_divisibility"])
        else:
            self.inputs = None
            normalizer = ImageNormalizer(i["pixel_mean"], i["pixel_std"], i["image_size"])
            self._prepare = lambda image: normalizer(image[None])

    def set_rate(self, rate):
        """Code at ``rate`` (0..levels - 1 of a variable-rate codec; 0 for any other)."""
        self.rate = check_rate(rate, self.manifest["codec"].get("rate_levels", 1))
        self._gain, self._fields = None, {}
        if self._log_gains is not None:
            self._gain = rate_gains(self._log_gains, [self.rate])
            self._fields = {FIELD_RATE: rate_field(self.rate)}

    def _params(self, gain):
        """The hyperprior's (scales, means) of y coded with ``gain`` (None: no gain)."""
        return lambda z_hat, y_hw: hyper_params(self._h_s, z_hat, y_hw, self.manifest["codec"]["latent_channels"], gain)

    def step(self, image) -> EdgeDecision:
        """The edge step at the set rate and the manifest's offload rule."""
        return self.analyse(image).decision()

    @torch.no_grad()
    def analyse(self, image) -> EdgeFrame:
        """The edge's analysis of one image before it decides (:class:`~eccentric_det.split.frame.EdgeFrame`): its
        answer and score, and a coder of its latents at any rate (the stream loop's rate control picks one)."""
        t0 = time.perf_counter()
        if self.inputs is not None:
            inp = self.inputs(image)
            tensor, output_size = inp["image"], (inp["height"], inp["width"])
        else:
            tensor = torch.as_tensor(image)
            output_size = tuple(tensor.shape[-2:])
        image_size = tuple(tensor.shape[-2:])
        outs = dict(zip(self.outputs, self._run(self._prepare(tensor), torch.tensor(image_size))))
        answer, score = None, 1.0
        if "logits" in outs:
            answer = outs["logits"][0]
            score = float(softmax_uncertainty(answer))
        elif "boxes" in outs:
            answer = postprocess(outs["boxes"], outs["scores"], outs["classes"], image_size, output_size)
            score = float(self.gate([torch.tensor(answer["scores"])])[0])

        def coder(rate, tiles):
            if tiles is not None:
                raise ValueError("an exported edge codes whole images (region-level Dynamic ECC runs on the PyTorch "
                                 "edge)")
            gain, fields = self._gain, self._fields
            if rate is not None and self._log_gains is not None:
                rate = check_rate(rate, self.manifest["codec"].get("rate_levels", 1))
                gain, fields = rate_gains(self._log_gains, [rate]), {FIELD_RATE: rate_field(rate)}
            y = outs["y"] if gain is None else outs["y"] * gain
            coded = code_latents(y, outs.get("z"), self.tables, self._params(gain), None, fields)[0]
            return Payload(KIND_FEATURES, self.fingerprint, image_size, output_size, coded.strings, coded.fields)

        variable = self._log_gains is not None
        return EdgeFrame(answer, score, image_size, output_size, self.policy, self.threshold, coder,
                         lambda: outs["y"][0], rate_levels=self.manifest["codec"].get("rate_levels", 1) if variable
                         else 1, rate=self.rate if variable else None, ms=(time.perf_counter() - t0) * 1e3)


def postprocess(boxes, scores, classes, input_size, output_size):
    """Detections at the network input's size -> the wire format at the original image's size, as
    Detectron2's ``detector_postprocess`` does it: boxes scaled, clipped, empty ones dropped."""
    boxes = boxes.clone()
    boxes[:, 0::2] *= output_size[1] / input_size[1]
    boxes[:, 1::2] *= output_size[0] / input_size[0]
    h, w = output_size
    boxes = torch.stack([boxes[:, 0].clamp(min=0, max=w), boxes[:, 1].clamp(min=0, max=h),
                         boxes[:, 2].clamp(min=0, max=w), boxes[:, 3].clamp(min=0, max=h)], dim=-1)
    keep = (boxes[:, 2] - boxes[:, 0] > 0) & (boxes[:, 3] - boxes[:, 1] > 0)
    return {"boxes": boxes[keep].tolist(), "scores": scores[keep].tolist(), "classes": classes[keep].tolist(),
            "image_size": list(output_size)}


def _onnx_runner(path):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()  # the device's one thread budget: torch's (OMP_NUM_THREADS)
    session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]  # an input the graph does not use is left out by the export

    def run(x, image_size):
        feed = {"input": x.numpy(), "image_size": image_size.numpy()}
        return [torch.from_numpy(o) for o in session.run(None, {n: feed[n] for n in names})]
    return run


def _torchscript_runner(path):
    network = torch.jit.load(path, map_location="cpu").eval()
    return lambda x, image_size: list(network(x, image_size))
