"""Turn an image into the input dict Detectron2 models take (as DefaultPredictor does)."""
import numpy as np
import torch
from detectron2.data import transforms as T


class InputBuilder:
    """BGR uint8 HxWx3 image -> ``{"image": CHW float tensor, "height", "width"}`` with the config's
    test-time resize and channel order."""

    def __init__(self, cfg):
        self.resize = T.ResizeShortestEdge([cfg.INPUT.MIN_SIZE_TEST] * 2, cfg.INPUT.MAX_SIZE_TEST)
        self.input_format = cfg.INPUT.FORMAT

    def __call__(self, bgr):
        if bgr is None or bgr.ndim != 3 or bgr.shape[2] != 3:
            raise ValueError(f"expected a BGR image of shape HxWx3, got {None if bgr is None else bgr.shape}")
        img = bgr[:, :, ::-1] if self.input_format == "RGB" else bgr
        h, w = img.shape[:2]
        img = self.resize.get_transform(img).apply_image(img)
        tensor = torch.as_tensor(np.ascontiguousarray(img.transpose(2, 0, 1)).astype("float32"))
        return {"image": tensor, "height": h, "width": w}
