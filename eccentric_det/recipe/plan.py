"""The recipe of one command line (:class:`Recipe`): its checks before any stage runs, one builder per stage (each
stage's steps, inputs, outputs and notes), the dry run and the run.

Every step runs a program of the package (``python -m eccentric_det.cli.<name>``, :mod:`.names`), and every stage
hands its exact checkpoint path to the next; results pass between programs as files (checkpoints, the gate's
fit.json, a sweep's plan.json and pareto.json), never as printed text. The default configs are the ones shipped in
the package (``eccentric_det/configs``), so an installed eccentric_det runs the recipe from any folder."""
import json
import os
import re
import shlex
import sys
import tempfile
import time

from ..reports.series import is_cloud_only
from .engine import (TIMED_ITERATIONS, RecipeError, Stage, Step, duration, execute_stage, last_iteration,
                     remove_intermediate, seconds_per_iteration, stamp_status, time_training)
from .names import RECIPE, STAGES, TRAINING_STAGES, tool
from .options import (DATA_IDENTITY, IDENTITY, config_yaml, dataset_files, dataset_names, once, register_entries,
                      split_opts)
from .report import InOutput, write_report

CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")  # the package's

# configs under CONFIG_DIR
DEFAULT_CONFIGS = {"cloud": "FashionDet/cloud_teacher.yaml", "edge": "FashionDet/edge_kd.yaml",
                   "pretrain": "FashionDet/codec_pretrain.yaml", "adapt": "FashionDet/adaptive_ecc_vr.yaml"}
QUICK_CONFIGS = {"cloud": "quick_schedules/fashion_det_cloud_teacher_instant_test.yaml",
                 "edge": "quick_schedules/fashion_det_edge_kd_instant_test.yaml"}
# --quick's codec stages: the quick Adaptive ECC config with codec v2 at two rates (no quick file of its own). They
# are written as small config files (_BASE_ + these keys) because tools/pareto.py's "rates" sweep reads the levels
# from the config file alone.
QUICK_BASE = "quick_schedules/fashion_det_adaptive_ecc_instant_test.yaml"
QUICK_VR = {"MODEL.ECCENTRIC.CODEC.NAME": "mean_scale", "MODEL.ECCENTRIC.CODEC.RATE_WEIGHTS": [0.1, 1.0]}
QUICK_DERIVED = {"pretrain": ("codec_pretrain_quick.yaml", {**QUICK_VR, "MODEL.ECCENTRIC.DISTILL.MODE": "reconstruct"}),
                 "adapt": ("adaptive_ecc_vr_quick.yaml", dict(QUICK_VR))}
STAGE_MODEL = {"teacher": "cloud", "edge_kd": "edge", "codec_pretrain": "pretrain", "adaptive_ecc_vr": "adapt",
               "cloud_plus": "cloud", "gate": "adapt", "pareto": "adapt"}  # each stage model's config (--*-config)
# what the equal-budget cloud (stage 5) takes from the adaptation's merged config: its schedule
EQUAL_BUDGET_SOLVER = ("IMS_PER_BATCH", "BASE_LR", "LR_SCHEDULER_NAME", "WARMUP_ITERS", "WARMUP_FACTOR")
# the keys that hand a stage the checkpoints of earlier ones
HANDOFF_WEIGHTS = ("MODEL.WEIGHTS", "MODEL.ECCENTRIC.EDGE.WEIGHTS", "MODEL.ECCENTRIC.DISTILL.TEACHER_WEIGHTS")

# the points of stage 7 (besides every trained rate and edge-only); the fitted threshold joins the thresholds; PNG
# (lossless) is the cloud's ceiling: the teacher on the images as they are
SWEEP = {"thresholds": (0.1, 0.3, 0.5, 0.7, 0.9), "jpeg": (5, 15, 30, 60, 90), "webp": (5, 30, 80), "png": (9,)}
QUICK_SWEEP = {"thresholds": (0.5,), "jpeg": (30, 90), "webp": (50,), "png": (9,)}
POINT_CONFIG_MARK = "# written by tools/train_eccentric.py: the merged config of report.md's row"
QUICK_EVAL_IMAGES = 4
QUICK_GATE_FALLBACK_THRESHOLD = 0.5  # the unfitted gate's: offload when the best edge detection scores below 0.5
# --joint: stage 4 trains the edge trunk and detector with the cloud (nothing frozen, the edge detector's own loss
# at half weight), as configs/FashionDet/adaptive_ecc_vr_joint.yaml; the user's adaptive_ecc_vr: overrides come after
JOINT_OPTS = ["MODEL.ECCENTRIC.DISTILL.FREEZE", "[]", "MODEL.ECCENTRIC.DISTILL.EDGE_LOSS_WEIGHT", "0.5"]
# --teacher-trunk: the edge trunk is the teacher's own stem..split stage (EDGE.RESNETS.DEPTH 0: the cloud's ResNet, so
# MODEL.WEIGHTS, the teacher, fills it), with no detector of its own, and the codec's layers twice as wide; stage 4
# trains the trunk with the cloud. As configs/FashionDet/adaptive_ecc_vr_teacher_trunk.yaml. The user's overrides come
# after these; the edge detector, the gate and Dynamic ECC are not built.
TEACHER_TRUNK_OPTS = ["MODEL.ECCENTRIC.EDGE.RESNETS.DEPTH", "0", "MODEL.ECCENTRIC.EDGE.DETECTOR", "False",
                      "MODEL.ECCENTRIC.CODEC.HIDDEN_CHANNELS", "128"]
