"""FLOPs of each half of a split detector, counted by fvcore on one real image.

Each half is traced through a small module that runs exactly what that half runs; entropy coding
(CompressAI's range coder) and image codecs are not FLOPs and are left out. fvcore counts one
multiply-add as one flop and an inference batch norm as 2 per element; Detectron2's
``FlopCountAnalysis`` ignores the other elementwise ops and NMS.
"""
import torch
from detectron2.structures import ImageList
from detectron2.utils.analysis import FlopCountAnalysis
from torch import nn

from ..codec.payload import FIELD_TILES
from ..codec.shapes import hyper_shape
from ..codec.tiles import decode_tiles
from ..config import STAGES
from ..modeling.backbone.resnet_stages import build_resnet_parts
from ..split import decode_image, run_split


class _Call(nn.Module):
    """Runs ``fn`` under tracing; ``modules`` are registered so fvcore attributes their ops."""

    def __init__(self, fn, *modules):
        super().__init__()
        self.fn, self.parts = fn, nn.ModuleList(m for m in modules if m is not None)

    def forward(self, *x):
        return self.fn(*x)


def count_gflops(fn, inputs, *modules):
    """GFLOPs of ``fn(*inputs)`` (``fn`` a module or a function of ``modules``)."""
    module = fn if isinstance(fn, nn.Module) else _Call(fn, *modules)
    analysis = FlopCountAnalysis(module, inputs)
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    return analysis.total() / 1e9


@torch.no_grad()
def edge_cloud_gflops(model, batched_input, cloud_resnets=None):
    """GFLOPs of one image: ``edge`` (all the edge runs for an offloaded image), ``encoder`` (the
    part of ``edge`` that runs only when the image is offloaded), ``cloud`` (the cloud's work for an
    offloaded image) and ``cloud_only`` (the cloud-only network on the whole image: no split, and no ROI adapters,
    which only knowledge adaptation adds).

    ``model``: an EccentricRCNN (``cloud_resnets``, the ``MODEL.RESNETS`` node of the cloud network,
    is then needed in features mode), a model that defines ``gflops(batched_input)`` (the baselines),
    or any other Detectron2 model, which counts as cloud-only."""
    if hasattr(model, "gflops"):
        return model.gflops(batched_input)
    if not hasattr(model, "edge_step"):
        g = count_gflops(model, ([batched_input],))
        return {"edge": 0.0, "encoder": 0.0, "cloud": g, "cloud_only": g}
    images = model.preprocess_image([batched_input])
    if model.offload_mode == "image":
        edge = _edge_detector_gflops(model, images, images.tensor)
        sent = model.edge([batched_input])[0]  # the cloud runs on the decoded JPEG (its proposals depend on it)
        x = model.decoded_images([decode_image(sent.strings[0], sent.image_size, model.image_codec[0])])
        cloud = count_gflops(lambda t: _heads(model, ImageList(t, x.image_sizes), model.backbone(t)),
                             (x.tensor,), model.backbone, model.proposal_generator, model.roi_heads)
        return {"edge": edge, "encoder": 0.0, "cloud": cloud, "cloud_only": cloud}
    if cloud_resnets is None:
        raise ValueError("counting cloud_only FLOPs of a features-mode model needs cloud_resnets (cfg.MODEL.RESNETS)")
    edge, codec, tail = model.split_parts()
    g = split_gflops(edge, codec, lambda x: _heads(model, ImageList(x, images.image_sizes), tail(x)), images.tensor,
                     (model.split_backbone,), (model.backbone, model.proposal_generator, model.roi_heads))
    g["edge"] += _edge_detector_gflops(model, images, edge(images.tensor)[1])
    split = model.split_backbone.split_at
    parts, _ = build_resnet_parts(cloud_resnets, images.tensor.shape[1], STAGES[:STAGES.index(split) + 1])
    pre_split = nn.Sequential(*parts.values()).to(images.tensor.device).eval()
    g["cloud_only"] = count_gflops(pre_split, (images.tensor,)) + g.pop("tail") - _adapter_gflops(
        model, run_split(edge, codec, tail, images.tensor).out)
    return g


