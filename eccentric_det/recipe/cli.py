"""The recipe's command line (``tools/train_eccentric.py``, ``python -m eccentric_det.recipe``): the parser, and
:func:`run_recipe`, which checks the command line before any stage runs, then prints the plan (``--dry-run``) or
runs the stages. Importing it loads no Detectron2: ``--help`` and refused arguments answer at once."""
import argparse
import sys

from .. import cli  # noqa: F401  (quiets torch's torch.jit.script deprecation before run_recipe imports Detectron2)
from .engine import TIMED_ITERATIONS, RecipeError
from .names import STAGES
from .plan import DEFAULT_CONFIGS, QUICK_EVAL_IMAGES, Recipe
from .report import BOOTSTRAP


def main(argv=None):
    """``tools/train_eccentric.py``: parse ``argv`` (default ``sys.argv[1:]``) and run the recipe. Returns the exit
    status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    return run_recipe(build_parser().parse_args(argv), argv)


def run_recipe(args, argv=None, say=print):
    """Check the command line, then print the plan (``args.dry_run``) or run the stages. Returns the exit status."""
    try:
        if args.budget_bytes is not None and args.budget_offload is not None:
            raise RecipeError("give one budget: --budget-bytes or --budget-offload")
        if args.estimate and not args.dry_run:
            raise RecipeError("--estimate times the stages of a dry run: add --dry-run")
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
                   help=f"cloud detector and teacher (default configs/{DEFAULT_CONFIGS['cloud']}, shipped)")
    p.add_argument("--edge-config", default="",
                   help=f"edge detector, distilled (default configs/{DEFAULT_CONFIGS['edge']}, shipped)")
    p.add_argument("--pretrain-config", default="",
                   help=f"codec pre-training (default configs/{DEFAULT_CONFIGS['pretrain']}, shipped)")
    p.add_argument("--adapt-config", default="",
                   help=f"Adaptive ECC, variable rate (default configs/{DEFAULT_CONFIGS['adapt']}, shipped)")
    p.add_argument("--joint", action="store_true",
                   help="joint adaptation: stage 4 trains the edge trunk and detector with the cloud's losses and the "
                        "edge detector's own instead of freezing them (on FashionDet +1.5 AP at 7%% fewer bytes, and "
                        "a better edge alone: docs/own_data.md)")
    p.add_argument("--teacher-trunk", action="store_true",
                   help="the teacher's own early layers as the edge trunk, trained with the cloud in stage 4, and the "
                        "codec twice as wide: no edge detector (no edge-only row, gate or Dynamic ECC), but on "
                        "FashionDet Adaptive ECC within 1 AP of the equal-budget cloud (docs/own_data.md)")
    p.add_argument("--holdout", type=float, default=0.1, help="fraction of the training images held out of stages "
                                                              "1-5 to fit the gate on (0: fit on training images)")
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
    p.add_argument("--estimate", action="store_true",
                   help=f"with --dry-run: time {TIMED_ITERATIONS} iterations of each training stage that would run "
                        f"(its merged config, data loader and device; no checkpoint of an earlier stage yet) and "
                        f"estimate its time as start-up + SOLVER.MAX_ITER x seconds per iteration; the gate and the "
                        f"sweep are not estimated. About a minute with --quick on a CPU; longer with the full configs")
    p.add_argument("opts", nargs=argparse.REMAINDER, default=[], help="config overrides: KEY VALUE pairs, last")
    return p
