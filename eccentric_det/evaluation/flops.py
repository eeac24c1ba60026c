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

from ..modeling.backbone import SplitFeature
from ..modeling.backbone.resnet_stages import STAGES, build_resnet_parts


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
    offloaded image) and ``cloud_only`` (the cloud network on the whole image, no split).

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
        sent = ImageList.from_tensors([model._decode_jpeg(model.edge([batched_input])[0])], model.size_divisibility)
        cloud = count_gflops(lambda x: _heads(model, ImageList(x, sent.image_sizes), model.backbone(x)),
                             (sent.tensor,), model.backbone, model.proposal_generator, model.roi_heads)
        return {"edge": edge, "encoder": 0.0, "cloud": cloud, "cloud_only": cloud}
    if cloud_resnets is None:
        raise ValueError("counting cloud_only FLOPs of a features-mode model needs cloud_resnets (cfg.MODEL.RESNETS)")
    sb, codec = model.split_backbone, model.codec
    split = sb.split_at
    trunk = sb.edge_forward(images.tensor)
    edge = count_gflops(lambda x: sb.edge_forward(x)[split], (images.tensor,), sb)
    edge += _edge_detector_gflops(model, images, trunk)
    feature = trunk[split]
    coded = codec.compress(feature)
    encoder, decoder = _codec_gflops(codec, feature, coded)
    decoded = codec.decompress(coded)
    tail = count_gflops(lambda x: _heads(model, ImageList(x, images.image_sizes), model.backbone(SplitFeature(x))),
                        (decoded,), model.backbone, model.proposal_generator, model.roi_heads)
    parts, _ = build_resnet_parts(cloud_resnets, images.tensor.shape[1], STAGES[:STAGES.index(split) + 1])
    pre_split = nn.Sequential(*parts.values()).to(images.tensor.device).eval()
    return {"edge": edge + encoder, "encoder": encoder, "cloud": decoder + tail,
            "cloud_only": count_gflops(pre_split, (images.tensor,)) + tail}


def _edge_detector_gflops(model, images, x):
    """FLOPs of the edge detector on ``x`` (the trunk's features, or the image) when the model uses
    its answer (a policy other than "always")."""
    if model.edge_detector is None or model.policy == "always":
        return 0.0
    return count_gflops(lambda t: model.edge_detector(images, t)[1], (x,), model.edge_detector)


def _codec_gflops(codec, feature, coded):
    """(encoder, decoder) GFLOPs of one coded feature; a passthrough codec costs none."""
    if codec.name == "passthrough":
        return 0.0, 0.0
    y_hat = codec.decompress_latent(coded)
    if codec.name == "factorized":
        return (count_gflops(codec.encoder, (feature,)),
                count_gflops(lambda y: codec._fit(codec.decoder(y), feature.shape[-2:]), (y_hat,), codec.decoder))
    # Hyperprior: the edge also runs h_a and h_s (the scales index the range coder), the cloud h_s.
    z_hat = torch.round(codec.h_a(codec.encoder(feature)))
    h_s = count_gflops(codec.h_s, (z_hat,))
    encoder = count_gflops(lambda x: codec.h_a(codec.encoder(x)), (feature,), codec.encoder, codec.h_a) + h_s
    return encoder, count_gflops(codec.decoder, (y_hat,)) + h_s


def _heads(model, images, features):
    proposals, _ = model.proposal_generator(images, features, None)
    return model.roi_heads(images, features, proposals, None)[0]
