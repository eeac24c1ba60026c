"""Dataset registration: FashionDet (``fashion_det_{train,val}``), and availability and class-count checks for
any dataset.

COCO is registered by Detectron2 itself (``coco_2017_*`` under ``$DETECTRON2_DATASETS/coco``); datasets of your
own through the config (``DATASETS.REGISTER``, :mod:`eccentric_det.data.register`). FashionDet's registration
never touches the disk; missing files surface as a ``FileNotFoundError`` that says what to run, when the dataset
is first loaded (or through :func:`check_dataset_available`).
"""
import logging
import os

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json

from .fashion_det import FASHION_CLASSES, SPLITS

logger = logging.getLogger(__name__)

_FASHION_ROOTS = {}  # registered FashionDet dataset name -> (root, split)
_PREPARE = "python datasets/prepare_fashion_det.py"


def datasets_root():
    """``$DETECTRON2_DATASETS`` (``./datasets`` when the variable is unset), as Detectron2 reads it."""
    return os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets"))


def default_fashion_det_root():
    """``$DETECTRON2_DATASETS/fashion_det`` (``./datasets/fashion_det`` when the variable is unset)."""
    return os.path.join(datasets_root(), "fashion_det")


def _fashion_paths(root, split):
    return os.path.join(root, "annotations", f"fashion_det_{split}.json"), os.path.join(root, split)


def _check_fashion_det(name, root, split):
    json_file, image_root = _fashion_paths(root, split)
    done = os.path.join(root, "DONE")
    missing = [p for p in (image_root, json_file, done) if not os.path.exists(p)]
    if not missing:
        return
    fix = (f"Generate it with `{_PREPARE} --out {root}` (about 30 s on 2 CPU cores), or set DETECTRON2_DATASETS "
           "to the directory that holds fashion_det/.")
    if os.path.isdir(image_root):
        raise FileNotFoundError(f"FashionDet dataset '{name}' at {root} is incomplete (missing "
                                f"{', '.join(missing)}): its generation was interrupted. {fix}")
    raise FileNotFoundError(f"FashionDet dataset '{name}' not found: missing {', '.join(missing)}. {fix}")


def register_fashion_det(root=None, prefix="fashion_det"):
    """Register ``{prefix}_train`` and ``{prefix}_val`` (COCO format) from ``root`` (default
    :func:`default_fashion_det_root`). Re-registering a name with the same paths is a no-op; with
    other paths it replaces the old registration."""
    root = default_fashion_det_root() if root is None else os.fspath(root)
    for split in SPLITS:
        name = f"{prefix}_{split}"
        json_file, image_root = _fashion_paths(root, split)
        if name in DatasetCatalog.list():
            meta = MetadataCatalog.get(name)
            if meta.get("json_file") == json_file and meta.get("image_root") == image_root:
                continue
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)

        def load(name=name, split=split, json_file=json_file, image_root=image_root):
            _check_fashion_det(name, root, split)
            return load_coco_json(json_file, image_root, name)

        DatasetCatalog.register(name, load)
        MetadataCatalog.get(name).set(thing_classes=list(FASHION_CLASSES), json_file=json_file,
                                      image_root=image_root, evaluator_type="coco")
        _FASHION_ROOTS[name] = (root, split)


def check_dataset_available(name):
    """Raise ``FileNotFoundError`` (naming the missing path and the fix) unless the files of the
    registered dataset ``name`` exist; ``KeyError`` if ``name`` is not registered."""
    if name not in DatasetCatalog.list():
        raise KeyError(f"Dataset '{name}' is not registered (import eccentric_det.data to register FashionDet).")
    if name in _FASHION_ROOTS:
        _check_fashion_det(name, *_FASHION_ROOTS[name])
        return
    meta = MetadataCatalog.get(name)
    if meta.get("subset_of"):  # a DATASETS.REGISTER subset holds the files of its parent
        check_dataset_available(meta.subset_of)
        return
    for key in ("json_file", "image_root", "dirname", "gt_dir", "image_dir", "panoptic_root", "panoptic_json"):
        path = meta.get(key)
        if path and not os.path.exists(path):
            where = ("COCO must be laid out as $DETECTRON2_DATASETS/coco/{train2017,val2017,annotations}"
                     if name.startswith("coco") else "Set DETECTRON2_DATASETS to where the data lives")
            raise FileNotFoundError(f"Dataset '{name}': missing {key} {path}. {where}; see datasets/README.md.")


try:
    register_fashion_det()
except Exception as e:  # registration must never break an import
    logger.warning("FashionDet registration failed: %s", e)


def thing_classes(name):
    """The class names of the registered dataset ``name`` as its metadata holds them before it is loaded, or None."""
    return MetadataCatalog.get(name).get("thing_classes") if name in DatasetCatalog.list() else None


def check_class_count(cfg, datasets=None):
    """Raise a ValueError, with the fix, when the model's class count (MODEL.ROI_HEADS.NUM_CLASSES;
    MODEL.RETINANET.NUM_CLASSES for RetinaNet) differs from the number of ``thing_classes`` of a dataset in
    ``datasets`` (default: DATASETS.TRAIN and DATASETS.TEST): such a model learns or is scored on wrong labels
    without a word (AP 0). Classification configs (MODEL.CLS), unregistered datasets (:func:`check_dataset_available`
    reports them) and datasets that name their classes only once loaded are not checked."""
    if "CLS" in cfg.MODEL:
        return
    key = "RETINANET" if cfg.MODEL.META_ARCHITECTURE == "RetinaNet" else "ROI_HEADS"
    count = cfg.MODEL[key].NUM_CLASSES
    names = list(cfg.DATASETS.TRAIN) + list(cfg.DATASETS.TEST) if datasets is None else list(datasets)
    for name in dict.fromkeys(names):
        classes = thing_classes(name)
        if classes is not None and len(classes) != count:
            shown = ", ".join(classes[:5]) + (", ..." if len(classes) > 5 else "")
            raise ValueError(f"MODEL.{key}.NUM_CLASSES is {count}, but dataset {name!r} has {len(classes)} classes "
                             f"({shown}): the model would be trained or scored on the wrong labels. Set "
                             f"MODEL.{key}.NUM_CLASSES {len(classes)} (a checkpoint trained for another class count "
                             f"does not load: train one for this dataset).")


def class_names_of(cfg):
    """``thing_classes`` of the config's first test dataset, or None."""
    return MetadataCatalog.get(cfg.DATASETS.TEST[0]).get("thing_classes") if cfg.DATASETS.TEST else None
