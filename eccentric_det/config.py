"""``cfg.MODEL.ECCENTRIC``: every knob of the edge/cloud split, the codec, offloading and training
(:func:`add_eccentric_config` adds keys only), and :func:`build_cfg`, the config factory that the task and
serving extensions are handed to (:func:`eccentric_det.tasks.get_eccentric_cfg` picks them for a config file)."""
import logging
import os

import torch
from detectron2.config import CfgNode as CN
from detectron2.config import get_cfg
from detectron2.utils.logger import log_first_n

from .data import register_datasets

# The ResNet stages in order: MODEL.ECCENTRIC.SPLIT_AT names one of them (all but the last).
STAGES = ("stem", "res2", "res3", "res4", "res5")


def add_eccentric_config(cfg):
    """Add ``cfg.MODEL.ECCENTRIC`` (and ``cfg.TEST.ECCENTRIC``, ``cfg.DATASETS.REGISTER``) to a Detectron2 config,
    in place. Keys only: importing :mod:`eccentric_det.modeling` registers the Detectron2 components."""
    _C = cfg
    _C.MODEL.ECCENTRIC = CN()
    E = _C.MODEL.ECCENTRIC
    # Where the cloud takes over: the edge runs up to and including this stage ("stem", "res2", "res3", "res4").
    E.SPLIT_AT = "res2"
    # FPN levels that lie before the split are dropped from the cloud (never sent): MODEL.FPN.IN_FEATURES
    # must then start at the split stage. "drop" is the only policy; it is checked when the model is built.
    E.PRE_SPLIT_LEVELS = "drop"
    # Which half this process builds: "both" (training, in-process evaluation), "edge" (a device) or "cloud" (a server).
    E.HALF = "both"
    # What an offloaded image sends: "features" (Adaptive ECC: coded edge features) or "image" (Independent ECC: JPEG).
    E.OFFLOAD_MODE = "features"
    # JPEG quality of the image sent in "image" mode (OpenCV, 0-100).
    E.JPEG_QUALITY = 90

    # KnowledgeAdaptedROIHeads: add zero-initialised residual 1x1 adapters on the ROI input levels.
    E.ROI_ADAPTER = True

    E.EDGE = CN()
    # The edge network. DEPTH 0 means "the same ResNet as MODEL.RESNETS"; otherwise these keys describe the edge
    # ResNet in full (any width: 18/34 may use narrow stages here, unlike MODEL.RESNETS).
    E.EDGE.RESNETS = CN()
    E.EDGE.RESNETS.DEPTH = 0
    # Edge stem width.
    E.EDGE.RESNETS.STEM_OUT_CHANNELS = 64
    # Edge res2 width (res3..res5 double it).
    E.EDGE.RESNETS.RES2_OUT_CHANNELS = 64
    # Bottleneck width per group (R-50 and deeper only).
    E.EDGE.RESNETS.WIDTH_PER_GROUP = 64
    # Groups of the 3x3 bottleneck conv (R-50 and deeper only).
    E.EDGE.RESNETS.NUM_GROUPS = 1
    # Edge normalisation ("BN", "FrozenBN", "GN", "SyncBN", "").
    E.EDGE.RESNETS.NORM = "FrozenBN"
    # Put the stride in the 1x1 conv of bottleneck blocks (MSRA weights: True; torchvision weights: False).
    E.EDGE.RESNETS.STRIDE_IN_1X1 = True
    # Does the edge run a small detector of its own (Independent and Dynamic ECC)? Its heads read the same trunk.
    E.EDGE.DETECTOR = False
    # FPN width of the edge detector.
    E.EDGE.FPN_OUT_CHANNELS = 64
    # FC width of the edge detector's box head.
    E.EDGE.BOX_FC_DIM = 256
    # Checkpoint that supplies the edge trunk, edge detector and gate over MODEL.WEIGHTS; "" keeps MODEL.WEIGHTS.
    # It never replaces codec tensors (backbone.bottom_up.codec.*) that MODEL.WEIGHTS holds with other values (a
    # trained codec): that is refused. It may add codec tensors MODEL.WEIGHTS lacks (a cloud teacher's checkpoint).
    E.EDGE.WEIGHTS = ""

    E.CODEC = CN()
    # A codec registered in eccentric_det.codec.CODEC_REGISTRY, by its name: "mean_scale" (codec v2: mean-scale
    # hyperprior with GDN, variable rate), "factorized" (CompressAI EntropyBottleneck), "hyperprior" (scale
    # hyperprior), "passthrough" (lossless float32), or one of your own.
    E.CODEC.NAME = "factorized"
    # Channels of the latent that is quantised and entropy coded.
    E.CODEC.LATENT_CHANNELS = 32
    # Channels of the encoder's and decoder's hidden layers.
    E.CODEC.HIDDEN_CHANNELS = 96
    # Spatial downsampling of the latent relative to the split feature (1, 2 or 4).
    E.CODEC.DOWNSAMPLE = 2
    # Weight of the rate term (bits per input pixel) in the training loss.
    E.CODEC.RATE_WEIGHT = 0.01
    # Variable rate (mean_scale): one model trained at these rate weights, one level each, in increasing order
    # (level 0 sends the most bytes); empty: one rate, trained at RATE_WEIGHT.
    E.CODEC.RATE_WEIGHTS = []
    # Variable rate: the level the edge codes at (0..len(RATE_WEIGHTS) - 1; fractional values interpolate
    # between the two levels around them). Chosen at run time; the payload carries it to the cloud.
    E.CODEC.RATE = 0.0
    # Code the latent's symbols under a prior of each element of its one fixed shape (classification: inputs of one
    # size), counted on training images after training (tools/fit_symbol_prior.py); "factorized" codecs only. Fewer
    # bytes where positions differ (a classifier's centred objects), the same decoded latent.
    E.CODEC.POSITIONAL_PRIOR = False
    # The fitted positional prior (tools/fit_symbol_prior.py writes it: codec.symbol_prior.* alone), loaded over
    # MODEL.WEIGHTS; empty: the one MODEL.WEIGHTS holds.
    E.CODEC.PRIOR_WEIGHTS = ""
    # Learning-rate multiplier of the codec's parameters (the entropy model learns slowly under SGD).
    E.CODEC.LR_FACTOR = 10.0

    E.OFFLOAD = CN()
    # "always" (every image to the cloud), "never" (edge only) or "dynamic" (the edge decides per image).
    E.OFFLOAD.POLICY = "always"
    # Dynamic ECC: offload when the gate's "edge needs help" probability is at least this.
    E.OFFLOAD.THRESHOLD = 0.5
    # Detections of the edge below this score are ignored by the gate's statistics.
    E.OFFLOAD.MIN_SCORE = 0.05
    # Region-level Dynamic ECC (policy "dynamic"): the edge sends the coded latent only in the tiles its region gate
    # scores at least THRESHOLD, the cloud runs on those regions alone, and the edge keeps its own detections
    # elsewhere. Tile side in latent cells, a multiple of 4 (the latent's stride is the split's times
    # CODEC.DOWNSAMPLE; 4 cells are 32 pixels on FashionDet); 0 offloads whole images. Needs a hyperprior codec
    # (mean_scale, hyperprior).
    E.OFFLOAD.REGION = CN()
    E.OFFLOAD.REGION.TILE = 0
    # Tiles of context the edge also sends around each tile its gate selects (the cloud detects objects that cross a
    # tile's border only with them); the cloud's detections replace the edge's in every tile sent.
    E.OFFLOAD.REGION.DILATE = 1
    # Latent cells (a multiple of 4) around each region that the cloud's crop also covers, filled with the
    # hyperprior's means where nothing was sent: its convolutions' borders fall outside the tiles sent.
    E.OFFLOAD.REGION.MARGIN = 0
    # The cloud's RPN keeps this many proposals per image area on a region, relative to the whole image's
    # (MODEL.RPN.PRE/POST_NMS_TOPK_TEST times the region's share of the image, times this).
    E.OFFLOAD.REGION.PROPOSALS = 1.0
    # Rate control of a stream (tools/demo.py, tools/edge_client.py, benchmarks/bench_video.py; the edge's stream loop,
    # eccentric_det/edge/stream.py): the uplink's budget in kbit/s; 0: no budget (the configured rate and threshold,
    # the same payloads as without these keys). Per frame the edge picks the codec's rate level (any of
    # CODEC.RATE_WEIGHTS' levels, fractional ones included) and, under pressure, a higher offload threshold and fewer
    # tiles, so that a leaky bucket of this rate never overflows; a frame that does not fit stays on the edge.
    E.OFFLOAD.BUDGET_KBPS = 0.0
    # The stream's frames per second (the bucket drains BUDGET_KBPS / FPS per frame); 0: the video's own rate where a
    # tool reads a video (tools/demo.py), else required with a budget.
    E.OFFLOAD.FPS = 0.0
    # The bucket's size, in seconds of the budget (at least one frame's share): how far one frame may burst above it.
    E.OFFLOAD.BUFFER_S = 1.0
    # Temporal reuse (the cloud stays stateless): a frame (region-level: a tile) the edge would send is answered from
    # the cloud's last answer for it when the cloud saw it within REUSE.KEYFRAME frames and the latent the edge codes
    # changed less than REUSE.THRESHOLD since (RMS of the difference over the tile, relative to the RMS of the whole
    # latent); 0: no reuse.
    E.OFFLOAD.REUSE = CN()
    E.OFFLOAD.REUSE.THRESHOLD = 0.0
    # The most frames a cached answer is reused for before the cloud sees the tile (frame) again.
    E.OFFLOAD.REUSE.KEYFRAME = 25
    # Motion-compensated reuse (eccentric_det/split/reuse.py): the edge follows its own detections frame to frame at
    # this IoU and answers a tile whose objects the cloud all answered within KEYFRAME frames with those answers,
    # moved as the objects moved; 0: off. Needs the edge detector (Dynamic ECC).
    E.OFFLOAD.REUSE.TRACK_IOU = 0.0

    E.DISTILL = CN()
    # Training mode: "task" (plain), "kd" (teacher -> edge detector), "adapt" (cloud consumes the edge's features).
    E.DISTILL.MODE = "task"
    # Teacher config file (any Detectron2 config; resolved against cwd, then the shipped configs); frozen.
    E.DISTILL.TEACHER_CONFIG = ""
    # Overrides of the teacher config, a flat list [KEY, VALUE, ...] applied last (after MODEL.WEIGHTS
    # TEACHER_WEIGHTS and this config's MODEL.ROI_HEADS.NUM_CLASSES and DATASETS.REGISTER, which the teacher takes).
    E.DISTILL.TEACHER_OPTS = []
    # Teacher weights.
    E.DISTILL.TEACHER_WEIGHTS = ""
    # Softmax temperature of ROI logit distillation.
    E.DISTILL.TEMPERATURE = 2.0
    # Weight of ROI classification-logit distillation (KL, times T^2).
    E.DISTILL.LOGIT_WEIGHT = 1.0
    # Weight of ROI box-regression distillation (smooth L1 to the teacher's deltas).
    E.DISTILL.BOX_WEIGHT = 0.5
    # Weight of feature matching (MSE to the teacher's features at the split level and FPN levels).
    E.DISTILL.FEATURE_WEIGHT = 1.0
    # Weight of the ground-truth task losses while distilling/adapting.
    E.DISTILL.TASK_WEIGHT = 1.0
    # Parameter-name prefixes kept frozen while training (e.g. the edge during adaptation).
    E.DISTILL.FREEZE = []
    # DISTILL.MODE "adapt": weight of the edge's own losses (its detector's or classifier head's task losses and KD
    # to the teacher) beside the adaptation losses. Above 0, with DISTILL.FREEZE empty, the edge trunk, the codec and
    # the cloud train jointly (joint adaptation): the edge's early layers learn to carry what the cloud needs while
    # the edge keeps its own accuracy. Needs the edge's own detector or head; 0: the edge's losses are not used.
    E.DISTILL.EDGE_LOSS_WEIGHT = 0.0
    # DISTILL.MODE "adapt": how the cloud's distillation weights (feature matching, logit and box distillation) go over
    # the run: "none" (constant) or "cosine" (from their value to 0 at SOLVER.MAX_ITER by a half cosine: the cloud is
    # aligned to the teacher first and learns from the ground truth alone at the end, instead of being held at the
    # teacher's accuracy). The edge's own losses are not decayed.
    E.DISTILL.DECAY = "none"

    E.PAYLOAD = CN()
    # What a cloud accepts. Longest side of the network input a payload may claim; 0: the model's own
    # limit (detection: INPUT.MAX_SIZE_TEST; classification: 2048). Larger payloads are refused with 400.
    E.PAYLOAD.MAX_IMAGE_SIDE = 0
    # Shorter side of the network input a payload may claim; 0: the model's own (detection: INPUT.MIN_SIZE_TEST).
    E.PAYLOAD.MAX_IMAGE_SHORT_SIDE = 0
    # Longest side of the original image (the size detections are scaled to) a payload may claim.
    E.PAYLOAD.MAX_OUTPUT_SIDE = 16384

    # Stopping a training run early (tools/train_net.py): at the plateau of its learning curve (SOLVER.PLATEAU.STOP:
    # the EvalHook's METRIC on DATASETS.TEST every TEST.EVAL_PERIOD iterations, a held-out split of the training
    # images; flat when the best of the last quarter of iterations is less than MIN_GAIN above the best before it,
    # after at least MIN_POINTS evaluations), or after SOLVER.MAX_MINUTES of training (0: no limit). Either way
    # OUTPUT_DIR/stop.json says what ended the run.
    _C.SOLVER.PLATEAU = CN()
    _C.SOLVER.PLATEAU.STOP = False
    _C.SOLVER.PLATEAU.METRIC = "bbox/AP"
    _C.SOLVER.PLATEAU.MIN_GAIN = 0.3
    _C.SOLVER.PLATEAU.MIN_POINTS = 4
    _C.SOLVER.MAX_MINUTES = 0.0

    _C.TEST.ECCENTRIC = CN()
    # Count edge and cloud FLOPs with fvcore during evaluation (per half, per image).
    _C.TEST.ECCENTRIC.FLOPS = True
    # Images used for the FLOP count (FLOPs barely change between images of one size).
    _C.TEST.ECCENTRIC.FLOPS_IMAGES = 2

    # Datasets registered whenever a config is built (eccentric_det/data/register.py), one list per dataset:
    # [NAME, "coco", JSON_FILE, IMAGE_DIR] (COCO format), [NAME, "voc", VOC_DIR, SPLIT] (Pascal VOC; classes from
    # VOC_DIR/ImageSets/Main/<class>_SPLIT.txt, else VOC's 20) or [NAME, "subset", PARENT, "train"|"holdout",
    # FRACTION] (a stable split of a registered dataset by a hash of each image's file name: "holdout" keeps about
    # FRACTION of the images, "train" the rest; e.g. fit the offload gate on the holdout). Relative paths: cwd.
    _C.DATASETS.REGISTER = []


CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")


def resolve_config_file(path):
    """``path`` as given if it exists, else relative to the configs shipped with eccentric_det."""
    if os.path.isfile(path):
        return path
    shipped = os.path.join(CONFIG_DIR, path)
    if os.path.isfile(shipped):
        return shipped
    raise FileNotFoundError(f"Config file {path!r} not found, neither as given nor under {CONFIG_DIR}. "
                            f"Pass a path to a .yaml file, e.g. configs/FashionDet/adaptive_ecc.yaml.")


KEY_DOCS = ("eccentric_det/config.py (MODEL.ECCENTRIC, TEST.ECCENTRIC), eccentric_det/classification/config.py "
            "(MODEL.CLS, DATA_CLS), eccentric_det/serving/config.py (SERVING) and Detectron2's "
            "detectron2/config/defaults.py")


def fall_back_to_cpu(cfg):
    """Set MODEL.DEVICE to cpu, with a warning, when it names CUDA and this machine has none."""
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        log_first_n(logging.WARNING, "No CUDA device: running on CPU (MODEL.DEVICE cpu).", name="eccentric_det",
                    key="message")
        cfg.MODEL.DEVICE = "cpu"
    return cfg


def is_classification_config(config_file):
    """Whether a config file (with its ``_BASE_`` files) describes a classifier (sets MODEL.CLS or DATA_CLS)."""
    data = CN.load_yaml_with_base(resolve_config_file(config_file), allow_unsafe=True)
    return "DATA_CLS" in data or "CLS" in (data.get("MODEL") or {})


