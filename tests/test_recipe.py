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
        if line.startswith("[") and "/7] " in line:
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
    return os.path.basename(command[1])


# ------------------------------------------------------------------------------------------------ the plan
def test_dry_run_prints_every_stage_with_its_checkpoint_hand_offs(own, tmp_path, capsys):
    out = tmp_path / "run"
    train, val, _ = own
    stages, text = dry_run(capsys, _argv(own, out, "--teacher-weights", "coco_init.pth", "--dry-run",
                                         "MODEL.DEVICE", "cpu", "teacher:SOLVER.MAX_ITER", "7"))
    assert sorted(stages) == list(range(1, 8)) and all("would run" in s["line"] for s in stages.values())
    assert "[3/7] codec pre-training: would run" in text
    assert not out.exists()  # nothing written
    ck = lambda name: str(out / "checkpoints" / name)  # noqa: E731
    teacher, edge, pre, adapt, gate, pareto = (stages[i]["commands"] for i in range(1, 7))

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
    assert teacher[1][2:] == [str(out / "teacher" / "model_final.pth"), ck("teacher.pth")]

    # 2. edge KD from that teacher; only the edge is exported
    e = edge[0]
    assert value(e, "--config-file") == "configs/FashionDet/edge_kd.yaml"
    assert value(e, "MODEL.ECCENTRIC.DISTILL.TEACHER_WEIGHTS") == ck("teacher.pth")
    assert value(e, "MODEL.ECCENTRIC.DISTILL.TEACHER_CONFIG") == "configs/FashionDet/cloud_teacher.yaml"
    assert "SOLVER.MAX_ITER" not in e  # teacher: overrides reach that stage only
    assert edge[1][2:] == [str(out / "edge_kd" / "model_final.pth"), ck("edge_kd.pth"), "--keep",
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
    assert adapt[1][2:] == [os.path.join(value(a, "OUTPUT_DIR"), "model_final.pth"), ck("adaptive_ecc_vr.pth")]

    # 5. the gate fitted on the held-out images, never seen in training
    (g,) = gate
    assert tool_of(g) == "fit_offload_gate.py" and value(g, "--weights") == ck("adaptive_ecc_vr.pth")
    assert value(g, "--dataset") == f"{train}_holdout" and value(g, "--output") == ck("offload_gate.pth")
    assert value(g, "MODEL.ECCENTRIC.DISTILL.TEACHER_CONFIG") == "configs/FashionDet/cloud_teacher.yaml"

    # 6. the sweeps: rates + edge-only + image codecs on the adapted model; thresholds with the fitted gate
    sweep_a, sweep_b, merge = pareto
    assert {"rates=all", "edge_only"} <= set(sweep_a) and any(t.startswith("jpeg=") for t in sweep_a)
    assert any(t.startswith("webp=") for t in sweep_a) and value(sweep_a, "--dataset") == val
    assert value(sweep_a, "MODEL.WEIGHTS") == ck("adaptive_ecc_vr.pth")
    assert value(sweep_a, "MODEL.ECCENTRIC.EDGE.WEIGHTS") == "" and value(sweep_a, "--cloud-weights") == ck(
        "teacher.pth")
    assert value(sweep_b, "--sweep").startswith("thresholds=<threshold of stage 5>,")
    assert value(sweep_b, "MODEL.WEIGHTS") == ck("adaptive_ecc_vr.pth")
    assert value(sweep_b, "MODEL.ECCENTRIC.EDGE.WEIGHTS") == ck("offload_gate.pth")
    assert merge[merge.index("--results") + 1:merge.index("--output")] == [value(sweep_a, "--output"),
                                                                           value(sweep_b, "--output")]
    assert value(merge, "--output") == str(out / "pareto")
    assert f"write {out / 'report.md'}" in text


def test_quick_dry_run_takes_the_quick_schedules(own, tmp_path, capsys):
    out = tmp_path / "quick"
    stages, text = dry_run(capsys, _argv(own, out, "--quick", "--holdout", "0.25", "--dry-run"))
    assert value(stages[1]["commands"][0], "--config-file").endswith(
        "quick_schedules/fashion_det_cloud_teacher_instant_test.yaml")
    assert value(stages[2]["commands"][0], "--config-file").endswith(
        "quick_schedules/fashion_det_edge_kd_instant_test.yaml")
    assert value(stages[3]["commands"][0], "--config-file") == str(out / "configs" / "codec_pretrain_quick.yaml")
    assert value(stages[4]["commands"][0], "--config-file") == str(out / "configs" / "adaptive_ecc_vr_quick.yaml")
    assert 'MODEL.ECCENTRIC.CODEC.RATE_WEIGHTS [0.1, 1.0] MODEL.ECCENTRIC.DISTILL.MODE "reconstruct"' in text
    assert value(stages[6]["commands"][0], "--max-images") == "4"


@pytest.mark.parametrize("case, match", [
    ("unregistered", r"dataset 'nowhere' \(--train\) is not registered: register it with --register nowhere coco"),
    ("classes", r"--num-classes is 5, but dataset '.*' \(--train\) has 2 classes \(cup, bottle\): pass "
                r"--num-classes 2"),
    ("config", r"config file 'configs/FashionDet/no_such.yaml' \(--edge-config\) not found"),
    ("holdout", r"--holdout 0.01 holds out 0 of the 40 images"),
    ("reserved", r"the recipe sets MODEL.WEIGHTS itself; use --teacher-weights"),
    ("register", r"--register .* a coco entry takes 2 values after its kind .*config overrides go last"),
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
    assert TOOL.main(_argv(own, out, "--recall", "0.8", "--dry-run")) == 2
    err = capsys.readouterr().err
    assert "holds the run of another command line (it differs in: recall)" in err
    assert "To resume that run, repeat its command:" in err and shlex.join(first) in err
    assert f"rm -r {out}" in err
    other = tmp_path / "stranger"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert TOOL.main(_argv(own, other, "--dry-run")) == 2
    assert "is not empty and holds no recipe.json" in capsys.readouterr().err


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
    assert lines[-1] == "[3/7] codec pre-training: skipped (outputs match)" and runs(tmp_path) == 1
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
    with pytest.raises(RecipeError, match=r"(?s)\[1/7\] cloud teacher failed \(exit status 3\).*run the same command "
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
    rows = [line for line in text.splitlines() if line.startswith("| ") and line[2:3].isdigit()]
    assert [r.split(" | ")[2] for r in rows] == [p["label"] if p["label"] != "threshold 0.5" else
                                                 "threshold 0.5 **(recommended)**" for p in POINTS]
    assert "| 6 | cloud-only JPEG | jpeg 90 | 24.00 | 1,600 | 1.00 | 0.000 | 1.900 |  |" in text
    assert "| 1 | Adaptive ECC (variable rate) | rate 0 | 23.50 | 500 | 1.00 | 0.200 | 1.900 | b |" in text
    assert "![Pareto fronts](pareto/pareto.png)" in text
    assert "| Adaptive ECC (variable rate) | -42.2% |" in text and "| Dynamic ECC | needs at least 2" in text
    assert "Reproduce" not in text  # no sweep of this recipe: no commands to give


def test_report_gives_the_command_of_each_row(tmp_path):
    sweep = tmp_path / "pareto" / "sweeps" / "adaptive"
    points = [dict(POINTS[0], config_file="adapt.yaml", opts=["MODEL.ECCENTRIC.CODEC.RATE", 0.0],
                   output_dir=str(sweep / "points" / "00_rate_0")),
              dict(POINTS[5], config_file="cloud.yaml", opts=["MODEL.WEIGHTS", "t.pth"],
                   output_dir=str(sweep / "points" / "01_jpeg_90")),
              dict(POINTS[3], config_file="adapt.yaml", output_dir=str(tmp_path / "elsewhere" / "02_edge"))]
    (tmp_path / "pareto" / "pareto.json").parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / "pareto" / "pareto.json").write_text(json.dumps({"dataset": "my_val", "images": 6, "bd_rate": {},
                                                                 "points": points}))
    opts = ["MODEL.WEIGHTS", "a.pth", "MODEL.ECCENTRIC.EDGE.WEIGHTS", ""]
    context = {"train": "my_train", "train_set": "my_train_fit", "gate_set": "my_train_holdout", "test": "my_val",
               "num_classes": 2, "sweep_opts": {str(sweep): opts}, "eval_dir": "out/eval", "quick": False,
               "adapt_config": "adapt.yaml", "cloud_config": "cloud.yaml", "teacher": "t.pth", "eval_images": None,
               "command": "python tools/train_eccentric.py ...", "seconds": {"teacher": 75.0},
               "fit": {"threshold": 0.3431, "fitted": True, "dataset": "my_train_holdout", "recall_target": 0.9},
               "checkpoints": {"teacher": "t.pth", "offload_gate": "g.pth"}}
    write_report(str(tmp_path / "pareto" / "pareto.json"), str(tmp_path / "report.md"), context=context)
    text = (tmp_path / "report.md").read_text()
    train_net, pareto = recipe._tool("train_net.py"), recipe._tool("pareto.py")
    assert (f"1. `python {train_net} --eval-only --config-file adapt.yaml MODEL.WEIGHTS a.pth "
            f"MODEL.ECCENTRIC.EDGE.WEIGHTS '' MODEL.ECCENTRIC.CODEC.RATE 0.0 "
            f"OUTPUT_DIR out/eval/adaptive/00_rate_0`") in text
    assert (f"2. `python {pareto} --config-file adapt.yaml --sweep jpeg=90 --cloud-config cloud.yaml "
            f"--cloud-weights t.pth --dataset my_val --output out/eval/adaptive/01_jpeg_90 -- "
            f"MODEL.WEIGHTS a.pth") in text
    assert "\n3. `" not in text  # a point from outside the recipe's sweeps has no command
    assert "* offload_gate: `g.pth` (threshold 0.3431, fitted on `my_train_holdout` for recall 0.9)" in text
    assert "Stage times: teacher 1m15s." in text


# ------------------------------------------------------------------------------------------------ end to end
@pytest.mark.fashion_mnist
def test_quick_recipe_end_to_end_then_skips_every_stage(tmp_path):
    """The whole command with --quick on a generated COCO-format dataset: every stage runs, report.md lists every
    series with its --eval-only command; the same command again skips all seven stages."""
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
        assert f"[{i}/7] {title}: done in" in first.stdout, first.stdout
    report = (out / "report.md").read_text()
    result = json.load(open(out / "pareto" / "pareto.json"))
    series = {p["series"] for p in result["points"]}
    assert series == {"Adaptive ECC (variable rate)", "edge-only", "Dynamic ECC", "cloud-only JPEG",
                      "cloud-only WebP"}, series
    for s in series:
        assert f"| {s} |" in report
    assert "**Recommended point (no budget given)" in report and "![Pareto fronts](pareto/pareto.png)" in report
    evals = re.findall(r"^\d+\. `python tools/train_net.py --eval-only .*OUTPUT_DIR .*`$", report, re.M)
    sweeps = re.findall(r"^\d+\. `python tools/pareto.py .*--sweep (?:jpeg|webp)=\d+ .*`$", report, re.M)
    assert (len(evals), len(sweeps)) == (sum(not p["series"].startswith("cloud-only") for p in result["points"]),
                                         sum(p["series"].startswith("cloud-only") for p in result["points"]))
    assert (out / "checkpoints" / "offload_gate.pth").is_file() and (out / "pareto" / "pareto.png").is_file()
    fit = json.load(open(out / "gate" / "fit.json"))
    assert fit["dataset"] == "e2e_train_holdout"
    assert f"threshold {fit['threshold']:.4f}" in report or "NOT fitted" in report
    # the report's --eval-only command of an Adaptive ECC row reproduces its numbers (the sweep used every test image)
    row = next(i for i, p in enumerate(result["points"], 1) if p["series"] == "Adaptive ECC (variable rate)")
    command = shlex.split(re.search(rf"^{row}\. `(.*)`$", report, re.M).group(1))
    assert command[0] == "python" and "--eval-only" in command
    again = subprocess.run([sys.executable] + command[1:], cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    got = json.load(open(os.path.join(command[command.index("OUTPUT_DIR") + 1], "eccentric_metrics.json")))["metrics"]
    want = result["points"][row - 1]["metrics"]
    assert got["images"] == 4 and all(got[k] == pytest.approx(want[k], abs=1e-6) for k in ("AP", "bytes_mean")), \
        (got, want)

    stamps = {k: os.path.getmtime(out / k / "stage.json") for k in recipe.STAGES}
    start2 = time.perf_counter()
    second = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    for i, title in enumerate(recipe.TITLES.values(), 1):
        assert f"[{i}/7] {title}: skipped (outputs match)" in second.stdout, second.stdout
    assert {k: os.path.getmtime(out / k / "stage.json") for k in recipe.STAGES} == stamps
    print(f"first run {took:.0f} s, second run {time.perf_counter() - start2:.1f} s")
