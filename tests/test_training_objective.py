"""Detection and classification share the training layer (:mod:`eccentric_det.distill.objective`): the same mode and
teacher checks, the same rate term, the same DISTILL.FREEZE and the same frozen teacher serve both tasks' models."""
import pytest
import torch
from detectron2.modeling import build_model

from eccentric_det.classification import SplitTimmClassifier
from eccentric_det.distill.objective import TrainingObjective, freeze_parameters, keep_frozen_in_eval
from eccentric_det.modeling.meta_arch.training import EccentricLosses
from eccentric_det.tasks import get_eccentric_cfg
from eccentric_det.training.classification import ClsLosses

QUICK = "quick_schedules/{}_instant_test.yaml"
TASKS = [(EccentricLosses, "fashion_det_adaptive_ecc"), (ClsLosses, "cls_adaptive_ecc")]


def _cfg(config, *opts):
    return get_eccentric_cfg(QUICK.format(config), list(opts))


def test_one_freezing_function_freezes_each_tasks_named_groups():
    """DISTILL.FREEZE of each quick config (detection: the edge trunk, edge detector and gate; classification: the
    edge half) freezes exactly the parameters under its prefixes, and keeps those modules in eval mode."""
    assert EccentricLosses.freeze_parameters is ClsLosses.freeze_parameters is TrainingObjective.freeze_parameters
    det_cfg, cls_cfg = _cfg("fashion_det_adaptive_ecc"), _cfg("cls_adaptive_ecc")
    torch.manual_seed(0)
    det = build_model(det_cfg)  # EccentricRCNN freezes DISTILL.FREEZE as it is built (through its EccentricLosses)
    cls = SplitTimmClassifier(cls_cfg)  # the classification trainer freezes it before building its optimiser
    before = {n for n, p in det.named_parameters() if not p.requires_grad}
    expected = {  # the groups of DISTILL.FREEZE that hold parameters (the offload gate holds buffers only)
        "detection": {"backbone.bottom_up.stem", "backbone.bottom_up.res2", "edge_detector"},
        "classification": {"edge_half."}}
    for task, cfg, model in (("detection", det_cfg, det), ("classification", cls_cfg, cls)):
        prefixes = tuple(cfg.MODEL.ECCENTRIC.DISTILL.FREEZE)
        names = [n for n, _ in model.named_parameters()]
        groups = {n for n in names if n.startswith(prefixes)}
        assert groups and len(groups) < len(names)
        assert {p for p in prefixes if any(n.startswith(p) for n in groups)} == expected[task]
        assert set(freeze_parameters(model, prefixes)) == groups
        fixed = {n for n, p in model.named_parameters() if not p.requires_grad}
        assert groups <= fixed and all(n.endswith(".quantiles") for n in fixed - groups)  # the codec's own fixed ones
        model.train()
        keep_frozen_in_eval(model, prefixes)
        modes = {n: m.training for n, m in model.named_modules() if n}
        assert not any(t for n, t in modes.items() if n.startswith(prefixes))
        assert any(t for n, t in modes.items() if not n.startswith(prefixes))
    assert before == {n for n, p in det.named_parameters() if not p.requires_grad}  # frozen when built, no more
    assert freeze_parameters(cls, []) == []


@pytest.mark.parametrize("objective,config", TASKS, ids=["detection", "classification"])
def test_both_objectives_check_the_mode_and_teacher_alike(objective, config):
    with pytest.raises(ValueError, match=r"DISTILL.MODE must be one of \('task', 'kd', 'adapt'"):
        objective(_cfg(config, "MODEL.ECCENTRIC.DISTILL.MODE", "distil"))
    with pytest.raises(ValueError, match=r"DISTILL.MODE 'adapt' needs a teacher: set .*TEACHER_CONFIG"):
        objective(_cfg(config, "MODEL.ECCENTRIC.DISTILL.TEACHER_CONFIG", ""))
    task = objective(_cfg(config, "MODEL.ECCENTRIC.DISTILL.MODE", "task", "MODEL.ECCENTRIC.DISTILL.EDGE_LOSS_WEIGHT",
                          0.25))
    assert task.teacher is None and task.w_edge == 1.0  # no teacher in task mode; the edge's losses count whole
    adapt = objective(_cfg(config, "MODEL.ECCENTRIC.DISTILL.EDGE_LOSS_WEIGHT", 0.0))
    assert adapt.w_edge == 0.0 and adapt.freeze == tuple(adapt._cfg.MODEL.ECCENTRIC.DISTILL.FREEZE)


