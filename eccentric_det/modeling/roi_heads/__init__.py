"""ROI heads (registered in ROI_HEADS_REGISTRY)."""
from .knowledge_adapted import KnowledgeAdaptedROIHeads, box_outputs
