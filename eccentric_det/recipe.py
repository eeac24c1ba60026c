"""The whole ECC recipe on a dataset of your own, from COCO-format folders to a trade-off report
(``tools/train_eccentric.py``).

Seven stages, each a subprocess of the existing tools (so that ``--dry-run`` prints exactly what runs), each
handing its exact checkpoint path to the next:

1. ``teacher``: the cloud detector on your data (``tools/train_net.py``), exported to ``checkpoints/teacher.pth``;
2. ``edge_kd``: the edge detector distilled from that teacher, its edge exported to ``checkpoints/edge_kd.pth``;
3. ``codec_pretrain``: the variable-rate codec pre-trained on feature reconstruction (``model_final.pth``);
4. ``adaptive_ecc_vr``: knowledge adaptation from stage 3, exported to ``checkpoints/adaptive_ecc_vr.pth``;
5. ``gate``: the Dynamic ECC offload gate fitted on held-out images (``tools/fit_offload_gate.py``);
6. ``pareto``: rates, thresholds, edge-only and cloud-only JPEG/WebP/PNG on the test set (``tools/pareto.py``), each
   with a bootstrap interval of its AP;
7. ``report``: ``report.md``: the operating points with their intervals and the two ceilings (the teacher on lossless
   PNG images, the edge alone), warnings that say when the numbers cannot be trusted and what to do, the plot, the
   BD-rates, the recommended point for a budget (or why none is distinguishable), and each row's merged config
   (``configs/<point>.yaml``) with the short command that reproduces it.

A stage is skipped when its outputs exist and its stamp (``<output>/<stage>/stage.json``: the commands, a hash of
each merged config, and size, mtime and SHA-256 of its inputs and outputs) matches; a stage interrupted with the
same commands and inputs resumes (a training through Detectron2's ``--resume``); any other stage re-runs from an
empty folder. So the same ``--output`` with another override, config or stage option re-runs only the stages whose
stamps that changes, and the stages after them (their inputs change); a run on other data is refused.
"""
import argparse
import hashlib
import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, List, Optional

from .reports.table import front_legend, interval, point_metric, points_table

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the checkout: tools/ and configs/

STAGES = ("teacher", "edge_kd", "codec_pretrain", "adaptive_ecc_vr", "gate", "pareto", "report")
TITLES = {"teacher": "cloud teacher", "edge_kd": "edge detector (KD)", "codec_pretrain": "codec pre-training",
          "adaptive_ecc_vr": "Adaptive ECC (variable rate)", "gate": "Dynamic ECC gate",
          "pareto": "evaluation and Pareto", "report": "report"}

DEFAULT_CONFIGS = {"cloud": "configs/FashionDet/cloud_teacher.yaml", "edge": "configs/FashionDet/edge_kd.yaml",
                   "pretrain": "configs/FashionDet/codec_pretrain.yaml",
                   "adapt": "configs/FashionDet/adaptive_ecc_vr.yaml"}
QUICK_CONFIGS = {"cloud": "configs/quick_schedules/fashion_det_cloud_teacher_instant_test.yaml",
                 "edge": "configs/quick_schedules/fashion_det_edge_kd_instant_test.yaml"}
# --quick's codec stages: the quick Adaptive ECC config with codec v2 at two rates (no quick file of its own). They
# are written as small config files (_BASE_ + these keys) because tools/pareto.py's "rates" sweep reads the levels
# from the config file alone.
QUICK_BASE = "configs/quick_schedules/fashion_det_adaptive_ecc_instant_test.yaml"
QUICK_VR = {"MODEL.ECCENTRIC.CODEC.NAME": "mean_scale", "MODEL.ECCENTRIC.CODEC.RATE_WEIGHTS": [0.1, 1.0]}
QUICK_DERIVED = {"pretrain": ("codec_pretrain_quick.yaml", {**QUICK_VR, "MODEL.ECCENTRIC.DISTILL.MODE": "reconstruct"}),
                 "adapt": ("adaptive_ecc_vr_quick.yaml", dict(QUICK_VR))}

# the points of stage 6 (besides every trained rate and edge-only); the fitted threshold joins the thresholds; PNG
# (lossless) is the cloud's ceiling: the teacher on the images as they are
SWEEP = {"thresholds": (0.1, 0.3, 0.5, 0.7, 0.9), "jpeg": (5, 15, 30, 60, 90), "webp": (5, 30, 80), "png": (9,)}
QUICK_SWEEP = {"thresholds": (0.5,), "jpeg": (30, 90), "webp": (50,), "png": (9,)}
BOOTSTRAP = 200  # resamples of each point's AP interval (--bootstrap)
POINT_CONFIG_MARK = "# written by tools/train_eccentric.py: the merged config of report.md's row"
CEILING, EDGE_ALONE = "cloud-only PNG", "edge-only"  # the report's two reference rows
TRAINING_STAGES = ("teacher", "edge_kd", "codec_pretrain", "adaptive_ecc_vr")  # their model_0*.pth go when done
QUICK_EVAL_IMAGES = 4
QUICK_GATE_FALLBACK_THRESHOLD = 0.5  # the unfitted gate's: offload when the best edge detection scores below 0.5
UNFIT_MESSAGE = "needs images both needing and not needing the cloud"  # eccentric_det.calibration's refusal

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
            "eval_images", "bootstrap", "opts")
# what an output folder is the run of: another value here is another run (refused); any other change of the command
# line re-runs the stages whose stamps it changes, and those after them
DATA_IDENTITY = ("train", "test", "num_classes", "register", "holdout")


class RecipeError(Exception):
    """A problem the user can fix, reported without a traceback (exit status 2)."""


# ------------------------------------------------------------------------------------------------ stamps
_HASHES = {}  # (path, size, mtime_ns) -> sha256: each file is hashed once per process


def file_signature(path, known=None):
    """``{"size", "mtime_ns", "sha256"}`` of a file, or None when it does not exist. ``known``: an earlier signature
    of the same path; when size and mtime are unchanged its hash is reused instead of reading the file again."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    if known and (known.get("size"), known.get("mtime_ns")) == key[1:] and known.get("sha256"):
        _HASHES.setdefault(key, known["sha256"])
    if key not in _HASHES:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        _HASHES[key] = digest.hexdigest()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": _HASHES[key]}


def _same_file(now, then):
    return now is not None and then is not None and (now["size"], now["sha256"]) == (then["size"], then["sha256"])


@dataclass
class Step:
    """One subprocess of a stage. ``command`` starts with "python" (run as this interpreter)."""

    command: List[str]
    train_dir: str = ""  # a Detectron2 training: its OUTPUT_DIR (progress from metrics.json; --resume)
    max_iter: int = 0
    points: bool = False  # a tools/pareto.py sweep: progress from its "Operating point i/n" lines
    fallback: Optional["Step"] = None  # run instead when this step fails with ``fallback_when`` in its output
    fallback_when: str = ""


@dataclass
class Stage:
    """A resumable stage: its steps, the files it reads (inputs) and writes (outputs), its stamp's folder."""

    key: str
    index: int
    out_dir: str
    steps: List[Step] = field(default_factory=list)
    inputs: List[str] = field(default_factory=list)
    outputs: List[str] = field(default_factory=list)
    configs: List[tuple] = field(default_factory=list)  # (config file, overrides) pairs whose merge is stamped
    notes: List[str] = field(default_factory=list)
    run: Optional[Callable] = None  # an in-process stage (the report) instead of steps
    finish: Optional[Callable] = None  # called after the steps with the stage: what it adds to the stamp
    identity_extra: dict = field(default_factory=dict)  # what else the stamp must match (the report's budget)

    @property
    def title(self):
        return TITLES[self.key]

    @property
    def label(self):
        return f"[{self.index}/{len(STAGES)}] {self.title}"

    @property
    def stamp_path(self):
        return os.path.join(self.out_dir, "stage.json")


def config_hash(configs):
    """SHA-256 of the merged configs (file + overrides) of a stage: an edited config file (or one of its _BASE_
    files) changes it."""
    from .tasks import get_eccentric_cfg

    digest = hashlib.sha256()
    for config_file, opts in configs:
        digest.update(get_eccentric_cfg(config_file, list(opts)).dump().encode())
    return digest.hexdigest()


def stage_identity(stage):
    """What a stage's stamp must match besides its inputs: its commands, merged configs and extras."""
    return {"commands": [s.command for s in stage.steps], "config": config_hash(stage.configs) if stage.configs else "",
            **stage.identity_extra}


