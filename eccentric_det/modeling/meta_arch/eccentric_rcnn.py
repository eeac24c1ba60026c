"""EccentricRCNN: a Generalized R-CNN whose work is split between an edge device and the cloud.

The detection adapter around :class:`eccentric_det.split.SplitModel`, which gives it:

* ``edge(batched_inputs) -> list[Payload]``: what each image would send.
* ``edge_step(batched_inputs) -> list[EdgeDecision]``: the edge's full step, with its own detections
  (``answer``) and the Dynamic ECC decision (no payload for an image it keeps).
* ``cloud(payloads) -> list[dict]``: ``{"instances", "cloud_ms"}`` from payloads (or their bytes) alone.
* ``forward`` in eval goes edge -> bytes -> cloud in one process; in training returns task losses,
  the rate loss, and the distillation/adaptation losses the config asks for.
"""
import numpy as np
import torch
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, GeneralizedRCNN, build_backbone
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.modeling.proposal_generator import build_proposal_generator
from detectron2.modeling.roi_heads import build_roi_heads
from detectron2.structures import ImageList, Instances
from torch import nn

from ...codec import PayloadLimits
from ...codec.tiles import check_tile, region_boxes
from ...inputs import normalize_and_pad
from ...split import OFFLOAD_MODES, POLICIES, SplitModel, check_choice
from ...split.gate import OffloadGate
from ...split.region_gate import RegionGate
from ..backbone.split_resnet import SplitFeature
from ..edge_detector import EdgeDetector
from .regions import in_tiles, merge_regions, scaled_proposals
from .training import EccentricLosses, build_kd_hints


