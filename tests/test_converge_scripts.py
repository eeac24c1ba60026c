"""The training recipes in benchmarks/ (shell): their overrides reach every stage and OUT keeps another chain apart
from the committed checkpoints. Run with a stand-in for Python that records each command and writes what a finished
training leaves (OUTPUT_DIR/model_final.pth and config.yaml)."""
import ast
import os
import stat
import subprocess
import sys

from eccentric_det.tasks import get_eccentric_cfg
from eccentric_det.training.classification import build_cls_teacher

ROOT = os.path.join(os.path.dirname(__file__), "..")
SCRIPT = os.path.join(ROOT, "benchmarks", "converge_fashion_mnist.sh")
FAKE_PY = """#!{python}
import os, sys
args = sys.argv[1:]
with open({log!r}, "a") as f:
    f.write(repr(args) + "\\n")
out = [args[i + 1] for i, a in enumerate(args) if a == "OUTPUT_DIR"][-1]
os.makedirs(out, exist_ok=True)
open(os.path.join(out, "config.yaml"), "w").write("# merged config\\n")
if "--eval-only" not in args:
    open(os.path.join(out, "model_final.pth"), "wb").write(b"weights")
"""


def _run(tmp_path, *args, out=None):
    log = tmp_path / "calls.log"
    fake = tmp_path / "python"
    fake.write_text(FAKE_PY.format(python=sys.executable, log=str(log)))
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    env = {**os.environ, "PY": str(fake)}
    env.pop("OUT", None)
    if out is not None:
        env["OUT"] = str(out)
    r = subprocess.run(["bash", SCRIPT, *args], env=env, capture_output=True, text=True)
    calls = [ast.literal_eval(line) for line in log.read_text().splitlines()] if log.exists() else []
    return r, calls


def _value(call, key):
    """The last value of an override KEY in one recorded command (the one yacs keeps)."""
    return [call[i + 1] for i, a in enumerate(call) if a == key][-1]


def test_out_chains_each_stage_on_the_last_and_overrides_reach_every_stage(tmp_path):
    out = tmp_path / "chain56"
    committed = os.path.join(ROOT, "checkpoints", "classification", "fashion_mnist_cloud_teacher.pth")
    before = os.path.getmtime(committed)
    for stage in ("teacher", "edge", "joint"):
        r, calls = _run(tmp_path, stage, "MODEL.CLS.IMAGE_SIZE", "56", out=out)
        assert r.returncode == 0, r.stderr
    teacher, edge, joint = calls
    for call in calls:
        assert _value(call, "MODEL.CLS.IMAGE_SIZE") == "56" and call[-2:] == ["MODEL.CLS.IMAGE_SIZE", "56"]
        assert _value(call, "OUTPUT_DIR").startswith(str(out))
    assert "configs/Classification/fashion_mnist_cloud_teacher.yaml" in teacher
    t_weights = str(out / "fashion_mnist_cloud_teacher.pth")
    t_config = str(out / "fashion_mnist_cloud_teacher" / "config.yaml")
    for call in (edge, joint):  # distilled from this chain's teacher, built as it was trained
        assert _value(call, "MODEL.ECCENTRIC.DISTILL.TEACHER_WEIGHTS") == t_weights
        assert _value(call, "MODEL.ECCENTRIC.DISTILL.TEACHER_CONFIG") == t_config
    assert _value(joint, "MODEL.WEIGHTS") == t_weights
    assert _value(joint, "MODEL.ECCENTRIC.EDGE.WEIGHTS") == str(out / "fashion_mnist_edge_kd.pth")
    assert sorted(p.name for p in out.glob("*.pth")) == [
        "fashion_mnist_adaptive_ecc_joint.pth", "fashion_mnist_cloud_teacher.pth", "fashion_mnist_edge_kd.pth"]
    assert os.path.getmtime(committed) == before  # the committed chain untouched


def test_a_finished_stage_is_kept_and_evaluation_gets_the_overrides(tmp_path):
    out = tmp_path / "chain"
    _run(tmp_path, "teacher", out=out)
    r, calls = _run(tmp_path, "teacher", "SOLVER.MAX_ITER", "5", out=out)
    assert r.returncode == 0 and len(calls) == 1  # the second run found model_final.pth and trained nothing
    (out / "fashion_mnist_adaptive_ecc_joint.pth").write_bytes(b"w")
    r, calls = _run(tmp_path, "dynamic", "MODEL.CLS.IMAGE_SIZE", "56", out=out)
    evals = calls[1:]
    assert r.returncode == 0 and len(evals) == 4 and all("--eval-only" in c for c in evals)
    assert all(_value(c, "MODEL.CLS.IMAGE_SIZE") == "56" for c in evals)
    assert _value(evals[0], "MODEL.WEIGHTS") == str(out / "fashion_mnist_adaptive_ecc_joint.pth")


