"""The recipe's command line as overrides and datasets: trailing ``KEY VALUE`` / ``STAGE:KEY VALUE`` overrides
(keys the recipe sets itself refused), each key once per command, ``--register`` entries and the holdout subsets,
the files a dataset reads, and what makes an output folder the run of one dataset (:data:`DATA_IDENTITY`)."""
import json
import os
import re

from .engine import RecipeError
from .names import STAGES

# keys a stage's command sets itself (the hand-offs): an override of them names the option to use instead
RESERVED = {"OUTPUT_DIR": "--output", "MODEL.WEIGHTS": "--teacher-weights (stage 1; later stages take the previous "
                                                   "stage's checkpoint)",
            "MODEL.ECCENTRIC.EDGE.WEIGHTS": "--edge-init (stage 2; later stages take the exported edge)",
            "MODEL.ECCENTRIC.DISTILL.TEACHER_CONFIG": "--cloud-config",
            "MODEL.ECCENTRIC.DISTILL.TEACHER_WEIGHTS": "--teacher-weights (the teacher is trained in stage 1)",
            "MODEL.ROI_HEADS.NUM_CLASSES": "--num-classes", "DATASETS.TRAIN": "--train", "DATASETS.TEST": "--test",
            "DATASETS.REGISTER": "--register"}
STAGE_OPT = re.compile(r"^(\w+):([A-Z][\w.]*)$")  # "teacher:SOLVER.MAX_ITER": an override for one stage
IDENTITY = ("train", "test", "num_classes", "register", "cloud_config", "edge_config", "pretrain_config",
            "adapt_config", "holdout", "teacher_weights", "edge_init", "quick", "recall", "gate_images",
            "eval_images", "bootstrap", "opts", "joint", "teacher_trunk")
# what an output folder is the run of: another value here is another run (refused); any other change of the command
# line re-runs the stages whose stamps it changes, and those after them
DATA_IDENTITY = ("train", "test", "num_classes", "register", "holdout")


def split_opts(opts):
    """(overrides for every stage, {stage: overrides}) from the trailing KEY VALUE pairs; ``stage:KEY VALUE`` applies
    to one stage only. Keys the recipe sets itself are refused with the option to use instead."""
    opts = list(opts)
    if opts[:1] == ["--"]:
        opts = opts[1:]
    if len(opts) % 2:
        raise RecipeError(f"config overrides come as KEY VALUE pairs, got an odd number ({len(opts)}): {opts}")
    common, per_stage = [], {}
    for key, value in zip(opts[::2], opts[1::2]):
        m = STAGE_OPT.match(key)
        stage, bare = (m.group(1), m.group(2)) if m else (None, key)
        if stage is not None and stage not in STAGES[:-1]:
            raise RecipeError(f"override {key}: unknown stage {stage!r}; stages are {', '.join(STAGES[:-1])}")
        if bare.startswith("-"):
            raise RecipeError(f"{key!r} is not a config key: options go before the KEY VALUE overrides (after '--' "
                              f"when they follow --register)")
        if bare in RESERVED:
            raise RecipeError(f"override {key}: the recipe sets {bare} itself; use {RESERVED[bare]}")
        (per_stage.setdefault(stage, []) if stage else common).extend([bare, value])
    return common, per_stage


def once(opts):
    """KEY VALUE pairs with each key once: its last value (the one yacs keeps), where it last appeared."""
    pairs = list(zip(opts[::2], opts[1::2]))
    last = {key: i for i, (key, _) in enumerate(pairs)}
    return [x for i, (key, value) in enumerate(pairs) if last[key] == i for x in (key, value)]


def register_entries(register, holdout, train):
    """DATASETS.REGISTER entries from the --register options (paths absolute), plus the holdout subsets."""
    from ..data.register import KINDS

    entries = []
    for values in register or []:
        if len(values) < 2 or values[1] not in KINDS:
            raise RecipeError(f"--register {' '.join(values)}: write it as NAME coco JSON_FILE IMAGE_DIR (or NAME voc "
                              f"VOC_DIR SPLIT, NAME subset PARENT train|holdout FRACTION)")
        name, kind, *rest = values
        if len(rest) != len(KINDS[kind]):
            extra = rest[len(KINDS[kind]):]
            hint = f" (extra values {extra}: config overrides go last, after '--')" if extra else ""
            raise RecipeError(f"--register {' '.join(values)}: a {kind} entry takes {len(KINDS[kind])} values after "
                              f"its kind ({', '.join(KINDS[kind])}){hint}")
        if kind in ("coco", "voc"):
            rest[0] = os.path.abspath(os.path.expanduser(rest[0]))
        if kind == "coco":
            rest[1] = os.path.abspath(os.path.expanduser(rest[1]))
        entries.append([name, kind, *rest])
    if holdout:
        entries += [[f"{train}_fit", "subset", train, "train", holdout],
                    [f"{train}_holdout", "subset", train, "holdout", holdout]]
    return entries


def dataset_files(name):
    """The annotation files a registered dataset reads (stamped as inputs of the stages that use it)."""
    from detectron2.data import MetadataCatalog

    meta = MetadataCatalog.get(name)
    if meta.get("subset_of"):
        return dataset_files(meta.subset_of)
    files = [meta.get("json_file")]
    if meta.get("dirname") and meta.get("split"):
        files.append(os.path.join(meta.dirname, "ImageSets", "Main", meta.split + ".txt"))
    return [f for f in files if f and os.path.isfile(f)]


def dataset_names(*names):
    """A DATASETS.TRAIN/TEST value: ``("a",)``, quoted so that a shell prints it plainly."""
    return "(" + "".join(json.dumps(n) + "," for n in names) + ")"


def config_yaml(keys, base):
    """A config file of ``_BASE_: base`` and the dotted ``keys``."""
    import yaml

    tree = {}
    for key, value in keys.items():
        node = tree
        *parents, last = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return yaml.safe_dump({"_BASE_": base, **tree}, sort_keys=False)
