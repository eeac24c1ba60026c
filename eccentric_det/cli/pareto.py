"""Sweep operating points and baselines on the same images; write pareto.json and pareto.png (``tools/pareto.py``,
``python -m eccentric_det.cli.pareto``).

    python tools/pareto.py --config-file configs/FashionDet/dynamic_ecc_vr.yaml \\
        --sweep thresholds=0.1,0.3,0.5,0.7,0.9 edge_only jpeg=10,30,50,70,90 webp=10,50,90 \\
        --independent-config configs/FashionDet/independent_ecc.yaml --sweep independent=30,50,70,90 \\
        --output output/pareto
    python tools/pareto.py --dataset fashion_det_val --results output/a output/b --output output/pareto

A sweep writes --output/plan.json (its points and their folders) before it evaluates them; each point's folder
gets its eccentric_metrics.json once evaluated (what the recipe's progress bar counts).
"""
import argparse
import sys


from .. import data  # noqa: F401  (registers the datasets)
from .. import modeling  # noqa: F401  (registers the backbones, ROI heads, EccentricRCNN)
from ..reports.pareto import SWEEP_KEYS, format_summary, parse_sweep, run_sweep
from .logs import setup_logging


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", default="", help="the split model's config (its own points: thresholds, "
                                                     "weights, edge_only)")
    p.add_argument("--sweep", nargs="+", action="extend", default=[], metavar="KEY=V1,V2",
                   help="; ".join(f"{k}: {v}" for k, v in SWEEP_KEYS.items()))
    p.add_argument("--results", nargs="+", action="extend", default=[], metavar="[TAG=]DIR",
                   help="earlier --eval-only OUTPUT_DIRs (or their eccentric_metrics.json: each joins the series "
                        "of what it evaluated, e.g. Adaptive ECC, labelled by its folder) or earlier sweep --output "
                        "folders (their points keep their series) to add; TAG=DIR tags DIR's series ('TAG: Adaptive "
                        "ECC'), so that two sweeps of one kind stay two curves")
    p.add_argument("--dataset", default="", help="registered dataset (default: the config's first DATASETS.TEST)")
    p.add_argument("--max-images", type=int, default=None, help="evaluate on the first N images only")
    p.add_argument("--output", default="output/pareto", help="folder for pareto.json, pareto.png and each point")
    p.add_argument("--cloud-config", default="", help="cloud-only model of the image baselines "
                                                      "(default: the config's DISTILL.TEACHER_CONFIG)")
    p.add_argument("--cloud-weights", default="", help="its weights (default: DISTILL.TEACHER_WEIGHTS)")
    p.add_argument("--independent-config", default="", help="Independent ECC config of the 'independent' sweep")
    p.add_argument("--accuracy", default="AP", help="accuracy axis: AP, AP50, AP75, APs/m/l; top1 for --results of "
                                                    "classification runs (tools/train_cls.py --eval-only)")
    p.add_argument("--bd-method", choices=("pchip", "cubic"), default="pchip", help="BD-rate curve fit")
    p.add_argument("--bootstrap", type=int, default=0, metavar="N",
                   help="add each point's 95%% interval of AP (or top1) over the images, from N resamples")
    p.add_argument("--paired-against", default="", metavar="DIR",
                   help="an evaluation folder (e.g. the equal-budget cloud's --eval-only OUTPUT_DIR): each point's AP "
                        "(or top1) minus its, paired over the same images, with a 95%% interval (--bootstrap N "
                        "resamples, default 1000)")
    p.add_argument("opts", nargs=argparse.REMAINDER, default=[], help="config overrides for every point: KEY VALUE "
                                                                   "pairs, last")
    return p.parse_args(argv)


def main(argv=None):
    """Run the sweep of ``argv`` (default ``sys.argv[1:]``) and print its table. Returns the exit status (2: bad
    input, said without a traceback)."""
    args = parse_args(argv)
    setup_logging()
    try:
        sweep = parse_sweep(args.sweep)
        result = run_sweep(args.config_file, sweep, args.dataset, args.max_images, args.output,
                           args.opts, args.results, args.cloud_config, args.cloud_weights, args.independent_config,
                           args.bd_method, args.accuracy, args.bootstrap, args.paired_against)
    except (ValueError, KeyError, FileNotFoundError, ImportError) as e:
        print(f"pareto.py: error: {e.args[0] if e.args else e}", file=sys.stderr)
        return 2
    print(format_summary(result))
    print(f"wrote {args.output}/pareto.json and {args.output}/pareto.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
