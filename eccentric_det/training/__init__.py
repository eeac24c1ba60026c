"""Training beyond Detectron2's loop: the split timm classifier's training (:mod:`.classification`) and the hooks
that end a Detectron2 run at its plateau or time budget (:mod:`.hooks`)."""
