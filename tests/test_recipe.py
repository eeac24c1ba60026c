"""tools/train_eccentric.py: the whole recipe on a dataset of your own. The plan and its checkpoint hand-offs
(--dry-run), the errors raised before any stage runs, stage skipping and resuming (stamps), the budget
recommendation and report, and one end-to-end --quick run on a generated COCO-format dataset."""
import ast
import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from eccentric_det import recipe
from eccentric_det.recipe import RecipeError, Stage, Step, execute_stage, recommend, stamp_status, write_report

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CATEGORIES = [{"id": 1, "name": "cup"}, {"id": 3, "name": "bottle"}]


def _load_tool():
    spec = importlib.util.spec_from_file_location("train_eccentric_tool", os.path.join(ROOT, "tools",
                                                                                       "train_eccentric.py"))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


TOOL = _load_tool()


def write_coco(root, num_images=40, name="train"):
    """A COCO-format dataset of ``num_images`` 32x32 JPEGs (``NNNN.jpg``: 2 of 40 fall in a 0.1 holdout)."""
    images = root / name
    images.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(num_images):
        cv2.imwrite(str(images / f"{i:04d}.jpg"), rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    data = {"images": [{"id": i + 1, "file_name": f"{i:04d}.jpg", "height": 32, "width": 32}
                       for i in range(num_images)],
            "annotations": [{"id": i + 1, "image_id": i + 1, "bbox": [4, 4, 16, 12], "area": 192, "iscrowd": 0,
                             "category_id": CATEGORIES[i % 2]["id"]} for i in range(num_images)],
            "categories": CATEGORIES}
    (root / f"{name}.json").write_text(json.dumps(data))
    return str(root / f"{name}.json"), str(images)


@pytest.fixture
def own(tmp_path):
    """--register options of a train and a val set under fresh names (the catalog is global to the process)."""
    tag = tmp_path.name.replace("-", "_")[-24:]
    train, val = f"r_{tag}_train", f"r_{tag}_val"
    tj, ti = write_coco(tmp_path / "data", 40, "train")
    vj, vi = write_coco(tmp_path / "data", 6, "val")
    return train, val, ["--register", train, "coco", tj, ti, "--register", val, "coco", vj, vi]


def _argv(own, out, *extra):
    train, val, register = own
    return [*register, "--train", train, "--test", val, "--num-classes", "2", "--output", str(out), *extra]


def dry_run(capsys, argv):
    rc = TOOL.main(argv)
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    stages, current = {}, None
    for line in captured.out.splitlines():
        if line.startswith("[") and "/8] " in line:
            current = int(line[1:line.index("/")])
            stages[current] = {"line": line, "commands": []}
        elif line.startswith("    ") and not line.strip().startswith(("#", "->", "(in-process)")) and current:
            stages[current]["commands"].append(shlex.split(line))
    return stages, captured.out


def value(command, key):
    """The value a command gives ``key`` (its last occurrence: the one yacs keeps)."""
    i = len(command) - 1 - command[::-1].index(key)
    return command[i + 1]


def tool_of(command):
    """The tools/ file of a step's program: ``python -m eccentric_det.cli.train_net ...`` -> "train_net.py"."""
    return command[2].rpartition(".")[2] + ".py" if command[1] == "-m" else os.path.basename(command[1])


def args_of(command):
    """A step's arguments after its program (``python -m MODULE`` or ``python FILE``)."""
    return command[3:] if command[1] == "-m" else command[2:]


# ------------------------------------------------------------------------------------------------ the plan
def test_dry_run_prints_every_stage_with_its_checkpoint_hand_offs(own, tmp_path, capsys):
    out = tmp_path / "run"
    train, val, _ = own
    stages, text = dry_run(capsys, _argv(own, out, "--teacher-weights", "coco_init.pth", "--dry-run",
                                         "MODEL.DEVICE", "cpu", "teacher:SOLVER.MAX_ITER", "7"))
    assert sorted(stages) == list(range(1, 9)) and all("would run" in s["line"] for s in stages.values())
    assert "[3/8] codec pre-training: would run" in text
    assert not out.exists()  # nothing written
    ck = lambda name: str(out / "checkpoints" / name)  # noqa: E731
    teacher, edge, pre, adapt, plus, gate, pareto = (stages[i]["commands"] for i in range(1, 8))

    # 1. the teacher on the user's data, from --teacher-weights; its export is what the others use
    assert [tool_of(c) for c in teacher] == ["train_net.py", "export_checkpoint.py"]
    t = teacher[0]
    assert value(t, "--config-file") == "configs/FashionDet/cloud_teacher.yaml"
    assert ast.literal_eval(value(t, "DATASETS.TRAIN")) == (f"{train}_fit",)
    assert value(t, "MODEL.ROI_HEADS.NUM_CLASSES") == "2"
    assert value(t, "MODEL.WEIGHTS") == "coco_init.pth" and value(t, "SOLVER.MAX_ITER") == "7"
    assert value(t, "MODEL.DEVICE") == "cpu" and value(t, "OUTPUT_DIR") == str(out / "teacher")
    register = ast.literal_eval(value(t, "DATASETS.REGISTER"))
    assert [e[0] for e in register] == [train, val, f"{train}_fit", f"{train}_holdout"]
    assert register[2:] == [[f"{train}_fit", "subset", train, "train", 0.1],
                            [f"{train}_holdout", "subset", train, "holdout", 0.1]]
    assert args_of(teacher[1]) == [str(out / "teacher" / "model_final.pth"), ck("teacher.pth")]
    # its learning curve on the held-out split (the last DATASETS.TEST wins), and its stop at the plateau
    assert ast.literal_eval(value(t, "DATASETS.TEST")) == (f"{train}_holdout",)
    assert value(t, "TEST.EVAL_PERIOD") == "1" and value(t, "SOLVER.PLATEAU.STOP") == "True"
    assert "SOLVER.MAX_MINUTES" not in t

    # 2. edge KD from that teacher; only the edge is exported
    e = edge[0]
    assert value(e, "--config-file") == "configs/FashionDet/edge_kd.yaml"
    assert value(e, "MODEL.ECCENTRIC.DISTILL.TEACHER_WEIGHTS") == ck("teacher.pth")
    assert value(e, "MODEL.ECCENTRIC.DISTILL.TEACHER_CONFIG") == "configs/FashionDet/cloud_teacher.yaml"
    assert "SOLVER.MAX_ITER" not in e  # teacher: overrides reach that stage only
    assert args_of(edge[1]) == [str(out / "edge_kd" / "model_final.pth"), ck("edge_kd.pth"), "--keep",
                                "backbone.bottom_up.stem", "backbone.bottom_up.res2", "edge_detector"]

    # 3. codec pre-training from the teacher and the exported edge
    (p,) = pre
    assert value(p, "--config-file") == "configs/FashionDet/codec_pretrain.yaml"
    assert value(p, "MODEL.WEIGHTS") == ck("teacher.pth") and value(p, "MODEL.ECCENTRIC.EDGE.WEIGHTS") == ck(
        "edge_kd.pth")
    assert value(p, "MODEL.ECCENTRIC.DISTILL.TEACHER_WEIGHTS") == ck("teacher.pth")

    # 4. adaptation from stage 3's own output, the exported edge (never a raw training output) as EDGE.WEIGHTS
    a = adapt[0]
    assert value(a, "--config-file") == "configs/FashionDet/adaptive_ecc_vr.yaml"
    assert value(a, "MODEL.WEIGHTS") == os.path.join(value(p, "OUTPUT_DIR"), "model_final.pth")
    assert value(a, "MODEL.ECCENTRIC.EDGE.WEIGHTS") == ck("edge_kd.pth")
    assert args_of(adapt[1]) == [os.path.join(value(a, "OUTPUT_DIR"), "model_final.pth"), ck("adaptive_ecc_vr.pth")]

    # 5. the equal-budget cloud: the teacher + the iterations of stages 3 and 4 (300 + 900), at stage 4's schedule
    c = plus[0]
    assert value(c, "--config-file") == "configs/FashionDet/cloud_teacher.yaml" and value(c, "MODEL.WEIGHTS") == ck(
        "teacher.pth")
    assert value(c, "SOLVER.MAX_ITER") == "1200"  # codec_pretrain.yaml's 300 + adaptive_ecc_vr.yaml's 900
    assert (value(c, "SOLVER.BASE_LR"), value(c, "SOLVER.IMS_PER_BATCH"), value(c, "SOLVER.WARMUP_ITERS")) == (
        "0.01", "6", "50")
    assert value(c, "TEST.EVAL_PERIOD") == "150"  # its curve: eight points over its own run
    assert args_of(plus[1]) == [os.path.join(value(c, "OUTPUT_DIR"), "model_final.pth"), ck("cloud_plus.pth")]

    # 6. the gate fitted on the held-out images, never seen in training
    (g,) = gate
    assert tool_of(g) == "fit_offload_gate.py" and value(g, "--weights") == ck("adaptive_ecc_vr.pth")
    assert value(g, "--dataset") == f"{train}_holdout" and value(g, "--output") == ck("offload_gate.pth")
    assert value(g, "MODEL.ECCENTRIC.DISTILL.TEACHER_CONFIG") == "configs/FashionDet/cloud_teacher.yaml"

    # 7. the sweeps: rates + edge-only on the adapted model, image codecs for the equal-budget cloud; thresholds with
    # the fitted gate
    sweep_a, sweep_b, merge = pareto
    assert {"rates=all", "edge_only"} <= set(sweep_a) and any(t.startswith("jpeg=") for t in sweep_a)
    assert any(t.startswith("webp=") for t in sweep_a) and value(sweep_a, "--dataset") == val
    assert value(sweep_a, "MODEL.WEIGHTS") == ck("adaptive_ecc_vr.pth")
    assert value(sweep_a, "MODEL.ECCENTRIC.EDGE.WEIGHTS") == "" and value(sweep_a, "--cloud-weights") == ck(
        "cloud_plus.pth")
    assert value(sweep_b, "--sweep").startswith("thresholds=<threshold of stage 6>,")
    assert value(sweep_b, "MODEL.WEIGHTS") == ck("adaptive_ecc_vr.pth")
    assert value(sweep_b, "MODEL.ECCENTRIC.EDGE.WEIGHTS") == ck("offload_gate.pth")
    assert merge[merge.index("--results") + 1:merge.index("--output")] == [value(sweep_a, "--output"),
                                                                           value(sweep_b, "--output")]
    # the ceilings (the equal-budget cloud on lossless PNG, the edge alone) and each point's bootstrap interval of AP
    assert "png=9" in sweep_a and "edge_only" in sweep_a
    assert value(sweep_a, "--bootstrap") == value(sweep_b, "--bootstrap") == "200"
    assert "--bootstrap" not in merge  # the merge keeps the sweeps' intervals
    assert value(merge, "--output") == str(out / "pareto")
    assert f"write {out / 'report.md'}" in text


def test_joint_trains_the_edge_in_stage_4_only_and_the_sweeps_take_that_edge(own, tmp_path, capsys):
    """--joint: stage 4 unfreezes the edge and adds its detector's loss; a user's stage-4 override still wins; the
    gate and the sweeps evaluate the jointly trained edge inside the adapted checkpoint (EDGE.WEIGHTS not the KD
    edge's)."""
    stages, _ = dry_run(capsys, _argv(own, tmp_path / "joint", "--joint", "--dry-run",
                                      "adaptive_ecc_vr:MODEL.ECCENTRIC.DISTILL.EDGE_LOSS_WEIGHT", "0.25"))
    a = stages[4]["commands"][0]
    assert value(a, "MODEL.ECCENTRIC.DISTILL.FREEZE") == "[]"
    assert value(a, "MODEL.ECCENTRIC.DISTILL.EDGE_LOSS_WEIGHT") == "0.25"
    assert a.count("MODEL.ECCENTRIC.DISTILL.EDGE_LOSS_WEIGHT") == 1
    for key in (1, 2, 3):
        assert "MODEL.ECCENTRIC.DISTILL.EDGE_LOSS_WEIGHT" not in stages[key]["commands"][0]
    sweep_a, sweep_b, _ = stages[7]["commands"]
    assert value(sweep_a, "MODEL.ECCENTRIC.EDGE.WEIGHTS") == ""
    assert value(sweep_b, "MODEL.ECCENTRIC.EDGE.WEIGHTS").endswith("offload_gate.pth")  # the gate only
    frozen, _ = dry_run(capsys, _argv(own, tmp_path / "frozen", "--dry-run"))
    assert "MODEL.ECCENTRIC.DISTILL.EDGE_LOSS_WEIGHT" not in frozen[4]["commands"][0]


def test_teacher_trunk_builds_no_edge_detector_and_trains_the_teacher_s_layers_in_stage_4(own, tmp_path, capsys):
    """--teacher-trunk: stages 2 and 6 run nothing (the edge is the teacher's own layers, loaded by MODEL.WEIGHTS; no
    detector, so no gate); stages 3, 4 and 7 build the split with the teacher's ResNet as the edge and the wide codec,
    stage 4 with nothing frozen; the sweep has no edge-only point and there is no Dynamic ECC sweep. A user's override
    of a key the mode sets wins."""
    out = tmp_path / "trunk"
    stages, text = dry_run(capsys, _argv(own, out, "--teacher-trunk", "--dry-run",
                                         "MODEL.ECCENTRIC.CODEC.HIDDEN_CHANNELS", "96"))
    assert stages[2]["commands"] == [] and stages[6]["commands"] == []
    assert "[2/8] edge trunk: the teacher's: would run" in text and "no gate and no Dynamic ECC" in text
    pre, adapt = stages[3]["commands"][0], stages[4]["commands"][0]
    for c in (pre, adapt):
        assert value(c, "MODEL.ECCENTRIC.EDGE.RESNETS.DEPTH") == "0"  # the cloud's ResNet: the teacher's layers
        assert value(c, "MODEL.ECCENTRIC.EDGE.DETECTOR") == "False"
        assert value(c, "MODEL.ECCENTRIC.EDGE.WEIGHTS") == ""  # MODEL.WEIGHTS fills the trunk
        assert value(c, "MODEL.ECCENTRIC.CODEC.HIDDEN_CHANNELS") == "96"  # the user's, not the mode's 128
        assert c.count("MODEL.ECCENTRIC.CODEC.HIDDEN_CHANNELS") == 1
    assert value(pre, "MODEL.WEIGHTS") == str(out / "checkpoints" / "teacher.pth")
    assert value(adapt, "MODEL.ECCENTRIC.DISTILL.FREEZE") == "[]" and "MODEL.ECCENTRIC.DISTILL.FREEZE" not in pre
    assert "MODEL.ECCENTRIC.EDGE.RESNETS.DEPTH" not in stages[5]["commands"][0]  # the cloud-only model is as it is
    sweep, merge = stages[7]["commands"]
    assert "edge_only" not in sweep and "rates=all" in sweep and "png=9" in sweep
    assert value(sweep, "MODEL.ECCENTRIC.EDGE.RESNETS.DEPTH") == "0"
    assert args_of(merge)[args_of(merge).index("--results") + 1:][:2] == [value(sweep, "--output"), "--output"]
    assert "offload_gate" not in text and "edge_kd.pth" not in text
    default, _ = dry_run(capsys, _argv(own, tmp_path / "default", "--dry-run"))
    assert "MODEL.ECCENTRIC.EDGE.RESNETS.DEPTH" not in default[4]["commands"][0] and len(default[7]["commands"]) == 3


@pytest.mark.parametrize("extra", [["--joint"], ["--edge-init", "r18.pth"],
                                   ["--edge-config", "configs/FashionDet/edge_kd.yaml"]])
def test_teacher_trunk_refuses_the_edge_detector_s_options(own, tmp_path, capsys, extra):
    out = tmp_path / "refused"
    assert TOOL.main(_argv(own, out, "--teacher-trunk", *extra)) == 2
    err = capsys.readouterr().err
    assert "--teacher-trunk takes the teacher's own early layers as the edge" in err and f"drop {extra[0]}" in err
    assert not out.exists()


def test_max_minutes_reaches_every_training_stage_and_the_report_says_how_stages_ended(own, tmp_path, capsys):
    stages, _ = dry_run(capsys, _argv(own, tmp_path / "run", "--max-minutes", "30", "--dry-run"))
    for i in (1, 2, 3, 4):
        assert value(stages[i]["commands"][0], "SOLVER.MAX_MINUTES") == "30"
    lines = recipe.training_section({
        "teacher": {"reason": "plateau", "iteration": 1200, "max_iter": 3000, "curve": [[400, 20.0], [800, 30.0],
                    [1200, 30.1]], "plateau": {"flat": True, "gain": 0.1}},
        "edge_kd": {"reason": "max_minutes", "iteration": 50, "max_iter": 600, "curve": [], "plateau": {}}})
    text = "\n".join(lines)
    assert "| teacher | 1200 of 3000 | plateau | 30.10 | flat (last quarter +0.10) |" in text
    assert "| edge_kd | 50 of 600 | max_minutes | - | no held-out curve" in text
    assert recipe.training_section({}) == []


def test_quick_dry_run_takes_the_quick_schedules(own, tmp_path, capsys):
    out = tmp_path / "quick"
    stages, text = dry_run(capsys, _argv(own, out, "--quick", "--holdout", "0.25", "--bootstrap", "0", "--dry-run"))
    assert value(stages[1]["commands"][0], "--config-file").endswith(
        "quick_schedules/fashion_det_cloud_teacher_instant_test.yaml")
    assert value(stages[2]["commands"][0], "--config-file").endswith(
        "quick_schedules/fashion_det_edge_kd_instant_test.yaml")
    assert value(stages[3]["commands"][0], "--config-file") == str(out / "configs" / "codec_pretrain_quick.yaml")
    assert value(stages[4]["commands"][0], "--config-file") == str(out / "configs" / "adaptive_ecc_vr_quick.yaml")
    assert 'MODEL.ECCENTRIC.CODEC.RATE_WEIGHTS [0.1, 1.0] MODEL.ECCENTRIC.DISTILL.MODE "reconstruct"' in text
    assert value(stages[7]["commands"][0], "--max-images") == "4"
    assert not any("--bootstrap" in c for c in stages[7]["commands"])  # --bootstrap 0: no intervals


@pytest.mark.parametrize("case, match", [
    ("unregistered", r"dataset 'nowhere' \(--train\) is not registered: register it with --register nowhere coco"),
    ("classes", r"--num-classes is 5, but dataset '.*' \(--train\) has 2 classes \(cup, bottle\): pass "
                r"--num-classes 2"),
    ("config", r"config file 'configs/FashionDet/no_such.yaml' \(--edge-config\) not found"),
    ("holdout", r"--holdout 0.01 holds out 0 of the 40 images"),
    ("reserved", r"the recipe sets MODEL.WEIGHTS itself; use --teacher-weights"),
    ("register", r"--register .* a coco entry takes 2 values after its kind .*config overrides go last"),
    ("estimate", r"--estimate times the stages of a dry run: add --dry-run"),
])
def test_errors_come_before_any_stage(own, tmp_path, capsys, case, match):
    out = tmp_path / "err"
    train, val, register = own
    argv = {
        "unregistered": [*register, "--train", "nowhere", "--test", val, "--num-classes", "2"],
        "classes": [*register, "--train", train, "--test", val, "--num-classes", "5"],
        "config": [*register, "--train", train, "--test", val, "--num-classes", "2", "--edge-config",
                   "configs/FashionDet/no_such.yaml"],
        "holdout": [*register, "--train", train, "--test", val, "--num-classes", "2", "--holdout", "0.01"],
        "reserved": [*register, "--train", train, "--test", val, "--num-classes", "2", "MODEL.WEIGHTS", "x.pth"],
        "register": ["--train", train, "--test", val, "--num-classes", "2", *register, "MODEL.DEVICE", "cpu"],
        "estimate": [*register, "--train", train, "--test", val, "--num-classes", "2", "--estimate"],
    }[case]
    assert TOOL.main(["--output", str(out)] + argv) == 2
    err = capsys.readouterr().err
    assert re.search(match, err), err
    assert not out.exists()


def test_an_output_folder_of_another_command_line_is_refused(own, tmp_path, capsys):
    out = tmp_path / "taken"
    first = _argv(own, out)
    r = recipe.Recipe(TOOL.build_parser().parse_args(first), first)
    r.check()
    out.mkdir()
    (out / "recipe.json").write_text(json.dumps({"argv": first, "identity": r.identity()}))
    assert TOOL.main(first + ["--budget-bytes", "900", "--dry-run"]) == 0  # the same run; another budget is fine
    capsys.readouterr()
    assert TOOL.main(_argv(own, out, "--recall", "0.8", "--dry-run")) == 0  # the same data: the stamps decide
    capsys.readouterr()
    assert TOOL.main(_argv(own, out, "--test", own[0], "--dry-run")) == 2  # evaluated on other images
    err = capsys.readouterr().err
    assert "holds the run on other data (it differs in: test)" in err
    assert "To resume that run, repeat its command:" in err and shlex.join(first) in err
    assert f"rm -r {out}" in err
    other = tmp_path / "stranger"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert TOOL.main(_argv(own, other, "--dry-run")) == 2
    assert "is not empty and holds no recipe.json" in capsys.readouterr().err


def test_each_key_is_set_once_per_command_and_steps_run_package_modules(own, tmp_path, capsys):
    """Every step runs a package module (``python -m eccentric_det.cli.<name>``: an installed package has them) and
    gives each config key one value (the held-out DATASETS.TEST of a training's curve replaces its "()", a stage's
    own override the common one)."""
    stages, _ = dry_run(capsys, _argv(own, tmp_path / "run", "--dry-run", "--", "SOLVER.MAX_ITER", "5",
                                      "teacher:SOLVER.MAX_ITER", "7"))
    for i, stage in stages.items():
        for command in stage["commands"]:
            assert command[:3] == ["python", "-m", recipe.TOOLS[tool_of(command)[:-3]]], command
            keys = [k for k in command if re.fullmatch(r"[A-Z][A-Z0-9_]*(\.[A-Z0-9_]+)+", k)]
            assert len(keys) == len(set(keys)), (i, sorted(k for k in keys if keys.count(k) > 1))
    teacher = stages[1]["commands"][0]
    assert value(teacher, "SOLVER.MAX_ITER") == "7" and value(stages[2]["commands"][0], "SOLVER.MAX_ITER") == "5"
    assert recipe.once(["A.B", "1", "C.D", "2", "A.B", "3"]) == ["C.D", "2", "A.B", "3"]
    from eccentric_det.recipe.engine import _program_end  # a resumed training: --resume right after the program

    assert teacher[_program_end(teacher) - 1:][:2] == ["eccentric_det.cli.train_net", "--config-file"]


def test_the_default_configs_are_the_package_s_own(own, tmp_path, monkeypatch, capsys):
    """From another folder than the checkout, the shipped configs are named by their place in the package."""
    monkeypatch.chdir(tmp_path)
    stages, _ = dry_run(capsys, _argv(own, tmp_path / "run", "--dry-run"))
    config = value(stages[1]["commands"][0], "--config-file")
    assert config == os.path.join(recipe.CONFIG_DIR, "FashionDet", "cloud_teacher.yaml") and os.path.isfile(config)
    assert recipe.CONFIG_DIR == os.path.join(ROOT, "eccentric_det", "configs")  # not the checkout's configs/
    assert value(stages[1]["commands"][0], "DATASETS.TRAIN")  # and the plan is otherwise the same


def test_the_dry_run_estimates_a_stage_s_time_only_from_what_was_measured(own, tmp_path, capsys):
    out = tmp_path / "run"
    argv = _argv(own, out, "--", "teacher:SOLVER.MAX_ITER", "700")
    r = recipe.Recipe(TOOL.build_parser().parse_args(argv), argv)
    r.check()
    (out / "teacher").mkdir(parents=True)
    (out / "recipe.json").write_text(json.dumps({"argv": argv, "identity": r.identity()}))
    with open(out / "teacher" / "metrics.json", "w") as f:  # an earlier run of the teacher: 0.5 s per iteration
        for i in range(19, 200, 20):
            f.write(json.dumps({"iteration": i, "time": 0.5, "total_loss": 1.0}) + "\n")
    _, text = dry_run(capsys, argv[:-3] + ["--dry-run"] + argv[-3:])
    assert "    # time: about 5m50s (700 iterations x 0.50 s measured in " in text
    assert "[2/8] edge detector (KD): would run (no stamp)\n    # time: no estimate (not measured" in text
    assert "time: about 5m50s for the stages measured here before; no estimate for edge_kd, codec_pretrain" in text
    _, text = dry_run(capsys, _argv(own, tmp_path / "fresh", "--dry-run"))
    assert "time: no estimate: nothing was measured in this output folder yet" in text


def test_the_dry_run_estimate_times_a_few_iterations_of_each_training_stage(own, tmp_path, capsys, monkeypatch):
    """--dry-run --estimate: each training stage that would run is timed (a few iterations of its own command, here
    the quick teacher on the generated images) and estimated as what the run takes besides its iterations plus
    SOLVER.MAX_ITER times the seconds per iteration: doubling MAX_ITER doubles the iterations' part. The checkpoints
    of earlier stages are not there yet (random weights); the gate and the sweep are not estimated."""
    out = tmp_path / "run"

    def quick(max_iter, *extra):
        argv = _argv(own, out, "--quick", *extra, "--", "teacher:SOLVER.MAX_ITER", str(max_iter))
        r = recipe.Recipe(TOOL.build_parser().parse_args(argv), argv)
        r.check()
        return r, argv

    r, _ = quick(40)
    teacher = r.stage("teacher")
    per_iteration, besides = r.time_stage(teacher)  # the real thing: 5 iterations of the quick teacher
    assert per_iteration > 0 and besides > 0
    seconds, how = r.estimate(teacher, "run", None, (per_iteration, besides))
    assert seconds == pytest.approx(besides + 40 * per_iteration) and how.startswith("40 iterations x ")
    r2, _ = quick(80)
    doubled, _ = r2.estimate(r2.stage("teacher"), "run", None, (per_iteration, besides))
    assert doubled - besides == pytest.approx(2 * (seconds - besides))

    # each training stage's timing command: its own config and data, 5 iterations, no evaluation, no hand-off yet
    adapt = r.timing_command(r.stage("adaptive_ecc_vr"), "TMP")
    assert value(adapt, "SOLVER.MAX_ITER") == "5" and value(adapt, "OUTPUT_DIR") == "TMP"
    assert value(adapt, "TEST.EVAL_PERIOD") == "0" and value(adapt, "DATASETS.TEST") == "()"
    assert value(adapt, "--config-file").endswith(recipe.plan.QUICK_BASE)  # the derived config is not written yet
    assert value(adapt, "MODEL.ECCENTRIC.CODEC.RATE_WEIGHTS") == "[0.1, 1.0]"
    assert value(adapt, "DATASETS.TRAIN") == value(r.stage("adaptive_ecc_vr").steps[0].command, "DATASETS.TRAIN")
    for key in ("MODEL.WEIGHTS", "MODEL.ECCENTRIC.EDGE.WEIGHTS", "MODEL.ECCENTRIC.DISTILL.TEACHER_WEIGHTS"):
        assert value(adapt, key) == ""

    # the dry run prints each estimate and their sum (the timing itself stubbed: 0.5 s per iteration, 10 s besides)
    monkeypatch.setattr(recipe.Recipe, "time_stage", lambda self, stage: (0.5, 10.0))
    _, argv = quick(40, "--dry-run", "--estimate")
    _, text = dry_run(capsys, argv)
    assert ("[1/8] cloud teacher: would run (no stamp)\n    # time: about 30s (40 iterations x 0.50 s + 10s to "
            "start, warm up and save, timed by --estimate (5 iterations on cpu)") in text
    assert "[7/8] evaluation and Pareto: would run (no stamp)\n    # time: not estimated" in text
    assert "time: about 1m18s for the stages timed or measured here; no estimate for gate, pareto, report" in text
    assert not out.exists()


def test_the_gate_stage_reads_the_fit_the_tool_wrote(own, tmp_path):
    """Stage 6 hands its result over as a file: fit_offload_gate --fit-json writes gate/fit.json (the library's
    write_fit), which the stage completes; with --quick a fit that found nothing to fit on ("fitted": false) falls
    back to the unfitted gate."""
    from eccentric_det.calibration import NothingToFit, write_fit

    argv = _argv(own, tmp_path / "run", "--quick")
    r = recipe.Recipe(TOOL.build_parser().parse_args(argv), argv)
    r.check()
    stage = r.stage_gate()
    (fit,) = stage.steps
    fit_json = fit.command[fit.command.index("--fit-json") + 1]
    assert fit_json == r.fit_path() and fit_json in stage.outputs
    assert tool_of(fit.fallback.command) == "export_checkpoint.py"
    os.makedirs(stage.out_dir)
    write_fit(fit_json, reason="fitting the offload gate needs images both needing and not needing the cloud",
              dataset="x")
    assert fit.fallback_when() == "fitting the offload gate needs images both needing and not needing the cloud"
    assert stage.finish(stage) == {"threshold": 0.5}
    assert json.load(open(fit_json))["fitted"] is False
    write_fit(fit_json, {"threshold": 0.3431234, "offload_rate": 0.8, "recall": 0.9, "needs_cloud_fraction": 0.5,
                         "weight": [1.0]}, dataset="x", recall_target=0.9)
    assert fit.fallback_when() == ""
    assert stage.finish(stage) == {"threshold": 0.3431234}
    record = json.load(open(fit_json))
    assert record == {"fitted": True, "threshold": 0.3431234, "offload_rate": 0.8, "recall": 0.9,
                      "needs_cloud_fraction": 0.5, "dataset": r.gate_set, "recall_target": 0.9}
    assert r.threshold() == 0.3431234 and "thresholds=0.3431,0.5" in " ".join(r.stage_pareto().steps[1].command)
    assert issubclass(NothingToFit, ValueError)


def test_fit_offload_gate_writes_its_fit_or_why_there_is_none(own, tmp_path, monkeypatch, capsys):
    """fit_offload_gate --fit-json: the fit as JSON (what the recipe reads), or "fitted": false, the reason and exit
    status 3 when the images leave nothing to fit (the model and the fit are stubbed: this is the program's part)."""
    import torch

    from eccentric_det.calibration import NothingToFit
    from eccentric_det.cli import fit_offload_gate as tool

    train, val, register = own
    entries = [register[i + 1:i + 5] for i in range(0, len(register), 5)]
    fits = [NothingToFit("fitting the offload gate needs images both needing and not needing the cloud"),
            {"threshold": 0.25, "offload_rate": 0.5, "recall": 1.0, "needs_cloud_fraction": 0.4, "weight": [0.1]}]

    def calibrate(cfg, model, dataset, max_images, recall, regions=False):
        fit = fits.pop(0)
        if isinstance(fit, Exception):
            raise fit
        return fit

    class Model(torch.nn.Module):
        def state_dict(self):
            return {"offload_gate.bias": torch.zeros(1), "backbone.w": torch.zeros(1)}

    monkeypatch.setattr(tool, "load_model", lambda cfg: Model())
    monkeypatch.setattr(tool, "calibrate_offload_gate", calibrate)
    fit_json, gate = tmp_path / "gate" / "fit.json", tmp_path / "gate.pth"
    argv = ["--config-file", "configs/quick_schedules/fashion_det_dynamic_ecc_instant_test.yaml", "--weights", "x.pth",
            "--dataset", train, "--output", str(gate), "--fit-json", str(fit_json), "DATASETS.REGISTER",
            json.dumps(entries), "MODEL.ROI_HEADS.NUM_CLASSES", "2"]
    assert tool.main(argv) == tool.NOTHING_TO_FIT == 3
    assert "needs images both needing and not needing the cloud" in capsys.readouterr().err
    assert json.load(open(fit_json)) == {"fitted": False, "reason": "fitting the offload gate needs images both "
                                         "needing and not needing the cloud", "dataset": train, "recall_target": 0.9,
                                         "regions": False, "gate": str(gate)}
    assert not gate.exists()
    assert tool.main(argv) == 0
    assert json.load(open(fit_json)) == {"fitted": True, "threshold": 0.25, "offload_rate": 0.5, "recall": 1.0,
                                         "needs_cloud_fraction": 0.4, "dataset": train, "recall_target": 0.9,
                                         "regions": False, "gate": str(gate)}
    assert "set MODEL.ECCENTRIC.OFFLOAD.THRESHOLD 0.2500" in capsys.readouterr().out
    assert list(torch.load(gate, weights_only=True)["model"]) == ["offload_gate.bias"]


def test_a_sweep_s_progress_is_counted_from_the_files_it_writes(tmp_path):
    from eccentric_det.recipe.engine import _points_done

    since = time.time() - 1.0
    assert _points_done(str(tmp_path), since) == (0, 0)  # no plan.json yet
    points = [{"series": "s", "label": str(i), "output_dir": str(tmp_path / "points" / str(i))} for i in range(3)]
    (tmp_path / "plan.json").write_text(json.dumps({"points": points}))
    assert _points_done(str(tmp_path), since) == (0, 3)
    for i in (0, 2):
        os.makedirs(points[i]["output_dir"])
        (tmp_path / "points" / str(i) / "eccentric_metrics.json").write_text("{}")
    assert _points_done(str(tmp_path), since) == (2, 3)
    assert _points_done(str(tmp_path), time.time() + 60) == (0, 0)  # files of an earlier run do not count


def test_a_training_s_bar_is_timed_from_its_first_iteration(tmp_path, monkeypatch):
    """A training loads for 40 s before its first iteration: its bar says "starting" until metrics.json shows one,
    then its rate and ETA are those of the iterations since (not 20 iterations in 40 s); a resumed training's bar
    starts at the iterations done before, and rows of that earlier run are not progress."""
    import tqdm.std

    from eccentric_det.recipe.engine import ProgressBar, step_progress

    clock = [1000.0]
    monkeypatch.setattr(tqdm.std, "time", lambda: clock[0])  # the bars' clock
    metrics = tmp_path / "metrics.json"
    step = Step(["python"], train_dir=str(tmp_path), max_iter=100)

    def log(*iterations):
        with open(metrics, "a") as f:
            f.writelines(json.dumps({"iteration": i, "time": 0.5}) + "\n" for i in iterations)

    bar = ProgressBar("[1/8] cloud teacher", "it", 100)
    since = time.time() - 1.0
    clock[0] += 40.0  # loading: no metrics.json yet
    bar.update(*step_progress(step, since))
    assert str(bar.bar) == "[1/8] cloud teacher: starting (00:40)"
    log(19)  # the first row: its clock starts here
    bar.update(*step_progress(step, since))
    clock[0] += 10.0
    log(39)
    bar.update(*step_progress(step, since))
    assert "40/100 [00:10<00:30,  2.00it/s]" in str(bar.bar), str(bar.bar)  # 20 iterations in 10 s, 60 to go
    bar.close(completed=True)
    assert bar.bar.n == 100

    metrics.unlink()
    log(19, 39, 59)  # an interrupted run that reached iteration 59 ...
    old = time.time() - 60
    os.utime(metrics, (old, old))  # ... a minute ago
    resumed = ProgressBar("[1/8] cloud teacher", "it", 100, done=60)
    since = time.time() - 1.0
    clock[0] += 30.0
    resumed.update(*step_progress(step, since))
    assert "starting" in str(resumed.bar)  # its old rows are not this run's progress
    log(69)
    resumed.update(*step_progress(step, since))
    clock[0] += 5.0
    log(79)
    resumed.update(*step_progress(step, since))
    assert "80/100 [00:05<00:10,  2.00it/s]" in str(resumed.bar), str(resumed.bar)
    resumed.close()


# ------------------------------------------------------------------------------------------------ stamps
COPY = "import sys, shutil; open(sys.argv[3], 'a').write('x'); shutil.copy(sys.argv[1], sys.argv[2])"


def fake_stage(tmp_path, code=COPY, steps=1):
    """A stage of ``steps`` cheap subprocesses: each copies in.txt to out.txt and counts its runs in runs.txt."""
    inp, out, runs = tmp_path / "in.txt", tmp_path / "out.txt", tmp_path / "runs.txt"
    commands = [Step(["python", "-c", code, str(inp), str(out), str(runs)]) for _ in range(steps)]
    return Stage("codec_pretrain", 3, str(tmp_path / "stage"), steps=commands, inputs=[str(inp)],
                 outputs=[str(out)])


def runs(tmp_path):
    return len((tmp_path / "runs.txt").read_text()) if (tmp_path / "runs.txt").exists() else 0


def test_a_stage_whose_stamp_matches_is_skipped_and_a_changed_input_reruns_it(tmp_path):
    (tmp_path / "in.txt").write_text("one")
    lines = []
    assert execute_stage(fake_stage(tmp_path), say=lines.append) == "ran"
    assert (tmp_path / "out.txt").read_text() == "one" and runs(tmp_path) == 1
    stamp = json.load(open(tmp_path / "stage" / "stage.json"))
    assert stamp["status"] == "done" and stamp["commands"][0][:2] == ["python", "-c"]
    assert set(stamp["inputs"][str(tmp_path / "in.txt")]) == {"size", "mtime_ns", "sha256"}

    assert execute_stage(fake_stage(tmp_path), say=lines.append) == "skipped"
    assert lines[-1] == "[3/8] codec pre-training: skipped (outputs match)" and runs(tmp_path) == 1
    os.utime(tmp_path / "in.txt", ns=(time.time_ns(), time.time_ns() + 10 ** 9))  # touched, same content
    assert stamp_status(fake_stage(tmp_path))[0] == "skip"

    (tmp_path / "in.txt").write_text("two")  # a changed input
    assert stamp_status(fake_stage(tmp_path))[:2] == ("run", f"input {tmp_path / 'in.txt'} changed")
    assert execute_stage(fake_stage(tmp_path), say=lines.append) == "ran"
    assert (tmp_path / "out.txt").read_text() == "two" and runs(tmp_path) == 2

    other = fake_stage(tmp_path, code=COPY + "  # another command")
    assert stamp_status(other)[:2] == ("run", "its commands changed")
    (tmp_path / "out.txt").unlink()
    assert stamp_status(fake_stage(tmp_path))[:2] == ("run", f"output {tmp_path / 'out.txt'} is missing")
    (tmp_path / "out.txt").write_text("edited by hand")
    assert stamp_status(fake_stage(tmp_path))[:2] == ("run", f"output {tmp_path / 'out.txt'} changed")


def test_an_interrupted_stage_resumes_after_its_finished_steps(tmp_path):
    (tmp_path / "in.txt").write_text("one")
    fail = COPY + "; sys.exit(3 if len(open(sys.argv[3]).read()) == 2 else 0)"  # the 2nd run of any step fails
    stage = Stage("teacher", 1, str(tmp_path / "stage"), inputs=[str(tmp_path / "in.txt")],
                  outputs=[str(tmp_path / "out.txt")],
                  steps=[Step(["python", "-c", COPY, *map(str, (tmp_path / "in.txt", tmp_path / "out.txt",
                                                                tmp_path / "runs.txt"))]),
                         Step(["python", "-c", fail, *map(str, (tmp_path / "in.txt", tmp_path / "out.txt",
                                                                tmp_path / "runs.txt"))])])
    with pytest.raises(RecipeError, match=r"(?s)\[1/8\] cloud teacher failed \(exit status 3\).*run the same command "
                                          r"again"):
        execute_stage(stage, say=lambda _: None)
    stamp = json.load(open(tmp_path / "stage" / "stage.json"))
    assert stamp["status"] == "running" and stamp["done_steps"] == [0]
    assert stamp_status(stage)[:2] == ("resume", "interrupted")
    assert execute_stage(stage, say=lambda _: None) == "resumed"
    assert runs(tmp_path) == 3  # step 1 once, step 2 twice: the finished step did not run again
    assert stamp_status(stage)[0] == "skip"


# ------------------------------------------------------------------------------------------------ the report
def _point(series, label, ap, nbytes, offload, edge=0.2, cloud=1.9, front=False):
    return {"series": series, "label": label, "config_file": "", "opts": [], "output_dir": f"points/{label}",
            "metrics": {"AP": ap, "bytes_mean": nbytes, "offload_rate": offload, "edge_gflops": edge,
                        "cloud_gflops": cloud}, "front": {"bytes": front, "edge_gflops": False, "offload": False}}


POINTS = [_point("Adaptive ECC (variable rate)", "rate 0", 23.5, 500.0, 1.0, front=True),
          _point("Adaptive ECC (variable rate)", "rate 1", 21.0, 200.0, 1.0, front=True),
          _point("Dynamic ECC", "threshold 0.5", 22.0, 300.0, 0.5),
          _point("edge-only", "edge-only", 12.0, 0.0, 0.0, cloud=0.0, front=True),
          _point("cloud-only JPEG", "jpeg 30", 20.0, 800.0, None, edge=0.0),
          _point("cloud-only JPEG", "jpeg 90", 24.0, 1600.0, None, edge=0.0),
          _point("cloud-only WebP", "webp 50", 22.5, 700.0, 1.0, edge=0.0)]


def test_budget_recommendation():
    label = lambda r: r[0] and r[0]["label"]  # noqa: E731
    # no budget: the fewest bytes within 1 AP of the best cloud-only point (JPEG q90, 24.0)
    assert label(recommend(POINTS)) == "rate 0"
    assert "within 1 AP of the best cloud-only point (cloud-only JPEG, jpeg 90: AP 24.00)" in recommend(POINTS)[1]
    assert label(recommend(POINTS, budget_bytes=400)) == "threshold 0.5"  # best AP at <= 400 bytes
    assert label(recommend(POINTS, budget_bytes=1e9)) == "jpeg 90"
    assert label(recommend(POINTS, budget_bytes=0)) == "edge-only"
    assert label(recommend(POINTS, budget_offload=0.5)) == "threshold 0.5"  # cloud-only sends every image
    assert label(recommend(POINTS, budget_offload=0.0)) == "edge-only"
    best, why = recommend(POINTS, budget_bytes=-1)
    assert best is None and "the lowest is 0 (edge-only, edge-only)" in why
    assert recommend(POINTS[:4])[0] is None  # no cloud-only point to compare with
    assert label(recommend([_point("cloud-only JPEG", "jpeg 50", float("nan"), 900.0, 1.0)] + POINTS,
                           budget_bytes=1000)) == "rate 0"  # a point without AP never wins


def test_the_report_matches_the_series_names_pareto_writes():
    """report.md looks for rows by the names of eccentric_det.reports.series, the list the sweep names its points
    from: the ceilings, the BD-rate anchor and the cloud-only family (every image codec's series and cloud-only)."""
    from eccentric_det.reports import series

    assert (recipe.CEILING, recipe.EDGE_ALONE) == (series.image_codec_series("png"), series.EDGE_ONLY)
    assert {recipe.CEILING, recipe.EDGE_ALONE, series.ANCHOR} <= set(series.NAMES)
    assert {p["series"] for p in POINTS} <= set(series.NAMES)
    assert [n for n in series.NAMES if series.is_cloud_only(n)] == [series.CLOUD_ONLY,
                                                                     *series.IMAGE_CODEC_SERIES.values()]
    assert all(series.SERIES[n] for n in series.NAMES)  # each has its description


def _table_rows(text):
    """The operating-point rows of report.md, as lists of cells."""
    return [[c.strip() for c in line.strip().strip("|").split("|")] for line in text.splitlines()
            if re.match(r"^\|\s*\d+ \|", line)]


def test_report_lists_every_point_the_plot_bd_rates_and_the_recommendation(tmp_path):
    pareto = tmp_path / "pareto"
    pareto.mkdir()
    (pareto / "pareto.json").write_text(json.dumps({
        "dataset": "my_val", "images": 6, "accuracy": "AP", "anchor": "cloud-only JPEG", "bd_method": "pchip",
        "bd_rate": {"Adaptive ECC (variable rate)": -42.25, "Dynamic ECC": "needs at least 2 points that send bytes"},
        "points": POINTS}))
    best = write_report(str(pareto / "pareto.json"), str(tmp_path / "report.md"), budget_bytes=400)
    text = (tmp_path / "report.md").read_text()
    assert best["label"] == "threshold 0.5"
    assert "**Recommended point (--budget-bytes 400): Dynamic ECC, threshold 0.5**: AP 22.00, 300 bytes/image" in text
    rows = _table_rows(text)
    assert [r[2] for r in rows] == [p["label"] if p["label"] != "threshold 0.5" else
                                    "threshold 0.5 **(recommended)**" for p in POINTS]
    assert rows[5] == ["6", "cloud-only JPEG", "jpeg 90", "24.00", "1,600", "1.00", "0.000", "1.900", ""]
    assert rows[0] == ["1", "Adaptive ECC (variable rate)", "rate 0", "23.50", "500", "1.00", "0.200", "1.900", "b"]
    assert "front: b = AP vs bytes, e = AP vs edge GFLOPs, c = AP vs cloud GFLOPs, o = AP vs offload rate" in text
    assert "![Pareto fronts](pareto/pareto.png)" in text
    assert "| Adaptive ECC (variable rate) | -42.2% |" in text and "| Dynamic ECC | needs at least 2" in text
    assert "Reproduce" not in text  # no sweep of this recipe: no commands to give
    # what this pareto.json cannot say, each with its fix
    assert "No intervals: nothing here says whether two rows differ by more than chance" in text
    assert "run with --bootstrap 200" in text
    assert "No cloud-only PNG row" in text and "add png=9 to the sweep" in text


def _ci_point(series, label, ap, ci, nbytes, offload, edge=0.2, cloud=1.9):
    p = _point(series, label, ap, nbytes, offload, edge, cloud)
    p["metrics"]["AP_ci95"] = list(ci)
    return p


# What a teacher that never learned the task gives (issue 28's aerial photos: 25 test images, every AP between 2 and
# 5, the teacher on lossless images below the edge alone, cloud-only JPEG worse at q90 than at q5)
RANDOM_LABELS = [
    _ci_point("Adaptive ECC (variable rate)", "rate 0", 3.9, (2.6, 5.3), 2400.0, 1.0),
    _ci_point("Adaptive ECC (variable rate)", "rate 1", 3.2, (2.0, 4.6), 1500.0, 1.0),
    _ci_point("Adaptive ECC (variable rate)", "rate 2", 3.5, (2.2, 4.9), 900.0, 1.0),
    _ci_point("Dynamic ECC", "threshold 0.1", 3.7, (2.4, 5.0), 700.0, 0.3),
    _ci_point("Dynamic ECC", "threshold 0.3", 3.7, (2.4, 5.0), 700.0, 0.3),
    _ci_point("edge-only", "edge-only", 4.04, (2.9, 5.4), 0.0, 0.0, cloud=0.0),
    _ci_point("cloud-only JPEG", "jpeg 5", 3.61, (3.1, 4.2), 1200.0, None, edge=0.0),
    _ci_point("cloud-only JPEG", "jpeg 90", 2.41, (1.9, 2.9), 9000.0, None, edge=0.0),
    _ci_point("cloud-only PNG", "png 9", 2.38, (1.5, 3.4), 30000.0, None, edge=0.0)]
# the same report of a teacher that learned it, on enough images to rank the rows
HEALTHY = [
    _ci_point("Adaptive ECC (variable rate)", "rate 0", 31.0, (30.2, 31.8), 2400.0, 1.0),
    _ci_point("Adaptive ECC (variable rate)", "rate 1", 27.0, (26.0, 28.0), 1500.0, 1.0),
    _ci_point("edge-only", "edge-only", 18.0, (17.0, 19.0), 0.0, 0.0, cloud=0.0),
    _ci_point("cloud-only JPEG", "jpeg 30", 28.0, (27.0, 29.0), 4000.0, None, edge=0.0),
    _ci_point("cloud-only JPEG", "jpeg 90", 31.0, (30.0, 32.0), 9000.0, None, edge=0.0),
    _ci_point("cloud-only PNG", "png 9", 31.5, (30.5, 32.5), 30000.0, None, edge=0.0)]


def _report(tmp_path, points, images=25, **budget):
    (tmp_path / "pareto.json").write_text(json.dumps({"dataset": "aerial_test", "images": images, "accuracy": "AP",
                                                      "bd_rate": {}, "points": points}))
    best = write_report(str(tmp_path / "pareto.json"), str(tmp_path / "report.md"), **budget,
                        context={"bootstrap": 200})
    return best, (tmp_path / "report.md").read_text()


def test_report_warns_when_the_teacher_never_learned_the_task_and_names_the_fix(tmp_path):
    best, text = _report(tmp_path, RANDOM_LABELS, budget_bytes=1000)
    warnings = text[text.index("## Warnings"):text.index("## Operating points")]
    assert ("The cloud teacher is not clearly better than the edge alone: train it longer (teacher:SOLVER.MAX_ITER) "
            "or start from pretrained weights with --teacher-weights") in warnings
    assert "(cloud-only PNG) it scores AP 2.38 [1.50, 3.40], the edge alone AP 4.04 [2.90, 5.40]" in warnings
    assert ("**cloud-only JPEG: AP does not rise with quality.** At its highest quality (jpeg 90) the cloud scores "
            "AP 2.41 [1.90, 2.90], below jpeg 5's 3.61 by more than the interval") in warnings
    assert "**The intervals overlap so much that the ranking is noise**: 35 of the 36 pairs of rows" in warnings
    assert "evaluate on more test images" in warnings
    # the best AP within 1000 bytes is the edge alone, but threshold 0.1's interval overlaps it: no silent pick
    assert best["label"] == "edge-only"
    assert "**Recommended point (--budget-bytes 1000): none distinguishable.**" in text
    assert "**The recommended point is not distinguishable from its neighbours**: edge-only, edge-only" in warnings
    assert "overlaps Dynamic ECC, threshold 0.1 (AP 3.70 [2.40, 5.00])" in warnings
    assert "edge-only *(picked, not distinguishable)*" in text
    # without a budget the rule picks the edge alone (no point sends fewer bytes), but no row stands out of the noise
    best, text = _report(tmp_path, RANDOM_LABELS)
    assert best["label"] == "edge-only"
    assert ("**Recommended point (no budget given): none distinguishable.** The rule (the fewest bytes/image within 1 "
            "AP of the best cloud-only point (cloud-only JPEG, jpeg 5: AP 3.61)) picks edge-only, edge-only: AP 4.04 "
            "[2.90, 5.40], 0 bytes/image") in text
    assert "but the intervals of 35 of the 36 pairs of rows overlap: on these 25 images the choice is noise" in text


def test_report_of_a_healthy_run_has_no_warnings_and_recommends(tmp_path):
    best, text = _report(tmp_path, HEALTHY, images=1000)
    assert "## Warnings" not in text
    assert best["label"] == "rate 0"
    assert "**Recommended point (no budget given): Adaptive ECC (variable rate), rate 0**: AP 31.00 [30.20, 31.80]" \
        in text
    # a teacher level with the edge, or a codec falling with quality beyond its interval, is warned about
    level = [dict(p, metrics=dict(p["metrics"], AP=18.5, AP_ci95=[17.5, 19.5])) if p["label"] == "png 9" else p
             for p in HEALTHY]
    assert "not clearly better than the edge alone" in _report(tmp_path, level, images=1000)[1]
    falling = [dict(p, metrics=dict(p["metrics"], AP=26.0, AP_ci95=[25.0, 27.0])) if p["label"] == "jpeg 90" else p
               for p in HEALTHY]
    assert "cloud-only JPEG: AP does not rise with quality" in _report(tmp_path, falling, images=1000)[1]
    within = [dict(p, metrics=dict(p["metrics"], AP=27.5, AP_ci95=[26.0, 29.0])) if p["label"] == "jpeg 90" else p
              for p in HEALTHY]  # below q30's 28.0, but within its interval: noise, not a warning of its own
    assert "does not rise with quality" not in _report(tmp_path, within, images=1000)[1]


def test_every_report_row_has_an_interval_and_the_ceilings_are_rows(tmp_path):
    _, text = _report(tmp_path, HEALTHY, images=1000)
    rows = _table_rows(text)
    assert len(rows) == len(HEALTHY)
    assert all(re.fullmatch(r"\d+\.\d\d \[\d+\.\d\d, \d+\.\d\d\]", r[3]) for r in rows), rows
    assert "AP [95% CI]" in text and "with its 95% bootstrap interval over the images (200 resamples)" in text
    assert [r[1:3] for r in rows if r[1] in ("cloud-only PNG", "edge-only")] == [["edge-only", "edge-only"],
                                                                                 ["cloud-only PNG", "png 9"]]
    assert "Ceilings: *cloud-only PNG* is the cloud teacher on lossless images" in text
    (tmp_path / "r").mkdir()  # in the recipe's report the ceiling is the equal-budget cloud of stage 5
    write_report(str(tmp_path / "pareto.json"), str(tmp_path / "r" / "report.md"),
                 context={"bootstrap": 200, "command": "x", "num_classes": 3, "train_set": "a", "gate_set": "b",
                          "equal_budget": 1200})
    recipe_text = (tmp_path / "r" / "report.md").read_text()
    assert "Ceilings: *cloud-only PNG* is the equal-budget cloud (stage 5) on lossless images" in recipe_text
    assert "the teacher + 1200 iterations" in recipe_text
    assert "*edge-only* is the edge detector alone" in text
    # a row without an interval among rows with one says so
    missing = [dict(p, metrics={k: v for k, v in p["metrics"].items() if k != "AP_ci95"}) if p["label"] == "rate 1"
               else p for p in HEALTHY]
    assert _table_rows(_report(tmp_path, missing, images=1000)[1])[1][3] == "27.00 [-]"


LONG_OUTPUT = os.path.join("output", "experiments", "aerial_photos_one_class_164_tiles_256px_from_scratch",
                           "teacher_3000_iterations_holdout_0.1_budget_2000_bytes", "second_try_with_longer_teacher")


@pytest.mark.parametrize("out", [os.path.join("output", "my_ecc"), LONG_OUTPUT])
def test_report_configs_reproduce_each_row_in_a_short_command(own, tmp_path, monkeypatch, out):
    """report.md's commands are short: each row's merged config (overrides, datasets, weights, OUTPUT_DIR) is written
    to OUT/configs/<point>.yaml; a model row runs it with train_net.py --eval-only, an image-codec row with a
    one-point pareto.py sweep whose cloud model is that same config. Under 200 characters each, also under a long
    --output (its path set once as $OUT)."""
    from eccentric_det.tasks import get_eccentric_cfg

    monkeypatch.chdir(tmp_path)
    argv = _argv(own, out)
    r = recipe.Recipe(TOOL.build_parser().parse_args(argv), argv)
    r.check()
    dirs, adapt, cloud, teacher = r.sweep_dirs(), r.configs["adapt"], r.configs["cloud"], r.ckpt("teacher.pth")

    def point(series, label, config, opts, sweep, i, ap):
        p = _ci_point(series, label, ap, (ap - 1, ap + 1), 100.0 * (i + 1), 1.0)
        p.update(config_file=config, opts=opts, output_dir=os.path.join(dirs[sweep], "points", f"{i:02d}_x"))
        return p

    points = [point("Adaptive ECC (variable rate)", "rate 0", adapt, ["MODEL.ECCENTRIC.CODEC.RATE", 0.0], "adaptive",
                    0, 30.0),
              point("edge-only", "edge-only", adapt, ["MODEL.ECCENTRIC.OFFLOAD.POLICY", "never"], "adaptive", 1, 20.0),
              point("cloud-only JPEG", "jpeg 90", cloud, ["MODEL.WEIGHTS", teacher], "adaptive", 2, 31.0),
              point("cloud-only PNG", "png 9", cloud, ["MODEL.WEIGHTS", teacher], "adaptive", 3, 32.0),
              point("Dynamic ECC", "threshold 0.3431", adapt, ["MODEL.ECCENTRIC.OFFLOAD.POLICY", "dynamic",
                                                               "MODEL.ECCENTRIC.OFFLOAD.THRESHOLD", 0.3431],
                    "dynamic", 0, 29.0),
              dict(_point("earlier runs", "elsewhere", 1.0, 1.0, 1.0), output_dir="elsewhere/x")]
    os.makedirs(r.stage_dir("pareto"))
    with open(os.path.join(r.stage_dir("pareto"), "pareto.json"), "w") as f:
        json.dump({"dataset": own[1], "images": 6, "accuracy": "AP", "bd_rate": {}, "points": points}, f)
    configs = os.path.join(out, "configs")
    os.makedirs(configs)
    with open(os.path.join(configs, "threshold_0.5.yaml"), "w") as f:  # a point of an earlier sweep
        f.write(recipe.POINT_CONFIG_MARK + " 4: Dynamic ECC, threshold 0.5\n")
    with open(os.path.join(configs, "mine.yaml"), "w") as f:
        f.write("MODEL:\n  DEVICE: cpu\n")

    stage = r.stage_report()
    slugs = ["rate_0", "edge-only", "jpeg_90", "png_9", "threshold_0.3431"]
    assert stage.outputs == [os.path.join(out, "report.md")] + [os.path.join(configs, f"{s}.yaml") for s in slugs]
    stage.run(stage)
    text = open(os.path.join(out, "report.md")).read()
    commands = re.findall(r"^(\d+)\. `(.*)`$", text, re.M)
    assert [int(i) for i, _ in commands] == [1, 2, 3, 4, 5]  # the point from outside the recipe's sweeps has none
    assert all(len(c) < 200 for _, c in commands), [len(c) for _, c in commands]
    train_net, pareto = (shlex.join(recipe.tool(name)[1:]) for name in ("train_net", "pareto"))
    if out == LONG_OUTPUT:  # set once, "$OUT/..." in each line
        assert f"\n`OUT={out}`\n" in text
        config, output = '"$OUT/configs/{}.yaml"', '"$OUT/eval/{}"'
    else:
        assert "`OUT=" not in text
        config, output = f"{out}/configs/{{}}.yaml", f"{out}/eval/{{}}"
    assert commands[0][1] == f"python {train_net} --eval-only --config-file {config.format('rate_0')}"
    assert commands[2][1] == (f"python {pareto} --config-file {config.format('jpeg_90')} --sweep jpeg=90 "
                              f"--output {output.format('jpeg_90')}")
    for _, command in commands:  # each names a config the recipe wrote
        args = shlex.split(command.replace("$OUT", out))
        assert os.path.isfile(args[args.index("--config-file") + 1]), command
    assert f"is in `{configs}/`" in text
    assert not os.path.exists(os.path.join(configs, "threshold_0.5.yaml"))  # stale: removed
    assert os.path.exists(os.path.join(configs, "mine.yaml"))  # not the recipe's: kept

    # each config is the point's merged config, as the sweep evaluated it
    cfg = get_eccentric_cfg(os.path.join(configs, "rate_0.yaml"), [])
    assert cfg.MODEL.ECCENTRIC.CODEC.RATE == 0.0 and cfg.MODEL.WEIGHTS == r.ckpt("adaptive_ecc_vr.pth")
    assert cfg.MODEL.ECCENTRIC.EDGE.WEIGHTS == "" and tuple(cfg.DATASETS.TEST) == (own[1],)
    assert cfg.MODEL.ROI_HEADS.NUM_CLASSES == 2 and cfg.OUTPUT_DIR == os.path.join(out, "eval", "rate_0")
    assert [e[0] for e in cfg.DATASETS.REGISTER][:2] == [own[0], own[1]]
    assert cfg.MODEL.ECCENTRIC.DISTILL.TEACHER_WEIGHTS == teacher
    dyn = get_eccentric_cfg(os.path.join(configs, "threshold_0.3431.yaml"), [])
    assert (dyn.MODEL.ECCENTRIC.OFFLOAD.POLICY, dyn.MODEL.ECCENTRIC.OFFLOAD.THRESHOLD) == ("dynamic", 0.3431)
    assert dyn.MODEL.ECCENTRIC.EDGE.WEIGHTS == r.ckpt("offload_gate.pth")
    jpeg = get_eccentric_cfg(os.path.join(configs, "jpeg_90.yaml"), [])
    assert jpeg.MODEL.WEIGHTS == teacher and jpeg.MODEL.ROI_HEADS.NUM_CLASSES == 2
    assert jpeg.MODEL.ECCENTRIC.DISTILL.TEACHER_CONFIG == os.path.join(configs, "jpeg_90.yaml")  # pareto.py's cloud
    assert open(os.path.join(configs, "jpeg_90.yaml")).readline().startswith(recipe.POINT_CONFIG_MARK + " 3: ")


def test_a_finished_training_stage_loses_its_intermediate_checkpoints(tmp_path):
    stage = Stage("teacher", 1, str(tmp_path / "teacher"))
    os.makedirs(stage.out_dir)
    for name in ("model_0000999.pth", "model_0001999.pth", "model_final.pth", "last_checkpoint", "metrics.json"):
        (tmp_path / "teacher" / name).write_text("x")
    lines = []
    recipe.write_stamp(stage, {}, {}, "running")
    assert recipe.remove_intermediate(stage, lines.append) == []  # an interrupted training resumes from them
    recipe.write_stamp(stage, {}, {}, "done")
    assert recipe.remove_intermediate(stage, lines.append) == ["model_0000999.pth", "model_0001999.pth"]
    assert sorted(os.listdir(stage.out_dir)) == ["last_checkpoint", "metrics.json", "model_final.pth", "stage.json"]
    assert "removed 2 intermediate checkpoints" in lines[-1] and "--keep-intermediate keeps them" in lines[-1]
    gate = Stage("gate", 5, str(tmp_path / "gate"))  # not a training: nothing of it is an intermediate checkpoint
    os.makedirs(gate.out_dir)
    (tmp_path / "gate" / "model_0000001.pth").write_text("x")
    recipe.write_stamp(gate, {}, {}, "done")
    assert recipe.remove_intermediate(gate, lines.append) == []


def test_the_command_prints_no_library_deprecation_warning(tmp_path):
    run = subprocess.run([sys.executable, os.path.join("tools", "train_eccentric.py"), "--train", "nowhere", "--test",
                          "nowhere", "--num-classes", "2", "--output", str(tmp_path / "o"), "--dry-run"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and "dataset 'nowhere' (--train) is not registered" in run.stderr, run.stderr
    assert "FutureWarning" not in run.stderr and "DeprecationWarning" not in run.stderr, run.stderr


def test_the_teacher_load_says_it_is_the_teacher(tmp_path):
    import logging

    import torch
    from detectron2.modeling import build_model

    import eccentric_det.modeling  # noqa: F401  (registers the backbones the teacher's config names)
    from eccentric_det.distill.teacher import build_teacher, teacher_cfg

    config = os.path.join(ROOT, "configs", "quick_schedules", "fashion_det_cloud_teacher_instant_test.yaml")
    torch.save({"model": build_model(teacher_cfg(config)).state_dict()}, tmp_path / "teacher.pth")
    records = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    log = logging.getLogger("eccentric_det.checkpoint")
    log.addHandler(handler)
    old = log.level
    log.setLevel(logging.INFO)
    try:
        build_teacher(config, str(tmp_path / "teacher.pth"))
    finally:
        log.removeHandler(handler)
        log.setLevel(old)
    loaded = [m for m in records if m.startswith("Loaded ")]
    assert loaded and loaded[0].endswith(f"from {tmp_path / 'teacher.pth'} (the distillation teacher: "
                                         f"MODEL.ECCENTRIC.DISTILL.TEACHER_WEIGHTS)"), records


# ------------------------------------------------------------------------------------------------ end to end
@pytest.mark.fashion_mnist
def test_quick_recipe_end_to_end_then_skips_every_stage(tmp_path):
    """The whole command with --quick on a generated COCO-format dataset: every stage runs, report.md lists every
    series with its --eval-only command; the same command again skips all eight stages."""
    from eccentric_det.data.fashion_det import FASHION_CLASSES, generate_fashion_det

    data = tmp_path / "data"
    generate_fashion_det(str(data), num_train=8, num_val=4, size=128, seed=1)
    ann = data / "annotations"
    out = tmp_path / "run"
    cmd = [sys.executable, os.path.join("tools", "train_eccentric.py"),
           "--register", "e2e_train", "coco", str(ann / "fashion_det_train.json"), str(data / "train"),
           "--register", "e2e_val", "coco", str(ann / "fashion_det_val.json"), str(data / "val"),
           "--train", "e2e_train", "--test", "e2e_val", "--num-classes", str(len(FASHION_CLASSES)),
           "--holdout", "0.25", "--quick", "--output", str(out)]  # 0.25: 3 of the 8 images held out
    env = dict(os.environ, OMP_NUM_THREADS="1")
    start = time.perf_counter()
    first = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=2400)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-5000:]
    took = time.perf_counter() - start
    for i, title in enumerate(recipe.TITLES.values(), 1):
        assert f"[{i}/8] {title}: done in" in first.stdout, first.stdout
    report = (out / "report.md").read_text()
    result = json.load(open(out / "pareto" / "pareto.json"))
    series = {p["series"] for p in result["points"]}
    assert series == {"Adaptive ECC (variable rate)", "edge-only", "Dynamic ECC", "cloud-only JPEG",
                      "cloud-only WebP", "cloud-only PNG"}, series  # PNG and edge-only: the ceilings
    rows = _table_rows(report)
    assert {r[1] for r in rows} == series and len(rows) == len(result["points"])
    assert all(re.fullmatch(r"\d+\.\d\d \[\d+\.\d\d, \d+\.\d\d\]", r[3]) for r in rows), rows  # AP [interval]
    assert "**Recommended point (no budget given)" in report and "![Pareto fronts](pareto/pareto.png)" in report
    ap = {p["series"]: p["metrics"]["AP"] for p in result["points"] if p["series"] in ("edge-only", "cloud-only PNG")}
    if ap["cloud-only PNG"] <= ap["edge-only"]:  # a few iterations teach the teacher little
        assert "The cloud teacher is not clearly better than the edge alone: train it longer" in report
    evals = re.findall(r"^\d+\. `(python -m eccentric_det.cli.train_net --eval-only --config-file \S+)`$", report,
                       re.M)
    sweeps = re.findall(r"^\d+\. `(python -m eccentric_det.cli.pareto --config-file \S+ "
                        r"--sweep (?:jpeg|webp|png)=\d+ --output \S+)`$", report, re.M)
    assert (len(evals), len(sweeps)) == (sum(not p["series"].startswith("cloud-only") for p in result["points"]),
                                         sum(p["series"].startswith("cloud-only") for p in result["points"]))
    assert all(len(c) < 200 for c in evals + sweeps), evals + sweeps  # pytest's long folder: "$OUT/..."
    out_line = re.search(r"^`OUT=(.*)`$", report, re.M)

    def reproduce(row):
        """The report's command of a row, with $OUT as the report sets it."""
        line = re.search(rf"^{row}\. `(.*)`$", report, re.M).group(1)
        return shlex.split(line.replace("$OUT", shlex.split(out_line.group(1))[0]) if out_line else line)

    assert not list(out.glob("*/model_0*.pth"))  # no intermediate checkpoint once a stage is done
    assert "(the distillation teacher: MODEL.ECCENTRIC.DISTILL.TEACHER_WEIGHTS)" in (out / "edge_kd" /
                                                                                     "1_train_net.log").read_text()
    assert (out / "checkpoints" / "offload_gate.pth").is_file() and (out / "pareto" / "pareto.png").is_file()
    fit = json.load(open(out / "gate" / "fit.json"))
    assert fit["dataset"] == "e2e_train_holdout"
    assert f"threshold {fit['threshold']:.4f}" in report or "NOT fitted" in report
    # the report's --eval-only command of an Adaptive ECC row reproduces its numbers (the sweep used every test image)
    row = next(i for i, p in enumerate(result["points"], 1) if p["series"] == "Adaptive ECC (variable rate)")
    command = reproduce(row)
    assert command[0] == "python" and "--eval-only" in command
    again = subprocess.run([sys.executable] + command[1:], cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    import yaml

    config = yaml.safe_load(open(command[command.index("--config-file") + 1]))
    got = json.load(open(os.path.join(config["OUTPUT_DIR"], "eccentric_metrics.json")))["metrics"]
    want = result["points"][row - 1]["metrics"]
    assert got["images"] == 4 and all(got[k] == pytest.approx(want[k], abs=1e-6) for k in ("AP", "bytes_mean")), \
        (got, want)
    # and the one-point sweep of the lossless ceiling's config, the teacher on PNG images
    row = next(i for i, p in enumerate(result["points"], 1) if p["series"] == "cloud-only PNG")
    command = reproduce(row)
    again = subprocess.run([sys.executable] + command[1:], cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    point = json.load(open(os.path.join(command[command.index("--output") + 1], "pareto.json")))["points"][0]
    assert point["opts"] == ["MODEL.WEIGHTS", str(out / "checkpoints" / "cloud_plus.pth")], point  # not the teacher
    got, want = point["metrics"], result["points"][row - 1]["metrics"]
    assert got["images"] == 4 and all(got[k] == pytest.approx(want[k], abs=1e-6) for k in ("AP", "bytes_mean")), \
        (got, want)

    stamps = {k: os.path.getmtime(out / k / "stage.json") for k in recipe.STAGES}
    start2 = time.perf_counter()
    second = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    for i, title in enumerate(recipe.TITLES.values(), 1):
        assert f"[{i}/8] {title}: skipped (outputs match)" in second.stdout, second.stdout
    assert {k: os.path.getmtime(out / k / "stage.json") for k in recipe.STAGES} == stamps

    # one later stage's override changed: that stage and those after it re-run, the earlier ones are kept
    teacher_ckpt = os.path.getmtime(out / "checkpoints" / "teacher.pth")
    changed = ["--", "adaptive_ecc_vr:SOLVER.BASE_LR", "0.002"]
    dry = subprocess.run(cmd + ["--dry-run"] + changed, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert "[4/8] " in dry.stdout and "would run (its commands changed)" in dry.stdout, dry.stdout
    third = subprocess.run(cmd + changed, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert third.returncode == 0, third.stdout[-3000:] + third.stderr[-3000:]
    titles = list(recipe.TITLES.values())
    for i, title in enumerate(titles[:3], 1):
        assert f"[{i}/8] {title}: skipped (outputs match)" in third.stdout, third.stdout
    for i, title in enumerate(titles[3:], 4):
        assert f"[{i}/8] {title}: done in" in third.stdout, third.stdout
    assert {k: os.path.getmtime(out / k / "stage.json") for k in recipe.STAGES[:3]} == \
        {k: stamps[k] for k in recipe.STAGES[:3]}
    assert os.path.getmtime(out / "checkpoints" / "teacher.pth") == teacher_ckpt
    print(f"first run {took:.0f} s, second run {time.perf_counter() - start2:.1f} s")


@pytest.mark.fashion_mnist
def test_quick_teacher_trunk_recipe_end_to_end(tmp_path):
    """--teacher-trunk with --quick: stages 2 and 6 run nothing, stage 4 trains the teacher's own early layers with
    the cloud (the adapted stem is no longer the teacher's), the report has Adaptive ECC and the cloud-only rows only
    and says why; the same command again skips every stage."""
    import torch

    from eccentric_det.data.fashion_det import FASHION_CLASSES, generate_fashion_det

    data = tmp_path / "data"
    generate_fashion_det(str(data), num_train=8, num_val=4, size=128, seed=1)
    ann, out = data / "annotations", tmp_path / "run"
    cmd = [sys.executable, os.path.join("tools", "train_eccentric.py"),
           "--register", "tt_train", "coco", str(ann / "fashion_det_train.json"), str(data / "train"),
           "--register", "tt_val", "coco", str(ann / "fashion_det_val.json"), str(data / "val"),
           "--train", "tt_train", "--test", "tt_val", "--num-classes", str(len(FASHION_CLASSES)),
           "--holdout", "0.25", "--quick", "--teacher-trunk", "--output", str(out)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    first = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=2400)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-5000:]
    assert "[2/8] edge trunk: the teacher's: done in" in first.stdout
    assert "[6/8] no gate (--teacher-trunk): done in" in first.stdout
    assert not list((out / "edge_kd").glob("*.log")) and not list((out / "gate").glob("*.log"))  # nothing ran
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["adaptive_ecc_vr.pth", "cloud_plus.pth",
                                                                       "teacher.pth"]
    result = json.load(open(out / "pareto" / "pareto.json"))
    assert {p["series"] for p in result["points"]} == {"Adaptive ECC (variable rate)", "cloud-only JPEG",
                                                       "cloud-only WebP", "cloud-only PNG"}
    assert all(p["metrics"]["edge_gflops"] > 0 for p in result["points"] if p["series"].startswith("Adaptive"))
    key = "backbone.bottom_up.stem.conv1.weight"
    teacher, adapted = (torch.load(out / "checkpoints" / f"{n}.pth", map_location="cpu", weights_only=False)["model"]
                        for n in ("teacher", "adaptive_ecc_vr"))
    assert adapted[key].shape == teacher[key].shape  # the teacher's width: its own layers
    assert not torch.equal(adapted[key].float(), teacher[key].float())  # trained with the cloud in stage 4
    report = (out / "report.md").read_text()
    assert "--teacher-trunk: the edge is the teacher's own early layers" in report
    assert "No edge-only row" not in report and "offload_gate" not in report
    second = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.stdout.count("skipped (outputs match)") == 8, second.stdout
