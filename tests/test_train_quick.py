"""Quick schedules: each architecture's config trains a few iterations and evaluates, through the real CLI."""
import json
import os
import subprocess
import sys

import pytest

from eccentric_det.data.fashion_det import generate_fashion_det

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.fashion_mnist


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("d2data")
    generate_fashion_det(str(root / "fashion_det"), num_train=6, num_val=3, size=128, seed=1)
    return root


def run_train_net(tiny_root, tmp_path, config, *opts):
    env = dict(os.environ, DETECTRON2_DATASETS=str(tiny_root))
    cmd = [sys.executable, os.path.join(ROOT, "tools", "train_net.py"), "--config-file",
           f"configs/quick_schedules/{config}_instant_test.yaml", "OUTPUT_DIR", str(tmp_path), *opts]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(line) for line in open(tmp_path / "metrics.json")]


@pytest.mark.parametrize("config,expected", [
    ("fashion_det_cloud_teacher", {"loss_cls", "loss_rpn_cls"}),
    ("fashion_det_edge_kd", {"edge_loss_cls", "edge_loss_kd_logits", "edge_loss_kd_boxes", "edge_loss_feature_hint"}),
    ("fashion_det_adaptive_ecc", {"loss_cls", "loss_rate", "loss_feature_match", "loss_kd_logits"}),
    ("fashion_det_independent_ecc", {"loss_cls", "edge_loss_cls"}),
])
def test_quick_schedule_trains_and_evaluates(tiny_root, tmp_path, config, expected):
    metrics = run_train_net(tiny_root, tmp_path, config)
    train = [m for m in metrics if "total_loss" in m]
    assert train and expected <= set(train[-1])
    assert all(v == v for v in train[-1].values())  # no NaN
    final = metrics[-1]
    assert "bbox/AP" in final
    if config != "fashion_det_cloud_teacher":
        assert "eccentric/bytes_mean" in final
    if config in ("fashion_det_adaptive_ecc", "fashion_det_independent_ecc"):
        assert final["eccentric/offload_rate"] == 1.0 and final["eccentric/bytes_mean"] > 0
    log = open(tmp_path / "log.txt").read().splitlines()  # each record once (one handler per logger)
    steps = [line for line in log if "d2.utils.events" in line and "iter:" in line]
    assert steps and len(steps) == len(set(steps))


def test_joint_adaptation_trains_the_edge_trunk_with_its_own_detector(tiny_root, tmp_path):
    """DISTILL.EDGE_LOSS_WEIGHT in adapt mode: the edge detector's task and distillation losses join the adaptation
    losses (weighted), and with DISTILL.FREEZE empty the edge trunk trains (its weights move)."""
    import torch

    metrics = run_train_net(tiny_root, tmp_path, "fashion_det_adaptive_ecc", "MODEL.ECCENTRIC.DISTILL.EDGE_LOSS_WEIGHT",
                            "0.5", "MODEL.ECCENTRIC.DISTILL.FREEZE", "[]", "SOLVER.CHECKPOINT_PERIOD", "1")
    train = [m for m in metrics if "total_loss" in m][-1]
    assert {"loss_cls", "loss_feature_match", "edge_loss_cls", "edge_loss_kd_logits", "edge_loss_kd_boxes"} <= set(train)
    assert "edge_loss_feature_hint" not in train and all(v == v for v in train.values())
    first = torch.load(tmp_path / "model_0000000.pth", map_location="cpu", weights_only=False)["model"]
    final = torch.load(tmp_path / "model_final.pth", map_location="cpu", weights_only=False)["model"]
    trunk = [k for k in final if k.startswith("backbone.bottom_up.stem.") and k.endswith("weight")]
    assert trunk and any(not torch.equal(first[k], final[k]) for k in trunk)