def test_the_56_chain_starts_its_split_and_its_baseline_from_its_own_teacher(tmp_path):
    """teacher_56 ... dynamic_stem_56: the split and the equal-budget cloud start from this chain's 56x56 teacher,
    the split distils from it as it was trained, and its evaluations stay out of the 28x28 stem front's eval/stem_*."""
    out = tmp_path / "chain"
    for stage in ("teacher_56", "cloud_plus_56", "joint_stem_56", "joint_stem_56_nofm", "joint_stem_56_rw07",
                  "dynamic_stem_56", "dynamic_stem_56_rw07"):
        r, calls = _run(tmp_path, stage, out=out)
        assert r.returncode == 0, r.stderr
    teacher, plus, joint, nofm, rw07, *evals = calls
    assert "configs/Classification/fashion_mnist_adaptive_ecc_joint_stem_56_nofm.yaml" in nofm
    assert "configs/Classification/fashion_mnist_adaptive_ecc_joint_stem_56_nofm_rw07.yaml" in rw07
    start = ("MODEL.WEIGHTS", "MODEL.ECCENTRIC.EDGE.WEIGHTS", "MODEL.ECCENTRIC.DISTILL.TEACHER_CONFIG")
    assert [_value(nofm, k) for k in start] == [_value(rw07, k) for k in start] == [
        _value(joint, k) for k in start]  # the same start, the same teacher
    rw07_evals = evals[4:]
    evals = evals[:4]
    assert [os.path.basename(_value(c, "OUTPUT_DIR")) for c in rw07_evals] == [
        "stem56rw07_dynamic", "stem56rw07_always", "stem56rw07_never"]
    assert "configs/Classification/fashion_mnist_dynamic_ecc_joint_stem_56_nofm_rw07.yaml" in rw07_evals[0]
    assert all(_value(c, "MODEL.WEIGHTS") == str(out / "fashion_mnist_adaptive_ecc_joint_stem_56_nofm_rw07.pth")
               for c in rw07_evals)
    assert "configs/Classification/fashion_mnist_cloud_teacher_56.yaml" in teacher
    t_weights = str(out / "fashion_mnist_cloud_teacher_56.pth")
    assert _value(plus, "MODEL.WEIGHTS") == t_weights and _value(joint, "MODEL.WEIGHTS") == t_weights
    assert "configs/Classification/fashion_mnist_cloud_teacher_56_plus.yaml" in plus
    assert _value(joint, "MODEL.ECCENTRIC.DISTILL.TEACHER_WEIGHTS") == t_weights
    assert _value(joint, "MODEL.ECCENTRIC.DISTILL.TEACHER_CONFIG") == str(
        out / "fashion_mnist_cloud_teacher_56" / "config.yaml")
    assert _value(joint, "MODEL.ECCENTRIC.EDGE.WEIGHTS") == str(out / "fashion_mnist_edge_kd.pth")
    assert [os.path.basename(_value(c, "OUTPUT_DIR")) for c in evals] == [
        "stem56_dynamic", "stem56_always", "stem56_never", "edge_kd"]
    assert all(_value(c, "MODEL.WEIGHTS") == str(out / "fashion_mnist_adaptive_ecc_joint_stem_56.pth")
               for c in evals[:3])


def test_an_unknown_stage_names_the_stages(tmp_path):
    r, calls = _run(tmp_path, "teachr", out=tmp_path / "x")
    assert r.returncode == 2 and "unknown stage teachr" in r.stderr and "joint_stem" in r.stderr and not calls


def test_a_teacher_loads_from_the_config_its_training_wrote(tmp_path):
    """OUT's chain builds its distillation teacher from OUTPUT_DIR/config.yaml (as tools/train_cls.py dumps it),
    overrides included: a 56x56 teacher is not rebuilt at the shipped config's 28x28."""
    cfg = get_eccentric_cfg("Classification/fashion_mnist_cloud_teacher.yaml", ["MODEL.CLS.IMAGE_SIZE", 56])
    path = tmp_path / "config.yaml"
    path.write_text(cfg.dump())
    teacher = build_cls_teacher(str(path), "")
    assert teacher.normalizer.image_size == (56, 56)
    shipped = build_cls_teacher("Classification/fashion_mnist_cloud_teacher.yaml", "")
    assert shipped.normalizer.image_size == (28, 28)
    split = get_eccentric_cfg("Classification/fashion_mnist_adaptive_ecc_joint_stem_56.yaml")
    teacher_56 = build_cls_teacher(split.MODEL.ECCENTRIC.DISTILL.TEACHER_CONFIG, "")  # the shipped 56x56 split's
    assert teacher_56.normalizer.image_size == (56, 56)


def test_the_detection_recipes_sc2bench_stage_trains_at_the_splits_budget_with_a_held_out_curve(tmp_path):
    log = tmp_path / "calls.log"
    fake = tmp_path / "python"
    fake.write_text(f"#!{sys.executable}\nimport sys\nopen({str(log)!r}, 'a').write(repr(sys.argv[1:]) + '\\n')\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    out = tmp_path / "t8k"
    env = {**os.environ, "PY": str(fake), "OUT": str(out), "LAMBDA": "0.05"}
    script = os.path.join(ROOT, "benchmarks", "converge_fashion_det.sh")
    r = subprocess.run(["bash", script, "sc2bench", "SOLVER.IMS_PER_BATCH", "4"], env=env, capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    (call,) = [ast.literal_eval(line) for line in log.read_text().splitlines()]  # no export step after it
    assert call[0] == "tools/train_sc2bench.py" and call[call.index("--iters") + 1:call.index("--iters") + 3] == [
        "500", "3000"]  # codec pre-training's and adaptation's iterations
    assert _value(call, "--rate-weight") == "0.05" and _value(call, "--eval-period") == "500"
    assert _value(call, "--curve-dir") == str(out / "sc2bench_0.05")
    assert _value(call, "--output") == str(out / "sc2bench_0.05.pth")
    assert _value(call, "MODEL.WEIGHTS") == str(out / "teacher.pth")
    assert _value(call, "DATASETS.TEST") == "('fashion_det_train_holdout',)"
    assert _value(call, "DATASETS.TRAIN") == "('fashion_det_train_fit',)"
    assert call[-2:] == ["SOLVER.IMS_PER_BATCH", "4"]
