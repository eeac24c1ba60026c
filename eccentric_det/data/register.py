"""Datasets from the config (``DATASETS.REGISTER``): COCO-format and Pascal VOC folders, and held-out subsets.

Each entry is a list of strings, by kind:

* ``[NAME, "coco", JSON_FILE, IMAGE_DIR]``: a COCO-format annotation file and its images (Detectron2's
  ``register_coco_instances``). The file is checked and its categories read when it is registered.
* ``[NAME, "voc", VOC_DIR, SPLIT]``: a Pascal VOC folder (``Annotations/``, ``JPEGImages/``,
  ``ImageSets/Main/SPLIT.txt``; Detectron2's ``register_pascal_voc``). The class names are those of the
  folder's ``ImageSets/Main/<class>_SPLIT.txt`` files, else VOC's 20.
* ``[NAME, "subset", PARENT, "train" | "holdout", FRACTION]``: a deterministic split of the registered dataset
  PARENT: "holdout" keeps the images whose file name hashes below FRACTION (:func:`in_holdout`), "train" all
  others. The two parts are disjoint, cover PARENT, and keep their images when images are added or reordered.

Relative paths are resolved against the current directory. Registering a name again with the same entry is a
no-op; with another entry (or a name registered elsewhere, e.g. ``coco_2017_train``) it is an error.
"""
import hashlib
import json
import os

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances, register_pascal_voc
from detectron2.data.datasets.pascal_voc import CLASS_NAMES as VOC_CLASSES

FORMATS = ('["NAME", "coco", JSON_FILE, IMAGE_DIR], ["NAME", "voc", VOC_DIR, SPLIT] or '
           '["NAME", "subset", PARENT, "train" | "holdout", FRACTION]')
KINDS = {"coco": ("json_file", "image_root"), "voc": ("dirname", "split"), "subset": ("parent", "part", "fraction")}
PARTS = ("train", "holdout")

_REGISTERED = {}  # dataset name -> the resolved entry that registered it


def register_datasets(entries):
    """Register every entry of ``DATASETS.REGISTER`` (see the module docstring), in order (a subset's parent
    may be an earlier entry). Returns their names. A bad entry is a ValueError naming it, the problem and the fix."""
    return [register_dataset(entry) for entry in entries]


def register_dataset(entry):
    """Register one ``DATASETS.REGISTER`` entry; returns its name. See :func:`register_datasets`."""
    name, kind, args = _parse(entry)
    resolved = [name, kind, *args]
    if name in DatasetCatalog.list():
        if _REGISTERED.get(name) == resolved:
            return name
        old = (f"as {_REGISTERED[name]}" if name in _REGISTERED
               else "by other code (Detectron2's builtin datasets, FashionDet or a script)")
        raise _error(entry, f"dataset {name!r} is already registered {old}", "give one of them another name")
    if kind == "coco":
        register_coco_instances(name, _read_coco(entry, *args), *args)
    elif kind == "voc":
        register_pascal_voc(name, args[0], args[1], _voc_year(args[0]), _voc_classes(entry, *args))
    else:
        _register_subset(entry, name, *args)
    _REGISTERED[name] = resolved
    return name


def in_holdout(file_name, fraction):
    """Whether an image belongs to the held-out part of a subset split: a hash of its file's base name (stable
    when the dataset moves, is reordered or grows) falls below ``fraction``."""
    digest = hashlib.sha1(os.path.basename(file_name).encode()).digest()
    return int.from_bytes(digest[:8], "big") < fraction * 2 ** 64


def _error(entry, problem, fix):
    return ValueError(f"DATASETS.REGISTER entry {list(entry) if isinstance(entry, (list, tuple)) else entry!r}: "
                      f"{problem}; {fix}.")


def _parse(entry):
    """(name, kind, arguments) of an entry: paths made absolute, a subset's fraction a float in (0, 1)."""
    if not (isinstance(entry, (list, tuple)) and len(entry) >= 2 and all(isinstance(v, str) for v in entry[:2])):
        raise _error(entry, "not a list [NAME, KIND, ...]", f"DATASETS.REGISTER is a list of entries, each one of "
                                                            f"{FORMATS}")
    name, kind, *args = entry
    if kind not in KINDS:
        raise _error(entry, f"unknown kind {kind!r}", f"use one of {', '.join(KINDS)}: {FORMATS}")
    if len(args) != len(KINDS[kind]) or not all(isinstance(v, (str, int, float)) for v in args):
        raise _error(entry, f"a {kind} entry takes {len(KINDS[kind])} values after its kind "
                            f"({', '.join(KINDS[kind])}), not {args}", f"write it as {FORMATS}")
    if kind == "coco":
        return name, kind, [_absolute(args[0]), _absolute(args[1])]
    if kind == "voc":
        return name, kind, [_absolute(args[0]), str(args[1])]
    parent, part, fraction = args
    try:
        fraction = float(fraction)
    except ValueError:
        fraction = None
    if part not in PARTS or fraction is None or not 0 < fraction < 1:
        raise _error(entry, f"a subset takes the part 'train' or 'holdout' and a fraction strictly between 0 and 1, "
                            f"got {part!r} and {args[2]!r}", 'e.g. ["my_train_holdout", "subset", "my_train", '
                                                             '"holdout", "0.1"]')
    return name, kind, [str(parent), part, fraction]