@META_ARCH_REGISTRY.register()
class EccentricRCNN(SplitModel, GeneralizedRCNN):
    """The detection adapter around :class:`~eccentric_det.split.SplitModel` (see the module docstring). Cloud
    modules keep GeneralizedRCNN's names (``backbone``, ``proposal_generator``, ``roi_heads``); the edge detector
    is ``edge_detector``, the gate ``offload_gate``."""

    @configurable
    def __init__(self, *, edge_detector=None, offload_gate=None, offload_mode="features", policy="always",
                 threshold=0.5, jpeg_quality=90, half="both", size_divisibility=32, losses=None, kd_hint=None,
                 payload_limits=None, region_tile=0, region_gate=None, region_dilate=0, region_margin=0,
                 region_proposals=1.0, **kwargs):
        """Detectron2's GeneralizedRCNN arguments (the cloud's), and:

        Args:
            edge_detector, offload_gate: the edge's own detector (:class:`EdgeDetector`) and its per-image gate.
            offload_mode: "features" (Adaptive ECC) or "image" (Independent ECC).
            policy, threshold: the offload rule (``OFFLOAD.POLICY``/``THRESHOLD``).
            region_tile, region_gate, region_dilate, region_margin, region_proposals: region-level Dynamic ECC:
                the tile side in latent cells (0: whole images), the per-tile gate
                (:class:`~eccentric_det.split.region_gate.RegionGate`), the tiles of context sent around each selected
                one, the latent cells of margin the cloud's crops add, and the RPN's proposals per area on a crop
                relative to the whole image's (``OFFLOAD.REGION.*``).
            jpeg_quality, half, size_divisibility, payload_limits: the image codec, the half this process builds,
                the input padding and what a payload may claim.
            losses, kd_hint: the training objective (``half`` "both" only).
        """
        super().__init__(**kwargs)
        check_choice("OFFLOAD_MODE", offload_mode, OFFLOAD_MODES)
        check_choice("OFFLOAD.POLICY", policy, POLICIES)
        if policy != "always" and edge_detector is None and half != "cloud":
            raise ValueError(f"OFFLOAD.POLICY {policy!r} needs the edge's own detector: set "
                             f"MODEL.ECCENTRIC.EDGE.DETECTOR True")
        self.edge_detector, self.offload_gate = edge_detector, offload_gate
        self.offload_mode, self.policy, self.threshold = offload_mode, policy, threshold
        self.image_codec, self.half, self.size_divisibility = ("jpeg", jpeg_quality), half, size_divisibility
        self.image_channels, self.rgb = 3, self.input_format == "RGB"
        self.losses, self.kd_hint = losses, kd_hint
        self.payload_limits = payload_limits or PayloadLimits(1333, 800)
        if region_tile and (offload_mode != "features" or (half != "cloud" and region_gate is None)):
            raise ValueError("OFFLOAD.REGION.TILE > 0 (region-level Dynamic ECC) needs OFFLOAD_MODE 'features', "
                             "OFFLOAD.POLICY 'dynamic' and the edge's own detector (EDGE.DETECTOR True)")
        self._region_tile, self.region_gate = region_tile, region_gate
        self._region_dilate, self.region_margin, self.region_proposals = region_dilate, region_margin, region_proposals
        if losses is not None:
            losses.freeze_parameters(self)

    @classmethod
    def from_config(cls, cfg):
        E = cfg.MODEL.ECCENTRIC
        features_mode = E.OFFLOAD_MODE == "features"
        # An Independent-ECC edge device holds only its own detector, not the cloud's backbone.
        backbone = None if (E.HALF == "edge" and not features_mode) else build_backbone(cfg)
        ret = {"backbone": backbone, "pixel_mean": cfg.MODEL.PIXEL_MEAN, "pixel_std": cfg.MODEL.PIXEL_STD,
               "input_format": cfg.INPUT.FORMAT, "vis_period": cfg.VIS_PERIOD, "offload_mode": E.OFFLOAD_MODE,
               "policy": E.OFFLOAD.POLICY, "threshold": E.OFFLOAD.THRESHOLD, "jpeg_quality": E.JPEG_QUALITY,
               "half": E.HALF, "proposal_generator": None, "roi_heads": None,
               "payload_limits": PayloadLimits.from_config(cfg, cfg.INPUT.MAX_SIZE_TEST,
                                                           _max_min_size(cfg.INPUT.MIN_SIZE_TEST))}
        if features_mode and not hasattr(_bottom_up(backbone), "edge_forward"):
            raise ValueError("OFFLOAD_MODE 'features' needs a split backbone: set MODEL.BACKBONE.NAME to "
                             "build_split_resnet_fpn_backbone (or build_split_resnet_backbone)")
        ret["size_divisibility"] = getattr(backbone, "size_divisibility", 32)
        if E.HALF == "edge" and "fpn" in cfg.MODEL.BACKBONE.NAME:  # the cloud's FPN pads to its coarsest stride
            ret["size_divisibility"] = max(backbone.bottom_up._out_feature_strides.values())
        if E.HALF != "edge":
            ret["proposal_generator"] = build_proposal_generator(cfg, backbone.output_shape())
            ret["roi_heads"] = build_roi_heads(cfg, backbone.output_shape())
        if E.EDGE.DETECTOR and E.HALF != "cloud":
            ret["edge_detector"] = EdgeDetector(cfg, E.SPLIT_AT if features_mode else None)
            ret["offload_gate"] = OffloadGate(E.OFFLOAD.MIN_SCORE)
        if E.OFFLOAD.REGION.TILE:
            if E.OFFLOAD.POLICY != "dynamic" or E.CODEC.NAME not in ("mean_scale", "hyperprior"):
                raise ValueError(f"OFFLOAD.REGION.TILE {E.OFFLOAD.REGION.TILE} (region-level Dynamic ECC) needs "
                                 f"OFFLOAD.POLICY 'dynamic' (got {E.OFFLOAD.POLICY!r}) and a hyperprior codec, "
                                 f"CODEC.NAME 'mean_scale' or 'hyperprior' (got {E.CODEC.NAME!r})")
            R = E.OFFLOAD.REGION
            check_tile(R.TILE)
            if R.MARGIN < 0 or R.MARGIN % 4 or R.DILATE < 0:
                raise ValueError(f"OFFLOAD.REGION.MARGIN must be a multiple of 4 latent cells and DILATE at least 0, "
                                 f"got {R.MARGIN} and {R.DILATE}")
            if R.PROPOSALS <= 0:
                raise ValueError(f"OFFLOAD.REGION.PROPOSALS must be positive, got {R.PROPOSALS}")
            ret.update(region_tile=R.TILE, region_dilate=R.DILATE, region_margin=R.MARGIN, region_proposals=R.PROPOSALS)
            if E.HALF != "cloud":
                ret["region_gate"] = RegionGate(E.OFFLOAD.MIN_SCORE)
        if E.HALF == "both":  # the training objective (and its teacher) only where the model may train
            ret["losses"] = EccentricLosses(cfg)
            if E.DISTILL.MODE == "kd":
                edge_fpn = ret["edge_detector"].backbone
                ret["kd_hint"] = build_kd_hints(E.EDGE.FPN_OUT_CHANNELS, ret["losses"].teacher_fpn_channels(),
                                                edge_fpn._out_features)
        return ret

    # ------------------------------------------------------------------ split core hooks
    @property
    def split_backbone(self):
        return _bottom_up(self.backbone)

    @property
    def codec(self):
        return self.split_backbone.codec

    def split_parts(self):
        """(edge, codec, tail): image tensor -> (split feature, trunk), the codec, decoded feature -> cloud
        features (see :mod:`eccentric_det.split.path`)."""
        sb = self.split_backbone
        return sb.edge_part, sb.codec, lambda x_hat: self.backbone(SplitFeature(x_hat))

    def has_edge(self):
        return self.half != "cloud"

    def has_cloud(self):
        return self.roi_heads is not None

    def feature_geometry(self):
        return {"stride": self.split_backbone.edge_shapes[self.split_backbone.split_at].stride,
                "size_divisibility": self.size_divisibility}

    def edge_export(self):
        """(module holding the edge's parameters, manifest, traceable own answer or None) for
        :func:`eccentric_det.deploy.export.export_edge`. Dynamic ECC's edge detector traces to TorchScript only:
        onnxruntime's NonMaxSuppression keeps other boxes than torchvision's NMS, so its detections differ."""
        if self.region_tile:
            raise ValueError("region-level Dynamic ECC (OFFLOAD.REGION.TILE > 0) runs on the PyTorch edge only "
                             "(tools/edge_client.py --config-file ...); export the image-level model "
                             "(OFFLOAD.REGION.TILE 0) for ONNX Runtime or TorchScript")
        manifest = {"task": "detection", "policy": self.policy, "threshold": self.threshold,
                    "input": {"pixel_mean": self.pixel_mean.flatten().tolist(),
                              "pixel_std": self.pixel_std.flatten().tolist(), "size_divisibility": self.size_divisibility}}
        if self.policy == "always":
            return self.split_backbone, manifest, None
        g = self.offload_gate
        manifest["gate"] = {"min_score": g.min_score, **{k: getattr(g, k).tolist() for k in ("weight", "bias", "mean",
                                                                                              "std")}}
        manifest["backends"] = ["torchscript"]
        return nn.ModuleList([self.split_backbone, self.edge_detector]), manifest, self._detections_for_tracing

    def _detections_for_tracing(self, x, trunk, image_size):
        """The edge detector's boxes, scores and classes at the network input's size (``image_size``: a [2]
        tensor, so that a traced graph clips to each image's own size)."""
        r = self._edge_detections(x, trunk, (image_size[0], image_size[1]))
        return r.pred_boxes.tensor, r.scores, r.pred_classes

    def _edge_detections(self, x, trunk, image_size):
        """The edge detector's Instances at the network input's size (on the trunk, or on the image)."""
        return self.edge_detector(ImageList(x, [image_size]), trunk if trunk is not None else x)[1][0]

    def train(self, mode=True):
        super().train(mode)
        if mode and self.losses is not None:
            self.losses.keep_frozen_in_eval(self)
        return self

    # ------------------------------------------------------------------ edge
    def preprocess_image(self, batched_inputs):
        """Normalise and pad to the cloud backbone's divisibility (known to the edge half too)."""
        images = [(x["image"].to(self.device) - self.pixel_mean) / self.pixel_std for x in batched_inputs]
        return ImageList.from_tensors(images, self.size_divisibility)

    def edge_input(self, inp):
        x = normalize_and_pad(inp["image"], self.pixel_mean, self.pixel_std, self.size_divisibility)
        size = tuple(inp["image"].shape[-2:])
        return x, size, (inp.get("height", size[0]), inp.get("width", size[1])), inp["image"]

    def edge_answer(self, x, trunk, image_size, output_size):
        """The edge detector's detections at the output size and the gate's score."""
        instances = detector_postprocess(self._edge_detections(x, trunk, image_size), *output_size)
        return instances, float(self.offload_gate([instances.scores.cpu()])[0])

    def edge_regions(self, x, image_size, trunk=None):
        """(edge detector's raw Instances at the network input's size, per-tile statistics, tile grid) of one image
        (``trunk``: the edge trunk's features, computed from ``x`` when not given)."""
        if trunk is None:
            trunk = self.split_parts()[0](x)[1]
        images, det = ImageList(x, [image_size]), self.edge_detector
        features = det.backbone(trunk)
        proposals, _ = det.proposal_generator(images, features, None)
        raw = det.roi_heads(images, features, proposals, None)[0][0]
        t = self.region_tile
        grid = tuple(-(-s // (t * self.latent_stride())) for s in x.shape[-2:])
        return raw, self.region_gate.statistics(raw, proposals[0], image_size, t * self.latent_stride(), grid), grid

    def edge_region_answer(self, x, trunk, image_size, output_size):
        """The edge detector's detections at the output size and the region gate's probability of each tile."""
        raw, stats, grid = self.edge_regions(x, image_size, trunk)
        return detector_postprocess(raw, *output_size), self.region_gate(stats).reshape(grid)

    def region_crops(self, y_hat, tiles):
        """[(latent crop [1, C, h, w], (y0, x0) in input pixels, the tiles it answers for)] the cloud runs on: each
        box of :func:`region_boxes`, grown by ``region_margin`` latent cells within the latent; it answers for the
        tiles sent in its box."""
        t, s, m = self.region_tile, self.latent_stride(), self.region_margin
        h, w = y_hat.shape[-2:]
        out = []
        for r0, c0, r1, c1 in region_boxes(tiles):
            y0, x0 = max(r0 * t - m, 0), max(c0 * t - m, 0)
            own = np.zeros_like(tiles)
            own[r0:r1, c0:c1] = tiles[r0:r1, c0:c1]
            out.append((y_hat[:, :, y0:min(r1 * t + m, h), x0:min(c1 * t + m, w)], (y0 * s, x0 * s), own))
        return out

    def cloud_on_crop(self, y_crop, origin, image_size):
        """The cloud's raw Instances on one latent crop, at the crop's own coordinates: the codec's decoder, the tail,
        and the RPN and ROI heads with their proposal counts scaled by the crop's share of the image (times
        ``region_proposals``)."""
        x = self.codec.synthesis(y_crop.to(self.device))
        s = self.feature_geometry()["stride"]
        size = (min(x.shape[-2] * s, image_size[0] - origin[0]), min(x.shape[-1] * s, image_size[1] - origin[1]))
        share = size[0] * size[1] / float(image_size[0] * image_size[1])
        with scaled_proposals(self.proposal_generator, share * self.region_proposals):
            return self._heads(ImageList(x, [size]), self.backbone(SplitFeature(x)))[0]

    def cloud_regions(self, y_hat, tiles, payload):
        """``{"instances", "crops"}`` of one region payload: the cloud's detections whose box centre lies in a sent
        tile, at the output size (the edge adds its own elsewhere, :func:`merge_regions`); ``crops``: the latent
        (h, w) of each region it ran on."""
        parts, crops = [], []
        tile_px = self.region_tile * self.latent_stride()
        for y_crop, (oy, ox), own in self.region_crops(y_hat, tiles):
            r = self.cloud_on_crop(y_crop, (oy, ox), payload.image_size)
            r.pred_boxes.tensor += r.pred_boxes.tensor.new_tensor([ox, oy, ox, oy])
            r = r[in_tiles(r.pred_boxes.tensor, own, tile_px)]
            parts.append(Instances(payload.image_size, pred_boxes=r.pred_boxes, scores=r.scores,
                                   pred_classes=r.pred_classes))
            crops.append(tuple(y_crop.shape[-2:]))
        r = Instances.cat(parts)
        return {"instances": detector_postprocess(r, *payload.output_size), "crops": crops}

    # ------------------------------------------------------------------ cloud
    def cloud_tail_batch(self, x, payloads):
        return self._heads(ImageList(x, [p.image_size for p in payloads]), self.backbone(SplitFeature(x)))

    def cloud_image_batch(self, images, payloads):
        batch = self.decoded_images(images)
        return self._heads(batch, self.backbone(batch.tensor))

    def decoded_images(self, images):
        """Decoded HxWx3 BGR uint8 images as the normalised, padded ImageList the cloud network takes."""
        return self.preprocess_image([{"image": torch.as_tensor(_channels_first(img, self.rgb), dtype=torch.float32)}
                                      for img in images])

    def cloud_results(self, results, payloads, ms):
        """``{"instances", "cloud_ms"}`` per payload, at its output size."""
        return [{"instances": detector_postprocess(r, *p.output_size), "cloud_ms": ms}
                for r, p in zip(results, payloads)]

    def _heads(self, images, features):
        proposals, _ = self.proposal_generator(images, features, None)
        return self.roi_heads(images, features, proposals, None)[0]

    # ------------------------------------------------------------------ forward
    def forward(self, batched_inputs):
        if not self.training:
            return self.inference(batched_inputs)
        return self.losses(self, batched_inputs)

    def inference(self, batched_inputs, detected_instances=None, do_postprocess=True):
        """Edge -> real bytes -> cloud for every image. Each result dict carries ``instances`` and
        ``eccentric``: bytes sent, offloaded, gate score, edge and cloud ms."""
        assert detected_instances is None and do_postprocess, "EccentricRCNN.inference returns final results"
        decisions = self.edge_step(batched_inputs)
        sent = [i for i, d in enumerate(decisions) if d.offload]
        cloud_out = dict(zip(sent, self.cloud([decisions[i].payload.to_bytes() for i in sent]))) if sent else {}
        outputs = []
        for i, d in enumerate(decisions):
            c = cloud_out.get(i)
            info = {"bytes": len(d.payload.to_bytes()) if d.offload else 0, "offloaded": d.offload,
                    "score": d.score, "edge_ms": d.edge_ms, "cloud_ms": c["cloud_ms"] if c else 0.0}
            instances = c["instances"] if c else d.answer
            if c and d.tiles is not None:
                instances = merge_regions(d.answer, instances, d.tiles, d.tile_px, d.payload.image_size)
                info.update(tiles=int(d.tiles.sum()), tiles_total=int(d.tiles.size), crops=c["crops"])
            outputs.append({"instances": instances, "eccentric": info})
        return outputs


def _max_min_size(min_size):
    """The largest of INPUT.MIN_SIZE_TEST (an int, or a list/tuple of sizes); 0 when it is 0 (no resize)."""
    return max(min_size) if isinstance(min_size, (list, tuple)) else int(min_size)


def _channels_first(hwc, rgb):
    return (hwc[:, :, ::-1] if rgb else hwc).transpose(2, 0, 1).copy()


def _bottom_up(backbone):
    return getattr(backbone, "bottom_up", backbone)
