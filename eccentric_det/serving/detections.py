"""What crosses the wire besides the Payload: where it goes, its content type, and the detections
that come back as JSON. float32 values survive the round trip exactly (JSON floats are doubles)."""
import torch
from detectron2.structures import Boxes, Instances

from ..codec.payload import CONTENT_TYPE, DETECT_PATH  # noqa: F401  (the wire's path and content type)


def instances_to_dict(instances, class_names=None):
    """``{"boxes": [[x0, y0, x1, y1]], "scores", "classes", "image_size": [h, w]}`` (+ ``class_names``)."""
    classes = instances.pred_classes.tolist()
    out = {"boxes": instances.pred_boxes.tensor.tolist(), "scores": instances.scores.tolist(),
           "classes": classes, "image_size": list(instances.image_size)}
    if class_names:
        out["class_names"] = [class_names[c] for c in classes]
    return out


def dict_to_instances(d):
    """The :class:`Instances` of :func:`instances_to_dict` output (dtypes as Detectron2's predictors)."""
    boxes = torch.tensor(d["boxes"], dtype=torch.float32).reshape(-1, 4)
    return Instances(tuple(d["image_size"]), pred_boxes=Boxes(boxes),
                     scores=torch.tensor(d["scores"], dtype=torch.float32),
                     pred_classes=torch.tensor(d["classes"], dtype=torch.int64))
