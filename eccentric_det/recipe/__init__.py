"""The whole ECC recipe on a dataset of your own, from COCO-format folders to a trade-off report
(``tools/train_eccentric.py``).

Eight stages, each a subprocess of the package's programs (``python -m eccentric_det.cli.<name>``, what
``tools/<name>.py`` runs; so that ``--dry-run`` prints exactly what runs), each handing its exact checkpoint path to
the next:

1. ``teacher``: the cloud detector on your data (``train_net``), exported to ``checkpoints/teacher.pth``;
2. ``edge_kd``: the edge detector distilled from that teacher, its edge exported to ``checkpoints/edge_kd.pth``;
3. ``codec_pretrain``: the variable-rate codec pre-trained on feature reconstruction (``model_final.pth``);
4. ``adaptive_ecc_vr``: knowledge adaptation from stage 3 (``--joint``: the edge trained with it), exported to
   ``checkpoints/adaptive_ecc_vr.pth``;
5. ``cloud_plus``: the equal-budget cloud, the teacher trained as many more iterations as stages 3 and 4 at stage 4's
   schedule, exported to ``checkpoints/cloud_plus.pth``: the cloud-only rows' model;
6. ``gate``: the Dynamic ECC offload gate fitted on held-out images (``fit_offload_gate``, which writes its fit to
   ``gate/fit.json``);
7. ``pareto``: rates, thresholds, edge-only and cloud-only JPEG/WebP/PNG on the test set (``pareto``), each
   with a bootstrap interval of its AP;
8. ``report``: ``report.md``: the operating points with their intervals and the two ceilings (the equal-budget cloud
   on lossless PNG images, the edge alone), warnings that say when the numbers cannot be trusted and what to do, the
   plot, the BD-rates, the recommended point for a budget (or why none is distinguishable), and each row's merged
   config (``configs/<point>.yaml``) with the short command that reproduces it.

``--teacher-trunk`` takes the teacher's own layers up to the split as the edge trunk (stage 2 runs nothing; stage 4
trains the trunk with the cloud), with the codec twice as wide: no edge detector, so no gate (stage 6 runs nothing)
and no edge-only or Dynamic ECC rows; Adaptive ECC against the equal-budget cloud.

A stage is skipped when its outputs exist and its stamp (``<output>/<stage>/stage.json``: the commands, a hash of
each merged config, and size, mtime and SHA-256 of its inputs and outputs) matches; a stage interrupted with the
same commands and inputs resumes (a training through Detectron2's ``--resume``); any other stage re-runs from an
empty folder. So the same ``--output`` with another override, config or stage option re-runs only the stages whose
stamps that changes, and the stages after them (their inputs change); a run on other data is refused.

The modules: :mod:`.engine` (stamps, skipping and resuming, running steps), :mod:`.plan` (the checks and one builder
per stage: :class:`Recipe`), :mod:`.report` (report.md: the recommendation, the warnings, the table),
:mod:`.options` (overrides and datasets from the command line), :mod:`.cli` (the command line), :mod:`.names` (the
stages' names and the programs the steps run).
"""

from .cli import build_parser, main, run_recipe
from .engine import (RecipeError, Stage, Step, config_hash, duration, execute_stage, file_signature, read_stamp,
                     remove_intermediate, run_step, stage_identity, stamp_status, write_stamp)
from .names import RECIPE, STAGES, TITLES, TOOLS, TRAINING_STAGES, tool
from .options import RESERVED, once, split_opts
from .plan import CONFIG_DIR, DEFAULT_CONFIGS, POINT_CONFIG_MARK, QUICK_CONFIGS, SWEEP, Recipe, shipped_config
from .report import (BOOTSTRAP, CEILING, EDGE_ALONE, indistinct, ranking_noise, recommend, recommendation_rivals,
                     report_warnings, training_section, write_report)

__all__ = ["build_parser", "main", "run_recipe", "RecipeError", "Stage", "Step", "config_hash", "duration",
           "execute_stage", "file_signature", "read_stamp", "remove_intermediate", "run_step", "stage_identity",
           "stamp_status", "write_stamp", "RECIPE", "STAGES", "TITLES", "TOOLS", "TRAINING_STAGES", "tool",
           "once", "split_opts", "CONFIG_DIR", "DEFAULT_CONFIGS", "POINT_CONFIG_MARK", "QUICK_CONFIGS", "RESERVED", "SWEEP", "Recipe",
           "shipped_config", "BOOTSTRAP", "CEILING", "EDGE_ALONE", "indistinct", "ranking_noise", "recommend",
           "recommendation_rivals", "report_warnings", "training_section", "write_report"]