def test_both_objectives_weigh_the_rate_alike():
    """lambda x bits per pixel, or a variable-rate codec's per-image weights, from the same likelihoods."""
    likelihoods = {"y": torch.full((2, 1, 2, 2), 0.5), "z": torch.full((2, 1, 1, 1), 0.25)}  # 4 + 2 bits per image
    for objective, config in TASKS:
        obj = objective(_cfg(config, "MODEL.ECCENTRIC.DISTILL.MODE", "task", "MODEL.ECCENTRIC.CODEC.RATE_WEIGHT", 0.5))
        loss, bpp = obj.rate_term(likelihoods, 24)
        assert float(bpp) == pytest.approx(12 / 24) and float(loss) == pytest.approx(0.5 * 12 / 24)
        loss, bpp = obj.rate_term(likelihoods, 24, torch.tensor([1.0, 3.0]))
        assert float(bpp) == pytest.approx(12 / 24) and float(loss) == pytest.approx((6 + 18) / 24)
        assert obj.sample_rates(None, 2) == (None, None)  # one rate: no per-image levels


def test_classification_teacher_is_frozen_as_detections():
    losses = ClsLosses(_cfg("cls_adaptive_ecc"))
    assert losses.teacher is losses.teacher and not losses.teacher.training
    assert not any(p.requires_grad for p in losses.teacher.parameters())


@pytest.mark.parametrize("objective,config", TASKS, ids=["detection", "classification"])
def test_distillation_decay_is_a_half_cosine_over_the_run_in_adaptation_only(objective, config):
    decay = ("MODEL.ECCENTRIC.DISTILL.DECAY", "cosine", "SOLVER.MAX_ITER", 100)
    obj = objective(_cfg(config, *decay))
    scales = []
    for it in (0, 50, 100, 150):
        obj.iteration = it
        scales.append(obj.distill_scale)
    assert scales == pytest.approx([1.0, 0.5, 0.0, 0.0])
    kept = objective(_cfg(config, "SOLVER.MAX_ITER", 100))
    kept.iteration = 100
    assert kept.distill_scale == 1.0  # DISTILL.DECAY "none"
    kd = objective(_cfg(config, *decay, "MODEL.ECCENTRIC.DISTILL.MODE", "task"))
    kd.iteration = 100
    assert kd.distill_scale == 1.0  # only adaptation's distillation decays
    with pytest.raises(ValueError, match=r"DISTILL.DECAY must be one of \('none', 'cosine'\)"):
        objective(_cfg(config, "MODEL.ECCENTRIC.DISTILL.DECAY", "linear"))


def test_decayed_distillation_leaves_the_task_losses_and_ends_at_zero():
    """Classification's adaptation losses at the first and the last iteration of a decayed run: the distillation terms
    go from their full value to 0, the task loss does not move."""
    cfg = _cfg("cls_adaptive_ecc", "MODEL.ECCENTRIC.DISTILL.DECAY", "cosine", "SOLVER.MAX_ITER", 10)
    torch.manual_seed(0)
    model, losses = SplitTimmClassifier(cfg), ClsLosses(cfg)
    model.eval()  # no BatchNorm update between the two calls
    images, labels = torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])
    first = {k: v.detach() for k, v in losses(model, images, labels).items()}
    losses.iteration = 10
    last = {k: v.detach() for k, v in losses(model, images, labels).items()}
    assert float(first["loss_kd"]) > 0 and float(first["loss_feature_match"]) > 0
    assert float(last["loss_kd"]) == 0 and float(last["loss_feature_match"]) == 0
    assert float(last["loss_cls"]) == pytest.approx(float(first["loss_cls"]))


def test_detection_decay_follows_the_trainers_iteration():
    """EccentricRCNN's adaptation losses inside Detectron2's EventStorage: at the run's last iteration the decayed
    distillation terms are 0 and the task and rate losses are not."""
    from detectron2.structures import Boxes, Instances
    from detectron2.utils.events import EventStorage

    from .helpers import image_input

    cfg = _cfg("fashion_det_adaptive_ecc", "MODEL.ECCENTRIC.DISTILL.DECAY", "cosine", "SOLVER.MAX_ITER", 10)
    torch.manual_seed(0)
    model = build_model(cfg)
    model.train()
    sample = image_input(128, 128)
    sample["instances"] = Instances((128, 128), gt_boxes=Boxes(torch.tensor([[20.0, 30.0, 90.0, 100.0]])),
                                    gt_classes=torch.tensor([3]))
    with EventStorage(start_iter=10):
        losses = model([sample])
    assert float(losses["loss_feature_match"]) == 0 and float(losses["loss_kd_logits"]) == 0
    assert float(losses["loss_cls"]) > 0 and float(losses["loss_rate"]) > 0
    with EventStorage(start_iter=0):
        assert float(model([sample])["loss_feature_match"]) > 0
