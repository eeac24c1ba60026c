"""Network inputs as the edge makes them, without Detectron2 (an exported edge uses the same code).

* :class:`InputBuilder`: BGR image -> Detectron2 input dict, with the test-time shortest-edge resize of
  ``detectron2.data.transforms.ResizeShortestEdge`` (same output size, same PIL bilinear resampling).
* :func:`normalize_and_pad`: what ``GeneralizedRCNN.preprocess_image`` does to one image.
* :class:`ImageNormalizer`: the classification input (normalise, resize to the network's size).
"""
import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F


def shortest_edge_size(h, w, short, max_size):
    """(new_h, new_w) of ``ResizeShortestEdge.get_output_shape``: the short side to ``short``, the long side
    at most ``max_size``."""
    size = short * 1.0
    scale = size / min(h, w)
    newh, neww = (size, scale * w) if h < w else (scale * h, size)
    if max(newh, neww) > max_size:
        scale = max_size * 1.0 / max(newh, neww)
        newh, neww = newh * scale, neww * scale
    return int(newh + 0.5), int(neww + 0.5)


class InputBuilder:
    """BGR uint8 HxWx3 image -> ``{"image": CHW float tensor, "height", "width"}``, resized so that its short
    side is ``min_size`` (0: no resize) and its long side at most ``max_size``, in ``input_format`` order."""

    def __init__(self, min_size, max_size, input_format="BGR"):
        self.min_size, self.max_size, self.input_format = int(min_size), int(max_size), input_format

    @classmethod
    def from_config(cls, cfg):
        """The config's test-time input: ``INPUT.MIN_SIZE_TEST``, ``INPUT.MAX_SIZE_TEST``, ``INPUT.FORMAT``."""
        return cls(cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST, cfg.INPUT.FORMAT)

    def __call__(self, bgr):
        if bgr is None or bgr.ndim != 3 or bgr.shape[2] != 3:
            raise ValueError(f"expected a BGR image of shape HxWx3, got {None if bgr is None else bgr.shape}")
        img = bgr[:, :, ::-1] if self.input_format == "RGB" else bgr
        h, w = img.shape[:2]
        if self.min_size:
            newh, neww = shortest_edge_size(h, w, self.min_size, self.max_size)
            img = np.asarray(Image.fromarray(np.ascontiguousarray(img)).resize((neww, newh), Image.BILINEAR))
        tensor = torch.as_tensor(np.ascontiguousarray(img.transpose(2, 0, 1)).astype("float32"))
        return {"image": tensor, "height": h, "width": w}


def normalize_and_pad(image, pixel_mean, pixel_std, size_divisibility):
    """A [C, H, W] image -> the normalised [1, C, H', W'] network input, zero-padded at the bottom and right
    to multiples of ``size_divisibility`` (``pixel_mean``/``pixel_std``: [C, 1, 1] tensors)."""
    x = (image.to(pixel_mean.device) - pixel_mean) / pixel_std
    h, w = x.shape[-2:]
    d = max(int(size_divisibility), 1)
    return F.pad(x, [0, -(-w // d) * d - w, 0, -(-h // d) * d - h], value=0.0).unsqueeze_(0)


class ImageNormalizer(nn.Module):
    """Images [B, C, H, W] with 0-255 values -> normalised network input at ``image_size``."""

    def __init__(self, pixel_mean, pixel_std, image_size):
        super().__init__()
        self.register_buffer("mean", torch.tensor(pixel_mean, dtype=torch.float32).view(-1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(pixel_std, dtype=torch.float32).view(-1, 1, 1), persistent=False)
        self.image_size = tuple(image_size)

    def forward(self, images):
        x = (images.to(self.mean.device, torch.float32) - self.mean) / self.std
        if tuple(x.shape[-2:]) != self.image_size:
            x = F.interpolate(x, size=self.image_size, mode="bilinear", align_corners=False)
        return x
