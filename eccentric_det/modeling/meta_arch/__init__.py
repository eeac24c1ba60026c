"""Meta-architectures (registered in META_ARCH_REGISTRY)."""
from .eccentric_rcnn import EccentricRCNN