TEACHER_TRUNK_STAGES = ("codec_pretrain", "adaptive_ecc_vr", "pareto")  # the stages of the split model


def shipped_config(name):
    """A config shipped with eccentric_det (``name`` under its configs/): ``configs/<name>`` when the working folder's
    configs/ holds that same file (a checkout: short commands), else its path in the package."""
    path, local = os.path.join(CONFIG_DIR, name), os.path.join("configs", name)
    try:
        if os.path.samefile(local, path):
            return local
    except OSError:
        pass
    return path


def _read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _unfitted(fit_json):
    """Why fit_offload_gate fitted nothing (its fit.json says ``"fitted": false``), or ""."""
    record = _read_json(fit_json)
    if not isinstance(record, dict) or record.get("fitted", True):
        return ""
    return str(record.get("reason") or "nothing to fit")


class Recipe:
    """The recipe of one command line: checks, stage plan, execution."""

    def __init__(self, args, argv=None):
        self.args = args
        self.argv = list(sys.argv[1:] if argv is None else argv)
        self.dir = os.path.normpath(args.output)
        self.ckpt = lambda name: os.path.join(self.dir, "checkpoints", name)  # noqa: E731
        self.stage_dir = lambda key: os.path.join(self.dir, key)  # noqa: E731
        self.opts, self.stage_opts = split_opts(args.opts)
        self.trunk = args.teacher_trunk
        if self.trunk and (args.joint or args.edge_config or args.edge_init):
            given = [f for f, v in (("--joint", args.joint), ("--edge-config", args.edge_config),
                                    ("--edge-init", args.edge_init)) if v]
            raise RecipeError(f"--teacher-trunk takes the teacher's own early layers as the edge, so there is no edge "
                              f"detector to train: drop {' and '.join(given)} (or drop --teacher-trunk)")
        self.mode_opts = {}  # what --joint or --teacher-trunk sets, before the user's overrides
        if self.trunk:
            self.mode_opts = {s: list(TEACHER_TRUNK_OPTS) for s in TEACHER_TRUNK_STAGES}
            self.mode_opts["adaptive_ecc_vr"] += ["MODEL.ECCENTRIC.DISTILL.FREEZE", "[]"]
        elif args.joint:
            self.mode_opts["adaptive_ecc_vr"] = JOINT_OPTS
        if not 0 <= args.holdout < 1:
            raise RecipeError(f"--holdout is the fraction of training images held out for the gate, in [0, 1); got "
                              f"{args.holdout}")
        if args.num_classes < 1:
            raise RecipeError(f"--num-classes must be positive, got {args.num_classes}")
        if args.bootstrap < 0:
            raise RecipeError(f"--bootstrap is a number of resamples (0: no intervals), got {args.bootstrap}")
        self.quick = args.quick
        self.configs = {}
        for which in ("cloud", "edge", "pretrain", "adapt"):
            given = getattr(args, f"{which}_config")
            if given:
                self.configs[which] = given
            elif self.quick and which in QUICK_CONFIGS:
                self.configs[which] = shipped_config(QUICK_CONFIGS[which])
            elif self.quick:
                self.configs[which] = os.path.join(self.dir, "configs", QUICK_DERIVED[which][0])
            else:
                self.configs[which] = shipped_config(DEFAULT_CONFIGS[which])
        # (config file, overrides) to merge for checks and stamps: a --quick derived file is its base + its keys
        self.merge_as = {w: (f, []) for w, f in self.configs.items()}
        for which, (name, keys) in QUICK_DERIVED.items():
            if self.quick and not getattr(args, f"{which}_config"):
                flat = [v for k, val in keys.items() for v in (k, json.dumps(val) if isinstance(val, list) else val)]
                self.merge_as[which] = (shipped_config(QUICK_BASE), flat)
        self.flags = {"cloud": "--cloud-config", "edge": "--edge-config", "pretrain": "--pretrain-config",
                      "adapt": "--adapt-config"}
        self.user_entries = register_entries(args.register, 0, args.train)
        self.entries = register_entries(args.register, args.holdout, args.train)  # + the subsets of --holdout
        self.train_set = f"{args.train}_fit" if args.holdout else args.train
        self.gate_set = f"{args.train}_holdout" if args.holdout else args.train
        self.eval_images = args.eval_images or (QUICK_EVAL_IMAGES if self.quick else None)
        self.sweep = QUICK_SWEEP if self.quick else SWEEP
        self.cfgs = {}  # stage -> merged config (after check())
        self._equal_budget = None  # equal_budget_opts(), merged once
        self.builders = {"teacher": self.stage_teacher, "edge_kd": self.stage_edge_kd,
                         "codec_pretrain": self.stage_codec_pretrain, "adaptive_ecc_vr": self.stage_adaptive_ecc_vr,
                         "cloud_plus": self.stage_cloud_plus,
                         "gate": self.stage_gate, "pareto": self.stage_pareto, "report": self.stage_report}

    # -------------------------------------------------------------------------------------- overrides
    def user_opts(self, stage):
        """A stage's overrides after the data's and the hand-offs' keys: the mode's (:attr:`mode_opts`), the user's
        for every stage, the user's for this one."""
        return self.mode_opts.get(stage, []) + self.opts + self.stage_opts.get(stage, [])

    def edge_weights(self):
        """EDGE.WEIGHTS of stages 3 and 4: the edge detector of stage 2, or nothing (--teacher-trunk: the teacher's
        own layers, loaded by MODEL.WEIGHTS)."""
        return "" if self.trunk else self.ckpt("edge_kd.pth")

    def data_opts(self):
        reg = ["DATASETS.REGISTER", json.dumps(self.entries)] if self.entries else []  # a Python literal too
        return reg + ["MODEL.ROI_HEADS.NUM_CLASSES", str(self.args.num_classes)]

    def train_opts(self):
        return self.data_opts() + ["DATASETS.TRAIN", dataset_names(self.train_set), "DATASETS.TEST", "()"]

    def eval_opts(self):
        """What evaluating the adapted model needs: the datasets, and the teacher it was built with (its FPN widths
        size the distillation projections the checkpoint holds)."""
        return self.data_opts() + ["DATASETS.TRAIN", dataset_names(self.train_set), "DATASETS.TEST",
                                   dataset_names(self.args.test), "MODEL.ECCENTRIC.DISTILL.TEACHER_CONFIG",
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

        from ..config import resolve_config_file
        from ..data import check_dataset_available, in_holdout, register_datasets, thing_classes
        from ..tasks import get_eccentric_cfg

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
        for stage, which in STAGE_MODEL.items():
            if self.trunk and stage in ("edge_kd", "gate"):
                continue  # not built
            base, extra = self.merge_as[which]
            opts = self.train_opts() if stage not in ("gate", "pareto") else self.eval_opts()
            if stage == "cloud_plus":
                opts = opts + self.equal_budget_opts()
            out[stage] = (base, extra + opts + self.user_opts(stage))
        return out

    def equal_budget_opts(self):
        """The equal-budget cloud's solver: as many iterations as stages 3 and 4 together, at stage 4's schedule
        (batch, learning rate, scheduler, warm-up; multi-step STEPS scaled to the longer run), so that the cloud-only
        rows have the split's training budget."""
        if self._equal_budget is None:
            from ..tasks import get_eccentric_cfg

            merged = {}
            for stage in ("codec_pretrain", "adaptive_ecc_vr"):
                base, extra = self.merge_as[STAGE_MODEL[stage]]
                try:
                    merged[stage] = get_eccentric_cfg(base, extra + self.train_opts() + self.user_opts(stage)).SOLVER
                except (KeyError, ValueError, AssertionError) as e:
                    raise RecipeError(f"stage {stage}: {e.args[0] if e.args else e}") from None
            adapt = merged["adaptive_ecc_vr"]
            total = merged["codec_pretrain"].MAX_ITER + adapt.MAX_ITER
            steps = tuple(round(s * total / adapt.MAX_ITER) for s in adapt.STEPS) if adapt.MAX_ITER else ()
            self._equal_budget = ["SOLVER.MAX_ITER", str(total), "SOLVER.STEPS", str(steps)] + [
                x for key in EQUAL_BUDGET_SOLVER for x in (f"SOLVER.{key}", str(adapt[key]))]
        return self._equal_budget

    def identity(self):
        a = vars(self.args)
        ident = {k: a.get(k) for k in IDENTITY}
        ident.update(register=self.entries, opts=[self.opts, self.stage_opts], configs=self.configs)
        return json.loads(json.dumps(ident))

    def command(self, argv=None):
        """The command line of this recipe (or of ``argv``): ``python -m eccentric_det.recipe ...``."""
        return shlex.join(["python", "-m", RECIPE, *(self.argv if argv is None else argv)])

    def check_output_dir(self):
        """A non-empty output folder must hold a run on the same data (:data:`DATA_IDENTITY`); other changes re-run
        only the stages whose stamps they change (and the stages after them)."""
        d = self.dir
        if os.path.isfile(d):
            raise RecipeError(f"--output {d} is a file: pass a folder")
        if not os.path.isdir(d) or not os.listdir(d):
            return
        try:
            with open(os.path.join(d, "recipe.json")) as f:
                saved = json.load(f)
        except (OSError, ValueError):
            raise RecipeError(f"--output {d} is not empty and holds no recipe.json: it was not made by "
                              f"tools/train_eccentric.py. Pass a new or empty folder as --output") from None
        old, new = saved.get("identity", {}), self.identity()
        diff = [k for k in DATA_IDENTITY if old.get(k) != new.get(k)]
        if diff:
            raise RecipeError(f"--output {d} holds the run on other data (it differs in: "
                              f"{', '.join(diff)}). To resume that run, repeat its command:\n"
                              f"    {self.command(saved.get('argv', []))}\n"
                              f"To start over, pass another --output, or remove the folder: rm -r {shlex.quote(d)}")

    # -------------------------------------------------------------------------------------- stages
    def stages(self):
        """The eight stages, built in order (stage 7 takes the threshold stage 6 wrote, when it has)."""
        return [self.stage(key) for key in STAGES]

    def stage(self, key):
        """Stage ``key`` as of now (:attr:`builders`: one method per stage)."""
        return self.builders[key]()

    def _stage(self, key, **kw):
        return Stage(key, STAGES.index(key) + 1, self.stage_dir(key), **kw)

    def fit_path(self):
        return os.path.join(self.stage_dir("gate"), "fit.json")

    def threshold(self):
        """The threshold stage 6 fitted (DIR/gate/fit.json), or None before it ran."""
        try:
            return float(_read_json(self.fit_path())["threshold"])
        except (KeyError, TypeError, ValueError):
            return None

    def _max_iter(self, stage):
        cfg = self.cfgs.get(stage)
        return int(cfg.SOLVER.MAX_ITER) if cfg is not None else 0

    def curve_opts(self, stage):
        """A training stage's learning curve and stopping rule: AP on the held-out split (--holdout) eight times per
        run, the run ended at its plateau (SOLVER.PLATEAU.STOP) or after --max-minutes; stop.json says which."""
        opts = []
        if self.args.holdout:
            opts += ["DATASETS.TEST", dataset_names(self.gate_set), "TEST.EVAL_PERIOD",
                     str(max(1, self._max_iter(stage) // 8)), "SOLVER.PLATEAU.STOP", "True"]
        if self.args.max_minutes:
            opts += ["SOLVER.MAX_MINUTES", f"{self.args.max_minutes:g}"]
        return opts

    def _train_step(self, stage, which, handoff):
        out = self.stage_dir(stage)
        budget = self.equal_budget_opts() if stage == "cloud_plus" else []
        opts = once([*self.train_opts(), *budget, *self.curve_opts(stage), *self.user_opts(stage), *handoff,
                     "OUTPUT_DIR", out])
        return Step([*tool("train_net"), "--config-file", self.configs[which], *opts], train_dir=out,
                    max_iter=self._max_iter(stage))

    def _export(self, src, dst, keep=()):
        return Step([*tool("export_checkpoint"), src, dst, *(["--keep", *keep] if keep else [])])

    def _local(self, *paths):
        return [p for p in paths if p and not p.startswith(("detectron2://", "http://", "https://"))]

    def _data(self, *names):
        return list(dict.fromkeys(f for n in names for f in dataset_files(n)))

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
        if self.trunk:
            return self._stage("edge_kd", name="edge trunk: the teacher's", notes=[
                "--teacher-trunk: the edge is the teacher's own layers up to the split (EDGE.RESNETS.DEPTH 0), loaded "
                "from teacher.pth with the cloud in stage 3 and trained with it in stage 4; no edge detector, so "
                "nothing runs here"])
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
        handoff = ["MODEL.WEIGHTS", self.ckpt("teacher.pth"), "MODEL.ECCENTRIC.EDGE.WEIGHTS", self.edge_weights(),
                   *self.teacher_opts()]
        return self._stage("codec_pretrain", steps=[self._train_step("codec_pretrain", "pretrain", handoff)],
                           inputs=self._local(self.ckpt("teacher.pth"), self.edge_weights())
                           + self._data(self.train_set),
                           outputs=[os.path.join(out, "model_final.pth")],
                           configs=[self.stage_configs()["codec_pretrain"]], notes=self._derived_note("pretrain"))

    def stage_adaptive_ecc_vr(self):
        out = self.stage_dir("adaptive_ecc_vr")
        pretrained = os.path.join(self.stage_dir("codec_pretrain"), "model_final.pth")
        handoff = ["MODEL.WEIGHTS", pretrained, "MODEL.ECCENTRIC.EDGE.WEIGHTS", self.edge_weights(),
                   *self.teacher_opts()]
        return self._stage("adaptive_ecc_vr",
                           steps=[self._train_step("adaptive_ecc_vr", "adapt", handoff),
                                  self._export(os.path.join(out, "model_final.pth"), self.ckpt("adaptive_ecc_vr.pth"))],
                           inputs=self._local(pretrained, self.edge_weights(), self.ckpt("teacher.pth"))
                           + self._data(self.train_set),
                           outputs=[self.ckpt("adaptive_ecc_vr.pth")],
                           configs=[self.stage_configs()["adaptive_ecc_vr"]], notes=self._derived_note("adapt"))

    def stage_cloud_plus(self):
        """Stage 5: the cloud-only baseline at the split's budget: the teacher trained further for as many iterations
        as the codec's pre-training and the adaptation together, at the adaptation's schedule
        (:meth:`equal_budget_opts`); stage 7 codes images for it."""
        out = self.stage_dir("cloud_plus")
        train = self._train_step("cloud_plus", "cloud", ["MODEL.WEIGHTS", self.ckpt("teacher.pth")])
        return self._stage("cloud_plus", steps=[train, self._export(os.path.join(out, "model_final.pth"),
                                                                    self.ckpt("cloud_plus.pth"))],
                           inputs=[self.ckpt("teacher.pth")] + self._data(self.train_set),
                           outputs=[self.ckpt("cloud_plus.pth")], configs=[self.stage_configs()["cloud_plus"]],
                           notes=[f"the teacher + {self.equal_budget_opts()[1]} iterations: as many as stages 3 and 4 "
                                  f"together, at stage 4's schedule, so that the cloud-only rows have the split's "
                                  f"training budget"])

    def _derived_note(self, which):
        if self.configs[which] != os.path.join(self.dir, "configs", QUICK_DERIVED.get(which, ("",))[0]):
            return []
        name, keys = QUICK_DERIVED[which]
        return [f"--quick: {self.configs[which]} is written by the recipe: _BASE_ {shipped_config(QUICK_BASE)} with "
                + " ".join(f"{k} {json.dumps(v)}" for k, v in keys.items())]

    def stage_gate(self):
        """Stage 6: tools/fit_offload_gate.py fits the gate on the held-out images and writes its fit to
        ``gate/fit.json`` (--fit-json); the stage adds the dataset and the recall target. With --quick, a fit with
        nothing to fit on (fit.json: ``"fitted": false``) falls back to exporting the model's unfitted gate."""
        a, fit_json = self.args, self.fit_path()
        if self.trunk:
            return self._stage("gate", name="no gate (--teacher-trunk)", notes=[
                "--teacher-trunk: the edge has no detector to judge an image by, so there is no gate and no Dynamic "
                "ECC: every image is offloaded"])
        gate = self.ckpt("offload_gate.pth")
        fit = Step([*tool("fit_offload_gate"), "--config-file", self.configs["adapt"], "--weights",
                    self.ckpt("adaptive_ecc_vr.pth"), "--dataset", self.gate_set, "--recall", f"{a.recall:g}",
                    "--max-images", str(a.gate_images), "--output", gate, "--fit-json", fit_json,
                    *once(self.eval_opts() + self.user_opts("gate"))])
        notes = [] if a.holdout else [f"--holdout 0: the gate is fitted on training images ({a.train}); held-out "
                                      f"images fit a truer one"]
        if self.quick:
            fit.fallback = self._export(self.ckpt("adaptive_ecc_vr.pth"), gate, ["offload_gate"])
            fit.fallback_when = lambda: _unfitted(fit_json)
            notes.append(f"--quick: when the barely trained models leave nothing to fit (every held-out image needs "
                         f"the cloud as much as the edge), the model's unfitted gate is exported instead "
                         f"({shlex.join(fit.fallback.command)}) at threshold {QUICK_GATE_FALLBACK_THRESHOLD}")

        def finish(stage):
            record = _read_json(fit_json) or {}
            if record.get("fitted") and "threshold" in record:
                record["threshold"] = float(record["threshold"])
            elif self.quick:
                record = {"threshold": QUICK_GATE_FALLBACK_THRESHOLD, "fitted": False,
                          "reason": "--quick: nothing to fit on (the unfitted gate was exported)"}
            else:
                raise RecipeError(f"{stage.label}: fit_offload_gate wrote no fit to {fit_json} (see "
                                  f"{os.path.join(stage.out_dir, '1_fit_offload_gate.log')})")
            record.update(dataset=self.gate_set, recall_target=a.recall)
            with open(fit_json, "w") as f:
                json.dump(record, f, indent=1)
            return {"threshold": record["threshold"]}

        return self._stage("gate", steps=[fit], inputs=[self.ckpt("adaptive_ecc_vr.pth")] + self._data(self.gate_set),
                           outputs=[gate, fit_json], configs=[self.stage_configs()["gate"]], notes=notes,
                           finish=finish)

    def sweep_dirs(self):
        base = os.path.join(self.stage_dir("pareto"), "sweeps")
        return {"adaptive": os.path.join(base, "adaptive"), "dynamic": os.path.join(base, "dynamic")}

    def sweep_opts(self):
        """The overrides every point of each sweep gets (after '--'): the model's, then its weights."""
        adapted = self.ckpt("adaptive_ecc_vr.pth")
        common = self.eval_opts() + self.user_opts("pareto") + ["MODEL.WEIGHTS", adapted]
        return {"adaptive": once(common + ["MODEL.ECCENTRIC.EDGE.WEIGHTS", ""]),
                "dynamic": once(common + ["MODEL.ECCENTRIC.EDGE.WEIGHTS", self.ckpt("offload_gate.pth")])}

    def thresholds(self):
        fitted = self.threshold()
        values = sorted({round(float(t), 4) for t in self.sweep["thresholds"]} | (
            {round(fitted, 4)} if fitted is not None else set()))
        text = ",".join(f"{t:g}" for t in values)
        return text if fitted is not None else f"<threshold of stage 6>,{text}"

    def stage_pareto(self):
        a, dirs, opts = self.args, self.sweep_dirs(), self.sweep_opts()
        images = ["--max-images", str(self.eval_images)] if self.eval_images else []
        images += ["--bootstrap", str(a.bootstrap)] if a.bootstrap else []  # each point's AP interval (merged as is)
        s = self.sweep
        edge_only = [] if self.trunk else ["edge_only"]  # --teacher-trunk: the edge detects nothing alone
        adaptive = Step([*tool("pareto"), "--config-file", self.configs["adapt"], "--sweep", "rates=all", *edge_only,
                         *(f"{codec}=" + ",".join(map(str, s[codec])) for codec in ("jpeg", "webp", "png")),
                         "--cloud-config", self.configs["cloud"], "--cloud-weights", self.ckpt("cloud_plus.pth"),
                         "--dataset", a.test, *images, "--output", dirs["adaptive"], "--", *opts["adaptive"]],
                        points_dir=dirs["adaptive"])
        sweeps, gate = [adaptive], []
        if not self.trunk:  # Dynamic ECC at the fitted threshold and the others, with the gate stage 6 fitted
            sweeps.append(Step([*tool("pareto"), "--config-file", self.configs["adapt"], "--sweep",
                                f"thresholds={self.thresholds()}", "--dataset", a.test, *images, "--output",
                                dirs["dynamic"], "--", *opts["dynamic"]], points_dir=dirs["dynamic"]))
            gate = [self.ckpt("offload_gate.pth")]
        merge = Step([*tool("pareto"), "--dataset", a.test, "--results", *(step.points_dir for step in sweeps),
                      "--output", self.stage_dir("pareto")])
        out = self.stage_dir("pareto")
        return self._stage("pareto", steps=[*sweeps, merge],
                           inputs=[self.ckpt("adaptive_ecc_vr.pth"), *gate,
                                   self.ckpt("teacher.pth"), self.ckpt("cloud_plus.pth")] + self._data(a.test),
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
        report = os.path.join(self.dir, "report.md")

        def run(stage):
            write_report(pareto, report, **self.budget(), context=self.report_context(self.write_point_configs()))

        return self._stage("report", inputs=[pareto] + ([] if self.trunk else [self.fit_path()]),
                           outputs=[report] + [c[-1] for c in self.point_configs()], run=run,
                           identity_extra={"budget": self.budget(), "report_format": 3,
                                           "point_opts": self.sweep_opts()})  # what the point configs merge

    # -------------------------------------------------------------------------------------- the report's inputs
    def point_configs(self):
        """``[(row, point, sweep, slug, path)]`` for each point of stage 7's pareto.json that a sweep of this recipe
        evaluated: its row in report.md, the point, the sweep's name, a short name from its label and where its merged
        config goes (``configs/<slug>.yaml``). Empty before stage 7 ran."""
        points = (_read_json(os.path.join(self.stage_dir("pareto"), "pareto.json")) or {}).get("points", [])
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
        itself and its MODEL.WEIGHTS as MODEL.ECCENTRIC.DISTILL.TEACHER_CONFIG and TEACHER_WEIGHTS: the model
        tools/pareto.py's image sweeps code images for.
        Point configs of earlier sweeps are removed. Returns ``{point output dir (absolute): {"config", "codec",
        "output", "command"}}`` (the report's ``point_configs``; ``command``: the arguments that reproduce the row, its
        paths in the output folder as :class:`~eccentric_det.recipe.report.InOutput`)."""
        from ..tasks import get_eccentric_cfg

        opts, found = self.sweep_opts(), {}
        for row, p, sweep, slug, path in self.point_configs():
            cfg = get_eccentric_cfg(p["config_file"], opts[sweep] + list(p.get("opts", [])))
            out = os.path.join(self.dir, "eval", slug)
            cfg.OUTPUT_DIR = out
            m = re.match(r"^(\w+) (\d+)$", str(p.get("label", "")))
            codec = f"{m.group(1)}={m.group(2)}" if m and is_cloud_only(p.get("series", "")) else None
            config, output = InOutput(os.path.relpath(path, self.dir)), InOutput(os.path.relpath(out, self.dir))
            if codec:  # tools/pareto.py's image sweeps code images for the teacher: this file and its weights
                cfg.MODEL.ECCENTRIC.DISTILL.TEACHER_CONFIG = path
                cfg.MODEL.ECCENTRIC.DISTILL.TEACHER_WEIGHTS = cfg.MODEL.WEIGHTS
                command = [*tool("pareto"), "--config-file", config, "--sweep", codec, "--output", output]
                note = ("\n# (the cloud model on coded images: tools/pareto.py codes them for DISTILL.TEACHER_CONFIG, "
                        "this file, with DISTILL.TEACHER_WEIGHTS)")
            else:
                command, note = [*tool("train_net"), "--eval-only", "--config-file", config], ""
            how = [os.path.join(self.dir, a) if isinstance(a, InOutput) else a for a in command]
            text = f"{POINT_CONFIG_MARK} {row}: {p['series']}, {p['label']}\n# reproduce: {shlex.join(how)}{note}\n"
            text += cfg.dump()
            os.makedirs(os.path.dirname(path), exist_ok=True)
            if not os.path.isfile(path) or open(path).read() != text:
                with open(path, "w") as f:
                    f.write(text)
            found[os.path.abspath(str(p["output_dir"]))] = {"config": path, "codec": codec, "output": out,
                                                            "command": command}
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
        seconds, stops = {}, {}
        for key in STAGES[:-1]:
            stamp = _read_json(os.path.join(self.stage_dir(key), "stage.json"))
            if isinstance(stamp, dict):
                seconds[key] = stamp.get("seconds")
            stop = _read_json(os.path.join(self.stage_dir(key), "stop.json"))
            if stop is not None:
                stops[key] = stop
        return {"train": a.train, "train_set": self.train_set, "gate_set": self.gate_set, "test": a.test,
                "num_classes": a.num_classes, "point_configs": point_configs or {},
                "fit": _read_json(self.fit_path()) or {}, "seconds": seconds, "stops": stops,
                "eval_images": self.eval_images, "quick": self.quick, "bootstrap": a.bootstrap,
                "checkpoints": {k: self.ckpt(k + ".pth") for k in (
                    ("teacher", "adaptive_ecc_vr", "cloud_plus") if self.trunk else
                    ("teacher", "edge_kd", "adaptive_ecc_vr", "cloud_plus", "offload_gate"))},
                "teacher_trunk": self.trunk,
                "equal_budget": self.equal_budget_opts()[1],
                "command": self.command()}

    # -------------------------------------------------------------------------------------- run
    def header(self):
        a = self.args
        data = f"train {a.train}"
        if a.holdout:
            held = "learning curves" if self.trunk else "gate"
            data += (f" (stages 1-5 on {self.train_set}: {self.split[0]} images; {held} on {self.gate_set}: "
                     f"{self.split[1]} images, --holdout {a.holdout:g})")
        return (f"ECC recipe{' (--quick)' if self.quick else ''}: {data}, test {a.test}, {a.num_classes} classes "
                f"-> {self.dir}")

    def write_quick_configs(self):
        for which, (name, keys) in QUICK_DERIVED.items():
            path = self.configs[which]
            if path != os.path.join(self.dir, "configs", name):
                continue
            text = (f"# written by tools/train_eccentric.py --quick: {QUICK_BASE} with codec v2 at two rates\n"
                    + config_yaml(keys, os.path.join(CONFIG_DIR, QUICK_BASE)))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            old = open(path).read() if os.path.isfile(path) else None
            if old != text:
                with open(path, "w") as f:
                    f.write(text)

    def timing_command(self, stage, folder):
        """The command of a training stage's step as ``--estimate`` times it: :data:`TIMED_ITERATIONS` iterations
        into ``folder``, no evaluation, the same merged config otherwise (a --quick derived config as its base and
        keys: it is written by the run), but none of the checkpoints that earlier stages have not written yet
        (random weights take the same time)."""
        command = next(s for s in stage.steps if s.train_dir).command
        i = command.index("--config-file")
        base, extra = self.merge_as[STAGE_MODEL[stage.key]]
        opts = once(extra + command[i + 2:])
        here = os.path.abspath(self.dir) + os.sep
        later = [key for key, path in zip(opts[::2], opts[1::2]) if key in HANDOFF_WEIGHTS
                 and os.path.abspath(path).startswith(here) and not os.path.isfile(path)]
        return command[:i] + ["--config-file", base, *once(opts + [x for key in later for x in (key, "")] + [
            "SOLVER.MAX_ITER", str(TIMED_ITERATIONS), "OUTPUT_DIR", folder, "DATASETS.TEST", "()",
            "TEST.EVAL_PERIOD", "0", "SOLVER.PLATEAU.STOP", "False"])]

    def time_stage(self, stage):
        """``(seconds per iteration, seconds besides)`` of a training stage, from a run of its
        :meth:`timing_command` in a temporary folder (:func:`~eccentric_det.recipe.engine.time_training`)."""
        with tempfile.TemporaryDirectory(prefix="train_eccentric_estimate_") as folder:
            return time_training(self.timing_command(stage, folder), folder)

    def estimate(self, stage, status, stamp, timed=None):
        """``(seconds or None, how)``: a rough time for a stage that would (re-)run. A training's remaining
        iterations times its seconds per iteration: ``timed`` (:meth:`time_stage`, with the seconds besides the
        iterations) or else those its earlier metrics.json in this output folder holds; otherwise the time the
        stage's stamp says it took. None when nothing was timed or measured."""
        train = next((s for s in stage.steps if s.train_dir), None)
        if train is not None and train.max_iter:
            left = train.max_iter - ((last_iteration(train.train_dir) + 1) if status == "resume" else 0)
            left = max(0, left)
            per_iteration, besides = timed or (seconds_per_iteration(train.train_dir), None)
            source = (f" + {duration(besides)} to start, warm up and save, timed by --estimate ({TIMED_ITERATIONS} "
                      f"iterations on {self.cfgs[stage.key].MODEL.DEVICE})" if timed else
                      f" measured in {os.path.join(train.train_dir, 'metrics.json')}")
            if per_iteration:
                return (besides or 0.0) + left * per_iteration, (
                    f"{left} iterations x {per_iteration:.2f} s{source}; at most: a plateau or --max-minutes ends it "
                    f"earlier; evaluations and the export not counted")
        took = (stamp or {}).get("seconds")
        if isinstance(took, (int, float)) and (stamp or {}).get("status") == "done":
            return float(took), "what it took when it last ran here"
        if self.args.estimate:
            return None, "not estimated (--estimate times the training stages; not measured in this output folder)"
        return None, "no estimate (not measured in this output folder yet)"

    def dry_run(self, say=print):
        """Print the plan: each stage, whether it would run or be skipped (and a rough time: with ``--estimate``
        each training stage that would run is timed, else where one was measured before), its exact commands and
        outputs."""
        say(self.header())
        say("--dry-run: nothing runs" + (f" (but --estimate's timing runs: {TIMED_ITERATIONS} iterations of each "
                                         f"training stage that would run, in a temporary folder)"
                                         if self.args.estimate else "") + "; each stage's commands, in order:")
        upstream, total, measured, unknown = False, 0.0, 0, []
        for stage in self.stages():
            status, reason, stamp = stamp_status(stage)
            if upstream and status == "skip":
                status, reason = "run", "an earlier stage re-runs"
            upstream = upstream or status != "skip"
            word = {"skip": "would be skipped", "resume": "would resume", "run": "would run"}[status]
            say(f"{stage.label}: {word} ({reason})")
            if status != "skip" and (stage.steps or stage.run):  # a stage of a mode that builds nothing takes none
                try:
                    timed = self.time_stage(stage) if self.args.estimate and stage.key in TRAINING_STAGES else None
                    seconds, how = self.estimate(stage, status, stamp, timed)
                except RecipeError as e:  # its timing run failed: so would the stage
                    seconds, how = None, "not estimated: " + str(e).replace("\n", "\n    #   ")
                if seconds is None:
                    unknown.append(stage.key)
                    say(f"    # time: {how}")
                else:
                    total, measured = total + seconds, measured + 1
                    say(f"    # time: about {duration(seconds)} ({how})")
            for note in stage.notes:
                say(f"    # {note}")
            if stage.run is not None:
                say(f"    (in-process) write {os.path.join(self.dir, 'report.md')} from {stage.inputs[0]}"
                    + (f" ({', '.join(f'{k} {v:g}' for k, v in self.budget().items())})" if self.budget() else ""))
            for step in stage.steps:
                say("    " + shlex.join(step.command))
            if stage.outputs:
                say("    -> " + ", ".join(stage.outputs))
        if measured:
            say(f"time: about {duration(total)} for the stages "
                + ("timed or measured here" if self.args.estimate else "measured here before")
                + (f"; no estimate for {', '.join(unknown)}" + ("" if self.args.estimate else " (not measured yet)")
                   if unknown else ""))
        elif upstream:
            say("time: no estimate: nothing was measured in this output folder yet (a first run measures each "
                "stage's seconds per iteration; a dry run after it, e.g. with one stage's override changed, "
                "estimates from them; --estimate times a few iterations of each training stage now)")
        return 0

    def run(self, say=print):
        say(self.header())
        os.makedirs(self.dir, exist_ok=True)
        with open(os.path.join(self.dir, "recipe.json"), "w") as f:
            json.dump({"argv": self.argv, "identity": self.identity()}, f, indent=1)
        self.write_quick_configs()
        start = time.perf_counter()
        for key in STAGES:
            stage = self.stage(key)  # built in turn: stage 7 needs stage 6's output
            execute_stage(stage, say=say)
            if not self.args.keep_intermediate:
                remove_intermediate(stage, say)
        say(f"done in {duration(time.perf_counter() - start)}: {os.path.join(self.dir, 'report.md')}")
        return 0