def _absolute(path):
    return os.path.abspath(os.path.expanduser(str(path)))


def _missing(entry, what, path, fix="check the path"):
    return _error(entry, f"{what} {path} does not exist",
                  f"{fix} (relative paths are resolved against the current directory, {os.getcwd()})")


def _read_coco(entry, json_file, image_root):
    """The metadata of a COCO-format dataset (``thing_classes`` by category id, and the id map), checked."""
    if not os.path.isfile(json_file):
        raise _missing(entry, "annotation file", json_file)
    if not os.path.isdir(image_root):
        raise _missing(entry, "image folder", image_root)
    try:
        with open(json_file) as f:
            data = json.load(f)
    except ValueError as e:
        raise _error(entry, f"{json_file} is not valid JSON ({e})", "fix the file or export it again") from None
    if not isinstance(data, dict) or not data.get("images"):
        raise _error(entry, f"{json_file} lists no images", "a COCO annotation file needs a non-empty 'images' list")
    cats = data.get("categories")
    if not cats or not all(isinstance(c, dict) and "id" in c and "name" in c for c in cats):
        raise _error(entry, f"{json_file} lists no categories", "a COCO annotation file needs a 'categories' list "
                                                                'of {"id": ..., "name": ...} objects')
    ids = sorted(c["id"] for c in cats)
    unknown = sorted({a.get("category_id") for a in data.get("annotations") or []} - set(ids), key=str)
    if unknown:
        raise _error(entry, f"annotations of {json_file} refer to category ids {unknown[:10]} that its 'categories' "
                            f"do not define (ids {ids[:20]})", "add those categories or correct the annotations")
    return {"thing_classes": [c["name"] for c in sorted(cats, key=lambda c: c["id"])],
            "thing_dataset_id_to_contiguous_id": {i: k for k, i in enumerate(ids)}}


def _voc_year(dirname):
    return 2007 if "2007" in os.path.basename(dirname) else 2012


def _voc_classes(entry, dirname, split):
    """The class names of a VOC folder (its ``ImageSets/Main/<class>_<split>.txt`` files, else VOC's 20), checked."""
    main = os.path.join(dirname, "ImageSets", "Main")
    for path in (os.path.join(dirname, "Annotations"), os.path.join(dirname, "JPEGImages"),
                 os.path.join(main, split + ".txt")):
        if not os.path.exists(path):
            raise _missing(entry, "VOC path", path,
                           "a Pascal VOC folder holds Annotations/, JPEGImages/ and ImageSets/Main/<split>.txt")
    suffix = f"_{split}.txt"
    names = sorted(f[:-len(suffix)] for f in os.listdir(main) if f.endswith(suffix))
    return names or list(VOC_CLASSES)


def _register_subset(entry, name, parent, part, fraction):
    if parent not in DatasetCatalog.list():
        raise _error(entry, f"its parent dataset {parent!r} is not registered",
                     "register the parent first (an earlier DATASETS.REGISTER entry)")

    def load():
        dicts = DatasetCatalog.get(parent)
        kept = [d for d in dicts if in_holdout(d["file_name"], fraction) == (part == "holdout")]
        if not kept:
            raise ValueError(f"dataset {name!r} (the {part} part of {parent!r} at fraction {fraction}) holds none of "
                             f"its {len(dicts)} images: choose a fraction that leaves images in both parts")
        return kept

    DatasetCatalog.register(name, load)
    meta = MetadataCatalog.get(parent)  # no json_file: the COCO evaluator must score the subset's images only
    keep = ("thing_classes", "thing_dataset_id_to_contiguous_id", "evaluator_type")
    MetadataCatalog.get(name).set(subset_of=parent, **{k: meta.get(k) for k in keep if meta.get(k) is not None})
