"""Training loops that are not Detectron2's: the split timm classifier's (:mod:`.classification`)."""
