"""The names of the Pareto series, each written once: what a sweep's plan calls its points
(:func:`eccentric_det.reports.pareto.plan`), what an ``--eval-only`` result is called
(:func:`eccentric_det.reports.pareto.result_series`), and what the recipe's report and the tables look for.

The names are stored in pareto.json files, and earlier files are merged with new ones: a name must never change.
Pure Python (no Detectron2, no imports): the recipe's report and ``tools/train_eccentric.py`` read it before
anything heavy.
"""
CLOUD_ONLY = "cloud-only"  # an --eval-only run of a model with no split (and the prefix of the image codecs' series)
CLOUD_ONLY_JPEG = "cloud-only JPEG"
CLOUD_ONLY_WEBP = "cloud-only WebP"
CLOUD_ONLY_AVIF = "cloud-only AVIF"
CLOUD_ONLY_PNG = "cloud-only PNG"
EDGE_ONLY = "edge-only"
ADAPTIVE = "Adaptive ECC"
ADAPTIVE_VARIABLE_RATE = "Adaptive ECC (variable rate)"
RATE_WEIGHTS = "rate-weight checkpoints"
DYNAMIC = "Dynamic ECC"
DYNAMIC_REGIONS = "Dynamic ECC (regions)"
INDEPENDENT = "Independent ECC"
INDEPENDENT_DYNAMIC = "Independent ECC (dynamic)"
SC2BENCH = "sc2bench bottleneck"
CONFIG = "config"  # a sweep of no operating points: the config as it is
EARLIER_RUNS = "earlier runs"  # an --eval-only result whose config summary cannot tell what it evaluated

ANCHOR = CLOUD_ONLY_JPEG  # the image-offload baseline of BD-rate
IMAGE_CODEC_SERIES = {"jpeg": CLOUD_ONLY_JPEG, "webp": CLOUD_ONLY_WEBP, "avif": CLOUD_ONLY_AVIF,
                      "png": CLOUD_ONLY_PNG}  # the image codecs a sweep can code images with -> their series

# every series -> what its points are (the report's ceilings quote the first part of two of them)
SERIES = {
    CLOUD_ONLY: "the cloud model alone on the whole image, no split (an --eval-only run)",
    CLOUD_ONLY_JPEG: "the cloud teacher on JPEG images",
    CLOUD_ONLY_WEBP: "the cloud teacher on WebP images",
    CLOUD_ONLY_AVIF: "the cloud teacher on AVIF images",
    CLOUD_ONLY_PNG: "the cloud teacher on lossless images",
    EDGE_ONLY: "the edge detector alone",
    ADAPTIVE: "every image's coded edge features to the cloud",
    ADAPTIVE_VARIABLE_RATE: "every image's coded edge features to the cloud, at one level of a variable-rate codec",
    RATE_WEIGHTS: "Adaptive ECC checkpoints trained at several rate weights",
    DYNAMIC: "the edge's gate offloads the coded features of the images it needs help on",
    DYNAMIC_REGIONS: "the edge's region gate offloads the coded features of the tiles it needs help on",
    INDEPENDENT: "the edge detector on the device, every image as JPEG to the cloud",
    INDEPENDENT_DYNAMIC: "the edge detector on the device, the images its gate offloads as JPEG to the cloud",
    SC2BENCH: "sc2bench's learned bottleneck in the cloud detector (its encoder on the edge)",
    CONFIG: "the config as it is (a sweep of no operating points)",
    EARLIER_RUNS: "an earlier --eval-only run whose results do not say what it evaluated",
}
NAMES = tuple(SERIES)


def image_codec_series(codec):
    """The series of the cloud model on images coded with ``codec`` ("jpeg", "webp", "avif", "png")."""
    try:
        return IMAGE_CODEC_SERIES[codec]
    except KeyError:
        raise ValueError(f"no series for image codec {codec!r}; known: {', '.join(IMAGE_CODEC_SERIES)}") from None


def is_cloud_only(series):
    """Is ``series`` the cloud model alone (on the whole image or on coded images): no split, every image sent?"""
    return str(series).startswith(CLOUD_ONLY)


def adaptive_series(variable_rate=False):
    return ADAPTIVE_VARIABLE_RATE if variable_rate else ADAPTIVE


def dynamic_series(regions=False):
    return DYNAMIC_REGIONS if regions else DYNAMIC


def independent_series(dynamic=False):
    return INDEPENDENT_DYNAMIC if dynamic else INDEPENDENT