def read_stamp(stage):
    try:
        with open(stage.stamp_path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def stamp_status(stage, identity=None):
    """``(status, reason, stamp)``: "skip" (outputs exist and the stamp matches), "resume" (interrupted with the same
    commands and inputs) or "run"."""
    stamp = read_stamp(stage)
    if stamp is None:
        return "run", "no stamp", None
    identity = stage_identity(stage) if identity is None else identity
    for key, value in identity.items():
        if stamp.get(key) != value:
            return "run", ("its commands changed" if key == "commands" else f"its {key} changed"), stamp
    known = stamp.get("inputs", {})
    if set(known) != set(stage.inputs):
        return "run", "its inputs changed", stamp
    for path in stage.inputs:
        if not _same_file(file_signature(path, known.get(path)), known.get(path)):
            return "run", f"input {path} changed", stamp
    if stamp.get("status") != "done":
        return "resume", "interrupted", stamp
    done = stamp.get("outputs", {})
    for path in stage.outputs:
        now = file_signature(path, done.get(path))
        if now is None:
            return "run", f"output {path} is missing", stamp
        if not _same_file(now, done.get(path)):
            return "run", f"output {path} changed", stamp
    return "skip", "outputs match", stamp


def write_stamp(stage, identity, inputs, status, done_steps=(), **extra):
    """Write the stage's stamp (atomically): identity, input signatures, status, finished steps, and when done the
    output signatures."""
    os.makedirs(stage.out_dir, exist_ok=True)
    stamp = {"stage": stage.key, "status": status, **identity, "inputs": inputs, "done_steps": list(done_steps),
             **extra}
    if status == "done":
        stamp["outputs"] = {p: file_signature(p) for p in stage.outputs}
    tmp = stage.stamp_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(stamp, f, indent=1)
    os.replace(tmp, stage.stamp_path)
    return stamp


# ------------------------------------------------------------------------------------------------ running
def _executable(command):
    return [sys.executable if i == 0 and c == "python" else c for i, c in enumerate(command)]


def _last_iteration(train_dir):
    """The last iteration (0-based) a training wrote to OUTPUT_DIR/metrics.json, or -1."""
    path = os.path.join(train_dir, "metrics.json")
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - 8192))
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        return -1
    for line in reversed(lines):
        try:
            return int(json.loads(line)["iteration"])
        except (ValueError, KeyError, TypeError):
            continue
    return -1


_POINT = re.compile(r"Operating point (\d+)/(\d+)")


def _points_done(log_path, offset):
    """(points started, total) from the tools/pareto.py log written after ``offset``."""
    try:
        with open(log_path, errors="replace") as f:
            f.seek(offset)
            found = _POINT.findall(f.read())
    except OSError:
        return 0, 0
    return (int(found[-1][0]), int(found[-1][1])) if found else (0, 0)


def run_step(step, log_path, label, resume=False, poll=0.5):
    """Run one step, its output appended to ``log_path``, with a tqdm bar (and ETA) for trainings (iterations from
    metrics.json) and sweeps (operating points). Returns the exit status."""
    from tqdm import tqdm

    command = list(step.command)
    if resume:
        command.insert(2, "--resume")
    with open(log_path, "a") as log:
        log.write(f"$ {shlex.join(command)}\n")
        log.flush()
        offset = log.tell()
        proc = subprocess.Popen(_executable(command), stdout=log, stderr=subprocess.STDOUT,
                                env=dict(os.environ, PYTHONUNBUFFERED="1"))
        bar = None
        if step.train_dir:
            bar = tqdm(total=step.max_iter, initial=_last_iteration(step.train_dir) + 1 if resume else 0,
                       desc=f"{label}", unit="it", file=sys.stderr, dynamic_ncols=True)
        elif step.points:
            bar = tqdm(total=None, desc=f"{label}", unit="point", file=sys.stderr, dynamic_ncols=True)
        try:
            while proc.poll() is None:
                time.sleep(poll)
                if bar is None:
                    continue
                if step.train_dir:
                    bar.update(max(0, _last_iteration(step.train_dir) + 1 - bar.n))
                else:
                    done, total = _points_done(log_path, offset)
                    if total and bar.total != total:
                        bar.total = total
                    bar.update(max(0, done - 1 - bar.n))  # point i/n started: i - 1 are done
            if bar is not None and proc.returncode == 0:
                bar.update(max(0, (bar.total or bar.n) - bar.n))
        except BaseException:
            proc.terminate()
            proc.wait()
            raise
        finally:
            if bar is not None:
                bar.close()
    return proc.returncode


def _tail(path, lines=25):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


def _log_path(stage, i, step):
    tool = os.path.splitext(os.path.basename(step.command[1]))[0] if len(step.command) > 1 else "step"
    return os.path.join(stage.out_dir, f"{i + 1}_{tool}.log")


def execute_stage(stage, say=print):
    """Run a stage unless its stamp matches: skip, resume or run from an empty folder. Returns the status
    ("skipped", "resumed" or "ran")."""
    identity = stage_identity(stage)
    status, reason, stamp = stamp_status(stage, identity)
    if status == "skip":
        say(f"{stage.label}: skipped ({reason})")
        return "skipped"
    missing = [p for p in stage.inputs if not os.path.exists(p)]
    if missing:
        raise RecipeError(f"{stage.label}: its input {missing[0]} does not exist (an earlier stage did not write it)")
    done_steps = set(stamp.get("done_steps", [])) if status == "resume" else set()
    if status == "run":
        if os.path.isdir(stage.out_dir):
            shutil.rmtree(stage.out_dir)
        for path in stage.outputs:
            if os.path.exists(path):
                os.remove(path)
    inputs = {p: file_signature(p, (stamp or {}).get("inputs", {}).get(p)) for p in stage.inputs}
    say(f"{stage.label}: {'resuming' if status == 'resume' else 'running'} ({reason})")
    start = time.perf_counter()
    write_stamp(stage, identity, inputs, "running", done_steps)
    extra = {}
    if stage.run is not None:
        stage.run(stage)
    for i, step in enumerate(stage.steps):
        if i in done_steps:
            say(f"    step {i + 1} of {len(stage.steps)} done before: {shlex.join(step.command[:2])} ...")
            continue
        resume = bool(step.train_dir) and os.path.isfile(os.path.join(step.train_dir, "last_checkpoint"))
        if resume:
            say(f"    resuming the training from {step.train_dir} (--resume)")
        log = _log_path(stage, i, step)
        rc = run_step(step, log, stage.label, resume=resume)
        if rc and step.fallback is not None and step.fallback_when in _tail(log, 200):
            say(f"    the step failed ({step.fallback_when}); --quick falls back to: "
                f"{shlex.join(step.fallback.command)}")
            extra["fallback"] = True
            rc = run_step(step.fallback, log, stage.label)
        if rc:
            raise RecipeError(f"{stage.label} failed (exit status {rc}). The end of {log}:\n{_tail(log)}\nFix the "
                              f"cause and run the same command again: finished steps are kept, an interrupted "
                              f"training resumes from its last checkpoint.")
        done_steps.add(i)
        write_stamp(stage, identity, inputs, "running", sorted(done_steps), **extra)
    if stage.finish is not None:
        extra.update(stage.finish(stage) or {})
    seconds = round(time.perf_counter() - start, 1)
    write_stamp(stage, identity, inputs, "done", sorted(done_steps), seconds=seconds, **extra)
    say(f"{stage.label}: done in {_duration(seconds)}")
    return "resumed" if status == "resume" else "ran"


def remove_intermediate(stage, say=print):
    """Once a training stage is done (its final export written and stamped), remove its intermediate checkpoints
    (``model_0*.pth``; ``--keep-intermediate`` keeps them): only an interrupted training resumes from them. Returns
    the names removed."""
    if stage.key not in TRAINING_STAGES or (read_stamp(stage) or {}).get("status") != "done":
        return []
    folder = stage.out_dir
    names = sorted(n for n in (os.listdir(folder) if os.path.isdir(folder) else [])
                   if re.fullmatch(r"model_0\d*\.pth", n))
    if not names:
        return []
    size = sum(os.path.getsize(os.path.join(folder, n)) for n in names)
    for name in names:
        os.remove(os.path.join(folder, name))
    say(f"    removed {len(names)} intermediate checkpoint{'s' * (len(names) > 1)} of {folder} "
        f"({size / 2 ** 20:.1f} MB; --keep-intermediate keeps them)")
    return names


def _duration(seconds):
    minutes, s = divmod(int(round(seconds)), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours}h{m:02d}m" if hours else (f"{m}m{s:02d}s" if m else f"{s}s")


# ------------------------------------------------------------------------------------------------ the recipe
def _repo(path):
    """A shipped file's path: as given from the checkout, absolute from elsewhere."""
    return path if os.path.abspath(os.getcwd()) == ROOT else os.path.join(ROOT, path)


def _tool(name):
    return _repo(os.path.join("tools", name))


def _finite(v):
    return isinstance(v, (int, float)) and math.isfinite(v)


def _split_opts(opts):
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


def _register_entries(register, holdout, train):
    """DATASETS.REGISTER entries from the --register options (paths absolute), plus the holdout subsets."""
    from .data.register import KINDS

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