def _adapter_gflops(model, features):
    """GFLOPs of the knowledge-adapted ROI heads' residual adapters on ``features``: work the cloud-only model does
    not do, so that a split model's ``cloud_only`` is the cloud-only model's count."""
    adapters = getattr(model.roi_heads, "adapters", None)
    if adapters is None:
        return 0.0
    keys = [k for k in adapters if k in features]
    return count_gflops(lambda *ts: [adapters[k](t) for k, t in zip(keys, ts)], tuple(features[k] for k in keys),
                        adapters)


@torch.no_grad()
def split_gflops(edge, codec, tail, x, edge_modules=(), tail_modules=()):
    """GFLOPs of one input down the split path (:func:`eccentric_det.split.run_split`): ``edge`` (the edge
    part and the codec's encoder side), ``encoder`` (that encoder side alone), ``cloud`` (the codec's decoder
    side and the tail) and ``tail`` (the tail alone). ``*_modules``: modules ``edge``/``tail`` run, so
    fvcore attributes their ops."""
    out = run_split(edge, codec, tail, x)
    encoder, decoder = codec_gflops(codec, out.feature)
    g_edge = count_gflops(lambda t: _tensors(edge(t)), (x,), *edge_modules)
    g_tail = count_gflops(tail, (out.x_hat,), *tail_modules)
    return {"edge": g_edge + encoder, "encoder": encoder, "cloud": decoder + g_tail, "tail": g_tail}


@torch.no_grad()
def region_cloud_gflops(model, batched_input, cache):
    """The cloud's GFLOPs on one image under region-level Dynamic ECC: the hyperprior's h_s on the whole z, then the
    codec's decoder, the tail and the heads on each region it runs on (0 when the edge keeps the image). Counted by
    fvcore on this image's own regions; ``cache`` (a dict) keeps the count of each region shape and extent."""
    decision = model.edge_step([batched_input])[0]
    if not decision.offload:
        return 0.0
    p, hw = model.payload_spec().parse(decision.payload)
    y = model.codec.decompress_latent(model.coded_features([p], hw))
    z = torch.zeros(1, y.shape[1], *hyper_shape(tuple(y.shape[-2:])))
    total = cache.setdefault(("h_s", tuple(z.shape)), count_gflops(model.codec.hyper_synthesis, (z,)))
    for crop, origin, _ in model.region_crops(y, decode_tiles(p.fields[FIELD_TILES], y.shape[-2:], model.region_tile)):
        s = model.latent_stride()
        key = (tuple(crop.shape[-2:]), min(crop.shape[-2] * s, p.image_size[0] - origin[0]),
               min(crop.shape[-1] * s, p.image_size[1] - origin[1]), tuple(p.image_size))
        if key not in cache:
            def run(t, origin=origin):
                r = model.cloud_on_crop(t, origin, p.image_size)
                return [r.pred_boxes.tensor, r.scores]

            cache[key] = count_gflops(run, (crop,), model.codec.synthesis, model.backbone, model.proposal_generator,
                                      model.roi_heads)
        total += cache[key]
    return total


def codec_gflops(codec, feature):
    """(encoder side, decoder side) GFLOPs of coding one feature. A hyperprior's edge also runs h_a and h_s
    (the scales index the range coder), its cloud h_s; a passthrough codec costs none."""
    if codec.name == "passthrough":
        return 0.0, 0.0
    g_a, g_s, h_a, h_s = codec.analysis, codec.synthesis, codec.hyper_analysis, codec.hyper_synthesis
    y = g_a(feature)
    encoder, decoder = count_gflops(g_a, (feature,)), count_gflops(g_s, (y,))
    if h_a is not None:
        z = h_a(y)
        h_s_gflops = count_gflops(h_s, (z,))
        encoder += count_gflops(h_a, (y,)) + h_s_gflops
        decoder += h_s_gflops
    return encoder, decoder


def _edge_detector_gflops(model, images, x):
    """FLOPs of the edge detector on ``x`` (the trunk's features, or the image) when the model uses
    its answer (a policy other than "always")."""
    if model.edge_detector is None or model.policy == "always":
        return 0.0
    return count_gflops(lambda t: model.edge_detector(images, t)[1], (x,), model.edge_detector)


def _tensors(out):
    """The tensors of the edge's nested output (tuples, lists, dicts; None dropped), as a flat list for tracing."""
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        out = list(out.values())
    return [t for o in (out or ()) if o is not None for t in _tensors(o)]


def _heads(model, images, features):
    proposals, _ = model.proposal_generator(images, features, None)
    return model.roi_heads(images, features, proposals, None)[0]
