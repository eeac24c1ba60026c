"""Deployment from a trained PyTorch model: the edge exported for a device (:mod:`.export`) and the PyTorch edge
behind an :class:`~eccentric_det.edge.EdgeClient` (:mod:`.torch_edge`). Both load Detectron2 or timm."""
