"""What an edge device imports: the exported edge (:class:`ExportedEdge`, onnxruntime or TorchScript), the
entropy coder, the payload writer, the HTTP client (:class:`CloudClient`) and :class:`EdgeClient`. It imports
nothing of the cloud, training, distillation, evaluation or serving runtime, and neither Detectron2,
pycocotools nor fvcore (``tests/test_edge.py`` checks ``sys.modules``). :mod:`.export` writes an exported
edge from a trained model; :class:`~eccentric_det.deploy.torch_edge.TorchEdge` runs the PyTorch edge instead
(Detectron2), e.g. for Dynamic ECC, whose edge detector does not export.
"""
from .client import EdgeClient, EdgeResult, done_images, list_images, run_images
from .http import CloudClient, CloudRejected, CloudUnavailable
from .runtime import ExportedEdge

__all__ = ["EdgeClient", "EdgeResult", "done_images", "list_images", "run_images", "CloudClient", "CloudRejected",
           "CloudUnavailable", "ExportedEdge"]
