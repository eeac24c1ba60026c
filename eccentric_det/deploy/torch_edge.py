"""TorchEdge: the edge half of an eccentric_det model in PyTorch (Detectron2), behind the edge step that
:class:`~eccentric_det.edge.client.EdgeClient` drives (:func:`edge_client` builds both from a serving config). An exported edge (:class:`~eccentric_det.edge.ExportedEdge`)
offers the same step without Detectron2. :func:`stream_options` reads a config's budget and reuse keys."""
from dataclasses import replace

from ..checkpoint import load_model
from ..codec.payload import fleet_key
from ..data.datasets import class_names_of
from ..edge import CloudClient, EdgeClient
from ..edge.stream import stream_controls
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

    def analyse(self, bgr):
        """The edge's :class:`~eccentric_det.split.frame.EdgeFrame` of one BGR image, its answer in wire format."""
        return self.analyse_input(self.inputs(bgr))

    def analyse_input(self, inp):
        """The :class:`~eccentric_det.split.frame.EdgeFrame` of one Detectron2 input dict."""
        f = self.model.edge_frames([inp])[0]
        return replace(f, answer=None if f.answer is None else instances_to_dict(f.answer.to("cpu")))

    def step_input(self, inp) -> EdgeDecision:
        """The edge step of one Detectron2 input dict (``{"image", "height", "width"}``)."""
        d = self.model.edge_step([inp])[0]
        return replace(d, answer=None if d.answer is None else instances_to_dict(d.answer.to("cpu")))


def stream_options(cfg, fps=None):
    """The stream options of ``MODEL.ECCENTRIC.OFFLOAD`` (BUDGET_KBPS, FPS, BUFFER_S, REUSE.THRESHOLD, REUSE.KEYFRAME,
    REUSE.TRACK_IOU) as :func:`~eccentric_det.edge.stream.stream_controls` takes them; ``fps``: the stream's own frame
    rate (a video's), used when FPS is 0."""
    O = cfg.MODEL.ECCENTRIC.OFFLOAD
    return {"budget_kbps": float(O.BUDGET_KBPS), "fps": float(O.FPS or fps or 0.0), "buffer_s": float(O.BUFFER_S),
            "reuse_threshold": float(O.REUSE.THRESHOLD), "keyframe": O.REUSE.KEYFRAME,
            "track_iou": float(O.REUSE.TRACK_IOU)}


def edge_client(cfg, cloud_url=None, fps=None):
    """An :class:`~eccentric_det.edge.EdgeClient` around the PyTorch edge half of a serving config
    (:func:`~eccentric_det.serving.config.get_serving_cfg`); the cloud is at ``cloud_url`` (default
    ``http://SERVING.HOST:SERVING.PORT``), payloads signed with ``SERVING.PAYLOAD_KEY``, under the config's budget and
    reuse (:func:`stream_options`; ``fps`` when OFFLOAD.FPS is 0)."""
    S = cfg.SERVING
    rate_control, reuse = stream_controls(**stream_options(cfg, fps))
    edge = TorchEdge.from_config(cfg)
    return EdgeClient(edge, CloudClient(cloud_url or f"http://{S.HOST}:{S.PORT}", S.TIMEOUT_S, S.RETRIES,
                                        S.BACKOFF_S, S.TOKEN), edge.class_names, fleet_key(S.PAYLOAD_KEY),
                      rate_control, reuse)
