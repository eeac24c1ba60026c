"""Cloud-only detection of images coded with an OpenCV codec (JPEG, WebP, PNG), evaluated like the split models."""
import time

import numpy as np
import torch
from torch import nn

from ..codec import KIND_IMAGE, Payload
from ..evaluation.flops import edge_cloud_gflops
from ..split.image_codecs import decode_image, encode_image, image_fingerprint, tensor_to_hwc


class ImageCodecBaseline(nn.Module):
    """``detector`` (any Detectron2 model) on images coded with ``codec`` (a key of
    :data:`eccentric_det.split.IMAGE_CODECS`) at ``quality`` on the edge and decoded in the cloud, its bytes
    counted in the same Payload container as Independent ECC. The input tensors are channel-ordered as
    ``input_format``."""

    def __init__(self, detector, codec, quality, input_format="BGR"):
        super().__init__()
        encode_image(np.zeros((8, 8, 3), np.uint8), codec, quality)  # fail early on a bad codec/quality
        self.detector, self.codec, self.quality, self.input_format = detector, codec, quality, input_format

    @torch.no_grad()
    def forward(self, batched_inputs):
        rgb = self.input_format == "RGB"
        outputs = []
        for inp in batched_inputs:
            t0 = time.perf_counter()
            data = encode_image(tensor_to_hwc(inp["image"], rgb), self.codec, self.quality)
            size = tuple(inp["image"].shape[1:])
            output_size = (inp.get("height", size[0]), inp.get("width", size[1]))
            n_bytes = len(Payload(KIND_IMAGE, image_fingerprint(self.codec), size, output_size, [data]).to_bytes())
            t1 = time.perf_counter()
            bgr = decode_image(data, size, self.codec)
            img = bgr[:, :, ::-1] if rgb else bgr
            image = torch.as_tensor(np.ascontiguousarray(img.transpose(2, 0, 1)), dtype=torch.float32)
            out = self.detector([{**inp, "image": image}])[0]
            out["eccentric"] = {"bytes": n_bytes, "offloaded": True, "score": 1.0, "edge_ms": (t1 - t0) * 1e3,
                                "cloud_ms": (time.perf_counter() - t1) * 1e3}
            outputs.append(out)
        return outputs

    def gflops(self, batched_input):
        return edge_cloud_gflops(self.detector, batched_input)
