"""TorchEdge: the edge half of an eccentric_det model in PyTorch (Detectron2), behind the edge step that
:class:`~eccentric_det.edge.client.EdgeClient` drives (:func:`edge_client` builds both from a serving config). An exported edge (:class:`~eccentric_det.edge.ExportedEdge`)
offers the same step without Detectron2."""
from dataclasses import replace

from ..checkpoint import load_model
from ..codec.payload import fleet_key
from ..data.datasets import class_names_of
from ..edge import CloudClient, EdgeClient
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
        return cls(load_model(cfg), InputBuilder.from_config(cfg), class_names_of(cfg))

    def step(self, bgr) -> EdgeDecision:
        return self.step_input(self.inputs(bgr))

    def step_input(self, inp) -> EdgeDecision:
        """The edge step of one Detectron2 input dict (``{"image", "height", "width"}``)."""
        d = self.model.edge_step([inp])[0]
        return replace(d, answer=None if d.answer is None else instances_to_dict(d.answer.to("cpu")))


def edge_client(cfg, cloud_url=None):
    """An :class:`~eccentric_det.edge.EdgeClient` around the PyTorch edge half of a serving config
    (:func:`~eccentric_det.serving.config.get_serving_cfg`); the cloud is at ``cloud_url`` (default
    ``http://SERVING.HOST:SERVING.PORT``), payloads signed with ``SERVING.PAYLOAD_KEY``."""
    S = cfg.SERVING
    edge = TorchEdge.from_config(cfg)
    return EdgeClient(edge, CloudClient(cloud_url or f"http://{S.HOST}:{S.PORT}", S.TIMEOUT_S, S.RETRIES,
                                        S.BACKOFF_S, S.TOKEN), edge.class_names, fleet_key(S.PAYLOAD_KEY))
