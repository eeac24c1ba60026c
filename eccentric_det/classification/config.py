"""``cfg.MODEL.CLS`` and ``cfg.DATA_CLS``: the timm split classifier and its data, beside ``cfg.MODEL.ECCENTRIC``.

The codec (``MODEL.ECCENTRIC.CODEC``), offloading (``OFFLOAD_MODE``, ``OFFLOAD.POLICY``/``THRESHOLD``), the half
a process builds (``HALF``), training modes (``DISTILL``), ``MODEL.WEIGHTS``, ``MODEL.ECCENTRIC.EDGE.WEIGHTS``,
``DATASETS``, ``SOLVER`` and ``OUTPUT_DIR`` keep their detection meaning.
"""
from detectron2.config import CfgNode as CN


def add_classification_config(cfg):
    """Add ``cfg.MODEL.CLS`` and ``cfg.DATA_CLS`` to a config, in place (``get_eccentric_cfg`` calls it for
    classification configs)."""
    cfg.MODEL.CLS = CN()
    C = cfg.MODEL.CLS
    # The cloud timm model (any name timm.create_model knows; built without pretrained weights).
    C.TIMM_NAME = "resnet18"
    # Extra keyword arguments of timm.create_model for the cloud model (e.g. channels, img_size, class_token); timm's
    # create_model drops one set to null, so a config can unset its base's.
    C.TIMM_KWARGS = CN(new_allowed=True)
    # The edge timm model; "" means the same model (and kwargs) as the cloud.
    C.EDGE_TIMM_NAME = ""
    # Extra keyword arguments of timm.create_model for the edge model (used when EDGE_TIMM_NAME is set).
    C.EDGE_TIMM_KWARGS = CN(new_allowed=True)
    # Where the cloud takes over: an index into the cloud model's feature_info (forward_intermediates' indices).
    C.SPLIT_INDEX = 2
    # The edge's feature_info index sent to the cloud (same stride as SPLIT_INDEX); -1 means SPLIT_INDEX.
    C.EDGE_SPLIT_INDEX = -1
    # What an image payload (OFFLOAD_MODE "image": the cloud-only baseline) is coded as: "png" (lossless; quality is
    # the compression level 0-9), "jpeg" (quality 0-100), "webp" (1-100; 101: lossless) or "avif" (0-100).
    C.IMAGE_CODEC = "png"
    C.IMAGE_QUALITY = 9
    # Number of classes of both heads.
    C.NUM_CLASSES = 10
    # Input channels (1: grayscale, 3: RGB).
    C.IN_CHANS = 3
    # Side of the square network input; images of another size are resized (bilinear) before the network.
    C.IMAGE_SIZE = 224
    # Side of the edge model's square input; 0 means IMAGE_SIZE. A cheap edge at a smaller size may feed a cloud at a
    # larger one when both split features have the same grid (side / stride): e.g. 28 at stride 2 under 56 at stride 4.
    C.EDGE_IMAGE_SIZE = 0
    # Per-channel mean of the 0-255 input (RGB order), subtracted before the network.
    C.PIXEL_MEAN = [123.675, 116.28, 103.53]
    # Per-channel std of the 0-255 input, divided out after the mean.
    C.PIXEL_STD = [58.395, 57.12, 57.375]
    # Dynamic ECC: before evaluating, fit MODEL.ECCENTRIC.OFFLOAD.THRESHOLD (on 1 - the edge's max softmax) so that
    # this fraction of the held-out images the edge gets wrong is offloaded (recall-rate boosting); 0: keep it.
    C.GATE_RECALL = 0.0

    cfg.DATA_CLS = CN()
    D = cfg.DATA_CLS
    # Dataset root; "" means the dataset's default (Debian's /usr/share/datasets/fashion-mnist for Fashion-MNIST,
    # $DETECTRON2_DATASETS (default ./datasets) holding cifar-10-batches-py for CIFAR-10).
    D.ROOT = ""
    # The last HOLDOUT images of the training split are never trained on: they calibrate the Dynamic ECC gate.
    D.HOLDOUT = 5000
    # Train on the first TRAIN_LIMIT images of the training split (after the holdout is removed); 0 means all.
    D.TRAIN_LIMIT = 0
    # Evaluate on the first TEST_LIMIT test images; 0 means all.
    D.TEST_LIMIT = 0
    # Augment training images by random horizontal flips.
    D.FLIP = False
    # Augment training images by random crops of the image zero-padded by this many pixels per side; 0: none.
    D.CROP_PADDING = 0
    # Augment this fraction of the training images by random erasing (one rectangle of random pixels, 2-40% of
    # the image; eccentric_det.classification.data.random_erasing); 0: none.
    D.ERASE_PROB = 0.0
    # Batch size of evaluation on the cloud and of gate calibration (the edge runs one image at a time).
    D.TEST_BATCH_SIZE = 256
    return cfg