def test_training_stops_at_its_plateau_or_time_budget(tiny_root, tmp_path):
    """SOLVER.PLATEAU.STOP ends a run once its held-out curve is flat (here: a min gain no curve reaches, so flat as
    soon as there are MIN_POINTS evaluations), SOLVER.MAX_MINUTES once its time is spent; both save model_final and
    say why in stop.json; a run to MAX_ITER says so too."""
    plateau = ["SOLVER.MAX_ITER", "40", "TEST.EVAL_PERIOD", "2", "SOLVER.PLATEAU.STOP", "True",
               "SOLVER.PLATEAU.MIN_GAIN", "1000", "SOLVER.PLATEAU.MIN_POINTS", "2",
               "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0", "SEED", "0"]  # detections, so AP is a number, not NaN
    run_train_net(tiny_root, tmp_path / "plateau", "fashion_det_cloud_teacher", *plateau)
    stop = json.load(open(tmp_path / "plateau" / "stop.json"))
    assert (stop["reason"], stop["iteration"], stop["max_iter"]) == ("plateau", 4, 40)
    assert [p[0] for p in stop["curve"]] == [2, 4] and stop["plateau"]["flat"]
    assert (tmp_path / "plateau" / "model_final.pth").is_file()
    run_train_net(tiny_root, tmp_path / "budget", "fashion_det_cloud_teacher", "SOLVER.MAX_ITER", "40",
                  "SOLVER.MAX_MINUTES", "0.0001")
    stop = json.load(open(tmp_path / "budget" / "stop.json"))
    assert stop["reason"] == "max_minutes" and stop["iteration"] == 1
    run_train_net(tiny_root, tmp_path / "full", "fashion_det_cloud_teacher")
    assert json.load(open(tmp_path / "full" / "stop.json"))["reason"] == "max_iter"


def test_eval_only_reports_costs(tiny_root, tmp_path):
    run_train_net(tiny_root, tmp_path, "fashion_det_dynamic_ecc", "MODEL.ECCENTRIC.DISTILL.MODE", "task")
    out = tmp_path / "eval"
    env = dict(os.environ, DETECTRON2_DATASETS=str(tiny_root))
    proc = subprocess.run([sys.executable, "tools/train_net.py", "--eval-only", "--config-file",
                           "configs/quick_schedules/fashion_det_dynamic_ecc_instant_test.yaml",
                           "MODEL.WEIGHTS", str(tmp_path / "model_final.pth"), "OUTPUT_DIR", str(out),
                           "MODEL.ECCENTRIC.OFFLOAD.THRESHOLD", "2.0"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.load(open(out / "eccentric_metrics.json"))
    # threshold above any probability: every image stays on the edge, zero bytes
    assert report["metrics"]["offload_rate"] == 0.0 and report["metrics"]["bytes_mean"] == 0.0


def test_missing_dataset_says_what_to_run(tmp_path):
    env = dict(os.environ, DETECTRON2_DATASETS=str(tmp_path))
    proc = subprocess.run([sys.executable, "tools/train_net.py", "--config-file",
                           "configs/quick_schedules/fashion_det_cloud_teacher_instant_test.yaml"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "prepare_fashion_det.py" in proc.stderr


VR = ["MODEL.ECCENTRIC.CODEC.NAME", "mean_scale", "MODEL.ECCENTRIC.CODEC.RATE_WEIGHTS", "[0.1, 1.0]"]


def test_variable_rate_recipe_pretrains_adapts_and_evaluates_at_each_rate(tiny_root, tmp_path):
    """Codec v2's two stages through the CLI: feature-reconstruction pre-training (no cloud tail, no task loss),
    then knowledge adaptation from its checkpoint; one checkpoint evaluated at two rates sends different bytes."""
    stage1 = run_train_net(tiny_root, tmp_path / "stage1", "fashion_det_adaptive_ecc", *VR,
                           "MODEL.ECCENTRIC.DISTILL.MODE", "reconstruct")
    losses = set(next(m for m in reversed(stage1) if "total_loss" in m))
    assert {"loss_feature_match", "loss_rate"} <= losses and not losses & {"loss_cls", "loss_kd_logits"}, losses
    stage2 = run_train_net(tiny_root, tmp_path / "stage2", "fashion_det_adaptive_ecc", *VR,
                           "MODEL.WEIGHTS", str(tmp_path / "stage1" / "model_final.pth"))
    assert {"loss_cls", "loss_rate", "loss_kd_logits"} <= set(next(m for m in reversed(stage2) if "total_loss" in m))
    env = dict(os.environ, DETECTRON2_DATASETS=str(tiny_root))
    sent = {}
    for rate in ("0", "1"):
        out = tmp_path / f"eval_{rate}"
        proc = subprocess.run([sys.executable, "tools/train_net.py", "--eval-only", "--config-file",
                               "configs/quick_schedules/fashion_det_adaptive_ecc_instant_test.yaml", *VR,
                               "MODEL.ECCENTRIC.CODEC.RATE", rate, "MODEL.WEIGHTS",
                               str(tmp_path / "stage2" / "model_final.pth"), "OUTPUT_DIR", str(out)],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        sent[rate] = json.load(open(out / "eccentric_metrics.json"))["metrics"]["bytes_mean"]
    assert sent["0"] > sent["1"] > 0, sent
