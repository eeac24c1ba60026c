"""Optimizer: Detectron2's default SGD, with the codec at ``MODEL.ECCENTRIC.CODEC.LR_FACTOR`` x the base LR."""
import torch
from detectron2.solver.build import get_default_optimizer_params, maybe_add_gradient_clipping


def param_groups(cfg, model):
    """Detectron2's parameter groups (weight decay of norms and biases, bias LR), each split into its codec
    parameters (any module named ``codec``) and the rest, the codec's at ``CODEC.LR_FACTOR`` x the LR."""
    params = get_default_optimizer_params(
        model, base_lr=cfg.SOLVER.BASE_LR, weight_decay_norm=cfg.SOLVER.WEIGHT_DECAY_NORM,
        bias_lr_factor=cfg.SOLVER.BIAS_LR_FACTOR, weight_decay_bias=cfg.SOLVER.WEIGHT_DECAY_BIAS)
    codec = {id(p) for n, p in model.named_parameters() if ".codec." in f".{n}"}
    groups = []
    for group in params:
        for is_codec in (False, True):
            members = [p for p in group["params"] if (id(p) in codec) == is_codec]
            if members:
                lr = group.get("lr", cfg.SOLVER.BASE_LR) * (cfg.MODEL.ECCENTRIC.CODEC.LR_FACTOR if is_codec else 1)
                groups.append({**group, "params": members, "lr": lr})
    return groups


def build_optimizer(cfg, model):
    return maybe_add_gradient_clipping(cfg, torch.optim.SGD)(
        param_groups(cfg, model), lr=cfg.SOLVER.BASE_LR, momentum=cfg.SOLVER.MOMENTUM,
        nesterov=cfg.SOLVER.NESTEROV, weight_decay=cfg.SOLVER.WEIGHT_DECAY)
