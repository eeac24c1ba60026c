"""A dataset of your own: DATASETS.REGISTER (COCO, VOC, held-out subsets) and its errors, the class-count check, the
teacher following the student's dataset, the EDGE.WEIGHTS rule and the series of --results in pareto sweeps."""
import glob
import importlib.util
import json
import os

import cv2
import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.modeling import build_model

import eccentric_det.data  # noqa: F401  (registers the datasets)
import eccentric_det.modeling  # noqa: F401  (registers the backbones, ROI heads, EccentricRCNN)
from eccentric_det.checkpoint import edge_prefixes, export_checkpoint, load_model, load_weights
from eccentric_det.config import CONFIG_DIR
from eccentric_det.tasks import get_eccentric_cfg
from eccentric_det.data import check_class_count, check_dataset_available, in_holdout, register_dataset
from eccentric_det.distill.teacher import build_teacher, teacher_cfg
from eccentric_det.evaluation.eccentric_evaluator import config_summary
from eccentric_det.reports.pareto import run_sweep

QUICK = "quick_schedules/fashion_det_{}_instant_test.yaml"
INFER = ["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "", "MODEL.ECCENTRIC.EDGE.WEIGHTS", "",
         "MODEL.ECCENTRIC.DISTILL.MODE", "task"]
CATEGORIES = [{"id": 1, "name": "cup"}, {"id": 3, "name": "bottle"}]  # ids need not be contiguous
CODEC = "backbone.bottom_up.codec."


