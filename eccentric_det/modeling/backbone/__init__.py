"""Split and slim ResNet backbones (registered in BACKBONE_REGISTRY)."""
from .resnet_stages import STAGES, build_slim_resnet_backbone, build_slim_resnet_fpn_backbone
from .split_resnet import SplitFeature, SplitResNet, build_split_resnet_backbone, build_split_resnet_fpn_backbone
