"""Knowledge distillation, knowledge adaptation and rate losses; teacher loading; the training objective both tasks
share (:mod:`.objective`)."""
from .losses import box_kd_loss, feature_matching_loss, logit_kd_loss, rate_loss
from .objective import TrainingObjective, freeze_parameters, keep_frozen_in_eval
from .teacher import build_teacher