def write_coco(root, num_images=12, categories=CATEGORIES, annotations=None, name="train.json"):
    """A tiny COCO-format dataset under ``root``: ``images/`` (32x32 JPEGs) and its annotation file."""
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(num_images):
        cv2.imwrite(str(images / f"{i:04d}.jpg"), rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    if annotations is None:
        annotations = [{"id": i + 1, "image_id": i + 1, "bbox": [4, 4, 16, 12], "area": 192, "iscrowd": 0,
                        "category_id": categories[i % len(categories)]["id"]} for i in range(num_images)]
    data = {"images": [{"id": i + 1, "file_name": f"{i:04d}.jpg", "height": 32, "width": 32}
                       for i in range(num_images)], "annotations": annotations, "categories": categories}
    (root / name).write_text(json.dumps(data))
    return root / name, images


def registered(entries, *opts):
    """A config of the quick Dynamic ECC model with ``entries`` as DATASETS.REGISTER (as a command line gives it)."""
    return get_eccentric_cfg(QUICK.format("dynamic_ecc"), INFER + ["DATASETS.REGISTER", str(entries)] + list(opts))


@pytest.fixture(scope="module")
def coco_entry(tmp_path_factory):
    """The DATASETS.REGISTER entry of ``own_coco`` (40 images, 2 categories with ids 1 and 3), registered."""
    json_file, images = write_coco(tmp_path_factory.mktemp("own"), num_images=40)
    entry = ["own_coco", "coco", str(json_file), str(images)]
    registered([entry])
    return entry


@pytest.fixture(scope="module")
def coco(coco_entry):
    return coco_entry[0]


# ------------------------------------------------------------------------------------------------ registration
def test_coco_registers_from_the_config_with_relative_paths(tmp_path, monkeypatch):
    json_file, images = write_coco(tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    entry = ["rel_coco", "coco", "data/train.json", "data/images"]
    cfg = registered([entry], "DATASETS.TRAIN", "('rel_coco',)", "DATASETS.TEST", "('rel_coco',)",
                     "MODEL.ROI_HEADS.NUM_CLASSES", 2)
    meta = MetadataCatalog.get("rel_coco")
    assert meta.thing_classes == ["cup", "bottle"] and meta.thing_dataset_id_to_contiguous_id == {1: 0, 3: 1}
    assert meta.json_file == str(json_file) and meta.image_root == str(images)  # absolute, against the cwd
    dicts = DatasetCatalog.get("rel_coco")
    assert len(dicts) == 12 and {a["category_id"] for d in dicts for a in d["annotations"]} == {0, 1}
    check_class_count(cfg)
    registered([entry])  # the same entry again: a no-op
    assert register_dataset(["rel_coco", "coco", str(json_file), str(images)]) == "rel_coco"  # the same paths
    with pytest.raises(ValueError, match=r"'rel_coco' is already registered as \['rel_coco', 'coco', .*train.json.*"
                                         r"give one of them another name"):
        registered([["rel_coco", "coco", "data/other.json", "data/images"]])
    with pytest.raises(ValueError, match="'fashion_det_train' is already registered by other code"):
        registered([["fashion_det_train", "coco", "data/train.json", "data/images"]])


def _bad_json(root, name, text):
    (root / name).write_text(text)
    return str(root / name)


@pytest.mark.parametrize("case, match", [
    ("shape", r"a coco entry takes 2 values after its kind \(json_file, image_root\), not \['.*train.json'\]"),
    ("not_a_list", r"not a list \[NAME, KIND, ...\]"),
    ("kind", r"unknown kind 'cocoo'; use one of coco, voc, subset"),
    ("no_json", r"annotation file .*missing.json does not exist; check the path \(relative paths are resolved against "
                r"the current directory"),
    ("no_images", r"image folder .*nowhere does not exist; check the path"),
    ("not_json", r"not_json.json is not valid JSON"),
    ("empty", r"empty.json lists no images; a COCO annotation file needs a non-empty 'images' list"),
    ("no_categories", r"no_categories.json lists no categories; a COCO annotation file needs a 'categories' list"),
    ("unknown_category", r"refer to category ids \[7\] that its 'categories' do not define \(ids \[1, 3\]\)"),
])
def test_bad_entries_are_refused_with_the_fix(tmp_path, case, match):
    json_file, images = write_coco(tmp_path)
    images = str(images)
    entry = {
        "shape": ["e_shape", "coco", str(json_file)],
        "not_a_list": "e_not_a_list",
        "kind": ["e_kind", "cocoo", str(json_file), images],
        "no_json": ["e_no_json", "coco", str(tmp_path / "missing.json"), images],
        "no_images": ["e_no_images", "coco", str(json_file), str(tmp_path / "nowhere")],
        "not_json": ["e_not_json", "coco", _bad_json(tmp_path, "not_json.json", "{'images': "), images],
        "empty": ["e_empty", "coco", _bad_json(tmp_path, "empty.json", json.dumps({"images": [],
                                                                                  "categories": CATEGORIES})), images],
        "no_categories": ["e_no_cat", "coco", _bad_json(tmp_path, "no_categories.json",
                                                        json.dumps({"images": [{"id": 1}]})), images],
        "unknown_category": ["e_unknown", "coco", str(write_coco(tmp_path, annotations=[
            {"id": 1, "image_id": 1, "bbox": [0, 0, 4, 4], "category_id": 7}], name="unknown.json")[0]), images],
    }[case]
    with pytest.raises(ValueError, match=r"DATASETS.REGISTER entry .*" + match):
        registered([entry])
    assert not isinstance(entry, list) or entry[0] not in DatasetCatalog.list()


def _write_voc(root, classes_files=()):
    """A Pascal VOC folder of two 32x24 images with one cat each (Detectron2 cannot read a one-line split file)."""
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True)
    ids = ["000001", "000002"]
    for i in ids:
        cv2.imwrite(str(root / "JPEGImages" / f"{i}.jpg"), np.zeros((24, 32, 3), np.uint8))
        (root / "Annotations" / f"{i}.xml").write_text(
            "<annotation><size><width>32</width><height>24</height></size><object><name>cat</name>"
            "<bndbox><xmin>2</xmin><ymin>3</ymin><xmax>20</xmax><ymax>15</ymax></bndbox></object></annotation>")
    (root / "ImageSets" / "Main" / "train.txt").write_text("".join(i + "\n" for i in ids))
    for c in classes_files:
        (root / "ImageSets" / "Main" / f"{c}_train.txt").write_text("".join(i + "  1\n" for i in ids))
    return root


def test_voc_registers_with_its_own_or_the_standard_classes(tmp_path):
    own = _write_voc(tmp_path / "VOC2007", classes_files=("dog", "cat"))
    standard = _write_voc(tmp_path / "VOCstd")
    registered([["own_voc", "voc", str(own), "train"], ["std_voc", "voc", str(standard), "train"]])
    assert MetadataCatalog.get("own_voc").thing_classes == ["cat", "dog"]
    assert MetadataCatalog.get("own_voc").year == 2007
    assert len(MetadataCatalog.get("std_voc").thing_classes) == 20
    record = DatasetCatalog.get("own_voc")[0]
    assert record["annotations"][0]["category_id"] == 0 and record["annotations"][0]["bbox"] == [1.0, 2.0, 20.0, 15.0]
    with pytest.raises(ValueError, match=r"ImageSets/Main/val.txt does not exist; a Pascal VOC folder holds"):
        registered([["val_voc", "voc", str(own), "val"]])


# ------------------------------------------------------------------------------------------------ subsets
def test_subset_split_is_disjoint_covering_and_stable(coco):
    registered([["own_fit", "subset", coco, "train", "0.25"], ["own_holdout", "subset", coco, "holdout", 0.25]])
    files = lambda name: [d["file_name"] for d in DatasetCatalog.get(name)]  # noqa: E731
    fit, holdout, every = files("own_fit"), files("own_holdout"), files(coco)
    assert fit and holdout and not set(fit) & set(holdout) and sorted(fit + holdout) == sorted(every)
    meta = MetadataCatalog.get("own_holdout")
    assert meta.thing_classes == ["cup", "bottle"] and meta.get("json_file") is None  # scored on its own images
    check_dataset_available("own_holdout")
    # stable: a hash of the file's base name (not Python's salted hash()), wherever the dataset lives
    names = [f"{i:04d}.jpg" for i in range(16)]
    assert [n for n in names if in_holdout(n, 0.5)] == ["0004.jpg", "0010.jpg", "0011.jpg", "0012.jpg"]
    assert [in_holdout("/elsewhere/" + n, 0.5) for n in names] == [in_holdout(n, 0.5) for n in names]
    many = [f"img_{i}.png" for i in range(2000)]
    assert 0.08 < np.mean([in_holdout(n, 0.1) for n in many]) < 0.12
    assert all(in_holdout(n, 0.2) for n in many if in_holdout(n, 0.1))  # a larger holdout contains a smaller one


def test_bad_subsets_are_refused(coco):
    with pytest.raises(ValueError, match="parent dataset 'no_such_set' is not registered; register the parent first"):
        registered([["orphan", "subset", "no_such_set", "holdout", "0.1"]])
    for part, fraction in (("test", "0.1"), ("holdout", "1.5"), ("holdout", "ten")):
        with pytest.raises(ValueError, match="a subset takes the part 'train' or 'holdout' and a fraction"):
            registered([["bad_subset", "subset", coco, part, fraction]])
    registered([["tiny_holdout", "subset", coco, "holdout", "1e-9"]])
    with pytest.raises(ValueError, match="holds none of its 40 images: choose a fraction"):
        DatasetCatalog.get("tiny_holdout")


# ------------------------------------------------------------------------------------------------ class count
def test_class_count_must_match_the_datasets(coco):
    check_class_count(get_eccentric_cfg(QUICK.format("adaptive_ecc")))  # FashionDet: 10 and 10
    check_class_count(get_eccentric_cfg(QUICK.format("dynamic_ecc"), ["MODEL.ROI_HEADS.NUM_CLASSES", 2,
                                                                      "DATASETS.TEST", f"('{coco}',)"]),
                      [coco])
    wrong = get_eccentric_cfg(QUICK.format("dynamic_ecc"), ["DATASETS.TEST", f"('{coco}',)"])
    with pytest.raises(ValueError, match=r"MODEL.ROI_HEADS.NUM_CLASSES is 10, but dataset 'own_coco' has 2 classes "
                                         r"\(cup, bottle\).*Set MODEL.ROI_HEADS.NUM_CLASSES 2"):
        check_class_count(wrong)
    check_class_count(wrong, ["fashion_det_val"])  # evaluation checks the dataset it evaluates only
    check_class_count(get_eccentric_cfg("quick_schedules/cls_adaptive_ecc_instant_test.yaml"))  # classification


def test_every_shipped_config_passes_the_class_count_check():
    for path in glob.glob(os.path.join(CONFIG_DIR, "**", "*.yaml"), recursive=True):
        check_class_count(get_eccentric_cfg(os.path.relpath(path, CONFIG_DIR)))


def test_pareto_tool_refuses_a_class_count_mismatch_before_evaluating(coco, tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("pareto_tool", os.path.join(os.path.dirname(__file__), "..",
                                                                              "tools", "pareto.py"))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    out = tmp_path / "pareto"
    assert tool.main(["--config-file", QUICK.format("dynamic_ecc"), "--sweep", "edge_only",
                                      "--dataset", coco, "--output", str(out)]) == 2
    assert "NUM_CLASSES is 10, but dataset 'own_coco' has 2 classes" in capsys.readouterr().err
    assert not out.exists()


# ------------------------------------------------------------------------------------------------ teacher
def test_teacher_follows_the_student_dataset_and_teacher_opts(coco_entry):
    teacher_file = QUICK.format("cloud_teacher")
    student = get_eccentric_cfg(QUICK.format("adaptive_ecc"), ["MODEL.ROI_HEADS.NUM_CLASSES", 2, "DATASETS.REGISTER",
                                                               str([coco_entry]), "DATASETS.TRAIN", "('own_coco',)"])
    assert teacher_cfg(teacher_file).MODEL.ROI_HEADS.NUM_CLASSES == 10  # its file alone
    assert teacher_cfg(teacher_file, "", student).DATASETS.REGISTER == [coco_entry]
    teacher = build_teacher(teacher_file, "", "cpu", student=student)
    assert teacher.roi_heads.num_classes == 2 and teacher.roi_heads.box_predictor.cls_score.out_features == 3
    assert not any(p.requires_grad for p in teacher.parameters())
    student.MODEL.ECCENTRIC.DISTILL.TEACHER_OPTS = ["MODEL.ROI_HEADS.NUM_CLASSES", 3, "MODEL.FPN.OUT_CHANNELS", 64]
    cfg = teacher_cfg(teacher_file, "t.pth", student)
    assert (cfg.MODEL.ROI_HEADS.NUM_CLASSES, cfg.MODEL.FPN.OUT_CHANNELS, cfg.MODEL.WEIGHTS) == (3, 64, "t.pth")
    student.DATASETS.REGISTER = [["teacher_set", "coco", "missing.json", "."]]
    with pytest.raises(ValueError, match="teacher_set.*missing.json"):  # the student's datasets reach the teacher
        teacher_cfg(teacher_file, "", student)
    student.MODEL.ECCENTRIC.DISTILL.TEACHER_OPTS = ["MODEL.FPN.OUT_CHANNELS"]
    with pytest.raises(ValueError, match="TEACHER_OPTS must be KEY VALUE pairs"):
        teacher_cfg(teacher_file, "", student)


# ------------------------------------------------------------------------------------------------ EDGE.WEIGHTS
def _save(state, path):
    torch.save({"model": state}, path)
    return str(path)


@pytest.fixture(scope="module")
def models():
    """Two quick Dynamic ECC models with different random weights: a "trained" one and a "raw edge training" one
    (the config, both state dicts and the names an edge holds)."""
    cfg = get_eccentric_cfg(QUICK.format("dynamic_ecc"), INFER)
    torch.manual_seed(1)
    trained = build_model(cfg)
    torch.manual_seed(2)
    raw = build_model(cfg)
    return cfg, trained.state_dict(), raw.state_dict(), edge_prefixes(trained)


def _load(cfg, weights, edge, complete=True):
    cfg = cfg.clone()
    cfg.MODEL.WEIGHTS, cfg.MODEL.ECCENTRIC.EDGE.WEIGHTS = weights, edge
    torch.manual_seed(3)
    model = build_model(cfg)
    load_weights(model, cfg, complete=complete)
    return model.state_dict()


def test_edge_weights_never_replace_a_trained_codec(models, tmp_path):
    cfg, trained, raw, edge = models
    full, raw_file = _save(trained, tmp_path / "adapted.pth"), _save(raw, tmp_path / "edge_kd_raw.pth")
    changed = [k for k in raw if k.startswith(CODEC) and k.startswith(edge) and not torch.equal(raw[k], trained[k])]
    assert any(k.startswith(CODEC + "g_a.") for k in changed)
    with pytest.raises(ValueError, match=rf"edge_kd_raw.pth \(MODEL.ECCENTRIC.EDGE.WEIGHTS\) would replace "
                                         rf"{len(changed)} codec tensors .* "
                                         rf"MODEL.ECCENTRIC.EDGE.WEIGHTS \"\"; .*tools/export_checkpoint.py .* --keep "
                                         rf"backbone.bottom_up.stem backbone.bottom_up.res2 edge_detector"):
        _load(cfg, full, raw_file)


def test_edge_weights_over_a_model_in_the_allowed_cases(models, tmp_path):
    cfg, trained, raw, _ = models
    full = _save(trained, tmp_path / "adapted.pth")
    # Dynamic ECC: a fitted gate over the adapted model
    gate = _save({k: v for k, v in raw.items() if k.startswith("offload_gate.")}, tmp_path / "gate.pth")
    loaded = _load(cfg, full, gate)
    assert all(torch.equal(loaded[k], raw[k] if k.startswith("offload_gate.") else trained[k]) for k in trained)
    # Adaptive ECC training: a cloud teacher (no codec) with an edge checkpoint that also holds a codec
    teacher = _save({k: v for k, v in trained.items() if not k.startswith(CODEC)}, tmp_path / "teacher.pth")
    loaded = _load(cfg, teacher, _save(raw, tmp_path / "edge.pth"), complete=False)
    assert all(torch.equal(loaded[k], raw[k]) for k in raw if k.startswith(CODEC + "g_a."))
    assert all(torch.equal(loaded[k], trained[k]) for k in trained if k.startswith("roi_heads."))
    # the model's own edge, exported in fp16, over its fp32 training output: the same codec
    export_checkpoint(trained, str(tmp_path / "exported.pth"))
    _load(cfg, full, str(tmp_path / "exported.pth"))


def test_edge_weights_never_replace_a_trained_edge_at_evaluation(models, tmp_path):
    """An edge trained on after its export (jointly adapted): at --eval-only its stale export as EDGE.WEIGHTS is
    refused; at training it initialises the edge as before."""
    cfg, trained, raw, edge = models
    full = _save(trained, tmp_path / "joint.pth")
    stale = _save({k: v for k, v in raw.items() if k.startswith(edge) and not k.startswith(CODEC)}, tmp_path / "old.pth")
    with pytest.raises(ValueError, match=r"old.pth \(MODEL.ECCENTRIC.EDGE.WEIGHTS\) would replace \d+ edge tensors that "
                                         r".*joint.pth \(MODEL.WEIGHTS\) holds with other values .*"
                                         r"Set MODEL.ECCENTRIC.EDGE.WEIGHTS \"\""):
        _load(cfg, full, stale)
    loaded = _load(cfg, full, stale, complete=False)
    assert all(torch.equal(loaded[k], raw[k]) for k in raw if k.startswith(edge) and not k.startswith(CODEC))
    assert torch.equal(_load(cfg, full, "")["backbone.bottom_up.stem.conv1.weight"],
                       trained["backbone.bottom_up.stem.conv1.weight"])


def test_weights_of_another_class_count_fine_tune_but_never_evaluate(tmp_path):
    """A teacher trained on 10 classes (say COCO's 80) initialises a 2-class model for training: everything but the
    class-dependent predictor layers, which start fresh; evaluating it as it is stays refused."""
    teacher = get_eccentric_cfg("quick_schedules/fashion_det_cloud_teacher_instant_test.yaml", INFER)
    torch.manual_seed(1)
    ten = build_model(teacher).state_dict()
    path = _save(ten, tmp_path / "ten_classes.pth")
    mine = get_eccentric_cfg("quick_schedules/fashion_det_cloud_teacher_instant_test.yaml",
                             INFER + ["MODEL.WEIGHTS", path, "MODEL.ROI_HEADS.NUM_CLASSES", 2])
    torch.manual_seed(2)
    model = build_model(mine)
    fresh = {k: v.clone() for k, v in model.state_dict().items()}
    loaded = load_weights(model, mine)
    got = model.state_dict()
    predictor = [k for k in got if "box_predictor." in k]
    assert predictor and all(got[k].shape != ten[k].shape and torch.equal(got[k], fresh[k]) for k in predictor)
    assert set(loaded) == set(got) - set(predictor)
    assert all(torch.equal(got[k], ten[k]) for k in loaded)
    with pytest.raises(ValueError, match=r"ten_classes.pth \(MODEL.WEIGHTS\) does not match the config: .*"
                                         r"roi_heads.box_predictor.cls_score.weight: \(11, .*\) in the file, \(3, "):
        load_model(mine)


def test_committed_fashion_det_models_still_load():
    for name, gate in (("dynamic_ecc_vr", "offload_gate_vr.pth"), ("dynamic_region_ecc", "region_gate_vr.pth")):
        dynamic = get_eccentric_cfg(f"FashionDet/{name}.yaml", ["MODEL.DEVICE", "cpu"])  # adapted model + fitted gate
        assert dynamic.MODEL.ECCENTRIC.EDGE.WEIGHTS.endswith(gate)
        load_model(dynamic)
    adaptive = get_eccentric_cfg("FashionDet/adaptive_ecc.yaml", ["MODEL.DEVICE", "cpu"])  # cloud teacher + edge_kd
    assert adaptive.MODEL.ECCENTRIC.EDGE.WEIGHTS.endswith("edge_kd.pth")
    assert any(k.startswith("edge_detector.") for k in load_weights(build_model(adaptive), adaptive))


# ------------------------------------------------------------------------------------------------ pareto --results
def _eval_only_run(root, name, cfg, ap, bytes_mean, dataset="own_val"):
    folder = root / name
    folder.mkdir()
    (folder / "eccentric_metrics.json").write_text(json.dumps({
        "format": 1, "dataset": dataset, "config": config_summary(cfg), "images": [{"image_id": i} for i in range(3)],
        "metrics": {"AP": ap, "bytes_mean": bytes_mean, "edge_gflops": 0.1, "offload_rate": 1.0}}))
    return str(folder)


def test_results_of_single_runs_get_their_series_and_a_bd_rate(tmp_path):
    quick = lambda name, *opts: get_eccentric_cfg(QUICK.format(name), INFER + list(opts))  # noqa: E731
    cloud = quick("cloud_teacher")
    assert config_summary(cloud) == {"meta_architecture": "GeneralizedRCNN", "weights": "",
                                     "input_size_test": [128, 128], "model": "cloud-only"}
    sweep = tmp_path / "jpeg_sweep"  # an earlier sweep's JPEG anchor
    (sweep / "points").mkdir(parents=True)
    anchor = [_eval_only_run(sweep / "points", f"jpeg{q}", cloud, ap, b) for q, ap, b in
              ((20, 10.0, 400.0), (50, 20.0, 800.0), (90, 30.0, 1600.0))]
    (sweep / "pareto.json").write_text(json.dumps({"points": [
        {"series": "cloud-only JPEG", "label": os.path.basename(p), "config_file": "", "opts": [], "output_dir": p}
        for p in anchor]}))
    runs = [_eval_only_run(tmp_path, "adaptive_l1", quick("adaptive_ecc"), 12.0, 200.0),
            _eval_only_run(tmp_path, "adaptive_l0.25", quick("adaptive_ecc"), 25.0, 400.0),
            _eval_only_run(tmp_path, "dynamic_t0.5", quick("dynamic_ecc"), 20.0, 300.0),
            _eval_only_run(tmp_path, "edge", quick("dynamic_ecc", "MODEL.ECCENTRIC.OFFLOAD.POLICY", "never"), 5.0, 0),
            _eval_only_run(tmp_path, "independent", quick("independent_ecc"), 28.0, 1500.0),
            _eval_only_run(tmp_path, "cloud", cloud, 32.0, 0)]
    result = run_sweep("", {}, "own_val", output_dir=str(tmp_path / "out"), results=[str(sweep)] + runs)
    assert [(p["series"], p["label"]) for p in result["points"][3:]] == [
        ("Adaptive ECC", "adaptive_l1"), ("Adaptive ECC", "adaptive_l0.25"), ("Dynamic ECC", "dynamic_t0.5"),
        ("edge-only", "edge"), ("Independent ECC", "independent"), ("cloud-only", "cloud")]
    bd = result["bd_rate"]["Adaptive ECC"]
    assert isinstance(bd, float) and bd < 0  # fewer bytes than JPEG at every AP
    assert result["bd_rate"]["Dynamic ECC"] == "needs at least 2 points that send bytes"