def _dataset_files(name):
    """The annotation files a registered dataset reads (stamped as inputs of the stages that use it)."""
    from detectron2.data import MetadataCatalog

    meta = MetadataCatalog.get(name)
    if meta.get("subset_of"):
        return _dataset_files(meta.subset_of)
    files = [meta.get("json_file")]
    if meta.get("dirname") and meta.get("split"):
        files.append(os.path.join(meta.dirname, "ImageSets", "Main", meta.split + ".txt"))
    return [f for f in files if f and os.path.isfile(f)]


def _names(*names):
    """A DATASETS.TRAIN/TEST value: ``("a",)``, quoted so that a shell prints it plainly."""
    return "(" + "".join(json.dumps(n) + "," for n in names) + ")"


def _yaml(keys, base):
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


class Recipe:
    """The recipe of one command line: checks, stage plan, execution."""

    def __init__(self, args, argv=None):
        self.args = args
        self.argv = list(sys.argv[1:] if argv is None else argv)
        self.dir = os.path.normpath(args.output)
        self.ckpt = lambda name: os.path.join(self.dir, "checkpoints", name)  # noqa: E731
        self.stage_dir = lambda key: os.path.join(self.dir, key)  # noqa: E731
        self.opts, self.stage_opts = _split_opts(args.opts)
        if not 0 <= args.holdout < 1:
            raise RecipeError(f"--holdout is the fraction of training images held out for the gate, in [0, 1); got "
                              f"{args.holdout}")
        if args.num_classes < 1:
            raise RecipeError(f"--num-classes must be positive, got {args.num_classes}")
        if args.bootstrap < 0:
            raise RecipeError(f"--bootstrap is a number of resamples (0: no intervals), got {args.bootstrap}")
        self.quick = args.quick
        self.configs = {}
        for which, flag in (("cloud", "--cloud-config"), ("edge", "--edge-config"), ("pretrain", "--pretrain-config"),
                            ("adapt", "--adapt-config")):
            given = getattr(args, f"{which}_config")
            if given:
                self.configs[which] = given
            elif self.quick and which in QUICK_CONFIGS:
                self.configs[which] = _repo(QUICK_CONFIGS[which])
            elif self.quick:
                self.configs[which] = os.path.join(self.dir, "configs", QUICK_DERIVED[which][0])
            else:
                self.configs[which] = _repo(DEFAULT_CONFIGS[which])
        # (config file, overrides) to merge for checks and stamps: a --quick derived file is its base + its keys
        self.merge_as = {w: (f, []) for w, f in self.configs.items()}
        for which, (name, keys) in QUICK_DERIVED.items():
            if self.quick and not getattr(args, f"{which}_config"):
                flat = [v for k, val in keys.items() for v in (k, json.dumps(val) if isinstance(val, list) else val)]
                self.merge_as[which] = (_repo(QUICK_BASE), flat)
        self.flags = {"cloud": "--cloud-config", "edge": "--edge-config", "pretrain": "--pretrain-config",
                      "adapt": "--adapt-config"}
        self.user_entries = _register_entries(args.register, 0, args.train)
        self.entries = _register_entries(args.register, args.holdout, args.train)  # + the subsets of --holdout
        self.train_set = f"{args.train}_fit" if args.holdout else args.train
        self.gate_set = f"{args.train}_holdout" if args.holdout else args.train
        self.eval_images = args.eval_images or (QUICK_EVAL_IMAGES if self.quick else None)
        self.sweep = QUICK_SWEEP if self.quick else SWEEP
        self.cfgs = {}  # stage -> merged config (after check())

    # -------------------------------------------------------------------------------------- overrides
    def user_opts(self, stage):
        return self.opts + self.stage_opts.get(stage, [])

    def data_opts(self):
        reg = ["DATASETS.REGISTER", json.dumps(self.entries)] if self.entries else []  # a Python literal too
        return reg + ["MODEL.ROI_HEADS.NUM_CLASSES", str(self.args.num_classes)]

    def train_opts(self):
        return self.data_opts() + ["DATASETS.TRAIN", _names(self.train_set), "DATASETS.TEST", "()"]

    def eval_opts(self):
        """What evaluating the adapted model needs: the datasets, and the teacher it was built with (its FPN widths
        size the distillation projections the checkpoint holds)."""
        return self.data_opts() + ["DATASETS.TRAIN", _names(self.train_set), "DATASETS.TEST",
                                   _names(self.args.test), "MODEL.ECCENTRIC.DISTILL.TEACHER_CONFIG",
                                   self.configs["cloud"], "MODEL.ECCENTRIC.DISTILL.TEACHER_WEIGHTS",
                                   self.ckpt("teacher.pth")]

    def teacher_opts(self):
        return ["MODEL.ECCENTRIC.DISTILL.TEACHER_CONFIG", self.configs["cloud"],
                "MODEL.ECCENTRIC.DISTILL.TEACHER_WEIGHTS", self.ckpt("teacher.pth")]

    # -------------------------------------------------------------------------------------- checks
    def check(self):
        """Every check that needs no training, before any stage runs: config files, datasets (registered, on disk,
        class count, both holdout parts non-empty), each stage's merged config, the output folder."""
        from detectron2.data import DatasetCatalog

        from .config import resolve_config_file
        from .tasks import get_eccentric_cfg
        from .data import check_dataset_available, in_holdout, register_datasets, thing_classes

        for which, path in self.merge_as.items():
            try:
                resolve_config_file(path[0])
            except FileNotFoundError:
                raise RecipeError(f"config file {path[0]!r} ({self.flags[which]}) not found, neither as given nor "
                                  f"among the shipped configs") from None
        own = self.user_entries
        try:
            register_datasets(own)
        except ValueError as e:
            raise RecipeError(f"--register: {e}") from None
        a = self.args
        for name, flag in ((a.train, "--train"), (a.test, "--test")):
            if name not in DatasetCatalog.list():
                raise RecipeError(f"dataset {name!r} ({flag}) is not registered: register it with --register {name} "
                                  f"coco ANNOTATIONS.json IMAGE_DIR (registered by --register: "
                                  f"{', '.join(e[0] for e in own) or 'none'}; FashionDet's are fashion_det_train, "
                                  f"fashion_det_val)")
            try:
                check_dataset_available(name)
            except (FileNotFoundError, KeyError) as e:
                raise RecipeError(f"dataset {name!r} ({flag}): {e.args[0] if e.args else e}") from None
            classes = thing_classes(name)
            if classes is not None and len(classes) != a.num_classes:
                shown = ", ".join(classes[:5]) + (", ..." if len(classes) > 5 else "")
                raise RecipeError(f"--num-classes is {a.num_classes}, but dataset {name!r} ({flag}) has "
                                  f"{len(classes)} classes ({shown}): pass --num-classes {len(classes)}")
        if a.holdout:
            try:
                register_datasets(self.entries[len(own):])  # the subsets of --holdout
            except ValueError as e:
                raise RecipeError(f"--holdout: {e}") from None
            files = [d["file_name"] for d in DatasetCatalog.get(a.train)]
            held = sum(in_holdout(f, a.holdout) for f in files)
            if held == 0 or held == len(files):
                raise RecipeError(f"--holdout {a.holdout} holds out {held} of the {len(files)} images of {a.train!r}: "
                                  f"both the training part and the gate's held-out part need images; choose another "
                                  f"fraction (or --holdout 0 to fit the gate on the training images)")
            self.split = (len(files) - held, held)
        for stage, (config_file, opts) in self.stage_configs().items():
            try:
                self.cfgs[stage] = get_eccentric_cfg(config_file, opts)
            except (KeyError, ValueError, AssertionError) as e:
                raise RecipeError(f"stage {stage}: {e.args[0] if e.args else e}") from None
        self.check_output_dir()

    def stage_configs(self):
        """(config file, overrides) of each stage's model, as merged for the checks and the stamps."""
        out = {}
        for stage, which in (("teacher", "cloud"), ("edge_kd", "edge"), ("codec_pretrain", "pretrain"),
                             ("adaptive_ecc_vr", "adapt"), ("gate", "adapt"), ("pareto", "adapt")):
            base, extra = self.merge_as[which]
            opts = self.train_opts() if stage not in ("gate", "pareto") else self.eval_opts()
            out[stage] = (base, extra + opts + self.user_opts(stage))
        return out

    def identity(self):
        a = vars(self.args)
        ident = {k: a.get(k) for k in IDENTITY}
        ident.update(register=self.entries, opts=[self.opts, self.stage_opts], configs=self.configs)
        return json.loads(json.dumps(ident))

    def check_output_dir(self):
        """A non-empty output folder must hold a run on the same data (:data:`DATA_IDENTITY`); other changes re-run
        only the stages whose stamps they change (and the stages after them)."""
        d = self.dir
        if os.path.isfile(d):
            raise RecipeError(f"--output {d} is a file: pass a folder")
        if not os.path.isdir(d) or not os.listdir(d):
            return
        recipe = os.path.join(d, "recipe.json")
        try:
            with open(recipe) as f:
                saved = json.load(f)
        except (OSError, ValueError):
            raise RecipeError(f"--output {d} is not empty and holds no recipe.json: it was not made by "
                              f"tools/train_eccentric.py. Pass a new or empty folder as --output") from None
        old, new = saved.get("identity", {}), self.identity()
        diff = [k for k in DATA_IDENTITY if old.get(k) != new.get(k)]
        if diff:
            again = shlex.join(["python", _tool("train_eccentric.py"), *saved.get("argv", [])])
            raise RecipeError(f"--output {d} holds the run on other data (it differs in: "
                              f"{', '.join(diff)}). To resume that run, repeat its command:\n    {again}\n"
                              f"To start over, pass another --output, or remove the folder: rm -r {shlex.quote(d)}")

    # -------------------------------------------------------------------------------------- stages
    def threshold(self):
        """The threshold stage 5 fitted (DIR/gate/fit.json), or None before it ran."""
        try:
            with open(os.path.join(self.stage_dir("gate"), "fit.json")) as f:
                return float(json.load(f)["threshold"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _max_iter(self, stage):
        cfg = self.cfgs.get(stage)
        return int(cfg.SOLVER.MAX_ITER) if cfg is not None else 0

    def curve_opts(self, stage):
        """A training stage's learning curve and stopping rule: AP on the held-out split (--holdout) eight times per
        run, the run ended at its plateau (SOLVER.PLATEAU.STOP) or after --max-minutes; stop.json says which."""
        opts = []
        if self.args.holdout:
            opts += ["DATASETS.TEST", _names(self.gate_set), "TEST.EVAL_PERIOD",
                     str(max(1, self._max_iter(stage) // 8)), "SOLVER.PLATEAU.STOP", "True"]
        if self.args.max_minutes:
            opts += ["SOLVER.MAX_MINUTES", f"{self.args.max_minutes:g}"]
        return opts

    def _train_step(self, stage, which, handoff):
        out = self.stage_dir(stage)
        command = ["python", _tool("train_net.py"), "--config-file", self.configs[which], *self.train_opts(),
                   *self.curve_opts(stage), *self.user_opts(stage), *handoff, "OUTPUT_DIR", out]
        return Step(command, train_dir=out, max_iter=self._max_iter(stage))

    def _export(self, src, dst, keep=()):
        return Step(["python", _tool("export_checkpoint.py"), src, dst, *(["--keep", *keep] if keep else [])])

    def _local(self, *paths):
        return [p for p in paths if p and not p.startswith(("detectron2://", "http://", "https://"))]

    def _data(self, *names):
        return list(dict.fromkeys(f for n in names for f in _dataset_files(n)))

    def stages(self):
        """The seven stages, built in order (stage 6 takes the threshold stage 5 wrote, when it has)."""
        return [getattr(self, f"stage_{key}")() for key in STAGES]

    def _stage(self, key, **kw):
        return Stage(key, STAGES.index(key) + 1, self.stage_dir(key), **kw)

    def stage_teacher(self):
        a, out = self.args, self.stage_dir("teacher")
        weights = ["MODEL.WEIGHTS", a.teacher_weights] if a.teacher_weights else []
        train = self._train_step("teacher", "cloud", weights)
        return self._stage("teacher", steps=[train, self._export(os.path.join(out, "model_final.pth"),
                                                                 self.ckpt("teacher.pth"))],
                           inputs=self._local(a.teacher_weights) + self._data(self.train_set),
                           outputs=[self.ckpt("teacher.pth")], configs=[self.stage_configs()["teacher"]])

    def stage_edge_kd(self):
        a, out = self.args, self.stage_dir("edge_kd")
        handoff = self.teacher_opts() + (["MODEL.ECCENTRIC.EDGE.WEIGHTS", a.edge_init] if a.edge_init else [])
        cfg = self.cfgs.get("edge_kd")
        split = cfg.MODEL.ECCENTRIC.SPLIT_AT if cfg is not None else "res2"
        trunk = ("stem", "res2", "res3", "res4", "res5")
        keep = [f"backbone.bottom_up.{s}" for s in trunk[:trunk.index(split) + 1]] + ["edge_detector"]
        return self._stage("edge_kd", steps=[self._train_step("edge_kd", "edge", handoff),
                                             self._export(os.path.join(out, "model_final.pth"),
                                                          self.ckpt("edge_kd.pth"), keep)],
                           inputs=[self.ckpt("teacher.pth")] + self._local(a.edge_init) + self._data(self.train_set),
                           outputs=[self.ckpt("edge_kd.pth")], configs=[self.stage_configs()["edge_kd"]])

    def stage_codec_pretrain(self):
        out = self.stage_dir("codec_pretrain")
        handoff = ["MODEL.WEIGHTS", self.ckpt("teacher.pth"), "MODEL.ECCENTRIC.EDGE.WEIGHTS", self.ckpt("edge_kd.pth"),
                   *self.teacher_opts()]
        return self._stage("codec_pretrain", steps=[self._train_step("codec_pretrain", "pretrain", handoff)],
                           inputs=[self.ckpt("teacher.pth"), self.ckpt("edge_kd.pth")] + self._data(self.train_set),
                           outputs=[os.path.join(out, "model_final.pth")],
                           configs=[self.stage_configs()["codec_pretrain"]], notes=self._derived_note("pretrain"))

    def stage_adaptive_ecc_vr(self):
        out = self.stage_dir("adaptive_ecc_vr")
        pretrained = os.path.join(self.stage_dir("codec_pretrain"), "model_final.pth")
        handoff = ["MODEL.WEIGHTS", pretrained, "MODEL.ECCENTRIC.EDGE.WEIGHTS", self.ckpt("edge_kd.pth"),
                   *self.teacher_opts()]
        return self._stage("adaptive_ecc_vr",
                           steps=[self._train_step("adaptive_ecc_vr", "adapt", handoff),
                                  self._export(os.path.join(out, "model_final.pth"), self.ckpt("adaptive_ecc_vr.pth"))],
                           inputs=[pretrained, self.ckpt("edge_kd.pth"), self.ckpt("teacher.pth")]
                           + self._data(self.train_set),
                           outputs=[self.ckpt("adaptive_ecc_vr.pth")],
                           configs=[self.stage_configs()["adaptive_ecc_vr"]], notes=self._derived_note("adapt"))

    def _derived_note(self, which):
        if self.configs[which] != os.path.join(self.dir, "configs", QUICK_DERIVED.get(which, ("",))[0]):
            return []
        name, keys = QUICK_DERIVED[which]
        return [f"--quick: {self.configs[which]} is written by the recipe: _BASE_ {_repo(QUICK_BASE)} with "
                + " ".join(f"{k} {json.dumps(v)}" for k, v in keys.items())]

    def stage_gate(self):
        a = self.args
        gate = self.ckpt("offload_gate.pth")
        fit = Step(["python", _tool("fit_offload_gate.py"), "--config-file", self.configs["adapt"], "--weights",
                    self.ckpt("adaptive_ecc_vr.pth"), "--dataset", self.gate_set, "--recall", f"{a.recall:g}",
                    "--max-images", str(a.gate_images), "--output", gate, *self.eval_opts(), *self.user_opts("gate")])
        notes = [] if a.holdout else [f"--holdout 0: the gate is fitted on training images ({a.train}); held-out "
                                      f"images fit a truer one"]
        if self.quick:
            fit.fallback = self._export(self.ckpt("adaptive_ecc_vr.pth"), gate, ["offload_gate"])
            fit.fallback_when = UNFIT_MESSAGE
            notes.append(f"--quick: when the barely trained models leave nothing to fit (every held-out image needs "
                         f"the cloud as much as the edge), the model's unfitted gate is exported instead "
                         f"({shlex.join(fit.fallback.command)}) at threshold {QUICK_GATE_FALLBACK_THRESHOLD}")

        def finish(stage):
            text = _tail(_log_path(stage, 0, fit), 400)
            found = re.findall(r"set MODEL\.ECCENTRIC\.OFFLOAD\.THRESHOLD ([-+0-9.eE]+)", text)
            if found:
                record = {"threshold": float(found[-1]), "fitted": True}
                block = re.findall(r"^\{\n.*?^\}", text, re.S | re.M)
                if block:
                    try:
                        record.update(json.loads(block[-1]), threshold=float(found[-1]))
                    except ValueError:
                        pass
            elif self.quick:
                record = {"threshold": QUICK_GATE_FALLBACK_THRESHOLD, "fitted": False,
                          "reason": "--quick: nothing to fit on (the unfitted gate was exported)"}
            else:
                raise RecipeError(f"{stage.label}: tools/fit_offload_gate.py printed no threshold (see "
                                  f"{_log_path(stage, 0, fit)})")
            record.update(dataset=self.gate_set, recall_target=a.recall)
            with open(os.path.join(stage.out_dir, "fit.json"), "w") as f:
                json.dump(record, f, indent=1)
            return {"threshold": record["threshold"]}

        return self._stage("gate", steps=[fit], inputs=[self.ckpt("adaptive_ecc_vr.pth")] + self._data(self.gate_set),
                           outputs=[gate, os.path.join(self.stage_dir("gate"), "fit.json")],
                           configs=[self.stage_configs()["gate"]], notes=notes, finish=finish)

    def sweep_dirs(self):
        base = os.path.join(self.stage_dir("pareto"), "sweeps")
        return {"adaptive": os.path.join(base, "adaptive"), "dynamic": os.path.join(base, "dynamic")}

    def sweep_opts(self):
        """The overrides every point of each sweep gets (after '--'): the model's, then its weights."""
        adapted = self.ckpt("adaptive_ecc_vr.pth")
        common = self.eval_opts() + self.user_opts("pareto") + ["MODEL.WEIGHTS", adapted]
        return {"adaptive": common + ["MODEL.ECCENTRIC.EDGE.WEIGHTS", ""],
                "dynamic": common + ["MODEL.ECCENTRIC.EDGE.WEIGHTS", self.ckpt("offload_gate.pth")]}

    def thresholds(self):
        fitted = self.threshold()
        values = sorted({round(float(t), 4) for t in self.sweep["thresholds"]} | (
            {round(fitted, 4)} if fitted is not None else set()))
        text = ",".join(f"{t:g}" for t in values)
        return text if fitted is not None else f"<threshold of stage 5>,{text}"

    def stage_pareto(self):
        a, dirs, opts = self.args, self.sweep_dirs(), self.sweep_opts()
        images = ["--max-images", str(self.eval_images)] if self.eval_images else []
        images += ["--bootstrap", str(a.bootstrap)] if a.bootstrap else []  # each point's AP interval (merged as is)
        tool = _tool("pareto.py")
        s = self.sweep
        adaptive = Step(["python", tool, "--config-file", self.configs["adapt"], "--sweep", "rates=all", "edge_only",
                         *(f"{codec}=" + ",".join(map(str, s[codec])) for codec in ("jpeg", "webp", "png")),
                         "--cloud-config", self.configs["cloud"], "--cloud-weights", self.ckpt("teacher.pth"),
                         "--dataset", a.test, *images, "--output", dirs["adaptive"], "--", *opts["adaptive"]],
                        points=True)
        dynamic = Step(["python", tool, "--config-file", self.configs["adapt"], "--sweep",
                        f"thresholds={self.thresholds()}", "--dataset", a.test, *images, "--output", dirs["dynamic"],
                        "--", *opts["dynamic"]], points=True)
        merge = Step(["python", tool, "--dataset", a.test, "--results", dirs["adaptive"], dirs["dynamic"],
                      "--output", self.stage_dir("pareto")])
        out = self.stage_dir("pareto")
        return self._stage("pareto", steps=[adaptive, dynamic, merge],
                           inputs=[self.ckpt("adaptive_ecc_vr.pth"), self.ckpt("offload_gate.pth"),
                                   self.ckpt("teacher.pth")] + self._data(a.test),
                           outputs=[os.path.join(out, "pareto.json"), os.path.join(out, "pareto.png")],
                           configs=[self.stage_configs()["pareto"]])

    def budget(self):
        a = self.args
        if a.budget_bytes is not None:
            return {"budget_bytes": a.budget_bytes}
        if a.budget_offload is not None:
            return {"budget_offload": a.budget_offload}
        return {}

    def stage_report(self):
        pareto = os.path.join(self.stage_dir("pareto"), "pareto.json")
        fit = os.path.join(self.stage_dir("gate"), "fit.json")
        report = os.path.join(self.dir, "report.md")

        def run(stage):
            write_report(pareto, report, **self.budget(), context=self.report_context(self.write_point_configs()))

        return self._stage("report", inputs=[pareto, fit],
                           outputs=[report] + [c[-1] for c in self.point_configs()], run=run,
                           identity_extra={"budget": self.budget(), "report_format": 2,
                                           "point_opts": self.sweep_opts()})  # what the point configs merge

    def point_configs(self):
        """``[(row, point, sweep, slug, path)]`` for each point of stage 6's pareto.json that a sweep of this recipe
        evaluated: its row in report.md, the point, the sweep's name, a short name from its label and where its merged
        config goes (``configs/<slug>.yaml``). Empty before stage 6 ran."""
        try:
            with open(os.path.join(self.stage_dir("pareto"), "pareto.json")) as f:
                points = json.load(f).get("points", [])
        except (OSError, ValueError):
            return []
        dirs = {name: os.path.abspath(d) for name, d in self.sweep_dirs().items()}
        taken, found = {os.path.splitext(name)[0] for name, _ in QUICK_DERIVED.values()}, []
        for row, p in enumerate(points, 1):
            where = os.path.abspath(str(p.get("output_dir", "")))
            sweep = next((n for n, d in dirs.items() if where.startswith(d + os.sep)), None)
            if sweep is None or not p.get("config_file"):
                continue
            slug = re.sub(r"[^\w.-]+", "_", str(p.get("label", ""))).strip("_.") or "point"
            slug = f"{slug}_{row}" if slug in taken else slug
            taken.add(slug)
            found.append((row, p, sweep, slug, os.path.join(self.dir, "configs", slug + ".yaml")))
        return found

    def write_point_configs(self):
        """Write the merged config of every evaluated point (:meth:`point_configs`): its config file with the sweep's
        overrides and its own (the datasets it registers, its weights, its rate or threshold), OUTPUT_DIR
        ``eval/<slug>``, so that one short command reproduces the row. A cloud-only image-codec point's config names
        itself as MODEL.ECCENTRIC.DISTILL.TEACHER_CONFIG: the model tools/pareto.py's image sweeps code images for.
        Point configs of earlier sweeps are removed. Returns ``{point output dir (absolute): {"config", "codec",
        "output"}}`` (the report's ``point_configs``)."""
        from .tasks import get_eccentric_cfg

        opts, found = self.sweep_opts(), {}
        for row, p, sweep, slug, path in self.point_configs():
            cfg = get_eccentric_cfg(p["config_file"], opts[sweep] + list(p.get("opts", [])))
            out = os.path.join(self.dir, "eval", slug)
            cfg.OUTPUT_DIR = out
            m = re.match(r"^(\w+) (\d+)$", str(p.get("label", "")))
            codec = f"{m.group(1)}={m.group(2)}" if m and str(p.get("series", "")).startswith("cloud-only") else None
            if codec:
                cfg.MODEL.ECCENTRIC.DISTILL.TEACHER_CONFIG = path
                how = (f"python tools/pareto.py --config-file {path} --sweep {codec} --output {out}\n# (the cloud "
                       f"model on coded images: tools/pareto.py codes them for DISTILL.TEACHER_CONFIG, this file)")
            else:
                how = f"python tools/train_net.py --eval-only --config-file {path}"
            text = f"{POINT_CONFIG_MARK} {row}: {p['series']}, {p['label']}\n# reproduce: {how}\n{cfg.dump()}"
            os.makedirs(os.path.dirname(path), exist_ok=True)
            if not os.path.isfile(path) or open(path).read() != text:
                with open(path, "w") as f:
                    f.write(text)
            found[os.path.abspath(str(p["output_dir"]))] = {"config": path, "codec": codec, "output": out}
        folder, keep = os.path.join(self.dir, "configs"), {os.path.abspath(v["config"]) for v in found.values()}
        for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
            path = os.path.join(folder, name)
            if name.endswith(".yaml") and os.path.abspath(path) not in keep:
                with open(path) as f:
                    stale = f.readline().startswith(POINT_CONFIG_MARK)
                if stale:
                    os.remove(path)
        return found

    def report_context(self, point_configs=None):
        """What report.md says besides pareto.json: the data, the gate's fit, stage times, checkpoints, the command,
        and ``point_configs`` (:meth:`write_point_configs`) for the reproduce commands."""
        a = self.args
        fit = {}
        try:
            with open(os.path.join(self.stage_dir("gate"), "fit.json")) as f:
                fit = json.load(f)
        except (OSError, ValueError):
            pass
        seconds, stops = {}, {}
        for key in STAGES[:-1]:
            try:
                with open(os.path.join(self.stage_dir(key), "stage.json")) as f:
                    seconds[key] = json.load(f).get("seconds")
            except (OSError, ValueError):
                pass
            try:
                with open(os.path.join(self.stage_dir(key), "stop.json")) as f:
                    stops[key] = json.load(f)
            except (OSError, ValueError):
                pass
        return {"train": a.train, "train_set": self.train_set, "gate_set": self.gate_set, "test": a.test,
                "num_classes": a.num_classes, "point_configs": point_configs or {}, "fit": fit, "seconds": seconds,
                "stops": stops,
                "eval_images": self.eval_images, "quick": self.quick, "bootstrap": a.bootstrap,
                "checkpoints": {k: self.ckpt(k + ".pth") for k in ("teacher", "edge_kd", "adaptive_ecc_vr",
                                                                     "offload_gate")},
                "command": shlex.join(["python", _tool("train_eccentric.py"), *self.argv])}

    # -------------------------------------------------------------------------------------- run
    def header(self):
        a = self.args
        data = f"train {a.train}"
        if a.holdout:
            data += (f" (stages 1-4 on {self.train_set}: {self.split[0]} images; gate on {self.gate_set}: "
                     f"{self.split[1]} images, --holdout {a.holdout:g})")
        return (f"ECC recipe{' (--quick)' if self.quick else ''}: {data}, test {a.test}, {a.num_classes} classes "
                f"-> {self.dir}")

    def write_quick_configs(self):
        for which, (name, keys) in QUICK_DERIVED.items():
            path = self.configs[which]
            if path != os.path.join(self.dir, "configs", name):
                continue
            text = (f"# written by tools/train_eccentric.py --quick: {QUICK_BASE} with codec v2 at two rates\n"
                    + _yaml(keys, os.path.join(ROOT, QUICK_BASE)))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            old = open(path).read() if os.path.isfile(path) else None
            if old != text:
                with open(path, "w") as f:
                    f.write(text)

    def dry_run(self, say=print):
        """Print the plan: each stage, whether it would run or be skipped, its exact commands and outputs."""
        say(self.header())
        say("--dry-run: nothing runs; each stage's commands, in order:")
        upstream = False
        for stage in self.stages():
            status, reason, _ = stamp_status(stage)
            if upstream and status == "skip":
                status, reason = "run", "an earlier stage re-runs"
            upstream = upstream or status != "skip"
            word = {"skip": "would be skipped", "resume": "would resume", "run": "would run"}[status]
            say(f"{stage.label}: {word} ({reason})")
            for note in stage.notes:
                say(f"    # {note}")
            if stage.run is not None:
                say(f"    (in-process) write {os.path.join(self.dir, 'report.md')} from {stage.inputs[0]}"
                    + (f" ({', '.join(f'{k} {v:g}' for k, v in self.budget().items())})" if self.budget() else ""))
            for step in stage.steps:
                say("    " + shlex.join(step.command))
            say("    -> " + ", ".join(stage.outputs))
        return 0

    def run(self, say=print):
        say(self.header())
        os.makedirs(self.dir, exist_ok=True)
        with open(os.path.join(self.dir, "recipe.json"), "w") as f:
            json.dump({"argv": self.argv, "identity": self.identity()}, f, indent=1)
        self.write_quick_configs()
        start = time.perf_counter()
        for key in STAGES:
            stage = getattr(self, f"stage_{key}")()  # built in turn: stage 6 needs stage 5's output
            execute_stage(stage, say=say)
            if not self.args.keep_intermediate:
                remove_intermediate(stage, say)
        say(f"done in {_duration(time.perf_counter() - start)}: {os.path.join(self.dir, 'report.md')}")
        return 0


# ------------------------------------------------------------------------------------------------ the report
def _metric(point, key):
    return point_metric(point, key)  # None when missing or not finite; a cloud-only point's offload rate is 1


def recommend(points, budget_bytes=None, budget_offload=None, accuracy="AP", tolerance=1.0):
    """The recommended operating point of ``points`` (pareto.json's) and why: with ``budget_bytes`` the most accurate
    point at a mean of at most that many bytes per image, with ``budget_offload`` the most accurate at an offload
    rate of at most that, otherwise the one sending the fewest bytes within ``tolerance`` of the best cloud-only
    point's accuracy. Ties go to fewer bytes. ``(None, why)`` when no point qualifies."""
    scored = [p for p in points if _metric(p, accuracy) is not None]
    if not scored:
        return None, f"no operating point has a finite {accuracy}"
    acc = lambda p: _metric(p, accuracy)  # noqa: E731
    nbytes = lambda p: _metric(p, "bytes_mean")  # noqa: E731
    name = lambda p: f"{p['series']}, {p['label']}"  # noqa: E731
    if budget_bytes is not None and budget_offload is not None:
        raise ValueError("give one budget: bytes or offload rate")
    for budget, key, what in ((budget_bytes, "bytes_mean", "bytes/image (mean)"),
                              (budget_offload, "offload_rate", "offload rate")):
        if budget is None:
            continue
        known = [p for p in scored if _metric(p, key) is not None]
        ok = [p for p in known if _metric(p, key) <= budget]
        if not ok:
            if not known:
                return None, f"no operating point measured its {what}"
            low = min(known, key=lambda p: _metric(p, key))
            return None, (f"no operating point stays within {what} {budget:g}: the lowest is {_metric(low, key):g} "
                          f"({name(low)})")
        best = max(ok, key=lambda p: (acc(p), -(nbytes(p) if nbytes(p) is not None else math.inf)))
        return best, f"the best {accuracy} at {what} <= {budget:g}"
    cloud = [p for p in scored if str(p["series"]).startswith("cloud-only")]
    if not cloud:
        return None, "no cloud-only point to compare with (add a JPEG sweep); pass --budget-bytes or --budget-offload"
    ref = max(cloud, key=acc)
    ok = [p for p in scored if nbytes(p) is not None and acc(p) >= acc(ref) - tolerance]
    best = min(ok, key=lambda p: (nbytes(p), -acc(p)))
    return best, (f"the fewest bytes/image within {tolerance:g} {accuracy} of the best cloud-only point "
                  f"({name(ref)}: {accuracy} {acc(ref):.2f})")


def recommendation_rivals(points, best, budget_bytes=None, budget_offload=None, accuracy="AP"):
    """The neighbours :func:`recommend`'s rule ranked ``best`` ahead of: with a budget the runner-up (the most accurate
    other point within it); without, the most accurate point sending fewer bytes (passed over for its accuracy). The
    recommendation is distinguishable only when its interval overlaps none of theirs (:func:`indistinct`)."""
    if best is None:
        return []
    others = [p for p in points if p is not best and _metric(p, accuracy) is not None]
    for budget, key in ((budget_bytes, "bytes_mean"), (budget_offload, "offload_rate")):
        if budget is not None:
            ok = [p for p in others if _metric(p, key) is not None and _metric(p, key) <= budget]
            return [max(ok, key=lambda p: _metric(p, accuracy))] if ok else []
    nbytes = _metric(best, "bytes_mean")
    cheaper = [p for p in others if nbytes is not None and _metric(p, "bytes_mean") is not None
               and _metric(p, "bytes_mean") < nbytes]
    return [max(cheaper, key=lambda p: _metric(p, accuracy))] if cheaper else []


def _overlap(a, b):
    return a is not None and b is not None and a[0] <= b[1] and b[0] <= a[1]


def ranking_noise(points, accuracy="AP"):
    """``(overlapping pairs, pairs)`` when the intervals of at least :data:`NOISE_SHARE` of the pairs of rows with
    an interval overlap (at least 3 such rows): the ranking of the rows is noise. None otherwise."""
    ranked = [p for p in points if _metric(p, accuracy) is not None and interval(p, accuracy)]
    pairs = [(x, y) for i, x in enumerate(ranked) for y in ranked[i + 1:]]
    overlapping = sum(_overlap(interval(x, accuracy), interval(y, accuracy)) for x, y in pairs)
    return (overlapping, len(pairs)) if len(ranked) >= 3 and overlapping >= NOISE_SHARE * len(pairs) else None


def indistinct(best, rivals, accuracy="AP"):
    """The ``rivals`` whose interval overlaps ``best``'s: the ranking between them is noise."""
    return [r for r in rivals if _overlap(interval(best, accuracy), interval(r, accuracy))] if best else []


def _fmt(v, spec):
    return "-" if v is None else format(v, spec)


def _value(point, accuracy):
    """``"AP 23.50 [22.10, 24.90]"``."""
    ci = interval(point, accuracy)
    return f"{accuracy} {_fmt(_metric(point, accuracy), '.2f')}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")


def _name(point):
    return f"{point['series']}, {point['label']}"


TEACHER_FIX = "train it longer (teacher:SOLVER.MAX_ITER) or start from pretrained weights with --teacher-weights"
MORE_IMAGES = "evaluate on more test images (a larger --test set, and no --eval-images)"
NOISE_SHARE = 0.75  # at least this share of the pairs of rows overlapping: the ranking is noise


def report_warnings(result, best=None, rivals=(), bootstrap=None):
    """Plain warnings about what pareto.json's numbers are worth, each with its fix: a missing ceiling row; the cloud
    teacher not clearly better than the edge alone (its ceiling, the teacher on lossless PNG images, below edge-only
    or its interval overlapping edge-only's); an image codec whose accuracy falls at its highest quality below a
    lower quality's by more than the interval; intervals that overlap so much that the ranking is noise; a
    recommended point (``best``, with :func:`recommendation_rivals`) that its neighbours' intervals overlap; no
    intervals at all (``bootstrap``: the resamples the recipe asked for)."""
    acc = result.get("accuracy", "AP")
    points = [p for p in result.get("points", []) if _metric(p, acc) is not None]
    a = lambda p: _metric(p, acc)  # noqa: E731
    images = result.get("images")
    out = []
    top = lambda series: max((p for p in points if p.get("series") == series), key=a, default=None)  # noqa: E731
    cloud, edge = top(CEILING), top(EDGE_ALONE)
    if cloud is None:
        out.append(f"No {CEILING} row, the cloud teacher on lossless images (the most an offloading point can reach): "
                   f"nothing here says whether the teacher learned the task; add png=9 to the sweep.")
    if edge is None:
        out.append(f"No {EDGE_ALONE} row, the edge detector alone (what the device does without the cloud): add "
                   f"edge_only to the sweep.")
    if cloud is not None and edge is not None:
        ci_cloud, ci_edge = interval(cloud, acc), interval(edge, acc)
        below = a(cloud) <= a(edge)
        if below or (ci_cloud and ci_edge and ci_cloud[0] <= ci_edge[1]):
            out.append(f"**The cloud teacher is not clearly better than the edge alone: {TEACHER_FIX}.** On lossless "
                       f"images ({CEILING}) it scores {_value(cloud, acc)}, the edge alone {_value(edge, acc)}"
                       + ("" if below else ": the intervals overlap")
                       + ". The edge was distilled from this teacher, and every offloaded image ends with it: a "
                         "teacher that has not learned the task caps every point that offloads.")
    for series in dict.fromkeys(p["series"] for p in points if str(p["series"]).startswith("cloud-only")):
        graded = []
        for p in points:
            m = re.match(r"^(\w+) (\d+)$", str(p.get("label", "")))
            if p["series"] == series and m and m.group(1) != "png":  # PNG levels are all lossless
                graded.append((int(m.group(2)), p))
        if len(graded) < 2:
            continue
        q_top, highest = max(graded, key=lambda t: t[0])
        ci = interval(highest, acc)
        worse = [p for q, p in graded if q < q_top and a(p) > (ci[1] if ci else a(highest))]
        if worse:
            lower = max(worse, key=a)
            out.append(f"**{series}: {acc} does not rise with quality.** At its highest quality ({highest['label']}) "
                       f"the cloud scores {_value(highest, acc)}, below {lower['label']}'s {_fmt(a(lower), '.2f')}"
                       + (" by more than the interval" if ci else "")
                       + ". A detector that does worse on better images has not learned what they show, or the test "
                         f"set is too small to rank them: train the teacher longer (teacher:SOLVER.MAX_ITER) or from "
                         f"--teacher-weights, and {MORE_IMAGES}.")
    noise = ranking_noise(points, acc)
    if noise:
        out.append(f"**The intervals overlap so much that the ranking is noise**: {noise[0]} of the {noise[1]} "
                   f"pairs of rows have overlapping {acc} intervals on these {images} test images, so the fronts, the "
                   f"BD-rates and the recommendation cannot be told from chance: {MORE_IMAGES}, and train the stages "
                   f"longer (STAGE:SOLVER.MAX_ITER).")
    close = indistinct(best, rivals, acc)
    if close:
        out.append(f"**The recommended point is not distinguishable from its neighbours**: {_name(best)} "
                   f"({_value(best, acc)}) overlaps "
                   + ", ".join(f"{_name(r)} ({_value(r, acc)})" for r in close)
                   + f", which the rule ranked below it: on these {images} images the choice between them is noise; "
                     f"{MORE_IMAGES} before relying on it.")
    if points and not any(interval(p, acc) for p in points):
        out.append("No intervals: nothing here says whether two rows differ by more than chance"
                   + (" (the sweep ran with --bootstrap 0)" if bootstrap == 0 else "")
                   + f"; run with --bootstrap {BOOTSTRAP}.")
    return out


def _shorter(path):
    """``path`` relative to the working directory when that is shorter, else absolute."""
    full = os.path.abspath(path)
    rel = os.path.relpath(full)
    return rel if len(rel) < len(full) else full


def _reproduce(point, context):
    """The short command that reproduces one row from its merged config (``context["point_configs"]``, from
    :meth:`Recipe.write_point_configs`): ``train_net.py --eval-only`` for a model, a one-point ``tools/pareto.py``
    sweep for a cloud-only image codec (train_net.py does not code the input images). None for a point the recipe
    did not evaluate."""
    found = (context or {}).get("point_configs", {}).get(os.path.abspath(str(point.get("output_dir", ""))))
    if not found:
        return None
    if found.get("codec"):
        return shlex.join(["python", _tool("pareto.py"), "--config-file", _shorter(found["config"]), "--sweep",
                           found["codec"], "--output", _shorter(found["output"])])
    return shlex.join(["python", _tool("train_net.py"), "--eval-only", "--config-file", _shorter(found["config"])])


def training_section(stops):
    """report.md's lines on how each training stage ended (its stop.json): iterations run of its budget, why it
    stopped, its held-out curve's last value and its plateau verdict."""
    if not stops:
        return []
    lines = ["## Training", "", "| stage | iterations | ended by | held-out AP (last) | curve |", "|---|--:|---|--:|---|"]
    for key, s in stops.items():
        verdict, curve = s.get("plateau") or {}, s.get("curve") or []
        last = f"{curve[-1][1]:.2f}" if curve else "-"
        flat = ("flat" if verdict.get("flat") else "not flat") + (
            f" (last quarter {verdict['gain']:+.2f})" if _finite(verdict.get("gain")) else "")
        lines.append(f"| {key} | {s.get('iteration')} of {s.get('max_iter')} | {s.get('reason')} | {last} | "
                     f"{flat if curve else 'no held-out curve (--holdout 0)'} |")
    lines += ["", "A stage ends at its plateau (the best held-out AP of its last quarter of iterations less than 0.3 "
                  "above the best before it), at `--max-minutes`, or at its `SOLVER.MAX_ITER`.", ""]
    return lines


def write_report(pareto_json, report_md, budget_bytes=None, budget_offload=None, context=None):
    """report.md from pareto.json: the recommended point for the budget (or that none is distinguishable), the
    warnings (:func:`report_warnings`), the operating points with their intervals (the table of
    :func:`eccentric_det.reports.table.points_table`, as tools/pareto.py prints it), the ceilings, the plot, the
    BD-rates, and how to reproduce each row. Returns the recommended point (or None)."""
    with open(pareto_json) as f:
        result = json.load(f)
    acc = result.get("accuracy", "AP")
    points = result.get("points", [])
    best, why = recommend(points, budget_bytes, budget_offload, acc)
    rivals = recommendation_rivals(points, best, budget_bytes, budget_offload, acc)
    close, noise = indistinct(best, rivals, acc), ranking_noise(points, acc)
    ctx = context or {}
    out_dir = os.path.dirname(os.path.abspath(report_md))
    lines = [f"# ECC trade-off report: {ctx.get('train', '')} -> {result.get('dataset', '')}".rstrip(), ""]
    if ctx.get("command"):  # the recipe's
        lines += [f"{ctx['num_classes']} classes. Stages 1-4 trained on `{ctx['train_set']}`, the Dynamic ECC gate "
                  f"fitted on `{ctx['gate_set']}`, every point evaluated on {result.get('images')} images of "
                  f"`{result.get('dataset')}`" + (" (--quick: a smoke test, not a measurement)" if ctx.get("quick")
                                                   else "") + ".", "",
                  f"Made by `{ctx['command']}`.", ""]
    budget = (f"--budget-bytes {budget_bytes:g}" if budget_bytes is not None else
              f"--budget-offload {budget_offload:g}" if budget_offload is not None else "no budget given")
    if best is None:
        lines += [f"**Recommended point ({budget}): none**: {why}.", ""]
    else:
        m = best["metrics"]
        numbers = (f"{_value(best, acc)}, {_fmt(_metric(best, 'bytes_mean'), ',.0f')} bytes/image, "
                   f"offload rate {_fmt(_metric(best, 'offload_rate'), '.2f')}, "
                   f"edge {_fmt(m.get('edge_gflops'), '.3f')} / cloud {_fmt(m.get('cloud_gflops'), '.3f')} GFLOPs per "
                   f"image")
        if close or noise:
            lines += [f"**Recommended point ({budget}): none distinguishable.** The rule ({why}) picks "
                      f"{_name(best)}: {numbers}; but "
                      + (("its interval overlaps that of " + ", ".join(f"{_name(r)} ({_value(r, acc)})" for r in close))
                         if close else f"the intervals of {noise[0]} of the {noise[1]} pairs of rows overlap")
                      + f": on these {result.get('images')} images the choice is noise (see the warnings).", ""]
        else:
            lines += [f"**Recommended point ({budget}): {_name(best)}**: {numbers} ({why}).", ""]
    warnings = report_warnings(result, best, rivals, ctx.get("bootstrap"))
    if warnings:
        lines += ["## Warnings", ""] + [f"* {w}" for w in warnings] + [""]
    intervals = any(interval(p, acc) for p in points)
    lines += ["## Operating points", "",
              f"{acc} on {result.get('images')} images of `{result.get('dataset')}`"
              + (" with its 95% bootstrap interval over the images"
                 + (f" ({ctx['bootstrap']} resamples)" if ctx.get("bootstrap") else "") if intervals else "")
              + "; bytes per image (mean), the share of images offloaded, GFLOPs per image on each side.", ""]
    marks = {i: (" *(picked, not distinguishable)*" if close or noise else " **(recommended)**")
             for i, p in enumerate(points) if p is best}
    lines += points_table(points, acc, numbered=True, marks=marks)
    lines += ["", front_legend(acc) + ".", ""]
    ceilings = [text for series, text in (
        (CEILING, f"*{CEILING}* is the cloud teacher on lossless images: nothing lost to coding, the most an "
                  f"offloading point can reach"),
        (EDGE_ALONE, f"*{EDGE_ALONE}* is the edge detector alone: nothing sent, what the device does without the "
                     f"cloud")) if any(p.get("series") == series for p in points)]
    if ceilings:
        lines += ["Ceilings: " + "; ".join(ceilings) + ".", ""]
    png = os.path.join(os.path.dirname(os.path.abspath(pareto_json)), "pareto.png")
    lines += [f"![Pareto fronts]({os.path.relpath(png, out_dir)})", ""]
    lines += [f"## BD-rate against {result.get('anchor', 'cloud-only JPEG')} ({result.get('bd_method', 'pchip')})", "",
              "| series | BD-rate |", "|---|---|"]
    for series, value in (result.get("bd_rate") or {}).items():
        lines.append(f"| {series} | {f'{value:+.1f}%' if isinstance(value, (int, float)) else value} |")
    lines += ["", "Negative: fewer bytes than the anchor at the same accuracy.", ""]
    commands = [(i, _reproduce(p, ctx)) for i, p in enumerate(points, 1)]
    if any(c for _, c in commands):
        folder = _shorter(os.path.join(out_dir, "configs"))
        lines += ["## Reproduce a row", "",
                  f"Each row's merged config (every override and the dataset registration in it) is in `{folder}/`. "
                  f"A model row re-runs with `train_net.py --eval-only` (on the whole test set"
                  + (f"; the sweep used its first {ctx['eval_images']} images" if ctx.get("eval_images") else "")
                  + "); a cloud-only image-codec row with a one-point `tools/pareto.py` sweep of its config "
                    "(train_net.py does not code the input images):", ""]
        lines += [f"{i}. `{c}`" for i, c in commands if c]
        lines.append("")
    if ctx.get("checkpoints"):
        fit = ctx.get("fit") or {}
        gate = (f"threshold {fit['threshold']:.4f}, fitted on `{fit.get('dataset')}` for recall "
                f"{fit.get('recall_target')}" + (f" (offload rate {fit['offload_rate']:.2f} there)"
                                                 if _finite(fit.get("offload_rate")) else "")
                if fit.get("fitted") else f"NOT fitted: {fit.get('reason', '?')}; threshold {fit.get('threshold')}")
        lines += ["## Checkpoints", ""]
        for name, path in ctx["checkpoints"].items():
            lines.append(f"* {name}: `{path}`" + (f" ({gate})" if name == "offload_gate" and fit else ""))
        if ctx.get("seconds"):
            lines += ["", "Stage times: " + ", ".join(f"{k} {_duration(v)}" for k, v in ctx["seconds"].items()
                                                     if _finite(v)) + "."]
        lines.append("")
    lines += training_section(ctx.get("stops") or {})
    os.makedirs(out_dir, exist_ok=True)
    with open(report_md, "w") as f:
        f.write("\n".join(lines))
    return best


# ------------------------------------------------------------------------------------------------ entry point
def run_recipe(args, argv=None, say=print):
    """Check the command line, then print the plan (``args.dry_run``) or run the stages. Returns the exit status."""
    try:
        if args.budget_bytes is not None and args.budget_offload is not None:
            raise RecipeError("give one budget: --budget-bytes or --budget-offload")
        recipe = Recipe(args, argv)
        recipe.check()
        return recipe.dry_run(say) if args.dry_run else recipe.run(say)
    except RecipeError as e:
        print(f"train_eccentric.py: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("train_eccentric.py: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


def build_parser():
    """The command line of tools/train_eccentric.py."""
    p = argparse.ArgumentParser(
        prog="train_eccentric.py", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="The whole ECC recipe on your dataset, as resumable stages: cloud teacher, edge detector (KD),\n"
                    "codec pre-training, Adaptive ECC (variable rate), Dynamic ECC gate, Pareto sweep, report.md.",
        epilog="Trailing KEY VALUE pairs override the config of every stage (after '--' when they follow --register); "
               "STAGE:KEY VALUE overrides one stage (stages: " + ", ".join(STAGES[:-1]) + "), e.g. "
               "teacher:SOLVER.MAX_ITER 3000.")
    p.add_argument("--train", required=True, help="registered training dataset")
    p.add_argument("--test", required=True, help="registered test dataset (evaluation and the report)")
    p.add_argument("--num-classes", type=int, required=True, help="the datasets' class count")
    p.add_argument("--register", nargs="+", action="append", metavar="NAME KIND ARG",
                   help="register a dataset: NAME coco JSON_FILE IMAGE_DIR (or NAME voc VOC_DIR SPLIT); repeatable")
    p.add_argument("--cloud-config", default="",
                   help=f"cloud detector and teacher (default {DEFAULT_CONFIGS['cloud']})")
    p.add_argument("--edge-config", default="", help=f"edge detector, distilled (default {DEFAULT_CONFIGS['edge']})")
    p.add_argument("--pretrain-config", default="", help=f"codec pre-training (default {DEFAULT_CONFIGS['pretrain']})")
    p.add_argument("--adapt-config", default="",
                   help=f"Adaptive ECC, variable rate (default {DEFAULT_CONFIGS['adapt']})")
    p.add_argument("--holdout", type=float, default=0.1, help="fraction of the training images held out of stages "
                                                              "1-4 to fit the gate on (0: fit on training images)")
    p.add_argument("--teacher-weights", default="", help="initial weights of the teacher (MODEL.WEIGHTS of stage 1)")
    p.add_argument("--edge-init", default="", help="initial weights of the edge (MODEL.ECCENTRIC.EDGE.WEIGHTS of "
                                                   "stage 2, e.g. ImageNet R-18 in Detectron2 names)")
    p.add_argument("--recall", type=float, default=0.9, help="recall of 'needs the cloud' images the gate reaches")
    p.add_argument("--gate-images", type=int, default=300, help="images the gate is fitted on (at most)")
    p.add_argument("--eval-images", type=int, default=None, help="evaluate the sweep on the first N test images "
                                                                 f"(default all; --quick {QUICK_EVAL_IMAGES})")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--budget-bytes", type=float, default=None, help="recommend the best AP at a mean of at most "
                                                                         "B bytes/image")
    budget.add_argument("--budget-offload", type=float, default=None, help="recommend the best AP at an offload rate "
                                                                           "of at most F")
    p.add_argument("--bootstrap", type=int, default=BOOTSTRAP, metavar="N",
                   help="resamples of the 95%% interval of each point's AP over the test images (0: none)")
    p.add_argument("--max-minutes", type=float, default=0.0, help="end each training stage after this many minutes "
                                                                   "(0: no limit; its stop.json says what ended it)")
    p.add_argument("--keep-intermediate", action="store_true",
                   help="keep each training's intermediate checkpoints (model_0*.pth) once its final export is written")
    p.add_argument("--quick", action="store_true", help="a smoke test: the quick_schedules configs (a few "
                                                        "iterations at 128 px) and a few images per sweep")
    p.add_argument("--output", required=True, help="folder of every stage's outputs and report.md")
    p.add_argument("--dry-run", action="store_true", help="print the stages and their commands; run nothing")
    p.add_argument("opts", nargs=argparse.REMAINDER, default=[], help="config overrides: KEY VALUE pairs, last")
    return p
