"""TorchEdge: the edge half of an eccentric_det model in PyTorch (Detectron2), behind the edge step that
:class:`~eccentric_det.edge.client.EdgeClient` drives. An exported edge (:class:`~eccentric_det.edge.ExportedEdge`)
offers the same step without Detectron2."""
from dataclasses import replace

from ..inputs import InputBuilder
from ..serving.detections import instances_to_dict
from ..split import EdgeDecision


class TorchEdge:
    """``step(bgr) -> EdgeDecision`` with the edge's own detections (if any) in wire format."""

    def __init__(self, model, input_builder, class_names=None):
        self.model, self.inputs, self.class_names = model, input_builder, class_names

    @classmethod
    def from_config(cls, cfg):
        """The edge half of a serving config, loaded with its checkpoint."""
        from ..data.datasets import class_names_of
        from ..checkpoint import load_model

        return cls(load_model(cfg), InputBuilder.from_config(cfg), class_names_of(cfg))

    def step(self, bgr) -> EdgeDecision:
        return self.step_input(self.inputs(bgr))

    def step_input(self, inp) -> EdgeDecision:
        """The edge step of one Detectron2 input dict (``{"image", "height", "width"}``)."""
        d = self.model.edge_step([inp])[0]
        return replace(d, answer=None if d.answer is None else instances_to_dict(d.answer.to("cpu")))