def _ints_as_floats(cfg, opts):
    """``opts`` with an integer given for a float key (``CODEC.RATE 4``, ``OFFLOAD.THRESHOLD 1``) as that float:
    yacs refuses the type mismatch."""
    out = list(opts)
    for i in range(0, len(out) - 1, 2):
        node, *path = [cfg] + str(out[i]).split(".")
        for part in path:
            node = node.get(part) if isinstance(node, dict) else None
        value = out[i + 1]
        if isinstance(node, float) and isinstance(value, (int, str)) and not isinstance(value, bool):
            try:
                out[i + 1] = float(int(value))
            except ValueError:
                pass
    return out


def build_cfg(config_file=None, opts=(), extensions=()):
    """Detectron2's defaults with ``MODEL.ECCENTRIC`` and each of ``extensions`` (functions that add keys, e.g.
    ``add_classification_config``), merged from ``config_file`` and the ``opts`` overrides (KEY VALUE ...; a leading
    "--", which ends a tool's options before them, is dropped), the datasets of DATASETS.REGISTER registered,
    MODEL.DEVICE cpu on a machine without CUDA. An unknown key is a KeyError naming the key, where it came from and
    where keys are documented; a bad DATASETS.REGISTER entry a ValueError. Not frozen."""
    cfg = get_cfg()
    add_eccentric_config(cfg)
    for extend in extensions:
        extend(cfg)
    opts = list(opts)
    if opts[:1] == ["--"]:
        opts = opts[1:]
    merges = ((config_file, lambda: cfg.merge_from_file(resolve_config_file(config_file))),
              ("the command-line overrides", lambda: cfg.merge_from_list(_ints_as_floats(cfg, opts))))
    for source, merge in merges:
        if not source:
            continue
        try:
            merge()
        except (AssertionError, KeyError) as e:  # yacs reports an unknown key in overrides with an assertion
            message = e.args[0] if e.args else repr(e)
            if "Non-existent" not in str(message):  # e.g. an odd number of overrides
                raise ValueError(f"{message} (in {source})") from None
            raise KeyError(f"{message} (in {source}): check the key's spelling; keys are documented in "
                           f"{KEY_DOCS}") from None
    register_datasets(cfg.DATASETS.REGISTER)
    return fall_back_to_cpu(cfg)
